"""The account lock every order and every change to a paper account's cash or positions runs under: the account's
row (its user's and tenant's too) locked until the surrounding transaction ends, so concurrent orders on one
account are applied one at a time and their checks see each other."""

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

from accounts.models import IdempotentRequest, Order, TradingAccount


def account_lock(*, account_id: int, idempotency_key: str | None = None, live: bool = True) -> TradingAccount:
    """The account row, locked until the surrounding transaction ends (its user's and tenant's rows too:
    a user's open orders across accounts are counted under it).

    A live account's broker session and app come in the same query, unlocked, and the app's tenant is the user's
    row (the same tenant): the checks and the broker call read them next, and one query is cheaper than three.
    `live=False` (a caller that knows the account is paper: a paper account has neither) leaves them out: their
    28 columns and two joins were most of what Django compiled for this query, on every paper order and fill.
    With an Idempotency-Key, the same query says whether the key was ever used on the account (`key_used`), so a
    new key, the common case, costs no lookup of its own.
    """
    related = ("user__tenant", "connection__app") if live else ("user__tenant",)
    accounts = TradingAccount.objects.select_for_update(of=("self", "user", "user__tenant")).select_related(*related)
    if idempotency_key:
        accounts = accounts.annotate(key_used=_key_used(idempotency_key))
    account = accounts.get(pk=account_id)
    app = account.connection.app if account.connection_id is not None else None
    if app is not None and app.tenant_id == account.user.tenant_id:
        # The app's tenant is the account's (a tenant's shared app, or its user's own): the row just read and
        # locked, not a second copy of its twenty columns (their JSON parsed and secrets decrypted again).
        app.tenant = account.user.tenant
    return account


def _key_used(idempotency_key: str) -> RawSQL:
    """Whether an order or a recorded request of the account holds this key: two EXISTS written out once, where
    the ORM would compile two correlated subqueries again for every placement (this query runs on each one, and
    compiling them cost more of the placement's CPU than running the whole query)."""
    quote = connection.ops.quote_name
    account = f"{quote(TradingAccount._meta.db_table)}.{quote(TradingAccount._meta.pk.column)}"

    def used_in(model, key_field: str) -> str:
        table = quote(model._meta.db_table)
        account_column = quote(model._meta.get_field("account").column)
        key_column = quote(model._meta.get_field(key_field).column)
        return (
            f"EXISTS (SELECT 1 FROM {table} "  # noqa: S608 (names from the models, the key a parameter)
            f"WHERE {table}.{account_column} = {account} AND {table}.{key_column} = %s)"
        )

    sql = f"{used_in(Order, 'idempotency_key')} OR {used_in(IdempotentRequest, 'key')}"
    return RawSQL(sql, (idempotency_key, idempotency_key), output_field=BooleanField())  # noqa: S611 (as above)
