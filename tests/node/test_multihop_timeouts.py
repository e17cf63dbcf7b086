"""Multi-hop payments at their locks' deadlines (docs/protocol.md §13.7), in one process on the
embedded chain, each at the lock's timeout T − 1, T and T + 1: a hop that knows the preimage but
is not paid off chain claims its incoming lock on chain until T, and after T its sender takes it
back; a lock that a silent receiver neither claims nor cancels is reclaimed on chain from T + 1
only; a payee that never reveals gets its lock reclaimed off chain from T + 1, and every hop ends
whole, the payer with a failure. A hop that learns the preimage while its sender is away waits
for it, off chain, while its lock leaves more than Δ + margin."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core.apps import hashtimelock as htlc
from perun.core.multihop import FailureCode, Release
from perun.wire import messages as m
from tests.node.conftest import DELTA, run
from tests.node.test_multihop import FORWARD, keys_of, line, route_over, worth
from tests.node.test_multihop_recovery import dropped, executed, nanocontract_events, paying_until_killed

OFFSETS = pytest.mark.parametrize("offset", [-1, 0, 1], ids=["T-1", "T", "T+1"])


def latest_block_at(net, t):
    """The chain's latest block, the time nodes go by, is at exactly `t`."""
    net.chain.set_next_block_timestamp(t)
    net.chain.mine()
    assert net.chain.timestamp() == t


def withholding(node):
    """`node`, a payee, never claims its lock: it keeps the preimage to itself."""
    async def withhold(payment_hash: bytes, preimage: bytes = b"") -> None:
        pass
    node.multihop.claim = withhold


def due(net, node):
    """What the node's multihop protocol has to do at the latest block's time (before its
    follower does it: a duty starts its task, and one under way is not due again)."""
    return [duty.what for duty in node.multihop.duties(net.chain.timestamp())]


async def stopped(task):
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def lock_held(net, nodes, channels, withhold=False):
    """Alice pays Carol 1 ETH through Bob (Carol withholding the preimage if `withhold`). Returns
    the payment hash, the route and Alice's payment once Carol holds her lock."""
    alice, bob, carol = nodes
    invoice = await carol.invoice(ETHER, net.chain.timestamp() + 3600)
    if withhold:
        withholding(carol)
    route = route_over(net, nodes, channels, ETHER)
    paying = asyncio.create_task(alice.multihop.pay_route(route, invoice, keys_of(net, [carol]), timeout=50))
    await carol.wait_for(invoice.payment_hash, lambda r: r.incoming is not None)
    await bob.wait_for(invoice.payment_hash, lambda r: r.outgoing is not None and bool(r.outgoing.nid))
    return invoice.payment_hash, route, paying


