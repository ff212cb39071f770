"""Events of the brokers app for the apps built on it (brokers imports none of them)."""

from django.dispatch import Signal

# Sent with `connection` inside the transaction that linked (or relinked) it to a broker account.
connection_linked = Signal()
