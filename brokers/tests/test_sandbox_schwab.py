"""The Schwab sandbox over real HTTP: login page, tokens, accounts, orders, faults, and its answers
checked against the Trader API's OpenAPI spec (fixtures/schwab/trader_api.openapi.json)."""

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlencode, urlsplit

import jsonschema
import pytest
import requests

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.schwab import SchwabAdapter
from brokers.adapters.types import OrderRequest
from brokers.sandbox.market import FIXTURES_DIR
from brokers.sandbox.server import SandboxServer
from brokers.sandbox.testing import SandboxHandle, submit_schwab_login

CLIENT_ID, CLIENT_SECRET = "schwab-test-client", "schwab-test-secret"
CALLBACK = "https://app.acme.test/schwab/callback"
SPEC = json.loads((FIXTURES_DIR / "schwab" / "trader_api.openapi.json").read_text(encoding="utf-8"))

pytestmark = pytest.mark.e2e


class Clock:
    """The sandbox's time, moved by the test."""

    def __init__(self):
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sandbox(clock):
    server = SandboxServer(
        schwab_apps=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": CALLBACK}],
        tick_seconds=None,
        clock=clock,
    )
    with SandboxHandle(server) as running:
        yield running


def authorize_url(sandbox, **overrides) -> str:
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": CALLBACK,
        "scope": "api",
        "state": "the-state",
        **overrides,
    }
    return f"{sandbox.url}/v1/oauth/authorize?{urlencode(query)}"


def log_in(sandbox, **overrides) -> dict[str, str]:
    """The browser's part: the login form posted; returns the callback's query."""
    answer = submit_schwab_login(authorize_url(sandbox, **overrides), username="sandbox", password="sandbox")
    assert answer.status_code == 302, answer.text
    return {key: values[0] for key, values in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def basic(client_id=CLIENT_ID, secret=CLIENT_SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def token_call(sandbox, form: dict, headers=None):
    return requests.post(f"{sandbox.url}/v1/oauth/token", data=form, headers=basic() if headers is None else headers)


def tokens_for(sandbox) -> dict:
    code = log_in(sandbox)["code"]
    answer = token_call(sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK})
    assert answer.status_code == 200, answer.text
    return answer.json()


def refresh_call(sandbox, refresh_token: str):
    return token_call(sandbox, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def api(sandbox, method: str, path: str, access_token: str, **kwargs):
    headers = {"Authorization": f"Bearer {access_token}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{sandbox.url}{path}", headers=headers, timeout=5, **kwargs)


def pin(sandbox, **prices) -> None:
    answer = requests.post(f"{sandbox.url}/_sandbox/prices", json={f"NASDAQ:{s}": p for s, p in prices.items()})
    assert answer.status_code == 200, answer.text


def fault(sandbox, **spec) -> requests.Response:
    return requests.post(f"{sandbox.url}/_sandbox/faults", json={"broker": "schwab", **spec})


@pytest.fixture
def session(sandbox):
    """A logged-in demo user: tokens, and the hashes of its MARGIN and CASH accounts."""
    tokens = tokens_for(sandbox)
    numbers = api(sandbox, "GET", "/trader/v1/accounts/accountNumbers", tokens["access_token"]).json()
    accounts = api(sandbox, "GET", "/trader/v1/accounts", tokens["access_token"]).json()
    kinds = {item["securitiesAccount"]["accountNumber"]: item["securitiesAccount"]["type"] for item in accounts}
    hashes = {kinds[item["accountNumber"]]: item["hashValue"] for item in numbers}
    return {"tokens": tokens, "access": tokens["access_token"], **hashes}


def equity_order(symbol="AAPL", instruction="BUY", quantity=5, order_type="LIMIT", **prices) -> dict:
    return {
        "session": "NORMAL",
        "duration": "DAY",
        "orderType": order_type,
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [
            {"instruction": instruction, "quantity": quantity, "instrument": {"symbol": symbol, "assetType": "EQUITY"}}
        ],
        **prices,
    }


def place(sandbox, session, account="MARGIN", **order) -> str:
    answer = api(
        sandbox, "POST", f"/trader/v1/accounts/{session[account]}/orders", session["access"], json=equity_order(**order)
    )
    assert answer.status_code == 201, answer.text
    assert answer.content == b""
    return answer.headers["Location"].rsplit("/", 1)[1]


def order_of(sandbox, session, order_id, account="MARGIN") -> dict:
    return api(sandbox, "GET", f"/trader/v1/accounts/{session[account]}/orders/{order_id}", session["access"]).json()


# --- the login page -------------------------------------------------------------------------------


def test_the_login_page_is_a_form_that_carries_the_app_and_the_state(sandbox):
    page = requests.get(authorize_url(sandbox, state='"><script>alert(1)</script>'))

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<form method="post" action="/v1/oauth/authorize">' in page.text
    assert f'name="client_id" value="{CLIENT_ID}"' in page.text
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "nobody"},
        {"client_id": f"{CLIENT_ID}@AMER.OAUTHAP"},
        {"redirect_uri": CALLBACK + "/"},
        {"redirect_uri": CALLBACK.replace("https", "HTTPS")},
        {"redirect_uri": "https://evil.test/schwab/callback"},
        {"response_type": "token"},
    ],
)
def test_the_login_page_refuses_unknown_apps_and_inexact_callbacks(sandbox, overrides):
    page = requests.get(authorize_url(sandbox, **overrides))

    assert page.status_code == 400 and "<form" not in page.text


