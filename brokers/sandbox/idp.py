"""Sandbox identity providers: a Google-like OpenID Connect provider and a Discord-like OAuth 2.0 one.

Both keep to what Thor relies on from the real ones: an authorization page, a token endpoint that
checks the client secret, the redirect URI and the PKCE verifier (S256), codes that work once for ten
minutes, and the user's identity (Google: an RS256 ID token signed with a key made at start and
published as a JWKS; Discord: `/api/users/@me`). On the authorization page anyone may sign in with
any email; an email ending in `.unverified` is reported as not verified.

Tests can ask the Google provider to spoil its next ID token (`spoil_next_id_token`) to prove that
Thor refuses a wrong audience, nonce, signature or expiry.
"""

import base64
import hashlib
import hmac
import html
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey

from .web import MethodNotAllowed, Request, Response, RouteNotFound, Router

CODE_SECONDS = 600
ID_TOKEN_SECONDS = 3600
UNVERIFIED_SUFFIX = ".unverified"


@dataclass(frozen=True)
class IdpClient:
    client_id: str
    client_secret: str
    # Empty: any redirect URI (the token request must still repeat the authorization's).
    redirect_uris: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping) -> "IdpClient":
        return cls(
            client_id=str(data["client_id"]),
            client_secret=str(data["client_secret"]),
            redirect_uris=tuple(data.get("redirect_uris") or ()),
        )


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    email: str
    subject: str
    expires_at: float


@dataclass
class _IdpState:
    clients: dict[str, IdpClient] = field(default_factory=dict)
    grants: dict[str, _Grant] = field(default_factory=dict)
    access_tokens: dict[str, _Grant] = field(default_factory=dict)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _form_page(title: str, action: str, fields: Mapping[str, str], error: str | None = None) -> Response:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    problem = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return Response.html(
        f"<!doctype html><html><head><title>{html.escape(title)} (sandbox)</title></head><body>"
        f"<h1>Sign in with {html.escape(title)} (sandbox)</h1>{problem}"
        f'<form method="post" action="{html.escape(action)}">{hidden}'
        '<label>Email <input name="email" type="email" required></label>'
        "<p>An email ending in <code>.unverified</code> signs in unverified.</p>"
        '<button type="submit">Continue</button></form></body></html>',
        status=400 if error else 200,
    )


