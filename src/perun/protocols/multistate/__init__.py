"""Multistate channels and their nanocontracts in a node (protocol.py), with hooks for the
protocols of apps built on them (hooks.py)."""

from perun.protocols.multistate.hooks import AppHooks
from perun.protocols.multistate.proposer import REPLY_TIME
from perun.protocols.multistate.protocol import Multistate
from perun.protocols.multistate.views import MultistateInfo, NanocontractInfo

__all__ = ["AppHooks", "REPLY_TIME", "Multistate", "MultistateInfo", "NanocontractInfo"]
