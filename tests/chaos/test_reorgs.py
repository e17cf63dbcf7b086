"""Reorganisations of depth 1 to 5 on anvil (`anvil_reorg`: the last blocks replaced by empty
ones) that take away the honest party's refutation, the cheater's close, or the finalize, in
payment and multistate channels. The node answers a close it sees at depth 0 at once, answers
again when the answer is reorganised out, forgets the need when the close is, finalizes again
when its finalize is; the payout is the latest state's and the contracts keep nothing (the
`world` fixture checks)."""

from __future__ import annotations

import pytest

from perun.core.channel import Phase
from perun.core.machine import Stage
from tests.chaos.harness import (
    DELTA,
    World,
    close_reorganised_out,
    finalize_reorganised_out,
    refutation_reorganised_out,
    stale_close,
)
from tests.node.conftest import run

KINDS = ["payment", "multistate"]
LATEST = (5 * 10**18 // 2, 10**18 // 2)  # what the latest state pays (alice, bob)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("depth", [1, 3, 5])
def test_a_refutation_reorganised_out_is_sent_again(world: World, kind: str, depth: int) -> None:
    async def scenario() -> tuple[int, int]:
        async with world.running("alice", "bob") as (alice, bob):
            dispute = await stale_close(world, kind, alice, bob)
            await refutation_reorganised_out(world, dispute, depth)
            return await dispute.settle()
    assert run(scenario()) == LATEST


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("depth", [2, 4])
def test_a_close_reorganised_out_leaves_the_channel_open_for_payments(world: World, kind: str, depth: int) -> None:
    async def scenario() -> tuple[int, int]:
        async with world.running("alice", "bob") as (alice, bob):
            dispute = await stale_close(world, kind, alice, bob)
            await close_reorganised_out(world, dispute, depth)
        # Bob comes back; they go on paying and close together.
        async with world.running("alice", "bob") as (alice, bob):
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            if kind == "payment":
                await alice.pay(dispute.cid, 10**18 // 10)
                return await world.mining(alice.close(dispute.cid))
            return await world.mining(alice.multistate.cooperative_close(dispute.cid))
    assert run(scenario()) == ((24 * 10**17, 6 * 10**17) if kind == "payment" else LATEST)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("depth", [1, 5])
def test_a_finalize_reorganised_out_is_sent_again(world: World, kind: str, depth: int) -> None:
    async def scenario() -> tuple[int, int]:
        async with world.running("alice", "bob") as (alice, bob):
            dispute = await stale_close(world, kind, alice, bob)
            await finalize_reorganised_out(world, dispute, depth)
            return await dispute.settle()
    assert run(scenario()) == LATEST


@pytest.mark.parametrize("kind", KINDS)
def test_an_operators_close_reorganised_out_is_sent_again(world: World, kind: str) -> None:
    async def scenario() -> tuple[int, int]:
        async with world.running("alice", "bob") as (alice, bob):
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            if kind == "payment":
                cid = await world.mining(alice.open(bob.address, 2 * 10**18, 10**18, DELTA))
                await alice.pay(cid, 10**18 // 2)
                await alice.register(cid)
                contract = world.payment
            else:
                cid = await world.mining(alice.multistate.open(bob.address, 2 * 10**18, 10**18, DELTA))
                await alice.multistate.close(cid)
                contract = world.ms
            assert contract.channel(cid).phase is Phase.CLOSING
            world.reorg(2)
            assert contract.channel(cid).phase is Phase.OPEN
            await world.until(lambda: contract.channel(cid).phase is Phase.CLOSING)  # her node closes again
            await world.final(alice)
            await world.at(contract.channel(cid).deadline + 1, alice)
            rec = await world.mining(alice.wait_for(cid, lambda r: r.stage is Stage.CLOSED))
            return rec.outcome
    assert run(scenario()) == ((3 * 10**18 // 2, 3 * 10**18 // 2) if kind == "payment" else (2 * 10**18, 10**18))


def test_a_reorganisation_below_the_final_blocks_is_told_and_read_again_from_the_fork(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.confirmations = 1

    async def scenario() -> int:
        async with world.running("alice") as (alice,):
            for _ in range(3):  # three polls, three checkpoints
                await world.final(alice)
            fork = alice.watcher.last_final - 2
            replaced = world.chain.block_hash(fork + 1)
            world.reorg(world.chain.block_number() - fork)  # the final blocks above `fork` replaced
            assert world.chain.block_hash(fork + 1) != replaced
            await alice.sync()
            # read again, up to the head − 1
            assert alice.watcher.last_final == world.chain.block_number() - 1
            return fork
    with caplog.at_level("INFO", logger="perun"):
        fork = run(scenario())
    said = [r.getMessage() for r in caplog.records if "deeper than 1 confirmation(s)" in r.getMessage()]
    assert len(said) == 1, said
    assert f"replaced final blocks above #{fork - 1}" in said[0] or f"above #{fork}" in said[0], said
    assert "what the node applied from them stays applied" in said[0]
