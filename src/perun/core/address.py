"""Ethereum addresses as a user types them."""

from __future__ import annotations

from eth_utils import is_checksum_address, is_hex_address, to_checksum_address

from perun import errors


def parse_address(text: str) -> str:
    """The checksummed form of `text`, 0x and 40 hex digits. All lower or all upper case carries
    no checksum and is taken as it is; mixed case is an EIP-55 checksum, and one that does not
    match is refused: it is most likely a typo."""
    if not isinstance(text, str) or not is_hex_address(text):
        raise errors.InvalidAddress(f"not an address (0x and 40 hex digits): {text!r}")
    digits = text[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(text):
        raise errors.InvalidAddress(f"{text} has a wrong checksum (its mixed case): check it for a typo, "
                                    f"or give it in lower case")
    return to_checksum_address(text)
