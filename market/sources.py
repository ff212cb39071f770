"""Where the instrument master's rows come from: Kite's daily dump, a dump file, the US seed (and, one
symbol at a time, Schwab's instrument search: market.instrument_search).

Each source yields rows in Kite's dump columns (as `KiteConnect.instruments()` parses them, or as the CSV
has them: the loader takes either), so one loader upserts them all.
"""

import csv
from pathlib import Path

from django.conf import settings
from kiteconnect import KiteConnect
from kiteconnect.exceptions import KiteException
from requests import RequestException

from market.us_tokens import us_token
from thor.errors import ApplicationError

US_SEED_CSV = Path(__file__).parent / "data" / "us_equities.csv"
# The public dump needs no session; the official client only wants a key to build its headers.
PUBLIC_API_KEY = "thor"
DUMP_TIMEOUT_SECONDS = 60


class InstrumentDumpUnavailable(ApplicationError):
    def __init__(self, reason: str):
        super().__init__(f"The instruments dump could not be read: {reason}", code="instruments_unavailable")


def kite_dump_rows(exchange: str | None = None) -> list[dict]:
    """Kite's instrument dump (`GET /instruments`) through the official client: the sandbox's in development."""
    client = KiteConnect(api_key=PUBLIC_API_KEY, root=settings.THOR_KITE_API_ROOT, timeout=DUMP_TIMEOUT_SECONDS)
    try:
        return client.instruments(exchange)
    except (KiteException, RequestException) as error:
        raise InstrumentDumpUnavailable(type(error).__name__) from None


def dump_file_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as error:
        raise InstrumentDumpUnavailable(error.strerror or type(error).__name__) from None


def us_seed_rows() -> list[dict[str, str]]:
    """The US equities Thor lists before anyone looks one up.

    Any other US symbol is looked up at Schwab the first time a paper order names it, through the tenant's
    Schwab connection (market.instrument_search), and stored beside these. Each has its streaming
    token (market.us_tokens).
    """
    with open(US_SEED_CSV, newline="", encoding="utf-8") as handle:
        return [
            {
                **row,
                "segment": row["exchange"],
                "instrument_type": "EQ",
                "instrument_token": str(us_token(row["tradingsymbol"]) or ""),
            }
            for row in csv.DictReader(handle)
        ]
