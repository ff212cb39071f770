"""The Schwab sandbox over real HTTP (brokers.sandbox.schwab_state, schwab_api): accounts addressed by hash,
quotes from the shared market, faults in Schwab's shapes, and the Schwab adapter run against it."""

from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.schwab import SchwabAdapter
from brokers.adapters.types import OrderRequest
from brokers.sandbox.testing import submit_schwab_login
from brokers.tests import schwab_sandbox_calls
from brokers.tests.schwab_sandbox_calls import CALLBACK, CLIENT_ID, CLIENT_SECRET, api, equity_order, fault, pin, place

pytestmark = pytest.mark.e2e

# The sandbox's fixtures, by the names pytest finds them under.
clock = schwab_sandbox_calls.clock
sandbox = schwab_sandbox_calls.sandbox
session = schwab_sandbox_calls.session


# --- accounts ---------------------------------------------------------------------------------


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


# --- quotes -----------------------------------------------------------------------------------


def test_quotes_move_with_the_shared_market(sandbox, session):
    pin(sandbox, AAPL=201.25)

    answer = api(sandbox, "GET", "/marketdata/v1/quotes", session["access"], params={"symbols": "AAPL,NOPE,spy"}).json()

    assert answer["AAPL"]["quote"]["lastPrice"] == 201.25 and answer["SPY"]["quote"]["lastPrice"] > 0
    assert answer["errors"] == {"invalidSymbols": ["NOPE"]}
    assert api(sandbox, "GET", "/marketdata/v1/quotes", session["access"]).status_code == 400


# --- faults and call counting -----------------------------------------------------------------


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


# --- the adapter against the sandbox ----------------------------------------------------------


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
