"""Streaming tokens for US symbols: what `Instrument.instrument_token` holds for the master's Schwab rows.

Kite streams by instrument token, Schwab by symbol. The market stream, the last-prices store and the tick
hub (market.tickhub) all key by token, so a US symbol gets one of its own: the symbol itself, written
as a number (each character a digit of base 40, never 0) above US_TOKEN_BASE. Kite's tokens are 32-bit,
so the two never meet; the Schwab stream turns a token back into its symbol without a lookup; and every
token stays below 2**53, so a browser reads it from JSON exactly. A symbol longer than MAX_SYMBOL_LENGTH
(or with another character) has no token: it is quoted, not streamed.
"""

US_TOKEN_BASE = 1 << 48
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ./-"
RADIX = len(ALPHABET) + 1  # digit 0 is never used, so "A" and "0A" cannot share a number
MAX_SYMBOL_LENGTH = 9
_DIGITS = {character: index + 1 for index, character in enumerate(ALPHABET)}
_LIMIT = US_TOKEN_BASE + RADIX**MAX_SYMBOL_LENGTH


def us_token(symbol: str) -> int | None:
    """The streaming token of a US symbol (as Schwab spells it), or None when it cannot have one."""
    if not symbol or len(symbol) > MAX_SYMBOL_LENGTH or any(character not in _DIGITS for character in symbol):
        return None
    number = 0
    for character in symbol:
        number = number * RADIX + _DIGITS[character]
    return US_TOKEN_BASE + number


def us_symbol(token: int) -> str | None:
    """The US symbol a token stands for, or None when it is not a US token (a Kite token, say)."""
    if not is_us_token(token):
        return None
    number, characters = token - US_TOKEN_BASE, []
    while number:
        number, digit = divmod(number, RADIX)
        if digit == 0:
            return None
        characters.append(ALPHABET[digit - 1])
    return "".join(reversed(characters)) or None


def is_us_token(token: int) -> bool:
    return US_TOKEN_BASE < token < _LIMIT
