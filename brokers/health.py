"""A broker connection's health: its last successful call, its last error, its token's expiry, the rate
budget its app has left, and its live orders that need someone (UNKNOWN, NEEDS_REVIEW).

Where each part lives:
- The calls' outcomes are in the cache (Redis), written by brokers.services.broker_call, the one door
  every broker call goes through: at most one write per call. A success is written only when this
  process has not written one for the connection in the last SUCCESS_REWRITE_SECONDS (a busy
  connection's calls mostly write nothing); a failure is always written, and makes the next success
  write again, so a recovery shows at once.
- The token's expiry is the connection's row.
- The rate budget is the app's token buckets (thor.ratelimit), read without spending a token.
- The order egress (brokers.egress) and its last probe are the connection's, its app's or its tenant's row.
- The orders are accounts', which sits above brokers: accounts registers a counter here from its
  AppConfig.ready. Brokers could count them itself through the reverse relations (`accounts__orders`)
  without an import, but it would then hard-code another app's field names and status values where the
  layering test cannot see them; the registry keeps them with the app that owns them, as
  brokers.signals does for the other things accounts must hear about.
- Whether a connection's live orders are checked against their price band is accounts' too (accounts.price_bands
  quotes them through the tenant's market-data connection, which market picks): accounts registers a
  PriceBandsWatch here the same way, answering for a list of connections and for the tenant admin.

A cache outage never fails a broker call: the outcome is not recorded (logged at most once a minute),
and the read shows what it cannot know as unknown (null).
"""

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache
from django.db.models import Exists
from prometheus_client import Counter

from brokers import caches, egress
from brokers.adapters.errors import BrokerError
from brokers.models import BrokerConnection
from brokers.registry import rate_budgets_for_app
from thor import ratelimit
from thor.coordination import OccasionalWarning

logger = logging.getLogger("thor.brokers")

SUCCESS_REWRITE_SECONDS = 5.0
# Long enough for an operator to see a connection's last call after a quiet weekend.
OUTCOME_TTL_SECONDS = 14 * 24 * 3600
FAILURE_LOG_EVERY_SECONDS = 60.0
MESSAGE_LENGTH = 200

CALLS = Counter(
    "thor_broker_calls", "Broker calls through broker_call, by outcome (ok or the error code).", ["broker", "outcome"]
)
# Each labelled child looked up once per process: labels() takes a lock and builds a key.
_calls_by_outcome: dict[tuple[str, str], Counter] = {}


def _count_call(kind: str, outcome: str) -> None:
    child = _calls_by_outcome.get((kind, outcome))
    if child is None:
        child = _calls_by_outcome[(kind, outcome)] = CALLS.labels(kind, outcome)
    child.inc()


@dataclass(frozen=True)
class AttentionOrders:
    """A connection's live orders that need someone: placement unconfirmed, or matched to zero or
    several broker orders when the settle window closed."""

    unknown: int
    needs_review: int


OrderCounter = Callable[[list[int]], dict[int, AttentionOrders]]
_order_counter: OrderCounter | None = None


def order_counter_register(counter: OrderCounter) -> None:
    """Called once by the app that holds the orders (accounts.apps); `counter` answers every connection
    id asked for in one query, leaving out those with none."""
    global _order_counter
    _order_counter = counter


class PriceBands:
    """Whether a connection's live orders are checked against their price band before they are sent."""

    CHECKED = "checked"
    # No band check, the order goes on as it is: its tenant has no market-data connection to quote it.
    UNCHECKED_NO_MARKET_DATA = "unchecked_no_market_data"


@dataclass(frozen=True)
class PriceBandsWatch:
    """What the app that checks price bands (accounts) answers, each in one query however many are asked about.

    `of_connections`: PriceBands.CHECKED or UNCHECKED_NO_MARKET_DATA by connection id (each with its app loaded),
    leaving out the connections whose orders no band applies to. `tenant_has_banded_accounts` and
    `tenant_has_market_data`: conditions on a tenant (OuterRef("pk")), for the tenant admin to annotate with.
    """

    of_connections: Callable[[Sequence[BrokerConnection]], dict[int, str]]
    tenant_has_banded_accounts: Callable[[], Exists]
    tenant_has_market_data: Callable[[], Exists]


