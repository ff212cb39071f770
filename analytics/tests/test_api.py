"""The F&O and futures endpoints on chains the sandbox served, and on bad and hostile input."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from analytics.models import ChainQuote, ChainSnapshot
from analytics.snapshots import chain_snapshot_take
from brokers.tests.sandbox_fixtures import sandbox_calls, sandbox_fault

pytestmark = pytest.mark.django_db

STRIKES = "/api/fo/strike-distribution"
SERIES = "/api/fo/moneyness-series"
SIGNALS = "/api/futures/position-signals"
ROLLOVER = "/api/futures/rollover-metrics"


def _get(client, path, **params):
    return client.get(path, params)


# --- strike distribution ------------------------------------------------------------------------


def test_the_strike_distribution_of_the_nearest_expiry_is_complete_and_consistent(chain_sandbox, bob_client):
    summary = chain_snapshot_take(underlying="NIFTY")
    response = _get(bob_client, STRIKES, underlying="nifty", strikes_around_atm=3)
    assert response.status_code == 200, response.json()
    body = response.json()
    nearest = ChainSnapshot.objects.filter(taken_at=summary.taken_at).order_by("expiry").first()
    assert (body["underlying"], body["expiry"], body["source"]) == ("NIFTY", nearest.expiry.isoformat(), "live")
    assert [row["strike_offset"] for row in body["strikes"]] == [-3, -2, -1, 0, 1, 2, 3]
    chain = body["chain"]
    assert float(chain["atm_strike"]) == nearest.atm_strike == float(body["strikes"][3]["strike"])
    rows = ChainQuote.objects.filter(taken_at=summary.taken_at, expiry=nearest.expiry)
    call_oi = sum(rows.filter(option_type="CE").values_list("oi", flat=True))
    put_oi = sum(rows.filter(option_type="PE").values_list("oi", flat=True))
    assert (chain["call_oi"], chain["put_oi"]) == (call_oi, put_oi)
    assert chain["pcr_oi"] == pytest.approx(put_oi / call_oi)
    assert float(chain["max_pain_strike"]) in set(rows.values_list("strike", flat=True))
    assert 0.05 < chain["atm_iv"] < 1.0
    # The sandbox's smile is skewed to the puts.
    assert chain["skew_25_delta"] > 0
    assert chain["net_gamma_exposure"] == pytest.approx(sum(row["gamma_exposure"] for row in _all_strikes(bob_client)))
    assert 0 < chain["days_to_expiry"] <= 7
    atm_call = body["strikes"][3]["call"]
    assert float(atm_call["bid"]) < float(atm_call["last_price"]) < float(atm_call["ask"])
    assert atm_call["oi_change"] == 0  # the day's first snapshot
    assert 0.3 < atm_call["delta"] < 0.7 and atm_call["gamma"] > 0 and atm_call["theta"] < 0
    depth = atm_call["depth"]
    assert float(depth["spread"]) == pytest.approx(float(atm_call["ask"]) - float(atm_call["bid"]))
    assert 0 < depth["liquidity_score"] <= 100
    assert float(atm_call["bid"]) <= float(depth["microprice"]) <= float(atm_call["ask"])
    # The ATM option is priced at the ATM IV: its premium against the model is small.
    assert abs(float(atm_call["premium"])) < 0.05 * float(atm_call["last_price"])


def _all_strikes(client):
    return client.get(STRIKES, {"underlying": "NIFTY", "strikes_around_atm": 50}).json()["strikes"]


def test_one_side_a_named_expiry_and_the_oi_change_since_the_first_snapshot(chain_sandbox, alice_client, settings):
    settings.THOR_ANALYTICS_EXPIRIES = 2
    first = chain_snapshot_take(underlying="NIFTY", at=timezone.now() - timedelta(minutes=1))
    chain_snapshot_take(underlying="NIFTY")
    later_expiry = ChainSnapshot.objects.filter(taken_at=first.taken_at).order_by("expiry")[1].expiry
    body = _get(
        alice_client, f"{STRIKES}/", underlying="NIFTY", expiry=later_expiry.isoformat(), option_side="put"
    ).json()
    assert body["expiry"] == later_expiry.isoformat()
    assert all(row["call"] is None and row["put"] for row in body["strikes"])
    opening = dict(
        ChainQuote.objects.filter(taken_at=first.taken_at, expiry=later_expiry).values_list("tradingsymbol", "oi")
    )
    for row in body["strikes"]:
        put = row["put"]
        assert put["oi_change"] == put["oi"] - opening[put["tradingsymbol"]]


def test_a_second_read_within_the_period_is_served_from_the_cache(chain_sandbox, bob_client):
    chain_snapshot_take(underlying="NIFTY")
    assert _get(bob_client, STRIKES, underlying="NIFTY").json()["source"] == "live"
    again = _get(bob_client, STRIKES, underlying="NIFTY").json()
    assert again["source"] == "cache"


def test_an_old_chain_is_refreshed_and_one_that_cannot_be_is_served_stale(chain_sandbox, bob_client):
    old = chain_snapshot_take(underlying="NIFTY", at=timezone.now() - timedelta(hours=1))
    sandbox_fault(chain_sandbox, kind="5xx", path="/quote")
    calls = sandbox_calls(chain_sandbox, "GET /quote")
    stale = _get(bob_client, STRIKES, underlying="NIFTY").json()
    assert stale["source"] == "stale"
    assert stale["as_of"].startswith(old.taken_at.strftime("%Y-%m-%dT%H:%M:%S"))
    tried = sandbox_calls(chain_sandbox, "GET /quote")
    assert tried > calls
    # A failed refresh is not retried by every reader within the period.
    _get(bob_client, STRIKES, underlying="NIFTY", strikes_around_atm=2)
    assert sandbox_calls(chain_sandbox, "GET /quote") == tried

    requests_clear_faults(chain_sandbox)
    cache.clear()
    fresh = _get(bob_client, STRIKES, underlying="NIFTY").json()
    assert fresh["source"] == "live" and fresh["as_of"] > stale["as_of"]


def requests_clear_faults(sandbox):
    import requests

    requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()


def test_a_configured_underlying_never_snapshotted_and_unreachable_is_503(bob_client, settings):
    settings.THOR_ANALYTICS_UNDERLYINGS = ["NIFTY"]
    settings.THOR_ANALYTICS_QUOTE_SOURCE = "sandbox"
    settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"  # nothing listens on the discard port
    response = _get(bob_client, STRIKES, underlying="NIFTY")
    assert response.status_code == 503
    assert response.json()["code"] == "market_data_unavailable"


# --- moneyness series ---------------------------------------------------------------------------


def test_the_moneyness_series_follows_the_money_across_snapshots(nifty_history, charlie_client):
    start = (nifty_history[0].taken_at - timedelta(seconds=1)).isoformat()
    body = _get(charlie_client, SERIES, underlying="NIFTY", moneyness="OTM2", metric="iv", **{"from": start}).json()
    assert body["count"] == len(nifty_history) == len(body["points"])
    for point, summary in zip(body["points"], nifty_history, strict=True):
        snapshot = ChainSnapshot.objects.filter(taken_at=summary.taken_at).order_by("expiry").first()
        # An OTM2 call is two strikes above that snapshot's ATM strike.
        assert float(point["strike"]) == snapshot.atm_strike + 100
        stored = ChainQuote.objects.get(
            taken_at=summary.taken_at, expiry=snapshot.expiry, option_type="CE", strike=float(point["strike"])
        )
        assert point["value"] == pytest.approx(stored.iv)
    itm_put = _get(
        charlie_client,
        SERIES,
        underlying="NIFTY",
        moneyness="ITM2",
        option_side="put",
        metric="premium",
        **{"from": start},
    ).json()
    assert [float(p["strike"]) for p in itm_put["points"]] == [float(p["strike"]) for p in body["points"]]
    five_minutes = _get(
        charlie_client, SERIES, underlying="NIFTY", metric="oi", interval="5m", **{"from": start}
    ).json()
    assert 1 <= five_minutes["count"] <= 2
    assert five_minutes["points"][-1]["t"] == body["points"][-1]["t"]


def test_an_empty_window_is_an_empty_series(nifty_history, bob_client):
    long_ago = timezone.now() - timedelta(days=300)
    response = _get(
        bob_client,
        SERIES,
        underlying="NIFTY",
        **{"from": long_ago.isoformat(), "to": (long_ago + timedelta(days=1)).isoformat()},
    )
    assert response.status_code == 200
    assert (response.json()["count"], response.json()["points"]) == (0, [])


# --- futures ------------------------------------------------------------------------------------


def test_position_signals_classify_the_near_future(nifty_history, bob_client, settings):
    body = _get(bob_client, SIGNALS, symbol="NIFTY", interval="1m").json()
    assert body["thresholds"] == {
        "price_change_pct": settings.THOR_ANALYTICS_SIGNAL_PRICE_PCT,
        "oi_change_pct": settings.THOR_ANALYTICS_SIGNAL_OI_PCT,
    }
    assert body["tradingsymbol"].endswith("FUT")
    assert len(body["points"]) == len(nifty_history) - 1
    assert body["signal"] == body["points"][-1]["signal"]
    futures = list(
        ChainQuote.objects.filter(option_type="FUT", tradingsymbol=body["tradingsymbol"]).order_by("taken_at")
    )
    for point, before, after in zip(body["points"], futures, futures[1:], strict=False):
        assert point["oi"] == after.oi
        assert point["oi_change_pct"] == pytest.approx((after.oi - before.oi) / before.oi * 100)


def test_rollover_metrics_sum_up_the_futures(nifty_history, bob_client):
    body = _get(bob_client, f"{ROLLOVER}/", symbol="NIFTY").json()
    contracts = body["contracts"]
    assert len(contracts) == 3 and [c["expiry"] for c in contracts] == sorted(c["expiry"] for c in contracts)
    total = sum(c["oi"] for c in contracts)
    assert body["rollover_pct"] == pytest.approx((total - contracts[0]["oi"]) / total * 100)
    near, following = float(contracts[0]["last_price"]), float(contracts[1]["last_price"])
    assert body["rollover_cost_pct"] == pytest.approx((following - near) / near * 100, rel=1e-3)
    assert body["rollover_cost_annualised_pct"] > body["rollover_cost_pct"] > 0
    assert body["days_to_expiry"] == contracts[0]["days_to_expiry"] > 0
    assert body["rollover_pressure_label"] in {"high", "moderate", "low"}
    assert body["rollover_pct_change"] is not None
    assert all(c["annualised_basis_pct"] > 0 for c in contracts)  # futures above spot: a cost of carry


# --- validation and hostile input ---------------------------------------------------------------


@pytest.mark.parametrize("path", [STRIKES, SERIES, SIGNALS, ROLLOVER, f"{STRIKES}/", f"{ROLLOVER}/"])
def test_every_endpoint_needs_a_jwt(anon_client, path):
    response = anon_client.get(path, {"underlying": "NIFTY", "symbol": "NIFTY"})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize(
    ("path", "param"), [(STRIKES, "underlying"), (SERIES, "underlying"), (SIGNALS, "symbol"), (ROLLOVER, "symbol")]
)
def test_an_unknown_underlying_is_a_404_listing_the_valid_ones(bob_client, settings, path, param):
    settings.THOR_ANALYTICS_UNDERLYINGS = ["NIFTY", "BANKNIFTY"]
    response = bob_client.get(path, {param: "FINNIFTY"})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert body["errors"][param] == ["Valid choices: BANKNIFTY, NIFTY."]


def test_an_unknown_expiry_is_a_404_listing_the_stored_ones(chain_sandbox, bob_client, settings):
    settings.THOR_ANALYTICS_EXPIRIES = 2
    summary = chain_snapshot_take(underlying="NIFTY")
    expiries = [
        e.isoformat()
        for e in ChainSnapshot.objects.filter(taken_at=summary.taken_at)
        .order_by("expiry")
        .values_list("expiry", flat=True)
    ]
    for path in (STRIKES, SERIES):
        response = bob_client.get(path, {"underlying": "NIFTY", "expiry": "2030-01-01"})
        assert response.status_code == 404
        assert response.json()["errors"]["expiry"] == [f"Valid choices: {', '.join(expiries)}."]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (STRIKES, {}, "underlying"),
        (STRIKES, {"underlying": "NIFTY' OR '1'='1"}, "underlying"),
        (STRIKES, {"underlying": "<script>alert(1)</script>"}, "underlying"),
        (STRIKES, {"underlying": "N" * 33}, "underlying"),
        (STRIKES, {"underlying": "NIFTY", "expiry": "2026-02-30"}, "expiry"),
        (STRIKES, {"underlying": "NIFTY", "expiry": "tomorrow"}, "expiry"),
        (STRIKES, {"underlying": "NIFTY", "option_side": "straddle"}, "option_side"),
        (STRIKES, {"underlying": "NIFTY", "strikes_around_atm": "-1"}, "strikes_around_atm"),
        (STRIKES, {"underlying": "NIFTY", "strikes_around_atm": "1000000"}, "strikes_around_atm"),
        (SERIES, {"underlying": "NIFTY", "moneyness": "ITM11"}, "moneyness"),
        (SERIES, {"underlying": "NIFTY", "metric": "password"}, "metric"),
        (SERIES, {"underlying": "NIFTY", "interval": "2m"}, "interval"),
        (SERIES, {"underlying": "NIFTY", "from": "yesterday"}, "from"),
        (SERIES, {"underlying": "NIFTY", "from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
        (SERIES, {"underlying": "NIFTY", "from": "2026-03-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
        (SERIES, {"underlying": "NIFTY", "from": "1900-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
        (SERIES, {"underlying": "NIFTY", "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "interval"),
        (SIGNALS, {"symbol": "NIFTY", "interval": "1w"}, "interval"),
        (SIGNALS, {"symbol": "NIFTY;DROP TABLE analytics_chainquote"}, "symbol"),
        (ROLLOVER, {"symbol": ""}, "symbol"),
    ],
)
def test_bad_and_hostile_parameters_are_400s_naming_the_field(bob_client, path, params, field):
    response = bob_client.get(path, params)
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]


def test_a_month_of_one_minute_points_is_allowed(bob_client, settings):
    settings.THOR_ANALYTICS_UNDERLYINGS = ["NIFTY"]
    settings.THOR_ANALYTICS_QUOTE_SOURCE = "sandbox"
    settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"
    params = {"underlying": "NIFTY", "from": "2026-01-01T00:00:00Z", "to": "2026-01-31T00:00:00Z"}
    # Valid parameters: past validation, to the chain (none here, and none can be taken).
    assert bob_client.get(SERIES, params).status_code == 503


@pytest.mark.parametrize("interval", ["1m", "5m", "1h", "1d"])
def test_the_series_postgresql_builds_is_the_one_python_builds(nifty_history, interval):
    import json

    from analytics import selectors

    snapshot = ChainSnapshot.objects.order_by("expiry").first()
    series = {
        "underlying": "NIFTY",
        "expiry": snapshot.expiry,
        "option_type": "PE",
        "strike_offset": -1,
        "start": nifty_history[0].taken_at - timedelta(days=1),
        "end": nifty_history[-1].taken_at + timedelta(seconds=1),
    }
    seconds = selectors.INTERVAL_SECONDS[interval]
    in_python = selectors._series_points(series, "iv", seconds)
    text, count = selectors._series_json(series, "iv", seconds)
    assert json.loads(text) == in_python and count == len(in_python) > 0
