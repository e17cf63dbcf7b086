"""One party's view of a multistate channel and its nanocontracts, and every off-chain transition.

Pure, like perun.core.machine: each function takes a frozen `MSRecord` and an input, checks the
input completely, and returns the new record (and what to send), or raises a typed error and
changes nothing. The rules are docs/protocol.md §10.2:

- Two kinds of slot are updated independently: the channel state (`create` and `absorb` a
  nanocontract) and each nanocontract (`call` one of its app's functions). Each slot has at most
  one proposal in flight; different slots run in parallel.
- Per slot, `signed` is the highest version this party ever signed, so it never signs two
  different states with the same version; the receiver of a proposal at or below it refuses.
- The receiver checks a proposal by recomputing it: `ChannelState.fund` / `absorb`, or the
  app's Python mirror for a call, with the proposer as caller and the receiver's clock as time.
- A creation signs two structs at once (the channel state and the nanocontract at version 0),
  so a party never holds one without the other.
- The cooperative close is a proposal on the channel slot too: a `FinalChannelState` with the
  cash, once no nanocontract is live, at a version above every channel version either party
  signed; after signing one a party signs no other proposal of the channel.
- The seed's reply time T: a proposal carries when it expires (`expires`, set by the proposer's
  node); a receiver refuses one it gets later. The proposer then frees the slot (`expire`) and
  goes above the proposal's versions, which stay burned; it keeps the proposal until the peer
  says what became of it, since an acknowledgement sent just before the end still counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from typing import Any, Generic, TypeVar

from perun import errors
from perun.core.apps import App, AppState, Context
from perun.core.channel import Params
from perun.core.eip712 import Domain, check_digest_signature, sign
from perun.core.machine import Role, Sides, Stage, final_due, first_due, monotonic, opening_due
from perun.core.multistate import (
    ChannelState,
    FinalChannelState,
    Funding,
    NanocontractState,
    check_channel_state,
    check_final_state,
    check_successor,
    digest,
    nanocontract_id,
)


class Kind(str, Enum):
    CREATE = "create"  # a new nanocontract, funded from the cash: channel state + ν at version 0
    CALL = "call"  # one function of a nanocontract's app: the next version of ν
    ABSORB = "absorb"  # a terminated nanocontract's releases back into the cash: channel state
    CLOSE = "close"  # the cooperative close: a final channel state, cash only


MSState = ChannelState | NanocontractState | FinalChannelState
S = TypeVar("S", bound=MSState)
S_co = TypeVar("S_co", bound=MSState, covariant=True)


@dataclass(frozen=True)
class Signed(Generic[S_co]):
    """A channel or nanocontract state with the signatures this party holds on it."""

    state: S_co
    sig_alice: bytes = b""
    sig_bob: bytes = b""

    def by(self, role: Role) -> bytes:
        return self.sig_alice if role is Role.ALICE else self.sig_bob

    @property
    def by_both(self) -> bool:
        return bool(self.sig_alice) and bool(self.sig_bob)


@dataclass(frozen=True)
class MSProposal:
    """An update this party signed and sent, or received. `nid` names the nanocontract it
    concerns (for CREATE, the new one)."""

    kind: Kind
    nid: bytes
    channel: ChannelState | None = None  # CREATE, ABSORB
    nanocontract: NanocontractState | None = None  # CREATE (version 0), CALL
    fun: int = 0  # CALL
    z: bytes = b""  # CALL
    sig_channel: bytes = b""
    sig_nanocontract: bytes = b""
    prev: int = 0  # the version of the slot's state it builds on (versions skip burned ones)
    fee: int = 0  # CREATE: cash the proposer pays the receiver in the same channel state
    final: FinalChannelState | None = None  # CLOSE
    expires: int = 0  # Unix time in ms after which the receiver refuses it (the seed's T); 0: never

    @property
    def slot(self) -> bytes:
        """b"" for the channel state, else the nid: one proposal per slot at a time."""
        return self.nid if self.kind is Kind.CALL else b""

    @property
    def version(self) -> int:
        """The version its messages name: the nanocontract's for a call, else the channel's."""
        state = self.nanocontract if self.kind is Kind.CALL else self.final or self.channel
        assert state is not None  # a call carries its nanocontract's state, any other kind a channel's
        return state.version


@dataclass(frozen=True)
class OnChain:
    """What the chain holds of a registered nanocontract, as its events told."""

    nid: bytes
    version: int
    window_end: int
    terminated: bool = False
    settle_by: int = 0  # its app's settleBy: a closing channel waits for it until then


@dataclass(frozen=True)
class Intent:
    """A call this party means to make on chain once nanocontract `nid` is registered and its
    window has passed: what it could not get countersigned off chain (a preimage, a move)."""

    nid: bytes
    fun: int
    z: bytes = b""


@dataclass(frozen=True)
class MSRecord(Sides):
    params: Params
    domain: Domain
    role: Role
    stage: Stage
    channel: Signed[ChannelState]  # the latest channel state signed by both (version 0 needs no signature)
    nanocontracts: tuple[Signed[NanocontractState], ...] = ()  # the latest signed-by-both version of each, by nid
    channel_signed: int = 0
    nano_signed: tuple[tuple[bytes, int], ...] = ()  # (nid, highest version this party signed)
    pending: tuple[MSProposal, ...] = ()  # this party's proposals in flight, one per slot
    deadline: int = 0  # confirm deadline while INITIALISING, the channel's D while CLOSING
    registered_version: int | None = None  # the channel version registered by a close
    registered_fundings: tuple[Funding, ...] = ()  # its nanocontracts: what finalize is given
    on_chain: tuple[OnChain, ...] = ()  # the nanocontracts registered on chain, by nid
    outcome: tuple[int, int] | None = None  # (alice, bob) paid out, once CLOSED
    intents: tuple[Intent, ...] = ()  # calls to execute on chain, oldest first
    peer_signed: tuple[tuple[bytes, int], ...] = ()  # (slot, highest version the peer said it signed there)
    expired: tuple[MSProposal, ...] = ()  # own proposals past T whose fate the peer has not told yet
    final: Signed[FinalChannelState] | None = None  # the final channel state, with the signatures this party holds
    proposed_final: bool = False  # this party proposed it, so it submits it
    open_until: int = 0  # chain time by which the opening must be on chain (0: no limit)
    given_up: str = ""  # why this party gave the opening up ("" while it goes on)
    close_requested: bool = False  # as ChannelRecord's: the operator's unilateral close, until on chain

    channel_id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_id", self.channel.state.channel_id)

    @property
    def state(self) -> ChannelState:
        return self.channel.state

    @property
    def my_cash(self) -> int:
        """This party's cash in the latest channel state: what it can lock or send now."""
        state = self.state
        return state.cash_alice if self.role is Role.ALICE else state.cash_bob

    def nanocontract(self, nid: bytes) -> Signed[NanocontractState]:
        for signed in self.nanocontracts:
            if signed.state.nid == nid:
                return signed
        raise errors.UnknownNanocontract(f"no nanocontract 0x{nid.hex()} in channel 0x{self.channel_id.hex()}")

    def signed_version(self, nid: bytes) -> int:
        return dict(self.nano_signed).get(nid, -1)

    def burned(self, slot: bytes) -> int:
        """The highest version of `slot` (b"" the channel state, else a nid) that either party
        signed, as far as this party knows: its own, or the peer's from a refusal (an Error's
        `signed`). A new proposal goes above it, so that the peer need not refuse it as stale."""
        own = self.channel_signed if slot == b"" else self.signed_version(slot)
        return max(own, dict(self.peer_signed).get(slot, -1))

    def pending_on(self, slot: bytes) -> MSProposal | None:
        return next((p for p in self.pending if p.slot == slot), None)

    def expired_on(self, slot: bytes, version: int) -> MSProposal | None:
        return next((p for p in self.expired if p.slot == slot and p.version == version), None)

    @property
    def final_signed(self) -> bool:
        """This party signed a final channel state: it signs no other proposal of the channel."""
        return self.final is not None

    @property
    def is_fully_signed_final(self) -> bool:
        return self.final is not None and self.final.by_both

    def registered(self, nid: bytes) -> OnChain | None:
        return next((r for r in self.on_chain if r.nid == nid), None)


