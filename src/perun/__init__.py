"""Perun state channels for Ethereum: the contracts' Python client.

The names most programs need are here; each lives in one module:
perun.core (pure protocol: channel.py, eip712.py), perun.chain (web3: backend.py, payment.py,
anvil.py, deploy.py) and perun.errors.
"""

from perun.chain.backend import ETHER, Chain, EmbeddedChain, RpcChain
from perun.chain.payment import PaymentContract
from perun.core.channel import ETH, Params, PaymentState, Phase
from perun.core.eip712 import Domain, recover, sign_state
from perun.errors import PerunError

__all__ = [
    "ETH", "ETHER", "Chain", "Domain", "EmbeddedChain", "Params", "PaymentContract", "PaymentState",
    "PerunError", "Phase", "RpcChain", "recover", "sign_state",
]
