"""Seed 003's aliases answer Kite's own payloads (as kiteconnect returns them) for the signed-in user's
own Kite account only, with Thor's `source` and `as_of` beside them, and the schema says so."""

import re

import jsonschema
import pytest
import responses

from brokers.tests.factories import linked_kite_account
from brokers.tests.kite_fixtures import kite_fixture
from brokers.tests.sandbox_fixtures import link

pytestmark = pytest.mark.django_db

ROOT = "https://kite.test"
KITE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
ALIASES = {
    "/api/user/profile": "profile.json",
    "/api/portfolio/holdings": "holdings.json",
    "/api/market/quote/408065": "quote.json",
}


@pytest.fixture
def kite(settings):
    """Kite itself at the HTTP boundary, answering the official mock payloads."""
    settings.THOR_KITE_API_ROOT = ROOT
    settings.THOR_KITE_RATE_WAIT = 0
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{ROOT}/user/profile", json=kite_fixture("profile.json"))
        mock.get(f"{ROOT}/portfolio/holdings", json=kite_fixture("holdings.json"))
        quote = kite_fixture("quote.json")["data"]["NSE:INFY"]
        mock.get(f"{ROOT}/quote", json={"status": "success", "data": {"408065": quote}})
        yield mock


def documented(schema: dict, path: str) -> dict:
    """The JSON Schema of the path's 200 answer, from /api/schema/ (OpenAPI 3.0 `nullable` made JSON Schema)."""
    components = schema["components"]["schemas"]

    def resolve(node):
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return resolve(components[node["$ref"].rsplit("/", 1)[1]])
        resolved = {key: resolve(value) for key, value in node.items() if key != "nullable"}
        return {"anyOf": [resolved, {"type": "null"}]} if node.get("nullable") else resolved

    template = re.sub(r"/\d+$", "/{instrument_token}", path) + "/"
    return resolve(schema["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"])


class TestKitesOwnPayloads:
    def test_the_profile_is_kites_profile(self, alice, alice_client, kite):
        linked_kite_account(alice)

        answer = alice_client.get("/api/user/profile").json()

        assert answer["data"] == kite_fixture("profile.json")["data"]
        assert answer["source"] == "live" and answer["as_of"]

    def test_holdings_are_kites_holdings_with_every_number_as_kite_sent_it(self, alice, alice_client, kite):
        linked_kite_account(alice)

        answer = alice_client.get("/api/portfolio/holdings").json()

        assert answer["data"] == kite_fixture("holdings.json")["data"]
        assert answer["data"][0]["day_change"] == 0.5999999999999659
        assert answer["data"][0]["mtf"]["value"] == 100000

    def test_the_quote_is_kites_quote_keyed_by_the_token_asked_for(self, alice, alice_client, kite):
        linked_kite_account(alice)

        answer = alice_client.get("/api/market/quote/408065").json()

        assert answer["data"] == {"408065": kite_fixture("quote.json")["data"]["NSE:INFY"]}
        assert answer["data"]["408065"]["timestamp"] == "2021-06-08 15:45:56"
        assert answer["data"]["408065"]["depth"]["sell"][0] == {"price": 1412.95, "quantity": 5191, "orders": 13}

    def test_a_token_kite_does_not_know_is_404(self, alice, alice_client, kite):
        linked_kite_account(alice)

        assert alice_client.get("/api/market/quote/1").status_code == 404

    def test_a_second_read_within_the_fresh_period_comes_from_the_cache(self, alice, alice_client, kite):
        linked_kite_account(alice)

        first = alice_client.get("/api/user/profile").json()
        second = alice_client.get("/api/user/profile").json()

        assert (first["source"], second["source"]) == ("live", "cache")
        assert second["data"] == first["data"]
        assert len([call for call in kite.calls if call.request.url.endswith("/user/profile")]) == 1

    @pytest.mark.parametrize("path, fixture", ALIASES.items())
    def test_the_schema_documents_exactly_kites_fields(self, alice, alice_client, openapi_schema, kite, path, fixture):
        linked_kite_account(alice)
        answer = alice_client.get(path).json()
        schema = documented(openapi_schema, path)

        jsonschema.validate(answer, schema)
        data_schema = schema["properties"]["data"]
        kite_data = kite_fixture(fixture)["data"]
        if data_schema["type"] == "array":
            assert set(data_schema["items"]["properties"]) == set(kite_data[0])
        elif "additionalProperties" in data_schema:
            assert set(data_schema["additionalProperties"]["properties"]) == set(kite_data["NSE:INFY"])
        else:
            assert set(data_schema["properties"]) == set(kite_data)
        assert set(schema["required"]) == {"data", "source", "as_of"}


class TestOverTheSandbox:
    """The real kiteconnect client against the sandbox: the aliases keep Kite's names and nesting."""

    def test_each_alias_answers_the_fields_of_the_official_mock(self, sandbox, alice_client):
        link(alice_client, user_id="AB1234")

        profile = alice_client.get("/api/user/profile").json()["data"]
        holdings = alice_client.get("/api/portfolio/holdings").json()["data"]
        quote = alice_client.get("/api/market/quote/408065").json()["data"]

        assert set(profile) == set(kite_fixture("profile.json")["data"])
        assert (profile["user_id"], profile["user_name"], profile["user_shortname"]) == ("AB1234", "Asha Bhat", "Asha")
        assert [set(item) for item in holdings] == [set(item) for item in kite_fixture("holdings.json")["data"]]
        assert set(quote) == {"408065"}
        kite_quote = kite_fixture("quote.json")["data"]["NSE:INFY"]
        assert set(quote["408065"]) == set(kite_quote)
        assert set(quote["408065"]["ohlc"]) == set(kite_quote["ohlc"])
        assert KITE_TIME.match(quote["408065"]["timestamp"])


class TestScope:
    def test_a_user_without_kite_gets_404(self, bob_client):
        response = bob_client.get("/api/portfolio/holdings")

        assert response.status_code == 404 and response.json()["code"] == "no_kite_account"

    @pytest.mark.parametrize("path", ["/api/user/profile", "/api/market/quote/408065", "/api/portfolio/holdings"])
    def test_aliases_need_a_signed_in_user(self, anon_client, path):
        assert anon_client.get(path).status_code == 401

    @pytest.mark.parametrize("token", ["0", "4294967296", "99999999999999999999999"])
    def test_an_out_of_range_instrument_token_is_404(self, alice, alice_client, token):
        linked_kite_account(alice)

        assert alice_client.get(f"/api/market/quote/{token}").status_code == 404

    def test_another_users_kite_account_is_never_used(self, alice, bob_client, charlie_client):
        linked_kite_account(alice)

        assert bob_client.get("/api/user/profile").status_code == 404
        assert charlie_client.get("/api/user/profile").status_code == 404

    def test_two_users_reads_never_share_a_snapshot(self, alice, bob, alice_client, bob_client, kite):
        linked_kite_account(alice)
        linked_kite_account(bob)

        alice_client.get("/api/user/profile")

        assert bob_client.get("/api/user/profile").json()["source"] == "live"
