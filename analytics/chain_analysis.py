"""The strike distribution and the futures' rollover, computed from a snapshot's rows (no ORM, no cache).

The selectors read the rows; these functions turn them into the answers' figures, with the definitions of
analytics.market_metrics.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from analytics import greeks, market_metrics
from analytics.expiries import days_to_expiry, years_to_expiry

QUOTE_FIELDS = (
    "tradingsymbol",
    "instrument_token",
    "option_type",
    "strike",
    "strike_offset",
    "last_price",
    "bid",
    "ask",
    "bid_quantity",
    "ask_quantity",
    "depth_bid_quantity",
    "depth_ask_quantity",
    "volume",
    "oi",
    "iv",
    "delta",
    "gamma",
    "theta",
    "vega",
    "rho",
)
OPTION_SIDES = {"call": ["CE"], "put": ["PE"], "both": ["CE", "PE"]}


@dataclass(frozen=True)
class ChainPoint:
    """What one expiry's snapshot says of its chain as a whole."""

    expiry: date
    taken_at: datetime
    forward: float
    spot: float | None
    atm_strike: float | None


def strike_distribution(
    chain: ChainPoint,
    quotes: list[dict],
    opening_oi: dict[int, int],
    *,
    option_side: str,
    strikes_around_atm: int,
    rate: float,
) -> dict:
    """The chain's metrics and, per strike within `strikes_around_atm` of the money, each side's figures.

    `quotes`: the snapshot's option rows (QUOTE_FIELDS) by strike then type; `opening_oi`: OI by instrument
    token at the day's first snapshot (what `oi_change` is measured from).
    """
    by_strike: dict[float, dict[str, dict]] = defaultdict(dict)
    for quote in quotes:
        by_strike[quote["strike"]][quote["option_type"]] = quote
    atm_ivs = [side["iv"] for side in by_strike.get(chain.atm_strike, {}).values() if side["iv"] is not None]
    atm_iv = float(np.mean(atm_ivs)) if atm_ivs else None
    if quotes and atm_iv is not None:
        model = greeks.black76_price(
            chain.forward,
            np.array([quote["strike"] for quote in quotes]),
            years_to_expiry(chain.expiry, chain.taken_at),
            atm_iv,
            rate,
            np.array([quote["option_type"] == "CE" for quote in quotes]),
        )
        for quote, price in zip(quotes, np.atleast_1d(model), strict=True):
            quote["model_price"] = float(price)
    calls = [quote for quote in quotes if quote["option_type"] == "CE"]
    puts = [quote for quote in quotes if quote["option_type"] == "PE"]
    call_oi, put_oi = sum(q["oi"] for q in calls), sum(q["oi"] for q in puts)
    strikes = sorted(by_strike)

    def side_value(strike, option_type, field, default=None):
        return by_strike[strike].get(option_type, {}).get(field, default)

    gamma_by_strike = {
        strike: market_metrics.gamma_exposure(
            side_value(strike, "CE", "gamma"),
            side_value(strike, "CE", "oi", 0),
            side_value(strike, "PE", "gamma"),
            side_value(strike, "PE", "oi", 0),
            chain.forward,
        )
        for strike in strikes
    }
    sides = OPTION_SIDES[option_side]
    rows = []
    for strike in strikes:
        sided = by_strike[strike]
        offset = next(iter(sided.values()))["strike_offset"]
        if abs(offset) > strikes_around_atm:
            continue
        rows.append(
            {
                "strike": strike,
                "strike_offset": offset,
                "gamma_exposure": gamma_by_strike[strike],
                "call": option_side_figures(sided.get("CE"), opening_oi) if "CE" in sides else None,
                "put": option_side_figures(sided.get("PE"), opening_oi) if "PE" in sides else None,
            }
        )
    figures = {
        "atm_strike": chain.atm_strike,
        "forward": chain.forward,
        "spot": chain.spot,
        "days_to_expiry": days_to_expiry(chain.expiry, chain.taken_at),
        "pcr_oi": market_metrics.ratio(put_oi, call_oi),
        "pcr_volume": market_metrics.ratio(sum(q["volume"] for q in puts), sum(q["volume"] for q in calls)),
        "max_pain_strike": market_metrics.max_pain_strike(
            strikes, [side_value(s, "CE", "oi", 0) for s in strikes], [side_value(s, "PE", "oi", 0) for s in strikes]
        ),
        "atm_iv": atm_iv,
        "skew_25_delta": market_metrics.skew_25_delta(
            [q["delta"] for q in calls], [q["iv"] for q in calls], [q["delta"] for q in puts], [q["iv"] for q in puts]
        ),
        "net_gamma_exposure": sum(gamma_by_strike.values()),
        "call_oi": call_oi,
        "put_oi": put_oi,
    }
    return {"chain": figures, "strikes": rows}


