"""Which broker order is which Thor order, when the broker's answer did not say.

Kite keeps Thor's client order id (its `tag`): an order carrying an order's tag is that order, and nothing
here is needed. Schwab keeps none: a placement whose answer was lost (a timeout, a 5xx, a 201 without
Location) can only be recognised by its shape (instrument, side, type, quantity, prices) and by when it
was entered. Two identical orders sent close together look the same, so a broker order is taken as an
order's placement only when the choice is forced both ways:

- it is the one order in the book of that shape, entered inside the order's send window, that no order of
  the account holds already (any broker id it has ever had: `BrokerOrderId`), and
- no other unsettled order of the account (sent, without a broker id yet) of the same shape could have
  made it (its own send window holds the broker order's entry time).

Anything else stays unsettled: guessing could give this order another order's fills, and a later
"not placed" could make a user send again what is already working.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import BrokerOrderId, Order, TradingAccount
from brokers.adapters.types import OrderResult
from brokers.registry import keeps_client_order_id

SHAPE_FIELDS = ("symbol", "side", "order_type", "quantity", "price", "trigger_price")

# How far before the send's start an entry time may lie: the broker's clock and Thor's differ a little.
CLOCK_SKEW = timedelta(seconds=5)


def late_landing(account: TradingAccount) -> timedelta:
    """How long after a send that got no answer the broker may still enter the order it carried."""
    return timedelta(seconds=settings.THOR_PLACEMENT_LATE_LANDING_SECONDS[account.broker])


def send_window(order: Order, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """When the broker order of the order's last send can have been entered. A send still under way (or
    cut short by a crash) has no end yet: up to now, and the late landing after it."""
    start = (order.send_started_at or order.created_at) - CLOCK_SKEW
    end = (order.send_ended_at or now or timezone.now()) + late_landing(order.account)
    return start, end


def _inside(moment: datetime | None, window: tuple[datetime, datetime]) -> bool:
    # A broker that gives no entry time cannot place an order in time: it fits every window.
    return moment is None or window[0] <= moment <= window[1]


def held_broker_ids(account: TradingAccount) -> set[str]:
    """Every broker order id an order of the account holds or has held."""
    return set(BrokerOrderId.objects.filter(account=account).values_list("broker_order_id", flat=True)) | set(
        account.orders.exclude(broker_order_id="").values_list("broker_order_id", flat=True)
    )


def _unsettled_of_shape(account: TradingAccount, like: Order):
    return account.orders.filter(
        status__in=Order.UNSETTLED_STATUSES,
        broker_order_id="",
        send_started_at__isnull=False,
        **{field: getattr(like, field) for field in SHAPE_FIELDS},
    )


@dataclass(frozen=True)
class Match:
    """What the book says of an unsettled order: its broker order, or how many could be it."""

    result: OrderResult | None
    possible: int

    @property
    def ambiguous(self) -> bool:
        return self.result is None and self.possible > 1


def placement_match(order: Order, candidates: Iterable[OrderResult], *, now: datetime | None = None) -> Match:
    """Pick the order's broker order among `candidates` (the adapter's orders of its shape), or none."""
    candidates = list(candidates)
    tagged = [candidate for candidate in candidates if candidate.tag and candidate.tag == order.client_order_id]
    if tagged:
        # The broker keeps Thor's id: its word is certain, whatever else looks alike.
        return Match(tagged[0], 1)
    if keeps_client_order_id(order.account.broker):
        return Match(None, 0)
    window = send_window(order, now=now)
    held = held_broker_ids(order.account)
    free = [c for c in candidates if c.broker_order_id not in held and _inside(c.placed_at, window)]
    if len(free) != 1:
        return Match(None, len(free))
    rivals = [
        rival
        for rival in _unsettled_of_shape(order.account, order).exclude(pk=order.pk)
        if _inside(free[0].placed_at, send_window(rival, now=now))
    ]
    if rivals:
        return Match(None, 1 + len(rivals))
    return Match(free[0], 1)


class Unclaimed:
    """A broker order that no order holds, as a reading of the whole book sees it (orders_reconcile)."""

    FOREIGN = "foreign"  # no unsettled order can have made it: placed elsewhere, Thor adopts it
    UNDECIDED = "undecided"  # one or more unsettled orders may have made it: their settling decides


def unclaimed_owner(
    account: TradingAccount, result: OrderResult, book: Iterable[OrderResult], *, now: datetime | None = None
):
    """The unsettled order that `result` (held by no order) must be the placement of, or Unclaimed.FOREIGN
    when none can be, or Unclaimed.UNDECIDED when it may be one's but the choice is not forced."""
    if keeps_client_order_id(account.broker):
        return Unclaimed.FOREIGN
    possible = [
        order
        for order in account.orders.filter(
            status__in=Order.UNSETTLED_STATUSES, broker_order_id="", send_started_at__isnull=False
        ).select_related("account__connection__app")
        if _same_shape(order, result) and _inside(result.placed_at, send_window(order, now=now))
    ]
    if not possible:
        return Unclaimed.FOREIGN
    if len(possible) == 1:
        match = placement_match(possible[0], [c for c in book if _same_shape(possible[0], c)], now=now)
        if match.result is not None and match.result.broker_order_id == result.broker_order_id:
            return possible[0]
    return Unclaimed.UNDECIDED


def _same_shape(order: Order, result: OrderResult) -> bool:
    if result.symbol.upper() != order.symbol.upper() or result.side != order.side:
        return False
    if result.order_type != order.order_type or result.quantity != order.quantity:
        return False
    return _same_price(result.price, order.price, order.order_type in ("LIMIT", "SL")) and _same_price(
        result.trigger_price, order.trigger_price, order.order_type in ("SL", "SL-M")
    )


def _same_price(broker, thor, priced: bool) -> bool:
    if not priced:
        return True
    return broker is not None and thor is not None and broker == thor