def test_a_wrong_password_shows_the_form_again(sandbox):
    answer = submit_schwab_login(authorize_url(sandbox), username="sandbox", password="wrong")

    assert answer.status_code == 401 and "Invalid login ID or password" in answer.text


def test_a_login_redirects_with_a_code_ending_in_at_url_encoded_a_session_and_the_state(sandbox):
    answer = submit_schwab_login(authorize_url(sandbox, state="s/t+a=te"), username="sandbox", password="sandbox")

    location = answer.headers["Location"]
    assert location.startswith(f"{CALLBACK}?code=")
    raw_code = location.split("code=", 1)[1].split("&", 1)[0]
    assert raw_code.endswith("%40") and "@" not in raw_code
    query = parse_qs(urlsplit(location).query)
    assert query["code"][0].endswith("@") and query["state"] == ["s/t+a=te"] and query["session"][0]
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_posted_login_cannot_name_another_callback(sandbox):
    answer = requests.post(
        f"{sandbox.url}/v1/oauth/authorize",
        data={
            "client_id": CLIENT_ID,
            "redirect_uri": "https://evil.test/cb",
            "state": "s",
            "username": "sandbox",
            "password": "sandbox",
        },
        allow_redirects=False,
    )

    assert answer.status_code == 400 and "Location" not in answer.headers


# --- the token endpoint ---------------------------------------------------------------------------


def test_a_code_buys_a_30_minute_access_token_and_a_refresh_token(sandbox):
    tokens = tokens_for(sandbox)

    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 1800 and tokens["scope"] == "api"
    assert tokens["access_token"] and tokens["refresh_token"] and tokens["id_token"]


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "invalid_client"),
        (basic(secret="wrong"), "invalid_client"),
        (basic(client_id="nobody"), "invalid_client"),
        ({"Authorization": "Basic not-base64!!"}, "invalid_client"),
        ({"Authorization": "Bearer " + base64.b64encode(b"a:b").decode()}, "invalid_client"),
    ],
)
def test_the_token_endpoint_wants_the_apps_basic_credentials(sandbox, headers, error):
    code = log_in(sandbox)["code"]

    answer = token_call(
        sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}, headers=headers
    )

    assert answer.status_code == 401 and answer.json()["error"] == error


