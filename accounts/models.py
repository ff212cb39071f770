from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from thor import money


class TradingAccount(models.Model):
    class Mode(models.TextChoices):
        PAPER = "paper", "Paper"
        LIVE = "live", "Live"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trading_accounts")
    mode = models.CharField(max_length=10, choices=Mode.choices)
    connection = models.ForeignKey(
        "brokers.BrokerConnection", null=True, blank=True, on_delete=models.SET_NULL, related_name="accounts"
    )
    broker_account_id = models.CharField(max_length=200, blank=True, help_text="Kite user id, Schwab hashValue.")
    account_number = models.CharField(max_length=64, blank=True, help_text="Schwab account number; masked in output.")
    display_name = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    cash = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal("0.00"), help_text="Paper cash.")
    is_primary = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user"], condition=Q(is_primary=True), name="one_primary_account_per_user"),
            models.UniqueConstraint(
                fields=["connection", "broker_account_id"],
                condition=Q(connection__isnull=False),
                name="one_account_per_broker_account",
            ),
        ]

    def __str__(self):
        return f"{self.display_name or self.mode} #{self.pk}"

    @property
    def broker(self):
        return self.connection.app.kind if self.connection_id else "paper"


class OrderQuerySet(models.QuerySet):
    def delete(self):
        raise OrderDeletionRefused("Order rows are never deleted: they are the record of what was sent.")


class OrderDeletionRefused(Exception):
    pass


class Order(models.Model):
    class Side(models.TextChoices):
        BUY = "BUY"
        SELL = "SELL"

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"  # accepted by Thor, not yet acknowledged by the broker
        # Sent, but whether the broker took it is not known yet (a timeout): never reported as not placed.
        UNKNOWN = "UNKNOWN", "Placement unconfirmed"
        OPEN = "OPEN", "Open"
        TRIGGER_PENDING = "TRIGGER PENDING", "Trigger pending"
        COMPLETE = "COMPLETE", "Complete"
        CANCELLED = "CANCELLED", "Cancelled"
        REJECTED = "REJECTED", "Rejected"
        EXPIRED = "EXPIRED", "Expired"
        # The settle window closed with zero or several broker orders that could be this placement:
        # a person decides (accounts.placement), since guessing could attach another order's fills.
        NEEDS_REVIEW = "NEEDS_REVIEW", "Needs review"
        # A row the broker's own id made before Thor learnt its placement was this order (see
        # accounts.broker_updates); kept, never deleted, and pointing at the order it became.
        MERGED = "MERGED", "Merged into another order"

    TERMINAL_STATUSES = (Status.COMPLETE, Status.CANCELLED, Status.REJECTED, Status.EXPIRED, Status.MERGED)
    # Sent (or perhaps sent) without a broker id yet: the broker may hold it, so it is never given up.
    UNSETTLED_STATUSES = (Status.PENDING, Status.UNKNOWN, Status.NEEDS_REVIEW)

    account = models.ForeignKey(TradingAccount, on_delete=models.PROTECT, related_name="orders")
    client_order_id = models.CharField(max_length=40, help_text="Thor's id, sent to the broker as the tag.")
    broker_order_id = models.CharField(max_length=64, blank=True)
    symbol = models.CharField(max_length=64)
    exchange = models.CharField(max_length=16)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(max_digits=18, decimal_places=4)
    order_type = models.CharField(max_length=8)
    product = models.CharField(max_length=8)
    price = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    trigger_price = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    validity = models.CharField(max_length=8, default="DAY")
    tag = models.CharField(max_length=20, blank=True)
    # The exchange algo (strategy) id the order carries (the tenant's `algo_ids`): sent as Kite's `algo_id`, a
    # field of its own, so Kite's one `tag` stays Thor's client order id (README "Trading live from India").
    algo_id = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    status_message = models.CharField(max_length=500, blank=True)
    filled_quantity = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"))
    average_price = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    # Paper fills only: what the fill cost beyond its price (accounts.charges), debited from cash; a sliced
    # order's parent shows its slices' sum. Null where nothing was charged by Thor (live orders, unfilled ones).
    charges = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    raw = models.JSONField(default=dict, blank=True, help_text="The broker's last payload for this order.")
    settle_after = models.DateTimeField(
        null=True, blank=True, help_text="UNKNOWN orders: when the broker's order book is read again."
    )
    settle_checks = models.PositiveSmallIntegerField(default=0, help_text="UNKNOWN orders: order book reads so far.")
    # The last send (a placement, or a replace that gives a new broker id): the broker order it made, if
    # the answer was lost, was entered between these two times (give or take the broker's late landing).
    # Stored before the call goes out, so a crash mid-send leaves a row the reconciler can settle.
    send_started_at = models.DateTimeField(null=True, blank=True)
    send_ended_at = models.DateTimeField(null=True, blank=True)
    send_acknowledged = models.BooleanField(
        default=False, help_text="The broker said it took the last send, without saying which order it made."
    )
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="MERGED rows only."
    )
    # An order above the exchange's freeze quantity is placed as slices (accounts.slicing): the order the
    # trader placed is the parent, holding the whole quantity and its children's aggregate; each slice is a
    # child order with its own quantity, status and fills. Children never appear in the order list.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children", help_text="Slices only."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="one_order_per_idempotency_key",
            ),
            models.UniqueConstraint(fields=["account", "client_order_id"], name="one_order_per_client_order_id"),
            models.UniqueConstraint(
                fields=["account", "broker_order_id"], condition=~Q(broker_order_id=""), name="one_order_per_broker_id"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "status"]),
            # The order list's pages (newest first, by id): a page reads its rows and no more, however many
            # orders the account has; without it PostgreSQL sorts every order of the account for each page.
            models.Index(fields=["account", "-id"], name="order_account_newest_first"),
            models.Index(fields=["broker_order_id"]),
            models.Index(fields=["settle_after"], condition=Q(status="UNKNOWN"), name="unknown_orders_to_settle"),
        ]

    def __str__(self):
        return f"{self.side} {money.quantity(self.quantity)} {self.exchange}:{self.symbol} ({self.status})"

    def delete(self, *args, **kwargs):
        raise OrderDeletionRefused("Order rows are never deleted: they are the record of what was sent.")

    @property
    def is_terminal(self):
        return self.status in self.TERMINAL_STATUSES


