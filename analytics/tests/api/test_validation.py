"""The F&O and futures endpoints on bad and hostile input: 401, 404 listing the choices, 400 naming the field."""

import pytest

from analytics.models import ChainSnapshot
from analytics.tests.api.conftest import ROLLOVER, SERIES, SIGNALS, STRIKES

pytestmark = pytest.mark.django_db


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


def test_an_unknown_expiry_is_a_404_listing_the_stored_ones(history, bob_client):
    expiries = [
        e.isoformat()
        for e in ChainSnapshot.objects.filter(taken_at=history[-1].taken_at)
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
    settings.THOR_ANALYTICS_UNDERLYINGS = ["NIFTY", "BANKNIFTY"]
    settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"
    params = {"underlying": "BANKNIFTY", "from": "2026-01-01T00:00:00Z", "to": "2026-01-31T00:00:00Z"}
    # Valid parameters: past validation, to the chain (none here, and none can be taken).
    assert bob_client.get(SERIES, params).status_code == 503
