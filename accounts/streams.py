"""The account streams of the order WebSocket (accounts.consumers): one channel layer group per account.

Every message on an account's stream is `{"type", "account_id", "seq", "as_of", "data"}`. `seq` counts
the account's messages one by one (AccountStream, in the database, so it survives restarts) and each
OrderEvent row keeps the numbers of the messages it published. The Redis channel layer drops a
message for a socket over capacity without telling anyone; a socket that sees a gap, or reconnects,
is resent what it missed from the OrderEvent rows (`stream_messages_since`), never from memory.

One publish helper for every event source: `publish_order_change`, called by accounts.audit for
every OrderEvent of an order (paper fills, API changes, Kite postbacks, syncs, placement confirmations).
A message's `data` is the order, positions or funds as accounts.presenters shows them, as the API does.
"""

import copy
import logging
from datetime import datetime
from decimal import Decimal
from typing import cast

from django.db import connection, transaction
from django.utils import timezone

from accounts import presenters
from accounts.models import AccountStream, Order, OrderEvent, TradingAccount
from thor import realtime
from thor.fields import timestamp_text

logger = logging.getLogger("accounts.streams")

ORDER_UPDATE = "order_update"
POSITION_UPDATE = "position_update"
FUNDS_UPDATE = "funds_update"
# What a change publishes, in seq order: a fill moves positions and cash as well as the order.
CHANGE_MESSAGES = (ORDER_UPDATE,)
FILL_MESSAGES = (ORDER_UPDATE, POSITION_UPDATE, FUNDS_UPDATE)


def account_group(account_id: int) -> str:
    return f"orders.account.{account_id}"


def stream_message(kind: str, *, account_id: int, seq: int, as_of: datetime, data) -> dict:
    return {"type": kind, "account_id": account_id, "seq": seq, "as_of": timestamp_text(as_of), "data": data}


def stream_batch(messages: list[dict]) -> dict:
    """Consecutive messages of one stream as one channel layer message: group_send costs a round of
    Redis work per member, so a fill's positions and funds travel together."""
    return {"type": "stream_messages", "messages": messages}


def messages_for_change(*, order: Order, before: dict) -> tuple[str, ...]:
    return FILL_MESSAGES if order.filled_quantity > Decimal(before.get("filled_quantity") or 0) else CHANGE_MESSAGES


# An upsert (PostgreSQL, and SQLite since 3.35): the account's first message needs no row made beforehand.
ADVANCE_SQL = (
    "INSERT INTO accounts_accountstream (account_id, last_seq) VALUES (%s, %s) "
    "ON CONFLICT (account_id) DO UPDATE SET last_seq = accounts_accountstream.last_seq + excluded.last_seq "
    "RETURNING last_seq"
)
# The same, taken only from the one row of the statement's `gate` (a data-modifying WITH before it).
_GATED_ADVANCE_SQL = (
    "INSERT INTO accounts_accountstream (account_id, last_seq) SELECT %s, %s FROM gate "
    "ON CONFLICT (account_id) DO UPDATE SET last_seq = accounts_accountstream.last_seq + excluded.last_seq "
    "RETURNING last_seq"
)


def stream_seq_advance(*, account_id: int, count: int) -> int:
    """Take the account's next `count` sequence numbers; returns the last one.

    One statement, so two processes never take the same number; the row stays locked until the
    caller's transaction ends, so numbers are committed in the order they were taken.
    """
    with connection.cursor() as cursor:
        cursor.execute(ADVANCE_SQL, [account_id, count])
        return cursor.fetchone()[0]


SEQ_FIELDS = ("seq", "last_seq")


def event_with_seq_create(*, count: int, **fields) -> OrderEvent:
    """The OrderEvent of a change that publishes `count` messages, holding their sequence numbers (`seq` to
    `last_seq`), taken as stream_seq_advance takes them. On PostgreSQL the numbers and the row are one
    statement (the upsert as a data-modifying WITH): every order change writes one, and a placement two.
    """
    if connection.vendor != "postgresql":
        last_seq = stream_seq_advance(account_id=fields["account_id"], count=count)
        return OrderEvent.objects.create(**fields, seq=last_seq - count + 1, last_seq=last_seq)
    return cast(OrderEvent, _event_with_seq_insert(count=count, gate=None, fields=fields))  # ungated: a row


def event_with_seq_create_gated(*, gate: tuple[str, list], count: int, **fields) -> OrderEvent | None:
    """event_with_seq_create in the same statement as the change it records (PostgreSQL only).

    `gate` is that change as the WITH list that starts the statement, `name AS (...), ...`, whose last
    query is named `gate` and returns one row when the change was made, none when it was not; the numbers
    are taken and the row written only from that row. One statement is all or nothing: a change that fails
    (a unique constraint) takes the audit row with it. None when the gate returned no row (nothing written).
    """
    return _event_with_seq_insert(count=count, gate=gate, fields=fields)


