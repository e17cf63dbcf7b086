"""The types of `perun`'s arguments: each reads a command-line text or says, in one line, what it
expects."""

from __future__ import annotations

import argparse
import re

from perun import errors
from perun.core.amounts import parse_amount

# --------------------------------------------------------------------------- amounts


def amount_arg(text: str) -> int:
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------- small argument types


def address_arg(text: str) -> str:
    from perun.core.address import parse_address

    try:
        return parse_address(text)
    except errors.InvalidAddress as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def channel_arg(text: str) -> str:
    """A channel id, or a unique prefix of one (at least 4 hex digits), resolved by `_resolve`."""
    if not re.fullmatch(r"0x[0-9a-fA-F]{4,64}", text):
        raise argparse.ArgumentTypeError(f"not a channel id (0x and 64 hex digits, or at least the first 4): {text!r}")
    return text.lower()


def host_port_arg(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def tower_arg(text: str) -> tuple[str, tuple[str, int]]:
    """A watchtower as ADDRESS@HOST:PORT: its address, and where to dial it."""
    address, sep, where = text.partition("@")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected ADDRESS@HOST:PORT (the tower's address, then where it listens), "
                                         f"got {text!r}")
    return address_arg(address), host_port_arg(where)


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def depth_arg(text: str) -> int:
    if not text.isdigit() or int(text) > 1000:
        raise argparse.ArgumentTypeError(f"expected a number of blocks from 0 to 1000, got {text!r}")
    return int(text)


def gwei_arg(text: str) -> int:
    """A fee per gas in gwei (decimals allowed), as wei."""
    try:
        wei = parse_amount(text + "gwei") if re.fullmatch(r"[0-9.]+", text.strip()) else -1
    except ValueError:
        wei = -1
    if not 0 < wei <= 10**15:
        raise argparse.ArgumentTypeError(f"expected a fee in gwei per gas (above 0, up to 1000000), got {text!r}")
    return wei


def count_arg(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def ppm_arg(text: str) -> int:
    """Millionths of an amount, 0 to 1,000,000 (a proportional fee)."""
    if not text.isdigit() or int(text) > 1_000_000:
        raise argparse.ArgumentTypeError(f"expected millionths from 0 to 1000000, got {text!r}")
    return int(text)
