"""The contract every broker implements. Adapters return neutral types and never touch the ORM."""

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import datetime

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import (
    Funds,
    Holding,
    InstrumentInfo,
    OrderRequest,
    OrderResult,
    Position,
    Profile,
    Quote,
    SlicedPlacement,
    Tokens,
)


class BrokerAdapter(ABC):
    kind: str

    @abstractmethod
    def authorization_url(self, state: str) -> str:
        """Where to send the browser to log in; `state` must come back on the callback."""

    @abstractmethod
    def exchange(self, params: Mapping[str, str]) -> Tokens:
        """Trade the callback's parameters (request token / code) for tokens."""

    @abstractmethod
    def refresh(self, tokens: Tokens) -> Tokens:
        """New tokens from a refresh token; raises BrokerError(token_expired, permanent) if impossible."""

    @abstractmethod
    def profile(self) -> Profile: ...

    @abstractmethod
    def funds(self) -> Funds: ...

    @abstractmethod
    def positions(self) -> list[Position]: ...

    @abstractmethod
    def holdings(self) -> list[Holding]: ...

    @abstractmethod
    def orders(self, filters: Mapping[str, str] | None = None) -> list[OrderResult]: ...

    def order(self, broker_order_id: str) -> OrderResult:
        """One order's current state (raises BrokerError NOT_FOUND when the book has no such order)."""
        found = next((result for result in self.orders() if result.broker_order_id == broker_order_id), None)
        if found is None:
            raise BrokerError(f"No order {broker_order_id} at the broker.", code=BrokerErrorCode.NOT_FOUND)
        return found

    @abstractmethod
    def place(self, order: OrderRequest) -> OrderResult: ...

    # How many times the broker lets one order be modified (Kite: 25), None where it sets no limit.
    modifications_per_order: int | None = None

    # Does the broker slice an order above the exchange's freeze quantity itself (Kite's autoslice)? Then
    # accounts.autoslice places such an order with place_sliced; elsewhere it is refused above the freeze.
    slices_orders: bool = False

    def place_sliced(self, order: OrderRequest) -> SlicedPlacement:
        """Place an order above the freeze quantity as the broker's own slices (one call)."""
        raise BrokerError(
            f"{self.kind} does not slice orders above the freeze quantity.",
            code=BrokerErrorCode.INVALID_INPUT,
            permanent=True,
        )

    @abstractmethod
    def modify(self, broker_order_id: str, changes: Mapping[str, object]) -> OrderResult: ...

    @abstractmethod
    def cancel(self, broker_order_id: str) -> OrderResult: ...

    @abstractmethod
    def quotes(self, instruments: Iterable[str], *, wait_for_budget: bool = True) -> dict[str, Quote]:
        """Quotes keyed by "EXCHANGE:SYMBOL" (or the instrument token as given). `wait_for_budget=False`: a
        spent rate budget answers RATE_LIMITED at once instead of waiting for a token (for a caller that can
        go on without the quote)."""

    # Does the broker keep Thor's client order id (Kite's tag)? Then a lost placement is found by it, for
    # certain. Brokers without one (Schwab) are matched by the order's shape and the time it was sent, and
    # a match counts only when it is the one possible (accounts.placement).
    keeps_client_order_id: bool = True

    def placement_candidates(self, order: OrderRequest, since: datetime) -> list[OrderResult]:
        """The broker's orders that may be the placement of `order` sent no earlier than `since`, each
        with its entry time where the broker gives one (`placed_at`).

        By default the orders carrying the request's tag (its client order id, as Kite keeps it); brokers
        without a client order id override this with every order of the same shape. A book that cannot
        be read raises BrokerError: only a read that succeeded may say "not there".
        """
        if not order.tag:
            return []
        return [result for result in self.orders({"tag": order.tag})]

    def revoke(self) -> None:
        """Invalidate the session at the broker where the broker allows it; a no-op otherwise."""
        return None

    def search_instruments(
        self, symbols: Iterable[str] = (), *, query: str = "", wait_for_budget: bool = True
    ) -> list[InstrumentInfo]:
        """The instruments the broker lists under `symbols` (exact symbols), or whose description matches
        `query`; what it does not know is left out. Brokers that publish a dump instead (Kite) have no search.
        `wait_for_budget=False`: a spent budget or a failed read answers at once (a caller that can go on
        without the answer), as `quotes` does."""
        raise BrokerError(f"{self.kind} has no instrument search.", code=BrokerErrorCode.INVALID_INPUT, permanent=True)
