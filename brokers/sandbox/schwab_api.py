"""The Schwab HTTP surface: the login page, the OAuth token endpoint, the Trader API, quotes and the
instrument search.

Mounted by the sandbox server under `/v1/oauth`, `/trader/v1` and `/marketdata/v1`. Errors use the
spec's `{"message", "errors": [...]}`; the four shapes the live service also answers with (its
`errors` list, OAuth's `error`, the gateway's `fault`, HTML pages) are fault kinds a test can ask for,
as is a placement answered without its `Location` (as when an order fills at once).
"""

import base64
import binascii
import html
import json
import uuid
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from .schwab_models import DEMO_PASSWORD, DEMO_USERNAME, Grant, SchwabApp, SchwabError, service_error
from .schwab_oauth import LIFETIMES
from .schwab_state import SchwabState
from .schwab_streamer import STREAMER_PATH
from .state import Fault
from .web import MethodNotAllowed, Request, Response, RouteNotFound, Router

PREFIXES = ("/v1/oauth", "/trader/v1", "/marketdata/v1")
MAX_QUOTE_SYMBOLS = 500
RETRY_AFTER_SECONDS = 2
# The live service's other error shapes, one fault kind each, and its 201 without a Location.
SHAPED_FAULTS = ("error_list", "oauth_error", "gateway_fault", "html_page", "no_location")


