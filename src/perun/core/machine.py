"""One party's view of a payment channel, and every off-chain transition it may make.

Pure: each function takes a frozen `ChannelRecord` and an input, checks the input completely,
and returns the new record (and what to send), or raises a typed error and changes nothing.
The node (perun.node) persists each new record before it sends anything derived from it.

The rules (docs/protocol.md §4 and §9):
- `current` is the latest state signed by both parties; version 0 needs no signatures.
- `signed` is the highest version this party ever signed. A party never signs a version at or
  below it, so it never signs two different states with the same version.
- `pending` are the proposals this party signed and sent, oldest first, each built on the one
  before (pipelining); an acknowledgement turns the oldest into `current`.
- After signing a final state (cooperative close) a party signs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from enum import Enum, IntEnum
from typing import Any, Protocol, TypeVar

from eth_utils import keccak

from perun import errors
from perun.core.channel import Params, PaymentState, check_state
from perun.core.eip712 import Domain, check_signature, sign_state

# A proposal refused as conflicting or stale is made again on a version above both parties'
# (§4, "Versions burned by a conflict"), at most this many times.
CONFLICT_RETRIES = 8


class Role(IntEnum):
    ALICE = 0  # created the channel on chain
    BOB = 1  # confirmed it


class Stage(str, Enum):
    """Where the channel is, as this party knows it. On-chain stages follow the watcher."""

    PROPOSED = "proposed"  # Alice sent the parameters, Bob has not answered
    ACCEPTED = "accepted"  # Bob agreed; Alice is to create it on chain
    # This party gave the opening up (it failed, expired, was refused or cancelled) before it saw
    # the channel on chain; it sends no transaction for it. Should the channel appear on chain
    # after all, the events move the record on, and it stays given up (see `give_up`).
    FAILED = "failed"
    INITIALISING = "initialising"  # created on chain; Bob is to confirm
    OPEN = "open"  # confirmed: updates flow
    CLOSING = "closing"  # a state is registered on chain; the dispute window runs
    CLOSED = "closed"  # paid out (finalized, closed cooperatively, or refunded)
    LOST = "lost"  # the chain it was on was reset (a devnet restarted): it no longer exists


@dataclass(frozen=True)
class Proposal:
    """A state this party signed and sent; `prev` is the version it was built on."""

    state: PaymentState
    prev: int
    signature: bytes


class Sides:
    """`me` and `peer` of a record that has `params` and `role` (payment or multistate)."""

    params: Params
    role: Role

    @property
    def me(self) -> str:
        return self.params.alice if self.role is Role.ALICE else self.params.bob

    @property
    def peer(self) -> str:
        return self.params.bob if self.role is Role.ALICE else self.params.alice


@dataclass(frozen=True)
class ChannelRecord(Sides):
    params: Params
    domain: Domain
    role: Role
    stage: Stage
    current: PaymentState
    sig_alice: bytes = b""
    sig_bob: bytes = b""
    signed: int = 0
    pending: tuple[Proposal, ...] = ()
    final_signed: bool = False
    proposed_final: bool = False  # this party proposed the final state, so it submits it
    registered_version: int | None = None  # the version registered on chain by a close
    deadline: int = 0  # confirm deadline while INITIALISING, dispute deadline while CLOSING
    outcome: tuple[int, int] | None = None  # (alice, bob) paid out, once CLOSED
    peer_signed_hint: int = 0  # the highest version the peer said it signed
    open_until: int = 0  # chain time by which the opening must be on chain (0: no limit)
    given_up: str = ""  # why this party gave the opening up ("" while it goes on)
    # The operator closed it unilaterally: a close that a reorganisation takes away is sent again.
    close_requested: bool = False
    # Durable bound on the versions this party signed: a proposal up to it goes out before its
    # own commit (docs/protocol.md §9, "Updates"); a restarted node takes it as `signed`.
    reserved: int = 0

    channel_id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_id", self.current.channel_id)

    # ------------------------------------------------------------------ views

    @property
    def my_balance(self) -> int:
        return _balance(self.current, self.role)

    @property
    def peer_balance(self) -> int:
        return _balance(self.current, Role(1 - self.role))

    @property
    def peer_signature(self) -> bytes:
        """The peer's signature on `current`: what `close` needs (empty at version 0)."""
        return self.sig_bob if self.role is Role.ALICE else self.sig_alice

    @property
    def tip(self) -> tuple[PaymentState, int]:
        """The state the next proposal builds on, and its version."""
        if self.pending:
            return self.pending[-1].state, self.pending[-1].state.version
        return self.current, self.current.version

    @property
    def is_fully_signed_final(self) -> bool:
        return self.current.is_final and bool(self.sig_alice) and bool(self.sig_bob)


