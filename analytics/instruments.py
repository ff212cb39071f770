"""Loading the Kite instruments dump: an upsert by (exchange, tradingsymbol) that keeps expired contracts."""

import csv
import io
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.models import Instrument
from thor.errors import ApplicationError

logger = logging.getLogger("analytics.instruments")

DUMP_TIMEOUT_SECONDS = 30
BATCH = 2000
FIELDS = (
    "instrument_token",
    "exchange_token",
    "name",
    "segment",
    "instrument_type",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "listed_price",
    "expired",
)


@dataclass(frozen=True)
class LoadSummary:
    added: int
    updated: int
    expired: int
    unchanged: int
    skipped: int


class InstrumentDumpUnavailable(ApplicationError):
    def __init__(self, reason: str):
        super().__init__(f"The instruments dump could not be read: {reason}", code="instruments_unavailable")


def dump_rows_from_file(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as error:
        raise InstrumentDumpUnavailable(error.strerror or type(error).__name__) from None


def dump_rows_from_kite() -> list[dict[str, str]]:
    """The full dump from Kite's public `/instruments` (the sandbox's in development)."""
    try:
        response = requests.get(f"{settings.THOR_KITE_API_ROOT}/instruments", timeout=DUMP_TIMEOUT_SECONDS)
        response.raise_for_status()
    except requests.RequestException as error:
        raise InstrumentDumpUnavailable(type(error).__name__) from None
    return list(csv.DictReader(io.StringIO(response.text)))


def _decimal(raw: str) -> Decimal:
    try:
        return Decimal(raw or "0").quantize(Decimal("0.0001"))
    except InvalidOperation:
        raise ValueError(f"not a number: {raw!r}") from None


def _parse(row: Mapping[str, str], today: date) -> dict:
    expiry = date.fromisoformat(row["expiry"]) if row.get("expiry") else None
    return {
        "instrument_token": int(row["instrument_token"]),
        "exchange_token": int(row.get("exchange_token") or 0),
        "name": (row.get("name") or "").strip(),
        "segment": row.get("segment") or "",
        "instrument_type": row.get("instrument_type") or "",
        "expiry": expiry,
        "strike": _decimal(row.get("strike", "")),
        "tick_size": _decimal(row.get("tick_size", "")),
        "lot_size": int(float(row.get("lot_size") or 1)),
        "listed_price": _decimal(row.get("last_price", "")),
        "expired": expiry is not None and expiry < today,
    }


@transaction.atomic
def instruments_load(
    *,
    rows: Iterable[Mapping[str, str]],
    today: date | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LoadSummary:
    """Upsert the dump's rows; contracts past expiry, or no longer listed, are marked expired, never deleted.

    A malformed row is skipped and logged, so one bad line does not stop the day's load.
    """
    today = today or timezone.localdate()
    rows = list(rows)
    existing = {(item.exchange, item.tradingsymbol): item for item in Instrument.objects.all()}
    seen: set[tuple[str, str]] = set()
    to_create, to_update = [], []
    expired = unchanged = skipped = 0
    for position, row in enumerate(rows, start=1):
        try:
            key = (row["exchange"], row["tradingsymbol"])
            values = _parse(row, today)
        except (KeyError, ValueError, TypeError) as error:
            skipped += 1
            logger.warning("Skipped instrument row %d: %s", position, error)
            continue
        seen.add(key)
        current = existing.get(key)
        if current is None:
            to_create.append(Instrument(exchange=key[0], tradingsymbol=key[1], **values))
        elif any(getattr(current, field) != value for field, value in values.items()):
            expired += values["expired"] and not current.expired
            for field, value in values.items():
                setattr(current, field, value)
            current.updated_at = timezone.now()
            to_update.append(current)
        else:
            unchanged += 1
        if progress and (position % BATCH == 0 or position == len(rows)):
            progress(position, len(rows))
    expired += sum(item.expired for item in to_create)
    Instrument.objects.bulk_create(to_create, batch_size=BATCH)
    if to_update:
        Instrument.objects.bulk_update(to_update, [*FIELDS, "updated_at"], batch_size=BATCH)
    delisted = [item.pk for key, item in existing.items() if key not in seen and not item.expired]
    if delisted:
        Instrument.objects.filter(pk__in=delisted).update(expired=True, updated_at=timezone.now())
    return LoadSummary(
        added=len(to_create),
        updated=len(to_update) + len(delisted),
        expired=expired + len(delisted),
        unchanged=unchanged,
        skipped=skipped,
    )
