"""Charles Schwab's Trader API over a thin `requests` client.

What Schwab does that Kite does not, and how this client answers it:
- OAuth 2 with HTTP Basic `client_id:client_secret` on a form body; access tokens live 30 minutes,
  refresh tokens 7 days from the login (rotating one does not extend it), then only a new login helps.
- A login holds several accounts; every account path takes the `hashValue`, never the plain number.
- Placing or replacing answers 201 with no body and the order id in `Location`, which can be missing.
  There is no client order id, so a lost id is found again by matching the account's recent orders,
  never by sending again; with no match the placement is UNAVAILABLE (the caller records UNKNOWN).
- Per-app limits (requests and order calls a minute, order calls a day) are token buckets shared by
  every process; reads are retried with jittered backoff on 5xx and network errors, order calls never.
- Errors come in four shapes (Schwab's `errors` list, OAuth's `error`, the gateway's `fault`, HTML);
  all of them, and the spec's `{"message", "errors": [...]}`, become one BrokerError.
"""

import json
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from urllib.parse import unquote, urlencode

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from brokers.adapters.base import BrokerAdapter
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import (
    BrokerAccountRef,
    Funds,
    Holding,
    OrderRequest,
    OrderResult,
    Position,
    Profile,
    Quote,
    Tokens,
)
from thor import ratelimit
from thor.money import money, price, quantity, to_decimal

ACCESS_TOKEN_LIFETIME = timedelta(minutes=30)
REFRESH_TOKEN_LIFETIME = timedelta(days=7)
LEGACY_CLIENT_ID_SUFFIX = "@AMER.OAUTHAP"
QUOTE_BATCH = 500
# A placement's `enteredTime` is Schwab's clock, ours may be a little ahead of it.
ENTERED_TIME_SLACK = timedelta(seconds=5)
ORDERS_WINDOW = timedelta(days=60)
SCHWAB_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"
LOCATION_ORDER_ID = re.compile(r"/orders/(\d+)/?$")

ORDER_TYPES = {"MARKET": "MARKET", "LIMIT": "LIMIT", "SL": "STOP_LIMIT", "SL-M": "STOP"}
UNIFIED_ORDER_TYPES = {schwab: unified for unified, schwab in ORDER_TYPES.items()}
DURATIONS = {"DAY": "DAY", "GTC": "GOOD_TILL_CANCEL"}
UNIFIED_VALIDITIES = {schwab: unified for unified, schwab in DURATIONS.items()}
INSTRUCTIONS = {"BUY": "BUY", "SELL": "SELL"}
UNIFIED_SIDES = {"BUY": "BUY", "BUY_TO_COVER": "BUY", "SELL": "SELL", "SELL_SHORT": "SELL"}
# Schwab's order statuses in Thor's terms; anything not listed is not acknowledged yet (PENDING).
UNIFIED_STATUSES = {
    "FILLED": "COMPLETE",
    "CANCELED": "CANCELLED",
    "REPLACED": "CANCELLED",
    "REJECTED": "REJECTED",
    "EXPIRED": "EXPIRED",
    "WORKING": "OPEN",
    "QUEUED": "OPEN",
    "ACCEPTED": "OPEN",
    "PENDING_ACTIVATION": "OPEN",
    "PENDING_CANCEL": "OPEN",
    "PENDING_REPLACE": "OPEN",
    "PENDING_RECALL": "OPEN",
    "AWAITING_MANUAL_REVIEW": "OPEN",
    "AWAITING_STOP_CONDITION": "TRIGGER PENDING",
}
STOP_ORDER_TYPES = ("STOP", "STOP_LIMIT")
# What the OAuth endpoint says when a refresh token can no longer be used.
DEAD_REFRESH_ERRORS = ("invalid_client", "refresh_token_authentication_error", "invalid_grant", "unauthorized_client")
GATEWAY_TOKEN_ERRORS = ("invalid_access_token", "access_token_expired", "invalidaccesstoken")
GATEWAY_RATE_ERRORS = ("spikearrest", "quotaviolation", "ratelimit")

_pool = threading.local()


def rate_budgets(app_id: int) -> list[ratelimit.Budget]:
    """The app's buckets as SchwabAdapter._spend_budget and _token_call spend them, for the health read."""
    return [
        ratelimit.Budget(f"schwab:{app_id}:requests", settings.THOR_SCHWAB_REQUESTS_PER_MINUTE, 60),
        ratelimit.Budget(f"schwab:{app_id}:orders", settings.THOR_SCHWAB_ORDERS_PER_MINUTE, 60),
        ratelimit.Budget(f"schwab:{app_id}:orders-day", settings.THOR_SCHWAB_ORDERS_PER_DAY, 86400),
        ratelimit.Budget(f"schwab:{app_id}:token", settings.THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE, 60),
    ]


