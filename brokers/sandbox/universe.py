"""The rest of the listed universe, so the sandbox's `/instruments` is as large as Kite's (about 100,000 rows).

Beside the fixtures and the priced NIFTY/BANKNIFTY chain (option_chain.py), it lists, deterministically
for a given day: NSE and BSE equities and the indices, stock futures and options on two hundred NSE
underlyings (three monthly expiries, strikes each side of the spot), the other index derivatives
(FINNIFTY, MIDCPNIFTY, NIFTYNXT50 on NFO; SENSEX weekly and monthly, BANKEX on BFO), MCX commodity
futures and options, and CDS currency futures and options. Names are made from syllables where real ones
are not needed: the rows only have to look and weigh like Kite's dump. Their prices come from the market's
slow oscillation around `last_price` (the chain's Black-76 is for the NIFTY/BANKNIFTY contracts only).
"""

import functools
from datetime import date, timedelta

from .option_chain import MONTH_CODES, MONTH_NAMES, monthly_expiries
from .universe_specs import COMMODITIES, CURRENCIES, INDEX_DERIVATIVES

# Kite's segment ids: instrument_token = exchange_token << 8 | segment id.
SEGMENT_IDS = {"NSE": 1, "NFO": 2, "CDS": 3, "BSE": 4, "BFO": 5, "MCX": 7, "INDICES": 9}
# Exchange tokens here start above the fixtures' and below the chain book's (0x40000000 and up).
FIRST_EXCHANGE_TOKEN = 2_000_000

NSE_EQUITIES = 5_000
BSE_EQUITIES = 9_000
STOCK_UNDERLYINGS = 200
STOCK_STRIKES_EACH_SIDE = 30
_SYLLABLES = ("KA", "RA", "MA", "NI", "TE", "SHA", "VI", "LO", "DE", "PRA", "SU", "JA", "NA", "GO", "BHA", "TRI")
_SUFFIXES = ("", "IND", "TECH", "FIN", "PHARMA", "STEEL", "POWER", "CHEM", "INFRA", "AUTO", "TEX", "CEM")
_NAME_WORDS = ("INDUSTRIES", "LIMITED", "FINANCE", "TECHNOLOGIES", "PHARMA", "STEEL", "POWER", "CHEMICALS")
THURSDAY, FRIDAY = 3, 4


class _Rows:
    """Rows in Kite's `/instruments` columns, each with the next exchange token of its segment."""

    def __init__(self):
        self.rows: list[dict[str, str]] = []
        self._next_token = dict.fromkeys(SEGMENT_IDS, FIRST_EXCHANGE_TOKEN)

    def add(
        self,
        *,
        exchange: str,
        segment: str,
        tradingsymbol: str,
        name: str,
        instrument_type: str,
        last_price: float = 0.0,
        expiry: date | None = None,
        strike: float = 0.0,
        tick_size: float = 0.05,
        lot_size: int = 1,
    ) -> None:
        segment_key = "INDICES" if segment == "INDICES" else exchange
        exchange_token = self._next_token[segment_key]
        self._next_token[segment_key] += 1
        self.rows.append(
            {
                "instrument_token": str(exchange_token << 8 | SEGMENT_IDS[segment_key]),
                "exchange_token": str(exchange_token),
                "tradingsymbol": tradingsymbol,
                "name": name,
                "last_price": f"{last_price:.2f}" if last_price else "0.0",
                "expiry": expiry.isoformat() if expiry else "",
                "strike": _strike_text(strike),
                "tick_size": f"{tick_size:g}",
                "lot_size": str(lot_size),
                "instrument_type": instrument_type,
                "segment": segment,
                "exchange": exchange,
            }
        )


def _strike_text(strike: float) -> str:
    return f"{strike:.4f}".rstrip("0").rstrip(".") if strike != int(strike) else f"{strike:.1f}"


def _strike_symbol(strike: float) -> str:
    return str(int(strike)) if strike == int(strike) else f"{strike:g}"


