"""When each exchange closes and squares off intraday positions (accounts.market_data, accounts.paper_closing).

MCX's internationally referenced contracts trade until 23:30 IST while New York keeps summer time and until
23:55 in the US winter, moving with the US clock change from the next trading day (MCX's circulars; in 2026 the
US changed on Sunday 8 March and Sunday 1 November). Zerodha squares commodities off 25 minutes before the close.
"""

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from accounts.market_data import EXCHANGES, Instrument, us_summer_time_on
from accounts.paper_closing import square_off_at, square_off_due

IST = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")
SUMMER, WINTER = date(2026, 7, 15), date(2026, 12, 8)


def ist(day: date, hour: int, minute: int) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=IST)


@pytest.mark.parametrize(
    ("day", "close"),
    [
        (date(2026, 3, 6), time(23, 55)),  # the Friday before the US moves its clocks forward
        (date(2026, 3, 9), time(23, 30)),  # the Monday after
        (SUMMER, time(23, 30)),
        (date(2026, 10, 30), time(23, 30)),  # the Friday before the US moves them back
        (date(2026, 11, 2), time(23, 55)),  # the Monday after
        (WINTER, time(23, 55)),
    ],
)
def test_mcx_closes_at_half_past_eleven_in_the_us_summer_and_five_to_midnight_in_its_winter(day, close):
    assert EXCHANGES["MCX"].session_end_on(day) == close


def test_new_york_keeps_summer_time_from_the_second_sunday_of_march_to_the_first_of_november():
    assert [us_summer_time_on(date(2026, 3, day)) for day in (7, 8, 9)] == [False, True, True]
    assert [us_summer_time_on(date(2026, 11, day)) for day in (1, 2)] == [False, False]
    assert us_summer_time_on(date(2026, 10, 31)) is True


@pytest.mark.parametrize("exchange", ["NSE", "BSE", "NFO", "BFO", "NASDAQ", "NYSE"])
def test_other_exchanges_close_at_the_same_time_all_year(exchange):
    assert EXCHANGES[exchange].session_end_on(SUMMER) == EXCHANGES[exchange].session_end_on(WINTER)


class TestMcxSquareOff:
    def test_twenty_five_minutes_before_the_close(self):
        assert square_off_at(exchange="MCX", day=SUMMER) == ist(SUMMER, 23, 5)
        assert square_off_at(exchange="MCX", day=WINTER) == ist(WINTER, 23, 30)

    def test_in_the_us_winter_a_position_is_not_closed_at_the_summer_time(self):
        opened = ist(WINTER, 10, 0)

        assert square_off_due(exchange="MCX", since=opened, now=ist(WINTER, 23, 6)) is False
        assert square_off_due(exchange="MCX", since=opened, now=ist(WINTER, 23, 29)) is False
        assert square_off_due(exchange="MCX", since=opened, now=ist(WINTER, 23, 30)) is True

    def test_in_the_us_summer_it_is_closed_before_the_half_past_eleven_close(self):
        opened = ist(SUMMER, 10, 0)

        assert square_off_due(exchange="MCX", since=opened, now=ist(SUMMER, 23, 4)) is False
        assert square_off_due(exchange="MCX", since=opened, now=ist(SUMMER, 23, 5)) is True

    def test_a_position_left_open_across_the_clock_change_is_closed_the_next_morning(self):
        # Opened on the last summer-hours Friday after its 23:05 cut, the pass missed it: Monday morning closes it.
        friday, monday = date(2026, 10, 30), date(2026, 11, 2)

        assert square_off_due(exchange="MCX", since=ist(friday, 22, 0), now=ist(monday, 9, 30)) is True

    @pytest.mark.parametrize("exchange", ["NSE", "NFO"])
    def test_indian_equity_and_derivatives_keep_zerodhas_fixed_times(self, exchange):
        fixed = {"NSE": time(15, 20), "NFO": time(15, 25)}[exchange]
        assert square_off_at(exchange=exchange, day=WINTER) == datetime.combine(WINTER, fixed, tzinfo=IST)


class TestMcxExpiryDay:
    """A contract expiring today trades until that day's close, not a fixed 23:30."""

    def contract(self, expiry: date) -> Instrument:
        return Instrument(exchange="MCX", symbol="CRUDEOIL26DECFUT", tick_size=Decimal("1"), lot_size=1, expiry=expiry)

    def test_in_the_us_winter_it_still_trades_at_a_quarter_to_midnight(self):
        contract = self.contract(WINTER)

        assert contract.expired_at(ist(WINTER, 23, 45)) is False
        assert contract.expired_at(ist(WINTER, 23, 55)) is True

    def test_in_the_us_summer_it_expires_at_half_past_eleven(self):
        contract = self.contract(SUMMER)

        assert contract.expired_at(ist(SUMMER, 23, 29)) is False
        assert contract.expired_at(ist(SUMMER, 23, 30)) is True
        assert contract.expired_at(ist(SUMMER, 23, 30) + timedelta(days=1)) is True
