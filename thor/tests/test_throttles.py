"""Throttles: one atomic count in Redis however many requests arrive at once, the admin's login form per client IP
like the API login, and every throttle while Redis is down."""

import logging
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import redis
from django.core.cache import cache
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from identity.tests.factories import PASSWORD, UserFactory
from thor import coordination, throttles
from thor.throttles import AdminLoginRateThrottle, LoginRateThrottle, OAuthStartRateThrottle, OrderRateThrottle

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user(tenant):
    return UserFactory(email="root@acme.test", tenant=tenant, is_staff=True, is_superuser=True)


@pytest.fixture
def three_a_minute(settings):
    settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, "admin_login": "3/min"}


def admin_login(client, password, address="198.51.100.7"):
    # The test client skips CSRF checks, so each POST reaches the login view as a real guess would.
    return client.post(
        "/admin/login/?next=/admin/", {"username": "root@acme.test", "password": password}, REMOTE_ADDR=address
    )


class TestAdminLogin:
    def test_wrong_passwords_are_cut_off_after_the_limit(self, client, admin_user, three_a_minute):
        answers = [admin_login(client, f"guess-{n}").status_code for n in range(3)]

        response = admin_login(client, PASSWORD)

        assert answers == [200, 200, 200]
        assert response.status_code == 429
        assert response.json()["code"] == "throttled" and response.json()["status_code"] == 429
        assert int(response["Retry-After"]) > 0
        assert "sessionid" not in response.cookies

    def test_the_right_password_works_within_the_limit(self, client, admin_user, three_a_minute):
        admin_login(client, "guess")

        response = admin_login(client, PASSWORD)

        assert response.status_code == 302 and response["Location"] == "/admin/"

    def test_showing_the_form_costs_nothing(self, client, admin_user, three_a_minute):
        for _ in range(5):
            assert client.get("/admin/login/", REMOTE_ADDR="198.51.100.7").status_code == 200

        assert admin_login(client, PASSWORD).status_code == 302

    def test_each_client_address_has_its_own_bucket(self, client, admin_user, three_a_minute):
        for n in range(4):
            admin_login(client, f"guess-{n}", address="198.51.100.7")

        assert admin_login(client, PASSWORD, address="198.51.100.8").status_code == 302

    def test_a_forwarded_header_does_not_buy_a_fresh_bucket(self, client, admin_user, three_a_minute):
        for n in range(4):
            admin_login(client, f"guess-{n}")

        response = client.post(
            "/admin/login/",
            {"username": "root@acme.test", "password": PASSWORD},
            REMOTE_ADDR="198.51.100.7",
            HTTP_X_FORWARDED_FOR="203.0.113.99",
        )

        assert response.status_code == 429

    def test_the_rate_is_the_login_rate(self, settings):
        assert settings.THOR_THROTTLE_RATES["admin_login"] == settings.THOR_THROTTLE_RATES["login"]


def log_in(client, password):
    return client.post(
        "/api/auth/token/", {"email": "alice@acme.test", "password": password}, REMOTE_ADDR="198.51.100.7"
    )


class TestWithRedisDown:
    """Issue 23, finding 9: the throttles failed open, and every request logged a traceback."""

    def test_forty_wrong_passwords_are_cut_off_after_the_limit(self, anon_client, alice, redis_down, settings):
        assert settings.THOR_THROTTLE_RATES["login"] == "20/min"

        answers = [log_in(anon_client, f"guess-{n}").status_code for n in range(40)]

        assert answers == [401] * 20 + [429] * 20
        assert log_in(anon_client, PASSWORD).status_code == 429

    def test_the_outage_is_one_log_line_not_a_traceback_per_request(self, anon_client, alice, redis_down, caplog):
        for n in range(40):
            log_in(anon_client, f"guess-{n}")

        lines = [record for record in caplog.records if record.levelno >= logging.WARNING]
        assert [(record.name, record.getMessage()) for record in lines] == [
            (
                "thor.throttles",
                "Throttle login counts in this process only: the cache is unreachable (ConnectionError)",
            )
        ]
        assert not [record for record in caplog.records if record.exc_info]

    @pytest.mark.parametrize("throttle_class", [LoginRateThrottle, OAuthStartRateThrottle, AdminLoginRateThrottle])
    def test_each_per_ip_throttle_keeps_limiting_and_says_so_once(self, throttle_class, redis_down, settings, caplog):
        settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, throttle_class.scope: "3/min"}
        request = Request(APIRequestFactory().post("/", REMOTE_ADDR="198.51.100.7"))

        allowed = [throttle_class().allow_request(request, None) for _ in range(5)]

        assert allowed == [True, True, True, False, False]
        assert caplog.text.count(f"Throttle {throttle_class.scope} counts in this process only") <= 1

    def test_a_successful_login_logs_no_traceback(self, anon_client, alice, redis_down, caplog):
        assert log_in(anon_client, PASSWORD).status_code == 200

        assert not [record for record in caplog.records if record.exc_info]


