"""GET /api/fo/strike-distribution on the chain the sandbox served."""

import pytest

from analytics.expiries import day_start
from analytics.models import ChainQuote, ChainSnapshot
from analytics.tests.api.conftest import STRIKES

pytestmark = pytest.mark.usefixtures("just_after_the_last_snapshot")


def opening_oi(taken_at, expiry) -> dict[str, int]:
    """OI by trading symbol at the day's first snapshot (India's day) up to `taken_at`."""
    first = (
        ChainSnapshot.objects.filter(expiry=expiry, taken_at__gte=day_start(taken_at), taken_at__lte=taken_at)
        .order_by("taken_at")
        .values_list("taken_at", flat=True)
        .first()
    )
    return dict(ChainQuote.objects.filter(taken_at=first, expiry=expiry).values_list("tradingsymbol", "oi"))


def test_the_strike_distribution_of_the_nearest_expiry_is_complete_and_consistent(history, bob_client):
    last = history[-1]
    response = bob_client.get(STRIKES, {"underlying": "nifty", "strikes_around_atm": 3})
    assert response.status_code == 200, response.json()
    body = response.json()
    nearest = ChainSnapshot.objects.filter(taken_at=last.taken_at).order_by("expiry").first()
    assert (body["underlying"], body["expiry"], body["source"]) == ("NIFTY", nearest.expiry.isoformat(), "live")
    assert [row["strike_offset"] for row in body["strikes"]] == [-3, -2, -1, 0, 1, 2, 3]
    chain = body["chain"]
    assert float(chain["atm_strike"]) == nearest.atm_strike == float(body["strikes"][3]["strike"])
    rows = ChainQuote.objects.filter(taken_at=last.taken_at, expiry=nearest.expiry)
    call_oi = sum(rows.filter(option_type="CE").values_list("oi", flat=True))
    put_oi = sum(rows.filter(option_type="PE").values_list("oi", flat=True))
    assert (chain["call_oi"], chain["put_oi"]) == (call_oi, put_oi)
    assert chain["pcr_oi"] == pytest.approx(put_oi / call_oi)
    assert float(chain["max_pain_strike"]) in set(rows.values_list("strike", flat=True))
    assert 0.05 < chain["atm_iv"] < 1.0
    # The sandbox's smile is skewed to the puts.
    assert chain["skew_25_delta"] > 0
    all_strikes = bob_client.get(STRIKES, {"underlying": "NIFTY", "strikes_around_atm": 50}).json()["strikes"]
    assert chain["net_gamma_exposure"] == pytest.approx(sum(row["gamma_exposure"] for row in all_strikes))
    assert 0 < chain["days_to_expiry"] <= 7
    atm_call = body["strikes"][3]["call"]
    assert float(atm_call["bid"]) < float(atm_call["last_price"]) < float(atm_call["ask"])
    assert (
        atm_call["oi_change"] == atm_call["oi"] - opening_oi(last.taken_at, nearest.expiry)[atm_call["tradingsymbol"]]
    )
    assert 0.3 < atm_call["delta"] < 0.7 and atm_call["gamma"] > 0 and atm_call["theta"] < 0
    depth = atm_call["depth"]
    assert float(depth["spread"]) == pytest.approx(float(atm_call["ask"]) - float(atm_call["bid"]))
    assert 0 < depth["liquidity_score"] <= 100
    assert float(atm_call["bid"]) <= float(depth["microprice"]) <= float(atm_call["ask"])
    # The ATM option is priced at the ATM IV: its premium against the model is small.
    assert abs(float(atm_call["premium"])) < 0.05 * float(atm_call["last_price"])


def test_one_side_of_a_named_expiry_with_the_oi_change_since_the_days_first_snapshot(history, alice_client):
    last = history[-1]
    later_expiry = ChainSnapshot.objects.filter(taken_at=last.taken_at).order_by("expiry")[1].expiry
    body = alice_client.get(
        f"{STRIKES}/", {"underlying": "NIFTY", "expiry": later_expiry.isoformat(), "option_side": "put"}
    ).json()
    assert body["expiry"] == later_expiry.isoformat()
    assert body["strikes"] and all(row["call"] is None and row["put"] for row in body["strikes"])
    opening = opening_oi(last.taken_at, later_expiry)
    for row in body["strikes"]:
        put = row["put"]
        assert put["oi_change"] == put["oi"] - opening[put["tradingsymbol"]]