@pytest.mark.parametrize("redirect_uri", [CALLBACK + "/", CALLBACK.upper(), "", "https://evil.test/cb"])
def test_the_token_endpoint_wants_the_exact_redirect_uri(sandbox, redirect_uri):
    code = log_in(sandbox)["code"]

    answer = token_call(sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_a_code_works_once_and_not_after_it_expires(sandbox, clock):
    code = log_in(sandbox)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
    assert token_call(sandbox, form).status_code == 200
    assert token_call(sandbox, form).json()["error"] == "invalid_grant"

    late = log_in(sandbox)["code"]
    clock.advance(61)
    answer = token_call(sandbox, {**form, "code": late})

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("code", ["", "garbage", "C0.abc%40", "'; DROP TABLE grants; --", "x" * 5000])
def test_garbage_codes_are_refused(sandbox, code):
    answer = token_call(sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK})

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_only_the_two_grants_and_only_form_bodies(sandbox):
    assert token_call(sandbox, {"grant_type": "password"}).json()["error"] == "unsupported_grant_type"
    as_json = requests.post(
        f"{sandbox.url}/v1/oauth/token", json={"grant_type": "refresh_token", "refresh_token": "x"}, headers=basic()
    )
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"


def test_a_refresh_rotates_the_refresh_token_and_supersedes_the_access_token(sandbox):
    first = tokens_for(sandbox)

    second = refresh_call(sandbox, first["refresh_token"]).json()

    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert api(sandbox, "GET", "/trader/v1/userPreference", second["access_token"]).status_code == 200
    superseded = api(sandbox, "GET", "/trader/v1/userPreference", first["access_token"])
    assert superseded.status_code == 401
    # Two refreshers of one connection: the second, holding the spent token, is locked out.
    late = refresh_call(sandbox, first["refresh_token"])
    assert late.status_code == 400 and late.json()["error"] == "refresh_token_authentication_error"
    assert api(sandbox, "GET", "/trader/v1/userPreference", second["access_token"]).status_code == 200


def test_access_tokens_expire_after_30_minutes(sandbox, clock):
    tokens = tokens_for(sandbox)
    clock.advance(1799)
    assert api(sandbox, "GET", "/trader/v1/userPreference", tokens["access_token"]).status_code == 200

    clock.advance(2)

    assert api(sandbox, "GET", "/trader/v1/userPreference", tokens["access_token"]).status_code == 401


def test_refresh_tokens_expire_seven_days_after_the_login_however_often_rotated(sandbox, clock):
    tokens = tokens_for(sandbox)
    for _ in range(3):
        clock.advance(2 * 24 * 3600)
        tokens = refresh_call(sandbox, tokens["refresh_token"]).json()

    clock.advance(24 * 3600 + 1)
    answer = refresh_call(sandbox, tokens["refresh_token"])

    assert answer.status_code == 400 and answer.json()["error"] == "refresh_token_authentication_error"


def test_tests_can_set_lifetimes_and_expire_tokens_now(sandbox):
    answer = requests.post(f"{sandbox.url}/_sandbox/schwab/lifetimes", json={"access_seconds": 120})
    assert answer.json()["access_seconds"] == 120
    tokens = tokens_for(sandbox)
    assert tokens["expires_in"] == 120

    assert requests.post(f"{sandbox.url}/_sandbox/schwab/expire", json={"what": "refresh"}).json() == {"expired": 1}

    assert refresh_call(sandbox, tokens["refresh_token"]).status_code == 400
    for bad in ({"access_seconds": -1}, {"access_seconds": True}, {"nonsense": 1}):
        assert requests.post(f"{sandbox.url}/_sandbox/schwab/lifetimes", json=bad).status_code == 400
    assert requests.post(f"{sandbox.url}/_sandbox/schwab/expire", json={"what": "both"}).status_code == 400


def test_refresh_calls_are_counted_per_connection(sandbox):
    first, second = tokens_for(sandbox), tokens_for(sandbox)
    refreshed = refresh_call(sandbox, first["refresh_token"]).json()
    refresh_call(sandbox, refreshed["refresh_token"])
    refresh_call(sandbox, first["refresh_token"])  # spent: refused, but still a call for that connection

    counts = requests.get(f"{sandbox.url}/_sandbox/schwab/refreshes").json()

    assert counts["total"] == 3 and sorted(counts["by_grant"].values()) == [0, 3]
    assert counts["histogram"] == {"0": 1, "3": 1}
    assert second["refresh_token"]


