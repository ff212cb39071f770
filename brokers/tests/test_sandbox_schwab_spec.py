"""Every answer of the Schwab sandbox checked against the Trader API's OpenAPI spec
(fixtures/schwab/trader_api.openapi.json)."""

import copy
import json
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
import requests

from brokers.sandbox.market import FIXTURES_DIR
from brokers.tests import schwab_sandbox_calls
from brokers.tests.schwab_sandbox_calls import api, equity_order, pin, place

pytestmark = pytest.mark.e2e

# The sandbox's fixtures, by the names pytest finds them under.
clock = schwab_sandbox_calls.clock
sandbox = schwab_sandbox_calls.sandbox
session = schwab_sandbox_calls.session

SPEC = json.loads((FIXTURES_DIR / "schwab" / "trader_api.openapi.json").read_text(encoding="utf-8"))


# --- the spec ---------------------------------------------------------------------------------


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
    method = answer.request.method
    assert method is not None, "a request that was sent has its method"
    schema = response_schema(path, method, answer.status_code)
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
