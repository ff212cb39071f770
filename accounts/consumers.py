"""The order WebSocket (seed 001): `/ws/orders/{account_id}` for one account (a Thor id or `primary`),
`/ws/orders` for every account of the signed-in user.

Sign-in is thor.ws_auth's (a one-time ticket or the JWT); the messages come from accounts.streams.
On connect the socket says `{"type": "subscribed", "account_id", "seq"}` for each account it follows,
`seq` being the last message already sent on that account's stream. Every message after it carries
the next `seq`. What a client sends:

- `ping`, `{"type": "ping"}` or `{"action": "ping"}`, each answered `{"type": "pong"}` (JSON even for the
  plain-text `ping`: seed 001's hook sends `ping` and JSON.parses every message it receives);
- `{"action": "subscribe" | "unsubscribe", "account_id": ...}`;
- `{"action": "resync", "account_id": ..., "since_seq": N}` (or `"since": "<ISO time>"`): the missed
  messages, rebuilt from the database, then `{"type": "resynced", "account_id", "seq", "complete"}`;
- `{"action": "watch" | "unwatch", "instruments": ["NSE:INFY", ...]}`: ticks of instruments not held.

Prices (accounts.ticks): an account's positions and funds (a live account's: positions only) as ticks move them (`position_prices`) and
the watched instruments' ticks (`ticks`), throttled per socket; state, not events, so without a `seq`.

While open, the accounts the socket follows stay marked as followed (accounts.followers), so that work
only watchers need, the Schwab order poll, is done for them; at the same pace the session it was opened
with is checked, and a logged out one closes it with 4401. The server process does both for all its sockets
at once, one task, one query and one cache call a period however many sockets it serves (accounts.renewal):
done per socket, that work was a database round trip and cache calls in threads for every socket every
period, competing with the tick fan-out for the process.

The socket itself never lets a gap through: a live message whose `seq` is not the next one is
preceded by the missing ones, read from the database (the Redis channel layer drops messages for a
socket over capacity without a word), and one already sent is not sent twice.
"""

import asyncio
import contextlib
import json
import time
from datetime import datetime

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http import Http404
from django.utils.dateparse import parse_datetime

from accounts import selectors
from accounts.followers import accounts_mark_followed
from accounts.models import TradingAccount
from accounts.renewal import renewal
from accounts.streams import account_group, stream_messages_since, stream_seq_current
from accounts.ticks import PricesMixin
from accounts.ws_connections import connection_close, connection_open
from identity.models import User
from identity.sessions import SESSION_CLAIM
from thor.channel_receive import StoppableChannelReceive
from thor.realtime import home_loop_remember
from thor.ws_auth import accepted_subprotocol

# Close codes a client can act on, after the HTTP statuses: sign in again, stop asking for that
# account, close another socket first, slow down.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_CONNECTIONS = 4409
CLOSE_TOO_MANY_FRAMES = 4429
# A heartbeat is a few bytes every 30 s and subscriptions are rare: anything much bigger or faster is
# a broken client.
MAX_FRAME_CHARS = 1024
MAX_FRAMES_PER_MINUTE = 60
# The largest seq (and account id) the database's bigint columns hold.
MAX_SEQ = 2**63 - 1
# Roles that may follow the other accounts of their own tenant (never another tenant's).
TENANT_WIDE_ROLES = (User.Role.TENANT_ADMIN, User.Role.OPS)


def stream_account_get(*, user, account_ref) -> TradingAccount:
    """An account the user may follow: their own (by id or `primary`), or, for a tenant admin or ops,
    any account of their tenant. Anything else is a 404, which says nothing about whether it exists."""
    account_ref = str(account_ref)
    try:
        return selectors.account_get(user=user, account_ref=account_ref)
    except Http404:
        if user.role not in TENANT_WIDE_ROLES or not account_ref.isascii() or not account_ref.isdigit():
            raise
    if int(account_ref) > MAX_SEQ:
        raise Http404
    account = TradingAccount.objects.filter(pk=int(account_ref), user__tenant_id=user.tenant_id).first()
    if account is None:
        raise Http404
    return account


