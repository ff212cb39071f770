"""Price protection before sending (issue 22): a live LIMIT or SL order on an Indian exchange priced outside
the instrument's allowed band is refused with a 400 naming the band and its reference price, before anything
is written or sent. The exchange (and Kite's own checks) refuse such orders anyway, with a message traders
find misleading ("circuit limits" for an option's price protection range); Thor says which band and why.

Options: the reference is the last price; a premium above the threshold may move a percentage either side,
one at or below it an absolute amount. Everything else: the quote's circuit limits, else a default
percentage of the last price. The figures are settings.THOR_PRICE_BANDS, overridable per tenant slug.

The reference quote comes from the tenant's quote service (market.quotes, issue 21), as paper fills' and the
analytics' do: one ask for every instrument of a placement, a quote kept within THOR_PRICE_BAND_QUOTE_SECONDS
serving the next order without a call, and one past its feed's fresh period asked for again off the request
(market.quote_refresh) so that an active trader's next order finds a young one. The check never holds an order up for long: it waits
QUOTE_LOCK_WAIT_SECONDS at most for another reader's call, never for the quote budget. Since the exchange
enforces its band anyway, an order is let through unchecked (logged), never refused, when no good reference
can be had: the tenant has no market-data connection, the broker fails, the budget is spent, the lock is
busy, or the only quote is older than THOR_PRICE_BAND_QUOTE_SECONDS (a failing quote endpoint must not stop
trading, nor an old price refuse a good order).
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from accounts.market_data import EXCHANGES, Instrument
from accounts.models import TradingAccount
from brokers.adapters.types import OrderRequest
from market.quotes import MarketDataUnavailable, MarketQuote, Patience, instrument_name, quote_service
from thor.coordination import OccasionalWarning
from thor.money import is_market_price

logger = logging.getLogger(__name__)

# Long enough for another reader's call in flight (one quote call) to land, so concurrent orders share it;
# short enough that a stuck holder costs an order no more than a moment.
QUOTE_LOCK_WAIT_SECONDS = 0.5

BANDED_ORDER_TYPES = ("LIMIT", "SL")
OPTION_TYPES = ("CE", "PE")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class PriceBand:
    low: Decimal
    high: Decimal
    reference: Decimal
    basis: str  # how the band was set, for the refusal's message

    def allows(self, price: Decimal) -> bool:
        return self.low <= price <= self.high


def band_rules(tenant) -> dict[str, Decimal]:
    """The band figures for a tenant: the defaults, with its overrides (settings.THOR_PRICE_BANDS) on top."""
    configured: dict[str, Any] = settings.THOR_PRICE_BANDS
    rules = {**configured["default"], **configured.get("tenants", {}).get(tenant.slug, {})}
    return {name: Decimal(str(value)) for name, value in rules.items()}


def _percent_band(reference: Decimal, percent: Decimal) -> tuple[Decimal, Decimal]:
    return reference * (1 - percent / 100), reference * (1 + percent / 100)


def _circuit_limits(quote: MarketQuote) -> tuple[Decimal, Decimal] | None:
    """The quote's circuit limits, where they make a band: Kite sends 0 where there are none, and limits that are
    not numbers, or inverted, are taken as none too."""
    low, high = quote.lower_circuit_limit, quote.upper_circuit_limit
    if low is None or high is None or not (is_market_price(low) and is_market_price(high)) or low >= high:
        return None
    return low, high


def price_band(*, instrument: Instrument, quote: MarketQuote, rules: Mapping[str, Decimal]) -> PriceBand | None:
    """The band the order's prices must stay within; None without a reference price to set one from."""
    reference = quote.last_price
    if not is_market_price(reference):
        return None
    if instrument.instrument_type in OPTION_TYPES:
        if reference > rules["option_premium_threshold"]:
            low, high = _percent_band(reference, rules["option_percent"])
            basis = f"+/-{rules['option_percent']}% of the reference price for an option premium above "
        else:
            low, high = reference - rules["option_absolute"], reference + rules["option_absolute"]
            basis = f"+/-{rules['option_absolute']} of the reference price for an option premium at or below "
        basis += f"{rules['option_premium_threshold']}"
    elif (circuit := _circuit_limits(quote)) is not None:
        low, high = circuit
        basis = "the day's circuit limits"
    else:
        low, high = _percent_band(reference, rules["default_percent"])
        basis = f"+/-{rules['default_percent']}% of the reference price (no circuit limits quoted)"
    # Rounded outwards: Thor never refuses a price the exchange would take.
    return PriceBand(
        low=max(low, Decimal("0")).quantize(CENT, rounding=ROUND_FLOOR),
        high=high.quantize(CENT, rounding=ROUND_CEILING),
        reference=reference,
        basis=basis,
    )


