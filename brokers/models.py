from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from thor.crypto import EncryptedTextField


class BrokerKind(models.TextChoices):
    KITE = "kite", "Zerodha Kite Connect"
    SCHWAB = "schwab", "Charles Schwab"


class BrokerApp(models.Model):
    """A developer app registered at a broker: shared by a tenant, or a user's own key (seed 000)."""

    kind = models.CharField(max_length=20, choices=BrokerKind.choices)
    name = models.CharField(max_length=200, blank=True)
    api_key = models.CharField(max_length=200, help_text="Kite api_key / Schwab client id (public).")
    api_secret = EncryptedTextField()
    redirect_uri = models.URLField(max_length=500, blank=True)
    order_egress = EncryptedTextField(
        blank=True,
        default="",
        help_text="A user's own app only: the CONNECT proxy on the user's registered static IP (brokers.egress).",
    )
    order_egress_probe = models.JSONField(default=dict, blank=True, help_text="The last probe through the egress.")
    tenant = models.ForeignKey("identity.Tenant", on_delete=models.CASCADE, related_name="broker_apps")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="broker_apps",
        help_text="Set for a user's own key; empty for the tenant's shared app.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "kind", "api_key"], condition=Q(owner__isnull=True), name="one_shared_app_per_key"
            ),
            models.UniqueConstraint(
                fields=["owner", "kind", "api_key"], condition=Q(owner__isnull=False), name="one_user_app_per_key"
            ),
        ]

    def __str__(self):
        # The api_key is not a secret, but operators and logs only need to tell apps apart.
        return f"{self.get_kind_display()} ••••{self.api_key[-4:]}"


class BrokerConnection(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"
        ERROR = "error", "Error"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="broker_connections")
    app = models.ForeignKey(BrokerApp, on_delete=models.PROTECT, related_name="connections")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    broker_user_id = models.CharField(max_length=100, blank=True)
    access_token = EncryptedTextField(blank=True, default="")
    refresh_token = EncryptedTextField(blank=True, default="")
    access_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_expires_at = models.DateTimeField(null=True, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    trading_enabled = models.BooleanField(
        default=False, help_text="Live order placement; off until the tenant turns it on (Kite static-IP rule)."
    )
    order_egress = EncryptedTextField(
        blank=True,
        default="",
        help_text="The CONNECT proxy on the user's registered static IP that this connection's orders leave through.",
    )
    order_egress_probe = models.JSONField(default=dict, blank=True, help_text="The last probe through the egress.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "app", "broker_user_id"], name="one_connection_per_broker_user")
        ]

    def __str__(self):
        return f"{self.app.kind}:{self.broker_user_id or '?'} ({self.status})"

    @property
    def kind(self):
        return self.app.kind
