"""The local control interface of a running node: JSON lines over a Unix domain socket.

The socket is `<data dir>/control.sock`, mode 0600, so only the node's user can drive it.
Each request is one line, each reply one line, in order; a connection may send several.

    request  {"method": "pay", "params": {"channel": "0x…", "amount": "1000000000000000000"}}
    reply    {"ok": true, "result": {...}}
    or       {"ok": false, "error": {"type": "UnknownChannel", "message": "no channel 0x…"}}

Channel ids are 0x-prefixed hex strings; amounts are decimal strings of wei (or token units),
in requests and replies alike, since JSON numbers lose precision above 2**53. The error type is
the name of the exception class (perun.errors, or this module's ControlError and its
subclasses); `call` raises that class again on the client's side.

Methods and their params:
    info        {}                                          the node: address, host, port, chain, contracts,
                                                            the chain time it last read
    connect     {peer, host, port}                          dial a peer and remember it
    open        {peer, deposit, peer_deposit, delta}        open a channel (this node is Alice)
    pay         {channel, amount}                           pay the peer off chain
    close       {channel}                                   cooperative close (pays out at once)
    register    {channel}                                   unilateral close: register the latest state
    finalize    {channel}                                   pay out a registered state after Δ
    refund      {channel}                                   take Alice's deposit back if Bob never confirmed
    channels    {}                                          every channel
    status      {channel?}                                  one channel, or every channel
    sync        {}                                          read the chain now and do what is due
    wait        {channel, stage?, version?, registered?, timeout?}
                                                            answer once the channel (of any kind) reaches
                                                            a stage (comma-separated), a version, or a
                                                            registered version on chain (a close's)
    wait_peer   {peer, timeout?}                            answer once connected to the peer

Multistate (ledger) and virtual channels, when the node runs them (a deployment with MSContract
and the VirtualChannel app):
    ledger_open   {peer, deposit, peer_deposit, delta}      open a multistate channel (this node is Alice)
    ledgers       {}                                        every multistate channel
    virtual_open  {ledger, peer, ledger_b, deposit, peer_deposit, validity, window, fee?}
                                                            open a virtual channel to `peer` through the
                                                            peer of `ledger` (Ingrid), whose channel with
                                                            `peer` is `ledger_b`; `validity` a chain time
    virtual_close {channel}                                 close it fast through Ingrid
    virtuals      {}                                        every virtual channel
`pay` and `status` take a virtual channel's id as well, and `status` a multistate channel's.

Nanocontracts of a multistate channel (nids are 0x and 64 hex digits, `data` and `z` 0x-hex bytes):
    nanocontract_create   {channel, app, blocked_mine, blocked_peer, data}
                                                            create one of `app` (a name of the deployment's
                                                            apps) holding the app state `data` that blocks
                                                            these amounts (the node checks it is one the app
                                                            starts from); the reply has its `nid`
    nanocontract_call     {channel, nid, fun, z?}           call function `fun` (its name, or its number)
                                                            off chain with argument `z`
    nanocontract_absorb   {channel, nid}                    put a terminated one's releases back into the cash
    nanocontract_register {channel, nid}                    register the latest version on chain (its window
                                                            starts; the watcher answers and executes)
Each answers with the channel (as `status`) once the peer has countersigned, or the transaction is
mined. `wait` takes a `nid` too: then `version` is that nanocontract's, and `registered` the version
the chain holds of it; without, `registered` is the channel version a close registered on chain.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perun import errors

if TYPE_CHECKING:
    from perun.chain.payment import Receipt
    from perun.node import Node
    from perun.runtime import Protocol

log = logging.getLogger("perun.control")

SOCKET_NAME = "control.sock"
MAX_LINE = 1 << 16  # bytes in one request line
CLIENT_TIMEOUT = 300.0  # the node bounds its own waits (peer answers, confirmations); this is a backstop


class ControlError(errors.PerunError):
    """A control request could not be made or was malformed."""


class BadRequest(ControlError, errors.ValidationError):
    """A request names an unknown method, lacks a parameter, or has one of the wrong form."""


class NodeNotRunning(ControlError):
    """No node answers on the data directory's control socket."""


