"""A minimal request/response/routing layer over http.server, shared by every fake broker."""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from functools import cached_property
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)
    # The address the call came from (the TCP peer): Kite checks order calls against the app's whitelist.
    client_address: str = ""

    @cached_property
    def form(self) -> dict[str, list[str]]:
        if "application/x-www-form-urlencoded" not in self.headers.get("Content-Type", ""):
            return {}
        return parse_qs(self.body.decode("utf-8", errors="replace"), keep_blank_values=True)

    def params(self) -> dict[str, str]:
        """First value of every query and form field, the form winning, as Kite reads them."""
        merged = {name: values[0] for name, values in self.query.items()}
        merged.update({name: values[0] for name, values in self.form.items()})
        return merged

    def json(self):
        """The JSON body; raises ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8", errors="replace") or "null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload, status: int = 200) -> "Response":
        return cls(status, json.dumps(payload).encode())

    @classmethod
    def html(cls, text: str, status: int = 200) -> "Response":
        return cls(status, text.encode(), "text/html; charset=utf-8")

    @classmethod
    def csv(cls, text: str) -> "Response":
        return cls(200, text.encode(), "text/csv; charset=utf-8")

    @classmethod
    def redirect(cls, location: str) -> "Response":
        return cls(302, b"", "text/plain", {"Location": location, "Cache-Control": "no-store"})


Handler = Callable[[Request], Response]


class RouteNotFound(Exception):
    pass


class MethodNotAllowed(Exception):
    pass


class Router:
    """Routes by method and path pattern; `{name}` in a pattern captures one path segment."""

    def __init__(self):
        self._routes: list[tuple[str, re.Pattern, Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method, re.compile(f"^{regex}$"), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """Raises RouteNotFound, or MethodNotAllowed when only the method is wrong."""
        if len(path) > 1:
            path = path.rstrip("/")
        path_known = False
        for route_method, regex, handler in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            if route_method == method:
                return handler, match.groupdict()
            path_known = True
        raise MethodNotAllowed() if path_known else RouteNotFound()