def band_applies(*, account: TradingAccount, request: OrderRequest) -> bool:
    """Live LIMIT/SL orders on an Indian exchange: a MARKET order has no price to check and costs no quote."""
    rules = EXCHANGES.get(request.exchange)
    return (
        account.mode == TradingAccount.Mode.LIVE
        and request.order_type in BANDED_ORDER_TYPES
        and rules is not None
        and rules.currency == "INR"
    )


def band_quote(*, account: TradingAccount, request: OrderRequest) -> MarketQuote | None:
    """The quote a banded order is checked against (see `band_quotes`)."""
    return band_quotes(account=account, requests=[request])[0]


def band_quotes(*, account: TradingAccount, requests: list[OrderRequest]) -> list[MarketQuote | None]:
    """The reference quote of each order no older than THOR_PRICE_BAND_QUOTE_SECONDS, from the tenant's quote
    service in one ask, none for orders no band applies to (nothing is asked when no band applies). None where
    no such quote can be had in time: that order is let through, logged."""
    names = list(
        dict.fromkeys(
            instrument_name(request.exchange, request.symbol)
            for request in requests
            if band_applies(account=account, request=request)
        )
    )
    quotes = _reference_quotes(account=account, names=names) if names else {}
    return [quotes.get(instrument_name(request.exchange, request.symbol)) for request in requests]


def reference_age_check(quote: MarketQuote, *, now: datetime) -> bool:
    """Is the quote young enough (by its `as_of`) to set a band from? One older than THOR_PRICE_BAND_QUOTE_SECONDS
    (a last good quote the service kept through a failure) is not: a good order is not refused against an old
    price. Nor is one dated ahead of `now` by as much (a clock gone wrong)."""
    return abs((now - quote.as_of).total_seconds()) < settings.THOR_PRICE_BAND_QUOTE_SECONDS


# A tenant without a market-data connection would log this for every LIMIT order: a warning a minute says it
# is happening, each order's line goes out at debug.
_unchecked_warning = OccasionalWarning(logger)


def _not_checked(names: list[str], account_id: int, reason: str) -> None:
    level = logging.WARNING if _unchecked_warning.due() else logging.DEBUG
    logger.log(level, "Price bands not checked for %s on account %s: %s", names, account_id, reason)


def _reference_quotes(*, account: TradingAccount, names: list[str]) -> dict[str, MarketQuote]:
    patience = Patience(
        lock_wait=QUOTE_LOCK_WAIT_SECONDS,
        call_without_lock=False,
        wait_for_budget=False,
        serves_seconds=settings.THOR_PRICE_BAND_QUOTE_SECONDS,
        pad=False,
        refresh_ahead=True,
    )
    try:
        quotes = quote_service(tenant=account.user.tenant).quotes(names, patience=patience)
    except MarketDataUnavailable:
        _not_checked(names, account.pk, "no quote to be had")
        return {}
    now = datetime.now(UTC)
    if old := [name for name, quote in quotes.items() if not reference_age_check(quote, now=now)]:
        _not_checked(old, account.pk, "the quote is too old")
    if left_out := [name for name in names if name not in quotes]:
        _not_checked(left_out, account.pk, "no quote of them")
    return {name: quote for name, quote in quotes.items() if name not in old}


def price_band_check(
    *, account: TradingAccount, request: OrderRequest, instrument: Instrument, quote: MarketQuote | None
) -> None:
    """The 400 for an order priced outside its band (its trigger too, for SL), given `band_quote`'s quote;
    run before the order is written. No quote, no check."""
    if quote is None:
        return
    band = price_band(instrument=instrument, quote=quote, rules=band_rules(account.user.tenant))
    if band is None:
        return
    errors = {
        field: [
            f"{value} is outside the allowed band {band.low} to {band.high} for {request.exchange}:{request.symbol} "
            f"({band.basis}; reference price {band.reference}, the last price). The exchange would refuse it: "
            "place it within the band."
        ]
        for field, value in (("price", request.price), ("trigger_price", request.trigger_price))
        if value is not None and not band.allows(value)
    }
    if errors:
        raise ValidationError(errors)
