import re
from decimal import Decimal
from typing import TYPE_CHECKING

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from thor.crypto import EncryptedTextField
from thor.origins import origin_of

# An exchange algo (strategy) identifier as Thor accepts it: Kite's `algo_id` field takes the exchange's id
# (NSE's are numeric); letters, digits, - and _ leave room for a broker that spells them otherwise.
ALGO_ID_MAX_LENGTH = 20
ALGO_ID_PATTERN = r"^[A-Za-z0-9_-]{1,20}\Z"  # \Z: no trailing newline slips through a search
ALGO_ID_RULE = f"1 to {ALGO_ID_MAX_LENGTH} letters, digits, - or _"
MAX_ALGO_IDS = 50


def algo_id_valid(value) -> bool:
    return isinstance(value, str) and re.fullmatch(ALGO_ID_PATTERN, value) is not None


def inexact_origins(origins) -> list:
    """The entries that are not one exact, canonical scheme://host[:port] origin."""
    return [origin for origin in origins if origin_of(origin) != origin]


class Tenant(models.Model):
    class TokenDelivery(models.TextChoices):
        QUERY = "query", "Query string"
        FRAGMENT = "fragment", "URL fragment"
        CODE = "code", "One-time code"

    slug = models.SlugField(max_length=50, unique=True, help_text="The {agent_id} in seed 004 paths.")
    name = models.CharField(max_length=200)
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text="Exact scheme://host[:port] origins: the only redirect targets, and the CORS list.",
    )
    token_delivery = models.CharField(max_length=10, choices=TokenDelivery.choices, default=TokenDelivery.QUERY)
    paper_starting_cash = models.DecimalField(
        max_digits=18, decimal_places=2, default=Decimal("100000.00"), validators=[MinValueValidator(0)]
    )
    currency = models.CharField(
        max_length=3, default="USD", help_text="The currency of every user's primary paper account."
    )
    paper_other_currencies = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            'Further paper accounts a user may hold, by currency, with their starting cash: {"INR": "1000000.00"}. '
            "An order is only ever filled in its account's currency."
        ),
    )
    paper_margin_rates = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            'Paper short sales: the share of a short\'s value held as margin, by product: {"MIS": "0.25"}. '
            "Products not listed use THOR_PAPER_DEFAULT_MARGIN_RATE."
        ),
    )
    kite_market_protection = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("-1"),
        validators=[MinValueValidator(Decimal("-1")), MaxValueValidator(Decimal("100"))],
        help_text="Sent with every Kite MARKET and SL-M order: -1 lets Kite choose, else a percentage up to 100.",
    )
    live_orders_require_egress = models.BooleanField(
        default=True,
        help_text=(
            "Live Kite orders (place, modify, cancel) need an order egress, the user's or the tenant's: without one "
            "they are refused (403 static_ip_required) before anything is sent. Exchange rule since April 2026."
        ),
    )
    order_egress = EncryptedTextField(
        blank=True,
        default="",
        help_text=(
            "For a tenant that is itself an exchange-registered algo provider: the CONNECT proxy every user's "
            "Kite orders leave through when their connection has none of its own. Never shown once stored."
        ),
    )
    order_egress_probe = models.JSONField(default=dict, blank=True, help_text="The last probe through the egress.")
    algo_ids = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            'The exchange-registered algo (strategy) ids this tenant\'s orders may carry: ["41230", "41231"]. '
            "The first is every order's unless the order names another of them (`algo_id`); sent as Kite's "
            f"`algo_id` with each live Kite order. Each {ALGO_ID_RULE}; empty: orders carry none."
        ),
    )
    max_order_value = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    max_open_orders = models.PositiveIntegerField(null=True, blank=True)
    trading_enabled = models.BooleanField(default=True, help_text="Kill switch for every order of this tenant.")
    is_default = models.BooleanField(default=False, help_text="Where sign-ups without a tenant land.")
    broker_link_confirmation = models.BooleanField(
        default=False,
        help_text=(
            "The SPA confirms each broker link with its Bearer token (POST /api/brokers/connections/confirm), "
            "so a login link sent to someone else cannot link their broker account to the sender. "
            "Off keeps seed 000's redirect contract (status=success)."
        ),
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_tenant")
        ]

    def __str__(self):
        return self.slug

    def _clean_origins(self):
        if not isinstance(self.allowed_origins, list):
            raise ValidationError({"allowed_origins": "A list of origins."})
        inexact = inexact_origins(self.allowed_origins)
        if inexact:
            # "*", "null" or a path would widen redirects and CORS beyond one exact origin.
            raise ValidationError(
                {"allowed_origins": f"Not exact scheme://host[:port] origins: {', '.join(map(str, inexact))}"}
            )

    def _clean_algo_ids(self):
        ids = self.algo_ids
        if not isinstance(ids, list):
            raise ValidationError({"algo_ids": "A list of algo ids."})
        bad = [value for value in ids if not algo_id_valid(value)]
        if bad:
            raise ValidationError({"algo_ids": f"Each must be {ALGO_ID_RULE}: {', '.join(map(repr, bad))}."})
        if len(set(ids)) != len(ids) or len(ids) > MAX_ALGO_IDS:
            raise ValidationError({"algo_ids": f"At most {MAX_ALGO_IDS} ids, each once."})

    @property
    def default_algo_id(self) -> str:
        return self.algo_ids[0] if self.algo_ids else ""

    def paper_currencies(self) -> dict[str, Decimal]:
        """Every currency a user of this tenant may hold a paper account in, with its starting cash."""
        other = {currency: Decimal(str(cash)) for currency, cash in (self.paper_other_currencies or {}).items()}
        return {**other, self.currency: self.paper_starting_cash}

    def _clean_decimal_map(self, name: str, *, key, maximum=None) -> None:
        value = getattr(self, name)
        if not isinstance(value, dict):
            raise ValidationError({name: "An object of decimal strings."})
        for item, amount in value.items():
            try:
                number = Decimal(str(amount))
            except ArithmeticError:
                number = None
            out_of_range = number is None or not number.is_finite() or number < 0 or (maximum and number > maximum)
            if not key(item) or out_of_range:
                raise ValidationError({name: f"Bad entry {item!r}: {amount!r}."})

    def clean(self):
        super().clean()
        self._clean_origins()
        self._clean_decimal_map("paper_other_currencies", key=lambda code: isinstance(code, str) and len(code) == 3)
        self._clean_decimal_map("paper_margin_rates", key=lambda product: isinstance(product, str), maximum=Decimal(10))
        self._clean_algo_ids()
        protection = self.kite_market_protection
        if protection is not None and protection != -1 and not 0 < protection <= 100:
            raise ValidationError({"kite_market_protection": "-1 (automatic) or a percentage above 0."})

    def allows_origin(self, url: str) -> bool:
        """True when the URL's origin is exactly one of this tenant's allowed origins."""
        origin = origin_of(url)
        return origin is not None and origin in self.allowed_origins


