"""Schwab order polling (issue 13): Schwab sends no postbacks, so the beat task `poll_schwab_orders` reads
the order books of the Schwab accounts an order socket follows, within each app's rate budget, and what
changed reaches the sockets like any other order change.

Thor talks to the Schwab sandbox over real HTTP; sockets run on the real channel layer and cache (Redis
under `make test`). Tests with sockets are transactional: changes publish on commit.
"""

import asyncio
import time
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
import requests
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings as django_settings

from accounts.followers import accounts_mark_followed, followed_account_ids
from accounts.models import Order, OrderEvent, TradingAccount
from accounts.polling import poll_allowance, schwab_orders_poll
from accounts.services import trading_account_create_paper, trading_account_for_connection
from accounts.tasks import poll_schwab_orders
from accounts.tests.conftest import place
from accounts.tests.test_consumers import opened, primary_id, received
from accounts.tests.test_streams import access_token, make_role
from brokers.adapters.types import BrokerAccountRef
from brokers.models import BrokerApp, BrokerConnection
from brokers.tests import schwab_link_steps
from brokers.tests.factories import linked_kite_account
from conftest import client_for
from identity.models import User
from thor import coordination, ratelimit

pytestmark = pytest.mark.django_db

schwab_sandbox = schwab_link_steps.schwab_sandbox
schwab_app = schwab_link_steps.schwab_app

DEAD_REDIS = "redis://127.0.0.1:1/0"


def schwab_accounts(sandbox, app, users) -> list[TradingAccount]:
    """Each user logged in to Schwab through `app` (sandbox-issued tokens, no login page): their margin and
    cash accounts, in that order, trading enabled. `account.grant_id` names the sandbox login."""
    accounts = []
    for connection in schwab_link_steps.seeded_connections(sandbox, app, users, trading_enabled=True):
        grant = connection.grant
        refs = [
            BrokerAccountRef(broker_account_id=item["hashValue"], account_number=item["accountNumber"])
            for item in grant["accounts"]
        ]
        for account in trading_account_for_connection(connection=connection, broker_accounts=refs):
            account.grant_id = grant["grant_id"]
            accounts.append(account)
    return accounts


def book_reads(sandbox, account) -> int:
    """How many times Thor read the account's order book at the sandbox."""
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["by_path"]
    return stats.get(f"GET /trader/v1/accounts/{account.broker_account_id}/orders", 0)


def all_reads(sandbox, accounts) -> list[int]:
    return [book_reads(sandbox, account) for account in accounts]


def pin_prices(sandbox, prices: dict) -> None:
    requests.post(f"{sandbox.url}/_sandbox/prices", json=prices, timeout=5).raise_for_status()


def resting_aapl_buy(user, account, limit="150.00") -> Order:
    """A limit buy below the market: Schwab has it WORKING."""
    response = place(
        client_for(user),
        account=account.pk,
        tradingsymbol="AAPL",
        exchange="NASDAQ",
        quantity=1,
        order_type="LIMIT",
        price=limit,
    )
    assert response.status_code == 201, response.json()
    order = Order.objects.get(pk=response.json()["id"])
    assert order.status == Order.Status.OPEN and order.broker_order_id
    return order


@pytest.fixture
def budget(settings):
    """Per run and per app, `poll_allowance()` accounts: requests a minute x share x period / 60."""
    settings.THOR_SCHWAB_POLL_SECONDS = 5
    settings.THOR_SCHWAB_POLL_SHARE = 0.5

    def allow(accounts_per_run: int) -> int:
        settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = int(accounts_per_run * 60 / (0.5 * 5))
        assert poll_allowance() == accounts_per_run
        return accounts_per_run

    return allow


