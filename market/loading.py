"""Loading the instrument master: a bulk upsert by (exchange, tradingsymbol) that writes only what changed.

Rows come in Kite's dump columns (sources.py). Each batch is compared with what the master holds and only
new or changed rows are written, in one INSERT ... ON CONFLICT DO UPDATE per batch, so a reload of an
unchanged dump writes nothing. On PostgreSQL a batch is COPYed into a temporary table and upserted from
it in one statement; on SQLite (the embedded mode) one executemany of the same upsert. (Django's
bulk_create spends most of a full load preparing each field of each row.) Contracts past expiry stay, marked expired and not tradable; when a load
is a source's complete listing, what it no longer lists is marked so too, never deleted.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from itertools import islice

from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from brokers.contract_multipliers import contract_multiplier
from brokers.freeze_limits import freeze_quantity
from market.caches import instruments_flush
from market.models import Instrument

logger = logging.getLogger("market.loading")

BATCH = 5000
# Compared with what the master holds, and written when any differs.
FIELDS = (
    "source",
    "instrument_token",
    "exchange_token",
    "name",
    "segment",
    "instrument_type",
    "expiry",
    "strike",
    "lot_size",
    "tick_size",
    "freeze_quantity",
    "multiplier",
    "currency",
    "tradable",
    "expired",
)
CURRENCIES = {"NASDAQ": "USD", "NYSE": "USD"}
_NAME, _MULTIPLIER, _TRADABLE = (FIELDS.index(field) for field in ("name", "multiplier", "tradable"))
_FOUR_PLACES = Decimal("0.0001")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LoadSummary:
    added: int
    updated: int
    unchanged: int
    expired: int
    skipped: int
    # Tradable contracts counted in lots whose multiplier Thor does not know (brokers.contract_multipliers):
    # paper refuses them until the table lists their underlying.
    unsized: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _decimal(value) -> Decimal:
    try:
        return Decimal(str(value) if value not in (None, "") else "0").quantize(_FOUR_PLACES)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def _optional_int(value) -> int | None:
    return int(value) if value not in (None, "") else None


def _expiry(value) -> date | None:
    if isinstance(value, date):
        return value
    return date.fromisoformat(value) if value else None


def _values(row: Mapping, source: str, today: date) -> tuple:
    """The row as the master stores it, in FIELDS order."""
    exchange = row["exchange"]
    expiry = _expiry(row.get("expiry"))
    segment = row.get("segment") or ""
    lot_size = int(float(row.get("lot_size") or 0))
    name = (row.get("name") or "").strip()
    expired = expiry is not None and expiry < today
    derivative = expiry is not None
    return (
        source,
        _optional_int(row.get("instrument_token")),
        _optional_int(row.get("exchange_token")),
        name,
        segment,
        row.get("instrument_type") or "",
        expiry,
        _decimal(row.get("strike")),
        max(lot_size, 1),
        _decimal(row.get("tick_size")),
        freeze_quantity(exchange=exchange, name=name) if derivative else None,
        contract_multiplier(exchange=exchange, name=name, lot_size=max(lot_size, 1)),
        CURRENCIES.get(exchange, "INR"),
        # An index has a price, but no order can be placed on it.
        not expired and segment != "INDICES",
        expired,
    )


def _batches(rows: Sequence, size: int):
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _current() -> dict[tuple[str, str], tuple]:
    """What the master holds, keyed by (exchange, tradingsymbol), in FIELDS order."""
    return {
        (exchange, symbol): values
        for exchange, symbol, *values in Instrument.objects.values_list("exchange", "tradingsymbol", *FIELDS)
    }


@transaction.atomic
def instruments_load(
    *,
    rows: Sequence[Mapping],
    source: str = Instrument.Source.KITE,
    complete: bool = True,
    today: date | None = None,
    progress: Progress | None = None,
) -> LoadSummary:
    """Upsert `rows` (a source's dump) into the master; the counts of what happened.

    `complete`: the rows are the source's whole listing, so its contracts missing from them are marked
    expired (a search's answer is not). A malformed row is skipped and logged: one bad line does not stop
    the day's load.
    """
    today = today or timezone.localdate()
    now = timezone.now()
    current = _current()
    seen: set[tuple[str, str]] = set()
    added = updated = unchanged = expired = skipped = done = 0
    unsized: dict[tuple[str, str], int] = {}
    write = _copy_upsert if connection.vendor == "postgresql" else _executemany_upsert
    for batch in _batches(rows, BATCH):
        writes = []
        for row in batch:
            try:
                key = (row["exchange"], row["tradingsymbol"])
                values = _values(row, source, today)
            except (KeyError, ValueError, TypeError) as error:
                skipped += 1
                logger.warning("Skipped instrument row %r: %s", row.get("tradingsymbol"), error)
                continue
            if key in seen:
                continue
            seen.add(key)
            if values[_MULTIPLIER] is None and values[_TRADABLE]:
                underlying = (key[0], values[_NAME])
                unsized[underlying] = unsized.get(underlying, 0) + 1
            held = current.get(key)
            if held is not None and tuple(held) == values:
                unchanged += 1
                continue
            added += held is None
            updated += held is not None
            expired += values[-1] and (held is None or not held[-1])
            writes.append((*key, *values, now))
        if writes:
            write(writes)
        done += len(batch)
        if progress:
            progress(done, len(rows))
    if complete:
        expired += _expire_unlisted(source, current, seen, now)
    instruments_flush()
    if unsized:
        named = ", ".join(f"{exchange}:{name or '?'} ({count})" for (exchange, name), count in sorted(unsized.items()))
        logger.warning(
            "%s tradable contracts have no known multiplier (add their underlyings to "
            "brokers/contract_multipliers.py; paper refuses them meanwhile): %s",
            sum(unsized.values()),
            named[:2000],
        )
    return LoadSummary(
        added=added,
        updated=updated,
        unchanged=unchanged,
        expired=expired,
        skipped=skipped,
        unsized=sum(unsized.values()),
    )


def instrument_upsert(*, row: Mapping, source: str) -> Instrument:
    """One row (a search's answer, in the dump's columns) into the master, as a load would store it: the
    instrument as the master holds it now. Cheap, unlike `instruments_load`, which reads the whole master
    to compare."""
    values = dict(zip(FIELDS, _values(row, source, timezone.localdate()), strict=True))
    instrument, _ = Instrument.objects.update_or_create(
        exchange=row["exchange"],
        tradingsymbol=row["tradingsymbol"],
        defaults={**values, "updated_at": timezone.now()},
    )
    return instrument


COLUMNS = ("exchange", "tradingsymbol", *FIELDS, "updated_at")
_STAGING = "market_instrument_staging"
_ADAPTED = {"DateField", "DecimalField", "DateTimeField"}


def _upsert_sql(table: str, source: str) -> str:
    columns = ", ".join(COLUMNS)
    updates = ", ".join(f"{column} = excluded.{column}" for column in (*FIELDS, "updated_at"))
    # Names only from the model and this module, never from the rows.
    return f"INSERT INTO {table} ({columns}) {source} ON CONFLICT (exchange, tradingsymbol) DO UPDATE SET {updates}"


def _column_field(column: str) -> Field:
    field = Instrument._meta.get_field(column)
    if not isinstance(field, Field):  # every column is a concrete field, never a relation
        raise TypeError(f"{column} is not a column of Instrument")
    return field


def _executemany_upsert(writes: list[tuple]) -> None:
    fields = [_column_field(column) for column in COLUMNS]
    # Only dates, decimals and times need the backend's own form; the rest pass as they are.
    adapted = [index for index, field in enumerate(fields) if field.get_internal_type() in _ADAPTED]
    rows = []
    for values in writes:
        row = list(values)
        for index in adapted:
            row[index] = fields[index].get_db_prep_save(row[index], connection)
        rows.append(row)
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    with connection.cursor() as cursor:
        cursor.executemany(_upsert_sql(Instrument._meta.db_table, f"VALUES ({placeholders})"), rows)


def _copy_upsert(writes: list[tuple]) -> None:
    table, columns = Instrument._meta.db_table, ", ".join(COLUMNS)
    create = f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ON COMMIT DROP AS SELECT {columns} FROM {table} WITH NO DATA"  # noqa: S608
    upsert = _upsert_sql(table, f"SELECT {columns} FROM {_STAGING}")  # noqa: S608
    with connection.cursor() as cursor:
        # Dropped with the load's transaction; created once per load, emptied after each batch.
        cursor.execute(create)
        with cursor.copy(f"COPY {_STAGING} ({columns}) FROM STDIN") as copy:
            for values in writes:
                copy.write_row(values)
        cursor.execute(upsert)
        cursor.execute(f"TRUNCATE {_STAGING}")


def _expire_unlisted(source: str, current: dict, seen: set, now) -> int:
    source_index, expired_index = FIELDS.index("source"), FIELDS.index("expired")
    gone = [
        key
        for key, values in current.items()
        if values[source_index] == source and not values[expired_index] and key not in seen
    ]
    for batch in _batches(gone, BATCH):
        exchanges = {exchange for exchange, _ in batch}
        for exchange in exchanges:
            Instrument.objects.filter(
                exchange=exchange, tradingsymbol__in=[symbol for ex, symbol in batch if ex == exchange]
            ).update(expired=True, tradable=False, updated_at=now)
    return len(gone)
