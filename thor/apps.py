from django.apps import AppConfig


class ThorConfig(AppConfig):
    name = "thor"