@pytest.mark.django_db(transaction=True)
class TestAFillReachesTheSocket:
    def test_a_working_order_filled_at_schwab_arrives_as_order_position_and_funds_updates(
        self, alice, schwab_sandbox, schwab_app
    ):
        pin_prices(schwab_sandbox, {"NASDAQ:AAPL": 200.0})
        margin = schwab_accounts(schwab_sandbox, schwab_app, [alice])[0]
        order = resting_aapl_buy(alice, margin)

        async def scenario():
            communicator = await opened(f"/ws/orders/{margin.pk}?token={access_token(alice)}")
            await sync_to_async(pin_prices)(schwab_sandbox, {"NASDAQ:AAPL": 149.5})  # the order fills at Schwab
            changed = await sync_to_async(poll_schwab_orders.delay)()
            messages = await received(communicator, 3)
            await communicator.disconnect()
            return changed.get(), messages

        changed, (order_update, position_update, funds_update) = async_to_sync(scenario)()

        order.refresh_from_db()
        assert changed == 1
        assert order.status == Order.Status.COMPLETE
        assert (order.filled_quantity, order.average_price) == (Decimal("1.0000"), Decimal("149.5000"))
        event = OrderEvent.objects.get(order=order, kind="synced")
        assert [m["type"] for m in (order_update, position_update, funds_update)] == [
            "order_update",
            "position_update",
            "funds_update",
        ]
        assert [m["seq"] for m in (order_update, position_update, funds_update)] == [
            event.seq,
            event.seq + 1,
            event.seq + 2,
        ]
        assert (order_update["data"]["id"], order_update["data"]["status"]) == (order.pk, "COMPLETE")
        aapl = next(p for p in position_update["data"] if p["tradingsymbol"] == "AAPL")
        assert aapl["quantity"] == 11  # the sandbox login's 10 and this one
        assert funds_update["data"]["currency"] == "USD"

    def test_a_repeat_poll_with_nothing_new_writes_nothing_and_sends_nothing(self, alice, schwab_sandbox, schwab_app):
        pin_prices(schwab_sandbox, {"NASDAQ:AAPL": 200.0})
        margin = schwab_accounts(schwab_sandbox, schwab_app, [alice])[0]
        resting_aapl_buy(alice, margin)
        pin_prices(schwab_sandbox, {"NASDAQ:AAPL": 149.5})
        accounts_mark_followed([margin.pk])
        assert schwab_orders_poll() == 1
        events = OrderEvent.objects.count()

        async def scenario():
            communicator = await opened(f"/ws/orders/{margin.pk}?token={access_token(alice)}")
            changed = await sync_to_async(schwab_orders_poll)()
            quiet = await communicator.receive_nothing(timeout=0.3)
            await communicator.disconnect()
            return changed, quiet

        changed, quiet = async_to_sync(scenario)()

        assert (changed, quiet) == (0, True)
        assert OrderEvent.objects.count() == events
        assert book_reads(schwab_sandbox, margin) == 2  # it was read again, and found unchanged


@pytest.mark.django_db(transaction=True)
class TestOnlyFollowedAccountsArePolled:
    def test_an_account_nobody_follows_is_never_read(self, alice, schwab_sandbox, schwab_app):
        margin, cash = schwab_accounts(schwab_sandbox, schwab_app, [alice])

        async def scenario():
            communicator = await opened(f"/ws/orders/{margin.pk}?token={access_token(alice)}")
            await sync_to_async(poll_schwab_orders.delay)()
            await communicator.disconnect()

        async_to_sync(scenario)()

        assert all_reads(schwab_sandbox, [margin, cash]) == [1, 0]

    def test_an_account_is_no_longer_polled_once_its_mark_ran_out_after_the_socket_closed(
        self, alice, schwab_sandbox, schwab_app, settings, time_passes
    ):
        settings.THOR_WS_FOLLOW_SECONDS = 1
        margin, _ = schwab_accounts(schwab_sandbox, schwab_app, [alice])

        async def scenario():
            communicator = await opened(f"/ws/orders/{margin.pk}?token={access_token(alice)}")
            await communicator.disconnect()

        async_to_sync(scenario)()
        schwab_orders_poll()  # still marked: other sockets may follow it, the mark runs out by itself
        time_passes(1.2)
        schwab_orders_poll()

        assert book_reads(schwab_sandbox, margin) == 1

    def test_paper_and_kite_accounts_are_never_polled(self, alice, schwab_sandbox, schwab_app, settings):
        settings.THOR_KITE_API_ROOT = schwab_sandbox.url  # any Kite call would show in the sandbox's counts
        margin, _ = schwab_accounts(schwab_sandbox, schwab_app, [alice])
        kite = linked_kite_account(alice, broker_user_id="AB1234")
        accounts_mark_followed([primary_id(alice), kite.pk, margin.pk])

        schwab_orders_poll()

        stats = requests.get(f"{schwab_sandbox.url}/_sandbox/stats", timeout=5).json()
        assert stats["by_path"] == {f"GET /trader/v1/accounts/{margin.broker_account_id}/orders": 1}

    def test_an_account_whose_session_ended_is_not_polled(self, alice, schwab_sandbox, schwab_app):
        margin, _ = schwab_accounts(schwab_sandbox, schwab_app, [alice])
        BrokerConnection.objects.filter(pk=margin.connection_id).update(status=BrokerConnection.Status.EXPIRED)
        accounts_mark_followed([margin.pk])

        schwab_orders_poll()

        assert book_reads(schwab_sandbox, margin) == 0


