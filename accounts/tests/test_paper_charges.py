"""Paper charges (accounts.charges): the schedule's figures, a tenant's overrides, the charges of each order in
its answer and audit row, debited from cash, and today's total in funds."""

from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured

from accounts.charges import INR_REVISIONS, INR_SEGMENTS, US_REVISIONS, UsRates, fill_charges
from accounts.models import OrderEvent, TradingAccount
from accounts.selectors import paper_charges_today
from accounts.tests.conftest import place
from market.tests.fixtures import NIFTY_FUTURE, NIFTY_LOT, NIFTY_OPTION

D = Decimal


@pytest.fixture
def charged(settings):
    settings.THOR_PAPER_CHARGES = {"enabled": True, "tenants": {}}
    return settings.THOR_PAPER_CHARGES


def charges(tenant, **order):
    fields = {"currency": "INR", "exchange": "NSE", "product": "MIS", "instrument_type": "EQ", "side": "BUY"}
    return fill_charges(tenant=tenant, **(fields | order))


@pytest.mark.django_db
class TestSchedule:
    def test_an_intraday_buy_pays_capped_brokerage_exchange_sebi_stamp_and_gst(self, tenant, charged):
        result = charges(tenant, quantity=D("100"), price=D("1500.00"))

        # Value 150,000: brokerage min(20, 45); exchange 0.00297% = 4.455; SEBI 0.15; stamp 0.003% = 4.50;
        # GST 18% of 20 + 4.46 + 0.15 = 4.4298. Each in paise, half up.
        assert result.components == {
            "brokerage": D("20.00"),
            "stt": D("0.00"),
            "exchange": D("4.46"),
            "sebi": D("0.15"),
            "stamp": D("4.50"),
            "gst": D("4.43"),
        }
        assert result.total == D("33.54")

    def test_a_small_intraday_order_pays_three_basis_points_of_brokerage(self, tenant, charged):
        assert charges(tenant, quantity=D("10"), price=D("100.00")).components["brokerage"] == D("0.30")

    def test_delivery_pays_no_brokerage_and_stt_on_both_sides(self, tenant, charged):
        buy = charges(tenant, product="CNC", quantity=D("10"), price=D("1500.00"))
        sell = charges(tenant, product="CNC", side="SELL", quantity=D("10"), price=D("1500.00"))

        assert buy.components["brokerage"] == sell.components["brokerage"] == D("0.00")
        assert buy.components["stt"] == sell.components["stt"] == D("15.00")
        assert buy.components["stamp"] == D("2.25") and sell.components["stamp"] == D("0.00")

    def test_an_option_sale_pays_flat_brokerage_and_stt_on_the_premium(self, tenant, charged):
        result = charges(
            tenant, exchange="NFO", product="NRML", instrument_type="CE", side="SELL", quantity=D("75"), price=D("180")
        )

        # Premium 13,500: STT 0.15% (since 1 April 2026); exchange 0.03503% = 4.729; GST 18% of 24.74.
        assert result.components == {
            "brokerage": D("20.00"),
            "stt": D("20.25"),
            "exchange": D("4.73"),
            "sebi": D("0.01"),
            "stamp": D("0.00"),
            "gst": D("4.45"),
        }

    def test_a_currency_future_pays_no_stt_and_nses_currency_rate_on_its_lots_value(self, tenant, charged):
        result = charges(
            tenant, exchange="CDS", product="NRML", instrument_type="FUT", side="SELL", quantity=D("2"), price=D("84.5")
        )
        bought = charges(
            tenant,
            exchange="CDS",
            product="NRML",
            instrument_type="FUT",
            quantity=D("2"),
            price=D("84.5"),
            multiplier=1000,
        )

        # Without the multiplier the value is 169 rupees: brokerage 0.03% = 0.05.
        assert result.components["brokerage"] == D("0.05") and result.components["stt"] == D("0.00")
        # Two lots of 1,000 dollars, 169,000: brokerage capped at 20, exchange 0.00035% = 0.5915, SEBI 0.169, stamp
        # 0.0001% = 0.169 on the buy, GST 18% of 20.76.
        assert bought.components == {
            "brokerage": D("20.00"),
            "stt": D("0.00"),
            "exchange": D("0.59"),
            "sebi": D("0.17"),
            "stamp": D("0.17"),
            "gst": D("3.74"),
        }

    def test_bses_currency_segment_pays_bses_rates(self, tenant, charged):
        future = charges(
            tenant,
            exchange="BCD",
            product="NRML",
            instrument_type="FUT",
            quantity=D("2"),
            price=D("84.5"),
            multiplier=1000,
        )
        option = charges(
            tenant,
            exchange="BCD",
            product="NRML",
            instrument_type="PE",
            side="SELL",
            quantity=D("10"),
            price=D("0.25"),
            multiplier=1000,
        )

        # 169,000 at BSE's 0.00045% = 0.7605; a premium of 2,500 at its 0.001% = 0.025.
        assert (future.components["exchange"], future.components["stt"]) == (D("0.76"), D("0.00"))
        assert (option.components["exchange"], option.components["brokerage"]) == (D("0.03"), D("20.00"))

    def test_a_currency_option_pays_flat_brokerage_and_nses_option_rate_on_the_premium(self, tenant, charged):
        result = charges(
            tenant,
            exchange="CDS",
            product="NRML",
            instrument_type="CE",
            side="SELL",
            quantity=D("10"),
            price=D("0.25"),
            multiplier=1000,
        )

        # Premium 2,500: no STT; exchange 0.0311% = 0.7775; GST 18% of 20 + 0.78 + 0.00 (SEBI 0.0025).
        assert result.components == {
            "brokerage": D("20.00"),
            "stt": D("0.00"),
            "exchange": D("0.78"),
            "sebi": D("0.00"),
            "stamp": D("0.00"),
            "gst": D("3.74"),
        }

    def test_an_mcx_lot_pays_on_its_value_times_the_multiplier(self, tenant, charged):
        result = charges(
            tenant,
            exchange="MCX",
            product="NRML",
            instrument_type="FUT",
            side="SELL",
            quantity=D("1"),
            price=D("76000"),
            multiplier=100,
        )

        # 7,600,000: CTT 0.01% = 760; MCX 0.0021% = 159.60; SEBI 7.60; GST 18% of 187.20.
        assert (result.components["stt"], result.components["exchange"], result.components["gst"]) == (
            D("760.00"),
            D("159.60"),
            D("33.70"),
        )

    def test_an_exercised_option_pays_only_the_exercise_stt_on_the_long_side(self, tenant, charged):
        option = {"exchange": "NFO", "product": "NRML", "instrument_type": "CE", "quantity": D("75"), "price": D("100")}

        assert charges(tenant, side="SELL", exercise=True, **option).components == {"stt": D("11.25")}
        assert charges(tenant, side="BUY", exercise=True, **option).total == D("0.00")
        assert charges(tenant, side="SELL", exercise=True, **(option | {"instrument_type": "FUT"})).total == 0

    def test_a_us_sale_pays_the_sec_fee_and_finra_taf_and_a_purchase_nothing(self, tenant, charged):
        us = {"currency": "USD", "exchange": "NASDAQ", "quantity": D("100"), "price": D("230"), "on": date(2024, 6, 3)}
        sale = charges(tenant, side="SELL", **us)
        purchase = charges(tenant, **us)

        assert sale.components == {"brokerage": D("0.00"), "sec_fee": D("0.64"), "finra_taf": D("0.02")}
        assert purchase.total == D("0.00")

    def test_a_position_the_broker_squares_off_pays_the_auto_square_off_charge_and_its_gst(self, tenant, charged):
        sale = {"side": "SELL", "quantity": D("100"), "price": D("1500.00")}
        closed_by_the_trader, squared_off = charges(tenant, **sale), charges(tenant, squared_off=True, **sale)

        assert squared_off.components["auto_square_off"] == D("50.00")
        assert squared_off.total - closed_by_the_trader.total == D("59.00")  # 50 and its GST of 9
        assert "auto_square_off" not in closed_by_the_trader.components

    def test_a_tenant_may_waive_the_auto_square_off_charge(self, tenant, charged):
        charged["tenants"] = {"acme": {"INR": {"common": {"auto_square_off": "0"}}}}
        sale = {"side": "SELL", "quantity": D("100"), "price": D("1500.00")}

        assert charges(tenant, squared_off=True, **sale).total == charges(tenant, **sale).total

    def test_a_us_position_squared_off_pays_no_square_off_charge(self, tenant, charged):
        sale = {"currency": "USD", "exchange": "NASDAQ", "side": "SELL", "quantity": D("10"), "price": D("230")}

        assert charges(tenant, squared_off=True, **sale) == charges(tenant, **sale)

    def test_finra_taf_is_capped_per_trade(self, tenant, charged):
        sale = charges(
            tenant,
            currency="USD",
            exchange="NYSE",
            side="SELL",
            quantity=D("1000000"),
            price=D("1"),
            on=date(2024, 6, 3),
        )

        assert sale.components["finra_taf"] == D("8.30")

    def test_a_tenant_overrides_a_rate_and_can_make_a_currency_free(self, tenant, charged):
        charged["tenants"] = {"acme": {"INR": {"options": {"brokerage_flat": "10"}}, "USD": None}}
        option = charges(tenant, exchange="NFO", product="NRML", instrument_type="PE", quantity=D("75"), price=D("1"))
        sale = charges(tenant, currency="USD", exchange="NASDAQ", side="SELL", quantity=D("100"), price=D("230"))

        assert option.components["brokerage"] == D("10.00")
        assert sale.total == D("0.00")

    @pytest.mark.parametrize(
        ("override", "named"),
        [
            ({"INR": {"options": {"brokerage_flatt": "10"}}}, "brokerage_flatt"),
            ({"INR": {"optons": {"brokerage_flat": "10"}}}, "optons"),
            ({"INR": {"options": {"stt_sell": "-1"}}}, "stt_sell"),
            ({"INR": {"options": {"stt_sell": "NaN"}}}, "stt_sell"),
            ({"INR": {"options": {"stt_sell": "lots"}}}, "stt_sell"),
            ({"EUR": {}}, "EUR"),
            ({"USD": {"sec_fee": "1e999999999"}}, "sec_fee"),
        ],
    )
    def test_a_bad_override_is_refused_naming_it(self, tenant, charged, override, named):
        charged["tenants"] = {"acme": override}

        with pytest.raises(ImproperlyConfigured, match=named):
            charges(tenant, exchange="NFO", product="NRML", instrument_type="CE", quantity=D("75"), price=D("1"))

    def test_charges_can_be_switched_off_for_the_deployment(self, tenant, settings):
        settings.THOR_PAPER_CHARGES = {"enabled": False, "tenants": {}}

        assert charges(tenant, quantity=D("100"), price=D("1500")).total == D("0.00")


