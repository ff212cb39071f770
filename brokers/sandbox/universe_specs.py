"""What the sandbox's generated universe lists beyond the equities (universe.py): the other index derivatives, MCX's
commodities and NSE's currency pairs, each with its spot, strikes and lot (Kite lists MCX and currency contracts
with lot size 1: their quantity is lots; brokers.contract_multipliers says what a lot is worth)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class IndexSpec:
    name: str
    index_symbol: str
    exchange: str
    spot: float
    strike_step: int
    strikes_each_side: int
    lot_size: int
    weekly: bool


# NSE's lots from the January 2026 series (FINNIFTY 65 -> 60, MIDCPNIFTY 140 -> 120, NIFTYNXT50 unchanged).
INDEX_DERIVATIVES = (
    IndexSpec("FINNIFTY", "NIFTY FIN SERVICE", "NFO", 23800.0, 50, 40, 60, False),
    IndexSpec("MIDCPNIFTY", "NIFTY MID SELECT", "NFO", 12800.0, 25, 40, 120, False),
    IndexSpec("NIFTYNXT50", "NIFTY NEXT 50", "NFO", 68500.0, 100, 30, 25, False),
    IndexSpec("SENSEX", "SENSEX", "BFO", 81000.0, 100, 50, 20, True),
    IndexSpec("BANKEX", "BANKEX", "BFO", 59000.0, 100, 30, 30, False),
)


@dataclass(frozen=True)
class CommoditySpec:
    name: str
    spot: float
    lot_size: int
    tick_size: float
    strike_step: float
    months: int
    options: bool


COMMODITIES = (
    CommoditySpec("GOLD", 76000.0, 1, 1.0, 100, 6, True),
    CommoditySpec("GOLDM", 76000.0, 1, 1.0, 100, 6, True),
    CommoditySpec("SILVER", 91000.0, 1, 1.0, 250, 6, True),
    CommoditySpec("SILVERM", 91000.0, 1, 1.0, 250, 6, True),
    CommoditySpec("CRUDEOIL", 6100.0, 1, 1.0, 50, 6, True),
    CommoditySpec("CRUDEOILM", 6100.0, 1, 1.0, 50, 6, False),
    CommoditySpec("NATURALGAS", 280.0, 1, 0.1, 5, 6, True),
    CommoditySpec("NATGASMINI", 280.0, 1, 0.1, 5, 6, False),
    CommoditySpec("COPPER", 820.0, 1, 0.05, 5, 6, True),
    CommoditySpec("ZINC", 265.0, 1, 0.05, 2.5, 6, True),
    CommoditySpec("ALUMINIUM", 240.0, 1, 0.05, 2.5, 6, False),
    CommoditySpec("LEAD", 185.0, 1, 0.05, 2.5, 6, False),
    CommoditySpec("NICKEL", 1400.0, 1, 0.1, 10, 6, False),
    CommoditySpec("COTTONCNDY", 56000.0, 1, 10.0, 200, 6, False),
    CommoditySpec("MENTHAOIL", 920.0, 1, 0.1, 10, 6, False),
)


@dataclass(frozen=True)
class CurrencySpec:
    pair: str
    spot: float
    strike_step: float
    strikes_each_side: int


CURRENCIES = (
    CurrencySpec("USDINR", 84.5, 0.25, 40),
    CurrencySpec("EURINR", 91.0, 0.25, 40),
    CurrencySpec("GBPINR", 107.0, 0.25, 40),
    CurrencySpec("JPYINR", 56.5, 0.25, 40),
)
