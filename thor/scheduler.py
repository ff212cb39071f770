"""The beat schedule on a thread, for the embedded mode only.

A real deployment runs `celery beat`; `make run` has no broker, so this thread asks the same
schedule entries whether they are due and applies the tasks in-process.
"""

import logging
import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

logger = logging.getLogger("thor.scheduler")
_started = threading.Event()


def run_due_tasks(celery_app, last_run: dict[str, datetime]) -> list[str]:
    """One pass over the beat schedule: apply every due task in-process and note when it ran.

    `last_run` maps entry names to their last run; an entry missing from it starts its clock now.
    Returns the names of the entries applied.
    """
    applied = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        if not _is_due(entry["schedule"], last_run.setdefault(name, timezone.now())):
            continue
        last_run[name] = timezone.now()
        applied.append(name)
        try:
            celery_app.tasks[entry["task"]].apply(args=entry.get("args", ()), kwargs=entry.get("kwargs", {}))
        except Exception:
            logger.exception("Scheduled task %s failed", entry["task"])
    return applied


def _run_forever(celery_app, poll_seconds):
    last_run: dict[str, datetime] = {}
    while True:
        run_due_tasks(celery_app, last_run)
        # A thread that lives for the whole process must drop stale connections as a request does.
        close_old_connections()
        time.sleep(poll_seconds)


def _is_due(schedule, last_run_at):
    from celery.schedules import schedule as interval

    if not hasattr(schedule, "is_due"):
        schedule = interval(schedule)
    return schedule.is_due(last_run_at).is_due


def start_embedded_scheduler(poll_seconds=1.0):
    """Start the scheduler thread once per process; a no-op outside the embedded mode."""
    if not settings.THOR_EMBEDDED_SCHEDULER or _started.is_set():
        return False
    from thor.celery import app

    _started.set()
    app.loader.import_default_modules()
    threading.Thread(target=_run_forever, args=(app, poll_seconds), name="thor-beat", daemon=True).start()
    logger.info("Embedded scheduler started with %d entries", len(settings.CELERY_BEAT_SCHEDULE))
    return True