@OFFSETS
def test_a_hop_not_paid_off_chain_claims_on_chain_until_the_timeout_then_its_sender_reclaims(net, offset):
    """Bob learns the preimage from Carol's claim; Alice does not countersign his: he registers his
    incoming lock to CLAIM it on chain and stops. His CLAIM executes at T − 1 and at T; at T + 1 his
    node does not send it, the contract refuses it (HashTimeLockExpired), and Alice reclaims."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, bob, carol = nodes
            ab, bc = channels
            bob.multistate.proposer.reply_time = 0.5  # his claim expires unanswered soon
            with dropped(alice, m.NanocontractCall):
                h, route, paying = await lock_held(net, nodes, channels)
                nid = (await bob.wait_for(h, lambda r: bool(r.preimage))).incoming.nid
                await bob.wait_for(ab, lambda r: r.registered(nid) is not None and r.intents != ())
            fee = route.fees[0]
            await carol.wait_for(h, lambda r: r.claimed)
            await bob.stop()
            await alice.stop()
            await stopped(paying)
            timeout = route.hops[0].timeout
            net.chain.set_next_block_timestamp(timeout + offset)  # the next transaction's time
            async with net.running("bob", forward=FORWARD["bob"]) as (bob,):
                if offset <= 0:
                    rec = await bob.wait_for(h, lambda r: r.claimed)
                    assert executed(net, ab) == [(htlc.CLAIM, bob.address, 0, ETHER + fee)]
                    block = next(e.block_number for e in net.ms.contract.events() if e.name == "NanocontractExecuted")
                    assert net.chain.w3.eth.get_block(block)["timestamp"] == timeout + offset
                    assert bob.store.hops()[0].claimed and rec.incoming.released is None
                    async with net.running("alice") as (alice,):
                        await alice.sync()
                        assert (await alice.wait_for(h, lambda r: r.claimed)).preimage == rec.preimage
                        assert alice.describe(h)["outcome"] == "settled"
                        assert alice.multistate.info(ab).my_cash == 10 * ETHER - ETHER - fee
                    return
                await bob.sync()
                assert executed(net, ab) == []  # his node does not send a CLAIM the contract refuses
                params = bob.multistate.channel(ab).params
                with pytest.raises(errors.HashTimeLockExpired) as refused:
                    net.ms.contract.execute(net.account("bob"), params, nid, htlc.CLAIM, bob.multihop.records[h].preimage)
                assert refused.value.fields == {"timeout": timeout}
                async with net.running("alice") as (alice,):
                    await alice.sync()
                    await alice.wait_for(h, lambda r: r.outgoing.released is Release.RECLAIMED)
                    assert executed(net, ab) == [(htlc.RECLAIM, alice.address, ETHER + fee, 0)]
                    shown = alice.describe(h)
                    assert shown["outcome"] == "failed" and "timed out" in shown["failure"]["reason"]
                    await bob.sync()
                    rec = await bob.wait_for(h, lambda r: r.incoming.released is Release.RECLAIMED)
                    assert not rec.claimed  # too late: Bob paid Carol and lost his claim
                    assert alice.multistate.info(ab).my_cash == 10 * ETHER - ETHER - fee  # and the chain's release
    run(scenario())


@OFFSETS
def test_a_lock_a_silent_receiver_holds_is_reclaimed_on_chain_from_its_timeout_plus_one(net, offset):
    """Carol takes Bob's lock, keeps the preimage and goes offline. At T − 1 and T Bob does nothing
    (nothing on chain, his record as it was); at T + 1 he registers the lock, RECLAIMs it once the
    window has passed, and cancels Alice's lock with DOWNSTREAM_TIMED_OUT: she learns it at once."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, bob, carol = nodes
            ab, bc = channels
            h, route, paying = await lock_held(net, nodes, channels, withhold=True)
            await carol.stop()
            timeout, fee = route.hops[1].timeout, route.fees[0]
            before = bob.multihop.records[h]
            latest_block_at(net, timeout + offset)
            assert due(net, bob) == (["reclaim"] if offset > 0 else [])
            await bob.sync()
            if offset <= 0:
                assert nanocontract_events(net, bc) == [] and bob.multistate.channel(bc).intents == ()
                assert bob.multihop.records[h] == before and bob.store.hops() == [before]
                assert not paying.done()
                await stopped(paying)
                return
            nid = before.outgoing.nid
            await bob.wait_for(bc, lambda r: r.registered(nid) is not None)
            assert nanocontract_events(net, bc) == ["NanocontractRegistered"]
            net.chain.advance_time(DELTA + 1)
            await bob.sync()
            rec = await bob.wait_for(h, lambda r: r.outgoing.released is Release.RECLAIMED)
            assert executed(net, bc) == [(htlc.RECLAIM, bob.address, ETHER, 0)]  # Bob is bc's Alice
            with pytest.raises(errors.PaymentFailed, match="timed out") as failed:
                await paying
            assert (failed.value.hop, failed.value.index, failed.value.code) == (bob.address, 0,
                                                                                FailureCode.DOWNSTREAM_TIMED_OUT)
            assert rec.failure and bob.store.hops()[0].outgoing.released is Release.RECLAIMED
            await bob.wait_for(h, lambda r: r.incoming.released is Release.CANCELLED)
            assert nanocontract_events(net, ab) == []  # Alice's lock went back off chain
            assert worth(alice, ab) == 10 * ETHER
            # Bob: his cash in ab, and in bc his cash plus what the chain released to him.
            assert worth(bob, ab) + bob.multistate.info(bc).my_cash + ETHER == 20 * ETHER
            assert route.hops[0].amount == ETHER + fee
    run(scenario())


