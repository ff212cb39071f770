"""A realistic index derivatives market for the sandbox: NIFTY and BANKNIFTY options and futures.

NIFTY lists four weekly expiries (Tuesdays) and three monthly ones (the last Tuesday of a month),
BANKNIFTY the three monthly ones only, as NSE does since the weekly BANKNIFTY contracts ended in
November 2024. Each expiry has a monthly future and strikes around the spot. Options are priced by
Black-76 on the future with a volatility smile and a put skew that steepens for short expiries, off
the index's level, which wanders slowly through the session (pin "NSE:NIFTY 50" to move the whole chain); open interest drifts,
volume grows through the day, and the 5-level depth widens away from the money.

Expiries are listed from the day the sandbox starts, so the chain is never expired in a demo.
The formulas are the sandbox's own (it must not import Thor's analytics): they only need to look
like a market, Thor's analytics computes IV and Greeks back from these prices.
"""

import math
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30))
RISK_FREE_RATE = 0.065
EXPIRY_HOUR_IST = 15.5  # contracts expire at the 15:30 IST close
SECONDS_PER_YEAR = 365.0 * 86400
TICK = 0.05
MONTH_CODES = "123456789OND"  # Kite's weekly symbols: 1-9 for Jan-Sep, O, N, D
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
TUESDAY = 1
NFO_SEGMENT_ID = 2


@dataclass(frozen=True)
class UnderlyingSpec:
    name: str
    index_symbol: str
    index_token: int
    spot: float
    strike_step: int
    strikes_each_side: int
    lot_size: int
    weekly: bool
    atm_vol: float


# Lot sizes as NSE set them from the January 2026 series (circular of October 2025: NIFTY 75 -> 65, BANKNIFTY
# 35 -> 30).
UNDERLYINGS = (
    UnderlyingSpec("NIFTY", "NIFTY 50", 256265, 24500.0, 50, 30, 65, True, 0.12),
    UnderlyingSpec("BANKNIFTY", "NIFTY BANK", 260105, 52000.0, 100, 30, 30, False, 0.15),
)


@dataclass(frozen=True)
class Contract:
    """One listed derivative: a future (strike 0, kind FUT) or an option (kind CE or PE)."""

    token: int
    tradingsymbol: str
    underlying: UnderlyingSpec
    expiry: date
    kind: str
    strike: float

    @property
    def key(self) -> str:
        return f"NFO:{self.tradingsymbol}"

    def csv_row(self) -> dict[str, str]:
        return {
            "instrument_token": str(self.token),
            "exchange_token": str(self.token >> 8),
            "tradingsymbol": self.tradingsymbol,
            "name": self.underlying.name,
            "last_price": "0.0",
            "expiry": self.expiry.isoformat(),
            "strike": f"{self.strike:.1f}",
            "tick_size": str(TICK),
            "lot_size": str(self.underlying.lot_size),
            "instrument_type": self.kind,
            "segment": "NFO-FUT" if self.kind == "FUT" else "NFO-OPT",
            "exchange": "NFO",
        }


