"""A tenant's order audit trail between two days, as JSON lines (`manage.py export_audit`).

One line an event, in chain order per account (account by account), then the account's unsealed rows:
    {"event": {...what the hash covers...}, "hash": "...", "sealed": true}
`sha256(canonical JSON of "event")` is `hash` (accounts.audit_chain.canonical_json: sorted keys, no
spaces, non-ASCII as is); `event.prev_hash` is the hash of the event before it in the account's chain,
which may be outside the exported days. An event moved to the order a stand-in was merged into carries
`order_id_now`. The last line is `{"summary": {...}}`: each account's whole chain checked (not only the
exported days), with its length and head hash.

Days are UTC days, both included.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from accounts.audit_chain import (
    ChainChecker,
    audited_account_ids,
    canonical_json,
    chain_rows,
    chain_seal,
    event_content,
    unsealed_rows,
)
from accounts.models import AuditChainHead, TradingAccount
from identity.models import Tenant


@dataclass
class ExportSummary:
    tenant: str
    day_from: date
    day_to: date
    events: int
    checks: list

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_line(self) -> str:
        return canonical_json(
            {
                "summary": {
                    "tenant": self.tenant,
                    "from": self.day_from.isoformat(),
                    "to": self.day_to.isoformat(),
                    "timezone": "UTC",
                    "events": self.events,
                    "chains_ok": self.ok,
                    "accounts": [check.as_dict() for check in self.checks],
                }
            }
        )


def audit_export(
    *,
    tenant: Tenant,
    day_from: date,
    day_to: date,
    write: Callable[[str], None],
    progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> ExportSummary:
    """Write the tenant's events of those days through `write` (one line each, newline excluded), then the
    summary line. Each account's chain is sealed first, then read once: checked whole, written in part."""
    start = datetime.combine(day_from, time.min, tzinfo=UTC)
    end = datetime.combine(day_to + timedelta(days=1), time.min, tzinfo=UTC)
    summary = ExportSummary(tenant=tenant.slug, day_from=day_from, day_to=day_to, events=0, checks=[])
    account_ids = audited_account_ids(TradingAccount.objects.filter(user__tenant=tenant))
    chain_seal(account_ids=account_ids, wait=True)
    for account_id in account_ids:
        head = AuditChainHead.objects.filter(account_id=account_id).first()
        checker = ChainChecker(account_id, head)
        for row in chain_rows(account_id, below=head.length if head else 2**63 - 1):
            content = checker.feed(row)
            if start <= row["created_at"] < end:
                _write_event(write, content, row, sealed=True)
                summary.events += 1
                if progress and summary.events % progress_every == 0:
                    progress(summary.events)
        unsealed = 0
        for row in unsealed_rows(account_id):
            unsealed += 1
            if start <= row["created_at"] < end:
                _write_event(write, event_content(row, chain_index=None, prev_hash=None), row, sealed=False)
                summary.events += 1
        summary.checks.append(checker.finish(unsealed=unsealed))
    write(summary.as_line())
    return summary


def _write_event(write, content: dict, row: dict, *, sealed: bool) -> None:
    line = {"event": content, "hash": row["hash"] if sealed else None, "sealed": sealed}
    if content["order_id"] != row["order_id"]:
        line["order_id_now"] = row["order_id"]
    write(canonical_json(line))
