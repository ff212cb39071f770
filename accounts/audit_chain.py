"""The order audit trail's hash chain: each account's OrderEvent rows, in the order they were sealed, each
naming the hash of the one before, so an edited, deleted or reordered row is detectable (`verify_audit`).

Sealing is asynchronous. The rows are written as they always were (accounts.audit, and
accounts.streams.event_with_seq_create on the placement path), inside the order's own transaction.
Chaining them there would put a locked read of the account's chain head into every order change: each
account's changes would queue on one row, and every placement would pay more round trips. Instead
`chain_seal` runs after they commit, every few seconds (the `seal-audit-chains` beat task) and before
`verify_audit` and `export_audit` read: under the lock of the account's AuditChainHead row it takes the
account's unsealed rows in id order and gives each its chain_index, prev_hash and hash. A row committed
since the last run is unsealed: reported as such, never counted as verified.

A row's hash is SHA-256 over the canonical JSON (sorted keys, no spaces, Decimals and datetimes as
strings) of `event_content`: its columns, its chain_index and the previous row's hash. An exported line
carries that content as `event`, so anyone can recompute the hash without Thor.

What the chain does not do: someone who can rewrite the database can rewrite the chain and its head
with it. The export's summary names each chain's head hash; kept elsewhere, it pins the chain to that day.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import GENESIS_HASH, AuditChainHead, Order, OrderEvent, TradingAccount

CHAIN_VERSION = 1
CONTENT_FIELDS = (
    "id",
    "account_id",
    "order_id",
    "actor_id",
    "kind",
    "request_id",
    "before",
    "after",
    "broker_response",
    "seq",
    "last_seq",
    "order_updated_at",
    "created_at",
)
ROW_FIELDS = (*CONTENT_FIELDS, "chain_index", "prev_hash", "hash")
# Rows sealed per transaction: the head's lock is held that long, and a crash loses no more than that.
SEAL_BATCH = 500
# Rows one beat run seals at most, well within the task's time limit.
SEAL_RUN_BUDGET = 20_000
READ_CHUNK = 2000


def canonical_json(value) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_as_text
    )


def _as_text(value):
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} has no canonical form in the audit chain")


def event_content(row: dict, *, chain_index: int | None, prev_hash: str | None) -> dict:
    """What a row's hash covers, as JSON values (so an exported line is hashed exactly as it reads)."""
    content = {field: row[field] for field in CONTENT_FIELDS}
    content.update(v=CHAIN_VERSION, chain_index=chain_index, prev_hash=prev_hash)
    return json.loads(canonical_json(content))


def content_hash(content: dict) -> str:
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


# --- Sealing --------------------------------------------------------------------------------------------


@dataclass
class SealResult:
    accounts: int = 0
    sealed: int = 0
    busy: int = 0  # accounts another sealer held (wait=False): that one chains them


def chain_seal(*, account_ids=None, wait: bool = False, budget: int | None = None, clock=timezone.now) -> SealResult:
    """Chain every unsealed row (of `account_ids`, or of every account), at most `budget` rows (the rest
    are the next run's: the first run after an upgrade has the whole history to chain). The beat task does
    not wait for an account another sealer holds; verify and export do, so that they read what was there."""
    pending = OrderEvent.objects.filter(chain_index__isnull=True)
    if account_ids is not None:
        pending = pending.filter(account_id__in=account_ids)
    result = SealResult()
    # The partial index `order_events_unsealed` answers this from the unsealed rows alone.
    for account_id in sorted(set(pending.order_by().values_list("account_id", flat=True).distinct())):
        left = None if budget is None else budget - result.sealed
        if left is not None and left <= 0:
            break
        sealed = chain_seal_account(account_id, wait=wait, limit=left, clock=clock)
        if sealed is None:
            result.busy += 1
            continue
        result.accounts += 1
        result.sealed += sealed
    return result


def chain_seal_account(
    account_id: int, *, wait: bool = True, batch: int = SEAL_BATCH, limit: int | None = None, clock=timezone.now
) -> int | None:
    """Chain the account's unsealed rows, `batch` to a transaction, until none is left (or `limit` are
    sealed). Returns how many; None when wait=False and another sealer holds the account."""
    if not OrderEvent.objects.filter(account_id=account_id, chain_index__isnull=True).exists():
        return 0  # and no head row made for an account that has nothing to chain
    total = 0
    while limit is None or total < limit:
        size = batch if limit is None else min(batch, limit - total)
        sealed = _seal_batch(account_id, wait=wait, size=size, clock=clock)
        if sealed is None:
            return None if total == 0 else total
        total += sealed
        if sealed < size:
            break
    return total


def _seal_batch(account_id: int, *, wait: bool, size: int, clock) -> int | None:
    with transaction.atomic():
        head = head_locked(account_id, wait=wait)
        if head is None:
            return None
        # Locked as well, skipping any row another transaction holds (a merge moving a stand-in's events,
        # accounts.broker_updates): that one is chained next time, and the sealer never waits on an order
        # change's locks, so it can never deadlock one. Sealing order, not id order, is the chain's order.
        rows = list(
            OrderEvent.objects.select_for_update(skip_locked=True)
            .filter(account_id=account_id, chain_index__isnull=True)
            .order_by("id")
            .values(*CONTENT_FIELDS)[:size]
        )
        if not rows:
            return 0
        sealed = []
        for row in rows:
            digest = content_hash(event_content(row, chain_index=head.length, prev_hash=head.last_hash))
            sealed.append(OrderEvent(id=row["id"], chain_index=head.length, prev_hash=head.last_hash, hash=digest))
            head.length, head.last_hash = head.length + 1, digest
        OrderEvent.objects.bulk_update(sealed, ["chain_index", "prev_hash", "hash"])
        head.sealed_at = clock()
        head.save(update_fields=["length", "last_hash", "sealed_at"])
        return len(rows)


