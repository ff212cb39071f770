"""The Schwab sandbox's account reads: balances (margin by Reg T, cash by what is settled), positions
valued at the shared market's prices, and the `securitiesAccount` shape they are answered in.

Pure functions of an account and the quote feed; the caller holds the sandbox lock.
"""

import copy

from .schwab_models import RESTING_STATUSES, SchwabAccount
from .schwab_quotes import SchwabQuotes

# Reg T for the margin account: half of a long position's value is the trader's, a quarter must stay.
INITIAL_MARGIN, MAINTENANCE_MARGIN = 0.5, 0.25


def account_payload(account: SchwabAccount, fields: str, quotes: SchwabQuotes) -> dict:
    """One item of `/trader/v1/accounts`; its positions only when `fields` asks for them."""
    reported = balances(account, quotes)
    securities = {
        "type": account.kind,
        "accountNumber": account.number,
        "roundTrips": 0,
        "isDayTrader": False,
        "isClosingOnlyRestricted": False,
        "pfcbFlag": False,
        "initialBalances": copy.deepcopy(account.initial),
        "currentBalances": reported["current"],
        "projectedBalances": reported["projected"],
    }
    if "positions" in fields.split(","):
        securities["positions"] = [_position(symbol, held, quotes) for symbol, held in account.positions.items()]
    liquidation = reported["current"]["liquidationValue"]
    return {
        "securitiesAccount": securities,
        "aggregatedBalance": {"currentLiquidationValue": liquidation, "liquidationValue": liquidation},
    }


def _position(symbol: str, held: list[float], quotes: SchwabQuotes) -> dict:
    quantity, average = held
    price = quotes.price(symbol)
    # A held symbol the market no longer trades (price 0.0) still shows, closed at that price, id 0.
    instrument = quotes.find(symbol)
    close = instrument.base_price if instrument else price
    description = quotes.description(symbol)
    long_quantity, short_quantity = max(quantity, 0), max(-quantity, 0)
    market_value = round(quantity * price, 2)
    return {
        "shortQuantity": short_quantity,
        "averagePrice": average,
        "currentDayProfitLoss": round((price - close) * quantity, 2),
        "currentDayProfitLossPercentage": round((price - close) / close * 100, 2) if close else 0.0,
        "longQuantity": long_quantity,
        "settledLongQuantity": long_quantity,
        "settledShortQuantity": short_quantity,
        "instrument": {
            "assetType": "EQUITY",
            "cusip": description.get("cusip", ""),
            "symbol": symbol,
            "description": description.get("description", symbol),
            "instrumentId": instrument.token if instrument else 0,
            "netChange": round(price - close, 4),
        },
        "marketValue": market_value,
        "maintenanceRequirement": round(market_value * MAINTENANCE_MARGIN, 2),
        "averageLongPrice": average if quantity > 0 else 0.0,
        "taxLotAverageLongPrice": average if quantity > 0 else 0.0,
        "longOpenProfitLoss": round((price - average) * long_quantity, 2),
        "previousSessionLongQuantity": long_quantity,
        "currentDayCost": 0.0,
    }


def open_buy_commitment(account: SchwabAccount, quotes: SchwabQuotes, exclude: dict | None = None) -> float:
    """What the account's working buy orders (other than `exclude`) would cost at their limit, stop or last price."""
    total = 0.0
    for order in account.orders.values():
        if (
            order is not exclude
            and order["status"] in RESTING_STATUSES
            and order["orderLegCollection"][0]["instruction"] == "BUY"
        ):
            symbol = order["orderLegCollection"][0]["instrument"]["symbol"]
            unit = order.get("price") or order.get("stopPrice") or quotes.price(symbol)
            total += unit * order["remainingQuantity"]
    return total


