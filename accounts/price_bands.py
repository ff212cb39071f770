"""Price protection before sending (issue 22): a live LIMIT or SL order on an Indian exchange priced outside
the instrument's allowed band is refused with a 400 naming the band and its reference price, before anything
is written or sent. The exchange (and Kite's own checks) refuse such orders anyway, with a message traders
find misleading ("circuit limits" for an option's price protection range); Thor says which band and why.

Options: the reference is the last price; a premium above the threshold may move a percentage either side,
one at or below it an absolute amount. Everything else: the quote's circuit limits, else a default
percentage of the last price. The figures are settings.THOR_PRICE_BANDS, overridable per tenant slug.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError

from accounts import caches
from accounts.live import live_call
from accounts.market_data import EXCHANGES, Instrument
from accounts.models import TradingAccount
from brokers.adapters.errors import BrokerError
from brokers.adapters.types import OrderRequest, Quote
from thor.errors import ApplicationError

logger = logging.getLogger(__name__)

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


def price_band(*, instrument: Instrument, quote: Quote, rules: Mapping[str, Decimal]) -> PriceBand | None:
    """The band the order's prices must stay within; None without a reference price to set one from."""
    reference = quote.last_price
    if reference is None or reference <= 0:
        return None
    if instrument.instrument_type in OPTION_TYPES:
        if reference > rules["option_premium_threshold"]:
            low, high = _percent_band(reference, rules["option_percent"])
            basis = f"+/-{rules['option_percent']}% of the reference price for an option premium above "
        else:
            low, high = reference - rules["option_absolute"], reference + rules["option_absolute"]
            basis = f"+/-{rules['option_absolute']} of the reference price for an option premium at or below "
        basis += f"{rules['option_premium_threshold']}"
    elif quote.lower_circuit_limit and quote.upper_circuit_limit:  # Kite sends 0 where there is none
        low, high = quote.lower_circuit_limit, quote.upper_circuit_limit
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


def band_quote(*, account: TradingAccount, request: OrderRequest) -> Quote | None:
    """The quote a banded order is checked against (see `band_quotes`)."""
    return band_quotes(account=account, requests=[request])[0]


def band_quotes(*, account: TradingAccount, requests: list[OrderRequest]) -> list[Quote | None]:
    """The quote each order is checked against: one call at the account's broker for every instrument not
    quoted within THOR_PRICE_BAND_QUOTE_SECONDS, none for orders no band applies to. None where a quote
    cannot be had: that order is let through (logged), not blocked, since the exchange enforces the band
    anyway and a failing quote endpoint must not stop trading."""
    names = {
        f"{request.exchange}:{request.symbol}": caches.band_quote_key(
            account.connection_id, request.exchange, request.symbol
        )
        for request in requests
        if band_applies(account=account, request=request)
    }
    quotes: dict[str, Quote] = {name: quote for name, key in names.items() if (quote := cache.get(key)) is not None}
    missing = [name for name in names if name not in quotes]
    if missing:
        quotes |= _quotes_fetched(account=account, names=missing)
        for name in missing:
            if name in quotes:
                cache.set(names[name], quotes[name], settings.THOR_PRICE_BAND_QUOTE_SECONDS)
    return [quotes.get(f"{request.exchange}:{request.symbol}") for request in requests]


def _quotes_fetched(*, account: TradingAccount, names: list[str]) -> dict[str, Quote]:
    try:
        # Not waiting for Kite's quote budget (one a second per app, shared by its users): an order is not
        # held up a second for a check the exchange makes anyway.
        quotes = live_call(account, lambda adapter: adapter.quotes(names, wait_for_budget=False))
    except (BrokerError, ApplicationError) as error:
        logger.warning("Price bands not checked for %s on account %s: no quote (%s)", names, account.pk, error)
        return {}
    quotes = quotes if isinstance(quotes, dict) else {}
    if left_out := [name for name in names if name not in quotes]:
        logger.warning("Price bands not checked for %s on account %s: the quote left them out", left_out, account.pk)
    return quotes


def price_band_check(
    *, account: TradingAccount, request: OrderRequest, instrument: Instrument, quote: Quote | None
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
