"""A local dev node (anvil, Hardhat's node) as a child process: on a port of its own, ready once it
answers JSON-RPC, and always stopped with its whole process group."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from perun import errors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]  # (an AF_INET socket's name is (host, port))
        return port


class DevNode:
    """A running dev node started with `args`, listening on 127.0.0.1:`port`. Use as a context
    manager, or call stop(). Its own session, so that a Ctrl-C meant for the tests does not kill
    it midway; stop() ends the whole group, whatever the node started."""

    name = "dev node"

    def __init__(self, args: Sequence[str], port: int, startup_timeout: float, *, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None, quiet: bool = False) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._stopped = False
        self.process = subprocess.Popen(list(args), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL if quiet else None,
                                        cwd=cwd, env=None if env is None else dict(env), start_new_session=True)
        try:
            self._wait_ready(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        """Until eth_chainId answers: a listening socket alone may come before the node serves.
        A process that starts says so only on its port, hence the short polls."""
        request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise errors.ChainError(f"{self.name} exited with code {self.process.returncode}")
            try:
                post = urllib.request.Request(self.url, request, {"Content-Type": "application/json"})
                with opener.open(post, timeout=2) as response:
                    if "result" in json.load(response):
                        return
            except (OSError, ValueError):  # not listening yet, or not serving yet
                pass
            time.sleep(0.05)
        raise errors.ChainError(f"{self.name} did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        """Ends the whole group: SIGTERM, SIGKILL for what is left after 5 s."""
        if self._stopped:  # once only: the group's id may since belong to another process
            return
        self._stopped = True
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait()
        # Other members, if any, are not our children: no exit of theirs to wait for, so look
        # until the group is empty (they had the SIGTERM too, and usually are gone by now).
        for last_signal in (signal.SIGKILL, None):
            deadline = time.monotonic() + 5
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.01)
            if not _group_alive(pgid):
                return
            if last_signal is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, last_signal)
        raise errors.ChainError(f"{self.name}'s process group {pgid} outlived SIGKILL")

    def __enter__(self) -> DevNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal is a member all the same
        return True
    return True
