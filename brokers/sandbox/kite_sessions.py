"""The Kite sandbox's logins: apps, single-use request tokens and access-token sessions, as Kite Connect keeps them.

What it keeps to from the real service, because Thor depends on it:
- A request token works once, for its app, within five minutes of the login that issued it.
- `POST /session/token` checks `checksum` = SHA-256 of api_key + request_token + api_secret.
- An access token dies at 06:00 IST the next morning (Kite's daily reset), or when its session is invalidated.

Every public method takes the shared sandbox lock.
"""

import copy
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone

from .kite_models import EXPIRED_TOKEN_MESSAGE, KiteAccount, KiteApp, RequestToken, Session, token_error
from .market import load_json_fixture

IST = timezone(timedelta(hours=5, minutes=30))
REQUEST_TOKEN_TTL_SECONDS = 300
# Kite access tokens die at 06:00 IST the next morning.
SESSION_EXPIRY_HOUR_IST = 6


class KiteSessions:
    def __init__(
        self,
        *,
        lock: threading.RLock,
        clock: Callable[[], float],
        accounts: Callable[[], dict[str, KiteAccount]],
        apps: Iterable[KiteApp] = (),
    ):
        self._lock = lock
        self._clock = clock
        self._accounts = accounts  # the state's demo accounts, as they are after its last reset
        self._initial_apps = list(apps)
        self._session_template = load_json_fixture("generate_session.json")["data"]
        self.reset()

    def reset(self) -> None:
        """Only the apps it was started with; no request tokens or sessions."""
        with self._lock:
            self.apps: dict[str, KiteApp] = {app.api_key: app for app in self._initial_apps}
            self.request_tokens: dict[str, RequestToken] = {}
            self.sessions: dict[str, Session] = {}

    def register_app(self, app: KiteApp) -> None:
        with self._lock:
            self.apps[app.api_key] = app

    def app(self, api_key: str | None) -> KiteApp | None:
        with self._lock:
            return self.apps.get(api_key or "")

    def login(self, api_key: str, user_id: str, password: str) -> str | None:
        """A fresh single-use request token, or None when the credentials are wrong."""
        with self._lock:
            account = self._accounts().get(user_id.strip().upper())
            if account is None or not hmac.compare_digest(account.password.encode(), password.encode()):
                return None
            request_token = secrets.token_urlsafe(24)
            self.request_tokens[request_token] = RequestToken(
                api_key=api_key,
                user_id=account.user_id,
                expires_at=self._clock() + REQUEST_TOKEN_TTL_SECONDS,
            )
            return request_token

    def create_session(self, api_key: str, request_token: str, checksum: str) -> dict:
        with self._lock:
            app = self.apps.get(api_key)
            if app is None:
                raise token_error("Invalid `api_key`.")
            expected = hashlib.sha256((api_key + request_token + app.api_secret).encode()).hexdigest()
            if not hmac.compare_digest(expected.encode(), checksum.encode()):
                raise token_error("Invalid `checksum`.")
            grant = self.request_tokens.get(request_token)
            if grant is None or grant.used or grant.api_key != api_key or grant.expires_at < self._clock():
                raise token_error(EXPIRED_TOKEN_MESSAGE)
            grant.used = True
            now = datetime.fromtimestamp(self._clock(), IST)
            session = Session(
                api_key=api_key,
                user_id=grant.user_id,
                access_token=secrets.token_urlsafe(24),
                expires_at=_next_session_expiry(now).timestamp(),
                login_time=kite_time(now),
            )
            self.sessions[session.access_token] = session
            profile = self._accounts()[grant.user_id].profile
            payload = copy.deepcopy(self._session_template)
            payload.update({key: copy.deepcopy(value) for key, value in profile.items() if key in payload})
            payload.update(
                api_key=api_key,
                access_token=session.access_token,
                public_token=secrets.token_hex(16),
                enctoken=secrets.token_urlsafe(24),
                refresh_token="",
                login_time=session.login_time,
            )
            return payload

    def invalidate_session(self, api_key: str, access_token: str) -> None:
        with self._lock:
            session = self.sessions.get(access_token)
            if session is not None and session.api_key == api_key:
                del self.sessions[access_token]

    def expire_sessions(self, user_id: str | None = None) -> None:
        """Make access tokens expire now, as the 06:00 IST reset does (for tests)."""
        with self._lock:
            for session in self.sessions.values():
                if user_id is None or session.user_id == user_id:
                    session.expires_at = self._clock() - 1

    def authenticate(self, authorization: str | None) -> Session:
        scheme, _, credentials = (authorization or "").partition(" ")
        api_key, _, access_token = credentials.partition(":")
        with self._lock:
            session = self.sessions.get(access_token)
            if scheme.lower() != "token" or session is None or session.api_key != api_key:
                raise token_error()
            if session.expires_at < self._clock():
                raise token_error(EXPIRED_TOKEN_MESSAGE)
            return session


def kite_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _next_session_expiry(now: datetime) -> datetime:
    expiry = now.replace(hour=SESSION_EXPIRY_HOUR_IST, minute=0, second=0, microsecond=0)
    return expiry if expiry > now else expiry + timedelta(days=1)
