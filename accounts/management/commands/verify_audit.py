from django.core.management.base import BaseCommand, CommandError

from accounts.audit_chain import audited_account_ids, chain_verify
from accounts.management.audit_input import CHAIN_BROKEN, account_from_id, tenant_from_slug
from accounts.models import TradingAccount


class Command(BaseCommand):
    help = (
        "Recompute the order audit trail's hash chains (every account's, a tenant's, or one account's), sealing "
        "unsealed rows first. Exit code 1 names each broken chain's account and first bad event; 2 is bad input."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="A tenant's slug: only its accounts.")
        parser.add_argument("--account", type=int, help="A trading account's id.")

    def handle(self, *args, **options):
        tenant = tenant_from_slug(options["tenant"]) if options["tenant"] is not None else None
        if options["account"] is not None:
            account_ids = [account_from_id(options["account"], tenant=tenant).pk]
        else:
            accounts = TradingAccount.objects.all()
            account_ids = audited_account_ids(accounts if tenant is None else accounts.filter(user__tenant=tenant))
        broken = []
        for account_id in account_ids:
            check = chain_verify(account_id)
            if check.ok:
                self.stdout.write(check.describe())
            else:
                self.stderr.write(check.describe())
                broken.append(check)
        if broken:
            raise CommandError(
                f"{len(broken)} of {len(account_ids)} audit chains are broken; first: {broken[0].describe()}",
                returncode=CHAIN_BROKEN,
            )
        self.stdout.write(f"{len(account_ids)} audit chains verified.")
