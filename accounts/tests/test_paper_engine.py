import threading
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.checks import order_request_check
from accounts.models import TradingAccount
from accounts.orders import order_place
from brokers.adapters.types import OrderRequest
from identity.tests.factories import TenantFactory, UserFactory

PRICES = {("NSE", "INFY"): Decimal("1500.00"), ("NSE", "SBIN"): Decimal("800.00")}

orders = st.lists(
    st.tuples(
        st.sampled_from(["INFY", "SBIN"]),
        st.sampled_from(["BUY", "SELL"]),
        st.integers(min_value=1, max_value=80),
        st.sampled_from(["CNC", "MIS"]),
    ),
    min_size=1,
    max_size=15,
)


def _try_place(account, user, symbol, side, quantity, product):
    request = OrderRequest(
        symbol=symbol, exchange="NSE", side=side, quantity=Decimal(quantity), order_type="MARKET", product=product
    )
    order_request_check(request=request)
    try:
        order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=user)
    except Exception as error:  # rejected by a pre-trade check: nothing may have changed
        assert type(error).__name__ == "ValidationError", error


@pytest.mark.django_db
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
@given(sequence=orders)
def test_paper_invariants(alice, sequence):
    # A new user each example: order rows are never deleted, so an account cannot be emptied.
    alice = UserFactory(tenant=alice.tenant)
    account = TradingAccount.objects.get(user=alice, is_primary=True)
    bought = {}
    for symbol, side, quantity, product in sequence:
        _try_place(account, alice, symbol, side, quantity, product)
    account.refresh_from_db()
    positions = list(account.paper_positions.all())

    # Cash never goes negative, and CNC positions never go short.
    assert account.cash >= 0
    assert all(p.quantity >= 0 for p in positions if p.product == "CNC")
    # At a constant price without slippage, cash + market value is conserved.
    market_value = sum(p.quantity * PRICES[(p.exchange, p.symbol)] for p in positions)
    assert account.cash + market_value == Decimal("100000.00")
    # Quantity is conserved: each position is the net of its filled orders.
    for order in account.orders.filter(status="COMPLETE"):
        key = (order.symbol, order.product)
        bought[key] = bought.get(key, 0) + (order.quantity if order.side == "BUY" else -order.quantity)
    assert {(p.symbol, p.product): p.quantity for p in positions if p.quantity} == {
        k: v for k, v in bought.items() if v
    }
    # No realised P&L at one constant price.
    assert all(p.realised_pnl == 0 for p in positions)


@pytest.mark.django_db
def test_round_trip_realises_pnl(alice, fixed_prices):
    account = TradingAccount.objects.get(user=alice, is_primary=True)
    _try_place(account, alice, "INFY", "BUY", 10, "CNC")
    fixed_prices["NSE:INFY"] = "1550.00"
    _try_place(account, alice, "INFY", "SELL", 4, "CNC")
    position = account.paper_positions.get()
    account.refresh_from_db()

    assert position.quantity == 6 and position.average_price == Decimal("1500")
    assert position.realised_pnl == Decimal("200.00")
    assert account.cash == Decimal("100000.00") - Decimal("15000.00") + Decimal("6200.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_never_overspend():
    user = UserFactory(tenant=TenantFactory(slug="concurrent", currency="INR"))
    account = TradingAccount.objects.get(user=user)
    errors = []

    def worker():
        try:
            # 8 x 15000: only 6 fit in 100000.
            _try_place(account, user, "INFY", "BUY", 10, "CNC")
        except AssertionError as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    account.refresh_from_db()
    assert not errors
    assert account.orders.filter(status="COMPLETE").count() == 6
    assert account.cash == Decimal("10000.00")
    assert account.paper_positions.get().quantity == 60
