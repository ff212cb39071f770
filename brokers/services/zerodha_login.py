"""Log in with Zerodha (seed 003): the tenant's Kite app as an identity provider.

The login shares the Kite app's one registered redirect URL with account linking; the signed state
says which flow a callback belongs to (identity's login state, or brokers' linking state). A login
finds or creates the Thor user by (zerodha, Kite user id), stores the Kite session as the user's
connection (`connection_linked`: accounts opens the live account) and delivers tokens like any other
social login. Kite reports an email but not whether it was verified, so it never joins an existing
user by email.
"""

import logging
from collections.abc import Mapping

from django.db import transaction
from rest_framework import status

from brokers.adapters.errors import BrokerError, BrokerErrorCode
from brokers.models import BrokerApp, BrokerConnection, BrokerKind
from brokers.registry import adapter_for, adapter_for_app
from brokers.services.linking import CallbackFailed, connection_link_tokens
from identity.models import SocialProvider, Tenant, User
from identity.social import state as login_state
from identity.social.providers import ProviderIdentity
from identity.social.services import LoginFailed, LoginStart, login_state_issue, social_user_for
from thor.errors import ApplicationError

logger = logging.getLogger("thor.brokers")
PROVIDER = SocialProvider.ZERODHA.value


def _tenant_kite_app(tenant: Tenant) -> BrokerApp | None:
    return BrokerApp.objects.filter(tenant=tenant, owner__isnull=True, kind=BrokerKind.KITE).order_by("id").first()


def zerodha_login_start(*, tenant: Tenant, redirect_uri: str) -> LoginStart:
    app = _tenant_kite_app(tenant)
    if app is None:
        raise ApplicationError(
            "This agent has no such login provider.", code="not_found", status_code=status.HTTP_404_NOT_FOUND
        )
    issued = login_state_issue(
        tenant=tenant, provider=PROVIDER, redirect_uri=redirect_uri, server_secrets={"app_id": app.pk}
    )
    return LoginStart(adapter_for_app(app).authorization_url(issued.token), issued)


def zerodha_login_finish(*, state: login_state.LoginState, params: Mapping[str, str]) -> tuple[User, str]:
    """The user behind a Kite login callback, with the Kite session stored; raises LoginFailed.

    The state must already be browser-checked; this takes its single use. The two network calls (the
    session exchange and the profile) run outside any transaction.
    """
    server_secrets = login_state.consume(state)
    if params.get("status") != "success" or not params.get("request_token"):
        raise LoginFailed("denied")
    tenant = Tenant.objects.get(slug=state.tenant_slug)
    app = BrokerApp.objects.filter(pk=server_secrets["app_id"], tenant=tenant, kind=BrokerKind.KITE).first()
    if app is None:
        raise LoginFailed("provider_disabled")
    try:
        tokens = adapter_for_app(app).exchange({"request_token": params["request_token"]})
        session = BrokerConnection(app=app, access_token=tokens.access_token)
        profile = adapter_for(session).profile()
    except BrokerError as error:
        logger.warning("Zerodha login failed for app %s: %s", app.pk, error.code)
        raise LoginFailed("provider_timeout" if error.code == BrokerErrorCode.TIMEOUT else "exchange_failed") from None
    found = ProviderIdentity(
        provider=PROVIDER,
        subject=tokens.broker_user_id,
        email=(profile.email or "").strip().lower(),
        email_verified=False,
        display_name=profile.name[:200],
    )
    with transaction.atomic():
        user = social_user_for(tenant=tenant, found=found, marketing_opt_in=state.marketing_opt_in)
        try:
            connection_link_tokens(user=user, app=app, tokens=tokens)
        except CallbackFailed as failure:
            raise LoginFailed(failure.code) from None
    return user, found.email
