"""The node's eye on the chain: it asks each protocol to read its events from the last processed
block and to apply them to its channels, then sends the transactions the protocols' duties call
for (create, confirm, refund, dispute a stale close, register and execute nanocontracts,
finalize, ...). It knows no kind: each protocol says what it reads and what is due.

The last processed block is stored in the same commit as the records it changed (and, when
nothing changed, every STORE_FINAL_EVERY blocks), so a node that was offline catches up from
about where it stopped. Polling, not subscriptions: it works on every
JSON-RPC node.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from perun import errors
from perun.chain.backend import Head
from perun.chain.wallet import DUTY
from perun.runtime.protocol import Duty

if TYPE_CHECKING:
    from perun.runtime.runtime import Runtime

log = logging.getLogger("perun.watcher")

LOG_CHUNK = 5_000  # blocks per eth_getLogs request
# Chains that only one machine mines (anvil, hardhat, geth --dev, the embedded chain) reorganise
# only when told to: their events are final at once. Elsewhere a node waits for this many blocks.
DEV_CHAIN_IDS = frozenset({1337, 31337, 131277322940537})
CONFIRMATIONS = 12
CHECKPOINTS = 16  # the last final blocks read whose hashes the store keeps, to find a fork
# The last final block read is stored with the changes its events made; with none, only once it
# is this many blocks past the stored one (so an idle poll writes nothing). A restarted node
# reads those blocks again: their events changed nothing, and applying an event again changes
# nothing either.
STORE_FINAL_EVERY = 1_000
# Errors that mean another transaction got there first; the next poll sees its event.
_RACED = (errors.ChannelsWrongPhase, errors.ChannelsChannelExists, errors.TransactionFailed,
          errors.ChannelsStaleVersion, errors.MSContractTerminated)
# Errors that mean "not yet": the duty is due again at the next poll.
_EARLY = (errors.ChannelsFinalizeTooEarly, errors.ChannelsRefundTooEarly, errors.MSContractWindowOpen)


# Set in the follower's own task: its reads go to the chain even while it is unreachable (they
# find out when it is back); every other caller fails at once then (Runtime.on_chain).
PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("perun_probing", default=False)
MAX_BACKOFF = 30.0  # seconds between polls while the chain is unreachable, at the most
STILL_DOWN_EVERY = 60.0  # seconds between the log lines of an outage


def default_confirmations(chain_id: int) -> int:
    """The confirmation depth a node uses unless told otherwise."""
    return 0 if chain_id in DEV_CHAIN_IDS else CONFIRMATIONS


class ChainStatus:
    """Whether the chain's endpoint answered the node's last request: one log line when it stops
    answering, one a minute while it does not, one when it answers again."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down_since: float | None = None  # time.monotonic() of the first failure
        self.error: errors.ChainUnreachable | None = None
        self._told = 0.0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, exc: errors.ChainUnreachable) -> None:
        now = time.monotonic()
        self.error = exc
        if self.down_since is None:
            self.down_since = self._told = now
            log.warning("%s: the chain is unreachable (%s); the node keeps trying", self.name, exc)
        elif now - self._told >= STILL_DOWN_EVERY:
            self._told = now
            log.warning("%s: the chain is still unreachable, for %d min now", self.name, (now - self.down_since) // 60)

    def answered(self) -> None:
        if self.down_since is not None:
            log.warning("%s: the chain answers again after %d s; catching up", self.name,
                        time.monotonic() - self.down_since)
            self.down_since = self.error = None

    def refusal(self) -> errors.ChainUnreachable:
        """What a command is told while the chain is unreachable."""
        assert self.down_since is not None
        return errors.ChainUnreachable(
            f"the chain has not answered for {time.monotonic() - self.down_since:.0f} s ({self.error}); the node "
            "keeps trying and catches up once it is back")


class Follower:
    """Reads the chain for the node's protocols. Events `confirmations` blocks deep or deeper are
    final: applied to the records and stored. The ones above are read again at every poll and
    applied to copies only, from which the duties are derived with the final ones: a close seen
    at depth 0 is answered at once, and a reorganisation that takes it away takes the need with
    it. Nothing unconfirmed is stored, so there is nothing to roll back (docs/protocol.md, "The
    chain")."""

    def __init__(self, runtime: Runtime, poll_interval: float, confirmations: int = 0) -> None:
        self.runtime = runtime
        self.poll_interval = poll_interval
        self.confirmations = confirmations
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.failures: dict[bytes, errors.PerunError] = {}  # the last failed duty per channel
        self.chain_time = 0  # the latest block's time at the last poll
        self.head: Head | None = None  # the latest block at the last poll
        self.unreachable_polls = 0  # polls in a row that found the chain unreachable
        self.reorgs = 0  # reorganisations seen
        self.speculating = False  # applying unconfirmed events to copies (the protocols log no change)
        # The last final block read, and the checkpoints (the last final blocks read, with their
        # hashes, oldest first), as read (the store's may be older: STORE_FINAL_EVERY); loaded at
        # the first poll, after the runtime's check of block 0 (which may reset them).
        self._final: int | None = None
        self._stored: int | None = None  # the last final block in the store
        self._checkpoints: list[tuple[int, bytes]] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="perun-watcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def kill(self) -> None:
        """Stops at once (Runtime.kill): the poll under way is abandoned where it is."""
        if self._task:
            self._task.cancel()
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())

    @property
    def polling(self) -> bool:
        """A poll is under way: reading the chain, or doing what is due."""
        return self._lock.locked()

    def wake(self) -> None:
        """Poll now rather than at the next interval."""
        self._wake.set()

    async def _run(self) -> None:
        PROBING.set(True)
        while True:
            try:
                await self.poll()
                self.unreachable_polls = 0
            except errors.ChainUnreachable:  # ChainStatus said so; back off
                self.unreachable_polls += 1
            except errors.PerunError as exc:
                log.warning("%s: chain poll failed: %s", self.runtime.name, exc)
            except Exception:  # a bug, or an error of the chain's that is not ours: keep watching
                log.exception("%s: chain poll failed", self.runtime.name)
            try:
                await asyncio.wait_for(self._wake.wait(), min(self.poll_interval * 2**self.unreachable_polls, MAX_BACKOFF))
            except TimeoutError:
                pass
            # Python 3.11's wait_for drops a cancellation that races with the wake-up or the
            # timeout: stop() would wait for this loop forever.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            self._wake.clear()

    async def poll(self) -> None:
        """Read new events, apply the final ones, then do what is due. One poll at a time."""
        try:
            await self._poll()
        finally:
            self.runtime.progressed()

    async def _poll(self) -> None:
        runtime = self.runtime
        async with self._lock:
            head = await runtime.on_chain(runtime.chain.head)
            await self._check_reorg(head)
            final = head.number - self.confirmations
            await self._read_final(final, head)
            protocols = list(runtime.registry.protocols)
            reads = [await protocol.read_chain(final + 1, head.number) for protocol in protocols] \
                if final < head.number else []
            self.head, self.chain_time = head, head.timestamp
            # No await from the read to the duties: the copies are of the records as they are now.
            self.speculating = True
            try:
                unconfirmed = [rec for protocol, read in zip(protocols, reads) for rec in protocol.apply_chain(read)]
            finally:
                self.speculating = False
            due = self._duties(unconfirmed, head.timestamp)
            for duty in due:
                await self.perform(duty)

    def _duties(self, unconfirmed: list[Any], now: int) -> list[Duty]:
        """The protocols' duties at chain time `now`, as if the unconfirmed events were final:
        their records are put in place for the call only, and the final ones put back."""
        registry = self.runtime.registry
        final = [(registry.owner(rec), registry.owner(rec).record(rec.channel_id)) for rec in unconfirmed]
        for rec in unconfirmed:
            registry.owner(rec).put(rec)
        try:
            return [duty for protocol in registry.protocols for duty in protocol.duties(now)]
        finally:
            for owner, rec in final:
                owner.put(rec)

    async def _check_reorg(self, head: Head) -> None:
        """A reorganisation replaced the block the last poll saw as the head: the unconfirmed
        events are read again anyway. If it reaches below the final blocks, what the node applied
        from them cannot be taken back: it says so, and reads again from where the chains fork."""
        runtime = self.runtime
        last = self.head
        if last is not None:
            if last.number == head.number and last.hash == head.hash:
                return
            if head.number == last.number + 1 and head.parent == last.hash:
                return  # the next block, on the one seen last: nothing replaced, and no request to know it
            if await runtime.on_chain(runtime.chain.block_hash, last.number) == last.hash:
                return
            self.reorgs += 1
            log.warning("%s: a reorganisation replaced block #%d (the head now is #%d); reading the unconfirmed "
                        "blocks again", runtime.name, last.number, head.number)
        self._load()
        checkpoints = self._checkpoints
        if not checkpoints:
            return
        fork = None
        for number, known in reversed(checkpoints):
            if await runtime.on_chain(runtime.chain.block_hash, number) == known:
                fork = number
                break
        if fork == checkpoints[-1][0]:
            return
        fork = fork if fork is not None else max(checkpoints[0][0] - LOG_CHUNK, 0)
        log.error("%s: a reorganisation deeper than %d confirmation(s) replaced final blocks above #%d: what the node "
                  "applied from them stays applied; reading from there again. Give the node more --confirmations",
                  runtime.name, self.confirmations, fork)
        self._final, self._checkpoints = fork, [(n, h) for n, h in checkpoints if n <= fork]
        await runtime.save(meta=self._meta())

    @property
    def last_final(self) -> int | None:
        """The last final block read (the store's may be older: STORE_FINAL_EVERY)."""
        self._load()
        return self._final

    def _load(self) -> None:
        if self._checkpoints is None:
            store = self.runtime.store
            self._final = self._stored = store.last_block()
            text = store.meta("checkpoints")
            self._checkpoints = [(n, bytes.fromhex(h)) for n, h in json.loads(text)] if text else []

    def _meta(self) -> dict[str, str]:
        """The last final block read and the checkpoints, to store."""
        assert self._checkpoints is not None
        self._stored = self._final
        return {"last_block": str(self._final),
                "checkpoints": json.dumps([[n, h.hex()] for n, h in self._checkpoints])}

    async def _read_final(self, final: int, head: Head) -> None:
        runtime = self.runtime
        self._load()
        start = max(final, 0) if self._final is None else self._final + 1
        while start <= final:
            end = min(final, start + LOG_CHUNK - 1)
            protocols = list(runtime.registry.protocols)
            reads = [await protocol.read_chain(start, end) for protocol in protocols]
            end_hash = head.hash if end == head.number else await runtime.on_chain(runtime.chain.block_hash, end)
            if end_hash is None:  # reorganised below `end` since the head was read: the next poll sees it
                return
            # No await from here to the save: each record is read as it is now, so nothing the
            # node changed while the chain was read (an update adopted meanwhile) is overwritten.
            # Only what differs from the records as they are is stored: a transaction's events
            # were applied from its receipt already, and an event applied again changes nothing.
            owner = runtime.registry.owner
            changed = [rec for protocol, read in zip(protocols, reads) for rec in protocol.apply_chain(read)
                       if rec != owner(rec).record(rec.channel_id)]
            assert self._checkpoints is not None
            self._final, self._checkpoints = end, self._checkpoints[-(CHECKPOINTS - 1):] + [(end, end_hash)]
            if changed or self._stored is None or end - self._stored >= STORE_FINAL_EVERY:
                await runtime.save(changed, meta=self._meta())
            start = end + 1

    async def perform(self, duty: Duty) -> None:
        """Runs a duty: a lost race or "too early" is no failure; anything else is recorded for
        the channel's `wait_for` callers. Its transactions carry its deadline (DUTY)."""
        serving = DUTY.set((f"{duty.what} of 0x{duty.channel.hex()[:12]}", duty.deadline))
        try:
            await duty.run()
            self.failures.pop(duty.channel, None)
        except (*_RACED, *_EARLY):
            pass
        except errors.PerunError as exc:
            log.warning("%s: %s of 0x%s failed: %s", self.runtime.name, duty.what, duty.channel.hex()[:12], exc)
            self.failures[duty.channel] = exc
            self.runtime.notify()
        finally:
            DUTY.reset(serving)
