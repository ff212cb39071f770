"""Chain snapshots against the sandbox: within the quote budget, with IV and Greeks, and pruned on time."""

import math
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from analytics.chain_snapshots import chain_snapshot_take, chain_snapshots_prune
from analytics.models import ChainQuote, ChainSnapshot
from analytics.tasks import prune_snapshots, snapshot_chains
from brokers.sandbox.option_chain import OptionChainBook, black76
from brokers.tests.sandbox_fixtures import sandbox_calls, sandbox_fault
from market.models import Instrument
from market.quotes import FRESH_SECONDS
from thor.upstream import UpstreamError

pytestmark = pytest.mark.django_db(transaction=False)


def test_a_snapshot_stores_each_quoted_contract_with_iv_and_greeks(chain_sandbox, settings):
    settings.THOR_ANALYTICS_EXPIRIES = 2
    settings.THOR_ANALYTICS_STRIKES_AROUND_ATM = 5
    summary = chain_snapshot_take(underlying="NIFTY")
    snapshots = list(ChainSnapshot.objects.filter(taken_at=summary.taken_at).order_by("expiry"))
    assert len(snapshots) == summary.expiries == 2
    options = ChainQuote.objects.filter(taken_at=summary.taken_at).exclude(option_type="FUT")
    # 15 strikes (5 each side of the money and a margin of 2) x 2 sides x 2 expiries, plus every listed future.
    assert options.count() == 60
    futures = ChainQuote.objects.filter(taken_at=summary.taken_at, option_type="FUT")
    assert futures.count() == 3 and summary.rows == 63
    for snapshot in snapshots:
        rows = list(options.filter(expiry=snapshot.expiry))
        assert set(range(-5, 6)) <= {row.strike_offset for row in rows}
        atm = [row for row in rows if row.strike_offset == 0]
        assert {row.strike for row in atm} == {snapshot.atm_strike}
        assert abs(snapshot.atm_strike - snapshot.forward) <= 25  # NIFTY strikes are 50 apart
        for row in rows:
            assert row.iv is not None and 0.05 < row.iv < 2.0, row.tradingsymbol
            assert row.bid < row.last_price < row.ask
            assert row.depth_bid_quantity > row.bid_quantity > 0
            assert (row.delta > 0) == (row.option_type == "CE")
            assert row.gamma > 0 and row.vega > 0 and row.theta < 0
        # A smile with a put skew: the lowest strike's IV above the ATM IV.
        lowest = min(rows, key=lambda row: row.strike)
        assert lowest.iv > atm[0].iv


def test_the_iv_of_a_sandbox_price_prices_it_back(chain_sandbox, settings):
    settings.THOR_ANALYTICS_EXPIRIES = 1
    summary = chain_snapshot_take(underlying="NIFTY")
    snapshot = ChainSnapshot.objects.get(taken_at=summary.taken_at)
    discount = math.exp(-settings.THOR_ANALYTICS_RISK_FREE_RATE * snapshot.years_to_expiry)
    for row in ChainQuote.objects.filter(taken_at=summary.taken_at, option_type="CE", strike_offset__in=[-3, 0, 3]):
        repriced = black76(snapshot.forward, row.strike, snapshot.years_to_expiry, row.iv, True)
        assert repriced == pytest.approx(row.last_price, rel=1e-6)
        if row.strike_offset == 0:
            assert row.delta == pytest.approx(discount * 0.5, abs=0.1)


def test_a_snapshot_of_every_underlying_stays_within_the_quote_budget(chain_sandbox, time_passes):
    assert snapshot_chains.delay().get() > 0
    calls = sandbox_calls(chain_sandbox, "GET /quote")
    # Each underlying: its futures first (no earlier forward to place the money), then one call for its chain.
    assert calls == 4
    # The next snapshot knows the forward: one call per underlying (once the quotes of this one are no longer
    # fresh: the quote service answers from its cache within FRESH_SECONDS).
    time_passes(FRESH_SECONDS)
    snapshot_chains.delay().get()
    assert sandbox_calls(chain_sandbox, "GET /quote") == calls + 2
    for underlying in ("NIFTY", "BANKNIFTY"):
        assert ChainSnapshot.objects.filter(underlying=underlying).values("taken_at").distinct().count() == 2


