"""A watchtower for multistate channels, their nanocontracts and virtual channels' halves
(docs/protocol.md §12): the I/O around perun.core.mstower.

A protocol of its own beside perun.protocols.tower (payment channels), not a second mode of it:
its channels live on another contract (MSContract) with other events, its record is another type
(MSWatched, in its own table), and the runtime routes records and messages by type to one
protocol each. A Watchtower given an MSContract runs both.

A party hands the tower its latest channel state (MonitorChannel), then the latest state of each
live nanocontract (MonitorNanocontract) and, for a virtual channel's half of which it is the end,
the SETTLE call with its latest γ state (MonitorCall). The tower keeps only the latest of each,
answers MonitorAck / MonitorNanoAck once stored, and refuses with an Error whose `signed` is the
version it holds (for a nanocontract's items: `channel_id` = the nid, as for NanocontractCall).
It follows MSContract's events and refutes, registers, settles and finalizes as its duties say.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from typing import Any

from eth_utils import to_checksum_address

from perun import errors
from perun.chain.channels import Event, Receipt
from perun.chain.multistate import MSContract
from perun.core import mstower
from perun.core.apps.virtualchannel import decode_settle_arg
from perun.core.monitoring import Monitoring
from perun.core.mstower import Due, MSWatched
from perun.protocols.tower import Watching
from perun.runtime import Duty, Runtime
from perun.runtime.due import DueIndex
from perun.runtime.protocol import json_amounts
from perun.wire import messages as m
from perun.wire.transport import Connection

log = logging.getLogger("perun.tower")


class MSTower(Watching[MSContract]):
    """The multistate channels a tower watches on the MSContract at `contract`; `virtual_app` is the
    VirtualChannel app whose SETTLE calls it takes (None: it takes none)."""

    kind = "ms-tower"
    crash_prefix = "ms-"
    messages = (m.MonitorChannel, m.MonitorNanocontract, m.MonitorCall)
    record_type = MSWatched
    # As Tower's: ms-monitor-received: an item taken, not stored; ms-monitor-stored: stored, its
    # acknowledgement not sent; ms-X-due: the duty's transaction not sent; ms-X-sent: mined, not recorded.
    crash_points = ("ms-monitor-received", "ms-monitor-stored", "ms-refute-due", "ms-refute-sent",
                    "ms-register-due", "ms-register-sent", "ms-execute-due", "ms-execute-sent",
                    "ms-finalize-due", "ms-finalize-sent")

    def __init__(self, ctx: Runtime, contract: str, virtual_app: str | None = None) -> None:
        self.ctx = ctx
        self.contract = MSContract(ctx.chain, contract)
        self.domain = self.contract.domain
        self.virtual_app = to_checksum_address(virtual_app) if virtual_app else None
        self.records: dict[bytes, MSWatched] = {rec.channel_id: rec for rec in ctx.store.ms_watched()}
        self.due_index = DueIndex(lambda: self.records, lambda cid, now: mstower.next_due(self.records[cid], now))

    # ------------------------------------------------------------------ messages

    async def receive(self, conn: Connection, msg: m.Message) -> None:
        me = self.ctx.address
        if isinstance(msg, m.MonitorChannel):
            params = msg.params()
            cid = self.contract.channel_id(params)
            await self._check_open(cid)
            # Read after the await: a message handled meanwhile counts.
            new = mstower.accept_channel(self.records.get(cid), self.domain, me, params, msg.state(cid),
                                         msg.signature, msg.reward, msg.authorisation)
            ack: m.Message = m.MonitorAck(cid, new.version)
        elif isinstance(msg, m.MonitorNanocontract):
            state = msg.state()
            new = mstower.accept_nano(self.records.get(msg.channel_id), self.domain, me, state, msg.signature,
                                      msg.reward, msg.authorisation)
            ack = m.MonitorNanoAck(msg.channel_id, msg.nid, False, state.version)
        elif isinstance(msg, m.MonitorCall):
            new = mstower.accept_call(self.records.get(msg.channel_id), self.domain, me, self.virtual_app,
                                      msg.channel_id, msg.nid, msg.fun, msg.z, msg.reward, msg.authorisation)
            ack = m.MonitorNanoAck(msg.channel_id, msg.nid, True, new.call(msg.nid).version)  # type: ignore[union-attr]
        else:
            raise errors.MalformedMessage(f"{type(msg).__name__} is not expected here")
        self.ctx.faults.point("ms-monitor-received")

        def acknowledge() -> None:
            self.ctx.faults.point("ms-monitor-stored")
            conn.send(ack)
        self.ctx.save([new], then=acknowledge)

    def refusal(self, conn: Connection, msg: m.Message, exc: errors.PerunError) -> m.Error:
        """Names the slot refused (the channel, or for a nanocontract's items its nid, as for a
        NanocontractCall), the version refused, and in `signed` the version the tower holds there."""
        slot, version, held = bytes(32), 0, 0
        if isinstance(msg, m.MonitorChannel):
            try:
                slot = self.contract.channel_id(msg.params())
            except errors.ValidationError:
                pass
            rec = self.records.get(slot)
            version, held = msg.version, rec.version if rec is not None else 0
        elif isinstance(msg, (m.MonitorNanocontract, m.MonitorCall)):
            rec = self.records.get(msg.channel_id)
            slot = msg.nid
            if isinstance(msg, m.MonitorNanocontract):
                nano = rec.nano(msg.nid) if rec is not None else None
                version, held = msg.version, nano.state.version if nano is not None else 0
            else:
                call = rec.call(msg.nid) if rec is not None else None
                version, held = _call_version(msg.z), call.version if call is not None else 0
        return m.Error(m.code_of(exc), msg.TYPE, slot, version, held, str(exc))

    # ------------------------------------------------------------------ the chain

    async def read_chain(self, start: int, end: int) -> list[Event]:
        events = await self.ctx.on_chain(self.contract.events, start, end)
        read = []
        for event in events:
            cid = event.args.get("channelId")
            rec = self.records.get(cid) if cid is not None else None
            if event.name == "NanocontractRegistered" and rec is not None and rec.call(event.args["nid"]) is not None:
                # The event does not carry the storage: the γ version a virtual half stores decides
                # whether the SETTLE held is above it. (The latest storage: enough, the version only grows.)
                stored = await self.ctx.on_chain(self.contract.nanocontract, rec.channel_id, event.args["nid"])
                event = replace(event, args={**event.args, "data": stored.storage})
            read.append(event)
        return read

    def after_event(self, rec: MSWatched, event: Event) -> MSWatched:
        return mstower.apply_event(rec, self.ctx.address, event.name, event.args)

    def duties(self, now: int) -> Iterable[Duty]:
        for cid in self.due_index.due(now):
            rec = self.records[cid]
            for due, nid in mstower.duties(rec, now):
                what = due.value if not nid else f"{due.value} 0x{nid.hex()[:12]}"
                if due is Due.REFUTE:
                    yield Duty(what, cid, partial(self.refute, cid), deadline=rec.deadline)
                elif due is Due.REGISTER:
                    yield Duty(what, cid, partial(self.register, cid, nid))
                elif due is Due.EXECUTE:
                    yield Duty(what, cid, partial(self.execute, cid, nid))
                else:
                    yield Duty(what, cid, partial(self.finalize, cid))

    async def refute(self, cid: bytes) -> Receipt:
        """Registers the channel state held over the stale one, on the client's authorisation."""
        rec = self.records[cid]
        log.warning("%s: stale close of multistate 0x%s (version %s); refuting with version %s for %s",
                    self.ctx.name, cid.hex()[:12], rec.registered, rec.version, rec.client)
        return await self._submit("refute", self.contract.refute, rec.params, rec.state, rec.signature,
                                  rec.monitoring(self.domain, self.ctx.address), rec.authorisation)

    async def register(self, cid: bytes, nid: bytes) -> Receipt:
        """Registers the nanocontract state held (first, or over a lower version)."""
        rec = self.records[cid]
        nano = rec.nano(nid)
        assert nano is not None
        log.warning("%s: nanocontract 0x%s of 0x%s: registering version %s for %s", self.ctx.name, nid.hex()[:12],
                    cid.hex()[:12], nano.state.version, rec.client)
        monitoring = Monitoring.of(self.domain, nano.state, self.ctx.address, nano.reward)
        return await self._submit("register", self.contract.register_for, rec.params, nano.state, nano.signature,
                                  monitoring, nano.authorisation)

    async def execute(self, cid: bytes, nid: bytes) -> Receipt:
        """Makes the call held (a virtual half's SETTLE with the client's latest γ state)."""
        rec = self.records[cid]
        call = rec.call(nid)
        assert call is not None
        log.warning("%s: nanocontract 0x%s of 0x%s: SETTLE with γ version %s for %s", self.ctx.name, nid.hex()[:12],
                    cid.hex()[:12], call.version, rec.client)
        return await self._submit("execute", self.contract.execute_for, rec.params, nid, call.fun, call.z,
                                  call.execution(cid, self.ctx.address), call.authorisation)

    async def finalize(self, cid: bytes) -> Receipt:
        """Pays out the channel, and this tower the rewards of its submissions that count."""
        rec = self.records[cid]
        return await self._submit("finalize", self.contract.finalize, rec.params, rec.fundings)

    # ------------------------------------------------------------------ views

    def describe(self, cid: bytes) -> dict[str, Any]:
        rec = self.records.get(cid)
        if rec is None:
            raise errors.UnknownChannel(f"this tower watches no multistate channel 0x{cid.hex()}")
        info: dict[str, Any] = {
            "kind": self.kind, "channel": "0x" + cid.hex(), "client": rec.client, "stage": self.stage_of(rec),
            "version": rec.version, "cash_alice": rec.state.cash_alice, "cash_bob": rec.state.cash_bob,
            "reward": rec.reward, "registered_version": rec.registered, "deadline": rec.deadline,
            "refuted": rec.refuted, "reward_paid": rec.reward_paid,
            "nanocontracts": {"0x" + n.nid.hex(): n.state.version for n in rec.nanos},
            "calls": {"0x" + c.nid.hex(): c.version for c in rec.calls},
        }
        json_amounts(info, "cash_alice", "cash_bob", "reward", "reward_paid")
        return info

    def about(self) -> dict[str, Any]:
        return {"ms_contract": self.contract.address, "ms_watched": len(self.records), "virtual_app": self.virtual_app}


def _call_version(z: bytes) -> int:
    """The γ version a SETTLE argument carries, or 0 if it does not decode."""
    try:
        return decode_settle_arg(z).version
    except errors.PerunError:
        return 0