def new_record(params: Params, domain: Domain, role: Role, stage: Stage) -> MSRecord:
    cid = params.channel_id(domain.chain_id, domain.verifying_contract)
    return MSRecord(params, domain, role, stage, Signed(ChannelState.initial(params, cid)))


AppOf = Callable[[str], App]  # the app mirror for an app address; KeyError if unknown


# ---------------------------------------------------------------------- proposer


def create(rec: MSRecord, app: str, initial: AppState, key: bytes, fee: int = 0,
           expires: int = 0) -> tuple[MSRecord, MSProposal]:
    """Propose a new nanocontract of `app` holding `initial` (what it blocks of each party),
    paying the peer `fee` of this party's cash with it (an intermediary's fee, say). The peer
    refuses it after `expires` (Unix ms; 0: never)."""
    _check_open(rec)
    _check_slot_free(rec, b"")
    version = max(rec.burned(b""), rec.state.version) + 1
    nc = NanocontractState.create(rec.channel_id, nanocontract_id(rec.channel_id, version), app, initial)
    channel = replace(rec.state.fund(nc).transfer(fee, from_alice=rec.role is Role.ALICE), version=version)
    proposal = MSProposal(Kind.CREATE, nc.nid, channel=channel, nanocontract=nc, sig_channel=_sign(rec, channel, key),
                          sig_nanocontract=_sign(rec, nc, key), prev=rec.state.version, fee=fee, expires=expires)
    return _proposed(rec, proposal), proposal


