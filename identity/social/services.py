"""Social login: starting it, finishing it, and the account-linking rules.

A provider account is found by (provider, subject). Only when it is new may it join an existing user
by email, and only when the provider says that email is verified (the mistake behind CVE-2025-61783);
an unverified email never creates or joins a user. New users get what every new user gets
(`user_registered`: the paper account) and no usable password, so their identities are their only way
in and the last one cannot be unlinked.
"""

import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from identity.models import SocialApp, SocialIdentity, SocialProvider, Tenant, User
from identity.signals import user_registered
from identity.social import state as login_state
from identity.social.delivery import redirect_uri_check
from identity.social.providers import PROVIDERS, ClientApp, LoginSecrets, ProviderFailed, ProviderIdentity
from thor.errors import ApplicationError

logger = logging.getLogger("thor.identity")


class LoginFailed(Exception):
    """A login that cannot finish; `code` is the short error the SPA is sent back with."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _not_found(message: str) -> ApplicationError:
    return ApplicationError(message, code="not_found", status_code=status.HTTP_404_NOT_FOUND)


def tenant_get_for_login(*, slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise _not_found("Unknown agent.")
    return tenant


def social_client_for(*, tenant: Tenant, provider: str) -> ClientApp | None:
    """The tenant's own enabled app, else the settings default; None when neither is set."""
    app = SocialApp.objects.filter(tenant=tenant, provider=provider).first()
    if app is not None:
        return ClientApp(app.client_id, app.client_secret) if app.enabled else None
    default = settings.THOR_SOCIAL_DEFAULT_APPS.get(provider) or {}
    if default.get("client_id") and default.get("client_secret"):
        return ClientApp(default["client_id"], default["client_secret"])
    return None


def callback_url(*, tenant_slug: str, provider: str) -> str:
    return f"{settings.THOR_PUBLIC_URL}/api/{tenant_slug}/v1/auth/oauth/{provider}/callback"


@dataclass(frozen=True)
class LoginStart:
    authorization_url: str
    issued: login_state.IssuedState


def login_state_issue(*, tenant: Tenant, provider: str, redirect_uri: str, server_secrets: dict):
    """Check the SPA page and sign a state for it: shared by every provider, Zerodha included."""
    redirect_uri, marketing_opt_in = redirect_uri_check(tenant=tenant, redirect_uri=redirect_uri)
    return login_state.issue(
        tenant_slug=tenant.slug,
        provider=provider,
        redirect_uri=redirect_uri,
        marketing_opt_in=marketing_opt_in,
        server_secrets=server_secrets,
    )


def social_login_start(*, tenant: Tenant, provider: str, redirect_uri: str) -> LoginStart:
    """Google or Discord: the provider's authorization URL and the cookie that binds it to this browser."""
    client = social_client_for(tenant=tenant, provider=provider)
    if provider not in PROVIDERS or client is None:
        raise _not_found("This agent has no such login provider.")
    secrets = LoginSecrets.new()
    issued = login_state_issue(
        tenant=tenant, provider=provider, redirect_uri=redirect_uri, server_secrets=asdict(secrets)
    )
    try:
        url = PROVIDERS[provider].authorization_url(
            client=client,
            redirect_uri=callback_url(tenant_slug=tenant.slug, provider=provider),
            state=issued.token,
            login=secrets,
        )
    except ProviderFailed as failure:
        raise ApplicationError(
            "The login provider is not answering.", code=failure.code, status_code=status.HTTP_503_SERVICE_UNAVAILABLE
        ) from None
    return LoginStart(url, issued)


def login_callback_state(*, token: str, tenant_slug: str, provider: str) -> login_state.LoginState:
    """The callback's state, for this tenant and provider; raises LoginStateInvalid.

    Browser binding is checked apart (`login_state.browser_matches`), because a state that is Thor's but
    came without its cookie still says where the SPA is, and the SPA hears about the refusal. An expired
    one keeps its `state` (to send the SPA `state_expired`) only when it belongs to this callback too.
    """
    try:
        state = login_state.read(token)
    except login_state.LoginStateInvalid as invalid:
        if invalid.state is not None and not login_state_leads_here(
            invalid.state, tenant_slug=tenant_slug, provider=provider
        ):
            raise login_state.LoginStateInvalid("expired, and not this callback's") from None
        raise
    if not login_state_leads_here(state, tenant_slug=tenant_slug, provider=provider):
        raise login_state.LoginStateInvalid("another tenant or provider, or an origin no longer allowed")
    return state


def login_state_leads_here(state: login_state.LoginState, *, tenant_slug: str, provider: str) -> bool:
    """Whether the state is this callback's (tenant, provider) and its SPA page still on an allowed origin."""
    if state.tenant_slug != tenant_slug or state.provider != provider:
        return False
    tenant = Tenant.objects.filter(slug=state.tenant_slug).first()
    return tenant is not None and tenant.allows_origin(state.redirect_uri)


