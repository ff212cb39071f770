"""Idempotency-Key: the same key and body answer what the first request did; another body is a 422.

A placement is remembered by its order (`Order.idempotency_key`, unique per account); a batch, a modify
or a cancel by an IdempotentRequest row, claimed under the account lock before anything is sent, so
concurrent repeats wait for the first (409 while it is at the broker) and never apply twice.
"""

from rest_framework import status

from accounts.models import IdempotentRequest, Order, TradingAccount
from thor.errors import ApplicationError


def _key_reused() -> ApplicationError:
    return ApplicationError(
        "This Idempotency-Key was already used with a different request.",
        code="idempotency_key_reused",
        status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
    )


def placed_order_for_key(*, account: TradingAccount, key: str, fingerprint: str) -> Order | None:
    """The order this key placed, or None; raises the first answer again when the broker refused it."""
    order = account.orders.filter(idempotency_key=key).first()
    if order is None:
        if account.idempotent_requests.filter(key=key).exists():
            raise _key_reused()
        return None
    if order.request_fingerprint != fingerprint:
        raise _key_reused()
    refused = account.idempotent_requests.filter(key=key).first()
    if refused is not None:
        body = refused.response_body
        raise ApplicationError(body["detail"], code=body["code"], status_code=refused.response_status)
    return order


def recorded_request(*, account: TradingAccount, key: str, fingerprint: str) -> IdempotentRequest | None:
    """The finished request this key answered, or None when the key is new; 409 while it is in flight."""
    record = account.idempotent_requests.filter(key=key).first()
    if record is None:
        if account.orders.filter(idempotency_key=key).exists():
            raise _key_reused()
        return None
    if record.fingerprint != fingerprint:
        raise _key_reused()
    if record.response_status is None:
        raise ApplicationError(
            "A request with this Idempotency-Key is still being processed.",
            code="idempotent_request_in_progress",
            status_code=status.HTTP_409_CONFLICT,
        )
    return record


def request_record(*, account, key, operation, fingerprint, response_status=None, response_body=None) -> None:
    """Claim the key (no status yet: in flight) or store the answer it gives from now on."""
    if key:
        IdempotentRequest.objects.update_or_create(
            account=account,
            key=key,
            defaults={
                "operation": operation,
                "fingerprint": fingerprint,
                "response_status": response_status,
                "response_body": response_body or {},
            },
        )


def replayed_order(*, account, key, fingerprint) -> Order | None:
    """The order a modify or cancel with this Idempotency-Key already answered with, if any."""
    record = recorded_request(account=account, key=key, fingerprint=fingerprint) if key else None
    return None if record is None else account.orders.get(pk=record.response_body["order_id"])


def request_forget(*, account, key) -> None:
    """A live call that failed changed nothing at the broker: the key may be used again."""
    if key:
        IdempotentRequest.objects.filter(account=account, key=key, response_status__isnull=True).delete()