class InternalError(errors.PerunError):
    """The node failed unexpectedly while serving a request (its log has the traceback)."""


# How a close, finalize or refund fails when another transaction closed the channel first.

_LOCAL_ERRORS = {cls.__name__: cls for cls in (ControlError, BadRequest, NodeNotRunning, InternalError)}


def socket_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / SOCKET_NAME


# =========================================================================== server


class ControlServer:
    """Serves one node's control socket.

    `bind` claims the data directory (an flock on control.lock beside the socket, which the
    kernel releases however the process ends) and listens; it comes before the node starts,
    so two nodes never share a store. Until `start` hands it the node, requests are answered
    with "the node is starting". `close` removes the socket and releases the lock.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_suffix(".lock")
        self.node: Node | None = None
        self._lock_fd: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "info": self._info,
            "connect": self._connect,
            "open": self._open,
            "pay": self._pay,
            "close": self._close,
            "register": self._register,
            "finalize": self._finalize,
            "refund": self._refund,
            "channels": self._channels,
            "status": self._status,
            "sync": self._sync,
            "wait": self._wait,
            "wait_peer": self._wait_peer,
            "ledger_open": self._ledger_open,
            "ledgers": self._ledgers,
            "virtual_open": self._virtual_open,
            "virtual_close": self._virtual_close,
            "virtuals": self._virtuals,
            "nanocontract_create": self._nanocontract_create,
            "nanocontract_call": self._nanocontract_call,
            "nanocontract_absorb": self._nanocontract_absorb,
            "nanocontract_register": self._nanocontract_register,
        }

    async def bind(self) -> None:
        self._lock()
        try:
            self._remove_stale()
            umask = os.umask(0o177)  # the socket is never, even briefly, open to others
            try:
                self._server = await asyncio.start_unix_server(self._client, str(self.path), limit=MAX_LINE)
            except OSError as exc:
                raise ControlError(f"cannot listen on {self.path}: {exc.strerror or exc}") from None
            finally:
                os.umask(umask)
            os.chmod(self.path, 0o600)
        except BaseException:
            self._unlock()
            raise

    def _lock(self) -> None:
        import fcntl

        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ControlError(f"cannot open {self.lock_path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ControlError(f"a node is already running at {self.path.parent}") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _remove_stale(self) -> None:
        """Removes the socket a node that died left behind (this process holds the lock)."""
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self.path} exists and is not a socket: remove it if no node uses it")
        log.info("removing the stale control socket %s", self.path)
        self.path.unlink()

    async def start(self, node: Node) -> None:
        if self._server is None:
            await self.bind()
        self.node = node

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
            self.path.unlink(missing_ok=True)
        self._unlock()

    # ------------------------------------------------------------------ connections

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: the stream cannot be resynchronised
                    writer.write(_encode(_error(BadRequest(f"a request is at most {MAX_LINE} bytes"))))
                    await writer.drain()
                    return
                if not line:
                    return
                # The request runs to its end even if the client goes away meanwhile: a payment
                # or a close half done by a vanished client is still done properly.
                writer.write(_encode(await self.handle(line)))
                await writer.drain()
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            # `close` cancels the connections it stops. Ending normally, not as cancelled, spares
            # the log the traceback asyncio's stream callback (3.11) prints for a cancelled task.
            pass
        finally:
            writer.close()
            self._clients.discard(task)

    async def handle(self, line: bytes | str) -> dict[str, Any]:
        """One request line in, one reply object out; never raises (but for cancellation)."""
        method = "?"
        try:
            try:
                request = json.loads(line)
            except ValueError:
                raise BadRequest("a request is one line of JSON") from None
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                raise BadRequest('a request is {"method": NAME, "params": {...}}')
            method = request["method"]
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise BadRequest("params must be a JSON object")
            handler = self._methods.get(method)
            if handler is None:
                raise BadRequest(f"unknown method {method!r}; known: {', '.join(sorted(self._methods))}")
            result = await handler(dict(params))
        except errors.PerunError as exc:
            log.info("control: %s failed: %s: %s", method, type(exc).__name__, exc)
            return _error(exc)
        except Exception as exc:
            log.exception("control: %s failed unexpectedly", method)
            return _error(InternalError(f"internal error in the node: {type(exc).__name__}: {exc}"))
        log.debug("control: %s done", method)
        return {"ok": True, "result": result}

    # ------------------------------------------------------------------ methods

    async def _info(self, params: dict[str, Any]) -> Any:
        _take(params)
        node = self._node()
        protocols = node.runtime.registry.protocols
        return {
            "address": node.address,
            "host": node.host,
            "port": node.port,
            "chain_id": node.chain.chain_id,
            **{key: value for p in protocols for key, value in p.about().items()},
            "chain_time": node.watcher.chain_time,
            "peers": sorted(peer for peer, conn in node.peers.items() if not conn.closed),
            "channels": {p.kind: len(p.records) for p in protocols},
        }

    async def _connect(self, params: dict[str, Any]) -> Any:
        peer, host, port = _take(params, "peer", "host", "port")
        peer, host, port = _address(peer, "peer"), _text(host, "host"), _port(port)
        await self._node().connect(peer, host, port)
        return {"peer": peer, "host": host, "port": port}

    async def _open(self, params: dict[str, Any]) -> Any:
        cid = await self._node().open(*_open_args(params))
        return self._channel_json(cid)

    async def _pay(self, params: dict[str, Any]) -> Any:
        channel, amount = _take(params, "channel", "amount")
        cid, amount = _channel_id(channel), _amount(amount, "amount")
        state = await self._node().pay(cid, amount)
        return {**self._node().describe(cid), "paid_version": state.version}

    async def _close(self, params: dict[str, Any]) -> Any:
        """The cooperative close of a channel of any kind (a virtual one's is its fast close)."""
        (channel,) = _take(params, "channel")
        cid = _channel_id(channel)
        node = self._node()
        holder = node.runtime.registry.holder(cid)
        if holder is None:
            raise errors.UnknownChannel(f"no channel 0x{cid.hex()}")
        await holder.cooperative_close(cid)
        return node.describe(cid)

    async def _register(self, params: dict[str, Any]) -> Any:
        (channel,) = _take(params, "channel")
        cid = _channel_id(channel)
        receipt = await self._node().register(cid)
        return {**self._channel_json(cid), "transaction": _transaction(receipt)}

    async def _finalize(self, params: dict[str, Any]) -> Any:
        return await self._settle(params, "finalize")

    async def _refund(self, params: dict[str, Any]) -> Any:
        return await self._settle(params, "refund")

    async def _settle(self, params: dict[str, Any], action: str) -> Any:
        """finalize or refund; no transaction if another one (the peer's, or this node's
        watcher's, which does both as soon as they are due) closed the channel first."""
        (channel,) = _take(params, "channel")
        cid = _channel_id(channel)
        node = self._node()
        receipt = await getattr(node, action)(cid)
        if receipt is None:
            await node.sync()
        return {**self._channel_json(cid), "transaction": _transaction(receipt)}

    async def _wait_peer(self, params: dict[str, Any]) -> Any:
        peer, timeout = _take(params, "peer", optional=("timeout",))
        await self._node().wait_connected(_address(peer, "peer"), float(_int(timeout, "timeout")) if timeout else 30.0)
        return None

    async def _wait(self, params: dict[str, Any]) -> Any:
        """Answers when the channel (of any kind) reaches one of `stage` (comma-separated), or
        its version reaches `version`; PeerTimeout after `timeout` seconds (default 30)."""
        channel, stage, version, registered, nid, timeout = _take(
            params, "channel", optional=("stage", "version", "registered", "nid", "timeout"))
        cid = _channel_id(channel)
        stages = set(_text(stage, "stage").split(",")) if stage is not None else None
        least = _int(version, "version") if version is not None else None
        on_chain = _int(registered, "registered") if registered is not None else None
        slot = _bytes32(nid, "nid") if nid is not None else None
        seconds = float(_int(timeout, "timeout")) if timeout is not None else 30.0
        node = self._node()
        holder = node.runtime.registry.holder(cid)
        if holder is None:
            raise errors.UnknownChannel(f"no channel 0x{cid.hex()}")
        version_of, registered_of = holder.version_of, holder.registered_of
        if slot is not None:
            if holder is not node.runtime.registry.get("multistate"):
                raise BadRequest(f"nid names a nanocontract, and channel 0x{cid.hex()} is a {holder.kind} channel")
            version_of = lambda rec: holder.nanocontract_version(rec, slot)  # noqa: E731
            registered_of = lambda rec: holder.nanocontract_registered(rec, slot)  # noqa: E731
        def reached(rec) -> bool:
            if on_chain is not None and ((known := registered_of(rec)) is None or known < on_chain):
                return False
            return (stages is None or holder.stage_of(rec) in stages) and (least is None or version_of(rec) >= least)
        await node.wait_for(cid, reached, seconds)
        return node.describe(cid)

    async def _channels(self, params: dict[str, Any]) -> Any:
        _take(params)
        return self._listed("payment")

    async def _status(self, params: dict[str, Any]) -> Any:
        """One channel of any kind, or every channel of every kind."""
        (channel,) = _take(params, optional=("channel",))
        node = self._node()
        if channel is None:
            return [item for p in node.runtime.registry.protocols for item in self._listed(p.kind)]
        return node.describe(_channel_id(channel))

    async def _sync(self, params: dict[str, Any]) -> Any:
        _take(params)
        await self._node().sync()
        return None

    async def _ledger_open(self, params: dict[str, Any]) -> Any:
        cid = await self._protocol("multistate").open(*_open_args(params))
        return self._node().describe(cid)

    async def _ledgers(self, params: dict[str, Any]) -> Any:
        _take(params)
        return self._listed("multistate")

    async def _virtual_open(self, params: dict[str, Any]) -> Any:
        ledger, peer, ledger_b, deposit, peer_deposit, validity, window, fee = _take(
            params, "ledger", "peer", "ledger_b", "deposit", "peer_deposit", "validity", "window", optional=("fee",))
        gid = await self._protocol("virtual").open(
            _channel_id(ledger), _address(peer, "peer"), _channel_id(ledger_b), _amount(deposit, "deposit"),
            _amount(peer_deposit, "peer_deposit"), _int(validity, "validity"), _int(window, "window"),
            _amount(fee, "fee") if fee is not None else 0)
        return self._node().describe(gid)

    async def _virtual_close(self, params: dict[str, Any]) -> Any:
        (channel,) = _take(params, "channel")
        gid = _channel_id(channel)
        await self._protocol("virtual").close(gid)
        return self._node().describe(gid)

    async def _virtuals(self, params: dict[str, Any]) -> Any:
        _take(params)
        return self._listed("virtual")

    async def _nanocontract_create(self, params: dict[str, Any]) -> Any:
        from perun.core.apps import AppState
        from perun.core.machine import Role

        channel, app, blocked_mine, blocked_peer, data = _take(
            params, "channel", "app", "blocked_mine", "blocked_peer", "data")
        cid, app, data = _channel_id(channel), _text(app, "app"), _hex(data, "data")
        mine, peer = _amount(blocked_mine, "blocked_mine"), _amount(blocked_peer, "blocked_peer")
        ms = self._protocol("multistate")
        if app not in ms.app_address:
            raise BadRequest(f"app must be one of this node's apps ({', '.join(sorted(ms.app_address))}), "
                             f"got {_shown(app)}")
        role = ms.channel(cid).role
        blocked = (mine, peer) if role is Role.ALICE else (peer, mine)
        nid = await ms.create(cid, app, AppState(*blocked, 0, 0, data))
        return {**self._node().describe(cid), "nid": "0x" + nid.hex()}

    async def _nanocontract_call(self, params: dict[str, Any]) -> Any:
        channel, nid, fun, z = _take(params, "channel", "nid", "fun", optional=("z",))
        cid, nid = _channel_id(channel), _bytes32(nid, "nid")
        z = _hex(z, "z") if z is not None else b""
        if not (isinstance(fun, str) and fun) and not (isinstance(fun, int) and not isinstance(fun, bool)):
            raise BadRequest(f"fun must be a function's name or number, got {_shown(fun)}")
        ms = self._protocol("multistate")
        app = ms.app_of(ms.channel(cid).nanocontract(nid).state.app)
        if isinstance(fun, str) and fun in app.functions:
            fun = app.functions[fun]
        elif isinstance(fun, str) or not 0 <= fun <= 255:
            raise BadRequest(f"fun must be one of {app.name}'s functions ({', '.join(app.functions)}) or a "
                             f"number 0..255, got {_shown(fun)}")
        await ms.call(cid, nid, fun, z)
        return self._node().describe(cid)

    async def _nanocontract_absorb(self, params: dict[str, Any]) -> Any:
        channel, nid = _take(params, "channel", "nid")
        cid, nid = _channel_id(channel), _bytes32(nid, "nid")
        await self._protocol("multistate").absorb(cid, nid)
        return self._node().describe(cid)

    async def _nanocontract_register(self, params: dict[str, Any]) -> Any:
        channel, nid = _take(params, "channel", "nid")
        cid, nid = _channel_id(channel), _bytes32(nid, "nid")
        receipt = await self._protocol("multistate").register(cid, nid)
        return {**self._node().describe(cid), "transaction": _transaction(receipt)}

    # ------------------------------------------------------------------ views

    def _node(self) -> Node:
        if self.node is None:
            raise ControlError("the node is starting")
        return self.node

    def _protocol(self, kind: str) -> Any:
        """The node's protocol of `kind`; ControlError if it does not run that kind."""
        registry = self._node().runtime.registry
        protocol = registry.get(kind)
        if protocol is None:
            missing = next((k for k in _NEEDS.get(kind, ()) if registry.get(k) is None), kind)
            raise ControlError(f"this node runs no {missing} channels ({_MISSING[missing]})")
        return protocol

    def _listed(self, kind: str) -> list[dict[str, Any]]:
        """Every channel of `kind`, described by its protocol (none if the node does not run it)."""
        protocol: Protocol | None = self._node().runtime.registry.get(kind)
        return [protocol.describe(cid) for cid in list(protocol.records)] if protocol is not None else []

    def _channel_json(self, cid: bytes) -> dict[str, Any]:
        return self._node().payment.describe(cid)


# What a node lacks that runs no channels of a kind, and the kinds a kind is built on.
_MISSING = {"multistate": "start it with a deployment file that has MSContract",
            "virtual": "its deployment has no VirtualChannel app"}
_NEEDS = {"virtual": ("multistate",)}


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def _error(exc: errors.PerunError) -> dict[str, Any]:
    return {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}}