def _balance(state: PaymentState, role: Role) -> int:
    return state.balance_alice if role is Role.ALICE else state.balance_bob


_FIELDS = frozenset(f.name for f in fields(ChannelRecord) if f.init)


def _evolve(rec: ChannelRecord, **changes: Any) -> ChannelRecord:
    """`replace(rec, **changes)` for the update path, where it was a fifth of the machine's time:
    a copy of the fields without running `__init__` again. A new `current` is of the same
    channel (its caller checked the state), so `channel_id` stays right."""
    if not changes.keys() <= _FIELDS:
        raise TypeError(f"not fields of a ChannelRecord: {sorted(changes.keys() - _FIELDS)}")
    new = object.__new__(ChannelRecord)
    new.__dict__.update(rec.__dict__, **changes)
    return new


def new_record(params: Params, domain: Domain, role: Role, stage: Stage) -> ChannelRecord:
    return ChannelRecord(
        params=params,
        domain=domain,
        role=role,
        stage=stage,
        current=params.initial_state(domain.chain_id, domain.verifying_contract),
    )


def _check_can_sign(rec: ChannelRecord, state: PaymentState) -> None:
    # A final state may also end a running dispute: the contract pays it out over the registered one.
    if rec.stage is not Stage.OPEN and not (state.is_final and rec.stage is Stage.CLOSING):
        raise errors.WrongStage(f"channel 0x{rec.channel_id.hex()} is {rec.stage.value}, not open")
    if rec.final_signed:
        raise errors.AlreadyFinal(f"channel 0x{rec.channel_id.hex()} has a signed final state: no more updates")


# ---------------------------------------------------------------------- proposer


def payment(rec: ChannelRecord, amount: int) -> PaymentState:
    """The state after this party pays `amount` to the other, built on the tip."""
    base, _ = rec.tip
    if amount <= 0:
        raise errors.AmountOutOfRange(f"a payment must be positive, got {amount}")
    state = base.pay(amount, from_alice=rec.role is Role.ALICE)
    return replace(state, version=_next_version(rec))


def final(rec: ChannelRecord) -> PaymentState:
    """A final state with the tip's balances, for the cooperative close."""
    base, _ = rec.tip
    return replace(base.final(), version=_next_version(rec))


def _next_version(rec: ChannelRecord) -> int:
    return max(rec.signed, rec.peer_signed_hint, rec.tip[1]) + 1


RESERVE = 1024  # versions reserved at a time: one commit before sending per RESERVE proposals


def propose(rec: ChannelRecord, state: PaymentState, key: bytes) -> tuple[ChannelRecord, Proposal]:
    """Sign `state` (from `payment` or `final`) and queue it as pending. A version above
    `reserved` raises it by RESERVE (`needs_reserve`): the caller makes that durable before
    the proposal leaves."""
    _check_can_sign(rec, state)
    _, prev = rec.tip
    check_state(rec.params, state, rec.channel_id)
    if state.version <= max(rec.signed, prev):
        raise errors.StaleVersion(f"version {state.version} was signed before")
    proposal = Proposal(state, prev, sign_state(rec.domain, state, key))
    return (
        _evolve(rec, signed=state.version, pending=rec.pending + (proposal,), final_signed=state.is_final,
                proposed_final=state.is_final,
                reserved=rec.reserved if state.version <= rec.reserved else state.version - 1 + RESERVE),
        proposal,
    )


def needs_reserve(old: ChannelRecord, new: ChannelRecord) -> bool:
    """Whether `propose` raised the durable bound: then the proposal must wait for the commit."""
    return new.reserved != old.reserved


