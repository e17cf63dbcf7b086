"""Channel announcements (docs/protocol.md §13.8): what a node tells a peer that asks about the
channel directions it forwards over, signed, so that the payer can check each announcement
whoever relays it, and learns the announcer's public key (its onion key) from the signature.

An announcement names its node, a timestamp (chain time) and up to MAX_ANNOUNCED directions
(route.Direction, each from the node: the channel, the peer at its other end, the token, the
node's forwarding fees, the channel's Δ and what the node can lock there now). A node that
forwards nothing announces no direction: the announcement still gives its key, which a payment
without an invoice needs for the payee.

Signed with EIP-712 in a domain of its own, as an invoice is (route.Invoice): {name "Perun
Announcement", version "1", chainId}. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from eth_utils import keccak

from perun import errors
from perun.core.channel import ETH, MAX_UINT64, checksum
from perun.core.eip712 import address_of, address_of_public_key, recover_public_key, sign
from perun.core.route import Direction, Policy

VERSION = 1
MAX_ANNOUNCED = 32  # directions in one announcement: with the signature, it fits one message
# version 1, chain id 8, node 20, timestamp 8, count 1; then per direction channel id 32, peer 20,
# token 20, base fee 16, fee ppm 4, Δ 8, capacity 16; then the 65-byte signature r || s || v.
HEADER = 1 + 8 + 20 + 8 + 1
ENTRY = 32 + 20 + 20 + 16 + 4 + 8 + 16
SIGNATURE = 65
MAX_SIZE = HEADER + MAX_ANNOUNCED * ENTRY + SIGNATURE  # 3,815 bytes

DOMAIN_TYPEHASH = keccak(text="EIP712Domain(string name,string version,uint256 chainId)")
CHANNEL_TYPE = ("AnnouncedChannel(bytes32 channelId,address peer,address token,uint128 baseFee,uint32 feePpm,"
                "uint64 delta,uint128 capacity)")
ANNOUNCEMENT_TYPE = "Announcement(address node,uint64 timestamp,AnnouncedChannel[] channels)" + CHANNEL_TYPE
CHANNEL_TYPEHASH = keccak(text=CHANNEL_TYPE)
ANNOUNCEMENT_TYPEHASH = keccak(text=ANNOUNCEMENT_TYPE)
DOMAIN_NAME = "Perun Announcement"
DOMAIN_VERSION = "1"


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _bad(message: str) -> errors.InvalidAnnouncement:
    return errors.InvalidAnnouncement(f"not an announcement: {message}")


@dataclass(frozen=True)
class Announcement:
    """`node`'s channel directions at chain time `timestamp`, on chain `chain_id`, signed by
    `node`. Each direction's source is `node`; no channel appears twice."""

    chain_id: int
    node: str
    timestamp: int
    directions: tuple[Direction, ...]
    signature: bytes

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "node", checksum(self.node))
        except (ValueError, TypeError) as exc:
            raise _bad(f"the node is not an address: {self.node!r}") from exc
        if self.node == ETH:
            raise _bad("the node is the zero address")
        for name, value in (("chain_id", self.chain_id), ("timestamp", self.timestamp)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UINT64:
                raise _bad(f"{name} must be an int in 0..{MAX_UINT64}, not {value!r}")
        if self.chain_id == 0:
            raise _bad("chain id 0")
        if not isinstance(self.directions, tuple) or len(self.directions) > MAX_ANNOUNCED:
            raise _bad(f"at most {MAX_ANNOUNCED} directions in a tuple")
        for d in self.directions:
            if not isinstance(d, Direction) or d.source != self.node:
                raise _bad(f"a direction of {self.node}'s announcement starts elsewhere")
        if len({d.channel for d in self.directions}) != len(self.directions):
            raise _bad("a channel appears twice")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE:
            raise _bad("the signature is 65 bytes")

    @classmethod
    def create(cls, key: bytes, chain_id: int, timestamp: int, directions: Sequence[Direction]) -> Announcement:
        """The announcement of the node whose private key is `key`, signed."""
        unsigned = cls(chain_id, address_of(key), timestamp, tuple(directions), bytes(SIGNATURE))
        return replace(unsigned, signature=sign(unsigned.digest, key))

    @cached_property
    def digest(self) -> bytes:
        """keccak(0x1901 ‖ domain ‖ hashStruct(Announcement)); the array of channels is hashed as
        EIP-712 hashes an array of structs: keccak of their hashStructs, concatenated."""
        domain = keccak(DOMAIN_TYPEHASH + keccak(text=DOMAIN_NAME) + keccak(text=DOMAIN_VERSION)
                        + _word(self.chain_id))
        channels = keccak(b"".join(
            keccak(CHANNEL_TYPEHASH + d.channel + bytes(12) + _address(d.target) + bytes(12) + _address(d.token)
                   + _word(d.policy.base_fee) + _word(d.policy.fee_ppm) + _word(d.policy.delta)
                   + _word(d.policy.capacity))
            for d in self.directions))
        struct = keccak(ANNOUNCEMENT_TYPEHASH + bytes(12) + _address(self.node) + _word(self.timestamp) + channels)
        return keccak(b"\x19\x01" + domain + struct)

    @cached_property
    def public_key(self) -> bytes:
        """The compressed public key that signed it: the node's (its onion key) once
        `check_signature` passed."""
        try:
            return recover_public_key(self.digest, self.signature)
        except errors.InvalidSignature as exc:
            raise errors.AnnouncementSignatureInvalid(f"the announcement's signature is malformed: {exc}") from exc

    def check_signature(self) -> None:
        """AnnouncementSignatureInvalid unless the node signed every field."""
        signer = address_of_public_key(self.public_key)
        if signer != self.node:
            raise errors.AnnouncementSignatureInvalid(f"the announcement of {self.node} is signed by {signer}")

    def to_bytes(self) -> bytes:
        entries = b"".join(
            d.channel + _address(d.target) + _address(d.token) + d.policy.base_fee.to_bytes(16, "big")
            + d.policy.fee_ppm.to_bytes(4, "big") + d.policy.delta.to_bytes(8, "big")
            + d.policy.capacity.to_bytes(16, "big")
            for d in self.directions)
        return (bytes([VERSION]) + self.chain_id.to_bytes(8, "big") + _address(self.node)
                + self.timestamp.to_bytes(8, "big") + bytes([len(self.directions)]) + entries + self.signature)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Announcement:
        """The announcement `raw` encodes, with every check: length, version, each field's range
        (route.Direction's and Policy's), and the signature (InvalidAnnouncement and its
        AnnouncementSignatureInvalid)."""
        if size(raw, 0) != len(raw):
            raise _bad(f"{len(raw)} bytes for {raw[HEADER - 1] if len(raw) >= HEADER else '?'} directions")
        if raw[0] != VERSION:
            raise errors.InvalidAnnouncement(f"announcement version {raw[0]} is not supported (only {VERSION})")
        node = "0x" + raw[9:29].hex()
        directions = []
        for at in range(HEADER, len(raw) - SIGNATURE, ENTRY):
            e = raw[at:at + ENTRY]
            policy = Policy(int.from_bytes(e[72:88], "big"), int.from_bytes(e[88:92], "big"),
                            int.from_bytes(e[92:100], "big"), int.from_bytes(e[100:116], "big"))
            directions.append(Direction(e[:32], node, "0x" + e[32:52].hex(), policy, "0x" + e[52:72].hex()))
        announcement = cls(int.from_bytes(raw[1:9], "big"), node, int.from_bytes(raw[29:37], "big"),
                           tuple(directions), raw[-SIGNATURE:])
        announcement.check_signature()
        return announcement


def size(raw: bytes, at: int) -> int:
    """The size of the announcement that starts at `at` in `raw`, read from its count of
    directions (InvalidAnnouncement if `raw` ends before its count, or the count is too high)."""
    if len(raw) < at + HEADER:
        raise _bad(f"{len(raw) - at} bytes, at least {HEADER + SIGNATURE}")
    count = raw[at + HEADER - 1]
    if count > MAX_ANNOUNCED:
        raise _bad(f"{count} directions, at most {MAX_ANNOUNCED}")
    return HEADER + count * ENTRY + SIGNATURE


def split(raw: bytes) -> list[bytes]:
    """The announcements that `raw` holds one after the other, as bytes (their layout only:
    each is checked when decoded). InvalidAnnouncement if they do not fill `raw` exactly."""
    parts, at = [], 0
    while at < len(raw):
        end = at + size(raw, at)
        if end > len(raw):
            raise _bad(f"the last one is cut short ({len(raw) - at} of {end - at} bytes)")
        parts.append(raw[at:end])
        at = end
    return parts
