"""The sandbox's Kite ticker as an exchange's feed: every connection ticks at the same instants and hears the same
tick, each instrument's packet built once an instant however many connections send it, and built again when a
price is pinned or the market's clock moves to another instant."""

import pytest

from brokers.sandbox import kite_ticker
from brokers.sandbox.kite_ticker import MODE_FULL, MODE_LTP
from brokers.sandbox.server import SandboxState

INFY, RELIANCE = 408065, 738561
TICK_SECONDS = 0.5


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Monotonic:
    """time.monotonic as the hub reads it, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(monkeypatch):
    clock, monotonic = Clock(), Monotonic()
    monkeypatch.setattr(kite_ticker.time, "monotonic", monotonic)
    state = SandboxState(apps=[], clock=clock)
    hub = kite_ticker.KiteTickerHub(state.kite, state.market, clock=clock, tick_seconds=TICK_SECONDS)
    built = []
    real_packet = kite_ticker.tick_packet

    def counted(market, instrument, mode, now):
        built.append((instrument.token, mode))
        return real_packet(market, instrument, mode, now)

    monkeypatch.setattr(kite_ticker, "tick_packet", counted)
    return hub, state.market, clock, monotonic, built


def test_connections_ticking_at_one_instant_send_the_same_packets_built_once(world):
    hub, _market, _clock, _monotonic, built = world

    first = hub._packets({INFY: MODE_FULL, RELIANCE: MODE_LTP})
    second = hub._packets({RELIANCE: MODE_LTP, INFY: MODE_FULL})

    assert sorted(first) == sorted(second)
    assert sorted(built) == sorted([(INFY, MODE_FULL), (RELIANCE, MODE_LTP)])


def test_a_sender_woken_a_hair_off_the_instant_is_at_the_same_one(world):
    hub, _market, _clock, monotonic, built = world
    monotonic.now = 1000.49  # just before the instant at 1000.5

    hub._packets({INFY: MODE_FULL})
    monotonic.now = 1000.52  # just after it
    hub._packets({INFY: MODE_FULL})

    assert built == [(INFY, MODE_FULL)]


def test_the_next_instant_builds_again(world):
    hub, _market, clock, monotonic, built = world
    hub._packets({INFY: MODE_FULL})

    monotonic.now += TICK_SECONDS
    clock.now += TICK_SECONDS
    hub._packets({INFY: MODE_FULL})

    assert built == [(INFY, MODE_FULL), (INFY, MODE_FULL)]


def test_a_pinned_price_is_in_the_next_message_even_within_the_instant(world):
    hub, market, _clock, _monotonic, _built = world
    before = hub._packets({INFY: MODE_LTP})

    market.pin("NSE:INFY", 1234.5)
    after = hub._packets({INFY: MODE_LTP})

    assert kite_ticker._token_price(after[0]) == (INFY, 1234.5)
    assert after != before
    market.pin("NSE:INFY", None)
    assert hub._packets({INFY: MODE_LTP}) != after  # released: built again


def test_a_market_clock_that_jumps_is_another_instant(world):
    hub, _market, clock, _monotonic, built = world
    hub._packets({INFY: MODE_FULL})

    clock.now += 7  # a test's frozen clock moved on; the monotonic one did not
    hub._packets({INFY: MODE_FULL})

    assert len(built) == 2


def test_one_mode_s_packet_never_serves_another(world):
    hub, _market, _clock, _monotonic, _built = world

    ltp = hub._packets({INFY: MODE_LTP})
    full = hub._packets({INFY: MODE_FULL})

    assert len(ltp[0]) == 8 and len(full[0]) == 184


def test_unknown_and_foreign_tokens_are_left_out_and_never_cached_as_packets(world):
    hub, market, _clock, _monotonic, built = world
    us_token = market.find("NASDAQ:AAPL").token if market.find("NASDAQ:AAPL") else None

    tokens = {1: MODE_FULL, 2**40: MODE_FULL, INFY: MODE_LTP}
    if us_token is not None:
        tokens[us_token] = MODE_FULL
    packets = hub._packets(tokens)

    assert [kite_ticker._token_price(packet)[0] for packet in packets] == [INFY]
    assert built == [(INFY, MODE_LTP)]
