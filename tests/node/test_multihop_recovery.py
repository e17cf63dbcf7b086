"""Multi-hop payments when a hop does not do its part at once (perun.protocols.multihop), in one
process on the embedded chain: a forwarder learns the preimage from the next hop's CLAIM on chain
and claims back with it; a forwarder killed between its incoming lock and its outgoing one
forwards when it is back, if there is still time, else gives the payment up and fails it back."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core import multihop as mh
from perun.core.apps import hashtimelock as htlc
from perun.core.route import DEFAULT_MARGIN, hop_delay
from perun.wire import messages as m
from tests.node.conftest import DELTA, run
from tests.node.test_multihop import FORWARD, keys_of, line, route_over, worth


@contextlib.contextmanager
def dropped(node, message_type):
    """`node` ignores every message of `message_type` (as if it never came) while inside."""
    receive = node.multistate.receive

    async def dropping(conn, msg):
        if not isinstance(msg, message_type):
            await receive(conn, msg)
    node.multistate.receive = dropping
    try:
        yield
    finally:
        node.multistate.receive = receive


def executed(net, cid):
    """(fun, by, released to Alice, released to Bob) of each execution on chain in channel `cid`."""
    return [(e.args["fun"], e.args["by"], e.args["releasedAlice"], e.args["releasedBob"])
            for e in net.ms.contract.events() if e.name == "NanocontractExecuted" and e.args["channelId"] == cid]


def nanocontract_events(net, cid):
    return [e.name for e in net.ms.contract.events()
            if e.name.startswith("Nanocontract") and e.args.get("channelId") == cid]


def test_a_forwarder_learns_the_preimage_from_a_claim_on_chain_and_claims_back_off_chain(net):
    """Bob does not countersign Carol's CLAIM: she registers her lock and executes CLAIM on chain
    after the window; Bob reads the preimage from that transaction and claims from Alice, who
    countersigns. Each ends up with what the payment gives: Bob his fee, Carol the amount."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, bob, carol = nodes
            ab, bc = channels
            invoice = await carol.invoice(ETHER, net.chain.timestamp() + 3600)
            h = invoice.payment_hash
            route = route_over(net, nodes, channels, ETHER)
            (fee,) = route.fees
            carol.multistate.proposer.reply_time = 0.5  # her claim expires unanswered soon
            with dropped(bob, m.NanocontractCall):
                paying = asyncio.create_task(alice.multihop.pay_route(route, invoice, keys_of(net, [carol])))
                nid = (await carol.wait_for(h, lambda r: r.incoming is not None)).incoming.nid
                # The claim went unanswered: Carol registers the lock, to CLAIM it on chain.
                await carol.wait_for(bc, lambda r: r.registered(nid) is not None and r.intents != ())
            assert not bob.multihop.records[h].preimage
            net.chain.advance_time(DELTA + 1)
            await carol.sync()
            await carol.wait_for(bc, lambda r: r.registered(nid).terminated)
            assert executed(net, bc) == [(htlc.CLAIM, carol.address, 0, ETHER)]  # Carol is bc's Bob
            # Bob read the preimage from Carol's transaction, and claimed from Alice with it.
            rec = await bob.wait_for(h, lambda r: r.claimed)
            assert htlc.hashlock_of(rec.preimage) == h and bob.store.hops()[0].preimage == rec.preimage
            assert await paying == rec.preimage
            assert nanocontract_events(net, ab) == []  # Alice countersigned: no lock of ab on chain
            await bob.wait_for(ab, lambda r: not r.nanocontracts)  # Bob absorbed what ab's lock released to him
            await alice.wait_for(ab, lambda r: not r.nanocontracts)
            assert worth(alice, ab) == alice.multistate.info(ab).my_cash == 9 * ETHER - fee
            # bc's lock was released on chain: Carol's cash and what the chain released to her.
            bc_carol, bc_bob = carol.multistate.info(bc).my_cash, bob.multistate.info(bc).my_cash
            assert bc_bob + bc_carol == 20 * ETHER - ETHER  # the lock's amount, released on chain to Carol
            assert worth(bob, ab) + bc_bob == 20 * ETHER + fee
            assert bc_carol + ETHER == 11 * ETHER
            assert carol.multihop.records[h].claimed  # the payee learnt its claim on chain too
    run(scenario())