def redis_goes_down(settings):
    """From now on the cache is one on a Redis that is not there (as the redis_down fixture, mid-test)."""
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }


@pytest.fixture
def on_redis():
    if not coordination.uses_redis():
        pytest.skip("counts in Redis: set REDIS_URL")
    throttles.outage_forget()
    yield coordination.redis_client()
    throttles.outage_forget()


@pytest.fixture
def login_rate(settings):
    def set_rate(rate):
        settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, "login": rate}

    return set_rate


def post_from(address):
    return Request(APIRequestFactory().post("/", REMOTE_ADDR=address))


class TestRequestsArrivingTogether:
    """Issue 19: DRF's throttle read the history and wrote it back, so requests sent together all passed."""

    def test_twenty_logins_at_once_with_five_slots_left_admit_exactly_five(self, on_redis, login_rate):
        login_rate("8/min")
        assert [log_in(APIClient(), f"guess-{n}").status_code for n in range(3)] == [401] * 3
        together = threading.Barrier(20)

        def guess(n):
            client = APIClient()  # each its own client, as twenty connections of a password guesser
            together.wait()
            try:
                return log_in(client, f"parallel-{n}")
            finally:
                connection.close()  # this thread's database connection

        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(guess, range(20)))

        assert Counter(response.status_code for response in responses) == {401: 5, 429: 15}
        for response in (response for response in responses if response.status_code == 429):
            assert response.json()["code"] == "throttled" and response.json()["status_code"] == 429
            assert 1 <= int(response["Retry-After"]) <= 60

    def test_a_request_costs_one_redis_round_trip(self, on_redis, login_rate, monkeypatch):
        login_rate("2/min")
        LoginRateThrottle().allow_request(post_from("198.51.100.7"), None)  # the script is loaded once
        sent = []
        send = redis.Redis.execute_command
        monkeypatch.setattr(
            redis.Redis, "execute_command", lambda client, *a, **k: sent.append(a[0]) or send(client, *a, **k)
        )

        answers = [LoginRateThrottle().allow_request(post_from("198.51.100.7"), None) for _ in range(3)]

        assert answers == [True, False, False]
        assert sent == ["EVALSHA"] * 3

    def test_two_requests_in_the_same_microsecond_both_count(self, on_redis, login_rate):
        login_rate("3/min")

        def at_one_instant():
            throttle = LoginRateThrottle()
            throttle.timer = lambda: 1_800_000_000.123456
            return throttle.allow_request(post_from("198.51.100.7"), None)

        assert [at_one_instant() for _ in range(5)] == [True, True, True, False, False]

    def test_the_window_expires_with_its_duration(self, on_redis, login_rate):
        login_rate("3/min")
        LoginRateThrottle().allow_request(post_from("198.51.100.7"), None)

        [key] = on_redis.keys("thor:throttle:login:*")

        assert 59_000 < on_redis.pttl(key) <= 60_000