def _last_tuesday(year: int, month: int) -> date:
    first_of_next = date(year + month // 12, month % 12 + 1, 1)
    day = first_of_next - timedelta(days=1)
    return day - timedelta(days=(day.weekday() - TUESDAY) % 7)


def monthly_expiries(today: date, count: int = 3) -> list[date]:
    expiries: list[date] = []
    year, month = today.year, today.month
    while len(expiries) < count:
        expiry = _last_tuesday(year, month)
        if expiry >= today:
            expiries.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return expiries


def weekly_expiries(today: date, count: int = 4) -> list[date]:
    first = today + timedelta(days=(TUESDAY - today.weekday()) % 7)
    return [first + timedelta(weeks=week) for week in range(count)]


def _option_symbol(spec: UnderlyingSpec, expiry: date, monthly: bool, strike: int, kind: str) -> str:
    if monthly:
        return f"{spec.name}{expiry:%y}{MONTH_NAMES[expiry.month - 1]}{strike}{kind}"
    return f"{spec.name}{expiry:%y}{MONTH_CODES[expiry.month - 1]}{expiry:%d}{strike}{kind}"


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def black76(forward: float, strike: float, years: float, vol: float, is_call: bool) -> float:
    discount = math.exp(-RISK_FREE_RATE * years)
    deviation = vol * math.sqrt(years)
    d1 = (math.log(forward / strike) + 0.5 * deviation * deviation) / deviation
    d2 = d1 - deviation
    if is_call:
        return discount * (forward * _norm_cdf(d1) - strike * _norm_cdf(d2))
    return discount * (strike * _norm_cdf(-d2) - forward * _norm_cdf(-d1))


def _to_tick(price: float) -> float:
    return round(max(TICK, round(price / TICK) * TICK), 2)


class OptionChainBook:
    """The contracts listed from `today`, and their prices, open interest, volume and depth at a moment."""

    OI_PERIOD_SECONDS = 900.0

    def __init__(self, today: date):
        self.today = today
        self.contracts: dict[str, Contract] = {}
        used_tokens: set[int] = set()
        for spec in UNDERLYINGS:
            monthlies = monthly_expiries(today)
            expiries = sorted(set(monthlies) | (set(weekly_expiries(today)) if spec.weekly else set()))
            for expiry in monthlies:
                symbol = f"{spec.name}{expiry:%y}{MONTH_NAMES[expiry.month - 1]}FUT"
                self._list(Contract(self._token(symbol, used_tokens), symbol, spec, expiry, "FUT", 0.0))
            centre = round(spec.spot / spec.strike_step) * spec.strike_step
            for expiry in expiries:
                for offset in range(-spec.strikes_each_side, spec.strikes_each_side + 1):
                    strike = centre + offset * spec.strike_step
                    for kind in ("CE", "PE"):
                        symbol = _option_symbol(spec, expiry, expiry in monthlies, strike, kind)
                        token = self._token(symbol, used_tokens)
                        self._list(Contract(token, symbol, spec, expiry, kind, float(strike)))

    def _list(self, contract: Contract) -> None:
        self.contracts[contract.key] = contract

    @staticmethod
    def _token(symbol: str, used: set[int]) -> int:
        # Stable across restarts on the same day, clear of the listed fixtures' tokens, and Kite's shape:
        # exchange_token << 8 | segment id, so a ticker client reads NFO's price divisor from the low byte.
        token = ((zlib.crc32(symbol.encode()) & 0x000FFFFF) | 0x00400000) << 8 | NFO_SEGMENT_ID
        while token in used:
            token += 1 << 8
        used.add(token)
        return token

    def csv_rows(self) -> list[dict[str, str]]:
        index_rows = [
            {
                "instrument_token": str(spec.index_token),
                "exchange_token": str(spec.index_token >> 8),
                "tradingsymbol": spec.index_symbol,
                "name": spec.index_symbol,
                "last_price": f"{spec.spot:.1f}",
                "expiry": "",
                "strike": "0.0",
                "tick_size": "0.0",
                "lot_size": "0",
                "instrument_type": "EQ",
                "segment": "INDICES",
                "exchange": "NSE",
            }
            for spec in UNDERLYINGS
        ]
        return index_rows + [contract.csv_row() for contract in self.contracts.values()]

    def find(self, key: str) -> Contract | None:
        return self.contracts.get(key)

    def index(self, key: str) -> UnderlyingSpec | None:
        """The underlying whose index is listed as `key` ("NSE:NIFTY 50"), if any."""
        return next((spec for spec in UNDERLYINGS if f"NSE:{spec.index_symbol}" == key), None)

    def index_level(self, spec: UnderlyingSpec, now: float) -> float:
        """The index wanders slowly (an index moves tenths of a percent an hour, not a minute), with a small ripple."""
        ripple = 1 + 0.0004 * math.sin(2 * math.pi * now / 60 + zlib.crc32(spec.name.encode()) % 7)
        return round(spec.spot * self.session_drift(now) * ripple, 2)

    # --- the moving market ---------------------------------------------------------------------

    @staticmethod
    def years_to_expiry(contract: Contract, now: float) -> float:
        expiry_moment = datetime.combine(contract.expiry, datetime.min.time(), IST) + timedelta(hours=EXPIRY_HOUR_IST)
        return max((expiry_moment.timestamp() - now) / SECONDS_PER_YEAR, 0.5 / 365)

    @staticmethod
    def session_drift(now: float) -> float:
        """A slow wander on top of the index's quick oscillation, so one-minute snapshots see trends."""
        return 1 + 0.008 * math.sin(2 * math.pi * now / 10800) + 0.003 * math.sin(2 * math.pi * now / 2220)

    def forward(self, contract: Contract, spot: float, now: float) -> float:
        return spot * math.exp(RISK_FREE_RATE * self.years_to_expiry(contract, now))

    def implied_vol(self, contract: Contract, forward: float, now: float) -> float:
        """The smile: higher for short expiries, skewed to the puts' side, curving up in both wings."""
        years = self.years_to_expiry(contract, now)
        atm = contract.underlying.atm_vol * (1 + 0.6 * math.exp(-years * 40))
        # Log-moneyness per square root of time, so the wings of a weekly are as steep as a monthly's.
        moneyness = math.log(contract.strike / forward) / math.sqrt(max(years, 1 / 365))
        return min(max(atm - 0.10 * moneyness + 0.25 * moneyness * moneyness, 0.05), 2.0)

    def price(self, contract: Contract, spot: float, now: float) -> float:
        forward = self.forward(contract, spot, now)
        if contract.kind == "FUT":
            return _to_tick(forward)
        vol = self.implied_vol(contract, forward, now)
        return _to_tick(
            black76(forward, contract.strike, self.years_to_expiry(contract, now), vol, contract.kind == "CE")
        )

    def open_interest(self, contract: Contract, spot: float, now: float) -> int:
        lot = contract.underlying.lot_size
        phase = zlib.crc32(contract.key.encode()) % 360
        drift = 1 + 0.08 * math.sin(2 * math.pi * now / self.OI_PERIOD_SECONDS + math.radians(phase))
        if contract.kind == "FUT":
            near, *_ = monthly_expiries(self.today)
            days_to_near = max((near - self.today).days, 0)
            # OI rolls from the near month to the next as the near expiry comes closer.
            rolled = min(1.0, max(0.0, 1 - days_to_near / 30))
            share = {0: 1 - 0.7 * rolled, 1: 0.2 + 0.7 * rolled}.get(
                monthly_expiries(self.today).index(contract.expiry), 0.1
            )
            return int(150_000 * share * drift) * lot
        distance = (contract.strike - spot) / (contract.underlying.strike_step * 12)
        # Calls are written above the money, puts below, and round strikes draw more.
        side = 1.0 if (contract.kind == "CE") == (contract.strike >= spot) else 0.35
        round_bonus = 1.6 if contract.strike % (contract.underlying.strike_step * 10) == 0 else 1.0
        lots = 40_000 * math.exp(-distance * distance) * side * round_bonus * drift
        return max(int(lots), 1) * lot

    def volume(self, contract: Contract, spot: float, now: float) -> int:
        seconds_into_day = now % 86400
        activity = 0.2 + seconds_into_day / 86400
        return max(int(self.open_interest(contract, spot, now) * 1.5 * activity), contract.underlying.lot_size)

    def depth(self, contract: Contract, last_price: float, spot: float) -> dict[str, list[dict]]:
        """Five levels a side: the spread widens with distance from the money, quantities thin out."""
        lot = contract.underlying.lot_size
        steps_away = abs(contract.strike - spot) / contract.underlying.strike_step if contract.strike else 0
        half_spread_ticks = 1 + int(steps_away / 6)
        lots_at_best = max(int(60 / (1 + steps_away / 4)), 1)
        buy, sell = [], []
        for level in range(5):
            ticks = half_spread_ticks + level
            lots = lots_at_best * (level + 1)
            buy.append({"price": _to_tick(last_price - ticks * TICK), "quantity": lots * lot, "orders": level + 1})
            sell.append({"price": round(last_price + ticks * TICK, 2), "quantity": lots * lot, "orders": level + 1})
        return {"buy": buy, "sell": sell}