def call(rec: MSRecord, nid: bytes, fun: int, z: bytes, now: int, app: App, key: bytes,
         expires: int = 0) -> tuple[MSRecord, MSProposal]:
    """Propose calling function `fun` of nanocontract `nid` with argument `z`, as this party."""
    _check_open(rec)
    _check_slot_free(rec, nid)
    _check_off_chain(rec, nid)
    current: NanocontractState = rec.nanocontract(nid).state
    result = app.transition(Context(int(rec.role), now), fun, z, current.app_state())
    nc = replace(current.successor(result), version=max(rec.burned(nid), current.version) + 1)
    check_successor(current, nc)
    proposal = MSProposal(Kind.CALL, nid, nanocontract=nc, fun=fun, z=z, sig_nanocontract=_sign(rec, nc, key),
                          prev=current.version, expires=expires)
    return _proposed(rec, proposal), proposal


def absorb(rec: MSRecord, nid: bytes, key: bytes, expires: int = 0) -> tuple[MSRecord, MSProposal]:
    """Propose removing terminated nanocontract `nid`, its releases going back to the cash."""
    _check_open(rec)
    _check_slot_free(rec, b"")
    _check_slot_free(rec, nid)
    if any(p.slot == nid for p in rec.expired):
        raise errors.UpdateConflict("a call of the nanocontract may still be countersigned: wait for the peer's answer")
    version = max(rec.burned(b""), rec.state.version) + 1
    channel = replace(rec.state.absorb(rec.nanocontract(nid).state), version=version)
    proposal = MSProposal(Kind.ABSORB, nid, channel=channel, sig_channel=_sign(rec, channel, key),
                          prev=rec.state.version, expires=expires)
    return _proposed(rec, proposal), proposal


def close(rec: MSRecord, key: bytes, expires: int = 0) -> tuple[MSRecord, MSProposal]:
    """Propose the cooperative close: the cash as a final state, above every channel version
    either party signed (so above any registered one: it also ends a running dispute)."""
    _check_closable(rec)
    _check_slot_free(rec, b"")
    if rec.pending or rec.expired:
        raise errors.UpdateConflict("updates are still waiting for the peer: close once they are answered")
    final = final_state(rec, max(rec.burned(b""), rec.state.version) + 1)
    proposal = MSProposal(Kind.CLOSE, b"", final=final, sig_channel=_sign(rec, final, key), prev=rec.state.version,
                          expires=expires)
    rec = _proposed(rec, proposal)
    return replace(rec, final=_signed(rec, final, proposal.sig_channel, b""), proposed_final=True), proposal


def final_state(rec: MSRecord, version: int) -> FinalChannelState:
    """The channel's final state at `version`: its cash with what every nanocontract released,
    as if each were absorbed (no need: a final state ends the channel, in a dispute too, where
    nothing is absorbed). InvalidNanocontract while one still blocks funds."""
    state = rec.state
    for signed in rec.nanocontracts:
        nc: NanocontractState = signed.state
        if not nc.terminated:
            raise errors.InvalidNanocontract(
                f"nanocontract 0x{nc.nid.hex()} still blocks {nc.blocked}: settle it (off chain, or on chain) "
                "before the cooperative close")
        state = state.absorb(nc)
    return replace(state.final(), version=version)


def expire(rec: MSRecord, slot: bytes) -> MSRecord:
    """This party's proposal on `slot` is past its reply time: the slot is free for another
    proposal, above its versions; it stays among the expired until the peer answers it."""
    proposal = rec.pending_on(slot)
    if proposal is None:
        return rec
    return replace(rec, pending=tuple(p for p in rec.pending if p is not proposal), expired=rec.expired + (proposal,))


