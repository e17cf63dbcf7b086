"""The server side of a node's control socket: the data directory's lock, the Unix socket,
and one JSON line in, one out, for each request (the methods are perun.control.methods)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perun import errors
from perun.control.explain import context, explain
from perun.control.methods import METHOD_NAMES, Methods
from perun.control.protocol import MAX_LINE, BadRequest, ControlError, InternalError, encode, failure

if TYPE_CHECKING:
    from perun.node import Node, Watchtower

log = logging.getLogger("perun.control")


class ControlServer:
    """Serves one node's control socket (or a watchtower's: `methods` names the methods it
    answers, perun.control.methods.TOWER_METHOD_NAMES).

    `bind` claims the data directory (an flock on control.lock beside the socket, which the
    kernel releases however the process ends) and listens; it comes before the node starts,
    so two nodes never share a store. Until `start` hands it the node, requests are answered
    with "the node is starting". `close` removes the socket and releases the lock.
    """

    def __init__(self, path: Path | str, methods: tuple[str, ...] = METHOD_NAMES) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_suffix(".lock")
        self.node: Node | Watchtower | None = None
        self._lock_fd: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()
        self._methods = Methods(self._node).table(methods)

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

    async def start(self, node: Node | Watchtower) -> None:
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
        assert task is not None  # (a client's handler runs as a task of its own)
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: the stream cannot be resynchronised
                    too_long = BadRequest(f"a request is at most {MAX_LINE} bytes")
                    writer.write(encode(failure(too_long, explain(too_long))))
                    await writer.drain()
                    return
                if not line:
                    return
                # The request runs to its end even if the client goes away meanwhile: a payment
                # or a close half done by a vanished client is still done properly.
                writer.write(encode(await self.handle(line)))
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
        params: dict[str, Any] = {}
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
            if handler is None and method in METHOD_NAMES:  # a node's, on a watchtower's socket
                raise BadRequest(f"this is a watchtower: it answers {', '.join(sorted(self._methods))}, not "
                                 f"{method}; give the --data of a node for that")
            if handler is None:
                raise BadRequest(f"unknown method {method!r}; known: {', '.join(sorted(self._methods))}")
            result = await handler(dict(params))
        except errors.PerunError as exc:
            log.info("control: %s failed: %s: %s", method, type(exc).__name__, exc)
            return failure(exc, explain(exc, context(self.node, method, params)))
        except Exception as exc:
            log.exception("control: %s failed unexpectedly", method)
            bug = InternalError(f"internal error in the node: {type(exc).__name__}: {exc}")
            return failure(bug, explain(bug))
        log.debug("control: %s done", method)
        return {"ok": True, "result": result}

    def _node(self) -> Node:
        if self.node is None:
            raise ControlError("the node is starting")
        return self.node  # type: ignore[return-value]  # a Watchtower answers only the methods it has
