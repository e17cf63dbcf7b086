"""The chaos tests' fixtures: one anvil per module with every contract deployed, and a `World`
on it per test that checks, at its end, that the contracts keep nothing more than before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from perun.chain.anvil import AnvilChain
from perun.chain.deploy import Deployment, deploy
from tests.chaos.harness import World


@pytest.fixture(scope="module")
def anvil() -> Iterator[tuple[AnvilChain, Deployment]]:
    chain = AnvilChain()
    try:
        deployment = deploy(chain, chain.dev_accounts[0])
        # Each block a second after the one before, as on a real chain (anvil gives blocks mined
        # within one second of each other the same time).
        chain._dev_rpc("anvil_setBlockTimestampInterval", [1])
        yield chain, deployment
    finally:
        chain.close()


@pytest.fixture
def world(anvil, tmp_path: Path) -> Iterator[World]:
    chain, deployment = anvil
    w = World(chain, deployment, tmp_path)
    before = w.contract_balances()
    yield w
    w.automine(True)
    assert w.contract_balances() == before, "funds left in the contracts"
