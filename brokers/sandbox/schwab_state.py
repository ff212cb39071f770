"""In-memory Schwab: apps, logins, rotating tokens, MARGIN and CASH accounts, orders that fill as prices move.

What it keeps to from the real Trader API, because Thor depends on it:
- Authorization codes end in "@", work once and only for the redirect URI they were issued for.
- The token endpoint checks HTTP Basic client credentials and the exact redirect URI. A refresh
  rotates the refresh token, and the tokens it replaces stop working (so two refreshers of one
  connection lock one of them out, as on Schwab); refresh tokens die seven days after the login.
- Accounts are addressed by a hash, never the plain number; orders are placed with 201 + Location.

Lifetimes (`access_seconds`, `refresh_seconds`, `code_seconds`) are plain attributes tests may set.
Every public method takes the shared sandbox lock.
"""

import copy
import hashlib
import hmac
import secrets
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .market import US_EXCHANGES, Instrument, Market, read_csv_fixture
from .state import ClockIds

ACCESS_SECONDS = 1800
REFRESH_SECONDS = 7 * 24 * 3600
CODE_SECONDS = 60
US_EQUITIES_CSV = "schwab/us_equities.csv"
DEMO_USERNAME, DEMO_PASSWORD = "sandbox", "sandbox"
ORDER_TYPES = ("MARKET", "LIMIT", "STOP", "STOP_LIMIT")
DURATIONS = ("DAY", "GOOD_TILL_CANCEL")
INSTRUCTIONS = ("BUY", "SELL")
RESTING_STATUSES = ("WORKING",)
MAX_QUANTITY = 1_000_000
# Reg T for the margin account: half of a long position's value is the trader's, a quarter must stay.
INITIAL_MARGIN, MAINTENANCE_MARGIN = 0.5, 0.25


class SchwabError(Exception):
    """An API refusal: `body` is sent as JSON with `status`."""

    def __init__(self, status: int, body: dict):
        super().__init__(str(body))
        self.status = status
        self.body = body


def service_error(status: int, message: str) -> SchwabError:
    """The spec's ServiceError shape: {"message", "errors": [...]}."""
    return SchwabError(status, {"message": message, "errors": [message]})


def oauth_error(status: int, error: str, description: str) -> SchwabError:
    return SchwabError(status, {"error": error, "error_description": description})


def us_instruments() -> list[Instrument]:
    """The US equities the Schwab sandbox trades, priced by the shared market like Kite's."""
    return [
        Instrument(
            token=zlib.crc32(f"{row['exchange']}:{row['symbol']}".encode()) | 1 << 33,
            exchange=row["exchange"],
            tradingsymbol=row["symbol"],
            base_price=float(row["base_price"]),
            tick_size=0.01,
        )
        for row in read_csv_fixture(US_EQUITIES_CSV)
    ]


def us_descriptions() -> dict[str, dict]:
    return {row["symbol"]: row for row in read_csv_fixture(US_EQUITIES_CSV)}


@dataclass(frozen=True)
class SchwabApp:
    client_id: str
    client_secret: str
    redirect_uri: str

    @classmethod
    def from_mapping(cls, data: Mapping) -> "SchwabApp":
        if not isinstance(data, Mapping):
            raise ValueError("An app must be a JSON object")
        missing = [
            name
            for name in ("client_id", "client_secret", "redirect_uri")
            if not isinstance(data.get(name), str) or not data.get(name)
        ]
        if missing:
            raise ValueError(f"Missing fields: {', '.join(missing)}")
        if not data["redirect_uri"].startswith(("http://", "https://")):
            raise ValueError("`redirect_uri` must be an http(s) URL")
        return cls(data["client_id"], data["client_secret"], data["redirect_uri"])


@dataclass
class SchwabAccount:
    number: str
    hash_value: str
    kind: str  # MARGIN | CASH
    cash: float
    # symbol -> [quantity, average price]
    positions: dict[str, list[float]]
    initial: dict = field(default_factory=dict)
    orders: dict[int, dict] = field(default_factory=dict)