class BrokerOrderId(models.Model):
    """Every broker order id an order has had: Schwab's replace gives a modified order a new id, and the
    old one must never come back as an order of its own. Unique per account, so one broker order can
    belong to one Thor order only, whatever the code that assigns it."""

    account = models.ForeignKey(TradingAccount, on_delete=models.PROTECT, related_name="broker_order_ids")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="broker_ids")
    broker_order_id = models.CharField(max_length=64)
    superseded_at = models.DateTimeField(null=True, blank=True, help_text="Set when a replace gave a new id.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "broker_order_id"], name="one_order_per_broker_order_id_ever")
        ]

    def __str__(self):
        return f"{self.broker_order_id} -> order {self.order_id}"


class AuditDeletionRefused(Exception):
    pass


class OrderEventQuerySet(models.QuerySet):
    def delete(self):
        raise AuditDeletionRefused(
            "Audit rows are never deleted through the ORM: `manage.py purge_audit` removes those past retention."
        )


class OrderEvent(models.Model):
    """Append-only audit of every state change of an order (and account-wide actions such as reset).

    Hash-chained per account by accounts.audit_chain after the row commits (chain_index, prev_hash, hash
    stay empty until then): the writers on the placement path add no statement for it. Kept for
    THOR_AUDIT_RETENTION_DAYS; nothing that deletes an account, a user or a tenant takes these rows with it.
    """

    # PROTECT (account and actor): deleting either must not silently remove, or rewrite, a hashed row.
    account = models.ForeignKey(TradingAccount, on_delete=models.PROTECT, related_name="events")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    kind = models.CharField(max_length=40)
    request_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    broker_response = models.JSONField(default=dict, blank=True)
    # The account stream's sequence numbers of the messages this change published (an order update,
    # then position and funds updates after a fill): a socket that missed any is resent them from here.
    seq = models.PositiveBigIntegerField(null=True, blank=True)
    last_seq = models.PositiveBigIntegerField(null=True, blank=True)
    # The order's updated_at after this change, which its update showed: a resync shows the same.
    order_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The account's audit chain (accounts.audit_chain): position, the previous event's hash, this one's.
    chain_index = models.PositiveBigIntegerField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True, default="")
    hash = models.CharField(max_length=64, blank=True, default="")

    objects = OrderEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["account", "last_seq"], name="order_events_by_stream_seq"),
            # The sealer's work list: only rows not sealed yet, so it stays a few rows however old the trail.
            models.Index(fields=["account", "id"], condition=Q(chain_index__isnull=True), name="order_events_unsealed"),
        ]
        constraints = [
            # Partial: an insert (unsealed) does not touch it; it also serves the chain's reads in order.
            models.UniqueConstraint(
                fields=["account", "chain_index"],
                condition=Q(chain_index__isnull=False),
                name="one_order_event_per_chain_index",
            )
        ]

    def __str__(self):
        return f"{self.kind} @ {self.created_at:%Y-%m-%d %H:%M:%S}"

    def delete(self, *args, **kwargs):
        raise AuditDeletionRefused("Audit rows are never deleted one by one: they are the record of what happened.")


