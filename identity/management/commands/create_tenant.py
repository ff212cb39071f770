from django.core.management.base import BaseCommand, CommandError

from identity.services import tenant_create
from thor.errors import ApplicationError


class Command(BaseCommand):
    help = "Create a tenant with its allowed origins (the only redirect targets and CORS origins)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--origin", action="append", default=[], help="Allowed origin; repeat for more.")
        parser.add_argument("--starting-cash", default=None)
        parser.add_argument("--currency", default="USD")
        parser.add_argument("--default", action="store_true", help="Make it the tenant sign-ups land in.")

    def handle(self, *args, **options):
        try:
            tenant = tenant_create(
                slug=options["slug"],
                name=options["name"] or options["slug"],
                allowed_origins=options["origin"],
                starting_cash=options["starting_cash"],
                currency=options["currency"],
                default=options["default"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"Created tenant {tenant.slug} allowing {tenant.allowed_origins}"))
