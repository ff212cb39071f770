"""load_instruments: an upsert of the Kite dump that counts what it added, updated and expired."""

import csv
from datetime import date
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from analytics.instruments import instruments_load
from analytics.models import Instrument
from analytics.tasks import load_instruments
from brokers.sandbox.market import chain_listing_day
from brokers.sandbox.option_chain import monthly_expiries, weekly_expiries

FIXTURE = Path(__file__).resolve().parents[2] / "brokers" / "sandbox" / "fixtures" / "instruments_all.csv"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_instruments_table():
    """Each load starts from nothing, even after the package's shared chain market (gone with the test's
    transaction)."""
    Instrument.objects.all().delete()


def _rows() -> list[dict]:
    with open(FIXTURE, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_the_fixture_dump_loads_with_its_past_contracts_marked_expired(capsys):
    rows = _rows()
    past_contracts = sum(1 for row in rows if row["expiry"] and date.fromisoformat(row["expiry"]) < date.today())
    call_command("load_instruments", "--file", str(FIXTURE))
    out, err = capsys.readouterr()
    assert f"{len(rows)} added, 0 updated, {past_contracts} expired" in out
    assert f"{len(rows)}/{len(rows)}" in err  # the progress bar reached the end
    assert Instrument.objects.count() == len(rows)
    assert Instrument.objects.filter(expired=True).count() == past_contracts
    option = Instrument.objects.get(exchange="NFO", tradingsymbol="BANKNIFTY18JAN23500CE")
    assert (option.name, option.instrument_type, option.lot_size) == ("", "CE", 40)
    assert str(option.strike) == "23500.0000" and option.expiry == date(2018, 1, 25)


def test_loading_again_changes_nothing_and_a_changed_row_is_updated(tmp_path, capsys):
    rows = _rows()
    instruments_load(rows=rows)
    first_id = Instrument.objects.get(tradingsymbol=rows[0]["tradingsymbol"]).pk
    call_command("load_instruments", "--file", str(FIXTURE))
    assert "0 added, 0 updated, 0 expired" in capsys.readouterr().out

    rows[0] = {**rows[0], "lot_size": "25", "tick_size": "0.1"}
    call_command("load_instruments", "--file", str(_write(tmp_path / "changed.csv", rows)))
    assert "0 added, 1 updated, 0 expired" in capsys.readouterr().out
    changed = Instrument.objects.get(tradingsymbol=rows[0]["tradingsymbol"])
    assert changed.pk == first_id and changed.lot_size == 25 and str(changed.tick_size) == "0.1000"


def test_a_contract_the_dump_no_longer_lists_is_kept_and_marked_expired():
    rows = _rows()
    instruments_load(rows=rows)
    live_equity = next(row for row in rows if not row["expiry"])
    summary = instruments_load(rows=[row for row in rows if row is not live_equity])
    assert (summary.added, summary.updated, summary.expired) == (0, 1, 1)
    kept = Instrument.objects.get(exchange=live_equity["exchange"], tradingsymbol=live_equity["tradingsymbol"])
    assert kept.expired


def test_a_new_contract_is_added_and_one_past_expiry_is_counted_expired_once():
    rows = _rows()
    future_row = {**rows[0], "tradingsymbol": "NIFTY99DECFUT", "expiry": "2099-12-31", "instrument_type": "FUT"}
    summary = instruments_load(rows=[future_row], today=date(2026, 1, 1))
    assert (summary.added, summary.expired) == (1, 0)
    summary = instruments_load(rows=[future_row], today=date(2100, 1, 1))
    assert (summary.added, summary.updated, summary.expired) == (0, 1, 1)
    assert instruments_load(rows=[future_row], today=date(2100, 1, 2)).expired == 0


def test_malformed_rows_are_skipped_not_fatal():
    rows = _rows()[:3]
    bad = [
        {**rows[0], "tradingsymbol": "BAD1", "instrument_token": "not-a-number"},
        {**rows[0], "tradingsymbol": "BAD2", "expiry": "2026-13-45"},
        {**rows[0], "tradingsymbol": "BAD3", "strike": "1e999999999'; DROP TABLE analytics_instrument;--"},
        {"tradingsymbol": "NO_EXCHANGE"},
    ]
    summary = instruments_load(rows=rows + bad)
    assert (summary.added, summary.skipped) == (3, 4)
    assert not Instrument.objects.filter(tradingsymbol__startswith="BAD").exists()


def test_a_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="could not be read"):
        call_command("load_instruments", "--file", str(tmp_path / "nope.csv"))


def test_the_daily_task_loads_the_sandbox_dump_with_its_chain(sandbox):
    summary = load_instruments.delay().get()
    assert summary["added"] == Instrument.objects.count() > 1000
    nifty = Instrument.objects.filter(name="NIFTY", exchange="NFO", expired=False)
    assert set(nifty.values_list("instrument_type", flat=True)) == {"CE", "PE", "FUT"}
    # Weekly and monthly expiries for NIFTY (a weekly may fall on a monthly), monthly only for BANKNIFTY.
    listing_day = chain_listing_day()
    expiries = set(weekly_expiries(listing_day)) | set(monthly_expiries(listing_day))
    assert set(nifty.values_list("expiry", flat=True)) == expiries
    assert Instrument.objects.filter(name="BANKNIFTY", instrument_type="CE").values("expiry").distinct().count() == 3
