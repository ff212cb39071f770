"""`GET /api/brokers/connections`: each connection's health, for its owner only, never a token, in a
constant number of queries however many connections."""

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from brokers.services import broker_call
from brokers.tests.factories import linked_kite_account, order
from brokers.tests.sandbox_fixtures import link, sandbox_fault
from conftest import client_for

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "broker",
    "app_id",
    "app_name",
    "status",
    "reauth_due_at",
    "broker_user_id",
    "access_expires_at",
    "refresh_expires_at",
    "last_sync_at",
    "last_error",
    "trading_enabled",
    "order_egress",  # "set" | "not set", never the URL (brokers.egress)
    "created_at",
    "updated_at",
}
HEALTH = {
    "calls",
    "last_success_at",
    "last_error",
    "token_expires_at",
    "rate_budget",
    "orders_unknown",
    "orders_needs_review",
    "egress",
}


def listed(client) -> list[dict]:
    response = client.get("/api/brokers/connections")
    assert response.status_code == 200, response.content
    return response.json()


class TestHealth:
    def test_each_connection_keeps_its_fields_and_gains_its_health(self, alice_client, alice):
        account = linked_kite_account(alice)
        order(account, "UNKNOWN", 1)
        order(account, "NEEDS_REVIEW", 2)

        (connection,) = listed(alice_client)

        assert set(connection) == FIELDS | {"health"}
        health = connection["health"]
        assert set(health) == HEALTH
        assert (health["calls"], health["last_success_at"], health["last_error"]) == ("unknown", None, None)
        assert health["token_expires_at"] == connection["access_expires_at"]
        assert (health["orders_unknown"], health["orders_needs_review"]) == (1, 1)
        assert {budget["bucket"] for budget in health["rate_budget"]} == {"quote", "orders", "other"}
        assert {"bucket": "quote", "left": 1, "capacity": 1, "per_seconds": 1} in health["rate_budget"]

    def test_a_failed_call_then_a_good_one(self, sandbox, alice_client):
        connection = link(alice_client).connection
        sandbox_fault(sandbox, kind="5xx", path="/user/profile", count=1)
        with pytest.raises(Exception, match="Kite is unavailable"):
            broker_call(connection, lambda adapter: adapter.profile())

        failing = listed(alice_client)[0]["health"]
        broker_call(connection, lambda adapter: adapter.profile())
        recovered = listed(alice_client)[0]["health"]

        assert failing["calls"] == "failing" and failing["last_success_at"] is None
        assert {key: failing["last_error"][key] for key in ("code", "message")} == {
            "code": "unavailable",
            "message": "Kite is unavailable.",
        }
        assert recovered["calls"] == "ok" and recovered["last_success_at"] > recovered["last_error"]["at"]

    def test_never_a_token_or_secret(self, sandbox, alice_client):
        connection = link(alice_client).connection
        sandbox_fault(sandbox, kind="token_expired", path="/user/profile", count=1)
        secrets = [connection.access_token, connection.app.api_secret]
        with pytest.raises(Exception, match="expired"):
            broker_call(connection, lambda adapter: adapter.profile())

        text = alice_client.get("/api/brokers/connections").content.decode()

        assert '"code":"token_expired"' in text.replace(" ", "")
        assert not any(secret in text for secret in secrets)


class TestTenancy:
    def test_another_users_connections_are_not_listed_nor_counted(self, alice_client, alice, bob, charlie):
        mine = linked_kite_account(alice)
        for user in (bob, charlie):
            theirs = linked_kite_account(user)
            order(theirs, "UNKNOWN", 1)

        (connection,) = listed(alice_client)

        assert connection["id"] == mine.connection_id
        assert connection["health"]["orders_unknown"] == 0

    @pytest.mark.parametrize("intruder", ["bob", "charlie"])
    def test_another_users_connection_is_404(self, request, alice, intruder):
        connection = linked_kite_account(alice).connection

        response = client_for(request.getfixturevalue(intruder)).delete(f"/api/brokers/connections/{connection.pk}")

        assert response.status_code == 404
        assert "health" not in response.content.decode()


class TestQueries:
    def test_the_list_costs_the_same_queries_for_one_connection_or_many(self, alice_client, alice):
        def queries_to_list() -> int:
            with CaptureQueriesContext(db) as captured:
                listed(alice_client)
            return len(captured)

        order(linked_kite_account(alice), "UNKNOWN", 1)
        listed(alice_client)  # the user's first request reads what later ones find cached
        one = queries_to_list()
        for n in range(4):
            account = linked_kite_account(alice)
            order(account, "NEEDS_REVIEW", n)
        five = queries_to_list()

        assert len(listed(alice_client)) == 5
        assert five == one


class TestSchema:
    def test_the_health_object_is_documented(self, openapi_schema):
        schemas = openapi_schema["components"]["schemas"]

        health_ref = schemas["ConnectionOutput"]["properties"]["health"]["allOf"][0]["$ref"]
        health = schemas[health_ref.rsplit("/", 1)[1]]
        assert set(health["properties"]) == set(health["required"]) == HEALTH
        assert "health" in schemas["ConnectionOutput"]["required"]
