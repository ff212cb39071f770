"""Every cache entry identity keeps: its key and how it is flushed (one home, as zulip's zerver/lib/cache.py).

- the user of a read, `thor:identity:{user_id}`, kept THOR_READ_CACHE_SECONDS (at most 5), without its
  password hash; flushed when the user is saved, deleted, disabled (identity.services.users_disable, on
  commit) or logs out;
- the state of a sign-in session, `thor:session:{sid}` (identity.sessions);
- the tenants' CORS origins, `identity:tenant-origins` (identity.signals), flushed when a tenant changes;
- a social provider's discovery document or key set, by its URL's digest, kept THOR_SOCIAL_METADATA_SECONDS
  (identity.social.providers; a refresh reads it again);
- a social login's one-time code, by its digest (identity.social.delivery), taken once.

A read's user and its session's state are fetched together, in one round trip (identity.authentication).
"""

import hashlib

from django.conf import settings
from django.core.cache import cache

TENANT_ORIGINS_KEY = "identity:tenant-origins"


def social_metadata_key(url: str) -> str:
    return f"social-metadata:{hashlib.sha256(url.encode()).hexdigest()}"


def social_login_code_key(code: str) -> str:
    # By digest: the code itself is a credential and never stored as it is.
    return f"social-login-code:{hashlib.sha256(code.encode()).hexdigest()}"


def user_key(user_id) -> str:
    return f"thor:identity:{user_id}"


def session_key(sid: str) -> str:
    return f"thor:session:{sid}"


def user_and_session(user_id, sid: str | None) -> tuple[object, object]:
    """The cached user and its session's state (None for what the cache does not hold), in one round trip."""
    keys = [user_key(user_id), session_key(sid)] if sid else [user_key(user_id)]
    found = cache.get_many(keys)
    return found.get(keys[0]), found.get(keys[1]) if sid else None


def user_keep(user) -> None:
    """The user a read loaded (without its password hash), for the next reads within the bound."""
    cache.set(user_key(user.pk), user, settings.THOR_READ_CACHE_SECONDS)


def flush_user(*, user_id) -> None:
    """The next request of this user loads it from the database."""
    cache.delete(user_key(user_id))


def flush_users(*, user_ids) -> None:
    cache.delete_many([user_key(user_id) for user_id in user_ids])


def flush_tenant_origins() -> None:
    cache.delete(TENANT_ORIGINS_KEY)
