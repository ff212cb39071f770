from celery import shared_task

from accounts.paper import paper_orders_match
from accounts.paper_closing import expired_positions_settle, mis_positions_square_off
from accounts.polling import schwab_orders_poll
from accounts.services import unknown_orders_settle


@shared_task(name="accounts.tasks.match_paper_orders", ignore_result=True)
def match_paper_orders() -> int:
    return paper_orders_match()


@shared_task(name="accounts.tasks.settle_unknown_orders", ignore_result=True)
def settle_unknown_orders() -> int:
    """Every few seconds: UNKNOWN placements whose next look is due, settled from the broker's order book."""
    return unknown_orders_settle()


@shared_task(name="accounts.tasks.poll_schwab_orders", ignore_result=True)
def poll_schwab_orders() -> int:
    """Every few seconds: the order books of the Schwab accounts an order socket follows, within the rate budget."""
    return schwab_orders_poll()


@shared_task(name="accounts.tasks.square_off_paper_positions", ignore_result=True)
def square_off_paper_positions() -> int:
    """Every minute: paper MIS positions past their exchange's square-off time, closed at the last price."""
    return mis_positions_square_off()


@shared_task(name="accounts.tasks.settle_expired_paper_positions", ignore_result=True)
def settle_expired_paper_positions() -> int:
    """Every few minutes: paper positions in contracts past their expiry, settled (accounts.paper_closing)."""
    return expired_positions_settle()
