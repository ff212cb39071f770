"""The pieces of real-time P&L that need no socket: the throttle on a clock the test moves, and which price a
REST read of a paper account takes, the market stream's or the quote's."""

import time
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts import presenters, selectors
from accounts.models import TradingAccount
from accounts.pnl import book_load, book_tick, position_prices_message
from accounts.tests.conftest import place
from accounts.ticks import Throttle
from conftest import client_for
from market import caches
from market.selectors import instrument_token
from market.tests.fixtures import NIFTY_FUTURE

INFY = 408065


def test_the_throttle_lets_one_send_through_a_period(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("accounts.ticks.clock", lambda: now[0])
    throttle = Throttle(0.25)
    assert throttle.wait() == 0
    throttle.sent()
    now[0] += 0.1
    assert throttle.wait() == pytest.approx(0.15)
    now[0] += 0.15
    assert throttle.wait() == 0


@pytest.fixture
def alice_holds_infy(alice, instrument_master):
    caches.ticks_flush()
    client = client_for(alice)
    assert place(client, quantity=10).status_code == 201  # at the fixed price, 1500.00
    yield client
    caches.ticks_flush()


def rest_last_price(client) -> tuple[str, str]:
    body = client.get("/api/accounts/primary/positions").json()
    return body["data"][0]["last_price"], body["source"]


@pytest.mark.django_db
@override_settings(THOR_LIVE_FRESH_SECONDS=5)
def test_a_rest_read_takes_the_streams_price_while_it_is_fresh(alice_holds_infy):
    caches.last_prices_write({INFY: "1512.25"})
    assert rest_last_price(alice_holds_infy) == ("1512.2500", "live")

    # The stream went quiet: the quote (newer) is shown again.
    caches.last_prices_write({INFY: "1512.25"}, received_at=time.time() - 6)
    assert rest_last_price(alice_holds_infy) == ("1500.0000", "live")


@pytest.mark.django_db
def test_a_store_that_cannot_be_read_leaves_the_quote(alice_holds_infy, monkeypatch):
    def down(tokens):
        raise ConnectionError("redis://secret@host")

    monkeypatch.setattr("market.selectors.last_prices_read", down)
    assert rest_last_price(alice_holds_infy) == ("1500.0000", "live")


HELD = [("NSE", "INFY"), ("NSE", "SBIN"), ("NSE", "RELIANCE"), ("NFO", NIFTY_FUTURE)]
PRODUCTS = ["CNC", "MIS", "NRML"]
prices = st.decimals(min_value=Decimal("0.05"), max_value=Decimal("99999.95"), places=2)


@st.composite
def books_and_ticks(draw):
    positions = draw(
        st.lists(
            st.tuples(
                st.sampled_from(HELD),
                st.sampled_from(PRODUCTS),
                st.integers(min_value=-500, max_value=500),
                prices,
                st.decimals(min_value=-10000, max_value=10000, places=2),
            ),
            min_size=1,
            max_size=6,
            unique_by=lambda position: (position[0], position[1]),
        )
    )
    quoted = {instrument: draw(prices) for instrument in HELD}
    # Ticks of what the account holds and of what it does not (a token no position is on), in any order, repeated.
    ticks = draw(st.lists(st.tuples(st.sampled_from([*HELD, ("NSE", "TCS")]), prices), max_size=12))
    return positions, quoted, ticks


@pytest.mark.django_db
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile (conftest)
@given(case=books_and_ticks())
def test_the_sockets_pnl_after_any_ticks_is_what_rest_shows_at_those_prices(alice, instrument_master, case):
    """Whatever the positions (long, short, closed; any product) and the ticks (repeated, out of order, on
    tokens not held), the book's positions and funds are REST's at the same prices, to the cent."""
    positions, quoted, ticks = case
    account = TradingAccount.objects.get(user=alice, is_primary=True)
    account.paper_positions.all().delete()
    for (exchange, symbol), product, quantity, average, realised in positions:
        account.paper_positions.create(
            exchange=exchange,
            symbol=symbol,
            product=product,
            quantity=quantity,
            average_price=average,
            realised_pnl=realised,
        )
    fixed = {f"{exchange}:{symbol}": str(price) for (exchange, symbol), price in quoted.items()}
    with override_settings(THOR_PAPER_FIXED_PRICES=fixed):
        book = book_load(account.pk)
    tokens = {
        instrument: instrument_token(exchange=instrument[0], tradingsymbol=instrument[1])
        for instrument in [*HELD, ("NSE", "TCS")]
    }
    final = dict(quoted)
    for instrument, price in ticks:
        book_tick(book, tokens[instrument], price)
        final[instrument] = price
    message = position_prices_message(book, HELD, as_of=timezone.now())

    fixed = {f"{exchange}:{symbol}": str(price) for (exchange, symbol), price in final.items()}
    with override_settings(THOR_PAPER_FIXED_PRICES=fixed):
        rest_positions = presenters.positions_data(selectors.positions_get(account=account).data)
        rest_funds = presenters.funds_data(selectors.funds_get(account=account).data)
    key = lambda position: (position["exchange"], position["tradingsymbol"], position["product"])  # noqa: E731
    assert sorted(message["data"]["positions"], key=key) == sorted(rest_positions, key=key)
    assert message["data"]["funds"] == rest_funds
