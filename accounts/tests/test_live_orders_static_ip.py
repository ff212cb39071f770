"""Live Kite orders leave from the user's registered static IP (exchange rule since April 2026).

Over real HTTP: the sandbox's app whitelists 127.0.0.2, and a small proxy bound to 127.0.0.2 (the user's
egress) opens its upstream connections from that address. Thor itself calls from 127.0.0.1.
"""

import http.client
import logging
from urllib.parse import urlsplit

import pytest
import requests

from accounts.models import Order
from accounts.tests.conftest import order_body, place
from brokers.models import BrokerConnection
from brokers.sandbox.egress_proxy import EgressProxy
from brokers.tests.sandbox_fixtures import API_KEY, API_SECRET, CALLBACK, link, sandbox_calls

PLACE = "POST /orders/regular"
REGISTERED, UNREGISTERED = "127.0.0.2", "127.0.0.3"
PROXY_PASSWORD = "pr0xy-s3cret"
MARKET_PRICE = 1500.0


@pytest.fixture
def requiring(tenant, settings):
    """The tenant as a new one is: live Kite orders need an egress; the test proxies may be on loopback."""
    tenant.live_orders_require_egress = True
    tenant.save(update_fields=["live_orders_require_egress"])
    settings.THOR_ORDER_EGRESS_PRIVATE_HOSTS = [REGISTERED, UNREGISTERED]
    return tenant


@pytest.fixture
def live(sandbox, alice_client, requiring):
    """Alice's live account at a sandbox app that whitelists only 127.0.0.2, with INFY pinned."""
    app = {"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": CALLBACK, "ip_whitelist": [REGISTERED]}
    requests.post(f"{sandbox.url}/_sandbox/apps", json=app, timeout=5).raise_for_status()
    requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": MARKET_PRICE}, timeout=5).raise_for_status()
    return link(alice_client)


@pytest.fixture
def egress():
    proxy = EgressProxy(REGISTERED)
    yield proxy
    proxy.close()


@pytest.fixture
def stray_egress():
    proxy = EgressProxy(UNREGISTERED)
    yield proxy
    proxy.close()


def egress_set(client, account, proxy):
    return client.put(
        f"/api/brokers/connections/{account.connection_id}/egress",
        {"url": proxy.url(f"alice:{PROXY_PASSWORD}")},
        format="json",
    )


def resting_limit(**overrides):
    return {"order_type": "LIMIT", "price": "1400.00", **overrides}


def url(account, path=""):
    return f"/api/accounts/{account.pk}{path}"


class TestThroughTheRegisteredEgress:
    def test_an_order_is_placed_modified_and_cancelled_from_the_static_ip(self, alice_client, sandbox, live, egress):
        assert egress_set(alice_client, live, egress).status_code == 200

        placed = place(alice_client, account=live.pk, **resting_limit())

        assert placed.status_code == 201, placed.json()
        order = Order.objects.get(pk=placed.json()["id"])
        assert order.broker_order_id and order.status == "OPEN"
        assert egress.requests, "the order went through the egress"
        order_path = url(live, f"/orders/{order.pk}")
        modified = alice_client.patch(order_path, {"price": "1410.00"}, format="json")
        assert modified.status_code == 200, modified.json()
        cancelled = alice_client.delete(order_path)
        assert cancelled.status_code == 200, cancelled.json()
        order.refresh_from_db()
        assert order.status == "CANCELLED"

    def test_reads_go_direct(self, alice_client, sandbox, live, egress):
        egress_set(alice_client, live, egress)
        assert egress.connects == [f"127.0.0.1:{urlsplit(sandbox.url).port}"]  # the probe, to the broker's host
        egress.connects.clear()

        for what in ("positions", "holdings", "funds", "orders"):
            assert alice_client.get(url(live, f"/{what}")).status_code == 200

        assert egress.requests == [] and egress.connects == []

    def test_the_tenants_egress_serves_a_connection_without_its_own(self, alice_client, sandbox, live, egress):
        live.user.tenant.order_egress = egress.url()
        live.user.tenant.save(update_fields=["order_egress"])

        placed = place(alice_client, account=live.pk, **resting_limit())

        assert placed.status_code == 201, placed.json()
        health = alice_client.get("/api/brokers/connections").json()[0]["health"]["egress"]
        assert health["set_on"] == "tenant"