def option_side_figures(quote: dict | None, opening_oi: dict[int, int]) -> dict | None:
    if quote is None:
        return None
    depth = market_metrics.depth_metrics(
        quote["bid"],
        quote["ask"],
        quote["bid_quantity"],
        quote["ask_quantity"],
        quote["depth_bid_quantity"],
        quote["depth_ask_quantity"],
    )
    model_price = quote.get("model_price")
    premium = quote["last_price"] - model_price if model_price is not None else None
    return {
        **{name: quote[name] for name in QUOTE_FIELDS if name not in {"option_type", "strike", "strike_offset"}},
        "oi_change": quote["oi"] - opening_oi.get(quote["instrument_token"], quote["oi"]),
        "model_price": model_price,
        "premium": premium,
        "premium_pct": premium / model_price * 100 if premium is not None and model_price else None,
        "depth": {
            "spread": depth.spread,
            "spread_bps": depth.spread_bps,
            "microprice": depth.microprice,
            "bid_quantity_5": quote["depth_bid_quantity"],
            "ask_quantity_5": quote["depth_ask_quantity"],
            "liquidity_score": depth.liquidity_score,
        },
    }


# --- futures ------------------------------------------------------------------------------------


def rollover_pct(futures: list[dict]) -> float | None:
    """OI beyond the near month over all futures OI; `futures` by expiry."""
    total = sum(item["oi"] for item in futures)
    return sum(item["oi"] for item in futures[1:]) / total * 100 if total and len(futures) > 1 else None


def rollover(futures: list[dict], spot: float | None, as_of: datetime, opening_rollover_pct: float | None) -> dict:
    """Per contract and for the roll from the near month; `futures` by expiry (expiry, tradingsymbol,
    last_price, oi), `opening_rollover_pct` that of the day's first snapshot."""
    total_oi = sum(item["oi"] for item in futures)
    contracts = []
    for item in futures:
        days = days_to_expiry(item["expiry"], as_of)
        basis = item["last_price"] - spot if spot else None
        contracts.append(
            {
                **item,
                "days_to_expiry": days,
                "oi_share_pct": item["oi"] / total_oi * 100 if total_oi else None,
                "basis": basis,
                "annualised_basis_pct": basis / spot * 365 / max(days, 0.5) * 100 if basis is not None else None,
            }
        )
    rolled = rollover_pct(futures)
    near_days = contracts[0]["days_to_expiry"] if contracts else 0.0
    cost_pct = annualised_cost = None
    if len(futures) > 1 and futures[0]["last_price"]:
        near, following = futures[0], futures[1]
        cost_pct = (following["last_price"] - near["last_price"]) / near["last_price"] * 100
        gap_days = max((following["expiry"] - near["expiry"]).days, 1)
        annualised_cost = cost_pct * 365 / gap_days
    pressure, pressure_label = market_metrics.rollover_pressure(rolled, near_days)
    return {
        "spot": spot,
        "contracts": contracts,
        "rollover_pct": rolled,
        "rollover_pct_change": rolled - opening_rollover_pct
        if rolled is not None and opening_rollover_pct is not None
        else None,
        "rollover_cost_pct": cost_pct,
        "rollover_cost_annualised_pct": annualised_cost,
        "days_to_expiry": near_days,
        "rollover_pressure": pressure,
        "rollover_pressure_label": pressure_label,
    }
