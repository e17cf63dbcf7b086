"""Finding a route by asking (perun.protocols.multihop.directory), in one process on the embedded
chain: the payer knows only its neighbour, asks it for the channels it and its own peers
forward over, finds the cheapest route, and pays an invoice or an address (keysend) over it.
The hops' keys come from their signed announcements; a bad announcement is dropped."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import replace

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core.announce import Announcement
from perun.core.apps import hashtimelock as htlc
from perun.core.machine import Stage
from perun.core.multihop import Part
from perun.core.onion import compressed_public_key
from perun.core.route import MAX_HOPS, Policy
from perun.protocols.multihop import ForwardPolicy
from perun.protocols.multihop.directory import LEVEL_TIME, MAX_AGE, MAX_ANSWERING
from perun.wire import messages as m
from tests.node.conftest import DELTA, run
from tests.node.test_multihop import FORWARD, line, worth


async def opened(left, right, mine=10 * ETHER, theirs=10 * ETHER):
    """`left` connected to `right` with an open multistate channel (`left` deposits `mine`)."""
    await left.connect(right.address, "127.0.0.1", right.port)
    cid = await left.multistate.open(right.address, mine, theirs, DELTA)
    await right.wait_for(cid, lambda r: r.stage is Stage.OPEN)
    return cid


async def settled(payment_hash, *nodes):
    for node in nodes:
        await node.wait_for(payment_hash, lambda r: r.claimed)


def fee(name, amount):
    policy = FORWARD[name]
    return policy.base_fee + amount * policy.fee_ppm // 10**6


def test_alice_knows_only_bob_and_pays_dave_by_invoice_and_by_address(net):
    """Alice – Bob – Dave: Bob forwards, Dave does not. Alice asks Bob, who asks Dave; she pays
    Dave's invoice through Bob, then pays Dave again by his address alone (keysend)."""
    async def scenario():
        async with line(net, ["alice", "bob", "dave"]) as (nodes, channels):
            alice, bob, dave = nodes
            ab, bd = channels
            assert set(alice.peers) == {bob.address}
            # Bob announces his two directions with his fees; Dave (no forwarding) only himself.
            own = bob.multihop.directory.own()
            assert {(d.target, d.policy) for d in own.directions} == {
                (alice.address, Policy(1_000, 2_000, DELTA, 10 * ETHER)),
                (dave.address, Policy(1_000, 2_000, DELTA, 10 * ETHER))}
            assert dave.multihop.directory.own().directions == ()
            graph, keys = await alice.multihop.directory.survey()
            assert keys == {bob.address: compressed_public_key(bob.key), dave.address: compressed_public_key(dave.key)}
            assert {(d.source, d.target) for d in graph.directions} == {
                (alice.address, bob.address), (bob.address, alice.address), (bob.address, dave.address)}

            amount = ETHER // 10
            invoice = await dave.invoice(amount, net.chain.timestamp() + 3600, description="coffee")
            route, preimage = await alice.pay_invoice(invoice.encode())
            assert htlc.hashlock_of(preimage) == invoice.payment_hash
            assert [hop.node for hop in route.hops] == [bob.address, dave.address]
            assert route.fees == (fee("bob", amount),) and route.total == amount + fee("bob", amount)
            await settled(invoice.payment_hash, bob, dave)
            assert worth(alice, ab) == 10 * ETHER - amount - fee("bob", amount)
            assert worth(bob, ab) + worth(bob, bd) == 20 * ETHER + fee("bob", amount)
            assert worth(dave, bd) == 10 * ETHER + amount

            route, preimage = await alice.pay_to(dave.address.lower(), 2 * amount)
            h = htlc.hashlock_of(preimage)
            assert route.fees == (fee("bob", 2 * amount),)
            await settled(h, bob, dave)
            rec = dave.multihop.records[h]
            assert (rec.part, rec.preimage, rec.invoice) == (Part.PAYEE, preimage, b"")
            assert dave.store.hops() and {r.payment_hash for r in dave.store.hops()} == {invoice.payment_hash, h}
            assert worth(alice, ab) == 10 * ETHER - 3 * amount - fee("bob", amount) - fee("bob", 2 * amount)
            assert worth(bob, ab) + worth(bob, bd) == 20 * ETHER + fee("bob", amount) + fee("bob", 2 * amount)
            assert worth(dave, bd) == 10 * ETHER + 3 * amount
    run(scenario())