class TestTheWindow:
    """The count as DRF's history defines it, on the throttle's clock (DRF's `timer`), through Redis outages."""

    @hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        rate=st.integers(min_value=1, max_value=5),
        duration=st.sampled_from([("min", 60), ("hour", 3600)]),
        steps=st.lists(
            st.tuples(st.sampled_from([0, 1, 10**6, 10**7, 3 * 10**7, 6 * 10**7, 10**9]), st.booleans()),
            max_size=30,
        ),
    )
    def test_never_more_than_the_rate_in_any_window_and_refused_only_when_it_is_full(
        self, on_redis, settings, rate, duration, steps
    ):
        # Each step: how many microseconds (scaled to the duration) after the last request, and whether Redis
        # answers it. Unanswered requests count in this process, a window of their own (the module's outage).
        unit, seconds = duration
        settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, "orders": f"{rate}/{unit}"}
        cache.clear()
        throttles.outage_forget()
        down = redis.Redis(
            port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )  # as django-redis's: no retries
        user = SimpleNamespace(pk=uuid.uuid4().hex)
        admitted: dict[bool, list[float]] = {True: [], False: []}
        micros = 0
        for gap, redis_answers in steps:
            micros += gap * seconds // 60
            now = 1_800_000_000 + micros / 10**6
            request = post_from("198.51.100.7")
            request.user = user
            throttle = OrderRateThrottle()
            throttle.timer = lambda now=now: now
            with pytest.MonkeyPatch.context() as patch:
                if not redis_answers:
                    patch.setattr(throttles, "redis_client", lambda: down)
                allowed = throttle.allow_request(request, None)
            window = [then for then in admitted[redis_answers] if then > now - seconds]

            assert allowed == (len(window) < rate)
            if allowed:
                admitted[redis_answers].append(now)
            else:
                assert throttle.wait() == pytest.approx(min(window) + seconds - now, abs=1e-6)
        for times in admitted.values():
            assert all(len([t for t in times if end - seconds < t <= end]) <= rate for end in times)

    def test_a_rate_lowered_meanwhile_is_waited_out_until_the_window_is_under_it(self, on_redis, login_rate):
        def at(seconds):
            throttle = LoginRateThrottle()
            throttle.timer = lambda: 1_800_000_000 + seconds
            return throttle.allow_request(post_from("198.51.100.7"), None), throttle

        login_rate("5/min")
        assert [at(n)[0] for n in range(5)] == [True] * 5
        login_rate("2/min")

        allowed, throttle = at(10)

        # Five in the window, two allowed: the fourth oldest (at 3 s) must leave, at 63 s.
        assert not allowed and throttle.wait() == pytest.approx(53)
        assert [at(62.5)[0], at(63)[0], at(64)[0], at(65)[0]] == [False, True, True, False]


class TestRedisGoingAway:
    def test_redis_going_down_mid_way_still_limits_and_its_count_is_there_when_it_is_back(
        self, on_redis, anon_client, login_rate, settings
    ):
        login_rate("5/min")
        reachable = settings.CACHES
        before = [log_in(anon_client, f"guess-{n}").status_code for n in range(3)]

        redis_goes_down(settings)
        during = [log_in(anon_client, f"guess-{n}").status_code for n in range(7)]
        settings.CACHES = reachable
        after = [log_in(anon_client, f"guess-{n}").status_code for n in range(3)]

        assert before == [401] * 3
        assert during == [401] * 5 + [429] * 2  # this process's own count, the looser limit
        assert after == [401] * 2 + [429]  # the shared count kept the three before the outage


HOSTILE_ADDRESSES = ["198.51.100.7" * 10_000, "\U0001d54f" * 5_000 + "\u202e\x00", "\ud800 ", "", "thor:throttle:*"]


class TestHostileIdents:
    @pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
    def test_any_ident_is_limited_at_the_rate_under_a_short_key(self, on_redis, login_rate, address):
        login_rate("2/min")

        answers = [LoginRateThrottle().allow_request(post_from(address), None) for _ in range(3)]

        assert answers == [True, True, False]
        assert all(len(key) < 80 for key in on_redis.keys("*"))

    def test_idents_differing_in_their_last_character_have_their_own_windows(self, on_redis, login_rate):
        login_rate("1/min")
        first, second = "\U0001d54f" * 5_000 + "a", "\U0001d54f" * 5_000 + "b"

        answers = [LoginRateThrottle().allow_request(post_from(address), None) for address in (first, first, second)]

        assert answers == [True, False, True]

    @pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
    def test_any_ident_is_limited_while_redis_is_down(self, redis_down, login_rate, address):
        login_rate("2/min")

        answers = [LoginRateThrottle().allow_request(post_from(address), None) for _ in range(3)]

        assert answers == [True, True, False]


class TestEmbeddedMode:
    """The local-memory cache (`make run`): DRF's own counting, one thread at a time."""

    @pytest.fixture
    def local_memory(self, settings):
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": "thor"}
        }

    def test_twenty_at_once_with_five_slots_left_admit_exactly_five(self, local_memory, login_rate):
        login_rate("8/min")
        for _ in range(3):
            assert LoginRateThrottle().allow_request(post_from("198.51.100.7"), None)
        together = threading.Barrier(20)

        def attempt(_):
            together.wait()
            return LoginRateThrottle().allow_request(post_from("198.51.100.7"), None)

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(attempt, range(20)))

        assert answers.count(True) == 5