class _AuthorizationServer:
    """What both providers share: clients, the authorization page, codes with PKCE, access tokens."""

    name = ""
    title = ""
    prefix = ""
    authorize_path = ""
    subject_prefix = ""
    subject_digits = 0
    authorize_fields = ("client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge")

    def __init__(self, *, clients: Iterable[IdpClient | Mapping] = (), clock: Callable[[], float] = time.time):
        self._lock = threading.RLock()
        self._clock = clock
        self._state = _IdpState()
        self._first_clients = [c if isinstance(c, IdpClient) else IdpClient.from_mapping(c) for c in clients]
        self.reset()
        self.router = Router()

    def reset(self) -> None:
        with self._lock:
            self._state = _IdpState(clients={client.client_id: client for client in self._first_clients})

    def subject_for(self, email: str) -> str:
        """The account's stable id, as a real provider's: from the email alone, the same in every sandbox run.

        A counter would hand a restarted sandbox's first new email the subject of last run's first user,
        whose Thor account a login finds by (provider, subject).
        """
        digest = hashlib.sha256(f"thor-sandbox-{self.name}-subject:{email}".encode()).digest()
        return self.subject_prefix + str(int.from_bytes(digest) % 10**self.subject_digits).zfill(self.subject_digits)

    def register_client(self, client: IdpClient) -> None:
        with self._lock:
            self._state.clients[client.client_id] = client

    def handle(self, request: Request) -> Response:
        try:
            handler, request.path_params = self.router.resolve(request.method, request.path)
        except RouteNotFound:
            return self.error_response(404, "Not found.")
        except MethodNotAllowed:
            return self.error_response(405, "Method not allowed.")
        return handler(request)

    def error_response(self, status: int, message: str) -> Response:
        return Response.json(
            {"error": "server_error" if status >= 500 else "invalid_request", "message": message}, status
        )

    # --- authorization ------------------------------------------------------------------------

    def _authorization_problem(self, params: Mapping[str, str]) -> str | None:
        client = self._state.clients.get(params.get("client_id", ""))
        if client is None:
            return "Unknown client_id."
        if not params.get("redirect_uri") or (
            client.redirect_uris and params["redirect_uri"] not in client.redirect_uris
        ):
            return "redirect_uri is not registered for this client."
        if params.get("response_type") != "code":
            return "response_type must be code."
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return "PKCE with code_challenge_method=S256 is required."
        return None

    def authorize_form(self, request: Request) -> Response:
        params = {name: values[0] for name, values in request.query.items()}
        with self._lock:
            problem = self._authorization_problem(params)
        fields = {name: params.get(name, "") for name in (*self.authorize_fields, "code_challenge_method", "nonce")}
        return _form_page(self.title, self.prefix + self.authorize_path, fields, error=problem)

    def authorize_submit(self, request: Request) -> Response:
        params = request.params()
        email = params.get("email", "").strip().lower()
        with self._lock:
            problem = self._authorization_problem(params)
            if problem is None and "@" not in email:
                problem = "Enter an email address."
            if problem is not None:
                return _form_page(self.title, self.prefix + self.authorize_path, params, error=problem)
            subject = self.subject_for(email)
            code = secrets.token_urlsafe(24)
            self._state.grants[code] = _Grant(
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                code_challenge=params["code_challenge"],
                nonce=params.get("nonce", ""),
                email=email,
                subject=subject,
                expires_at=self._clock() + CODE_SECONDS,
            )
        separator = "&" if "?" in params["redirect_uri"] else "?"
        return Response.redirect(
            f"{params['redirect_uri']}{separator}{urlencode({'code': code, 'state': params.get('state', '')})}"
        )

    # --- token ----------------------------------------------------------------------------------

    def _client_credentials(self, request: Request, params: Mapping[str, str]) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return "", ""
            return client_id, secret
        return params.get("client_id", ""), params.get("client_secret", "")

    def token(self, request: Request) -> Response:
        params = request.params()
        client_id, secret = self._client_credentials(request, params)
        with self._lock:
            client = self._state.clients.get(client_id)
            if client is None or not hmac.compare_digest(client.client_secret, secret):
                return Response.json({"error": "invalid_client"}, 401)
            if params.get("grant_type") != "authorization_code":
                return Response.json({"error": "unsupported_grant_type"}, 400)
            grant = self._state.grants.pop(params.get("code", ""), None)
            if grant is None or grant.expires_at < self._clock() or grant.client_id != client_id:
                return Response.json({"error": "invalid_grant", "error_description": "Unknown or used code."}, 400)
            if grant.redirect_uri != params.get("redirect_uri"):
                return Response.json({"error": "invalid_grant", "error_description": "redirect_uri mismatch."}, 400)
            verifier = params.get("code_verifier", "")
            if not verifier or not hmac.compare_digest(_s256(verifier), grant.code_challenge):
                return Response.json({"error": "invalid_grant", "error_description": "PKCE verification failed."}, 400)
            access_token = secrets.token_urlsafe(24)
            self._state.access_tokens[access_token] = grant
        return Response.json(self.token_body(access_token, grant))

    def token_body(self, access_token: str, grant: _Grant) -> dict:
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600}

    def _bearer_grant(self, request: Request) -> _Grant | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        with self._lock:
            return self._state.access_tokens.get(header[7:])


