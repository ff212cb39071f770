"""The `requests` session a broker's calls go out on: kept alive, without cookies, the environment read once.

- **Kept alive**: each broker's client module keeps one per thread (an adapter, and its broker client, is made for
  every call, and a client's own session would open a new connection each time); a session is not shared between
  threads.
- **No cookies**: the brokers' APIs authenticate each call by its header, and the session serves every customer the
  thread serves: a cookie one customer's answer set (a gateway's, a load balancer's) must never ride on another's
  call.
- **The environment read once per origin**: `requests` looks up the proxy variables (`HTTPS_PROXY`, `NO_PROXY`, ...)
  and the CA bundle (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`) in `os.environ` on every call, walking the whole
  environment twice, a cost paid inside every order's round trip. A process's environment does not change while it
  runs, so a session keeps what it found for each origin (scheme and host) and merges it as `requests` would: a
  proxy the call names (an order egress) wins over the environment's, the environment's CA bundle over the default.
"""

import os
from collections.abc import MutableMapping
from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

if TYPE_CHECKING:
    from requests.sessions import _Settings

# Origins a session remembers the environment's answer for (the brokers' API hosts are a handful; the bound only
# keeps a caller that names many hosts from growing it without end).
MAX_ORIGINS = 64


class BrokerSession(requests.Session):
    """A session that takes no cookies and reads the environment's proxies and CA bundle once per origin."""

    def __init__(self) -> None:
        super().__init__()
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._environment: dict[tuple[str, str, str | None], tuple[dict[str, str], str | None]] = {}

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: MutableMapping[str, str] | None,
        stream: bool | None,
        verify: bool | str | None,
        cert: str | tuple[str, str] | None,
    ) -> "_Settings":
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        address = url.decode() if isinstance(url, bytes) else url or ""
        proxies = dict(proxies or {})
        scheme, host = urlsplit(address)[:2]
        origin = (scheme, host, proxies.get("no_proxy"))
        found = self._environment.get(origin)
        if found is None:
            if len(self._environment) >= MAX_ORIGINS:
                self._environment.clear()
            ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            found = self._environment[origin] = (get_environ_proxies(address, no_proxy=origin[2]), ca_bundle)
        environment_proxies, ca_bundle = found
        for key, proxy in environment_proxies.items():
            proxies.setdefault(key, proxy)
        if (verify is True or verify is None) and ca_bundle:
            verify = ca_bundle
        return {
            "proxies": _merged(proxies, self.proxies),
            "stream": _merged(stream, self.stream),
            "verify": _merged(verify, self.verify),
            "cert": _merged(cert, self.cert),
        }


def _merged(asked: Any, kept: Any) -> Any:
    """requests' own merge of a call's setting with the session's (the call's wins; dicts merged)."""
    # requests' stubs leave it untyped.
    return merge_setting(asked, kept)  # type: ignore[no-untyped-call]
