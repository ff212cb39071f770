"""In-memory Kite Connect: per-user orders, trades, positions, margins and quotes, and its logins (.kite_sessions).

Every public method takes the shared sandbox lock, so the HTTP threads, the ticker thread and a test
inspecting the state all see one consistent picture.
"""

import copy
import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from .kite_autoslice import REJECTED_SLICE_MESSAGE, above_freeze_error, error_child, slice_sizes
from .kite_ledger import (
    add_fill_to_position,
    charge_margins,
    find_or_open_position,
    margin_segment,
    mark_to_market,
    new_order_record,
    order_terms,
    price_band_require,
)
from .kite_models import (
    DEMO_USERS,
    KiteAccount,
    KiteApp,
    KiteOrder,
    Session,
    input_error,
    seed_account,
)
from .kite_order_input import new_order_checked, variety_require
from .kite_order_limits import OrderRate, modification_check
from .kite_quotes import allowed_band, kite_quote
from .kite_sessions import IST, KiteSessions, kite_time
from .market import Instrument, Market, load_json_fixture
from .state import ClockIds, PostbackSender

MARGIN_SEGMENTS = ("equity", "commodity")
RESTING_STATUSES = ("OPEN", "TRIGGER PENDING")
# Intermediate validation states are in the history but, as on Kite, are not posted back.
POSTBACK_STATUSES = ("OPEN", "TRIGGER PENDING", "COMPLETE", "CANCELLED", "REJECTED")
MAX_QUOTE_INSTRUMENTS = {"quote": 500, "ohlc": 1000, "ltp": 1000}


