"""Publishing to WebSocket clients through the channel layer (in-memory embedded, Redis otherwise).

A request thread hands its messages to one event loop that lives as long as the process (started on
the first publish, again in a forked child), and waits for them to be sent. `async_to_sync` from a
plain thread would make a new event loop for every publish, and channels-redis keeps its Redis
connections per event loop: every publish would open new ones. The in-memory layer's queues belong
to the loop their consumers run in, so with it (and from inside a running loop) publishing stays
with `async_to_sync`.
"""

import asyncio
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger("thor.realtime")

# Publishing runs inside the request that changed something: a Redis that hangs must not hold it long.
PUBLISH_TIMEOUT_SECONDS = 2

_publisher: dict = {}  # the loop and the pid it was started in
_publisher_lock = threading.Lock()


def publish(*, group: str, messages: list[dict]) -> None:
    """Send the messages, in order, to every socket in the group.

    Never raises: a live update is a courtesy, and the change behind it is already committed, so a
    channel layer that is down is logged and the caller carries on.
    """
    try:
        if _on_a_running_loop() or isinstance(get_channel_layer(), InMemoryChannelLayer):
            async_to_sync(_group_send)(group, messages)
            return
        sent = asyncio.run_coroutine_threadsafe(_group_send(group, messages), _publisher_loop())
        # The coroutine's own timeout ends it first; this one only guards against a loop that is gone.
        sent.result(timeout=PUBLISH_TIMEOUT_SECONDS + 1)
    except Exception:
        logger.warning("Could not publish %s to %s", [message["type"] for message in messages], group, exc_info=True)


async def _group_send(group: str, messages: list[dict]) -> None:
    layer = get_channel_layer()
    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
        for message in messages:
            await layer.group_send(group, message)


def _on_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """This process's publishing loop, running in a daemon thread; a forked child starts its own."""
    with _publisher_lock:
        if _publisher.get("pid") != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="thor-realtime-publisher", daemon=True).start()
            _publisher.update(pid=os.getpid(), loop=loop)
        return _publisher["loop"]
