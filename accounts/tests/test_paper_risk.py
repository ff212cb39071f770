"""Paper risk that holds (issue 8, findings 2, 3 and 6): orders are valued at the price they fill at, short
sales are margined and their proceeds are no buying power, tenant limits see the same value, and a paper
account trades only its own currency."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Order, TradingAccount
from accounts.orders import order_place
from accounts.selectors import funds_get
from accounts.tests.conftest import place
from brokers.adapters.types import OrderRequest
from identity.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

START = Decimal("100000.00")


def buying_power(account) -> Decimal:
    return funds_get(account=account).data.buying_power


def primary(user) -> TradingAccount:
    return TradingAccount.objects.get(user=user, is_primary=True)


class TestMarketableLimits:
    def test_a_sell_far_below_the_market_cannot_conjure_buying_power(self, alice_client, alice):
        """SELL 1,000,000 INFY LIMIT 0.05 MIS used to fill at the market and credit 1.5 billion."""
        response = place(
            alice_client, transaction_type="SELL", quantity=1_000_000, order_type="LIMIT", price="0.05", product="MIS"
        )

        assert response.status_code == 400, response.json()
        assert "Insufficient buying power" in response.json()["errors"]["quantity"][0]
        account = primary(alice)
        assert account.cash == START and not account.orders.exists()

    def test_a_short_holds_margin_and_its_proceeds_are_not_buying_power(self, alice_client, alice, tenant):
        tenant.paper_margin_rates = {"MIS": "0.25"}
        tenant.save()

        response = place(alice_client, transaction_type="SELL", quantity=10, product="MIS")

        assert response.status_code == 201 and response.json()["status"] == "COMPLETE"
        account = primary(alice)
        assert account.cash == START + Decimal("15000.00")  # the proceeds are in cash, and owed back
        assert buying_power(account) == START - Decimal("3750.00")  # 25% of 15,000 is held

    def test_a_buy_limit_above_the_market_is_valued_at_the_market_it_fills_at(self, alice_client, alice):
        # 66 x 1500 = 99,000 fits; at its limit of 2000 it would not (132,000).
        response = place(alice_client, quantity=66, order_type="LIMIT", price="2000.00")

        assert response.status_code == 201, response.json()
        assert response.json()["status"] == "COMPLETE" and response.json()["average_price"] == "1500.0000"


class TestTenantLimits:
    def test_max_order_value_sees_the_fill_price_not_the_limit(self, alice_client, alice, tenant):
        tenant.max_order_value = Decimal("50000.00")
        tenant.save()

        response = place(
            alice_client, transaction_type="SELL", quantity=100, order_type="LIMIT", price="0.05", product="MIS"
        )

        assert response.status_code == 400
        assert "exceeds the limit" in response.json()["errors"]["quantity"][0]

    def test_a_live_sell_without_a_market_price_is_not_valued_at_its_limit(self, alice, tenant):
        from accounts.checks import order_value_price

        request = OrderRequest(
            symbol="INFY", exchange="NSE", side="SELL", quantity=Decimal(100), order_type="LIMIT", product="MIS"
        )
        request = OrderRequest(**{**request.__dict__, "price": Decimal("0.05")})

        assert order_value_price(request=request, last_price=None) is None
        assert order_value_price(request=request, last_price=Decimal("1500")) == Decimal("1500")


class TestCurrencies:
    def test_an_order_in_another_currency_is_a_400_naming_both(self, alice_client, alice):
        response = place(alice_client, tradingsymbol="AAPL", exchange="NASDAQ", quantity=1)

        assert response.status_code == 400
        message = response.json()["errors"]["exchange"][0]
        assert "USD" in message and "INR" in message
        assert not Order.objects.exists()

    def test_a_user_opens_a_paper_account_per_offered_currency(self, alice_client, alice):
        response = alice_client.post("/api/accounts", {"currency": "USD"}, format="json")

        assert response.status_code == 201, response.json()
        usd = response.json()
        assert (usd["mode"], usd["currency"], usd["primary"]) == ("paper", "USD", False)
        bought = place(alice_client, account=str(usd["id"]), tradingsymbol="AAPL", exchange="NASDAQ", quantity=1)
        assert bought.status_code == 201 and bought.json()["status"] == "COMPLETE"
        assert TradingAccount.objects.get(pk=usd["id"]).cash == Decimal("100000.00") - Decimal("230.00")

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            ({"currency": "INR"}, 409, "paper_account_exists"),
            ({"currency": "EUR"}, 400, "currency_not_offered"),
            ({"currency": "usd"}, 400, "validation_error"),
            ({"currency": ["USD"]}, 400, "validation_error"),
            ({}, 400, "validation_error"),
        ],
    )
    def test_bad_or_repeated_currencies_are_refused(self, alice_client, body, status, code):
        response = alice_client.post("/api/accounts", body, format="json")

        assert (response.status_code, response.json()["code"]) == (status, code)

    def test_anonymous_callers_open_nothing(self, anon_client):
        assert anon_client.post("/api/accounts", {"currency": "USD"}, format="json").status_code == 401


orders = st.lists(
    st.tuples(
        st.sampled_from(["INFY", "SBIN"]),
        st.sampled_from(["BUY", "SELL"]),
        st.integers(min_value=1, max_value=400),
        st.sampled_from(["MARKET", "LIMIT"]),
        st.sampled_from(["0.05", "1", "100000"]),
        st.sampled_from(["CNC", "MIS"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
@given(sequence=orders)
def test_no_sequence_of_orders_raises_buying_power_above_cash_plus_realised_pnl(alice, fixed_prices, sequence):
    """Whatever a user sends (marketable limits far from the market, shorts, covers), buying power never
    exceeds the starting cash plus the realised P&L: nothing is bought with money that is not there."""
    # A new user each example: order rows are never deleted, so an account cannot be emptied.
    alice = UserFactory(tenant=alice.tenant)
    account = primary(alice)
    for symbol, side, quantity, order_type, price, product in sequence:
        request = OrderRequest(
            symbol=symbol,
            exchange="NSE",
            side=side,
            quantity=Decimal(quantity),
            order_type=order_type,
            product=product,
            price=Decimal(price) if order_type == "LIMIT" else None,
        )
        try:
            order_place(account=account, request=request, idempotency_key=None, fingerprint="", actor=alice)
        except Exception as error:
            assert type(error).__name__ == "ValidationError", error
        account.refresh_from_db()
        realised = sum((p.realised_pnl for p in account.paper_positions.all()), Decimal("0"))
        assert buying_power(account) <= START + realised
        assert account.cash >= 0
