"""Ingrid's side of virtual channels: she relays the opening (holds Alice's ν_a until Bob has
countersigned the ν_b she proposes him), under a policy, and settles both halves with a final
state an end gives her (the fast close). docs/protocol.md §11.2.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perun import errors
from perun.core import virtual as vr
from perun.core.amounts import ether
from perun.core.apps import virtualchannel as vc
from perun.core.apps.virtualchannel import SIDE_A, SIDE_B, VirtualChannelData
from perun.core.channel import PaymentState
from perun.core.machine import Stage
from perun.core.msmachine import Kind, MSProposal, MSRecord
from perun.core.virtual import Half, Position, Seen
from perun.wire import messages as m
from perun.wire.transport import Connection

if TYPE_CHECKING:
    from perun.protocols.virtual.protocol import Virtual

log = logging.getLogger("perun.node")


@dataclass(frozen=True)
class HubPolicy:
    """What a node serving as Ingrid accepts. `fee` is what she charges per virtual channel, paid
    by Alice in the same channel state that funds ν_a; `capacity` bounds her cash blocked in live
    virtual channels at once (she blocks cashAlice + cashBob for each), `max_channels` their
    number; `accept` may refuse any other γ; `fast_close` False makes her refuse fast closes (the
    ends then settle on chain after validity)."""

    fee: int = 0
    capacity: int | None = None
    max_channels: int | None = None
    accept: Callable[[VirtualChannelData], bool] = lambda v: True
    fast_close: bool = True


class Hub:
    def __init__(self, virtual: Virtual, policy: HubPolicy | None) -> None:
        self.virtual = virtual
        self.policy = policy
        self.waiting: dict[bytes, tuple[Connection, m.NanocontractCreate]] = {}  # ν_a held for ν_b, by γ
        self._settling: set[bytes] = set()  # γ being settled off chain
        self._again: set[bytes] = set()  # γ whose end asked again while it was being settled

    # ------------------------------------------------------------------ opening (ν_a and ν_b)

    def hold(self, conn: Connection, ledger: MSRecord, msg: m.NanocontractCreate, proposal: MSProposal,
             v: VirtualChannelData, now: int) -> bool:
        """Alice's ν_a in `ledger`: True if Ingrid holds it until Bob has countersigned ν_b
        (message 2 of the opening goes out now), False if she countersigns it now."""
        virtual = self.virtual
        held = virtual.records.get(v.id)
        if held is not None:
            if held.half(SIDE_A) is not None or held.half(SIDE_B) is None:
                raise errors.InvalidNanocontract(f"virtual channel 0x{v.id.hex()} is being opened or open already")
            return False  # ν_b is countersigned (before a restart, say): countersign ν_a now
        if v.id in self.waiting:
            self.waiting[v.id] = (conn, msg)  # Alice repeated it after a reconnection
            return True
        if self._proposed_b(v):
            # Ingrid proposed ν_b before a restart, and her node proposes it to Bob again on every
            # reconnection: his answer releases ν_a (or refuses it), as it would have before.
            virtual.ms.check_proposal(ledger, proposal, now)
            self.waiting[v.id] = (conn, msg)
            return True
        self._check_policy(v, proposal.fee)
        # Everything else Ingrid checks on ν_a before she commits anything to ν_b.
        virtual.ms.check_proposal(ledger, proposal, now)
        ledger_b = virtual.ms.records.get(v.channel_b)
        if ledger_b is None or ledger_b.peer != v.bob or ledger_b.stage is not Stage.OPEN:
            raise errors.InvalidNanocontract(f"Ingrid has no open ledger channel 0x{v.channel_b.hex()} with {v.bob}")
        half_b = vr.hub_half(v, ledger_b)
        vr.check_half(half_b, ledger_b, ledger_b.channel_id, virtual.ctx.address, now)
        self.waiting[v.id] = (conn, msg)
        virtual.ctx.spawn(self._propose_b(v.id, ledger_b.channel_id, half_b))
        return True

    def _proposed_b(self, v: VirtualChannelData) -> bool:
        """Ingrid's ν_b for γ `v` is in flight to Bob (or expired, its fate unknown yet)."""
        ledger_b = self.virtual.ms.records.get(v.channel_b)
        if ledger_b is None:
            return False
        return any(p.kind is Kind.CREATE and p.nanocontract is not None
                   and p.nanocontract.app == self.virtual.app_address and vc.decode(p.nanocontract.storage).id == v.id
                   for p in (*ledger_b.pending, *ledger_b.expired))

    def holds_in(self, ledger: MSRecord) -> bool:
        """Ingrid holds a ν_a of `ledger`, which the channel state it builds on must outlive."""
        return any(msg.channel_id == ledger.channel_id for _, msg in self.waiting.values())

    def _check_policy(self, v: VirtualChannelData, fee: int) -> None:
        """Ingrid's policy on γ, each refusal a sentence for Alice: what to pass, or what Ingrid's
        operator would have to change."""
        hub, me = self.policy, self.virtual.ctx.address
        if hub is None:
            raise errors.ChannelRefused(f"{me} does not serve as Ingrid for virtual channels; its operator can "
                                        "make it one with --hub (config key hub)")
        if fee < hub.fee:
            raise errors.ChannelRefused(
                f"Ingrid charges a fee of {ether(hub.fee)} ETH per virtual channel, not {ether(fee)} ETH: pass "
                f"--fee {ether(hub.fee)}eth to `perun virtual open` (fee={hub.fee} in Python)")
        live, blocked = self.virtual.live_set.hub_load()
        if hub.max_channels is not None and live + len(self.waiting) >= hub.max_channels:
            raise errors.ChannelRefused(
                f"Ingrid serves at most {hub.max_channels} virtual channels at once and serves that many now; "
                "try again after one closes, or her operator can raise --hub-max-channels (config key "
                "hub_max_channels)")
        # The ν_a held until Bob answers: the openings in flight, not the live γ.
        opening = [vc.decode(msg.data) for _, msg in self.waiting.values()]
        blocked += sum(v.cash_alice + v.cash_bob for v in opening)
        if hub.capacity is not None and blocked + v.cash_alice + v.cash_bob > hub.capacity:
            raise errors.ChannelRefused(
                f"Ingrid blocks at most {ether(hub.capacity)} ETH in virtual channels, {ether(blocked)} ETH now, "
                f"and this one needs {ether(v.cash_alice + v.cash_bob)} ETH more; open a smaller one, or her "
                "operator can raise --hub-capacity (config key hub_capacity)")
        if not hub.accept(v):
            raise errors.ChannelRefused("Ingrid's policy refuses this virtual channel")

    async def _propose_b(self, gid: bytes, ledger_b: bytes, half_b: VirtualChannelData) -> None:
        """Message 2: ν_b to Bob. His countersignature (Halves.adopted) releases Alice's ν_a; his
        refusal is hers. If he does not answer in time, ν_a waits until he does, even after ν_b's
        reply time: a countersignature he gave in time counts, and he refuses it otherwise."""
        virtual = self.virtual
        try:
            await virtual.ms.create(ledger_b, "VirtualChannel", vc.initial_of(half_b))
        except errors.PeerTimeout as exc:  # expired too: its fate comes with Bob's answer
            log.warning("%s: virtual channel 0x%s: %s", virtual.ctx.name, gid.hex()[:12], exc)
        except errors.PerunError as exc:
            self.release_refused(gid, exc)

    def release_refused(self, gid: bytes, exc: errors.PerunError) -> None:
        """ν_b will not be signed: Ingrid refuses the ν_a she held (message 4 as a refusal)."""
        held = self.waiting.pop(gid, None)
        if held is not None:
            conn, msg = held
            self.virtual.ctx.peers.refuse(conn, msg, errors.ChannelRefused(f"Bob's node refused ν_b: {exc}"))

    def consents(self, v: VirtualChannelData) -> bool:
        """Ingrid lets ν_a block her cash once ν_b is signed by both (and only then)."""
        held = self.virtual.records.get(v.id)
        return held is not None and held.half(SIDE_B) is not None and held.half(SIDE_A) is None

    def released(self, gid: bytes) -> Callable[[], None] | None:
        """Once ν_b is durably signed by both: message 4, Ingrid countersigns the ν_a she held."""
        if gid not in self.waiting:
            return None
        conn, msg = self.waiting.pop(gid)
        ms = self.virtual.ms

        def countersign() -> None:
            try:
                ms.on_proposal(conn, msg, self.virtual.ctx.follower.chain_time, held=True)
            except errors.ValidationError as exc:
                self.virtual.ctx.peers.refuse(conn, msg, exc, ms)
        return countersign

    # ------------------------------------------------------------------ closing

    def on_close(self, conn: Connection, msg: m.VirtualClose) -> None:
        """An end's final state. Checked, stored, then both halves settled with it."""
        virtual = self.virtual
        rec = virtual.records.get(msg.channel_id)
        if rec is None or rec.position is not Position.INGRID or conn.peer not in (rec.data.alice, rec.data.bob):
            raise errors.UnknownChannel(f"no virtual channel 0x{msg.channel_id.hex()} through this node with "
                                        f"{conn.peer}")
        if self.policy is not None and not self.policy.fast_close:
            raise errors.ChannelRefused("Ingrid does not close virtual channels fast now: settle on chain")
        seen = Seen(PaymentState(msg.channel_id, msg.version, msg.balance_alice, msg.balance_bob, True),
                    msg.sig_alice, msg.sig_bob)
        vr.check_seen(rec, seen, virtual.domain)
        held = rec.final
        if held is not None and held != seen:
            raise errors.AlreadyFinal(f"virtual channel 0x{rec.id.hex()} has another final state")

        def settle() -> None:
            virtual.ctx.faults.point("virtual-close-stored")
            virtual.ctx.spawn(self.settle(rec.id))
        virtual.ctx.save([vr.learn(rec, seen)], then=settle)

    async def settle(self, gid: bytes) -> None:
        """Ingrid's fast close: SETTLE with the final state on each half off chain, then absorb.
        A half whose end does not answer stays as it is; its end's next connection retries, and
        by validity − Δ − 1 the follower takes it to the chain, where the final state settles it."""
        if gid in self._settling:
            # An end that connects while the other half is being settled (its VirtualClose on
            # reconnection) may be the one whose half just failed as not connected: once more after.
            self._again.add(gid)
            return
        self._settling.add(gid)
        try:
            rec = self.virtual.records[gid]
            final = rec.final
            assert final is not None
            await asyncio.gather(*(self._settle_half(h, final.settle_arg()) for h in rec.halves))
        finally:
            self._settling.discard(gid)
        if gid in self._again:
            self._again.discard(gid)
            await self.settle(gid)

    async def _settle_half(self, half: Half, z: bytes) -> None:
        """SETTLE, then absorb. A proposal of Ingrid's in flight on the slot is waited for, not
        given up on: her SETTLE sent again after a restart, or the absorption of another γ's half
        in the same ledger channel."""
        ms = self.virtual.ms
        try:
            if not await self._slot_free(half, half.nid):
                return
            if not self.virtual.half_state(half).terminated:  # type: ignore[union-attr]
                await ms.call(half.ledger, half.nid, vc.SETTLE, z)
            if await self._slot_free(half, b""):
                await ms.absorb(half.ledger, half.nid)
        except (errors.PeerUnavailable, errors.PeerRejected, errors.ValidationError) as exc:
            log.warning("%s: settling nanocontract 0x%s off chain: %s", self.virtual.ctx.name, half.nid.hex()[:12],
                        exc)

    async def _slot_free(self, half: Half, slot: bytes) -> bool:
        """Waits until Ingrid has no proposal in flight on `slot` of the half's ledger channel (the
        channel state, or a nanocontract); False if the half needs nothing more off chain:
        absorbed, or on chain, where the follower submits the final state. PeerTimeout if the
        proposal stays unanswered (the end's next connection retries)."""
        ctx = self.virtual.ctx

        def settleable(ledger: MSRecord) -> bool:
            return (ledger.stage is Stage.OPEN and ledger.registered(half.nid) is None
                    and any(s.state.nid == half.nid for s in ledger.nanocontracts))

        ledger = await ctx.wait_for(half.ledger, lambda r: not settleable(r) or r.pending_on(slot) is None,
                                    ctx.response_timeout)
        return settleable(ledger)