def intend(rec: MSRecord, nid: bytes, fun: int, z: bytes) -> MSRecord:
    """Record that this party will call `fun(z)` of nanocontract `nid` on chain (Duty.EXECUTE)
    once it is registered and its window has passed."""
    if rec.stage not in (Stage.OPEN, Stage.CLOSING):
        raise errors.WrongStage(f"channel 0x{rec.channel_id.hex()} is {rec.stage.value}")
    rec.nanocontract(nid)
    intent = Intent(nid, fun, z)
    return rec if intent in rec.intents else replace(rec, intents=rec.intents + (intent,))


def _own(rec: MSRecord, slot: bytes, version: int | None) -> MSProposal | None:
    """This party's proposal on `slot`: the one in flight, or, at `version`, an expired one."""
    pending = rec.pending_on(slot)
    if pending is not None and version in (None, pending.version):
        return pending
    return rec.expired_on(slot, version) if version is not None else None


def slot_version(rec: MSRecord, slot: bytes) -> int:
    """The version of the latest state signed by both on `slot` (-1 for a nanocontract it lacks)."""
    if slot == b"":
        return rec.state.version
    return next((s.state.version for s in rec.nanocontracts if s.state.nid == slot), -1)


def _proposed(rec: MSRecord, proposal: MSProposal) -> MSRecord:
    rec = _mark_signed(rec, proposal)
    return replace(rec, pending=rec.pending + (proposal,))


def receive_ack(rec: MSRecord, slot: bytes, sig_channel: bytes, sig_nanocontract: bytes,
                version: int | None = None) -> tuple[MSRecord, MSProposal]:
    """The peer countersigned this party's proposal on `slot` (at `version`, if given): it
    becomes the latest state. One that expired counts still, if the slot has not moved on since
    (the peer countersigned it in time; its answer came late)."""
    proposal = _own(rec, slot, version)
    if proposal is None or (proposal in rec.expired and slot_version(rec, slot) != proposal.prev):
        raise errors.StaleVersion(f"no proposal of version {version} in flight on that slot")
    for state, sig in ((proposal.channel, sig_channel), (proposal.nanocontract, sig_nanocontract),
                       (proposal.final, sig_channel)):
        if state is not None:
            _check_peer(rec, state, sig)
    rec = replace(rec, pending=tuple(p for p in rec.pending if p is not proposal),
                  expired=tuple(p for p in rec.expired if p is not proposal))
    peers = replace(proposal, sig_channel=sig_channel, sig_nanocontract=sig_nanocontract)
    return _adopt(rec, proposal, proposal, peers), proposal


def receive_reject(rec: MSRecord, slot: bytes, peer_signed: int = -1,
                   version: int | None = None) -> tuple[MSRecord, MSProposal | None]:
    """The peer refused the proposal on `slot` (at `version`, if given; in flight or expired):
    dropped; its versions stay burned, as do those up to `peer_signed`, the highest the peer says
    it signed there (refused proposals of its own)."""
    proposal = _own(rec, slot, version)
    rec = replace(rec, pending=tuple(p for p in rec.pending if p is not proposal),
                  expired=tuple(p for p in rec.expired if p is not proposal))
    live = slot == b"" or any(s.state.nid == slot for s in rec.nanocontracts)
    if live and peer_signed > rec.burned(slot):
        hints = dict(rec.peer_signed)
        hints[slot] = peer_signed
        rec = replace(rec, peer_signed=tuple(sorted(hints.items())))
    if proposal is not None and proposal.kind is Kind.CREATE:
        rec = _forget(rec, proposal.nid)  # its channel version is burned, so its nid never returns
    return rec, proposal


# ---------------------------------------------------------------------- receiver


