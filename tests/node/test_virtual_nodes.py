"""Virtual payment channels between nodes (perun.virtual), in one process on the embedded chain:
Alice and Bob, each with a multistate ledger channel with Ingrid, open γ through her in four
messages, pay each other directly and close through her, or without her on chain."""

from __future__ import annotations

import contextlib

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core.machine import Stage
from perun.virtual import HubPolicy
from tests.node.conftest import DELTA, run

WINDOW = 4 * DELTA
VALIDITY_IN = 20 * DELTA


@contextlib.asynccontextmanager
async def triangle(net, hub=HubPolicy(), ledger_b_by_bob=False, **kwargs):
    """alice, ingrid and bob running; ledger channels a = alice–ingrid and b = ingrid–bob open
    (b opened by bob if `ledger_b_by_bob`), alice connected to bob. Yields (alice, ingrid, bob, a, b)."""
    kwargs.setdefault("accept_virtual", lambda v: True)
    async with net.running("alice", "bob", **kwargs) as (alice, bob), \
            net.running("ingrid", hub=hub, **kwargs) as (ingrid,):
        for end in (alice, bob):
            await end.connect(ingrid.address, "127.0.0.1", ingrid.port)
        await alice.connect(bob.address, "127.0.0.1", bob.port)
        a = await alice.multistate.open(ingrid.address, 10 * ETHER, 10 * ETHER, DELTA)
        if ledger_b_by_bob:
            b = await bob.multistate.open(ingrid.address, 10 * ETHER, 10 * ETHER, DELTA)
        else:
            b = await ingrid.multistate.open(bob.address, 10 * ETHER, 10 * ETHER, DELTA)
        for node, cid in ((ingrid, a), (ingrid, b), (bob, b)):
            await node.wait_for(cid, lambda r: r.stage is Stage.OPEN)
        yield alice, ingrid, bob, a, b


def cash(node, cid):
    """(my cash, peer's cash) in a ledger channel."""
    info = node.multistate.info(cid)
    return info.my_cash, info.peer_cash


@pytest.mark.parametrize("ledger_b_by_bob", [False, True])
def test_open_pay_and_close_fast_through_ingrid(net, ledger_b_by_bob):
    async def scenario():
        async with triangle(net, ledger_b_by_bob=ledger_b_by_bob) as (alice, ingrid, bob, a, b):
            validity = net.chain.timestamp() + VALIDITY_IN
            gid = await alice.virtual.open(a, bob.address, b, 3 * ETHER, ETHER, validity, WINDOW)
            # ν_a blocks Alice's 3 and Ingrid's matching 1 of Bob's; ν_b Ingrid's 3 and Bob's 1.
            assert cash(alice, a) == (7 * ETHER, 9 * ETHER)
            assert cash(bob, b) == (9 * ETHER, 7 * ETHER)
            for node in (alice, bob):
                assert node.virtual.info(gid).version == 0
            assert [h.side for h in ingrid.virtual.record(gid).halves] == [0, 1]
            await alice.pay(gid, ETHER)
            await bob.pay(gid, ETHER // 2)
            await alice.pay(gid, ETHER)
            info = bob.virtual.info(gid)
            assert (info.version, info.my_balance, info.peer_balance) == (3, 2 * ETHER + ETHER // 2, ETHER + ETHER // 2)
            assert await alice.virtual.close(gid) == (ETHER + ETHER // 2, 2 * ETHER + ETHER // 2)
            await bob.wait_for(gid, bob.virtual.settled)
            # Ingrid absorbs both halves: she ends with what she started with, 20 ether.
            await ingrid.wait_for(a, lambda r: not r.nanocontracts)
            await ingrid.wait_for(b, lambda r: not r.nanocontracts)
            assert cash(alice, a) == (8 * ETHER + ETHER // 2, 11 * ETHER + ETHER // 2)
            assert cash(bob, b) == (11 * ETHER + ETHER // 2, 8 * ETHER + ETHER // 2)
            assert cash(ingrid, a)[0] + cash(ingrid, b)[0] == 20 * ETHER
            with pytest.raises(errors.AlreadyFinal):
                await bob.pay(gid, 1)
    run(scenario())
