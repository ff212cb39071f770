"""Every Redis key the thor package keeps for itself: its name and how it goes (one home, as zulip's
zerver/lib/cache.py; the apps keep theirs in their own caches modules).

- a throttle's window, `thor:throttle:{scope}:{digest}` (thor.throttles): a sorted set of the admitted
  requests' times, expiring one throttle duration after the last one admitted. By the digest of DRF's
  cache key (`throttle_{scope}_{ident}`), so an ident of any length or alphabet makes a key of one size;
- a rate bucket, `thor:bucket:{name}` (thor.ratelimit), expiring once it would be full again;
- an account's live snapshots, `thor:{tenant}:{account}:{what}` (thor.snapshots).
"""

import hashlib


def throttle_key(scope: str, cache_key: str) -> str:
    return f"thor:throttle:{scope}:{hashlib.sha256(cache_key.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def bucket_key(name: str) -> str:
    return f"thor:bucket:{name}"
