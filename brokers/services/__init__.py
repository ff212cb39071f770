"""Writes of the brokers app: the broker-call guard and connection lifecycle, linking, postbacks."""

from brokers.services.connections import (
    broker_call,
    connection_mark_expired,
    connection_require_active,
    connection_revoke,
    kite_sessions_expire,
)
from brokers.services.egress import (
    connection_order_egress_set,
    order_egress_clear,
    order_egress_reprobe,
    order_egress_set,
)
from brokers.services.linking import (
    LINK_CODE_SECONDS,
    CallbackFailed,
    LinkAwaitsConfirmation,
    connection_link_confirm,
    connection_reconnect_start,
    kite_callback_complete,
    kite_tenant_app_connect_start,
    kite_user_app_connect_start,
)
from brokers.services.market_data import market_data_connect, schwab_market_data_connect
from brokers.services.postbacks import VerifiedPostback, kite_postback_verify
from brokers.services.schwab_linking import schwab_callback_complete, schwab_connect_start, schwab_state_consume
from brokers.services.tokens import connection_tokens_refresh

__all__ = [
    "LINK_CODE_SECONDS",
    "CallbackFailed",
    "LinkAwaitsConfirmation",
    "VerifiedPostback",
    "broker_call",
    "connection_link_confirm",
    "connection_mark_expired",
    "connection_order_egress_set",
    "connection_reconnect_start",
    "connection_require_active",
    "connection_revoke",
    "connection_tokens_refresh",
    "kite_callback_complete",
    "kite_postback_verify",
    "kite_sessions_expire",
    "kite_tenant_app_connect_start",
    "kite_user_app_connect_start",
    "market_data_connect",
    "order_egress_clear",
    "order_egress_reprobe",
    "order_egress_set",
    "schwab_callback_complete",
    "schwab_connect_start",
    "schwab_market_data_connect",
    "schwab_state_consume",
]