async def carol_claims_on_chain_while_bob_is_away(net, nodes, channels):
    """Alice pays Carol 1 ETH through Bob, who does not countersign Carol's CLAIM and then stops;
    Carol CLAIMs on chain. Returns the payment hash, the route, Bob's fee and Alice's payment."""
    alice, bob, carol = nodes
    _, bc = channels
    invoice = await carol.invoice(ETHER, net.chain.timestamp() + 3600)
    h = invoice.payment_hash
    route = route_over(net, nodes, channels, ETHER)
    (fee,) = route.fees
    carol.multistate.proposer.reply_time = 0.5
    with dropped(bob, m.NanocontractCall):
        paying = asyncio.create_task(alice.multihop.pay_route(route, invoice, keys_of(net, [carol]), timeout=50))
        nid = (await carol.wait_for(h, lambda r: r.incoming is not None)).incoming.nid
        await carol.wait_for(bc, lambda r: r.registered(nid) is not None and r.intents != ())
    await bob.stop()
    net.chain.advance_time(DELTA + 1)
    await carol.sync()
    await carol.wait_for(bc, lambda r: r.registered(nid).terminated)
    return h, route, fee, paying


def test_a_forwarder_offline_during_the_claim_on_chain_learns_the_preimage_when_back(net):
    """Bob is offline when Carol CLAIMs on chain: back, he reads her transaction among the blocks
    he missed, and claims from Alice once connected to her (off chain: there is time)."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, _, carol = nodes
            ab, bc = channels
            h, route, fee, paying = await carol_claims_on_chain_while_bob_is_away(net, nodes, channels)
            async with net.running("bob", forward=FORWARD["bob"]) as (bob,):
                rec = await bob.wait_for(h, lambda r: bool(r.preimage))
                assert not rec.claimed and nanocontract_events(net, ab) == []  # waits for Alice: time is left
                await bob.connect(alice.address, "127.0.0.1", alice.port)
                rec = await bob.wait_for(h, lambda r: r.claimed)
                assert await paying == rec.preimage
                assert nanocontract_events(net, ab) == []  # claimed off chain
                assert worth(alice, ab) == 9 * ETHER - fee
                assert worth(bob, ab) + bob.multistate.info(bc).my_cash == 20 * ETHER + fee
    run(scenario())


def test_a_forwarder_back_late_claims_on_chain_at_once_and_the_payer_learns_the_preimage_there(net):
    """As above, but Bob is back when his incoming lock leaves only Δ + margin: he does not wait
    for Alice, he claims on chain; Alice, who never countersigned, reads the preimage there."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, _, carol = nodes
            ab, bc = channels
            h, route, fee, paying = await carol_claims_on_chain_while_bob_is_away(net, nodes, channels)
            net.chain.set_next_block_timestamp(route.hops[0].timeout - hop_delay(DELTA, DEFAULT_MARGIN))
            net.chain.mine()
            async with net.running("bob", forward=FORWARD["bob"]) as (bob,):
                rec = await bob.wait_for(h, lambda r: bool(r.preimage))
                pay = rec.incoming.nid
                await bob.wait_for(ab, lambda r: r.registered(pay) is not None)  # not connected to Alice
                net.chain.advance_time(DELTA + 1)
                await bob.sync()
                await bob.wait_for(ab, lambda r: r.registered(pay).terminated)
                assert executed(net, ab) == [(htlc.CLAIM, bob.address, 0, ETHER + fee)]
                assert (await bob.wait_for(h, lambda r: r.claimed)).preimage == rec.preimage
                assert await paying == rec.preimage  # Alice read it from Bob's CLAIM
                assert alice.multihop.records[h].claimed
                assert alice.multistate.info(ab).my_cash == 10 * ETHER - ETHER - fee
                assert bob.multistate.info(ab).my_cash + bob.multistate.info(bc).my_cash + ETHER + fee \
                    == 20 * ETHER + fee
    run(scenario())


async def paying_until_killed(net, nodes, channels, victim, point=None):
    """Alice pays Carol 1 ETH through Bob (a fresh invoice) until `victim` dies: at crash point
    `point`, or (None) when Bob is about to create his outgoing lock, right after storing his
    incoming one. Returns the payment hash, the route, Bob's fee and Alice's payment (a task)."""
    alice, bob, carol = nodes
    invoice = await carol.invoice(ETHER, net.chain.timestamp() + 3600)
    route = route_over(net, nodes, channels, ETHER)
    died = asyncio.Event()
    if point is None:
        async def die(payment_hash: bytes) -> None:
            bob.kill()
            died.set()
        bob.multihop.forward = die
    else:
        victim.on_kill = lambda node: died.set()
        victim.faults.kill_at(point)
    paying = asyncio.create_task(alice.multihop.pay_route(route, invoice, keys_of(net, [carol]), timeout=50))
    await died.wait()
    return invoice.payment_hash, route, route.fees[0], paying


