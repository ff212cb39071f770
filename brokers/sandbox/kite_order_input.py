"""What the sandbox's Kite refuses in a new order before it enters the book, with Kite's own messages."""

from collections.abc import Mapping

from .kite_ledger import order_terms, price_band_require, require_choice
from .kite_models import input_error
from .kite_quotes import allowed_band
from .market import KITE_EXCHANGES, Instrument, Market

VARIETIES = ("regular", "amo", "co", "iceberg", "auction")
TRANSACTION_TYPES = ("BUY", "SELL")
PRODUCTS = ("CNC", "NRML", "MIS", "MTF", "CO", "BO")
MAX_TAG_LENGTH = 20
MAX_ALGO_ID_LENGTH = 20


def variety_require(variety: str) -> None:
    if variety not in VARIETIES:
        raise input_error("Invalid `variety`.")


def new_order_checked(market: Market, variety: str, params: Mapping[str, str]) -> tuple[Instrument, dict]:
    """The order's instrument and terms (validity DAY unless given), or Kite's InputException for what is missing,
    unknown, too long or outside the instrument's price band."""
    variety_require(variety)
    for name in ("exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type"):
        if not params.get(name):
            raise input_error(f"Missing `{name}`.")
    require_choice(params, "exchange", KITE_EXCHANGES)
    require_choice(params, "transaction_type", TRANSACTION_TYPES)
    require_choice(params, "product", PRODUCTS)
    terms = order_terms(params, defaults={"validity": "DAY"})
    for name, limit in (("tag", MAX_TAG_LENGTH), ("algo_id", MAX_ALGO_ID_LENGTH)):
        if len(params.get(name) or "") > limit:
            raise input_error(f"`{name}` must be at most {limit} characters.")
    instrument = market.find(f"{params['exchange']}:{params['tradingsymbol']}")
    if instrument is None:
        raise input_error("The instrument you are placing an order for has either expired or does not exist.")
    price_band_require(terms, allowed_band(market, instrument))
    return instrument, terms
