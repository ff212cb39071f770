"""How each broker's quotes are asked for (market.quotes): a `Feed` per kind of market-data connection, and which
feed quotes a name (`feed_kind`)."""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from brokers.adapters import kite, kite_limits
from brokers.adapters.schwab.adapter import QUOTE_BATCH as SCHWAB_QUOTE_BATCH
from brokers.models import BrokerKind
from market.instrument_search import US_EXCHANGES, US_SYMBOL

# A Kite quote is live for one period of the connection's quote budget: asking sooner could not be answered.
FRESH_SECONDS = 1 / kite_limits.RATE_LIMITS["quote"]


@dataclass(frozen=True)
class Feed:
    """One broker's quotes as the service asks for them: which kind of market-data connection, how many
    instruments a call, which names it can quote, and how long a quote stays live (`fresh_seconds`)."""

    kind: str
    batch: int
    accepts: Callable[[str], bool]
    fresh: Callable[[], float]

    @property
    def fresh_seconds(self) -> float:
        return self.fresh()


def _is_us_name(name: str) -> bool:
    exchange, _, symbol = name.partition(":")
    return exchange in US_EXCHANGES and US_SYMBOL.fullmatch(symbol) is not None


KITE_FEED = Feed(kind=BrokerKind.KITE, batch=kite.QUOTE_BATCH, accepts=lambda name: True, fresh=lambda: FRESH_SECONDS)
# Read when asked: the share is a setting an installation (or a test) may change.
SCHWAB_FEED = Feed(
    kind=BrokerKind.SCHWAB,
    batch=SCHWAB_QUOTE_BATCH,
    # A US symbol as the instrument search checks it (BRK.B); anything else (a lower-case symbol, a space, an
    # option's or an index's) is left out before Schwab is asked.
    accepts=_is_us_name,
    fresh=lambda: 60 / settings.THOR_SCHWAB_QUOTES_PER_MINUTE,
)
FEEDS = {feed.kind: feed for feed in (KITE_FEED, SCHWAB_FEED)}


def feed_kind(name: str) -> str:
    """Which broker's feed quotes this name: Schwab's the US exchanges', Kite's every other."""
    return BrokerKind.SCHWAB if name.partition(":")[0] in US_EXCHANGES else BrokerKind.KITE
