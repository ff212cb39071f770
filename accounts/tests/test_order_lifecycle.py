"""The red team's findings of issue 19, each over real HTTP with the Schwab sandbox: no broker order is
ever given to two orders, no order row is deleted, no working order shows as finished, no key sends twice.
"""

import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import BrokerOrderId, Order, OrderDeletionRefused, TradingAccount
from accounts.placement import live_order_settle
from accounts.services import unknown_orders_settle
from accounts.tests.conftest import place
from brokers.tests import schwab_link_steps
from brokers.tests.schwab_link_steps import link_schwab, schwab_fault
from identity.models import User

pytestmark = pytest.mark.django_db

schwab_sandbox = schwab_link_steps.schwab_sandbox
schwab_app = schwab_link_steps.schwab_app


@pytest.fixture
def account(alice_client, schwab_sandbox, schwab_app):
    connection = link_schwab(alice_client)
    return TradingAccount.objects.filter(connection=connection).order_by("id").first()


@pytest.fixture
def orders_path(account):
    return f"/trader/v1/accounts/{account.broker_account_id}/orders"


def tsla(client, account, key, **overrides):
    """The red team's order: it rests (far below the market)."""
    body = dict(tradingsymbol="TSLA", exchange="NASDAQ", quantity=4, order_type="LIMIT", price="31.00")
    return place(client, account=account.pk, key=key, **{**body, **overrides})


