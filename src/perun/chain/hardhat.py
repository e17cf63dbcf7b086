"""Hardhat's node, a second local dev node besides anvil (an independent implementation: EDR),
started from tools/hardhat on a free port and always stopped. `make hardhat` installs it.

Hardhat 2, pinned in tools/hardhat/package-lock.json: Hardhat 3 needs Node 22, and the
machines here have Node 20. The node's settings are in tools/hardhat/hardhat.config.js.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from perun import errors
from perun.chain.backend import RpcChain
from perun.chain.devnode import DevNode, free_port

HARDHAT_DIR = Path(__file__).resolve().parents[3] / "tools" / "hardhat"


def hardhat_command() -> list[str]:
    """node and Hardhat's command-line entry, as installed by `make hardhat`."""
    cli = HARDHAT_DIR / "node_modules" / "hardhat" / "internal" / "cli" / "cli.js"
    if not cli.exists():
        raise errors.ChainError(f"Hardhat is not installed at {cli}: run `make hardhat`")
    node = shutil.which("node")
    if node is None:
        raise errors.ChainError("Hardhat needs Node.js: no `node` on PATH")
    return [node, str(cli)]


class Hardhat(DevNode):
    """A running `hardhat node`. Use as a context manager, or call stop(). The same options as
    Anvil: a block every `block_time` seconds besides those that transactions mine, and a
    genesis block at `genesis_time`."""

    name = "hardhat"

    def __init__(self, port: int | None = None, block_time: int | None = None, startup_timeout: float = 60,
                 genesis_time: int | None = None) -> None:
        port = port or free_port()
        args = [*hardhat_command(), "node", "--hostname", "127.0.0.1", "--port", str(port)]
        env = {**os.environ,
               # Not interactive: never ask about telemetry (its stdin is /dev/null anyway).
               "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",
               "PERUN_HARDHAT_BLOCK_TIME": str(block_time or 0),
               "PERUN_HARDHAT_GENESIS": "" if genesis_time is None else str(genesis_time)}
        # Its stdout lists the dev accounts and their keys: nothing a test reads.
        super().__init__(args, port, startup_timeout, cwd=HARDHAT_DIR, env=env, quiet=True)

    def __enter__(self) -> Hardhat:
        return self


class HardhatChain(RpcChain):
    """An RpcChain on a Hardhat node that it started itself and stops on close()."""

    def __init__(self, port: int | None = None) -> None:
        self.hardhat = Hardhat(port)
        try:
            super().__init__(self.hardhat.url)
        except BaseException:
            self.hardhat.stop()
            raise

    def close(self) -> None:
        self.hardhat.stop()
