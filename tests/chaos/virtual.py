"""A virtual channel's chaos round: Alice pays Bob through Ingrid, Ingrid goes offline, and the
ends settle both halves on chain (each registers its half at validity − Δ − 1, submits γ's
latest state at validity, finalizes it after two windows) and then close their ledger channels
on chain; a reorganisation of `depth` blocks takes away one of these steps, drawn at random.
Alice and Bob get what γ's latest state says, Ingrid neither gains nor loses."""

from __future__ import annotations

import random

from perun.chain.backend import ETHER
from perun.core.machine import Stage
from perun.node import Node
from perun.protocols.virtual import HubPolicy
from tests.chaos.harness import DELTA, World

WINDOW = 4 * DELTA
VALIDITY_IN = 20 * DELTA
STEPS = ("register the halves", "settle", "finalize γ", "close the ledgers", "finalize the ledgers")


async def settled_without_ingrid(world: World, tag: str, rng: random.Random, depth: int,
                                 struck: str | None = None) -> None:
    struck = struck or rng.choice(STEPS)
    names = (f"alice{tag}v", f"bob{tag}v")
    async with world.running(*names) as (alice, bob), world.running(f"ingrid{tag}v", hub=HubPolicy()) as (ingrid,):
        for end in (alice, bob):
            await end.connect(ingrid.address, "127.0.0.1", ingrid.port)
        await alice.connect(bob.address, "127.0.0.1", bob.port)
        a = await world.mining(alice.multistate.open(ingrid.address, 10 * ETHER, 10 * ETHER, DELTA))
        b = await world.mining(ingrid.multistate.open(bob.address, 10 * ETHER, 10 * ETHER, DELTA))
        for node, cid in ((ingrid, a), (bob, b)):
            await world.mining(node.wait_for(cid, lambda r: r.stage is Stage.OPEN))
        validity = world.chain.timestamp() + VALIDITY_IN
        gid = await alice.virtual.open(a, bob.address, b, 3 * ETHER, ETHER, validity, WINDOW)
        for _ in range(2):
            await alice.pay(gid, ETHER)  # γ ends at (1, 3) ether from (3, 1)
        ingrid.kill()

        async def step(name: str, time: int | None = None) -> None:
            """The block at `time` (or the next), the ends' transactions for it; struck by the
            reorganisation if it is this round's; then final."""
            if time is not None:
                world.chain.set_next_block_timestamp(time)
            world.mine()
            await sync(alice, bob)
            if name == struck:
                world.reorg(depth)
                await sync(alice, bob)  # they see their transactions gone, and send them again
            await world.final(alice, bob)

        await step("register the halves", validity - DELTA - 1)
        # A half registered late (its registration was reorganised out, and made again) opens
        # to execution late too: at the end of its window on MSContract.
        opens = max(end.multistate.channel(h.ledger).registered(h.nid).window_end
                    for end, h in ((alice, alice.virtual.record(gid).half(0)), (bob, bob.virtual.record(gid).half(1))))
        await step("settle", max(validity + 1, opens))
        await step("finalize γ", validity + 2 * WINDOW)
        for end in (alice, bob):
            assert end.virtual.info(gid).settled, f"{end.name}: γ not settled ({struck} struck)"
        await alice.multistate.close(a)
        await bob.multistate.close(b)
        await step("close the ledgers")
        deadline = max(alice.multistate.channel(a).deadline, bob.multistate.channel(b).deadline)
        await step("finalize the ledgers", deadline + 1)
        paid = {}
        for node, cid in ((alice, a), (bob, b)):
            rec = await world.mining(node.wait_for(cid, lambda r: r.stage is Stage.CLOSED))
            for who, amount in zip((rec.params.alice, rec.params.bob), rec.outcome):
                paid[who] = paid.get(who, 0) + amount
    assert paid[world.account(names[0]).address] == 10 * ETHER - 3 * ETHER + ETHER, (struck, paid)
    assert paid[world.account(names[1]).address] == 10 * ETHER - ETHER + 3 * ETHER, struck
    assert paid[world.account(f"ingrid{tag}v").address] == 20 * ETHER, struck


async def sync(*nodes: Node) -> None:
    """Each node reads the chain and acts, twice: the second sees what the others sent."""
    for _ in range(2):
        for node in nodes:
            await node.sync()
