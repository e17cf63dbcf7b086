"""Multi-hop payments between nodes (perun.protocols.multihop), in one process on the embedded
chain: Dave makes an invoice, Alice pays it through Bob and Carol, each hop a HashTimeLock in a
multistate channel, created right after the onion for it and claimed back with the preimage."""

from __future__ import annotations

import contextlib

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core import multihop as mh
from perun.core.apps import hashtimelock as htlc
from perun.core.machine import Stage
from perun.core.multihop import Part
from perun.core.multistate import MAX_NANOCONTRACTS
from perun.core.onion import compressed_public_key
from perun.core.route import DEFAULT_MARGIN, Direction, Policy, build_route
from perun.protocols.multihop import ForwardPolicy
from perun.wire import messages as m
from tests.node.conftest import DELTA, run

FORWARD = {"bob": ForwardPolicy(base_fee=1_000, fee_ppm=2_000), "carol": ForwardPolicy(base_fee=7, fee_ppm=500)}
SLACK = 60  # seconds the chain may advance between building the route and the payee's check


@contextlib.asynccontextmanager
async def line(net, names, forward=FORWARD):
    """The nodes of `names` running, each connected to the next with an open multistate channel
    (10 ether each side) opened by the first; those `forward` names forward with its policy.
    Yields (nodes, channels)."""
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for name in names:
            (node,) = await stack.enter_async_context(net.running(name, forward=forward.get(name)))
            nodes.append(node)
        channels = []
        for left, right in zip(nodes, nodes[1:]):
            await left.connect(right.address, "127.0.0.1", right.port)
            cid = await left.multistate.open(right.address, 10 * ETHER, 10 * ETHER, DELTA)
            await right.wait_for(cid, lambda r: r.stage is Stage.OPEN)
            channels.append(cid)
        yield nodes, channels


def worth(node, cid):
    """What the node has in channel `cid`: its cash and what the nanocontracts block for or
    released to it."""
    info = node.multistate.info(cid)
    return info.my_cash + sum(nc.blocked[0] + nc.released[0] for nc in info.nanocontracts)


def route_over(net, nodes, channels, amount, min_final=0):
    """The route from nodes[0] to nodes[-1] over `channels`, each direction with its sender's policy."""
    path = []
    for left, right, cid in zip(nodes, nodes[1:], channels):
        policy = left.multihop.policy or ForwardPolicy()
        path.append(Direction(cid, left.address, right.address,
                              Policy(policy.base_fee, policy.fee_ppm, DELTA, 10 * ETHER)))
    now = net.chain.timestamp() + SLACK
    return build_route(nodes[0].address, path, amount, now, DEFAULT_MARGIN, min_final)


def keys_of(net, nodes):
    """The hops' public keys by address, as announcements will give them."""
    return {node.address: compressed_public_key(node.key) for node in nodes}


def test_alice_pays_dave_through_bob_and_carol(net):
    async def scenario():
        async with line(net, ["alice", "bob", "carol", "dave"]) as (nodes, channels):
            alice, bob, carol, dave = nodes
            ab, bc, cd = channels
            amount = ETHER // 10
            invoice = await dave.invoice(amount, net.chain.timestamp() + 3600, description="coffee")
            assert dave.store.hops()[0].preimage  # kept durably with the invoice
            route = route_over(net, nodes, channels, amount)
            fee_bob, fee_carol = route.fees
            assert fee_bob == 1_000 + route.hops[1].amount * 2_000 // 10**6 and fee_carol == 7 + amount * 500 // 10**6
            preimage = await alice.multihop.pay_route(route, invoice, keys_of(net, [carol, dave]))
            assert htlc.hashlock_of(preimage) == invoice.payment_hash
            for node in (bob, carol, dave):
                await node.wait_for(invoice.payment_hash, lambda r: r.claimed)
            assert worth(alice, ab) == 10 * ETHER - amount - fee_bob - fee_carol
            assert worth(bob, ab) + worth(bob, bc) == 20 * ETHER + fee_bob
            assert worth(carol, bc) + worth(carol, cd) == 20 * ETHER + fee_carol
            assert worth(dave, cd) == 10 * ETHER + amount
            # Each lock, claimed, is absorbed by its receiver: the channels hold no lock, the cash
            # is the payment's, so the next payment has every slot.
            for sender, receiver, cid, locked in ((alice, bob, ab, route.hops[0].amount),
                                                  (bob, carol, bc, route.hops[1].amount), (carol, dave, cd, amount)):
                await receiver.wait_for(cid, lambda r: not r.nanocontracts)
                await sender.wait_for(cid, lambda r: not r.nanocontracts)
                assert receiver.multistate.info(cid).my_cash == 10 * ETHER + locked
                assert sender.multistate.info(cid).my_cash == 10 * ETHER - locked
            parts = [node.multihop.records[invoice.payment_hash].part for node in nodes]
            assert parts == [Part.PAYER, Part.FORWARDER, Part.FORWARDER, Part.PAYEE]
    run(scenario())