def test_many_connections_can_be_seeded_at_once(sandbox):
    answer = requests.post(
        f"{sandbox.url}/_sandbox/schwab/grants", json={"client_id": CLIENT_ID, "count": 3, "access_seconds": 60}
    )

    seeded = answer.json()
    assert answer.status_code == 201 and len(seeded) == 3 and seeded[0]["expires_in"] == 60
    assert len({item["customer_id"] for item in seeded}) == 3
    assert refresh_call(sandbox, seeded[0]["refresh_token"]).status_code == 200
    counts = requests.get(f"{sandbox.url}/_sandbox/schwab/refreshes").json()
    assert counts["by_grant"][seeded[0]["grant_id"]] == 1 and counts["histogram"] == {"1": 1, "0": 2}
    for bad in ({"client_id": "nobody", "count": 1}, {"client_id": CLIENT_ID, "count": 0}):
        assert requests.post(f"{sandbox.url}/_sandbox/schwab/grants", json=bad).status_code == 400


# --- accounts -------------------------------------------------------------------------------------


def test_the_demo_user_has_a_margin_and_a_cash_account_addressed_by_hash(sandbox, session):
    numbers = api(sandbox, "GET", "/trader/v1/accounts/accountNumbers", session["access"]).json()

    assert len(numbers) == 2 and all(len(item["hashValue"]) == 64 for item in numbers)
    for kind in ("MARGIN", "CASH"):
        account = api(sandbox, "GET", f"/trader/v1/accounts/{session[kind]}", session["access"]).json()
        assert account["securitiesAccount"]["type"] == kind and "positions" not in account["securitiesAccount"]
    plain = numbers[0]["accountNumber"]
    assert api(sandbox, "GET", f"/trader/v1/accounts/{plain}", session["access"]).status_code == 404


def test_another_users_account_hash_is_not_found(sandbox, session):
    stranger = requests.post(f"{sandbox.url}/_sandbox/schwab/grants", json={"client_id": CLIENT_ID, "count": 1}).json()
    their_hash = stranger[0]["accounts"][0]["hashValue"]

    answer = api(sandbox, "GET", f"/trader/v1/accounts/{their_hash}", session["access"])

    assert answer.status_code == 404
    assert api(sandbox, "GET", f"/trader/v1/accounts/{their_hash}/orders/1", session["access"]).status_code == 404


def test_without_a_valid_bearer_token_nothing_is_answered(sandbox, session):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}, {"Authorization": session["access"]}):
        answer = requests.get(f"{sandbox.url}/trader/v1/accounts", headers=headers)
        assert answer.status_code == 401 and answer.json()["errors"]


# --- orders ---------------------------------------------------------------------------------------


def test_a_limit_order_rests_until_the_price_crosses_then_fills(sandbox, session):
    pin(sandbox, AAPL=190.0)
    before = api(sandbox, "GET", f"/trader/v1/accounts/{session['MARGIN']}", session["access"]).json()
    order_id = place(sandbox, session, price=185.0)
    assert order_of(sandbox, session, order_id)["status"] == "WORKING"

    pin(sandbox, AAPL=184.5)

    order = order_of(sandbox, session, order_id)
    assert order["status"] == "FILLED" and order["filledQuantity"] == 5 and order["remainingQuantity"] == 0
    assert order["orderActivityCollection"][0]["executionLegs"][0]["price"] == 184.5
    after = api(sandbox, "GET", f"/trader/v1/accounts/{session['MARGIN']}?fields=positions", session["access"]).json()
    balances = before["securitiesAccount"]["currentBalances"], after["securitiesAccount"]["currentBalances"]
    assert round(balances[0]["cashBalance"] - balances[1]["cashBalance"], 2) == round(5 * 184.5, 2)
    apple = next(p for p in after["securitiesAccount"]["positions"] if p["instrument"]["symbol"] == "AAPL")
    assert apple["longQuantity"] == 15


def test_a_market_order_fills_at_once_and_a_stop_waits_for_its_trigger(sandbox, session):
    pin(sandbox, AAPL=190.0)
    market = place(sandbox, session, order_type="MARKET")
    stop = place(sandbox, session, instruction="SELL", quantity=3, order_type="STOP", stopPrice=180.0)
    assert order_of(sandbox, session, market)["status"] == "FILLED"
    assert order_of(sandbox, session, stop)["status"] == "WORKING"

    pin(sandbox, AAPL=179.0)

    assert order_of(sandbox, session, stop)["status"] == "FILLED"


