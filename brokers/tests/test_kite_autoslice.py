"""Kite's autoslice answer read into SlicedPlacement: every shape a child may take, and an answer that says
nothing certain (then the placement is settled from the book, never sent again)."""

import pytest

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.kite_autoslice import UNEXPLAINED, sliced_placement_of
from brokers.adapters.types import SliceOutcome


def test_placed_and_refused_children_in_kites_order():
    answer = {
        "order_id": "261207000000100",
        "children": [
            {"order_id": "261207000000101"},
            {"error": {"status": "error", "error_type": "InputException", "message": "RMS: blocked", "data": None}},
            {"error": "Freeze limit breached"},
            {"error": {"error_type": "OrderException"}},
            {"error": None},
            "garbage",
        ],
    }

    placed = sliced_placement_of(answer)

    assert placed.broker_order_id == "261207000000100"
    assert placed.children == (
        SliceOutcome(broker_order_id="261207000000101"),
        SliceOutcome(error="RMS: blocked"),
        SliceOutcome(error="Freeze limit breached"),
        SliceOutcome(error="OrderException"),
        SliceOutcome(error=UNEXPLAINED),
        SliceOutcome(error="garbage"),
    )


def test_a_childs_message_is_kept_to_the_column_it_is_stored_in():
    placed = sliced_placement_of({"order_id": "1", "children": [{"error": {"message": "x" * 900}}]})

    assert len(placed.children[0].error) == 500


@pytest.mark.parametrize(
    "answer", [None, "1", {}, {"order_id": "1"}, {"children": []}, {"order_id": "1", "children": {}}]
)
def test_an_answer_without_a_parent_or_its_children_is_unconfirmed(answer):
    with pytest.raises(BrokerError) as raised:
        sliced_placement_of(answer)

    assert raised.value.code == BrokerErrorCode.UNCONFIRMED
