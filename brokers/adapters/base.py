"""The contract every broker implements. Adapters return neutral types and never touch the ORM."""

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import datetime

from brokers.adapters.types import Funds, Holding, OrderRequest, OrderResult, Position, Profile, Quote, Tokens


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

    @abstractmethod
    def place(self, order: OrderRequest) -> OrderResult: ...

    @abstractmethod
    def modify(self, broker_order_id: str, changes: Mapping[str, object]) -> OrderResult: ...

    @abstractmethod
    def cancel(self, broker_order_id: str) -> OrderResult: ...

    @abstractmethod
    def quotes(self, instruments: Iterable[str]) -> dict[str, Quote]:
        """Quotes keyed by "EXCHANGE:SYMBOL" (or the instrument token as given)."""

    def find_placed(self, order: OrderRequest, sent_at: datetime) -> OrderResult | None:
        """The broker's record of a placement whose answer was lost, or None when it has none.

        By default the order carrying the request's tag (its client order id, as Kite keeps it);
        brokers without a client order id override this with their own matching. A book that cannot
        be read raises BrokerError: only a read that succeeded may say "not there".
        """
        if not order.tag:
            return None
        return next(iter(self.orders({"tag": order.tag})), None)

    def revoke(self) -> None:
        """Invalidate the session at the broker where the broker allows it; a no-op otherwise."""
        return None
