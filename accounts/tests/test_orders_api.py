from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Order, OrderEvent, PaperPosition, TradingAccount
from accounts.paper import paper_orders_match
from accounts.tests.conftest import order_body, place
from identity.models import User
from market.tests.fixtures import NIFTY_FUTURE, NIFTY_LOT

pytestmark = pytest.mark.django_db


def account_of(user):
    return TradingAccount.objects.get(user=user, is_primary=True)


class TestPlace:
    def test_market_buy_fills_at_the_price_and_moves_cash(self, alice_client, alice):
        response = place(alice_client)

        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["status"] == "COMPLETE"
        assert Decimal(body["average_price"]) == Decimal("1500")
        assert body["tradingsymbol"] == "INFY" and body["transaction_type"] == "BUY"
        assert len(body["client_order_id"]) <= 20
        assert account_of(alice).cash == Decimal("85000.00")
        position = PaperPosition.objects.get(account=account_of(alice))
        assert position.quantity == 10 and position.average_price == Decimal("1500")
        assert list(OrderEvent.objects.filter(order_id=body["id"]).values_list("kind", flat=True)) == [
            "placed",
            "filled",
        ]

    def test_market_buy_pays_slippage_on_the_tick(self, alice_client, settings):
        settings.THOR_PAPER_SLIPPAGE_BPS = 10

        response = place(alice_client)

        assert Decimal(response.json()["average_price"]) == Decimal("1501.50")

    def test_limit_order_rests_then_fills_when_the_price_crosses(self, alice_client, alice, fixed_prices):
        response = place(alice_client, order_type="LIMIT", price="1490.00")
        assert response.status_code == 201
        assert response.json()["status"] == "OPEN"

        assert paper_orders_match() == 0
        fixed_prices["NSE:INFY"] = "1489.50"
        assert paper_orders_match() == 1

        order = Order.objects.get(pk=response.json()["id"])
        assert order.status == "COMPLETE" and order.average_price == Decimal("1489.50")

    def test_stop_loss_market_triggers(self, alice_client, fixed_prices):
        place(alice_client, quantity=5)
        response = place(alice_client, transaction_type="SELL", order_type="SL-M", trigger_price="1450.00", quantity=5)
        assert response.json()["status"] == "TRIGGER PENDING"

        fixed_prices["NSE:INFY"] = "1440.00"
        paper_orders_match()

        order = Order.objects.get(pk=response.json()["id"])
        assert order.status == "COMPLETE" and order.average_price == Decimal("1440.00")
        assert PaperPosition.objects.get(account=order.account).realised_pnl == Decimal("-300.00")

    def test_stop_loss_limit_triggers_then_rests_as_limit(self, alice_client, fixed_prices):
        response = place(alice_client, order_type="SL", trigger_price="1510.00", price="1505.00")
        assert response.json()["status"] == "TRIGGER PENDING"
        fixed_prices["NSE:INFY"] = "1512.00"
        paper_orders_match()
        assert Order.objects.get(pk=response.json()["id"]).status == "OPEN"
        fixed_prices["NSE:INFY"] = "1504.00"
        paper_orders_match()
        assert Order.objects.get(pk=response.json()["id"]).status == "COMPLETE"

    def test_day_order_expires_after_the_session(self, alice_client):
        response = place(alice_client, order_type="LIMIT", price="1000.00")
        order = Order.objects.get(pk=response.json()["id"])

        paper_orders_match(now=order.created_at + __import__("datetime").timedelta(days=2))

        order.refresh_from_db()
        assert order.status == "EXPIRED"

    def test_cnc_sell_without_position_is_rejected(self, alice_client):
        response = place(alice_client, transaction_type="SELL")

        assert response.status_code == 400
        assert "quantity" in response.json()["errors"]
        assert not Order.objects.exists()

    def test_buy_beyond_buying_power_is_rejected(self, alice_client):
        response = place(alice_client, quantity=100)

        assert response.status_code == 400
        assert "Insufficient buying power" in response.json()["errors"]["quantity"][0]

    def test_primary_alias_and_numeric_id_with_and_without_slash(self, alice_client, alice):
        account = account_of(alice)
        response = alice_client.post(f"/api/accounts/{account.pk}/orders/", order_body(), format="json")
        assert response.status_code == 201
        assert alice_client.get("/api/accounts/primary/orders/").json()["results"][0]["id"] == response.json()["id"]


class TestWhoPlaces:
    def test_a_user_disabled_behind_the_caches_back_places_nothing(self, alice_client, alice):
        assert alice_client.get("/api/accounts/primary/orders").status_code == 200  # the user now cached
        User.objects.filter(pk=alice.pk).update(is_active=False)  # a bulk update: no cache flush

        response = place(alice_client)

        assert response.status_code == 401 and response.json()["code"] == "user_inactive"
        assert not Order.objects.exists()

    def test_a_placement_loads_no_user_of_its_own(self, alice_client):
        assert alice_client.get("/api/accounts/primary/orders").status_code == 200
        with CaptureQueriesContext(connection) as queries:
            assert place(alice_client).status_code == 201
        assert not [query for query in queries if 'FROM "identity_user"' in query["sql"].split("WHERE")[0]]


