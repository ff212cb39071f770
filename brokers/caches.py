"""Every cache entry the brokers app keeps: its key (one home, as zulip's zerver/lib/cache.py).

- each connection's last call outcomes, `broker-health:{connection_id}:ok|error` (brokers.health), kept
  OUTCOME_TTL_SECONDS and never flushed: they say what happened, not what is;
- a finished login parked for its user to confirm, `broker-link-code:{sha256(code)}` (brokers.services.linking),
  used once (deleted by the one who confirms it);
- the Schwab flow a user started last, `schwab-oauth-started:{user_id}` (brokers.services.schwab_linking),
  deleted when its callback is consumed;
- a signed OAuth state's nonce, `oauth-state-nonce:{nonce}` (brokers.oauth_state), deleted by its one use.

The broker reads' snapshots are thor.snapshots' (keyed by tenant and connection) and a live account's
cached state is the accounts app's (accounts.caches), flushed there when a session ends
(brokers.signals.connection_ended).
"""

import hashlib


def call_succeeded_key(connection_id: int) -> str:
    return f"broker-health:{connection_id}:ok"


def call_failed_key(connection_id: int) -> str:
    return f"broker-health:{connection_id}:error"


def link_code_key(code: str) -> str:
    # The code is a bearer secret: only its digest names the entry.
    return f"broker-link-code:{hashlib.sha256(code.encode()).hexdigest()}"


def schwab_started_flow_key(user_id: int) -> str:
    return f"schwab-oauth-started:{user_id}"


def oauth_nonce_key(nonce: str) -> str:
    return f"oauth-state-nonce:{nonce}"
