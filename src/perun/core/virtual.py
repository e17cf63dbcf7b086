"""One party's view of a virtual payment channel γ, and the rules its node follows (docs/protocol.md
§11.2). Pure, like perun.core.machine and perun.core.msmachine.

γ lives in three places. Its two halves, ν_a and ν_b, are VirtualChannel nanocontracts of the
ledger channels a = Alice–Ingrid and b = Ingrid–Bob (perun.core.msmachine records). Alice and
Bob's updates are a payment channel whose states are signed as VirtualStates: a
perun.core.machine.ChannelRecord in the VirtualChannel contract's domain, so that the update rule,
pipelining and the reestablishment after a reconnection are the payment channel's. A
`VirtualRecord` ties them together: γ's parameters, the halves this party holds, its updates (an
end), and the γ states signed by both that it has seen (Ingrid).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

from perun import errors
from perun.core.apps import virtualchannel as vc
from perun.core.apps.virtualchannel import SIDE_A, SIDE_B, VirtualChannelData, VirtualDomain
from perun.core.channel import MAX_DELTA, Params, PaymentState, check_state
from perun.core.eip712 import check_signature
from perun.core.machine import ChannelRecord, Role, Sides, Stage

MAX_SETTLE_DELAY = 365 * 24 * 3600  # MSContract.MAX_SETTLE_DELAY: how far a registration's settleBy may reach


class Position(IntEnum):
    """A party's place in γ."""

    ALICE = 0  # γ's end in ledger channel a; she proposes ν_a
    BOB = 1  # γ's end in ledger channel b
    INGRID = 2  # the intermediary, in both ledger channels


@dataclass(frozen=True)
class Half:
    """One of γ's nanocontracts: ν_a (side SIDE_A) in ledger channel a, ν_b in b."""

    side: int
    ledger: bytes
    nid: bytes


@dataclass(frozen=True)
class Seen:
    """A γ state with Alice's and Bob's signatures: what SETTLE takes."""

    state: PaymentState  # γ's id as the channel id; is_final as VirtualState.final
    sig_alice: bytes
    sig_bob: bytes

    def settle_arg(self) -> bytes:
        return vc.settle_arg(vc.as_virtual(self.state), self.sig_alice, self.sig_bob)

    def matches(self, stored: VirtualChannelData) -> bool:
        """This is the state a half stores (which does not keep the final flag)."""
        s = self.state
        return (s.version, s.balance_alice, s.balance_bob) == (stored.version, stored.balance_alice, stored.balance_bob)


@dataclass(frozen=True)
class VirtualRecord:
    data: VirtualChannelData  # γ's parameters, as the first half this party signed stores them
    position: Position
    halves: tuple[Half, ...] = ()  # an end holds one, Ingrid both (by side)
    channel: ChannelRecord | None = None  # an end's updates with the other end
    seen: tuple[Seen, ...] = ()  # Ingrid: states signed by both, from the fast close and SETTLE calldata

    @property
    def id(self) -> bytes:
        return self.data.id

    @property
    def channel_id(self) -> bytes:
        """γ's id, as every record names its channel."""
        return self.data.id

    def half(self, side: int) -> Half | None:
        return next((h for h in self.halves if h.side == side), None)

    @property
    def final(self) -> Seen | None:
        """A final state signed by both that this party holds: the fast close's."""
        if self.channel is not None and self.channel.is_fully_signed_final:
            c = self.channel
            return Seen(c.current, c.sig_alice, c.sig_bob)
        return next((s for s in self.seen if s.state.is_final), None)


# ---------------------------------------------------------------------- opening


def gamma_params(v: VirtualChannelData) -> Params:
    """γ as a payment channel between Alice and Bob: their cash are its deposits, its window Δ."""
    return Params(v.alice, v.bob, v.cash_alice, v.cash_bob, v.window, v.nonce)


def check_half(v: VirtualChannelData, ledger: Sides, ledger_id: bytes, proposer: str, now: int) -> Position:
    """The checks a party makes on a half of γ proposed in its ledger channel `ledger` (with id
    `ledger_id`) before signing it, besides the app's own (`VirtualChannel.check_initial`):
    the half names this ledger channel and its two parties, in their roles; its proposer is
    the one the opening protocol says (Alice for ν_a, Ingrid for ν_b); the window exceeds the
    channel's Δ, so a half registered at validity − Δ − 1 can be executed right after validity;
    that time is still ahead; and γ settles within MSContract's settleBy horizon (§11).
    Returns this party's position; InvalidNanocontract otherwise."""
    if len({v.alice, v.ingrid, v.bob}) != 3:
        raise errors.InvalidNanocontract("a virtual channel has three distinct parties")
    end, channel = (v.alice, v.channel_a) if v.side == SIDE_A else (v.bob, v.channel_b)
    if channel != ledger_id:
        raise errors.InvalidNanocontract(f"the half belongs to ledger channel 0x{channel.hex()}, not this one")
    if {end, v.ingrid} != {ledger.params.alice, ledger.params.bob}:
        raise errors.InvalidNanocontract("the half's end and Ingrid are not this ledger channel's parties")
    if v.end_role != (Role.ALICE if ledger.params.alice == end else Role.BOB):
        raise errors.InvalidNanocontract("the half gives its end the wrong role in the ledger channel")
    if proposer != (v.alice if v.side == SIDE_A else v.ingrid):
        raise errors.InvalidNanocontract("Alice proposes ν_a and Ingrid ν_b; no one else proposes a half")
    delta = ledger.params.delta
    if not delta < v.window <= MAX_DELTA:
        raise errors.InvalidNanocontract(f"the window must exceed the ledger channel's Δ = {delta} "
                                         f"(and be at most {MAX_DELTA} s), not {v.window}")
    if v.validity - delta - 1 <= now:
        raise errors.InvalidNanocontract(f"the validity must leave Δ + 1 s to register a half: it is "
                                         f"{v.validity}, now is {now}")
    if v.validity + 3 * v.window > now + MAX_SETTLE_DELAY:
        raise errors.InvalidNanocontract("γ would settle after MSContract's settleBy horizon: its validity "
                                         "+ 3 windows must be within 365 days")
    if ledger.me == v.ingrid:
        return Position.INGRID
    return Position.ALICE if v.side == SIDE_A else Position.BOB


