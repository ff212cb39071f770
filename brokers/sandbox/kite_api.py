"""The Kite Connect HTTP surface: routes, the login page, and Kite's error envelope."""

import html
from urllib.parse import parse_qsl, urlencode

from .kite_models import DEMO_USERS, KiteError, Session, ip_not_allowed_error
from .kite_state import KiteState
from .market import KITE_EXCHANGES, InstrumentCatalogue
from .state import FaultBook
from .web import MethodNotAllowed, Request, Response, RouteNotFound, Router

# Kite's HTTP statuses for each error type; anything else is a GeneralException.
ERROR_TYPES_BY_STATUS = {
    400: "InputException",
    403: "TokenException",
    411: "InputException",
    413: "InputException",
    429: "NetworkException",
    502: "NetworkException",
    503: "NetworkException",
    504: "NetworkException",
}
# Keys Kite itself puts on the login redirect; redirect_params may not override them.
REDIRECT_RESERVED_KEYS = {"request_token", "action", "status", "type"}


def kite_error(status: int, message: str, error_type: str | None = None) -> Response:
    error_type = error_type or ERROR_TYPES_BY_STATUS.get(status, "GeneralException")
    return Response.json({"status": "error", "message": message, "error_type": error_type, "data": None}, status)


def kite_success(data) -> Response:
    return Response.json({"status": "success", "data": data})


