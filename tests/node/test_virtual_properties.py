"""A property test of virtual channels through the nodes' own code: on random paths (payments
both ways; Ingrid honest, refusing fast closes or offline; a fast close tried or not; an end
submitting a stale state by hand, or silent from before validity; Ingrid closing a ledger channel
while γ is live), the ledger channels pay Ingrid exactly her deposits and Alice and Bob their
deposits less their cash plus γ's latest balances.

The paths leave out what no protocol survives: Ingrid offline while an end cheats (nobody copies
the honest state to the cheated half), and both ends absent for the whole submission window.

Each example is labelled with its path (`hypothesis.event`: `--hypothesis-show-statistics`), and
the long profile plays every path once, directed, before the drawn ones. A payment above the payer's balance is refused (BalanceExceeded) and changes nothing; the
fast close and the stale submission end as the path says (`_fast_close`, `_refusal`)."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from perun import errors
from perun.chain.backend import ETHER
from perun.core.apps import virtualchannel as vc
from perun.core.channel import Phase
from perun.core.machine import Stage
from perun.protocols.virtual import HubPolicy
from perun.wire import messages as m
from tests.conftest import examples, long_profile
from tests.node.conftest import DELTA, Net, run
from tests.node.test_virtual_nodes import VALIDITY_IN, WINDOW, at, half, triangle

CASH = (3 * ETHER, ETHER)
DEPOSIT = 10 * ETHER
INGRID, TROUBLES, ENDS = ("honest", "refuses", "offline"), ("none", "stale", "silent"), ("alice", "bob")


@st.composite
def paths(draw):
    payments = draw(st.lists(st.tuples(st.sampled_from(["alice", "bob"]), st.integers(1, 10)), min_size=1,
                             max_size=5))
    ingrid = draw(st.sampled_from(INGRID))
    fast = draw(st.booleans())
    # Cheating and closing a ledger channel early need Ingrid's watcher.
    trouble = draw(st.sampled_from(TROUBLES)) if ingrid != "offline" else "none"
    end = draw(st.sampled_from(ENDS))
    ledger_close = ingrid != "offline" and draw(st.booleans())
    return payments, ingrid, fast, trouble, end, ledger_close



def label(ingrid: str, fast: bool, trouble: str, end: str, ledger_close: bool) -> str:
    """An example's path: what `paths` draws but the payments (`end` matters only for a trouble)."""
    by = f" by {end}" if trouble != "none" else ""
    return f"ingrid {ingrid}, {'fast close' if fast else 'no fast close'}, trouble {trouble}{by}" + (
        ", ledger closed by ingrid" if ledger_close else "")


# Each path by its label: what `paths` draws after the payments.
PATHS = {label(*path): path for path in itertools.product(INGRID, (False, True), TROUBLES, ENDS, (False, True))
         if path[0] != "offline" or (path[2] == "none" and not path[4])}
# Payments both ways, the last above Bob's balance, three taken: a stale state to submit.
SWEEP_PAYMENTS = [("alice", 5), ("bob", 3), ("bob", 10), ("bob", 10)]


@pytest.fixture(scope="module")
def seen():
    """The paths the property test below played; in the long profile, after it, every path."""
    played: set[str] = set()
    yield played
    if long_profile():
        assert played == set(PATHS), f"paths never played: {sorted(set(PATHS) - played)}"


def every_path(test):
    """In the long profile, an explicit example of each path before the drawn ones."""
    for path in PATHS.values() if long_profile() else ():
        test = example(path=(SWEEP_PAYMENTS, *path))(test)
    return test


