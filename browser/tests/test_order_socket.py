"""Seed 001's useOrderWebSocket hook: a ticket, the socket, order updates, and a heartbeat it can parse."""

import pytest

pytestmark = pytest.mark.browser


def test_the_order_hook_shows_the_order_it_placed_and_parses_every_answer_to_its_ping(spa):
    spa.sign_up()
    # The hook pings every 30 s; every second here, so the suite sees a few answers.
    spa.open("/orders.html?heartbeat_ms=1000")
    spa.wait_for_text("#connected", lambda text: text == "open", "The socket opening with a ticket")

    spa.click("#place")
    placed = spa.wait_for_text("#status", lambda text: text.startswith("Placed order"), "The order placed")
    order_id = placed.removeprefix("Placed order ")
    row = f"#orders tr[data-order-id='{order_id}'] td:last-child"
    spa.wait_for_text(row, lambda text: text == "COMPLETE", "The filled order shown from the socket's order_update")

    spa.wait_for_text("#pongs", lambda text: int(text) >= 2, "Answers to the hook's ping that JSON.parse reads")
