"""Events of the brokers app for the apps built on it (brokers imports none of them)."""

from django.dispatch import Signal

# Sent with `connection` and `broker_accounts` (a list of BrokerAccountRef: the accounts behind the
# login, one for Kite, each linked account for Schwab) inside the transaction that linked (or
# relinked) the connection.
connection_linked = Signal()