def _transaction(receipt: Receipt | None) -> dict[str, Any] | None:
    if receipt is None:
        return None
    tx = receipt.transaction
    return {"hash": "0x" + bytes(tx.receipt["transactionHash"]).hex(), "gas_used": tx.gas_used,
            "block": tx.block_number}


# ------------------------------------------------------------------ parameter checks


def _take(params: dict[str, Any], *required: str, optional: tuple[str, ...] = ()) -> list[Any]:
    missing = [name for name in required if name not in params]
    if missing:
        raise BadRequest(f"missing parameter {', '.join(missing)}")
    unknown = sorted(set(params) - set(required) - set(optional))
    if unknown:
        raise BadRequest(f"unknown parameter {', '.join(unknown)}")
    return [params[name] for name in required] + [params.get(name) for name in optional]


def _open_args(params: dict[str, Any]) -> tuple[str, int, int, int]:
    """(peer, deposit, peer_deposit, delta) of an open request, checked."""
    peer, deposit, peer_deposit, delta = _take(params, "peer", "deposit", "peer_deposit", "delta")
    return (_address(peer, "peer"), _amount(deposit, "deposit"), _amount(peer_deposit, "peer_deposit"),
            _int(delta, "delta"))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string")
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,78}", value):  # 78 digits hold any uint256
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise BadRequest(f"{name} must be a non-negative integer, got {_shown(value)}")


