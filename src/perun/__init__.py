"""Perun state channels for Ethereum: the contracts' Python client.

The names most programs need are here; each lives in one module:
perun.core (pure protocol: channel.py, eip712.py, machine.py), perun.chain (web3: backend.py,
payment.py, anvil.py, deploy.py), perun.node (a party: wire/, store.py, watcher.py) and
perun.errors.
"""

from perun.chain.backend import ETHER, Chain, EmbeddedChain, RpcChain
from perun.chain.payment import PaymentContract
from perun.core.channel import ETH, Params, PaymentState, Phase
from perun.core.eip712 import Domain, recover, sign_state
from perun.errors import PerunError
from perun.node import ChannelInfo, Node

__all__ = [
    "ETH", "ETHER", "Chain", "Domain", "EmbeddedChain", "Params", "PaymentContract", "PaymentState",
    "PerunError", "Node", "ChannelInfo", "Phase", "RpcChain", "recover", "sign_state",
]