def restored(rec: ChannelRecord) -> ChannelRecord:
    """A record as a restarted node takes it: it may have signed any version up to `reserved`
    and lost it in the crash, so it signs none of them again. A record that reserved nothing above
    what it signed is taken as it is (a restart copies only the records it changes)."""
    return rec if rec.signed >= rec.reserved else replace(rec, signed=rec.reserved)


class Change(Enum):
    """What the store must write so that a restart takes a record as safe as `rec` (`change`)."""

    NONE = "none"  # nothing: what differs may be lost in a crash
    DELTA = "delta"  # the new `current` with its signatures, and `signed` (`fold`)
    WHOLE = "whole"  # the whole record


# The fields an update moves; any other change writes the whole record.
_HOT = frozenset({"current", "sig_alice", "sig_bob", "signed", "pending"})


def change(stored: ChannelRecord, rec: ChannelRecord) -> Change:
    """How `rec` differs from `stored`, the record as a restart would take it now
    (docs/protocol.md §9, "Storage"). A DELTA or NONE may leave out only what a crash may lose:
    payments this party proposed within `reserved` (they went out before their commit) and the
    versions it signed up to `reserved` (`restored` burns them)."""
    if rec is stored:
        return Change.NONE
    old = stored.__dict__
    if any(k not in _HOT and old[k] is not v and old[k] != v for k, v in rec.__dict__.items()):
        return Change.WHOLE
    current = rec.current
    if current.version > stored.current.version:
        if current.is_final or not (rec.sig_alice and rec.sig_bob) or rec.signed < stored.signed:
            return Change.WHOLE
        outcome = Change.DELTA
    elif current is stored.current and rec.sig_alice is stored.sig_alice and rec.sig_bob is stored.sig_bob:
        if rec.signed > max(stored.signed, rec.reserved):
            return Change.WHOLE
        outcome = Change.NONE
    else:
        return Change.WHOLE
    mine = {id(p) for p in rec.pending}
    kept = [p for p in stored.pending if p.state.version > current.version]
    if any(id(p) not in mine for p in kept):  # dropped: only the whole record says so
        return Change.WHOLE
    if len(kept) != len(rec.pending):
        ids = {id(p) for p in kept}
        if any(id(p) not in ids and (p.state.is_final or p.state.version > rec.reserved) for p in rec.pending):
            return Change.WHOLE
    return outcome


def fold(stored: ChannelRecord, current: PaymentState, sig_alice: bytes, sig_bob: bytes, signed: int
         ) -> ChannelRecord:
    """`stored` with a later fully signed `current` in place: the store's delta, read back."""
    return _evolve(stored, current=current, sig_alice=sig_alice, sig_bob=sig_bob, signed=max(stored.signed, signed),
                   pending=tuple(p for p in stored.pending if p.state.version > current.version))


def receive_ack(rec: ChannelRecord, version: int, signature: bytes) -> tuple[ChannelRecord, Proposal]:
    """The peer countersigned the oldest pending proposal: it becomes `current`."""
    if not rec.pending or rec.pending[0].state.version != version:
        expected = rec.pending[0].state.version if rec.pending else None
        raise errors.StaleVersion(f"acknowledgement of version {version}, pending is {expected}")
    proposal = rec.pending[0]
    check_signature(rec.domain, proposal.state, signature, rec.peer)
    return _with_current(rec, proposal.state, proposal.signature, signature, rec.pending[1:]), proposal


def receive_reject(rec: ChannelRecord, version: int, peer_signed: int) -> tuple[ChannelRecord, tuple[Proposal, ...]]:
    """The peer refused the proposal at `version`: it and every later one (built on it) are
    dropped. Their versions stay burned: `signed` keeps them, so none is ever signed again."""
    index = next((i for i, p in enumerate(rec.pending) if p.state.version == version), None)
    if index is None:
        return rec, ()
    dropped = rec.pending[index:]
    return replace(rec, pending=rec.pending[:index], peer_signed_hint=max(rec.peer_signed_hint, peer_signed)), dropped


# ---------------------------------------------------------------------- receiver


