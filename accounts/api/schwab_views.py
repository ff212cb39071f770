"""Seed 002's Schwab account endpoints, over the user's live Schwab TradingAccounts.

Thin: resolution and reads are in accounts.schwab; errors carry seed 002's `error` key beside ours.
"""

from decimal import Decimal

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import presenters, schwab
from accounts.api.serializers import PositionOutputSerializer
from brokers.api.schwab_oauth_views import Seed002ErrorsMixin, seed002_errors
from thor import money
from thor.errors import ApplicationError
from thor.fields import MoneyField

READ_ERRORS = seed002_errors(400, 401, 404, 409, 503)
ACCOUNT_PARAMETERS = [
    OpenApiParameter(
        "account_number",
        str,
        description=(
            "The Schwab account number, in full or masked as /api/schwab/accounts/ lists it (`****6903`) when "
            "that names one of your accounts (400 `ambiguous_account_number` when it names several)."
        ),
    ),
    OpenApiParameter("account_hash", str, description="The account's hashValue (broker_account_id)."),
]
MAX_PARAMETER_LENGTH = 128


class _SchwabAccountLocator(serializers.Serializer):
    account_number = serializers.CharField(required=False, allow_blank=True, max_length=MAX_PARAMETER_LENGTH)
    account_hash = serializers.CharField(required=False, allow_blank=True, max_length=MAX_PARAMETER_LENGTH)


def _account_from_query(request):
    located = _SchwabAccountLocator(data=request.query_params)
    located.is_valid(raise_exception=True)
    return schwab.schwab_account_get(
        user=request.user,
        account_number=located.validated_data.get("account_number", ""),
        account_hash=located.validated_data.get("account_hash", ""),
    )


def _account_from_path(request, account_id: str):
    if len(account_id) > MAX_PARAMETER_LENGTH:
        raise ApplicationError(
            "Not a Schwab account number or hash.", code="validation_error", errors={"account_id": ["Too long."]}
        )
    return schwab.schwab_account_by_id(user=request.user, account_id=account_id)


# --- Output ------------------------------------------------------------------------------------


class _AccountIdentity(serializers.Serializer):
    thor_account_id = serializers.IntegerField()
    account_number = serializers.CharField(help_text="Masked: only the last 4 digits.")
    account_hash = serializers.CharField(help_text="Schwab's hashValue, the broker_account_id.")
    display_name = serializers.CharField()
    source = serializers.ChoiceField(choices=("live", "cache", "stale"))
    as_of = serializers.DateTimeField()


class SchwabSummaryOutputSerializer(_AccountIdentity):
    currency = serializers.CharField()
    net_liquidation = MoneyField()
    buying_power = MoneyField()
    available_funds = MoneyField()
    equity = MoneyField()
    equity_percentage = serializers.DecimalField(max_digits=7, decimal_places=2)
    cash = MoneyField()


class SchwabPositionsOutputSerializer(_AccountIdentity):
    positions = PositionOutputSerializer(many=True)


class SchwabAccountOutputSerializer(serializers.Serializer):
    securitiesAccount = serializers.JSONField(help_text="Schwab's own account payload; accountNumber masked.")
    aggregatedBalance = serializers.JSONField(required=False)
    thor_account_id = serializers.IntegerField(allow_null=True)
    broker_account_id = serializers.CharField(help_text="The hashValue every Schwab account path takes.")
    source = serializers.ChoiceField(choices=("live", "cache", "stale"))
    as_of = serializers.DateTimeField()


def _identity(account, read) -> dict:
    return {
        "thor_account_id": account.pk,
        "account_number": schwab.mask(account.account_number),
        "account_hash": account.broker_account_id,
        "display_name": account.display_name,
        "source": read.source,
        "as_of": read.as_of,
    }


def _current_balance(funds, name: str):
    """A figure Schwab reports itself (margin accounts' equity), if the adapter kept Schwab's payload."""
    raw = funds.raw or {}
    raw = raw.get("securitiesAccount", raw)
    value = (raw.get("currentBalances") or {}).get(name)
    return None if value is None else Decimal(str(value))


