from django.apps import AppConfig


class BrokersConfig(AppConfig):
    name = "brokers"

    def ready(self):
        from brokers import metrics

        metrics.register()
