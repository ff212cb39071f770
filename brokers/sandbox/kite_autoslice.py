"""Kite's autoslice (`autoslice=true` on the place-order call), as the sandbox plays it.

Kite's OMS splits an order above the exchange's freeze quantity into slices of at most the freeze quantity
(in whole lots), at most MAX_SLICES of them, places each as an order of its own carrying the request's tag,
and answers the parent's `order_id` with its `children`: each a placed slice (`order_id`) or an `error`
(Kite's error envelope). The sandbox splits as Thor's paper engine does: full slices, then the rest. A
`slice_reject` fault answers chosen slices as errors (a partial failure).
"""

from .kite_models import KiteError, input_error
from .market import Instrument

MAX_SLICES = 10
REJECTED_SLICE_MESSAGE = "RMS: Margin Exceeds for this slice. Check the orderbook for the slices placed."


def freeze_size(instrument: Instrument) -> int | None:
    """The largest slice: the freeze quantity down to whole lots; None where the exchange sets no limit."""
    if instrument.freeze_quantity is None:
        return None
    lot = max(instrument.lot_size, 1)
    return max(instrument.freeze_quantity // lot, 1) * lot


def above_freeze_error(instrument: Instrument, quantity: int) -> KiteError | None:
    """A plain order above the freeze quantity is refused, as the exchange would."""
    size = freeze_size(instrument)
    if size is None or quantity <= size:
        return None
    return input_error(
        f"Quantity {quantity} exceeds the freeze limit of {instrument.freeze_quantity} for "
        f"{instrument.tradingsymbol}. Place it with autoslice or in smaller orders."
    )


def slice_sizes(instrument: Instrument, quantity: int) -> list[int]:
    """The slices an autoslice order of `quantity` is placed as; Kite's error beyond MAX_SLICES."""
    size = freeze_size(instrument)
    if size is None or quantity <= size:
        return [quantity]
    full, rest = divmod(quantity, size)
    if full + (1 if rest else 0) > MAX_SLICES:
        raise input_error(
            f"Quantity {quantity} needs more than {MAX_SLICES} slices of the freeze limit "
            f"{instrument.freeze_quantity} for {instrument.tradingsymbol}. Reduce the quantity."
        )
    return [size] * full + ([rest] if rest else [])


def error_child(message: str) -> dict:
    return {"error": {"status": "error", "error_type": "InputException", "message": message, "data": None}}
