"""The Schwab adapter: Thor's broker contract over Schwab's Trader API.

What Schwab does that Kite does not, and how the adapter answers it:
- OAuth 2 with HTTP Basic `client_id:client_secret` on a form body; access tokens live 30 minutes,
  refresh tokens 7 days from the login (rotating one does not extend it), then only a new login helps.
- A login holds several accounts; every account path takes the `hashValue`, never the plain number.
- Placing or replacing answers 201 with no body and the order id in `Location`, which can be missing.
  There is no client order id, so a lost id is found again by matching the account's recent orders,
  never by sending again; with no match the placement is UNAVAILABLE (the caller records UNKNOWN).

The wire (sessions, budgets, retries, error shapes) is `client`, the field mapping `mapping`.
"""

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlencode

import requests
from django.conf import settings

from brokers.adapters.base import BrokerAdapter
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import (
    BrokerAccountRef,
    Funds,
    Holding,
    InstrumentInfo,
    OrderRequest,
    OrderResult,
    Position,
    Profile,
    Quote,
    Tokens,
)
from thor.money import to_decimal

from .client import SchwabClient
from .instruments import SEARCH_BATCH, checked_query, checked_symbols, instruments_of
from .mapping import (
    checked_order_id,
    lifetime,
    matches_placement,
    optional_decimal,
    order_result,
    quotes_of,
    request_payload,
    schwab_time,
    symbol_of,
)
from .portfolio import account_refs, customer_id_of, funds_of, holdings_of, positions_of, profile_of