def receive(
    rec: MSRecord, proposal: MSProposal, app_of: AppOf, now: int, key: bytes,
    consents: Callable[[NanocontractState], bool] = lambda nc: False,
) -> tuple[MSRecord, MSProposal]:
    """Check the peer's proposal by recomputing it, countersign and adopt it. Returns the new
    record and the proposal carrying this party's signatures (for the acknowledgement).

    A creation that blocks any of this party's cash needs its `consents` (a game it agreed to);
    one that blocks only the proposer's (a conditional payment to this party) does not."""
    if proposal.kind is Kind.CLOSE:
        _check_closable(rec)
    else:
        _check_open(rec)
    if rec.pending_on(proposal.slot) is not None or (proposal.kind is Kind.ABSORB and rec.pending_on(proposal.nid)):
        raise errors.UpdateConflict("this party has its own proposal in flight on the same slot")
    if proposal.kind is Kind.CREATE:
        expected = _expected_create(rec, proposal, app_of, consents)
    elif proposal.kind is Kind.CALL:
        expected = _expected_call(rec, proposal, app_of, now)
    elif proposal.kind is Kind.ABSORB:
        expected = _expected_absorb(rec, proposal)
    else:
        expected = _expected_close(rec, proposal)
    if (expected.channel, expected.nanocontract, expected.final) != (proposal.channel, proposal.nanocontract,
                                                                      proposal.final):
        raise errors.InvalidNanocontract(f"the proposed {proposal.kind.value} is not what its rules give")
    channel = proposal.channel or proposal.final
    if channel is not None:
        _check_peer(rec, channel, proposal.sig_channel)
    if proposal.nanocontract is not None:
        _check_peer(rec, proposal.nanocontract, proposal.sig_nanocontract)
    mine = replace(
        proposal,
        sig_channel=_sign(rec, channel, key) if channel else b"",
        sig_nanocontract=_sign(rec, proposal.nanocontract, key) if proposal.nanocontract else b"",
    )
    return _adopt(_mark_signed(rec, proposal), proposal, mine, proposal), mine


def adopted(rec: MSRecord, proposal: MSProposal) -> MSProposal | None:
    """The proposal with this party's signatures if it is already this party's latest state on
    its slot (countersigned before, the acknowledgement lost to a crash or a dropped
    connection), else None. Acknowledging it again completes it exactly once; the peer's
    signatures are checked all the same (InvalidSignature)."""
    if proposal.kind is Kind.CLOSE:
        if rec.final is None or rec.final.state != proposal.final:
            return None
        _check_peer(rec, rec.final.state, proposal.sig_channel)
        return replace(proposal, sig_channel=rec.final.by(rec.role))
    held = next((s for s in rec.nanocontracts if s.state.nid == proposal.nid), None)
    if proposal.kind is Kind.CALL:
        if held is None or held.state != proposal.nanocontract:
            return None
        _check_peer(rec, held.state, proposal.sig_nanocontract)
        return replace(proposal, sig_channel=b"", sig_nanocontract=held.by(rec.role))
    if rec.state != proposal.channel:
        return None
    _check_peer(rec, rec.state, proposal.sig_channel)
    if proposal.kind is Kind.ABSORB:
        return replace(proposal, sig_channel=rec.channel.by(rec.role), sig_nanocontract=b"")
    if held is None or held.state != proposal.nanocontract:
        return None
    _check_peer(rec, held.state, proposal.sig_nanocontract)
    return replace(proposal, sig_channel=rec.channel.by(rec.role), sig_nanocontract=held.by(rec.role))


def _expected_create(
    rec: MSRecord, p: MSProposal, app_of: AppOf, consents: Callable[[NanocontractState], bool]
) -> MSProposal:
    if p.channel is None or p.nanocontract is None:
        raise errors.InvalidNanocontract("a creation carries a channel state and a nanocontract")
    _check_channel_version(rec, p.channel.version)
    nc = p.nanocontract
    if nc.channel_id != rec.channel_id:
        raise errors.WrongChannel(f"the nanocontract is for channel 0x{nc.channel_id.hex()}")
    if nc.nid != nanocontract_id(rec.channel_id, p.channel.version):
        raise errors.InvalidNanocontract("the nid is not the one its channel version gives")
    try:
        app = app_of(nc.app)
    except KeyError as exc:
        raise errors.InvalidNanocontract(f"unknown app {nc.app}") from exc
    app.check_initial(nc.app_state())
    mine = nc.blocked_alice if rec.role is Role.ALICE else nc.blocked_bob
    if mine and not consents(nc):
        raise errors.BalanceDecreased(f"the nanocontract would block {mine} of this party's cash")
    channel = replace(rec.state.fund(nc).transfer(p.fee, from_alice=rec.role is Role.BOB), version=p.channel.version)
    check_channel_state(rec.params, channel, rec.channel_id)
    return MSProposal(Kind.CREATE, nc.nid, channel=channel, nanocontract=nc, fee=p.fee)


def _expected_call(rec: MSRecord, p: MSProposal, app_of: AppOf, now: int) -> MSProposal:
    if p.nanocontract is None or p.channel is not None:
        raise errors.InvalidNanocontract("a call carries a nanocontract state only")
    nc = called(rec, p.nid, p.fun, p.z, p.nanocontract.version, app_of, now)
    return MSProposal(Kind.CALL, p.nid, nanocontract=nc, fun=p.fun, z=p.z)


