"""Where ticks reach the sockets: one fan-out point per server process, a registry of its sockets by token.

The market stream (market.ticks, market.schwab_stream) hands each batch of ticks it hears (a KiteTicker
`on_ticks` call, a Schwab data frame) to `ticks_publish`, once. With Redis that is ONE message on a pub/sub
channel (market.caches.ticks_channel_key) which each server process reads once, on its event loop: its
`TickHub`, started by the first socket that registers. In the embedded mode (`make run`: one process, the
stream on a thread beside the server, no Redis) the batch goes straight to this process's hubs, on their
loops. Either way the hub hands each tick to the sockets registered for its token, in memory: a batch costs
one Redis message per process, whatever the number of sockets and instruments. (Per-instrument channel-layer
groups cost a Redis round trip per socket and tick, and the layer dropped what exceeded its capacity.)

A tick is `(token, price, received_at)`: the price a Decimal, `received_at` when the stream heard it (epoch
seconds). A listener is any object with a `ticks_heard(ticks)` method, called on the hub's loop with the
ticks of its tokens in one batch; it must not block. The hub holds listeners weakly (a socket that vanished
without closing is not kept alive by it), and a closing socket `forget`s itself.

Pub/sub reaches only whoever is subscribed when a message is published: while its subscription is down the
hub hears nothing, and says so once. It reconnects (after RETRY_SECONDS), says that once, and hands its
sockets the last prices the stream stored meanwhile (market.caches' last-prices hash); sockets keep the
prices they had throughout.
"""

import asyncio
import contextlib
import json
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import redis.asyncio
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from market import caches
from thor.coordination import OccasionalWarning, redis_client, uses_redis
from thor.money import is_market_price

logger = logging.getLogger("market.tickhub")

Tick = tuple[int, Decimal, float]
RETRY_SECONDS = 1.0
# How long a socket registering waits for its process's subscription: ticks published before it is in place
# are not heard. A Redis that does not answer must not hold a socket's connect longer than this.
READY_SECONDS = 2.0


class Listener(Protocol):
    def ticks_heard(self, ticks: list[Tick]) -> None: ...


def batch_encode(prices: dict[int, str], received_at: float) -> str:
    return json.dumps({"at": received_at, "ticks": [[token, price] for token, price in prices.items()]})


def batch_decode(data: bytes | str) -> list[Tick]:
    """The ticks of a published batch; anything malformed (the whole message, or one tick) is skipped."""
    try:
        batch = json.loads(data)
        received_at = float(batch["at"])
        entries = batch["ticks"]
    except (ValueError, TypeError, KeyError):
        return []
    if not isinstance(entries, list):
        return []
    ticks = []
    for entry in entries:
        if isinstance(entry, list) and len(entry) == 2 and (tick := _tick(entry[0], entry[1], received_at)):
            ticks.append(tick)
    return ticks


def _tick(token, text, received_at: float) -> Tick | None:
    if not isinstance(token, int) or isinstance(token, bool) or not isinstance(text, str):
        return None
    try:
        price = Decimal(text)
    except InvalidOperation:
        return None
    return (token, price, received_at) if price.is_finite() else None


_publish_down = OccasionalWarning(logger)


def ticks_deliver(prices: dict[int, str], *, received_at: float) -> None:
    """What a market stream does with each batch it hears: each token's last price stored (market.caches' last-prices
    hash, which REST reads and a hub reads after a reconnect), then the batch handed to every server process's hub.
    With Redis both go in one round trip, in that order: a hub whose subscription comes back between the two hears
    the message, and one whose comes back after it reads the stored prices. A tick whose price no order could
    trade at (Kite's 0 for a contract that has not traded) is dropped: the last price heard stands. Never raises."""
    prices = {token: price for token, price in prices.items() if is_market_price(price)}
    if not prices:
        return
    if not uses_redis():
        caches.last_prices_write(prices, received_at=received_at)
        ticks_publish(prices, received_at=received_at)
        return
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            pipe.hset(caches.LAST_PRICES_KEY, mapping=caches.last_prices_fields(prices, received_at=received_at))
            pipe.publish(caches.ticks_channel_key(_redis_url()), batch_encode(prices, received_at))
            pipe.execute()
    except Exception as error:
        # The type only: a connection error's text may carry the Redis URL.
        _publish_down("Could not store and publish ticks: %s", type(error).__name__)


