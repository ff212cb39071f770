from django.apps import AppConfig


class ThorConfig(AppConfig):
    name = "thor"

    def ready(self):
        from thor import checks  # noqa: F401  (registers the deploy checks)
