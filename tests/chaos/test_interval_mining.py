"""Blocks every 1 to 12 seconds instead of at once: a transaction waits in the pool for the
next block, an event is final two blocks later, and a stale close is still refuted and the
channel finalized with the latest state. `make chaos` adds 12 s blocks (PERUN_CHAOS_LONG)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from perun.chain.anvil import AnvilChain
from perun.chain.deploy import deploy
from tests.chaos.harness import World, stale_close
from tests.node.conftest import run

BLOCK_TIMES = [1, 4, 12] if os.environ.get("PERUN_CHAOS_LONG") else [1]


@pytest.fixture(params=BLOCK_TIMES, ids=[f"{t}s-blocks" for t in BLOCK_TIMES])
def interval_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    chain = AnvilChain()
    try:
        deployment = deploy(chain, chain.dev_accounts[0])  # at once; then a block every block_time seconds
        chain._dev_rpc("evm_setIntervalMining", [request.param])
        yield World(chain, deployment, tmp_path, block_time=request.param, confirmations=2)
    finally:
        chain.close()


@pytest.mark.parametrize("kind", ["payment", "multistate"])
def test_a_stale_close_is_refuted_and_finalized_on_a_chain_with_block_times(interval_world: World, kind: str) -> None:
    world = interval_world
    before = world.contract_balances()

    async def scenario() -> tuple[int, int]:
        async with world.running("alice", "bob") as (alice, bob):
            dispute = await stale_close(world, kind, alice, bob)
            await world.until(lambda: dispute.registered() == dispute.latest_version, world.patience)
            await world.final(alice)
            return await dispute.settle()
    assert run(scenario(), timeout=60 * world.block_time) == (5 * 10**18 // 2, 10**18 // 2)  # type: ignore[operator]
    assert world.contract_balances() == before