def social_login_finish(*, state: login_state.LoginState, params) -> tuple[User, ProviderIdentity]:
    """Google or Discord: the user behind the provider's answer. Raises LoginFailed.

    The state must already be browser-checked; this takes its single use.
    """
    server_secrets = login_state.consume(state)
    if params.get("error"):
        raise LoginFailed("denied" if params.get("error") == "access_denied" else "provider_error")
    if not params.get("code"):
        raise LoginFailed("denied")
    tenant = Tenant.objects.get(slug=state.tenant_slug)
    client = social_client_for(tenant=tenant, provider=state.provider)
    if client is None:
        raise LoginFailed("provider_disabled")
    try:
        found = PROVIDERS[state.provider].identity(
            client=client,
            redirect_uri=callback_url(tenant_slug=tenant.slug, provider=state.provider),
            code=params["code"],
            login=LoginSecrets(**server_secrets),
        )
    except ProviderFailed as failure:
        raise LoginFailed(failure.code) from None
    user = social_user_for(tenant=tenant, found=found, marketing_opt_in=state.marketing_opt_in)
    return user, found


def social_user_for(*, tenant: Tenant, found: ProviderIdentity, marketing_opt_in: bool | None) -> User:
    """Find, link or create the user for a provider identity in `tenant`; raises LoginFailed."""
    try:
        return _social_user_for(tenant=tenant, found=found, marketing_opt_in=marketing_opt_in)
    except IntegrityError:
        # A concurrent first login of the same account (or email) won the race; this one may retry.
        raise LoginFailed("conflict") from None


@transaction.atomic
def _social_user_for(*, tenant: Tenant, found: ProviderIdentity, marketing_opt_in: bool | None) -> User:
    identity = (
        SocialIdentity.objects.select_for_update()
        .select_related("user__tenant")
        .filter(provider=found.provider, subject=found.subject)
        .first()
    )
    if identity is not None:
        user = identity.user
        if user.tenant_id != tenant.pk:
            raise LoginFailed("other_tenant")
    else:
        user = _user_for_new_identity(tenant=tenant, found=found, marketing_opt_in=marketing_opt_in)
        identity = SocialIdentity(user=user, provider=found.provider, subject=found.subject)
    if not user.is_active:
        raise LoginFailed("inactive")
    identity.email = found.email if "@" in found.email else identity.email
    identity.email_verified = found.email_verified
    identity.display_name = found.display_name
    identity.last_login_at = timezone.now()
    identity.save()
    changed = ["last_login"]
    user.last_login = timezone.now()
    if marketing_opt_in is not None and user.marketing_opt_in != marketing_opt_in:
        user.marketing_opt_in = marketing_opt_in
        changed.append("marketing_opt_in")
    user.save(update_fields=changed)
    return user


def _user_for_new_identity(*, tenant: Tenant, found: ProviderIdentity, marketing_opt_in: bool | None) -> User:
    email = User.objects.normalize_email(found.email).lower() if "@" in found.email else ""
    if not email:
        raise LoginFailed("email_required")
    existing = User.objects.select_for_update().filter(email=email).first()
    if existing is not None:
        if not found.email_verified:
            # The provider would let anyone claim this address: joining it would hand over the account.
            raise LoginFailed("email_unverified")
        if existing.tenant_id != tenant.pk:
            raise LoginFailed("other_tenant")
        return existing
    if not found.email_verified and found.provider != SocialProvider.ZERODHA:
        # A user made from an address nobody proved could later be joined by its real owner's verified
        # login, with the squatter's identity still attached (pre-account takeover).
        raise LoginFailed("email_unverified")
    return social_user_register(tenant=tenant, email=email, marketing_opt_in=bool(marketing_opt_in))


def social_user_register(*, tenant: Tenant, email: str, marketing_opt_in: bool) -> User:
    """A user without a password, with what every new user gets; inside the caller's transaction."""
    with transaction.atomic():
        user = User.objects.create_user(email, None, tenant=tenant, marketing_opt_in=marketing_opt_in)
    user_registered.send(sender=User, user=user)
    return user


# --- The caller's identities ----------------------------------------------------------------------


def identity_list(*, user: User):
    return SocialIdentity.objects.filter(user=user).order_by("created_at", "pk")


@transaction.atomic
def identity_unlink(*, user: User, identity_id: int) -> None:
    """Unlink one identity, unless it is the user's last way to log in."""
    # Lock the user's row, so two unlinks at once cannot both see "another one remains".
    User.objects.select_for_update().filter(pk=user.pk).first()
    identity = SocialIdentity.objects.filter(user=user, pk=identity_id).first()
    if identity is None:
        raise _not_found("Identity not found.")
    others = SocialIdentity.objects.filter(user=user).exclude(pk=identity.pk).exists()
    if not others and not User.objects.get(pk=user.pk).has_usable_password():
        raise ApplicationError(
            "This is your last way to log in; set a password or link another account first.",
            code="last_login_method",
            status_code=status.HTTP_409_CONFLICT,
        )
    identity.delete()