class TestTheSchedule:
    def test_beat_runs_the_poll_every_few_seconds(self):
        entry = django_settings.CELERY_BEAT_SCHEDULE["poll-schwab-orders"]

        assert entry["task"] == poll_schwab_orders.name == "accounts.tasks.poll_schwab_orders"
        assert entry["schedule"] == timedelta(seconds=django_settings.THOR_SCHWAB_POLL_SECONDS) == timedelta(seconds=5)


class TestTheRateBudget:
    def test_the_allowance_is_the_polls_share_of_the_apps_requests_for_one_period(self, settings):
        settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 120
        settings.THOR_SCHWAB_POLL_SHARE = 0.5
        settings.THOR_SCHWAB_POLL_SECONDS = 5
        assert poll_allowance() == 5  # 60 a minute for polling, 12 runs a minute
        settings.THOR_SCHWAB_POLL_SECONDS = 1
        assert poll_allowance() == 1
        settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 10
        assert poll_allowance() == 1  # never none: a followed account is always polled in time

    def test_with_more_followed_accounts_than_the_allowance_they_take_turns(
        self, alice, bob, schwab_sandbox, schwab_app, budget
    ):
        budget(2)
        accounts = schwab_accounts(schwab_sandbox, schwab_app, [alice, bob])
        accounts_mark_followed([account.pk for account in accounts])

        schwab_orders_poll()
        first = all_reads(schwab_sandbox, accounts)
        schwab_orders_poll()
        second = all_reads(schwab_sandbox, accounts)
        schwab_orders_poll()
        third = all_reads(schwab_sandbox, accounts)

        assert first == [1, 1, 0, 0]
        assert second == [1, 1, 1, 1]  # the ones polled longest ago (never) first
        assert third == [2, 2, 1, 1]

    def test_each_app_has_an_allowance_of_its_own(
        self, alice, charlie, other_tenant, schwab_sandbox, schwab_app, budget
    ):
        budget(1)
        other_app = _second_schwab_app(schwab_sandbox, other_tenant)
        ours = schwab_accounts(schwab_sandbox, schwab_app, [alice])
        theirs = schwab_accounts(schwab_sandbox, other_app, [charlie])
        accounts_mark_followed([account.pk for account in ours + theirs])

        schwab_orders_poll()

        assert all_reads(schwab_sandbox, ours + theirs) == [1, 0, 1, 0]

    def test_a_budget_users_already_spent_stops_that_apps_polling_at_once_and_not_the_other_apps(
        self, alice, charlie, other_tenant, schwab_sandbox, schwab_app, settings, monkeypatch
    ):
        settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 60
        settings.THOR_SCHWAB_RATE_WAIT = 5.0  # what a user's call would wait; the poll must not
        other_app = _second_schwab_app(schwab_sandbox, other_tenant)
        ours = schwab_accounts(schwab_sandbox, schwab_app, [alice])
        theirs = schwab_accounts(schwab_sandbox, other_app, [charlie])
        accounts_mark_followed([account.pk for account in ours + theirs])
        while ratelimit.acquire(f"schwab:{schwab_app.pk}:requests", rate=60, per=60):
            pass  # users' calls took every token of our app

        waits = []
        monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=time.monotonic, sleep=waits.append))

        changed = schwab_orders_poll()

        assert changed == 0 and waits == []
        assert all_reads(schwab_sandbox, ours) == [0, 0]
        assert all_reads(schwab_sandbox, theirs) == [1, 1]
        assert BrokerConnection.objects.get(pk=ours[0].connection_id).status == BrokerConnection.Status.ACTIVE


