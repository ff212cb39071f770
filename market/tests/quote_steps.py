"""What the quote service's tests share: a clock that moves only when the test says so, and many askers at once."""

import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import connection as db_connection

Answer = TypeVar("Answer")


class Clock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def asked_at_once(ask: Callable[[], Answer], askers: int) -> tuple[list[Answer], list[Exception]]:
    """`ask` in `askers` threads let go together: their answers, and the errors raised in them (reported to the
    test, not lost in the thread). Each thread closes its own database connection."""
    barrier = threading.Barrier(askers)
    answers: list[Answer] = []
    errors: list[Exception] = []

    def one() -> None:
        try:
            barrier.wait()
            answers.append(ask())
        except Exception as error:
            errors.append(error)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=one) for _ in range(askers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers, errors
