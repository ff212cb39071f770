"""The audit commands' arguments, checked before anything is read: a bad one is exit code 2 and one line."""

import re
from datetime import date

from django.core.management.base import CommandError

from accounts.models import TradingAccount
from identity.models import Tenant

BAD_INPUT = 2
CHAIN_BROKEN = 1
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,50}")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def tenant_from_slug(slug: str) -> Tenant:
    # Checked by shape first: a NUL byte or a megabyte of text never reaches the database.
    tenant = Tenant.objects.filter(slug=slug).first() if SLUG.fullmatch(slug) else None
    if tenant is None:
        raise CommandError(f"Unknown tenant {slug[:60]!r}.", returncode=BAD_INPUT)
    return tenant


def account_from_id(account_id: int, *, tenant: Tenant | None) -> TradingAccount:
    accounts = TradingAccount.objects.filter(pk=account_id) if 0 < account_id < 2**63 else TradingAccount.objects.none()
    if tenant is not None:
        accounts = accounts.filter(user__tenant=tenant)
    account = accounts.first()
    if account is None:
        of_tenant = f" of tenant {tenant.slug!r}" if tenant else ""
        raise CommandError(f"Unknown account {account_id}{of_tenant}.", returncode=BAD_INPUT)
    return account


def day_from_text(text: str, *, option: str) -> date:
    try:
        if not DAY.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} must be a day as YYYY-MM-DD, not {text[:40]!r}.", returncode=BAD_INPUT) from None