def balances(account: SchwabAccount, quotes: SchwabQuotes) -> dict:
    """The account's current, initial and projected balances, as its kind (MARGIN or CASH) reports them."""
    long_value = sum(max(held[0], 0) * quotes.price(symbol) for symbol, held in account.positions.items())
    equity = account.cash + long_value
    committed = open_buy_commitment(account, quotes)
    # The current balances every account type reports alike.
    shared = {
        "accruedInterest": 0.0,
        "cashBalance": round(account.cash, 2),
        "cashReceipts": 0.0,
        "longOptionMarketValue": 0.0,
        "liquidationValue": round(equity, 2),
        "longMarketValue": round(long_value, 2),
        "moneyMarketFund": 0.0,
        "savings": 0.0,
        "shortMarketValue": 0.0,
        "pendingDeposits": 0.0,
        "mutualFundValue": 0.0,
        "bondValue": 0.0,
        "shortOptionMarketValue": 0.0,
    }
    if account.kind == "MARGIN":
        maintenance = long_value * MAINTENANCE_MARGIN
        available = max(0.0, equity - long_value * INITIAL_MARGIN - committed * INITIAL_MARGIN)
        current = {
            **shared,
            "availableFunds": round(available, 2),
            "availableFundsNonMarginableTrade": round(available, 2),
            "buyingPower": round(available * 2, 2),
            "buyingPowerNonMarginableTrade": round(available, 2),
            "dayTradingBuyingPower": round(available * 4, 2),
            "equity": round(equity, 2),
            "equityPercentage": round(equity / (long_value or equity or 1) * 100, 2) if long_value else 100.0,
            "longMarginValue": round(long_value, 2),
            "maintenanceCall": 0.0,
            "maintenanceRequirement": round(maintenance, 2),
            "marginBalance": round(min(account.cash, 0.0), 2),
            "regTCall": 0.0,
            "shortBalance": 0.0,
            "shortMarginValue": 0.0,
            "sma": round(available, 2),
            "isInCall": 0.0,
            "stockBuyingPower": round(available * 2, 2),
            "optionBuyingPower": round(available, 2),
        }
        initial = {
            "accruedInterest": 0.0,
            "availableFundsNonMarginableTrade": current["availableFunds"],
            "bondValue": 0.0,
            "buyingPower": current["buyingPower"],
            "cashBalance": current["cashBalance"],
            "cashAvailableForTrading": 0.0,
            "cashReceipts": 0.0,
            "dayTradingBuyingPower": current["dayTradingBuyingPower"],
            "equity": current["equity"],
            "equityPercentage": current["equityPercentage"],
            "liquidationValue": current["liquidationValue"],
            "longMarginValue": current["longMarginValue"],
            "longStockValue": current["longMarketValue"],
            "maintenanceRequirement": current["maintenanceRequirement"],
            "margin": current["cashBalance"],
            "marginEquity": current["equity"],
            "moneyMarketFund": 0.0,
            "mutualFundValue": 0.0,
            "accountValue": current["liquidationValue"],
            "isInCall": 0.0,
        }
        projected = {
            "availableFunds": current["availableFunds"],
            "buyingPower": current["buyingPower"],
            "stockBuyingPower": current["stockBuyingPower"],
            "isInCall": 0.0,
            "maintenanceCall": 0.0,
            "regTCall": 0.0,
        }
    else:
        available = max(0.0, account.cash - committed)
        current = {
            **shared,
            "cashAvailableForTrading": round(available, 2),
            "cashAvailableForWithdrawal": round(available, 2),
            "cashCall": 0.0,
            "longNonMarginableMarketValue": round(long_value, 2),
            "totalCash": round(account.cash, 2),
            "cashDebitCallValue": 0.0,
            "unsettledCash": 0.0,
        }
        initial = {
            "accruedInterest": 0.0,
            "cashAvailableForTrading": current["cashAvailableForTrading"],
            "cashAvailableForWithdrawal": current["cashAvailableForWithdrawal"],
            "cashBalance": current["cashBalance"],
            "bondValue": 0.0,
            "cashReceipts": 0.0,
            "liquidationValue": current["liquidationValue"],
            "longOptionMarketValue": 0.0,
            "longStockValue": current["longMarketValue"],
            "moneyMarketFund": 0.0,
            "mutualFundValue": 0.0,
            "shortOptionMarketValue": 0.0,
            "pendingDeposits": 0.0,
            "cashDebitCallValue": 0.0,
            "unsettledCash": 0.0,
            "isInCall": 0.0,
            "accountValue": current["liquidationValue"],
        }
        projected = {
            "cashAvailableForTrading": current["cashAvailableForTrading"],
            "cashAvailableForWithdrawal": current["cashAvailableForWithdrawal"],
        }
    return {"current": current, "initial": initial, "projected": projected}
