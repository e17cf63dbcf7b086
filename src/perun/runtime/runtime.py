"""The node's I/O kernel, which knows no channel kind: the context every protocol works in.

It holds the key, the store and the chain; runs the group commit (every change staged in one
turn of the event loop is written in one SQLite transaction, and the messages waiting on it go
out in order once it is durable); keeps the futures of what the node waits for from its peers;
spawns the node's tasks; sends transactions on one chain thread; and wakes the callers of
`wait_for`. Its peers (runtime/peers.py) and its chain follower (runtime/follower.py) route
messages and chain events to the protocols of its registry (runtime/protocol.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount

from perun import errors
from perun.chain.backend import Chain, EmbeddedChain
from perun.chain.wallet import FeePolicy, Wallet
from perun.runtime.faults import Faults, Killed
from perun.runtime.follower import PROBING, ChainStatus, Follower
from perun.runtime.peers import Peers
from perun.runtime.pending import Pending
from perun.runtime.protocol import Registry
from perun.store import Store, TxJournal
from perun.wire.limits import Limits

log = logging.getLogger("perun.node")
T = TypeVar("T")


class Runtime:
    """One party's runtime. `identity` is the (chain id, contract address) its handshake
    announces; a peer on another deployment is refused."""

    def __init__(self, key: bytes | str | LocalAccount, chain: Chain, identity: tuple[int, str],
                 store_path: Path | str, *, host: str, port: int, name: str | None, poll_interval: float,
                 response_timeout: float, confirmations: int = 0, fees: FeePolicy = FeePolicy(),
                 limits: Limits = Limits()) -> None:
        self.account: LocalAccount = key if isinstance(key, LocalAccount) else Account.from_key(key)
        self.key = bytes(self.account.key)
        self.address: str = self.account.address
        self.name = name or self.address[:10]
        self.chain = chain
        self.store = Store(store_path, self.address, *identity)
        self.journal = TxJournal(store_path)
        self.wallet = Wallet(self.account, self.journal, fees)
        self.response_timeout = response_timeout
        self.registry = Registry()
        self.pending = Pending()
        self.faults = Faults(self.kill)
        self.limits = limits
        self.peers = Peers(self, identity, host, port)
        self.follower = Follower(self, poll_interval, confirmations)
        self.chain_status = ChainStatus(self.name)
        self.killed = False
        self.failed: BaseException | None = None
        self.on_kill: Callable[[], None] | None = None  # told when `kill` ran
        # Told whenever a piece of work ends (a message handled, a commit, a poll, a chain call)
        # or a connection comes or goes: who waits for `busy()` to empty looks again then.
        self.on_progress: Callable[[], None] | None = None
        self._chain_calls = 0  # chain requests and transactions under way on the node's threads
        self._tasks: set[asyncio.Task] = set()
        self._lasting: set[asyncio.Task] = set()  # the ones that last as long as a connection or a peer
        # Reads on one thread, transactions on another: a transaction waits until it is mined,
        # and the follower goes on reading meanwhile. The embedded chain runs inline (it mines
        # at once, and is not thread-safe).
        embedded = isinstance(chain, EmbeddedChain)
        self._executor = None if embedded else ThreadPoolExecutor(1, "perun-chain")
        self._sender = None if embedded else ThreadPoolExecutor(1, "perun-sender")
        self._waiters: list[tuple[bytes, Callable[[Any], bool], asyncio.Future]] = []
        self._changes: list[asyncio.Future] = []  # `changed` callers
        # the group commit
        self._batch: dict[str, Any] | None = None
        self._after: list[Callable[[], object]] = []
        self._batch_done: asyncio.Future | None = None

    # ================================================================== lifecycle

    async def start(self) -> None:
        # The chain first: a message handled before the first poll would see chain time 0.
        await self._check_genesis()
        await self.follower.poll()
        await self.peers.listen()
        self.follower.start()
        self.peers.redial_all()
        log.info("%s: listening on %s:%s", self.name, self.peers.host, self.peers.port)

    async def _check_genesis(self) -> None:
        """A devnet restarted under the same chain id (and so the same contract addresses) holds
        none of the channels the store has: they are marked lost, not shown open."""
        genesis = await self.on_chain(self.chain.genesis_hash)
        known = self.store.meta("genesis")
        if known == genesis:
            return
        meta = {"genesis": genesis}
        if known is not None:
            lost = [rec for protocol in self.registry.protocols for rec in protocol.lost_with_chain()]
            log.warning("%s: the chain was reset (its block 0 is %s, not %s): %d channel(s) went with it and are "
                        "marked lost", self.name, genesis[:12], known[:12], len(lost))
            meta["last_block"] = str(await self.on_chain(self.chain.block_number))
            meta["checkpoints"] = "[]"  # the old chain's
            await self.save(lost, meta=meta)
        else:
            await self.save(meta=meta)

    async def stop(self) -> None:
        self.wallet.stop()
        await self.follower.stop()
        self.peers.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.peers.wait_closed()
        for executor in (self._executor, self._sender):
            if executor:
                executor.shutdown(wait=True, cancel_futures=True)
        if self._batch is not None:  # staged but not yet committed: commit it now
            self._flush()
        self.store.close()
        self.journal.close()

    @property
    def serving(self) -> bool:
        """Started, and neither stopped nor killed."""
        return self.peers.serving and not self.killed

    def kill(self) -> None:
        """Stops dead, as SIGKILL stops a process: what the store committed survives; staged
        changes, unsent messages and running tasks do not, and the peers see a reset."""
        if self.killed:
            return
        self.killed = True
        self._batch, self._after = None, []
        self.peers.abort()
        self.follower.kill()
        self.wallet.stop()
        for task in list(self._tasks):
            task.cancel()
        dead = errors.NodeKilled(f"{self.name} was killed")
        self.pending.fail_all(dead)
        for future in [*(f for _, _, f in self._waiters), *self._changes, self._batch_done]:
            if future is not None and not future.done():
                future.set_exception(dead)
                future.exception()  # retrieved: nobody may be waiting
        self._batch_done = None
        for executor in (self._executor, self._sender):
            if executor:
                executor.shutdown(wait=False, cancel_futures=True)
        self.store.close()
        self.journal.close()
        log.warning("%s: killed", self.name)
        if self.on_kill:
            self.on_kill()

    def busy(self) -> list[str]:
        """What the node is in the middle of now; empty when it is idle: a task of its own (a
        forwarded payment, a hub's settlement, which may wait for a peer's answer) or a message
        it handles, a commit, a poll of the chain, a chain request. What it sent and received is
        `sessions`; a connection's serving task, or a redial's, is no work."""
        doing = []
        tasks = sum(1 for task in self._tasks if task not in self._lasting and not task.done())
        if tasks:
            doing.append(f"{tasks} task(s) under way")
        if self.peers.handling:
            doing.append(f"handling {self.peers.handling} message(s)")
        if self._batch is not None:
            doing.append("committing")
        if self.follower.polling:
            doing.append("reading the chain and doing its duties")
        if self._chain_calls:
            doing.append(f"waiting for {self._chain_calls} chain request(s) or transaction(s)")
        return doing

    def sessions(self) -> dict[bytes, tuple[int, int]]:
        """The open connections' frames (sent, received), by session (the handshake hash)."""
        return {conn.handshake_hash: conn.frames for conn in self.peers.connections.values() if not conn.closed}

    def progressed(self) -> None:
        """A piece of work ended: tells `on_progress`."""
        if self.on_progress is not None:
            self.on_progress()

    def spawn(self, coro, lasting: bool = False) -> asyncio.Task:
        """Runs `coro` as one of the node's tasks: cancelled when it stops, its failure logged.
        `lasting`: it lives as long as a connection or a peer (no work that `busy` counts)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        if lasting:
            self._lasting.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._lasting.discard(task)
        self.progressed()
        if not task.cancelled() and (exc := task.exception()) and not isinstance(exc, Killed):
            log.error("%s: task failed", self.name, exc_info=exc)

    # ================================================================== the chain

    async def on_chain(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs a blocking chain call: inline on the embedded chain (it is in this process and
        not thread-safe), else on this node's chain thread. While the chain is unreachable, only
        the follower tries it: other callers fail at once."""
        return await self._call(self._executor, fn, *args)

    async def transact(self, fn: Callable[..., T], *args: Any) -> T:
        """Sends a transaction from this node's wallet: `fn(wallet, *args)`, on the sender thread,
        the only one that sends (so the wallet owns the account's nonces). What the transaction
        serves (perun.chain.wallet.DUTY) goes with it."""
        return await self._call(self._sender, fn, self.wallet, *args)

    async def _call(self, executor: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any) -> T:
        if self.chain_status.down and not PROBING.get():
            raise self.chain_status.refusal()
        try:
            if executor is None:
                result = fn(*args)
            else:
                context = contextvars.copy_context()
                self._chain_calls += 1
                try:
                    result = await asyncio.get_running_loop().run_in_executor(executor, context.run, fn, *args)
                finally:
                    self._chain_calls -= 1
                    self.progressed()
        except errors.ChainUnreachable as exc:
            self.chain_status.failed(exc)
            raise
        self.chain_status.answered()
        return result

    # ================================================================== the group commit

    def save(self, records: Iterable[Any] = (), states: Iterable[Any] = (), peers: Iterable[tuple[str, str, int]] = (),
             meta: dict[str, str] | None = None, then: Callable[[], object] | None = None,
             behind: bool = False) -> asyncio.Future:
        """Stages changes for the next group commit and returns a future of it. Each record goes
        into its protocol's memory at once (Protocol.put); `then` runs right after the commit, in
        staging order. `behind`: nothing waits for these changes, so a new batch's commit waits
        a turn of the event loop more, and what the caller wakes (the next payment) joins it."""
        if self.killed:
            raise errors.NodeKilled(f"{self.name} was killed")
        if self.failed:
            raise errors.StoreError(f"the node stopped after a store failure: {self.failed}")
        if self._batch is None:
            self._batch = {"records": {}, "states": [], "peers": [], "meta": {}}
            loop = asyncio.get_running_loop()
            self._batch_done = loop.create_future()
            if behind:
                loop.call_soon(loop.call_soon, self._flush)
            else:
                loop.call_soon(self._flush)
        for rec in records:
            self.registry.owner(rec).put(rec)
            self._batch["records"][type(rec), rec.channel_id] = rec
        self._batch["states"].extend(states)
        self._batch["peers"].extend(peers)
        self._batch["meta"].update(meta or {})
        if then:
            self._after.append(then)
        self.notify()
        return self._batch_done  # type: ignore[return-value]

    def _flush(self) -> None:
        if self.killed:
            return
        try:
            self._commit()
        finally:
            self.progressed()

    def _commit(self) -> None:
        batch, after, done = self._batch, self._after, self._batch_done
        self._batch, self._after, self._batch_done = None, [], None
        assert batch is not None and done is not None
        try:
            self.store.commit(batch["records"].values(), batch["states"], batch["peers"], batch["meta"])
        except errors.StoreError as exc:
            # Nothing that depended on the batch was sent. A node that cannot persist must not
            # sign anything more: stop serving.
            log.critical("%s: %s", self.name, exc)
            self.failed = exc
            done.set_exception(exc)
            self.peers.close_connections()
            return
        for action in after:
            try:
                action()
            except errors.PerunError as exc:
                log.warning("%s: after commit: %s", self.name, exc)
            except Killed:  # an action reached a crash point: whoever awaits the commit learns it
                done.set_exception(errors.NodeKilled(f"{self.name} was killed"))
                done.exception()
                return
        done.set_result(None)

    def ahead_of_commit(self, action: Callable[[], None]) -> None:
        """Runs `action` (a send that need not wait for the staged changes) at once, unless an
        action already waits for the commit: then behind it, so that sends keep their order."""
        if self._after:
            self._after.append(action)
        else:
            action()

    def after_commit(self, action: Callable[[], None]) -> None:
        """Runs `action` once every change staged so far is durable (at once if none is staged)."""
        if self._batch is None:
            action()
        else:
            self._after.append(action)

    # ================================================================== waiting for a channel

    def notify(self) -> None:
        """Wakes the `wait_for` callers whose condition now holds (or whose channel's duty failed),
        and every `changed` caller."""
        for future in self._changes:
            if not future.done():
                future.set_result(None)
        self._changes.clear()
        for waiter in list(self._waiters):
            cid, predicate, future = waiter
            rec = self.registry.record(cid)
            if not future.done():
                if rec is not None and predicate(rec):
                    future.set_result(rec)
                elif cid in self.follower.failures:
                    future.set_exception(self.follower.failures[cid])
            if future.done():
                self._waiters.remove(waiter)

    def changed(self) -> asyncio.Future:
        """Done at the next change of any channel record from now on: for a caller that does not
        know the channel's id yet (a new channel's, chosen by this node)."""
        future = asyncio.get_running_loop().create_future()
        self._changes.append(future)
        return future

    async def wait_for(self, cid: bytes, predicate: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        """Waits until the record of channel `cid` (of any kind) satisfies `predicate`: an event,
        not a sleep."""
        rec = self.registry.record(cid)
        if rec is None:
            raise errors.UnknownChannel(f"no channel 0x{cid.hex()}")
        if predicate(rec):
            return rec
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((cid, predicate, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise errors.PeerTimeout(f"channel 0x{cid.hex()} did not get there within {timeout} s") from exc
