"""Publishing to WebSocket clients through the channel layer (in-memory embedded, Redis otherwise).

A request thread hands its messages to one event loop that lives as long as the process (started on
the first publish, again in a forked child) and goes on: one task on that loop sends them in the order
they were handed over, so a request never waits for Redis, and a client still sees an order's updates
in order. What is published is already committed, with sequence numbers a client that missed a message
asks again for (accounts.consumers), so a message the process could not send before it died costs a
resend, never a change. `async_to_sync` from a plain thread would make a new event loop for every
publish, and channels-redis keeps its Redis connections per event loop: every publish would open new
ones. The in-memory layer's queues belong to the loop their consumers run in, so with it (and from
inside a running loop) publishing stays with `async_to_sync`, and waits; from a thread outside the
server's loop it is handed to the server's loop, which consumers make known when they
connect (`home_loop_remember`): async_to_sync there would run on a loop of its own, where the consumers'
queues never wake.
"""

import asyncio
import atexit
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger("thor.realtime")

# Publishing runs inside the request that changed something: a Redis that hangs must not hold it long.
PUBLISH_TIMEOUT_SECONDS = 2

PublishQueue = asyncio.Queue[tuple[str, list[dict]]]  # (group, messages), sent in the order handed over
_publisher_state: dict = {}  # the loop, its queue and the pid they were started in
_publisher_lock = threading.Lock()


def publish(*, group: str, messages: list[dict]) -> None:
    """Send the messages, in order, to every socket in the group (after any handed over before them).

    Never raises: a live update is a courtesy, and the change behind it is already committed, so a
    channel layer that is down is logged and the caller carries on.
    """
    try:
        on_a_loop, in_memory = _on_a_running_loop(), isinstance(get_channel_layer(), InMemoryChannelLayer)
        home = _home_loop.get("loop")
        if in_memory and not on_a_loop and home is not None and home.is_running():
            asyncio.run_coroutine_threadsafe(_group_send(group, messages), home).result(PUBLISH_TIMEOUT_SECONDS)
            return
        if on_a_loop or in_memory:
            async_to_sync(_group_send)(group, messages)
            return
        loop, queue = _publisher()
        loop.call_soon_threadsafe(queue.put_nowait, (group, messages))
    except Exception:
        _publish_failed(group, messages)


_home_loop: dict[str, asyncio.AbstractEventLoop] = {}


def home_loop_remember() -> None:
    """Called on the loop that serves the sockets (a consumer's connect): where the in-memory layer's messages go."""
    _home_loop["loop"] = asyncio.get_running_loop()


def publish_flush(timeout: float = PUBLISH_TIMEOUT_SECONDS + 1) -> bool:
    """Wait until everything handed over so far is sent (or given up on). At exit, and for tests."""
    if _publisher_state.get("pid") != os.getpid():
        return True
    loop, queue = _publisher_state["loop"], _publisher_state["queue"]
    try:
        asyncio.run_coroutine_threadsafe(queue.join(), loop).result(timeout=timeout)
    except Exception:
        return False
    return True


def _publish_failed(group: str, messages: list[dict]) -> None:
    logger.warning("Could not publish %s to %s", [message["type"] for message in messages], group, exc_info=True)


async def _group_send(group: str, messages: list[dict]) -> None:
    layer = get_channel_layer()
    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
        for message in messages:
            await layer.group_send(group, message)


async def _send_in_order(queue: PublishQueue) -> None:
    while True:
        group, messages = await queue.get()
        try:
            await _group_send(group, messages)
        except Exception:
            _publish_failed(group, messages)
        finally:
            queue.task_done()


def _on_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _publisher() -> tuple[asyncio.AbstractEventLoop, PublishQueue]:
    """This process's publishing loop (a daemon thread) and its queue; a forked child starts its own."""
    with _publisher_lock:
        if _publisher_state.get("pid") != os.getpid():
            loop = asyncio.new_event_loop()
            queue: PublishQueue = asyncio.Queue()
            # The loop holds its tasks weakly: the state keeps the sender alive.
            loop.call_soon(lambda: _publisher_state.update(sender=loop.create_task(_send_in_order(queue))))
            threading.Thread(target=loop.run_forever, name="thor-realtime-publisher", daemon=True).start()
            _publisher_state.update(pid=os.getpid(), loop=loop, queue=queue)
        return _publisher_state["loop"], _publisher_state["queue"]


atexit.register(publish_flush)
