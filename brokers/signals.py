"""Events of the brokers app for the apps built on it (brokers imports none of them)."""

from django.db import transaction
from django.dispatch import Signal

# Sent with `connection` and `broker_accounts` (a list of BrokerAccountRef: the accounts behind the
# login, one for Kite, each linked account for Schwab) inside the transaction that linked (or
# relinked) the connection.
connection_linked = Signal()

# Sent with `connection_ids` once those sessions are no longer usable (expired or revoked), so that
# whatever keeps a connection's state for a few seconds (the live reads' account cache) forgets it.
connection_ended = Signal()


def connections_ended(connection_ids) -> None:
    """Send connection_ended once the change is committed (at once outside a transaction): dropped before
    the commit, a cached copy could be filled again from the old row by a request in between."""
    ids = list(connection_ids)
    if ids:
        transaction.on_commit(lambda: connection_ended.send(sender=None, connection_ids=ids))
