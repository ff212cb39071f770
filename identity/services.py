from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from identity.authentication import identity_forget
from identity.models import Tenant, User, inexact_origins
from identity.signals import user_registered
from thor.errors import ApplicationError


def tenant_get_for_signup(*, slug: str | None) -> Tenant:
    tenants = Tenant.objects.all()
    tenant = tenants.filter(slug=slug).first() if slug else tenants.filter(is_default=True).first()
    if tenant is None:
        raise ApplicationError("Unknown tenant.", code="unknown_tenant", errors={"tenant": ["Unknown tenant."]})
    return tenant


@transaction.atomic
def user_register(*, email: str, password: str, tenant_slug: str | None = None, marketing_opt_in: bool = False) -> User:
    """A new user, and whatever other apps give a new user (`user_registered`), in one transaction.

    The tenant is looked up last, after every check that does not depend on it and after the password is
    hashed: a request with an unknown tenant gets the same answer, in about the same time, as the same request
    with a known one, until the moment the known one would have made an account (tenant enumeration).
    """
    email = User.objects.normalize_email(email).lower()
    if User.objects.filter(email=email).exists():
        raise ApplicationError(
            "A user with this email already exists.", code="duplicate_email", errors={"email": ["Already registered."]}
        )
    try:
        validate_password(password, user=User(email=email))
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    password_hash = make_password(password)
    tenant = tenant_get_for_signup(slug=tenant_slug)
    user = User(email=email, password=password_hash, tenant=tenant, marketing_opt_in=marketing_opt_in)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        # A concurrent sign-up with the same email won the race.
        raise ApplicationError(
            "A user with this email already exists.", code="duplicate_email", errors={"email": ["Already registered."]}
        ) from None
    user_registered.send(sender=User, user=user)
    return user


@transaction.atomic
def tenant_create(
    *,
    slug: str,
    name: str,
    allowed_origins: list[str],
    starting_cash=None,
    currency: str = "USD",
    default: bool = False,
) -> Tenant:
    bad = inexact_origins(allowed_origins)
    if bad:
        raise ApplicationError(f"Not exact scheme://host[:port] origins: {', '.join(bad)}", code="invalid_origin")
    if Tenant.objects.filter(slug=slug).exists():
        raise ApplicationError(f"Tenant {slug!r} already exists.", code="duplicate_tenant")
    if default:
        Tenant.objects.filter(is_default=True).update(is_default=False)
    tenant = Tenant(slug=slug, name=name, allowed_origins=allowed_origins, currency=currency, is_default=default)
    if starting_cash is not None:
        tenant.paper_starting_cash = starting_cash
    tenant.full_clean()
    tenant.save()
    return tenant


def users_disable(*, users) -> int:
    """Disable these users: they can no longer log in, and their next request with a token they hold is
    refused at once (the cached identity of each is dropped once the change is committed, not before: a
    request in between would cache the still-active row again). Returns how many changed."""
    user_ids = list(users.filter(is_active=True).values_list("pk", flat=True))
    with transaction.atomic():
        changed = User.objects.filter(pk__in=user_ids).update(is_active=False)

        def forget_them() -> None:
            for user_id in user_ids:
                identity_forget(user_id=user_id)

        transaction.on_commit(forget_them)
    return changed
