"""The randomised chaos run: rounds of a dispute in a payment or multistate channel, or of a
virtual channel settled on chain without its hub, each under one fault drawn at random (a
reorganisation of depth 1 to 5 that takes away the refutation, the close or the finalize; a
refutation priced out or dropped; the chain's endpoint cut during the dispute). Each round
checks that the honest parties get what their latest states say; the `world` fixture checks
that the contracts keep nothing.

PERUN_CHAOS_ROUNDS sets the number of rounds (3 in the test suite, 200 in `make chaos`);
PERUN_CHAOS_SEED replays a run: a failing round names its seed.
"""

from __future__ import annotations

import os
import random
from contextlib import AsyncExitStack

from perun.chain.backend import ETHER
from perun.core.machine import Stage
from tests.chaos.harness import (
    Dispute,
    World,
    close_reorganised_out,
    finalize_reorganised_out,
    refutation_held_out,
    refutation_reorganised_out,
    stale_close,
)
from tests.chaos.virtual import settled_without_ingrid
from tests.node.conftest import run
from tests.relay import Relay

ROUNDS = int(os.environ.get("PERUN_CHAOS_ROUNDS", "3"))
SEED = int(os.environ.get("PERUN_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
KINDS = ("payment", "multistate", "virtual")
FAULTS = ("refutation reorganised out", "close reorganised out", "finalize reorganised out", "priced out",
          "dropped", "endpoint cut")
LATEST = (5 * ETHER // 2, ETHER // 2)  # what the latest state of a dispute pays (alice, bob)


def test_random_chaos_rounds(world: World) -> None:
    rng = random.Random(SEED)
    for n in range(ROUNDS):
        kind, fault, depth = rng.choice(KINDS), rng.choice(FAULTS), rng.randint(1, 5)
        before = world.contract_balances()
        try:
            if kind == "virtual":
                run(settled_without_ingrid(world, f"{n}", rng, depth), timeout=180)
            else:
                assert run(dispute_round(world, n, kind, fault, depth)) == LATEST
            assert world.contract_balances() == before, "funds left in the contracts"
        except BaseException as exc:
            raise AssertionError(f"chaos round {n} ({kind}, {fault}, depth {depth}) failed; PERUN_CHAOS_SEED={SEED} "
                                 "replays the run") from exc


async def dispute_round(world: World, n: int, kind: str, fault: str, depth: int) -> tuple[int, int]:
    alice_name, bob_name = f"alice{n}", f"bob{n}"
    async with AsyncExitStack() as stack:
        relay = None
        if fault == "endpoint cut":  # Alice's node reaches anvil only through a relay
            relay = Relay(world.chain.anvil.port)
            relay.open()
            stack.callback(relay.stop)
            world.rpc[alice_name] = [relay.url]
        alice, bob = await stack.enter_async_context(world.running(alice_name, bob_name))

        async def before_close() -> None:
            if fault in ("priced out", "dropped"):
                await alice.watcher.stop()
            elif relay is not None:
                relay.close()
                await world.until(lambda: alice.runtime.chain_status.down)

        dispute = await stale_close(world, kind, alice, bob, before_close)
        if fault == "refutation reorganised out":
            await refutation_reorganised_out(world, dispute, depth)
        elif fault == "close reorganised out":
            await close_reorganised_out(world, dispute, depth)
            await reclose(dispute)
        elif fault == "finalize reorganised out":
            await finalize_reorganised_out(world, dispute, depth)
        elif fault in ("priced out", "dropped"):
            await refutation_held_out(world, dispute, "priced-out" if fault == "priced out" else "dropped")
        else:
            world.mine(depth)  # the chain moves on while Alice's endpoint is away
            assert relay is not None
            relay.open()
            alice.watcher.wake()
            await world.until(lambda: dispute.registered() == dispute.latest_version)
        return await dispute.settle()
    raise AssertionError("unreachable")


async def reclose(dispute: Dispute) -> None:
    """The close is gone and Bob is offline: Alice closes with her latest state herself."""
    alice = dispute.alice
    if dispute.kind == "payment":
        await alice.register(dispute.cid)
    else:
        await alice.multistate.close(dispute.cid)
    assert dispute.registered() == dispute.latest_version
    await dispute.world.final(alice)
    assert alice.runtime.registry.record(dispute.cid).stage is Stage.CLOSING
