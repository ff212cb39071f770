"""Sign-in sessions: every token pair made at a login carries a session id (the `sid` claim), which refreshes
keep, so logging out can end the session's access tokens as well as its refresh token, and a refresh token
used twice can end every token descended from its login (identity.refresh).

The state of a session is read on every authenticated request, so it is cached (identity.caches, in
the same round trip to the cache as the user): a revoked session for as long as its tokens could live, a
live one for THOR_READ_CACHE_SECONDS, after which the database (RevokedSession) is asked again. Logging out
writes both, so it takes effect at once in every process; if the cache loses its copy, the database
still says so within the read cache's bound.
"""

import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings

from identity.caches import session_key
from identity.models import RevokedSession

SESSION_CLAIM = "sid"
LIVE, REVOKED = "live", "revoked"
SID_MAX_CHARS = 64  # RevokedSession.sid's max_length: no longer id is in the table


def new_session_id() -> str:
    return uuid.uuid4().hex


def _revoked_for() -> timedelta:
    # A token of the session made just before it ended lives this long, leeway included: a refresh token the
    # longest, and a refresh is refused for an ended session too (identity.refresh).
    longest = max(api_settings.ACCESS_TOKEN_LIFETIME, api_settings.REFRESH_TOKEN_LIFETIME)
    return longest + timedelta(seconds=api_settings.LEEWAY or 0)


def session_revoke(*, sid: str) -> None:
    revoked_for = _revoked_for()
    RevokedSession.objects.update_or_create(sid=sid, defaults={"expires_at": timezone.now() + revoked_for})
    cache.set(session_key(sid), REVOKED, revoked_for.total_seconds())


def session_is_revoked(sid: str, *, cached=None) -> bool:
    """Whether the session was logged out; `cached` is its cache entry when the caller already fetched it."""
    state = cached if cached is not None else cache.get(session_key(sid))
    if state is None:
        state = _states_from_database([sid])[sid]
    return state == REVOKED


def revoked_session_ids(sids: Iterable[str]) -> set[str]:
    """The ones among `sids` that were logged out: `session_is_revoked` for many sessions at once, in one cache
    round trip and, for those the cache does not know, one query (the order sockets' renewal asks for every
    socket of a server process together: accounts.renewal)."""
    keys = {session_key(sid): sid for sid in set(sids)}
    if not keys:
        return set()
    cached = cache.get_many(list(keys))
    states = {keys[key]: state for key, state in cached.items()}
    unknown = [sid for sid in keys.values() if sid not in states]
    if unknown:
        states.update(_states_from_database(unknown))
    return {sid for sid, state in states.items() if state == REVOKED}


def _states_from_database(sids: list[str]) -> dict[str, str]:
    """Each session's state as the database says, in one query, kept in the cache: a revoked one for as long as
    its tokens could live, a live one for THOR_READ_CACHE_SECONDS (not at all when that is 0)."""
    revoked = _revoked_in_database(sids)
    if revoked:
        cache.set_many({session_key(sid): REVOKED for sid in revoked}, _revoked_for().total_seconds())
    live = [sid for sid in sids if sid not in revoked]
    if live and settings.THOR_READ_CACHE_SECONDS:
        cache.set_many({session_key(sid): LIVE for sid in live}, settings.THOR_READ_CACHE_SECONDS)
    return {sid: REVOKED if sid in revoked else LIVE for sid in sids}


def _revoked_in_database(sids: list[str]) -> set[str]:
    # Only what a row could hold is asked for: PostgreSQL refuses a NUL in a query, and no row has one.
    storable = [sid for sid in sids if "\x00" not in sid and len(sid) <= SID_MAX_CHARS]
    if not storable:
        return set()
    rows = RevokedSession.objects.filter(sid__in=storable, expires_at__gt=timezone.now())
    return set(rows.values_list("sid", flat=True))


def revoked_sessions_purge() -> int:
    """Rows whose tokens have all expired say nothing any more."""
    return RevokedSession.objects.filter(expires_at__lte=timezone.now()).delete()[0]