def called(rec: MSRecord, nid: bytes, fun: int, z: bytes, version: int, app_of: AppOf, now: int) -> NanocontractState:
    """The state at `version` that the peer's call of `fun(z)` gives, by this party's app mirror
    and clock: what a receiver countersigns, and all a call message need carry besides."""
    _check_off_chain(rec, nid)
    current: NanocontractState = rec.nanocontract(nid).state
    if version <= max(rec.signed_version(nid), current.version):
        raise errors.StaleVersion(f"nanocontract version {version} was signed before")
    try:
        app = app_of(current.app)
    except KeyError as exc:
        raise errors.InvalidNanocontract(f"unknown app {current.app}") from exc
    result = app.transition(Context(1 - int(rec.role), now), fun, z, current.app_state())
    nc = replace(current.successor(result), version=version)
    check_successor(current, nc)
    return nc


def _expected_absorb(rec: MSRecord, p: MSProposal) -> MSProposal:
    if p.channel is None or p.nanocontract is not None:
        raise errors.InvalidNanocontract("an absorption carries a channel state only")
    _check_channel_version(rec, p.channel.version)
    channel = replace(rec.state.absorb(rec.nanocontract(p.nid).state), version=p.channel.version)
    return MSProposal(Kind.ABSORB, p.nid, channel=channel)


def _expected_close(rec: MSRecord, p: MSProposal) -> MSProposal:
    if p.final is None or p.channel is not None or p.nanocontract is not None:
        raise errors.InvalidNanocontract("a cooperative close carries a final channel state only")
    _check_channel_version(rec, p.final.version)
    check_final_state(rec.params, p.final, rec.channel_id)
    return MSProposal(Kind.CLOSE, b"", final=final_state(rec, p.final.version))


def _check_channel_version(rec: MSRecord, version: int) -> None:
    if version <= max(rec.channel_signed, rec.state.version):
        raise errors.StaleVersion(f"channel version {version} is not above {max(rec.channel_signed, rec.state.version)}")


# ---------------------------------------------------------------------- shared


def _check_open(rec: MSRecord) -> None:
    if rec.stage is not Stage.OPEN:
        raise errors.WrongStage(f"channel 0x{rec.channel_id.hex()} is {rec.stage.value}, not open")
    if rec.final_signed:
        raise errors.AlreadyFinal(f"channel 0x{rec.channel_id.hex()} has a signed final state: no more updates")


def _check_closable(rec: MSRecord) -> None:
    # A final state may also end a running dispute: the contract pays it out over the registered one.
    if rec.stage not in (Stage.OPEN, Stage.CLOSING):
        raise errors.WrongStage(f"channel 0x{rec.channel_id.hex()} is {rec.stage.value}, not open or closing")
    if rec.is_fully_signed_final:
        raise errors.AlreadyFinal(f"channel 0x{rec.channel_id.hex()} has a final state signed by both")


def _check_off_chain(rec: MSRecord, nid: bytes) -> None:
    # Once registered, the chain decides: a higher version may still replace the registered
    # one within its window, but a new one signed now would race the window's end.
    if rec.registered(nid) is not None:
        raise errors.WrongStage(f"nanocontract 0x{nid.hex()} is registered on chain: execute it there")


def _check_slot_free(rec: MSRecord, slot: bytes) -> None:
    if rec.pending_on(slot) is not None:
        raise errors.UpdateConflict("an update of the same state is still waiting for the peer")


def _sign(rec: MSRecord, state: ChannelState | NanocontractState | FinalChannelState, key: bytes) -> bytes:
    return sign(digest(rec.domain, state), key)


def _check_peer(rec: MSRecord, state: ChannelState | NanocontractState | FinalChannelState, signature: bytes) -> None:
    check_digest_signature(digest(rec.domain, state), signature, rec.peer)


def _signed(rec: MSRecord, state: S, own: bytes, peers: bytes) -> Signed[S]:
    return Signed(state, own, peers) if rec.role is Role.ALICE else Signed(state, peers, own)


def _mark_signed(rec: MSRecord, proposal: MSProposal) -> MSRecord:
    channel = proposal.channel or proposal.final
    if channel is not None:
        rec = replace(rec, channel_signed=max(rec.channel_signed, channel.version))
    if proposal.nanocontract is not None:
        signed = dict(rec.nano_signed)
        signed[proposal.nid] = max(signed.get(proposal.nid, -1), proposal.nanocontract.version)
        rec = replace(rec, nano_signed=tuple(sorted(signed.items())))
    return rec


