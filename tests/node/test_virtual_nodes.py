"""Virtual payment channels between nodes (perun.virtual), in one process on the embedded chain:
Alice and Bob, each with a multistate ledger channel with Ingrid, open γ through her in four
messages, pay each other directly and close through her, or without her on chain."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core.machine import Stage
from perun.core.virtual import Position
from perun.protocols.virtual import HubPolicy
from perun.wire import messages as m
from tests.node.conftest import DELTA, run
from tests.node.test_multistate_nodes import held

WINDOW = 4 * DELTA
VALIDITY_IN = 20 * DELTA


@contextlib.asynccontextmanager
async def triangle(net, hub=HubPolicy(), ledger_b_by_bob=False, bob_kwargs=None, **kwargs):
    """alice, ingrid and bob running (bob with `bob_kwargs` too); ledger channels a = alice–ingrid
    and b = ingrid–bob open (b opened by bob if `ledger_b_by_bob`), alice connected to bob.
    Yields (alice, ingrid, bob, a, b)."""
    kwargs.setdefault("accept_virtual", lambda v: True)
    async with net.running("alice", **kwargs) as (alice,), \
            net.running("bob", **kwargs, **(bob_kwargs or {})) as (bob,), \
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


# ---------------------------------------------------------------------- on chain

A_PAYS = (ETHER, ETHER)  # Alice pays Bob twice: γ ends at (1, 3) ether from (3, 1)


async def opened(net, alice, bob, a, b, cash_alice=3 * ETHER, cash_bob=ETHER):
    """γ opened and Alice's payments made: (gid, validity)."""
    validity = net.chain.timestamp() + VALIDITY_IN
    gid = await alice.virtual.open(a, bob.address, b, cash_alice, cash_bob, validity, WINDOW)
    for amount in A_PAYS:
        await alice.pay(gid, amount)
    return gid, validity


async def at(net, time, *nodes):
    """A block mined at `time`, and each node's watcher done with it (its transactions land at
    `time` + 1 and later)."""
    net.chain.set_next_block_timestamp(time)
    net.chain.mine()
    for node in nodes:
        await node.sync()
    for node in nodes:  # what the others sent
        await node.sync()


def events(net, name, nid=None):
    return [e.args for e in net.ms.contract.events() if e.name == name and (nid is None or e.args["nid"] == nid)]


def half(node, gid, side):
    return node.virtual.record(gid).half(side)


def stored(net, h):
    """(version, balanceAlice, balanceBob) that a half stores on chain."""
    from perun.core.apps import virtualchannel as vc
    v = vc.decode(net.ms.contract.nanocontract(h.ledger, h.nid).storage)
    return v.version, v.balance_alice, v.balance_bob


async def close_ledgers(net, closers):
    """Each (node, ledger) closed on chain by that node and finalized: {address: payout}."""
    for node, cid in closers:
        await node.multistate.close(cid)
    await at(net, net.chain.timestamp() + DELTA + 1, *(n for n, _ in closers))
    paid: dict[str, int] = {}
    for node, cid in closers:
        rec = await node.wait_for(cid, lambda r: r.stage is Stage.CLOSED)
        for who, amount in zip((rec.params.alice, rec.params.bob), rec.outcome):
            paid[who] = paid.get(who, 0) + amount
    return paid


def test_ingrid_offline_the_ends_settle_both_halves_on_chain_after_validity(net):
    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            gid, validity = await opened(net, alice, bob, a, b)
            ingrid.kill()
            with pytest.raises(errors.PeerTimeout):
                await alice.virtual.close(gid, timeout=0.5)
            assert bob.virtual.info(gid).final  # Bob countersigned the final state (version 3)
            # Each end registers its half at validity − Δ − 1, not a second before.
            await at(net, validity - DELTA - 2, alice, bob)
            assert events(net, "NanocontractRegistered") == []
            await at(net, validity - DELTA - 1, alice, bob)
            registered = sorted(e["by"] for e in events(net, "NanocontractRegistered"))
            assert registered == sorted([alice.address, bob.address])
            # Submissions open after validity: a block at validity − 1 would be too early.
            await at(net, validity - 1, alice, bob)
            assert events(net, "NanocontractExecuted") == []
            await at(net, validity, alice, bob)
            for side, end in ((0, alice), (1, bob)):
                assert stored(net, half(end, gid, side)) == (3, ETHER, 3 * ETHER)
            # FINALIZE after validity + 2 windows, by the watchers on their own.
            await at(net, validity + 2 * WINDOW - 1, alice, bob)
            assert len(events(net, "NanocontractExecuted")) == 2
            await at(net, validity + 2 * WINDOW, alice, bob)
            for end in (alice, bob):
                assert end.virtual.info(gid).settled
            return await close_ledgers(net, [(alice, a), (bob, b)])
    paid = run(scenario())
    assert paid[net.account("alice").address] == 10 * ETHER - 3 * ETHER + ETHER
    assert paid[net.account("bob").address] == 10 * ETHER - ETHER + 3 * ETHER
    assert paid[net.account("ingrid").address] == 20 * ETHER  # she neither gains nor loses