class GoogleIdp(_AuthorizationServer):
    name = "google"
    title = "Google"
    prefix = "/google"
    authorize_path = "/o/oauth2/v2/auth"
    # Google's subjects are 21 digits, Discord's ids (snowflakes) 18.
    subject_prefix = "1"
    subject_digits = 20

    def __init__(self, *, base_url: Callable[[], str], **kwargs):
        super().__init__(**kwargs)
        self._base_url = base_url
        self._kid = secrets.token_hex(8)
        self._signing_key: RSAKey | None = None
        self._key_lock = threading.Lock()
        self._spoils: dict = {}
        add = self.router.add
        add("GET", "/google/.well-known/openid-configuration", self.discovery)
        add("GET", "/google/oauth2/v3/certs", self.jwks)
        add("GET", self.prefix + self.authorize_path, self.authorize_form)
        add("POST", self.prefix + self.authorize_path, self.authorize_submit)
        add("POST", "/google/token", self.token)
        add("GET", "/google/v1/userinfo", self.userinfo)

    @property
    def issuer(self) -> str:
        return self._base_url() + self.prefix

    @property
    def _key(self) -> RSAKey:
        # Made when first asked for (the keys or an ID token): a 2048-bit key costs a fraction of a second, and most
        # sandboxes a test starts never sign anyone in with Google.
        with self._key_lock:
            if self._signing_key is None:
                self._signing_key = RSAKey.generate_key(
                    2048, parameters={"kid": self._kid, "use": "sig", "alg": "RS256"}
                )
            return self._signing_key

    def reset(self) -> None:
        super().reset()
        self._spoils = {}

    def spoil_next_id_token(self, **spoils) -> None:
        """The next ID token is wrong on purpose: aud=, nonce=, iss= override a claim, exp_offset=
        moves its expiry (negative: already expired), bad_signature=True signs it with another key."""
        with self._lock:
            self._spoils = dict(spoils)

    def discovery(self, _: Request) -> Response:
        issuer = self.issuer
        return Response.json(
            {
                "issuer": issuer,
                "authorization_endpoint": issuer + self.authorize_path,
                "token_endpoint": issuer + "/token",
                "userinfo_endpoint": issuer + "/v1/userinfo",
                "jwks_uri": issuer + "/oauth2/v3/certs",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "name", "sub", "nonce"],
            }
        )

    def jwks(self, _: Request) -> Response:
        return Response.json({"keys": [self._key.as_dict(private=False)]})

    def token_body(self, access_token: str, grant: _Grant) -> dict:
        with self._lock:
            spoils, self._spoils = self._spoils, {}
        now = int(self._clock())
        claims = {
            "iss": spoils.get("iss", self.issuer),
            "aud": spoils.get("aud", grant.client_id),
            "sub": grant.subject,
            "email": grant.email,
            "email_verified": not grant.email.endswith(UNVERIFIED_SUFFIX),
            "name": grant.email.split("@")[0],
            "iat": now,
            "exp": now + ID_TOKEN_SECONDS + int(spoils.get("exp_offset", 0)),
        }
        nonce = spoils.get("nonce", grant.nonce)
        if nonce:
            claims["nonce"] = nonce
        key = self._key
        if spoils.get("bad_signature"):
            # The same key id, another key: what a forger without Google's private key can do.
            key = RSAKey.generate_key(2048, parameters={"kid": self._kid})
        id_token = jwt.encode({"alg": "RS256", "kid": self._kid}, claims, key)
        return {**super().token_body(access_token, grant), "id_token": id_token, "scope": "openid email profile"}

    def userinfo(self, request: Request) -> Response:
        grant = self._bearer_grant(request)
        if grant is None:
            return Response.json({"error": "invalid_token"}, 401)
        verified = not grant.email.endswith(UNVERIFIED_SUFFIX)
        return Response.json({"sub": grant.subject, "email": grant.email, "email_verified": verified})


class DiscordIdp(_AuthorizationServer):
    name = "discord"
    title = "Discord"
    prefix = "/discord"
    authorize_path = "/oauth2/authorize"
    subject_prefix = "8"
    subject_digits = 17

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        add = self.router.add
        add("GET", self.prefix + self.authorize_path, self.authorize_form)
        add("POST", self.prefix + self.authorize_path, self.authorize_submit)
        add("POST", "/discord/api/oauth2/token", self.token)
        add("GET", "/discord/api/users/@me", self.me)

    def token_body(self, access_token: str, grant: _Grant) -> dict:
        return {**super().token_body(access_token, grant), "scope": "identify email", "refresh_token": "unused"}

    def me(self, request: Request) -> Response:
        grant = self._bearer_grant(request)
        if grant is None:
            return Response.json({"message": "401: Unauthorized", "code": 0}, 401)
        return Response.json(
            {
                "id": grant.subject,
                "username": grant.email.split("@")[0],
                "global_name": None,
                "email": grant.email,
                "verified": not grant.email.endswith(UNVERIFIED_SUFFIX),
            }
        )
