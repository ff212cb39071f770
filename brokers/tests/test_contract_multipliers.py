"""brokers.contract_multipliers: what one quantity of a contract is worth in its price units."""

import pytest

from brokers.contract_multipliers import LOT_QUANTITY_EXCHANGES, UNITS_PER_LOT, contract_multiplier


@pytest.mark.parametrize(
    ("exchange", "name", "multiplier"),
    [
        ("MCX", "GOLD", 100),  # 1 kg, quoted per 10 g
        ("MCX", "GOLDM", 10),  # 100 g
        ("MCX", "SILVERM", 5),  # 5 kg, quoted per kg
        ("MCX", "CRUDEOIL", 100),  # 100 barrels
        ("MCX", "NATURALGAS", 1250),  # 1,250 mmBtu
        ("MCX", "NICKEL", 250),  # 250 kg since the September 2025 expiry
        ("CDS", "USDINR", 1000),
        ("BCD", "JPYINR", 1000),  # 100,000 yen quoted per 100
    ],
)
def test_a_lot_is_the_exchanges_trading_unit_in_price_units(exchange, name, multiplier):
    assert contract_multiplier(exchange=exchange, name=name) == multiplier


@pytest.mark.parametrize(
    ("exchange", "name"), [("NFO", "NIFTY"), ("BFO", "SENSEX"), ("NSE", "INFY"), ("NASDAQ", "AAPL")]
)
def test_where_a_quantity_is_units_the_multiplier_is_one(exchange, name):
    assert contract_multiplier(exchange=exchange, name=name) == 1


@pytest.mark.parametrize(("exchange", "name"), [("MCX", "KAPAS"), ("CDS", "EURUSD"), ("MCX", ""), ("MCX", "gold")])
def test_a_contract_the_table_does_not_list_has_no_multiplier(exchange, name):
    assert contract_multiplier(exchange=exchange, name=name) is None


def test_a_source_counting_parts_of_a_lot_divides_the_units_and_one_that_does_not_divide_is_unknown():
    assert contract_multiplier(exchange="MCX", name="GOLD", lot_size=10) == 10
    assert contract_multiplier(exchange="MCX", name="GOLD", lot_size=100) == 1
    assert contract_multiplier(exchange="MCX", name="GOLD", lot_size=7) is None
    assert contract_multiplier(exchange="MCX", name="GOLD", lot_size=0) is None
    assert contract_multiplier(exchange="MCX", name="GOLD", lot_size=-1) is None


def test_every_entry_is_a_positive_whole_number_on_an_exchange_that_counts_lots():
    assert all(exchange in LOT_QUANTITY_EXCHANGES for exchange, _ in UNITS_PER_LOT)
    assert all(isinstance(units, int) and units >= 1 for units in UNITS_PER_LOT.values())