def ticks_publish(prices: dict[int, str], *, received_at: float) -> None:
    """Hand a batch of ticks (token -> last price as text) to every server process's hub. Never raises: the
    stream goes on with its next batch (and the last-prices hash has this one)."""
    if not prices:
        return
    try:
        if uses_redis():
            redis_client().publish(caches.ticks_channel_key(_redis_url()), batch_encode(prices, received_at))
            return
        ticks = [(token, Decimal(price), received_at) for token, price in prices.items()]
        for hub in _hubs_running():
            hub.loop.call_soon_threadsafe(hub.deliver, ticks)
    except Exception as error:
        # The type only: a connection error's text may carry the Redis URL.
        _publish_down("Could not publish ticks: %s", type(error).__name__)


class TickHub:
    """One event loop's registry of listeners by token, fed by its Redis subscription (or directly)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        redis_url: str | None,
        pause: Callable[[float], Awaitable[Any]] = asyncio.sleep,  # between reconnects: the tests hold it
    ):
        self.loop = loop
        self.redis_url = redis_url
        self.pause = pause
        self.listeners: dict[int, weakref.WeakSet[Listener]] = {}
        self.tokens_of: weakref.WeakKeyDictionary[Listener, frozenset[int]] = weakref.WeakKeyDictionary()
        self.subscribed = asyncio.Event()
        self.down = False
        self.name = f"thor-tickhub-{id(self)}"  # its Redis connection's, so that a test can cut that one
        self.task: asyncio.Task | None = None

    def listen(self, listener: Listener, tokens) -> None:
        """Hand `listener` the ticks of exactly these tokens from now on (none: `forget`)."""
        tokens = frozenset(tokens)
        before = self.tokens_of.get(listener, frozenset())
        for token in before - tokens:
            members = self.listeners.get(token)
            if members is not None:
                members.discard(listener)
                if not members:
                    del self.listeners[token]
        for token in tokens - before:
            self.listeners.setdefault(token, weakref.WeakSet()).add(listener)
        if tokens:
            self.tokens_of[listener] = tokens
            self._start()
        else:
            self.tokens_of.pop(listener, None)

    def forget(self, listener: Listener) -> None:
        self.listen(listener, ())

    def registered(self) -> dict[int, int]:
        """Each token with how many listeners it has (tests, diagnostics)."""
        return {token: len(members) for token, members in self.listeners.items() if members}

    async def ready(self, timeout: float = READY_SECONDS) -> bool:
        """Wait (a little) until the subscription is in place: a tick published from then on is heard."""
        if self.redis_url is None:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self.subscribed.wait()
        except TimeoutError:
            return False
        return True

    def deliver(self, ticks: list[Tick]) -> None:
        """On the hub's loop: each listener gets the ticks of its tokens, in one call."""
        heard: dict[Listener, list[Tick]] = {}
        for tick in ticks:
            members = self.listeners.get(tick[0])
            if members:
                for listener in list(members):
                    heard.setdefault(listener, []).append(tick)
        for listener, its_ticks in heard.items():
            try:
                listener.ticks_heard(its_ticks)
            except Exception:
                logger.exception("A socket failed on its ticks")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def _start(self) -> None:
        if self.redis_url is not None and self.task is None:
            # The loop holds its tasks weakly: the hub keeps its own.
            self.task = self.loop.create_task(self._follow(), name="thor-tickhub")

    async def _follow(self) -> None:
        while self.redis_url is not None:
            # No retries inside redis-py: a lost connection comes here, is logged once, and catches up.
            client = redis.asyncio.from_url(self.redis_url, client_name=self.name, retry=Retry(NoBackoff(), 0))
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(caches.ticks_channel_key(self.redis_url))
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.deliver(batch_decode(message["data"]))
                        elif message["type"] == "subscribe":
                            await self._subscribed()
            except Exception as error:
                self.subscribed.clear()
                if not self.down:
                    self.down = True
                    logger.warning("Lost the ticks' subscription (%s); reconnecting", type(error).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
            await self.pause(RETRY_SECONDS)

    async def _subscribed(self) -> None:
        self.subscribed.set()
        if not self.down:
            return
        self.down = False
        logger.warning("The ticks' subscription is back")
        tokens = list(self.listeners)
        try:
            stored = await asyncio.to_thread(caches.last_prices_read, tokens)
        except Exception as error:
            _publish_down("Could not read the last prices after a reconnect: %s", type(error).__name__)
            return
        ticks = [_tick(token, entry["last_price"], float(entry["received_at"])) for token, entry in stored.items()]
        self.deliver([tick for tick in ticks if tick is not None])


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TickHub]" = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def tick_hub() -> TickHub:
    """The running loop's hub (made on first use)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            hub = _hubs[loop] = TickHub(loop, redis_url=_redis_url() if uses_redis() else None)
        return hub


def _hubs_running() -> list[TickHub]:
    with _hubs_lock:
        return [hub for loop, hub in _hubs.items() if loop.is_running() and not loop.is_closed()]


def _redis_url() -> str:
    return settings.CACHES["default"]["LOCATION"]