# Each example starts three nodes and plays a path of minutes of chain time (about 1.6 s on a
# quiet core): the long profile draws 1,000, after its directed sweep of every path.
@settings(max_examples=examples(10, long=1000), deadline=None)
@every_path
@given(path=paths())
def test_ingrid_neither_gains_nor_loses_and_the_ends_get_their_latest_balances(embedded_world, embedded_ms_world,
                                                                                seen, path):
    payments, ingrid_mode, fast, trouble, end, ledger_close = path
    seen.add(label(*path[1:]))
    event(label(*path[1:]))
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
                continue
            with pytest.raises(errors.BalanceExceeded) as refused:
                await nodes[payer].pay(gid, amount)
            assert (refused.value.amount, refused.value.balance) == (amount, rec.my_balance)
            assert nodes[payer].virtual.record(gid).channel.current == rec.current
            event("a payment above the payer's balance refused")
        if ledger_close:
            await ingrid.multistate.close(a)
            await at(net, ingrid.multistate.channel(a).deadline - 1, *nodes.values())
        if ingrid_mode == "offline":
            ingrid.kill()
        online = {name for name, node in nodes.items() if node.serving}

        closed = False
        if fast:
            closed = await _fast_close(alice, gid, ingrid_mode, ledger_close)
        current = alice.virtual.record(gid).channel.current
        latest = (current.balance_alice, current.balance_bob)

        if not closed:
            stale = None
            if trouble == "stale" and current.version >= 2:
                old = next(s for s in nodes[end].store.states(gid) if s.state.version == 1 and s.sig_alice and s.sig_bob)
                side = 0 if end == "alice" else 1
                h, ledger = half(nodes[end], gid, side), (a, b)[side]
                stale = (end, h.nid, ledger, nodes[end].multistate.channel(ledger).params, old)
            elif trouble == "stale":
                event("stale: no state older than the latest to submit")
            if trouble in ("stale", "silent"):
                await nodes[end].stop()
                online.discard(end)
            live = [nodes[name] for name in sorted(online)]
            for t in (validity - DELTA - 1, validity, validity + 1):
                await at_least(net, t, *live)
            if stale is not None:
                who, nid, ledger, params, old = stale
                z = vc.settle_arg(vc.as_virtual(old.state), old.sig_alice, old.sig_bob)
                refusal = _refusal(net, ledger, nid)
                if refusal is None:
                    net.ms.contract.execute(net.account(who), params, nid, vc.SETTLE, z)
                    event("stale state submitted")
                else:
                    with pytest.raises(refusal):
                        net.ms.contract.execute(net.account(who), params, nid, vc.SETTLE, z)
                    event(f"stale state refused: {refusal.__name__}")
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


async def _fast_close(alice, gid, ingrid_mode, ledger_close) -> bool:
    """Alice's fast close: True if Ingrid settled it. She refuses it by her policy, cannot answer
    offline, and with ledger channel a closing on chain cannot settle its half off chain in time."""
    try:
        await alice.virtual.close(gid, timeout=1.0)
    except errors.PeerRejected as exc:
        assert ingrid_mode == "refuses" and exc.code is m.ErrorCode.CHANNEL_REFUSED, exc
        outcome = "refused"
    except errors.PeerUnavailable as exc:
        assert ingrid_mode == "offline" or (ingrid_mode == "honest" and ledger_close), exc
        outcome = type(exc).__name__
    else:
        assert ingrid_mode == "honest", "Ingrid settled a fast close she refuses or while offline"
        outcome = "settled"
    event(f"fast close {outcome}")
    return outcome == "settled"


def _refusal(net, ledger, nid):
    """The error MSContract answers an end's stale SETTLE on half `nid` with, from what the chain
    holds (None: it takes it): the ledger channel closed, the half not registered (nothing to
    execute: its ledger channel is not closing, or nobody listed it), or terminated on chain."""
    if net.ms.contract.channel(ledger).phase not in (Phase.OPEN, Phase.CLOSING):
        return errors.ChannelsWrongPhase
    registered = net.ms.contract.nanocontract(ledger, nid)
    if not registered.registered:
        return errors.MSContractNotRegistered
    if registered.blocked_alice == registered.blocked_bob == 0:
        return errors.MSContractTerminated
    return None
