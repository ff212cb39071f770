"""How bench/tick_pnl.py matches what the sockets and the baseline received to the ticks the sandbox sent
(`/_sandbox/ticker/sent`): each price to the first tick of the run of ticks at that price on the connection, and
how far behind each socket's prices fell. No servers: bench/test_tick_matching.py drives it with made-up logs."""

from bisect import bisect_right
from dataclasses import dataclass

# How often, in the window, each socket's prices are compared with the ticks sent by then (seconds).
SAMPLE_SECONDS = 0.1


@dataclass
class Sent:
    """One token's ticks on one connection, in the order sent."""

    times: list[float]
    prices: list[float]

    def __post_init__(self):
        count = len(self.prices)
        self.run_start = [0] * count  # the first tick of the run of equal prices each tick is in
        for index in range(1, count):
            same = self.prices[index] == self.prices[index - 1]
            self.run_start[index] = self.run_start[index - 1] if same else index
        self.next_change: list[int] = [count] * count  # the first later tick at another price
        for index in range(count - 2, -1, -1):
            same = self.prices[index + 1] == self.prices[index]
            self.next_change[index] = self.next_change[index + 1] if same else index + 1
        self.by_price: dict[float, tuple[list[int], list[float]]] = {}
        for index, price in enumerate(self.prices):
            indices, times = self.by_price.setdefault(price, ([], []))
            indices.append(index)
            times.append(self.times[index])

    def latest_at(self, price: float, moment: float) -> int | None:
        """The last tick at `price` sent by `moment`."""
        indices, times = self.by_price.get(price, ((), ()))
        position = bisect_right(times, moment) - 1
        return indices[position] if position >= 0 else None

    def first_change_after(self, index: int, moment: float) -> float | None:
        """When the first tick after `index` at another price was sent, if the price sent last by `moment` is
        not `index`'s; None: nothing newer to catch up with."""
        last = bisect_right(self.times, moment) - 1
        if last <= index or self.prices[last] == self.prices[index]:
            return None
        return self.times[self.next_change[index]]


def sent_by_token(ticks: list[list], connection_ids: set[str]) -> dict[int, Sent]:
    columns: dict[int, tuple[list[float], list[float]]] = {}
    for _seq, connection_id, token, price, sent_at in ticks:
        if connection_id in connection_ids:
            times, prices = columns.setdefault(token, ([], []))
            times.append(sent_at)
            prices.append(round(price, 4))
    return {token: Sent(times, prices) for token, (times, prices) in columns.items()}


def thor_latencies(results, sent, token_of, window):
    """(every position's latency, first P&L per socket per tick message, the later ones, sandbox -> stream and
    stream -> socket of the first ones, unmatched prices); seconds."""
    every, first, later, stream_in, stream_out, unmatched = [], [], [], [], [], 0
    for socket in results:
        seen_batches = set()
        for received_at, as_of, prices in socket["messages"]:
            if not window[0] <= received_at < window[1]:
                continue
            causes = []
            for name, price in prices:
                ticks = sent.get(token_of[name])
                index = ticks and ticks.latest_at(round(float(price), 4), received_at)
                if index is None:
                    unmatched += 1
                    continue
                caused_at = ticks.times[ticks.run_start[index]]
                causes.append(caused_at)
                every.append(received_at - caused_at)
            if not causes:
                continue
            batch = round(max(causes), 3)
            latency = received_at - max(causes)
            if batch in seen_batches:
                later.append(latency)
            else:
                seen_batches.add(batch)
                first.append(latency)
                stream_in.append(as_of - max(causes))
                stream_out.append(received_at - as_of)
    return every, first, later, stream_in, stream_out, unmatched


def baseline_latencies(receipts, sent, window) -> tuple[list[float], int]:
    latencies, unmatched = [], 0
    for received_at, ticks in receipts:
        if not window[0] <= received_at < window[1]:
            continue
        for token, price in ticks:
            series = sent.get(token)
            index = series and series.latest_at(round(price, 4), received_at)
            if index is None:
                unmatched += 1
            else:
                latencies.append(received_at - series.times[index])
    return latencies, unmatched


def behind(results, sent, token_of, holdings, window) -> tuple[list[float], list[float], int]:
    """How far behind each socket's price of each instrument its account holds was, at every sample and at the
    window's end (seconds); and the (socket, instrument) pairs with no price received by the end (behind since the
    first tick of the instrument)."""
    samples, at_end, unpriced = [], [], 0
    grid = [window[0] + step * SAMPLE_SECONDS for step in range(int((window[1] - window[0]) / SAMPLE_SECONDS) + 1)]
    for socket in results:
        received: dict[str, list[tuple[float, float]]] = {name: [] for name in holdings[socket["account_id"]]}
        for received_at, _as_of, prices in socket["messages"]:
            for name, price in prices:
                received.setdefault(name, []).append((received_at, round(float(price), 4)))
        for name, receipts in received.items():
            ticks = sent.get(token_of[name])
            if ticks is None:
                continue
            pointer, caught_up = -1, None
            for moment in grid:
                while pointer + 1 < len(receipts) and receipts[pointer + 1][0] <= moment:
                    pointer += 1
                    caught_up = ticks.latest_at(receipts[pointer][1], receipts[pointer][0])
                if caught_up is None:
                    # Nothing received yet: its book's price is the one read when it opened, before the stream
                    # started, which the first tick moved away from (the sandbox's prices move every second).
                    if ticks.times[0] <= moment:
                        samples.append(moment - ticks.times[0])
                        if moment == grid[-1]:
                            at_end.append(moment - ticks.times[0])
                    continue
                change = ticks.first_change_after(caught_up, moment)
                lag = 0.0 if change is None else moment - change
                samples.append(lag)
                if moment == grid[-1]:
                    at_end.append(lag)
            if caught_up is None:
                unpriced += 1
    return samples, at_end, unpriced
