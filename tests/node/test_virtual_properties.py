"""A property test of virtual channels through the nodes' own code: on random paths (payments
both ways; Ingrid honest, refusing fast closes or offline; a fast close tried or not; an end
submitting a stale state by hand, or silent from before validity; Ingrid closing a ledger channel
while γ is live), the ledger channels pay Ingrid exactly her deposits and Alice and Bob their
deposits less their cash plus γ's latest balances.

The paths leave out what no protocol survives: Ingrid offline while an end cheats (nobody copies
the honest state to the cheated half), and both ends absent for the whole submission window."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perun import errors
from perun.chain.backend import ETHER
from perun.core.apps import virtualchannel as vc
from perun.core.machine import Stage
from perun.protocols.virtual import HubPolicy
from tests.node.conftest import DELTA, Net, run
from tests.node.test_virtual_nodes import VALIDITY_IN, WINDOW, at, half, triangle

CASH = (3 * ETHER, ETHER)
DEPOSIT = 10 * ETHER


@st.composite
def paths(draw):
    payments = draw(st.lists(st.tuples(st.sampled_from(["alice", "bob"]), st.integers(1, 10)), min_size=1,
                             max_size=5))
    ingrid = draw(st.sampled_from(["honest", "refuses", "offline"]))
    fast = draw(st.booleans())
    # Cheating and closing a ledger channel early need Ingrid's watcher.
    trouble = draw(st.sampled_from(["none", "stale", "silent"])) if ingrid != "offline" else "none"
    end = draw(st.sampled_from(["alice", "bob"]))
    ledger_close = ingrid != "offline" and draw(st.booleans())
    return payments, ingrid, fast, trouble, end, ledger_close


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths())
def test_ingrid_neither_gains_nor_loses_and_the_ends_get_their_latest_balances(embedded_world, embedded_ms_world,
                                                                                path):
    payments, ingrid_mode, fast, trouble, end, ledger_close = path
    chain = embedded_world.chain
    snapshot = chain.snapshot()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            net = Net(chain, embedded_world.contract, Path(tmp), embedded_ms_world)
            paid, latest = run(_play(net, payments, ingrid_mode, fast, trouble, end, ledger_close), timeout=120)
            accounts = {name: net.account(name).address for name in ("alice", "ingrid", "bob")}
    finally:
        chain.revert_to(snapshot)
    assert paid[accounts["ingrid"]] == 2 * DEPOSIT
    assert paid[accounts["alice"]] == DEPOSIT - CASH[0] + latest[0]
    assert paid[accounts["bob"]] == DEPOSIT - CASH[1] + latest[1]


async def at_least(net, time, *nodes):
    """`at`, or a block now if the transactions sent meanwhile have taken the chain past `time`."""
    await at(net, max(time, net.chain.timestamp() + 1), *nodes)


async def _play(net, payments, ingrid_mode, fast, trouble, end, ledger_close):
    hub = HubPolicy(fast_close=ingrid_mode != "refuses")
    async with triangle(net, hub=hub, response_timeout=1.0) as (alice, ingrid, bob, a, b):
        nodes = {"alice": alice, "ingrid": ingrid, "bob": bob}
        ledger_params = {a: alice.multistate.channel(a).params, b: bob.multistate.channel(b).params}
        validity = net.chain.timestamp() + VALIDITY_IN
        gid = await alice.virtual.open(a, bob.address, b, *CASH, validity, WINDOW)
        for payer, tenths in payments:
            rec = nodes[payer].virtual.record(gid).channel
            amount = tenths * ETHER // 10
            if amount <= rec.my_balance:
                await nodes[payer].pay(gid, amount)
        if ledger_close:
            await ingrid.multistate.close(a)
            await at(net, ingrid.multistate.channel(a).deadline - 1, *nodes.values())
        if ingrid_mode == "offline":
            ingrid.kill()
        online = {name for name, node in nodes.items() if node.serving}

        closed = False
        if fast:
            try:
                await alice.virtual.close(gid, timeout=1.0)
                closed = True
            except (errors.PeerRejected, errors.PeerUnavailable):
                pass
        current = alice.virtual.record(gid).channel.current
        latest = (current.balance_alice, current.balance_bob)

        if not closed:
            stale = None
            if trouble == "stale" and current.version >= 2:
                old = next(s for s in nodes[end].store.states(gid) if s.state.version == 1 and s.sig_alice and s.sig_bob)
                side = 0 if end == "alice" else 1
                h, ledger = half(nodes[end], gid, side), (a, b)[side]
                stale = (end, h.nid, nodes[end].multistate.channel(ledger).params, old)
            if trouble in ("stale", "silent"):
                await nodes[end].stop()
                online.discard(end)
            live = [nodes[name] for name in sorted(online)]
            for t in (validity - DELTA - 1, validity, validity + 1):
                await at_least(net, t, *live)
            if stale is not None:
                who, nid, params, old = stale
                z = vc.settle_arg(vc.as_virtual(old.state), old.sig_alice, old.sig_bob)
                try:
                    net.ms.contract.execute(net.account(who), params, nid, vc.SETTLE, z)
                except (errors.ChannelsWrongPhase, errors.MSContractTerminated, errors.MSContractNotRegistered,
                        errors.VirtualChannelSettled):
                    pass  # Ingrid settled that half with the final state already (on chain or off): nothing to cheat
            for t in (validity + WINDOW, validity + WINDOW + 1, validity + 2 * WINDOW, validity + 2 * WINDOW + 1):
                await at_least(net, t, *live)
        else:
            live = [nodes[name] for name in sorted(online)]
            await ingrid.wait_for(gid, ingrid.virtual.settled)  # her SETTLE calls answered

        # Both ledger channels close on chain, by whoever is there.
        deadlines = []
        for ledger, first in ((a, "alice"), (b, "bob")):
            closer = nodes[first] if first in online else ingrid
            if closer.multistate.channel(ledger).stage is Stage.OPEN:
                await closer.multistate.close(ledger)
                deadlines.append(closer.multistate.channel(ledger).deadline)
        # The watchers register what a closing channel lists before its D (here halfway: on this
        # chain each transaction takes a second), execute it after its window, and finalize.
        steps = [min(deadlines, default=0) - DELTA // 2, max(deadlines, default=0) + DELTA + 1,
                 validity + 2 * WINDOW + 1, validity + 3 * WINDOW - 1]
        for t in steps:
            await at_least(net, t, *live)
        paid: dict[str, int] = {}
        for ledger in (a, b):
            finalized = [e.args for e in net.ms.contract.events() if e.name == "Finalized" and e.args["channelId"] == ledger]
            assert len(finalized) == 1, f"ledger channel 0x{ledger.hex()[:12]} was not paid out"
            params = ledger_params[ledger]
            for who, amount in zip((params.alice, params.bob), (finalized[0]["payoutAlice"], finalized[0]["payoutBob"])):
                paid[who] = paid.get(who, 0) + amount
        return paid, latest
