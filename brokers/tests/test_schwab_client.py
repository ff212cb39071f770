"""The Schwab client (brokers.adapters.schwab.client) through the adapter, with `responses` at the HTTP
boundary: every error shape read into one BrokerError, which calls are retried, and the rate budgets."""

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.tests import schwab_wire
from brokers.tests.schwab_wire import (
    API,
    HASH,
    MARGIN_ACCOUNT,
    ORDERS,
    TOKEN,
    app_ids,
    current_tokens,
    limit_buy,
    make_adapter,
)
from thor import ratelimit

# The fake Schwab's fixtures, by the names pytest finds them under.
schwab_settings = schwab_wire.schwab_settings
mocked = schwab_wire.mocked
schwab = schwab_wire.schwab


# --- error shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kwargs", "code", "words"),
    [
        (
            400,
            {"json": {"errors": [{"id": "e1", "status": "400", "title": "Bad Request", "detail": "Bad symbol"}]}},
            BrokerErrorCode.INVALID_INPUT,
            "Bad Request Bad symbol",
        ),
        (
            401,
            {"json": {"error": "invalid_client", "error_description": "Unauthorized"}},
            BrokerErrorCode.TOKEN_EXPIRED,
            "Unauthorized",
        ),
        (
            401,
            {
                "json": {
                    "fault": {
                        "faultstring": "Invalid access token",
                        "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
                    }
                }
            },
            BrokerErrorCode.TOKEN_EXPIRED,
            "Invalid access token",
        ),
        (
            500,
            {
                "json": {
                    "fault": {
                        "faultstring": "Rate limit quota violation",
                        "detail": {"errorcode": "policies.ratelimit.QuotaViolation"},
                    }
                }
            },
            BrokerErrorCode.RATE_LIMITED,
            "Rate limit quota violation",
        ),
        (
            502,
            {"body": "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"},
            BrokerErrorCode.UNAVAILABLE,
            "502 Bad Gateway",
        ),
        (
            403,
            {"json": {"message": "Forbidden", "errors": ["No trading"]}},
            BrokerErrorCode.PERMISSION_DENIED,
            "Forbidden",
        ),
        (404, {"json": {"message": "Not found", "errors": []}}, BrokerErrorCode.NOT_FOUND, "Not found"),
    ],
)
def test_every_error_shape_becomes_one_broker_error(mocked, settings, schwab, status, kwargs, code, words):
    settings.THOR_SCHWAB_READ_RETRIES = 0
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=status, **kwargs)

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    assert error.value.code == code
    assert error.value.broker_message == words


def test_an_access_token_refusal_is_worth_a_refresh(mocked, schwab):
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=401, json={"message": "expired", "errors": ["expired"]})

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    # Not permanent: only the token endpoint can say a refresh will not help.
    assert error.value.code == BrokerErrorCode.TOKEN_EXPIRED and not error.value.permanent


def test_a_rejected_order_says_why(mocked, schwab):
    mocked.post(
        ORDERS,
        status=400,
        json={"message": "The order exceeds buying power", "errors": ["The order exceeds buying power"]},
    )

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    assert error.value.code == BrokerErrorCode.REJECTED and error.value.permanent
    assert "buying power" in error.value.broker_message


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("", 1.0), ("soon", 1.0)])
def test_429_says_when_to_come_back_and_is_not_retried(mocked, schwab, header, expected):
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=429, headers={"Retry-After": header}, json={})

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    assert error.value.code == BrokerErrorCode.RATE_LIMITED and error.value.retry_after == expected
    assert len(mocked.calls) == 1


def test_429_with_an_http_date(mocked, schwab):
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=429, headers={"Retry-After": later}, json={})

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    assert 25 <= error.value.retry_after <= 31


# --- retries: reads only ----------------------------------------------------------------------


def test_reads_are_retried_on_server_and_network_errors(mocked, schwab):
    url = f"{API}/trader/v1/accounts/{HASH}"
    mocked.get(url, status=503, body="<html><title>down</title></html>")
    mocked.get(url, body=requests.ConnectionError("reset"))
    mocked.get(url, json=MARGIN_ACCOUNT)

    assert schwab.funds().buying_power == Decimal("40001.00")
    assert len(mocked.calls) == 3


def test_reads_give_up_after_the_retries(mocked, settings, schwab):
    settings.THOR_SCHWAB_READ_RETRIES = 2
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", status=500, json={"message": "boom", "errors": ["boom"]})

    with pytest.raises(BrokerError) as error:
        schwab.funds()

    assert error.value.code == BrokerErrorCode.UNAVAILABLE and error.value.broker_message == "boom"
    assert len(mocked.calls) == 3


def test_a_server_error_on_place_is_never_retried(mocked, schwab):
    mocked.post(ORDERS, status=500, json={"message": "Internal error", "errors": ["Internal error"]})

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    assert error.value.code == BrokerErrorCode.UNAVAILABLE
    assert len(mocked.calls) == 1


def test_a_timeout_on_place_is_never_retried(mocked, schwab):
    mocked.post(ORDERS, body=requests.Timeout("slow"))

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    assert error.value.code == BrokerErrorCode.TIMEOUT
    assert len(mocked.calls) == 1


def test_cancel_is_never_retried(mocked, schwab):
    mocked.delete(f"{ORDERS}/500", status=503, json={"message": "down", "errors": ["down"]})

    with pytest.raises(BrokerError):
        schwab.cancel("500")

    assert len(mocked.calls) == 1