def new_record(v: VirtualChannelData, position: Position, half: Half, domain: VirtualDomain) -> VirtualRecord:
    """γ's record when this party has signed its first half `half`."""
    channel = None
    if position is not Position.INGRID:
        params = gamma_params(v)
        channel = ChannelRecord(params, domain, Role(position), Stage.OPEN,
                                PaymentState(v.id, 0, v.cash_alice, v.cash_bob))
    return VirtualRecord(v, position, (half,), channel)


def with_half(rec: VirtualRecord, half: Half) -> VirtualRecord:
    """Ingrid's record once she has signed γ's other half too."""
    if rec.half(half.side) is not None:
        raise errors.InvalidNanocontract(f"virtual channel 0x{rec.id.hex()} has that half already")
    return replace(rec, halves=tuple(sorted((*rec.halves, half), key=lambda h: h.side)))


def hub_half(v: VirtualChannelData, ledger_b: Sides) -> VirtualChannelData:
    """ν_b, which Ingrid proposes to Bob for the ν_a Alice proposed to her (`v`)."""
    return replace(v, side=SIDE_B, end_role=int(Role.ALICE if ledger_b.params.alice == v.bob else Role.BOB))


# ---------------------------------------------------------------------- states Alice and Bob signed


def check_seen(rec: VirtualRecord, seen: Seen, domain: VirtualDomain) -> None:
    """`seen` is a state of this γ with its cash, signed by Alice and by Bob."""
    check_state(gamma_params(rec.data), seen.state, rec.id)
    check_signature(domain, seen.state, seen.sig_alice, rec.data.alice)
    check_signature(domain, seen.state, seen.sig_bob, rec.data.bob)


def learn(rec: VirtualRecord, seen: Seen) -> VirtualRecord:
    """The record holding `seen` too (checked before: `check_seen`)."""
    if seen in rec.seen:
        return rec
    return replace(rec, seen=(*rec.seen, seen))


def live_for_updates(rec: VirtualRecord, now: int) -> None:
    """WrongStage unless Alice and Bob may still sign γ states: before its validity, after which
    each end submits its latest state on chain."""
    if now >= rec.data.validity:
        raise errors.WrongStage(f"virtual channel 0x{rec.id.hex()} is past its validity {rec.data.validity}")


# ---------------------------------------------------------------------- the chain


def register_due(rec: VirtualRecord, delta: int, now: int) -> bool:
    """A half still live off chain is registered by validity − Δ − 1, so that its registration
    window has passed when submissions open after validity."""
    return now >= register_from(rec, delta)


def register_from(rec: VirtualRecord, delta: int) -> int:
    """The chain time from which `register_due` holds."""
    return rec.data.validity - delta - 1


def submission(rec: VirtualRecord, side: int, stored: VirtualChannelData, other: VirtualChannelData | None,
               now: int) -> Seen | None:
    """The γ state this party submits with SETTLE on the half `side`, whose chain storage is
    `stored` (`other`: the other half's, for Ingrid, if registered), or None.

    - An end submits its latest state signed by both when it is above the stored version.
    - Ingrid settles with a final state as soon as she has one (the fast close on chain), also
      on a half where an end stored it: from her it releases at once.
    - Ingrid, after validity + window, copies the state of the half that stores the higher
      version (on equal versions, ν_a's) to the other, so both halves settle with one state.

    The app's mirror then says whether the time allows it. No other state a half stores already
    is returned, and a settled half is not asked again, so nothing is sent in vain or twice."""
    if rec.channel is not None:
        c = rec.channel
        return Seen(c.current, c.sig_alice, c.sig_bob) if c.current.version > stored.version else None
    if rec.final is not None:
        return rec.final
    if other is None or now <= rec.data.validity + rec.data.window:
        return None
    a, b = (stored, other) if side == SIDE_A else (other, stored)
    winner = a if a.version >= b.version else b
    if (winner.version, winner.balance_alice, winner.balance_bob) == \
            (stored.version, stored.balance_alice, stored.balance_bob):
        return None
    return next((s for s in rec.seen if s.matches(winner)), None)
