from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from accounts.models import Order, TradingAccount
from brokers.models import BrokerApp, BrokerConnection, BrokerKind

KITE_SECRET = "kitesecret0123456789"


class BrokerAppFactory(factory.django.DjangoModelFactory):
    """A tenant's shared Kite app."""

    class Meta:
        model = BrokerApp

    kind = BrokerKind.KITE
    name = "Acme Kite"
    api_key = factory.Sequence(lambda n: f"kiteapikey{n:04d}")
    api_secret = KITE_SECRET
    tenant = None


class BrokerConnectionFactory(factory.django.DjangoModelFactory[BrokerConnection]):
    """An active Kite connection with a session until tomorrow."""

    class Meta:
        model = BrokerConnection

    user = None
    app = factory.LazyAttribute(lambda c: BrokerAppFactory(tenant=c.user.tenant))
    status = BrokerConnection.Status.ACTIVE
    broker_user_id = factory.Sequence(lambda n: f"ZX{n:04d}")
    access_token = factory.Sequence(lambda n: f"access-token-{n}")
    access_expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=12))


def linked_kite_account(user, **connection_fields) -> TradingAccount:
    """What a finished Kite login leaves behind: a connection and its live account."""
    connection = BrokerConnectionFactory.create(user=user, **connection_fields)
    return TradingAccount.objects.create(
        user=user,
        mode=TradingAccount.Mode.LIVE,
        connection=connection,
        broker_account_id=connection.broker_user_id,
        display_name=f"Zerodha {connection.broker_user_id}",
        currency="INR",
    )


def order(account: TradingAccount, status: str, n: int, **fields) -> Order:
    """The account's order number `n`, in `status` (any string: NEEDS_REVIEW before the model names it); `fields`
    set any other column."""
    return Order.objects.create(
        **{
            "account": account,
            "client_order_id": f"thor-{account.pk}-{n}",
            "symbol": "INFY",
            "exchange": "NSE",
            "side": "BUY",
            "quantity": Decimal("1"),
            "order_type": "LIMIT",
            "product": "CNC",
            "price": Decimal("1500"),
            "status": status,
            **fields,
        }
    )
