"""Seed 002's Schwab reads: which of the user's Schwab accounts a number or hash names, and its data.

Account numbers are never shown whole. They are accepted in full, or masked exactly as Thor lists them
(`****6903`: seed 002's SPA fills its dropdown from /api/schwab/accounts/ and sends the value back) when
that names exactly one of the user's accounts; two of them ending in the same digits are a 400 that says
so. Every Schwab account path takes the hashValue, so a number is turned into one through the
accountNumbers map, cached 60 s per connection. Another user's number or hash is simply not in this
user's accounts: 404.
"""

import re
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.http import Http404

from accounts import caches, live
from accounts.models import TradingAccount
from brokers.adapters.errors import BrokerError
from brokers.models import BrokerConnection, BrokerKind
from brokers.services import broker_call
from thor import snapshots
from thor.errors import ApplicationError
from thor.snapshots import LiveRead

# Schwab account numbers are digits; hashValues are hex (64) in the real API. Anything else is not one.
ACCOUNT_NUMBER = re.compile(r"[0-9]{1,32}")
ACCOUNT_HASH = re.compile(r"[A-Za-z0-9_-]{1,128}")
# A number as mask() shows it.
MASKED_NUMBER = re.compile(r"\*{4}[0-9]{1,4}")


def mask(number: str) -> str:
    return f"****{number[-4:]}" if number else ""


def schwab_accounts(*, user) -> QuerySet[TradingAccount]:
    return (
        TradingAccount.objects.filter(user=user, mode=TradingAccount.Mode.LIVE, connection__app__kind=BrokerKind.SCHWAB)
        .select_related("connection__app", "user__tenant")
        .order_by("id")
    )


def account_number_map(*, connection: BrokerConnection) -> dict[str, str]:
    """{account number: hashValue} of the connection, from Schwab at most once a minute.

    When Schwab cannot be asked, the numbers stored at linking stand in, so a stale read still works.
    """
    key = caches.schwab_account_numbers_key(connection)
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        refs = broker_call(connection, lambda adapter: adapter.account_numbers())
    except BrokerError:
        return dict(
            TradingAccount.objects.filter(connection=connection)
            .exclude(account_number="")
            .values_list("account_number", "broker_account_id")
        )
    mapping = {ref.account_number: ref.broker_account_id for ref in refs}
    cache.set(key, mapping, settings.THOR_SCHWAB_ACCOUNT_MAP_SECONDS)
    return mapping


def schwab_account_get(*, user, account_number: str = "", account_hash: str = "") -> TradingAccount:
    """The user's Schwab account by number or hash, the first one when neither is given; else 404."""
    accounts = schwab_accounts(user=user)
    if account_hash:
        account = (
            accounts.filter(broker_account_id=account_hash).first() if ACCOUNT_HASH.fullmatch(account_hash) else None
        )
    elif account_number:
        account = _account_by_number(accounts, account_number)
    else:
        account = accounts.first()
    if account is None:
        raise Http404
    return account


def _account_by_number(accounts: QuerySet[TradingAccount], account_number: str) -> TradingAccount | None:
    """The account a full or masked number names among `accounts`, through each login's number map."""
    if ACCOUNT_NUMBER.fullmatch(account_number):
        masked = False
    elif MASKED_NUMBER.fullmatch(account_number):
        masked = True
    else:
        return None
    found: dict[str, tuple[int, str]] = {}  # number -> (connection id, hashValue), the first login listing it
    for connection in {a.connection_id: a.connection for a in accounts}.values():
        for number, hash_value in account_number_map(connection=connection).items():
            if (mask(number) if masked else number) == account_number:
                found.setdefault(number, (connection.pk, hash_value))
    if len(found) > 1:
        # Counted over every account the logins list (what the SPA's dropdown shows), so a masked number
        # never quietly picks one of two.
        raise ApplicationError(
            f"{account_number} names {len(found)} of your Schwab accounts: pass account_hash "
            "(broker_account_id in /api/schwab/accounts/) instead.",
            code="ambiguous_account_number",
        )
    if not found:
        return None
    connection_id, hash_value = next(iter(found.values()))
    return accounts.filter(connection_id=connection_id, broker_account_id=hash_value).first()


def schwab_account_by_id(*, user, account_id: str) -> TradingAccount:
    """Seed 002's legacy paths name the account by number (full or masked) or hash in one path segment."""
    if MASKED_NUMBER.fullmatch(account_id):
        return schwab_account_get(user=user, account_number=account_id)
    if ACCOUNT_NUMBER.fullmatch(account_id):
        try:
            return schwab_account_get(user=user, account_number=account_id)
        except Http404:
            pass  # a hash may be all digits too
    return schwab_account_get(user=user, account_hash=account_id)


@dataclass(frozen=True)
class AccountsPayload:
    connection: BrokerConnection
    read: LiveRead


def accounts_payloads(*, user) -> list[AccountsPayload]:
    """Schwab's own accounts payload (`fields=positions`) of each of the user's Schwab logins."""
    connections = {account.connection_id: account.connection for account in schwab_accounts(user=user)}
    payloads = []
    for connection in connections.values():
        read = snapshots.read_through(
            caches.schwab_accounts_key(connection, tenant_slug=user.tenant.slug),
            lambda connection=connection: broker_call(
                connection, lambda adapter: adapter.accounts_payload(fields="positions")
            ),
            fresh_ttl=settings.THOR_LIVE_FRESH_SECONDS,
            stale_ttl=settings.THOR_LIVE_STALE_SECONDS,
        )
        payloads.append(AccountsPayload(connection=connection, read=read))
    return payloads


def balances_read(*, account: TradingAccount, fresh: bool = False) -> LiveRead:
    return live.live_read(account=account, what="funds", call=lambda adapter: adapter.funds(), force=fresh)


def positions_read(*, account: TradingAccount, fresh: bool = False) -> LiveRead:
    return live.live_read(account=account, what="positions", call=lambda adapter: adapter.positions(), force=fresh)
