"""Charles Schwab's Trader API over a thin `requests` client, split by responsibility:

- `client`: the wire (a pooled session per thread, the app's rate buckets, retries, error shapes);
- `mapping`: Thor's neutral types to and from Schwab's JSON fields;
- `instruments`: the instrument search's input checks and its answer as neutral types;
- `adapter`: the BrokerAdapter contract (session, accounts, orders, quotes, instrument search) on top of them.
"""

from .adapter import SchwabAdapter
from .client import rate_budgets

__all__ = ["SchwabAdapter", "rate_budgets"]