def test_orders_the_account_cannot_pay_for_or_deliver_are_rejected(sandbox, session):
    pin(sandbox, AAPL=190.0)
    oversold = place(sandbox, session, instruction="SELL", quantity=1000, order_type="MARKET")
    too_big = place(sandbox, session, account="CASH", quantity=1000, price=190.0)

    assert order_of(sandbox, session, oversold)["status"] == "REJECTED"
    rejected = order_of(sandbox, session, too_big, account="CASH")
    assert rejected["status"] == "REJECTED" and "cash" in rejected["statusDescription"]


@pytest.mark.parametrize(
    "body",
    [
        equity_order(quantity=0),
        equity_order(quantity=1.5),
        equity_order(quantity=-1),
        equity_order(quantity="5"),
        equity_order(symbol="NOPE"),
        equity_order(instruction="SELL_SHORT"),
        equity_order(order_type="LIMIT"),  # no price
        equity_order(order_type="STOP"),  # no stopPrice
        equity_order(price=-1.0),
        {**equity_order(price=1.0), "duration": "FOREVER"},
        {**equity_order(price=1.0), "orderLegCollection": []},
        [],
    ],
)
def test_malformed_orders_are_refused_with_400(sandbox, session, body):
    answer = api(sandbox, "POST", f"/trader/v1/accounts/{session['MARGIN']}/orders", session["access"], json=body)

    assert answer.status_code == 400 and answer.json()["errors"]


def test_replace_creates_a_new_order_and_cancel_ends_it(sandbox, session):
    pin(sandbox, AAPL=190.0)
    old = place(sandbox, session, price=180.0)
    path = f"/trader/v1/accounts/{session['MARGIN']}/orders"

    replaced = api(sandbox, "PUT", f"{path}/{old}", session["access"], json=equity_order(quantity=7, price=181.0))

    assert replaced.status_code == 201
    new = replaced.headers["Location"].rsplit("/", 1)[1]
    assert new != old and order_of(sandbox, session, old)["status"] == "REPLACED"
    assert order_of(sandbox, session, new)["quantity"] == 7
    assert api(sandbox, "PUT", f"{path}/{old}", session["access"], json=equity_order(price=1.0)).status_code == 400
    assert api(sandbox, "DELETE", f"{path}/{new}", session["access"]).status_code == 200
    assert order_of(sandbox, session, new)["status"] == "CANCELED"
    assert api(sandbox, "DELETE", f"{path}/{new}", session["access"]).status_code == 400
    assert api(sandbox, "DELETE", f"{path}/999", session["access"]).status_code == 404


def test_the_order_list_filters_by_entered_time_and_status(sandbox, session, clock):
    pin(sandbox, AAPL=190.0)
    early = place(sandbox, session, price=150.0)
    clock.advance(1200)
    late = place(sandbox, session, price=151.0)
    path = f"/trader/v1/accounts/{session['MARGIN']}/orders"
    now = datetime.fromtimestamp(clock(), UTC)

    def listed(**query):
        return [str(order["orderId"]) for order in api(sandbox, "GET", path, session["access"], params=query).json()]

    window = {"toEnteredTime": (now + timedelta(minutes=1)).isoformat()}
    assert listed(fromEnteredTime=(now - timedelta(hours=1)).isoformat(), **window) == [late, early]
    assert listed(fromEnteredTime=(now - timedelta(minutes=5)).isoformat(), **window) == [late]
    assert listed(fromEnteredTime=(now - timedelta(hours=1)).isoformat(), status="FILLED", **window) == []
    assert api(sandbox, "GET", path, session["access"]).status_code == 400
    assert (
        api(sandbox, "GET", path, session["access"], params={"fromEnteredTime": "yesterday", **window}).status_code
        == 400
    )


