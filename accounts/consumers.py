"""The order WebSocket (seed 001): `/ws/orders/{account_id}` for one account (a Thor id or `primary`),
`/ws/orders` for every account of the signed-in user.

Sign-in is thor.ws_auth's; the updates come from accounts.realtime. A client only ever sends a
heartbeat: the text `ping` (answered `pong`) or `{"type": "ping"}` (answered `{"type": "pong"}`).
"""

import asyncio
import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from accounts import selectors
from accounts.realtime import account_group
from thor.ws_auth import accepted_subprotocol

# Close codes a client can act on, after the HTTP statuses: sign in again, stop asking for that
# account, slow down.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_FRAMES = 4429
# A heartbeat is a few bytes every 30 s: anything much bigger or faster is a broken client.
MAX_FRAME_CHARS = 1024
MAX_FRAMES_PER_MINUTE = 60


def account_ids_to_follow(*, user, account_ref: str | None) -> list[int]:
    """The one account asked for, or all of the user's when none is; anyone else's is a 404."""
    if account_ref is None:
        return list(selectors.account_list(user=user).values_list("id", flat=True))
    return [selectors.account_get(user=user, account_ref=account_ref).pk]


class OrderUpdatesConsumer(AsyncJsonWebsocketConsumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.window_started = time.monotonic()
        self.frames_in_window = 0

    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        account_ref = self.scope["url_route"]["kwargs"].get("account_id")
        try:
            account_ids = await database_sync_to_async(account_ids_to_follow)(user=user, account_ref=account_ref)
        except Http404:
            await self._refuse(CLOSE_NOT_FOUND)
            return
        # Accounts linked later are followed from the next connect (linking goes through a page redirect).
        self.groups = [account_group(account_id) for account_id in account_ids]
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept(subprotocol=accepted_subprotocol(self.scope))
        self._close_when_the_token_expires()

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
            await self.send(text_data="pong")
        else:
            await self._answer_json(text_data)

    async def _answer_json(self, text_data: str) -> None:
        try:
            message = json.loads(text_data)
        except ValueError:
            await self._send_error("invalid_json", "Send `ping` or a JSON object.")
            return
        if isinstance(message, dict) and message.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self._send_error("unknown_message", 'The only message a client sends is `ping` or {"type": "ping"}.')

    async def _send_error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})

    def _count_frame(self) -> int:
        """Frames received in the current one-minute window, this one included."""
        now = time.monotonic()
        if now - self.window_started >= 60:
            self.window_started, self.frames_in_window = now, 0
        self.frames_in_window += 1
        return self.frames_in_window

    # Channel layer messages from accounts.realtime are already in the shape clients read.
    async def order_update(self, message):
        await self.send_json(message)

    async def position_update(self, message):
        await self.send_json(message)