ACCESS_TOKEN_LIFETIME = timedelta(minutes=30)
REFRESH_TOKEN_LIFETIME = timedelta(days=7)
LEGACY_CLIENT_ID_SUFFIX = "@AMER.OAUTHAP"
QUOTE_BATCH = 500
# A placement's `enteredTime` is Schwab's clock, ours may be a little ahead of it.
ENTERED_TIME_SLACK = timedelta(seconds=5)
ORDERS_WINDOW = timedelta(days=60)
LOCATION_ORDER_ID = re.compile(r"/orders/(\d+)/?$")
STREAMER_INFO_FIELDS = (
    "streamerSocketUrl",
    "schwabClientCustomerId",
    "schwabClientCorrelId",
    "schwabClientChannel",
    "schwabClientFunctionId",
)


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
        self._client = SchwabClient(
            app_id=app_id, client_id=client_id, client_secret=client_secret, access_token=access_token
        )
        self._refresh_token = refresh_token

    def __repr__(self) -> str:
        return f"SchwabAdapter(app_id={self.app_id})"

    def in_background(self) -> "SchwabAdapter":
        """This adapter for work nobody waits on (the order poll): a spent budget raises RATE_LIMITED at
        once instead of waiting for a token, and a failed read is not retried, since the next run is
        seconds away and a retry would spend budget that users' own calls need."""
        self._client.rate_wait, self._client.read_retries = 0.0, 0
        return self

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
        payload = self._client.token_call(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}, refreshing=False
        )
        self._client.access_token = payload["access_token"]
        self._refresh_token = payload.get("refresh_token") or ""
        customer_id = self._customer_id()
        return Tokens(
            access_token=self._client.access_token,
            refresh_token=self._refresh_token,
            access_expires_at=now + lifetime(payload.get("expires_in"), ACCESS_TOKEN_LIFETIME),
            refresh_expires_at=now + lifetime(payload.get("refresh_token_expires_in"), REFRESH_TOKEN_LIFETIME),
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
        payload = self._client.token_call(
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}, refreshing=True
        )
        self._client.access_token = payload["access_token"]
        self._refresh_token = payload.get("refresh_token") or tokens.refresh_token
        # A rotated refresh token keeps the login's seven days unless Schwab says otherwise.
        refresh_expires_at = tokens.refresh_expires_at
        if payload.get("refresh_token_expires_in"):
            refresh_expires_at = now + lifetime(payload["refresh_token_expires_in"], REFRESH_TOKEN_LIFETIME)
        return Tokens(
            access_token=self._client.access_token,
            refresh_token=self._refresh_token,
            access_expires_at=now + lifetime(payload.get("expires_in"), ACCESS_TOKEN_LIFETIME),
            refresh_expires_at=refresh_expires_at,
            broker_user_id=tokens.broker_user_id,
        )

    def _user_preference(self) -> dict[str, Any]:
        data = self._client.json_call("GET", "/trader/v1/userPreference")
        # Schwab answers one object; its spec says a list of them: either is read.
        if isinstance(data, list):
            data = data[0] if data else {}
        return dict(data) if isinstance(data, Mapping) else {}

    def streamer_info(self) -> dict[str, str]:
        """Where Schwab's streamer is and the ids its requests carry: userPreference's first `streamerInfo`
        (streamerSocketUrl, schwabClientCustomerId, schwabClientCorrelId, schwabClientChannel,
        schwabClientFunctionId), each a string; UNAVAILABLE when one is missing."""
        streamers = self._user_preference().get("streamerInfo")
        info = streamers[0] if isinstance(streamers, list) and streamers else None
        names = STREAMER_INFO_FIELDS
        if not isinstance(info, Mapping) or not all(isinstance(info.get(name), str) and info[name] for name in names):
            raise BrokerError("Schwab did not say where its streamer is.", code=BrokerErrorCode.UNAVAILABLE)
        return {name: str(info[name]) for name in names}

    def _customer_id(self) -> str:
        customer_id = customer_id_of(self._user_preference())
        if not customer_id:
            raise BrokerError("Schwab did not say who logged in.", code=BrokerErrorCode.UNAVAILABLE)
        return customer_id

    # --- accounts ---------------------------------------------------------------------------

    def account_numbers(self) -> list[BrokerAccountRef]:
        numbers = self._client.json_call("GET", "/trader/v1/accounts/accountNumbers") or []
        return account_refs(numbers, self.accounts_payload(fields=""))

    def accounts_payload(self, fields: str = "positions") -> list[dict[str, Any]]:
        """Schwab's `/trader/v1/accounts` as it answers (plain account numbers included)."""
        data = self._client.json_call("GET", "/trader/v1/accounts", params={"fields": fields} if fields else None)
        return list(data) if isinstance(data, list) else []

    def _securities_account(self, *, with_positions: bool) -> dict[str, Any]:
        data = self._client.json_call(
            "GET", self._account_path(), params={"fields": "positions"} if with_positions else None
        )
        return dict((data or {}).get("securitiesAccount") or {})

    def profile(self) -> Profile:
        return profile_of(self._user_preference(), broker=self.kind)

    def funds(self) -> Funds:
        return funds_of(self._securities_account(with_positions=False))

    def positions(self) -> list[Position]:
        return positions_of(self._securities_account(with_positions=True))

    def holdings(self) -> list[Holding]:
        """Schwab keeps no separate holdings: they are the long equity positions."""
        return holdings_of(self.positions())

    # --- orders -----------------------------------------------------------------------------

    def _order_book(self, since: datetime) -> list[Mapping[str, Any]]:
        now = datetime.now(UTC)
        data = self._client.json_call(
            "GET",
            self._account_path("/orders"),
            params={"fromEnteredTime": schwab_time(since), "toEnteredTime": schwab_time(now + timedelta(minutes=1))},
        )
        return [order for order in data or [] if isinstance(order, Mapping)]

    def orders(self, filters: Mapping[str, str] | None = None) -> list[OrderResult]:
        results = [order_result(order) for order in self._order_book(datetime.now(UTC) - ORDERS_WINDOW)]
        for name, value in (filters or {}).items():
            results = [result for result in results if getattr(result, name) == value]
        return results

    def order(self, broker_order_id: str) -> OrderResult:
        return order_result(
            self._client.json_call("GET", self._account_path(f"/orders/{checked_order_id(broker_order_id)}"))
        )

    def placement_candidates(self, order: OrderRequest, since: datetime) -> list[OrderResult]:
        """Every order in the book of the request's shape entered no earlier than `since` (give or take
        clock skew), oldest first. Which of them, if any, is the placement is for the caller to say: only
        it knows which ids its other orders hold and which of its sends could have made each."""
        payload = request_payload(order)
        since = since - ENTERED_TIME_SLACK
        book = sorted(self._order_book(since), key=lambda item: item.get("enteredTime") or "")
        return [order_result(candidate) for candidate in book if matches_placement(candidate, payload, since)]

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
        payload = request_payload(order)
        response = self._client.call("POST", self._account_path("/orders"), body=payload, order_call=True)
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
            price=optional_decimal(changes.get("price", current.price)),
            trigger_price=optional_decimal(changes.get("trigger_price", current.trigger_price)),
            validity=str(changes.get("validity") or current.validity),
        )
        payload = request_payload(replacement)
        response = self._client.call(
            "PUT", self._account_path(f"/orders/{checked_order_id(broker_order_id)}"), body=payload, order_call=True
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
        self._client.call("DELETE", self._account_path(f"/orders/{checked_order_id(broker_order_id)}"), order_call=True)
        return OrderResult(broker_order_id=broker_order_id, status="PENDING")

    # --- market data ------------------------------------------------------------------------

    def quotes(self, instruments: Iterable[str], *, wait_for_budget: bool = True) -> dict[str, Quote]:
        """Quotes keyed by the reference as given ("NASDAQ:AAPL" or "AAPL"); unknown symbols are left out.

        QUOTE_BATCH symbols a call: Schwab's spec gives `symbols` as a comma-separated list without a maximum,
        the sandbox refuses more than this, and a call of this many stays well within a URL's length. Each call
        spends a token of the app's quote share (THOR_SCHWAB_QUOTES_PER_MINUTE) as well as of its requests;
        `wait_for_budget=False` waits for neither and retries nothing."""
        if not wait_for_budget:
            self._client.rate_wait, self._client.read_retries = 0.0, 0
        references = list(dict.fromkeys(instruments))
        by_symbol: dict[str, list[str]] = {}
        for reference in references:
            by_symbol.setdefault(symbol_of(reference), []).append(reference)
        symbols = [symbol for symbol in by_symbol if symbol]
        quotes = {}
        for start in range(0, len(symbols), QUOTE_BATCH):
            batch = symbols[start : start + QUOTE_BATCH]
            self._client.spend("quotes", rate=settings.THOR_SCHWAB_QUOTES_PER_MINUTE, per=60)
            params = {"symbols": ",".join(batch), "fields": "quote"}
            data = self._client.json_call("GET", "/marketdata/v1/quotes", params=params)
            quotes.update(quotes_of(data, batch, by_symbol))
        return quotes

    def search_instruments(
        self, symbols: Iterable[str] = (), *, query: str = "", wait_for_budget: bool = True
    ) -> list[InstrumentInfo]:
        """Schwab's instrument search: exact `symbols` (`projection=symbol-search`), else a description search
        for `query` (`desc-search`). Input is checked before anything is sent; each call spends a token of the
        app's instrument-search share as well as of its requests. `wait_for_budget=False` waits for neither
        and retries nothing: the caller goes on without the answer."""
        if not wait_for_budget:
            self._client.rate_wait, self._client.read_retries = 0.0, 0
        if query:
            asks = [{"symbol": checked_query(query), "projection": "desc-search"}]
        else:
            wanted = checked_symbols(symbols)
            asks = [
                {"symbol": ",".join(wanted[start : start + SEARCH_BATCH]), "projection": "symbol-search"}
                for start in range(0, len(wanted), SEARCH_BATCH)
            ]
        found: list[InstrumentInfo] = []
        for params in asks:
            self._client.spend("instruments", rate=settings.THOR_SCHWAB_INSTRUMENT_SEARCHES_PER_MINUTE, per=60)
            found += instruments_of(self._client.json_call("GET", "/marketdata/v1/instruments", params=params))
        return found
