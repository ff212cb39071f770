"""ReadCachedJWTAuthentication: a read takes its user from a 5-second cache; revocation stays bounded.

Every case makes the cache matter: the user is loaded once, changed behind the cache's back where that
is the point (a bulk update sends no signal), and the next request shows whether the change is seen.
"""

import time

import jwt
import pytest
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from conftest import client_for
from identity.authentication import ReadCachedJWTAuthentication, UserLockedJWTAuthentication
from identity.caches import user_key
from identity.models import RevokedSession, User
from identity.sessions import SESSION_CLAIM
from identity.tasks import purge_revoked_sessions
from identity.tokens import token_pair_for
from thor.ws_auth import ANONYMOUS, user_for_token

pytestmark = pytest.mark.django_db
ME = "/api/auth/me/"


def authenticate(method, token, authentication=ReadCachedJWTAuthentication):
    factory = APIRequestFactory()
    request = getattr(factory, method)("/api/anything", HTTP_AUTHORIZATION=f"Bearer {token}")
    return authentication().authenticate(Request(request))


class TestReadsUseTheCache:
    def test_the_second_read_loads_no_user(self, alice, django_assert_num_queries):
        token = token_pair_for(alice)["access"]
        with django_assert_num_queries(2):  # the user, and whether its session was logged out
            first, _ = authenticate("get", token)
        with django_assert_num_queries(0):
            second, validated = authenticate("get", token)

        assert first.pk == second.pk == alice.pk and validated["user_id"] == str(alice.pk)

    @pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
    def test_a_write_always_loads_the_user(self, alice, method, django_assert_num_queries):
        token = token_pair_for(alice)["access"]
        authenticate("get", token)

        with django_assert_num_queries(1):
            user, _ = authenticate(method, token)
        assert user.pk == alice.pk

    @pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
    def test_a_view_that_checks_the_user_under_its_lock_takes_the_cached_user_on_writes(
        self, alice, method, django_assert_num_queries
    ):
        token = token_pair_for(alice)["access"]
        authenticate("get", token)

        with django_assert_num_queries(0):
            user, _ = authenticate(method, token, authentication=UserLockedJWTAuthentication)
        assert user.pk == alice.pk

    def test_the_cached_user_has_no_password_hash(self, alice):
        authenticate("get", token_pair_for(alice)["access"])

        cached = cache.get(user_key(alice.pk))
        assert cached.pk == alice.pk and "password" not in cached.__dict__

    def test_a_read_asks_the_cache_once(self, alice, monkeypatch):
        token = token_pair_for(alice)["access"]
        authenticate("get", token)
        asked = []
        for name in ("get", "get_many"):
            original = getattr(cache, name)
            monkeypatch.setattr(
                cache,
                name,
                lambda *args, _original=original, _name=name, **kwargs: (
                    asked.append(_name) or _original(*args, **kwargs)
                ),
            )

        user, _ = authenticate("get", token)

        assert user.pk == alice.pk and asked == ["get_many"], "the user and its session's state, together"

    def test_no_header_and_other_schemes_are_not_ours(self, alice):
        factory = APIRequestFactory()
        for headers in ({}, {"HTTP_AUTHORIZATION": "Basic YTpi"}):
            assert ReadCachedJWTAuthentication().authenticate(Request(factory.get("/api/x", **headers))) is None


class TestRevocation:
    def test_a_disabled_user_is_refused_at_once_when_saved(self, alice, alice_client):
        assert alice_client.get(ME).status_code == 200
        alice.is_active = False
        alice.save()

        response = alice_client.get(ME)

        assert response.status_code == 401 and response.json()["code"] == "user_inactive"

    def test_a_user_changed_in_bulk_is_refused_within_the_ttl(self, alice, alice_client, settings, time_passes):
        settings.THOR_READ_CACHE_SECONDS = 1
        assert alice_client.get(ME).status_code == 200
        # A bulk update outside identity.services sends no signal: only the TTL bounds it.
        User.objects.filter(pk=alice.pk).update(is_active=False)

        time_passes(1.2)

        assert alice_client.get(ME).status_code == 401

    def test_a_disabled_user_cannot_write_even_while_cached(self, alice, alice_client):
        assert alice_client.get(ME).status_code == 200
        User.objects.filter(pk=alice.pk).update(is_active=False)

        response = alice_client.post("/api/accounts", {"currency": "USD"}, format="json")

        assert response.status_code == 401 and response.json()["code"] == "user_inactive"

    def test_a_deleted_user_is_refused_at_once(self, alice, alice_client):
        assert alice_client.get(ME).status_code == 200
        alice.delete()

        response = alice_client.get(ME)

        assert response.status_code == 401 and response.json()["code"] == "user_not_found"

    def test_logging_out_drops_the_cached_user(self, alice):
        pair = token_pair_for(alice)
        client = client_for(alice)
        assert client.get(ME).json()["role"] == "user"
        User.objects.filter(pk=alice.pk).update(role="tenant_admin")
        assert client.get(ME).json()["role"] == "user", "served from the cache until something drops it"

        assert client.post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json").status_code == 205

        assert client.get(ME).json()["role"] == "tenant_admin"
        assert client.post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json").status_code == 401

    def test_the_cache_of_one_user_is_not_another_users(self, alice, bob):
        alice_token, bob_token = token_pair_for(alice)["access"], token_pair_for(bob)["access"]

        assert authenticate("get", alice_token)[0].pk == alice.pk
        assert authenticate("get", bob_token)[0].pk == bob.pk


