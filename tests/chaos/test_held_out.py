"""A refutation held out of the chain: priced out by a base fee raised above the node's first
bid, or dropped from anvil's pool. The node's wallet sends it again (the same nonce, a higher
bid) until it is mined, well before the dispute window ends; the payout is the latest state's.

Blocks are mined only when the test says (automine off) from the moment Alice's node sees the
stale close: her first bid waits in the pool for the test to strike."""

from __future__ import annotations

import asyncio

import pytest

from tests.chaos.harness import World, refutation_held_out, stale_close
from tests.node.conftest import run


@pytest.mark.parametrize("kind", ["payment", "multistate"])
@pytest.mark.parametrize("how", ["priced-out", "dropped"])
def test_a_refutation_held_out_of_the_chain_is_sent_again_with_a_higher_bid(world: World, kind: str, how: str) -> None:
    async def scenario() -> tuple[int, int]:
        async with world.running("alice", "bob") as (alice, bob):
            dispute = await stale_close(world, kind, alice, bob, before_close=alice.watcher.stop)
            await refutation_held_out(world, dispute, how)
            return await dispute.settle()
    assert run(scenario()) == (5 * 10**18 // 2, 10**18 // 2)


def test_a_refutation_in_flight_when_the_node_is_killed_is_replaced_after_its_restart(world: World) -> None:
    async def scenario() -> tuple[int, int]:
        async with world.running("alice", "bob") as (alice, bob):
            dispute = await stale_close(world, "payment", alice, bob, before_close=alice.watcher.stop)
            world.automine(False)
            try:
                alice.watcher.start()
                await world.until(lambda: len(world.pending_from(alice.address)) == 1)
                [first] = world.pending_from(alice.address)
                alice.kill()  # its refutation waits in the pool; the journal has it
                world.rpc_call("anvil_dropTransaction", first["hash"])  # and the pool loses it
                again = world.node("alice")
                starting = asyncio.ensure_future(again.start())  # its first poll sends the refutation
                try:
                    await world.until(lambda: len(world.pending_from(again.address)) == 1)
                    [replacing] = world.pending_from(again.address)
                    assert replacing["nonce"] == first["nonce"]
                    assert int(replacing["maxFeePerGas"], 16) > int(first["maxFeePerGas"], 16)
                    world.mine()
                    await starting
                    assert dispute.registered() == dispute.latest_version
                    world.automine(True)
                    dispute.alice = again
                    return await dispute.settle()
                finally:
                    starting.cancel()
                    if again.serving:
                        await again.stop()
            finally:
                world.automine(True)
    assert run(scenario()) == (5 * 10**18 // 2, 10**18 // 2)