@pytest.mark.django_db
class TestRatesByTradeDay:
    """The law changes STT on a date (Union Budget 2026: from 1 April 2026); a fill pays the rates of its trade day
    in India, so the change falls at midnight IST, not UTC."""

    BEFORE, FROM = date(2026, 3, 31), date(2026, 4, 1)
    OPTION = {"exchange": "NFO", "product": "NRML", "instrument_type": "PE", "side": "SELL", "price": D("200")}

    @pytest.mark.parametrize(
        ("order", "before", "from_april"),
        [
            # A NIFTY future sold, 65 x 24,000 = 1,560,000: 0.02% then 0.05%.
            ({"exchange": "NFO", "product": "NRML", "instrument_type": "FUT", "side": "SELL", "price": D("24000")},
             D("312.00"), D("780.00")),
            # Option premium sold, 65 x 200 = 13,000: 0.1% then 0.15%.
            (OPTION, D("13.00"), D("19.50")),
            # An option exercised at expiry, 65 x 200 settled: 0.125% then 0.15%.
            (OPTION | {"exercise": True}, D("16.25"), D("19.50")),
            # Equity delivery is untouched by the change: 0.1% on either side.
            ({"product": "CNC", "side": "SELL", "price": D("200")}, D("13.00"), D("13.00")),
        ],
    )  # fmt: skip
    def test_stt_follows_the_trade_day(self, tenant, charged, order, before, from_april):
        def stt(day):
            return charges(tenant, quantity=D("65"), on=day, **order).components["stt"]

        assert (stt(self.BEFORE), stt(self.FROM), stt(date(2027, 1, 26))) == (before, from_april, from_april)

    def test_the_futures_buyer_pays_no_stt_on_either_side_of_the_change(self, tenant, charged):
        future = {"exchange": "NFO", "product": "NRML", "instrument_type": "FUT", "price": D("24000")}

        assert charges(tenant, quantity=D("65"), on=self.FROM, **future).components["stt"] == D("0.00")

    @pytest.mark.parametrize(
        ("utc", "stt"),
        [("2026-03-31T18:29:59+00:00", D("13.00")), ("2026-03-31T18:30:00+00:00", D("19.50"))],
    )
    def test_without_a_day_a_fill_takes_todays_in_india(self, tenant, charged, utc, stt):
        with time_machine.travel(utc, tick=False):
            assert charges(tenant, quantity=D("65"), **self.OPTION).components["stt"] == stt

    def test_a_tenants_override_wins_over_a_change_by_law(self, tenant, charged):
        charged["tenants"] = {"acme": {"INR": {"options": {"stt_sell": "0.001"}}}}

        assert charges(tenant, quantity=D("65"), on=self.FROM, **self.OPTION).components["stt"] == D("13.00")

    def test_the_revisions_are_in_date_order_and_name_known_rates(self):
        days = [day for day, _ in INR_REVISIONS]
        assert days == sorted(days)
        for _, changes in INR_REVISIONS:
            for segment, rates in changes.items():
                assert set(rates) <= {field.name for field in fields(INR_SEGMENTS[segment])}