@dataclass
class SchwabUser:
    username: str
    password: str
    customer_id: str
    accounts: list[SchwabAccount]


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    username: str
    expires_at: float
    used: bool = False


@dataclass
class Grant:
    """One login of one user into one app: what Thor calls a connection."""

    grant_id: str
    client_id: str
    username: str
    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float
    refreshes: int = 0


class SchwabState:
    def __init__(
        self,
        *,
        lock: threading.RLock,
        clock: Callable[[], float],
        market: Market,
        apps: Iterable[SchwabApp | Mapping] = (),
    ):
        self._lock = lock
        self._clock = clock
        self.market = market
        self._initial_apps = [app if isinstance(app, SchwabApp) else SchwabApp.from_mapping(app) for app in apps]
        self._descriptions = us_descriptions()
        # Order (and activity) ids from the clock in milliseconds, 13 digits as Schwab's, growing across resets
        # and restarts: an id never names two orders, even for a Thor database that outlived a sandbox.
        self._order_ids = ClockIds(clock, per_second=1000)
        # Fixed, so an account keeps its hash across sandbox restarts, as it does at Schwab.
        self._hash_salt = b"thor-sandbox-schwab-account-hash"
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.access_seconds = ACCESS_SECONDS
            self.refresh_seconds = REFRESH_SECONDS
            self.code_seconds = CODE_SECONDS
            self.apps: dict[str, SchwabApp] = {app.client_id: app for app in self._initial_apps}
            self.users: dict[str, SchwabUser] = {}
            self._new_user(DEMO_USERNAME, DEMO_PASSWORD)
            self.codes: dict[str, _Code] = {}
            self.grants: dict[str, Grant] = {}
            self._by_access: dict[str, Grant] = {}
            self._by_refresh: dict[str, Grant] = {}
            # Every refresh token ever issued, spent ones included, so a refused late refresh still
            # counts against the connection it came from.
            self._refresh_owner: dict[str, str] = {}
            self._stop_triggered: set[int] = set()
            # Working orders by id, so matching on every call skips finished orders (and idle users).
            self._resting: dict[int, tuple[SchwabAccount, dict]] = {}
            self.refresh_calls: Counter[str] = Counter()

    # --- users and accounts ---------------------------------------------------------------

    def _new_user(self, username: str, password: str) -> SchwabUser:
        seed = zlib.crc32(username.encode())
        margin_number = f"{(seed % 9_000_000) + 10_000_000:08d}"
        cash_number = f"{((seed >> 3) % 9_000_000) + 20_000_000:08d}"
        user = SchwabUser(
            username=username,
            password=password,
            customer_id=hashlib.sha256(f"schwab-customer:{username}".encode()).hexdigest()[:32].upper(),
            accounts=[
                self._new_account(margin_number, "MARGIN", 100_000.0, {"AAPL": [10, 180.0], "SPY": [5, 500.0]}),
                self._new_account(cash_number, "CASH", 25_000.0, {"MSFT": [8, 400.0]}),
            ],
        )
        self.users[username] = user
        return user

    def _new_account(self, number: str, kind: str, cash: float, positions: dict) -> SchwabAccount:
        digest = hmac.new(self._hash_salt, number.encode(), hashlib.sha256).hexdigest().upper()
        account = SchwabAccount(number, digest, kind, cash, {symbol: list(held) for symbol, held in positions.items()})
        account.initial = self._balances(account)["initial"]
        return account

    def account_for(self, grant: Grant, hash_value: str) -> SchwabAccount:
        with self._lock:
            for account in self.users[grant.username].accounts:
                if hmac.compare_digest(account.hash_value.encode(), hash_value.encode()):
                    return account
        raise service_error(404, "Invalid account number.")

    # --- apps, login and tokens -----------------------------------------------------------

    def register_app(self, app: SchwabApp) -> None:
        with self._lock:
            self.apps[app.client_id] = app

    def app(self, client_id: str | None) -> SchwabApp | None:
        with self._lock:
            return self.apps.get(client_id or "")

    def login(self, client_id: str, redirect_uri: str, username: str, password: str) -> str | None:
        """A fresh single-use code ending in "@", or None when the credentials are wrong."""
        with self._lock:
            user = self.users.get(username.strip())
            if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
                return None
            code = f"C0.{secrets.token_urlsafe(32)}@"
            self.codes[code] = _Code(client_id, redirect_uri, user.username, self._clock() + self.code_seconds)
            return code

    def _check_client(self, client_id: str, client_secret: str) -> SchwabApp:
        app = self.apps.get(client_id)
        if app is None or not hmac.compare_digest(app.client_secret.encode(), client_secret.encode()):
            raise oauth_error(401, "invalid_client", "Unauthorized")
        return app

    def grant_code(self, client_id: str, client_secret: str, code: str, redirect_uri: str) -> dict:
        with self._lock:
            app = self._check_client(client_id, client_secret)
            issued = self.codes.get(code)
            if issued is None or issued.used or issued.client_id != client_id or issued.expires_at < self._clock():
                raise oauth_error(400, "invalid_grant", "The authorization code is invalid or has expired.")
            # Exact comparison: a trailing slash or another scheme case is another URI.
            if redirect_uri != issued.redirect_uri or redirect_uri != app.redirect_uri:
                raise oauth_error(400, "invalid_grant", "The redirect_uri does not match.")
            issued.used = True
            grant = Grant(
                grant_id=secrets.token_hex(8),
                client_id=client_id,
                username=issued.username,
                access_token="",
                access_expires_at=0,
                refresh_token="",
                refresh_expires_at=self._clock() + self.refresh_seconds,
            )
            self.grants[grant.grant_id] = grant
            return self._issue(grant)

    def grant_refresh(self, client_id: str, client_secret: str, refresh_token: str) -> dict:
        with self._lock:
            self._check_client(client_id, client_secret)
            grant = self._by_refresh.get(refresh_token)
            owner = self._refresh_owner.get(refresh_token)
            if owner is not None:
                self.refresh_calls[owner] += 1
            if grant is None or grant.client_id != client_id or grant.refresh_token != refresh_token:
                raise oauth_error(400, "refresh_token_authentication_error", "Failed refresh token authentication")
            if grant.refresh_expires_at < self._clock():
                raise oauth_error(400, "refresh_token_authentication_error", "The refresh token has expired.")
            grant.refreshes += 1
            return self._issue(grant)

    def _issue(self, grant: Grant) -> dict:
        """New access and refresh tokens for the grant; the ones they replace stop working at once."""
        self._by_access.pop(grant.access_token, None)
        self._by_refresh.pop(grant.refresh_token, None)
        now = self._clock()
        grant.access_token = f"I0.{secrets.token_urlsafe(32)}@"
        grant.access_expires_at = now + self.access_seconds
        grant.refresh_token = secrets.token_urlsafe(48)
        self._by_access[grant.access_token] = grant
        self._by_refresh[grant.refresh_token] = grant
        self._refresh_owner[grant.refresh_token] = grant.grant_id
        return {
            "expires_in": self.access_seconds,
            "token_type": "Bearer",
            "scope": "api",
            "refresh_token": grant.refresh_token,
            "access_token": grant.access_token,
            "id_token": secrets.token_urlsafe(32),
        }

    def seed_grants(self, client_id: str, count: int, *, access_seconds: float | None = None) -> list[dict]:
        """`count` logins of distinct users straight into tokens (for benchmarks that need thousands)."""
        if client_id not in self.apps:
            raise ValueError("Unknown `client_id`.")
        seeded = []
        with self._lock:
            start = len(self.users)
            for index in range(count):
                user = self._new_user(f"bench-{start + index}", secrets.token_hex(8))
                grant = Grant(secrets.token_hex(8), client_id, user.username, "", 0, "", 0)
                grant.refresh_expires_at = self._clock() + self.refresh_seconds
                self.grants[grant.grant_id] = grant
                tokens = self._issue(grant)
                if access_seconds is not None:
                    grant.access_expires_at = self._clock() + access_seconds
                    tokens["expires_in"] = access_seconds
                seeded.append(
                    {
                        "grant_id": grant.grant_id,
                        "customer_id": user.customer_id,
                        "refresh_expires_in": self.refresh_seconds,
                        "accounts": [
                            {"accountNumber": account.number, "hashValue": account.hash_value, "type": account.kind}
                            for account in user.accounts
                        ],
                        **tokens,
                    }
                )
        return seeded

    def refresh_counts(self) -> dict:
        with self._lock:
            by_grant = {grant_id: self.refresh_calls.get(grant_id, 0) for grant_id in self.grants}
        histogram = Counter(str(count) for count in by_grant.values())
        return {"total": sum(by_grant.values()), "by_grant": by_grant, "histogram": dict(histogram)}

    def expire(self, what: str, grant_id: str | None = None) -> int:
        """Make access or refresh tokens expire now (every grant, or one); answers how many."""
        if what not in ("access", "refresh"):
            raise ValueError("`what` must be access or refresh")
        with self._lock:
            grants = [self.grants[grant_id]] if grant_id in self.grants else list(self.grants.values())
            if grant_id is not None and grant_id not in self.grants:
                raise ValueError("Unknown `grant_id`.")
            for grant in grants:
                setattr(grant, f"{what}_expires_at", self._clock() - 1)
            return len(grants)

    def authenticate(self, authorization: str | None) -> Grant:
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            grant = self._by_access.get(token.strip())
            if scheme.lower() != "bearer" or grant is None:
                raise service_error(401, "Client not authorized.")
            if grant.access_expires_at < self._clock():
                raise service_error(401, "The access token has expired.")
            return grant

    # --- reads ----------------------------------------------------------------------------

    def user_preference(self, grant: Grant) -> dict:
        with self._lock:
            user = self.users[grant.username]
            return {
                "accounts": [
                    {
                        "accountNumber": account.number,
                        "primaryAccount": index == 0,
                        "type": "BROKERAGE",
                        "nickName": f"{account.kind.title()} account",
                        "displayAcctId": f"...{account.number[-3:]}",
                        "autoPositionEffect": False,
                        "accountColor": "Green" if index == 0 else "Blue",
                    }
                    for index, account in enumerate(user.accounts)
                ],
                "streamerInfo": [
                    {
                        "streamerSocketUrl": "wss://streamer-api.schwab.com/ws",
                        "schwabClientCustomerId": user.customer_id,
                        "schwabClientCorrelId": secrets.token_hex(16),
                        "schwabClientChannel": "N9",
                        "schwabClientFunctionId": "APIAPP",
                    }
                ],
                "offers": [{"level2Permissions": True, "mktDataPermission": "NP"}],
            }

    def account_numbers(self, grant: Grant) -> list[dict]:
        with self._lock:
            return [
                {"accountNumber": account.number, "hashValue": account.hash_value}
                for account in self.users[grant.username].accounts
            ]

    def accounts(self, grant: Grant, fields: str) -> list[dict]:
        self.match_resting_orders()
        with self._lock:
            return [self._account_payload(account, fields) for account in self.users[grant.username].accounts]

    def account(self, grant: Grant, hash_value: str, fields: str) -> dict:
        self.match_resting_orders()
        with self._lock:
            return self._account_payload(self.account_for(grant, hash_value), fields)

    def _account_payload(self, account: SchwabAccount, fields: str) -> dict:
        balances = self._balances(account)
        securities = {
            "type": account.kind,
            "accountNumber": account.number,
            "roundTrips": 0,
            "isDayTrader": False,
            "isClosingOnlyRestricted": False,
            "pfcbFlag": False,
            "initialBalances": copy.deepcopy(account.initial),
            "currentBalances": balances["current"],
            "projectedBalances": balances["projected"],
        }
        if "positions" in fields.split(","):
            securities["positions"] = [self._position(symbol, held) for symbol, held in account.positions.items()]
        liquidation = balances["current"]["liquidationValue"]
        return {
            "securitiesAccount": securities,
            "aggregatedBalance": {"currentLiquidationValue": liquidation, "liquidationValue": liquidation},
        }

    def _price(self, symbol: str) -> float:
        instrument = self.find(symbol)
        return self.market.price(instrument) if instrument else 0.0

    def find(self, symbol: str) -> Instrument | None:
        for exchange in US_EXCHANGES:
            instrument = self.market.find(f"{exchange}:{symbol}")
            if instrument is not None:
                return instrument
        return None

    def _position(self, symbol: str, held: list[float]) -> dict:
        quantity, average = held
        price = self._price(symbol)
        close = (self.find(symbol).base_price) if self.find(symbol) else price
        description = self._descriptions.get(symbol, {})
        long_quantity, short_quantity = max(quantity, 0), max(-quantity, 0)
        market_value = round(quantity * price, 2)
        return {
            "shortQuantity": short_quantity,
            "averagePrice": average,
            "currentDayProfitLoss": round((price - close) * quantity, 2),
            "currentDayProfitLossPercentage": round((price - close) / close * 100, 2) if close else 0.0,
            "longQuantity": long_quantity,
            "settledLongQuantity": long_quantity,
            "settledShortQuantity": short_quantity,
            "instrument": {
                "assetType": "EQUITY",
                "cusip": description.get("cusip", ""),
                "symbol": symbol,
                "description": description.get("description", symbol),
                "instrumentId": self.find(symbol).token if self.find(symbol) else 0,
                "netChange": round(price - close, 4),
            },
            "marketValue": market_value,
            "maintenanceRequirement": round(market_value * MAINTENANCE_MARGIN, 2),
            "averageLongPrice": average if quantity > 0 else 0.0,
            "taxLotAverageLongPrice": average if quantity > 0 else 0.0,
            "longOpenProfitLoss": round((price - average) * long_quantity, 2),
            "previousSessionLongQuantity": long_quantity,
            "currentDayCost": 0.0,
        }

    def _open_buy_commitment(self, account: SchwabAccount, exclude: dict | None = None) -> float:
        total = 0.0
        for order in account.orders.values():
            if (
                order is not exclude
                and order["status"] in RESTING_STATUSES
                and order["orderLegCollection"][0]["instruction"] == "BUY"
            ):
                symbol = order["orderLegCollection"][0]["instrument"]["symbol"]
                unit = order.get("price") or order.get("stopPrice") or self._price(symbol)
                total += unit * order["remainingQuantity"]
        return total

    def _balances(self, account: SchwabAccount) -> dict:
        long_value = sum(max(held[0], 0) * self._price(symbol) for symbol, held in account.positions.items())
        equity = account.cash + long_value
        committed = self._open_buy_commitment(account)
        # The current balances every account type reports alike.
        shared = {
            "accruedInterest": 0.0,
            "cashBalance": round(account.cash, 2),
            "cashReceipts": 0.0,
            "longOptionMarketValue": 0.0,
            "liquidationValue": round(equity, 2),
            "longMarketValue": round(long_value, 2),
            "moneyMarketFund": 0.0,
            "savings": 0.0,
            "shortMarketValue": 0.0,
            "pendingDeposits": 0.0,
            "mutualFundValue": 0.0,
            "bondValue": 0.0,
            "shortOptionMarketValue": 0.0,
        }
        if account.kind == "MARGIN":
            maintenance = long_value * MAINTENANCE_MARGIN
            available = max(0.0, equity - long_value * INITIAL_MARGIN - committed * INITIAL_MARGIN)
            current = {
                **shared,
                "availableFunds": round(available, 2),
                "availableFundsNonMarginableTrade": round(available, 2),
                "buyingPower": round(available * 2, 2),
                "buyingPowerNonMarginableTrade": round(available, 2),
                "dayTradingBuyingPower": round(available * 4, 2),
                "equity": round(equity, 2),
                "equityPercentage": round(equity / (long_value or equity or 1) * 100, 2) if long_value else 100.0,
                "longMarginValue": round(long_value, 2),
                "maintenanceCall": 0.0,
                "maintenanceRequirement": round(maintenance, 2),
                "marginBalance": round(min(account.cash, 0.0), 2),
                "regTCall": 0.0,
                "shortBalance": 0.0,
                "shortMarginValue": 0.0,
                "sma": round(available, 2),
                "isInCall": 0.0,
                "stockBuyingPower": round(available * 2, 2),
                "optionBuyingPower": round(available, 2),
            }
            initial = {
                "accruedInterest": 0.0,
                "availableFundsNonMarginableTrade": current["availableFunds"],
                "bondValue": 0.0,
                "buyingPower": current["buyingPower"],
                "cashBalance": current["cashBalance"],
                "cashAvailableForTrading": 0.0,
                "cashReceipts": 0.0,
                "dayTradingBuyingPower": current["dayTradingBuyingPower"],
                "equity": current["equity"],
                "equityPercentage": current["equityPercentage"],
                "liquidationValue": current["liquidationValue"],
                "longMarginValue": current["longMarginValue"],
                "longStockValue": current["longMarketValue"],
                "maintenanceRequirement": current["maintenanceRequirement"],
                "margin": current["cashBalance"],
                "marginEquity": current["equity"],
                "moneyMarketFund": 0.0,
                "mutualFundValue": 0.0,
                "accountValue": current["liquidationValue"],
                "isInCall": 0.0,
            }
            projected = {
                "availableFunds": current["availableFunds"],
                "buyingPower": current["buyingPower"],
                "stockBuyingPower": current["stockBuyingPower"],
                "isInCall": 0.0,
                "maintenanceCall": 0.0,
                "regTCall": 0.0,
            }
        else:
            available = max(0.0, account.cash - committed)
            current = {
                **shared,
                "cashAvailableForTrading": round(available, 2),
                "cashAvailableForWithdrawal": round(available, 2),
                "cashCall": 0.0,
                "longNonMarginableMarketValue": round(long_value, 2),
                "totalCash": round(account.cash, 2),
                "cashDebitCallValue": 0.0,
                "unsettledCash": 0.0,
            }
            initial = {
                "accruedInterest": 0.0,
                "cashAvailableForTrading": current["cashAvailableForTrading"],
                "cashAvailableForWithdrawal": current["cashAvailableForWithdrawal"],
                "cashBalance": current["cashBalance"],
                "bondValue": 0.0,
                "cashReceipts": 0.0,
                "liquidationValue": current["liquidationValue"],
                "longOptionMarketValue": 0.0,
                "longStockValue": current["longMarketValue"],
                "moneyMarketFund": 0.0,
                "mutualFundValue": 0.0,
                "shortOptionMarketValue": 0.0,
                "pendingDeposits": 0.0,
                "cashDebitCallValue": 0.0,
                "unsettledCash": 0.0,
                "isInCall": 0.0,
                "accountValue": current["liquidationValue"],
            }
            projected = {
                "cashAvailableForTrading": current["cashAvailableForTrading"],
                "cashAvailableForWithdrawal": current["cashAvailableForWithdrawal"],
            }
        return {"current": current, "initial": initial, "projected": projected}

    def quotes(self, symbols: list[str]) -> dict:
        self.match_resting_orders()
        now_ms = int(self._clock() * 1000)
        answer: dict = {}
        invalid = []
        for symbol in symbols:
            instrument = self.find(symbol)
            if instrument is None:
                invalid.append(symbol)
                continue
            price = self.market.price(instrument)
            low, high = self.market.day_range(instrument)
            description = self._descriptions.get(symbol, {})
            answer[symbol] = {
                "assetMainType": "EQUITY",
                "assetSubType": "COE",
                "quoteType": "NBBO",
                "realtime": True,
                "ssid": instrument.token,
                "symbol": symbol,
                "reference": {
                    "cusip": description.get("cusip", ""),
                    "description": description.get("description", symbol),
                    "exchange": "Q" if instrument.exchange == "NASDAQ" else "N",
                    "exchangeName": instrument.exchange,
                },
                "quote": {
                    "askPrice": round(price + 0.01, 2),
                    "bidPrice": round(price - 0.01, 2),
                    "closePrice": instrument.base_price,
                    "highPrice": high,
                    "lastPrice": price,
                    "lowPrice": low,
                    "mark": price,
                    "netChange": round(price - instrument.base_price, 4),
                    "openPrice": instrument.base_price,
                    "quoteTime": now_ms,
                    "totalVolume": 1_000_000 + zlib.crc32(symbol.encode()) % 1_000_000,
                    "tradeTime": now_ms,
                },
            }
        if invalid:
            answer["errors"] = {"invalidSymbols": invalid}
        return answer

    # --- orders ---------------------------------------------------------------------------

    def orders(self, grant: Grant, hash_value: str | None, query: Mapping[str, str]) -> list[dict]:
        since = _query_time(query.get("fromEnteredTime"), "fromEnteredTime")
        until = _query_time(query.get("toEnteredTime"), "toEnteredTime")
        status = query.get("status")
        raw_max = query.get("maxResults") or "3000"
        if not raw_max.isdigit() or int(raw_max) < 1:
            raise service_error(400, "Invalid maxResults.")
        self.match_resting_orders()
        with self._lock:
            if hash_value is None:
                accounts = self.users[grant.username].accounts
            else:
                accounts = [self.account_for(grant, hash_value)]
            found = [
                copy.deepcopy(order)
                for account in accounts
                for order in account.orders.values()
                if since <= _parse_time(order["enteredTime"]) <= until and (not status or order["status"] == status)
            ]
        found.sort(key=lambda order: order["enteredTime"], reverse=True)
        return found[: int(raw_max)]

    def order(self, grant: Grant, hash_value: str, order_id: str) -> dict:
        self.match_resting_orders()
        with self._lock:
            return copy.deepcopy(self._own_order(self.account_for(grant, hash_value), order_id))

    def place(self, grant: Grant, hash_value: str, body) -> int:
        with self._lock:
            account = self.account_for(grant, hash_value)
            order = self._new_order(account, _validated(body, self))
            self._settle_new(account, order)
            return order["orderId"]

    def replace(self, grant: Grant, hash_value: str, order_id: str, body) -> int:
        with self._lock:
            account = self.account_for(grant, hash_value)
            old = self._own_order(account, order_id)
            terms = _validated(body, self)
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

    def cancel(self, grant: Grant, hash_value: str, order_id: str) -> None:
        with self._lock:
            account = self.account_for(grant, hash_value)
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
        instrument = self.find(terms["symbol"])
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
                        "cusip": self._descriptions.get(terms["symbol"], {}).get("cusip", ""),
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
        unit = order.get("price") or order.get("stopPrice") or self._price(symbol)
        long_value = sum(max(held[0], 0) * self._price(name) for name, held in account.positions.items())
        committed = self._open_buy_commitment(account, exclude=order)
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
        price = self._price(leg["instrument"]["symbol"])
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


def _validated(body, state: SchwabState) -> dict:
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
    if not isinstance(symbol, str) or state.find(symbol) is None:
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
