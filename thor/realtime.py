"""Publishing to WebSocket clients through the channel layer (in-memory embedded, Redis otherwise)."""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger("thor.realtime")

# Publishing runs inside the request that changed something: a Redis that hangs must not hold it long.
PUBLISH_TIMEOUT_SECONDS = 2


def publish(*, group: str, messages: list[dict]) -> None:
    """Send the messages, in order, to every socket in the group.

    Never raises: a live update is a courtesy, and the change behind it is already committed, so a
    channel layer that is down is logged and the caller carries on.
    """
    try:
        async_to_sync(_group_send)(group, messages)
    except Exception:
        logger.warning("Could not publish %s to %s", [message["type"] for message in messages], group, exc_info=True)


async def _group_send(group: str, messages: list[dict]) -> None:
    layer = get_channel_layer()
    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
        for message in messages:
            await layer.group_send(group, message)
