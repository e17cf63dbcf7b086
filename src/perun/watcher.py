"""The node's eye on the chain: it reads PaymentContract (and MSContract) events from the last
processed block, applies them to the node's channels, and sends the transactions the channels'
duties call for (perun.core.machine.duties, perun.core.msmachine.duties): create, confirm,
refund, dispute a stale close, register and execute nanocontracts, finalize.

The last processed block is stored with the records it changed, so a node that was offline
catches up from where it stopped. Polling, not subscriptions: it works on every JSON-RPC node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from perun import errors
from perun.chain.channels import Event
from perun.core import msmachine
from perun.core.machine import Duty, apply_event, duties

if TYPE_CHECKING:
    from perun.node import Node

log = logging.getLogger("perun.watcher")

LOG_CHUNK = 5_000  # blocks per eth_getLogs request
# Errors that mean another transaction got there first; the next poll sees its event.
_RACED = (errors.ChannelsWrongPhase, errors.ChannelsChannelExists, errors.TransactionFailed,
          errors.ChannelsStaleVersion, errors.MSContractTerminated)
# Errors that mean "not yet": the duty is due again at the next poll.
_EARLY = (errors.ChannelsFinalizeTooEarly, errors.ChannelsRefundTooEarly, errors.MSContractWindowOpen)


class Watcher:
    def __init__(self, node: Node, poll_interval: float) -> None:
        self.node = node
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.failures: dict[bytes, errors.PerunError] = {}  # the last failed duty per channel
        self.chain_time = 0  # the latest block's time at the last poll

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="perun-watcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def kill(self) -> None:
        """Stops at once (Node.kill): the poll under way is abandoned where it is."""
        if self._task:
            self._task.cancel()
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def wake(self) -> None:
        """Poll now rather than at the next interval."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except errors.PerunError as exc:
                log.warning("%s: chain poll failed: %s", self.node.name, exc)
            except Exception:  # an unreachable RPC, say: keep watching
                log.exception("%s: chain poll failed", self.node.name)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass
            # Python 3.11's wait_for drops a cancellation that races with the wake-up or the
            # timeout: stop() would wait for this loop forever.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            self._wake.clear()

    async def poll(self) -> None:
        """Read new events, apply them, then do what is due. One poll at a time."""
        async with self._lock:
            await self._read_events()
            now = await self.node.on_chain(self.node.chain.timestamp)
            self.chain_time = now
            for rec in list(self.node.records.values()):
                for duty in duties(rec, now):
                    await self._do(duty, rec.channel_id)
            if self.node.multistate:
                for ms_rec in list(self.node.multistate.records.values()):
                    for ms_duty, nid in msmachine.duties(ms_rec, now):
                        await self._guarded(ms_duty.value, ms_rec.channel_id,
                                            self.node.multistate.do(ms_duty, ms_rec.channel_id, nid))
            if self.node.virtual:
                for ledger, nid in self.node.virtual.duties(now):
                    log.warning("%s: virtual channel half 0x%s: registering it by validity - Δ - 1",
                                self.node.name, nid.hex()[:12])
                    await self._guarded("register", ledger, self.node.multistate.register(ledger, nid))

    async def _read_events(self) -> None:
        node = self.node
        head = await node.on_chain(node.chain.block_number)
        start = node.store.last_block()
        start = head if start is None else start + 1
        while start <= head:
            end = min(head, start + LOG_CHUNK - 1)
            events = await node.on_chain(node.contract.events, start, end)
            ms_events = await node.on_chain(node.multistate.contract.events, start, end) if node.multistate else []
            found = await node.virtual.harvest(ms_events) if node.virtual else []
            # No await from here to the save: each record is read as it is now, so nothing the
            # node changed while the chain was read (an update adopted meanwhile) is overwritten.
            changed: dict = {}
            for event in events:
                cid = event.args.get("channelId")
                rec = changed.get(cid) or node.records.get(cid)
                if rec is not None:
                    changed[cid] = self._applied(rec, apply_event, event)
            ms_changed: dict = {}
            for event in ms_events:
                cid = event.args.get("channelId")
                ms_rec = ms_changed.get(cid) or node.multistate.records.get(cid)
                if ms_rec is not None:
                    ms_changed[cid] = self._applied(ms_rec, msmachine.apply_event, event)
            await node.save(list(changed.values()), meta={"last_block": str(end)}, ms_records=list(ms_changed.values()),
                            virtual_records=node.virtual.learned(found) if node.virtual else [])
            start = end + 1

    def _applied(self, rec: Any, apply: Callable[[Any, str, dict], Any], event: Event) -> Any:
        new = apply(rec, event.name, event.args)
        if new != rec:
            log.info("%s: %s 0x%s -> %s", self.node.name, event.name, rec.channel_id.hex()[:12], new.stage.value)
        return new

    async def _do(self, duty: Duty, cid: bytes) -> None:
        node = self.node
        if duty is Duty.CREATE:
            step = node.create_on_chain(cid)
        elif duty is Duty.CONFIRM:
            step = node.confirm_on_chain(cid)
        elif duty is Duty.REFUND:
            step = node.refund(cid)
        elif duty is Duty.COOPERATIVE_CLOSE:
            step = node.cooperative_close_on_chain(cid)
        elif duty is Duty.DISPUTE:
            rec = node.records[cid]
            log.warning("%s: stale close of 0x%s (version %s); submitting version %s",
                        node.name, cid.hex()[:12], rec.registered_version, rec.current.version)
            step = node.register(cid)
        else:
            step = node.finalize(cid)
        await self._guarded(duty.value, cid, step)

    async def _guarded(self, what: str, cid: bytes, step: Awaitable[object]) -> None:
        """Runs a duty's step: a lost race or "too early" is no failure; anything else is
        recorded for the channel's `wait_for` callers."""
        node = self.node
        try:
            await step
            self.failures.pop(cid, None)
        except (*_RACED, *_EARLY):
            pass
        except errors.PerunError as exc:
            log.warning("%s: %s of 0x%s failed: %s", node.name, what, cid.hex()[:12], exc)
            self.failures[cid] = exc
            node.notify()