def test_a_failing_token_service_is_transient_and_never_retried(mocked, schwab):
    # A refresh that reached Schwab has rotated the token it spent: sending it again would fail.
    mocked.post(TOKEN, status=503, body="<html><title>Service Unavailable</title></html>")

    with pytest.raises(BrokerError) as error:
        schwab.refresh(current_tokens())

    assert error.value.code == BrokerErrorCode.UNAVAILABLE and not error.value.permanent
    assert len(mocked.calls) == 1


def test_no_session_means_no_call(mocked):
    with pytest.raises(BrokerError) as error:
        make_adapter(access_token="").funds()

    assert error.value.code == BrokerErrorCode.TOKEN_EXPIRED
    assert len(mocked.calls) == 0


# --- rate budgets -----------------------------------------------------------------------------


def test_the_request_budget_is_shared_by_every_adapter_of_the_app(mocked, settings):
    settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 2
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=MARGIN_ACCOUNT)
    app_id = next(app_ids)
    make_adapter(app_id=app_id).funds()
    make_adapter(app_id=app_id, access_token="another-user").funds()

    with pytest.raises(BrokerError) as error:
        make_adapter(app_id=app_id).funds()

    # Come back when the first of the two leaves the minute, not sooner.
    assert error.value.code == BrokerErrorCode.RATE_LIMITED and 55 < error.value.retry_after <= 60
    assert len(mocked.calls) == 2
    # Another app has a budget of its own.
    make_adapter().funds()


class RecordedWaits:
    """thor.ratelimit's `time`: each wait for a token is recorded and passes at once, for this clock and for the
    buckets in Redis (`time_passes`), so the bucket refills as it would have."""

    def __init__(self, time_passes):
        self.waits: list[float] = []
        self.passed = 0.0
        self.time_passes = time_passes

    def monotonic(self) -> float:
        return time.monotonic() + self.passed

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.passed += seconds
        self.time_passes(seconds)


def test_in_the_background_a_spent_budget_fails_at_once_where_a_user_call_waits(
    mocked, settings, monkeypatch, time_passes
):
    # Six a minute: spending them takes far less than a minute however slow the machine, so none leaves the
    # window in real time before the background call. The user's call may wait the minute out.
    settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 6
    settings.THOR_SCHWAB_RATE_WAIT = 65
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=MARGIN_ACCOUNT)
    app_id = next(app_ids)
    for _ in range(6):
        make_adapter(app_id=app_id).funds()
    recorded = RecordedWaits(time_passes)
    monkeypatch.setattr(ratelimit, "time", recorded)

    with pytest.raises(BrokerError) as error:
        make_adapter(app_id=app_id).in_background().funds()
    assert error.value.code == BrokerErrorCode.RATE_LIMITED and recorded.waits == []

    make_adapter(app_id=app_id).funds()  # waits for the first call to leave the window, as before

    assert recorded.waits and sum(recorded.waits) <= settings.THOR_SCHWAB_RATE_WAIT
    assert len(mocked.calls) == 7


def test_in_the_background_a_failed_read_is_not_retried(mocked, settings):
    settings.THOR_SCHWAB_READ_RETRIES = 2
    mocked.get(ORDERS, status=503, json={"message": "down", "errors": ["down"]})

    with pytest.raises(BrokerError) as error:
        make_adapter().in_background().orders()

    assert error.value.code == BrokerErrorCode.UNAVAILABLE
    assert len(mocked.calls) == 1


def test_the_daily_order_budget_stops_orders_but_not_reads(mocked, settings, schwab):
    settings.THOR_SCHWAB_ORDERS_PER_DAY = 1
    mocked.post(ORDERS, status=201, headers={"Location": f"{ORDERS}/1"})
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=MARGIN_ACCOUNT)
    schwab.place(limit_buy())

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    assert error.value.code == BrokerErrorCode.RATE_LIMITED
    assert sum(call.request.method == "POST" for call in mocked.calls) == 1
    schwab.funds()


def test_an_order_refused_for_its_order_budget_spends_no_request(mocked, settings, schwab):
    settings.THOR_SCHWAB_ORDERS_PER_MINUTE, settings.THOR_SCHWAB_REQUESTS_PER_MINUTE = 1, 10
    settings.THOR_SCHWAB_RATE_WAIT = 0
    mocked.post(ORDERS, status=201, headers={"Location": f"{ORDERS}/1"})
    schwab.place(limit_buy())
    requests_budget = ratelimit.Budget(f"schwab:{schwab._client.app_id}:requests", 10, 60)

    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy())

    assert error.value.code == BrokerErrorCode.RATE_LIMITED and "orders budget" in str(error.value)
    assert ratelimit.tokens_left([requests_budget]) == [9]  # the first order's request only


def test_a_call_is_counted_from_schwabs_answer(mocked, schwab, time_passes):
    # A positions read Schwab takes 30 s to answer: counted from its sending it would leave the minute's window 30 s
    # before Schwab's own count of it does.
    def slow(request):
        time_passes(30)
        return 200, {}, '{"securitiesAccount": {"positions": []}}'

    mocked.add_callback("GET", f"{API}/trader/v1/accounts/{HASH}", callback=slow, content_type="application/json")
    requests_budget = ratelimit.Budget(f"schwab:{schwab._client.app_id}:requests", 120, 60)

    schwab.positions()
    time_passes(40)  # 70 s after it was sent, 40 s after Schwab answered

    assert ratelimit.tokens_left([requests_budget]) == [119]
    time_passes(21)
    assert ratelimit.tokens_left([requests_budget]) == [120]
