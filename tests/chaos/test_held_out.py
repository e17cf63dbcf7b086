"""A refutation held out of the chain: priced out by a base fee raised above the node's first
bid, or dropped from anvil's pool. The node's wallet sends it again (the same nonce, a higher
bid) until it is mined, well before the dispute window ends; the payout is the latest state's.

Blocks are mined only when the test says (automine off) from the moment Alice's node sees the
stale close: her first bid waits in the pool for the test to strike."""

from __future__ import annotations

import pytest

from tests.chaos.harness import World, refutation_held_out, run, stale_close


@pytest.mark.parametrize("kind", ["payment", "multistate"])
@pytest.mark.parametrize("how", ["priced-out", "dropped"])
def test_a_refutation_held_out_of_the_chain_is_sent_again_with_a_higher_bid(world: World, kind: str, how: str) -> None:
    async def scenario() -> tuple[int, int]:
        async with world.running("alice", "bob") as (alice, bob):
            dispute = await stale_close(world, kind, alice, bob, before_close=alice.watcher.stop)
            await refutation_held_out(world, dispute, how)
            return await dispute.settle()
    assert run(scenario()) == (5 * 10**18 // 2, 10**18 // 2)
