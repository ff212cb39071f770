"""brokers.adapters.sessions: the broker calls' session keeps no cookies and reads the environment once per origin,
with what it reads merged as `requests` merges it. Over real HTTP: a local server stands for the broker, another
for a proxy (a proxy is asked for the absolute URL)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from brokers.adapters import sessions
from brokers.adapters.sessions import MAX_ORIGINS, BrokerSession


class Recorder(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("Cookie")))
        body = b"{}"
        self.send_response(200)
        self.send_header("Set-Cookie", "affinity=customer-a; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server that records each request's target and Cookie header, and sets a cookie."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def address(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_a_cookie_one_answer_sets_rides_on_no_later_call(server, clean_environment):
    session = BrokerSession()

    session.get(f"{address(server)}/first", timeout=5)
    session.get(f"{address(server)}/second", timeout=5)

    assert server.seen == [("/first", None), ("/second", None)]


def test_the_environments_proxy_carries_the_call(server, clean_environment):
    clean_environment.setenv("HTTP_PROXY", address(server))

    response = BrokerSession().get("http://broker.invalid/orders", timeout=5)

    assert response.status_code == 200
    assert server.seen == [("http://broker.invalid/orders", None)]  # the proxy was asked for the whole URL


def test_no_proxy_sends_its_hosts_direct(server, clean_environment):
    clean_environment.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: a call through it would fail
    clean_environment.setenv("NO_PROXY", "127.0.0.1")

    response = BrokerSession().get(f"{address(server)}/direct", timeout=5)

    assert response.status_code == 200 and server.seen == [("/direct", None)]


def test_a_proxy_the_call_names_wins_over_the_environments_and_the_callers_dict_is_left_as_it_was(
    server, clean_environment
):
    clean_environment.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    egress = {"http": address(server)}

    BrokerSession().get("http://broker.invalid/orders", proxies=egress, timeout=5)

    assert server.seen == [("http://broker.invalid/orders", None)]
    assert egress == {"http": address(server)}  # requests' own merge adds the environment's entries to it


def test_the_environment_is_read_once_per_origin(server, clean_environment, monkeypatch):
    reads = []
    real = sessions.get_environ_proxies

    def counted(url, no_proxy=None):
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(sessions, "get_environ_proxies", counted)
    session = BrokerSession()

    for path in ("/a", "/b", "/c"):
        session.get(f"{address(server)}{path}", timeout=5)
    session.get(f"http://localhost:{server.server_address[1]}/d", timeout=5)

    assert len(server.seen) == 4
    assert reads == [f"{address(server)}/a", f"http://localhost:{server.server_address[1]}/d"]


def test_the_origins_remembered_are_bounded(clean_environment):
    session = BrokerSession()

    for number in range(MAX_ORIGINS + 5):
        session.merge_environment_settings(f"https://host{number}.invalid/", {}, None, None, None)

    assert len(session._environment) <= MAX_ORIGINS


class TestTheCABundle:
    def test_the_environments_bundle_is_what_a_call_verifies_with(self, clean_environment):
        clean_environment.setenv("REQUESTS_CA_BUNDLE", "/etc/thor/broker-ca.pem")

        merged = BrokerSession().merge_environment_settings("https://api.kite.trade/orders", {}, None, True, None)

        assert merged["verify"] == "/etc/thor/broker-ca.pem"

    def test_curls_name_for_it_too(self, clean_environment):
        clean_environment.setenv("CURL_CA_BUNDLE", "/etc/thor/curl-ca.pem")

        merged = BrokerSession().merge_environment_settings("https://api.kite.trade/orders", {}, None, None, None)

        assert merged["verify"] == "/etc/thor/curl-ca.pem"

    def test_a_call_that_names_its_own_verification_keeps_it(self, clean_environment):
        clean_environment.setenv("REQUESTS_CA_BUNDLE", "/etc/thor/broker-ca.pem")

        merged = BrokerSession().merge_environment_settings("https://api.kite.trade/orders", {}, None, "/own.pem", None)

        assert merged["verify"] == "/own.pem"

    def test_without_one_the_default_store_verifies(self, clean_environment):
        merged = BrokerSession().merge_environment_settings("https://api.kite.trade/orders", {}, None, None, None)

        assert merged["verify"] is True


def test_the_same_answer_as_requests_for_any_environment(clean_environment):
    """Against requests' own merge, for the environments an operator sets."""
    import requests

    cases = [
        {},
        {"HTTPS_PROXY": "http://proxy.internal:3128"},
        {"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "api.kite.trade"},
        {"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": ".kite.trade,localhost"},
        {"ALL_PROXY": "socks5://proxy.internal:1080", "REQUESTS_CA_BUNDLE": "/ca.pem"},
        {"https_proxy": "http://lower.internal:3128", "no_proxy": "*"},
    ]
    for environment in cases:
        for name, value in environment.items():
            clean_environment.setenv(name, value)
        for url in ("https://api.kite.trade/orders/regular", "https://api.schwabapi.com/trader/v1/accounts"):
            for proxies in ({}, {"https": "http://egress.internal:8888"}):
                ours = BrokerSession().merge_environment_settings(url, dict(proxies), None, None, None)
                theirs = requests.Session().merge_environment_settings(url, dict(proxies), None, None, None)
                assert ours == theirs, (environment, url, proxies)
        for name in environment:
            clean_environment.delenv(name)
