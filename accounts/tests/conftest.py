import pytest

from market.tests.fixtures import NIFTY_FUTURE, NIFTY_OPTION

PRICES = {
    "NSE:INFY": "1500.00",
    "NSE:SBIN": "800.00",
    f"NFO:{NIFTY_FUTURE}": "24000.00",
    f"NFO:{NIFTY_OPTION}": "180.00",
    "NASDAQ:AAPL": "230.00",
}


@pytest.fixture(autouse=True)
def fixed_prices(settings):
    """A fixed price table, no slippage and no charges, unless a test says otherwise."""
    settings.THOR_PAPER_PRICE_SOURCE = "fixed"
    settings.THOR_PAPER_FIXED_PRICES = dict(PRICES)
    settings.THOR_PAPER_SLIPPAGE_BPS = 0
    settings.THOR_PAPER_CHARGES = {"enabled": False, "tenants": {}}
    return settings.THOR_PAPER_FIXED_PRICES


def order_body(**overrides):
    body = {
        "tradingsymbol": "INFY",
        "exchange": "NSE",
        "transaction_type": "BUY",
        "quantity": 10,
        "order_type": "MARKET",
        "product": "CNC",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def place(client, account="primary", key=None, **overrides):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(f"/api/accounts/{account}/orders", order_body(**overrides), format="json", **headers)
