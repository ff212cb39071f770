"""The sandbox's control API under `/_sandbox`: register apps, pin and read prices, inject faults, read and reset
call counts, list and drop ticker connections. Never subject to faults and never counted (brokers.sandbox.server
routes every `/_sandbox` path here before any broker sees it)."""

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .kite_models import KiteApp
from .kite_ticker import KiteTickerHub
from .schwab_api import add_control_routes as add_schwab_control_routes
from .schwab_models import SchwabApp
from .state import Fault
from .ticker_log import add_ticker_log_routes
from .web import MethodNotAllowed, Request, Response, RouteNotFound, Router

if TYPE_CHECKING:
    from .server import SandboxState

CONTROL_PREFIX = "/_sandbox"


def is_control_path(path: str) -> bool:
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def control_error(status: int, message: str) -> Response:
    return Response.json({"error": message}, status)


def dispatch_control(router: Router, request: Request) -> Response:
    try:
        handler, request.path_params = router.resolve(request.method, request.path)
    except RouteNotFound:
        return control_error(404, "Unknown sandbox control path.")
    except MethodNotAllowed:
        return control_error(405, "Method not allowed.")
    try:
        return handler(request)
    except ValueError as error:
        return control_error(400, str(error))


def _json_body(request: Request):
    try:
        return request.json()
    except ValueError:
        raise ValueError("The body must be JSON.") from None


def control_router(state: "SandboxState", ticker: KiteTickerHub) -> Router:
    router = Router()

    def register_app(request: Request) -> Response:
        payload = _json_body(request)
        if isinstance(payload, Mapping) and payload.get("broker", "kite") == "schwab":
            schwab_app = SchwabApp.from_mapping(payload)
            state.schwab.register_app(schwab_app)
            return Response.json({"broker": "schwab", "client_id": schwab_app.client_id}, status=201)
        if isinstance(payload, Mapping) and payload.get("broker", "kite") != "kite":
            raise ValueError("Only Kite and Schwab apps can be registered.")
        app = KiteApp.from_mapping(payload)
        state.kite.register_app(app)
        return Response.json({"broker": "kite", "api_key": app.api_key}, status=201)

    def pin_prices(request: Request) -> Response:
        payload = _json_body(request)
        if not isinstance(payload, Mapping) or not payload:
            raise ValueError('Send {"EXCH:SYMBOL": price, ...}; a null price releases the pin.')
        for key, price in payload.items():
            if price is not None and (isinstance(price, bool) or not isinstance(price, int | float) or price <= 0):
                raise ValueError(f"The price of {key} must be a positive number or null.")
        pinned = {}
        for key, price in payload.items():
            instrument = state.market.pin(key, None if price is None else float(price))
            pinned[key] = {"instrument_token": instrument.token, "last_price": state.market.price(instrument)}
        state.kite.match_resting_orders()
        state.schwab.match_resting_orders()
        return Response.json(pinned)

    def read_prices(request: Request) -> Response:
        """`?i=NSE:INFY&i=...` -> {"NSE:INFY": 1501.25}: the moving prices, for Thor's paper engine in
        development. Unknown instruments are left out; as a control path it is never counted."""
        found = {reference: state.market.find(reference) for reference in request.query.get("i", [])}
        return Response.json(
            {reference: state.market.price(instrument) for reference, instrument in found.items() if instrument}
        )

    def add_fault(request: Request) -> Response:
        fault = Fault.from_mapping(_json_body(request))
        state.faults.add(fault)
        return Response.json(state.faults.listing(), status=201)

    def clear_faults(_: Request) -> Response:
        state.faults.clear()
        return Response.json([])

    def reset_stats(_: Request) -> Response:
        state.stats.reset()
        return Response.json(state.stats.snapshot())

    router.add("POST", "/_sandbox/apps", register_app)
    router.add("GET", "/_sandbox/prices", read_prices)
    router.add("POST", "/_sandbox/prices", pin_prices)
    router.add("GET", "/_sandbox/faults", lambda _: Response.json(state.faults.listing()))
    router.add("POST", "/_sandbox/faults", add_fault)
    router.add("DELETE", "/_sandbox/faults", clear_faults)
    router.add("GET", "/_sandbox/stats", lambda _: Response.json(state.stats.snapshot()))
    router.add("DELETE", "/_sandbox/stats", reset_stats)
    # Kite's ticker: its open connections (and what each subscribes), and a network failure on demand.
    router.add("GET", "/_sandbox/ticker", lambda _: Response.json(ticker.listing()))
    router.add("POST", "/_sandbox/ticker/drop", lambda _: Response.json({"dropped": ticker.drop_all()}))
    add_ticker_log_routes(router, ticker)
    add_schwab_control_routes(router, state.schwab)
    return router
