"""Multistate channels (seed §3.2): the channel state, nanocontract states and their rules.

Pure data and checks, no I/O. A multistate channel has the same `Params` and opening as a payment
channel (perun.core.channel); what the parties sign differs:

* `ChannelState`: the parties' cash and the nanocontracts funded from it (`Funding`), signed for
  every creation and absorption of a nanocontract;
* `NanocontractState`: one nanocontract, with its own version, signed for every update of it;
* `FinalChannelState`: the parties' cash alone, signed by both to end the channel at once with
  MSContract.cooperativeClose.

The on-chain rules these mirror are in contracts/MSContract.sol and docs/protocol.md §10.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from eth_utils import keccak, to_checksum_address

from perun import errors
from perun.core.apps import ALICE, BOB, AppState
from perun.core.channel import MAX_AMOUNT, MAX_UINT64, Params, _address, _amount
from perun.core.eip712 import MS_CONTRACT_NAME, Domain

MAX_NANOCONTRACTS = 16  # MSContract.MAX_NANOCONTRACTS

FUNDING_TYPE = "Funding(bytes32 nid,uint256 alice,uint256 bob)"
CHANNEL_STATE_TYPE = (
    "ChannelState(bytes32 channelId,uint64 version,uint256 cashAlice,uint256 cashBob,Funding[] nanocontracts)"
    + FUNDING_TYPE
)
NANOCONTRACT_STATE_TYPE = (
    "NanocontractState(bytes32 channelId,bytes32 nid,address app,uint64 version,uint256 blockedAlice,"
    "uint256 blockedBob,uint256 releasedAlice,uint256 releasedBob,bytes data)"
)
FINAL_CHANNEL_STATE_TYPE = "FinalChannelState(bytes32 channelId,uint64 version,uint256 cashAlice,uint256 cashBob)"
FUNDING_TYPEHASH = keccak(text=FUNDING_TYPE)
CHANNEL_STATE_TYPEHASH = keccak(text=CHANNEL_STATE_TYPE)
NANOCONTRACT_STATE_TYPEHASH = keccak(text=NANOCONTRACT_STATE_TYPE)
FINAL_CHANNEL_STATE_TYPEHASH = keccak(text=FINAL_CHANNEL_STATE_TYPE)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _bytes32(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise errors.WrongChannel(f"{name} must be 32 bytes")


def nanocontract_id(channel_id: bytes, version: int) -> bytes:
    """The nid of the nanocontract created by channel state `version`: unique in the channel,
    because channel versions only grow, and so never reused for another nanocontract."""
    return keccak(channel_id + _word(version))


@dataclass(frozen=True)
class Funding:
    """What each party moved from its cash into nanocontract `nid` when it was created."""

    nid: bytes
    alice: int
    bob: int

    def __post_init__(self) -> None:
        _bytes32("nid", self.nid)
        _amount("funding alice", self.alice)
        _amount("funding bob", self.bob)

    @property
    def total(self) -> int:
        return self.alice + self.bob

    def as_abi(self) -> tuple[Any, ...]:
        return (self.nid, self.alice, self.bob)

    @cached_property
    def struct_hash(self) -> bytes:
        """Kept once computed: every later channel state lists the same Funding again, and is
        hashed several times by each party (to sign, to check, in a dry run)."""
        return keccak(FUNDING_TYPEHASH + self.nid + _word(self.alice) + _word(self.bob))


@dataclass(frozen=True)
class ChannelState:
    """The channel's cash and its live nanocontracts, in ascending nid order."""

    channel_id: bytes
    version: int
    cash_alice: int
    cash_bob: int
    nanocontracts: tuple[Funding, ...] = ()

    def __post_init__(self) -> None:
        _bytes32("channel_id", self.channel_id)
        _amount("version", self.version, MAX_UINT64)
        _amount("cash_alice", self.cash_alice)
        _amount("cash_bob", self.cash_bob)
        object.__setattr__(self, "nanocontracts", tuple(self.nanocontracts))

    @classmethod
    def initial(cls, params: Params, channel_id: bytes) -> ChannelState:
        """Version 0: all deposits are cash. MSContract accepts it unsigned."""
        return cls(channel_id, 0, params.deposit_alice, params.deposit_bob)

    def as_abi(self) -> tuple[Any, ...]:
        return (self.channel_id, self.version, self.cash_alice, self.cash_bob,
                [f.as_abi() for f in self.nanocontracts])

    def struct_hash(self) -> bytes:
        fundings = b"".join(f.struct_hash for f in self.nanocontracts)
        return keccak(
            CHANNEL_STATE_TYPEHASH + self.channel_id + _word(self.version) + _word(self.cash_alice)
            + _word(self.cash_bob) + keccak(fundings)
        )

    def final(self) -> FinalChannelState:
        """The same cash as a final state at the next version, for a cooperative close.
        InvalidNanocontract while a nanocontract is live: absorb every one first."""
        if self.nanocontracts:
            raise errors.InvalidNanocontract(
                f"a final state lists no nanocontract, and this state lists {len(self.nanocontracts)}: absorb them first")
        return FinalChannelState(self.channel_id, self.version + 1, self.cash_alice, self.cash_bob)

    def funding(self, nid: bytes) -> Funding:
        """The funding of live nanocontract `nid`; UnknownNanocontract if it is not listed."""
        for f in self.nanocontracts:
            if f.nid == nid:
                return f
        raise errors.UnknownNanocontract(f"no nanocontract 0x{nid.hex()} in channel state {self.version}")

    def fund(self, nanocontract: NanocontractState) -> ChannelState:
        """The next version, with `nanocontract` (at version 0) created from the parties' cash."""
        if nanocontract.version != 0 or nanocontract.released_alice or nanocontract.released_bob:
            raise errors.InvalidNanocontract("a nanocontract is created at version 0 with nothing released")
        if any(f.nid == nanocontract.nid for f in self.nanocontracts):
            raise errors.InvalidNanocontract(f"nanocontract 0x{nanocontract.nid.hex()} exists already")
        if len(self.nanocontracts) >= MAX_NANOCONTRACTS:
            raise errors.TooManyNanocontracts(f"a channel holds at most {MAX_NANOCONTRACTS} nanocontracts")
        alice, bob = nanocontract.blocked_alice, nanocontract.blocked_bob
        if alice > self.cash_alice or bob > self.cash_bob:
            raise errors.AmountOutOfRange(
                f"blocking {alice} / {bob} exceeds the cash {self.cash_alice} / {self.cash_bob}")
        fundings = list(self.nanocontracts)
        bisect.insort(fundings, Funding(nanocontract.nid, alice, bob), key=lambda f: f.nid)
        return ChannelState(self.channel_id, self.version + 1, self.cash_alice - alice, self.cash_bob - bob,
                            tuple(fundings))

    def transfer(self, amount: int, *, from_alice: bool) -> ChannelState:
        """The same version with `amount` of one party's cash moved to the other's: a fee paid
        with the creation of a nanocontract (the only payment a multistate channel makes)."""
        _amount("fee", amount)
        payer = self.cash_alice if from_alice else self.cash_bob
        if amount > payer:
            raise errors.AmountOutOfRange(f"a fee of {amount} exceeds the payer's cash {payer}")
        if from_alice:
            return replace(self, cash_alice=self.cash_alice - amount, cash_bob=self.cash_bob + amount)
        return replace(self, cash_alice=self.cash_alice + amount, cash_bob=self.cash_bob - amount)

    def absorb(self, nanocontract: NanocontractState) -> ChannelState:
        """The next version, with terminated `nanocontract` removed and what it released back in
        the parties' cash."""
        funding = self.funding(nanocontract.nid)
        if not nanocontract.terminated:
            raise errors.InvalidNanocontract(f"nanocontract 0x{nanocontract.nid.hex()} still blocks funds")
        if nanocontract.released_alice + nanocontract.released_bob != funding.total:
            raise errors.BalancesNotConserved("the nanocontract released other than its funding")
        return ChannelState(
            self.channel_id,
            self.version + 1,
            self.cash_alice + nanocontract.released_alice,
            self.cash_bob + nanocontract.released_bob,
            tuple(f for f in self.nanocontracts if f.nid != nanocontract.nid),
        )