def test_quotes_move_with_the_shared_market(sandbox, session):
    pin(sandbox, AAPL=201.25)

    answer = api(sandbox, "GET", "/marketdata/v1/quotes", session["access"], params={"symbols": "AAPL,NOPE,spy"}).json()

    assert answer["AAPL"]["quote"]["lastPrice"] == 201.25 and answer["SPY"]["quote"]["lastPrice"] > 0
    assert answer["errors"] == {"invalidSymbols": ["NOPE"]}
    assert api(sandbox, "GET", "/marketdata/v1/quotes", session["access"]).status_code == 400


# --- faults and call counting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "check"),
    [
        ("error_list", 400, lambda r: set(r.json()["errors"][0]) == {"id", "status", "title", "detail"}),
        ("oauth_error", 401, lambda r: r.json() == {"error": "invalid_client", "error_description": "Unauthorized"}),
        ("gateway_fault", 401, lambda r: r.json()["fault"]["detail"]["errorcode"].endswith("invalid_access_token")),
        ("html_page", 502, lambda r: r.headers["Content-Type"].startswith("text/html") and "<title>" in r.text),
        ("429", 429, lambda r: r.headers["Retry-After"] == "2"),
        ("5xx", 503, lambda r: r.json()["errors"]),
        ("token_expired", 401, lambda r: r.json()["errors"]),
    ],
)
def test_each_fault_answers_in_its_shape_once(sandbox, session, kind, status, check):
    assert fault(
        sandbox, kind=kind, path="/trader/v1/accounts", count=1, **({"status": 503} if kind == "5xx" else {})
    ).ok

    answer = api(sandbox, "GET", "/trader/v1/accounts", session["access"])

    assert answer.status_code == status and check(answer)
    assert api(sandbox, "GET", "/trader/v1/accounts", session["access"]).status_code == 200


def test_a_placement_can_be_answered_without_its_location(sandbox, session):
    fault(sandbox, kind="no_location", path="/trader/v1/accounts", count=1)

    answer = api(
        sandbox,
        "POST",
        f"/trader/v1/accounts/{session['MARGIN']}/orders",
        session["access"],
        json=equity_order(price=100.0),
    )

    assert answer.status_code == 201 and "Location" not in answer.headers


def test_schwab_fault_kinds_are_schwabs_only(sandbox):
    answer = requests.post(f"{sandbox.url}/_sandbox/faults", json={"broker": "kite", "kind": "gateway_fault"})

    assert answer.status_code == 400


def test_calls_are_counted_and_a_dropped_call_gets_no_answer(sandbox, session):
    requests.delete(f"{sandbox.url}/_sandbox/stats")
    fault(sandbox, kind="drop", path="/trader/v1/userPreference", count=1)

    with pytest.raises(requests.ConnectionError):
        api(sandbox, "GET", "/trader/v1/userPreference", session["access"])
    api(sandbox, "GET", "/trader/v1/userPreference", session["access"])

    stats = requests.get(f"{sandbox.url}/_sandbox/stats").json()
    assert stats["by_path"]["GET /trader/v1/userPreference"] == 2
    assert stats["by_status"] == {"dropped": 1, "200": 1}


# --- the adapter against the sandbox --------------------------------------------------------------


@pytest.fixture
def adapter_settings(settings, sandbox):
    settings.THOR_SCHWAB_API_BASE = sandbox.url
    settings.THOR_SCHWAB_AUTH_BASE = sandbox.url
    settings.THOR_SCHWAB_RATE_WAIT = 0
    settings.THOR_SCHWAB_RETRY_BACKOFF = 0.001
    return settings


