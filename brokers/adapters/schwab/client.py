"""Schwab's wire: one pooled `requests` session per thread, the app's rate buckets, and every error
shape Schwab answers with read into one BrokerError.

Per-app limits (requests and order calls a minute, order calls a day, token calls a minute) are token
buckets shared by every process. Reads are retried with jittered backoff on 5xx and network errors; order
calls and token calls never are, since a request that failed in transit may still have reached Schwab.
Errors come in four shapes (Schwab's `errors` list, OAuth's `error`, the gateway's `fault`, HTML), and
the spec's `{"message", "errors": [...]}`; all of them become one BrokerError.
"""

import json
import random
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.sessions import BrokerSession
from thor import ratelimit

GATEWAY_TOKEN_ERRORS = ("invalid_access_token", "access_token_expired", "invalidaccesstoken")
GATEWAY_RATE_ERRORS = ("spikearrest", "quotaviolation", "ratelimit")

_pool = threading.local()


def rate_budgets(app_id: int) -> list[ratelimit.Budget]:
    """The app's buckets as SchwabClient spends them, for the health read."""
    return [
        ratelimit.Budget(f"schwab:{app_id}:requests", settings.THOR_SCHWAB_REQUESTS_PER_MINUTE, 60),
        ratelimit.Budget(f"schwab:{app_id}:orders", settings.THOR_SCHWAB_ORDERS_PER_MINUTE, 60),
        ratelimit.Budget(f"schwab:{app_id}:orders-day", settings.THOR_SCHWAB_ORDERS_PER_DAY, 86400),
        ratelimit.Budget(f"schwab:{app_id}:token", settings.THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE, 60),
        ratelimit.Budget(f"schwab:{app_id}:instruments", settings.THOR_SCHWAB_INSTRUMENT_SEARCHES_PER_MINUTE, 60),
        ratelimit.Budget(f"schwab:{app_id}:quotes", settings.THOR_SCHWAB_QUOTES_PER_MINUTE, 60),
    ]


def _session() -> requests.Session:
    """One pooled session per thread: keep-alive across calls without sharing a session between threads, and
    without cookies (brokers.adapters.sessions)."""
    session = getattr(_pool, "session", None)
    if session is None:
        session = BrokerSession()
        session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0))
        session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0))
        _pool.session = session
    return session


