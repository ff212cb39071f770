from django.core.management.base import BaseCommand, CommandError

from brokers.models import BrokerConnection, BrokerKind
from brokers.services.tokens import REFRESHABLE, connection_tokens_refresh, refresh_due_connection_ids, refresh_lead


class Command(BaseCommand):
    help = (
        "Refresh broker access tokens that expire soon (what the beat task does), or every active connection "
        "of a user, and print what was done for each connection."
    )

    def add_arguments(self, parser):
        parser.add_argument("--broker", choices=[kind.value for kind in REFRESHABLE], default=None)
        parser.add_argument("--user", metavar="EMAIL", help="Refresh this user's active connections now, due or not.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be refreshed; change nothing.")

    def handle(self, *args, broker, user, dry_run, **options):
        if user:
            rows = BrokerConnection.objects.filter(
                user__email__iexact=user, status=BrokerConnection.Status.ACTIVE, app__kind__in=REFRESHABLE
            )
            if broker:
                rows = rows.filter(app__kind=broker)
            if not BrokerConnection.objects.filter(user__email__iexact=user).exists():
                raise CommandError(f"No broker connections for {user}.")
            connection_ids, force = list(rows.order_by("pk").values_list("pk", flat=True)), True
        else:
            due = refresh_due_connection_ids(per_app_limit=False)
            if broker:
                due = list(
                    BrokerConnection.objects.filter(pk__in=due, app__kind=BrokerKind(broker)).values_list(
                        "pk", flat=True
                    )
                )
            connection_ids, force = due, False
        counts: dict[str, int] = {}
        for connection_id in connection_ids:
            outcome = connection_tokens_refresh(
                connection_id=connection_id, force=force, dry_run=dry_run, within=refresh_lead()
            )
            counts[outcome.action] = counts.get(outcome.action, 0) + 1
            verb = f"would be {outcome.action}" if dry_run and outcome.action == "refreshed" else outcome.action
            detail = f" ({outcome.detail})" if outcome.detail and not dry_run else ""
            self.stdout.write(f"connection {connection_id}: {verb}{detail}")
        summary = ", ".join(f"{count} {action}" for action, count in sorted(counts.items())) or "nothing due"
        self.stdout.write(f"{len(connection_ids)} connection(s): {summary}{' (dry run)' if dry_run else ''}.")
