"""US symbols' streaming tokens: one per symbol, back to the same symbol, never a Kite token, exact in JSON."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.schwab_stream import wanted_symbols
from market.services import ticks_watch
from market.sources import us_seed_rows
from market.ticks import MarketStream, StreamSession
from market.us_tokens import ALPHABET, MAX_SYMBOL_LENGTH, is_us_token, us_symbol, us_token

pytestmark = pytest.mark.usefixtures("ticks_flushed")


symbols = st.text(alphabet=ALPHABET, min_size=1, max_size=MAX_SYMBOL_LENGTH)


@given(symbols, symbols)
def test_each_symbol_has_its_own_token_and_comes_back_from_it(first, second):
    token = us_token(first)
    assert token is not None and is_us_token(token)
    assert 2**32 <= token < 2**53  # above every Kite token; a browser's JSON number holds it exactly
    assert us_symbol(token) == first
    assert (us_token(second) == token) == (second == first)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_kite_tokens_are_not_us_tokens(token):
    assert not is_us_token(token) and us_symbol(token) is None


def test_symbols_that_cannot_have_a_token():
    assert us_token("") is None
    assert us_token("A" * (MAX_SYMBOL_LENGTH + 1)) is None
    assert us_token("aapl") is None and us_token("BRK B") is None
    assert us_token("BRK.B") is not None and us_symbol(us_token("BRK.B")) == "BRK.B"


def test_the_us_seed_gives_each_symbol_its_token():
    rows = us_seed_rows()
    assert rows and all(row["instrument_token"] == str(us_token(row["tradingsymbol"])) for row in rows)


def test_the_kite_stream_leaves_us_tokens_to_schwabs():
    ticks_watch([us_token("AAPL"), INFY := 408065])
    kite_stream = MarketStream(StreamSession("api-key", "access-token", 1), root="ws://127.0.0.1:9/ws")
    assert kite_stream._wanted() == {INFY}
    assert wanted_symbols() == {"AAPL"}
