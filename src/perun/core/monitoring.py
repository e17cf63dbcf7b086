"""What a party signs for a watchtower (docs/protocol.md §12): an authorisation to submit one
state signed by the other party (`Monitoring`), or to make one call of a nanocontract
(`Execution`), on the party's behalf, and the reward the party pays the tower for it at finalize.

Pure data, no I/O. The contract side is contracts/Watchtowers.sol; both hash these structs with
EIP-712 in the channel contract's own domain, so an authorisation is valid for one contract on
one chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from perun import errors
from perun.core.channel import MAX_UINT64, PaymentState, _address, _amount
from perun.core.eip712 import Domain, sign
from perun.core.multistate import ChannelState, NanocontractState, digest

MONITORING_TYPE = (
    "Monitoring(bytes32 channelId,bytes32 nid,uint64 version,bytes32 state,address tower,uint256 reward)"
)
EXECUTION_TYPE = "Execution(bytes32 channelId,bytes32 nid,uint8 fun,bytes32 argument,address tower,uint256 reward)"
MONITORING_TYPEHASH = keccak(text=MONITORING_TYPE)
EXECUTION_TYPEHASH = keccak(text=EXECUTION_TYPE)

MAX_REWARD = 2**88 - 1  # Watchtowers.MAX_REWARD: a reward is stored in 88 bits
CHANNEL_ITEM = bytes(32)  # the `nid` of an authorisation for the channel's own state

Submittable = PaymentState | ChannelState | NanocontractState


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _bytes32(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise errors.InvalidParams(f"{name} must be 32 bytes")


@dataclass(frozen=True)
class Monitoring:
    """The party's authorisation for `tower` to submit the state whose digest is `state`."""

    channel_id: bytes
    nid: bytes  # CHANNEL_ITEM for the channel's own state
    version: int
    state: bytes  # the EIP-712 digest the other party signed
    tower: str
    reward: int

    def __post_init__(self) -> None:
        _bytes32("channel_id", self.channel_id)
        _bytes32("nid", self.nid)
        _bytes32("state", self.state)
        _amount("version", self.version, MAX_UINT64)
        object.__setattr__(self, "tower", _address(self.tower))
        _amount("reward", self.reward, MAX_REWARD)

    @classmethod
    def of(cls, domain: Domain, state: Submittable, tower: str, reward: int) -> Monitoring:
        """The authorisation for `state` (in the channel contract's `domain`)."""
        if isinstance(state, PaymentState):
            if state.is_final:
                raise errors.InvalidParams("a final state is submitted by cooperativeClose, not by a tower")
            return cls(state.channel_id, CHANNEL_ITEM, state.version, domain.digest(state), tower, reward)
        nid = state.nid if isinstance(state, NanocontractState) else CHANNEL_ITEM
        return cls(state.channel_id, nid, state.version, digest(domain, state), tower, reward)

    def as_abi(self) -> tuple[Any, ...]:
        return (self.channel_id, self.nid, self.version, self.state, self.tower, self.reward)

    def struct_hash(self) -> bytes:
        return keccak(
            MONITORING_TYPEHASH + self.channel_id + self.nid + _word(self.version) + self.state
            + bytes(12) + bytes.fromhex(self.tower[2:]) + _word(self.reward)
        )

    def digest(self, domain: Domain) -> bytes:
        return domain.digest_of(self.struct_hash())


@dataclass(frozen=True)
class Execution:
    """The party's authorisation for `tower` to call function `fun` of nanocontract `nid` with the
    argument whose keccak256 is `argument`, as that party, whenever the app allows it."""

    channel_id: bytes
    nid: bytes
    fun: int
    argument: bytes
    tower: str
    reward: int

    def __post_init__(self) -> None:
        _bytes32("channel_id", self.channel_id)
        _bytes32("nid", self.nid)
        _bytes32("argument", self.argument)
        _amount("fun", self.fun, 255)
        object.__setattr__(self, "tower", _address(self.tower))
        _amount("reward", self.reward, MAX_REWARD)

    @classmethod
    def of(cls, channel_id: bytes, nid: bytes, fun: int, z: bytes, tower: str, reward: int) -> Execution:
        """The authorisation for the call `fun(z)`."""
        return cls(channel_id, nid, fun, keccak(z), tower, reward)

    def as_abi(self) -> tuple[Any, ...]:
        return (self.channel_id, self.nid, self.fun, self.argument, self.tower, self.reward)

    def struct_hash(self) -> bytes:
        return keccak(
            EXECUTION_TYPEHASH + self.channel_id + self.nid + _word(self.fun) + self.argument
            + bytes(12) + bytes.fromhex(self.tower[2:]) + _word(self.reward)
        )

    def digest(self, domain: Domain) -> bytes:
        return domain.digest_of(self.struct_hash())


def sign_authorisation(domain: Domain, authorisation: Monitoring | Execution, private_key: bytes) -> bytes:
    """The party's signature on `authorisation` in the channel contract's `domain`."""
    return sign(authorisation.digest(domain), private_key)