@dataclass(frozen=True)
class FinalChannelState:
    """The last state of a channel: cash only, signed by both parties for MSContract's
    cooperativeClose, which pays it out at once. A type of its own, so that no ChannelState
    signature can be used as one (nor the other way round)."""

    channel_id: bytes
    version: int
    cash_alice: int
    cash_bob: int

    def __post_init__(self) -> None:
        _bytes32("channel_id", self.channel_id)
        _amount("version", self.version, MAX_UINT64)
        _amount("cash_alice", self.cash_alice)
        _amount("cash_bob", self.cash_bob)

    def as_abi(self) -> tuple[Any, ...]:
        return (self.channel_id, self.version, self.cash_alice, self.cash_bob)

    def struct_hash(self) -> bytes:
        return keccak(
            FINAL_CHANNEL_STATE_TYPEHASH + self.channel_id + _word(self.version) + _word(self.cash_alice)
            + _word(self.cash_bob)
        )


@dataclass(frozen=True)
class NanocontractState:
    """The seed's ν = (nid, blocked, storage, ver-num), with its app and what it has released."""

    channel_id: bytes
    nid: bytes
    app: str  # the app contract's address
    version: int
    blocked_alice: int
    blocked_bob: int
    released_alice: int
    released_bob: int
    storage: bytes

    def __post_init__(self) -> None:
        _bytes32("channel_id", self.channel_id)
        _bytes32("nid", self.nid)
        object.__setattr__(self, "app", _address(self.app))
        _amount("version", self.version, MAX_UINT64)
        for name in ("blocked_alice", "blocked_bob", "released_alice", "released_bob"):
            _amount(name, getattr(self, name))
        if self.total > MAX_AMOUNT:
            raise errors.AmountOutOfRange(f"nanocontract holds {self.total}, more than any channel")
        if not isinstance(self.storage, bytes):
            raise errors.InvalidNanocontract("storage must be bytes")

    @classmethod
    def create(cls, channel_id: bytes, nid: bytes, app: str, state: AppState) -> NanocontractState:
        return cls(channel_id, nid, app, 0, state.blocked_alice, state.blocked_bob, state.released_alice,
                   state.released_bob, state.data)

    @property
    def blocked(self) -> int:
        return self.blocked_alice + self.blocked_bob

    @property
    def total(self) -> int:
        """Blocked plus released: constant over the nanocontract's life, equal to its funding."""
        return self.blocked + self.released_alice + self.released_bob

    @property
    def terminated(self) -> bool:
        return self.blocked == 0

    def app_state(self) -> AppState:
        return AppState(self.blocked_alice, self.blocked_bob, self.released_alice, self.released_bob, self.storage)

    def successor(self, state: AppState) -> NanocontractState:
        """The next version, holding `state`."""
        return replace(self, version=self.version + 1, blocked_alice=state.blocked_alice,
                       blocked_bob=state.blocked_bob, released_alice=state.released_alice,
                       released_bob=state.released_bob, storage=state.data)

    def as_abi(self) -> tuple[Any, ...]:
        return (self.channel_id, self.nid, self.app, self.version, self.blocked_alice, self.blocked_bob,
                self.released_alice, self.released_bob, self.storage)

    def struct_hash(self) -> bytes:
        return keccak(
            NANOCONTRACT_STATE_TYPEHASH + self.channel_id + self.nid + bytes(12)
            + bytes.fromhex(self.app[2:]) + _word(self.version) + _word(self.blocked_alice)
            + _word(self.blocked_bob) + _word(self.released_alice) + _word(self.released_bob)
            + keccak(self.storage)
        )

    def payout(self, party: int) -> int:
        """What this state gives `party` (ALICE or BOB) at the channel's payout."""
        if party == ALICE:
            return self.blocked_alice + self.released_alice
        return self.blocked_bob + self.released_bob


