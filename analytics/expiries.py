"""When a contract expires and how far away that is, on the market's clock (India's)."""

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
MARKET_CLOSE_IST = time(15, 30)
SECONDS_PER_YEAR = 365.0 * 86400


def expiry_moment(expiry: date) -> datetime:
    return datetime.combine(expiry, MARKET_CLOSE_IST, IST)


def years_to_expiry(expiry: date, at: datetime) -> float:
    # Half a day at least: an expiring contract still has its last hours' time value.
    return max((expiry_moment(expiry) - at).total_seconds() / SECONDS_PER_YEAR, 0.5 / 365)


def days_to_expiry(expiry: date, at: datetime) -> float:
    return max((expiry_moment(expiry) - at).total_seconds() / 86400, 0.0)


def day_start(at: datetime) -> datetime:
    """Midnight in India of the day `at` falls on: where the market's day starts."""
    return at.astimezone(IST).replace(hour=0, minute=0, second=0, microsecond=0)
