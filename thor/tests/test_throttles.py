"""Throttles: the admin's login form per client IP like the API login, and every throttle while Redis is down."""

import logging

import pytest
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from identity.tests.factories import PASSWORD, UserFactory
from thor.throttles import AdminLoginRateThrottle, LoginRateThrottle, OAuthStartRateThrottle

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
                "Throttle login counts in this process only: the cache is unreachable (ConnectionInterrupted)",
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
