from celery import shared_task

from identity.refresh import refresh_rotations_purge
from identity.sessions import revoked_sessions_purge


@shared_task(name="identity.tasks.purge_revoked_sessions", ignore_result=True)
def purge_revoked_sessions() -> int:
    return revoked_sessions_purge()


@shared_task(name="identity.tasks.purge_refresh_rotations", ignore_result=True)
def purge_refresh_rotations() -> int:
    return refresh_rotations_purge()