def receive_update(
    rec: ChannelRecord, state: PaymentState, prev: int, signature: bytes, key: bytes
) -> tuple[ChannelRecord, bytes]:
    """The seed's update step for the receiver: check every field, countersign, replace.

    The proposal must build on `current` (`prev`), carry a version this party never signed,
    keep the deposits' total, not lower this party's balance, and be signed by the peer.
    """
    _check_can_sign(rec, state)
    check_state(rec.params, state, rec.channel_id)
    if state.version <= rec.signed:
        if state.version > rec.current.version:
            raise errors.UpdateConflict(
                f"version {state.version} conflicts with this party's own proposal (signed up to {rec.signed})"
            )
        raise errors.StaleVersion(f"version {state.version} is not above {rec.signed}")
    if prev != rec.current.version:
        raise errors.StaleVersion(f"proposal builds on version {prev}, the current one is {rec.current.version}")
    if _balance(state, rec.role) < rec.my_balance:
        raise errors.BalanceDecreased(
            f"proposal lowers this party's balance from {rec.my_balance} to {_balance(state, rec.role)}"
        )
    check_signature(rec.domain, state, signature, rec.peer)
    mine = sign_state(rec.domain, state, key)
    return _with_current(rec, state, mine, signature, (), signed=state.version,
                         final_signed=rec.final_signed or state.is_final), mine


def _with_current(
    rec: ChannelRecord, state: PaymentState, mine: bytes, peers: bytes, pending: tuple[Proposal, ...], **more: Any
) -> ChannelRecord:
    if rec.role is Role.ALICE:
        return _evolve(rec, current=state, sig_alice=mine, sig_bob=peers, pending=pending, **more)
    return _evolve(rec, current=state, sig_alice=peers, sig_bob=mine, pending=pending, **more)


# ---------------------------------------------------------------------- resynchronisation


def receive_sync(rec: ChannelRecord, state: PaymentState, sig_alice: bytes, sig_bob: bytes) -> ChannelRecord:
    """A fully signed state from the peer after a reconnection (channel_reestablish).

    Adopted when it is newer than `current`; both signatures must check. Pending proposals
    at or below it are settled by it (this party signed only one state per version).
    """
    check_state(rec.params, state, rec.channel_id)
    if state.version <= rec.current.version:
        raise errors.StaleVersion(f"sync to version {state.version}, current is {rec.current.version}")
    check_signature(rec.domain, state, sig_alice, rec.params.alice)
    check_signature(rec.domain, state, sig_bob, rec.params.bob)
    pending = tuple(p for p in rec.pending if p.state.version > state.version)
    return replace(
        rec,
        current=state,
        sig_alice=sig_alice,
        sig_bob=sig_bob,
        pending=pending,
        signed=max(rec.signed, state.version),
        final_signed=rec.final_signed or state.is_final,
    )


@dataclass(frozen=True)
class Resync:
    """What to do after the peer said where it is: send our fully signed state, resend
    pending proposals, and which proposals are dead."""

    send_current: bool
    resend: tuple[Proposal, ...]
    dropped: tuple[Proposal, ...]


def reestablish(rec: ChannelRecord, peer_current: int, peer_signed: int) -> tuple[ChannelRecord, Resync]:
    """The peer's latest fully signed version and highest signed version, after reconnecting."""
    send_current = rec.current.version > peer_current
    # Proposals at or below the peer's current were countersigned: its sync brings them.
    live = tuple(p for p in rec.pending if p.state.version > peer_current)
    settled = tuple(p for p in rec.pending if p.state.version <= peer_current)
    resend: tuple[Proposal, ...]
    dropped: tuple[Proposal, ...]
    if live and live[0].prev == peer_current and live[0].state.version > peer_signed:
        resend, dropped = live, ()
    else:  # the peer never saw them and signed other states at their versions, or a chain broke
        resend, dropped = (), live
    new = replace(
        rec,
        pending=settled + resend,
        peer_signed_hint=max(rec.peer_signed_hint, peer_signed),
    )
    return new, Resync(send_current, resend, dropped)


# A reconnection's summary (docs/protocol.md §9, "Reestablishing after a reconnection"): the
# channels are split into buckets by their id's first byte, and each bucket's digest compared.
SUMMARY_BUCKETS = 64
SUMMARY_DIGEST = 16  # bytes of each bucket's digest: 64 of them fill a message's `bytes` field


