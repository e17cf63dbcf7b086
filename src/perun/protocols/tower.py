"""A watchtower for payment channels (docs/protocol.md §12): the I/O around perun.core.tower.

A party hands the tower its latest state with a Monitor; the tower checks it, keeps it in place
of the one it held (one record per channel, whatever the number of updates), and answers
MonitorAck once it is stored. It follows the PaymentContract's events for the channels it
watches: a close of a lower version is refuted with the state held, before the deadline; after
the deadline, with its refutation still registered, the tower finalizes and is paid its reward.
A runtime that runs only this protocol is a tower (perun.node.Watchtower).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, ClassVar, Generic, TypeVar

from perun import errors
from perun.chain.channels import ChannelsContract, Event, Receipt
from perun.chain.payment import PaymentContract
from perun.core import tower
from perun.core.channel import Phase
from perun.core.tower import Due, Watched
from perun.runtime import Duty, Protocol, Runtime
from perun.runtime.due import DueIndex
from perun.runtime.protocol import json_amounts
from perun.wire import messages as m
from perun.wire.transport import Connection

log = logging.getLogger("perun.tower")


C = TypeVar("C", bound=ChannelsContract)  # the kind's own contract


class Watching(Protocol, Generic[C]):
    """What a watchtower's protocols share (this one and perun.protocols.mstower): sending a duty's
    transaction between its two crash points, applying what it did, and their records' views."""

    crash_prefix: ClassVar[str] = ""  # before a crash point's name: the kind's own points
    ctx: Runtime
    contract: C
    due_index: DueIndex

    def put(self, rec: Any) -> None:
        self.records[rec.channel_id] = rec
        self.due_index.changed(rec.channel_id)

    async def _check_open(self, cid: bytes) -> None:
        """A channel not on chain would cost a row for nothing: the first state of each is checked
        there (UnknownChannel unless it is Open or Closing)."""
        if cid in self.records:
            return
        phase = (await self.ctx.on_chain(self.contract.channel, cid)).phase
        if phase not in (Phase.OPEN, Phase.CLOSING):
            raise errors.UnknownChannel(f"channel 0x{cid.hex()} is not open on chain ({phase.name.lower()})")

    async def _submit(self, step: str, fn: Callable[..., Any], *args: Any) -> Receipt:
        """Sends `fn(*args)` between the crash points `<step>-due` (not sent) and `<step>-sent`
        (mined, not applied), then applies its events."""
        self.ctx.faults.point(f"{self.crash_prefix}{step}-due")
        receipt = await self.ctx.transact(fn, *args)
        self.ctx.faults.point(f"{self.crash_prefix}{step}-sent")
        await self._apply(receipt)
        return receipt

    async def _apply(self, receipt: Receipt) -> None:
        """As ChannelProtocol.apply: at once when events are final at once, else by the follower."""
        if self.ctx.follower.confirmations:
            self.ctx.follower.wake()
            return
        await self.ctx.save(self.applied(receipt.events))

    def apply_chain(self, read: list[Event]) -> list[Any]:
        return self.applied(read)

    def applied(self, events: Iterable[Event]) -> list[Any]:
        """The records that `events` change, from the records as they are now."""
        changed: dict[bytes, Any] = {}
        for event in events:
            cid = event.args.get("channelId")
            if cid is None:
                continue
            rec = changed.get(cid) or self.records.get(cid)
            if rec is not None:
                changed[cid] = self.after_event(rec, event)
        return list(changed.values())

    def after_event(self, rec: Any, event: Event) -> Any:
        """`rec` after one event of its channel (the kind's pure rule)."""
        raise NotImplementedError

    def version_of(self, rec: Any) -> int:
        return rec.version

    def registered_of(self, rec: Any) -> int | None:
        return rec.registered

    def stage_of(self, rec: Any) -> str:
        if rec.closed:
            return "closed"
        return "watching" if rec.registered is None else "closing"


