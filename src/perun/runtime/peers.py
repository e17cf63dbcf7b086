"""The node's peers: listening, dialling and redialling, the handshake, each connection's loop
that reads messages and hands them to the protocol that owns their type, and the limits a
connection is held to (perun.wire.limits).

A message a protocol refuses (a ValidationError) is answered with an Error that names what it
refuses; nothing else changes. An Error from the peer goes to the protocol that sent what it
refuses. Outgoing messages wait for the group commit (Runtime.after_commit), so the peer never
sees a signature this node has not stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from eth_utils import to_checksum_address

from perun import errors
from perun.core.channel import checksum
from perun.wire import messages as m
from perun.wire import noise
from perun.wire.transport import Connection, handshake

if TYPE_CHECKING:
    from perun.runtime.runtime import Runtime

log = logging.getLogger("perun.node")


class Peers:
    def __init__(self, runtime: Runtime, identity: tuple[int, str], host: str, port: int) -> None:
        self.runtime = runtime
        self.identity = identity
        self.host, self.port = host, port
        # This run's Noise static key: the Ethereum key is the identity, and the handshake binds the two.
        self._static = noise.private_key()
        self.connections: dict[str, Connection] = {}
        self.handling = 0  # messages being handled now
        self._inbound: dict[str, int] = {}  # remote IP address -> inbound connections open from it
        self._inbound_of: dict[Connection, str] = {}
        self._over: set[str] = set()  # addresses told (in the log) that they are over a limit
        self._connected: dict[str, asyncio.Event] = {}
        self._dial: dict[str, tuple[str, int]] = runtime.store.peers()
        self._server: asyncio.Server | None = None

    # ------------------------------------------------------------------ lifecycle

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def redial_all(self) -> None:
        """Dials every peer the store remembers (after a restart)."""
        for peer, (host, port) in self._dial.items():
            self.runtime.spawn(self._redial(peer, host, port), lasting=True)

    def close(self) -> None:
        if self._server:
            self._server.close()
        self.close_connections()

    def close_connections(self) -> None:
        for conn in list(self.connections.values()):
            conn.close()

    def abort(self) -> None:
        """The peers see a reset, as when the process dies."""
        for conn in list(self.connections.values()):
            conn.abort()
        if self._server:
            self._server.close()

    async def wait_closed(self) -> None:
        if self._server:
            await self._server.wait_closed()

    # ------------------------------------------------------------------ connections

    def connection(self, peer: str) -> Connection:
        """The open connection to `peer`; PeerUnavailable if there is none."""
        conn = self.connections.get(checksum(peer))
        if conn is None or conn.closed:
            raise errors.PeerUnavailable(f"not connected to {peer}: connect first")
        return conn

    def remembers(self, peer: str) -> bool:
        """Whether the node knows where to dial `peer` (it connected to it once)."""
        return checksum(peer) in self._dial

    def reconnecting(self, peer: str) -> bool:
        """Whether the node is redialling `peer`: it remembers its address and has no connection."""
        return self.remembers(peer) and self.get(checksum(peer)) is None

    def get(self, peer: str) -> Connection | None:
        """The open connection to `peer`, if any."""
        conn = self.connections.get(peer)
        return conn if conn is not None and not conn.closed else None

    def send(self, conn: Connection, message: m.Message) -> None:
        """Sends after every change staged so far is durable, preserving order."""
        def send() -> None:
            if not conn.closed:
                conn.send(message)
        self.runtime.after_commit(send)

    async def connect(self, peer: str, host: str, port: int) -> None:
        """Dials `peer` at host:port, proves our key, checks theirs, and remembers the address
        so the node redials it after a restart."""
        peer = to_checksum_address(peer)
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)  # not asyncio's "Connect call failed (...)"
            raise errors.PeerUnavailable(f"cannot reach {peer} at {host}:{port}: {reason}") from exc
        try:
            conn = await handshake(reader, writer, self.runtime.key, *self.identity, expected_peer=peer,
                                   static=self._static, limits=self.runtime.limits)
        except BaseException:
            writer.close()
            raise
        self._dial[peer] = (host, port)
        await self.runtime.save(peers=[(peer, host, port)])
        self._adopt(conn)

    def keep(self, peer: str, host: str, port: int) -> None:
        """Dials `peer` at host:port in the background until connected, and again whenever the
        connection is lost (a watchtower the node hands its states to)."""
        peer = to_checksum_address(peer)
        self._dial[peer] = (host, port)
        if self.get(peer) is None:
            self.runtime.spawn(self._redial(peer, host, port), lasting=True)

    async def wait_connected(self, peer: str, timeout: float = 30.0) -> None:
        """Waits until a connection to `peer` is up (after a restart, the dialer redials)."""
        event = self._connected.setdefault(to_checksum_address(peer), asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError as exc:
            raise errors.PeerTimeout(f"not connected to {peer} within {timeout} s") from exc

    async def _redial(self, peer: str, host: str, port: int) -> None:
        delay = 0.05
        while peer not in self.connections:
            try:
                await self.connect(peer, host, port)
                return
            except (errors.PeerUnavailable, errors.HandshakeFailed) as exc:
                # Python 3.11's asyncio.wait_for (in the handshake) raises the failure it raced
                # with a cancellation and drops the cancellation: stop() would wait forever.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc
                log.info("%s: redial %s failed (%s); retrying in %.1f s", self.runtime.name, peer, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = (writer.get_extra_info("peername") or ("unknown",))[0]
        over = self._over_limit(address)
        if over:
            if address not in self._over:
                self._over.add(address)
                log.warning("%s: refusing connections from %s: %s (logged once while it lasts)",
                            self.runtime.name, address, over)
            writer.transport.abort()
            return
        self._inbound[address] = self._inbound.get(address, 0) + 1
        try:
            conn = await handshake(reader, writer, self.runtime.key, *self.identity, static=self._static,
                                   limits=self.runtime.limits)
        except errors.PerunError as exc:
            log.warning("%s: refused a connection from %s: %s", self.runtime.name, address, exc)
            writer.close()
            self._release(address)
            return
        except BaseException:
            self._release(address)
            raise
        self._inbound_of[conn] = address
        self._adopt(conn)

    def _over_limit(self, address: str) -> str | None:
        """Why a new inbound connection from `address` is refused, if it is."""
        limits = self.runtime.limits
        if self._inbound.get(address, 0) >= limits.connections_per_address:
            return f"{limits.connections_per_address} connections from one address are open (the limit)"
        if sum(self._inbound.values()) >= limits.connections:
            return f"{limits.connections} inbound connections are open (the limit)"
        return None

    def _release(self, address: str) -> None:
        left = self._inbound[address] - 1
        if left:
            self._inbound[address] = left
        else:
            del self._inbound[address]
        if self._over:  # an address back below the limits: its next refusal is news
            self._over = {a for a in self._over if self._over_limit(a) is not None}

    def _adopt(self, conn: Connection) -> None:
        old = self.connections.get(conn.peer)
        if old:
            old.close()
        self.connections[conn.peer] = conn
        self._connected.setdefault(conn.peer, asyncio.Event()).set()
        log.info("%s: connected to %s", self.runtime.name, conn.peer)
        self.runtime.spawn(self._serve(conn), lasting=True)
        for protocol in self.runtime.registry.protocols:
            protocol.connected(conn)
        self.runtime.progressed()

    # ------------------------------------------------------------------ messages

    async def _serve(self, conn: Connection) -> None:
        try:
            while True:
                try:
                    message = await conn.read()
                except (errors.MessageTooLarge, errors.RateLimited) as exc:
                    log.warning("%s: disconnected %s: %s", self.runtime.name, conn.peer, exc)
                    conn.send(self._frame_error(exc))  # at once: the connection closes next
                    await conn.linger()
                    return
                except errors.FrameRejected as exc:  # nothing more can be read, or said
                    log.warning("%s: disconnected %s: %s", self.runtime.name, conn.peer, exc)
                    return
                except errors.MalformedMessage as exc:
                    self._refuse_frame(conn, exc)
                    self.runtime.progressed()
                    continue
                self.handling += 1
                try:
                    await self._handle(conn, message)
                    await conn.drain()
                finally:
                    self.handling -= 1
                    self.runtime.progressed()
        except errors.PeerUnavailable:
            pass
        finally:
            self._lost(conn)

    async def _handle(self, conn: Connection, message: m.Message) -> None:
        registry = self.runtime.registry
        if isinstance(message, m.Error):
            self._on_error(conn, message)
            return
        protocol = None
        try:
            protocol = registry.route(message)
            await protocol.receive(conn, message)
        except errors.ValidationError as exc:
            self.refuse(conn, message, exc, protocol)
        except errors.StoreError:
            raise
        except Exception as exc:  # a bug: say so, keep serving (nothing was changed)
            log.exception("%s: handling %s failed", self.runtime.name, type(message).__name__)
            self.refuse(conn, message, errors.PerunError(f"internal error: {type(exc).__name__}"), protocol)

    def refuse(self, conn: Connection, message: m.Message, exc: errors.PerunError, protocol=None) -> None:
        """Answers `message` with an Error saying why it was refused (`protocol` names the slot)."""
        protocol = protocol or self._owner(message)
        if protocol is not None:
            error = protocol.refusal(conn, message, exc)
        else:
            error = m.Error(m.code_of(exc), message.TYPE, getattr(message, "channel_id", bytes(32)),
                            getattr(message, "version", 0), 0, str(exc))
        log.warning("%s: refused %s from %s: %s: %s", self.runtime.name, type(message).__name__, conn.peer,
                    m.ErrorCode(error.code).name, exc)
        self.send(conn, error)

    def _owner(self, message: m.Message):
        try:
            return self.runtime.registry.route(message)
        except errors.PerunError:
            return None

    def _refuse_frame(self, conn: Connection, exc: errors.PerunError) -> None:
        """A message that does not decode: refused as type 0, about no channel."""
        log.warning("%s: refused a frame from %s: %s", self.runtime.name, conn.peer, exc)
        self.send(conn, self._frame_error(exc))

    @staticmethod
    def _frame_error(exc: errors.PerunError) -> m.Error:
        return m.Error(m.code_of(exc), 0, bytes(32), 0, 0, str(exc))

    def _on_error(self, conn: Connection, msg: m.Error) -> None:
        try:
            code = m.ErrorCode(msg.code)
        except ValueError:
            code = m.ErrorCode.INTERNAL
        log.warning("%s: %s refused our %s: %s: %s", self.runtime.name, conn.peer,
                    m.MESSAGES.get(msg.ref_type, m.Message).__name__, code.name, msg.reason)
        protocol = self.runtime.registry.route_error(msg)
        if protocol is not None:
            protocol.refused(conn, msg, errors.PeerRejected(code, msg.reason))

    def _lost(self, conn: Connection) -> None:
        conn.close()
        address = self._inbound_of.pop(conn, None)
        if address is not None:
            self._release(address)
        if self.connections.get(conn.peer) is not conn:
            return
        del self.connections[conn.peer]
        self._connected[conn.peer].clear()
        self.runtime.progressed()
        log.info("%s: %s disconnected", self.runtime.name, conn.peer)
        if conn.peer in self._dial and self.serving:
            self.runtime.spawn(self._redial(conn.peer, *self._dial[conn.peer]), lasting=True)
