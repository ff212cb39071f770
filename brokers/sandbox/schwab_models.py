"""The Schwab sandbox's records (apps, users, accounts, codes, grants), its errors, and the US equities
it trades."""

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from .market import Instrument, read_csv_fixture

US_EQUITIES_CSV = "schwab/us_equities.csv"
DEMO_USERNAME, DEMO_PASSWORD = "sandbox", "sandbox"
RESTING_STATUSES = ("WORKING",)


class SchwabError(Exception):
    """An API refusal: `body` is sent as JSON with `status`."""

    def __init__(self, status: int, body: dict):
        super().__init__(str(body))
        self.status = status
        self.body = body


def service_error(status: int, message: str) -> SchwabError:
    """The spec's ServiceError shape: {"message", "errors": [...]}."""
    return SchwabError(status, {"message": message, "errors": [message]})


def oauth_error(status: int, error: str, description: str) -> SchwabError:
    return SchwabError(status, {"error": error, "error_description": description})


def us_instruments() -> list[Instrument]:
    """The US equities the Schwab sandbox trades, priced by the shared market like Kite's."""
    return [
        Instrument(
            token=zlib.crc32(f"{row['exchange']}:{row['symbol']}".encode()) | 1 << 33,
            exchange=row["exchange"],
            tradingsymbol=row["symbol"],
            base_price=float(row["base_price"]),
            tick_size=0.01,
        )
        for row in read_csv_fixture(US_EQUITIES_CSV)
    ]


def us_descriptions() -> dict[str, dict]:
    return {row["symbol"]: row for row in read_csv_fixture(US_EQUITIES_CSV)}


@dataclass(frozen=True)
class SchwabApp:
    client_id: str
    client_secret: str
    redirect_uri: str

    @classmethod
    def from_mapping(cls, data: Mapping) -> "SchwabApp":
        if not isinstance(data, Mapping):
            raise ValueError("An app must be a JSON object")
        missing = [
            name
            for name in ("client_id", "client_secret", "redirect_uri")
            if not isinstance(data.get(name), str) or not data.get(name)
        ]
        if missing:
            raise ValueError(f"Missing fields: {', '.join(missing)}")
        if not data["redirect_uri"].startswith(("http://", "https://")):
            raise ValueError("`redirect_uri` must be an http(s) URL")
        return cls(data["client_id"], data["client_secret"], data["redirect_uri"])


@dataclass
class SchwabAccount:
    number: str
    hash_value: str
    kind: str  # MARGIN | CASH
    cash: float
    # symbol -> [quantity, average price]
    positions: dict[str, list[float]]
    initial: dict = field(default_factory=dict)
    orders: dict[int, dict] = field(default_factory=dict)


@dataclass
class SchwabUser:
    username: str
    password: str
    customer_id: str
    accounts: list[SchwabAccount]


@dataclass
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    username: str
    expires_at: float
    used: bool = False


@dataclass
class Grant:
    """One login of one user into one app: what Thor calls a connection."""

    grant_id: str
    client_id: str
    username: str
    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float
    refreshes: int = 0