def check_channel_state(params: Params, state: ChannelState, channel_id: bytes) -> None:
    """The checks MSContract.close applies to a channel state before its signature."""
    if state.channel_id != channel_id:
        raise errors.WrongChannel(f"state is for channel 0x{state.channel_id.hex()}, not 0x{channel_id.hex()}")
    if len(state.nanocontracts) > MAX_NANOCONTRACTS:
        raise errors.TooManyNanocontracts(f"{len(state.nanocontracts)} nanocontracts, at most {MAX_NANOCONTRACTS}")
    nids = [f.nid for f in state.nanocontracts]
    if any(a >= b for a, b in zip(nids, nids[1:])):
        raise errors.InvalidNanocontract("nanocontracts must be listed in strictly ascending nid order")
    if state.cash_alice + state.cash_bob + sum(f.total for f in state.nanocontracts) != params.total:
        raise errors.BalancesNotConserved(f"cash and nanocontracts do not add up to the deposits {params.total}")


def check_final_state(params: Params, state: FinalChannelState, channel_id: bytes) -> None:
    """The checks MSContract.cooperativeClose applies to a final state before its version and
    signatures: this channel, and the cash adds up to the deposits."""
    if state.channel_id != channel_id:
        raise errors.WrongChannel(f"state is for channel 0x{state.channel_id.hex()}, not 0x{channel_id.hex()}")
    if state.cash_alice + state.cash_bob != params.total:
        raise errors.BalancesNotConserved(f"the cash does not add up to the deposits {params.total}")