if TYPE_CHECKING:
    _UserManagerBase = BaseUserManager["User"]  # a runtime subscript needs django-stubs-ext's monkeypatch
else:
    _UserManagerBase = BaseUserManager


class UserManager(_UserManagerBase):
    use_in_migrations = True

    def create_user(self, email, password=None, **extra):
        if not email:
            raise ValueError("Users need an email address.")
        if "tenant" not in extra and "tenant_id" not in extra:
            extra["tenant"] = Tenant.objects.get(is_default=True)
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True, role=User.Role.OPS)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    class Role(models.TextChoices):
        USER = "user", "User"
        TENANT_ADMIN = "tenant_admin", "Tenant admin"
        OPS = "ops", "Operations"

    email = models.EmailField(max_length=254, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="users")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.USER)
    marketing_opt_in = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    def __str__(self):
        return self.email


class SocialProvider(models.TextChoices):
    GOOGLE = "google", "Google"
    DISCORD = "discord", "Discord"
    ZERODHA = "zerodha", "Zerodha (Kite)"


class SocialApp(models.Model):
    """A tenant's OAuth client at Google or Discord; without one, the THOR_SOCIAL_DEFAULT_APPS client is used.

    Zerodha logins use the tenant's Kite app (brokers), so Zerodha has no row here.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="social_apps")
    provider = models.CharField(
        max_length=20, choices=[(p.value, p.label) for p in SocialProvider if p != SocialProvider.ZERODHA]
    )
    client_id = models.CharField(max_length=300)
    client_secret = EncryptedTextField()
    enabled = models.BooleanField(default=True, help_text="Off: this tenant's users cannot log in with it.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "provider"], name="one_social_app_per_provider")]

    def __str__(self):
        return f"{self.tenant.slug} {self.get_provider_display()}"


class SocialIdentity(models.Model):
    """A provider account that logs in as a Thor user: found by (provider, subject), never by email alone."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="social_identities")
    provider = models.CharField(max_length=20, choices=SocialProvider.choices)
    subject = models.CharField(max_length=255, help_text="Google's sub, Discord's id, the Kite user id.")
    email = models.EmailField(max_length=254, blank=True, help_text="The email the provider reported last.")
    email_verified = models.BooleanField(default=False)
    display_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "subject"], name="one_user_per_provider_subject")]
        verbose_name_plural = "social identities"

    def __str__(self):
        return f"{self.get_provider_display()} {self.subject}"


class RevokedSession(models.Model):
    """A sign-in ended by logging out: its access tokens (the `sid` claim, see identity.sessions) are refused
    from then on, not only once they expire. Kept until the last of them would have expired."""

    sid = models.CharField(max_length=64, unique=True)
    revoked_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"session {self.sid[:8]}… revoked {self.revoked_at:%Y-%m-%d %H:%M}"


class RefreshTokenRotation(models.Model):
    """A refresh token exchanged for a new pair, and that pair (encrypted), which the same token presented again
    within THOR_REFRESH_REUSE_GRACE_SECONDS answers once more (identity.refresh). Purged soon after the window."""

    token = models.OneToOneField(
        "token_blacklist.OutstandingToken", on_delete=models.CASCADE, primary_key=True, related_name="rotation"
    )
    successor = EncryptedTextField(help_text="The pair it was exchanged for, as JSON.")
    rotated_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"refresh token {self.token.jti} rotated {self.rotated_at:%Y-%m-%d %H:%M:%S}"
