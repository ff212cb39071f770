"""A consumer's channel-layer receive that stops when it is cancelled.

channels cancels a consumer's receive from its channel layer when the consumer ends (its socket closed), and
waits for it to stop. On Python 3.11 that cancel can be lost: redis-py writes each command under
`asyncio.wait_for`, which in 3.11 returns the command's result and drops a cancel that lands as the write
completes. channels-redis's receive then blocks again (BZPOPMIN) and loops for good on a channel no one
sends to, and channels waits for it: the closed socket's consumer, its task and its Redis connection lived
on forever. Here the cancel is repeated until the receive has really stopped; a cancel that lands while
it blocks is never lost.

Mixed in before channels' consumer class: channels sets `channel_receive` (its partial of the layer's
receive for the consumer's channel) in `__call__` and dispatches from it; this property hands back the
stoppable wrapper instead.
"""

import asyncio

# How long a cancelled receive is given before the cancel is repeated (a lost one is lost at once, so
# the repeat lands while it blocks).
CANCEL_REPEAT_SECONDS = 0.2


class StoppableChannelReceive:
    @property
    def channel_receive(self):
        return self._channel_receive_stoppable

    @channel_receive.setter
    def channel_receive(self, layer_receive) -> None:
        self._layer_receive = layer_receive

    async def _channel_receive_stoppable(self):
        receiving = asyncio.ensure_future(self._layer_receive())
        try:
            # Shielded: a cancel of this wrapper reaches the receive below, as many times as it takes.
            return await asyncio.shield(receiving)
        except asyncio.CancelledError:
            while not receiving.done():
                receiving.cancel()
                await asyncio.wait({receiving}, timeout=CANCEL_REPEAT_SECONDS)
            if not receiving.cancelled():
                receiving.exception()  # retrieved: a receive that failed as it stopped is not reported again
            raise