def check_successor(old: NanocontractState, new: NanocontractState) -> None:
    """The seed's update rule for a nanocontract: the same nanocontract at a higher version,
    blocking no more in total, releasing no less to either party, and conserving its funds."""
    if (new.channel_id, new.nid, new.app) != (old.channel_id, old.nid, old.app):
        raise errors.InvalidNanocontract("an update must keep the channel, nid and app")
    if new.version <= old.version:
        raise errors.StaleVersion(f"version {new.version} does not follow {old.version}")
    if new.blocked > old.blocked:
        raise errors.InvalidNanocontract(f"blocked rises from {old.blocked} to {new.blocked}")
    if new.released_alice < old.released_alice or new.released_bob < old.released_bob:
        raise errors.InvalidNanocontract("an update may not take back what was released")
    if new.total != old.total:
        raise errors.BalancesNotConserved(f"blocked + released changes from {old.total} to {new.total}")


def payouts(
    params: Params, state: ChannelState, registered: dict[bytes, NanocontractState]
) -> tuple[int, int]:
    """(Alice, Bob) as MSContract.finalize pays them: cash, amended by each listed nanocontract's
    registered state when it holds exactly its funding, else by the funding itself."""
    alice, bob = state.cash_alice, state.cash_bob
    for f in state.nanocontracts:
        nc = registered.get(f.nid)
        if nc is not None and nc.total == f.total:
            alice, bob = alice + nc.payout(ALICE), bob + nc.payout(BOB)
        else:
            alice, bob = alice + f.alice, bob + f.bob
    return alice, bob


def ms_domain(chain_id: int, contract: str) -> Domain:
    """The EIP-712 domain of an MSContract."""
    return Domain(chain_id, to_checksum_address(contract), name=MS_CONTRACT_NAME)


def digest(domain: Domain, state: ChannelState | NanocontractState | FinalChannelState) -> bytes:
    """The 32 bytes a party signs for `state` in `domain` (see `ms_domain`)."""
    return domain.digest_of(state.struct_hash())
