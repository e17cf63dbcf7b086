"""The node's I/O kernel: peers and message routing, the group commit, pending answers, spawned
tasks, the chain follower and transaction sending, fault hooks. It knows no channel kind; the
protocols (perun.protocols) plug into it (runtime/protocol.py)."""

from perun.runtime.faults import Faults, Killed
from perun.runtime.protocol import Duty, Protocol, Registry
from perun.runtime.runtime import Runtime

__all__ = ["Duty", "Faults", "Killed", "Protocol", "Registry", "Runtime"]