async def killed_before_forwarding(net, nodes, channels):
    """Alice pays Carol 1 ETH through Bob, who dies right after storing his incoming lock, before
    creating his outgoing one (`paying_until_killed`)."""
    return await paying_until_killed(net, nodes, channels, nodes[1])


def test_a_forwarder_killed_before_its_outgoing_lock_forwards_when_it_is_back(net):
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, _, carol = nodes
            ab, bc = channels
            h, route, fee, paying = await killed_before_forwarding(net, nodes, channels)
            async with net.running("bob", forward=FORWARD["bob"]) as (bob,):
                assert mh.unforwarded(bob.multihop.records[h])
                assert bob.multistate.info(bc).nanocontracts == ()
                await bob.connect(alice.address, "127.0.0.1", alice.port)
                await bob.connect(carol.address, "127.0.0.1", carol.port)  # the next hop: Bob forwards
                preimage = await paying
                assert htlc.hashlock_of(preimage) == h
                for node in (bob, carol):
                    await node.wait_for(h, lambda r: r.claimed)
                assert worth(alice, ab) == 9 * ETHER - fee
                assert worth(bob, ab) + worth(bob, bc) == 20 * ETHER + fee
                assert worth(carol, bc) == 11 * ETHER
                # Forwarded once: Carol absorbed the one lock, and has its amount in cash.
                await carol.wait_for(bc, lambda r: not r.nanocontracts)
                assert carol.multistate.info(bc).my_cash == 11 * ETHER
    run(scenario())


def test_a_forwarder_back_too_late_gives_the_payment_up_and_fails_it_back(net):
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, _, carol = nodes
            ab, bc = channels
            h, route, fee, paying = await killed_before_forwarding(net, nodes, channels)
            # One second too late: Carol would not have Δ + margin left to claim on chain.
            out_timeout = route.hops[1].timeout
            net.chain.set_next_block_timestamp(out_timeout - hop_delay(DELTA, DEFAULT_MARGIN) + 1)
            net.chain.mine()
            async with net.running("bob", forward=FORWARD["bob"]) as (bob,):
                await bob.connect(carol.address, "127.0.0.1", carol.port)
                rec = await bob.wait_for(h, lambda r: r.outgoing is None)
                assert rec.incoming is not None and not rec.preimage and not rec.claimed and rec.failure
                assert bob.store.hops()[0].outgoing is None  # durably: not tried again
                assert bob.multistate.info(bc).nanocontracts == carol.multistate.info(bc).nanocontracts == ()
                assert h not in carol.multihop.records or carol.multihop.records[h].incoming is None
                # Alice's lock stays blocked until Bob can tell her: then he cancels it with TOO_LATE.
                (nc,) = alice.multistate.info(ab).nanocontracts
                assert (nc.blocked, nc.released) == ((ETHER + fee, 0), (0, 0)) and not paying.done()
                await bob.connect(alice.address, "127.0.0.1", alice.port)
                with pytest.raises(errors.PaymentFailed, match="too late to forward") as failed:
                    await paying
                assert (failed.value.hop, failed.value.code) == (bob.address, mh.FailureCode.TOO_LATE)
                assert worth(alice, ab) == 10 * ETHER
    run(scenario())


def test_a_payee_back_from_a_crash_before_acknowledging_its_lock_claims_it_off_chain(net):
    """Carol, the payee, dies right after countersigning her incoming lock (crash point
    nano-countersigned): Bob never got her acknowledgement. Back, she claims at once, before Bob's
    creation is answered again: Bob does not hold the lock yet and refuses that CLAIM
    (UNKNOWN_NANOCONTRACT). With time left she claims again at the next poll, off chain, instead
    of going to the chain."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, bob, carol = nodes
            ab, bc = channels
            h, _, fee, paying = await paying_until_killed(net, nodes, channels, carol, "nano-countersigned")
            async with net.running("carol") as (carol,):
                await bob.connect(carol.address, "127.0.0.1", carol.port)  # she listens on a new port
                assert htlc.hashlock_of(await paying) == h
                await carol.wait_for(h, lambda r: r.claimed)
                await bob.wait_for(h, lambda r: r.claimed)
                assert nanocontract_events(net, bc) == nanocontract_events(net, ab) == []  # all off chain
                assert carol.multistate.channel(bc).intents == ()
                await carol.wait_for(bc, lambda r: not r.nanocontracts)
                assert carol.multistate.info(bc).my_cash == 11 * ETHER
                assert worth(bob, ab) + worth(bob, bc) == 20 * ETHER + fee
    run(scenario())