def _event_with_seq_insert(*, count: int, gate: tuple[str, list] | None, fields: dict) -> OrderEvent | None:
    account_id = fields["account_id"]
    event = OrderEvent(**fields)
    columns = [
        field for field in OrderEvent._meta.concrete_fields if not field.primary_key and field.name not in SEQ_FIELDS
    ]
    values = [field.get_db_prep_save(getattr(event, field.attname), connection) for field in columns]
    quote = connection.ops.quote_name
    gate_sql, gate_params = gate if gate is not None else ("", [])
    advance = f"{gate_sql}, advanced AS ({_GATED_ADVANCE_SQL})" if gate is not None else f"advanced AS ({ADVANCE_SQL})"
    sql = (
        f"WITH {advance} "  # noqa: S608 (column names from the model, values as parameters)
        f"INSERT INTO {quote(OrderEvent._meta.db_table)} "
        f"({', '.join(quote(field.column) for field in columns)}, {quote('seq')}, {quote('last_seq')}) "
        f"SELECT {', '.join(['%s'] * len(columns))}, advanced.last_seq - %s + 1, advanced.last_seq FROM advanced "
        f"RETURNING {quote('id')}, {quote('seq')}, {quote('last_seq')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*gate_params, account_id, count, *values, count])
        row = cursor.fetchone()
    if row is None:
        return None
    event.pk, event.seq, event.last_seq = row
    event._state.adding, event._state.db = False, connection.alias
    return event


def stream_seq_current(*, account_id: int) -> int:
    return AccountStream.objects.filter(account_id=account_id).values_list("last_seq", flat=True).first() or 0


def publish_order_change(*, order: Order, event: OrderEvent) -> None:
    """Tell the account's sockets about the change once it commits, never if it rolls back.

    The order's message is built now: a paper order is placed and filled in one transaction, and each
    step is its own update. Positions and funds are read after the commit, so they are the new ones.
    """
    order_update = stream_message(
        ORDER_UPDATE,
        account_id=order.account_id,
        seq=event.seq,
        as_of=event.created_at,
        data=presenters.order_data(order),
    )

    def send():
        group = account_group(order.account_id)
        # The order first: it is ready, and the reads behind positions and funds take a while.
        realtime.publish(group=group, messages=[stream_batch([order_update])])
        if event.last_seq > event.seq:
            holdings = holdings_messages(account_id=order.account_id, first_seq=event.seq + 1)
            realtime.publish(group=group, messages=[stream_batch(holdings)])

    # robust: the change is committed whatever happens to its announcement.
    transaction.on_commit(send, robust=True)


def holdings_messages(*, account_id: int, first_seq: int) -> list[dict]:
    """The account's positions and funds now, as the `position_update` and `funds_update` of a fill."""
    # accounts.selectors reaches accounts.audit (through the paper engine), which publishes through here.
    from accounts import selectors

    account = TradingAccount.objects.select_related("user__tenant", "connection__app").get(pk=account_id)
    messages = []
    for offset, (kind, read, render) in enumerate(
        (
            (POSITION_UPDATE, selectors.positions_get, presenters.positions_data),
            (FUNDS_UPDATE, selectors.funds_get, presenters.funds_data),
        )
    ):
        try:
            # A live account's fill changed what the broker holds: ask it, not the cache.
            answer = read(account=account, fresh=account.mode == TradingAccount.Mode.LIVE)
            data, as_of = render(answer.data), answer.as_of or timezone.now()
        except Exception:
            # The message still goes out with its seq (no gap); `data: null` says "refetch over REST".
            logger.warning("Could not read %s of account %s for its stream", kind, account_id, exc_info=True)
            data, as_of = None, timezone.now()
        messages.append(stream_message(kind, account_id=account_id, seq=first_seq + offset, as_of=as_of, data=data))
    return messages


def stream_messages_since(*, account_id: int, since_seq: int | None = None, since: datetime | None = None, limit: int):
    """The account's messages after `since_seq` (or after the time `since`), rebuilt from OrderEvent rows.

    An order update shows the order as it was after that change (the event's `after` state); position and
    funds updates show them as they are now, which is what a client catching up needs. At most `limit`
    events; returns (messages, more_left).
    """
    events = OrderEvent.objects.filter(account_id=account_id, seq__isnull=False).select_related("order")
    if since is not None:
        events = events.filter(created_at__gt=since)
        since_seq = 0
    events = list(events.filter(last_seq__gt=since_seq).order_by("seq")[: limit + 1])
    more_left = len(events) > limit
    messages, holdings = [], None
    for event in events[:limit]:
        for seq in range(max(event.seq, since_seq + 1), event.last_seq + 1):
            if seq == event.seq:
                messages.append(
                    stream_message(
                        ORDER_UPDATE,
                        account_id=account_id,
                        seq=seq,
                        as_of=event.created_at,
                        data=presenters.order_data(_order_after(event)),
                    )
                )
                continue
            if holdings is None:
                holdings = holdings_messages(account_id=account_id, first_seq=0)
            messages.append({**holdings[seq - event.seq - 1], "seq": seq})
    return messages, more_left


def _order_after(event: OrderEvent) -> Order:
    order = copy.copy(event.order)
    for field, value in event.after.items():
        setattr(order, field, value)
    order.updated_at = event.order_updated_at or event.created_at
    return order
