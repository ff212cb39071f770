"""Where chain snapshots get their quotes: Kite's full quote (last price, OI, volume, 5-level depth).

`kite`: an active session on a tenant's shared Kite app, through the Kite adapter and `broker_call`, so
the app's token bucket (1 quote call a second, 500 instruments a call) holds every process to Kite's
limit and a token error marks that connection expired. Never a session on a user's own app: that would
spend a customer's budget. `sandbox` (development): a session of its own at the broker sandbox's Kite,
logged in as the sandbox's demo user with the demo app, under a token bucket of the same rate.
"""

import logging
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.db.models import F
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_exceptions

from analytics import caches
from brokers.adapters.kite import QUOTE_BATCH, RATE_LIMITS
from brokers.models import BrokerConnection, BrokerKind
from brokers.services import broker_call
from thor import ratelimit
from thor.upstream import UpstreamError, UpstreamErrorCode

logger = logging.getLogger("analytics.quotes")

# The sandbox's demo user (brokers/sandbox/kite_models.py); development only, never a real account.
SANDBOX_USER, SANDBOX_PASSWORD = "AB1234", "sandbox"
SANDBOX_SESSION_SECONDS = 3600
# A snapshot may wait this long for each quote call's turn; it runs in the background.
QUOTE_TURN_WAIT_SECONDS = 5.0


class ChainQuoteSource(Protocol):
    def quotes(self, names: Sequence[str]) -> dict[str, dict]:
        """Kite full quotes ("NFO:NIFTY25DEC24000CE" -> Kite's quote object); unknown names are left out."""


def _unavailable(reason: str) -> UpstreamError:
    return UpstreamError(f"Chain quotes unavailable: {reason}", code=UpstreamErrorCode.UNAVAILABLE)


class KiteSessionQuotes:
    def __init__(self, connection: BrokerConnection):
        self.connection = connection

    def quotes(self, names: Sequence[str]) -> dict[str, dict]:
        # The adapter splits the names into calls of QUOTE_BATCH, each waiting for the app's quote token.
        quoted = broker_call(self.connection, lambda adapter: adapter.quotes(names))
        return {name: quote.raw for name, quote in quoted.items()}


class SandboxQuotes:
    def __init__(self):
        self.api_key = settings.THOR_SANDBOX_KITE_API_KEY
        self.root = settings.THOR_KITE_API_ROOT
        self._cache_key = caches.sandbox_session_key(self.api_key, self.root)

    def quotes(self, names: Sequence[str]) -> dict[str, dict]:
        names = list(dict.fromkeys(names))
        quoted: dict[str, dict] = {}
        for start in range(0, len(names), QUOTE_BATCH):
            quoted.update(self._quote_batch(names[start : start + QUOTE_BATCH]))
        return quoted

    def _quote_batch(self, batch: list[str]) -> dict[str, dict]:
        if not ratelimit.acquire(
            f"kite:sandbox:{self.api_key}:quote", rate=RATE_LIMITS["quote"], wait=QUOTE_TURN_WAIT_SECONDS
        ):
            raise UpstreamError("Quote budget spent", code=UpstreamErrorCode.RATE_LIMITED, retry_after=1.0)
        for attempt in range(2):
            client = KiteConnect(api_key=self.api_key, access_token=self._access_token(), root=self.root, timeout=10)
            try:
                return client.quote(batch)
            except kite_exceptions.TokenException:
                caches.flush_sandbox_session(self.api_key, self.root)
                if attempt:
                    raise _unavailable("the sandbox refused its session") from None
            except (kite_exceptions.KiteException, requests.RequestException) as error:
                raise _unavailable(type(error).__name__) from None
        raise AssertionError("unreachable")

    def _access_token(self) -> str:
        token = cache.get(self._cache_key)
        if token:
            return token
        try:
            answer = requests.post(
                f"{self.root}/connect/login",
                data={
                    "api_key": self.api_key,
                    "redirect_params": "",
                    "user_id": SANDBOX_USER,
                    "password": SANDBOX_PASSWORD,
                },
                allow_redirects=False,
                timeout=10,
            )
            request_token = parse_qs(urlsplit(answer.headers.get("Location", "")).query).get("request_token", [""])[0]
            if not request_token:
                raise _unavailable(f"the sandbox login answered {answer.status_code}")
            client = KiteConnect(api_key=self.api_key, root=self.root, timeout=10)
            session = client.generate_session(request_token, api_secret=settings.THOR_SANDBOX_KITE_API_SECRET)
        except (kite_exceptions.KiteException, requests.RequestException) as error:
            raise _unavailable(type(error).__name__) from None
        cache.set(self._cache_key, session["access_token"], SANDBOX_SESSION_SECONDS)
        return session["access_token"]


def chain_quote_source() -> ChainQuoteSource:
    if settings.THOR_ANALYTICS_QUOTE_SOURCE == "sandbox":
        return SandboxQuotes()
    connections = BrokerConnection.objects.filter(
        app__kind=BrokerKind.KITE, app__owner__isnull=True, status=BrokerConnection.Status.ACTIVE
    )
    if settings.THOR_ANALYTICS_TENANT:
        connections = connections.filter(app__tenant__slug=settings.THOR_ANALYTICS_TENANT)
    connection = connections.select_related("app").order_by(F("last_sync_at").desc(nulls_last=True)).first()
    if connection is None:
        raise _unavailable("no active session on a tenant's shared Kite app")
    return KiteSessionQuotes(connection)