def test_the_adapter_logs_in_trades_and_refreshes_through_the_sandbox(adapter_settings, sandbox, db):
    app_adapter = SchwabAdapter(app_id=7001, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uri=CALLBACK)
    answer = submit_schwab_login(app_adapter.authorization_url("st"), username="sandbox", password="sandbox")
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    tokens = app_adapter.exchange({"code": code})
    margin = next(ref for ref in app_adapter.account_numbers() if ref.kind == "MARGIN")
    adapter = SchwabAdapter(
        app_id=7001,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=CALLBACK,
        access_token=tokens.access_token,
        account_hash=margin.broker_account_id,
    )
    pin(sandbox, AAPL=190.0)
    order = OrderRequest(
        symbol="AAPL",
        exchange="NASDAQ",
        side="BUY",
        quantity=Decimal(3),
        order_type="LIMIT",
        product="",
        price=Decimal(180),
    )

    placed = adapter.place(order)
    replaced = adapter.modify(placed.broker_order_id, {"price": Decimal("181")})
    adapter.cancel(replaced.broker_order_id)

    statuses = {result.broker_order_id: result.status for result in adapter.orders()}
    assert statuses == {placed.broker_order_id: "CANCELLED", replaced.broker_order_id: "CANCELLED"}
    assert adapter.funds().buying_power > 0 and {p.symbol for p in adapter.positions()} >= {"AAPL"}
    refreshed = app_adapter.refresh(tokens)
    with pytest.raises(BrokerError) as error:
        adapter.funds()
    assert error.value.code == BrokerErrorCode.TOKEN_EXPIRED
    with pytest.raises(BrokerError) as error:
        app_adapter.refresh(tokens)
    assert error.value.permanent and error.value.broker_message == "refresh_token_authentication_error"
    assert refreshed.refresh_token != tokens.refresh_token


def test_a_placement_the_sandbox_answered_without_location_is_unconfirmed_and_among_the_candidates(
    adapter_settings, sandbox, session, db
):
    adapter = SchwabAdapter(
        app_id=7002,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=CALLBACK,
        access_token=session["access"],
        account_hash=session["CASH"],
    )
    pin(sandbox, MSFT=420.0)
    place(sandbox, session, account="CASH", symbol="MSFT", quantity=1, price=400.0)  # a look-alike, placed before
    fault(sandbox, kind="no_location", path="/trader/v1/accounts", count=1)
    order = OrderRequest(
        symbol="MSFT",
        exchange="NASDAQ",
        side="BUY",
        quantity=Decimal(2),
        order_type="LIMIT",
        product="",
        price=Decimal(400),
    )

    sent_at = datetime.now(UTC)
    with pytest.raises(BrokerError) as unconfirmed:
        adapter.place(order)

    assert unconfirmed.value.code == BrokerErrorCode.UNCONFIRMED
    candidates = adapter.placement_candidates(order, sent_at)
    assert [candidate.quantity for candidate in candidates] == [Decimal(2)]  # the look-alike is another shape


# --- the spec -------------------------------------------------------------------------------------


def _spec_for_validation() -> dict:
    """The spec's components as JSON Schema, read as OpenAPI means them (see fixtures/schwab/README.md)."""
    components = copy.deepcopy(SPEC["components"])
    for schema in components["schemas"].values():
        discriminator = schema.get("discriminator") or {}
        if "oneOf" in schema and discriminator.get("mapping"):
            name, mapping = discriminator["propertyName"], discriminator["mapping"]
            # OpenAPI picks the schema the discriminator names; JSON Schema's oneOf would find a MARGIN
            # account valid as a CASH one too (their balance schemas require nothing) and fail.
            del schema["oneOf"]
            schema["required"] = [name]
            schema["properties"] = {name: {"enum": list(mapping)}}
            schema["allOf"] = [
                {"if": {"properties": {name: {"const": value}}}, "then": {"$ref": target}}
                for value, target in mapping.items()
            ]
    # Required by the spec without being defined, and absent from Schwab's own answers.
    instrument = components["schemas"]["AccountsBaseInstrument"]
    instrument["required"] = [name for name in instrument["required"] if name != "name"]
    return components


COMPONENTS = _spec_for_validation()


