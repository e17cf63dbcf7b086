"""HashTimeLock's Python mirror (contracts/apps/HashTimeLock.sol).

The sender blocks an amount; the receiver gets it with the SHA-256 preimage of the hashlock at or
before the timeout, the sender gets it back after, or earlier if the receiver cancels (a multi-hop
payment failed downstream: its locks are freed upstream at once, as Lightning's update_fail_htlc). `transition` makes the contract's checks in
the contract's order and raises the same error with the same fields, so a node refuses off
chain exactly what the chain would refuse.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from perun import errors
from perun.core.apps import ALICE, BOB, AppState, Context, checked_add, word

CLAIM = 0
RECLAIM = 1
CANCEL = 2  # by the receiver, at any time: everything back to the sender; never automatic

UINT64_MAX = 2**64 - 1
DATA_LENGTH = 3 * 32  # abi.encode(uint8 sender, bytes32 hashlock, uint64 timeout)
PREIMAGE_LENGTH = 32


@dataclass(frozen=True)
class Lock:
    """The decoded storage: who blocked the amount, the hashlock and the last second to claim."""

    sender: int
    hashlock: bytes
    timeout: int

    @property
    def receiver(self) -> int:
        return BOB if self.sender == ALICE else ALICE


def hashlock_of(preimage: bytes) -> bytes:
    """SHA-256, as in Lightning, so that locks can be chained with Lightning payments."""
    return hashlib.sha256(preimage).digest()


def encode(sender: int, hashlock: bytes, timeout: int) -> bytes:
    """The storage `abi.encode(uint8 sender, bytes32 hashlock, uint64 timeout)`."""
    if sender not in (ALICE, BOB):
        raise ValueError(f"sender must be ALICE (0) or BOB (1), not {sender}")
    if len(hashlock) != 32:
        raise ValueError(f"the hashlock must be 32 bytes, not {len(hashlock)}")
    if not 0 <= timeout <= UINT64_MAX:
        raise ValueError(f"the timeout must fit a uint64, not {timeout}")
    return sender.to_bytes(32, "big") + hashlock + timeout.to_bytes(32, "big")


def decode(data: bytes) -> Lock:
    """The storage's fields; raises HashTimeLockMalformed where the contract would."""
    if len(data) != DATA_LENGTH:
        raise errors.HashTimeLockMalformed({})
    sender, hashlock, timeout = word(data, 0), data[32:64], word(data, 2)
    if sender > BOB or timeout > UINT64_MAX:
        raise errors.HashTimeLockMalformed({})
    return Lock(sender, hashlock, timeout)


def initial(sender: int, amount: int, hashlock: bytes, timeout: int) -> AppState:
    """A fresh lock: `amount` blocked by the sender, nothing released yet."""
    blocked_alice, blocked_bob = (amount, 0) if sender == ALICE else (0, amount)
    return AppState(blocked_alice, blocked_bob, 0, 0, encode(sender, hashlock, timeout))


class HashTimeLock:
    """The App: CLAIM (z = the preimage, by the receiver), RECLAIM (by the sender, after the
    timeout) and CANCEL (by the receiver, at any time; z ignored, as by RECLAIM)."""

    name: ClassVar[str] = "HashTimeLock"
    functions: ClassVar[dict[str, int]] = {"claim": CLAIM, "reclaim": RECLAIM, "cancel": CANCEL}
    # Only RECLAIM: a timeout's consequence. CANCEL gives up the receiver's claim, a decision a
    # node must never take by itself (it would hand back a lock it could still claim).
    automatic: ClassVar[tuple[int, ...]] = (RECLAIM,)

    def at(self, chain_id: int, address: str) -> HashTimeLock:
        return self  # no signatures to check: the same rules on every chain

    def settle_by(self, state: AppState) -> int:
        return 0  # the predefined distribution is fair at any time

    def check_initial(self, state: AppState) -> None:
        """Only the sender blocks, a positive amount; nothing released yet."""
        lock = decode(state.data)
        amount = state.blocked_alice if lock.sender == ALICE else state.blocked_bob
        if amount == 0 or state.blocked != amount or state.released_alice or state.released_bob:
            raise errors.InvalidNanocontract("a new lock blocks a positive amount of the sender's only")

    def transition(self, ctx: Context, fun: int, z: bytes, state: AppState) -> AppState:
        if fun > CANCEL:
            raise errors.HashTimeLockUnknownFunction({"fun": fun})
        lock = decode(state.data)
        amount = state.blocked_alice if lock.sender == ALICE else state.blocked_bob
        if amount == 0 or checked_add(state.blocked_alice, state.blocked_bob) != amount:
            raise errors.HashTimeLockSettled({})

        if fun == CLAIM:
            if ctx.caller == lock.sender:
                raise errors.HashTimeLockWrongCaller({"caller": ctx.caller})
            if len(z) != PREIMAGE_LENGTH:
                # The contract reports a preimage of the wrong length with a zero hash.
                raise errors.HashTimeLockWrongPreimage({"hashlock": lock.hashlock, "hashOfPreimage": bytes(32)})
            digest = hashlock_of(z)
            if digest != lock.hashlock:
                raise errors.HashTimeLockWrongPreimage({"hashlock": lock.hashlock, "hashOfPreimage": digest})
            if ctx.time > lock.timeout:
                raise errors.HashTimeLockExpired({"timeout": lock.timeout})
            to = lock.receiver
        elif fun == RECLAIM:
            if ctx.caller != lock.sender:
                raise errors.HashTimeLockWrongCaller({"caller": ctx.caller})
            if ctx.time <= lock.timeout:
                raise errors.HashTimeLockNotExpired({"timeout": lock.timeout})
            to = lock.sender
        else:  # CANCEL: z ignored, no time condition
            if ctx.caller == lock.sender:
                raise errors.HashTimeLockWrongCaller({"caller": ctx.caller})
            to = lock.sender

        checked_add(state.released_alice if to == ALICE else state.released_bob, amount)  # may panic
        return state.release(to, amount)