class TestOneAccountsTroubleIsItsOwn:
    def test_a_broker_down_for_one_account_and_a_timeout_for_another_leave_the_rest_polled(
        self, alice, bob, schwab_sandbox, schwab_app, settings
    ):
        settings.THOR_SCHWAB_TIMEOUT = 0.3
        pin_prices(schwab_sandbox, {"NASDAQ:AAPL": 200.0})
        down, slow, healthy, bobs_cash = schwab_accounts(schwab_sandbox, schwab_app, [alice, bob])
        orders = {account.pk: resting_aapl_buy(account.user, account) for account in (down, slow, healthy)}
        pin_prices(schwab_sandbox, {"NASDAQ:AAPL": 149.5})  # all three fill at Schwab
        schwab_link_steps.schwab_fault(
            schwab_sandbox, kind="5xx", status=503, path=f"/trader/v1/accounts/{down.broker_account_id}/orders"
        )
        schwab_link_steps.schwab_fault(
            schwab_sandbox, kind="latency", ms=600, path=f"/trader/v1/accounts/{slow.broker_account_id}/orders"
        )
        accounts_mark_followed([down.pk, slow.pk, healthy.pk, bobs_cash.pk])

        changed = schwab_orders_poll()

        assert changed == 1
        # Read once each, never retried (the slow read is counted once the sandbox answers it, too late).
        assert all_reads(schwab_sandbox, [down, healthy, bobs_cash]) == [1, 1, 1]
        for account, status in ((down, "OPEN"), (slow, "OPEN"), (healthy, "COMPLETE")):
            orders[account.pk].refresh_from_db()
            assert orders[account.pk].status == status
            synced = OrderEvent.objects.filter(order=orders[account.pk], kind="synced").exists()
            assert synced == (status == "COMPLETE")

    def test_an_ended_session_is_marked_expired_and_the_other_logins_accounts_are_polled(
        self, alice, bob, schwab_sandbox, schwab_app
    ):
        pin_prices(schwab_sandbox, {"NASDAQ:AAPL": 200.0})
        ended, ended_cash, healthy, _ = schwab_accounts(schwab_sandbox, schwab_app, [alice, bob])
        ended_order, healthy_order = resting_aapl_buy(alice, ended), resting_aapl_buy(bob, healthy)
        pin_prices(schwab_sandbox, {"NASDAQ:AAPL": 149.5})
        for what in ("access", "refresh"):  # Schwab no longer takes alice's tokens, nor renews them
            response = requests.post(
                f"{schwab_sandbox.url}/_sandbox/schwab/expire",
                json={"what": what, "grant_id": ended.grant_id},
                timeout=5,
            )
            response.raise_for_status()
        accounts_mark_followed([ended.pk, ended_cash.pk, healthy.pk])

        changed = schwab_orders_poll()
        schwab_orders_poll()  # alice's accounts are no longer candidates

        ended_order.refresh_from_db()
        healthy_order.refresh_from_db()
        assert changed == 1
        assert (ended_order.status, healthy_order.status) == ("OPEN", "COMPLETE")
        assert not OrderEvent.objects.filter(order=ended_order, kind="synced").exists()
        assert BrokerConnection.objects.get(pk=ended.connection_id).status == BrokerConnection.Status.EXPIRED
        assert book_reads(schwab_sandbox, ended) == 1 and book_reads(schwab_sandbox, ended_cash) == 0
        assert book_reads(schwab_sandbox, healthy) == 2

    def test_a_second_run_while_one_is_polling_leaves_the_work_to_it(self, alice, schwab_sandbox, schwab_app):
        margin, _ = schwab_accounts(schwab_sandbox, schwab_app, [alice])
        accounts_mark_followed([margin.pk])

        with coordination.single_flight("thor:lock:schwab-orders-poll", timeout=10, wait=0) as held:
            assert held
            assert schwab_orders_poll() == 0
        schwab_orders_poll()

        assert book_reads(schwab_sandbox, margin) == 1