class Tower(Watching[PaymentContract]):
    """The channels a tower watches on the PaymentContract at `contract`."""

    kind = "tower"
    messages = (m.Monitor,)
    record_type = Watched
    # monitor-received: a Monitor taken, not stored; monitor-stored: stored, MonitorAck not sent;
    # refute-due, finalize-due: the transaction not sent; refute-sent, finalize-sent: mined, not recorded.
    crash_points = ("monitor-received", "monitor-stored", "refute-due", "refute-sent", "finalize-due", "finalize-sent")

    def __init__(self, ctx: Runtime, contract: str) -> None:
        self.ctx = ctx
        self.contract = PaymentContract(ctx.chain, contract)
        self.domain = self.contract.domain
        self.records: dict[bytes, Watched] = {rec.channel_id: rec for rec in ctx.store.watched()}
        # A poll looks only at the channels with a duty due (nearly all are at rest: no close).
        self.due_index = DueIndex(lambda: self.records, lambda cid, now: tower.next_due(self.records[cid], now))

    # ------------------------------------------------------------------ messages

    async def receive(self, conn: Connection, msg: m.Message) -> None:
        if not isinstance(msg, m.Monitor):
            raise errors.MalformedMessage(f"{type(msg).__name__} is not expected here")
        params = msg.params()
        cid = self.contract.channel_id(params)
        await self._check_open(cid)
        # Read after the await: a Monitor handled meanwhile counts.
        new = tower.accept(self.records.get(cid), self.domain, self.ctx.address, params, msg.version,
                           msg.balance_alice, msg.balance_bob, msg.signature, msg.reward, msg.authorisation)
        self.ctx.faults.point("monitor-received")
        def ack() -> None:
            self.ctx.faults.point("monitor-stored")
            conn.send(m.MonitorAck(cid, new.version))
        self.ctx.save([new], then=ack)

    def refusal(self, conn: Connection, msg: m.Message, exc: errors.PerunError) -> m.Error:
        """Names the channel the Monitor is about, and in `signed` the version the tower holds
        there: a client that lost an acknowledgement learns from a STALE_VERSION what it has."""
        cid, held = bytes(32), 0
        if isinstance(msg, m.Monitor):
            try:
                cid = self.contract.channel_id(msg.params())
            except errors.ValidationError:
                pass
            rec = self.records.get(cid)
            held = rec.version if rec is not None else 0
        return m.Error(m.code_of(exc), msg.TYPE, cid, getattr(msg, "version", 0), held, str(exc))

    # ------------------------------------------------------------------ the chain

    async def read_chain(self, start: int, end: int) -> list[Event]:
        return await self.ctx.on_chain(self.contract.events, start, end)

    def after_event(self, rec: Watched, event: Event) -> Watched:
        return tower.apply_event(rec, self.ctx.address, event.name, event.args)

    def duties(self, now: int) -> Iterable[Duty]:
        for cid in self.due_index.due(now):
            rec = self.records[cid]
            for due in tower.duties(rec, now):
                if due is Due.REFUTE:
                    yield Duty(due.value, cid, partial(self.refute, cid), deadline=rec.deadline)
                else:
                    yield Duty(due.value, cid, partial(self.finalize, cid))

    async def refute(self, cid: bytes) -> Receipt:
        """Registers the state held over the stale one, on the client's authorisation."""
        rec = self.records[cid]
        log.warning("%s: stale close of 0x%s (version %s); refuting with version %s for %s", self.ctx.name,
                    cid.hex()[:12], rec.registered, rec.version, rec.client)
        return await self._submit("refute", self.contract.refute, rec.params, rec.state, rec.signature,
                                  rec.monitoring(self.domain, self.ctx.address), rec.authorisation)

    async def finalize(self, cid: bytes) -> Receipt:
        """Pays out the channel, and this tower its reward (anyone may finalize; the tower is paid
        only if it does it, or someone does, while its refutation stands)."""
        return await self._submit("finalize", self.contract.finalize, self.records[cid].params)

    # ------------------------------------------------------------------ views

    def describe(self, cid: bytes) -> dict[str, Any]:
        rec = self.records.get(cid)
        if rec is None:
            raise errors.UnknownChannel(f"this tower watches no channel 0x{cid.hex()}")
        info: dict[str, Any] = {
            "kind": self.kind, "channel": "0x" + cid.hex(), "client": rec.client, "stage": self.stage_of(rec),
            "version": rec.version, "balance_alice": rec.state.balance_alice, "balance_bob": rec.state.balance_bob,
            "reward": rec.reward, "registered_version": rec.registered, "deadline": rec.deadline,
            "refuted": rec.refuted, "reward_paid": rec.reward_paid,
        }
        json_amounts(info, "balance_alice", "balance_bob", "reward", "reward_paid")
        return info

    def about(self) -> dict[str, Any]:
        return {"contract": self.contract.address, "watched": len(self.records)}