@pytest.mark.django_db
class TestUsFeesByTradeDay:
    """The SEC's rate and FINRA's TAF as their regulators changed them (US_REVISIONS): a sale of 10,000 shares at
    $230 (2,300,000 sold), on each side of each change."""

    SALE = {"currency": "USD", "exchange": "NYSE", "side": "SELL", "quantity": D("10000"), "price": D("230")}

    @pytest.mark.parametrize(
        ("day", "sec_fee", "finra_taf"),
        [
            (date(2025, 5, 13), "63.94", "1.66"),  # $27.80 a million; TAF $0.000166 a share
            (date(2025, 5, 14), "0.00", "1.66"),  # the SEC's fiscal-2025 collections complete
            (date(2026, 1, 1), "0.00", "1.95"),  # FINRA's 2026 rate
            (date(2026, 4, 3), "0.00", "1.95"),
            (date(2026, 4, 4), "47.38", "1.95"),  # $20.60 a million (Release 34-104909)
            (date(2026, 10, 1), "47.38", "0.00"),  # the TAF paused for 2026's last quarter
            (date(2026, 12, 31), "47.38", "0.00"),
            (date(2027, 1, 1), "47.38", "2.32"),  # FINRA's 2027 rate
        ],
    )
    def test_a_sale_pays_the_rates_of_its_trade_day(self, tenant, charged, day, sec_fee, finra_taf):
        sale = charges(tenant, on=day, **self.SALE)

        assert (sale.components["sec_fee"], sale.components["finra_taf"]) == (D(sec_fee), D(finra_taf))

    def test_the_taf_cap_follows_the_year(self, tenant, charged):
        block = self.SALE | {"quantity": D("1000000"), "price": D("1")}

        assert charges(tenant, on=date(2026, 6, 1), **block).components["finra_taf"] == D("9.79")
        assert charges(tenant, on=date(2027, 6, 1), **block).components["finra_taf"] == D("11.61")

    def test_without_a_day_a_sale_takes_todays_in_new_york(self, tenant, charged):
        # 02:00 UTC on 4 April 2026 is still 3 April in New York (22:00 EDT): the SEC's new rate starts there later.
        with time_machine.travel(datetime(2026, 4, 4, 2, 0, tzinfo=UTC), tick=False):
            before = charges(tenant, **self.SALE)
        with time_machine.travel(datetime(2026, 4, 4, 5, 0, tzinfo=UTC), tick=False):
            after = charges(tenant, **self.SALE)

        assert (before.components["sec_fee"], after.components["sec_fee"]) == (D("0.00"), D("47.38"))

    def test_a_tenants_override_wins_over_a_change(self, tenant, charged):
        charged["tenants"] = {"acme": {"USD": {"sec_fee": "0.0000278"}}}

        assert charges(tenant, on=date(2026, 6, 1), **self.SALE).components["sec_fee"] == D("63.94")

    def test_the_revisions_are_in_date_order_and_name_known_rates(self):
        days = [day for day, _ in US_REVISIONS]
        assert days == sorted(days)
        known = {field.name for field in fields(UsRates)}
        assert all(set(changes) <= known for _, changes in US_REVISIONS)