def _adopt(rec: MSRecord, p: MSProposal, own: MSProposal, peers: MSProposal) -> MSRecord:
    """Adopt proposal `p`, which both parties signed: `own` and `peers` carry the signatures.
    Expired proposals on its slot can no longer be: they built on the state `p` replaces."""
    rec = replace(rec, expired=tuple(e for e in rec.expired if e.slot != p.slot))
    if p.kind is Kind.CLOSE:
        assert p.final is not None  # (a close carries its final state)
        return replace(rec, final=_signed(rec, p.final, own.sig_channel, peers.sig_channel))
    signed = partial(_signed, rec)
    channel = signed(p.channel, own.sig_channel, peers.sig_channel) if p.channel else rec.channel
    nanocontracts = [s for s in rec.nanocontracts if s.state.nid != p.nid]
    if p.nanocontract is not None:  # created or called; absorbed ones just leave
        nanocontracts.append(signed(p.nanocontract, own.sig_nanocontract, peers.sig_nanocontract))
    nanocontracts.sort(key=lambda s: s.state.nid)
    rec = replace(rec, channel=channel, nanocontracts=tuple(nanocontracts))
    return _forget(rec, p.nid) if p.kind is Kind.ABSORB else rec


def _forget(rec: MSRecord, nid: bytes) -> MSRecord:
    """Drops what this party signed of `nid`, which no state of it can ever need again: nids come
    from channel versions, which never repeat. So a record stays the size of its live
    nanocontracts however many came and went."""
    return replace(rec, nano_signed=tuple(e for e in rec.nano_signed if e[0] != nid),
                   peer_signed=tuple(e for e in rec.peer_signed if e[0] != nid))


# ---------------------------------------------------------------------- the chain's side


def apply_event(rec: MSRecord, name: str, args: dict[str, Any]) -> MSRecord:
    """The record after an MSContract event about its channel. Idempotent and monotonic, as
    perun.core.machine.apply_event: an event never moves a channel or a nanocontract back."""
    if name == "NanocontractRegistered":
        # The event does not say what the state blocks; this party knows when it holds that version.
        ours = next((s.state for s in rec.nanocontracts if s.state.nid == args["nid"]), None)
        terminated = ours is not None and ours.version == args["version"] and ours.terminated
        return _on_chain(rec, OnChain(args["nid"], args["version"], args["windowEnd"], terminated, args["settleBy"]))
    if name == "NanocontractExecuted":
        known = rec.registered(args["nid"])
        window_end, settle_by = (known.window_end, known.settle_by) if known else (0, 0)
        terminated = args["blockedAlice"] + args["blockedBob"] == 0
        mine = args["by"].lower() == rec.me.lower()
        intents = tuple(i for i in rec.intents if i.nid != args["nid"]
                        or not (terminated or (mine and i.fun == args["fun"])))
        entry = OnChain(args["nid"], args["version"], window_end, terminated, settle_by)
        return _on_chain(replace(rec, intents=intents), entry)
    return monotonic(rec, _after_event(rec, name, args))


def _on_chain(rec: MSRecord, entry: OnChain) -> MSRecord:
    known = rec.registered(entry.nid)
    if known is not None and known.version >= entry.version:
        return rec
    rest = [r for r in rec.on_chain if r.nid != entry.nid]
    return replace(rec, on_chain=tuple(sorted([*rest, entry], key=lambda r: r.nid)))


def _after_event(rec: MSRecord, name: str, args: dict[str, Any]) -> MSRecord:
    if name == "Initialising":
        return replace(rec, stage=Stage.INITIALISING, deadline=args["deadline"])
    if name == "Initialised":
        return replace(rec, stage=Stage.OPEN, deadline=0)
    if name == "CloseRegistered":
        fundings = tuple(Funding(*f) if isinstance(f, tuple) else Funding(f["nid"], f["alice"], f["bob"])
                         for f in args["nanocontracts"])
        return replace(rec, stage=Stage.CLOSING, registered_version=args["version"], deadline=args["deadline"],
                       registered_fundings=fundings)
    if name in ("Finalized", "CooperativelyClosed"):
        return replace(rec, stage=Stage.CLOSED, outcome=(args["payoutAlice"], args["payoutBob"]))
    if name == "Refunded":
        return replace(rec, stage=Stage.CLOSED, outcome=(args["amount"], 0))
    return rec


