"""The exchanges' quantity-freeze limits: the largest quantity one order of a contract may carry.

Kept with the brokers (the lower layer): Kite's OMS slices an autoslice order by them, so the broker sandbox
plays it from this table, and the instrument master (market.loading) stores them on each contract for Thor's
own checks and its slicing.

Kite's instrument dump does not state them; NSE and BSE publish them per underlying (NSE's
`qtyfreeze` file and circulars on the F&O lot sizes, BSE's notices for SENSEX and BANKEX derivatives)
and revise them as the indices move. NSE's are those of its circular effective 1 December 2025; BSE's are
plausible values. A limit need not be a whole number of lots (NIFTY's 1,800 is 27.7 lots of 65): one order
then carries at most the whole lots below it (accounts.slicing, the sandbox's autoslice). Refresh them from the
exchanges' files when they change. Stock derivatives' limits are not listed: their orders are not held to one.
"""

FREEZE_QUANTITIES: dict[tuple[str, str], int] = {
    ("NFO", "NIFTY"): 1800,
    ("NFO", "BANKNIFTY"): 600,
    ("NFO", "FINNIFTY"): 1200,
    ("NFO", "MIDCPNIFTY"): 2800,
    ("NFO", "NIFTYNXT50"): 600,
    ("BFO", "SENSEX"): 1000,
    ("BFO", "BANKEX"): 900,
}


def freeze_quantity(*, exchange: str, name: str) -> int | None:
    return FREEZE_QUANTITIES.get((exchange, name))
