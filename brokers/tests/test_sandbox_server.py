"""The sandbox server (brokers.sandbox.server) driven through its Kite API: injected faults, call stats,
reset, the control API, and hostile input that must never break it."""

import socket
import struct
import time
from urllib.parse import urlsplit

import pytest
import requests
from kiteconnect import exceptions as kite_exceptions

from brokers.tests import kite_sandbox_calls
from brokers.tests.kite_sandbox_calls import add_fault, kite_session, net_quantity, pin, place

pytestmark = pytest.mark.e2e

# The sandbox's fixtures, by the names pytest finds them under.
postback_receiver = kite_sandbox_calls.postback_receiver
latency_waits = kite_sandbox_calls.latency_waits
sandbox = kite_sandbox_calls.sandbox
fresh_sandbox = kite_sandbox_calls.fresh_sandbox

# --- faults -----------------------------------------------------------------------------------


def test_429_fault_raises_network_exception(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="429", path="/portfolio", count=1)
    with pytest.raises(kite_exceptions.NetworkException) as raised:
        kite.positions()
    assert raised.value.code == 429
    kite.positions()


def test_5xx_faults(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="5xx", count=1)
    with pytest.raises(kite_exceptions.GeneralException) as raised:
        kite.holdings()
    assert raised.value.code == 500

    add_fault(sandbox, kind="5xx", status=503, count=1)
    with pytest.raises(kite_exceptions.NetworkException) as unavailable:
        kite.holdings()
    assert unavailable.value.code == 503


def test_latency_fault_delays_only_matching_paths(sandbox, latency_waits):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="latency", ms=300, path="/user/margins", count=1)

    kite.profile()
    assert latency_waits == []
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json()[0]["count"] == 1

    kite.margins()
    assert latency_waits == [0.3]
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json() == []


def test_token_expired_fault(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="token_expired", path="/orders", count=1)
    with pytest.raises(kite_exceptions.TokenException):
        kite.orders()
    kite.orders()


def test_drop_fault_closes_the_connection(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="drop", count=1)
    with pytest.raises(requests.ConnectionError):
        kite.profile()
    assert kite.profile()["user_id"] == "AB1234"


def test_fault_count_applies_to_that_many_calls_and_faults_can_be_cleared(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, kind="429", count=2)
    for _ in range(2):
        with pytest.raises(kite_exceptions.NetworkException):
            kite.profile()
    kite.profile()

    add_fault(sandbox, kind="429")
    for _ in range(3):
        with pytest.raises(kite_exceptions.NetworkException):
            kite.profile()
    assert requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).status_code == 200
    kite.profile()


def test_schwab_faults_do_not_touch_kite(sandbox):
    kite = kite_session(sandbox)
    add_fault(sandbox, broker="schwab", kind="5xx")
    kite.profile()


def test_invalid_faults_are_refused(sandbox):
    for fault in ({"broker": "kite", "kind": "flood"}, {"broker": "ib", "kind": "429"}, {"broker": "kite"}, []):
        response = requests.post(f"{sandbox.url}/_sandbox/faults", json=fault, timeout=5)
        assert response.status_code == 400, fault
    response = requests.post(f"{sandbox.url}/_sandbox/faults", data="{not json", timeout=5)
    assert response.status_code == 400


# --- stats and reset --------------------------------------------------------------------------


def test_stats_count_calls_but_not_control_calls(sandbox):
    kite = kite_session(sandbox)
    assert requests.delete(f"{sandbox.url}/_sandbox/stats", timeout=5).status_code == 200
    kite.positions()
    kite.positions()
    add_fault(sandbox, kind="429", count=1)
    with pytest.raises(kite_exceptions.NetworkException):
        kite.holdings()

    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()
    assert stats["total"] == 3
    assert stats["by_path"] == {"GET /portfolio/positions": 2, "GET /portfolio/holdings": 1}
    assert stats["by_status"] == {"200": 2, "429": 1}
    assert set(stats["postbacks"]) == {"sent", "failed"}


def test_reset_forgets_what_tests_did_but_keeps_the_apps_it_started_with(sandbox):
    kite = kite_session(sandbox)
    quantity_before = net_quantity(kite, "INFY")
    pin(sandbox, {"NSE:INFY": 1.5})
    place(kite, quantity=1)
    assert net_quantity(kite, "INFY") == quantity_before + 1
    add_fault(sandbox, kind="429", path="/quote")
    late_app = {"api_key": "late_key", "api_secret": "late_secret", "redirect_url": "http://127.0.0.1:9/cb"}
    requests.post(f"{sandbox.url}/_sandbox/apps", json=late_app, timeout=5).raise_for_status()

    sandbox.reset()

    with pytest.raises(kite_exceptions.TokenException):
        kite.orders()
    fresh = kite_session(sandbox)
    assert fresh.orders() == [] and fresh.trades() == []
    assert fresh.ltp("NSE:INFY")["NSE:INFY"]["last_price"] != 1.5
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json() == []
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["by_path"].keys() == {
        "POST /connect/login",
        "POST /session/token",
        "GET /orders",
        "GET /trades",
        "GET /quote/ltp",
    }
    late_login = requests.get(f"{sandbox.url}/connect/login", params={"v": "3", "api_key": "late_key"}, timeout=5)
    assert late_login.status_code == 400
    assert net_quantity(fresh, "INFY") == quantity_before


