import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.audit_export import audit_export
from accounts.management.audit_input import BAD_INPUT, CHAIN_BROKEN, day_from_text, tenant_from_slug


class Command(BaseCommand):
    help = (
        "Export a tenant's order audit trail between two UTC days (both included) as JSON lines: one event a line "
        "with its hash and prev_hash, then a summary line with each account's chain check. Exit code 1 when a "
        "chain is broken (the file is still written), 2 on bad input."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--from", dest="day_from", required=True, help="First day, YYYY-MM-DD (UTC).")
        parser.add_argument("--to", dest="day_to", required=True, help="Last day, YYYY-MM-DD (UTC), included.")
        parser.add_argument("--output", help="A file to write (not overwritten without --force); stdout by default.")
        parser.add_argument("--force", action="store_true", help="Overwrite --output if it exists.")
        parser.add_argument("--progress-every", type=int, default=10_000, help="Events between progress lines.")

    def handle(self, *args, **options):
        day_from = day_from_text(options["day_from"], option="--from")
        day_to = day_from_text(options["day_to"], option="--to")
        if day_from > day_to:
            raise CommandError(f"--from {day_from} is after --to {day_to}.", returncode=BAD_INPUT)
        if options["progress_every"] < 1:
            raise CommandError("--progress-every must be at least 1.", returncode=BAD_INPUT)
        tenant = tenant_from_slug(options["tenant"])
        output = self._output_path(options["output"], force=options["force"]) if options["output"] else None

        def progress(count):
            self.stderr.write(f"export_audit: {count} events written")

        export = {"tenant": tenant, "day_from": day_from, "day_to": day_to, "progress": progress}
        export["progress_every"] = options["progress_every"]
        if output is None:
            summary = audit_export(write=lambda line: self.stdout.write(line), **export)
        else:
            # Written beside the target, then moved into place: a crash never leaves half an export under its name.
            partial = output.with_name(f".{output.name}.partial")
            try:
                # Owner-only: the trail names users' orders and the brokers' answers.
                descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with open(descriptor, "w", encoding="utf-8") as file:
                    summary = audit_export(write=lambda line: file.write(line + "\n"), **export)
                os.replace(partial, output)
            finally:
                partial.unlink(missing_ok=True)
            self.stderr.write(f"export_audit: {summary.events} events written to {output}")
        if not summary.ok:
            broken = [check for check in summary.checks if not check.ok]
            raise CommandError(
                f"{len(broken)} audit chains of tenant {tenant.slug!r} are broken; first: {broken[0].describe()}",
                returncode=CHAIN_BROKEN,
            )

    def _output_path(self, text: str, *, force: bool) -> Path:
        if "\x00" in text:
            raise CommandError("--output is not a usable path.", returncode=BAD_INPUT)
        path = Path(text)
        if path.is_dir():
            raise CommandError(f"--output {text!r} is a directory.", returncode=BAD_INPUT)
        if path.exists() and not force:
            raise CommandError(f"--output {text!r} exists; pass --force to overwrite it.", returncode=BAD_INPUT)
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise CommandError(
                f"--output {text!r}: its directory does not exist or is not writable.", returncode=BAD_INPUT
            )
        return path
