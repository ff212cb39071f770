"""System checks: what Django's own checks cannot know about Thor (the first for `check --deploy` only)."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def development_secret_key_check(app_configs, **kwargs):
    # Django's security.W009 passes this key (long and varied); it is still public, being in settings.py.
    if settings.SECRET_KEY == settings.DEVELOPMENT_SECRET_KEY:
        return [
            Error(
                "SECRET_KEY is the public development key from thor/settings.py: anyone can forge sessions "
                "and JWTs for this deployment.",
                hint="Set SECRET_KEY in the environment to a fresh random value of at least 50 characters.",
                id="thor.E001",
            )
        ]
    return []


@register()
def early_reads_check(app_configs, **kwargs):
    from thor.early_reads import closed_because

    reason = closed_because()
    if reason is None or not settings.THOR_EARLY_READS:
        return []
    return [
        Warning(
            f"Cached reads are not answered before Django's handler under granian: {reason}.",
            hint="Teach thor.early_reads what the change does (REPLAYED in thor/early_reads.py), or set "
            "THOR_EARLY_READS=false to say the slower path is meant.",
            id="thor.W001",
        )
    ]
