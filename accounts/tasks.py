from celery import shared_task

from accounts.paper import paper_orders_match


@shared_task(name="accounts.tasks.match_paper_orders", ignore_result=True)
def match_paper_orders() -> int:
    return paper_orders_match()
