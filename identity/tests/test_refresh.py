"""Refresh that a real SPA survives (identity.refresh): rotation with a reuse grace window, reuse ending the whole
sign-in, throttles per token and per user, and no refresh token anywhere at rest.

The clock is frozen wherever the grace window decides the answer, and moved by hand across it.
"""

import importlib
import re
import threading
import time
from datetime import timedelta

import jwt
import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from identity.models import RefreshTokenRotation, User
from identity.refresh import token_digest
from identity.tasks import purge_refresh_rotations
from identity.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

REFRESH = "/api/auth/token/refresh/"
ME = "/api/auth/me/"
OFFICE = "198.51.100.7"


def log_in(user, address=OFFICE) -> dict:
    response = APIClient().post("/api/auth/token/", {"email": user.email, "password": PASSWORD}, REMOTE_ADDR=address)
    assert response.status_code == 200, response.json()
    return response.json()


def refresh(token, address=OFFICE):
    return APIClient().post(REFRESH, {"refresh": token}, format="json", REMOTE_ADDR=address)


def me(access):
    return APIClient().get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to(time.time(), tick=False)
    return time_machine


class TestTheGraceWindow:
    @pytest.mark.django_db(transaction=True)
    @pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="SQLite's in-memory test database locks whole tables across threads instead of waiting",
    )
    def test_three_parallel_refreshes_with_one_token_all_get_the_same_pair(self, alice, frozen):
        tokens = log_in(alice)
        start, answers = threading.Barrier(3), []

        def spa_request():
            start.wait()
            try:
                response = refresh(tokens["refresh"])
                answers.append((response.status_code, response.json()))
            finally:
                connection.close()

        threads = [threading.Thread(target=spa_request) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert [status for status, _ in answers] == [200, 200, 200], answers
        assert answers[0][1] == answers[1][1] == answers[2][1]
        assert answers[0][1]["refresh"] != tokens["refresh"]
        assert me(answers[0][1]["access"]).status_code == 200
        assert OutstandingToken.objects.filter(user=alice).count() == 2, "one login, one rotation"

    def test_a_repeat_at_the_end_of_the_window_gets_exactly_the_same_pair(self, alice, frozen, settings):
        assert settings.THOR_REFRESH_REUSE_GRACE_SECONDS == 30
        tokens = log_in(alice)
        first = refresh(tokens["refresh"]).json()

        frozen.shift(30)
        again = refresh(tokens["refresh"])

        assert again.status_code == 200
        assert again.json() == first

    def test_the_successor_rotates_in_its_turn(self, alice, frozen):
        first = refresh(log_in(alice)["refresh"]).json()

        second = refresh(first["refresh"])

        assert second.status_code == 200
        assert second.json()["refresh"] not in (first["refresh"], "")
        assert me(second.json()["access"]).status_code == 200

    def test_a_window_of_zero_is_strict_rotation(self, alice, frozen, settings):
        settings.THOR_REFRESH_REUSE_GRACE_SECONDS = 0
        tokens = log_in(alice)
        assert refresh(tokens["refresh"]).status_code == 200

        frozen.shift(1)

        assert refresh(tokens["refresh"]).status_code == 401


class TestReuseAfterTheWindow:
    def test_ends_the_whole_sign_in_the_successor_included(self, alice, frozen, caplog):
        tokens = log_in(alice)
        successor = refresh(tokens["refresh"]).json()
        grandchild = refresh(successor["refresh"]).json()

        frozen.shift(31)
        reused = refresh(tokens["refresh"])

        assert reused.status_code == 401
        assert reused.json() == {
            "detail": "This refresh token was already used: sign in again.",
            "status_code": 401,
            "code": "token_not_valid",
        }
        assert refresh(grandchild["refresh"]).status_code == 401
        for access in (tokens["access"], successor["access"], grandchild["access"]):
            assert me(access).status_code == 401
        assert "sign-in is ended" in caplog.text
        assert tokens["refresh"] not in caplog.text and successor["refresh"] not in caplog.text

    def test_the_users_other_sign_ins_go_on(self, alice, frozen):
        stolen, other = log_in(alice), log_in(alice)
        refresh(stolen["refresh"])

        frozen.shift(60)
        assert refresh(stolen["refresh"]).status_code == 401

        assert me(other["access"]).status_code == 200
        assert refresh(other["refresh"]).status_code == 200

    def test_still_ends_it_once_the_kept_pair_is_purged(self, alice, frozen):
        tokens = log_in(alice)
        successor = refresh(tokens["refresh"]).json()
        frozen.shift(31)

        assert purge_refresh_rotations.delay().get() == 1 and not RefreshTokenRotation.objects.exists()

        assert refresh(tokens["refresh"]).status_code == 401
        assert refresh(successor["refresh"]).status_code == 401

    def test_the_sign_in_stays_ended_as_long_as_its_refresh_tokens_live(self, alice, frozen):
        tokens = log_in(alice)
        successor = refresh(tokens["refresh"]).json()
        frozen.shift(31)
        refresh(tokens["refresh"])

        frozen.shift(timedelta(days=7) - timedelta(minutes=1))

        assert refresh(successor["refresh"]).status_code == 401

    def test_a_logged_out_sign_in_cannot_refresh_with_a_token_a_parallel_refresh_spent(self, alice, frozen):
        tokens = log_in(alice)
        successor = refresh(tokens["refresh"]).json()
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {successor['access']}")

        assert client.post("/api/auth/logout/", {"refresh": tokens["refresh"]}, format="json").status_code == 205

        assert refresh(successor["refresh"]).status_code == 401
        assert refresh(tokens["refresh"]).status_code == 401


def forged(alice) -> str:
    payload = dict(RefreshToken.for_user(alice).payload)
    return jwt.encode(payload, "not-thor-s-key" * 4, algorithm="HS256")


def unsigned(alice) -> str:
    payload = dict(RefreshToken.for_user(alice).payload)
    return jwt.encode(payload, "", algorithm="none")  # alg "none": no key (PyJWT takes "" as None)


def expired(alice) -> str:
    token = RefreshToken.for_user(alice)
    token.set_exp(lifetime=-timedelta(seconds=1))
    return str(token)


class TestRefusals:
    @pytest.mark.parametrize(
        "make",
        [
            lambda alice: "garbage",
            lambda alice: "a.b.c",
            lambda alice: "Bearer " + str(RefreshToken.for_user(alice)),
            forged,
            unsigned,
            expired,
            lambda alice: str(RefreshToken.for_user(alice).access_token),
            lambda alice: str(RefreshToken.for_user(alice))[:-2],
        ],
        ids=["garbage", "dots", "prefixed", "forged", "alg-none", "expired", "access-token", "truncated"],
    )
    def test_a_token_thor_did_not_sign_or_that_expired_is_401_json(self, alice, make):
        response = refresh(make(alice))

        assert response.status_code == 401
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "token_not_valid" and response.json()["status_code"] == 401

    @pytest.mark.parametrize(
        "body", [{}, {"refresh": ""}, {"refresh": None}, {"refresh": ["a"]}, {"refresh": "x" * 2001}]
    )
    def test_a_missing_or_malformed_field_is_a_400(self, anon_client, body):
        response = anon_client.post(REFRESH, body, format="json")

        assert response.status_code == 400
        assert "refresh" in response.json()["errors"]

    def test_a_disabled_user_cannot_refresh(self, alice):
        tokens = log_in(alice)
        User.objects.filter(pk=alice.pk).update(is_active=False)

        response = refresh(tokens["refresh"])

        assert response.status_code == 401 and response.json()["code"] == "token_not_valid"

    def test_a_deleted_user_cannot_refresh(self, alice):
        tokens = log_in(alice)
        alice.delete()

        assert refresh(tokens["refresh"]).status_code == 401


@pytest.fixture
def three_a_minute(settings):
    settings.THOR_THROTTLE_RATES = {
        **settings.THOR_THROTTLE_RATES,
        **{scope: "3/min" for scope in ("login", "refresh_token", "refresh_user")},
    }


class TestThrottles:
    def test_an_office_behind_one_address_refreshes_every_session(self, tenant, settings):
        colleagues = [UserFactory(tenant=tenant) for _ in range(6)]
        sessions = [log_in(user, address=f"203.0.113.{n}") for n, user in enumerate(colleagues)]
        settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, "login": "3/min"}

        answers = [refresh(tokens["refresh"], address=OFFICE).status_code for tokens in sessions]

        assert answers == [200] * 6

    def test_one_token_is_limited(self, alice, three_a_minute):
        tokens = log_in(alice)
        for _ in range(3):
            assert refresh(tokens["refresh"]).status_code == 200

        response = refresh(tokens["refresh"])

        assert response.status_code == 429 and response.json()["code"] == "throttled"
        assert int(response["Retry-After"]) > 0

    def test_one_user_is_limited_across_tokens(self, alice, settings):
        sessions = [log_in(alice) for _ in range(4)]
        settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, "refresh_user": "3/min"}

        answers = [refresh(tokens["refresh"]).status_code for tokens in sessions]

        assert answers == [200, 200, 200, 429]

    def test_tokens_that_do_not_verify_count_as_login_attempts_from_their_address(self, alice, three_a_minute):
        for _ in range(3):
            assert refresh("garbage").status_code == 401

        assert refresh("garbage").status_code == 429
        assert refresh("garbage", address="198.51.100.8").status_code == 401
        assert refresh(log_in(alice, address="198.51.100.9")["refresh"]).status_code == 200