def log_out(client, refresh):
    assert client.post("/api/auth/logout/", {"refresh": refresh}, format="json").status_code == 205


def client_for_token(access):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


class TestLoggingOutEndsTheSession:
    def test_every_pair_is_a_session_and_a_refresh_keeps_it(self, alice):
        first, second = token_pair_for(alice), token_pair_for(alice)
        sid = AccessToken(first["access"])[SESSION_CLAIM]
        assert RefreshToken(first["refresh"])[SESSION_CLAIM] == sid != AccessToken(second["access"])[SESSION_CLAIM]

        refreshed = client_for().post("/api/auth/token/refresh/", {"refresh": first["refresh"]}, format="json").json()

        assert AccessToken(refreshed["access"])[SESSION_CLAIM] == sid
        assert RefreshToken(refreshed["refresh"])[SESSION_CLAIM] == sid

    def test_its_access_token_is_refused_at_once_for_reads_and_writes(self, alice):
        pair = token_pair_for(alice)
        client = client_for_token(pair["access"])
        assert client.get(ME).status_code == 200, "verified, cached and known to be live"

        log_out(client, pair["refresh"])

        for response in (client.get(ME), client.post("/api/accounts", {"currency": "USD"}, format="json")):
            assert response.status_code == 401 and response.json()["code"] == "token_not_valid", response.json()

    def test_the_users_other_sessions_go_on(self, alice):
        ended, other = token_pair_for(alice), token_pair_for(alice)
        log_out(client_for_token(ended["access"]), ended["refresh"])

        assert client_for_token(other["access"]).get(ME).status_code == 200

    def test_the_database_remembers_when_the_cache_forgets(self, alice):
        pair = token_pair_for(alice)
        log_out(client_for_token(pair["access"]), pair["refresh"])

        cache.clear()

        assert client_for_token(pair["access"]).get(ME).status_code == 401

    def test_a_websocket_cannot_open_with_it(self, alice):
        pair = token_pair_for(alice)
        assert user_for_token(pair["access"])[0].pk == alice.pk

        log_out(client_for_token(pair["access"]), pair["refresh"])

        assert user_for_token(pair["access"]) == ANONYMOUS

    def test_someone_elses_refresh_token_ends_nothing(self, alice, bob):
        alices, bobs = token_pair_for(alice), token_pair_for(bob)

        response = client_for_token(alices["access"]).post(
            "/api/auth/logout/", {"refresh": bobs["refresh"]}, format="json"
        )

        assert response.status_code == 400
        assert client_for_token(bobs["access"]).get(ME).status_code == 200
        assert not RevokedSession.objects.exists()

    def test_rows_go_once_every_token_of_the_session_has_expired(self, alice, time_machine):
        pair = token_pair_for(alice)
        log_out(client_for_token(pair["access"]), pair["refresh"])
        assert purge_revoked_sessions.delay().get() == 0

        # The last token of the session to expire is a refresh token made just before logging out.
        time_machine.move_to(time.time() + 7 * 24 * 3600 + 60)

        assert purge_revoked_sessions.delay().get() == 1 and not RevokedSession.objects.exists()


class TestExpiry:
    def test_an_expired_token_is_refused_though_its_user_is_cached(self, alice, time_machine):
        token = token_pair_for(alice)["access"]
        assert client_for_token(token).get(ME).status_code == 200

        time_machine.move_to(time.time() + 15 * 60 + 1)

        response = client_for_token(token).get(ME)
        assert response.status_code == 401 and response.json()["code"] == "token_not_valid"


class TestHostileTokens:
    def test_a_refresh_token_is_not_an_access_token(self, alice, alice_client):
        refresh = str(RefreshToken.for_user(alice))

        response = client_for().get(ME, HTTP_AUTHORIZATION=f"Bearer {refresh}")

        assert response.status_code == 401 and response.json()["code"] == "token_not_valid"

    def test_a_token_signed_with_another_key_is_refused_even_with_the_user_cached(self, alice, alice_client):
        assert alice_client.get(ME).status_code == 200
        payload = dict(AccessToken.for_user(alice).payload)
        forged = jwt.encode(payload, "not-thor-s-key" * 4, algorithm="HS256")

        assert client_for().get(ME, HTTP_AUTHORIZATION=f"Bearer {forged}").status_code == 401

    def test_a_token_without_a_user_is_refused(self, alice):
        token = AccessToken.for_user(alice)
        del token["user_id"]

        response = client_for().get(ME, HTTP_AUTHORIZATION=f"Bearer {token}")

        assert response.status_code == 401

    @pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer not.a.jwt", "Bearer " + "A" * 5000])
    def test_malformed_headers_are_401_json(self, header):
        response = client_for().get(ME, HTTP_AUTHORIZATION=header)

        assert response.status_code == 401 and response["Content-Type"] == "application/json"
