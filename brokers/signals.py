"""Events of the brokers app for the apps built on it (brokers imports none of them)."""

from django.dispatch import Signal

# Sent with `connection` and `broker_accounts` (a list of BrokerAccountRef: the accounts behind the
# login, one for Kite, each linked account for Schwab) inside the transaction that linked (or
# relinked) the connection.
connection_linked = Signal()

# Sent with `connection_ids` once those sessions are no longer usable (expired or revoked), so that
# whatever keeps a connection's state for a few seconds (the live reads' account cache) forgets it.
connection_ended = Signal()
