"""The Schwab sandbox's order book: single-leg equity orders validated as Schwab refuses them, placed,
replaced and cancelled, and filled against the quote feed as prices cross (moving cash and positions).

Every public method takes the shared sandbox lock; accounts come resolved (and checked) by the state.
"""

import copy
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from .schwab_balances import INITIAL_MARGIN, open_buy_commitment
from .schwab_models import RESTING_STATUSES, SchwabAccount, service_error
from .schwab_quotes import SchwabQuotes
from .state import ClockIds

ORDER_TYPES = ("MARKET", "LIMIT", "STOP", "STOP_LIMIT")
DURATIONS = ("DAY", "GOOD_TILL_CANCEL")
INSTRUCTIONS = ("BUY", "SELL")
MAX_QUANTITY = 1_000_000


@dataclass(frozen=True)
class OrderQuery:
    """The filters of `GET .../orders`: an entered-time window, a status, at most `limit` orders."""

    since: datetime
    until: datetime
    status: str | None
    limit: int

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> "OrderQuery":
        since = _query_time(query.get("fromEnteredTime"), "fromEnteredTime")
        until = _query_time(query.get("toEnteredTime"), "toEnteredTime")
        status = query.get("status")
        raw_max = query.get("maxResults") or "3000"
        if not raw_max.isdigit() or int(raw_max) < 1:
            raise service_error(400, "Invalid maxResults.")
        return cls(since, until, status, int(raw_max))


