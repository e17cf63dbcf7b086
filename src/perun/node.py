"""A payment-channel node: one party, its key, its store, its peers and its watcher.

The node is the I/O around perun.core.machine: it decodes peer messages, runs them through
the machine, persists the result, and only then sends what depends on it. Persisting is
batched (group commit): every change staged in one turn of the event loop is written in one
SQLite transaction, and the messages waiting on it go out in order once it is durable.

    async with Node(key, chain, contract_address, "alice.db") as alice:
        await alice.connect(bob_address, "127.0.0.1", bob_port)
        cid = await alice.open(bob_address, deposit=10**18, peer_deposit=0, delta=3600)
        await alice.pay(cid, 10**17)
        await alice.close(cid)
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from eth_utils import to_checksum_address

from perun import errors
from perun.chain.backend import Chain, EmbeddedChain
from perun.chain.channels import ChannelsContract
from perun.chain.payment import PaymentContract, Receipt
from perun.core import machine, msmachine
from perun.core.channel import ETH, Params, PaymentState, Phase, checksum
from perun.core.machine import CONFLICT_RETRIES, ChannelRecord, Proposal, Role, Stage
from perun.core.msmachine import MSRecord, Signed
from perun.core.multistate import NanocontractState
from perun.core.apps.virtualchannel import VirtualChannelData
from perun.core.virtual import VirtualRecord
from perun.msnode import Multistate
from perun.virtual import APP as VIRTUAL_APP
from perun.virtual import HubPolicy, Virtual
from perun.store import SignedState, Store
from perun.watcher import Watcher
from perun.wire import messages as m
from perun.wire.transport import Connection, handshake

log = logging.getLogger("perun.node")
T = TypeVar("T")

RESPONSE_TIMEOUT = 10.0


CRASH_POINTS = (
    "propose-stored", "accept-stored", "created", "confirmed", "update-signed", "update-received",
    "update-countersigned", "ack-stored", "final-signed", "final-countersigned", "final-acked", "close-sent",
    "nano-proposed", "nano-received", "nano-countersigned", "nano-acked",
)


class Killed(BaseException):
    """Unwinds the call that reached a node's `crash_at` point: the node is dead (`Node.kill`).
    A BaseException, so that no `except Exception` in the node carries on after its death."""


@dataclass(frozen=True)
class ChannelInfo:
    """A channel as this node sees it (`Node.channels()`, `Node.info(cid)`); amounts in wei or
    token units, "my" and "peer" from this node's side."""

    channel: str  # 0x-hex id
    peer: str
    role: str  # alice or bob
    stage: str
    version: int  # of the latest state signed by both
    final: bool
    my_balance: int
    peer_balance: int
    my_deposit: int
    peer_deposit: int
    token: str
    delta: int
    deadline: int  # confirm deadline while initialising, dispute deadline while closing
    registered_version: int | None
    my_payout: int | None
    peer_payout: int | None
    pending: int  # own proposals not yet countersigned