@OFFSETS
def test_a_payee_that_never_reveals_leaves_every_hop_whole_after_the_timeouts(net, offset):
    """Carol takes Bob's lock, stays online and never claims it. At T − 1 and T nothing happens; at
    T + 1 Bob reclaims it off chain (Carol's node countersigns), cancels Alice's lock, and Alice
    gets the failure: all of it off chain, each node with what it started with."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, bob, carol = nodes
            ab, bc = channels
            h, route, paying = await lock_held(net, nodes, channels, withhold=True)
            timeout = route.hops[1].timeout
            before = [node.multihop.records[h] for node in nodes]
            latest_block_at(net, timeout + offset)
            assert due(net, bob) == (["reclaim"] if offset > 0 else []) and due(net, alice) == []
            assert due(net, carol) == ([] if offset > 0 else ["claim"])  # she could claim until T; she withholds
            for node in nodes:
                await node.sync()
            if offset <= 0:
                assert [node.multihop.records[h] for node in nodes] == before and not paying.done()
                (nc,) = carol.multistate.info(bc).nanocontracts
                assert (nc.blocked, nc.released) == ((0, ETHER), (0, 0))  # still Bob's lock towards Carol
                await stopped(paying)
                return
            with pytest.raises(errors.PaymentFailed) as failed:
                await paying
            assert (failed.value.hop, failed.value.code) == (bob.address, FailureCode.DOWNSTREAM_TIMED_OUT)
            await carol.wait_for(h, lambda r: r.incoming.released is Release.RECLAIMED)
            await bob.wait_for(h, lambda r: r.incoming.released is Release.CANCELLED)
            assert nanocontract_events(net, ab) == nanocontract_events(net, bc) == []
            assert worth(alice, ab) == 10 * ETHER
            assert worth(bob, ab) + worth(bob, bc) == 20 * ETHER
            assert worth(carol, bc) == 10 * ETHER
            assert [node.describe(h)["outcome"] for node in nodes] == ["failed"] * 3
    run(scenario())


def test_a_hop_that_learns_the_preimage_while_its_sender_is_away_waits_for_it_while_time_is_left(net):
    """Alice dies once her lock is signed by both (crash point nano-acked); Bob forwards, Carol
    claims, and Bob learns the preimage while Alice is away. His lock leaves him more than
    Δ + margin, so he does not go on chain (§13.5): he waits for her, and once she is back
    claims off chain."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, bob, carol = nodes
            ab, bc = channels
            h, _, fee, paying = await paying_until_killed(net, nodes, channels, alice, "nano-acked")
            await stopped(paying)  # it died with her: her record tells how the payment ends
            await carol.wait_for(h, lambda r: r.claimed)
            await bob.wait_for(h, lambda r: bool(r.preimage))
            await bob.sync()
            assert due(net, bob) == []  # the claim waits for Alice
            assert bob.multistate.channel(ab).intents == () and nanocontract_events(net, ab) == []
            async with net.running("alice") as (alice,):  # she redials Bob
                rec = await alice.wait_for(h, lambda r: bool(r.preimage))
                assert htlc.hashlock_of(rec.preimage) == h and rec.claimed
                await bob.wait_for(h, lambda r: r.claimed)
                assert nanocontract_events(net, ab) == []  # claimed off chain
                assert worth(alice, ab) == 9 * ETHER - fee
                assert worth(bob, ab) + worth(bob, bc) == 20 * ETHER + fee
    run(scenario())


def test_the_payers_own_lock_is_reclaimed_on_chain_when_its_receiver_is_gone(net):
    """Bob, the payee, takes Alice's lock, never claims it and goes offline: from T + 1 Alice
    reclaims it on chain, and her payment fails as timed out; a restart keeps that outcome."""
    async def scenario():
        async with line(net, ["alice", "bob"]) as (nodes, channels):
            alice, bob = nodes
            (ab,) = channels
            invoice = await bob.invoice(ETHER, net.chain.timestamp() + 3600)
            h = invoice.payment_hash
            withholding(bob)
            route = route_over(net, nodes, channels, ETHER)
            paying = asyncio.create_task(alice.multihop.pay_route(route, invoice, {}, timeout=50))
            await bob.wait_for(h, lambda r: r.incoming is not None)
            nid = (await alice.wait_for(h, lambda r: bool(r.outgoing.nid))).outgoing.nid
            await bob.stop()
            latest_block_at(net, route.hops[0].timeout + 1)
            await alice.sync()
            await alice.wait_for(ab, lambda r: r.registered(nid) is not None)
            net.chain.advance_time(DELTA + 1)
            await alice.sync()
            with pytest.raises(errors.PaymentFailed, match="no hop claimed or failed") as failed:
                await paying
            assert (failed.value.hop, failed.value.code) == (bob.address, None)
            assert executed(net, ab) == [(htlc.RECLAIM, alice.address, ETHER, 0)]
            await alice.stop()
            async with net.running("alice") as (alice,):
                assert alice.describe(h)["outcome"] == "failed"
                assert alice.multistate.info(ab).my_cash + ETHER == 10 * ETHER  # the chain released ETHER
    run(scenario())
