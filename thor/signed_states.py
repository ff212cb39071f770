"""A `state` that goes out through another site and comes back (an OAuth flow's): signed, short-lived, read whole.

Each flow keeps its own fields, salt, lifetime and error (brokers.oauth_state for broker links,
identity.social.state for social logins) and its own way of being used once; what they share is here. The
token is a `django.core.signing` value of the state's fields, so it cannot be forged or altered, and it
carries no credentials. Reading it back tells a token Thor never signed (nowhere to send the browser back)
from one that is only too old: that one's fields still name the page it was issued for, so the callback can
send the browser back there with the reason instead of stranding a popup.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeGuard, TypeVar

from django.core import signing

State = TypeVar("State")


class StateInvalid(Exception):
    """Forged, altered, expired or already used.

    `code` is what a browser may be told; `state` is the state as signed when only its age or its use
    failed it (Thor issued it, so where it leads back to is Thor's own choice), else None.
    """

    def __init__(self, reason: str, *, code: str = "state_invalid", state: Any = None):
        super().__init__(reason)
        self.code = code
        self.state = state


@dataclasses.dataclass(frozen=True)
class SignedStates(Generic[State]):
    """How one flow's states are signed and read back."""

    kind: Callable[..., State]  # a dataclass: the token holds its fields
    salt: str
    max_age: Callable[[], int]  # asked on every read, so a changed setting applies at once
    max_length: int  # a longer token is refused before anything is decoded
    error: type[StateInvalid] = StateInvalid

    def sign(self, state: State) -> str:
        fields = dataclasses.asdict(state)  # type: ignore[call-overload]  # State is a dataclass (see kind)
        return signing.dumps(fields, salt=self.salt, compress=True)

    def read(self, token: object) -> State:
        """The state behind `token` if Thor signed it with this salt, unaltered, within its lifetime."""
        if not self._plausible(token):
            raise self.error("missing")
        try:
            return self._state(signing.loads(token, salt=self.salt, max_age=self.max_age()))
        except signing.SignatureExpired:
            raise self.error("expired", code="state_expired", state=self.signed(token)) from None
        except (signing.BadSignature, TypeError, ValueError):
            raise self.error("bad signature") from None

    def signed(self, token: object) -> State | None:
        """The state behind `token` if Thor signed it with this salt, whatever its age; else None."""
        if not self._plausible(token):
            return None
        try:
            return self._state(signing.loads(token, salt=self.salt))
        except (signing.BadSignature, TypeError, ValueError):
            return None

    def _plausible(self, token: object) -> TypeGuard[str]:
        return isinstance(token, str) and 0 < len(token) <= self.max_length

    def _state(self, fields: object) -> State:
        # A signed value of another shape (only this salt's signer could have made one) is as bad as a forgery.
        if not isinstance(fields, dict):
            raise TypeError("a state's fields are a mapping")
        return self.kind(**fields)