def schwab_error(status: int, message: str) -> Response:
    response = Response.json({"message": message, "errors": [message]}, status)
    if status == 429:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class SchwabApi:
    name = "schwab"

    def __init__(self, state: SchwabState, *, base_url: Callable[[], str]):
        self.state = state
        self._base_url = base_url
        self.router = Router()
        add = self.router.add
        add("GET", "/v1/oauth/authorize", self.login_form)
        add("POST", "/v1/oauth/authorize", self.login_submit)
        add("POST", "/v1/oauth/token", self.token)
        authenticated = {
            ("GET", "/trader/v1/userPreference"): lambda grant, _: Response.json(
                state.user_preference(grant, streamer_url=self.streamer_url())
            ),
            ("GET", "/trader/v1/accounts/accountNumbers"): lambda grant, _: Response.json(state.account_numbers(grant)),
            ("GET", "/trader/v1/accounts"): lambda grant, r: Response.json(state.accounts(grant, _fields(r))),
            ("GET", "/trader/v1/accounts/{hash}"): lambda grant, r: Response.json(
                state.account(grant, r.path_params["hash"], _fields(r))
            ),
            ("GET", "/trader/v1/orders"): lambda grant, r: Response.json(state.orders(grant, None, _query(r))),
            ("GET", "/trader/v1/accounts/{hash}/orders"): lambda grant, r: Response.json(
                state.orders(grant, r.path_params["hash"], _query(r))
            ),
            ("POST", "/trader/v1/accounts/{hash}/orders"): self.place,
            ("GET", "/trader/v1/accounts/{hash}/orders/{order_id}"): lambda grant, r: Response.json(
                state.order(grant, r.path_params["hash"], r.path_params["order_id"])
            ),
            ("PUT", "/trader/v1/accounts/{hash}/orders/{order_id}"): self.replace,
            ("DELETE", "/trader/v1/accounts/{hash}/orders/{order_id}"): self.cancel,
            ("GET", "/marketdata/v1/quotes"): self.quotes,
            ("GET", "/marketdata/v1/instruments"): lambda _, r: Response.json(
                state.instruments(",".join(r.query.get("symbol", [])), ",".join(r.query.get("projection", [])))
            ),
        }
        for (method, pattern), view in authenticated.items():
            add(method, pattern, self._authenticated(view))

    def streamer_url(self) -> str:
        """The sandbox's streamer (schwab_streamer), beside this API on the same port."""
        base = self._base_url().replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return base + STREAMER_PATH

    def mounts(self) -> list["SchwabMount"]:
        return [SchwabMount(self, prefix) for prefix in PREFIXES]

    def handle(self, request: Request) -> Response:
        try:
            handler, request.path_params = self.router.resolve(request.method, request.path)
        except RouteNotFound:
            return schwab_error(404, "Resource not found.")
        except MethodNotAllowed:
            return schwab_error(405, "Method not allowed.")
        try:
            return handler(request)
        except SchwabError as error:
            return Response.json(error.body, error.status)

    def error_response(self, status: int, message: str) -> Response:
        return schwab_error(status, message)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        """The answer an injected fault makes (the server handles `drop` and latency itself)."""
        if fault.kind == "no_location":
            response = self.handle(request)
            response.headers.pop("Location", None)
            return response
        if fault.kind == "429":
            return schwab_error(429, "Too many requests.")
        if fault.kind == "5xx":
            status = fault.status or 500
            return schwab_error(status, "Internal server error." if status == 500 else "Service unavailable.")
        if fault.kind == "token_expired":
            return schwab_error(401, "The access token has expired.")
        if fault.kind == "error_list":
            detail = "The request could not be processed."
            return Response.json(
                {"errors": [{"id": str(uuid.uuid4()), "status": "400", "title": "Bad Request", "detail": detail}]},
                400,
            )
        if fault.kind == "oauth_error":
            return Response.json({"error": "invalid_client", "error_description": "Unauthorized"}, 401)
        if fault.kind == "gateway_fault":
            return Response.json(
                {
                    "fault": {
                        "faultstring": "Invalid access token",
                        "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
                    }
                },
                401,
            )
        if fault.kind == "html_page":
            return Response.html(
                "<!doctype html><html><head><title>502 Bad Gateway</title></head>"
                "<body><h1>502 Bad Gateway</h1></body></html>",
                status=502,
            )
        return schwab_error(500, f"Unknown fault {fault.kind}.")

    def _authenticated(self, view):
        def handler(request: Request) -> Response:
            grant = self.state.authenticate(request.headers.get("Authorization"))
            return view(grant, request)

        return handler

    # --- login ----------------------------------------------------------------------------

    def _checked_app(self, params: Mapping[str, str]) -> SchwabApp | str:
        """The app the login link names, or why the link is not valid."""
        app = self.state.app(params.get("client_id"))
        if app is None:
            return "Unknown client_id."
        # Exact match, as Schwab checks it: a trailing slash or another scheme case is another URI.
        if params.get("redirect_uri") != app.redirect_uri:
            return "The redirect_uri does not match the app's callback URL."
        return app

    def login_form(self, request: Request) -> Response:
        params = request.params()
        app_or_problem = self._checked_app(params)
        if isinstance(app_or_problem, str):
            return _error_page(app_or_problem)
        app = app_or_problem
        if params.get("response_type") != "code":
            return _error_page("response_type must be code.")
        return _login_page(app, params.get("state", ""), error=None, status=200)

    def login_submit(self, request: Request) -> Response:
        params = {name: values[0] for name, values in request.form.items()}
        app_or_problem = self._checked_app(params)
        if isinstance(app_or_problem, str):
            return _error_page(app_or_problem)
        app = app_or_problem
        state = params.get("state", "")
        code = self.state.login(app.client_id, app.redirect_uri, params.get("username", ""), params.get("password", ""))
        if code is None:
            return _login_page(app, state, error="Invalid login ID or password.", status=401)
        query = urlencode({"code": code, "session": str(uuid.uuid4()), "state": state})
        separator = "&" if "?" in app.redirect_uri else "?"
        return Response.redirect(f"{app.redirect_uri}{separator}{query}")

    # --- tokens ---------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        client_id, client_secret = _basic_credentials(request.headers.get("Authorization"))
        if client_id is None:
            return Response.json({"error": "invalid_client", "error_description": "Unauthorized"}, 401)
        if "application/x-www-form-urlencoded" not in request.headers.get("Content-Type", ""):
            return Response.json({"error": "invalid_request", "error_description": "Send a form body."}, 400)
        form = {name: values[0] for name, values in request.form.items()}
        grant_type = form.get("grant_type")
        try:
            if grant_type == "authorization_code":
                payload = self.state.oauth.grant_code(
                    client_id, client_secret, form.get("code", ""), form.get("redirect_uri", "")
                )
            elif grant_type == "refresh_token":
                payload = self.state.oauth.grant_refresh(client_id, client_secret, form.get("refresh_token", ""))
            else:
                return Response.json(
                    {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type."}, 400
                )
        except SchwabError as error:
            return Response.json(error.body, error.status)
        response = Response.json(payload)
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- orders and quotes ----------------------------------------------------------------

    def _location(self, hash_value: str, order_id: int) -> str:
        return f"{self._base_url()}/trader/v1/accounts/{hash_value}/orders/{order_id}"

    def place(self, grant: Grant, request: Request) -> Response:
        order_id = self.state.place(grant, request.path_params["hash"], _json_body(request))
        return Response(201, b"", headers={"Location": self._location(request.path_params["hash"], order_id)})

    def replace(self, grant: Grant, request: Request) -> Response:
        new_id = self.state.replace(
            grant, request.path_params["hash"], request.path_params["order_id"], _json_body(request)
        )
        return Response(201, b"", headers={"Location": self._location(request.path_params["hash"], new_id)})

    def cancel(self, grant: Grant, request: Request) -> Response:
        self.state.cancel(grant, request.path_params["hash"], request.path_params["order_id"])
        return Response(200, b"")

    def quotes(self, grant: Grant, request: Request) -> Response:
        raw = ",".join(request.query.get("symbols", []))
        symbols = [symbol.strip().upper() for symbol in raw.split(",") if symbol.strip()]
        if not symbols:
            raise service_error(400, "symbols is required.")
        if len(symbols) > MAX_QUOTE_SYMBOLS:
            raise service_error(400, f"At most {MAX_QUOTE_SYMBOLS} symbols per call.")
        return Response.json(self.state.quotes(list(dict.fromkeys(symbols))))


class SchwabMount:
    """One of the path prefixes the Schwab API answers under, as the server routes brokers."""

    name = "schwab"

    def __init__(self, api: SchwabApi, prefix: str):
        self.api = api
        self.prefix = prefix

    def handle(self, request: Request) -> Response:
        return self.api.handle(request)

    def error_response(self, status: int, message: str) -> Response:
        return self.api.error_response(status, message)

    def fault_response(self, fault: Fault, request: Request) -> Response:
        return self.api.fault_response(fault, request)


def _basic_credentials(header: str | None) -> tuple[str | None, str]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None, ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    client_id, colon, client_secret = decoded.partition(":")
    return (client_id, client_secret) if colon else (None, "")


def _fields(request: Request) -> str:
    return ",".join(request.query.get("fields", []))


def _query(request: Request) -> dict[str, str]:
    return {name: values[0] for name, values in request.query.items()}


def _json_body(request: Request):
    try:
        return request.json()
    except ValueError:
        raise service_error(400, "The body must be JSON.") from None


def _error_page(message: str) -> Response:
    return Response.html(
        "<!doctype html><title>Schwab sandbox</title><h1>This login link is not valid</h1>"
        f"<p>{html.escape(message)}</p>",
        status=400,
    )


def _login_page(app: SchwabApp, state: str, *, error: str | None, status: int) -> Response:
    error_html = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return Response.html(
        f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Log in - Schwab sandbox</title></head>
<body>
<h1>Charles Schwab sandbox</h1>
{error_html}
<form method="post" action="/v1/oauth/authorize">
  <input type="hidden" name="client_id" value="{html.escape(app.client_id)}">
  <input type="hidden" name="redirect_uri" value="{html.escape(app.redirect_uri)}">
  <input type="hidden" name="state" value="{html.escape(state)}">
  <label>Login ID <input name="username" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Log in and allow access</button>
</form>
<p>Demo user: {html.escape(DEMO_USERNAME)} / {html.escape(DEMO_PASSWORD)} (a margin and a cash account)</p>
</body>
</html>
""",
        status=status,
    )


# --- control API ------------------------------------------------------------------------------


def add_control_routes(router: Router, state: SchwabState) -> None:
    """`/_sandbox/schwab/...`: apps, token lifetimes, expiring tokens now, seeding many logins at once,
    and the count of refresh calls per connection (grant)."""

    def body(request: Request):
        try:
            payload = request.json()
        except ValueError:
            raise ValueError("The body must be JSON.") from None
        if not isinstance(payload, Mapping):
            raise ValueError("The body must be a JSON object.")
        return payload

    def register_app(request: Request) -> Response:
        app = SchwabApp.from_mapping(body(request))
        state.register_app(app)
        return Response.json({"broker": "schwab", "client_id": app.client_id}, status=201)

    def lifetimes(request: Request) -> Response:
        payload = body(request)
        unknown = set(payload) - set(LIFETIMES)
        if unknown:
            raise ValueError(f"Unknown fields: {', '.join(sorted(unknown))}")
        for name, value in payload.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"`{name}` must be a positive number of seconds")
        return Response.json(state.oauth.set_lifetimes(payload))

    def expire(request: Request) -> Response:
        payload = body(request)
        return Response.json({"expired": state.oauth.expire(str(payload.get("what")), payload.get("grant_id"))})

    def seed_grants(request: Request) -> Response:
        payload = body(request)
        count = payload.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 50_000:
            raise ValueError("`count` must be an integer from 1 to 50000")
        access_seconds = payload.get("access_seconds")
        if access_seconds is not None and (
            isinstance(access_seconds, bool) or not isinstance(access_seconds, int | float)
        ):
            raise ValueError("`access_seconds` must be a number")
        grants = state.seed_grants(str(payload.get("client_id")), count, access_seconds=access_seconds)
        return Response(201, json.dumps(grants).encode())

    router.add("POST", "/_sandbox/schwab/apps", register_app)
    router.add("POST", "/_sandbox/schwab/lifetimes", lifetimes)
    router.add("POST", "/_sandbox/schwab/expire", expire)
    router.add("POST", "/_sandbox/schwab/grants", seed_grants)
    router.add("GET", "/_sandbox/schwab/refreshes", lambda _: Response.json(state.oauth.refresh_counts()))
