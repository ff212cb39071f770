"""Zerodha Kite Connect over the official `kiteconnect` client.

Every call spends one of the app's rate budget first (Kite's documented limits, brokers.adapters.kite_limits),
so Thor never sends a request it knows will be answered 429; without room it raises RATE_LIMITED and the
caller answers from the last-good snapshot. An order call (place, modify, cancel) also spends one of its Kite
user's order budgets (10 a second, the exchange's rule, and 400 a minute, across every app and process),
waiting up to THOR_KITE_RATE_WAIT for room; without it it raises ORDER_RATE_LIMITED (429), unsent.

Order calls leave through the connection's order egress when it has one (brokers.egress): the proxy on
the user's registered static IP. Reads go direct.
"""

import copy
import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_exceptions

from brokers.adapters import kite_limits
from brokers.adapters.base import BrokerAdapter
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.kite_autoslice import sliced_placement_of
from brokers.adapters.kite_mapping import (
    IST,
    as_aware,
    as_sent,
    broker_error_of,
    depth_of,
    kite_number,
    optional_decimal,
    order_result_of,
    whole_quantity,
)
from brokers.adapters.sessions import BrokerSession
from brokers.adapters.types import (
    Funds,
    Holding,
    OrderRequest,
    OrderResult,
    Position,
    Profile,
    Quote,
    SlicedPlacement,
    Tokens,
)
from thor import ratelimit
from thor.money import to_decimal

SESSION_ENDS_AT = time(6, 0)

QUOTE_BATCH = 500
VARIETY = "regular"
# Kite refuses these without `market_protection` (since April 2026): -1 lets Kite choose, else a percentage.
MARKET_PROTECTED_ORDER_TYPES = ("MARKET", "SL-M")
AUTOMATIC_MARKET_PROTECTION = Decimal("-1")


_pool = threading.local()


def _session() -> BrokerSession:
    """One keep-alive session per thread for every Kite client made in it (an adapter is made for each
    call, and a client's own session would open a new connection to Kite every time); without cookies
    (brokers.adapters.sessions)."""
    session = getattr(_pool, "session", None)
    if session is None:
        session = _pool.session = BrokerSession()
    return session


# Keep-alive pools to at most this many egress proxies per thread: each user's proxy has its own, and a
# thread serving many users must not keep a pool (and its sockets) for every one it ever served.
MAX_EGRESS_POOLS = 32


def _egress_session() -> BrokerSession:
    """The session order calls through an egress share in this thread (as _session for direct calls),
    kept apart so that the direct pools never make way for egress ones; its oldest proxy pools are closed
    beyond MAX_EGRESS_POOLS."""
    session = getattr(_pool, "egress_session", None)
    if session is None:
        session = _pool.egress_session = BrokerSession()
    for adapter in session.adapters.values():
        if isinstance(adapter, requests.adapters.HTTPAdapter):
            managers = adapter.proxy_manager
            while len(managers) >= MAX_EGRESS_POOLS:
                managers.pop(next(iter(managers))).clear()
    return session


def session_expiry(now: datetime) -> datetime:
    """Kite sessions die at the next 06:00 IST."""
    local = now.astimezone(IST)
    expiry = datetime.combine(local.date(), SESSION_ENDS_AT, tzinfo=IST)
    if expiry <= local:
        expiry += timedelta(days=1)
    return expiry


def postback_checksum(*, order_id: str, order_timestamp: str, api_secret: str) -> str:
    return hashlib.sha256(f"{order_id}{order_timestamp}{api_secret}".encode()).hexdigest()


