"""In-memory Schwab: apps, logins, rotating tokens, MARGIN and CASH accounts, orders that fill as prices move.

The state is the users and their accounts (addressed by a hash, never the plain number, as at Schwab),
composed with the OAuth server (`schwab_oauth`), the order book (`schwab_ledger`), the account reads
(`schwab_balances`) and the quote feed (`schwab_quotes`). Every public method takes the shared sandbox lock.
"""

import hashlib
import hmac
import secrets
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping

from .market import Market
from .schwab_balances import account_payload, balances
from .schwab_ledger import OrderQuery, SchwabLedger
from .schwab_models import DEMO_PASSWORD, DEMO_USERNAME, Grant, SchwabAccount, SchwabApp, SchwabUser, service_error
from .schwab_oauth import SchwabOAuth
from .schwab_quotes import SchwabQuotes


class SchwabState:
    def __init__(
        self,
        *,
        lock: threading.RLock,
        clock: Callable[[], float],
        market: Market,
        apps: Iterable[SchwabApp | Mapping] = (),
    ):
        self._lock = lock
        self.market = market
        known_apps = [app if isinstance(app, SchwabApp) else SchwabApp.from_mapping(app) for app in apps]
        self.oauth = SchwabOAuth(lock=lock, clock=clock, apps=known_apps)
        self.quote_feed = SchwabQuotes(market=market, clock=clock)
        self.ledger = SchwabLedger(lock=lock, clock=clock, quotes=self.quote_feed)
        # Fixed, so an account keeps its hash across sandbox restarts, as it does at Schwab.
        self._hash_salt = b"thor-sandbox-schwab-account-hash"
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.oauth.reset()
            self.ledger.reset()
            self.users: dict[str, SchwabUser] = {}
            self._new_user(DEMO_USERNAME, DEMO_PASSWORD)

    # --- users and accounts ---------------------------------------------------------------

    def _new_user(self, username: str, password: str) -> SchwabUser:
        seed = zlib.crc32(username.encode())
        margin_number = f"{(seed % 9_000_000) + 10_000_000:08d}"
        cash_number = f"{((seed >> 3) % 9_000_000) + 20_000_000:08d}"
        user = SchwabUser(
            username=username,
            password=password,
            customer_id=hashlib.sha256(f"schwab-customer:{username}".encode()).hexdigest()[:32].upper(),
            accounts=[
                self._new_account(margin_number, "MARGIN", 100_000.0, {"AAPL": [10, 180.0], "SPY": [5, 500.0]}),
                self._new_account(cash_number, "CASH", 25_000.0, {"MSFT": [8, 400.0]}),
            ],
        )
        self.users[username] = user
        return user

    def _new_account(self, number: str, kind: str, cash: float, positions: dict) -> SchwabAccount:
        digest = hmac.new(self._hash_salt, number.encode(), hashlib.sha256).hexdigest().upper()
        account = SchwabAccount(number, digest, kind, cash, {symbol: list(held) for symbol, held in positions.items()})
        account.initial = balances(account, self.quote_feed)["initial"]
        return account

    def account_for(self, grant: Grant, hash_value: str) -> SchwabAccount:
        with self._lock:
            for account in self.users[grant.username].accounts:
                if hmac.compare_digest(account.hash_value.encode(), hash_value.encode()):
                    return account
        raise service_error(404, "Invalid account number.")

    # --- apps, login and tokens -----------------------------------------------------------

    def register_app(self, app: SchwabApp) -> None:
        self.oauth.register_app(app)

    def app(self, client_id: str | None) -> SchwabApp | None:
        return self.oauth.app(client_id)

    def login(self, client_id: str, redirect_uri: str, username: str, password: str) -> str | None:
        """A fresh single-use code ending in "@", or None when the credentials are wrong."""
        with self._lock:
            user = self.users.get(username.strip())
            if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
                return None
            return self.oauth.issue_code(client_id, redirect_uri, user.username)

    def seed_grants(self, client_id: str, count: int, *, access_seconds: float | None = None) -> list[dict]:
        """`count` logins of distinct users straight into tokens (for benchmarks that need thousands)."""
        if self.oauth.app(client_id) is None:
            raise ValueError("Unknown `client_id`.")
        seeded = []
        with self._lock:
            start = len(self.users)
            for index in range(count):
                user = self._new_user(f"bench-{start + index}", secrets.token_hex(8))
                grant, tokens = self.oauth.seed_grant(client_id, user.username, access_seconds=access_seconds)
                seeded.append(
                    {
                        "grant_id": grant.grant_id,
                        "customer_id": user.customer_id,
                        "refresh_expires_in": self.oauth.refresh_seconds,
                        "accounts": [
                            {"accountNumber": account.number, "hashValue": account.hash_value, "type": account.kind}
                            for account in user.accounts
                        ],
                        **tokens,
                    }
                )
        return seeded

    def authenticate(self, authorization: str | None) -> Grant:
        return self.oauth.authenticate(authorization)

    def streamer_user(self, access_token: str) -> SchwabUser:
        """Whose access token this is (the streamer's LOGIN), or SchwabError."""
        grant = self.oauth.authenticate(f"Bearer {access_token}")
        with self._lock:
            return self.users[grant.username]

    # --- reads ----------------------------------------------------------------------------

    def user_preference(self, grant: Grant, *, streamer_url: str = "wss://streamer-api.schwab.com/ws") -> dict:
        with self._lock:
            user = self.users[grant.username]
            return {
                "accounts": [
                    {
                        "accountNumber": account.number,
                        "primaryAccount": index == 0,
                        "type": "BROKERAGE",
                        "nickName": f"{account.kind.title()} account",
                        "displayAcctId": f"...{account.number[-3:]}",
                        "autoPositionEffect": False,
                        "accountColor": "Green" if index == 0 else "Blue",
                    }
                    for index, account in enumerate(user.accounts)
                ],
                "streamerInfo": [
                    {
                        "streamerSocketUrl": streamer_url,
                        "schwabClientCustomerId": user.customer_id,
                        "schwabClientCorrelId": secrets.token_hex(16),
                        "schwabClientChannel": "N9",
                        "schwabClientFunctionId": "APIAPP",
                    }
                ],
                "offers": [{"level2Permissions": True, "mktDataPermission": "NP"}],
            }

    def account_numbers(self, grant: Grant) -> list[dict]:
        with self._lock:
            return [
                {"accountNumber": account.number, "hashValue": account.hash_value}
                for account in self.users[grant.username].accounts
            ]

    def accounts(self, grant: Grant, fields: str) -> list[dict]:
        self.match_resting_orders()
        with self._lock:
            return [
                account_payload(account, fields, self.quote_feed) for account in self.users[grant.username].accounts
            ]

    def account(self, grant: Grant, hash_value: str, fields: str) -> dict:
        self.match_resting_orders()
        with self._lock:
            return account_payload(self.account_for(grant, hash_value), fields, self.quote_feed)

    def quotes(self, symbols: list[str]) -> dict:
        self.match_resting_orders()
        return self.quote_feed.quotes(symbols)

    def instruments(self, symbol: str, projection: str) -> dict:
        """The instrument search (read-only: it matches no orders)."""
        return self.quote_feed.instruments(symbol, projection)

    # --- orders ---------------------------------------------------------------------------

    def orders(self, grant: Grant, hash_value: str | None, query: Mapping[str, str]) -> list[dict]:
        wanted = OrderQuery.parse(query)
        self.match_resting_orders()
        with self._lock:
            if hash_value is None:
                accounts = self.users[grant.username].accounts
            else:
                accounts = [self.account_for(grant, hash_value)]
            return self.ledger.orders(accounts, wanted)

    def order(self, grant: Grant, hash_value: str, order_id: str) -> dict:
        self.match_resting_orders()
        with self._lock:
            return self.ledger.order(self.account_for(grant, hash_value), order_id)

    def place(self, grant: Grant, hash_value: str, body) -> int:
        with self._lock:
            return self.ledger.place(self.account_for(grant, hash_value), body)

    def replace(self, grant: Grant, hash_value: str, order_id: str, body) -> int:
        with self._lock:
            return self.ledger.replace(self.account_for(grant, hash_value), order_id, body)

    def cancel(self, grant: Grant, hash_value: str, order_id: str) -> None:
        with self._lock:
            self.ledger.cancel(self.account_for(grant, hash_value), order_id)

    def match_resting_orders(self) -> None:
        self.ledger.match_resting_orders()
