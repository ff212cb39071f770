"""Schwab's accounts, balances and positions in Thor's neutral types: the profile, the account list, funds,
positions, and the holdings among them.

Pure functions: nothing here calls Schwab.
"""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from brokers.adapters.types import BrokerAccountRef, Funds, Holding, Position, Profile
from thor.money import money, to_decimal

from .mapping import ORDER_TYPES, computed_price, optional_price, shares


def customer_id_of(preference: Mapping[str, Any]) -> str:
    streamers = preference.get("streamerInfo") or []
    return str(((streamers[0] or {}).get("schwabClientCustomerId") if streamers else "") or "")


def profile_of(preference: Mapping[str, Any], *, broker: str) -> Profile:
    return Profile(
        broker_user_id=customer_id_of(preference),
        name="",
        email="",
        broker=broker,
        exchanges=("NASDAQ", "NYSE"),
        products=(),
        order_types=tuple(ORDER_TYPES),
        raw=dict(preference),
    )


def account_refs(numbers: list[Mapping[str, Any]], accounts: list[dict[str, Any]]) -> list[BrokerAccountRef]:
    """`accountNumbers` (number and hash) with each account's kind from `accounts`."""
    kinds: dict[str, str] = {}
    for item in accounts:
        account = item.get("securitiesAccount") or {}
        kinds[str(account.get("accountNumber"))] = account.get("type") or ""
    refs: list[BrokerAccountRef] = []
    for entry in numbers:
        number = str(entry.get("accountNumber") or "")
        kind = kinds.get(number, "")
        refs.append(
            BrokerAccountRef(
                broker_account_id=str(entry.get("hashValue") or ""),
                account_number=number,
                display_name=f"Schwab {kind.title() or 'account'} ••••{number[-4:]}",
                kind=kind,
            )
        )
    return refs


def _first(current: Mapping[str, Any], initial: Mapping[str, Any], name: str) -> Any:
    """A balance from currentBalances, else from initialBalances (Schwab leaves some out of one or the other)."""
    value = current.get(name)
    return initial.get(name) if value is None else value


def funds_of(account: Mapping[str, Any]) -> Funds:
    """Funds from a `securitiesAccount`: a margin account by its margin balances, a cash account by its cash."""
    current = account.get("currentBalances") or {}
    initial = account.get("initialBalances") or {}
    net_liquidation = to_decimal(
        _first(current, initial, "liquidationValue") or _first(current, initial, "accountValue") or 0
    )
    if account.get("type") == "MARGIN":
        cash = to_decimal(_first(current, initial, "cashBalance") or 0)
        available = to_decimal(_first(current, initial, "availableFunds") or 0)
        buying_power = to_decimal(_first(current, initial, "buyingPower") or 0)
        utilised = to_decimal(_first(current, initial, "maintenanceRequirement") or 0)
    else:
        # A cash account trades settled cash only: what it may spend is what it may trade with.
        cash = to_decimal(current.get("totalCash") or initial.get("cashBalance") or 0)
        available = to_decimal(_first(current, initial, "cashAvailableForTrading") or 0)
        buying_power = available
        utilised = max(Decimal("0"), cash - available)
    return Funds(
        currency="USD",
        cash=money(cash),
        available=money(available),
        utilised=money(utilised),
        buying_power=money(buying_power),
        net_liquidation=money(net_liquidation),
        raw=dict(account),
    )


# OCC's standard equity option: 100 shares a contract, for an option whose `optionMultiplier` Schwab leaves out.
STANDARD_OPTION_MULTIPLIER = Decimal("100")


def contract_multiplier(instrument: Mapping[str, Any]) -> Decimal:
    """Shares one unit of the position's quantity stands for: an option's `optionMultiplier` (Schwab's
    AccountOption; 100 where it is missing or no positive number), 1 for anything else."""
    if instrument.get("assetType") != "OPTION":
        return Decimal("1")
    try:
        multiplier = to_decimal(instrument.get("optionMultiplier"))
    except (ArithmeticError, TypeError, ValueError):
        return STANDARD_OPTION_MULTIPLIER
    return multiplier if multiplier.is_finite() and multiplier > 0 else STANDARD_OPTION_MULTIPLIER


def positions_of(account: Mapping[str, Any]) -> list[Position]:
    """The positions of a `securitiesAccount` read with `fields=positions`."""
    positions: list[Position] = []
    for item in account.get("positions") or []:
        instrument = item.get("instrument") or {}
        quantity = shares(to_decimal(item.get("longQuantity")) - to_decimal(item.get("shortQuantity")))
        value = to_decimal(item.get("marketValue"))
        units = quantity * contract_multiplier(instrument)
        positions.append(
            Position(
                symbol=instrument.get("symbol") or "",
                exchange="",
                product=account.get("type") or "",
                quantity=quantity,
                # Schwab's Position schema requires no field: an average price it leaves out is not known.
                average_price=optional_price(item.get("averagePrice")),
                # Schwab gives no last price on a position: its market value over the shares it holds (an option
                # contract's market value is its price times its multiplier, 100 shares).
                last_price=computed_price(value / units) if units else Decimal("0.0000"),
                realised_pnl=Decimal("0.00"),
                unrealised_pnl=money(
                    to_decimal(item.get("longOpenProfitLoss")) + to_decimal(item.get("shortOpenProfitLoss"))
                ),
                day_pnl=money(item.get("currentDayProfitLoss")),
                value=money(value),
                raw=dict(item),
            )
        )
    return positions


def holdings_of(positions: list[Position]) -> list[Holding]:
    """Schwab keeps no separate holdings: they are the long equity positions."""
    holdings: list[Holding] = []
    for position in positions:
        instrument = position.raw.get("instrument") or {}
        quantity = shares(position.raw.get("longQuantity"))
        if instrument.get("assetType") != "EQUITY" or quantity <= 0:
            continue
        holdings.append(
            Holding(
                symbol=position.symbol,
                exchange="",
                quantity=quantity,
                average_price=optional_price(position.raw.get("averageLongPrice") or position.raw.get("averagePrice")),
                last_price=position.last_price,
                pnl=money(position.raw.get("longOpenProfitLoss")),
                day_change=position.day_pnl,
                value=money(position.raw.get("marketValue")),
                raw=position.raw,
            )
        )
    return holdings
