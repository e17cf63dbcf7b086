"""Perun state channels for Ethereum: the contracts' Python client.

The names most programs need are here; each lives in one module:
perun.core (pure protocol: channel.py, eip712.py, machine.py, multistate.py, apps/), perun.chain
(web3: backend.py, payment.py, multistate.py, anvil.py, deploy.py), perun.node (a party: wire/, store.py, runtime/,
protocols/) and perun.errors.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, so that `perun` commands that only talk to a running node start fast
# (web3 alone takes half a second to import).
_HOMES = {
    "ETHER": "perun.chain.backend", "Chain": "perun.chain.backend", "EmbeddedChain": "perun.chain.backend",
    "RpcChain": "perun.chain.backend", "PaymentContract": "perun.chain.payment",
    "ETH": "perun.core.channel", "Params": "perun.core.channel", "PaymentState": "perun.core.channel",
    "Phase": "perun.core.channel", "Domain": "perun.core.eip712", "recover": "perun.core.eip712",
    "sign_state": "perun.core.eip712", "PerunError": "perun.errors", "ChannelInfo": "perun.node",
    "Node": "perun.node", "MSContract": "perun.chain.multistate", "ChannelState": "perun.core.multistate",
    "NanocontractState": "perun.core.multistate", "AppState": "perun.core.apps",
    "deploy": "perun.chain.deploy", "HubPolicy": "perun.protocols.virtual", "ForwardPolicy": "perun.protocols.multihop",
    "ChannelPolicy": "perun.protocols.policy", "ACCEPT_ALL": "perun.protocols.policy",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'perun' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