def bucket_of(cid: bytes) -> int:
    return cid[0] % SUMMARY_BUCKETS


def summary(recs: Iterable[ChannelRecord]) -> tuple[int, bytes]:
    """What a ReestablishSummary says of these channels (none with a proposal in flight): the
    most any of them signed above its current version, and per bucket the first SUMMARY_DIGEST
    bytes of keccak256 of its channels' ids and current versions (32 + 8 bytes each), by id."""
    buckets: list[list[bytes]] = [[] for _ in range(SUMMARY_BUCKETS)]
    offset = 0
    for rec in recs:
        buckets[bucket_of(rec.channel_id)].append(rec.channel_id + rec.current.version.to_bytes(8, "big"))
        offset = max(offset, rec.signed - rec.current.version)
    return offset, b"".join(keccak(b"".join(sorted(b)))[:SUMMARY_DIGEST] for b in buckets)


def differing_buckets(mine: bytes, theirs: bytes) -> set[int]:
    """The buckets whose digests differ between two summaries' `digests`."""
    d = SUMMARY_DIGEST
    return {i for i in range(SUMMARY_BUCKETS) if mine[i * d:(i + 1) * d] != theirs[i * d:(i + 1) * d]}


# ---------------------------------------------------------------------- the chain's side


_ORDER = list(Stage)


class _Staged(Protocol):
    """What `monotonic` compares: a payment or a multistate record (frozen, hence properties)."""

    @property
    def stage(self) -> Stage: ...

    @property
    def registered_version(self) -> int | None: ...


R = TypeVar("R", bound=_Staged)


def apply_event(rec: ChannelRecord, name: str, args: dict[str, Any]) -> ChannelRecord:
    """The record after a PaymentContract event about its channel (see docs/protocol.md §8).

    Idempotent and monotonic: the node applies a transaction's events from its receipt and
    again when the watcher reads them, so an event never moves a channel back.
    """
    return monotonic(rec, _after_event(rec, name, args))


def monotonic(old: R, new: R) -> R:
    """`new`, unless it would move the channel back: to an earlier stage, or in Closing to a
    registered version no higher than the one it had (a record payment or multistate)."""
    if _ORDER.index(new.stage) < _ORDER.index(old.stage):
        return old
    if old.stage is Stage.CLOSING and new.stage is Stage.CLOSING:
        # The event that makes a channel Closing registers its version, so both have one.
        assert old.registered_version is not None and new.registered_version is not None
        if new.registered_version <= old.registered_version:
            return old
    return new


def _after_event(rec: ChannelRecord, name: str, args: dict[str, Any]) -> ChannelRecord:
    if name == "Initialising":
        return replace(rec, stage=Stage.INITIALISING, deadline=args["deadline"])
    if name == "Initialised":
        return replace(rec, stage=Stage.OPEN, deadline=0)
    if name == "CloseRegistered":
        return replace(rec, stage=Stage.CLOSING, registered_version=args["version"], deadline=args["deadline"])
    if name in ("Finalized", "CooperativelyClosed"):
        return replace(rec, stage=Stage.CLOSED, outcome=(args["balanceAlice"], args["balanceBob"]))
    if name == "Refunded":
        return replace(rec, stage=Stage.CLOSED, outcome=(args["amount"], 0))
    return rec


def give_up(rec: Any, why: str) -> Any:
    """The record of an opening this party gives up (a record payment or multistate): Failed if
    nothing is on chain yet; once created, Alice still refunds at the confirm deadline and Bob
    never confirms. An open channel is closed, not given up."""
    if rec.stage in (Stage.OPEN, Stage.CLOSING, Stage.CLOSED):
        raise errors.WrongStage(f"channel 0x{rec.channel_id.hex()} is {rec.stage.value}: close it instead")
    if rec.given_up:
        return rec
    return replace(rec, stage=rec.stage if rec.stage is Stage.INITIALISING else Stage.FAILED, given_up=why)