@pytest.mark.django_db(transaction=True)
class TestFollowMarks:
    def test_connecting_marks_the_accounts_the_socket_follows(self, alice):
        paper_usd = trading_account_create_paper(user=alice, currency="USD")
        primary = primary_id(alice)

        async def scenario():
            before = await sync_to_async(followed_account_ids)([primary, paper_usd.pk])
            communicator = await opened(f"/ws/orders?token={access_token(alice)}", following=2)
            after = await sync_to_async(followed_account_ids)([primary, paper_usd.pk])
            await communicator.disconnect()
            return before, after

        assert async_to_sync(scenario)() == (set(), {primary, paper_usd.pk})

    def test_subscribing_marks_the_account(self, alice, bob):
        make_role(bob, User.Role.TENANT_ADMIN)
        account_id = primary_id(alice)

        async def scenario():
            communicator = await opened(f"/ws/orders?token={access_token(bob)}")
            before = await sync_to_async(followed_account_ids)([account_id])
            await communicator.send_json_to({"action": "subscribe", "account_id": account_id})
            await communicator.receive_json_from()
            after = await sync_to_async(followed_account_ids)([account_id])
            await communicator.disconnect()
            return before, after

        assert async_to_sync(scenario)() == (set(), {account_id})

    def test_an_open_socket_renews_its_marks_and_an_unsubscribed_account_is_left_to_run_out(
        self, alice, settings, time_passes
    ):
        settings.THOR_WS_FOLLOW_SECONDS = 1
        paper_usd = trading_account_create_paper(user=alice, currency="USD")
        primary = primary_id(alice)

        async def scenario():
            communicator = await opened(f"/ws/orders?token={access_token(alice)}", following=2)
            await communicator.send_json_to({"action": "unsubscribe", "account_id": paper_usd.pk})
            await communicator.receive_json_from()
            await asyncio.sleep(1.5)  # past the first marks' lifetime
            while_open = await sync_to_async(followed_account_ids)([primary, paper_usd.pk])
            await communicator.disconnect()
            time_passes(1.2)
            after_close = await sync_to_async(followed_account_ids)([primary, paper_usd.pk])
            return while_open, after_close

        assert async_to_sync(scenario)() == ({primary}, set())

    def test_a_cache_outage_does_not_break_the_socket(self, alice, settings):
        paper_usd = trading_account_create_paper(user=alice, currency="USD")
        settings.THOR_WS_FOLLOW_SECONDS = 1
        settings.CACHES = {
            "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": DEAD_REDIS, "KEY_PREFIX": "thor"}
        }

        async def scenario():
            communicator = await opened(f"/ws/orders/primary?token={access_token(alice)}")
            await asyncio.sleep(0.5)  # a renewal has met the dead cache too
            await communicator.send_to(text_data="ping")
            pong = await communicator.receive_json_from()
            await communicator.send_json_to({"action": "subscribe", "account_id": paper_usd.pk})
            subscribed = await communicator.receive_json_from()
            await communicator.disconnect()
            return pong, subscribed

        pong, subscribed = async_to_sync(scenario)()

        assert pong == {"type": "pong"}
        assert (subscribed["type"], subscribed["account_id"]) == ("subscribed", paper_usd.pk)


def _second_schwab_app(sandbox, tenant) -> BrokerApp:
    """Another tenant's Schwab app, known to the sandbox: a rate budget of its own."""
    client_id, secret = "schwab-second-client", "schwab-second-secret"
    requests.post(
        f"{sandbox.url}/_sandbox/schwab/apps",
        json={"client_id": client_id, "client_secret": secret, "redirect_uri": schwab_link_steps.SPA_CALLBACK},
        timeout=5,
    ).raise_for_status()
    return schwab_link_steps.schwab_app_for(tenant, name="Globex Schwab", client_id=client_id, secret=secret)
