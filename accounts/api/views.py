import hashlib
import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import broker_updates, order_pages, presenters, selectors, services
from accounts import orders as order_services
from accounts.api import serializers
from accounts.checks import order_algo_id
from accounts.models import Order
from brokers import services as broker_services
from brokers.adapters.types import OrderRequest
from brokers.api.serializers import KitePostbackInputSerializer, KitePostbackOutputSerializer
from brokers.api.views import query_and_body
from thor.errors import ApplicationError, error_responses
from thor.pagination import StrictCursorPagination
from thor.renderers import OrjsonRenderer
from thor.throttles import OrderRateThrottle

ERRORS = error_responses(401, 404)
WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 422, 429, 503)
LIVE_READ_ERRORS = error_responses(401, 404, 409, 503)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Same key and body: the first answer again, nothing sent twice. Same key, other body: 422. "
        "On a live account a repeat that arrives while the first request is still at the broker answers "
        "409 `idempotent_request_in_progress` (batch, modify, cancel) or the order as it stands (place): "
        "retry once the first has answered."
    ),
)
FRESH = OpenApiParameter("fresh", OpenApiTypes.BOOL, description="Bypass the short cache of live reads.")


def idempotency_key(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable() or not key.isascii():
        raise ApplicationError(
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            code="validation_error",
            errors={"Idempotency-Key": ["1 to 255 printable ASCII characters."]},
        )
    return key


def fingerprint(*parts) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_request(data: dict, *, tenant) -> OrderRequest:
    return OrderRequest(
        symbol=data["tradingsymbol"],
        exchange=data["exchange"],
        side=data["transaction_type"],
        quantity=data["quantity"],
        order_type=data["order_type"],
        product=data["product"],
        price=data.get("price"),
        trigger_price=data.get("trigger_price"),
        validity=data["validity"],
        tag=data["tag"],
        algo_id=order_algo_id(tenant=tenant, requested=data.get("algo_id")),
    )


def wants_fresh(request) -> bool:
    return request.query_params.get("fresh", "").lower() in ("1", "true", "yes")


class MeView(APIView):
    @extend_schema(
        summary="The signed-in user, their tenant and primary account",
        responses={200: serializers.MeOutputSerializer, **error_responses(401)},
    )
    def get(self, request):
        user = request.user
        user.primary_account = selectors.primary_account_get(user=user)
        return Response(serializers.MeOutputSerializer(user).data)


class KitePostbackView(APIView):
    """Kite's order updates. Public: the checksum, not a login, proves who sent it.

    brokers verifies and parses it; the order changes here, through the one path every broker update takes.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Kite order postback",
        request=KitePostbackInputSerializer,
        responses={200: KitePostbackOutputSerializer, **error_responses(400)},
    )
    def post(self, request):
        payload = query_and_body(request)
        data = KitePostbackInputSerializer(data=payload)
        data.is_valid(raise_exception=True)
        postback = broker_services.kite_postback_verify(update=data.validated_data, payload=payload)
        applied = broker_updates.kite_postback_apply(postback=postback)
        return Response(KitePostbackOutputSerializer({"status": "ok", "applied": applied}).data)


class AccountListView(APIView):
    @extend_schema(
        summary="Every account of the user: paper and live",
        responses={200: serializers.AccountOutputSerializer(many=True), **error_responses(401)},
    )
    def get(self, request):
        accounts = selectors.account_list(user=request.user)
        return Response(serializers.AccountOutputSerializer(_with_status(accounts), many=True).data)

    @extend_schema(
        summary="Open another paper account, in one of the tenant's paper currencies (one per currency)",
        request=serializers.PaperAccountCreateInputSerializer,
        responses={201: serializers.AccountOutputSerializer, **error_responses(400, 401, 409)},
    )
    def post(self, request):
        data = serializers.PaperAccountCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = services.trading_account_create_paper(user=request.user, currency=data.validated_data["currency"])
        return Response(_account_data(account), status=status.HTTP_201_CREATED)


def _with_status(accounts):
    for account in accounts:
        account.status = selectors.account_status(account)
    return accounts


def _account_data(account) -> dict:
    return serializers.AccountOutputSerializer(_with_status([account])[0]).data


class AccountDetailView(APIView):
    @extend_schema(
        summary="One account (a Thor id or `primary`)", responses={200: serializers.AccountOutputSerializer, **ERRORS}
    )
    def get(self, request, account_id):
        account = selectors.account_get(user=request.user, account_ref=account_id)
        return Response(_account_data(account))

    @extend_schema(
        summary="Make this account the primary one (paper or an active live account)",
        request=serializers.AccountUpdateInputSerializer,
        responses={200: serializers.AccountOutputSerializer, **WRITE_ERRORS},
    )
    def patch(self, request, account_id):
        account = selectors.account_get(user=request.user, account_ref=account_id)
        serializers.AccountUpdateInputSerializer(data=request.data).is_valid(raise_exception=True)
        account = services.trading_account_set_primary(account=account)
        return Response(_account_data(account))


class AccountSyncView(APIView):
    @extend_schema(
        summary="Refresh positions, holdings, funds and orders from the broker",
        request=None,
        responses={200: serializers.SyncOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request, account_id):
        account = selectors.account_get(user=request.user, account_ref=account_id)
        result = services.trading_account_sync(account=account)
        body = {"account_id": account.pk, "changed": result.changed, "as_of": result.as_of}
        return Response(serializers.SyncOutputSerializer(body).data)


class AccountResetView(APIView):
    @extend_schema(
        summary="Paper only: starting cash again, every order cancelled, every position closed",
        request=None,
        responses={200: serializers.AccountOutputSerializer, **WRITE_ERRORS},
    )
    def post(self, request, account_id):
        account = selectors.account_get(user=request.user, account_ref=account_id)
        account = services.trading_account_reset(account=account, actor=request.user)
        return Response(_account_data(account))


def live_read_schema(summary: str, output: type):
    """A live read's schema: `?fresh`, its envelope on 200 and the live reads' errors."""
    return extend_schema(summary=summary, parameters=[FRESH], responses={200: output, **LIVE_READ_ERRORS})


class _LiveReadView(APIView):
    # Their answers hold no float (money and quantities are text): orjson renders DRF's bytes (thor.renderers).
    renderer_classes = [OrjsonRenderer]
    read = None
    what = None
    # The envelope's `data` from the read's data: kept with each live snapshot (thor.snapshots), so a read
    # served from the cache does not present the same numbers again.
    present = None

    def get(self, request, account_id):
        account = selectors.account_for_read_get(user=request.user, account_ref=account_id)
        answer = selectors.presented_read_get(
            account=account,
            what=self.what,
            read=type(self).read,
            present=type(self).present,
            fresh=wants_fresh(request),
        )
        return Response(
            presenters.live_read_data(account_id=account.pk, source=answer.source, as_of=answer.as_of, data=answer.data)
        )


@live_read_schema("Positions with P&L", serializers.PositionsOutputSerializer)
class PositionsView(_LiveReadView):
    read = selectors.positions_get
    what = "positions"
    present = presenters.positions_data


@live_read_schema("Holdings with P&L", serializers.HoldingsOutputSerializer)
class HoldingsView(_LiveReadView):
    read = selectors.holdings_get
    what = "holdings"
    present = presenters.holdings_data


@live_read_schema("Cash, available, utilised, buying power, net liquidation", serializers.FundsEnvelopeOutputSerializer)
class FundsView(_LiveReadView):
    read = selectors.funds_get
    what = "funds"
    present = presenters.funds_data


class OrderCursorPagination(StrictCursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class OrdersView(APIView):
    # A placement reads its user's row again under the account lock (accounts.orders.place): authentication
    # takes the cached user (identity.authentication).
    user_checked_under_lock = True
    throttle_classes = [OrderRateThrottle]
    renderer_classes = [OrjsonRenderer]

    @extend_schema(
        summary="Orders, newest first, with filters and cursor pagination",
        operation_id="accounts_orders_list",
        parameters=[
            serializers.OrderListQuerySerializer,
            OpenApiParameter("from", OpenApiTypes.DATETIME),
            OpenApiParameter("to", OpenApiTypes.DATETIME),
            OpenApiParameter("limit", OpenApiTypes.INT),
            OpenApiParameter("cursor", OpenApiTypes.STR),
        ],
        responses={200: serializers.OrderPageOutputSerializer, **error_responses(400, 401, 404)},
    )
    def get(self, request, account_id):
        # Only the account's id is used: the read lookup (cached for live accounts) will do.
        account = selectors.account_for_read_get(user=request.user, account_ref=account_id)

        def page() -> dict:
            query = serializers.OrderListQuerySerializer(data=request.query_params)
            query.is_valid(raise_exception=True)
            orders = selectors.order_list(account=account, **query.validated_data)
            paginator = OrderCursorPagination()
            orders_page = paginator.paginate_queryset(orders, request, view=self)
            return paginator.get_paginated_response(presenters.orders_data(orders_page)).data

        variant = order_pages.page_variant(request, cursor_param=OrderCursorPagination.cursor_query_param)
        return Response(order_pages.page_kept_or_built(account_id=account.pk, variant=variant, build=page))

    @extend_schema(
        summary="Place an order",
        parameters=[IDEMPOTENCY_KEY],
        request=serializers.OrderInputSerializer,
        responses={
            201: serializers.OrderOutputSerializer,
            202: OpenApiResponse(
                serializers.OrderOutputSerializer,
                description=(
                    "Sent, but the broker's answer was lost: status UNKNOWN until Thor finds the order in the "
                    "broker's book (or, after the broker's settle window, concludes it was never placed). "
                    "Retry with the same Idempotency-Key to see it settle; never with a new key."
                ),
            ),
            **WRITE_ERRORS,
        },
    )
    def post(self, request, account_id):
        account = selectors.account_for_order_get(user=request.user, account_ref=account_id)
        key = idempotency_key(request)
        data = serializers.OrderInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = order_services.order_place(
            account=account,
            request=order_request(data.validated_data, tenant=account.user.tenant),
            idempotency_key=key,
            fingerprint=fingerprint(request.data),
            actor=request.user,
        )
        # Sent without a broker id yet (lost answer, a crashed send, or waiting for a person): accepted, not created.
        unconfirmed = account.mode == account.Mode.LIVE and order.status in Order.UNSETTLED_STATUSES
        return Response(
            presenters.order_data(order),
            status=status.HTTP_202_ACCEPTED if unconfirmed else status.HTTP_201_CREATED,
        )


class OrderDetailView(APIView):
    throttle_classes = [OrderRateThrottle]

    @extend_schema(summary="One order", responses={200: serializers.OrderOutputSerializer, **ERRORS})
    def get(self, request, account_id, order_id):
        account = selectors.account_get(user=request.user, account_ref=account_id)
        order = selectors.order_get(account=account, order_id=order_id)
        return Response(presenters.order_data(order))

    @extend_schema(
        summary="Modify an open order",
        parameters=[IDEMPOTENCY_KEY],
        request=serializers.OrderModifyInputSerializer,
        responses={200: serializers.OrderOutputSerializer, **WRITE_ERRORS},
    )
    def patch(self, request, account_id, order_id):
        account = selectors.account_get(user=request.user, account_ref=account_id)
        key = idempotency_key(request)
        data = serializers.OrderModifyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = order_services.order_modify(
            account=account,
            order_id=order_id,
            changes=data.validated_data,
            idempotency_key=key,
            fingerprint=fingerprint("modify", order_id, request.data),
            actor=request.user,
        )
        return Response(presenters.order_data(order))

    @extend_schema(
        summary="Cancel an open order",
        parameters=[IDEMPOTENCY_KEY],
        request=None,
        responses={200: serializers.OrderOutputSerializer, **WRITE_ERRORS},
    )
    def delete(self, request, account_id, order_id):
        account = selectors.account_get(user=request.user, account_ref=account_id)
        order = order_services.order_cancel(
            account=account,
            order_id=order_id,
            idempotency_key=idempotency_key(request),
            fingerprint=fingerprint("cancel", order_id),
            actor=request.user,
        )
        return Response(presenters.order_data(order))


class BatchOrdersView(APIView):
    throttle_classes = [OrderRateThrottle]

    @extend_schema(
        summary="Place up to 20 orders: all checked first; paper is all or nothing, live cancels placed legs on a failure",
        parameters=[IDEMPOTENCY_KEY],
        request=serializers.BatchInputSerializer,
        responses={
            201: serializers.BatchOutputSerializer,
            207: serializers.BatchOutputSerializer,
            422: serializers.BatchOutputSerializer,
            **WRITE_ERRORS,
        },
    )
    def post(self, request, account_id):
        account = selectors.account_get(user=request.user, account_ref=account_id)
        key = idempotency_key(request)
        data = serializers.BatchInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = order_services.order_batch_place(
            account=account,
            requests=[order_request(leg, tenant=account.user.tenant) for leg in data.validated_data["orders"]],
            idempotency_key=key,
            fingerprint=fingerprint("batch", request.data),
            actor=request.user,
        )
        return Response(presenters.batch_data(result), status=result.http_status)