class KiteAdapter(BrokerAdapter):
    kind = "kite"

    def __init__(
        self,
        *,
        app_id: int,
        api_key: str,
        api_secret: str,
        access_token: str = "",
        market_protection: Decimal = AUTOMATIC_MARKET_PROTECTION,
        broker_user_id: str = "",
        order_egress: str = "",
    ):
        self.app_id = app_id
        self.api_key = api_key
        self.broker_user_id = broker_user_id
        self.market_protection = to_decimal(market_protection)
        self._api_secret = api_secret
        self._client = KiteConnect(
            api_key=api_key,
            access_token=access_token or None,
            root=settings.THOR_KITE_API_ROOT,
            timeout=settings.THOR_KITE_TIMEOUT,
        )
        self._client.reqsession = _session()
        # Order calls go through the egress: the same client with the proxy (a copy: no second
        # KiteConnect.__init__ and its unused session). The URL is never in repr, messages or logs.
        self._order_client = self._client
        if order_egress:
            self._order_client = copy.copy(self._client)
            self._order_client.proxies = {"http": order_egress, "https": order_egress}
            self._order_client.reqsession = _egress_session()

    def __repr__(self) -> str:
        return f"KiteAdapter(app_id={self.app_id})"

    @property
    def sends_orders_through_egress(self) -> bool:
        return self._order_client is not self._client

    def _spend_budget(self, category: str, *, wait: bool = True) -> ratelimit.Grant:
        """One call from the app's limit for `category` and, for an order call, from its Kite user's (a second's
        and a minute's): all or none, waiting up to THOR_KITE_RATE_WAIT (or not at all)."""
        budgets = kite_limits.call_budgets(self.app_id, category, self.broker_user_id)
        reserved = ratelimit.reserve(budgets, wait=settings.THOR_KITE_RATE_WAIT if wait else 0)
        if isinstance(reserved, ratelimit.Grant):
            return reserved
        message = kite_limits.user_refusal(reserved.budget, self.broker_user_id)
        if message is not None:
            raise BrokerError(
                message, code=BrokerErrorCode.ORDER_RATE_LIMITED, permanent=True, retry_after=reserved.retry_after
            )
        raise BrokerError(
            "Kite rate budget spent.", code=BrokerErrorCode.RATE_LIMITED, retry_after=reserved.retry_after
        )

    def _call(self, category: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        grant = self._spend_budget(category)
        try:
            return self._send(method, *args, **kwargs)
        finally:
            # Counted from Kite's answer: Kite received it by then (kite_limits), however long it took to get there.
            grant.settle()

    def _send(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The call, its budget spent, with Kite's and the transport's errors as BrokerErrors."""
        try:
            return method(*args, **kwargs)
        except requests.exceptions.ProxyError:
            # Raised only before any byte reached the proxy (urllib3: not yet connected to it), so the call
            # was certainly not sent. The error's text names the proxy: Thor's words only.
            raise BrokerError(
                "The order egress (the proxy on your static IP) could not be reached; nothing was sent.",
                code=BrokerErrorCode.EGRESS_UNREACHABLE,
                retry_after=5.0,
            ) from None
        except (kite_exceptions.KiteException, requests.RequestException) as exc:
            error = broker_error_of(exc)
            if self.sends_orders_through_egress and isinstance(exc, requests.RequestException):
                error.broker_message = ""  # a transport error's text may name the proxy
            raise error from None

    # --- session --------------------------------------------------------------------------

    def authorization_url(self, state: str) -> str:
        query = urlencode({"v": 3, "api_key": self.api_key, "redirect_params": urlencode({"state": state})})
        return f"{settings.THOR_KITE_LOGIN_URL}?{query}"

    def exchange(self, params: Mapping[str, str]) -> Tokens:
        request_token = params.get("request_token") or ""
        if not request_token:
            raise BrokerError("No request token.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
        session = self._call("other", self._client.generate_session, request_token, api_secret=self._api_secret)
        return Tokens(
            access_token=session["access_token"],
            refresh_token=session.get("refresh_token") or "",
            access_expires_at=session_expiry(datetime.now(IST)),
            broker_user_id=session["user_id"],
        )

    def refresh(self, tokens: Tokens) -> Tokens:
        raise BrokerError(
            "Kite sessions cannot be refreshed; log in again.", code=BrokerErrorCode.TOKEN_EXPIRED, permanent=True
        )

    def revoke(self) -> None:
        self._call("other", self._client.invalidate_access_token)

    # --- account --------------------------------------------------------------------------

    def profile(self) -> Profile:
        data = self._call("other", self._client.profile)
        return Profile(
            broker_user_id=data["user_id"],
            name=data.get("user_name") or "",
            email=data.get("email") or "",
            broker=self.kind,
            exchanges=tuple(data.get("exchanges") or ()),
            products=tuple(data.get("products") or ()),
            order_types=tuple(data.get("order_types") or ()),
            raw=dict(data),
        )

    def funds(self) -> Funds:
        equity = self._call("other", self._client.margins, "equity")
        available = equity.get("available") or {}
        net = to_decimal(equity.get("net"))
        return Funds(
            currency="INR",
            cash=to_decimal(available.get("cash")),
            available=net,
            utilised=to_decimal((equity.get("utilised") or {}).get("debits")),
            buying_power=net,
            net_liquidation=net,
            raw=dict(equity),
        )

    def positions(self) -> list[Position]:
        data = self._call("other", self._client.positions)
        return [
            Position(
                symbol=item["tradingsymbol"],
                exchange=item["exchange"],
                product=item.get("product") or "",
                quantity=to_decimal(item.get("quantity")),
                average_price=to_decimal(item.get("average_price")),
                last_price=to_decimal(item.get("last_price")),
                realised_pnl=to_decimal(item.get("realised")),
                unrealised_pnl=to_decimal(item.get("unrealised")),
                day_pnl=to_decimal(item.get("m2m")),
                # Kite's own "value" is the net cash flow (negative for a long); the unified field is
                # what the position is worth, as for paper and Schwab.
                value=to_decimal(item.get("quantity"))
                * to_decimal(item.get("last_price"))
                * to_decimal(item.get("multiplier") or 1),
                instrument_token=item.get("instrument_token"),
                raw=dict(item),
            )
            for item in data.get("net") or []
        ]

    def holdings(self) -> list[Holding]:
        data = self._call("other", self._client.holdings)
        holdings = []
        for item in data:
            quantity = to_decimal(item.get("quantity")) + to_decimal(item.get("t1_quantity"))
            last_price = to_decimal(item.get("last_price"))
            holdings.append(
                Holding(
                    symbol=item["tradingsymbol"],
                    exchange=item["exchange"],
                    quantity=quantity,
                    average_price=to_decimal(item.get("average_price")),
                    last_price=last_price,
                    pnl=to_decimal(item.get("pnl")),
                    day_change=to_decimal(item.get("day_change")),
                    value=quantity * last_price,
                    isin=item.get("isin") or "",
                    instrument_token=item.get("instrument_token"),
                    raw=dict(item),
                )
            )
        return holdings

    # --- orders ---------------------------------------------------------------------------

    def orders(self, filters: Mapping[str, str] | None = None) -> list[OrderResult]:
        results = [order_result_of(order) for order in self._call("other", self._client.orders)]
        for name, value in (filters or {}).items():
            results = [result for result in results if getattr(result, name) == value]
        return results

    def order(self, broker_order_id: str) -> OrderResult:
        """The order's latest state: the last entry of its history."""
        history = self._call("other", self._client.order_history, order_id=broker_order_id)
        if not history:
            raise BrokerError(f"No order {broker_order_id} at Kite.", code=BrokerErrorCode.NOT_FOUND)
        return order_result_of(history[-1])

    def _market_protection_for(self, order_type: object) -> int | str | None:
        return kite_number(self.market_protection) if order_type in MARKET_PROTECTED_ORDER_TYPES else None

    def _place_params(self, order: OrderRequest) -> dict[str, Any]:
        """One order's fields as the client's place calls take them. `tag` is Thor's client order id (how a
        lost placement is found again); the tenant's exchange algo id goes in Kite's own `algo_id` field."""
        return {
            "variety": VARIETY,
            "exchange": order.exchange,
            "tradingsymbol": order.symbol,
            "transaction_type": order.side,
            "quantity": whole_quantity(order.quantity),
            "product": order.product,
            "order_type": order.order_type,
            "price": order.price,
            "trigger_price": order.trigger_price,
            "validity": order.validity,
            "tag": order.tag or None,
            "algo_id": order.algo_id or None,
            "market_protection": self._market_protection_for(order.order_type),
        }

    def place(self, order: OrderRequest) -> OrderResult:
        """Kite only acknowledges the id; the order's progress arrives by postback or orders()."""
        order_id = self._call("orders", self._order_client.place_order, **self._place_params(order))
        return OrderResult.acknowledged(str(order_id), order)

    slices_orders = True
    modifications_per_order = kite_limits.MODIFICATIONS_PER_ORDER

    def place_sliced(self, order: OrderRequest) -> SlicedPlacement:
        """Kite's autoslice: one order call, which Kite splits at the freeze quantity (at most 10 slices),
        each slice an order of its own carrying the request's tag."""
        data = self._call("orders", self._order_client.place_autoslice_order, **self._place_params(order))
        return sliced_placement_of(data)

    def modify(self, broker_order_id: str, changes: Mapping[str, object]) -> OrderResult:
        allowed = {"quantity", "price", "order_type", "trigger_price", "validity", "disclosed_quantity"}
        unknown = set(changes) - allowed
        if unknown:
            raise BrokerError(
                f"Kite cannot modify {', '.join(sorted(unknown))}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True
            )
        changes = dict(changes)
        if "quantity" in changes:
            changes["quantity"] = whole_quantity(changes["quantity"])
        if (market_protection := self._market_protection_for(changes.get("order_type"))) is not None:
            changes["market_protection"] = market_protection
        order_id = self._call(
            "orders", self._order_client.modify_order, variety=VARIETY, order_id=broker_order_id, **changes
        )
        return OrderResult(broker_order_id=str(order_id), status="PENDING")

    def cancel(self, broker_order_id: str) -> OrderResult:
        order_id = self._call("orders", self._order_client.cancel_order, variety=VARIETY, order_id=broker_order_id)
        return OrderResult(broker_order_id=str(order_id), status="PENDING")

    # --- market data ----------------------------------------------------------------------

    def quotes(self, instruments: Iterable[str], *, wait_for_budget: bool = True) -> dict[str, Quote]:
        names = list(dict.fromkeys(instruments))
        quotes = {}
        for start in range(0, len(names), QUOTE_BATCH):
            self._spend_budget("quote", wait=wait_for_budget)
            data = self._send(self._client.quote, names[start : start + QUOTE_BATCH])
            for name, item in data.items():
                exchange, _, symbol = name.partition(":") if ":" in name else ("", "", "")
                ohlc = item.get("ohlc") or {}
                quotes[name] = Quote(
                    symbol=symbol,
                    exchange=exchange,
                    last_price=to_decimal(item.get("last_price")),
                    instrument_token=item.get("instrument_token"),
                    open=optional_decimal(ohlc.get("open")),
                    high=optional_decimal(ohlc.get("high")),
                    low=optional_decimal(ohlc.get("low")),
                    close=optional_decimal(ohlc.get("close")),
                    volume=item.get("volume"),
                    timestamp=as_aware(item.get("timestamp")),
                    lower_circuit_limit=optional_decimal(item.get("lower_circuit_limit")),
                    upper_circuit_limit=optional_decimal(item.get("upper_circuit_limit")),
                    oi=item.get("oi"),
                    bids=depth_of((item.get("depth") or {}).get("buy")),
                    asks=depth_of((item.get("depth") or {}).get("sell")),
                    raw=as_sent(item),
                )
        return quotes