@pytest.mark.django_db
class TestChargedFills:
    def test_each_order_shows_its_charges_debited_from_cash_and_funds_total_them(
        self, alice_client, alice, charged, instrument_master
    ):
        account = TradingAccount.objects.get(user=alice, is_primary=True)
        account.cash = D("10000000.00")
        account.save()

        future = place(alice_client, tradingsymbol=NIFTY_FUTURE, exchange="NFO", product="NRML", quantity=NIFTY_LOT)
        option = place(
            alice_client,
            tradingsymbol=NIFTY_OPTION,
            exchange="NFO",
            product="NRML",
            quantity=NIFTY_LOT,
            transaction_type="SELL",
        )

        assert future.status_code == option.status_code == 201, (future.json(), option.json())
        # The future: 65 x 24,000 = 1,560,000: brokerage 20, exchange 26.99, SEBI 1.56, stamp 31.20, GST 8.74.
        assert future.json()["charges"] == "88.49"
        # The option sold: 65 x 180 = 11,700: brokerage 20, STT 17.55, exchange 4.10, SEBI 0.01, GST 4.34.
        assert option.json()["charges"] == "46.00"
        account.refresh_from_db()
        assert account.cash == D("10000000.00") - D("1560000.00") + D("11700.00") - D("88.49") - D("46.00")
        funds = alice_client.get("/api/accounts/primary/funds").json()["data"]
        assert funds["charges_today"] == "134.49"
        filled = OrderEvent.objects.get(order_id=future.json()["id"], kind="filled")
        assert filled.broker_response["charges"]["total"] == "88.49" and filled.after["charges"] == "88.49"

    def test_a_buy_that_cannot_pay_its_charges_is_refused_before_it_is_placed(
        self, alice_client, alice, charged, fixed_prices
    ):
        fixed_prices["NSE:INFY"] = "1000.00"
        account = TradingAccount.objects.get(user=alice, is_primary=True)
        account.cash = D("10000.00")
        account.save()

        response = place(alice_client, quantity=10, product="CNC")  # 10,000 exactly, plus 11-odd in charges

        assert response.status_code == 400, response.json()
        (message,) = response.json()["errors"]["quantity"]
        assert message.startswith("Insufficient buying power: needs 100") and message.endswith("available 10000.00.")
        assert not account.orders.exists()
        account.refresh_from_db()
        assert account.cash == D("10000.00")

    def test_a_live_style_order_without_fills_shows_no_charges(self, alice_client, charged):
        response = place(alice_client, order_type="LIMIT", price="1000.00")

        assert response.json()["status"] == "OPEN" and response.json()["charges"] is None

    def test_charges_today_counts_the_fills_of_the_accounts_exchange_day(self, alice_client, alice, charged):
        response = place(alice_client, quantity=10, product="MIS")
        account = TradingAccount.objects.get(user=alice, is_primary=True)
        filled_at = OrderEvent.objects.get(order_id=response.json()["id"], kind="filled").created_at

        assert paper_charges_today(account=account, now=filled_at) == D(response.json()["charges"]) > 0
        assert paper_charges_today(account=account, now=filled_at + timedelta(days=1)) == 0
