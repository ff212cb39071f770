"""What a paper fill costs beyond its price: a Zerodha-like schedule for INR, SEC and FINRA fees for USD.

Every rate is a Decimal here, named, in one place; a tenant overrides any of them by its slug in
settings.THOR_PAPER_CHARGES (a deployment setting, as THOR_PRICE_BANDS: no migration, no API to guard):

    THOR_PAPER_CHARGES = {
        "enabled": True,
        "tenants": {"acme": {"INR": {"options": {"brokerage_flat": "10"}, "common": {"gst": "0.18"}},
                             "USD": None}},   # None: this tenant's USD paper accounts pay nothing
    }

INR, per executed order (a slice of a sliced order is an order of its own, as at the exchange):
- brokerage: 0 on equity delivery (CNC); min(20, 0.03% of the value) intraday (MIS), futures, commodity and
  currency futures; a flat 20 on options (Zerodha charges options per order, not on the premium);
- STT (CTT on MCX; none on currency derivatives): on the segment's side(s) of the value (options: on the premium
  sold); options exercised
  at expiry pay `stt_exercise` on the settlement value (the long side only). The law changes these rates on a
  date: INR_REVISIONS lists each change with the day it took effect, and a fill pays the rates in force on its
  trade day (IST);
- exchange transaction charges: the segment's rate for the exchange (NSE/NFO/CDS, BSE/BFO/BCD, MCX);
- SEBI turnover fees: 10 rupees a crore; stamp duty: the buyer's side only;
- an intraday position the broker squares off pays its auto square-off charge (Zerodha: 50 rupees an order);
- GST: 18% of brokerage + exchange charges + SEBI fees + the auto square-off charge.
USD (Schwab: no commission): the SEC fee on the value sold and FINRA's TAF per share sold (capped per trade), at
the rates in force on the fill's trade day in New York (US_REVISIONS).

Each component is quantized to the currency's cents (paise) with thor.money's rounding, then summed: the
total is exactly the sum of the parts shown. INR_SEGMENTS holds the rates in force from
1 October 2024 (the exchanges' uniform charges, STT as the Finance Act 2024 set it); a later change by law goes
into INR_REVISIONS with its date, so a fill before it keeps the old rate. The USD rates change every fiscal year
(the SEC resets its rate, sometimes to zero mid-year; FINRA's TAF follows a yearly schedule): each change goes into
US_REVISIONS with its date, and until it is there an operator sets the new rate in THOR_PAPER_CHARGES.
"""

from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from thor.money import CENT, ROUNDING

D = Decimal


ZERO = D("0")
GST = D("0.18")
SEBI_PER_RUPEE = D("0.000001")  # 10 rupees a crore
AUTO_SQUARE_OFF = D("50")  # rupees an order the broker squares off (Zerodha's, plus GST)
# The US fees as they stood in 2024-25 (the SEC's fiscal-2024 rate, 27.80 dollars per million sold; FINRA's TAF);
# US_REVISIONS changes them from their dates.
SEC_FEE = D("0.0000278")
FINRA_TAF_PER_SHARE = D("0.000166")
FINRA_TAF_CAP = D("8.30")
# Shares of value are below 1 and amounts are rupees or dollars an order: anything larger is a typo.
MAX_RATE = D("1000000")


@dataclass(frozen=True)
class SegmentRates:
    """One INR segment's rates: shares of the order's value, except `brokerage_flat` and `brokerage_cap` (rupees)."""

    brokerage_flat: Decimal = ZERO
    brokerage_rate: Decimal = ZERO
    brokerage_cap: Decimal = ZERO
    stt_buy: Decimal = ZERO
    stt_sell: Decimal = ZERO
    stt_exercise: Decimal = ZERO
    stamp_buy: Decimal = ZERO
    exchange_nse: Decimal = ZERO
    exchange_bse: Decimal = ZERO
    exchange_mcx: Decimal = ZERO


@dataclass(frozen=True)
class CommonRates:
    gst: Decimal = GST
    sebi: Decimal = SEBI_PER_RUPEE
    auto_square_off: Decimal = AUTO_SQUARE_OFF


