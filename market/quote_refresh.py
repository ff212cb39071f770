"""Quotes asked for again ahead of need, off the request that noticed they are ageing.

An order's price band (accounts.price_bands) may be checked against a kept quote up to
THOR_PRICE_BAND_QUOTE_SECONDS old, and asks the broker inline once its kept quote is older than that. A trader
placing orders on an instrument every second or so would then wait for that call every other order. So when a
banded ask is served a kept quote past its feed's fresh period (`Patience(refresh_ahead=True)`), the service
hands the names here, and one thread of this process asks for them again, under the connection's lock
(single flight with every other process) and its budget, without waiting for either: the next order finds a
quote young enough and waits for nothing. An order that finds none (the first on an instrument, or after a
quiet spell) still asks inline, as before.

What is pending is bounded (THOR_QUOTE_REFRESH_PENDING names) and each name is pending once; a refresh that fails
changes nothing (the next banded ask asks inline, as without this module). The thread is started on the first
ask in each process (again in a forked child) and holds its own database connection, closed after each refresh.
"""

import logging
import os
import queue
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connections

logger = logging.getLogger("market.quote_refresh")

Refresh = Callable[[list[str]], object]  # asks for these names again (a QuoteService method, bound)

_state: dict = {}  # pid -> the queue, the pending names and the thread of this process
_state_lock = threading.Lock()


def refresh_ahead(scope: str, names: list[str], refresh: Refresh) -> None:
    """Ask `refresh(names)` soon on this process's refresher thread; names already pending in `scope` are not asked
    twice. Never raises, never waits."""
    jobs, pending = _refresher()
    with _state_lock:
        fresh = [name for name in names if (scope, name) not in pending]
        if not fresh or len(pending) + len(fresh) > settings.THOR_QUOTE_REFRESH_PENDING:
            return
        pending.update((scope, name) for name in fresh)
    jobs.put((scope, fresh, refresh))


def refresh_wait(timeout: float = 5.0) -> bool:
    """Wait until every refresh asked so far in this process has run (tests; a process about to stop)."""
    state = _state.get(os.getpid())
    if state is None:
        return True
    done = threading.Event()
    state["jobs"].put(done)
    return done.wait(timeout)


def _refresher() -> tuple[queue.SimpleQueue, set[tuple[str, str]]]:
    with _state_lock:
        state = _state.get(os.getpid())
        if state is None:
            _state.clear()  # a forked child does not inherit its parent's thread
            state = {"jobs": queue.SimpleQueue(), "pending": set()}
            threading.Thread(
                target=_run, args=(state["jobs"], state["pending"]), name="thor-quote-refresh", daemon=True
            ).start()
            _state[os.getpid()] = state
        return state["jobs"], state["pending"]


def _run(jobs: queue.SimpleQueue, pending: set[tuple[str, str]]) -> None:
    while True:
        job = jobs.get()
        if isinstance(job, threading.Event):
            job.set()
            continue
        scope, names, refresh = job
        try:
            refresh(names)
        except Exception as error:
            # The next banded ask asks inline: nothing is lost. The type only: a message may carry a URL.
            logger.info("Refreshing the quotes of %s in %s failed: %s", names, scope, type(error).__name__)
        finally:
            with _state_lock:
                pending.difference_update((scope, name) for name in names)
            _connections_close()


def _connections_close() -> None:
    # The thread outlives every request: a connection it kept would sit idle (or out of the pool) for good. A close
    # that fails must not end the thread.
    try:
        connections.close_all()
    except Exception as error:
        logger.info("Closing the quote refresher's database connection failed: %s", type(error).__name__)
