from accounts.models import TradingAccount


def primary_account_get(*, user) -> TradingAccount | None:
    return TradingAccount.objects.filter(user=user, is_primary=True).select_related("connection__app").first()