@dataclass(frozen=True)
class UsRates:
    brokerage_flat: Decimal = ZERO
    sec_fee: Decimal = SEC_FEE
    finra_taf_per_share: Decimal = FINRA_TAF_PER_SHARE
    finra_taf_cap: Decimal = FINRA_TAF_CAP


INR_SEGMENTS: dict[str, SegmentRates] = {
    "equity_delivery": SegmentRates(
        stt_buy=D("0.001"), stt_sell=D("0.001"), stamp_buy=D("0.00015"), exchange_nse=D("0.0000297"),
        exchange_bse=D("0.0000375"),
    ),
    "equity_intraday": SegmentRates(
        brokerage_rate=D("0.0003"), brokerage_cap=D("20"), stt_sell=D("0.00025"), stamp_buy=D("0.00003"),
        exchange_nse=D("0.0000297"), exchange_bse=D("0.0000375"),
    ),
    "futures": SegmentRates(
        brokerage_rate=D("0.0003"), brokerage_cap=D("20"), stt_sell=D("0.0002"), stamp_buy=D("0.00002"),
        exchange_nse=D("0.0000173"),
    ),
    "options": SegmentRates(
        brokerage_flat=D("20"), stt_sell=D("0.001"), stt_exercise=D("0.00125"), stamp_buy=D("0.00003"),
        exchange_nse=D("0.0003503"), exchange_bse=D("0.000325"),
    ),
    "commodity_futures": SegmentRates(
        brokerage_rate=D("0.0003"), brokerage_cap=D("20"), stt_sell=D("0.0001"), stamp_buy=D("0.00002"),
        exchange_mcx=D("0.000021"),
    ),
    "commodity_options": SegmentRates(
        brokerage_flat=D("20"), stt_sell=D("0.0005"), stamp_buy=D("0.00003"), exchange_mcx=D("0.000418"),
    ),
    # Currency derivatives (CDS) pay no STT; options' charges are on the premium.
    "currency_futures": SegmentRates(
        brokerage_rate=D("0.0003"), brokerage_cap=D("20"), stamp_buy=D("0.000001"), exchange_nse=D("0.0000035"),
        exchange_bse=D("0.0000045"),
    ),
    "currency_options": SegmentRates(
        brokerage_flat=D("20"), stamp_buy=D("0.000001"), exchange_nse=D("0.000311"), exchange_bse=D("0.00001"),
    ),
}  # fmt: skip
# Changes by law after INR_SEGMENTS' rates, oldest first: (the first trade day they apply to, segment -> rates).
INR_REVISIONS: tuple[tuple[date, dict[str, dict[str, str]]], ...] = (
    # Union Budget 2026 (Finance Act 2026), for trades from 1 April 2026: STT on futures sold 0.02% -> 0.05%,
    # on option premium sold 0.1% -> 0.15%, on options exercised 0.125% -> 0.15%.
    (
        date(2026, 4, 1),
        {"futures": {"stt_sell": "0.0005"}, "options": {"stt_sell": "0.0015", "stt_exercise": "0.0015"}},
    ),
)
# The US regulators' changes after UsRates' defaults, oldest first: (the first trade day, in New York, they apply
# to; rate -> value). Each rate stays until the next change names it.
US_REVISIONS: tuple[tuple[date, dict[str, str]], ...] = (
    # The SEC's Section 31 rate: nothing from 14 May 2025 (its fiscal-2025 collections were complete), then $20.60 a
    # million from 4 April 2026 (Release 34-104909, the fiscal-2026 order, until the fiscal-2027 one).
    (date(2025, 5, 14), {"sec_fee": "0"}),
    # FINRA's TAF on covered equities sold (By-Laws Schedule A, SR-FINRA-2024-019's schedule): for 2026 $0.000195 a
    # share, at most $9.79 a trade; none on trades of 1 October to 31 December 2026 (SR-FINRA-2026-021); for 2027
    # $0.000232, at most $11.61.
    (date(2026, 1, 1), {"finra_taf_per_share": "0.000195", "finra_taf_cap": "9.79"}),
    (date(2026, 4, 4), {"sec_fee": "0.0000206"}),
    (date(2026, 10, 1), {"finra_taf_per_share": "0", "finra_taf_cap": "0"}),
    (date(2027, 1, 1), {"finra_taf_per_share": "0.000232", "finra_taf_cap": "11.61"}),
)
INDIA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")
OPTION_TYPES = ("CE", "PE")
_EXCHANGE_RATE = {
    "NSE": "exchange_nse",
    "NFO": "exchange_nse",
    "CDS": "exchange_nse",
    "BSE": "exchange_bse",
    "BFO": "exchange_bse",
    "BCD": "exchange_bse",
}