class TestPreTradeChecks:
    @pytest.mark.parametrize(
        "overrides, field",
        [
            ({"quantity": -5}, "quantity"),
            ({"quantity": 0}, "quantity"),
            ({"quantity": "ten"}, "quantity"),
            ({"quantity": 1.5}, "quantity"),
            ({"exchange": "XNYS"}, "exchange"),
            ({"tradingsymbol": "NIFTY99JANFUT", "exchange": "NFO", "product": "NRML"}, "tradingsymbol"),
            ({"tradingsymbol": NIFTY_FUTURE, "exchange": "NFO", "product": "NRML", "quantity": 10}, "quantity"),
            ({"order_type": "LIMIT", "price": "1500.03"}, "price"),
            ({"order_type": "LIMIT"}, "price"),
            ({"order_type": "LIMIT", "price": "NaN"}, "price"),
            ({"order_type": "LIMIT", "price": "Infinity"}, "price"),
            ({"order_type": "LIMIT", "price": "-1"}, "price"),
            ({"order_type": "SL-M"}, "trigger_price"),
            ({"product": "NRML"}, "product"),
            (
                {
                    "tradingsymbol": NIFTY_FUTURE,
                    "exchange": "NFO",
                    "product": "NRML",
                    "quantity": NIFTY_LOT,
                    "order_type": "SL-M",
                    "trigger_price": "24100",
                },
                "order_type",
            ),
            ({"transaction_type": "HOLD"}, "transaction_type"),
            ({"validity": "GTC"}, "validity"),
            ({"tag": "x" * 21}, "tag"),
            ({"tradingsymbol": ["INFY"]}, "tradingsymbol"),
        ],
    )
    def test_bad_field_is_named(self, alice_client, instrument_master, overrides, field):
        response = place(alice_client, **overrides)

        assert response.status_code == 400, response.json()
        assert field in response.json()["errors"], response.json()
        assert not Order.objects.exists()

    def test_lot_multiple_is_accepted(self, alice_client, alice, instrument_master):
        account = account_of(alice)
        account.cash = Decimal("10000000")
        account.save()
        response = place(
            alice_client, tradingsymbol=NIFTY_FUTURE, exchange="NFO", product="NRML", quantity=2 * NIFTY_LOT
        )
        assert response.status_code == 201, response.json()

    @pytest.mark.parametrize(
        "raw",
        ["{not json", "[]", '"string"', "null", '{"quantity": NaN}', '{"price": Infinity}'],
    )
    def test_garbage_json(self, alice_client, raw):
        response = alice_client.post("/api/accounts/primary/orders", raw, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["status_code"] == 400

    def test_ten_megabyte_body(self, alice_client):
        raw = '{"tag": "' + "x" * (10 * 1024 * 1024) + '"}'
        response = alice_client.post("/api/accounts/primary/orders", raw, content_type="application/json")
        assert response.status_code in (400, 413)
        assert response.json()["status_code"] == response.status_code

    def test_tenant_max_order_value(self, alice_client, tenant):
        tenant.max_order_value = Decimal("10000")
        tenant.save()
        response = place(alice_client)
        assert response.status_code == 400
        assert "exceeds the limit" in response.json()["errors"]["quantity"][0]

    def test_tenant_max_open_orders(self, alice_client, tenant):
        tenant.max_open_orders = 1
        tenant.save()
        assert place(alice_client, order_type="LIMIT", price="1000.00").status_code == 201
        response = place(alice_client, order_type="LIMIT", price="1000.00")
        assert response.status_code == 400
        assert "non_field_errors" in response.json()["errors"]

    def test_tenant_kill_switch(self, alice_client, tenant):
        tenant.trading_enabled = False
        tenant.save()
        response = place(alice_client)
        assert response.status_code == 403
        assert response.json()["code"] == "trading_disabled"

    def test_orders_are_throttled_per_user(self, alice_client, bob_client, settings):
        settings.THOR_THROTTLE_RATES = {**settings.THOR_THROTTLE_RATES, "orders": "2/min"}
        codes = [place(alice_client, order_type="LIMIT", price="1000.00").status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        assert place(bob_client, order_type="LIMIT", price="1000.00").status_code == 201


class TestModifyCancel:
    def test_modify_price_and_fill(self, alice_client):
        order_id = place(alice_client, order_type="LIMIT", price="1400.00").json()["id"]

        response = alice_client.patch(f"/api/accounts/primary/orders/{order_id}", {"price": "1500.00"}, format="json")

        assert response.status_code == 200, response.json()
        assert response.json()["status"] == "COMPLETE"
        kinds = list(OrderEvent.objects.filter(order_id=order_id).values_list("kind", flat=True))
        assert kinds == ["placed", "accepted", "modified", "filled"]

    def test_modify_checks_like_a_new_order(self, alice_client):
        order_id = place(alice_client, order_type="LIMIT", price="1400.00").json()["id"]
        response = alice_client.patch(f"/api/accounts/primary/orders/{order_id}", {"price": "1400.01"}, format="json")
        assert response.status_code == 400 and "price" in response.json()["errors"]
        response = alice_client.patch(f"/api/accounts/primary/orders/{order_id}", {}, format="json")
        assert response.status_code == 400

    def test_cancel_then_cancel_again(self, alice_client):
        order_id = place(alice_client, order_type="LIMIT", price="1400.00").json()["id"]

        first = alice_client.delete(f"/api/accounts/primary/orders/{order_id}")
        second = alice_client.delete(f"/api/accounts/primary/orders/{order_id}")

        assert first.status_code == 200 and first.json()["status"] == "CANCELLED"
        assert second.status_code == 409 and second.json()["code"] == "order_not_open"

    def test_cancelled_order_frees_its_cash(self, alice_client):
        order_id = place(alice_client, order_type="LIMIT", price="1400.00", quantity=60).json()["id"]
        assert alice_client.get("/api/accounts/primary/funds").json()["data"]["available"] == "16000.00"
        alice_client.delete(f"/api/accounts/primary/orders/{order_id}")
        assert alice_client.get("/api/accounts/primary/funds").json()["data"]["available"] == "100000.00"


class TestOrderList:
    def test_filters_and_cursor_pagination(self, alice_client):
        for _ in range(3):
            place(alice_client, order_type="LIMIT", price="1000.00", quantity=1)
        place(alice_client, tradingsymbol="SBIN", quantity=1)

        page = alice_client.get("/api/accounts/primary/orders?limit=2").json()
        assert len(page["results"]) == 2 and page["next"]
        rest = alice_client.get(page["next"]).json()
        assert len(rest["results"]) == 2 and rest["next"] is None
        open_orders = alice_client.get("/api/accounts/primary/orders?status=OPEN").json()
        assert len(open_orders["results"]) == 3, open_orders
        assert len(alice_client.get("/api/accounts/primary/orders?symbol=SBIN&side=BUY").json()["results"]) == 1
        old = alice_client.get("/api/accounts/primary/orders?from=2000-01-01T00:00:00Z&to=2001-01-01T00:00:00Z").json()
        assert old["results"] == [], old
        assert alice_client.get("/api/accounts/primary/orders?status=NOPE").status_code == 400
        assert alice_client.get("/api/accounts/primary/orders?from=yesterday").status_code == 400

    def test_the_schema_documents_the_page_it_answers(self, alice_client, openapi_schema):
        place(alice_client)
        schema = openapi_schema
        ok = schema["paths"]["/api/accounts/{account_id}/orders/"]["get"]["responses"]["200"]
        documented = schema["components"]["schemas"][ok["content"]["application/json"]["schema"]["$ref"].split("/")[-1]]

        page = alice_client.get("/api/accounts/primary/orders/").json()

        assert set(documented["properties"]) == set(page) == {"next", "previous", "results"}
        assert documented["properties"]["results"]["type"] == "array"
        assert documented["properties"]["next"]["nullable"] is True and page["next"] is None


class TestReadsAndReset:
    def test_positions_holdings_funds(self, alice_client, fixed_prices):
        place(alice_client)
        place(alice_client, tradingsymbol="SBIN", product="MIS", quantity=5)
        fixed_prices["NSE:INFY"] = "1600.00"

        positions = alice_client.get("/api/accounts/primary/positions?fresh=true").json()
        holdings = alice_client.get("/api/accounts/primary/holdings").json()
        funds = alice_client.get("/api/accounts/primary/funds").json()

        assert positions["source"] == "live" and positions["as_of"]
        infy = next(p for p in positions["data"] if p["tradingsymbol"] == "INFY")
        assert Decimal(infy["unrealised_pnl"]) == Decimal("1000") and Decimal(infy["value"]) == Decimal("16000")
        assert [h["tradingsymbol"] for h in holdings["data"]] == ["INFY"]
        assert Decimal(funds["data"]["cash"]) == Decimal("81000")
        assert Decimal(funds["data"]["net_liquidation"]) == Decimal("101000")

    def test_reset_restores_cash_and_closes_everything(self, alice_client, alice):
        place(alice_client)
        resting = place(alice_client, order_type="LIMIT", price="1000.00").json()["id"]

        response = alice_client.post("/api/accounts/primary/reset")

        assert response.status_code == 200
        account = account_of(alice)
        assert account.cash == Decimal("100000.00")
        assert not account.paper_positions.exists()
        assert Order.objects.get(pk=resting).status == "CANCELLED"
        assert OrderEvent.objects.filter(account=account, kind="account_reset", order=None).count() == 1

    def test_sync_of_paper_matches_resting_orders(self, alice_client, fixed_prices):
        place(alice_client, order_type="LIMIT", price="1400.00")
        fixed_prices["NSE:INFY"] = "1390.00"
        response = alice_client.post("/api/accounts/primary/sync")
        assert response.status_code == 200
        assert response.json()["changed"] == {"orders": 1}
