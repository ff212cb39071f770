from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "identity"

    def ready(self):
        from identity import authentication, refresh, signals  # noqa: F401  (their receivers)
