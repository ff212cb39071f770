import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from thor import scheduler
from thor.celery import app

ticks: list[str] = []


@app.task(name="thor.tests.record_tick")
def record_tick(label):
    ticks.append(label)


@pytest.fixture(autouse=True)
def _no_ticks():
    ticks.clear()


@pytest.fixture
def schedule(settings):
    settings.CELERY_BEAT_SCHEDULE = {
        "every-minute": {"task": "thor.tests.record_tick", "schedule": timedelta(minutes=1), "args": ("minute",)},
        "hourly": {"task": "thor.tests.record_tick", "schedule": timedelta(hours=1), "args": ("hour",)},
    }


class TestRunDueTasks:
    def test_applies_the_registered_task_of_each_due_entry_only(self, schedule):
        two_minutes_ago = timezone.now() - timedelta(minutes=2)
        last_run = {"every-minute": two_minutes_ago, "hourly": two_minutes_ago}

        applied = scheduler.run_due_tasks(app, last_run)

        assert applied == ["every-minute"]
        assert ticks == ["minute"]
        assert last_run["every-minute"] > two_minutes_ago
        assert last_run["hourly"] == two_minutes_ago

    def test_a_new_entry_starts_its_clock_instead_of_running_at_once(self, schedule):
        last_run = {}

        assert scheduler.run_due_tasks(app, last_run) == []
        assert set(last_run) == {"every-minute", "hourly"}

    def test_a_failing_task_is_logged_and_the_pass_goes_on(self, settings, caplog):
        long_ago = timezone.now() - timedelta(days=1)
        settings.CELERY_BEAT_SCHEDULE = {
            "missing": {"task": "thor.tests.not_registered", "schedule": timedelta(minutes=1)},
            "tick": {"task": "thor.tests.record_tick", "schedule": timedelta(minutes=1), "args": ("after",)},
        }

        applied = scheduler.run_due_tasks(app, {"missing": long_ago, "tick": long_ago})

        assert applied == ["missing", "tick"]
        assert ticks == ["after"]
        assert "Scheduled task thor.tests.not_registered failed" in caplog.text


class TestStartEmbeddedScheduler:
    def test_is_a_no_op_outside_the_embedded_mode(self, settings, monkeypatch):
        settings.THOR_EMBEDDED_SCHEDULER = False
        monkeypatch.setattr(scheduler, "_started", threading.Event())

        assert scheduler.start_embedded_scheduler() is False
        assert not any(thread.name == "thor-beat" for thread in threading.enumerate())

    def test_starts_one_thread_per_process(self, settings, monkeypatch):
        settings.THOR_EMBEDDED_SCHEDULER = True
        monkeypatch.setattr(scheduler, "_started", threading.Event())
        started = []
        # The loop itself never returns; what is under test is that it is started once.
        monkeypatch.setattr(scheduler, "_run_forever", lambda celery_app, poll_seconds: started.append(celery_app))

        first = scheduler.start_embedded_scheduler()
        second = scheduler.start_embedded_scheduler()

        assert (first, second) == (True, False)
        for thread in threading.enumerate():
            if thread.name == "thor-beat":
                thread.join(1)
        assert started == [app]
