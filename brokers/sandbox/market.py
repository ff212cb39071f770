"""The simulated market: an instrument catalogue and a price for every instrument at any moment.

Prices oscillate slowly and deterministically around a base price, so resting limit orders near
the price cross within a minute, and tests can pin an exact price when they need one.
"""

import csv
import io
import json
import math
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from brokers.contract_multipliers import contract_multiplier
from brokers.freeze_limits import freeze_quantity

from .option_chain import IST, OptionChainBook
from .universe import universe_rows

FIXTURES_DIR = Path(__file__).parent / "fixtures"

KITE_EXCHANGES = ("NSE", "BSE", "NFO", "CDS", "BFO", "MCX", "BCD")
# The Schwab sandbox's equities (fixtures/schwab/us_equities.csv) share the same market.
US_EXCHANGES = ("NASDAQ", "NYSE")
DEFAULT_BASE_PRICE = 100.0
# Instruments the Kite mocks do not list but every demo needs (real tokens and symbols).
EXTRA_INSTRUMENTS_CSV = "sandbox_instruments.csv"


def chain_listing_day() -> date:
    """The day the derivatives chain is listed from: today in India, whatever clock the market runs on."""
    return datetime.now(IST).date()


def load_json_fixture(name: str):
    return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))


def read_csv_fixture(name: str) -> list[dict[str, str]]:
    with open(FIXTURES_DIR / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dataclass(frozen=True)
class Instrument:
    token: int
    exchange: str
    tradingsymbol: str
    base_price: float
    tick_size: float = 0.05
    lot_size: int = 1
    # The exchange's freeze quantity (the largest one order may carry): index derivatives only, from the
    # table Thor's instrument master uses (brokers.freeze_limits), as Kite's OMS knows it from the exchange.
    freeze_quantity: int | None = None
    # Price units one quantity is worth (brokers.contract_multipliers: an MCX lot of GOLD is 100 of its price
    # units), as Kite's positions report it; 1 where the table does not know it.
    multiplier: int = 1

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


class InstrumentCatalogue:
    """Instrument rows as Kite serves them in `/instruments`, plus what the market needs to price them.

    `full_universe` adds the generated rest of the market (universe.py: about 100,000 rows in all, as
    large as Kite's dump), which `run_broker_sandbox` serves; tests start a sandbox with the fixtures
    and the NIFTY/BANKNIFTY chain only, unless they ask for the whole market.
    """

    def __init__(self, *, full_universe: bool = False):
        self.all_rows = read_csv_fixture("instruments_all.csv")
        self.nse_rows = read_csv_fixture("instruments_nse.csv")
        extra_rows = read_csv_fixture(EXTRA_INSTRUMENTS_CSV) + OptionChainBook(chain_listing_day()).csv_rows()
        if full_universe:
            extra_rows += universe_rows(chain_listing_day())
        self.all_rows += extra_rows
        self.nse_rows += [row for row in extra_rows if row["exchange"] == "NSE"]
        self.fieldnames = list(self.all_rows[0].keys())
        self._csv_texts: dict[str | None, str] = {}

    def csv_text(self, exchange: str | None = None) -> str:
        """The dump as CSV, written once per exchange (the full dump is megabytes)."""
        text = self._csv_texts.get(exchange)
        if text is not None:
            return text
        if exchange is None:
            rows = self.all_rows
        elif exchange == "NSE":
            rows = self.nse_rows
        else:
            rows = [row for row in self.all_rows if row["exchange"] == exchange]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return self._csv_texts.setdefault(exchange, buffer.getvalue())

    def instruments(self) -> list[Instrument]:
        """Every instrument with its base price; later sources override earlier ones."""
        by_key: dict[str, Instrument] = {}
        for row in self.nse_rows + self.all_rows:
            listed_price = float(row["last_price"] or 0)
            instrument = Instrument(
                token=int(row["instrument_token"]),
                exchange=row["exchange"],
                tradingsymbol=row["tradingsymbol"],
                base_price=listed_price if listed_price > 0 else DEFAULT_BASE_PRICE,
                tick_size=float(row["tick_size"] or 0) or 0.05,
                lot_size=int(row["lot_size"] or 1),
                freeze_quantity=freeze_quantity(exchange=row["exchange"], name=row["name"]) if row["expiry"] else None,
                multiplier=contract_multiplier(
                    exchange=row["exchange"], name=row["name"], lot_size=int(row["lot_size"] or 1)
                )
                or 1,
            )
            by_key[instrument.key] = instrument
        for key, token, price in _fixture_prices():
            exchange, tradingsymbol = key.split(":", 1)
            known = by_key.get(key)
            by_key[key] = Instrument(
                token=token,
                exchange=exchange,
                tradingsymbol=tradingsymbol,
                base_price=price,
                tick_size=known.tick_size if known else 0.05,
                lot_size=known.lot_size if known else 1,
                freeze_quantity=known.freeze_quantity if known else None,
                multiplier=known.multiplier if known else 1,
            )
        return list(by_key.values())


def _fixture_prices() -> Iterable[tuple[str, int, float]]:
    """(key, token, price) from the Kite mocks, weakest source first."""
    positions = load_json_fixture("positions.json")["data"]
    for item in load_json_fixture("holdings.json")["data"] + positions["net"] + positions["day"]:
        yield f"{item['exchange']}:{item['tradingsymbol']}", item["instrument_token"], item["last_price"]
    for name in ("ltp.json", "quote.json"):
        for key, item in load_json_fixture(name)["data"].items():
            yield key, item["instrument_token"], item["last_price"]


class Market:
    OSCILLATION = 0.005
    PERIOD_SECONDS = 60.0

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        clock: Callable[[], float],
        lock: threading.RLock,
        chain: OptionChainBook | None = None,
    ):
        self._clock = clock
        self._lock = lock
        self.chain = chain or OptionChainBook(chain_listing_day())
        self._by_key: dict[str, Instrument] = {}
        self._by_token: dict[int, Instrument] = {}
        self._pinned: dict[str, float] = {}
        # Counts the changes to pinned prices and the listing: what was built from the market before is stale.
        self.version = 0
        for instrument in instruments:
            self._add(instrument)
        self._first_keys = frozenset(self._by_key)

    def _add(self, instrument: Instrument) -> None:
        self._by_key[instrument.key] = instrument
        self._by_token[instrument.token] = instrument

    def find(self, reference: str) -> Instrument | None:
        """Look up "EXCH:SYMBOL" or a numeric instrument token."""
        with self._lock:
            if reference.isdigit():
                return self._by_token.get(int(reference))
            return self._by_key.get(reference)

    def price(self, instrument: Instrument) -> float:
        with self._lock:
            pinned = self._pinned.get(instrument.key)
        if pinned is not None:
            return pinned
        contract = self.chain.find(instrument.key)
        if contract is not None:
            return self.chain.price(contract, self._spot(contract), self._clock())
        index = self.chain.index(instrument.key)
        if index is not None:
            return self.chain.index_level(index, self._clock())
        # A per-instrument phase keeps instruments from all moving in lockstep.
        phase = zlib.crc32(instrument.key.encode()) % 360
        angle = 2 * math.pi * self._clock() / self.PERIOD_SECONDS + math.radians(phase)
        raw = instrument.base_price * (1 + self.OSCILLATION * math.sin(angle))
        return round(round(raw / instrument.tick_size) * instrument.tick_size, 4)

    def _spot(self, contract) -> float:
        index = self._by_key.get(f"NSE:{contract.underlying.index_symbol}")
        return self.price(index) if index else self.chain.index_level(contract.underlying, self._clock())

    def derivative_activity(self, instrument: Instrument, last_price: float) -> dict | None:
        """Open interest, volume and 5-level depth of a listed derivative (None for anything else)."""
        contract = self.chain.find(instrument.key)
        if contract is None:
            return None
        spot, now = self._spot(contract), self._clock()
        return {
            "oi": self.chain.open_interest(contract, spot, now),
            "volume": self.chain.volume(contract, spot, now),
            "depth": self.chain.depth(contract, last_price, spot),
        }

    def day_range(self, instrument: Instrument) -> tuple[float, float]:
        low = instrument.base_price * (1 - self.OSCILLATION)
        high = instrument.base_price * (1 + self.OSCILLATION)
        last = self.price(instrument)
        return round(min(low, last), 2), round(max(high, last), 2)

    def pin(self, key: str, price: float | None) -> Instrument:
        """Pin (or with None, release) a price; pinning an unknown "EXCH:SYMBOL" lists it."""
        exchange, _, tradingsymbol = key.partition(":")
        if exchange not in KITE_EXCHANGES + US_EXCHANGES or not tradingsymbol:
            raise ValueError(f"Unknown instrument {key!r}: use EXCHANGE:TRADINGSYMBOL")
        with self._lock:
            instrument = self._by_key.get(key)
            if instrument is None:
                if price is None:
                    raise ValueError(f"Unknown instrument {key!r}")
                instrument = Instrument(
                    token=self._unused_token(key),
                    exchange=exchange,
                    tradingsymbol=tradingsymbol,
                    base_price=price,
                )
                self._add(instrument)
            if price is None:
                self._pinned.pop(key, None)
            else:
                self._pinned[key] = price
            self.version += 1
            return instrument

    def release_all(self) -> None:
        """Let every pinned price move again (instruments listed by pinning stay listed)."""
        with self._lock:
            self._pinned.clear()
            self.version += 1

    def reset(self) -> None:
        """No pins, and only the instruments it started with: for a sandbox shared by independent tests."""
        with self._lock:
            self._pinned.clear()
            for key in set(self._by_key) - self._first_keys:
                del self._by_token[self._by_key.pop(key).token]
            self.version += 1

    def _unused_token(self, key: str) -> int:
        token = zlib.crc32(key.encode()) | 1 << 32
        while token in self._by_token:
            token += 1
        return token