class Duty(str, Enum):
    """A transaction this party should send now; REGISTER names its nanocontract."""

    EXPIRE = "expire"
    CREATE = "create"
    CONFIRM = "confirm"
    REFUND = "refund"
    DISPUTE = "dispute"  # a channel state older than ours is registered: replace it by D
    CLOSE = "close"  # the operator's unilateral close is not on chain (any more)
    COOPERATIVE_CLOSE = "cooperative-close"  # a final state signed by both
    REGISTER = "register"  # the chain holds an older version of a nanocontract, or none, and must not
    EXECUTE = "execute"  # a nanocontract on chain may be executed: what this party intends, or the app's automatic
    FINALIZE = "finalize"


def duties(rec: MSRecord, now: int) -> tuple[tuple[Duty, bytes], ...]:
    """What this party must do on chain, given the record and the latest block's time, as
    (duty, nid) pairs (nid empty for channel duties). As in perun.core.machine.duties, `now <
    deadline` leaves the deadline's own second for the transaction, `now >= deadline` means after.

    - A nanocontract registered on chain at a lower version than this party's latest (signed by
      the peer) is answered with that version within its window, whether the channel is Open or
      Closing.
    - Once the channel is Closing, every nanocontract it lists that the chain does not hold is
      registered by D, and a stale channel state is replaced by D.
    - A nanocontract on chain whose window has passed and that still blocks funds can be
      executed (while the channel is Open, or Closing until D + Δ or its settleBy): the node calls what it
      intends (`intend`) or a function the app lets a party call by itself (`App.automatic`),
      when the app allows it now.
    - Finalize after D when every listed nanocontract is settled on chain, else after D + Δ (or
      an unsettled nanocontract's later settleBy).
    """
    if rec.stage in (Stage.PROPOSED, Stage.ACCEPTED, Stage.FAILED, Stage.INITIALISING):
        opening = opening_due(rec, now)
        return ((Duty(opening), b""),) if opening else ()
    if rec.stage not in (Stage.OPEN, Stage.CLOSING):
        return ()
    if rec.is_fully_signed_final:
        return ((Duty.COOPERATIVE_CLOSE, b""),) if final_due(rec, now) else ()
    found: list[tuple[Duty, bytes]] = []
    closing = rec.stage is Stage.CLOSING
    if not closing and rec.close_requested:
        found.append((Duty.CLOSE, b""))
    if closing and now < rec.deadline and rec.registered_version is not None \
            and rec.registered_version < rec.state.version:
        found.append((Duty.DISPUTE, b""))
    listed = {f.nid for f in rec.registered_fundings} if closing else set()
    for signed in rec.nanocontracts:
        nc: NanocontractState = signed.state
        onchain = rec.registered(nc.nid)
        if onchain is not None:
            if onchain.version < nc.version and now < onchain.window_end:
                found.append((Duty.REGISTER, nc.nid))
        elif nc.nid in listed and now < rec.deadline:
            found.append((Duty.REGISTER, nc.nid))
    for onchain in rec.on_chain:
        executable = not closing or now < _settlement_end(rec, onchain)
        if executable and not onchain.terminated and now >= onchain.window_end:
            found.append((Duty.EXECUTE, onchain.nid))
    if closing and now >= rec.deadline:
        def done(nid: bytes) -> bool:
            r = rec.registered(nid)
            if r is not None and r.terminated and now >= r.window_end:
                return True
            return now >= (_settlement_end(rec, r) if r else rec.deadline + rec.params.delta)
        if all(done(f.nid) for f in rec.registered_fundings):
            found.append((Duty.FINALIZE, b""))
    return tuple(found)


def next_due(rec: MSRecord, now: int) -> int | None:
    """The earliest chain time at or after `now` at which `duties(rec, t)` is not empty, or None
    if it never is for this record: when the watcher looks at the channel again (perun.runtime.due)."""
    times = [rec.open_until, rec.deadline, rec.deadline - rec.params.delta // 2, rec.deadline + rec.params.delta]
    for onchain in rec.on_chain:
        times += (onchain.window_end, _settlement_end(rec, onchain))
    return first_due(lambda t: bool(duties(rec, t)), now, times)


def _settlement_end(rec: MSRecord, onchain: OnChain) -> int:
    """MSContract._settlementEnd: a closing channel executes a nanocontract until D + Δ, or
    until its app's settleBy if later; then its predefined distribution applies."""
    return max(rec.deadline + rec.params.delta, onchain.settle_by)