class Node:
    def __init__(
        self,
        key: bytes,
        chain: Chain,
        contract: str,
        store_path: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        accept_channel: Callable[[Params], bool] = lambda params: True,
        ms_contract: str | None = None,
        apps: Mapping[str, str] | None = None,
        accept_nanocontract: Callable[[NanocontractState], bool] = lambda nc: False,
        accept_virtual: Callable[[VirtualChannelData], bool] = lambda v: False,
        hub: HubPolicy | None = None,
        poll_interval: float = 0.25,
        response_timeout: float = RESPONSE_TIMEOUT,
        name: str | None = None,
        crash_at: str | None = None,
    ) -> None:
        if crash_at is not None and crash_at not in CRASH_POINTS:
            raise ValueError(f"no crash point {crash_at!r}; the points are {', '.join(CRASH_POINTS)}")
        self.crash_at = crash_at
        self.killed = False
        self.on_kill: Callable[[Node], None] | None = None  # told when `kill` ran
        self.key = key
        self.account = Account.from_key(key)
        self.address = self.account.address
        self.chain = chain
        self.contract = PaymentContract(chain, contract)
        self.domain = self.contract.domain
        self.store = Store(store_path, self.address, chain.chain_id, self.contract.address)
        self.host, self.port = host, port
        self.accept_channel = accept_channel
        self.response_timeout = response_timeout
        self.name = name or self.address[:10]
        self.watcher = Watcher(self, poll_interval)

        self.records: dict[bytes, ChannelRecord] = {r.channel_id: r for r in self.store.channels()}
        # Multistate channels (msnode), when the node is given an MSContract; a creation that
        # blocks this node's cash needs `accept_nanocontract` (a conditional payment to it does not).
        self.multistate: Multistate | None = None
        if ms_contract:
            self.multistate = Multistate(self, ms_contract, apps or {}, accept_channel, accept_nanocontract)
        # Virtual channels (perun.virtual) through the multistate channels, when the VirtualChannel
        # app is deployed: an end accepts a γ that blocks its cash if `accept_virtual` does (one
        # that only pays it needs no consent); the node serves as Ingrid if it has a `hub` policy.
        self.virtual: Virtual | None = None
        if self.multistate and VIRTUAL_APP in self.multistate.app_address:
            self.virtual = Virtual(self, accept_virtual, hub)
        self.peers: dict[str, Connection] = {}
        self._connected: dict[str, asyncio.Event] = {}
        self._dial: dict[str, tuple[str, int]] = self.store.peers()
        self._acks: dict[tuple[bytes, int], asyncio.Future] = {}
        self._accepts: dict[bytes, asyncio.Future] = {}
        self._waiters: list[tuple[bytes, Callable[[ChannelRecord], bool], asyncio.Future]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._executor = None if isinstance(chain, EmbeddedChain) else ThreadPoolExecutor(1, "perun-chain")
        # group commit
        self._batch: dict[str, Any] | None = None
        self._after: list[Callable[[], None]] = []
        self._batch_done: asyncio.Future | None = None
        self.failed: BaseException | None = None

    # ================================================================== lifecycle

    async def start(self) -> Node:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        await self.watcher.poll()
        self.watcher.start()
        for peer, (host, port) in self._dial.items():
            self._spawn(self._redial(peer, host, port))
        log.info("%s: listening on %s:%s", self.name, self.host, self.port)
        return self

    async def stop(self) -> None:
        await self.watcher.stop()
        if self._server:
            self._server.close()
        for conn in list(self.peers.values()):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server:
            await self._server.wait_closed()
        if self._executor:
            self._executor.shutdown(wait=True)
        if self._batch is not None:  # staged but not yet committed: commit it now
            self._flush()
        self.store.close()

    @property
    def serving(self) -> bool:
        """Started, and neither stopped nor killed."""
        return self._server is not None and self._server.is_serving() and not self.killed

    def kill(self) -> None:
        """Stops dead, as SIGKILL stops a process: what the store committed survives; staged
        changes, unsent messages and running tasks do not, and the peers see a reset. For
        nodes that share a process with others (scenarios on the embedded chain)."""
        if self.killed:
            return
        self.killed = True
        self._batch, self._after = None, []
        for conn in list(self.peers.values()):
            conn.abort()
        if self._server:
            self._server.close()
        self.watcher.kill()
        for task in list(self._tasks):
            task.cancel()
        dead = errors.NodeKilled(f"{self.name} was killed")
        pending = [*self._acks.values(), *self._accepts.values(), *(f for _, _, f in self._waiters), self._batch_done,
                   *(self.multistate.acks() if self.multistate else ()),
                   *(self.virtual.closes() if self.virtual else ())]
        for future in pending:
            if future is not None and not future.done():
                future.set_exception(dead)
                future.exception()  # retrieved: nobody may be waiting
        self._batch_done = None
        if self._executor:
            self._executor.shutdown(wait=False)
        self.store.close()
        log.warning("%s: killed", self.name)
        if self.on_kill:
            self.on_kill(self)

    def _crash_point(self, name: str) -> None:
        """Dies here if this is the crash point: the whole process when $PERUN_CRASH_AT names
        it (SIGKILL from inside is the only way to stop a process exactly there), this node
        alone when `crash_at` does."""
        if os.environ.get("PERUN_CRASH_AT") == name:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.crash_at == name:
            self.kill()
            raise Killed(f"{self.name} killed at {name}")

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) and not isinstance(exc, Killed):
            log.error("%s: task failed", self.name, exc_info=exc)

    async def on_chain(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs a blocking chain call: inline on the embedded chain (it is in this process and
        not thread-safe), else on this node's one chain thread, which also orders its nonces."""
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ================================================================== persistence

    def save(
        self,
        records: Iterable[ChannelRecord] = (),
        states: Iterable[SignedState] = (),
        peers: Iterable[tuple[str, str, int]] = (),
        meta: dict[str, str] | None = None,
        then: Callable[[], None] | None = None,
        ms_records: Iterable[MSRecord] = (),
        ms_states: Iterable[Signed] = (),
        virtual_records: Iterable[VirtualRecord] = (),
    ) -> asyncio.Future:
        """Stages changes for the next group commit and returns a future of it. The records
        take effect in memory at once; `then` runs right after the commit, in staging order.
        `records` may hold a virtual channel's updates (an end's), which go into its record."""
        if self.killed:
            raise errors.NodeKilled(f"{self.name} was killed")
        if self.failed:
            raise errors.StoreError(f"the node stopped after a store failure: {self.failed}")
        if self._batch is None:
            self._batch = {"records": {}, "states": [], "peers": [], "meta": {}, "ms_records": {}, "ms_states": [],
                           "virtual_records": {}}
            self._batch_done = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._flush)
        for rec in records:
            if self.virtual is not None and rec.channel_id in self.virtual.records:
                virtual_records = [*virtual_records, self.virtual.with_updates(rec)]
                continue
            self.records[rec.channel_id] = rec
            self._batch["records"][rec.channel_id] = rec
        for v_rec in virtual_records:
            self.virtual.put(v_rec)  # type: ignore[union-attr]
            self._batch["virtual_records"][v_rec.id] = v_rec
        for ms_rec in ms_records:
            self.multistate.records[ms_rec.channel_id] = ms_rec  # type: ignore[union-attr]
            self._batch["ms_records"][ms_rec.channel_id] = ms_rec
        self._batch["ms_states"].extend(ms_states)
        self._batch["states"].extend(states)
        self._batch["peers"].extend(peers)
        self._batch["meta"].update(meta or {})
        if then:
            self._after.append(then)
        self.notify()
        return self._batch_done

    def _flush(self) -> None:
        if self.killed:
            return
        batch, after, done = self._batch, self._after, self._batch_done
        self._batch, self._after, self._batch_done = None, [], None
        try:
            self.store.commit(batch["records"].values(), batch["states"], batch["peers"], batch["meta"],
                              ms_records=batch["ms_records"].values(), ms_states=batch["ms_states"],
                              virtual_records=batch["virtual_records"].values())
        except errors.StoreError as exc:
            # Nothing that depended on the batch was sent. A node that cannot persist must not
            # sign anything more: stop serving.
            log.critical("%s: %s", self.name, exc)
            self.failed = exc
            done.set_exception(exc)
            for conn in list(self.peers.values()):
                conn.close()
            return
        for action in after:
            try:
                action()
            except errors.PerunError as exc:
                log.warning("%s: after commit: %s", self.name, exc)
            except Killed:
                return
        done.set_result(None)

    def _send(self, conn: Connection, message: m.Message) -> None:
        """Sends after every change staged so far is durable, preserving order."""
        def send() -> None:
            if not conn.closed:
                conn.send(message)
        if self._batch is None:
            send()
        else:
            self._after.append(send)

    def notify(self) -> None:
        """Wakes the `wait_for` callers whose condition now holds (or whose channel's duty failed)."""
        for waiter in list(self._waiters):
            cid, predicate, future = waiter
            rec = self._record(cid)
            if not future.done():
                if rec is not None and predicate(rec):
                    future.set_result(rec)
                elif cid in self.watcher.failures:
                    future.set_exception(self.watcher.failures[cid])
            if future.done():
                self._waiters.remove(waiter)

    def _record(self, cid: bytes) -> ChannelRecord | MSRecord | VirtualRecord | None:
        if cid in self.records:
            return self.records[cid]
        if self.multistate is not None and cid in self.multistate.records:
            return self.multistate.records[cid]
        return self.virtual.records.get(cid) if self.virtual is not None else None

    def _updatable(self, cid: bytes) -> ChannelRecord | None:
        """The update record of a payment channel, or of a virtual channel this node is an end of."""
        rec = self.records.get(cid)
        if rec is None and self.virtual is not None:
            return self.virtual.channel_record(cid)
        return rec

    async def wait_for(self, cid: bytes, predicate: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        """Waits until the channel's record (payment or multistate) satisfies `predicate` (an
        event, not a sleep)."""
        rec = self._record(cid)
        if rec is None:
            raise errors.UnknownChannel(f"no channel 0x{cid.hex()}")
        if predicate(rec):
            return rec
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((cid, predicate, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError as exc:
            raise errors.PeerTimeout(f"channel 0x{cid.hex()} did not get there within {timeout} s") from exc

    # ================================================================== peers

    async def connect(self, peer: str, host: str, port: int) -> None:
        """Dials `peer` at host:port, proves our key, checks theirs, and remembers the address
        so the node redials it after a restart."""
        peer = to_checksum_address(peer)
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise errors.PeerUnavailable(f"cannot reach {peer} at {host}:{port}: {exc}") from exc
        try:
            conn = await handshake(reader, writer, self.key, self.domain.chain_id, self.contract.address,
                                   expected_peer=peer)
        except BaseException:
            writer.close()
            raise
        self._dial[peer] = (host, port)
        await self.save(peers=[(peer, host, port)])
        self._adopt(conn)

    async def wait_connected(self, peer: str, timeout: float = 30.0) -> None:
        """Waits until a connection to `peer` is up (after a restart, the dialer redials)."""
        event = self._connected.setdefault(to_checksum_address(peer), asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError as exc:
            raise errors.PeerTimeout(f"not connected to {peer} within {timeout} s") from exc

    async def _redial(self, peer: str, host: str, port: int) -> None:
        delay = 0.05
        while peer not in self.peers:
            try:
                await self.connect(peer, host, port)
                return
            except (errors.PeerUnavailable, errors.HandshakeFailed) as exc:
                # Python 3.11's asyncio.wait_for (in the handshake) raises the failure it raced
                # with a cancellation and drops the cancellation: stop() would wait forever.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc
                log.info("%s: redial %s failed (%s); retrying in %.1f s", self.name, peer, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            conn = await handshake(reader, writer, self.key, self.domain.chain_id, self.contract.address)
        except errors.PerunError as exc:
            log.warning("%s: refused a connection: %s", self.name, exc)
            writer.close()
            return
        self._adopt(conn)

    def _adopt(self, conn: Connection) -> None:
        old = self.peers.get(conn.peer)
        if old:
            old.close()
        self.peers[conn.peer] = conn
        self._connected.setdefault(conn.peer, asyncio.Event()).set()
        log.info("%s: connected to %s", self.name, conn.peer)
        self._spawn(self._serve(conn))
        gammas = [v.channel for v in self.virtual.records.values() if v.channel] if self.virtual else []
        for rec in [*self.records.values(), *gammas]:
            if rec.peer != conn.peer or rec.stage is Stage.CLOSED:
                continue
            if rec.stage is Stage.PROPOSED and rec.role is Role.ALICE:
                self._send(conn, m.ProposeChannel.of(rec.params))
            else:
                self._send(conn, m.Reestablish(rec.channel_id, rec.current.version, rec.signed))
        if self.multistate:
            self.multistate.on_connected(conn)
        if self.virtual:
            self.virtual.on_connected(conn)

    async def _serve(self, conn: Connection) -> None:
        try:
            while True:
                try:
                    message = await conn.read()
                except errors.MessageTooLarge as exc:
                    self._refuse(conn, exc, 0)
                    return
                except errors.MalformedMessage as exc:
                    self._refuse(conn, exc, 0)
                    continue
                try:
                    if isinstance(message, (m.Update, *_MS_UPDATES)) and self._opening(message.channel_id):
                        # The proposer saw the channel open; this node may not have read that
                        # block yet. Read it (after any confirm this node has in flight) first.
                        try:
                            await self.watcher.poll()
                        except errors.ChainError as exc:  # the update is then refused as WRONG_STAGE
                            log.warning("%s: chain poll failed: %s", self.name, exc)
                    now = None
                    if isinstance(message, m.NanocontractCreate):
                        # No app's rule for a new nanocontract depends on the time; a virtual
                        # channel's validity bound has Δ to spare: the last poll's block will do.
                        now = self.watcher.chain_time
                    elif isinstance(message, _MS_UPDATES):  # the receiver's clock for the app's rules
                        now = await self.on_chain(self.chain.timestamp)
                    self._handle(conn, message, now)
                except errors.ValidationError as exc:
                    self._refuse(conn, exc, message.TYPE, _refers_to(message), getattr(message, "version", 0))
                except errors.StoreError:
                    raise
                except Exception as exc:  # a bug: say so, keep serving (nothing was changed)
                    log.exception("%s: handling %s failed", self.name, type(message).__name__)
                    self._refuse(conn, errors.PerunError(f"internal error: {type(exc).__name__}"), message.TYPE,
                                 _refers_to(message), getattr(message, "version", 0))
                await conn.drain()
        except errors.PeerUnavailable:
            pass
        finally:
            conn.close()
            if self.peers.get(conn.peer) is conn:
                del self.peers[conn.peer]
                self._connected[conn.peer].clear()
                log.info("%s: %s disconnected", self.name, conn.peer)
                if conn.peer in self._dial and self._server and self._server.is_serving():
                    self._spawn(self._redial(conn.peer, *self._dial[conn.peer]))

    def _refuse(self, conn: Connection, exc: errors.PerunError, ref_type: int, cid: bytes = bytes(32), version: int = 0) -> None:
        rec = self._updatable(cid)
        signed = rec.signed if rec and rec.peer == conn.peer else 0
        if self.multistate is not None and ref_type in _MS_PROPOSALS:
            signed = self.multistate.signed_on(conn.peer, cid)
        code = m.code_of(exc)
        log.warning("%s: refused %s from %s: %s: %s", self.name, m.MESSAGES.get(ref_type, m.Message).__name__,
                    conn.peer, code.name, exc)
        self._send(conn, m.Error(code, ref_type, cid, version, signed, str(exc)))

    # ================================================================== incoming messages

    def _channel_with(self, conn: Connection, cid: bytes) -> ChannelRecord:
        rec = self._updatable(cid)
        if rec is None or rec.peer != conn.peer:
            raise errors.UnknownChannel(f"no channel 0x{cid.hex()} with {conn.peer}")
        return rec

    def _opening(self, cid: bytes) -> bool:
        rec = self._record(cid)
        return isinstance(rec, (ChannelRecord, MSRecord)) and rec.stage in (Stage.ACCEPTED, Stage.INITIALISING)

    def _handle(self, conn: Connection, msg: m.Message, now: int | None = None) -> None:
        if isinstance(msg, _MS_MESSAGES) or (isinstance(msg, m.AcceptChannel) and self.multistate
                                               and self.multistate.handles(msg.channel_id)):
            if self.multistate is None:
                raise errors.ChannelRefused("this node runs no multistate channels")
            self.multistate.handle(conn, msg, now)
        elif isinstance(msg, m.VirtualClose):
            if self.virtual is None:
                raise errors.ChannelRefused("this node runs no virtual channels")
            self.virtual.on_close(conn, msg)
        elif isinstance(msg, m.Update):
            self._on_update(conn, msg)
        elif isinstance(msg, m.UpdateAck):
            self._on_ack(conn, msg)
        elif isinstance(msg, m.Error):
            self._on_error(conn, msg)
        elif isinstance(msg, m.ProposeChannel):
            self._on_propose(conn, msg)
        elif isinstance(msg, m.AcceptChannel):
            self._on_accept(conn, msg)
        elif isinstance(msg, m.Reestablish):
            self._on_reestablish(conn, msg)
        elif isinstance(msg, m.StateSync):
            self._on_sync(conn, msg)
        else:  # Hello or Auth after the handshake
            raise errors.MalformedMessage(f"{type(msg).__name__} is only valid in the handshake")

    def _on_update(self, conn: Connection, msg: m.Update) -> None:
        self._crash_point("update-received")
        rec = self._channel_with(conn, msg.channel_id)
        state = PaymentState(msg.channel_id, msg.version, msg.balance_alice, msg.balance_bob, msg.final)
        gamma = self.virtual is not None and msg.channel_id in self.virtual.records
        if gamma:
            self.virtual.check_update(msg.channel_id)  # type: ignore[union-attr]
        new, mine = machine.receive_update(rec, state, msg.prev, msg.signature, self.key)
        def ack() -> None:
            self._crash_point("final-countersigned" if state.is_final else "update-countersigned")
            conn.send(m.UpdateAck(msg.channel_id, msg.version, mine))
            if gamma and state.is_final:
                self.virtual.final_signed(msg.channel_id)  # type: ignore[union-attr]
        self.save([new], [SignedState(state, new.sig_alice, new.sig_bob)], then=ack)

    def _on_ack(self, conn: Connection, msg: m.UpdateAck) -> None:
        rec = self._channel_with(conn, msg.channel_id)
        new, proposal = machine.receive_ack(rec, msg.version, msg.signature)
        state = proposal.state
        def done() -> None:
            self._crash_point("final-acked" if state.is_final else "ack-stored")
            self._resolve((msg.channel_id, msg.version), state)
            if state.is_final and self.virtual is not None and msg.channel_id in self.virtual.records:
                self.virtual.final_signed(msg.channel_id)
        self.save([new], [SignedState(state, new.sig_alice, new.sig_bob)], then=done)
        if state.is_final:
            self.watcher.wake()

    def _on_error(self, conn: Connection, msg: m.Error) -> None:
        try:
            code = m.ErrorCode(msg.code)
        except ValueError:
            code = m.ErrorCode.INTERNAL
        log.warning("%s: %s refused our %s: %s: %s", self.name, conn.peer,
                    m.MESSAGES.get(msg.ref_type, m.Message).__name__, code.name, msg.reason)
        failure = errors.PeerRejected(code, msg.reason)
        if msg.ref_type == m.Update.TYPE:
            rec = self._updatable(msg.channel_id)
            if rec is None or rec.peer != conn.peer:
                return
            new, dropped = machine.receive_reject(rec, msg.version, msg.signed)
            if dropped:
                def fail() -> None:
                    for proposal in dropped:
                        self._resolve((msg.channel_id, proposal.state.version), failure)
                self.save([new], then=fail)
        elif msg.ref_type == m.ProposeChannel.TYPE:
            for cid in list(self._accepts):
                rec = self.records.get(cid)
                if rec and rec.peer == conn.peer:
                    self._accepted(cid, failure)
        elif self.multistate and msg.ref_type in {cls.TYPE for cls in _MS_MESSAGES}:
            self.multistate.on_error(conn, msg, failure)
        elif self.virtual and msg.ref_type == m.VirtualClose.TYPE:
            self.virtual.on_error(conn, msg, failure)

    def _on_propose(self, conn: Connection, msg: m.ProposeChannel) -> None:
        params = msg.params()
        if params.bob != self.address or params.alice != conn.peer:
            raise errors.InvalidParams("a proposal names its sender as alice and the receiver as bob")
        cid = self.contract.channel_id(params)
        rec = self.records.get(cid)
        if rec is not None:
            if rec.params != params or rec.role is not Role.BOB:
                raise errors.InvalidParams(f"channel 0x{cid.hex()} exists with other parameters")
            self._send(conn, m.AcceptChannel(cid))  # Alice lost our answer: repeat it
            return
        if not self.accept_channel(params):
            raise errors.ChannelRefused(f"this node does not accept channel 0x{cid.hex()}")
        new = machine.new_record(params, self.domain, Role.BOB, Stage.ACCEPTED)
        def accept() -> None:
            self._crash_point("accept-stored")
            conn.send(m.AcceptChannel(cid))
        self.save([new], then=accept)

    def _on_accept(self, conn: Connection, msg: m.AcceptChannel) -> None:
        rec = self._channel_with(conn, msg.channel_id)
        if rec.role is not Role.ALICE:
            raise errors.WrongStage("only the proposer expects an acceptance")
        if rec.stage is Stage.PROPOSED:
            self.save([replace(rec, stage=Stage.ACCEPTED)], then=self.watcher.wake)
        self._accepted(msg.channel_id)

    def _accepted(self, cid: bytes, failure: BaseException | None = None) -> None:
        """Bob accepted (or refused) the channel `cid` that `open` waits for."""
        future = self._accepts.get(cid)
        if future is None or future.done():
            return
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(failure)

    def _on_reestablish(self, conn: Connection, msg: m.Reestablish) -> None:
        rec = self._channel_with(conn, msg.channel_id)
        new, resync = machine.reestablish(rec, msg.current, msg.signed)
        def act() -> None:
            if resync.send_current:
                c = new.current
                conn.send(m.StateSync(c.channel_id, c.version, c.balance_alice, c.balance_bob, c.is_final,
                                      new.sig_alice, new.sig_bob))
            for proposal in resync.resend:
                conn.send(_update_message(proposal))
            for proposal in resync.dropped:
                self._resolve((msg.channel_id, proposal.state.version),
                              errors.UpdateConflict("the peer signed another state at this version"))
        self.save([new], then=act)

    def _on_sync(self, conn: Connection, msg: m.StateSync) -> None:
        rec = self._channel_with(conn, msg.channel_id)
        state = PaymentState(msg.channel_id, msg.version, msg.balance_alice, msg.balance_bob, msg.final)
        new = machine.receive_sync(rec, state, msg.sig_alice, msg.sig_bob)
        settled = [p for p in rec.pending if p.state.version <= state.version]
        def done() -> None:
            for proposal in settled:
                self._resolve((msg.channel_id, proposal.state.version), proposal.state)
            if new.is_fully_signed_final and self.virtual is not None and msg.channel_id in self.virtual.records:
                self.virtual.final_signed(msg.channel_id)
        self.save([new], [SignedState(state, msg.sig_alice, msg.sig_bob)], then=done)
        if new.is_fully_signed_final:
            self.watcher.wake()

    def _resolve(self, key: tuple[bytes, int], outcome: Any) -> None:
        future = self._acks.pop(key, None)
        if future is None or future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    # ================================================================== the API

    def channel(self, cid: bytes) -> ChannelRecord:
        try:
            return self.records[cid]
        except KeyError:
            raise errors.UnknownChannel(f"no channel 0x{cid.hex()}") from None

    def channels(self) -> list[ChannelInfo]:
        return [_info(rec) for rec in self.records.values()]

    def info(self, cid: bytes) -> ChannelInfo:
        return _info(self.channel(cid))

    def _connection(self, peer: str) -> Connection:
        conn = self.peers.get(checksum(peer))
        if conn is None or conn.closed:
            raise errors.PeerUnavailable(f"not connected to {peer}: connect first")
        return conn

    async def open(self, peer: str, deposit: int, peer_deposit: int, delta: int, token: str = ETH,
                   timeout: float | None = None) -> bytes:
        """Proposes a channel to `peer` (this node is Alice), creates it on chain once Bob
        accepts, and returns its id when Bob has confirmed. Raises what went wrong otherwise."""
        conn = self._connection(peer)
        params = Params(self.address, conn.peer, deposit, peer_deposit, delta, secrets.randbits(64), token)
        rec = machine.new_record(params, self.domain, Role.ALICE, Stage.PROPOSED)
        return await self._open_channel(conn, rec, m.ProposeChannel.of(params), timeout)

    def _stage(self, rec: ChannelRecord | MSRecord, then: Callable[[], None] | None = None) -> asyncio.Future:
        """Saves a payment or a multistate record."""
        if isinstance(rec, MSRecord):
            return self.save(ms_records=[rec], then=then)
        return self.save([rec], then=then)

    async def _open_channel(self, conn: Connection, rec: ChannelRecord | MSRecord, proposal: m.Message,
                            timeout: float | None) -> bytes:
        """Stores the proposed channel `rec` (payment or multistate), sends the proposal, and
        returns the id once Bob has accepted and confirmed it on chain."""
        cid = rec.channel_id
        accepted = asyncio.get_running_loop().create_future()
        self._accepts[cid] = accepted
        def propose() -> None:
            self._crash_point("propose-stored")
            conn.send(proposal)
        try:
            await self._stage(rec, then=propose)
            await asyncio.wait_for(accepted, timeout or self.response_timeout)
        except asyncio.TimeoutError as exc:
            raise errors.PeerTimeout(f"{conn.peer} did not answer the channel proposal") from exc
        except errors.PeerRejected:
            await self._stage(replace(self._record(cid), stage=Stage.CLOSED, outcome=(0, 0)))  # type: ignore[type-var]
            raise
        finally:
            self._accepts.pop(cid, None)
        # Bob's confirmation may take up to Δ of chain time: the caller's timeout bounds the wait.
        rec = await self.wait_for(cid, lambda r: r.stage in (Stage.OPEN, Stage.CLOSING, Stage.CLOSED),
                                  timeout or max(self.response_timeout, 30.0))
        if rec.stage is not Stage.OPEN:
            raise errors.WrongStage(f"channel 0x{cid.hex()} was {rec.stage.value} before it opened (refunded?)")
        return cid

    async def pay(self, cid: bytes, amount: int) -> PaymentState:
        """Pays `amount` to the peer; returns the new state once both signatures are stored.

        Payments on one channel are serialised by version and may be in flight together; a
        conflict with a payment the peer proposed at the same time is retried.
        """
        for attempt in range(CONFLICT_RETRIES):
            rec = self._updatable(cid)
            if rec is None:
                raise errors.UnknownChannel(f"no channel 0x{cid.hex()}")
            if self.virtual is not None and cid in self.virtual.records:
                self.virtual.check_update(cid)
            try:
                return await self._update(rec, machine.payment(rec, amount))
            except errors.PeerRejected as exc:
                if exc.code not in (m.ErrorCode.CONFLICT, m.ErrorCode.STALE_VERSION):
                    raise
                # Alice retries at once; Bob first lets Alice's update through.
                if rec.role is Role.BOB:
                    version = self._updatable(cid).current.version  # type: ignore[union-attr]
                    try:
                        await self.wait_for(cid, lambda r: r.current.version > version, 0.05 * (attempt + 1))
                    except errors.PeerTimeout:
                        pass
        raise errors.UpdateConflict(f"payment on 0x{cid.hex()} conflicted {CONFLICT_RETRIES} times")

    async def _update(self, rec: ChannelRecord, state: PaymentState) -> PaymentState:
        conn = self._connection(rec.peer)
        new, proposal = machine.propose(rec, state, self.key)
        acked = self._ack_future(rec.channel_id, state.version)
        mine = SignedState(state, *((proposal.signature, b"") if rec.role is Role.ALICE else (b"", proposal.signature)))
        def send() -> None:
            self._crash_point("final-signed" if state.is_final else "update-signed")
            conn.send(_update_message(proposal))
        self.save([new], [mine], then=send)
        return await self._countersigned(rec.peer, acked, state.version)

    def _ack_future(self, cid: bytes, version: int) -> asyncio.Future:
        return self._acks.setdefault((cid, version), asyncio.get_running_loop().create_future())

    async def _countersigned(self, peer: str, acked: asyncio.Future, version: int) -> PaymentState:
        try:
            return await asyncio.wait_for(asyncio.shield(acked), self.response_timeout)
        except asyncio.TimeoutError as exc:
            raise errors.PeerTimeout(
                f"{peer} did not countersign version {version} in time; it stays pending and "
                "completes if the peer countersigns it after reconnecting"
            ) from exc

    async def close(self, cid: bytes, timeout: float | None = None) -> tuple[int, int]:
        """Cooperative close: both sign a final state, which pays out at once. Returns the
        payout (alice, bob). If the peer does not answer, use `register` (unilateral)."""
        rec = self.channel(cid)
        pending_final = next((p.state.version for p in rec.pending if p.state.is_final), None)
        if pending_final is not None:  # proposed before (and before a restart, perhaps)
            await self._countersigned(rec.peer, self._ack_future(cid, pending_final), pending_final)
        elif not rec.is_fully_signed_final:
            await self._update(rec, machine.final(rec))
        if await self.cooperative_close_on_chain(cid) is None:
            await self.sync()  # the peer's transaction closed it: read its payout
        rec = await self.wait_for(cid, lambda r: r.stage is Stage.CLOSED, timeout or self.response_timeout)
        return rec.outcome

    async def register(self, cid: bytes) -> Receipt | None:
        """Unilateral close: registers the latest state the peer signed and starts Δ (or
        replaces an older registered state within Δ). None if the channel closed meanwhile."""
        rec = self.channel(cid)
        if rec.stage not in (Stage.OPEN, Stage.CLOSING):
            raise errors.WrongStage(f"channel 0x{cid.hex()} is {rec.stage.value}")
        if rec.is_fully_signed_final:
            return await self.cooperative_close_on_chain(cid)
        receipt = await self._closing(cid, self.contract, self.contract.close, rec.params, rec.current,
                                      rec.peer_signature)
        self._crash_point("close-sent")
        return receipt

    async def finalize(self, cid: bytes) -> Receipt | None:
        """Pays out the registered state once Δ has passed. None if it was paid out already."""
        return await self._closing(cid, self.contract, self.contract.finalize, self.channel(cid).params)

    async def refund(self, cid: bytes) -> Receipt | None:
        """Alice takes her deposit back when Bob did not confirm in time. None if the channel
        was refunded already."""
        return await self._closing(cid, self.contract, self.contract.refund, self.channel(cid).params)

    async def sync(self) -> None:
        """Reads the chain now and does what is due (the watcher also does it every poll)."""
        await self.watcher.poll()

    # ------------------------------------------------------------------ chain steps (also the watcher's duties)

    async def create_on_chain(self, cid: bytes) -> None:
        await self._create_on(self.contract, self.channel(cid).params)

    async def confirm_on_chain(self, cid: bytes) -> None:
        await self._confirm_on(self.contract, self.channel(cid).params)

    async def _create_on(self, contract: ChannelsContract, params: Params) -> None:
        if (await self.on_chain(contract.channel, contract.channel_id(params))).phase is not Phase.NONE:
            return  # created before a crash; the watcher applies its event
        if params.token != ETH:
            await self._transact(contract.approve, params.token, params.deposit_alice)
        receipt = await self._transact(contract.create, params)
        self._crash_point("created")
        await self._apply(receipt)

    async def _confirm_on(self, contract: ChannelsContract, params: Params) -> None:
        if (await self.on_chain(contract.channel, contract.channel_id(params))).phase is not Phase.INITIALISING:
            return
        if params.token != ETH:
            await self._transact(contract.approve, params.token, params.deposit_bob)
        receipt = await self._transact(contract.confirm, params)
        self._crash_point("confirmed")
        await self._apply(receipt)

    async def cooperative_close_on_chain(self, cid: bytes) -> Receipt | None:
        rec = self.channel(cid)
        if not rec.is_fully_signed_final:
            raise errors.WrongStage(f"channel 0x{cid.hex()} has no final state signed by both")
        return await self._closing(cid, self.contract, self.contract.cooperative_close, rec.params, rec.current,
                                   rec.sig_alice, rec.sig_bob)

    async def _closing(self, cid: bytes, contract: ChannelsContract, fn: Callable[..., Receipt],
                       *args: Any) -> Receipt | None:
        """Sends a transaction that moves the channel towards Closed. Both parties' nodes, and
        their watchers, may send one at the same time: losing that race is not an error."""
        rec = self._record(cid)
        if rec is None or rec.stage is Stage.CLOSED:
            return None
        try:
            receipt = await self._transact(fn, *args)
        except (errors.ChannelsWrongPhase, errors.TransactionFailed):
            if (await self.on_chain(contract.channel, cid)).phase is not Phase.CLOSED:
                raise
            self.watcher.wake()  # it applies the winner's event
            return None
        await self._apply(receipt)
        return receipt

    async def _transact(self, fn: Callable[..., Receipt], *args: Any) -> Receipt:
        return await self.on_chain(fn, self.account, *args)

    async def _apply(self, receipt: Receipt) -> None:
        """Applies a transaction's events at once; the watcher will see them again, harmlessly."""
        changed, ms_changed = {}, {}
        for event in receipt.events:
            cid = event.args.get("channelId")
            if cid in self.records:
                rec = changed.get(cid, self.records[cid])
                changed[cid] = machine.apply_event(rec, event.name, event.args)
            elif self.multistate and cid in self.multistate.records:
                ms_rec = ms_changed.get(cid, self.multistate.records[cid])
                ms_changed[cid] = msmachine.apply_event(ms_rec, event.name, event.args)
        await self.save(changed.values(), ms_records=ms_changed.values())


_MS_UPDATES = (m.NanocontractCreate, m.NanocontractCall, m.NanocontractAbsorb)
_MS_MESSAGES = (m.ProposeMultistate, *_MS_UPDATES, m.NanocontractAck)
_MS_PROPOSALS = {t.TYPE for t in _MS_UPDATES}


def _refers_to(message: m.Message) -> bytes:
    """What a refusal of `message` names: the slot of a nanocontract call, else the channel."""
    if isinstance(message, m.NanocontractCall):
        return message.nid
    return getattr(message, "channel_id", bytes(32))


def _update_message(proposal: Proposal) -> m.Update:
    s = proposal.state
    return m.Update(s.channel_id, s.version, proposal.prev, s.balance_alice, s.balance_bob, s.is_final,
                    proposal.signature)


def _info(rec: ChannelRecord) -> ChannelInfo:
    mine, peers = (0, 1) if rec.role is Role.ALICE else (1, 0)
    deposits = (rec.params.deposit_alice, rec.params.deposit_bob)
    return ChannelInfo(
        channel="0x" + rec.channel_id.hex(),
        peer=rec.peer,
        role=rec.role.name.lower(),
        stage=rec.stage.value,
        version=rec.current.version,
        final=rec.current.is_final,
        my_balance=rec.my_balance,
        peer_balance=rec.peer_balance,
        my_deposit=deposits[mine],
        peer_deposit=deposits[peers],
        token=rec.params.token,
        delta=rec.params.delta,
        deadline=rec.deadline,
        registered_version=rec.registered_version,
        my_payout=None if rec.outcome is None else rec.outcome[mine],
        peer_payout=None if rec.outcome is None else rec.outcome[peers],
        pending=len(rec.pending),
    )
