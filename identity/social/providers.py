"""Google (OpenID Connect) and Discord (OAuth 2.0) through Authlib: authorization URLs with PKCE S256,
the code exchange, and the identity each reports. Google's ID token is checked against its JWKS
(signature, iss, aud, exp, iat, nonce) with joserfc and Authlib's OpenID claim rules.
"""

import logging
from dataclasses import dataclass
from typing import cast

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from django.conf import settings
from django.core.cache import cache
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet, KeySetSerialization
from joserfc.jws import JWSRegistry

from identity import caches

logger = logging.getLogger("thor.identity")
# Seconds of clock difference tolerated on an ID token's exp and iat.
ID_TOKEN_LEEWAY = 60


class ProviderFailed(Exception):
    """The provider did not give a usable identity; `code` is the short code the SPA sees."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class ClientApp:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class ProviderIdentity:
    provider: str
    subject: str
    email: str
    email_verified: bool
    display_name: str


@dataclass(frozen=True)
class LoginSecrets:
    """What the callback needs and the browser must never see."""

    code_verifier: str
    nonce: str

    @classmethod
    def new(cls) -> "LoginSecrets":
        return cls(code_verifier=generate_token(64), nonce=generate_token(32))


def _session(client: ClientApp, *, scope: str, redirect_uri: str) -> OAuth2Session:
    return OAuth2Session(
        client.client_id,
        client.client_secret,
        scope=scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        default_timeout=settings.THOR_SOCIAL_HTTP_TIMEOUT,
    )


def _get_json(url: str) -> dict:
    response = requests.get(url, timeout=settings.THOR_SOCIAL_HTTP_TIMEOUT)
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body


def _key_set(jwks_uri: str, *, refresh: bool = False) -> KeySet:
    # The JWKS document as the provider published it; import_key_set validates every key in it.
    return KeySet.import_key_set(cast(KeySetSerialization, _cached_json(jwks_uri, refresh=refresh)))


def _cached_json(url: str, *, refresh: bool = False) -> dict:
    key = caches.social_metadata_key(url)
    body = None if refresh else cache.get(key)
    if body is None:
        body = _get_json(url)
        cache.set(key, body, settings.THOR_SOCIAL_METADATA_SECONDS)
    return body


def _fail_on_transport(error: Exception, provider: str, step: str) -> ProviderFailed:
    if isinstance(error, requests.Timeout):
        code = "provider_timeout"
    elif isinstance(error, AuthlibBaseError):
        code = "exchange_failed"
    else:
        code = "provider_error"
    logger.warning("%s login failed at %s: %s", provider, step, type(error).__name__)
    return ProviderFailed(code)


_TRANSPORT_ERRORS = (requests.RequestException, AuthlibBaseError, ValueError, KeyError, TypeError)


class Google:
    name = "google"
    scope = "openid email profile"

    def _metadata(self) -> dict:
        return _cached_json(settings.THOR_GOOGLE_DISCOVERY_URL)

    def authorization_url(self, *, client: ClientApp, redirect_uri: str, state: str, login: LoginSecrets) -> str:
        try:
            endpoint = self._metadata()["authorization_endpoint"]
        except _TRANSPORT_ERRORS as error:
            raise _fail_on_transport(error, self.name, "discovery") from None
        session = _session(client, scope=self.scope, redirect_uri=redirect_uri)
        url, _ = session.create_authorization_url(
            endpoint, state=state, code_verifier=login.code_verifier, nonce=login.nonce
        )
        return url

    def identity(self, *, client: ClientApp, redirect_uri: str, code: str, login: LoginSecrets) -> ProviderIdentity:
        session = _session(client, scope=self.scope, redirect_uri=redirect_uri)
        try:
            metadata = self._metadata()
            token = session.fetch_token(metadata["token_endpoint"], code=code, code_verifier=login.code_verifier)
            claims = self._id_token_claims(token, metadata=metadata, client=client, nonce=login.nonce)
        except _TRANSPORT_ERRORS as error:
            raise _fail_on_transport(error, self.name, "token") from None
        email = claims.get("email") or ""
        return ProviderIdentity(
            provider=self.name,
            subject=str(claims["sub"]),
            email=email.strip().lower(),
            # Only a JSON true counts: a string "true" or a missing claim is not Google saying so.
            email_verified=claims.get("email_verified") is True,
            display_name=str(claims.get("name") or "")[:200],
        )

    def _id_token_claims(self, token: dict, *, metadata: dict, client: ClientApp, nonce: str) -> dict:
        if "id_token" not in token:
            raise ProviderFailed("id_token_invalid")
        registry = JWSRegistry(algorithms=metadata.get("id_token_signing_alg_values_supported") or ["RS256"])
        try:
            try:
                decoded = jwt.decode(token["id_token"], _key_set(metadata["jwks_uri"]), registry=registry)
            except InvalidKeyIdError:
                # Google rotates its keys: an unknown key id is worth one fresh read of the JWKS.
                keys = _key_set(metadata["jwks_uri"], refresh=True)
                decoded = jwt.decode(token["id_token"], keys, registry=registry)
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                # aud is checked here, not only through azp as Authlib's own client does: a token Google
                # issued to another app must never log anyone in here.
                {
                    "iss": {"essential": True, "values": [metadata["issuer"]]},
                    "aud": {"essential": True, "values": [client.client_id]},
                },
                {"nonce": nonce, "client_id": client.client_id, "access_token": token.get("access_token")},
            )
            claims.validate(leeway=ID_TOKEN_LEEWAY)
        except (JoseError, ValueError) as error:
            logger.warning("Google ID token refused: %s", type(error).__name__)
            raise ProviderFailed("id_token_invalid") from None
        if not claims.get("sub"):
            raise ProviderFailed("id_token_invalid")
        return dict(claims)


class Discord:
    name = "discord"
    scope = "identify email"

    def _url(self, path: str) -> str:
        return f"{settings.THOR_DISCORD_API_BASE}{path}"

    def authorization_url(self, *, client: ClientApp, redirect_uri: str, state: str, login: LoginSecrets) -> str:
        session = _session(client, scope=self.scope, redirect_uri=redirect_uri)
        url, _ = session.create_authorization_url(
            self._url("/oauth2/authorize"), state=state, code_verifier=login.code_verifier
        )
        return url

    def identity(self, *, client: ClientApp, redirect_uri: str, code: str, login: LoginSecrets) -> ProviderIdentity:
        session = _session(client, scope=self.scope, redirect_uri=redirect_uri)
        try:
            session.fetch_token(self._url("/api/oauth2/token"), code=code, code_verifier=login.code_verifier)
            response = session.get(self._url("/api/users/@me"))
            response.raise_for_status()
            me = response.json()
            subject = str(me["id"])
        except _TRANSPORT_ERRORS as error:
            raise _fail_on_transport(error, self.name, "token") from None
        return ProviderIdentity(
            provider=self.name,
            subject=subject,
            email=(me.get("email") or "").strip().lower(),
            email_verified=me.get("verified") is True,
            display_name=str(me.get("global_name") or me.get("username") or "")[:200],
        )


PROVIDERS = {provider.name: provider for provider in (Google(), Discord())}
