"""Order egress: the HTTP(S) CONNECT proxy a user's live Kite orders leave through.

Since April 2026 Kite takes an order (place, modify, cancel) only from the static IP the user registered on
their developer profile; reads stay open from any address. Thor is one server for many unrelated users, so
each user's orders must leave from that user's own address: a proxy running there. It is set on the
connection, on a user's own Kite app (seed 000), or once for a tenant that is itself an exchange-registered
algo provider; the first found wins. Reads go direct.

The URL is a secret (it often carries the proxy's password): stored encrypted, written but never read back
through the API or the admin, and never put in a message, a log line or a probe result. A refused URL is
refused without repeating it.

A proxy inside Thor's own network (loopback, private, link-local addresses, or a bare internal host name)
is refused unless the operator lists it in THOR_ORDER_EGRESS_PRIVATE_HOSTS: otherwise an egress would let a
user aim Thor's connections, and the probe's verdict, at the machines beside it.
"""

import base64
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework import status

from brokers.models import BrokerConnection, BrokerKind
from thor.errors import ApplicationError

MAX_URL_LENGTH = 500
SCHEMES = {"http": 80, "https": 443}
INTERNAL_NAME_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".lan", ".home.arpa", ".intranet")
MAX_PROBE_ANSWER_BYTES = 8192


@dataclass(frozen=True)
class OrderEgress:
    url: str
    source: str  # connection | app | tenant
    probe: dict


def _refuse(message: str):
    raise ValidationError({"url": [message]})


def _host_is_internal(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.rstrip(".").lower()
        return name == "localhost" or "." not in name or name.endswith(INTERNAL_NAME_SUFFIXES)
    return not address.is_global


def order_egress_clean(url) -> str:
    """The URL as stored, or ValidationError({"url": [...]}) saying what is wrong without repeating it."""
    if not isinstance(url, str) or not url.strip():
        _refuse("Give the proxy's URL: http://[user:password@]host:port.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH or any(char.isspace() or ord(char) < 32 for char in url):
        _refuse("Not a proxy URL.")
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        _refuse("Only an http:// or https:// proxy (HTTP CONNECT) can carry orders.")
    try:
        port = parts.port
    except ValueError:
        _refuse("The proxy's port is not a port number.")
    host = parts.hostname or ""
    if not host or (port is not None and not 0 < port < 65536):
        _refuse("The URL names no proxy host and port.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        _refuse("A proxy URL has no path, query or fragment.")
    allowed = {name.lower() for name in settings.THOR_ORDER_EGRESS_PRIVATE_HOSTS}
    if _host_is_internal(host) and host.lower() not in allowed:
        _refuse("The proxy must be on a public address: the static IP registered with the broker.")
    return url


def _proxy_authorization(parts) -> str:
    if parts.username is None:
        return ""
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"


def _broker_address() -> tuple[str, int]:
    root = urlsplit(settings.THOR_KITE_API_ROOT)
    return root.hostname or "", root.port or SCHEMES.get(root.scheme, 443)


def egress_probe(url: str) -> dict:
    """Open a tunnel through the proxy to the broker's API host (a CONNECT, nothing sent inside it):
    {"ok": bool, "checked_at": ISO time, "error": Thor's words, never the URL}."""
    parts = urlsplit(url)
    target_host, target_port = _broker_address()
    target = f"{target_host}:{target_port}"
    timeout = settings.THOR_ORDER_EGRESS_PROBE_TIMEOUT
    error = ""
    try:
        with socket.create_connection((parts.hostname, parts.port or SCHEMES[parts.scheme.lower()]), timeout) as raw:
            sock = raw
            if parts.scheme.lower() == "https":
                sock = ssl.create_default_context().wrap_socket(raw, server_hostname=parts.hostname)
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{_proxy_authorization(parts)}\r\n".encode())
            answer = b""
            while b"\r\n" not in answer and len(answer) < MAX_PROBE_ANSWER_BYTES:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                answer += chunk
            status_line = answer.split(b"\r\n", 1)[0].decode("latin-1").split()
            code = status_line[1] if len(status_line) > 1 and status_line[0].startswith("HTTP/") else None
            if code is None:
                error = "The proxy did not answer as an HTTP proxy."
            elif code == "407":
                error = "The proxy refused its credentials (407)."
            elif code != "200":
                error = f"The proxy answered {code} to a tunnel to the broker ({target})."
    except TimeoutError:
        error = "The proxy did not answer in time."
    except ssl.SSLError:
        error = "TLS to the proxy failed."
    except OSError:
        error = "The proxy could not be reached."
    return {"ok": not error, "checked_at": timezone.now().isoformat(), "error": error}


def order_egress_for(connection: BrokerConnection) -> OrderEgress | None:
    """The egress the connection's orders leave through: its own, its user's app's, else its tenant's."""
    if connection.order_egress:
        return OrderEgress(connection.order_egress, "connection", connection.order_egress_probe)
    app = connection.app
    if app.owner_id and app.order_egress:
        return OrderEgress(app.order_egress, "app", app.order_egress_probe)
    if app.tenant.order_egress:
        return OrderEgress(app.tenant.order_egress, "tenant", app.tenant.order_egress_probe)
    return None


def order_egress_required(connection: BrokerConnection, *, tenant) -> bool:
    return connection.app.kind == BrokerKind.KITE and tenant.live_orders_require_egress


def order_egress_require(connection: BrokerConnection, *, tenant) -> None:
    """403 static_ip_required when the tenant requires an egress for this connection's orders and none is set:
    run before anything is written or sent."""
    if order_egress_required(connection, tenant=tenant) and order_egress_for(connection) is None:
        raise ApplicationError(
            "Live Kite orders must leave from the static IP you registered on your Kite developer profile "
            "(exchange rule since April 2026). Run an HTTP CONNECT proxy on that address and set it as this "
            f"connection's order egress: PUT /api/brokers/connections/{connection.pk}/egress. "
            f"How: {settings.THOR_ORDER_EGRESS_HELP_URL}",
            code="static_ip_required",
            status_code=status.HTTP_403_FORBIDDEN,
        )
