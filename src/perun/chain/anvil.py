"""anvil, the local testnet, started from node_modules on a free port and always stopped."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from perun import errors
from perun.chain.backend import RpcChain
from perun.chain.devnode import DevNode, free_port

__all__ = ["ANVIL_CHAIN_ID", "Anvil", "AnvilChain", "anvil_binary", "free_port"]

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


class Anvil(DevNode):
    """A running anvil process. Use as a context manager, or call stop()."""

    name = "anvil"

    def __init__(self, port: int | None = None, block_time: int | None = None, startup_timeout: float = 30,
                 genesis_time: int | None = None, options: Sequence[str] = ()) -> None:
        port = port or free_port()
        args = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port), "--silent", *options]
        if block_time:
            args += ["--block-time", str(block_time)]
        if genesis_time is not None:
            args += ["--timestamp", str(genesis_time)]
        # anvil keeps its state under ~/.foundry/anvil/tmp and leaves it there when it stops (some
        # MB per run here, about 10 GB after 10,000 channels): a home of its own, removed on stop.
        self.home = tempfile.mkdtemp(prefix="perun-anvil-")
        try:
            super().__init__(args, port, startup_timeout, env={**os.environ, "HOME": self.home})
        except BaseException:
            shutil.rmtree(self.home, ignore_errors=True)
            raise

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Anvil:
        return self


class AnvilChain(RpcChain):
    """An RpcChain on an anvil that it started itself and stops on close(). `balance`: the ether
    of each dev account (anvil's default, 10,000 ETH, if None)."""

    def __init__(self, port: int | None = None, balance: int | None = None) -> None:
        self.anvil = Anvil(port, options=("--balance", str(balance)) if balance is not None else ())
        try:
            super().__init__(self.anvil.url)
        except BaseException:
            self.anvil.stop()
            raise

    def close(self) -> None:
        self.anvil.stop()