price_bands_watch: PriceBandsWatch | None = None


def price_bands_register(watch: PriceBandsWatch) -> None:
    """Called once by the app that checks price bands (accounts.apps)."""
    global price_bands_watch
    price_bands_watch = watch


@dataclass(frozen=True)
class CallError:
    at: datetime
    code: str
    message: str


@dataclass(frozen=True)
class BudgetLeft:
    bucket: str
    left: int | None  # None: the buckets could not be read
    capacity: int
    per_seconds: int


@dataclass(frozen=True)
class EgressHealth:
    """The order egress a connection's orders leave through, never its URL."""

    required: bool  # the tenant requires one for this connection's live orders
    source: str | None  # connection | app | tenant; None: no egress
    ok: bool | None  # the last probe through it; None: never probed
    checked_at: datetime | None
    error: str


def egress_health(connection: BrokerConnection) -> EgressHealth:
    found = egress.order_egress_for(connection)
    probe = found.probe if found else {}
    checked_at = probe.get("checked_at")
    return EgressHealth(
        required=egress.order_egress_required(connection, tenant=connection.app.tenant),
        source=found.source if found else None,
        ok=probe.get("ok"),
        checked_at=datetime.fromisoformat(checked_at) if checked_at else None,
        error=probe.get("error") or "",
    )


@dataclass(frozen=True)
class ConnectionHealth:
    last_success_at: datetime | None
    last_error: CallError | None
    token_expires_at: datetime | None
    rate_budget: list[BudgetLeft]
    orders: AttentionOrders | None  # None: no app counts orders
    egress: EgressHealth
    price_bands: str | None  # a PriceBands value; None: no band applies to its orders (or no app checks bands)

    @property
    def calls(self) -> str:
        """ok | failing (the last call recorded failed) | unknown (none recorded, or the cache is down)."""
        if self.last_error and (self.last_success_at is None or self.last_error.at >= self.last_success_at):
            return "failing"
        return "ok" if self.last_success_at else "unknown"


# --- Recording (brokers.services.broker_call) ----------------------------------------------------


_cache_down = OccasionalWarning(logger)
# Connection id -> when this process last wrote its success (time.monotonic()).
_success_written: dict[int, float] = {}


def _store(key: str, value) -> None:
    try:
        cache.set(key, value, OUTCOME_TTL_SECONDS)
    except Exception as error:
        # The type only: a connection error's text may carry the Redis URL.
        _cache_down("Broker call outcomes are not recorded, the cache is unreachable: %s", type(error).__name__)


def call_succeeded(connection: BrokerConnection) -> None:
    _count_call(connection.app.kind, "ok")
    now = time.monotonic()
    if now - _success_written.get(connection.pk, -SUCCESS_REWRITE_SECONDS) < SUCCESS_REWRITE_SECONDS:
        return
    _success_written[connection.pk] = now
    _store(caches.call_succeeded_key(connection.pk), time.time())


def call_failed(connection: BrokerConnection, error: BrokerError) -> None:
    _count_call(connection.app.kind, error.code.value)
    _success_written.pop(connection.pk, None)
    message = safe_message(connection, error)
    _store(caches.call_failed_key(connection.pk), (time.time(), error.code.value, message))
    failure_log(connection, error.code.value, message)


def safe_message(connection: BrokerConnection, error: BrokerError) -> str:
    """Thor's own words for the error, never the broker's (`broker_message` may echo a request), with
    any of the connection's secrets masked should one ever be in them."""
    message = error.message[:MESSAGE_LENGTH]
    for secret in (connection.access_token, connection.refresh_token, connection.app.api_secret):
        if secret and len(secret) >= 4:
            message = message.replace(secret, "••••")
    return message