def response_schema(path: str, method: str, status: int) -> dict:
    """The schema the spec gives the answer of `method path` (relative to /trader/v1) with `status`."""
    answer = SPEC["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in answer:
        answer = SPEC["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    schema = answer["content"]["application/json"]["schema"]
    if path == "/userPreference" and status == 200:
        # The spec says a list of preferences; Schwab answers the one object (see fixtures/schwab/README.md).
        return schema["items"]
    return schema


def assert_conforms(answer: requests.Response, path: str) -> None:
    assert answer.request.method is not None
    schema = response_schema(path, answer.request.method, answer.status_code)
    validator = jsonschema.Draft7Validator({**schema, "components": COMPONENTS})
    errors = sorted(validator.iter_errors(answer.json()), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def test_the_validation_itself_catches_a_wrong_shape():
    validator = jsonschema.Draft7Validator(
        {**response_schema("/accounts/{accountNumber}", "GET", 200), "components": COMPONENTS}
    )

    wrong_type = {"securitiesAccount": {"type": "MARGIN", "currentBalances": {"buyingPower": "lots"}}}
    unknown_kind = {"securitiesAccount": {"type": "IRA"}}
    bad_position = {"securitiesAccount": {"type": "CASH", "positions": [{"instrument": {"symbol": "AAPL"}}]}}
    for payload in (wrong_type, unknown_kind, bad_position):
        assert list(validator.iter_errors(payload)), payload
    assert not list(validator.iter_errors({"securitiesAccount": {"type": "CASH", "currentBalances": {"totalCash": 1}}}))


def test_every_answer_the_sandbox_gives_matches_the_spec(sandbox, session, clock):
    access, margin, cash = session["access"], session["MARGIN"], session["CASH"]
    pin(sandbox, AAPL=190.0)
    filled = place(sandbox, session, order_type="MARKET")
    working = place(sandbox, session, price=150.0)
    replaced = place(sandbox, session, price=151.0)
    api(sandbox, "PUT", f"/trader/v1/accounts/{margin}/orders/{replaced}", access, json=equity_order(price=152.0))
    cancelled = place(sandbox, session, account="CASH", symbol="MSFT", quantity=1, price=300.0)
    api(sandbox, "DELETE", f"/trader/v1/accounts/{cash}/orders/{cancelled}", access)
    place(sandbox, session, account="CASH", symbol="MSFT", quantity=10_000, price=300.0)  # rejected
    place(sandbox, session, instruction="SELL", quantity=2, order_type="STOP_LIMIT", price=170.0, stopPrice=171.0)
    now = datetime.fromtimestamp(clock(), UTC)
    window = {
        "fromEnteredTime": (now - timedelta(days=1)).isoformat(),
        "toEnteredTime": (now + timedelta(hours=1)).isoformat(),
    }

    answers = {
        "/userPreference": [api(sandbox, "GET", "/trader/v1/userPreference", access)],
        "/accounts/accountNumbers": [api(sandbox, "GET", "/trader/v1/accounts/accountNumbers", access)],
        "/accounts": [
            api(sandbox, "GET", "/trader/v1/accounts", access),
            api(sandbox, "GET", "/trader/v1/accounts", access, params={"fields": "positions"}),
            api(sandbox, "GET", "/trader/v1/accounts", headers={"Authorization": "Bearer nope"}, access_token=""),
        ],
        "/accounts/{accountNumber}": [
            api(sandbox, "GET", f"/trader/v1/accounts/{hash_value}", access, params={"fields": "positions"})
            for hash_value in (margin, cash)
        ]
        + [api(sandbox, "GET", "/trader/v1/accounts/" + "0" * 64, access)],
        "/accounts/{accountNumber}/orders": [
            api(sandbox, "GET", f"/trader/v1/accounts/{hash_value}/orders", access, params=window)
            for hash_value in (margin, cash)
        ]
        + [api(sandbox, "GET", f"/trader/v1/accounts/{margin}/orders", access)],
        "/accounts/{accountNumber}/orders/{orderId}": [
            api(sandbox, "GET", f"/trader/v1/accounts/{margin}/orders/{order_id}", access)
            for order_id in (filled, working, replaced)
        ]
        + [api(sandbox, "GET", f"/trader/v1/accounts/{margin}/orders/12345", access)],
        "/orders": [api(sandbox, "GET", "/trader/v1/orders", access, params=window)],
    }

    statuses = sorted({answer.status_code for group in answers.values() for answer in group})
    assert statuses == [200, 400, 401, 404]
    for path, group in answers.items():
        for answer in group:
            assert_conforms(answer, path)
    listed = answers["/orders"][0].json()
    assert {order["status"] for order in listed} == {"FILLED", "WORKING", "REPLACED", "CANCELED", "REJECTED"}
