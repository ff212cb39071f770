"""load_instruments (command and daily task): the sandbox's dump through the official Kite client, the US
seed, a progress bar on stderr; a dump that cannot be read fails the command and changes nothing."""

import io

import pytest
import responses
from django.core.management import CommandError, call_command

from brokers.sandbox.option_chain import MONTH_NAMES, monthly_expiries
from market.models import Instrument
from market.tasks import load_instruments

pytestmark = pytest.mark.django_db


def test_the_command_loads_the_sandboxs_dump_and_the_us_seed(sandbox):
    out, err = io.StringIO(), io.StringIO()

    call_command("load_instruments", stdout=out, stderr=err)

    listed = sandbox.state.catalogue.all_rows
    assert Instrument.objects.filter(source="kite").count() == len(listed)
    assert set(Instrument.objects.filter(source="schwab").values_list("tradingsymbol", flat=True)) == {
        "AAPL", "MSFT", "NVDA", "AMZN", "SPY", "JPM", "KO"
    }  # fmt: skip
    near = monthly_expiries(sandbox.state.market.chain.today)[0]
    future = Instrument.objects.get(tradingsymbol=f"NIFTY{near:%y}{MONTH_NAMES[near.month - 1]}FUT")
    assert future.tradable and future.lot_size == 65 and future.freeze_quantity == 1800
    assert f"kite: {len(listed)} added" in out.getvalue()
    assert "rows/s" in err.getvalue() and f"{len(listed)}/{len(listed)} rows" in err.getvalue()


def test_a_file_in_kites_columns_is_loaded_instead(tmp_path, sandbox):
    dump = tmp_path / "instruments.csv"
    dump.write_text(sandbox.state.catalogue.csv_text("NFO"))

    call_command("load_instruments", "--file", str(dump), stdout=io.StringIO(), stderr=io.StringIO())

    assert set(Instrument.objects.filter(source="kite").values_list("exchange", flat=True)) == {"NFO"}


@responses.activate
def test_an_unreachable_dump_fails_the_command_and_changes_nothing(settings):
    responses.get(f"{settings.THOR_KITE_API_ROOT}/instruments", status=503)

    with pytest.raises(CommandError, match="instruments dump could not be read"):
        call_command("load_instruments", stdout=io.StringIO(), stderr=io.StringIO())

    assert not Instrument.objects.exists()


def test_the_daily_task_loads_the_same_way_and_a_rerun_writes_nothing(sandbox):
    first = load_instruments.delay().get()
    again = load_instruments.delay().get()

    assert first["kite"]["added"] == Instrument.objects.filter(source="kite").count() > 1000
    assert again["kite"] == {
        "added": 0,
        "updated": 0,
        "unchanged": first["kite"]["added"],
        "expired": 0,
        "skipped": 0,
        "unsized": 0,  # every MCX and currency contract the sandbox lists has a known size
    }
