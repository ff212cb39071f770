"""Kite's autoslice answer, read into the neutral SlicedPlacement.

`place_autoslice_order` (kiteconnect 5.2+, `autoslice=true` on the place-order call) answers the parent's
`order_id` and `children`, each a placed slice (`order_id`) or an `error` payload (Kite's error envelope:
`message`, `error_type`). Kite tags every slice with the request's `tag`: Thor's parent client order id.
"""

from collections.abc import Mapping
from typing import Any

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.adapters.types import SlicedPlacement, SliceOutcome

# What a child that is neither placed nor explains itself is shown as.
UNEXPLAINED = "Kite did not place this slice."


def _child_error(error: object) -> str:
    if isinstance(error, Mapping):
        message = error.get("message") or error.get("error_type") or ""
        return str(message) or UNEXPLAINED
    return str(error or "") or UNEXPLAINED


def _outcome(child: object) -> SliceOutcome:
    if isinstance(child, Mapping) and child.get("order_id"):
        return SliceOutcome(broker_order_id=str(child["order_id"]))
    return SliceOutcome(error=_child_error(child.get("error") if isinstance(child, Mapping) else child)[:500])


def sliced_placement_of(data: Any) -> SlicedPlacement:
    """The answer's parent id and slices; an answer without a parent id says nothing certain of what was
    placed (UNCONFIRMED: the order is settled from the book, never sent again)."""
    if not isinstance(data, Mapping) or not data.get("order_id") or not isinstance(data.get("children"), list):
        raise BrokerError(
            "Kite's autoslice answer named no parent order.", code=BrokerErrorCode.UNCONFIRMED, retry_after=1.0
        )
    return SlicedPlacement(
        broker_order_id=str(data["order_id"]),
        children=tuple(_outcome(child) for child in data["children"]),
        raw=dict(data),
    )
