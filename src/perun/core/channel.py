"""A basic payment channel (seed §3.1): its parameters, its states and their validation.

Pure data and checks, no I/O. The on-chain rules these mirror are in contracts/PaymentContract.sol
and docs/protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from perun import errors

ETH = "0x0000000000000000000000000000000000000000"
MAX_UINT64 = 2**64 - 1
MAX_AMOUNT = 2**128 - 1  # the contract stores balances in 128 bits
MAX_DELTA = 3650 * 24 * 3600  # PaymentContract.MAX_DELTA


class Phase(IntEnum):
    """PaymentContract.Phase, in the same order."""

    NONE = 0
    INITIALISING = 1
    OPEN = 2
    CLOSING = 3
    CLOSED = 4


@lru_cache(maxsize=4096)
def checksum(address: str | bytes) -> str:
    """to_checksum_address, remembered: a node checksums the same few addresses in every update
    (about 0.1 ms each)."""
    return to_checksum_address(address)


def _address(value: str) -> str:
    try:
        return checksum(value)
    except (ValueError, TypeError) as exc:
        raise errors.InvalidParams(f"not an address: {value!r}") from exc


def _amount(name: str, value: int, limit: int = MAX_AMOUNT) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.AmountOutOfRange(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= limit:
        raise errors.AmountOutOfRange(f"{name} = {value} is outside 0..{limit}")


@dataclass(frozen=True)
class Params:
    """The immutable parameters of a channel: PaymentContract.Params.

    Amounts are integers in wei or token base units. `token` is the ERC-20 address, or `ETH`.
    """

    alice: str
    bob: str
    deposit_alice: int
    deposit_bob: int
    delta: int  # dispute window Δ in seconds
    nonce: int
    token: str = ETH

    def __post_init__(self) -> None:
        object.__setattr__(self, "alice", _address(self.alice))
        object.__setattr__(self, "bob", _address(self.bob))
        object.__setattr__(self, "token", _address(self.token))
        if self.alice == self.bob or ETH in (self.alice, self.bob):
            raise errors.InvalidParams("alice and bob must be two distinct non-zero addresses")
        _amount("deposit_alice", self.deposit_alice)
        _amount("deposit_bob", self.deposit_bob, MAX_AMOUNT - self.deposit_alice)
        if isinstance(self.delta, bool) or not isinstance(self.delta, int) or not 0 < self.delta <= MAX_DELTA:
            raise errors.InvalidParams(f"delta must be an int in 1..{MAX_DELTA} seconds, got {self.delta!r}")
        _amount("nonce", self.nonce, 2**256 - 1)

    @classmethod
    def known(cls, alice: str, bob: str, deposit_alice: int, deposit_bob: int, delta: int, nonce: int,
              token: str) -> Params:
        """Parameters checked when they were first made, read back from the node's own store
        (perun.store), which holds only such: built without the checks of `__post_init__`, whose
        checksumming of an address not seen lately (about 75 µs) dominated loading a node's channels."""
        params = object.__new__(cls)
        for name, value in (("alice", alice), ("bob", bob), ("deposit_alice", deposit_alice),
                            ("deposit_bob", deposit_bob), ("delta", delta), ("nonce", nonce), ("token", token)):
            object.__setattr__(params, name, value)
        return params

    @property
    def total(self) -> int:
        return self.deposit_alice + self.deposit_bob

    def as_abi(self) -> tuple[Any, ...]:
        """The Params tuple as the contract's ABI orders it."""
        return (self.alice, self.bob, self.token, self.deposit_alice, self.deposit_bob, self.delta, self.nonce)

    def channel_id(self, chain_id: int, contract: str) -> bytes:
        """γ.id: keccak256(abi.encode(chainId, contract, params)), as PaymentContract.channelIdOf."""
        return keccak(
            encode(
                ["uint256", "address", "(address,address,address,uint256,uint256,uint64,uint256)"],
                [chain_id, _address(contract), self.as_abi()],
            )
        )

    def initial_state(self, chain_id: int, contract: str) -> PaymentState:
        """Version 0: everyone holds their deposit. The contract accepts it unsigned."""
        return PaymentState(self.channel_id(chain_id, contract), 0, self.deposit_alice, self.deposit_bob)


@dataclass(frozen=True)
class PaymentState:
    """(γ.id, γ.cash, γ.ver-num) of the seed: what a party signs for the other."""

    channel_id: bytes
    version: int
    balance_alice: int
    balance_bob: int
    is_final: bool = field(default=False)  # a FinalState, for the cooperative close

    def __post_init__(self) -> None:
        if not isinstance(self.channel_id, bytes) or len(self.channel_id) != 32:
            raise errors.WrongChannel("channel_id must be 32 bytes")
        _amount("version", self.version, MAX_UINT64)
        _amount("balance_alice", self.balance_alice)
        _amount("balance_bob", self.balance_bob)

    def as_abi(self) -> tuple[Any, ...]:
        return (self.channel_id, self.version, self.balance_alice, self.balance_bob)

    def final(self) -> PaymentState:
        """The same balances as a final state, at the next version."""
        return PaymentState(self.channel_id, self.version + 1, self.balance_alice, self.balance_bob, is_final=True)

    def pay(self, amount: int, *, from_alice: bool) -> PaymentState:
        """The next version, with `amount` moved from one party to the other."""
        _amount("amount", amount)
        alice = self.balance_alice - amount if from_alice else self.balance_alice + amount
        bob = self.balance_bob + amount if from_alice else self.balance_bob - amount
        if alice < 0 or bob < 0:
            raise errors.BalanceExceeded(amount, self.balance_alice if from_alice else self.balance_bob)
        return PaymentState(self.channel_id, self.version + 1, alice, bob)


def check_state(params: Params, state: PaymentState, channel_id: bytes) -> None:
    """The checks PaymentContract applies to any state before its signature."""
    if state.channel_id != channel_id:
        raise errors.WrongChannel(f"state is for channel 0x{state.channel_id.hex()}, not 0x{channel_id.hex()}")
    if state.balance_alice + state.balance_bob != params.total:
        raise errors.BalancesNotConserved(
            f"balances {state.balance_alice} + {state.balance_bob} != deposits {params.total}"
        )