class FailureLog:
    """One line per broker and error code per minute at most; the next line says how many it left out."""

    def __init__(self, every_seconds: float):
        self.every_seconds = every_seconds
        self._last: dict[tuple[str, str], float] = {}
        self._left_out: Tally[tuple[str, str]] = Tally()
        self._lock = threading.Lock()

    def __call__(self, connection: BrokerConnection, code: str, message: str) -> None:
        kind = (connection.app.kind, code)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.every_seconds:
                self._left_out[kind] += 1
                return
            self._last[kind] = now
            left_out = self._left_out.pop(kind, 0)
        logger.warning(
            "Broker call failed: %s connection %s, %s: %s (%d more like it since the last line)",
            connection.app.kind,
            connection.pk,
            code,
            message,
            left_out,
        )


failure_log = FailureLog(FAILURE_LOG_EVERY_SECONDS)


# --- Reading (the connections API, the admin, the metrics) ---------------------------------------


def _moment(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=UTC) if epoch is not None else None


def _outcomes(connection_ids: list[int]) -> dict[int, tuple[datetime | None, CallError | None]]:
    keys = [key for pk in connection_ids for key in (caches.call_succeeded_key(pk), caches.call_failed_key(pk))]
    found: Mapping[str, Any]
    try:
        found = cache.get_many(keys)
    except Exception as error:
        _cache_down("Broker call outcomes are unknown, the cache is unreachable: %s", type(error).__name__)
        found = dict.fromkeys(keys)
    outcomes: dict[int, tuple[datetime | None, CallError | None]] = {}
    for pk in connection_ids:
        # (time, code, message), as call_failed stores it.
        failed = found.get(caches.call_failed_key(pk))
        call_error = CallError(datetime.fromtimestamp(failed[0], tz=UTC), failed[1], failed[2]) if failed else None
        outcomes[pk] = (_moment(found.get(caches.call_succeeded_key(pk))), call_error)
    return outcomes


def _budgets(connections: Iterable[BrokerConnection]) -> dict[int, list[BudgetLeft]]:
    """Each app's buckets, read once however many of its connections are asked about."""
    budgets = {}
    for connection in connections:
        if connection.app_id not in budgets:
            budgets[connection.app_id] = rate_budgets_for_app(connection.app.kind, connection.app_id)
    flat = [budget for app_budgets in budgets.values() for budget in app_budgets]
    levels = dict(zip((budget.bucket for budget in flat), ratelimit.tokens_left(flat), strict=True))
    return {
        app_id: [
            BudgetLeft(
                bucket=budget.bucket.rsplit(":", 1)[-1],
                # Whole calls: a bucket with 0.9 of a token has none to give yet.
                left=None if (level := levels[budget.bucket]) is None else int(level),
                capacity=int(budget.capacity),
                per_seconds=int(budget.per),
            )
            for budget in app_budgets
        ]
        for app_id, app_budgets in budgets.items()
    }


def _attention_orders(connection_ids: list[int]) -> dict[int, AttentionOrders] | None:
    return None if _order_counter is None else _order_counter(connection_ids)


def _price_bands(connections: Sequence[BrokerConnection]) -> dict[int, str]:
    return {} if price_bands_watch is None else price_bands_watch.of_connections(connections)


def connections_health(connections: Sequence[BrokerConnection]) -> dict[int, ConnectionHealth]:
    """The health of each connection (with its app and the app's tenant loaded), by id: one cache round trip, one to the
    rate buckets and two database queries (orders, price bands), however many connections."""
    connections = list(connections)
    if not connections:
        return {}
    ids = [connection.pk for connection in connections]
    outcomes = _outcomes(ids)
    budgets = _budgets(connections)
    orders = _attention_orders(ids)
    price_bands = _price_bands(connections)
    none = AttentionOrders(unknown=0, needs_review=0)
    return {
        connection.pk: ConnectionHealth(
            last_success_at=outcomes[connection.pk][0],
            last_error=outcomes[connection.pk][1],
            token_expires_at=connection.access_expires_at,
            rate_budget=budgets[connection.app_id],
            orders=None if orders is None else orders.get(connection.pk, none),
            egress=egress_health(connection),
            price_bands=price_bands.get(connection.pk),
        )
        for connection in connections
    }


def connection_health(connection: BrokerConnection) -> ConnectionHealth:
    return connections_health([connection])[connection.pk]