@dataclass(frozen=True)
class Charges:
    """A fill's charges by component (each in cents), as a contract note lists them."""

    currency: str
    components: dict[str, Decimal]

    @property
    def total(self) -> Decimal:
        return sum(self.components.values(), D("0.00")).quantize(CENT)

    def as_dict(self) -> dict[str, str]:
        return {name: str(amount) for name, amount in self.components.items()} | {"total": str(self.total)}


NO_CHARGES = Charges(currency="", components={})


@dataclass(frozen=True)
class Schedule:
    segments: dict[str, SegmentRates]
    common: CommonRates
    us: UsRates
    inr_enabled: bool = True
    usd_enabled: bool = True


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUNDING)


def _rate(value, where: str) -> Decimal:
    try:
        rate = D(str(value))
    except InvalidOperation:
        raise ImproperlyConfigured(f"THOR_PAPER_CHARGES {where}: {value!r} is not a number.") from None
    if not rate.is_finite() or not 0 <= rate <= MAX_RATE:
        raise ImproperlyConfigured(f"THOR_PAPER_CHARGES {where}: {value!r} must be a number from 0 to {MAX_RATE}.")
    return rate


def _override(rates, overrides: dict, where: str):
    if not isinstance(overrides, dict):
        raise ImproperlyConfigured(f"THOR_PAPER_CHARGES {where}: expected an object of rates.")
    names = {field.name for field in fields(rates)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ImproperlyConfigured(f"THOR_PAPER_CHARGES {where}: unknown rate(s) {unknown}; known: {sorted(names)}.")
    return replace(rates, **{name: _rate(value, f"{where}.{name}") for name, value in overrides.items()})


def inr_segments_on(day: date) -> dict[str, SegmentRates]:
    """Each INR segment's rates in force by law on trade day `day`: INR_SEGMENTS with every revision up to it."""
    segments = dict(INR_SEGMENTS)
    for effective, changes in INR_REVISIONS:
        if day < effective:
            break
        for segment, rates in changes.items():
            segments[segment] = replace(segments[segment], **{name: D(rate) for name, rate in rates.items()})
    return segments


def us_rates_on(day: date) -> UsRates:
    """The US fees in force on New York trade day `day`: UsRates with every revision up to it."""
    rates = UsRates()
    for effective, changes in US_REVISIONS:
        if day < effective:
            break
        rates = replace(rates, **{name: D(rate) for name, rate in changes.items()})
    return rates


def trade_day(moment: datetime | None = None, *, zone: ZoneInfo = INDIA) -> date:
    """The trade day of `moment` (now when None) on the exchanges of `zone` (India's unless told): the day the law's
    rates are read for."""
    return (moment or timezone.now()).astimezone(zone).date()


def tenant_schedule(tenant, *, on: date | None = None) -> Schedule:
    """The schedule a tenant's paper fills on trade day `on` (today when None: in India for the INR rates, in New
    York for the USD ones) are charged at: the rates in force that day with the tenant's overrides on top (an
    override wins over a later change by law too).

    Raises ImproperlyConfigured naming the bad entry (an unknown segment or rate, a negative rate)."""
    slug = tenant.slug
    configured = (settings.THOR_PAPER_CHARGES.get("tenants") or {}).get(slug) or {}
    unknown = sorted(set(configured) - {"INR", "USD"})
    if unknown:
        raise ImproperlyConfigured(f"THOR_PAPER_CHARGES tenants.{slug}: unknown currency {unknown}; use INR or USD.")
    schedule = Schedule(
        segments=inr_segments_on(on or trade_day()),
        common=CommonRates(),
        us=us_rates_on(on or trade_day(zone=NEW_YORK)),
    )
    if "INR" in configured and configured["INR"] is None:
        schedule = replace(schedule, inr_enabled=False)
    for segment, overrides in (configured.get("INR") or {}).items():
        where = f"tenants.{slug}.INR.{segment}"
        if segment == "common":
            schedule = replace(schedule, common=_override(schedule.common, overrides, where))
        elif segment in schedule.segments:
            schedule.segments[segment] = _override(schedule.segments[segment], overrides, where)
        else:
            raise ImproperlyConfigured(
                f"THOR_PAPER_CHARGES {where}: unknown segment; known: {sorted(['common', *INR_SEGMENTS])}."
            )
    if "USD" in configured and configured["USD"] is None:
        schedule = replace(schedule, usd_enabled=False)
    elif configured.get("USD"):
        schedule = replace(schedule, us=_override(schedule.us, configured["USD"], f"tenants.{slug}.USD"))
    return schedule


def inr_segment(*, exchange: str, product: str, instrument_type: str) -> str:
    """The schedule's segment of an INR order: equity by product, derivatives by kind (options vs futures)."""
    option = instrument_type in OPTION_TYPES
    if exchange == "MCX":
        return "commodity_options" if option else "commodity_futures"
    if exchange in ("CDS", "BCD"):
        return "currency_options" if option else "currency_futures"
    if exchange in ("NFO", "BFO"):
        return "options" if option else "futures"
    return "equity_delivery" if product == "CNC" else "equity_intraday"


def charges_enabled() -> bool:
    """Whether this deployment charges paper fills at all (settings.THOR_PAPER_CHARGES["enabled"])."""
    return bool(settings.THOR_PAPER_CHARGES.get("enabled", True))


def fill_charges(
    *,
    tenant,
    currency: str,
    exchange: str,
    product: str,
    instrument_type: str,
    side: str,
    quantity: Decimal,
    price: Decimal,
    multiplier: int = 1,
    exercise: bool = False,
    squared_off: bool = False,
    on: date | None = None,
) -> Charges:
    """The charges of one executed order (`quantity` at `price`) on a paper account in `currency`, traded on day
    `on` (today, IST, when None). Its value is quantity x price x `multiplier` (a contract whose quantity is lots:
    brokers.contract_multipliers); FINRA's TAF counts shares (the quantity).

    `exercise`: an option position closed at expiry at its intrinsic value (accounts.paper_expiry): only the
    exercise STT is due, on the long side (which closes by selling); futures settle with no charges.
    `squared_off`: the broker closed an intraday position at the session's end: its auto square-off charge too.
    """
    if not charges_enabled():
        return Charges(currency=currency, components={})
    schedule = tenant_schedule(tenant, on=on)
    value = quantity * price * multiplier
    selling = side == "SELL"
    if currency == "USD":
        if not schedule.usd_enabled:
            return Charges(currency=currency, components={})
        us = schedule.us
        taf = min(quantity * us.finra_taf_per_share, us.finra_taf_cap) if selling else D("0")
        return Charges(
            currency=currency,
            components={
                "brokerage": _cents(us.brokerage_flat),
                "sec_fee": _cents(value * us.sec_fee) if selling else D("0.00"),
                "finra_taf": _cents(taf),
            },
        )
    if currency != "INR" or not schedule.inr_enabled:
        return Charges(currency=currency, components={})
    rates = schedule.segments[inr_segment(exchange=exchange, product=product, instrument_type=instrument_type)]
    if exercise:
        stt = value * rates.stt_exercise if selling else D("0")
        return Charges(currency=currency, components={"stt": _cents(stt)})
    brokerage = _cents(rates.brokerage_flat + min(rates.brokerage_cap, value * rates.brokerage_rate))
    exchange_rate = getattr(rates, _EXCHANGE_RATE.get(exchange, "exchange_mcx"))
    exchange_charges = _cents(value * exchange_rate)
    sebi = _cents(value * schedule.common.sebi)
    square_off = {"auto_square_off": _cents(schedule.common.auto_square_off)} if squared_off else {}
    return Charges(
        currency=currency,
        components={
            "brokerage": brokerage,
            "stt": _cents(value * (rates.stt_sell if selling else rates.stt_buy)),
            "exchange": exchange_charges,
            "sebi": sebi,
            "stamp": D("0.00") if selling else _cents(value * rates.stamp_buy),
            **square_off,
            "gst": _cents((brokerage + exchange_charges + sebi + sum(square_off.values(), ZERO)) * schedule.common.gst),
        },
    )