def test_a_stale_state_from_one_end_is_replaced_by_ingrids_copy_after_the_ends_window(net):
    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            gid, validity = await opened(net, alice, bob, a, b)
            old = next(s for s in bob.store.states(gid) if s.state.version == 1)
            nu_b = half(bob, gid, 1)
            params_b = bob.multistate.channel(b).params
            bob.kill()  # from now on Bob cheats by hand
            await at(net, validity - DELTA - 1, alice, ingrid)
            assert len(events(net, "NanocontractRegistered")) == 2  # Ingrid's ν_b; ν_a by one of them
            # Alice submits version 2 on ν_a; Bob version 1 on ν_b.
            await at(net, validity, alice, ingrid)
            from perun.core.apps import virtualchannel as vc
            z_old = vc.settle_arg(vc.as_virtual(old.state), old.sig_alice, old.sig_bob)
            net.ms.contract.execute(net.account("bob"), params_b, nu_b.nid, vc.SETTLE, z_old)
            assert stored(net, half(alice, gid, 0)) == (2, ETHER, 3 * ETHER)
            assert stored(net, nu_b) == (1, 2 * ETHER, 2 * ETHER)
            # Ingrid learned both states from the calldata; she copies only after the ends' window.
            await at(net, validity + WINDOW - 1, ingrid)
            assert stored(net, nu_b) == (1, 2 * ETHER, 2 * ETHER)
            await at(net, validity + WINDOW, ingrid)
            assert stored(net, nu_b) == (2, ETHER, 3 * ETHER)
            assert {s.state.version for s in ingrid.virtual.record(gid).seen} == {1, 2}
            await at(net, validity + 2 * WINDOW, alice, ingrid)
            assert ingrid.virtual.info(gid).settled
            return await close_ledgers(net, [(alice, a), (ingrid, b)])
    paid = run(scenario())
    assert paid[net.account("bob").address] == 10 * ETHER - ETHER + 3 * ETHER  # his latest balance all the same
    assert paid[net.account("ingrid").address] == 20 * ETHER


def test_ingrid_refuses_to_close_fast_and_the_ends_settle_on_chain(net):
    async def scenario():
        async with triangle(net, hub=HubPolicy(fast_close=False)) as (alice, ingrid, bob, a, b):
            gid, validity = await opened(net, alice, bob, a, b)
            with pytest.raises(errors.PeerRejected) as refused:
                await alice.virtual.close(gid)
            assert refused.value.code is m.ErrorCode.CHANNEL_REFUSED
            for t in (validity - DELTA - 1, validity, validity + 2 * WINDOW):
                await at(net, t, alice, ingrid, bob)
            assert stored(net, half(alice, gid, 0)) == stored(net, half(bob, gid, 1)) == (3, ETHER, 3 * ETHER)
            return await close_ledgers(net, [(alice, a), (bob, b)])
    paid = run(scenario())
    assert paid[net.account("alice").address] == 8 * ETHER
    assert paid[net.account("ingrid").address] == 20 * ETHER