def test_alice_pays_dave_three_hops_away_by_invoice_and_by_address(net):
    async def scenario():
        async with line(net, ["alice", "bob", "carol", "dave"]) as (nodes, channels):
            alice, bob, carol, dave = nodes
            ab, bc, cd = channels
            amount = ETHER // 4
            invoice = await dave.invoice(amount, net.chain.timestamp() + 3600)
            route, _ = await alice.pay_invoice(invoice)
            assert [hop.node for hop in route.hops] == [bob.address, carol.address, dave.address]
            fee_carol = fee("carol", amount)
            fee_bob = fee("bob", amount + fee_carol)
            assert route.fees == (fee_bob, fee_carol)
            await settled(invoice.payment_hash, bob, carol, dave)

            route, preimage = await alice.pay_to(dave.address, amount)
            assert route.fees == (fee_bob, fee_carol)
            await settled(htlc.hashlock_of(preimage), bob, carol, dave)
            assert worth(alice, ab) == 10 * ETHER - 2 * (amount + fee_bob + fee_carol)
            assert worth(bob, ab) + worth(bob, bc) == 20 * ETHER + 2 * fee_bob
            assert worth(carol, bc) + worth(carol, cd) == 20 * ETHER + 2 * fee_carol
            assert worth(dave, cd) == 10 * ETHER + 2 * amount
    run(scenario())


@contextlib.asynccontextmanager
async def diamond(net, forward):
    """Alice with channels to Bob and Carol, each with a channel to Dave; `forward` by name."""
    async with net.running("alice", "dave") as (alice, dave), \
            net.running("bob", forward=forward["bob"]) as (bob,), \
            net.running("carol", forward=forward["carol"]) as (carol,):
        channels = {}
        for left, right in ((alice, bob), (alice, carol), (bob, dave), (carol, dave)):
            channels[left.name + right.name] = await opened(left, right)
        yield (alice, bob, carol, dave), channels


def test_the_cheaper_of_two_paths_is_taken(net):
    """Bob charges more than Carol: Alice pays Dave through Carol, and Bob's channels are untouched."""
    async def scenario():
        async with diamond(net, {"bob": ForwardPolicy(base_fee=10**15), "carol": ForwardPolicy(fee_ppm=1)}) as (
                (alice, bob, carol, dave), ch):
            amount = ETHER
            invoice = await dave.invoice(amount, net.chain.timestamp() + 3600)
            route, _ = await alice.pay_invoice(invoice)
            assert [hop.node for hop in route.hops] == [carol.address, dave.address]
            assert route.fees == (amount // 10**6,)
            await settled(invoice.payment_hash, carol, dave)
            assert worth(carol, ch["alicecarol"]) + worth(carol, ch["caroldave"]) == 20 * ETHER + amount // 10**6
            assert bob.multistate.info(ch["alicebob"]).nanocontracts == ()
            assert bob.multistate.info(ch["bobdave"]).nanocontracts == ()
            assert invoice.payment_hash not in bob.multihop.records
    run(scenario())


def test_no_route_with_the_capacity_for_the_amount(net):
    """Bob can lock only 1 ether towards Dave: 2 ether find no route, and nothing is locked."""
    async def scenario():
        async with net.running("alice", "dave") as (alice, dave), \
                net.running("bob", forward=FORWARD["bob"]) as (bob,):
            ab = await opened(alice, bob)
            bd = await opened(bob, dave, ETHER, 10 * ETHER)
            invoice = await dave.invoice(2 * ETHER, net.chain.timestamp() + 3600)
            with pytest.raises(errors.RouteNotFound, match="capacity"):
                await alice.pay_invoice(invoice)
            with pytest.raises(errors.RouteNotFound, match="capacity"):
                await alice.pay_to(dave.address, 2 * ETHER)
            for node, cid in ((alice, ab), (bob, ab), (bob, bd), (dave, bd)):
                assert node.multistate.info(cid).nanocontracts == ()
            assert list(alice.multihop.records) == [] and list(bob.multihop.records) == []
            # Within Bob's capacity, less his fee, it goes through.
            route, _ = await alice.pay_to(dave.address, ETHER - fee("bob", ETHER))
            assert route.total == ETHER - fee("bob", ETHER) + fee("bob", ETHER - fee("bob", ETHER))
    run(scenario())


def test_forged_stale_and_foreign_announcements_are_dropped_and_the_node_goes_on(net, caplog):
    """Bob's announcement comes with a capacity he did not sign, then signed but too old, then
    for another chain: each time Alice drops it (logged) and finds no route to Dave; once Bob
    announces what he signs now, she pays."""
    async def scenario():
        async with line(net, ["alice", "bob", "dave"]) as (nodes, _):
            alice, bob, dave = nodes
            directory = bob.multihop.directory
            honest = directory.own

            def forged():
                signed = honest()
                more = tuple(replace(d, policy=replace(d.policy, capacity=100 * ETHER)) for d in signed.directions)
                return replace(signed, directions=more)

            def resigned(**changes):
                def announce():
                    a = honest()
                    fields = {"chain_id": a.chain_id, "timestamp": a.timestamp, **changes}
                    return Announcement.create(bob.key, fields["chain_id"], fields["timestamp"], a.directions)
                return announce
            now = alice.watcher.chain_time
            invoice = await dave.invoice(ETHER, net.chain.timestamp() + 3600)
            for bad, says in ((forged, f"the announcement of {bob.address} is signed by"),
                              (resigned(timestamp=now - MAX_AGE - 10), f"{bob.address}'s announcement is of chain "
                                                                      f"time {now - MAX_AGE - 10}"),
                              (resigned(chain_id=1), f"{bob.address} announces for chain 1, not")):
                directory.own = bad
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="perun.node"):
                    with pytest.raises(errors.RouteNotFound, match="payee"):
                        await alice.pay_invoice(invoice)
                assert f"alice: dropped an announcement relayed by {bob.address}: {says}" in caplog.text
                assert list(alice.multihop.records) == []
            directory.own = honest
            route, _ = await alice.pay_invoice(invoice)
            assert route.payee == dave.address
    run(scenario())


