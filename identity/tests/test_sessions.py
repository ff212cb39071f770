"""revoked_session_ids: which of many sessions were logged out, in one cache round trip and at most one query
(the order sockets' renewal asks for every socket of a server process at once: accounts.renewal)."""

import time

import pytest
from django.core.cache import cache

from identity.caches import session_key
from identity.models import RevokedSession
from identity.sessions import (
    LIVE,
    REVOKED,
    SID_MAX_CHARS,
    new_session_id,
    revoked_session_ids,
    session_is_revoked,
    session_revoke,
)

pytestmark = pytest.mark.django_db


def test_only_the_logged_out_sessions_among_many(django_assert_num_queries):
    live, ended = [new_session_id() for _ in range(5)], [new_session_id() for _ in range(3)]
    for sid in ended:
        session_revoke(sid=sid)
    cache.clear()  # none of them known to the cache: the database is asked, once for them all

    with django_assert_num_queries(1):
        assert revoked_session_ids(live + ended) == set(ended)


def test_what_it_learns_is_cached_so_the_next_period_asks_no_query(django_assert_num_queries):
    live, ended = new_session_id(), new_session_id()
    session_revoke(sid=ended)
    cache.clear()
    revoked_session_ids([live, ended])

    with django_assert_num_queries(0):
        assert revoked_session_ids([live, ended]) == {ended}
    assert cache.get_many([session_key(live), session_key(ended)]) == {
        session_key(live): LIVE,
        session_key(ended): REVOKED,
    }


def test_it_agrees_with_the_one_session_check_as_the_cache_comes_and_goes():
    live, ended = new_session_id(), new_session_id()
    session_revoke(sid=ended)

    for cached in (True, False):
        if not cached:
            cache.clear()
        assert revoked_session_ids([live, ended]) == {sid for sid in (live, ended) if session_is_revoked(sid)}


def test_a_revocation_whose_tokens_have_all_expired_says_nothing(time_machine):
    ended = new_session_id()
    session_revoke(sid=ended)
    cache.clear()
    time_machine.move_to(time.time() + 7 * 24 * 3600 + 60)  # past the longest-lived token of the session

    assert revoked_session_ids([ended]) == set()


def test_nothing_to_ask_is_no_query_and_no_cache_call(django_assert_num_queries, monkeypatch):
    monkeypatch.setattr("identity.sessions.cache.get_many", lambda keys: pytest.fail("asked the cache"))

    with django_assert_num_queries(0):
        assert revoked_session_ids([]) == set()
        assert revoked_session_ids(iter(())) == set()


def test_the_longest_id_asked_for_is_the_longest_a_row_holds():
    assert RevokedSession._meta.get_field("sid").max_length == SID_MAX_CHARS
    assert len(new_session_id()) <= SID_MAX_CHARS


@pytest.mark.parametrize(
    "sid",
    ["", "x" * 10_000, "' OR 1=1 --", "%", "_", "sid\x00with nul", "☃", "   "],
    ids=["empty", "huge", "sql", "percent", "underscore", "nul", "unicode", "blank"],
)
def test_hostile_ids_are_just_sessions_no_one_logged_out(sid, django_assert_max_num_queries):
    ended = new_session_id()
    session_revoke(sid=ended)
    cache.clear()

    with django_assert_max_num_queries(1):
        assert revoked_session_ids([sid, ended, sid]) == {ended}
    # The one-session check asks the database the same way: a NUL or an over-long id is no error there either.
    cache.clear()
    assert session_is_revoked(sid) is False