def broker_book(sandbox, account) -> list[dict]:
    """The sandbox's own view of the account's orders (what Schwab holds), read as Schwab's API reads it."""
    connection = account.connection
    response = requests.get(
        f"{sandbox.url}/trader/v1/accounts/{account.broker_account_id}/orders",
        params={"fromEnteredTime": "2000-01-01T00:00:00.000Z", "toEnteredTime": "2100-01-01T00:00:00.000Z"},
        headers={"Authorization": f"Bearer {connection.access_token}"},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()


def working_ids(sandbox, account) -> set[str]:
    working = {"WORKING", "QUEUED", "ACCEPTED", "PENDING_ACTIVATION", "AWAITING_PARENT_ORDER"}
    return {str(order["orderId"]) for order in broker_book(sandbox, account) if order["status"] in working}


def until_the_book_holds(sandbox, account, working: int) -> None:
    """Until the sandbox has entered the order it held back for a latency fault (it enters it once the latency
    has passed, the placement that sent it long given up)."""
    deadline = time.monotonic() + 15
    while len(working_ids(sandbox, account)) < working:
        assert time.monotonic() < deadline, "the sandbox never entered the late order"
        time.sleep(0.05)


def posts(sandbox, path) -> int:
    return requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["by_path"].get(f"POST {path}", 0)


class TestAPlacementWithoutLocationBesideAnIdenticalOrder:
    """Finding 1: B took A's broker id, A's row was deleted, and A's key placed a third order."""

    def test_b_gets_its_own_broker_order_and_a_keeps_its_row_and_its_id(
        self, alice_client, account, orders_path, schwab_sandbox
    ):
        first = tsla(alice_client, account, "tsla-A")
        assert first.status_code == 201, first.json()
        schwab_fault(schwab_sandbox, kind="no_location", path=orders_path, count=1)

        second = tsla(alice_client, account, "tsla-B")

        a, b = first.json(), second.json()
        assert second.status_code == 201, b
        assert b["broker_order_id"] and b["broker_order_id"] != a["broker_order_id"]
        assert alice_client.get(f"/api/accounts/{account.pk}/orders/{a['id']}").status_code == 200
        assert {a["broker_order_id"], b["broker_order_id"]} == working_ids(schwab_sandbox, account)

    def test_retrying_a_key_answers_its_own_order_and_sends_nothing(
        self, alice_client, account, orders_path, schwab_sandbox
    ):
        first = tsla(alice_client, account, "tsla-A").json()
        schwab_fault(schwab_sandbox, kind="no_location", path=orders_path, count=1)
        tsla(alice_client, account, "tsla-B")
        sent = posts(schwab_sandbox, orders_path)

        again = tsla(alice_client, account, "tsla-A")

        assert again.status_code == 201 and again.json()["id"] == first["id"]
        assert again.json()["broker_order_id"] == first["broker_order_id"]
        assert posts(schwab_sandbox, orders_path) == sent
        assert len(working_ids(schwab_sandbox, account)) == Order.objects.filter(account=account).count() == 2


class TestTheCancelVariant:
    """Finding 2: B came back CANCELLED with A's id while its own order worked, and A's cancel key 500'd."""

    def test_b_is_open_with_its_own_id_and_can_be_cancelled(self, alice_client, account, orders_path, schwab_sandbox):
        a = tsla(alice_client, account, "tsla-A").json()
        cancelled = alice_client.delete(
            f"/api/accounts/{account.pk}/orders/{a['id']}", HTTP_IDEMPOTENCY_KEY="fc-cancel-A"
        )
        assert cancelled.status_code == 200, cancelled.json()
        assert cancelled.json()["status"] == "CANCELLED"
        schwab_fault(schwab_sandbox, kind="no_location", path=orders_path, count=1)

        b = tsla(alice_client, account, "tsla-B")

        assert b.status_code == 201, b.json()
        assert b.json()["status"] == "OPEN" and b.json()["broker_order_id"] != a["broker_order_id"]
        cancel_b = alice_client.delete(f"/api/accounts/{account.pk}/orders/{b.json()['id']}")
        assert cancel_b.status_code == 200 and cancel_b.json()["status"] == "CANCELLED"
        assert working_ids(schwab_sandbox, account) == set()

    def test_a_retried_cancel_key_answers_as_the_first_time(self, alice_client, account, orders_path, schwab_sandbox):
        a = tsla(alice_client, account, "tsla-A").json()
        url = f"/api/accounts/{account.pk}/orders/{a['id']}"
        alice_client.delete(url, HTTP_IDEMPOTENCY_KEY="fc-cancel-A")
        schwab_fault(schwab_sandbox, kind="no_location", path=orders_path, count=1)
        tsla(alice_client, account, "tsla-B")

        again = alice_client.delete(url, HTTP_IDEMPOTENCY_KEY="fc-cancel-A")

        assert again.status_code == 200 and again.json()["id"] == a["id"]


class TestPlacementsWhoseAnswerWasLost:
    """Finding 3: an UNKNOWN order never settled, and a never-placed one took another's late order."""

    @pytest.fixture(autouse=True)
    def quick(self, settings):
        settings.THOR_SCHWAB_TIMEOUT = 0.4
        settings.THOR_PLACEMENT_LOOKUPS = 1

    def test_a_timed_out_placement_settles_to_its_own_late_landing_order(
        self, alice_client, account, orders_path, schwab_sandbox
    ):
        a = tsla(alice_client, account, "tsla-A").json()
        schwab_fault(schwab_sandbox, kind="latency", ms=900, path=orders_path, count=1)

        b = tsla(alice_client, account, "tsla-B")
        assert b.status_code == 202 and b.json()["status"] == "UNKNOWN", b.json()
        until_the_book_holds(schwab_sandbox, account, working=2)  # A's, and B's once its latency has passed

        synced = alice_client.post(f"/api/accounts/{account.pk}/sync")
        assert synced.status_code == 200, synced.json()
        order = Order.objects.get(pk=b.json()["id"])
        if not order.broker_order_id:
            order = live_order_settle(order=order)

        assert order.broker_order_id and order.broker_order_id != a["broker_order_id"]
        assert order.status == "OPEN"
        assert Order.objects.filter(account=account).count() == 2  # the sync imported no stranger
        assert {a["broker_order_id"], order.broker_order_id} == working_ids(schwab_sandbox, account)

    def test_a_send_that_got_a_5xx_never_takes_a_late_landing_order_and_neither_is_rejected(
        self, alice_client, account, orders_path, schwab_sandbox, settings
    ):
        tsla(alice_client, account, "tsla-A")
        schwab_fault(schwab_sandbox, kind="latency", ms=900, path=orders_path, count=1)
        late = tsla(alice_client, account, "tsla-B").json()
        schwab_fault(schwab_sandbox, kind="5xx", path=orders_path, count=1)
        failed = tsla(alice_client, account, "tsla-C")
        until_the_book_holds(schwab_sandbox, account, working=2)  # A's, and the late one

        assert failed.status_code == 202, failed.json()
        settings.THOR_PLACEMENT_SETTLE_SECONDS = {"kite": 600, "schwab": 0}
        settled = [live_order_settle(order=Order.objects.get(pk=pk)) for pk in (failed.json()["id"], late["id"])]

        # Either could have made the late order: neither gets it by guess, neither is called "not placed".
        assert [order.status for order in settled] == ["NEEDS_REVIEW", "NEEDS_REVIEW"]
        assert all(not order.broker_order_id for order in settled)
        assert "could be this one" in settled[0].status_message

    def test_a_key_whose_order_was_settled_as_never_placed_answers_that_never_a_201(
        self, alice_client, account, orders_path, schwab_sandbox, settings
    ):
        schwab_fault(schwab_sandbox, kind="drop", path=orders_path, count=1)
        lost = tsla(alice_client, account, "tsla-lost")
        assert lost.status_code == 202, lost.json()
        settings.THOR_PLACEMENT_SETTLE_SECONDS = {"kite": 600, "schwab": 0}
        assert live_order_settle(order=Order.objects.get(pk=lost.json()["id"])).status == "REJECTED"
        sent = posts(schwab_sandbox, orders_path)

        again = tsla(alice_client, account, "tsla-lost")

        assert again.status_code == 422 and again.json()["code"] == "order_not_placed"
        assert posts(schwab_sandbox, orders_path) == sent


class TestTheOperatorsQueue:
    """An operator who has looked at the broker's book settles the unconfirmed orders from the admin."""

    @pytest.fixture(autouse=True)
    def quick(self, settings):
        settings.THOR_SCHWAB_TIMEOUT = 0.4
        settings.THOR_PLACEMENT_LOOKUPS = 1

    @pytest.fixture
    def ops_client(self, tenant):
        ops = User.objects.create_superuser("ops@thor.test", "ops-password-123", tenant=tenant)
        client = Client()
        client.force_login(ops)
        return client

    def test_the_admin_reads_the_book_for_the_selected_orders_and_sends_nothing(
        self, alice_client, ops_client, account, orders_path, schwab_sandbox
    ):
        schwab_fault(schwab_sandbox, kind="latency", ms=900, path=orders_path, count=1)
        unknown = tsla(alice_client, account, "tsla-late").json()
        settled_already = tsla(alice_client, account, "tsla-open", price="32.00").json()
        until_the_book_holds(schwab_sandbox, account, working=2)  # the late order once its latency has passed
        sent = posts(schwab_sandbox, orders_path)

        answer = ops_client.post(
            "/admin/accounts/order/",
            {"action": "settle_from_the_book", "_selected_action": [unknown["id"], settled_already["id"]]},
            follow=True,
        )

        assert answer.status_code == 200
        assert "Read the book for 1 orders: now 1 OPEN." in answer.text
        order = Order.objects.get(pk=unknown["id"])
        assert order.status == "OPEN" and order.broker_order_id in working_ids(schwab_sandbox, account)
        assert posts(schwab_sandbox, orders_path) == sent

    def test_orders_that_are_not_unconfirmed_are_left_alone(self, alice_client, ops_client, account):
        placed = tsla(alice_client, account, "tsla-open").json()

        answer = ops_client.post(
            "/admin/accounts/order/",
            {"action": "settle_from_the_book", "_selected_action": [placed["id"]]},
            follow=True,
        )

        assert "None of the selected orders is UNKNOWN or NEEDS_REVIEW." in answer.text
        assert Order.objects.get(pk=placed["id"]).status == "OPEN"


class TestACrashMidPlacement:
    """Finding 4: an order left PENDING by a dead server stayed so for ever."""

    def test_a_sent_order_left_pending_settles_to_the_brokers_order(self, alice_client, account, settings):
        placed = tsla(alice_client, account, "tsla-A").json()
        # What a kill -9 right after the send leaves: the row PENDING with its send started, no broker id.
        Order.objects.filter(pk=placed["id"]).update(
            status="PENDING", broker_order_id="", send_ended_at=None, settle_after=None
        )
        BrokerOrderId.objects.filter(order_id=placed["id"]).update(broker_order_id="forgotten")
        later = timezone.now() + timedelta(seconds=settings.THOR_PLACEMENT_ORPHAN_SECONDS + 1)

        unknown_orders_settle(now=later)

        order = Order.objects.get(pk=placed["id"])
        assert order.status == "OPEN" and order.broker_order_id == placed["broker_order_id"]
        assert list(order.events.values_list("kind", flat=True))[-2:] == ["placement_orphaned", "placement_confirmed"]

    def test_a_key_repeated_while_its_order_is_at_the_broker_waits_with_a_409(self, alice_client, account):
        placed = tsla(alice_client, account, "tsla-A").json()
        Order.objects.filter(pk=placed["id"]).update(
            status="PENDING", broker_order_id="", send_started_at=timezone.now()
        )

        again = tsla(alice_client, account, "tsla-A")

        assert again.status_code == 409 and again.json()["code"] == "idempotency_in_progress"
        assert again["Retry-After"] == "1"

    def test_a_key_repeated_after_its_sender_died_is_accepted_never_created(self, alice_client, account, settings):
        placed = tsla(alice_client, account, "tsla-A").json()
        long_ago = timezone.now() - timedelta(seconds=settings.THOR_PLACEMENT_ORPHAN_SECONDS + 1)
        Order.objects.filter(pk=placed["id"]).update(status="PENDING", broker_order_id="", send_started_at=long_ago)

        again = tsla(alice_client, account, "tsla-A")

        assert again.status_code == 202 and again.json()["status"] == "PENDING"

    def test_an_order_stored_but_never_sent_is_rejected_by_the_reconciler(self, account, settings):
        order = Order.objects.create(
            account=account,
            client_order_id="thor-never-sent",
            symbol="TSLA",
            exchange="NASDAQ",
            side="BUY",
            quantity=4,
            order_type="LIMIT",
            product="CNC",
            price="31.00",
            created_at=timezone.now() - timedelta(seconds=settings.THOR_PLACEMENT_ORPHAN_SECONDS + 1),
        )

        unknown_orders_settle()

        order.refresh_from_db()
        assert order.status == "REJECTED" and "Not sent" in order.status_message


class TestASchwabReplace:
    """Finding 5: a modify's superseded broker order came back as an order the user never placed."""

    def test_sync_and_poll_never_import_the_replaced_original(self, alice_client, account):
        placed = tsla(alice_client, account, "tsla-A").json()
        url = f"/api/accounts/{account.pk}/orders/{placed['id']}"

        modified = alice_client.patch(url, {"price": "32.00"}, format="json")
        assert modified.status_code == 200, modified.json()
        alice_client.post(f"/api/accounts/{account.pk}/sync")

        assert list(Order.objects.filter(account=account).values_list("pk", flat=True)) == [placed["id"]]
        order = Order.objects.get(pk=placed["id"])
        assert order.broker_order_id != placed["broker_order_id"] and order.status == "OPEN"
        lineage = dict(BrokerOrderId.objects.filter(order=order).values_list("broker_order_id", "superseded_at"))
        assert lineage[placed["broker_order_id"]] is not None and lineage[order.broker_order_id] is None


@pytest.mark.django_db(transaction=True)
class TestConcurrentPlacementsWithOneKey:
    """Finding 6: a repeat answered 201 with no broker id while the first was still at the broker."""

    def test_the_repeat_is_a_409_never_a_201_without_a_broker_id(
        self, alice_client, account, orders_path, schwab_sandbox
    ):
        schwab_fault(schwab_sandbox, kind="latency", ms=1500, path=orders_path, count=1)
        answers = {}

        def first():
            answers["first"] = tsla(alice_client, account, "same-key")
            connection.close()

        sender = threading.Thread(target=first)
        sender.start()
        deadline = time.monotonic() + 5
        while not Order.objects.filter(idempotency_key="same-key").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

        repeat = tsla(alice_client, account, "same-key")
        sender.join()

        assert repeat.status_code == 409 and repeat.json()["code"] == "idempotency_in_progress"
        assert answers["first"].status_code == 201 and answers["first"].json()["broker_order_id"]


class TestOrderRowsAreNeverDeleted:
    def test_not_by_the_model_nor_a_queryset_nor_the_database(self, account):
        order = Order.objects.create(
            account=account, client_order_id="thor-kept", symbol="TSLA", exchange="NASDAQ", side="BUY", quantity=1,
            order_type="MARKET", product="CNC",
        )  # fmt: skip

        with pytest.raises(OrderDeletionRefused):
            order.delete()
        with pytest.raises(OrderDeletionRefused):
            Order.objects.filter(pk=order.pk).delete()
        with pytest.raises(Exception, match="never deleted"), connection.cursor() as cursor:
            cursor.execute("DELETE FROM accounts_order WHERE id = %s", [order.pk])

    def test_one_broker_order_belongs_to_one_order_for_ever(self, account):
        from django.db import IntegrityError, transaction

        make = dict(account=account, symbol="TSLA", exchange="NASDAQ", side="BUY", quantity=1, order_type="MARKET")
        first = Order.objects.create(client_order_id="one", product="CNC", **make)
        second = Order.objects.create(client_order_id="two", product="CNC", **make)
        BrokerOrderId.objects.create(account=account, order=first, broker_order_id="1001")

        with pytest.raises(IntegrityError), transaction.atomic():
            BrokerOrderId.objects.create(account=account, order=second, broker_order_id="1001")
