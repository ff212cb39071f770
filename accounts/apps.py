from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        from accounts import read_cache, receivers  # noqa: F401  (their receivers)
