"""How bench/tick_matching.py matches what a socket received to the ticks the sandbox sent (no servers: made-up logs)."""

import pytest

from bench.tick_matching import Sent, behind, sent_by_token, thor_latencies

INFY, SBIN = 101, 202
THOR, BASELINE = "c-thor", "c-base"


def log(*entries):
    """[seq, connection, token, price, sent at] as the sandbox's /_sandbox/ticker/sent gives them."""
    return [[seq, *entry] for seq, entry in enumerate(entries, start=1)]


TICKS = log(
    (THOR, INFY, 100.0, 10.0),
    (BASELINE, INFY, 100.0, 10.0),
    (THOR, INFY, 100.0, 11.0),  # same price: moves nothing
    (THOR, INFY, 100.05, 12.0),
    (THOR, INFY, 100.05, 13.0),
    (THOR, INFY, 100.0, 14.0),
    (THOR, SBIN, 800.0, 10.0),
)


def test_a_price_is_timed_from_the_first_tick_of_its_run_on_thors_connection_only():
    sent = sent_by_token(TICKS, {THOR})
    infy = sent[INFY]
    assert infy.times == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert infy.latest_at(100.05, 13.5) == 3 and infy.run_start[3] == 2
    assert infy.latest_at(100.0, 13.5) == 1 and infy.latest_at(100.0, 9.0) is None
    assert infy.latest_at(99.0, 20.0) is None


@pytest.mark.parametrize(
    ("received", "moment", "behind_by"),
    [
        ((12.5, 100.05), 13.5, None),  # the latest price: up to date
        ((10.5, 100.0), 13.5, 1.5),  # missed the move at 12.0
        ((10.5, 100.0), 14.5, None),  # back at its price: up to date again
        ((12.5, 100.05), 14.2, 0.2),  # missed the move back at 14.0
    ],
)
def test_behind_is_the_time_since_the_first_tick_not_caught_up_with(received, moment, behind_by):
    infy = Sent([10.0, 11.0, 12.0, 13.0, 14.0], [100.0, 100.0, 100.05, 100.05, 100.0])
    change = infy.first_change_after(infy.latest_at(received[1], received[0]), moment)
    assert (None if change is None else round(moment - change, 6)) == behind_by


def test_latencies_and_samples_of_one_socket():
    sent = sent_by_token(TICKS, {THOR})
    token_of = {"NSE:INFY": INFY, "NSE:SBIN": SBIN}
    socket = {
        "account_id": 1,
        # [received at, as_of, [[name, last_price], ...]]
        "messages": [[12.03, 12.01, [["NSE:INFY", "100.05"]]], [12.3, 12.01, [["NSE:INFY", "100.05"]]]],
    }
    every, first, later, stream_in, stream_out, unmatched = thor_latencies([socket], sent, token_of, (12.0, 15.0))
    assert [round(x, 3) for x in every] == [0.03, 0.3]
    assert [round(x, 3) for x in first] == [0.03] and [round(x, 3) for x in later] == [0.3]
    assert [round(x, 3) for x in stream_in] == [0.01] and [round(x, 3) for x in stream_out] == [0.02]
    assert unmatched == 0

    samples, at_end, unpriced = behind([socket], sent, token_of, {1: ["NSE:INFY", "NSE:SBIN"]}, (12.0, 14.5))
    # SBIN never received: behind since its first tick (10.0); INFY up to date until the move back at 14.0.
    assert unpriced == 1
    assert [round(x, 3) for x in at_end] == [0.5, 4.5]
    assert max(samples) == pytest.approx(4.5)
