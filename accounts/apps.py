from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        from accounts import caches, receivers  # noqa: F401  (their receivers)
        from accounts.broker_health import PRICE_BANDS_WATCH, connection_attention_orders
        from brokers.health import order_counter_register, price_bands_register

        # brokers shows each connection's orders that need someone, and whether their price bands are checked
        # (brokers.health says why a registry).
        order_counter_register(connection_attention_orders)
        price_bands_register(PRICE_BANDS_WATCH)
