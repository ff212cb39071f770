from market.caches import MISSING, instrument_cached, instrument_remember
from market.models import Instrument


def instrument_get(*, exchange: str, tradingsymbol: str) -> Instrument | None:
    """The master's row for EXCHANGE:TRADINGSYMBOL (expired ones too), or None when it lists no such contract.

    Read-only: the row may be shared with other callers in this process (market.caches).
    """
    key = (exchange, tradingsymbol)
    cached = instrument_cached(key)
    if cached is not MISSING:
        return cached
    found = Instrument.objects.filter(exchange=exchange, tradingsymbol=tradingsymbol).first()
    instrument_remember(key, found)
    return found