def account_ids_to_follow(*, user, account_ref: str | None) -> list[int]:
    """The one account asked for, or all of the user's when none is; anyone else's is a 404."""
    if account_ref is None:
        return list(selectors.account_list(user=user).values_list("id", flat=True))
    return [stream_account_get(user=user, account_ref=account_ref).pk]


def _admit(*, user, account_ref: str | None, kind: str) -> tuple[list[int], bool]:
    """The accounts the socket follows (Http404 for one the user may not), and whether the cap lets it open."""
    account_ids = account_ids_to_follow(user=user, account_ref=account_ref)
    return account_ids, connection_open(user=user, kind=kind)


def _stream_seqs(account_ids: list[int]) -> dict[int, int]:
    return {account_id: stream_seq_current(account_id=account_id) for account_id in account_ids}


# A cache call off the event loop, and off the one database thread the connects queue on.
_mark_followed = sync_to_async(accounts_mark_followed, thread_sensitive=False)


class OrderUpdatesConsumer(StoppableChannelReceive, PricesMixin, AsyncJsonWebsocketConsumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prices_init()
        self.window_started = time.monotonic()
        self.frames_in_window = 0
        # account id -> the last seq this socket sent on that account's stream.
        self.sent_seq: dict[int, int] = {}
        self.counted_kind = None
        self.session_id: str | None = None

    async def __call__(self, scope, receive, send):
        # A socket without a signed-in user is refused at connect and never joins a group, so it gets no
        # channel on the layer: no Redis connection for it, and its close waits for nothing (with one, the
        # layer's receive starts at once and the close waits for it to stop: thor.channel_receive).
        if not scope["user"].is_authenticated:
            self.channel_layer_alias = None  # get_channel_layer(None): no layer
        await super().__call__(scope, receive, send)

    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        account_ref = self.scope["url_route"]["kwargs"].get("account_id")
        kind = "all" if account_ref is None else "account"
        # One trip to the database thread for both: sync work is serialized there, and connects queue on it.
        try:
            account_ids, admitted = await database_sync_to_async(_admit)(user=user, account_ref=account_ref, kind=kind)
        except Http404:
            await self._refuse(CLOSE_NOT_FOUND)
            return
        if not admitted:
            await self._refuse(CLOSE_TOO_MANY_CONNECTIONS)
            return
        self.counted_kind = kind
        home_loop_remember()
        await self.accept(subprotocol=accepted_subprotocol(self.scope))
        await self._subscribe(account_ids)
        self._close_when_the_token_expires()
        sid = (self.scope.get("token_claims") or {}).get(SESSION_CLAIM)
        self.session_id = sid if isinstance(sid, str) else None
        # Its accounts are marked (in `_subscribe`): the process's renewal keeps them marked from here on.
        renewal().join(self)

    async def _subscribe(self, account_ids: list[int]) -> None:
        # Join first, then read where the streams are: a message published in between is either counted
        # in that seq (and not sent twice) or arrives after it.
        for account_id in account_ids:
            await self.channel_layer.group_add(account_group(account_id), self.channel_name)
        seqs = await database_sync_to_async(_stream_seqs)(account_ids)
        # Before `subscribed`: a client told it is subscribed is followed, polled accounts included.
        await _mark_followed(account_ids)
        self.sent_seq.update({account_id: seqs[account_id] for account_id in account_ids})
        # Before `subscribed` too: from then on a tick on what the account holds reaches the socket.
        await self._books_join(account_ids)
        for account_id in account_ids:
            await self.send_json({"type": "subscribed", "account_id": account_id, "seq": seqs[account_id]})

    async def session_ended(self) -> None:
        """The session the socket was opened with was logged out (accounts.renewal)."""
        await self.close(code=CLOSE_UNAUTHENTICATED)

    def _close_when_the_token_expires(self) -> None:
        # The socket is only as good as the sign-in it was opened with: the client reconnects
        # with a fresh token, which also re-checks that the user is still active.
        expires_at = self.scope.get("token_expires_at")
        if expires_at is None:
            return
        loop = asyncio.get_running_loop()
        self.sign_in_ends = loop.call_later(
            max(0.0, expires_at - time.time()),
            lambda: loop.create_task(self.close(code=CLOSE_UNAUTHENTICATED)),
        )

    async def disconnect(self, code):
        if getattr(self, "sign_in_ends", None) is not None:
            self.sign_in_ends.cancel()
        renewal().leave(self)
        await self._prices_close()
        if self.counted_kind is not None:
            await database_sync_to_async(connection_close)(user=self.scope["user"], kind=self.counted_kind)
            self.counted_kind = None
        for account_id in self.sent_seq:
            # A Redis that is busy (a thousand sockets closing at once) or gone is no reason to fail the
            # close: channels-redis forgets a group member by itself after its group_expiry.
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(account_group(account_id), self.channel_name)

    async def _refuse(self, code: int) -> None:
        # Closing before accepting reaches a browser as a bare HTTP 403 (error 1006): accept first,
        # so the client sees the close code and knows whether to sign in again or stop asking.
        await self.accept(subprotocol=accepted_subprotocol(self.scope))
        await self.close(code=code)

    async def receive(self, text_data=None, bytes_data=None):
        # The plain-text `ping` is not JSON, so frames are read here rather than in receive_json.
        frames = self._count_frame()
        if frames > MAX_FRAMES_PER_MINUTE:
            if frames == MAX_FRAMES_PER_MINUTE + 1:
                await self.close(code=CLOSE_TOO_MANY_FRAMES)
            # Frames already on their way while the socket closes are dropped.
            return
        if text_data is None:
            await self._send_error("text_frames_only", "Send text frames: `ping` or JSON.")
        elif len(text_data) > MAX_FRAME_CHARS:
            await self._send_error("frame_too_large", f"Frames are at most {MAX_FRAME_CHARS} characters.")
        elif text_data == "ping":
            await self._pong({})
        else:
            await self._answer_json(text_data)

    async def _answer_json(self, text_data: str) -> None:
        try:
            message = json.loads(text_data)
        except ValueError:
            await self._send_error("invalid_json", "Send `ping` or a JSON object.")
            return
        if not isinstance(message, dict):
            await self._send_error("unknown_message", "Send `ping` or a JSON object with an `action`.")
            return
        action = message.get("action", "ping" if message.get("type") == "ping" else None)
        answer = {
            "ping": self._pong,
            "subscribe": self._answer_subscribe,
            "unsubscribe": self._answer_unsubscribe,
            "resync": self._answer_resync,
            "watch": self._answer_watch,
            "unwatch": self._answer_unwatch,
        }.get(action if isinstance(action, str) else None)
        if answer is None:
            await self._send_error(
                "unknown_message",
                "Send `ping` or an `action`: `ping`, `subscribe`, `unsubscribe`, `resync`, `watch` or `unwatch`.",
            )
            return
        await answer(message)

    async def _pong(self, message: dict) -> None:
        await self.send_json({"type": "pong"})

    async def _answer_subscribe(self, message: dict) -> None:
        account_ref = message.get("account_id")
        if not _is_account_ref(account_ref):
            await self._send_error("invalid_account_id", "`account_id` is an account's id or `primary`.")
            return
        try:
            account = await database_sync_to_async(stream_account_get)(user=self.scope["user"], account_ref=account_ref)
        except Http404:
            await self._send_error("not_found", "No such account of yours.", account_id=account_ref)
            return
        if account.pk in self.sent_seq:
            await self.send_json({"type": "subscribed", "account_id": account.pk, "seq": self.sent_seq[account.pk]})
            return
        await self._subscribe([account.pk])

    async def _answer_unsubscribe(self, message: dict) -> None:
        account_id = await self._subscribed_account(message)
        if account_id is None:
            return
        await self.channel_layer.group_discard(account_group(account_id), self.channel_name)
        del self.sent_seq[account_id]
        await self._books_forget(account_id)
        await self.send_json({"type": "unsubscribed", "account_id": account_id})

    async def _answer_resync(self, message: dict) -> None:
        account_id = await self._subscribed_account(message)
        if account_id is None:
            return
        since_seq, since = message.get("since_seq"), message.get("since")
        if since_seq is not None and (not _is_whole_number(since_seq) or not 0 <= since_seq <= MAX_SEQ):
            await self._send_error("invalid_since_seq", "`since_seq` is a whole number, 0 or more.")
            return
        if since_seq is None:
            since = _aware_datetime(since)
            if since is None:
                await self._send_error(
                    "invalid_since", "Send `since_seq`, or `since` as an ISO 8601 time with its zone."
                )
                return
        await self._resend(account_id, since_seq=since_seq, since=since)

    async def _resend(self, account_id: int, *, since_seq: int | None, since: datetime | None = None) -> None:
        """The stream's messages after since_seq (or since), from the database, then `resynced`.

        Live messages that arrive meanwhile wait in the channel layer (a consumer handles one message
        at a time) and are then sent only if they are newer than the last one resent.
        """
        messages, more_left = await database_sync_to_async(stream_messages_since)(
            account_id=account_id, since_seq=since_seq, since=since, limit=settings.THOR_WS_RESYNC_MAX_EVENTS
        )
        for message in messages:
            await self.send_json(message)
        if messages:
            self.sent_seq[account_id] = max(self.sent_seq[account_id], messages[-1]["seq"])
        # Not complete: ask again from the last one resent.
        seq = messages[-1]["seq"] if more_left else self.sent_seq[account_id]
        await self.send_json({"type": "resynced", "account_id": account_id, "seq": seq, "complete": not more_left})

    async def _subscribed_account(self, message: dict) -> int | None:
        account_id = message.get("account_id")
        if not _is_whole_number(account_id) or account_id not in self.sent_seq:
            await self._send_error(
                "not_subscribed", "`account_id` is the id of an account this socket follows.", account_id=account_id
            )
            return None
        return account_id

    async def _send_error(self, code: str, detail: str, **context) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail, **context})

    def _count_frame(self) -> int:
        """Frames received in the current one-minute window, this one included."""
        now = time.monotonic()
        if now - self.window_started >= 60:
            self.window_started, self.frames_in_window = now, 0
        self.frames_in_window += 1
        return self.frames_in_window

    # Channel layer messages from accounts.streams: batches of messages already in the shape clients read.
    async def stream_messages(self, batch):
        for message in batch["messages"]:
            await self._deliver(message)
        # Something changed on these accounts (an order, a fill): their books are read again.
        seqs: dict[int, int] = {}
        for message in batch["messages"]:
            seqs[message["account_id"]] = max(message["seq"], seqs.get(message["account_id"], 0))
        await self._books_refresh(seqs)

    async def _deliver(self, message: dict) -> None:
        account_id, seq = message["account_id"], message["seq"]
        last = self.sent_seq.get(account_id)
        if last is None or seq <= last:
            # Unsubscribed while it was on its way, or already sent (by a resync).
            return
        while seq > self.sent_seq[account_id] + 1:
            # The channel layer lost some: send them from the database first (page after page).
            before = self.sent_seq[account_id]
            await self._resend(account_id, since_seq=before)
            if self.sent_seq[account_id] == before:
                break
        if seq <= self.sent_seq[account_id]:
            return
        await self.send_json(message)
        self.sent_seq[account_id] = seq


def _aware_datetime(value) -> datetime | None:
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well formed but not a date, such as month 13
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _is_whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_account_ref(value) -> bool:
    if _is_whole_number(value):
        return 0 < value <= MAX_SEQ
    return isinstance(value, str) and 0 < len(value) <= 20