def _amount(value: Any, name: str) -> int:
    """A decimal string of wei (plain JSON integers are accepted too)."""
    return _int(value, name)


def _port(value: Any) -> int:
    port = _int(value, "port")
    if not 0 < port < 65536:
        raise BadRequest(f"port must be in 1..65535, got {port}")
    return port


def _address(value: Any, name: str) -> str:
    from eth_utils import is_hex_address, to_checksum_address

    if not isinstance(value, str) or not is_hex_address(value):
        raise BadRequest(f"{name} must be a 0x-prefixed 20-byte hex address, got {_shown(value)}")
    return to_checksum_address(value)


def _channel_id(value: Any) -> bytes:
    if isinstance(value, str) and value[:2].lower() == "0x" and len(value) == 66:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise BadRequest(f"a channel id is 0x and 64 hex digits, got {_shown(value)}")


def _bytes32(value: Any, name: str) -> bytes:
    if isinstance(value, str) and value[:2].lower() == "0x" and len(value) == 66:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise BadRequest(f"{name} must be 0x and 64 hex digits, got {_shown(value)}")


def _hex(value: Any, name: str) -> bytes:
    """0x-prefixed hex bytes, at most what a message carries (MAX_BYTES)."""
    from perun.wire.messages import MAX_BYTES

    if isinstance(value, str) and value[:2].lower() == "0x" and len(value) % 2 == 0:
        try:
            data = bytes.fromhex(value[2:])
        except ValueError:
            pass
        else:
            if len(data) <= MAX_BYTES:
                return data
            raise BadRequest(f"{name} must be at most {MAX_BYTES} bytes, got {len(data)}")
    raise BadRequest(f"{name} must be 0x and an even number of hex digits, got {_shown(value)}")