def _company(index: int) -> tuple[str, str]:
    """(symbol, name) of the index-th made-up company: three syllables and a suffix, all distinct."""
    count = len(_SYLLABLES)
    first, second, third = index % count, index // count % count, index // count // count % count
    stem = _SYLLABLES[first] + _SYLLABLES[second] + _SYLLABLES[third]
    suffix = _SUFFIXES[index // count**3 % len(_SUFFIXES)]
    return f"{stem}{suffix}", f"{stem} {_NAME_WORDS[index % len(_NAME_WORDS)]}"


def _spot(index: int) -> float:
    """A spread of share prices from tens of rupees to a few thousand, fixed per company."""
    return round(40 + (index * 7919 % 997) ** 1.2, 1)


def _stock_strike_step(spot: float) -> float:
    for ceiling, step in ((100, 1.0), (250, 2.5), (500, 5.0), (1000, 10.0), (2500, 20.0), (5000, 50.0)):
        if spot < ceiling:
            return step
    return 100.0


def _stock_lot(spot: float) -> int:
    """NSE sizes a stock's lot to a contract of roughly 5 to 10 lakh rupees."""
    lot = max(int(750_000 / spot), 1)
    magnitude = 10 ** max(len(str(lot)) - 2, 0)
    return max(lot // magnitude * magnitude, 1)


def _last_weekday(year: int, month: int, weekday: int) -> date:
    first_of_next = date(year + month // 12, month % 12 + 1, 1)
    day = first_of_next - timedelta(days=1)
    return day - timedelta(days=(day.weekday() - weekday) % 7)


def _monthlies(today: date, count: int, weekday: int) -> list[date]:
    found: list[date] = []
    year, month = today.year, today.month
    while len(found) < count:
        expiry = _last_weekday(year, month, weekday)
        if expiry >= today:
            found.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def _weeklies(today: date, count: int, weekday: int) -> list[date]:
    first = today + timedelta(days=(weekday - today.weekday()) % 7)
    return [first + timedelta(weeks=week) for week in range(count)]


def _monthly_symbol(name: str, expiry: date, tail: str) -> str:
    return f"{name}{expiry:%y}{MONTH_NAMES[expiry.month - 1]}{tail}"


def _weekly_symbol(name: str, expiry: date, tail: str) -> str:
    return f"{name}{expiry:%y}{MONTH_CODES[expiry.month - 1]}{expiry:%d}{tail}"


def _options(
    rows: _Rows,
    *,
    exchange: str,
    name: str,
    expiry: date,
    symbol_of,
    spot: float,
    step: float,
    each_side: int,
    lot_size: int,
    tick_size: float,
) -> None:
    centre = round(spot / step) * step
    for offset in range(-each_side, each_side + 1):
        strike = round(centre + offset * step, 4)
        if strike <= 0:
            continue
        for kind in ("CE", "PE"):
            intrinsic = max(spot - strike, 0) if kind == "CE" else max(strike - spot, 0)
            rows.add(
                exchange=exchange,
                segment=f"{exchange}-OPT",
                tradingsymbol=symbol_of(_strike_symbol(strike) + kind),
                name=name,
                instrument_type=kind,
                last_price=intrinsic + spot * 0.01,
                expiry=expiry,
                strike=strike,
                tick_size=tick_size,
                lot_size=lot_size,
            )


def _equities(rows: _Rows) -> None:
    for index in range(NSE_EQUITIES):
        symbol, name = _company(index)
        rows.add(
            exchange="NSE",
            segment="NSE",
            tradingsymbol=symbol,
            name=name,
            instrument_type="EQ",
            last_price=_spot(index),
        )
    # BSE lists most NSE names again (same symbol) and thousands of its own.
    for index in range(BSE_EQUITIES):
        symbol, name = _company(index + NSE_EQUITIES // 2)
        rows.add(
            exchange="BSE",
            segment="BSE",
            tradingsymbol=symbol,
            name=name,
            instrument_type="EQ",
            last_price=_spot(index + NSE_EQUITIES // 2),
        )
    for spec in INDEX_DERIVATIVES:
        rows.add(
            exchange="NSE" if spec.exchange == "NFO" else "BSE",
            segment="INDICES",
            tradingsymbol=spec.index_symbol,
            name=spec.index_symbol,
            instrument_type="EQ",
            last_price=spec.spot,
            tick_size=0.0,
            lot_size=0,
        )


def _stock_derivatives(rows: _Rows, today: date) -> None:
    expiries = monthly_expiries(today)
    for index in range(STOCK_UNDERLYINGS):
        symbol, _ = _company(index)
        spot, lot = _spot(index), _stock_lot(_spot(index))
        for expiry in expiries:
            rows.add(
                exchange="NFO",
                segment="NFO-FUT",
                tradingsymbol=_monthly_symbol(symbol, expiry, "FUT"),
                name=symbol,
                instrument_type="FUT",
                last_price=spot,
                expiry=expiry,
                lot_size=lot,
            )
            _options(
                rows,
                exchange="NFO",
                name=symbol,
                expiry=expiry,
                symbol_of=functools.partial(_monthly_symbol, symbol, expiry),
                spot=spot,
                step=_stock_strike_step(spot),
                each_side=STOCK_STRIKES_EACH_SIDE,
                lot_size=lot,
                tick_size=0.05,
            )


def _index_derivatives(rows: _Rows, today: date) -> None:
    for spec in INDEX_DERIVATIVES:
        # NSE's monthly contracts expire on the last Tuesday, BSE's on the last Thursday (weeklies likewise).
        weekday = 1 if spec.exchange == "NFO" else THURSDAY
        monthlies = _monthlies(today, 3, weekday)
        weeklies = [day for day in _weeklies(today, 4, weekday) if day not in monthlies] if spec.weekly else []
        for expiry in monthlies:
            rows.add(
                exchange=spec.exchange,
                segment=f"{spec.exchange}-FUT",
                tradingsymbol=_monthly_symbol(spec.name, expiry, "FUT"),
                name=spec.name,
                instrument_type="FUT",
                last_price=spec.spot,
                expiry=expiry,
                lot_size=spec.lot_size,
            )
        for expiry in sorted(monthlies + weeklies):
            symbol_of = _monthly_symbol if expiry in monthlies else _weekly_symbol
            _options(
                rows,
                exchange=spec.exchange,
                name=spec.name,
                expiry=expiry,
                symbol_of=functools.partial(symbol_of, spec.name, expiry),
                spot=spec.spot,
                step=spec.strike_step,
                each_side=spec.strikes_each_side,
                lot_size=spec.lot_size,
                tick_size=0.05,
            )


def _commodities(rows: _Rows, today: date) -> None:
    for spec in COMMODITIES:
        # MCX contracts expire around the month's end; the sandbox uses the last Friday.
        expiries = _monthlies(today, spec.months, FRIDAY)
        for expiry in expiries:
            rows.add(
                exchange="MCX",
                segment="MCX-FUT",
                tradingsymbol=_monthly_symbol(spec.name, expiry, "FUT"),
                name=spec.name,
                instrument_type="FUT",
                last_price=spec.spot,
                expiry=expiry,
                tick_size=spec.tick_size,
                lot_size=spec.lot_size,
            )
        if spec.options:
            for expiry in expiries[:3]:
                _options(
                    rows,
                    exchange="MCX",
                    name=spec.name,
                    expiry=expiry - timedelta(days=3),
                    symbol_of=functools.partial(_monthly_symbol, spec.name, expiry),
                    spot=spec.spot,
                    step=spec.strike_step,
                    each_side=20,
                    lot_size=spec.lot_size,
                    tick_size=0.5 if spec.tick_size >= 1 else 0.05,
                )


def _currencies(rows: _Rows, today: date) -> None:
    for spec in CURRENCIES:
        # Currency futures expire two working days before the month's last; the last Wednesday is close.
        monthlies = _monthlies(today, 12, 2)
        for expiry in monthlies:
            rows.add(
                exchange="CDS",
                segment="CDS-FUT",
                tradingsymbol=_monthly_symbol(spec.pair, expiry, "FUT"),
                name=spec.pair,
                instrument_type="FUT",
                last_price=spec.spot,
                expiry=expiry,
                tick_size=0.0025,
                lot_size=1,
            )
        weeklies = [day for day in _weeklies(today, 4, FRIDAY) if day not in monthlies[:3]]
        for expiry in sorted(monthlies[:3] + weeklies):
            symbol_of = _monthly_symbol if expiry in monthlies else _weekly_symbol
            _options(
                rows,
                exchange="CDS",
                name=spec.pair,
                expiry=expiry,
                symbol_of=functools.partial(symbol_of, spec.pair, expiry),
                spot=spec.spot,
                step=spec.strike_step,
                each_side=spec.strikes_each_side,
                lot_size=1,
                tick_size=0.0025,
            )


@functools.cache
def universe_rows(today: date) -> tuple[dict[str, str], ...]:
    """Every generated row for `today`, the same on every call and in every process (cached: read-only)."""
    rows = _Rows()
    _equities(rows)
    _stock_derivatives(rows, today)
    _index_derivatives(rows, today)
    _commodities(rows, today)
    _currencies(rows, today)
    return tuple(rows.rows)