def text_values(table: str) -> list[str]:
    """Every value of every text column of `table`, as the database holds it."""
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, table)
        columns = [
            column.name
            for column in description
            if connection.introspection.get_field_type(column.type_code, column) in ("CharField", "TextField")
        ]
        if not columns:
            return []
        names = ", ".join(connection.ops.quote_name(name) for name in columns)
        cursor.execute(f"SELECT {names} FROM {connection.ops.quote_name(table)}")
        return [value for row in cursor.fetchall() for value in row if value]


TOKEN_TABLES = [
    "token_blacklist_outstandingtoken",
    "token_blacklist_blacklistedtoken",
    RefreshTokenRotation._meta.db_table,
]


class TestNoRefreshTokenAtRest:
    def test_no_row_holds_a_refresh_tokens_text(self, alice):
        tokens = log_in(alice)
        successor = refresh(tokens["refresh"]).json()
        secrets = [tokens["refresh"], successor["refresh"], successor["access"]]
        # The signature is what makes a token usable; the header and claims are the same for many.
        secrets += [secret.rsplit(".", 1)[1] for secret in secrets]

        stored = [value for table in TOKEN_TABLES for value in text_values(table)]

        assert len(stored) >= 4
        assert not [value for value in stored for secret in secrets if secret in str(value)]
        kept = list(OutstandingToken.objects.values_list("token", flat=True))
        assert len(kept) == 2 and all(re.fullmatch(r"sha256:[0-9a-f]{64}", value) for value in kept), kept

    def test_the_admin_shows_no_token(self, alice, tenant):
        tokens = log_in(alice)
        successor = refresh(tokens["refresh"]).json()
        ops = User.objects.create_superuser("ops@thor.test", "ops-password-123", tenant=tenant)
        client = Client()
        client.force_login(ops)
        spent = OutstandingToken.objects.filter(blacklistedtoken__isnull=False).get()
        pages = [
            "/admin/token_blacklist/outstandingtoken/",
            f"/admin/token_blacklist/outstandingtoken/{spent.pk}/change/",
            "/admin/token_blacklist/blacklistedtoken/",
            f"/admin/token_blacklist/blacklistedtoken/{spent.blacklistedtoken.pk}/change/",
        ]

        for page in pages:
            response = client.get(page)
            assert response.status_code == 200, page
            assert spent.jti in response.text, page
            for secret in (tokens["refresh"], successor["refresh"], spent.token):
                assert secret not in response.text, page

    def test_the_admin_cannot_change_or_delete_a_token(self, alice, tenant):
        log_in(alice)
        ops = User.objects.create_superuser("ops@thor.test", "ops-password-123", tenant=tenant)
        client = Client()
        client.force_login(ops)
        row = OutstandingToken.objects.get()

        response = client.post(f"/admin/token_blacklist/outstandingtoken/{row.pk}/change/", {"jti": "mine"})

        assert response.status_code == 403
        assert client.get(f"/admin/token_blacklist/outstandingtoken/{row.pk}/delete/").status_code == 403
        assert OutstandingToken.objects.get().jti == row.jti

    def test_the_migration_digests_rows_stored_whole(self, alice):
        tokens = log_in(alice)
        # As simplejwt stored it before: the update skips the digesting save.
        OutstandingToken.objects.update(token=tokens["refresh"])
        migration = importlib.import_module("identity.migrations.0008_digest_outstanding_refresh_tokens")

        migration.digest_tokens(apps, None)
        migration.digest_tokens(apps, None)

        assert list(OutstandingToken.objects.values_list("token", flat=True)) == [token_digest(tokens["refresh"])]
        assert refresh(tokens["refresh"]).status_code == 200