def test_an_end_silent_at_validity_gets_its_latest_balance_through_ingrids_copy(net):
    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            gid, validity = await opened(net, alice, bob, a, b)
            await bob.stop()  # silent from before validity − Δ − 1 to the end
            for t in (validity - DELTA - 1, validity, validity + WINDOW, validity + 2 * WINDOW):
                await at(net, t, alice, ingrid)
            assert stored(net, half(ingrid, gid, 1)) == (2, ETHER, 3 * ETHER)
            async with net.running("bob") as (bob,):
                await bob.sync()
                assert bob.virtual.info(gid).settled
                return await close_ledgers(net, [(alice, a), (bob, b)])
    paid = run(scenario())
    assert paid[net.account("bob").address] == 12 * ETHER
    assert paid[net.account("ingrid").address] == 20 * ETHER


def test_ingrid_closing_a_ledger_channel_while_gamma_is_live_waits_for_gamma(net):
    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            gid, validity = await opened(net, alice, bob, a, b)
            await ingrid.multistate.close(a)
            deadline = ingrid.multistate.channel(a).deadline
            await at(net, deadline - 1, alice, ingrid, bob)  # the watchers register ν_a by D
            assert events(net, "NanocontractRegistered", half(alice, gid, 0).nid)
            await at(net, deadline + DELTA + 1, alice, ingrid, bob)
            assert ingrid.multistate.channel(a).stage is Stage.CLOSING  # it waits for ν_a's settleBy
            await alice.pay(gid, ETHER // 2)  # γ goes on
            # The fast close: ν_a is on chain, where Ingrid settles it with the final state; ν_b off chain.
            assert await bob.virtual.close(gid) == (ETHER // 2, 3 * ETHER + ETHER // 2)
            await at(net, net.chain.timestamp() + 1, alice, ingrid, bob)
            await alice.wait_for(a, lambda r: r.stage is Stage.CLOSED)
            await ingrid.wait_for(b, lambda r: not r.nanocontracts)
            paid_a = dict(zip((alice.address, ingrid.address), alice.multistate.channel(a).outcome))
            return paid_a, cash(ingrid, b)[0]
    paid_a, ingrid_in_b = run(scenario())
    assert paid_a[net.account("alice").address] == 10 * ETHER - 3 * ETHER + ETHER // 2
    assert paid_a[net.account("ingrid").address] + ingrid_in_b == 20 * ETHER


# ---------------------------------------------------------------------- opening refused, checked, resumed


def ledger_states(*pairs):
    """The channel states of (node, ledger) pairs, and the γ records each node holds."""
    return [(node.multistate.channel(cid).state, dict(node.virtual.records)) for node, cid in pairs]


def test_ingrid_refuses_beyond_her_policy_and_nothing_changes(net):
    async def scenario():
        hub = HubPolicy(capacity=4 * ETHER, max_channels=2)
        async with triangle(net, hub=hub) as (alice, ingrid, bob, a, b):
            validity = net.chain.timestamp() + VALIDITY_IN
            before = ledger_states((alice, a), (ingrid, a), (ingrid, b), (bob, b))
            with pytest.raises(errors.PeerRejected) as refused:  # 4 + 1 ether: over her capacity
                await alice.virtual.open(a, bob.address, b, 4 * ETHER, ETHER, validity, WINDOW)
            assert refused.value.code is m.ErrorCode.CHANNEL_REFUSED and "capacity" in refused.value.reason
            assert ledger_states((alice, a), (ingrid, a), (ingrid, b), (bob, b)) == before
            assert alice.multistate.channel(a).pending == ()
            first = await alice.virtual.open(a, bob.address, b, 2 * ETHER, ETHER, validity, WINDOW)
            await alice.virtual.open(a, bob.address, b, ETHER, 0, validity, WINDOW)  # 4 ether blocked now
            with pytest.raises(errors.PeerRejected) as refused:
                await alice.virtual.open(a, bob.address, b, 1, 0, validity, WINDOW)
            assert "at most 2" in refused.value.reason
            assert len(ingrid.virtual.records) == 2
            # A γ closed fast counts no more: room for another, and the hub looks only at the live.
            await alice.virtual.close(first)
            for cid in (a, b):
                await ingrid.wait_for(cid, lambda r: not r.pending and len(r.nanocontracts) == 1)
            await alice.virtual.open(a, bob.address, b, 2 * ETHER, ETHER, validity, WINDOW)
            assert len(ingrid.virtual.records) == 3
            assert first not in {r.id for r in ingrid.virtual.live()} and len(ingrid.virtual.live()) == 2
    run(scenario())


def scanned(*nodes):
    """What a scan of every record gives: Ingrid's live γ and the cash they block (the first node's),
    and each node's live γ."""
    def live(node):
        return [r for r in node.virtual.records.values() if not node.virtual.settled(r)]
    hubs = [r for r in live(nodes[0]) if r.position is Position.INGRID]
    return (len(hubs), sum(r.data.cash_alice + r.data.cash_bob for r in hubs)), [
        sorted(r.id for r in live(node)) for node in nodes]


def indexed(*nodes):
    """The same from the nodes' indexes (perun.protocols.virtual.live)."""
    return nodes[0].virtual.live_set.hub_load(), [sorted(r.id for r in node.virtual.live()) for node in nodes]


def test_ingrids_live_channels_and_blocked_cash_stay_a_scan_of_her_records(net):
    """Through openings, a refused one, a fast close and Ingrid's restart."""
    async def scenario():
        hub = HubPolicy(capacity=6 * ETHER, max_channels=3)
        async with triangle(net, hub=hub) as (alice, ingrid, bob, a, b):
            validity = net.chain.timestamp() + VALIDITY_IN

            def check(load):
                assert indexed(ingrid, alice, bob) == scanned(ingrid, alice, bob)
                assert ingrid.virtual.live_set.hub_load() == load
            differ = compared_at_every_ledger_change(ingrid, alice, bob)
            check((0, 0))
            first = await alice.virtual.open(a, bob.address, b, 2 * ETHER, ETHER, validity, WINDOW)
            check((1, 3 * ETHER))
            await alice.virtual.open(a, bob.address, b, ETHER, 0, validity, WINDOW)
            check((2, 4 * ETHER))
            with pytest.raises(errors.PeerRejected, match="capacity"):  # 4 + 3 ether blocked: over 6
                await alice.virtual.open(a, bob.address, b, 2 * ETHER, ETHER, validity, WINDOW)
            check((2, 4 * ETHER))
            await alice.virtual.close(first)
            for cid in (a, b):
                await ingrid.wait_for(cid, lambda r: not r.pending and len(r.nanocontracts) == 1)
            check((1, ETHER))
            assert differ == []
            await ingrid.stop()
            async with net.running("ingrid", port=ingrid.port, hub=hub, accept_virtual=lambda v: True) as (ingrid,):
                await alice.wait_connected(ingrid.address)
                await bob.wait_connected(ingrid.address)
                check((1, ETHER))  # from her store
                await alice.virtual.open(a, bob.address, b, 2 * ETHER, ETHER, validity, WINDOW)
                check((2, 4 * ETHER))
    run(scenario())


def compared_at_every_ledger_change(*nodes):
    """The list of the times the indexes differed from a scan, looked at each time a node puts a
    ledger channel's record in place: a γ's record is often put just before its halves settle,
    which a look only at the end would not tell from the ledger channels' changes."""
    differ = []
    for node in nodes:
        def put(rec, original=node.multistate.put):
            original(rec)
            if indexed(*nodes) != scanned(*nodes):
                differ.append((indexed(*nodes), scanned(*nodes)))
        node.multistate.put = put
    return differ


def test_bob_refuses_a_channel_that_blocks_his_cash_and_alice_is_told(net):
    async def scenario():
        async with triangle(net, accept_virtual=lambda v: False) as (alice, ingrid, bob, a, b):
            validity = net.chain.timestamp() + VALIDITY_IN
            before = ledger_states((alice, a), (ingrid, a), (bob, b))
            with pytest.raises(errors.PeerRejected) as refused:
                await alice.virtual.open(a, bob.address, b, 2 * ETHER, ETHER, validity, WINDOW)
            assert refused.value.code is m.ErrorCode.CHANNEL_REFUSED and "ν_b" in refused.value.reason
            assert ledger_states((alice, a), (ingrid, a), (bob, b)) == before
            assert ingrid.multistate.channel(b).pending == ()
            # A channel that only pays Bob needs no consent of his.
            gid = await alice.virtual.open(a, bob.address, b, 2 * ETHER, 0, validity, WINDOW)
            await alice.pay(gid, ETHER)
            assert bob.virtual.info(gid).my_balance == ETHER
    run(scenario())


def test_every_field_of_a_proposed_half_is_checked_before_anything_is_signed(net):
    from perun.core.apps import virtualchannel as vc

    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            now = net.chain.timestamp()
            good = dict(alice=alice.address, ingrid=ingrid.address, bob=bob.address, channel_a=a, channel_b=b,
                        cash_alice=ETHER, cash_bob=ETHER, validity=now + VALIDITY_IN, window=WINDOW, nonce=7,
                        side=vc.SIDE_A, end_role=0)
            bad = {
                "no open ledger channel": dict(channel_b=bytes(32)),
                "the half belongs to ledger channel": dict(channel_a=b),
                "wrong role": dict(end_role=1),
                "must exceed the ledger channel's Δ": dict(window=DELTA),
                "validity must leave": dict(validity=now + DELTA + 1),
                "settleBy horizon": dict(validity=now + 365 * 24 * 3600 - 2 * WINDOW),
                "three distinct parties": dict(bob=alice.address),
                "Alice proposes ν_a and Ingrid ν_b": dict(side=vc.SIDE_B, end_role=0, alice=bob.address,
                                                          bob=alice.address, channel_b=a, channel_a=b),
            }
            before = ledger_states((alice, a), (ingrid, a), (ingrid, b), (bob, b))
            for reason, change in bad.items():
                with pytest.raises(errors.PeerRejected) as refused:
                    await alice.multistate.create(a, "VirtualChannel", vc.initial(**{**good, **change}))
                assert reason in refused.value.reason, (reason, refused.value.reason)
            state_a = alice.multistate.channel(a).state
            assert [s for s, _ in ledger_states((ingrid, a), (ingrid, b), (bob, b))] == \
                [state_a, *(s for s, _ in before[2:])]
            assert state_a.nanocontracts == () and ingrid.virtual.records == {}
            # Alice's node makes the same checks before it sends anything.
            with pytest.raises(errors.InvalidNanocontract):
                await alice.virtual.open(a, bob.address, b, ETHER, ETHER, now + VALIDITY_IN, DELTA)
    run(scenario())


def test_an_opening_interrupted_by_ingrids_crash_completes_after_her_restart(net):
    async def scenario():
        async with triangle(net, response_timeout=1.0) as (alice, ingrid, bob, a, b):
            ingrid.faults.kill_at("nano-acked")  # Bob's countersignature on ν_b stored, ν_a not yet countersigned
            validity = net.chain.timestamp() + VALIDITY_IN
            with pytest.raises(errors.PeerUnavailable):
                await alice.virtual.open(a, bob.address, b, 2 * ETHER, ETHER, validity, WINDOW)
            assert ingrid.killed and alice.virtual.records == {} and len(bob.virtual.records) == 1
            async with net.running("ingrid", port=ingrid.port, hub=HubPolicy(), accept_virtual=lambda v: True) \
                    as (ingrid,):
                # Alice redials and repeats ν_a; Ingrid finds ν_b signed and countersigns it.
                await alice.wait_for(a, lambda r: not r.pending)
                (gid,) = alice.virtual.records
                assert ingrid.virtual.record(gid).halves == (half(alice, gid, 0), half(bob, gid, 1))
                await alice.stop()  # an end restarts too: γ's updates are in its store
                async with net.running("alice", accept_virtual=lambda v: True) as (alice,):
                    await alice.wait_connected(bob.address)
                    await alice.pay(gid, ETHER)
                    await bob.pay(gid, ETHER // 2)
                    assert await alice.virtual.close(gid) == (ETHER + ETHER // 2, ETHER + ETHER // 2)
    run(scenario())


@pytest.mark.parametrize("bob_consents", [True, False])
def test_an_opening_interrupted_once_ingrid_stored_nu_b_is_answered_by_bob_after_her_restart(net, bob_consents):
    """Ingrid dies having stored ν_b, before sending it (she held ν_a in memory only). Restarted,
    she proposes the same ν_b to Bob again; Alice repeats ν_a meanwhile. Ingrid must hold it for
    Bob's answer, not propose a second ν_b (which her own in flight makes her refuse, and ν_a with
    it, while Bob countersigns the first: ν_b alone would block his and her cash until validity);
    and when Bob refuses ν_b, she refuses ν_a, which no caller waits for any more, so that ledger
    channel a is free again."""
    from perun.core.apps import hashtimelock as htlc

    async def scenario():
        async with triangle(net, response_timeout=1.0, accept_virtual=lambda v: bob_consents) \
                as (alice, ingrid, bob, a, b):
            ingrid.faults.kill_at("nano-proposed")  # ν_b stored, not sent
            validity = net.chain.timestamp() + VALIDITY_IN
            with pytest.raises(errors.PeerUnavailable):
                await alice.virtual.open(a, bob.address, b, 2 * ETHER, ETHER, validity, WINDOW)
            assert ingrid.killed and len(ingrid.multistate.channel(b).pending) == 1
            await bob.stop()  # so that Alice's ν_a reaches Ingrid first
            async with net.running("ingrid", port=ingrid.port, hub=HubPolicy()) as (ingrid,):
                await alice.wait_connected(ingrid.address)
                async with net.running("bob", port=bob.port, accept_virtual=lambda v: bob_consents) as (bob,):
                    # Bob redials Ingrid, who proposes ν_b again; his answer is Alice's.
                    await alice.wait_for(a, lambda r: not r.pending and not r.expired)
                    await ingrid.wait_for(b, lambda r: not r.pending)
                    if not bob_consents:
                        assert alice.virtual.records == {} and ingrid.virtual.records == {}
                        assert [alice.multistate.channel(a).nanocontracts, ingrid.multistate.channel(b).nanocontracts] \
                            == [(), ()]
                        # Ingrid holds nothing in ledger channel a: Alice's next proposal there goes through.
                        lock = htlc.initial(0, ETHER, htlc.hashlock_of(bytes(32)), validity)
                        await alice.multistate.create(a, "HashTimeLock", lock)
                        return
                    (gid,) = alice.virtual.records
                    assert ingrid.virtual.record(gid).halves == (half(alice, gid, 0), half(bob, gid, 1))
                    assert len(ingrid.multistate.channel(b).nanocontracts) == 1  # one ν_b, not two
                    await alice.wait_connected(bob.address)
                    await alice.pay(gid, ETHER)
                    assert await alice.virtual.close(gid) == (ETHER, 2 * ETHER)
    run(scenario())


def test_a_fast_close_interrupted_once_ingrid_stored_her_settle_calls_absorbs_the_halves_after_her_restart(net):
    """Ingrid dies having stored her SETTLE of each half, before sending them. Restarted, she sends
    them again as in-flight proposals; once each end has acknowledged its SETTLE she absorbs the half,
    as she would have (not only at the next reconnection: settling does not give up on a SETTLE
    that is in flight already)."""
    async def scenario():
        async with triangle(net, response_timeout=1.0) as (alice, ingrid, bob, a, b):
            gid, _ = await opened(net, alice, bob, a, b)
            ingrid.faults.kill_at("nano-proposed")
            with pytest.raises(errors.PeerUnavailable):
                await alice.virtual.close(gid)
            assert ingrid.killed and [len(ingrid.multistate.channel(c).pending) for c in (a, b)] == [1, 1]
            async with net.running("ingrid", port=ingrid.port, hub=HubPolicy()) as (ingrid,):
                for ledger, end in ((a, alice), (b, bob)):
                    for node in (ingrid, end):
                        await node.wait_for(ledger, lambda r: not r.nanocontracts and not r.pending, 10)
                    assert ingrid.multistate.channel(ledger).channel == end.multistate.channel(ledger).channel
                    assert end.virtual.settled(end.virtual.record(gid))
    run(scenario())


def test_two_fast_closes_at_once_absorb_every_half(net):
    """Ingrid settles two virtual channels through the same ledger channels at once: each
    absorption waits for the other's, rather than failing as a conflict and leaving a half."""
    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            validity = net.chain.timestamp() + VALIDITY_IN
            first = await alice.virtual.open(a, bob.address, b, ETHER, ETHER, validity, WINDOW)
            second = await alice.virtual.open(a, bob.address, b, ETHER, ETHER, validity, WINDOW)
            await alice.pay(first, ETHER // 2)
            await bob.pay(second, ETHER // 4)
            await asyncio.gather(alice.virtual.close(first), bob.virtual.close(second))
            for ledger, end in ((a, alice), (b, bob)):
                for node in (ingrid, end):
                    await node.wait_for(ledger, lambda r: not r.nanocontracts and not r.pending, 10)
            assert cash(alice, a) == (10 * ETHER - ETHER // 2 + ETHER // 4, 10 * ETHER + ETHER // 2 - ETHER // 4)
            assert cash(bob, b) == (10 * ETHER + ETHER // 2 - ETHER // 4, 10 * ETHER - ETHER // 2 + ETHER // 4)
    run(scenario())


def test_a_bad_final_state_is_refused_by_ingrid_and_changes_nothing(net):
    from tests.node.test_malicious import answer, dial

    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            gid, _ = await opened(net, alice, bob, a, b)
            ch = alice.virtual.record(gid).channel
            sig_a, sig_b = ch.sig_alice, ch.sig_bob  # on version 2, not final
            mallory = await dial(net, ingrid, net.account("mallory").key)
            mallory.send(m.VirtualClose(gid, 2, ETHER, 3 * ETHER, sig_a, sig_b))
            assert (await answer(mallory)).code == m.ErrorCode.UNKNOWN_CHANNEL
            fake = await dial(net, ingrid, net.account("alice").key)  # Alice's own key, by hand
            fake.send(m.VirtualClose(gid, 2, ETHER, 3 * ETHER, sig_a, sig_b))  # signed as a non-final state
            assert (await answer(fake)).code == m.ErrorCode.INVALID_SIGNATURE
            fake.send(m.VirtualClose(gid, 2, ETHER, 4 * ETHER, sig_a, sig_b))
            assert (await answer(fake)).code == m.ErrorCode.BALANCES_NOT_CONSERVED
            assert ingrid.virtual.record(gid).seen == ()
            assert not ingrid.virtual.info(gid).settled
    run(scenario())


def test_ingrid_charges_her_fee_with_nu_a_and_refuses_less(net):
    async def scenario():
        async with triangle(net, hub=HubPolicy(fee=ETHER // 100)) as (alice, ingrid, bob, a, b):
            validity = net.chain.timestamp() + VALIDITY_IN
            before = ledger_states((alice, a), (ingrid, a))
            with pytest.raises(errors.PeerRejected) as refused:
                await alice.virtual.open(a, bob.address, b, 2 * ETHER, 0, validity, WINDOW, fee=ETHER // 200)
            assert refused.value.code is m.ErrorCode.CHANNEL_REFUSED
            assert refused.value.reason == (
                "Ingrid charges a fee of 0.01 ETH per virtual channel, not 0.005 ETH: pass --fee 0.01eth to "
                f"`perun virtual open` (fee={ETHER // 100} in Python)")
            assert ledger_states((alice, a), (ingrid, a)) == before
            gid = await alice.virtual.open(a, bob.address, b, 2 * ETHER, 0, validity, WINDOW, fee=ETHER // 100)
            # One channel state blocks Alice's 2 ether in ν_a and pays Ingrid her fee.
            assert cash(alice, a) == (8 * ETHER - ETHER // 100, 10 * ETHER + ETHER // 100)
            await alice.pay(gid, ETHER)
            await alice.virtual.close(gid)
            await ingrid.wait_for(b, lambda r: not r.nanocontracts)
            await ingrid.wait_for(a, lambda r: not r.nanocontracts)
            return cash(ingrid, a)[0] + cash(ingrid, b)[0], cash(alice, a)[0], cash(bob, b)[0]
    ingrid_cash, alice_cash, bob_cash = run(scenario())
    assert ingrid_cash == 20 * ETHER + ETHER // 100  # her deposits and her fee: nothing gained or lost on γ
    assert (alice_cash, bob_cash) == (9 * ETHER - ETHER // 100, 11 * ETHER)


def test_an_end_killed_after_countersigning_disputes_with_that_state_after_its_restart(net):
    async def scenario():
        async with triangle(net, response_timeout=1.0) as (alice, ingrid, bob, a, b):
            gid, validity = await opened(net, alice, bob, a, b)
            bob.faults.kill_at("update-countersigned")  # version 3 stored by Bob, not acknowledged
            with pytest.raises(errors.PeerUnavailable):
                await alice.pay(gid, ETHER // 2)
            await alice.stop()  # and Alice is gone for good, holding version 2 signed by both
            async with net.running("bob", port=bob.port, accept_virtual=lambda v: True) as (bob,):
                await bob.wait_connected(ingrid.address)
                # Ingrid registers both halves, ν_b a block after ν_a: its window ends at validity + 1.
                for t in (validity - DELTA - 1, validity, validity + 1, validity + WINDOW, validity + 2 * WINDOW):
                    await at(net, t, ingrid, bob)
                latest = (3, ETHER // 2, 3 * ETHER + ETHER // 2)
                assert stored(net, half(bob, gid, 1)) == latest  # Bob's submission
                assert stored(net, half(ingrid, gid, 0)) == latest  # Ingrid's copy to ν_a
                assert bob.virtual.info(gid).settled and ingrid.virtual.info(gid).settled
    run(scenario())


def test_an_opening_that_outlasts_alices_reply_time_still_completes_when_bob_answers(net):
    """Bob is slow to countersign ν_b: Alice's ν_a expires at her end after T, but Ingrid, who
    took it in time, holds it and countersigns it once Bob has answered ν_b; Alice adopts that
    late answer, and γ is open at all three."""
    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            alice.multistate.proposer.reply_time = 0.5  # T is Alice's setting: Ingrid's and Bob's are longer
            validity = net.chain.timestamp() + VALIDITY_IN
            with held(bob, m.NanocontractCreate) as gate:
                with pytest.raises(errors.ProposalExpired):
                    await alice.virtual.open(a, bob.address, b, 3 * ETHER, ETHER, validity, WINDOW)
                assert alice.virtual.records == {} and [p.version for p in alice.multistate.channel(a).expired] == [1]
                gate.set()
                await alice.wait_for(a, lambda r: r.nanocontracts)
            (gid,) = alice.virtual.records
            assert {n.virtual.info(gid).position for n in (alice, ingrid, bob)} == {"alice", "ingrid", "bob"}
            await alice.pay(gid, ETHER)
            assert bob.virtual.info(gid).my_balance == 2 * ETHER
    run(scenario())


def test_an_opening_whose_half_expires_before_bob_answers_is_refused_to_alice(net):
    """Ingrid's ν_b expires while Bob is slow; when he answers he refuses it as expired, and
    Ingrid then refuses the ν_a she held: nothing is blocked anywhere."""
    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            ingrid.multistate.proposer.reply_time = 0.5
            validity = net.chain.timestamp() + VALIDITY_IN
            with held(bob, m.NanocontractCreate) as gate:
                opening = asyncio.ensure_future(alice.virtual.open(a, bob.address, b, 3 * ETHER, ETHER, validity,
                                                                   WINDOW))
                await ingrid.wait_for(b, lambda r: r.expired)
                gate.set()
                with pytest.raises(errors.PeerRejected, match="CHANNEL_REFUSED.*EXPIRED"):
                    await opening
            for node, cid in ((alice, a), (ingrid, a), (ingrid, b), (bob, b)):
                rec = node.multistate.channel(cid)
                assert (rec.nanocontracts, rec.pending, rec.expired, rec.state.version) == ((), (), (), 0)
            assert alice.virtual.records == ingrid.virtual.records == bob.virtual.records == {}
    run(scenario())


def test_a_half_refused_once_as_conflicting_is_proposed_again_and_the_opening_completes(net):
    """Bob's node refuses Ingrid's first ν_b as conflicting (as it does when its own proposal
    is in flight on ledger channel b): Ingrid proposes ν_b again above the burned version, and
    holds Alice's ν_a meanwhile instead of refusing it."""
    async def scenario():
        async with triangle(net) as (alice, ingrid, bob, a, b):
            receive, refused = bob.multistate.receive, []

            async def conflicting_once(conn, msg):
                if isinstance(msg, m.NanocontractCreate) and not refused:
                    refused.append(msg.version)
                    raise errors.UpdateConflict("this party has its own proposal in flight on the same slot")
                await receive(conn, msg)
            bob.multistate.receive = conflicting_once
            validity = net.chain.timestamp() + VALIDITY_IN
            gid = await alice.virtual.open(a, bob.address, b, 3 * ETHER, ETHER, validity, WINDOW)
            assert refused == [1] and bob.multistate.channel(b).state.version == 2
            assert {n.virtual.info(gid).position for n in (alice, ingrid, bob)} == {"alice", "ingrid", "bob"}
    run(scenario())
