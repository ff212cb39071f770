from django.db import transaction

from accounts.models import TradingAccount


@transaction.atomic
def trading_account_create_paper(*, user, primary: bool = True) -> TradingAccount:
    """The user's paper account, funded with the tenant's starting cash."""
    tenant = user.tenant
    return TradingAccount.objects.create(
        user=user,
        mode=TradingAccount.Mode.PAPER,
        display_name="Paper",
        currency=tenant.currency,
        cash=tenant.paper_starting_cash,
        is_primary=primary,
    )
