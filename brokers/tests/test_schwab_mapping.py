"""The Schwab field mapping (brokers.adapters.schwab.mapping and .portfolio) through the adapter, with `responses` at the
HTTP boundary: balances, positions, order terms and statuses, and quotes in Thor's terms."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.tests import schwab_wire
from brokers.tests.schwab_wire import API, CASH_ACCOUNT, HASH, MARGIN_ACCOUNT, ORDERS, limit_buy, schwab_order

# The fake Schwab's fixtures, by the names pytest finds them under.
schwab_settings = schwab_wire.schwab_settings
mocked = schwab_wire.mocked
schwab = schwab_wire.schwab


# --- accounts and balances --------------------------------------------------------------------


def test_margin_funds_come_from_the_margin_balances(mocked, schwab):
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=MARGIN_ACCOUNT)

    funds = schwab.funds()

    assert funds.currency == "USD"
    assert funds.cash == Decimal("5000.13")
    assert funds.available == Decimal("20000.50")
    assert funds.buying_power == Decimal("40001.00")
    assert funds.net_liquidation == Decimal("30000.00")
    assert funds.utilised == Decimal("2500.00")


def test_cash_funds_spend_only_the_cash_available_for_trading(mocked, schwab):
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=CASH_ACCOUNT)

    funds = schwab.funds()

    assert funds.cash == Decimal("12000.00")
    assert funds.available == funds.buying_power == Decimal("9000.00")
    assert funds.net_liquidation == Decimal("18000.00")
    assert funds.utilised == Decimal("3000.00")


def test_account_numbers_pair_each_hash_with_its_number_and_kind(mocked, schwab):
    mocked.get(
        f"{API}/trader/v1/accounts/accountNumbers",
        json=[{"accountNumber": "12345678", "hashValue": "H1"}, {"accountNumber": "87654321", "hashValue": "H2"}],
    )
    mocked.get(f"{API}/trader/v1/accounts", json=[MARGIN_ACCOUNT, CASH_ACCOUNT])

    refs = schwab.account_numbers()

    assert [(ref.broker_account_id, ref.account_number, ref.kind) for ref in refs] == [
        ("H1", "12345678", "MARGIN"),
        ("H2", "87654321", "CASH"),
    ]
    assert "12345678" not in refs[0].display_name and refs[0].display_name.endswith("5678")


def test_positions_and_holdings(mocked, schwab):
    account = {
        "securitiesAccount": {
            "type": "MARGIN",
            "accountNumber": "12345678",
            "positions": [
                {
                    "longQuantity": 10.0,
                    "shortQuantity": 0.0,
                    "averagePrice": 150.0,
                    "averageLongPrice": 150.0,
                    "marketValue": 1900.0,
                    "longOpenProfitLoss": 400.0,
                    "currentDayProfitLoss": -12.5,
                    "instrument": {"assetType": "EQUITY", "symbol": "AAPL", "cusip": "037833100"},
                },
                {
                    "longQuantity": 0.0,
                    "shortQuantity": 5.0,
                    "averagePrice": 100.0,
                    "marketValue": -450.0,
                    "shortOpenProfitLoss": 50.0,
                    "currentDayProfitLoss": 1.0,
                    "instrument": {"assetType": "EQUITY", "symbol": "KO"},
                },
            ],
        }
    }
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json=account)

    apple, short = schwab.positions()
    (holding,) = schwab.holdings()

    assert mocked.calls[0].request.params == {"fields": "positions"}
    assert (apple.symbol, apple.quantity, apple.last_price, apple.value) == (
        "AAPL",
        Decimal("10"),
        Decimal("190.0000"),
        Decimal("1900.00"),
    )
    assert apple.unrealised_pnl == Decimal("400.00") and apple.day_pnl == Decimal("-12.50")
    assert (short.quantity, short.last_price, short.unrealised_pnl) == (
        Decimal("-5"),
        Decimal("90.0000"),
        Decimal("50.00"),
    )
    assert (holding.symbol, holding.quantity, holding.value, holding.pnl) == (
        "AAPL",
        Decimal("10"),
        Decimal("1900.00"),
        Decimal("400.00"),
    )


def option_position(**instrument) -> dict:
    return {
        "longQuantity": 2.0,
        "shortQuantity": 0.0,
        "averagePrice": 4.5,
        "marketValue": 1020.0,  # 2 contracts at 5.10, 100 shares each
        "longOpenProfitLoss": 120.0,
        "instrument": {"assetType": "OPTION", "symbol": "AAPL  261218C00200000", "putCall": "CALL", **instrument},
    }


@pytest.mark.parametrize(
    ("instrument", "last_price"),
    [
        ({"optionMultiplier": 100}, Decimal("5.1000")),
        ({"optionMultiplier": 10}, Decimal("51.0000")),  # a mini option: 10 shares a contract
        ({}, Decimal("5.1000")),  # left out: OCC's standard 100
        ({"optionMultiplier": 0}, Decimal("5.1000")),
        ({"optionMultiplier": "many"}, Decimal("5.1000")),
        ({"optionMultiplier": [100]}, Decimal("5.1000")),
    ],
)
def test_an_option_positions_last_price_is_its_market_value_over_the_shares_it_holds(
    mocked, schwab, instrument, last_price
):
    mocked.get(
        f"{API}/trader/v1/accounts/{HASH}", json={"securitiesAccount": {"positions": [option_position(**instrument)]}}
    )

    (option,) = schwab.positions()

    # Not 510: Schwab's market value of an option counts each contract's 100 shares.
    assert (option.quantity, option.last_price, option.value) == (Decimal("2"), last_price, Decimal("1020.00"))
    assert option.unrealised_pnl == Decimal("120.00")
    assert schwab.holdings() == []  # an option is no holding


def test_an_average_price_schwab_leaves_out_is_not_known_not_zero(mocked, schwab):
    # Schwab's Position schema requires no field.
    position = {
        "longQuantity": 3.0,
        "shortQuantity": 0.0,
        "marketValue": 600.0,
        "instrument": {"assetType": "EQUITY", "symbol": "MSFT"},
    }
    mocked.get(f"{API}/trader/v1/accounts/{HASH}", json={"securitiesAccount": {"positions": [position]}})

    (msft,) = schwab.positions()
    (holding,) = schwab.holdings()

    assert (msft.average_price, msft.last_price) == (None, Decimal("200.0000"))
    assert (holding.average_price, holding.last_price) == (None, Decimal("200.0000"))


# --- orders -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_type", "validity", "schwab_type", "duration", "prices"),
    [
        ("MARKET", "DAY", "MARKET", "DAY", {}),
        ("SL", "GTC", "STOP_LIMIT", "GOOD_TILL_CANCEL", {"price": 187.5, "stopPrice": 186.0}),
        ("SL-M", "DAY", "STOP", "DAY", {"stopPrice": 186.0}),
    ],
)
def test_unified_order_types_and_validities_map_to_schwabs(
    mocked, schwab, order_type, validity, schwab_type, duration, prices
):
    mocked.post(ORDERS, status=201, headers={"Location": f"{ORDERS}/7"})

    schwab.place(limit_buy(order_type=order_type, validity=validity, trigger_price=Decimal("186")))

    sent = json.loads(mocked.calls[0].request.body)
    assert (sent["orderType"], sent["duration"]) == (schwab_type, duration)
    assert {name: sent[name] for name in ("price", "stopPrice") if name in sent} == prices


@pytest.mark.parametrize(
    "changes",
    [
        {"side": "SELL_SHORT"},
        {"side": "BUY_TO_COVER"},
        {"quantity": Decimal("1.5")},
        {"quantity": Decimal("0")},
        {"quantity": Decimal("-3")},
        {"validity": "IOC"},
        {"order_type": "TRAILING_STOP"},
        {"price": None},
        {"price": Decimal("-1")},
        {"symbol": "AAPL; DROP TABLE"},
        {"symbol": ""},
    ],
)
def test_orders_schwab_would_refuse_are_refused_before_sending(mocked, schwab, changes):
    with pytest.raises(BrokerError) as error:
        schwab.place(limit_buy(**changes))

    assert error.value.code == BrokerErrorCode.INVALID_INPUT and error.value.permanent
    assert len(mocked.calls) == 0


@pytest.mark.parametrize("order_id", ["../accountNumbers", "12a", "", "1" * 40])
def test_hostile_order_ids_never_reach_a_url(mocked, schwab, order_id):
    with pytest.raises(BrokerError) as error:
        schwab.cancel(order_id)

    assert error.value.code == BrokerErrorCode.NOT_FOUND
    assert len(mocked.calls) == 0


def test_orders_read_schwabs_statuses_in_thors_terms(mocked, schwab):
    now = datetime.now(UTC)
    filled = schwab_order(
        1,
        entered=now,
        status="FILLED",
        filledQuantity=10.0,
        orderActivityCollection=[
            {"executionLegs": [{"quantity": 4.0, "price": 187.0}, {"quantity": 6.0, "price": 187.5}]}
        ],
    )
    stop = schwab_order(2, entered=now, orderType="STOP", stopPrice=180.0, duration="GOOD_TILL_CANCEL")
    mocked.get(
        ORDERS,
        json=[
            filled,
            stop,
            schwab_order(3, entered=now, status="CANCELED"),
            schwab_order(4, entered=now, status="REPLACED"),
            schwab_order(5, entered=now, status="PENDING_ACKNOWLEDGEMENT"),
        ],
    )

    results = schwab.orders()

    assert [result.status for result in results] == ["COMPLETE", "TRIGGER PENDING", "CANCELLED", "CANCELLED", "PENDING"]
    assert results[0].average_price == Decimal("187.3000") and results[0].filled_quantity == Decimal("10")
    assert (results[1].order_type, results[1].validity, results[1].trigger_price) == (
        "SL-M",
        "GTC",
        Decimal("180.0000"),
    )
    assert results[0].placed_at == now.replace(microsecond=0)


# --- market data ------------------------------------------------------------------------------


def test_quotes_are_keyed_by_the_reference_as_given(mocked, schwab):
    mocked.get(
        f"{API}/marketdata/v1/quotes",
        json={
            "AAPL": {
                "symbol": "AAPL",
                "quote": {
                    "lastPrice": 190.12,
                    "openPrice": 189.0,
                    "highPrice": 191.0,
                    "lowPrice": 188.5,
                    "closePrice": 189.5,
                    "totalVolume": 1234,
                    "tradeTime": 1767225600000,
                },
            },
            "errors": {"invalidSymbols": ["NOPE"]},
        },
    )

    quotes = schwab.quotes(["NASDAQ:AAPL", "AAPL", "NOPE"])

    assert mocked.calls[0].request.params == {"symbols": "AAPL,NOPE", "fields": "quote"}
    assert set(quotes) == {"NASDAQ:AAPL", "AAPL"}
    assert quotes["NASDAQ:AAPL"].last_price == Decimal("190.1200") and quotes["NASDAQ:AAPL"].exchange == "NASDAQ"
    assert quotes["AAPL"].timestamp == datetime(2026, 1, 1, tzinfo=UTC) and quotes["AAPL"].volume == 1234


def test_a_quote_without_a_last_price_is_left_out_as_an_unquoted_symbol(mocked, schwab):
    mocked.get(
        f"{API}/marketdata/v1/quotes",
        json={
            "AAPL": {"symbol": "AAPL", "quote": {"lastPrice": 190.12}},
            "HALT": {"symbol": "HALT", "quote": {"closePrice": 12.5, "totalVolume": 0}},
        },
    )

    quotes = schwab.quotes(["AAPL", "HALT"])

    assert set(quotes) == {"AAPL"} and quotes["AAPL"].last_price == Decimal("190.1200")


def test_each_quote_call_spends_the_apps_quote_share_and_a_spent_one_asks_nothing(mocked, schwab, settings):
    settings.THOR_SCHWAB_QUOTES_PER_MINUTE = 1
    mocked.get(f"{API}/marketdata/v1/quotes", json={"AAPL": {"symbol": "AAPL", "quote": {"lastPrice": 190.12}}})
    schwab.quotes(["AAPL"])

    with pytest.raises(BrokerError) as spent:
        schwab.quotes(["AAPL"], wait_for_budget=False)

    assert spent.value.code == BrokerErrorCode.RATE_LIMITED
    assert len(mocked.calls) == 1
