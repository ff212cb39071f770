"""Kite sandbox records: apps, demo users, accounts, tokens and orders, and Kite's API error."""

import ipaddress
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from .market import load_json_fixture


class KiteError(Exception):
    """A Kite API error: rendered as {"status": "error", "message", "error_type"} with `status`."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def token_error(message: str = "Incorrect `api_key` or `access_token`.") -> KiteError:
    return KiteError(403, "TokenException", message)


def input_error(message: str) -> KiteError:
    return KiteError(400, "InputException", message)


EXPIRED_TOKEN_MESSAGE = "Token is invalid or has expired."


def ip_not_allowed_error(address: str) -> KiteError:
    # Kite refuses order calls from an address not on the developer profile's IP whitelist; this is the
    # sandbox's wording of it (a 403 PermissionException, so the client raises PermissionException).
    return KiteError(
        403,
        "PermissionException",
        f"Order requests are allowed only from the static IPs whitelisted for this app; this one came from {address}.",
    )


def _ip_whitelist(data: Mapping) -> tuple[str, ...]:
    addresses = data.get("ip_whitelist") or []
    if not isinstance(addresses, list) or not all(isinstance(address, str) for address in addresses):
        raise ValueError("`ip_whitelist` must be a list of IP addresses")
    try:
        return tuple(str(ipaddress.ip_address(address.strip())) for address in addresses)
    except ValueError:
        raise ValueError("`ip_whitelist` must be a list of IP addresses") from None


@dataclass(frozen=True)
class KiteApp:
    api_key: str
    api_secret: str
    redirect_url: str
    postback_url: str | None = None
    # The static IPs order calls (place, modify, cancel) may come from; empty: any (as before April 2026).
    ip_whitelist: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping) -> "KiteApp":
        if not isinstance(data, Mapping):
            raise ValueError("An app must be a JSON object")
        required = ("api_key", "api_secret", "redirect_url")
        missing = [name for name in required if not isinstance(data.get(name), str) or not data.get(name)]
        if missing:
            raise ValueError(f"Missing fields: {', '.join(missing)}")
        postback_url = data.get("postback_url") or None
        if postback_url is not None and not (
            isinstance(postback_url, str) and postback_url.startswith(("http://", "https://"))
        ):
            raise ValueError("`postback_url` must be an http(s) URL")
        return cls(data["api_key"], data["api_secret"], data["redirect_url"], postback_url, _ip_whitelist(data))

    def allows_orders_from(self, address: str) -> bool:
        return not self.ip_whitelist or address in self.ip_whitelist

    @property
    def app_id(self) -> int:
        # Stable across restarts, like the numeric id Kite shows for a registered app.
        return zlib.crc32(self.api_key.encode()) % 100000


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    password: str
    user_name: str
    user_shortname: str


DEMO_USERS = (
    DemoUser("AB1234", "sandbox", "Asha Bhat", "Asha"),
    DemoUser("CD5678", "sandbox", "Chetan Desai", "Chetan"),
)


@dataclass
class KiteOrder:
    user_id: str
    # The app the order was placed through: its postback URL and secret sign the postbacks.
    api_key: str
    history: list[dict]

    @property
    def current(self) -> dict:
        return self.history[-1]


@dataclass
class KiteAccount:
    user_id: str
    password: str
    profile: dict
    holdings: list[dict]
    positions: dict[str, list[dict]]
    margins: dict[str, dict]
    orders: dict[str, KiteOrder] = field(default_factory=dict)
    trades: list[dict] = field(default_factory=list)


@dataclass
class RequestToken:
    api_key: str
    user_id: str
    expires_at: float
    used: bool = False


@dataclass
class Session:
    api_key: str
    user_id: str
    access_token: str
    expires_at: float
    login_time: str


def seed_account(user: DemoUser) -> KiteAccount:
    profile = load_json_fixture("profile.json")["data"]
    profile.update(
        user_id=user.user_id,
        user_name=user.user_name,
        user_shortname=user.user_shortname,
        email=f"{user.user_id.lower()}@sandbox.invalid",
    )
    return KiteAccount(
        user_id=user.user_id,
        password=user.password,
        profile=profile,
        holdings=load_json_fixture("holdings.json")["data"],
        positions=load_json_fixture("positions.json")["data"],
        margins=load_json_fixture("margins.json")["data"],
    )