def _session() -> requests.Session:
    """One pooled session per thread: keep-alive across calls without sharing a session between threads."""
    session = getattr(_pool, "session", None)
    if session is None:
        session = requests.Session()
        session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0))
        session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0))
        _pool.session = session
    return session


# --- errors -----------------------------------------------------------------------------------


class _TitleParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def _error_words(response: requests.Response) -> tuple[str, str]:
    """(reason code, readable message) from whichever of Schwab's error shapes the body is."""
    try:
        body = response.json()
    except ValueError:
        parser = _TitleParser()
        parser.feed(response.text[:5000])
        return "", (parser.title.strip() or response.reason or "")[:300]
    if not isinstance(body, Mapping):
        return "", ""
    if isinstance(body.get("fault"), Mapping):
        fault = body["fault"]
        detail = fault.get("detail") if isinstance(fault.get("detail"), Mapping) else {}
        return str(detail.get("errorcode") or ""), str(fault.get("faultstring") or "")[:300]
    if "error" in body:
        return str(body.get("error") or ""), str(body.get("error_description") or body.get("error") or "")[:300]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        if isinstance(first, Mapping):
            words = " ".join(str(first.get(key)) for key in ("title", "detail") if first.get(key))
            return str(first.get("id") or ""), words[:300]
        return "", str(body.get("message") or first)[:300]
    return "", str(body.get("message") or "")[:300]


def _retry_after(response: requests.Response) -> float:
    raw = (response.headers.get("Retry-After") or "").strip()
    if raw.isdigit():
        return float(raw)
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _broker_error(response: requests.Response, *, order_call: bool) -> BrokerError:
    status = response.status_code
    reason, message = _error_words(response)
    lowered = reason.lower().replace(".", "").replace("_", "")
    if status == 429 or any(word.replace("_", "") in lowered for word in GATEWAY_RATE_ERRORS):
        return BrokerError(
            "Schwab rate limit hit.",
            code=BrokerErrorCode.RATE_LIMITED,
            retry_after=_retry_after(response),
            broker_message=message,
        )
    if status == 401 or any(word.replace("_", "") in lowered for word in GATEWAY_TOKEN_ERRORS):
        # Refreshing may still help: only the token endpoint says when it cannot (see refresh()).
        return BrokerError(
            "Schwab refused the access token.", code=BrokerErrorCode.TOKEN_EXPIRED, broker_message=message
        )
    if status == 403:
        return BrokerError(
            "Schwab refused the request.",
            code=BrokerErrorCode.PERMISSION_DENIED,
            permanent=True,
            broker_message=message,
        )
    if status == 404:
        return BrokerError(
            "Schwab does not know it.", code=BrokerErrorCode.NOT_FOUND, permanent=True, broker_message=message
        )
    if 400 <= status < 500:
        if order_call:
            return BrokerError(
                "Schwab rejected the order.", code=BrokerErrorCode.REJECTED, permanent=True, broker_message=message
            )
        return BrokerError(
            "Schwab rejected the input.", code=BrokerErrorCode.INVALID_INPUT, permanent=True, broker_message=message
        )
    return BrokerError("Schwab is unavailable.", code=BrokerErrorCode.UNAVAILABLE, broker_message=message)


def _token_error(response: requests.Response, *, refreshing: bool) -> BrokerError:
    status = response.status_code
    reason, message = _error_words(response)
    if status == 429:
        return _broker_error(response, order_call=False)
    if status >= 500 or status < 400:
        return BrokerError("Schwab's token service is unavailable.", code=BrokerErrorCode.UNAVAILABLE)
    if refreshing:
        # Whatever the reason, this refresh token will not work again: the user must log in anew.
        return BrokerError(
            "Schwab refused the refresh token; log in again.",
            code=BrokerErrorCode.TOKEN_EXPIRED,
            permanent=True,
            broker_message=reason or message or str(status),
        )
    if reason == "invalid_client":
        return BrokerError(
            "Schwab refused the app's credentials.",
            code=BrokerErrorCode.PERMISSION_DENIED,
            permanent=True,
            broker_message=reason,
        )
    return BrokerError(
        "Schwab refused the authorization code.",
        code=BrokerErrorCode.INVALID_INPUT,
        permanent=True,
        broker_message=reason or message,
    )