class TestWithoutTheRegisteredEgress:
    def test_no_egress_is_a_403_before_any_row_or_broker_call(self, alice_client, sandbox, live):
        refused = place(alice_client, account=live.pk, **resting_limit())

        assert refused.status_code == 403
        assert refused.json()["code"] == "static_ip_required"
        assert "static IP" in refused.json()["detail"] and "https://" in refused.json()["detail"]
        assert not Order.objects.filter(account=live).exists()
        assert sandbox_calls(sandbox, PLACE) == 0

    def test_a_batch_is_refused_the_same_way(self, alice_client, sandbox, live):
        legs = [order_body(**resting_limit()), order_body(**resting_limit(price="1390.00"))]

        refused = alice_client.post(url(live, "/batch-orders"), {"orders": legs}, format="json")

        assert refused.status_code == 403 and refused.json()["code"] == "static_ip_required"
        assert not Order.objects.filter(account=live).exists()
        assert sandbox_calls(sandbox, PLACE) == 0

    def test_modify_and_cancel_of_an_order_placed_before_are_refused_too(self, alice_client, sandbox, live, egress):
        egress_set(alice_client, live, egress)
        order_id = place(alice_client, account=live.pk, **resting_limit()).json()["id"]
        alice_client.delete(f"/api/brokers/connections/{live.connection_id}/egress")

        modified = alice_client.patch(url(live, f"/orders/{order_id}"), {"price": "1410.00"}, format="json")
        cancelled = alice_client.delete(url(live, f"/orders/{order_id}"))

        assert [modified.json()["code"], cancelled.json()["code"]] == ["static_ip_required"] * 2
        assert Order.objects.get(pk=order_id).status == "OPEN"
        assert sandbox_calls(sandbox, "PUT /orders/regular/" + Order.objects.get(pk=order_id).broker_order_id) == 0

    def test_reads_need_no_egress(self, alice_client, sandbox, live):
        for what in ("positions", "holdings", "funds"):
            assert alice_client.get(url(live, f"/{what}")).status_code == 200

    def test_a_tenant_that_does_not_require_one_sends_direct_and_the_broker_refuses(self, alice_client, sandbox, live):
        live.user.tenant.live_orders_require_egress = False
        live.user.tenant.save(update_fields=["live_orders_require_egress"])

        refused = place(alice_client, account=live.pk, **resting_limit())

        assert refused.status_code == 403 and refused.json()["code"] == "broker_permission_denied"
        order = Order.objects.get(account=live)
        assert order.status == "REJECTED" and "127.0.0.1" in order.status_message

    def test_through_a_proxy_on_an_unregistered_address_the_broker_refuses_with_its_reason(
        self, alice_client, sandbox, live, stray_egress
    ):
        assert egress_set(alice_client, live, stray_egress).status_code == 200

        refused = place(alice_client, account=live.pk, **resting_limit())

        assert refused.status_code == 403 and refused.json()["code"] == "broker_permission_denied"
        order = Order.objects.get(account=live)
        assert order.status == "REJECTED"
        assert "whitelisted" in order.status_message and UNREGISTERED in order.status_message
        assert stray_egress.requests
        assert not sandbox.state.kite.accounts["AB1234"].orders


class TestAnEgressThatIsDown:
    def test_the_order_is_refused_unsent_in_thors_words(self, alice_client, sandbox, live, settings):
        settings.THOR_ORDER_EGRESS_PROBE_TIMEOUT = 1.0
        down = EgressProxy(REGISTERED)
        down.close()
        assert egress_set(alice_client, live, down).json()["health"]["egress"]["ok"] is False

        refused = place(alice_client, account=live.pk, **resting_limit())

        assert refused.status_code == 503 and refused.json()["code"] == "egress_unreachable"
        assert refused["Retry-After"] == "5"
        order = Order.objects.get(account=live)
        assert order.status == "REJECTED" and order.status_message.startswith("The order egress")
        assert f":{down.port}" not in order.status_message and PROXY_PASSWORD not in refused.content.decode()
        assert sandbox_calls(sandbox, PLACE) == 0


class TestTheSandboxChecksTheSourceAddress:
    """Straight at the sandbox, without Thor: its order endpoints look at the TCP peer, its reads do not."""

    def _call(self, sandbox, live, method, path, source):
        token = BrokerConnection.objects.get(pk=live.connection_id).access_token
        parts = urlsplit(sandbox.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5, source_address=(source, 0))
        body = (
            "exchange=NSE&tradingsymbol=INFY&transaction_type=BUY&quantity=1&product=CNC"
            "&order_type=LIMIT&price=1400&validity=DAY"
        )
        connection.request(
            method,
            path,
            body=body if method == "POST" else None,
            headers={
                "Authorization": f"token {API_KEY}:{token}",
                "X-Kite-Version": "3",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        answer = connection.getresponse()
        return answer.status, answer.read()

    def test_an_order_from_127_0_0_1_is_refused_with_kites_error_shape(self, sandbox, live):
        status, body = self._call(sandbox, live, "POST", "/orders/regular", "127.0.0.1")

        assert status == 403
        assert b'"error_type": "PermissionException"' in body and b'"status": "error"' in body

    def test_an_order_from_the_whitelisted_address_is_taken(self, sandbox, live):
        status, body = self._call(sandbox, live, "POST", "/orders/regular", REGISTERED)

        assert status == 200 and b'"order_id"' in body

    def test_reads_from_any_address_are_answered(self, sandbox, live):
        assert self._call(sandbox, live, "GET", "/orders", "127.0.0.1")[0] == 200
        assert self._call(sandbox, live, "GET", "/portfolio/positions", UNREGISTERED)[0] == 200


class TestTheUrlIsNeverShown:
    def test_not_in_answers_nor_logs(self, alice_client, sandbox, live, stray_egress, caplog):
        caplog.set_level(logging.DEBUG)

        answers = [
            egress_set(alice_client, live, stray_egress),
            alice_client.get("/api/brokers/connections"),
            place(alice_client, account=live.pk, **resting_limit()),
            alice_client.get(url(live, "/orders")),
        ]

        for answer in answers:
            assert PROXY_PASSWORD not in answer.content.decode()
            assert f":{stray_egress.port}" not in answer.content.decode()
        assert PROXY_PASSWORD not in caplog.text
        assert answers[1].json()[0]["order_egress"] == "set"