class KiteApi:
    name = "kite"
    prefix = "/"

    def __init__(self, state: KiteState, catalogue: InstrumentCatalogue | None = None, faults: FaultBook | None = None):
        self.state = state
        self.catalogue = catalogue or InstrumentCatalogue()
        # Where a slice_reject fault (a partial autoslice failure) is found.
        self.faults = faults
        self.router = Router()
        add = self.router.add
        add("GET", "/connect/login", self.login_form)
        add("POST", "/connect/login", self.login_submit)
        add("POST", "/session/token", self.create_session)
        add("DELETE", "/session/token", self.delete_session)
        add("GET", "/instruments", self.instruments)
        add("GET", "/instruments/{exchange}", self.instruments)
        authenticated = {
            ("GET", "/user/profile"): lambda session, _: state.profile(session),
            ("GET", "/user/margins"): lambda session, _: state.margins(session),
            ("GET", "/user/margins/{segment}"): lambda s, r: state.margins(s, r.path_params["segment"]),
            ("GET", "/portfolio/holdings"): lambda session, _: state.holdings(session),
            ("GET", "/portfolio/positions"): lambda session, _: state.positions(session),
            ("GET", "/orders"): lambda session, _: state.orders(session),
            ("GET", "/orders/{order_id}"): lambda s, r: state.order_history(s, r.path_params["order_id"]),
            ("GET", "/orders/{order_id}/trades"): lambda s, r: state.order_trades(s, r.path_params["order_id"]),
            ("GET", "/trades"): lambda session, _: state.trades(session),
            ("POST", "/orders/{variety}"): self.place_order,
            ("PUT", "/orders/{variety}/{order_id}"): self.modify_order,
            ("DELETE", "/orders/{variety}/{order_id}"): self.cancel_order,
            ("GET", "/quote"): lambda _, r: state.quotes(r.query.get("i", []), "quote"),
            ("GET", "/quote/ltp"): lambda _, r: state.quotes(r.query.get("i", []), "ltp"),
            ("GET", "/quote/ohlc"): lambda _, r: state.quotes(r.query.get("i", []), "ohlc"),
        }
        for (method, pattern), view in authenticated.items():
            add(method, pattern, self._authenticated(view))

    def handle(self, request: Request) -> Response:
        # Resting orders are matched on every call, so fills never wait for the ticker thread.
        self.state.match_resting_orders()
        try:
            handler, request.path_params = self.router.resolve(request.method, request.path)
        except RouteNotFound:
            return kite_error(404, "Route not found.")
        except MethodNotAllowed:
            return kite_error(405, "Method not allowed.")
        try:
            return handler(request)
        except KiteError as error:
            return kite_error(error.status, error.message, error.error_type)

    def error_response(self, status: int, message: str) -> Response:
        return kite_error(status, message)

    def _authenticated(self, view):
        def handler(request: Request) -> Response:
            session = self.state.authenticate(request.headers.get("Authorization"))
            return kite_success(view(session, request))

        return handler

    # --- login ----------------------------------------------------------------------------

    def login_form(self, request: Request) -> Response:
        params = request.params()
        if self.state.app(params.get("api_key")) is None:
            return _login_error_page()
        return _login_page(params["api_key"], params.get("redirect_params", ""), error=None, status=200)

    def login_submit(self, request: Request) -> Response:
        params = request.params()
        api_key = params.get("api_key", "")
        redirect_params = params.get("redirect_params", "")
        app = self.state.app(api_key)
        if app is None:
            return _login_error_page()
        request_token = self.state.login(api_key, params.get("user_id", ""), params.get("password", ""))
        if request_token is None:
            return _login_page(api_key, redirect_params, error="Invalid user ID or password.", status=401)
        query = [("request_token", request_token), ("action", "login"), ("status", "success")]
        query += [
            (key, value)
            for key, value in parse_qsl(redirect_params, keep_blank_values=True)
            if key not in REDIRECT_RESERVED_KEYS
        ]
        separator = "&" if "?" in app.redirect_url else "?"
        return Response.redirect(f"{app.redirect_url}{separator}{urlencode(query)}")

    # --- session --------------------------------------------------------------------------

    def create_session(self, request: Request) -> Response:
        params = request.params()
        for name in ("api_key", "request_token", "checksum"):
            if not params.get(name):
                return kite_error(400, f"Missing `{name}`.")
        return kite_success(self.state.create_session(params["api_key"], params["request_token"], params["checksum"]))

    def delete_session(self, request: Request) -> Response:
        params = request.params()
        if params.get("access_token"):
            self.state.invalidate_session(params.get("api_key", ""), params["access_token"])
        return kite_success(True)

    # --- market data and orders -----------------------------------------------------------

    def instruments(self, request: Request) -> Response:
        exchange = request.path_params.get("exchange")
        if exchange is not None and exchange not in KITE_EXCHANGES:
            return kite_error(400, "Invalid `exchange`.")
        return Response.csv(self.catalogue.csv_text(exchange))

    def _require_whitelisted(self, session: Session, request: Request) -> None:
        """Order calls only: reads stay open from any address, as on Kite."""
        app = self.state.app(session.api_key)
        if app is not None and not app.allows_orders_from(request.client_address):
            raise ip_not_allowed_error(request.client_address)

    def place_order(self, session: Session, request: Request) -> dict:
        self._require_whitelisted(session, request)
        variety, params = request.path_params["variety"], request.params()
        if params.get("autoslice") == "true":
            rejected = self.faults.slice_rejections(self.name, request.path) if self.faults else {}
            return self.state.place_autoslice(session, variety, params, rejected)
        return {"order_id": self.state.place_order(session, variety, params)}

    def modify_order(self, session: Session, request: Request) -> dict:
        self._require_whitelisted(session, request)
        variety, order_id = request.path_params["variety"], request.path_params["order_id"]
        return {"order_id": self.state.modify_order(session, variety, order_id, request.params())}

    def cancel_order(self, session: Session, request: Request) -> dict:
        self._require_whitelisted(session, request)
        variety, order_id = request.path_params["variety"], request.path_params["order_id"]
        return {"order_id": self.state.cancel_order(session, variety, order_id)}


def _login_error_page() -> Response:
    return Response.html(
        "<!doctype html><title>Kite Connect sandbox</title><h1>Invalid `api_key`</h1>"
        "<p>No app is registered with this API key.</p>",
        status=400,
    )


def _login_page(api_key: str, redirect_params: str, *, error: str | None, status: int) -> Response:
    demo_users = ", ".join(user.user_id for user in DEMO_USERS)
    error_html = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return Response.html(
        f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Login - Kite Connect sandbox</title></head>
<body>
<h1>Kite Connect sandbox</h1>
{error_html}
<form method="post" action="/connect/login">
  <input type="hidden" name="api_key" value="{html.escape(api_key)}">
  <input type="hidden" name="redirect_params" value="{html.escape(redirect_params)}">
  <label>User ID <input name="user_id" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Login</button>
</form>
<p>Demo users: {html.escape(demo_users)} (password: sandbox)</p>
</body>
</html>
""",
        status=status,
    )
