"""Browser redirect targets: the only places Thor sends a browser are allow-listed origins."""

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL, or None for anything else.

    The answer is canonical, as a browser's Origin header is: lower-case, no default port.

    Rejects `javascript:` and other schemes, credentials in the URL, missing hosts and
    control characters, which browsers and parsers disagree on.
    """
    if not isinstance(url, str) or not url or len(url) > 2048:
        return None
    if any(ord(ch) < 0x21 or ch == "\\" for ch in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.username or parts.password:
        return None
    if port == 0:
        return None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    # Browsers leave the default port out of an Origin header, so the canonical form does too.
    if port == _DEFAULT_PORTS[parts.scheme]:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")