# --- control API and hostile input ------------------------------------------------------------


def test_register_app_over_http(sandbox):
    app = {"api_key": "late_key", "api_secret": "late_secret", "redirect_url": "http://127.0.0.1:9/cb"}
    assert requests.post(f"{sandbox.url}/_sandbox/apps", json=app, timeout=5).status_code == 201
    form = requests.get(f"{sandbox.url}/connect/login", params={"v": "3", "api_key": "late_key"}, timeout=5)
    assert form.status_code == 200
    missing = requests.post(f"{sandbox.url}/_sandbox/apps", json={"api_key": "x"}, timeout=5)
    assert missing.status_code == 400
    assert "api_secret" in missing.json()["error"]


@pytest.mark.parametrize("whitelist", ["127.0.0.2", ["not-an-ip"], [1], {"ip": "127.0.0.2"}])
def test_an_ip_whitelist_must_be_a_list_of_addresses(sandbox, whitelist):
    app = {"api_key": "k", "api_secret": "s", "redirect_url": "http://127.0.0.1:9/cb", "ip_whitelist": whitelist}

    refused = requests.post(f"{sandbox.url}/_sandbox/apps", json=app, timeout=5)

    assert refused.status_code == 400 and "ip_whitelist" in refused.json()["error"]


def test_hostile_requests_get_clean_errors(sandbox):
    unknown = requests.get(f"{sandbox.url}/no/such/path", timeout=5)
    assert unknown.status_code == 404
    assert unknown.json()["error_type"] == "GeneralException"

    wrong_method = requests.patch(f"{sandbox.url}/user/profile", timeout=5)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["status"] == "error"

    huge = requests.post(f"{sandbox.url}/session/token", data=b"a" * (1024 * 1024 + 1), timeout=5)
    assert huge.status_code == 413
    assert huge.json()["error_type"] == "InputException"

    garbage = requests.post(
        f"{sandbox.url}/session/token",
        data=b"\xff\xfe=%%%&&==api_key",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert garbage.status_code == 400
    assert garbage.json()["error_type"] == "InputException"

    no_auth = requests.get(f"{sandbox.url}/portfolio/holdings", headers={"Authorization": "token :"}, timeout=5)
    assert no_auth.status_code == 403
    assert no_auth.json() == {
        "status": "error",
        "message": "Incorrect `api_key` or `access_token`.",
        "error_type": "TokenException",
        "data": None,
    }
    assert "Traceback" not in unknown.text + wrong_method.text + huge.text + garbage.text


def test_malformed_http_never_breaks_the_server(sandbox):
    host, port = urlsplit(sandbox.url).hostname, urlsplit(sandbox.url).port
    for raw in (b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", b"POST /orders/regular HTTP/1.1\r\nContent-Length: nope\r\n\r\n"):
        with socket.create_connection((host, port), timeout=5) as connection:
            connection.sendall(raw)
            reply = connection.recv(65536)
            assert reply.startswith(b"HTTP/1.")
            assert b"Traceback" not in reply
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).status_code == 200


# --- clients that go away ------------------------------------------------------------------------------


def _reset_connection(sandbox, request: bytes) -> None:
    """Send `request` and close with a reset (SO_LINGER 0) before anything is read: the sandbox's next read
    or write of that connection fails as a real client's hang-up makes it fail."""
    host, port = urlsplit(sandbox.url).hostname, urlsplit(sandbox.url).port
    client = socket.create_connection((host, port), timeout=5)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sendall(request)
    client.close()


def test_a_client_that_hangs_up_mid_request_costs_no_traceback(sandbox, capfd):
    kite = kite_session(sandbox)
    # Half a request: the sandbox is reading the headers when the reset comes.
    _reset_connection(sandbox, b"GET /user/profile HTTP/1.1\r\nHost: sandbox\r\n")
    # The next calls are answered as ever, and by then the reset connection's thread has run into the reset.
    for _ in range(3):
        assert kite.profile()["user_id"] == "AB1234"
    time.sleep(0.2)
    assert "Traceback" not in capfd.readouterr().err


def test_an_error_of_the_sandboxs_own_still_prints_its_traceback(sandbox, capfd):
    http_server = sandbox.server._httpd
    try:
        raise ValueError("a bug in the sandbox")
    except ValueError:
        http_server.handle_error(None, ("127.0.0.1", 1))
    assert "ValueError: a bug in the sandbox" in capfd.readouterr().err
