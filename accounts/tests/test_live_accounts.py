"""A live Kite account end to end: Thor's API on one side, the broker sandbox over real HTTP on the other.

Alice links her sandbox Kite user AB1234 the way a browser does; nothing in Thor is mocked.
"""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.db import connection as db_connection

from accounts.models import Order
from accounts.services import unknown_orders_settle
from accounts.tasks import settle_unknown_orders
from accounts.tests.conftest import order_body, place
from brokers.models import BrokerConnection
from brokers.tests.sandbox_fixtures import link, sandbox_calls, sandbox_fault
from conftest import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

PLACE = "POST /orders/regular"


def wait_until(condition, seconds=10):
    """Until the sandbox, in its own thread, has done what it was doing (a bounded wait, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the sandbox never got there"
        time.sleep(0.05)


MARKET_PRICE = 1500.0  # INFY at the sandbox, pinned so limit orders below it rest


@pytest.fixture
def live(sandbox, alice_client):
    """Alice's live account, linked through the sandbox's Kite login, with INFY pinned."""
    requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": MARKET_PRICE}, timeout=5).raise_for_status()
    return link(alice_client)


@pytest.fixture
def trading(live):
    """The live account, which may trade: a sandbox connection does from its first link."""
    assert live.connection.trading_enabled
    return live


def url(account, path=""):
    return f"/api/accounts/{account.pk}{path}"


def sandbox_order(sandbox, broker_order_id) -> dict:
    return sandbox.state.kite.accounts["AB1234"].orders[broker_order_id].current


def resting_limit(**overrides):
    """A buy limit below the pinned market price: it rests at the broker."""
    return order_body(**{"order_type": "LIMIT", "price": "1400.00", **overrides})


class TestReads:
    @pytest.mark.parametrize("what", ["positions", "holdings", "funds"])
    def test_live_then_cache_with_the_paper_shape(self, alice_client, live, what):
        paper = alice_client.get(f"/api/accounts/primary/{what}").json()

        first = alice_client.get(url(live, f"/{what}"))
        second = alice_client.get(url(live, f"/{what}"))

        assert first.status_code == 200, first.json()
        assert (first.json()["source"], second.json()["source"]) == ("live", "cache")
        assert first.json()["as_of"] == second.json()["as_of"]
        assert set(first.json()) == set(paper) == {"account_id", "source", "as_of", "data"}
        assert first.json()["account_id"] == live.pk

    def test_positions_and_holdings_are_whole_quantities_and_decimal_strings(self, alice_client, live):
        alice_client.post("/api/accounts/primary/orders", order_body(), format="json")
        paper_position = alice_client.get("/api/accounts/primary/positions").json()["data"][0]

        positions = alice_client.get(url(live, "/positions")).json()["data"]
        holdings = alice_client.get(url(live, "/holdings")).json()["data"]

        assert positions and holdings
        assert set(positions[0]) == set(paper_position)
        assert all(isinstance(p["quantity"], int) and isinstance(p["unrealised_pnl"], str) for p in positions)
        assert all(isinstance(h["last_price"], str) and Decimal(h["last_price"]) > 0 for h in holdings)

    def test_funds_are_decimal_strings_in_rupees(self, alice_client, live):
        funds = alice_client.get(url(live, "/funds")).json()["data"]

        assert funds["currency"] == "INR"
        assert all(isinstance(funds[name], str) for name in ("cash", "available", "buying_power"))
        assert Decimal(funds["available"]) > 0

    def test_a_broker_failure_serves_the_last_good_snapshot_with_its_time(self, alice_client, sandbox, live):
        first = alice_client.get(url(live, "/positions")).json()
        sandbox_fault(sandbox, kind="5xx", path="/portfolio/positions", count=1)

        stale = alice_client.get(url(live, "/positions?fresh=1"))

        assert stale.status_code == 200
        assert stale.json()["source"] == "stale"
        assert stale.json()["as_of"] == first["as_of"] and stale.json()["data"] == first["data"]

    def test_an_expired_session_asks_to_relink_from_then_on(
        self, alice_client, sandbox, live, django_capture_on_commit_callbacks
    ):
        assert alice_client.get(url(live, "/funds")).status_code == 200
        sandbox_fault(sandbox, kind="token_expired", path="/user/margins", count=1)

        with django_capture_on_commit_callbacks(execute=True):  # the request's commit, as a server makes it
            expired = alice_client.get(url(live, "/funds?fresh=1"))

        assert expired.status_code == 409 and expired.json()["code"] == "reauth_required"
        assert BrokerConnection.objects.get(pk=live.connection_id).status == "expired"
        calls = sandbox.state.stats.snapshot()["total"]
        for what in ("funds", "positions", "holdings"):
            later = alice_client.get(url(live, f"/{what}"))
            assert later.status_code == 409 and later.json()["code"] == "reauth_required"
        assert sandbox.state.stats.snapshot()["total"] == calls

    @pytest.mark.django_db(transaction=True)
    def test_concurrent_readers_share_one_upstream_call(self, alice, sandbox, live):
        answers = []

        def read():
            answers.append(client_for(alice).get(url(live, "/positions")).json()["source"])
            db_connection.close()

        readers = [threading.Thread(target=read) for _ in range(8)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()

        assert sorted(answers) == ["cache"] * 7 + ["live"]
        assert sandbox_calls(sandbox, "GET /portfolio/positions") == 1


class TestOrders:
    def test_a_market_order_is_sent_and_sync_shows_it_complete(self, alice_client, sandbox, trading):
        response = place(alice_client, account=trading.pk)

        assert response.status_code == 201, response.json()
        order = Order.objects.get(pk=response.json()["id"])
        assert order.broker_order_id and order.status == "OPEN"
        assert sandbox_order(sandbox, order.broker_order_id)["tag"] == order.client_order_id

        sync = alice_client.post(url(trading, "/sync"))

        assert sync.status_code == 200
        assert sync.json()["changed"]["orders"] == 1 and sync.json()["as_of"]
        order.refresh_from_db()
        assert (order.status, order.filled_quantity, order.average_price) == ("COMPLETE", 10, Decimal("1500"))
        assert alice_client.post(url(trading, "/sync")).json()["changed"]["orders"] == 0

    def test_with_trading_disabled_nothing_is_sent(self, alice_client, sandbox, live):
        BrokerConnection.objects.filter(pk=live.connection_id).update(trading_enabled=False)

        response = place(alice_client, account=live.pk)

        assert response.status_code == 403 and response.json()["code"] == "trading_disabled"
        assert sandbox_calls(sandbox, PLACE) == 0
        assert not Order.objects.filter(account=live).exists()

    def test_modify_then_cancel_a_resting_limit_order(self, alice_client, sandbox, trading):
        order_id = place(alice_client, account=trading.pk, **resting_limit()).json()["id"]

        modified = alice_client.patch(url(trading, f"/orders/{order_id}"), {"price": "1410.00"}, format="json")
        cancelled = alice_client.delete(url(trading, f"/orders/{order_id}"))

        assert modified.status_code == 200, modified.json()
        assert Decimal(modified.json()["price"]) == Decimal("1410")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
        at_broker = sandbox_order(sandbox, Order.objects.get(pk=order_id).broker_order_id)
        assert (at_broker["status"], at_broker["price"]) == ("CANCELLED", 1410.0)

    def test_the_broker_refusing_an_order_is_a_clear_error(self, alice_client, trading):
        response = place(alice_client, account=trading.pk, tradingsymbol="NOSUCHSTOCK")

        assert response.status_code == 400 and response.json()["code"] == "broker_invalid_input"
        assert Order.objects.get(account=trading).status == "REJECTED"

    def test_an_idempotency_key_replay_places_once(self, alice_client, sandbox, trading):
        first = place(alice_client, account=trading.pk, key="live-1")
        second = place(alice_client, account=trading.pk, key="live-1")

        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        assert sandbox_calls(sandbox, PLACE) == 1

    def test_an_order_is_sent_when_paper_prices_have_no_session_for_the_tenant(
        self, alice_client, sandbox, trading, settings
    ):
        settings.THOR_PAPER_PRICE_SOURCE = "kite"  # Alice linked her own app: the tenant's has no session

        response = place(alice_client, account=trading.pk, **resting_limit())

        assert response.status_code == 201, response.json()
        assert sandbox_calls(sandbox, PLACE) == 1

    def test_with_the_session_ended_nothing_is_stored_and_the_key_stays_free(self, alice_client, sandbox, trading):
        sandbox_fault(sandbox, kind="token_expired", path="/user/margins", count=1)
        assert alice_client.get(url(trading, "/funds")).json()["code"] == "reauth_required"

        first = place(alice_client, account=trading.pk, key="live-2")
        retry = place(alice_client, account=trading.pk, key="live-2")

        assert (first.status_code, first.json()["code"]) == (409, "reauth_required")
        assert (retry.status_code, retry.json()) == (409, first.json())
        assert not Order.objects.filter(account=trading).exists()
        assert sandbox_calls(sandbox, PLACE) == 0

        link(alice_client)
        placed = place(alice_client, account=trading.pk, key="live-2")

        assert placed.status_code == 201, placed.json()
        assert sandbox_calls(sandbox, PLACE) == 1

    @pytest.mark.parametrize(
        ("fault", "overrides", "code"),
        [
            (None, {"tradingsymbol": "NOSUCHSTOCK"}, "broker_invalid_input"),
            ({"kind": "token_expired", "path": "/orders/regular"}, {}, "reauth_required"),
        ],
        ids=["refused", "session-ended-at-the-broker"],
    )
    def test_a_refused_order_answers_a_replay_with_the_first_answer(
        self, alice_client, sandbox, trading, fault, overrides, code
    ):
        if fault:
            sandbox_fault(sandbox, count=1, **fault)

        first = place(alice_client, account=trading.pk, key="live-3", **overrides)
        retry = place(alice_client, account=trading.pk, key="live-3", **overrides)

        assert first.json()["code"] == code
        assert (retry.status_code, retry.json()) == (first.status_code, first.json())
        assert Order.objects.get(account=trading).status == "REJECTED"
        assert sandbox_calls(sandbox, PLACE) == 1

    def test_an_idempotent_cancel_replay_cancels_once(self, alice_client, sandbox, trading):
        order_id = place(alice_client, account=trading.pk, **resting_limit()).json()["id"]

        first = alice_client.delete(url(trading, f"/orders/{order_id}"), HTTP_IDEMPOTENCY_KEY="c-1")
        second = alice_client.delete(url(trading, f"/orders/{order_id}"), HTTP_IDEMPOTENCY_KEY="c-1")

        assert first.status_code == second.status_code == 200
        assert sandbox_calls(sandbox, "DELETE /orders/regular/" + Order.objects.get().broker_order_id) == 1


class TestUncertainPlacement:
    """A placement that failed in transit is resolved by reading the order book, never by sending again."""

    @pytest.fixture(autouse=True)
    def quick_broker(self, settings):
        settings.THOR_KITE_TIMEOUT = 0.2
        settings.THOR_PLACEMENT_LOOKUP_INTERVAL = 0.2

    def test_a_timeout_after_the_broker_took_the_order_records_it_placed(self, alice_client, sandbox, trading):
        sandbox_fault(sandbox, kind="latency", ms=350, path="/orders/regular", count=1)

        response = place(alice_client, account=trading.pk, **resting_limit())

        assert response.status_code == 201, response.json()
        order = Order.objects.get(pk=response.json()["id"])
        assert order.status == "OPEN" and sandbox_order(sandbox, order.broker_order_id)["tag"] == order.client_order_id
        assert order.events.filter(kind="placement_confirmed").exists()
        assert sandbox_calls(sandbox, PLACE) == 1

    def test_an_order_the_broker_takes_after_thor_gave_up_waiting_is_unknown_then_settled(
        self, alice_client, sandbox, trading
    ):
        """Issue 8, finding 1: never "not placed" (and never placed twice) when the broker is only slow."""
        sandbox_fault(sandbox, kind="latency", ms=1500, path="/orders/regular", count=1)

        response = place(alice_client, account=trading.pk, key="slow-1", **resting_limit())

        assert response.status_code == 202, response.json()
        order = Order.objects.get(pk=response.json()["id"])
        assert (order.status, order.broker_order_id) == ("UNKNOWN", "")
        replay = place(alice_client, account=trading.pk, key="slow-1", **resting_limit())
        assert (replay.status_code, replay.json()["id"]) == (202, order.pk)
        wait_until(lambda: sandbox.state.kite.accounts["AB1234"].orders)

        assert settle_unknown_orders.apply(kwargs={}).successful()

        order.refresh_from_db()
        assert order.status == "OPEN" and sandbox_order(sandbox, order.broker_order_id)["tag"] == order.client_order_id
        assert place(alice_client, account=trading.pk, key="slow-1", **resting_limit()).json()["status"] == "OPEN"
        assert sandbox_calls(sandbox, PLACE) == 1
        assert [e.kind for e in order.events.all()] == ["placed", "placement_unknown", "placement_confirmed"]

    def test_a_dropped_request_is_rejected_only_once_the_settle_window_has_passed(
        self, alice_client, sandbox, trading, settings
    ):
        sandbox_fault(sandbox, kind="drop", path="/orders/regular", count=1)

        response = place(alice_client, account=trading.pk, **resting_limit())

        assert response.status_code == 202 and response.json()["status"] == "UNKNOWN"
        order = Order.objects.get(account=trading)
        assert not sandbox.state.kite.accounts["AB1234"].orders
        unknown_orders_settle(now=order.settle_after)
        order.refresh_from_db()
        assert order.status == "UNKNOWN" and order.settle_checks == 1
        window = timedelta(seconds=settings.THOR_PLACEMENT_SETTLE_SECONDS["kite"])
        unknown_orders_settle(now=order.created_at + window)
        order.refresh_from_db()
        assert (order.status, order.broker_order_id) == ("REJECTED", "")
        assert sandbox_calls(sandbox, PLACE) == 1

    def test_an_order_thor_rejected_comes_back_when_the_broker_shows_it(self, alice_client, sandbox, trading):
        sandbox_fault(sandbox, kind="latency", ms=1500, path="/orders/regular", count=1)
        order = Order.objects.get(pk=place(alice_client, account=trading.pk, **resting_limit()).json()["id"])
        Order.objects.filter(pk=order.pk).update(status="REJECTED", settle_after=None)  # as an old Thor concluded
        wait_until(lambda: sandbox.state.kite.accounts["AB1234"].orders)

        assert alice_client.post(url(trading, "/sync")).status_code == 200

        order.refresh_from_db()
        assert order.status == "OPEN" and order.broker_order_id

    def test_when_the_order_book_cannot_be_read_the_order_stays_unknown_until_sync(
        self, alice_client, sandbox, trading, settings
    ):
        sandbox_fault(sandbox, kind="latency", ms=350, path="/orders", count=1 + settings.THOR_PLACEMENT_LOOKUPS)

        response = place(alice_client, account=trading.pk, **resting_limit())

        assert response.status_code == 202
        order = Order.objects.get(account=trading)
        assert order.status == "UNKNOWN" and "unconfirmed" in order.status_message
        assert alice_client.post(url(trading, "/sync")).status_code == 200
        order.refresh_from_db()
        assert order.status == "OPEN" and order.broker_order_id
        assert sandbox_calls(sandbox, PLACE) == 1


class TestBatch:
    BATCH = "/batch-orders"

    def test_every_leg_placed(self, alice_client, sandbox, trading):
        legs = [resting_limit(), resting_limit(price="1390.00"), order_body(quantity=1)]

        response = alice_client.post(url(trading, self.BATCH), {"orders": legs}, format="json")

        assert response.status_code == 201, response.json()
        assert response.json()["status"] == "placed"
        assert [leg["outcome"] for leg in response.json()["legs"]] == ["placed"] * 3
        assert sandbox_calls(sandbox, PLACE) == 3

    def test_a_leg_failing_at_the_broker_cancels_the_placed_ones(self, alice_client, sandbox, trading):
        legs = [resting_limit(), resting_limit(price="1390.00"), resting_limit(tradingsymbol="NOSUCHSTOCK")]

        response = alice_client.post(url(trading, self.BATCH), {"orders": legs}, format="json")

        assert response.status_code == 422, response.json()
        body = response.json()
        assert body["status"] == "failed"
        assert [(leg["index"], leg["outcome"]) for leg in body["legs"]] == [
            (0, "cancelled"),
            (1, "cancelled"),
            (2, "rejected"),
        ]
        assert [leg["order"]["status"] for leg in body["legs"]] == ["CANCELLED", "CANCELLED", "REJECTED"]
        at_broker = sandbox.state.kite.accounts["AB1234"].orders.values()
        assert [order.current["status"] for order in at_broker] == ["CANCELLED", "CANCELLED"]

    def test_a_filled_leg_that_cannot_be_cancelled_makes_the_batch_partial(self, alice_client, sandbox, trading):
        legs = [order_body(quantity=1), resting_limit(), resting_limit(tradingsymbol="NOSUCHSTOCK")]

        response = alice_client.post(url(trading, self.BATCH), {"orders": legs}, format="json")

        assert response.status_code == 207, response.json()
        body = response.json()
        assert body["status"] == "partial"
        assert [leg["outcome"] for leg in body["legs"]] == ["placed", "cancelled", "rejected"]
        assert "Cancel failed" in body["legs"][0]["message"]

    def test_a_leg_whose_cancel_the_broker_does_not_confirm_stays_placed(self, alice_client, sandbox, trading):
        # The cancel goes out, but the order's state cannot be read back (Kite order ids start with the date).
        sandbox_fault(sandbox, kind="5xx", path="/orders/2", count=20)
        legs = [resting_limit(), resting_limit(tradingsymbol="NOSUCHSTOCK")]

        response = alice_client.post(url(trading, self.BATCH), {"orders": legs}, format="json")

        assert response.status_code == 207, response.json()
        body = response.json()
        assert body["status"] == "partial"
        assert [(leg["outcome"], leg["order"]["status"]) for leg in body["legs"]] == [
            ("placed", "OPEN"),
            ("rejected", "REJECTED"),
        ]
        assert "still shows it OPEN" in body["legs"][0]["message"]

    def test_legs_after_a_failed_one_are_never_sent(self, alice_client, sandbox, trading):
        legs = [resting_limit(), resting_limit(tradingsymbol="NOSUCHSTOCK"), resting_limit(price="1390.00")]

        body = alice_client.post(url(trading, self.BATCH), {"orders": legs}, format="json").json()

        assert [leg["outcome"] for leg in body["legs"]] == ["cancelled", "rejected", "cancelled"]
        assert body["legs"][2]["order"]["broker_order_id"] == ""
        assert sandbox_calls(sandbox, PLACE) == 2

    def test_an_idempotency_key_replay_sends_the_batch_once(self, alice_client, sandbox, trading):
        batch = {"orders": [resting_limit(), resting_limit(price="1390.00")]}

        first = alice_client.post(url(trading, self.BATCH), batch, format="json", HTTP_IDEMPOTENCY_KEY="b-1")
        second = alice_client.post(url(trading, self.BATCH), batch, format="json", HTTP_IDEMPOTENCY_KEY="b-1")

        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert sandbox_calls(sandbox, PLACE) == 2


LIVE_ENDPOINTS = [
    ("get", ""),
    ("patch", ""),
    ("post", "/sync"),
    ("get", "/positions"),
    ("get", "/holdings"),
    ("get", "/funds"),
    ("get", "/orders"),
    ("post", "/orders"),
    ("post", "/batch-orders"),
]


@pytest.mark.parametrize(("method", "path"), LIVE_ENDPOINTS)
@pytest.mark.parametrize("intruder", ["bob", "charlie"])
def test_another_users_live_account_is_not_found(request, sandbox, trading, method, path, intruder):
    intruder_client = client_for(request.getfixturevalue(intruder))
    calls = sandbox.state.stats.snapshot()["total"]

    response = getattr(intruder_client, method)(url(trading, path), {}, format="json")

    assert response.status_code == 404, response.json()
    assert sandbox.state.stats.snapshot()["total"] == calls


@pytest.mark.parametrize(("method", "path"), LIVE_ENDPOINTS)
def test_unauthenticated_is_401(anon_client, trading, method, path):
    response = getattr(anon_client, method)(url(trading, path), {}, format="json")

    assert response.status_code == 401


@pytest.mark.parametrize("intruder", ["bob", "charlie"])
def test_another_users_live_order_is_not_found(request, alice_client, trading, intruder):
    order_id = place(alice_client, account=trading.pk, **resting_limit()).json()["id"]
    intruder_client = client_for(request.getfixturevalue(intruder))

    for method in ("get", "patch", "delete"):
        response = getattr(intruder_client, method)(
            url(trading, f"/orders/{order_id}"), {"price": "1.00"}, format="json"
        )
        assert response.status_code == 404
    assert Order.objects.get(pk=order_id).status == "OPEN"
