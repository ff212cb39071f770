"""Events of the brokers app for the apps built on it (brokers imports none of them)."""

from django.dispatch import Signal

# Sent with `connection` inside the transaction that linked (or relinked) it to a broker account.
connection_linked = Signal()

# Sent with `connection_ids` once those sessions are no longer usable (expired or revoked), so that
# whatever keeps a connection's state for a few seconds (the live reads' account cache) forgets it.
connection_ended = Signal()
