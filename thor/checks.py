"""System checks: what Django's own checks cannot know about Thor (for `check --deploy`)."""

from django.conf import settings
from django.core.checks import Error, Tags, register


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