def opening_due(rec: Any, now: int) -> str | None:
    """The opening's duty, as its name (create, confirm, refund, expire), or None (a record
    payment or multistate). An opening not on chain by `open_until` expires; Alice creates only
    before then, and Bob confirms only an opening he has not given up."""
    expires = rec.open_until and now >= rec.open_until and not rec.given_up
    if rec.stage is Stage.PROPOSED or (rec.stage is Stage.ACCEPTED and rec.role is Role.BOB):
        return "expire" if expires else None
    if rec.stage is Stage.ACCEPTED:  # Alice
        return "expire" if expires else "create"
    if rec.stage is Stage.INITIALISING:
        if rec.role is Role.BOB and now < rec.deadline and not rec.given_up:
            return "confirm"
        if rec.role is Role.ALICE and now >= rec.deadline:
            return "refund"
    return None


def final_due(rec: Any, now: int) -> bool:
    """A final state signed by both is submitted by its proposer, and by the other party only in a
    dispute (the proposer may be gone) once half its window has passed: the proposer's
    submission, usually made at once, would make it revert in vain (a record payment or
    multistate)."""
    if rec.stage not in (Stage.OPEN, Stage.CLOSING):
        return False
    if rec.proposed_final:
        return True
    return rec.stage is Stage.CLOSING and now >= rec.deadline - rec.params.delta // 2


def next_due(rec: ChannelRecord, now: int) -> int | None:
    """The earliest chain time at or after `now` at which `duties(rec, t)` is not empty, or None
    if it never is for this record: when the watcher looks at the channel again (perun.runtime.due)."""
    if rec.stage is Stage.OPEN and not rec.close_requested and not rec.is_fully_signed_final:
        return None  # an open channel at rest, most of them: no condition of `duties` holds at any time
    return first_due(lambda t: bool(duties(rec, t)), now,
                     (rec.open_until, rec.deadline, rec.deadline - rec.params.delta // 2))


def first_due(has_duty: Callable[[int], bool], now: int, times: Iterable[int]) -> int | None:
    """The earliest chain time at or after `now` at which `has_duty(t)` holds, or None, for a
    `has_duty` that changes with `t` only where `t` reaches one of `times` (each of its conditions
    on the time reads `t >= x` or `t < x`, with `x` in `times`): then it is enough to try `now`
    and every one of `times` after it (a record payment or multistate)."""
    for t in sorted({now, *(x for x in times if x > now)}):
        if has_duty(t):
            return t
    return None


class Duty(str, Enum):
    """A transaction this party should send now."""

    EXPIRE = "expire"  # an opening not on chain by its `open_until`: give it up (no transaction)
    CREATE = "create"  # Alice: Bob accepted, the channel is not on chain yet
    CONFIRM = "confirm"  # Bob: Alice created the channel he accepted
    REFUND = "refund"  # Alice: Bob did not confirm in time
    CLOSE = "close"  # the operator's unilateral close is not on chain (any more)
    COOPERATIVE_CLOSE = "cooperative-close"  # a final state signed by both
    DISPUTE = "dispute"  # a state older than ours is registered: replace it within Δ
    FINALIZE = "finalize"  # the dispute window is over


def duties(rec: ChannelRecord, now: int) -> tuple[Duty, ...]:
    """What this party must do on chain, given the record and the latest block's time.

    A transaction is mined in a later block, so `now >= deadline` already means "after the
    deadline" for refund and finalize; `now < deadline` leaves at least the deadline's own
    second for confirm and dispute.
    """
    if rec.stage in (Stage.PROPOSED, Stage.ACCEPTED, Stage.FAILED, Stage.INITIALISING):
        opening = opening_due(rec, now)
        return (Duty(opening),) if opening else ()
    if rec.is_fully_signed_final:
        return (Duty.COOPERATIVE_CLOSE,) if final_due(rec, now) else ()
    if rec.stage is Stage.OPEN and rec.close_requested:
        return (Duty.CLOSE,)
    if rec.stage is Stage.CLOSING:
        if now >= rec.deadline:
            return (Duty.FINALIZE,)
        if rec.registered_version is not None and rec.registered_version < rec.current.version and now < rec.deadline:
            return (Duty.DISPUTE,)
    return ()
