"""The halves of virtual channels as the multistate protocol meets them: VirtualChannel
nanocontracts, about which it asks these hooks (perun.protocols.multistate.hooks).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from perun import errors
from perun.core import virtual as vr
from perun.core.apps import virtualchannel as vc
from perun.core.apps.virtualchannel import SIDE_A, SIDE_B
from perun.core.channel import PaymentState, checksum
from perun.core.msmachine import Kind, MSProposal, MSRecord
from perun.core.multistate import NanocontractState
from perun.core.virtual import Half, Position, Seen, VirtualRecord
from perun.protocols.multistate.hooks import AppHooks
from perun.wire import messages as m
from perun.wire.transport import Connection

if TYPE_CHECKING:
    from perun.chain.channels import Event
    from perun.chain.multistate import RegisteredNanocontract
    from perun.protocols.virtual.protocol import Virtual

log = logging.getLogger("perun.node")


class Halves(AppHooks):
    def __init__(self, virtual: Virtual) -> None:
        self.virtual = virtual

    def claims(self, nc: NanocontractState) -> bool:
        return nc.app == self.virtual.app_address

    # ------------------------------------------------------------------ off chain

    def intercept(self, conn: Connection, ledger: MSRecord, msg: m.Message, proposal: MSProposal, now: int) -> bool:
        """Checks a proposed half before the multistate rules run; True if Ingrid holds Alice's ν_a
        until Bob has countersigned ν_b. While she holds one, she refuses any other change of
        that channel's state: ν_a must still build on it when she countersigns."""
        hub = self.virtual.hub
        nc = proposal.nanocontract
        if proposal.kind is not Kind.CREATE or nc is None or not self.claims(nc):
            if proposal.slot == b"" and hub.holds_in(ledger):
                raise errors.UpdateConflict("Ingrid holds a virtual channel's half in this channel until Bob answers")
            return False
        v = vc.decode(nc.storage)
        position = vr.check_half(v, ledger, ledger.channel_id, conn.peer, now)
        if position is Position.INGRID:
            assert isinstance(msg, m.NanocontractCreate)
            return hub.hold(conn, ledger, msg, proposal, v, now)
        if v.id in self.virtual.records:
            raise errors.InvalidNanocontract(f"virtual channel 0x{v.id.hex()} has its half here already")
        return False

    def consents(self, ledger: MSRecord, nc: NanocontractState) -> bool:
        """Ingrid once the other half is signed (ν_b before ν_a), an end if its policy accepts γ."""
        v = vc.decode(nc.storage)
        if ledger.me == v.ingrid:
            return self.virtual.hub.consents(v)
        return self.virtual.accept_virtual(v)

    def adopted(self, ledger: MSRecord, nc: NanocontractState) -> None:
        """A half is signed by both: stage γ's record with it (in the same commit)."""
        virtual = self.virtual
        v = vc.decode(nc.storage)
        half = Half(v.side, ledger.channel_id, nc.nid)
        held = virtual.records.get(v.id)
        if held is None:
            position = Position.INGRID if ledger.me == v.ingrid else Position(v.side)
            rec = vr.new_record(v, position, half, virtual.domain)
        else:
            rec = vr.with_half(held, half)
        then = virtual.hub.released(v.id) if rec.position is Position.INGRID and v.side == SIDE_B else None
        virtual.ctx.save([rec], then=then)

    def tower_call(self, ledger: MSRecord, nc: NanocontractState) -> tuple[int, bytes, int] | None:
        """An end's watchtower may SETTLE its half with the end's latest γ state signed by both
        (docs/protocol.md §12.1: safe to repeat, the app takes it only above the version it holds)."""
        if not self.claims(nc):
            return None
        v = vc.decode(nc.storage)
        rec = self.virtual.records.get(v.id)
        half = rec.half(v.side) if rec is not None else None
        if rec is None or rec.channel is None or half is None or half.nid != nc.nid \
                or half.ledger != ledger.channel_id:
            return None  # Ingrid has no γ state of her own to settle with
        c = rec.channel
        if c.current.version == 0 or not (c.sig_alice and c.sig_bob):
            return None  # the opening state: the half holds it already
        return vc.SETTLE, Seen(c.current, c.sig_alice, c.sig_bob).settle_arg(), c.current.version

    def ledger_changed(self, ledger: bytes) -> None:
        self.virtual.live_set.ledger_changed(ledger)

    def refused(self, ledger: MSRecord, proposal: MSProposal, failure: errors.PeerRejected) -> None:
        """Bob refused a ν_b: so does Ingrid the ν_a she held for it (once; her `_propose_b`, if it
        still waits, finds it released)."""
        v = vc.decode(proposal.nanocontract.storage)  # type: ignore[union-attr]
        self.virtual.hub.release_refused(v.id, failure)

    # ------------------------------------------------------------------ on chain

    async def submissions(self, ledger: MSRecord, nid: bytes, registered: RegisteredNanocontract,
                          now: int) -> list[tuple[int, bytes]]:
        """SETTLE with this party's state, if `nid` is a half of γ (perun.core.virtual.submission)."""
        if checksum(registered.app) != self.virtual.app_address:
            return []
        stored = vc.decode(registered.storage)
        rec = self.virtual.records.get(stored.id)
        half = rec.half(stored.side) if rec is not None else None
        if rec is None or half is None or half.nid != nid or half.ledger != ledger.channel_id:
            return []
        other = None
        if rec.position is Position.INGRID:
            other = await self._stored(rec.half(SIDE_B if stored.side == SIDE_A else SIDE_A))
        seen = vr.submission(rec, stored.side, stored, other, now)
        return [(vc.SETTLE, seen.settle_arg())] if seen is not None else []

    def inputs(self, nid: bytes) -> Any:
        return self.virtual.holding(nid)

    async def _stored(self, half: Half | None) -> vc.VirtualChannelData | None:
        """What the chain stores for `half`, if it is registered (this party's view)."""
        if half is None:
            return None
        ms = self.virtual.ms
        ledger = ms.records.get(half.ledger)
        if ledger is None or ledger.registered(half.nid) is None:
            return None
        registered = await self.virtual.ctx.on_chain(ms.contract.nanocontract, half.ledger, half.nid)
        return vc.decode(registered.storage)

    async def read_chain(self, events: list[Event]) -> list[Seen]:
        """The γ states that SETTLE transactions carry (their calldata: the events do not hold the
        signatures), which Ingrid keeps to copy them to the other half (`apply_chain`)."""
        virtual = self.virtual
        found = []
        for event in events:
            settled = event.name == "NanocontractExecuted" and event.args["fun"] == vc.SETTLE
            held = virtual.holding(event.args["nid"]) if settled else None
            if held is None or held.position is not Position.INGRID:
                continue
            call = await virtual.ctx.on_chain(virtual.ms.contract.executed_call, event.tx_hash)
            if call is None:
                log.warning("%s: a SETTLE of 0x%s came from a contract: its state is not readable",
                            virtual.ctx.name, event.args["nid"].hex()[:12])
                continue
            s = vc.decode_settle_arg(call[2])
            seen = Seen(PaymentState(held.id, s.version, s.balance_alice, s.balance_bob, s.final),
                        s.r_alice + s.s_alice + bytes([s.v_alice]), s.r_bob + s.s_bob + bytes([s.v_bob]))
            try:
                vr.check_seen(held, seen, virtual.domain)  # the contract checked it already
            except errors.PerunError as exc:
                log.error("%s: a SETTLE of 0x%s carried a state that does not check: %s", virtual.ctx.name,
                          event.args["nid"].hex()[:12], exc)
                continue
            found.append(seen)
        return found

    def apply_chain(self, read: list[Seen]) -> list[VirtualRecord]:
        """The records with the states `read_chain` found, from the records as they are now."""
        changed: dict[bytes, VirtualRecord] = {}
        for seen in read:
            gid = seen.state.channel_id
            changed[gid] = vr.learn(changed.get(gid, self.virtual.records[gid]), seen)
        return list(changed.values())
