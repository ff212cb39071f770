from celery import shared_task

from brokers.services import kite_sessions_expire


@shared_task
def expire_kite_sessions() -> int:
    """Kite sessions die at 06:00 IST; the beat schedule runs this just after."""
    return kite_sessions_expire()
