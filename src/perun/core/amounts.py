"""Amounts as people write them and read them: exact integers of wei, no floats."""

from __future__ import annotations

import re

WEI_PER_ETHER = 10**18
UNITS = {"wei": 0, "gwei": 9, "eth": 18, "ether": 18}
_AMOUNT = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)")


def parse_amount(text: str) -> int:
    """Wei from `1000` (wei), `100wei`, `20gwei`, `1.5eth` or `1.5ether`; exact, no rounding."""
    match = _AMOUNT.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not an amount: {text!r} (say 1000, 100wei, 20gwei or 1.5eth)")
    number, unit = match.group(1), match.group(2).lower() or "wei"
    if unit not in UNITS:
        raise ValueError(f"unknown unit {match.group(2)!r} in {text!r}: use wei, gwei, eth or ether")
    whole, _, fraction = number.partition(".")
    fraction = fraction.rstrip("0")
    decimals = UNITS[unit]
    if len(fraction) > decimals:
        hint = " (a plain number is wei: say 1.5eth for ether)" if not match.group(2) else ""
        raise ValueError(f"{text.strip()} is not a whole number of wei{hint}")
    scale: int = 10**decimals
    return int(whole or "0") * scale + int(fraction.ljust(decimals, "0") or "0")


def ether(wei: int) -> str:
    """Exact decimal ether: 1500000000000000000 -> "1.5", 1 -> "0.000000000000000001"."""
    whole, fraction = divmod(abs(wei), WEI_PER_ETHER)
    return ("-" if wei < 0 else "") + f"{whole}.{fraction:018d}".rstrip("0").rstrip(".")
