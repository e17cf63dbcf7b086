"""anvil, the local testnet, started from node_modules on a free port and always stopped."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import time
from pathlib import Path

from perun import errors
from perun.chain.backend import RpcChain

ROOT = Path(__file__).resolve().parents[3]
ANVIL_CHAIN_ID = 31337


def anvil_binary() -> Path:
    """$PERUN_ANVIL if set, else the native anvil npm installed (@foundry-rs/anvil-<os>-<arch>).

    package.json installs the Linux x86-64 build, the one the registry here offers.
    """
    if os.environ.get("PERUN_ANVIL"):
        return Path(os.environ["PERUN_ANVIL"])
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    path = ROOT / "node_modules" / "@foundry-rs" / f"anvil-{platform.system().lower()}-{arch}" / "bin" / "anvil"
    if not path.exists():
        raise errors.ChainError(
            f"anvil is not installed at {path}: run `npm ci` (the Makefile does), "
            "or set PERUN_ANVIL to an anvil binary"
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Anvil:
    """A running anvil process. Use as a context manager, or call stop()."""

    def __init__(self, port: int | None = None, block_time: int | None = None, startup_timeout: float = 30,
                 genesis_time: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if block_time:
            args += ["--block-time", str(block_time)]
        if genesis_time is not None:
            args += ["--timestamp", str(genesis_time)]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise errors.ChainError(f"anvil exited with code {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise errors.ChainError(f"anvil did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AnvilChain(RpcChain):
    """An RpcChain on an anvil that it started itself and stops on close()."""

    def __init__(self, port: int | None = None) -> None:
        self.anvil = Anvil(port)
        try:
            super().__init__(self.anvil.url)
        except BaseException:
            self.anvil.stop()
            raise

    def close(self) -> None:
        self.anvil.stop()
