"""Kite postbacks: who signed one, and what it says, as a neutral order update.

Applying the update to an order is the accounts app's (one path for every order change); this module
only proves which connections the postback may speak for and parses it.
"""

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from brokers.adapters.kite import postback_checksum
from brokers.adapters.types import OrderResult
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from thor.errors import ApplicationError


@dataclass(frozen=True)
class VerifiedPostback:
    """A postback whose checksum one of these connections' app signed; `result` is what it says."""

    connections: list[BrokerConnection]
    result: OrderResult


def _checksum_matches(update: Mapping, app: BrokerApp) -> bool:
    expected = postback_checksum(
        order_id=update["order_id"], order_timestamp=update["order_timestamp"], api_secret=app.api_secret
    )
    return hmac.compare_digest(expected.encode(), update["checksum"].encode())


def _result(update: Mapping, payload: Mapping) -> OrderResult:
    return OrderResult(
        broker_order_id=update["order_id"],
        status=update["status"],
        symbol=update["tradingsymbol"],
        exchange=update["exchange"],
        side=update["transaction_type"],
        quantity=update["quantity"],
        filled_quantity=update["filled_quantity"],
        average_price=update["average_price"] or None,
        price=update["price"] or None,
        trigger_price=update["trigger_price"] or None,
        order_type=update["order_type"],
        product=update["product"],
        validity=update["validity"],
        tag=update["tag"],
        status_message=update["status_message"],
        # The body as received, minus the signature: kept on the order and in its audit.
        raw={key: value for key, value in payload.items() if key != "checksum"},
    )


def kite_postback_verify(*, update: Mapping, payload: Mapping) -> VerifiedPostback:
    """The Kite connections of the postback's user whose app signed it; raises 400 on a forgery.

    `update` holds the validated fields, `payload` the body as received. Only an app's secret can sign,
    so a postback can only ever touch orders of accounts linked through the app that signed it.
    """
    candidates = BrokerConnection.objects.filter(
        app__kind=BrokerKind.KITE, broker_user_id=update["user_id"]
    ).select_related("app")
    signed = [connection for connection in candidates.order_by("id") if _checksum_matches(update, connection.app)]
    if not signed:
        raise ApplicationError("Postback checksum does not match.", code="checksum_invalid")
    return VerifiedPostback(connections=signed, result=_result(update, payload))
