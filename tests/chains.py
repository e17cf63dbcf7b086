"""The dev node that the anvil-based fixtures start: anvil by default, Hardhat's node with
PERUN_TEST_CHAIN=hardhat (`make test-hardhat`), so that the contract and node suites run on a
second, independent JSON-RPC client.

The fixtures keep their anvil_* names; the test ids carry the node's name.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from perun.chain.backend import RpcChain

CHAINS = ("anvil", "hardhat")
TEST_CHAIN = os.environ.get("PERUN_TEST_CHAIN") or "anvil"
if TEST_CHAIN not in CHAINS:
    raise ValueError(f"PERUN_TEST_CHAIN={TEST_CHAIN!r}: expected one of {', '.join(CHAINS)}")


def start_dev_chain() -> RpcChain:
    """A fresh dev node of the kind chosen, with an RpcChain on it; close() stops the node."""
    if TEST_CHAIN == "hardhat":
        from perun.chain.hardhat import HardhatChain

        return HardhatChain()
    from perun.chain.anvil import AnvilChain

    return AnvilChain()


def port(chain: RpcChain) -> int:
    """The port the chain's node listens on."""
    value = urlsplit(chain.url).port
    assert value is not None, chain.url
    return value

