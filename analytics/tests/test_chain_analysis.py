"""analytics.chain_analysis on hand-built rows: the strike distribution's and the rollover's figures."""

from datetime import UTC, date, datetime

import pytest

from analytics import chain_analysis
from analytics.chain_analysis import ChainPoint

AT = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 10:30 in India
EXPIRY = date(2026, 3, 5)


def quote(option_type, strike, offset, *, oi, volume=10, iv=0.15, delta=None, token=None):
    return {
        "tradingsymbol": f"NIFTY{int(strike)}{option_type}",
        "instrument_token": token or int(strike) * 10 + (option_type == "CE"),
        "option_type": option_type,
        "strike": strike,
        "strike_offset": offset,
        "last_price": 100.0,
        "bid": 99.0,
        "ask": 101.0,
        "bid_quantity": 50,
        "ask_quantity": 50,
        "depth_bid_quantity": 500,
        "depth_ask_quantity": 500,
        "volume": volume,
        "oi": oi,
        "iv": iv,
        "delta": delta if delta is not None else (0.5 if option_type == "CE" else -0.5),
        "gamma": 0.001,
        "theta": -1.0,
        "vega": 5.0,
        "rho": 1.0,
    }


QUOTES = [
    quote("CE", 24000.0, -1, oi=1000),
    quote("PE", 24000.0, -1, oi=3000),
    quote("CE", 24050.0, 0, oi=2000, volume=30),
    quote("PE", 24050.0, 0, oi=2000, volume=60),
    quote("CE", 24100.0, 1, oi=4000),
    quote("PE", 24100.0, 1, oi=500),
]
CHAIN = ChainPoint(EXPIRY, AT, forward=24060.0, spot=24000.0, atm_strike=24050.0)


def distribution(**options):
    kwargs = {"option_side": "both", "strikes_around_atm": 10, "rate": 0.065, **options}
    return chain_analysis.strike_distribution(CHAIN, [dict(q) for q in QUOTES], {24000 * 10 + 1: 400}, **kwargs)


def test_the_chain_figures_sum_the_sides():
    chain = distribution()["chain"]
    assert (chain["call_oi"], chain["put_oi"]) == (7000, 5500)
    assert chain["pcr_oi"] == pytest.approx(5500 / 7000)
    assert chain["pcr_volume"] == pytest.approx(80 / 50)
    assert chain["atm_iv"] == pytest.approx(0.15)
    assert chain["max_pain_strike"] in {24000.0, 24050.0, 24100.0}
    assert chain["days_to_expiry"] == pytest.approx(3 + 5 / 24)  # to 15:30 in India on the expiry day


def test_each_strike_within_the_asked_distance_with_the_asked_sides():
    rows = distribution(option_side="put", strikes_around_atm=0)["strikes"]
    assert [(row["strike"], row["strike_offset"]) for row in rows] == [(24050.0, 0)]
    assert rows[0]["call"] is None and rows[0]["put"]["oi"] == 2000


def test_the_oi_change_is_measured_from_the_opening_and_is_zero_without_one():
    rows = {row["strike"]: row for row in distribution()["strikes"]}
    assert rows[24000.0]["call"]["oi_change"] == 1000 - 400
    assert rows[24100.0]["call"]["oi_change"] == 0


def test_the_rollover_of_hand_built_futures():
    futures = [
        {"expiry": date(2026, 3, 26), "tradingsymbol": "NIFTY26MARFUT", "last_price": 24100.0, "oi": 6000},
        {"expiry": date(2026, 4, 30), "tradingsymbol": "NIFTY26APRFUT", "last_price": 24250.0, "oi": 3000},
        {"expiry": date(2026, 5, 28), "tradingsymbol": "NIFTY26MAYFUT", "last_price": 24400.0, "oi": 1000},
    ]
    figures = chain_analysis.rollover(futures, 24000.0, AT, opening_rollover_pct=30.0)
    assert figures["rollover_pct"] == pytest.approx(40.0)
    assert figures["rollover_pct_change"] == pytest.approx(10.0)
    assert figures["rollover_cost_pct"] == pytest.approx(150 / 24100 * 100)
    assert figures["rollover_cost_annualised_pct"] == pytest.approx(150 / 24100 * 100 * 365 / 35)
    assert [c["oi_share_pct"] for c in figures["contracts"]] == pytest.approx([60.0, 30.0, 10.0])
    assert figures["contracts"][0]["basis"] == pytest.approx(100.0)
    assert chain_analysis.rollover([], None, AT, None)["rollover_pressure_label"] == "unknown"