def test_alice_pays_carol_through_bob(net):
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, bob, carol = nodes
            ab, bc = channels
            invoice = await carol.invoice(ETHER, net.chain.timestamp() + 3600)
            route = route_over(net, nodes, channels, ETHER)
            (fee,) = route.fees
            preimage = await alice.multihop.pay_route(route, invoice, keys_of(net, [carol]))
            assert htlc.hashlock_of(preimage) == invoice.payment_hash
            for node in (bob, carol):
                await node.wait_for(invoice.payment_hash, lambda r: r.claimed)
            assert worth(alice, ab) == 9 * ETHER - fee
            assert worth(bob, ab) + worth(bob, bc) == 20 * ETHER + fee
            assert worth(carol, bc) == 11 * ETHER
    run(scenario())


def test_a_node_without_a_forward_policy_refuses_the_lock_and_nothing_is_blocked(net):
    async def scenario():
        async with line(net, ["alice", "dave", "carol"]) as (nodes, channels):
            alice, dave, carol = nodes
            invoice = await carol.invoice(ETHER, net.chain.timestamp() + 3600)
            route = route_over(net, nodes, channels, ETHER)
            with pytest.raises(errors.PeerRejected, match="forwards no payments") as refused:
                await alice.multihop.pay_route(route, invoice, keys_of(net, [carol]))
            assert refused.value.code == m.ErrorCode.CHANNEL_REFUSED
            assert alice.multistate.info(channels[0]).nanocontracts == ()
            assert dave.multistate.info(channels[0]).nanocontracts == ()
            assert invoice.payment_hash not in dave.multihop.records
    run(scenario())


def test_a_lock_whose_onion_ends_at_a_payee_without_that_invoice_is_cancelled_with_its_failure(net):
    """The payee takes the lock and cancels it at once with a failure of its own (§13.6), so that
    the payer learns why from the payee itself; its lock is back at once."""
    async def scenario():
        async with line(net, ["alice", "bob"]) as (nodes, channels):
            alice, bob = nodes
            invoice = await bob.invoice(ETHER, net.chain.timestamp() + 3600)
            del bob.multihop.records[invoice.payment_hash]  # as if it never made it
            route = route_over(net, nodes, channels, ETHER)
            with pytest.raises(errors.PaymentFailed, match="knows no invoice") as failed:
                await alice.multihop.pay_route(route, invoice, {})
            assert (failed.value.hop, failed.value.index, failed.value.code) == (bob.address, 0,
                                                                                mh.FailureCode.UNKNOWN_PAYMENT)
            (nc,) = alice.multistate.info(channels[0]).nanocontracts
            assert (nc.blocked, nc.released) == ((0, 0), (ETHER, 0))  # cancelled: all of it back to Alice
            assert worth(alice, channels[0]) == 10 * ETHER
            await bob.wait_for(invoice.payment_hash, lambda r: r.incoming.released is mh.Release.CANCELLED)
    run(scenario())


def test_a_channel_carries_more_payments_than_it_has_nanocontract_slots(net):
    """Each claimed lock is absorbed by its receiver, so the slots are free for the next payment:
    more payments over the same channels than a channel holds nanocontracts (MAX_NANOCONTRACTS)."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, bob, carol = nodes
            ab, bc = channels
            payments = MAX_NANOCONTRACTS + 4
            fees = 0
            for _ in range(payments):
                invoice = await carol.invoice(ETHER // 100, net.chain.timestamp() + 3600)
                route = route_over(net, nodes, channels, ETHER // 100)
                await alice.multihop.pay_route(route, invoice, keys_of(net, [carol]))
                fees += route.fees[0]
            for node, cid in ((alice, ab), (bob, ab), (bob, bc), (carol, bc)):
                await node.wait_for(cid, lambda r: not r.nanocontracts and not r.pending)
            assert alice.multistate.info(ab).my_cash == 10 * ETHER - payments * ETHER // 100 - fees
            assert bob.multistate.info(ab).my_cash + bob.multistate.info(bc).my_cash == 20 * ETHER + fees
            assert carol.multistate.info(bc).my_cash == 10 * ETHER + payments * ETHER // 100
    run(scenario())