def head_locked(account_id: int, *, wait: bool = True) -> AuditChainHead | None:
    """The account's chain head, locked to this transaction (made on first use). None when wait=False
    and another transaction holds it."""
    AuditChainHead.objects.bulk_create([AuditChainHead(account_id=account_id)], ignore_conflicts=True)
    return AuditChainHead.objects.select_for_update(skip_locked=not wait).filter(account_id=account_id).first()


# --- Verifying ------------------------------------------------------------------------------------------


@dataclass
class ChainCheck:
    account_id: int
    length: int = 0  # events ever chained, as the head records
    head_hash: str = GENESIS_HASH
    verified: int = 0
    unsealed: int = 0
    problem: str = ""
    bad_event_id: int | None = None
    bad_chain_index: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problem

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def describe(self) -> str:
        if self.ok:
            unsealed = f", {self.unsealed} not sealed yet" if self.unsealed else ""
            return f"account {self.account_id}: {self.verified} events verified{unsealed}"
        where = f"event {self.bad_event_id} (chain_index {self.bad_chain_index})"
        if self.bad_event_id is None:
            where = f"chain_index {self.bad_chain_index}"
        return f"account {self.account_id}: chain broken at {where}: {self.problem}"


class ChainChecker:
    """Walks one account's sealed rows in chain order; the first that does not follow is the problem."""

    def __init__(self, account_id: int, head: AuditChainHead | None):
        self.head = head
        self.check = ChainCheck(account_id)
        if head is not None:
            self.check.length, self.check.head_hash = head.length, head.last_hash
        self.next_index = head.purged_count if head else 0
        self.prev_hash = head.purged_through_hash if head else GENESIS_HASH

    def feed(self, row: dict) -> dict:
        """Check the next row; returns its content as it was hashed (as stored when it does not match)."""
        index, content = row["chain_index"], None
        if self.check.ok:
            if self.head is None:
                self._fail(row, "the account's chain head (AuditChainHead) is missing")
            elif index > self.next_index:
                self._fail(row, f"chain_index {self.next_index} to {index - 1} are missing: events were deleted")
            elif index < self.next_index:
                self._fail(row, f"chain_index {index} is out of order (expected {self.next_index}): rows renumbered")
            elif row["prev_hash"] != self.prev_hash:
                self._fail(row, "its prev_hash is not the previous event's hash: an event was edited or reordered")
            else:
                content = matching_content(row)
                if content is None:
                    self._fail(row, "its content does not match its hash: the row was edited")
                else:
                    self.check.verified += 1
                    self.next_index, self.prev_hash = index + 1, row["hash"]
        return content or event_content(row, chain_index=index, prev_hash=row["prev_hash"])

    def finish(self, *, unsealed: int) -> ChainCheck:
        self.check.unsealed = unsealed
        head = self.head
        if self.check.ok and head and (self.next_index != head.length or self.prev_hash != head.last_hash):
            self.check.problem = (
                f"the chain ends before chain_index {self.next_index} but its head records "
                f"{head.length} events: the last events were deleted or edited"
            )
            self.check.bad_chain_index = self.next_index
        return self.check

    def _fail(self, row: dict, problem: str) -> None:
        self.check.problem, self.check.bad_event_id, self.check.bad_chain_index = problem, row["id"], row["chain_index"]


def matching_content(row: dict) -> dict | None:
    """The row's content if it hashes to its stored hash. accounts.broker_updates moves the events of a
    stand-in order to the order it is merged into: such a row was sealed naming the stand-in."""
    content = event_content(row, chain_index=row["chain_index"], prev_hash=row["prev_hash"])
    if content_hash(content) == row["hash"]:
        return content
    if row["order_id"] is None:
        return None
    for stand_in in Order.objects.filter(merged_into_id=row["order_id"]).values_list("pk", flat=True):
        moved = {**content, "order_id": stand_in}
        if content_hash(moved) == row["hash"]:
            return moved
    return None


def chain_rows(account_id: int, *, below: int):
    """The account's sealed rows in chain order, up to the head read before (later ones are newer seals)."""
    rows = OrderEvent.objects.filter(account_id=account_id, chain_index__isnull=False, chain_index__lt=below)
    return rows.order_by("chain_index").values(*ROW_FIELDS).iterator(chunk_size=READ_CHUNK)


def unsealed_rows(account_id: int):
    rows = OrderEvent.objects.filter(account_id=account_id, chain_index__isnull=True).order_by("id")
    return rows.values(*ROW_FIELDS).iterator(chunk_size=READ_CHUNK)


def chain_verify(account_id: int, *, seal: bool = True) -> ChainCheck:
    """Recompute the account's chain from its first kept event to its head (sealing what is unsealed first)."""
    if seal:
        chain_seal_account(account_id)
    head = AuditChainHead.objects.filter(account_id=account_id).first()
    checker = ChainChecker(account_id, head)
    # Without a head every sealed row is suspect: the first one is reported.
    for row in chain_rows(account_id, below=head.length if head else 2**63 - 1):
        checker.feed(row)
        if not checker.check.ok:
            break
    return checker.finish(unsealed=OrderEvent.objects.filter(account_id=account_id, chain_index__isnull=True).count())


def audited_account_ids(accounts=None) -> list[int]:
    """Of these accounts (all by default), those with an audit trail, or that had one (purged since)."""
    accounts = TradingAccount.objects.all() if accounts is None else accounts
    has_events = Exists(OrderEvent.objects.filter(account_id=OuterRef("pk")))
    has_head = Exists(AuditChainHead.objects.filter(account_id=OuterRef("pk")))
    return list(accounts.filter(has_events | has_head).order_by("pk").values_list("pk", flat=True))
