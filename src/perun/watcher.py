"""The node's eye on the chain: it reads PaymentContract events from the last processed block,
applies them to the node's channels, and sends the transactions the channels' duties call for
(perun.core.machine.duties): create, confirm, refund, dispute a stale close, finalize.

The last processed block is stored with the records it changed, so a node that was offline
catches up from where it stopped. Polling, not subscriptions: it works on every JSON-RPC node.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from perun import errors
from perun.core.machine import Duty, apply_event, duties

if TYPE_CHECKING:
    from perun.node import Node

log = logging.getLogger("perun.watcher")

LOG_CHUNK = 5_000  # blocks per eth_getLogs request
# Errors that mean another transaction got there first; the next poll sees its event.
_RACED = (errors.ChannelsWrongPhase, errors.ChannelsChannelExists, errors.TransactionFailed)


class Watcher:
    def __init__(self, node: Node, poll_interval: float) -> None:
        self.node = node
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.failures: dict[bytes, errors.PerunError] = {}  # the last failed duty per channel

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
            self._wake.clear()

    async def poll(self) -> None:
        """Read new events, apply them, then do what is due. One poll at a time."""
        async with self._lock:
            await self._read_events()
            now = await self.node.on_chain(self.node.chain.timestamp)
            for rec in list(self.node.records.values()):
                for duty in duties(rec, now):
                    await self._do(duty, rec.channel_id)

    async def _read_events(self) -> None:
        node = self.node
        head = await node.on_chain(node.chain.block_number)
        start = node.store.last_block()
        start = head if start is None else start + 1
        while start <= head:
            end = min(head, start + LOG_CHUNK - 1)
            events = await node.on_chain(node.contract.events, start, end)
            changed = {}
            for event in events:
                cid = event.args.get("channelId")
                rec = changed.get(cid) or node.records.get(cid)
                if rec is None:
                    continue
                new = apply_event(rec, event.name, event.args)
                if new != rec:
                    log.info("%s: %s 0x%s -> %s", node.name, event.name, cid.hex()[:12], new.stage.value)
                    changed[cid] = new
            await node.save(list(changed.values()), meta={"last_block": str(end)})
            start = end + 1

    async def _do(self, duty: Duty, cid: bytes) -> None:
        node = self.node
        try:
            if duty is Duty.CREATE:
                await node.create_on_chain(cid)
            elif duty is Duty.CONFIRM:
                await node.confirm_on_chain(cid)
            elif duty is Duty.REFUND:
                await node.refund(cid)
            elif duty is Duty.COOPERATIVE_CLOSE:
                await node.cooperative_close_on_chain(cid)
            elif duty is Duty.DISPUTE:
                rec = node.records[cid]
                log.warning("%s: stale close of 0x%s (version %s); submitting version %s",
                            node.name, cid.hex()[:12], rec.registered_version, rec.current.version)
                await node.register(cid)
            elif duty is Duty.FINALIZE:
                await node.finalize(cid)
            self.failures.pop(cid, None)
        except _RACED:
            pass
        except errors.PerunError as exc:
            if not isinstance(exc, (errors.ChannelsFinalizeTooEarly, errors.ChannelsRefundTooEarly)):
                log.warning("%s: %s of 0x%s failed: %s", node.name, duty.value, cid.hex()[:12], exc)
                self.failures[cid] = exc
                node.notify()
