from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.audit_retention import audit_purge
from accounts.management.audit_input import CHAIN_BROKEN


class Command(BaseCommand):
    help = (
        "Remove order audit events older than THOR_AUDIT_RETENTION_DAYS, each account's oldest first, keeping a "
        "checkpoint hash so the rest still verifies. An account whose chain is broken is left as it is (exit 1)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Say what would be removed; remove nothing.")

    def handle(self, *args, **options):
        result = audit_purge(dry_run=options["dry_run"])
        verb = "would remove" if options["dry_run"] else "removed"
        for account_id, count in sorted(result.removed.items()):
            self.stdout.write(f"account {account_id}: {verb} {count} events")
        self.stdout.write(
            f"Retention {settings.THOR_AUDIT_RETENTION_DAYS} days (before {result.cutoff:%Y-%m-%d %H:%M} UTC): "
            f"{verb} {sum(result.removed.values())} events of {len(result.removed)} accounts."
        )
        if result.refused:
            raise CommandError(
                f"{len(result.refused)} accounts not purged, their chain is broken; first: "
                f"{result.refused[0].describe()}",
                returncode=CHAIN_BROKEN,
            )