def test_a_query_round_a_cycle_is_passed_on_once(net):
    """Alice, Bob, Carol and Dave in a ring, all forwarding: Alice's question goes round both ways
    and each node passes it on once, not round and round until the depth runs out."""
    async def scenario():
        names = ("alice", "bob", "carol", "dave")
        async with contextlib.AsyncExitStack() as stack:
            ring = [(await stack.enter_async_context(net.running(name, forward=ForwardPolicy())))[0]
                    for name in names]
            for left, right in zip(ring, ring[1:] + ring[:1]):
                await opened(left, right)
            asked = []
            for node in ring:
                receive = node.multihop.directory.receive

                async def counting(conn, msg, node=node, receive=receive):
                    if isinstance(msg, m.ChannelsQuery):
                        asked.append((node.name, msg.depth))
                    await receive(conn, msg)
                node.multihop.directory.receive = counting
            alice, bob, carol, dave = ring
            graph, keys = await alice.multihop.directory.survey()
            assert set(keys) == {bob.address, carol.address, dave.address}
            assert len(graph.directions) == 8  # both directions of each of the 4 channels
            # Alice asks Bob and Dave; each asks Carol; Carol passes the first that comes on to the
            # other, who passed it on already and answers for itself. Five questions in all.
            passed_on = [name for name, depth in asked if depth == 6]
            assert passed_on in (["bob"], ["dave"]), asked
            assert sorted(a for a in asked if a[1] != 6) == [("bob", 8), ("carol", 7), ("carol", 7), ("dave", 8)]
            invoice = await carol.invoice(ETHER, net.chain.timestamp() + 3600)
            route, _ = await alice.pay_invoice(invoice)
            assert route.fees == (0,) and route.payee == carol.address
    run(scenario())


def test_a_peer_that_refuses_queries_is_not_waited_for(net):
    """Bob answers no more queries of Alice's (as when she has too many in flight): his refusal
    ends her wait at once, and she finds no route rather than waiting out the depth."""
    async def scenario():
        async with line(net, ["alice", "bob", "dave"]) as (nodes, _):
            alice, bob, dave = nodes
            directory = bob.multihop.directory
            directory._answering[alice.address] = MAX_ANSWERING  # as if four of hers were being answered
            invoice = await dave.invoice(ETHER, net.chain.timestamp() + 3600)
            started = time.monotonic()
            with pytest.raises(errors.RouteNotFound, match="payee"):
                await alice.pay_invoice(invoice)
            assert time.monotonic() - started < LEVEL_TIME * MAX_HOPS / 2
    run(scenario())


def test_an_answer_of_too_many_announcements_is_cut(net, caplog):
    """Bob sends his answer 300 times over: Alice looks at 256 announcements, says so, and goes on
    with what they hold."""
    async def scenario():
        async with line(net, ["alice", "bob", "dave"]) as (nodes, _):
            alice, bob, dave = nodes
            send = bob.multihop.directory._send
            bob.multihop.directory._send = lambda conn, query, answer: send(conn, query, answer * 300)
            with caplog.at_level(logging.WARNING, logger="perun.node"):
                graph, keys = await alice.multihop.directory.survey()
            assert f"alice: {bob.address} sent more than 256 announcements: the rest is dropped" in caplog.text
            assert set(keys) == {bob.address, dave.address} and len(graph.directions) == 3
    run(scenario())
