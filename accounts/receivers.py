"""What the accounts app does when identity or brokers report an event: they never import accounts."""

from django.dispatch import receiver

from accounts.services import trading_account_create_paper, trading_account_for_connection
from brokers.signals import connection_linked
from identity.signals import user_registered


@receiver(user_registered)
def paper_account_for_new_user(sender, user, **kwargs):
    trading_account_create_paper(user=user)


@receiver(connection_linked)
def live_accounts_for_linked_connection(sender, connection, broker_accounts=(), **kwargs):
    trading_account_for_connection(connection=connection, broker_accounts=broker_accounts)