GENESIS_HASH = "0" * 64


class AuditChainHead(models.Model):
    """Where an account's audit chain ends (and, after a purge, where its kept part starts).

    Its row is the sealers' lock (select_for_update), so two never chain the same events. `length` and
    `last_hash` let a verifier see events deleted from the end, which no later hash would betray.
    """

    account = models.OneToOneField(TradingAccount, primary_key=True, on_delete=models.CASCADE, related_name="audit")
    length = models.PositiveBigIntegerField(default=0, help_text="Events ever chained (chain_index of the next).")
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    sealed_at = models.DateTimeField(null=True, blank=True)
    # A purge (accounts.audit_retention) removes a prefix of the chain and keeps its checkpoint: the hash of
    # the last removed event, which the first kept one names as prev_hash, and which covers all removed.
    purged_count = models.PositiveBigIntegerField(default=0)
    purged_through_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    purged_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"account {self.account_id}: {self.length} events chained"


class AccountStream(models.Model):
    """The last sequence number given to a message of the account's WebSocket stream.

    A row of its own, not a TradingAccount column: code that saves a TradingAccount it read earlier
    would otherwise write an old number back. Advanced in the transaction that writes the OrderEvent.
    """

    account = models.OneToOneField(TradingAccount, primary_key=True, on_delete=models.CASCADE, related_name="stream")
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"account {self.account_id} at seq {self.last_seq}"


class PaperPosition(models.Model):
    """A paper account's net position in one instrument and product; CNC longs double as holdings."""

    account = models.ForeignKey(TradingAccount, on_delete=models.CASCADE, related_name="paper_positions")
    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=64)
    product = models.CharField(max_length=8)
    quantity = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"))
    average_price = models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"))
    realised_pnl = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal("0.00"))
    # The contract's multiplier when the position opened (brokers.contract_multipliers: 100 for a GOLD future,
    # whose quantity is lots priced per 10 g): every amount of it is quantity x price x multiplier. Kept on the
    # row, so a position keeps the terms its cash moved at.
    multiplier = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["exchange", "symbol", "product"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "exchange", "symbol", "product"], name="one_paper_position_per_instrument"
            )
        ]

    def __str__(self):
        return f"{money.quantity(self.quantity)} {self.exchange}:{self.symbol} {self.product}"


class IdempotentRequest(models.Model):
    """The first answer to a batch, modify or cancel request sent with an Idempotency-Key, and to a
    live placement the broker refused.

    A row without `response_status` is a request still in flight (live brokers only).
    """

    account = models.ForeignKey(TradingAccount, on_delete=models.CASCADE, related_name="idempotent_requests")
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=20)
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="one_request_per_idempotency_key")]

    def __str__(self):
        return f"{self.operation} {self.key}"