class KiteState:
    def __init__(
        self,
        *,
        lock: threading.RLock,
        clock: Callable[[], float],
        market: Market,
        postbacks: PostbackSender,
        apps: Iterable[KiteApp | Mapping] = (),
    ):
        self._lock = lock
        self._clock = clock
        self.market = market
        self._postbacks = postbacks
        initial_apps = [app if isinstance(app, KiteApp) else KiteApp.from_mapping(app) for app in apps]
        self.logins = KiteSessions(lock=lock, clock=clock, accounts=lambda: self.accounts, apps=initial_apps)
        # Order ids as Kite's: the day (IST) and a number that only grows, across resets and restarts (from
        # the time of day in 100 us units, at most 864,000,000: nine digits), so a late postback never names a
        # newer order and a restarted sandbox never repeats an id Thor has stored.
        self._ids = ClockIds(clock, per_second=10_000, origin=_ist_midnight)
        self._postback_template = load_json_fixture("postback.json")
        self.reset()

    def reset(self) -> None:
        """Back to the state it started in: only the apps it was started with, fresh demo accounts,
        no request tokens, sessions or orders."""
        with self._lock:
            self.accounts: dict[str, KiteAccount] = {user.user_id: seed_account(user) for user in DEMO_USERS}
            self.logins.reset()
            # Open and trigger-pending orders by id, so matching on every call skips finished orders.
            self._resting: dict[str, KiteOrder] = {}
            self.order_rate = OrderRate()

    # --- apps and login (brokers.sandbox.kite_sessions) -------------------------------------

    @property
    def apps(self) -> dict[str, KiteApp]:
        return self.logins.apps

    @property
    def sessions(self) -> dict[str, Session]:
        return self.logins.sessions

    def register_app(self, app: KiteApp) -> None:
        self.logins.register_app(app)

    def app(self, api_key: str | None) -> KiteApp | None:
        return self.logins.app(api_key)

    def login(self, api_key: str, user_id: str, password: str) -> str | None:
        return self.logins.login(api_key, user_id, password)

    def create_session(self, api_key: str, request_token: str, checksum: str) -> dict:
        return self.logins.create_session(api_key, request_token, checksum)

    def invalidate_session(self, api_key: str, access_token: str) -> None:
        self.logins.invalidate_session(api_key, access_token)

    def expire_sessions(self, user_id: str | None = None) -> None:
        self.logins.expire_sessions(user_id)

    def authenticate(self, authorization: str | None) -> Session:
        return self.logins.authenticate(authorization)

    # --- reads ----------------------------------------------------------------------------

    def profile(self, session: Session) -> dict:
        with self._lock:
            return copy.deepcopy(self.accounts[session.user_id].profile)

    def margins(self, session: Session, segment: str | None = None) -> dict:
        if segment is not None and segment not in MARGIN_SEGMENTS:
            raise input_error("Invalid segment.")
        with self._lock:
            margins = copy.deepcopy(self.accounts[session.user_id].margins)
        return margins[segment] if segment else margins

    def holdings(self, session: Session) -> list[dict]:
        with self._lock:
            holdings = copy.deepcopy(self.accounts[session.user_id].holdings)
        for holding in holdings:
            instrument = self.market.find(f"{holding['exchange']}:{holding['tradingsymbol']}")
            if instrument is None:
                continue
            last_price = self.market.price(instrument)
            holding["last_price"] = last_price
            holding["pnl"] = round((last_price - holding["average_price"]) * holding["quantity"], 2)
            holding["day_change"] = round(last_price - holding["close_price"], 2)
            if holding["close_price"]:
                holding["day_change_percentage"] = holding["day_change"] / holding["close_price"] * 100
        return holdings

    def positions(self, session: Session) -> dict:
        with self._lock:
            positions = copy.deepcopy(self.accounts[session.user_id].positions)
        for position in positions["net"] + positions["day"]:
            instrument = self.market.find(f"{position['exchange']}:{position['tradingsymbol']}")
            if instrument is not None:
                mark_to_market(position, self.market.price(instrument))
        return positions

    def orders(self, session: Session) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(order.current) for order in self.accounts[session.user_id].orders.values()]

    def order_history(self, session: Session, order_id: str) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._own_order(session, order_id).history)

    def order_trades(self, session: Session, order_id: str) -> list[dict]:
        with self._lock:
            self._own_order(session, order_id)
            trades = self.accounts[session.user_id].trades
            return [copy.deepcopy(trade) for trade in trades if trade["order_id"] == order_id]

    def trades(self, session: Session) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self.accounts[session.user_id].trades)

    def quotes(self, references: list[str], mode: str) -> dict[str, dict]:
        """Quotes keyed by the reference as asked ("NSE:INFY" or a token); unknown ones are left out."""
        if not references:
            raise input_error("No instruments specified.")
        if len(references) > MAX_QUOTE_INSTRUMENTS[mode]:
            raise input_error(f"Too many instruments: at most {MAX_QUOTE_INSTRUMENTS[mode]} per call.")
        self.match_resting_orders()
        quotes = {}
        for reference in references:
            instrument = self.market.find(reference)
            if instrument is not None:
                quotes[reference] = kite_quote(self.market, instrument, mode, kite_time(self._now()))
        return quotes

    # --- orders ---------------------------------------------------------------------------

    def place_order(self, session: Session, variety: str, params: Mapping[str, str]) -> str:
        self.order_rate.admit(session.user_id)
        instrument, terms = new_order_checked(self.market, variety, params)
        refusal = above_freeze_error(instrument, terms["quantity"])
        if refusal is not None:
            raise refusal
        with self._lock:
            return self._order_enter(session, variety, params, instrument, terms)

    def place_autoslice(
        self, session: Session, variety: str, params: Mapping[str, str], rejected: Mapping[int, str]
    ) -> dict:
        """Kite's autoslice (kite_autoslice): the parent's id and each slice's order id or error; `rejected`
        (1-based slice numbers, with messages) answer errors, as a slice the OMS refused."""
        self.order_rate.admit(session.user_id)
        instrument, terms = new_order_checked(self.market, variety, params)
        sizes = slice_sizes(instrument, terms["quantity"])
        with self._lock:
            parent_id = self._next_id()
            children = []
            for number, size in enumerate(sizes, start=1):
                if number in rejected:
                    children.append(error_child(rejected[number] or REJECTED_SLICE_MESSAGE))
                    continue
                sliced = {**terms, "quantity": size}
                children.append({"order_id": self._order_enter(session, variety, params, instrument, sliced)})
            return {"order_id": parent_id, "children": children}

    def _order_enter(
        self, session: Session, variety: str, params: Mapping[str, str], instrument: Instrument, terms: dict
    ) -> str:
        """One order into the user's book (validated, with the lock held): its id."""
        account = self.accounts[session.user_id]
        order_id = self._next_id()
        now = kite_time(self._now())
        record = new_order_record(
            user_id=account.user_id, order_id=order_id, now=now, variety=variety, instrument=instrument, params=params
        )
        record.update(terms, pending_quantity=terms["quantity"])
        order = KiteOrder(user_id=account.user_id, api_key=session.api_key, history=[record])
        account.orders[order_id] = order
        self._transition(order, "VALIDATION PENDING")
        shortfall = self._margin_shortfall(account, instrument, record)
        if shortfall:
            self._transition(order, "REJECTED", status_message=shortfall, status_message_raw=shortfall)
            return order_id
        self._transition(order, "OPEN PENDING")
        self._transition(
            order,
            "TRIGGER PENDING" if record["order_type"] in ("SL", "SL-M") else "OPEN",
            exchange_order_id=f"13{order_id[1:]}",
            exchange_timestamp=now,
        )
        self._match_order(account, order)
        return order_id

    def modify_order(self, session: Session, variety: str, order_id: str, params: Mapping[str, str]) -> str:
        self.order_rate.admit(session.user_id)
        variety_require(variety)
        with self._lock:
            account = self.accounts[session.user_id]
            order = self._own_order(session, order_id)
            current = order.current
            if current["status"] not in RESTING_STATUSES:
                raise input_error(f"Order cannot be modified as it is {current['status']}.")
            modification_check(order.history)
            terms = order_terms(params, defaults=current)
            instrument = self.market.find(f"{current['exchange']}:{current['tradingsymbol']}")
            if instrument is not None:
                price_band_require(terms, allowed_band(self.market, instrument))
            self._transition(order, "MODIFY VALIDATION PENDING")
            self._transition(order, "MODIFY PENDING")
            self._transition(order, "MODIFIED", modified=True, pending_quantity=terms["quantity"], **terms)
            self._transition(order, "TRIGGER PENDING" if terms["order_type"] in ("SL", "SL-M") else "OPEN")
            self._match_order(account, order)
            return order_id

    def cancel_order(self, session: Session, variety: str, order_id: str) -> str:
        self.order_rate.admit(session.user_id)
        variety_require(variety)
        with self._lock:
            order = self._own_order(session, order_id)
            current = order.current
            if current["status"] not in RESTING_STATUSES:
                raise input_error(f"Order cannot be cancelled as it is {current['status']}.")
            self._transition(order, "CANCEL PENDING")
            self._transition(order, "CANCELLED", cancelled_quantity=current["pending_quantity"])
            return order_id

    def match_resting_orders(self) -> None:
        """Fill or trigger every resting order the current prices cross."""
        with self._lock:
            for order in list(self._resting.values()):
                self._match_order(self.accounts[order.user_id], order)

    def _own_order(self, session: Session, order_id: str) -> KiteOrder:
        order = self.accounts[session.user_id].orders.get(order_id)
        if order is None:
            raise input_error("Couldn't find that `order_id`.")
        return order

    def _margin_shortfall(self, account: KiteAccount, instrument: Instrument, record: dict) -> str | None:
        if record["transaction_type"] != "BUY":
            return None
        unit_price = record["price"] or record["trigger_price"] or self.market.price(instrument)
        required = unit_price * record["quantity"] * instrument.multiplier
        available = account.margins[margin_segment(instrument.exchange)]["net"]
        if required <= available:
            return None
        return (
            f"Insufficient funds. Required margin is {required:.2f} but available margin is "
            f"{available:.2f}. Check the orderbook for open orders."
        )

    def _match_order(self, account: KiteAccount, order: KiteOrder) -> None:
        current = order.current
        instrument = self.market.find(f"{current['exchange']}:{current['tradingsymbol']}")
        if instrument is None:
            return
        price = self.market.price(instrument)
        buying = current["transaction_type"] == "BUY"
        if current["status"] == "TRIGGER PENDING":
            triggered = price >= current["trigger_price"] if buying else price <= current["trigger_price"]
            if not triggered:
                return
            if current["order_type"] == "SL":
                self._transition(order, "OPEN")
        order_type = order.current["order_type"]
        if order_type == "LIMIT" or (order_type == "SL" and order.current["status"] == "OPEN"):
            crossed = price <= current["price"] if buying else price >= current["price"]
            if not crossed:
                return
        self._fill(account, order, instrument, price)

    def _fill(self, account: KiteAccount, order: KiteOrder, instrument: Instrument, price: float) -> None:
        current = order.current
        quantity = current["pending_quantity"]
        now = kite_time(self._now())
        self._transition(
            order,
            "COMPLETE",
            average_price=price,
            filled_quantity=current["filled_quantity"] + quantity,
            pending_quantity=0,
            exchange_timestamp=now,
        )
        account.trades.append(
            {
                "trade_id": self._next_id()[6:],
                "order_id": current["order_id"],
                "exchange": current["exchange"],
                "tradingsymbol": current["tradingsymbol"],
                "instrument_token": current["instrument_token"],
                "product": current["product"],
                "average_price": price,
                "quantity": quantity,
                "exchange_order_id": current["exchange_order_id"],
                "transaction_type": current["transaction_type"],
                "fill_timestamp": now,
                "order_timestamp": now[-8:],
                "exchange_timestamp": now,
            }
        )
        signed_quantity = quantity if current["transaction_type"] == "BUY" else -quantity
        for bucket in ("net", "day"):
            position = find_or_open_position(account.positions[bucket], current, multiplier=instrument.multiplier)
            add_fill_to_position(position, signed_quantity, price)
            mark_to_market(position, price)
        charge_margins(
            account.margins[margin_segment(instrument.exchange)], signed_quantity * price * instrument.multiplier
        )

    def _transition(self, order: KiteOrder, status: str, **changes) -> None:
        record = {**copy.deepcopy(order.current), **changes, "status": status}
        if status != "PUT ORDER REQ RECEIVED":
            record["exchange_update_timestamp"] = kite_time(self._now())
        order.history.append(record)
        if status in RESTING_STATUSES:
            self._resting[record["order_id"]] = order
        else:
            self._resting.pop(record["order_id"], None)
        if status in POSTBACK_STATUSES:
            self._send_postback(order)

    def _send_postback(self, order: KiteOrder) -> None:
        app = self.apps.get(order.api_key)
        if app is None or not app.postback_url:
            return
        current = order.current
        payload = {key: copy.deepcopy(current.get(key)) for key in self._postback_template}
        checksum_source = current["order_id"] + current["order_timestamp"] + app.api_secret
        payload.update(
            user_id=current["placed_by"],
            unfilled_quantity=current["pending_quantity"],
            app_id=app.app_id,
            checksum=hashlib.sha256(checksum_source.encode()).hexdigest(),
        )
        self._postbacks.send(app.postback_url, payload)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), IST)

    def _next_id(self) -> str:
        midnight, sequence = self._ids.next()
        return f"{datetime.fromtimestamp(midnight, IST):%y%m%d}{sequence:09d}"


def _ist_midnight(timestamp: float) -> float:
    moment = datetime.fromtimestamp(timestamp, IST)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
