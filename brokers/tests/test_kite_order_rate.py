"""At most 10 order calls a second per Kite user, whatever app or process sends them (exchange rule), and 400 a
minute (Kite's limit): the call over either waits for room or is refused unsent (429 with Retry-After). The
limits are Redis's here, as in production, so every process shares them."""

from decimal import Decimal

import pytest
import requests

from accounts.models import Order
from accounts.tests.conftest import place
from brokers.adapters import kite_limits
from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.kite import KiteAdapter
from brokers.adapters.kite_limits import user_order_budget, user_order_minute_budget
from brokers.adapters.types import OrderRequest
from brokers.tests.sandbox_fixtures import link, sandbox_calls, sandbox_fault
from thor import coordination, ratelimit

PLACE = "POST /orders/regular"


@pytest.fixture(autouse=True)
def redis_buckets():
    assert coordination.uses_redis(), "run with REDIS_URL: the per-user budget is shared through Redis"
    redis = coordination.redis_client()
    stale = list(redis.scan_iter("thor:bucket:kite:*"))
    if stale:
        redis.delete(*stale)


@pytest.fixture
def live(sandbox, alice_client):
    requests.post(f"{sandbox.url}/_sandbox/prices", json={"NSE:INFY": 1500.0}, timeout=5).raise_for_status()
    return link(alice_client)


def adapter(connection, app_id) -> KiteAdapter:
    """A Kite adapter for the connection's user as app `app_id` would be (each app has its own budgets)."""
    return KiteAdapter(
        app_id=app_id,
        api_key=connection.app.api_key,
        api_secret=connection.app.api_secret,
        access_token=connection.access_token,
        broker_user_id=connection.broker_user_id,
    )


def resting_limit() -> OrderRequest:
    return OrderRequest(
        symbol="INFY",
        exchange="NSE",
        side="BUY",
        quantity=Decimal(1),
        order_type="LIMIT",
        product="CNC",
        price=Decimal("1400"),
        validity="DAY",
    )


@pytest.fixture
def slow_refill(monkeypatch):
    """The user's second as ten calls in a minute instead, so what a loaded machine takes between two calls can
    never let the first leave the window within the test."""
    monkeypatch.setattr(
        kite_limits, "user_order_budget", lambda user_id: ratelimit.Budget(f"kite:user:{user_id}:orders", 10, per=60)
    )


def test_the_budgets_are_ten_order_calls_a_second_and_four_hundred_a_minute_per_kite_user():
    assert user_order_budget("AB1234") == ratelimit.Budget("kite:user:AB1234:orders", 10, per=1)
    assert user_order_minute_budget("AB1234") == ratelimit.Budget("kite:user:AB1234:orders-minute", 400, per=60)


def test_the_eleventh_order_across_apps_is_refused_unsent(sandbox, live, settings, slow_refill):
    settings.THOR_KITE_RATE_WAIT = 0
    connection = live.connection
    first_app, second_app = adapter(connection, connection.app_id), adapter(connection, connection.app_id + 1000)

    for n in range(10):
        (first_app if n % 2 else second_app).place(resting_limit())
    with pytest.raises(BrokerError) as refused:
        first_app.place(resting_limit())

    # Ten a minute here (slow_refill): the first of them leaves the window a minute after it was sent.
    assert refused.value.code == BrokerErrorCode.ORDER_RATE_LIMITED and 55 < refused.value.retry_after <= 60
    assert sandbox_calls(sandbox, PLACE) == 10
    # Each app spent five of its own ten: only the user's budget stood in the way, and the refused call
    # took nothing from its app's.
    app_budget = ratelimit.Budget(f"kite:{connection.app_id}:orders", 10)
    assert ratelimit.tokens_left([app_budget])[0] >= 5


def test_reads_do_not_spend_the_users_order_budget(sandbox, live, settings):
    settings.THOR_KITE_RATE_WAIT = 0
    kite = adapter(live.connection, live.connection.app_id)

    for _ in range(5):
        kite.orders()

    assert ratelimit.tokens_left([user_order_budget(live.connection.broker_user_id)])[0] == 10


def test_with_time_to_wait_the_eleventh_is_queued_and_sent(sandbox, live, settings):
    settings.THOR_KITE_RATE_WAIT = 1.5  # a second from the first call's answer
    kite = adapter(live.connection, live.connection.app_id)

    for _ in range(11):
        kite.place(resting_limit())

    assert sandbox_calls(sandbox, PLACE) == 11
    assert sandbox.state.stats.snapshot()["by_status"].get("429", 0) == 0


def test_through_the_api_a_spent_budget_answers_429_with_retry_after_and_sends_nothing(
    alice_client, sandbox, live, settings, slow_refill
):
    settings.THOR_KITE_RATE_WAIT = 0
    budget = kite_limits.user_order_budget(live.connection.broker_user_id)
    for _ in range(10):
        assert ratelimit.acquire(budget.bucket, rate=budget.rate, per=budget.per)

    refused = place(alice_client, account=live.pk, order_type="LIMIT", price="1400.00")

    assert refused.status_code == 429 and refused.json()["code"] == "order_rate_limited"
    assert "10 orders a second per Kite user" in refused.json()["detail"]
    assert 55 < int(refused["Retry-After"]) <= 60  # the minute slow_refill counts over
    assert sandbox_calls(sandbox, PLACE) == 0
    assert not Order.objects.filter(account=live).exclude(status="REJECTED").exists()