class SchwabClient:
    """One app's calls to Schwab, with one login's access token (`access_token`, set by the session
    calls). `rate_wait` and `read_retries` of None are the settings' (THOR_SCHWAB_RATE_WAIT,
    THOR_SCHWAB_READ_RETRIES)."""

    def __init__(self, *, app_id: int, client_id: str, client_secret: str, access_token: str = ""):
        self.app_id = app_id
        self.client_id = client_id
        self._client_secret = client_secret
        self.access_token = access_token
        self.rate_wait: float | None = None
        self.read_retries: int | None = None

    def __repr__(self) -> str:
        return f"SchwabClient(app_id={self.app_id})"

    def _budget(self, bucket: str, *, rate: float, per: float) -> ratelimit.Budget:
        return ratelimit.Budget(f"schwab:{self.app_id}:{bucket}", rate, per)

    def _spend(self, *budgets: ratelimit.Budget) -> ratelimit.Grant:
        """One call from every budget, or from none: a call refused for its order budget spends no request."""
        wait = settings.THOR_SCHWAB_RATE_WAIT if self.rate_wait is None else self.rate_wait
        reserved = ratelimit.reserve(list(budgets), wait=wait)
        if isinstance(reserved, ratelimit.Refusal):
            bucket = reserved.budget.bucket.rsplit(":", 1)[-1]
            raise BrokerError(
                f"Schwab {bucket} budget spent.", code=BrokerErrorCode.RATE_LIMITED, retry_after=reserved.retry_after
            )
        return reserved

    def spend(self, bucket: str, *, rate: float, per: float) -> None:
        """One call of one of the app's own shares of its requests (instrument searches, quotes), before the call
        itself spends one of `requests`; raises RATE_LIMITED as the call would."""
        self._spend(self._budget(bucket, rate=rate, per=per))

    def _spend_budget(self, *, order_call: bool) -> ratelimit.Grant:
        budgets = [self._budget("requests", rate=settings.THOR_SCHWAB_REQUESTS_PER_MINUTE, per=60)]
        if order_call:
            budgets += [
                self._budget("orders", rate=settings.THOR_SCHWAB_ORDERS_PER_MINUTE, per=60),
                self._budget("orders-day", rate=settings.THOR_SCHWAB_ORDERS_PER_DAY, per=86400),
            ]
        return self._spend(*budgets)

    def _send(self, method: str, url: str, *, grant: ratelimit.Grant | None = None, **kwargs: Any) -> requests.Response:
        """The HTTP call; its `grant` counted from Schwab's answer (or the failure), when Schwab had it if ever."""
        try:
            return _session().request(method, url, timeout=settings.THOR_SCHWAB_TIMEOUT, **kwargs)
        except requests.Timeout:
            raise BrokerError("Schwab did not answer in time.", code=BrokerErrorCode.TIMEOUT) from None
        except requests.RequestException as exc:
            raise BrokerError(
                "Schwab is unreachable.", code=BrokerErrorCode.UNAVAILABLE, broker_message=type(exc).__name__
            ) from None
        finally:
            if grant is not None:
                grant.settle()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        order_call: bool = False,
    ) -> requests.Response:
        """One Trader/market-data call. Reads retry on 5xx and network errors; order calls never do,
        since a request that failed in transit may still have reached Schwab."""
        if not self.access_token:
            raise BrokerError("No Schwab session.", code=BrokerErrorCode.TOKEN_EXPIRED, permanent=True)
        headers = {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        retries = settings.THOR_SCHWAB_READ_RETRIES if self.read_retries is None else self.read_retries
        attempts = 1 if order_call or method != "GET" else 1 + max(0, retries)
        url = f"{settings.THOR_SCHWAB_API_BASE}{path}"
        for attempt in range(attempts):
            if attempt:
                backoff = settings.THOR_SCHWAB_RETRY_BACKOFF * 2 ** (attempt - 1)
                time.sleep(backoff * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not security
            grant = self._spend_budget(order_call=order_call)
            last = attempt == attempts - 1
            try:
                response = self._send(method, url, grant=grant, params=params, data=data, headers=headers)
            except BrokerError as no_answer:
                if last or no_answer.code not in (BrokerErrorCode.TIMEOUT, BrokerErrorCode.UNAVAILABLE):
                    raise
                continue
            if response.status_code < 400:
                return response
            error = _broker_error(response, order_call=order_call)
            # A gateway quota answer can come as a 5xx: waiting, not retrying, is what helps.
            if last or response.status_code < 500 or error.code == BrokerErrorCode.RATE_LIMITED:
                raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def json_call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, order_call: bool = False
    ) -> Any:
        """The call's JSON body, as parsed: what shape it has is for the caller to check."""
        response = self.call(method, path, params=params, order_call=order_call)
        try:
            return response.json()
        except ValueError:
            raise BrokerError("Schwab answered something other than JSON.", code=BrokerErrorCode.UNAVAILABLE) from None

    def token_call(self, form: Mapping[str, str], *, refreshing: bool) -> dict[str, Any]:
        """The OAuth token endpoint: never retried, since a refresh that reached Schwab has already
        rotated the token it spent."""
        grant = self._spend(self._budget("token", rate=settings.THOR_SCHWAB_TOKEN_REQUESTS_PER_MINUTE, per=60))
        response = self._send(
            "POST",
            f"{settings.THOR_SCHWAB_AUTH_BASE}/v1/oauth/token",
            grant=grant,
            data=dict(form),
            auth=(self.client_id, self._client_secret),
            headers={"Accept": "application/json"},
        )
        if response.status_code != 200:
            raise _token_error(response, refreshing=refreshing)
        try:
            payload = response.json()
        except ValueError:
            raise BrokerError("Schwab's token service answered nonsense.", code=BrokerErrorCode.UNAVAILABLE) from None
        if not isinstance(payload, Mapping) or not payload.get("access_token"):
            raise BrokerError("Schwab's token service answered no token.", code=BrokerErrorCode.UNAVAILABLE)
        return dict(payload)


# --- errors -----------------------------------------------------------------------------------


class _TitleParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _error_words(response: requests.Response) -> tuple[str, str]:
    """(reason code, readable message) from whichever of Schwab's error shapes the body is."""
    try:
        body = response.json()
    except ValueError:
        parser = _TitleParser()
        parser.feed(response.text[:5000])
        return "", (parser.title.strip() or response.reason or "")[:300]
    if not isinstance(body, Mapping):
        return "", ""
    if isinstance(body.get("fault"), Mapping):
        fault = body["fault"]
        detail = fault.get("detail") if isinstance(fault.get("detail"), Mapping) else {}
        return str(detail.get("errorcode") or ""), str(fault.get("faultstring") or "")[:300]
    if "error" in body:
        return str(body.get("error") or ""), str(body.get("error_description") or body.get("error") or "")[:300]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        if isinstance(first, Mapping):
            words = " ".join(str(first.get(key)) for key in ("title", "detail") if first.get(key))
            return str(first.get("id") or ""), words[:300]
        return "", str(body.get("message") or first)[:300]
    return "", str(body.get("message") or "")[:300]


def _retry_after(response: requests.Response) -> float:
    raw = (response.headers.get("Retry-After") or "").strip()
    if raw.isdigit():
        return float(raw)
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _broker_error(response: requests.Response, *, order_call: bool) -> BrokerError:
    status = response.status_code
    reason, message = _error_words(response)
    lowered = reason.lower().replace(".", "").replace("_", "")
    if status == 429 or any(word.replace("_", "") in lowered for word in GATEWAY_RATE_ERRORS):
        return BrokerError(
            "Schwab rate limit hit.",
            code=BrokerErrorCode.RATE_LIMITED,
            retry_after=_retry_after(response),
            broker_message=message,
        )
    if status == 401 or any(word.replace("_", "") in lowered for word in GATEWAY_TOKEN_ERRORS):
        # Refreshing may still help: only the token endpoint says when it cannot (see refresh()).
        return BrokerError(
            "Schwab refused the access token.", code=BrokerErrorCode.TOKEN_EXPIRED, broker_message=message
        )
    if status == 403:
        return BrokerError(
            "Schwab refused the request.",
            code=BrokerErrorCode.PERMISSION_DENIED,
            permanent=True,
            broker_message=message,
        )
    if status == 404:
        return BrokerError(
            "Schwab does not know it.", code=BrokerErrorCode.NOT_FOUND, permanent=True, broker_message=message
        )
    if 400 <= status < 500:
        if order_call:
            return BrokerError(
                "Schwab rejected the order.", code=BrokerErrorCode.REJECTED, permanent=True, broker_message=message
            )
        return BrokerError(
            "Schwab rejected the input.", code=BrokerErrorCode.INVALID_INPUT, permanent=True, broker_message=message
        )
    return BrokerError("Schwab is unavailable.", code=BrokerErrorCode.UNAVAILABLE, broker_message=message)


def _token_error(response: requests.Response, *, refreshing: bool) -> BrokerError:
    status = response.status_code
    reason, message = _error_words(response)
    if status == 429:
        return _broker_error(response, order_call=False)
    if status >= 500 or status < 400:
        return BrokerError("Schwab's token service is unavailable.", code=BrokerErrorCode.UNAVAILABLE)
    if refreshing:
        # Whatever the reason, this refresh token will not work again: the user must log in anew.
        return BrokerError(
            "Schwab refused the refresh token; log in again.",
            code=BrokerErrorCode.TOKEN_EXPIRED,
            permanent=True,
            broker_message=reason or message or str(status),
        )
    if reason == "invalid_client":
        return BrokerError(
            "Schwab refused the app's credentials.",
            code=BrokerErrorCode.PERMISSION_DENIED,
            permanent=True,
            broker_message=reason,
        )
    return BrokerError(
        "Schwab refused the authorization code.",
        code=BrokerErrorCode.INVALID_INPUT,
        permanent=True,
        broker_message=reason or message,
    )