class SchwabLedger:
    def __init__(self, *, lock: threading.RLock, clock: Callable[[], float], quotes: SchwabQuotes):
        self._lock = lock
        self._clock = clock
        self._quotes = quotes
        # Order (and activity) ids from the clock in milliseconds, 13 digits as Schwab's, growing across resets
        # and restarts: an id never names two orders, even for a Thor database that outlived a sandbox.
        self._order_ids = ClockIds(clock, per_second=1000)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._stop_triggered: set[int] = set()
            # Working orders by id, so matching on every call skips finished orders (and idle users).
            self._resting: dict[int, tuple[SchwabAccount, dict]] = {}

    def orders(self, accounts: Iterable[SchwabAccount], query: OrderQuery) -> list[dict]:
        """The accounts' orders the query selects, newest first (copies)."""
        with self._lock:
            found = [
                copy.deepcopy(order)
                for account in accounts
                for order in account.orders.values()
                if query.since <= _parse_time(order["enteredTime"]) <= query.until
                and (not query.status or order["status"] == query.status)
            ]
        found.sort(key=lambda order: order["enteredTime"], reverse=True)
        return found[: query.limit]

    def order(self, account: SchwabAccount, order_id: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._own_order(account, order_id))

    def place(self, account: SchwabAccount, body) -> int:
        with self._lock:
            order = self._new_order(account, _validated(body, self._quotes))
            self._settle_new(account, order)
            return order["orderId"]

    def replace(self, account: SchwabAccount, order_id: str, body) -> int:
        with self._lock:
            old = self._own_order(account, order_id)
            terms = _validated(body, self._quotes)
            if old["status"] not in RESTING_STATUSES:
                raise service_error(400, f"Order cannot be replaced as it is {old['status']}.")
            if terms["symbol"] != old["orderLegCollection"][0]["instrument"]["symbol"]:
                raise service_error(400, "A replacement must be for the same instrument.")
            now = self._now_text()
            old.update(status="REPLACED", cancelable=False, editable=False, closeTime=now, remainingQuantity=0)
            old["cancelTime"] = now
            new = self._new_order(account, terms)
            old["replacingOrderCollection"] = [copy.deepcopy(new)]
            self._track(account, old)
            self._settle_new(account, new)
            return new["orderId"]

    def cancel(self, account: SchwabAccount, order_id: str) -> None:
        with self._lock:
            order = self._own_order(account, order_id)
            if order["status"] not in RESTING_STATUSES:
                raise service_error(400, f"Order cannot be cancelled as it is {order['status']}.")
            order.update(status="CANCELED", cancelable=False, editable=False, closeTime=self._now_text())
            self._track(account, order)

    def _own_order(self, account: SchwabAccount, order_id: str) -> dict:
        if not order_id.isdigit() or int(order_id) not in account.orders:
            raise service_error(404, "Order not found.")
        return account.orders[int(order_id)]

    def _new_order(self, account: SchwabAccount, terms: dict) -> dict:
        order_id = self._order_ids.next()[1]
        instrument = self._quotes.find(terms["symbol"])
        if instrument is None:  # _validated refused unknown symbols; answered as it does, never a 500
            raise service_error(400, "Symbol not found.")
        order = {
            "session": "NORMAL",
            "duration": terms["duration"],
            "orderType": terms["orderType"],
            "complexOrderStrategyType": "NONE",
            "quantity": float(terms["quantity"]),
            "filledQuantity": 0.0,
            "remainingQuantity": float(terms["quantity"]),
            "requestedDestination": "AUTO",
            "destinationLinkName": "AUTO",
            "orderLegCollection": [
                {
                    "orderLegType": "EQUITY",
                    "legId": 1,
                    "instrument": {
                        "assetType": "EQUITY",
                        "cusip": self._quotes.description(terms["symbol"]).get("cusip", ""),
                        "symbol": terms["symbol"],
                        "instrumentId": instrument.token,
                    },
                    "instruction": terms["instruction"],
                    "positionEffect": "OPENING" if terms["instruction"] == "BUY" else "CLOSING",
                    "quantity": float(terms["quantity"]),
                }
            ],
            "orderStrategyType": "SINGLE",
            "orderId": order_id,
            "cancelable": True,
            "editable": True,
            "status": "WORKING",
            "enteredTime": self._now_text(),
            "accountNumber": int(account.number),
        }
        for name in ("price", "stopPrice"):
            if name in terms:
                order[name] = terms[name]
        account.orders[order_id] = order
        self._track(account, order)
        return order

    def _settle_new(self, account: SchwabAccount, order: dict) -> None:
        shortfall = self._shortfall(account, order)
        if shortfall:
            order.update(status="REJECTED", statusDescription=shortfall, cancelable=False, editable=False)
            order["closeTime"] = order["enteredTime"]
            order["remainingQuantity"] = 0.0
            self._track(account, order)
            return
        self._match(account, order)

    def _shortfall(self, account: SchwabAccount, order: dict) -> str | None:
        leg = order["orderLegCollection"][0]
        symbol = leg["instrument"]["symbol"]
        quantity = leg["quantity"]
        if leg["instruction"] == "SELL":
            held = account.positions.get(symbol, [0, 0])[0]
            reserved = sum(
                other["remainingQuantity"]
                for other in account.orders.values()
                if other is not order
                and other["status"] in RESTING_STATUSES
                and other["orderLegCollection"][0]["instruction"] == "SELL"
                and other["orderLegCollection"][0]["instrument"]["symbol"] == symbol
            )
            if quantity > held - reserved:
                return f"You cannot sell {quantity:g} shares of {symbol}: the account holds {held - reserved:g}."
            return None
        unit = order.get("price") or order.get("stopPrice") or self._quotes.price(symbol)
        long_value = sum(max(held[0], 0) * self._quotes.price(name) for name, held in account.positions.items())
        committed = open_buy_commitment(account, self._quotes, exclude=order)
        if account.kind == "MARGIN":
            free = account.cash + long_value - (long_value + committed) * INITIAL_MARGIN
            if unit * quantity * INITIAL_MARGIN > free:
                return "The order exceeds the account's buying power."
        elif unit * quantity > account.cash - committed:
            return "The order exceeds the cash available for trading."
        return None

    def match_resting_orders(self) -> None:
        with self._lock:
            for account, order in list(self._resting.values()):
                self._match(account, order)

    def _track(self, account: SchwabAccount, order: dict) -> None:
        if order["status"] in RESTING_STATUSES:
            self._resting[order["orderId"]] = (account, order)
        else:
            self._resting.pop(order["orderId"], None)

    def _match(self, account: SchwabAccount, order: dict) -> None:
        leg = order["orderLegCollection"][0]
        price = self._quotes.price(leg["instrument"]["symbol"])
        if price <= 0:
            return
        buying = leg["instruction"] == "BUY"
        order_type = order["orderType"]
        if order_type in ("STOP", "STOP_LIMIT") and order["orderId"] not in self._stop_triggered:
            triggered = price >= order["stopPrice"] if buying else price <= order["stopPrice"]
            if not triggered:
                return
            self._stop_triggered.add(order["orderId"])
        if order_type in ("LIMIT", "STOP_LIMIT"):
            crossed = price <= order["price"] if buying else price >= order["price"]
            if not crossed:
                return
        self._fill(account, order, price)

    def _fill(self, account: SchwabAccount, order: dict, price: float) -> None:
        leg = order["orderLegCollection"][0]
        symbol, quantity = leg["instrument"]["symbol"], order["remainingQuantity"]
        now = self._now_text()
        order.update(
            status="FILLED",
            filledQuantity=order["filledQuantity"] + quantity,
            remainingQuantity=0.0,
            cancelable=False,
            editable=False,
            closeTime=now,
        )
        order["orderActivityCollection"] = [
            {
                "activityType": "EXECUTION",
                "activityId": self._order_ids.next()[1],
                "executionType": "FILL",
                "quantity": quantity,
                "orderRemainingQuantity": 0.0,
                "executionLegs": [
                    {"legId": 1, "quantity": quantity, "mismarkedQuantity": 0.0, "price": price, "time": now}
                ],
            }
        ]
        self._track(account, order)
        signed = quantity if leg["instruction"] == "BUY" else -quantity
        held = account.positions.setdefault(symbol, [0.0, 0.0])
        if signed > 0:
            total = held[0] + signed
            held[1] = round((held[0] * held[1] + signed * price) / total, 4) if total else 0.0
            held[0] = total
        else:
            held[0] += signed
        if held[0] == 0:
            del account.positions[symbol]
        account.cash = round(account.cash - signed * price, 2)

    def _now_text(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")


def _query_time(raw: str | None, name: str) -> datetime:
    if not raw:
        raise service_error(400, f"`{name}` is required.")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise service_error(400, f"`{name}` must be an ISO-8601 time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _validated(body, quotes: SchwabQuotes) -> dict:
    """The terms of a single-leg equity order, refused with 400 as Schwab would."""
    if not isinstance(body, Mapping):
        raise service_error(400, "The order must be a JSON object.")
    if body.get("orderStrategyType", "SINGLE") != "SINGLE":
        raise service_error(400, "Only SINGLE orders are supported by the sandbox.")
    if body.get("session", "NORMAL") != "NORMAL":
        raise service_error(400, "Only the NORMAL session is supported by the sandbox.")
    order_type = body.get("orderType")
    if order_type not in ORDER_TYPES:
        raise service_error(400, f"orderType must be one of {', '.join(ORDER_TYPES)}.")
    duration = body.get("duration")
    if duration not in DURATIONS:
        raise service_error(400, f"duration must be one of {', '.join(DURATIONS)}.")
    legs = body.get("orderLegCollection")
    if not isinstance(legs, list) or len(legs) != 1 or not isinstance(legs[0], Mapping):
        raise service_error(400, "An order needs exactly one leg.")
    leg = legs[0]
    if leg.get("instruction") not in INSTRUCTIONS:
        raise service_error(400, f"instruction must be one of {', '.join(INSTRUCTIONS)}.")
    instrument = leg.get("instrument")
    if not isinstance(instrument, Mapping) or instrument.get("assetType") != "EQUITY":
        raise service_error(400, "Only EQUITY instruments are supported by the sandbox.")
    symbol = instrument.get("symbol")
    if not isinstance(symbol, str) or quotes.find(symbol) is None:
        raise service_error(400, "Symbol not found.")
    quantity = leg.get("quantity")
    if (
        isinstance(quantity, bool)
        or not isinstance(quantity, int | float)
        or quantity <= 0
        or quantity != int(quantity)
        or quantity > MAX_QUANTITY
    ):
        raise service_error(400, "quantity must be a positive whole number of shares.")
    terms = {
        "symbol": symbol,
        "instruction": leg["instruction"],
        "quantity": int(quantity),
        "orderType": order_type,
        "duration": duration,
    }
    for name, needed in (("price", ("LIMIT", "STOP_LIMIT")), ("stopPrice", ("STOP", "STOP_LIMIT"))):
        if order_type not in needed:
            continue
        value = body.get(name)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e7 or value != value:
            raise service_error(400, f"{name} must be a positive number for a {order_type} order.")
        terms[name] = float(value)
    return terms
