from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        from accounts import caches, receivers  # noqa: F401  (their receivers)
        from accounts.broker_health import connection_attention_orders
        from brokers.health import order_counter_register

        # brokers shows each connection's orders that need someone (brokers.health says why a registry).
        order_counter_register(connection_attention_orders)
