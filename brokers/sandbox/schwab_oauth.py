"""The Schwab sandbox's OAuth server: apps, single-use authorization codes, grants and rotating tokens.

What it keeps to from the real service, because Thor depends on it:
- Authorization codes end in "@", work once and only for the redirect URI they were issued for.
- The token endpoint checks HTTP Basic client credentials and the exact redirect URI. A refresh
  rotates the refresh token, and the tokens it replaces stop working (so two refreshers of one
  connection lock one of them out, as on Schwab); refresh tokens die seven days after the login.

Lifetimes (`access_seconds`, `refresh_seconds`, `code_seconds`) are plain attributes tests may set.
Every public method takes the shared sandbox lock.
"""

import hmac
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from .schwab_models import AuthorizationCode, Grant, SchwabApp, oauth_error, service_error

ACCESS_SECONDS = 1800
REFRESH_SECONDS = 7 * 24 * 3600
CODE_SECONDS = 60
LIFETIMES = ("access_seconds", "refresh_seconds", "code_seconds")


class SchwabOAuth:
    def __init__(self, *, lock: threading.RLock, clock: Callable[[], float], apps: Iterable[SchwabApp] = ()):
        self._lock = lock
        self._clock = clock
        self._initial_apps = list(apps)
        self.reset()

    def reset(self) -> None:
        """Only the apps it was started with, the documented lifetimes, and no codes, grants or tokens."""
        with self._lock:
            self.access_seconds = ACCESS_SECONDS
            self.refresh_seconds = REFRESH_SECONDS
            self.code_seconds = CODE_SECONDS
            self.apps: dict[str, SchwabApp] = {app.client_id: app for app in self._initial_apps}
            self.codes: dict[str, AuthorizationCode] = {}
            self.grants: dict[str, Grant] = {}
            self._by_access: dict[str, Grant] = {}
            self._by_refresh: dict[str, Grant] = {}
            # Every refresh token ever issued, spent ones included, so a refused late refresh still
            # counts against the connection it came from.
            self._refresh_owner: dict[str, str] = {}
            self.refresh_calls: Counter[str] = Counter()

    def set_lifetimes(self, lifetimes: Mapping[str, float]) -> dict:
        """Set some of LIFETIMES (already checked); answers all three."""
        with self._lock:
            for name, value in lifetimes.items():
                setattr(self, name, value)
            return {name: getattr(self, name) for name in LIFETIMES}

    # --- apps and codes -------------------------------------------------------------------

    def register_app(self, app: SchwabApp) -> None:
        with self._lock:
            self.apps[app.client_id] = app

    def app(self, client_id: str | None) -> SchwabApp | None:
        with self._lock:
            return self.apps.get(client_id or "")

    def issue_code(self, client_id: str, redirect_uri: str, username: str) -> str:
        """A fresh single-use code ending in "@" for a user who has just logged in."""
        with self._lock:
            code = f"C0.{secrets.token_urlsafe(32)}@"
            self.codes[code] = AuthorizationCode(client_id, redirect_uri, username, self._clock() + self.code_seconds)
            return code

    def _check_client(self, client_id: str, client_secret: str) -> SchwabApp:
        app = self.apps.get(client_id)
        if app is None or not hmac.compare_digest(app.client_secret.encode(), client_secret.encode()):
            raise oauth_error(401, "invalid_client", "Unauthorized")
        return app

    # --- the token endpoint ---------------------------------------------------------------

    def grant_code(self, client_id: str, client_secret: str, code: str, redirect_uri: str) -> dict:
        with self._lock:
            app = self._check_client(client_id, client_secret)
            issued = self.codes.get(code)
            if issued is None or issued.used or issued.client_id != client_id or issued.expires_at < self._clock():
                raise oauth_error(400, "invalid_grant", "The authorization code is invalid or has expired.")
            # Exact comparison: a trailing slash or another scheme case is another URI.
            if redirect_uri != issued.redirect_uri or redirect_uri != app.redirect_uri:
                raise oauth_error(400, "invalid_grant", "The redirect_uri does not match.")
            issued.used = True
            grant = Grant(
                grant_id=secrets.token_hex(8),
                client_id=client_id,
                username=issued.username,
                access_token="",
                access_expires_at=0,
                refresh_token="",
                refresh_expires_at=self._clock() + self.refresh_seconds,
            )
            self.grants[grant.grant_id] = grant
            return self._issue(grant)

    def grant_refresh(self, client_id: str, client_secret: str, refresh_token: str) -> dict:
        with self._lock:
            self._check_client(client_id, client_secret)
            grant = self._by_refresh.get(refresh_token)
            owner = self._refresh_owner.get(refresh_token)
            if owner is not None:
                self.refresh_calls[owner] += 1
            if grant is None or grant.client_id != client_id or grant.refresh_token != refresh_token:
                raise oauth_error(400, "refresh_token_authentication_error", "Failed refresh token authentication")
            if grant.refresh_expires_at < self._clock():
                raise oauth_error(400, "refresh_token_authentication_error", "The refresh token has expired.")
            grant.refreshes += 1
            return self._issue(grant)

    def _issue(self, grant: Grant) -> dict:
        """New access and refresh tokens for the grant; the ones they replace stop working at once."""
        self._by_access.pop(grant.access_token, None)
        self._by_refresh.pop(grant.refresh_token, None)
        now = self._clock()
        grant.access_token = f"I0.{secrets.token_urlsafe(32)}@"
        grant.access_expires_at = now + self.access_seconds
        grant.refresh_token = secrets.token_urlsafe(48)
        self._by_access[grant.access_token] = grant
        self._by_refresh[grant.refresh_token] = grant
        self._refresh_owner[grant.refresh_token] = grant.grant_id
        return {
            "expires_in": self.access_seconds,
            "token_type": "Bearer",
            "scope": "api",
            "refresh_token": grant.refresh_token,
            "access_token": grant.access_token,
            "id_token": secrets.token_urlsafe(32),
        }

    def seed_grant(self, client_id: str, username: str, *, access_seconds: float | None = None) -> tuple[Grant, dict]:
        """A grant of `username` into the app straight into tokens, without a login (for benchmarks);
        `access_seconds` overrides the access token's lifetime."""
        with self._lock:
            grant = Grant(secrets.token_hex(8), client_id, username, "", 0, "", 0)
            grant.refresh_expires_at = self._clock() + self.refresh_seconds
            self.grants[grant.grant_id] = grant
            tokens = self._issue(grant)
            if access_seconds is not None:
                grant.access_expires_at = self._clock() + access_seconds
                tokens["expires_in"] = access_seconds
            return grant, tokens

    def refresh_counts(self) -> dict:
        with self._lock:
            by_grant = {grant_id: self.refresh_calls.get(grant_id, 0) for grant_id in self.grants}
        histogram = Counter(str(count) for count in by_grant.values())
        return {"total": sum(by_grant.values()), "by_grant": by_grant, "histogram": dict(histogram)}

    def expire(self, what: str, grant_id: str | None = None) -> int:
        """Make access or refresh tokens expire now (every grant, or one); answers how many."""
        if what not in ("access", "refresh"):
            raise ValueError("`what` must be access or refresh")
        with self._lock:
            grants = [self.grants[grant_id]] if grant_id in self.grants else list(self.grants.values())
            if grant_id is not None and grant_id not in self.grants:
                raise ValueError("Unknown `grant_id`.")
            for grant in grants:
                setattr(grant, f"{what}_expires_at", self._clock() - 1)
            return len(grants)

    def authenticate(self, authorization: str | None) -> Grant:
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            grant = self._by_access.get(token.strip())
            if scheme.lower() != "bearer" or grant is None:
                raise service_error(401, "Client not authorized.")
            if grant.access_expires_at < self._clock():
                raise service_error(401, "The access token has expired.")
            return grant