def test_a_chain_bigger_than_one_call_is_split_into_calls_of_500(chain_sandbox, settings, time_passes):
    settings.THOR_ANALYTICS_EXPIRIES = 7
    settings.THOR_ANALYTICS_STRIKES_AROUND_ATM = 30
    chain_snapshot_take(underlying="NIFTY", at=timezone.now() - timedelta(minutes=1))
    time_passes(FRESH_SECONDS)
    before = sandbox_calls(chain_sandbox, "GET /quote")
    summary = chain_snapshot_take(underlying="NIFTY")
    # Up to 7 expiries x 61 strikes x 2 + 3 futures: more than one call holds.
    assert 500 < summary.rows <= 857
    assert sandbox_calls(chain_sandbox, "GET /quote") - before == summary.quote_calls == 2


def test_the_command_snapshots_one_underlying(chain_sandbox, capsys):
    call_command("snapshot_chains", "--underlying", "banknifty")
    assert "BANKNIFTY:" in capsys.readouterr().out
    assert set(ChainSnapshot.objects.values_list("underlying", flat=True)) == {"BANKNIFTY"}


def test_a_failing_broker_is_a_command_error_and_writes_nothing(chain_sandbox):
    sandbox_fault(chain_sandbox, kind="5xx", path="/quote")
    with pytest.raises(CommandError, match="NIFTY"):
        call_command("snapshot_chains", "--underlying", "NIFTY")
    assert not ChainQuote.objects.exists()
    # The beat task logs it and goes on.
    assert snapshot_chains.delay().get() == 0


def test_a_snapshot_never_stores_the_stale_quotes_a_failing_broker_leaves(chain_sandbox, settings, time_passes):
    settings.THOR_ANALYTICS_EXPIRIES = 1
    first = chain_snapshot_take(underlying="NIFTY")
    sandbox_fault(chain_sandbox, kind="5xx", path="/quote")
    time_passes(FRESH_SECONDS)  # the quote service has the last good quotes, no longer live

    with pytest.raises(UpstreamError):
        chain_snapshot_take(underlying="NIFTY")

    assert set(ChainQuote.objects.values_list("taken_at", flat=True)) == {first.taken_at}


def test_an_unknown_underlying_snapshots_nothing(chain_sandbox):
    summary = chain_snapshot_take(underlying="NOSUCH")
    assert (summary.rows, summary.quote_calls) == (0, 0)


def test_snapshots_older_than_the_retention_are_pruned(chain_sandbox, settings):
    settings.THOR_ANALYTICS_RETENTION_DAYS = 30
    settings.THOR_ANALYTICS_EXPIRIES = 1
    settings.THOR_ANALYTICS_STRIKES_AROUND_ATM = 2
    now = timezone.now()
    old = chain_snapshot_take(underlying="NIFTY", at=now - timedelta(days=31))
    kept = chain_snapshot_take(underlying="NIFTY", at=now - timedelta(days=29))
    assert prune_snapshots.delay().get() == old.rows
    assert set(ChainQuote.objects.values_list("taken_at", flat=True)) == {kept.taken_at}
    assert set(ChainSnapshot.objects.values_list("taken_at", flat=True)) == {kept.taken_at}
    assert chain_snapshots_prune() == 0


def test_the_sandbox_chain_moves_and_keeps_its_shape():
    book = OptionChainBook(timezone.now().date())
    future = next(contract for contract in book.contracts.values() if contract.kind == "FUT")
    prices = {book.price(future, 24500.0 * book.session_drift(now), now) for now in range(0, 7200, 600)}
    assert len(prices) > 5


def test_the_beat_task_on_a_new_installation_loads_the_instruments_first(chain_sandbox, settings):
    sandbox = chain_sandbox
    settings.THOR_ANALYTICS_UNDERLYINGS = ["NIFTY"]
    settings.THOR_ANALYTICS_EXPIRIES = 1
    Instrument.objects.all().delete()  # a new installation (rolled back with the test)
    assert snapshot_chains.delay().get() > 0
    assert Instrument.objects.filter(name="NIFTY").exists()
    assert sandbox_calls(sandbox, "GET /instruments") == 1
    snapshot_chains.delay().get()
    assert sandbox_calls(sandbox, "GET /instruments") == 1  # listed now: not loaded again


def test_without_the_dump_the_beat_task_logs_and_returns(settings, db):
    Instrument.objects.all().delete()
    settings.THOR_KITE_API_ROOT = "http://127.0.0.1:9"
    assert snapshot_chains.delay().get() == 0