# --- conversions ------------------------------------------------------------------------------


def _optional_decimal(value) -> Decimal | None:
    return None if value in (None, "") else to_decimal(value)


def _price(value) -> Decimal | None:
    return None if value in (None, "") else price(value)


def _shares(value) -> Decimal:
    return Decimal(quantity(value))


def _schwab_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(SCHWAB_TIME_FORMAT)


def _parse_time(value) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    # Schwab writes offsets as +0000; fromisoformat wants +00:00.
    if re.search(r"[+-]\d{4}$", text):
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _whole_quantity(quantity) -> int:
    value = to_decimal(quantity)
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise BrokerError(
            f"Schwab orders take whole share quantities, not {quantity}.",
            code=BrokerErrorCode.INVALID_INPUT,
            permanent=True,
        )
    return int(value)


def _price_number(value) -> float:
    """A Decimal price as the JSON number Schwab expects; 4-decimal prices survive float exactly."""
    amount = to_decimal(value)
    if not amount.is_finite() or amount <= 0:
        raise BrokerError(f"Invalid price {value}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
    return float(amount)


def _symbol(reference: str) -> str:
    """ "NASDAQ:AAPL" or "AAPL" -> "AAPL": Schwab routes by symbol, the exchange is Thor's label."""
    return reference.rpartition(":")[2].strip().upper()


def _average_fill_price(order: Mapping) -> Decimal | None:
    quantity = Decimal("0")
    cost = Decimal("0")
    for activity in order.get("orderActivityCollection") or []:
        for leg in activity.get("executionLegs") or []:
            leg_quantity = to_decimal(leg.get("quantity"))
            quantity += leg_quantity
            cost += leg_quantity * to_decimal(leg.get("price"))
    return (cost / quantity) if quantity else None


def _unified_status(order: Mapping) -> str:
    status = order.get("status") or ""
    if status == "WORKING" and order.get("orderType") in STOP_ORDER_TYPES and not order.get("filledQuantity"):
        return "TRIGGER PENDING"
    return UNIFIED_STATUSES.get(status, "PENDING")


def _order_result(order: Mapping) -> OrderResult:
    legs = order.get("orderLegCollection") or [{}]
    leg = legs[0] or {}
    instrument = leg.get("instrument") or {}
    status = order.get("status") or ""
    message = order.get("statusDescription") or ""
    if status == "REPLACED" and not message:
        message = "Replaced by a new order."
    return OrderResult(
        broker_order_id=str(order.get("orderId") or ""),
        status=_unified_status(order),
        symbol=instrument.get("symbol") or "",
        exchange="",
        side=UNIFIED_SIDES.get(leg.get("instruction") or "", leg.get("instruction") or ""),
        quantity=_shares(order.get("quantity") or leg.get("quantity")),
        filled_quantity=_shares(order.get("filledQuantity")),
        average_price=_price(_average_fill_price(order)),
        price=_price(order.get("price")),
        trigger_price=_price(order.get("stopPrice")),
        order_type=UNIFIED_ORDER_TYPES.get(order.get("orderType") or "", order.get("orderType") or ""),
        product="",
        validity=UNIFIED_VALIDITIES.get(order.get("duration") or "", order.get("duration") or ""),
        tag="",
        status_message=message,
        placed_at=_parse_time(order.get("enteredTime")),
        raw=dict(order),
    )


def order_payload(
    *,
    symbol: str,
    side: str,
    quantity,
    order_type: str,
    validity: str = "DAY",
    price=None,
    trigger_price=None,
) -> dict:
    """A single-leg equity order in Schwab's terms, validated the way Schwab would refuse it."""
    if side not in INSTRUCTIONS:
        raise BrokerError(
            f"Schwab orders are BUY or SELL, not {side!r}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True
        )
    if order_type not in ORDER_TYPES:
        raise BrokerError(f"Unknown order type {order_type!r}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
    if validity not in DURATIONS:
        raise BrokerError(
            f"Schwab orders are DAY or GTC, not {validity!r}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True
        )
    ticker = _symbol(symbol)
    if not ticker or not re.fullmatch(r"[A-Z0-9./-]{1,12}", ticker):
        raise BrokerError(f"Invalid symbol {symbol!r}.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
    schwab_type = ORDER_TYPES[order_type]
    payload = {
        "session": "NORMAL",
        "duration": DURATIONS[validity],
        "orderType": schwab_type,
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [
            {
                "instruction": INSTRUCTIONS[side],
                "quantity": _whole_quantity(quantity),
                "instrument": {"symbol": ticker, "assetType": "EQUITY"},
            }
        ],
    }
    if schwab_type in ("LIMIT", "STOP_LIMIT"):
        if price is None:
            raise BrokerError("A limit order needs a price.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
        payload["price"] = _price_number(price)
    if schwab_type in STOP_ORDER_TYPES:
        if trigger_price is None:
            raise BrokerError("A stop order needs a trigger price.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
        payload["stopPrice"] = _price_number(trigger_price)
    return payload


def _matches(order: Mapping, payload: Mapping, since: datetime) -> bool:
    """Is this order in the book the one `payload` placed (no later than `since`)?"""
    entered = _parse_time(order.get("enteredTime"))
    if entered is None or entered < since:
        return False
    legs = order.get("orderLegCollection") or []
    if len(legs) != 1:
        return False
    leg, wanted = legs[0], payload["orderLegCollection"][0]
    if (leg.get("instrument") or {}).get("symbol", "").upper() != wanted["instrument"]["symbol"]:
        return False
    if leg.get("instruction") != wanted["instruction"] or order.get("orderType") != payload["orderType"]:
        return False
    if to_decimal(order.get("quantity") or leg.get("quantity")) != to_decimal(wanted["quantity"]):
        return False
    for name in ("price", "stopPrice"):
        if name in payload and _optional_decimal(order.get(name)) != to_decimal(payload[name]):
            return False
    return True


# --- the adapter ------------------------------------------------------------------------------


class SchwabAdapter(BrokerAdapter):
    kind = "schwab"
    keeps_client_order_id = False

    def __init__(
        self,
        *,
        app_id: int,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        access_token: str = "",
        refresh_token: str = "",
        account_hash: str = "",
    ):
        self.app_id = app_id
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.account_hash = account_hash
        self._client_secret = client_secret
        self._access_token = access_token
        self._refresh_token = refresh_token
        # None: the settings' (THOR_SCHWAB_RATE_WAIT, THOR_SCHWAB_READ_RETRIES); see in_background().
        self._rate_wait: float | None = None
        self._read_retries: int | None = None

    def __repr__(self):
        return f"SchwabAdapter(app_id={self.app_id})"

    def in_background(self) -> "SchwabAdapter":
        """This adapter for work nobody waits on (the order poll): a spent budget raises RATE_LIMITED at
        once instead of waiting for a token, and a failed read is not retried, since the next run is
        seconds away and a retry would spend budget that users' own calls need."""
        self._rate_wait, self._read_retries = 0.0, 0
        return self

    # --- the wire ---------------------------------------------------------------------------

    def _spend(self, bucket: str, *, rate: float, per: float) -> None:
        wait = settings.THOR_SCHWAB_RATE_WAIT if self._rate_wait is None else self._rate_wait
        if not ratelimit.acquire(f"schwab:{self.app_id}:{bucket}", rate=rate, per=per, wait=wait):
            raise BrokerError(
                f"Schwab {bucket} budget spent.", code=BrokerErrorCode.RATE_LIMITED, retry_after=per / max(rate, 1)
            )

    def _spend_budget(self, *, order_call: bool) -> None:
        self._spend("requests", rate=settings.THOR_SCHWAB_REQUESTS_PER_MINUTE, per=60)
        if order_call:
            self._spend("orders", rate=settings.THOR_SCHWAB_ORDERS_PER_MINUTE, per=60)
            self._spend("orders-day", rate=settings.THOR_SCHWAB_ORDERS_PER_DAY, per=86400)

    def _send(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            return _session().request(method, url, timeout=settings.THOR_SCHWAB_TIMEOUT, **kwargs)
        except requests.Timeout:
            raise BrokerError("Schwab did not answer in time.", code=BrokerErrorCode.TIMEOUT) from None
        except requests.RequestException as exc:
            raise BrokerError(
                "Schwab is unreachable.", code=BrokerErrorCode.UNAVAILABLE, broker_message=type(exc).__name__
            ) from None

    def _api(self, method: str, path: str, *, params=None, body=None, order_call: bool = False) -> requests.Response:
        """One Trader/market-data call. Reads retry on 5xx and network errors; order calls never do,
        since a request that failed in transit may still have reached Schwab."""
        if not self._access_token:
            raise BrokerError("No Schwab session.", code=BrokerErrorCode.TOKEN_EXPIRED, permanent=True)
        headers = {"Authorization": f"Bearer {self._access_token}", "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        retries = settings.THOR_SCHWAB_READ_RETRIES if self._read_retries is None else self._read_retries
        attempts = 1 if order_call or method != "GET" else 1 + max(0, retries)
        url = f"{settings.THOR_SCHWAB_API_BASE}{path}"
        for attempt in range(attempts):
            if attempt:
                backoff = settings.THOR_SCHWAB_RETRY_BACKOFF * 2 ** (attempt - 1)
                time.sleep(backoff * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not security
            self._spend_budget(order_call=order_call)
            last = attempt == attempts - 1
            try:
                response = self._send(method, url, params=params, data=data, headers=headers)
            except BrokerError as error:
                if last or error.code not in (BrokerErrorCode.TIMEOUT, BrokerErrorCode.UNAVAILABLE):
                    raise
                continue
            if response.status_code < 400:
                return response
            error = _broker_error(response, order_call=order_call)
            # A gateway quota answer can come as a 5xx: waiting, not retrying, is what helps.
            if last or response.status_code < 500 or error.code == BrokerErrorCode.RATE_LIMITED:
                raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, method: str, path: str, **kwargs):
        response = self._api(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise BrokerError("Schwab answered something other than JSON.", code=BrokerErrorCode.UNAVAILABLE) from None

    def _token_call(self, form: Mapping[str, str], *, refreshing: bool) -> dict:
        """The OAuth token endpoint: never retried, since a refresh that reached Schwab has already
        rotated the token it spent."""
        self._spend("token", rate=settings.THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE, per=60)
        response = self._send(
            "POST",
            f"{settings.THOR_SCHWAB_AUTH_BASE}/v1/oauth/token",
            data=dict(form),
            auth=(self.client_id, self._client_secret),
            headers={"Accept": "application/json"},
        )
        if response.status_code != 200:
            raise _token_error(response, refreshing=refreshing)
        try:
            payload = response.json()
        except ValueError:
            raise BrokerError("Schwab's token service answered nonsense.", code=BrokerErrorCode.UNAVAILABLE) from None
        if not isinstance(payload, Mapping) or not payload.get("access_token"):
            raise BrokerError("Schwab's token service answered no token.", code=BrokerErrorCode.UNAVAILABLE)
        return dict(payload)

    def _account_path(self, suffix: str = "") -> str:
        if not self.account_hash:
            raise BrokerError(
                "No Schwab account chosen for this call.", code=BrokerErrorCode.INVALID_INPUT, permanent=True
            )
        return f"/trader/v1/accounts/{self.account_hash}{suffix}"

    # --- session ----------------------------------------------------------------------------

    def authorization_url(self, state: str) -> str:
        client_id = self.client_id
        if settings.THOR_SCHWAB_LEGACY_CLIENT_ID_SUFFIX and not client_id.endswith(LEGACY_CLIENT_ID_SUFFIX):
            client_id += LEGACY_CLIENT_ID_SUFFIX
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": self.redirect_uri,
                "scope": settings.THOR_SCHWAB_SCOPE,
                "state": state,
            }
        )
        return f"{settings.THOR_SCHWAB_AUTH_BASE}/v1/oauth/authorize?{query}"

    def exchange(self, params: Mapping[str, str]) -> Tokens:
        # Schwab's code ends in "%40" ("@"); a code relayed still encoded must be decoded once.
        code = unquote(str(params.get("code") or "")).strip()
        if not code or len(code) > 2048:
            raise BrokerError("No authorization code.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
        now = datetime.now(UTC)
        payload = self._token_call(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}, refreshing=False
        )
        self._access_token = payload["access_token"]
        self._refresh_token = payload.get("refresh_token") or ""
        customer_id = self._customer_id()
        return Tokens(
            access_token=self._access_token,
            refresh_token=self._refresh_token,
            access_expires_at=now + _lifetime(payload.get("expires_in"), ACCESS_TOKEN_LIFETIME),
            refresh_expires_at=now + _lifetime(payload.get("refresh_token_expires_in"), REFRESH_TOKEN_LIFETIME),
            broker_user_id=customer_id,
        )

    def refresh(self, tokens: Tokens) -> Tokens:
        if not tokens.refresh_token:
            raise BrokerError(
                "No Schwab refresh token; log in again.",
                code=BrokerErrorCode.TOKEN_EXPIRED,
                permanent=True,
                broker_message="no_refresh_token",
            )
        now = datetime.now(UTC)
        if tokens.refresh_expires_at is not None and tokens.refresh_expires_at <= now:
            raise BrokerError(
                "The Schwab refresh token has expired; log in again.",
                code=BrokerErrorCode.TOKEN_EXPIRED,
                permanent=True,
                broker_message="refresh_token_expired",
            )
        payload = self._token_call(
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}, refreshing=True
        )
        self._access_token = payload["access_token"]
        self._refresh_token = payload.get("refresh_token") or tokens.refresh_token
        # A rotated refresh token keeps the login's seven days unless Schwab says otherwise.
        refresh_expires_at = tokens.refresh_expires_at
        if payload.get("refresh_token_expires_in"):
            refresh_expires_at = now + _lifetime(payload["refresh_token_expires_in"], REFRESH_TOKEN_LIFETIME)
        return Tokens(
            access_token=self._access_token,
            refresh_token=self._refresh_token,
            access_expires_at=now + _lifetime(payload.get("expires_in"), ACCESS_TOKEN_LIFETIME),
            refresh_expires_at=refresh_expires_at,
            broker_user_id=tokens.broker_user_id,
        )

    def _user_preference(self) -> dict:
        data = self._json("GET", "/trader/v1/userPreference")
        # Schwab answers one object; its spec says a list of them: either is read.
        if isinstance(data, list):
            data = data[0] if data else {}
        return dict(data) if isinstance(data, Mapping) else {}

    def _customer_id(self) -> str:
        streamers = self._user_preference().get("streamerInfo") or []
        customer_id = (streamers[0] or {}).get("schwabClientCustomerId") if streamers else ""
        if not customer_id:
            raise BrokerError("Schwab did not say who logged in.", code=BrokerErrorCode.UNAVAILABLE)
        return str(customer_id)

    # --- accounts ---------------------------------------------------------------------------

    def account_numbers(self) -> list[BrokerAccountRef]:
        numbers = self._json("GET", "/trader/v1/accounts/accountNumbers") or []
        kinds = {}
        for item in self.accounts_payload(fields=""):
            account = item.get("securitiesAccount") or {}
            kinds[str(account.get("accountNumber"))] = account.get("type") or ""
        refs = []
        for item in numbers:
            number = str(item.get("accountNumber") or "")
            kind = kinds.get(number, "")
            refs.append(
                BrokerAccountRef(
                    broker_account_id=str(item.get("hashValue") or ""),
                    account_number=number,
                    display_name=f"Schwab {kind.title() or 'account'} ••••{number[-4:]}",
                    kind=kind,
                )
            )
        return refs

    def accounts_payload(self, fields: str = "positions") -> list[dict]:
        """Schwab's `/trader/v1/accounts` as it answers (plain account numbers included)."""
        data = self._json("GET", "/trader/v1/accounts", params={"fields": fields} if fields else None)
        return list(data) if isinstance(data, list) else []

    def _securities_account(self, *, with_positions: bool) -> dict:
        data = self._json("GET", self._account_path(), params={"fields": "positions"} if with_positions else None)
        return dict((data or {}).get("securitiesAccount") or {})

    def profile(self) -> Profile:
        data = self._user_preference()
        streamers = data.get("streamerInfo") or [{}]
        return Profile(
            broker_user_id=str((streamers[0] or {}).get("schwabClientCustomerId") or ""),
            name="",
            email="",
            broker=self.kind,
            exchanges=("NASDAQ", "NYSE"),
            products=(),
            order_types=tuple(ORDER_TYPES),
            raw=dict(data),
        )

    def funds(self) -> Funds:
        account = self._securities_account(with_positions=False)
        current = account.get("currentBalances") or {}
        initial = account.get("initialBalances") or {}
        net_liquidation = to_decimal(
            _first(current, initial, "liquidationValue") or _first(current, initial, "accountValue") or 0
        )
        if account.get("type") == "MARGIN":
            cash = to_decimal(_first(current, initial, "cashBalance") or 0)
            available = to_decimal(_first(current, initial, "availableFunds") or 0)
            buying_power = to_decimal(_first(current, initial, "buyingPower") or 0)
            utilised = to_decimal(_first(current, initial, "maintenanceRequirement") or 0)
        else:
            # A cash account trades settled cash only: what it may spend is what it may trade with.
            cash = to_decimal(current.get("totalCash") or initial.get("cashBalance") or 0)
            available = to_decimal(_first(current, initial, "cashAvailableForTrading") or 0)
            buying_power = available
            utilised = max(Decimal("0"), cash - available)
        return Funds(
            currency="USD",
            cash=money(cash),
            available=money(available),
            utilised=money(utilised),
            buying_power=money(buying_power),
            net_liquidation=money(net_liquidation),
            raw=account,
        )

    def positions(self) -> list[Position]:
        account = self._securities_account(with_positions=True)
        positions = []
        for item in account.get("positions") or []:
            instrument = item.get("instrument") or {}
            quantity = _shares(to_decimal(item.get("longQuantity")) - to_decimal(item.get("shortQuantity")))
            value = to_decimal(item.get("marketValue"))
            positions.append(
                Position(
                    symbol=instrument.get("symbol") or "",
                    exchange="",
                    product=account.get("type") or "",
                    quantity=quantity,
                    average_price=price(item.get("averagePrice")),
                    # Schwab gives no last price on a position: its market value over its quantity.
                    last_price=price(value / quantity) if quantity else Decimal("0.0000"),
                    realised_pnl=Decimal("0.00"),
                    unrealised_pnl=money(
                        to_decimal(item.get("longOpenProfitLoss")) + to_decimal(item.get("shortOpenProfitLoss"))
                    ),
                    day_pnl=money(item.get("currentDayProfitLoss")),
                    value=money(value),
                    raw=dict(item),
                )
            )
        return positions

    def holdings(self) -> list[Holding]:
        """Schwab keeps no separate holdings: they are the long equity positions."""
        holdings = []
        for position in self.positions():
            instrument = position.raw.get("instrument") or {}
            quantity = _shares(position.raw.get("longQuantity"))
            if instrument.get("assetType") != "EQUITY" or quantity <= 0:
                continue
            holdings.append(
                Holding(
                    symbol=position.symbol,
                    exchange="",
                    quantity=quantity,
                    average_price=price(position.raw.get("averageLongPrice") or position.raw.get("averagePrice")),
                    last_price=position.last_price,
                    pnl=money(position.raw.get("longOpenProfitLoss")),
                    day_change=position.day_pnl,
                    value=money(position.raw.get("marketValue")),
                    raw=position.raw,
                )
            )
        return holdings

    # --- orders -----------------------------------------------------------------------------

    def _order_book(self, since: datetime) -> list[dict]:
        now = datetime.now(UTC)
        data = self._json(
            "GET",
            self._account_path("/orders"),
            params={"fromEnteredTime": _schwab_time(since), "toEnteredTime": _schwab_time(now + timedelta(minutes=1))},
        )
        return [order for order in data or [] if isinstance(order, Mapping)]

    def orders(self, filters: Mapping[str, str] | None = None) -> list[OrderResult]:
        results = [_order_result(order) for order in self._order_book(datetime.now(UTC) - ORDERS_WINDOW)]
        for name, value in (filters or {}).items():
            results = [result for result in results if getattr(result, name) == value]
        return results

    def order(self, broker_order_id: str) -> OrderResult:
        return _order_result(self._json("GET", self._account_path(f"/orders/{_order_id(broker_order_id)}")))

    def placement_candidates(self, order: OrderRequest, since: datetime) -> list[OrderResult]:
        """Every order in the book of the request's shape entered no earlier than `since` (give or take
        clock skew), oldest first. Which of them, if any, is the placement is for the caller to say: only
        it knows which ids its other orders hold and which of its sends could have made each."""
        payload = _request_payload(order)
        since = since - ENTERED_TIME_SLACK
        book = sorted(self._order_book(since), key=lambda item: item.get("enteredTime") or "")
        return [_order_result(candidate) for candidate in book if _matches(candidate, payload, since)]

    def _sent_order_id(self, response: requests.Response) -> str:
        """The id of the order a POST or PUT made, from its Location header.

        Schwab may leave Location out although it took the order: then the order is somewhere in the book,
        and guessing it here (say, the newest of the same shape) could hand this placement another order
        of the account, so the caller is told to find it (accounts.placement).
        """
        match = LOCATION_ORDER_ID.search(response.headers.get("Location") or "")
        if match:
            return match.group(1)
        raise BrokerError("Schwab took the order without naming it (no Location).", code=BrokerErrorCode.UNCONFIRMED)

    def place(self, order: OrderRequest) -> OrderResult:
        payload = _request_payload(order)
        response = self._api("POST", self._account_path("/orders"), body=payload, order_call=True)
        return OrderResult.acknowledged(self._sent_order_id(response), order)

    def modify(self, broker_order_id: str, changes: Mapping[str, object]) -> OrderResult:
        """Schwab replaces an order: the old one is cancelled, and the answer is the NEW order's id."""
        allowed = {"quantity", "price", "order_type", "trigger_price", "validity"}
        unknown = set(changes) - allowed
        if unknown:
            raise BrokerError(
                f"Schwab cannot modify {', '.join(sorted(unknown))}.",
                code=BrokerErrorCode.INVALID_INPUT,
                permanent=True,
            )
        current = self.order(broker_order_id)
        replacement = OrderRequest(
            symbol=current.symbol,
            exchange=current.exchange,
            side=current.side,
            quantity=to_decimal(changes.get("quantity", current.quantity)),
            order_type=str(changes.get("order_type") or current.order_type),
            product=current.product,
            price=_optional_decimal(changes.get("price", current.price)),
            trigger_price=_optional_decimal(changes.get("trigger_price", current.trigger_price)),
            validity=str(changes.get("validity") or current.validity),
        )
        payload = _request_payload(replacement)
        response = self._api(
            "PUT", self._account_path(f"/orders/{_order_id(broker_order_id)}"), body=payload, order_call=True
        )
        new_id = self._sent_order_id(response)
        return OrderResult(
            broker_order_id=new_id,
            status="PENDING",
            symbol=replacement.symbol,
            side=replacement.side,
            quantity=replacement.quantity,
            price=replacement.price,
            trigger_price=replacement.trigger_price,
            order_type=replacement.order_type,
            validity=replacement.validity,
        )

    def cancel(self, broker_order_id: str) -> OrderResult:
        self._api("DELETE", self._account_path(f"/orders/{_order_id(broker_order_id)}"), order_call=True)
        return OrderResult(broker_order_id=broker_order_id, status="PENDING")

    # --- market data ------------------------------------------------------------------------

    def quotes(self, instruments: Iterable[str]) -> dict[str, Quote]:
        """Quotes keyed by the reference as given ("NASDAQ:AAPL" or "AAPL"); unknown symbols are left out."""
        references = list(dict.fromkeys(instruments))
        by_symbol: dict[str, list[str]] = {}
        for reference in references:
            by_symbol.setdefault(_symbol(reference), []).append(reference)
        symbols = [symbol for symbol in by_symbol if symbol]
        quotes = {}
        for start in range(0, len(symbols), QUOTE_BATCH):
            batch = symbols[start : start + QUOTE_BATCH]
            data = self._json("GET", "/marketdata/v1/quotes", params={"symbols": ",".join(batch), "fields": "quote"})
            for symbol in batch:
                item = (data or {}).get(symbol)
                if not isinstance(item, Mapping) or not isinstance(item.get("quote"), Mapping):
                    continue
                quote = item["quote"]
                for reference in by_symbol[symbol]:
                    exchange = reference.rpartition(":")[0]
                    quotes[reference] = Quote(
                        symbol=symbol,
                        exchange=exchange,
                        last_price=price(quote.get("lastPrice")),
                        open=_price(quote.get("openPrice")),
                        high=_price(quote.get("highPrice")),
                        low=_price(quote.get("lowPrice")),
                        close=_price(quote.get("closePrice")),
                        volume=quote.get("totalVolume"),
                        timestamp=_epoch_millis(quote.get("tradeTime") or quote.get("quoteTime")),
                        raw=dict(item),
                    )
        return quotes


def _request_payload(order: OrderRequest) -> dict:
    return order_payload(
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        order_type=order.order_type,
        validity=order.validity or "DAY",
        price=order.price,
        trigger_price=order.trigger_price,
    )


def _order_id(broker_order_id: str) -> str:
    text = str(broker_order_id).strip()
    if not text.isdigit() or len(text) > 20:
        raise BrokerError(
            f"Invalid Schwab order id {broker_order_id!r}.", code=BrokerErrorCode.NOT_FOUND, permanent=True
        )
    return text


def _first(current: Mapping, initial: Mapping, name: str):
    """A balance from currentBalances, else from initialBalances (Schwab leaves some out of one or the other)."""
    value = current.get(name)
    return initial.get(name) if value is None else value


def _lifetime(seconds, default: timedelta) -> timedelta:
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        return default
    return timedelta(seconds=value) if value > 0 else default


def _epoch_millis(value) -> datetime | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)
