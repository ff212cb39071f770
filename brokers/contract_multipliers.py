"""Contract multipliers: how many of a contract's price units one quantity of it is.

On NSE's and BSE's equity derivatives a quantity is units of the underlying (NIFTY's lot is 65 units) and a
contract is worth quantity x price. On MCX and on the currency segments Kite counts quantity in lots (its dump
lists every such contract with lot size 1) while the exchange quotes a price per unit of the commodity or
currency: a GOLD future is quoted in rupees per 10 grams and one lot is a kilogram, so one GOLD is worth
100 x its price. Kite's positions carry that number as `multiplier` (value = quantity x price x multiplier);
its instrument dump does not. Each exchange publishes it in its contract specifications as a trading unit and a
price quotation; UNITS_PER_LOT holds their ratio per underlying.

Kept with the brokers (the lower layer), as brokers.freeze_limits: the broker sandbox values its Kite positions
and margins with it, and the instrument master (market.loading) stores it on each contract, where every paper
money path (fills, funds, buying power, charges, settlement) reads it. A contract on one of these exchanges whose
underlying is not listed here has no known multiplier: its master row says None and a paper account refuses it
(valuing it at 1 would undervalue it a hundred- or thousand-fold). Refresh the table when an exchange revises a
contract (MCX cut NICKEL's trading unit from 1,500 kg to 250 kg from the September 2025 expiry).
"""

# Exchanges whose quantities are lots of a contract priced per unit (Kite's quantity for MCX, CDS and BCD).
LOT_QUANTITY_EXCHANGES = frozenset({"MCX", "CDS", "BCD"})

# Price units in one lot, from the exchange's contract specification: (trading unit) / (price quotation unit).
UNITS_PER_LOT: dict[tuple[str, str], int] = {
    # MCX bullion: gold quoted per 10 g, silver per kg.
    ("MCX", "GOLD"): 100,  # 1 kg
    ("MCX", "GOLDM"): 10,  # 100 g
    ("MCX", "GOLDTEN"): 1,  # 10 g
    ("MCX", "GOLDGUINEA"): 1,  # 8 g, quoted per 8 g
    ("MCX", "GOLDPETAL"): 1,  # 1 g, quoted per g
    ("MCX", "SILVER"): 30,  # 30 kg
    ("MCX", "SILVERM"): 5,  # 5 kg
    ("MCX", "SILVERMIC"): 1,  # 1 kg
    # MCX energy: crude per barrel, natural gas per mmBtu.
    ("MCX", "CRUDEOIL"): 100,
    ("MCX", "CRUDEOILM"): 10,
    ("MCX", "NATURALGAS"): 1250,
    ("MCX", "NATGASMINI"): 250,
    # MCX base metals, quoted per kg.
    ("MCX", "COPPER"): 2500,
    ("MCX", "ZINC"): 5000,
    ("MCX", "ZINCMINI"): 1000,
    ("MCX", "ALUMINIUM"): 5000,
    ("MCX", "ALUMINI"): 1000,
    ("MCX", "LEAD"): 5000,
    ("MCX", "LEADMINI"): 1000,
    ("MCX", "NICKEL"): 250,  # from the September 2025 expiry (1,500 before)
    # MCX agri: cotton candy quoted per candy (48 candies a lot), mentha oil per kg (360 kg).
    ("MCX", "COTTONCNDY"): 48,
    ("MCX", "MENTHAOIL"): 360,
    # Currency futures and options against the rupee: 1,000 units of the currency a lot, quoted per unit
    # (JPYINR per 100 yen, on a lot of 100,000 yen). Cross-currency pairs (EURUSD...) are quoted in dollars and
    # settled in rupees at the RBI's reference rate: not listed.
    **{(exchange, pair): 1000 for exchange in ("CDS", "BCD") for pair in ("USDINR", "EURINR", "GBPINR", "JPYINR")},
}


def contract_multiplier(*, exchange: str, name: str, lot_size: int = 1) -> int | None:
    """What one quantity of a contract on `exchange` of underlying `name` is worth in price units: 1 where a
    quantity is units (NSE, BSE, NFO, BFO, US), the table's units per lot on MCX, CDS and BCD (divided by the
    dump's `lot_size`, should a source count quantity in smaller parts of a lot), None where it is not known."""
    if exchange not in LOT_QUANTITY_EXCHANGES:
        return 1
    units = UNITS_PER_LOT.get((exchange, name))
    if units is None or lot_size < 1 or units % lot_size:
        return None
    return units // lot_size