def test_the_key_of_a_placement_refused_for_its_rate_places_it_when_retried(
    alice_client, sandbox, live, settings, slow_refill, time_passes
):
    settings.THOR_KITE_RATE_WAIT = 0
    budget = kite_limits.user_order_budget(live.connection.broker_user_id)
    for _ in range(10):
        assert ratelimit.acquire(budget.bucket, rate=budget.rate, per=budget.per)
    refused = place(alice_client, account=live.pk, key="rate-1", order_type="LIMIT", price="1400.00")
    assert refused.status_code == 429
    time_passes(61)  # the budget refills

    retried = place(alice_client, account=live.pk, key="rate-1", order_type="LIMIT", price="1400.00")
    again = place(alice_client, account=live.pk, key="rate-1", order_type="LIMIT", price="1400.00")

    assert retried.status_code == 201, retried.json()
    assert again.status_code == 201 and again.json()["id"] == retried.json()["id"]
    assert sandbox_calls(sandbox, PLACE) == 1
    assert Order.objects.filter(account=live, status="REJECTED", idempotency_key__isnull=True).count() == 1


def test_the_four_hundred_and_first_order_call_of_a_minute_is_refused_unsent(sandbox, live, settings):
    settings.THOR_KITE_RATE_WAIT = 0
    budget = user_order_minute_budget(live.connection.broker_user_id)
    for _ in range(399):  # 399 order calls in the last minute, as another process of Thor's would have sent them
        assert ratelimit.acquire(budget.bucket, rate=budget.rate, per=budget.per)
    kite = adapter(live.connection, live.connection.app_id)
    kite.place(resting_limit())

    with pytest.raises(BrokerError) as refused:
        kite.place(resting_limit())

    assert refused.value.code == BrokerErrorCode.ORDER_RATE_LIMITED and 55 < refused.value.retry_after <= 60
    assert "400 orders a minute" in str(refused.value)
    assert sandbox_calls(sandbox, PLACE) == 1


def test_through_the_api_a_spent_minute_answers_429_and_a_minute_later_places(
    alice_client, sandbox, live, settings, time_passes
):
    settings.THOR_KITE_RATE_WAIT = 0
    budget = user_order_minute_budget(live.connection.broker_user_id)
    for _ in range(400):
        assert ratelimit.acquire(budget.bucket, rate=budget.rate, per=budget.per)

    refused = place(alice_client, account=live.pk, key="minute-1", order_type="LIMIT", price="1400.00")
    assert refused.status_code == 429 and refused.json()["code"] == "order_rate_limited"
    # It names the limit that refused it: not the second's.
    assert "400 orders a minute per Kite user" in refused.json()["detail"]
    assert "a second" not in refused.json()["detail"]
    assert refused["Retry-After"] in ("60", "61") and sandbox_calls(sandbox, PLACE) == 0
    time_passes(60)

    placed = place(alice_client, account=live.pk, key="minute-1", order_type="LIMIT", price="1400.00")
    assert placed.status_code == 201, placed.json()
    assert sandbox_calls(sandbox, PLACE) == 1


def test_an_order_call_is_counted_from_kites_answer_not_from_its_sending(sandbox, live, settings):
    # The first of ten takes half a second to reach Kite (as a first call opening its connection may); the other
    # nine are quick. Counted from its sending, the eleventh would go a second after it and reach Kite half a
    # second into Kite's window, the eleventh of that second: Kite's 429.
    settings.THOR_KITE_RATE_WAIT = 2
    kite = adapter(live.connection, live.connection.app_id)
    sandbox_fault(sandbox, kind="latency", path="/orders/regular", ms=500, count=1)

    for _ in range(11):
        kite.place(resting_limit())

    assert sandbox_calls(sandbox, PLACE) == 11
    assert sandbox.state.stats.snapshot()["by_status"].get("429", 0) == 0


def test_at_full_speed_from_two_apps_kite_never_answers_429(sandbox, live, settings):
    # The sandbox counts the user's order calls on its own clock, as Kite does, and refuses the eleventh of any
    # second: Thor's windows (a tenth of a second longer) must keep every call under it.
    settings.THOR_KITE_RATE_WAIT = 1.5
    connection = live.connection
    apps = [adapter(connection, connection.app_id), adapter(connection, connection.app_id + 1000)]

    for n in range(25):
        apps[n % 2].place(resting_limit())

    assert sandbox_calls(sandbox, PLACE) == 25
    assert sandbox.state.stats.snapshot()["by_status"].get("429", 0) == 0


def test_a_read_is_counted_from_kites_answer_too(sandbox, live, time_passes):
    # A positions read that takes 0.6 s to come back: counted from its sending it would leave the app's window a
    # second after it was sent, 0.4 s after Kite saw it, and an eleventh read could fall inside Kite's second.
    kite = adapter(live.connection, live.connection.app_id)
    reads = kite_limits.app_budget(live.connection.app_id, "other")

    def slow_positions():
        time_passes(0.6)
        return {"net": [], "day": []}

    kite._call("other", slow_positions)
    time_passes(0.6)  # 1.2 s after it was sent, 0.6 s after Kite answered

    assert ratelimit.tokens_left([reads]) == [9]
    time_passes(0.5)
    assert ratelimit.tokens_left([reads]) == [10]