# =========================================================================== client


def call(data_dir: Path | str, method: str, params: dict[str, Any] | None = None, *,
         timeout: float = CLIENT_TIMEOUT) -> Any:
    """Sends one request to the node at `data_dir` and returns its result, or raises the
    error the node replied with (the PerunError subclass it names, else PerunError)."""
    path = socket_path(data_dir)
    request = json.dumps({"method": method, "params": params or {}}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NodeNotRunning(f"no node is running at {data_dir} (nothing listens on {path})") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the node at {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(request)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise ControlError("the node closed the connection without answering (did it stop?)")
                reply += chunk
        except TimeoutError:
            raise ControlError(f"the node did not answer {method} within {timeout:g} s") from None
        except OSError as exc:
            raise ControlError(f"lost the connection to the node: {exc.strerror or exc}") from None
    try:
        reply_obj = json.loads(reply)
        ok = reply_obj["ok"]
    except (ValueError, KeyError, TypeError):
        raise ControlError("the node's reply is not a control reply") from None
    if ok:
        return reply_obj.get("result")
    error = reply_obj.get("error") or {}
    raise remote_error(str(error.get("type", "PerunError")), str(error.get("message", "unknown error")))


def remote_error(type_name: str, message: str) -> errors.PerunError:
    """An exception of the PerunError subclass called `type_name`, saying `message`."""
    cls = getattr(errors, type_name, None) or _LOCAL_ERRORS.get(type_name)
    if not (isinstance(cls, type) and issubclass(cls, errors.PerunError)):
        cls = errors.PerunError
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)  # not cls.__init__: some take structured arguments
    if isinstance(exc, errors.ContractRejected):
        exc.name, exc.fields = type_name, {}
    if isinstance(exc, errors.PeerRejected):
        exc.code, exc.reason = None, message
    exc.remote_type = type_name
    return exc
