"""Kite's limits on calls, spent before a call is sent so that Thor never sends one Kite would refuse.

From Kite Connect's rate-limit documentation and its forum's answers (2025-26):
- per app: quotes 1 a second, order calls 10, every other call 10 (RATE_LIMITS);
- per Kite user, whatever app or process sends them: 10 order calls a second (the exchange's rule for retail
  API orders since April 2026: more needs a strategy registered with the exchange) and 400 a minute;
- 25 modifications of one order: then it must be cancelled and placed again (MODIFICATIONS_PER_ORDER).

Each limit is a thor.ratelimit window ("at most N in any T seconds"), so no second or minute of Kite's ever
holds more than its count. A call is counted from when Kite answered it (ratelimit.Grant.settle), not from when
it was sent: two calls need not take equally long to reach Kite (a first call opens its connection, an order goes
through an egress proxy), and a call counted from its sending could land inside Kite's window. Kite also caps a
user at 5,000 orders a day; Thor leaves that one to Kite.
"""

from thor import ratelimit

RATE_LIMITS = {"quote": 1.0, "orders": 10.0, "other": 10.0}
USER_ORDER_RATE = 10.0
USER_ORDERS_A_MINUTE = 400.0
MODIFICATIONS_PER_ORDER = 25


def user_order_budget(broker_user_id: str) -> ratelimit.Budget:
    return ratelimit.Budget(f"kite:user:{broker_user_id}:orders", USER_ORDER_RATE)


def user_order_minute_budget(broker_user_id: str) -> ratelimit.Budget:
    return ratelimit.Budget(f"kite:user:{broker_user_id}:orders-minute", USER_ORDERS_A_MINUTE, per=60)


def app_budget(app_id: int, category: str) -> ratelimit.Budget:
    return ratelimit.Budget(f"kite:{app_id}:{category}", RATE_LIMITS[category])


def rate_budgets(app_id: int) -> list[ratelimit.Budget]:
    """The app's limits as KiteAdapter spends them, for the connection health read."""
    return [app_budget(app_id, category) for category in RATE_LIMITS]


def call_budgets(app_id: int, category: str, broker_user_id: str) -> list[ratelimit.Budget]:
    """What one call spends: the app's limit for `category` and, for an order call, its Kite user's two."""
    budgets = [app_budget(app_id, category)]
    if category == "orders" and broker_user_id:
        budgets += [user_order_budget(broker_user_id), user_order_minute_budget(broker_user_id)]
    return budgets


def user_refusal(short: ratelimit.Budget, broker_user_id: str) -> str | None:
    """Thor's words when `short`, the limit that refused a call, is one of the Kite user's (None: the app's)."""
    if short == user_order_budget(broker_user_id):
        return f"At most {USER_ORDER_RATE:g} orders a second per Kite user (exchange rule); not sent."
    if short == user_order_minute_budget(broker_user_id):
        return f"At most {USER_ORDERS_A_MINUTE:g} orders a minute per Kite user (Kite's limit); not sent."
    return None
