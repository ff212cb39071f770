"""Schwab tells nobody when an order fills (it has no postbacks), so a beat task asks: every
THOR_SCHWAB_POLL_SECONDS it reads the order book of each Schwab account an order socket follows
(accounts.followers) and applies it through the one path for broker-reported changes
(accounts.broker_updates), which writes the audit and publishes `order_update`, and on a fill
`position_update` and `funds_update`, to the account's sockets.

The budget: polling spends at most THOR_SCHWAB_POLL_SHARE of each Schwab app's requests a minute, the
rest being its users' own calls. A run polls at most `poll_allowance()` accounts of an app, those polled
longest ago first (the time of each account's last poll is kept in the cache), so with more followed
accounts than that they take turns. A budget that users' calls have already spent ends that app's
polling for the run at once: the poll never waits for a token (SchwabAdapter.in_background).
"""

import logging
import math
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts import caches
from accounts.broker_updates import orders_reconcile
from accounts.followers import followed_account_ids
from accounts.live import live_call
from accounts.models import Order, TradingAccount
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import OrderResult
from brokers.models import BrokerConnection, BrokerKind
from thor import coordination

logger = logging.getLogger("accounts.polling")
_cache_down = coordination.OccasionalWarning(logger)

POLL_LOCK = "thor:lock:schwab-orders-poll"
# Long enough to outlive any followed account's turn: an account waits at most a few runs for its next.
POLLED_AT_SECONDS = 3600


def poll_allowance() -> int:
    """How many accounts of one Schwab app a run may poll: its share of the app's requests a minute,
    spread over the runs of a minute (one order-book read per account), and never none."""
    per_run = (
        settings.THOR_SCHWAB_REQUESTS_PER_MINUTE * settings.THOR_SCHWAB_POLL_SHARE * settings.THOR_SCHWAB_POLL_SECONDS
    ) / 60
    return max(1, math.floor(per_run))


def schwab_orders_poll(*, now=None) -> int:
    """One run of the poll; returns how many orders changed.

    Single flight across processes: a run that finds another one still polling leaves the work to it.
    """
    with coordination.single_flight(POLL_LOCK, timeout=settings.CELERY_TASK_TIME_LIMIT, wait=0) as held:
        if not held:
            # Another run holds the lock, or Redis is down, and with it the marks of who follows what.
            return 0
        return _poll(now or timezone.now())


def _poll(now) -> int:
    due = _accounts_due(followed_schwab_accounts())
    changed, polled = 0, []
    try:
        for app_id, accounts in due.items():
            for account in accounts:
                try:
                    changed += _account_poll(account)
                except BrokerError as error:
                    if error.code == BrokerErrorCode.RATE_LIMITED:
                        # This account was not read and keeps its place in the queue.
                        logger.info("Schwab app %s: request budget spent, polling resumes next run", app_id)
                        break
                    # An ended session, a broker down or slow: this account's trouble, never the others'.
                    logger.warning("Could not poll the Schwab orders of account %s: %s", account.pk, error.code)
                except Exception:
                    logger.exception("Could not poll the Schwab orders of account %s", account.pk)
                polled.append(account.pk)
    finally:
        _remember_polled(polled, now)
    return changed


def followed_schwab_accounts() -> list[TradingAccount]:
    """Live Schwab accounts whose session is usable and that some order socket follows."""
    usable = TradingAccount.objects.filter(
        mode=TradingAccount.Mode.LIVE,
        connection__app__kind=BrokerKind.SCHWAB,
        connection__status=BrokerConnection.Status.ACTIVE,
    )
    followed = followed_account_ids(usable.values_list("pk", flat=True))
    if not followed:
        return []
    accounts = list(usable.filter(pk__in=followed).select_related("connection__app", "user__tenant"))
    # The accounts of one login share its session: one connection object for them all, so a token
    # refreshed (or found dead) for one is what the next one uses (or skips, without calling Schwab).
    logins: dict[int, BrokerConnection] = {}
    for account in accounts:
        account.connection = logins.setdefault(account.connection_id, account.connection)
    return accounts


def _accounts_due(accounts: Iterable[TradingAccount]) -> dict[int, list[TradingAccount]]:
    """Per Schwab app, the accounts this run may poll: the allowance of them, polled longest ago first
    (never polled counts as longest ago)."""
    accounts = list(accounts)
    polled_at = _polled_at([account.pk for account in accounts])
    by_app: dict[int, list[TradingAccount]] = defaultdict(list)
    for account in sorted(accounts, key=lambda account: (polled_at.get(account.pk, 0.0), account.pk)):
        by_app[account.connection.app_id].append(account)
    allowance = poll_allowance()
    return {app_id: app_accounts[:allowance] for app_id, app_accounts in by_app.items()}


def _account_poll(account: TradingAccount) -> int:
    book = live_call(account, lambda adapter: adapter.in_background().orders())
    return orders_reconcile(account=account, results=_not_settled_in_thor(account, book))


def _not_settled_in_thor(account: TradingAccount, book: list[OrderResult]) -> list[OrderResult]:
    """The book without the orders Thor already holds as finished: a finished order never moves again
    (accounts.broker_updates), and Schwab's book reaches back 60 days, so this spares a locked read of
    every old order on every run. Orders Thor does not hold yet are kept, and adopted."""
    ids = [result.broker_order_id for result in book if result.broker_order_id]
    if not ids:
        return list(book)
    rows = list(Order.objects.filter(account=account, broker_order_id__in=ids).values_list("broker_order_id", "status"))
    open_ids = {broker_id for broker_id, status in rows if status not in Order.TERMINAL_STATUSES}
    settled_ids = {broker_id for broker_id, _ in rows} - open_ids
    return [result for result in book if result.broker_order_id not in settled_ids]


def _polled_at(account_ids: list[int]) -> dict[int, float]:
    keys = {caches.schwab_polled_at_key(account_id): account_id for account_id in account_ids}
    try:
        stamps = cache.get_many(list(keys))
    except Exception as error:
        _cache_down("Could not read when Schwab accounts were polled: %s", type(error).__name__)
        return {}
    return {keys[key]: stamp for key, stamp in stamps.items()}


def _remember_polled(account_ids: list[int], now) -> None:
    if not account_ids:
        return
    stamp = now.timestamp()
    try:
        cache.set_many(
            {caches.schwab_polled_at_key(account_id): stamp for account_id in account_ids}, timeout=POLLED_AT_SECONDS
        )
    except Exception as error:
        _cache_down("Could not note when Schwab accounts were polled: %s", type(error).__name__)