def summary_data(account, read) -> dict:
    funds = read.data
    # A cash account has no margin: its equity is all it is worth.
    equity = _current_balance(funds, "equity")
    equity = funds.net_liquidation if equity is None else equity
    percentage = _current_balance(funds, "equityPercentage")
    if percentage is None:
        percentage = (equity / funds.net_liquidation * 100) if funds.net_liquidation else Decimal("0")
    return {
        **_identity(account, read),
        "currency": funds.currency or account.currency,
        "net_liquidation": funds.net_liquidation,
        "buying_power": funds.buying_power,
        "available_funds": funds.available,
        "equity": money.money(equity),
        "equity_percentage": percentage.quantize(Decimal("0.01")),
        "cash": funds.cash,
    }


def _mask_numbers(payload):
    """Schwab's payload with every accountNumber masked, wherever it sits."""
    if isinstance(payload, dict):
        return {
            key: schwab.mask(str(value)) if key == "accountNumber" else _mask_numbers(value)
            for key, value in payload.items()
        }
    if isinstance(payload, list):
        return [_mask_numbers(item) for item in payload]
    return payload


# --- Views -------------------------------------------------------------------------------------


class SchwabAccountsView(Seed002ErrorsMixin, APIView):
    @extend_schema(
        summary="Seed 002: Schwab's accounts payload, with Thor's account id and the hashValue of each",
        responses={200: SchwabAccountOutputSerializer(many=True), **seed002_errors(401, 409, 503)},
    )
    def get(self, request):
        body = []
        accounts = {(a.connection_id, a.broker_account_id): a for a in schwab.schwab_accounts(user=request.user)}
        for payload in schwab.accounts_payloads(user=request.user):
            numbers = {
                number: hash_value
                for number, hash_value in schwab.account_number_map(connection=payload.connection).items()
            }
            for item in payload.read.data:
                number = str((item.get("securitiesAccount") or {}).get("accountNumber", ""))
                hash_value = numbers.get(number, "")
                account = accounts.get((payload.connection.pk, hash_value))
                body.append(
                    {
                        **_mask_numbers(item),
                        "thor_account_id": account.pk if account else None,
                        "broker_account_id": hash_value,
                        "source": payload.read.source,
                        "as_of": payload.read.as_of,
                    }
                )
        return Response(SchwabAccountOutputSerializer(body, many=True).data)


class _BalancesView(Seed002ErrorsMixin, APIView):
    def _answer(self, account):
        read = schwab.balances_read(account=account)
        data = SchwabSummaryOutputSerializer(summary_data(account, read)).data
        return Response(data)


class _PositionsView(Seed002ErrorsMixin, APIView):
    def _answer(self, account):
        read = schwab.positions_read(account=account)
        positions = presenters.positions_data(read.data)
        return Response({**_AccountIdentity(_identity(account, read)).data, "positions": positions})


class SchwabSummaryView(_BalancesView):
    @extend_schema(
        summary="Seed 002: balances of a Schwab account by number or hash (the first account without either)",
        description="Net liquidation, buying power, available funds, equity and equity %, cash; margin and cash accounts.",
        parameters=ACCOUNT_PARAMETERS,
        responses={200: SchwabSummaryOutputSerializer, **READ_ERRORS},
    )
    def get(self, request):
        return self._answer(_account_from_query(request))


class SchwabPositionsView(_PositionsView):
    @extend_schema(
        summary="Seed 002: positions of a Schwab account by number or hash (the first account without either)",
        parameters=ACCOUNT_PARAMETERS,
        responses={200: SchwabPositionsOutputSerializer, **READ_ERRORS},
    )
    def get(self, request):
        return self._answer(_account_from_query(request))


class SchwabLegacyBalancesView(_BalancesView):
    @extend_schema(
        summary="Seed 002 (legacy): balances of the Schwab account with this number or hash",
        responses={200: SchwabSummaryOutputSerializer, **READ_ERRORS},
    )
    def get(self, request, account_id: str):
        return self._answer(_account_from_path(request, account_id))


class SchwabLegacyPositionsView(_PositionsView):
    @extend_schema(
        summary="Seed 002 (legacy): positions of the Schwab account with this number or hash",
        responses={200: SchwabPositionsOutputSerializer, **READ_ERRORS},
    )
    def get(self, request, account_id: str):
        return self._answer(_account_from_path(request, account_id))
