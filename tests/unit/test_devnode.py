"""A dev node's process is always stopped, with its whole group: when it exits before it answers,
when the start is interrupted, and on stop()."""

from __future__ import annotations

import os
import sys

import pytest

from perun import errors
from perun.chain.devnode import DevNode, free_port

# A parent that starts a child and then waits, neither answering JSON-RPC: as `hardhat node`
# runs under node, the group holds more than the process Popen knows.
PARENT_AND_CHILD = [sys.executable, "-c",
                    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                    "'import time; time.sleep(60)']); time.sleep(60)"]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_node_that_exits_before_it_answers_is_an_error() -> None:
    with pytest.raises(errors.ChainError, match=r"^dev node exited with code 3$"):
        DevNode([sys.executable, "-c", "raise SystemExit(3)"], free_port(), startup_timeout=10)


def test_a_node_that_never_answers_is_stopped_with_its_children() -> None:
    started: list[DevNode] = []

    class Recorded(DevNode):
        def _wait_ready(self, timeout: float) -> None:
            started.append(self)
            super()._wait_ready(timeout)

    with pytest.raises(errors.ChainError, match=r"did not answer on port \d+ within 0.5 s"):
        Recorded(PARENT_AND_CHILD, free_port(), startup_timeout=0.5)
    assert not group_alive(started[0].process.pid)


def test_an_interrupted_start_stops_the_group() -> None:
    started: list[DevNode] = []

    class Interrupted(DevNode):
        def _wait_ready(self, timeout: float) -> None:
            started.append(self)
            raise KeyboardInterrupt  # Ctrl-C while the tests wait for the node

    with pytest.raises(KeyboardInterrupt):
        Interrupted(PARENT_AND_CHILD, free_port(), startup_timeout=10)
    assert not group_alive(started[0].process.pid)


def test_anvils_state_files_live_in_a_home_of_its_own_and_go_when_it_stops() -> None:
    """anvil writes its chain under ~/.foundry/anvil/tmp and leaves it there when it stops."""
    from perun.chain.anvil import Anvil
    from perun.chain.backend import RpcChain

    with Anvil() as anvil:
        RpcChain(anvil.url).mine(600)  # it writes the states of blocks older than the last few hundred
        written = [files for _, _, files in os.walk(anvil.home) if files]
    assert written and not os.path.exists(anvil.home)
