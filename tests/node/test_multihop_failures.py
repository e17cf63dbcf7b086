"""Multi-hop payments that fail (docs/protocol.md §13.6), in one process on the embedded chain: the
failing hop CANCELs its incoming lock right after a LockFailure, each hop upstream passes the
failure on the same way, and the payer reads which hop failed and why (PaymentFailed) at once,
every lock released, nothing on chain. A hop killed between storing a failure and passing it on
passes it on once it is back."""

from __future__ import annotations

import asyncio

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core.apps import hashtimelock as htlc
from perun.core.multihop import FailureCode, Release
from tests.node.conftest import run
from tests.node.test_multihop import FORWARD, keys_of, line, route_over, worth
from tests.node.test_multihop_recovery import nanocontract_events


async def absorbed(sender, receiver, cid):
    """The lock of channel `cid`, released, is absorbed: neither end holds it any more."""
    await sender.wait_for(cid, lambda r: not r.nanocontracts)
    await receiver.wait_for(cid, lambda r: not r.nanocontracts)


async def all_released(net, nodes, channels, route, h):
    """Every lock of the route went back to its sender off chain and was absorbed, each node is
    whole, and each record says so (the payer's once its failure came back, the others' once cancelled)."""
    for i, (sender, cid) in enumerate(zip(nodes, channels)):
        receiver = nodes[i + 1]
        await receiver.wait_for(h, lambda r: r.incoming is not None and r.incoming.released is Release.CANCELLED)
        await sender.wait_for(h, lambda r: r.outgoing is None or r.outgoing.released is Release.CANCELLED)
        await absorbed(sender, receiver, cid)  # by the sender, to whom it went back
        assert nanocontract_events(net, cid) == []
    assert worth(nodes[0], channels[0]) == 10 * ETHER
    for node, (into, out) in zip(nodes[1:-1], zip(channels, channels[1:])):
        assert worth(node, into) + worth(node, out) == 20 * ETHER
    assert worth(nodes[-1], channels[-1]) == 10 * ETHER


def test_the_payees_failure_reaches_the_payer_through_two_hops_and_every_lock_is_released_at_once(net):
    """Dave, the third hop, wants more time than the route gives his lock: he takes it and cancels
    it with EXPIRY_TOO_SOON; Carol and Bob pass the failure on. Alice learns it is Dave's."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol", "dave"]) as (nodes, channels):
            alice, bob, carol, dave = nodes
            invoice = await dave.invoice(ETHER // 10, net.chain.timestamp() + 7200, min_final=3600)
            route = route_over(net, nodes, channels, ETHER // 10)  # without the invoice's min_final
            with pytest.raises(errors.PaymentFailed, match="too soon") as failed:
                await alice.multihop.pay_route(route, invoice, keys_of(net, [carol, dave]))
            assert (failed.value.hop, failed.value.index, failed.value.code) == (dave.address, 2,
                                                                                FailureCode.EXPIRY_TOO_SOON)
            await all_released(net, nodes, channels, route, invoice.payment_hash)
            assert [node.multihop.stage_of(node.multihop.records[invoice.payment_hash]) for node in nodes] \
                == ["failed"] * 4
    run(scenario())


def test_a_forwarder_whose_next_hop_is_gone_fails_at_once_and_the_payer_pays_again_once_it_is_back(net):
    """Dave is offline when Carol, the second hop, would lock towards him: she cancels Bob's lock
    with NEXT_HOP_UNREACHABLE, Bob Alice's. Alice's record keeps the outcome across a restart; once
    Dave is back, the same invoice is paid over the same route."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol", "dave"]) as (nodes, channels):
            alice, bob, carol, dave = nodes
            invoice = await dave.invoice(ETHER // 10, net.chain.timestamp() + 7200)
            h = invoice.payment_hash
            await dave.stop()
            route = route_over(net, nodes, channels, ETHER // 10)
            with pytest.raises(errors.PaymentFailed, match="was not connected") as failed:
                await alice.multihop.pay_route(route, invoice, keys_of(net, [carol, dave]))
            assert (failed.value.hop, failed.value.index, failed.value.code) == (carol.address, 1,
                                                                                FailureCode.NEXT_HOP_UNREACHABLE)
            await all_released(net, nodes[:3], channels[:2], route, h)
            assert carol.multihop.records[h].outgoing is None  # given up: never created
            await alice.stop()
            async with net.running("alice", "dave") as (alice, dave):
                shown = alice.describe(h)
                assert (shown["outcome"], shown["failure"]["hop"], shown["failure"]["code"]) == (
                    "failed", carol.address, FailureCode.NEXT_HOP_UNREACHABLE)
                await alice.connect(bob.address, "127.0.0.1", bob.port)
                await carol.connect(dave.address, "127.0.0.1", dave.port)
                again = route_over(net, [alice, bob, carol, dave], channels, ETHER // 10)
                preimage = await alice.multihop.pay_route(again, invoice, keys_of(net, [carol, dave]))
                assert htlc.hashlock_of(preimage) == h
                for node in (bob, carol, dave):
                    await node.wait_for(h, lambda r: r.claimed)
                assert alice.describe(h)["outcome"] == "settled"
                assert worth(dave, channels[2]) == 10 * ETHER + ETHER // 10
    run(scenario())


def test_a_next_hop_refusing_the_lock_fails_the_payment_with_its_refusal(net):
    """Dave forwards nothing: he refuses Bob's lock (CHANNEL_REFUSED); Bob, who gave up, cancels
    Alice's lock with NEXT_HOP_REFUSED and the refusal's code and words."""
    async def scenario():
        async with line(net, ["alice", "bob", "dave", "carol"]) as (nodes, channels):
            alice, bob, dave, carol = nodes
            invoice = await carol.invoice(ETHER, net.chain.timestamp() + 3600)
            route = route_over(net, nodes, channels, ETHER)
            with pytest.raises(errors.PaymentFailed, match="forwards no payments") as failed:
                await alice.multihop.pay_route(route, invoice, keys_of(net, [dave, carol]))
            assert (failed.value.hop, failed.value.index, failed.value.code) == (bob.address, 0,
                                                                                FailureCode.NEXT_HOP_REFUSED)
            assert f"{dave.address} refused the lock (CHANNEL_REFUSED: this node forwards no payments)" \
                in failed.value.reason and failed.value.code == FailureCode.NEXT_HOP_REFUSED
            await all_released(net, nodes[:2], channels[:1], route, invoice.payment_hash)
            assert bob.multihop.records[invoice.payment_hash].outgoing is None
            assert dave.multistate.info(channels[1]).nanocontracts == ()
    run(scenario())


def test_a_lock_cancelled_without_a_failure_is_countersigned_and_failed_back_as_such(net):
    """Carol, the payee, withholds the preimage and cancels her lock by hand, with no LockFailure:
    Bob countersigns (it gives him his money back) and fails the payment with NEXT_HOP_CANCELLED."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol"]) as (nodes, channels):
            alice, bob, carol = nodes
            invoice = await carol.invoice(ETHER, net.chain.timestamp() + 3600)
            h = invoice.payment_hash

            async def withhold(payment_hash: bytes, preimage: bytes = b"") -> None:
                pass
            carol.multihop.claim = withhold
            route = route_over(net, nodes, channels, ETHER)
            paying = asyncio.create_task(alice.multihop.pay_route(route, invoice, keys_of(net, [carol])))
            nid = (await carol.wait_for(h, lambda r: r.incoming is not None)).incoming.nid
            await carol.multistate.call(channels[1], nid, htlc.CANCEL)
            with pytest.raises(errors.PaymentFailed, match="cancelled the lock without saying why") as failed:
                await paying
            assert (failed.value.hop, failed.value.code) == (bob.address, FailureCode.NEXT_HOP_CANCELLED)
            await all_released(net, nodes, channels, route, h)
    run(scenario())


def test_a_forwarder_killed_between_storing_a_failure_and_passing_it_on_passes_it_on_when_back(net):
    """Bob dies right after the commit that stores Carol's failure (crash point hop-failed), before
    he cancels Alice's lock or even acknowledges Carol's CANCEL. Back, he holds the failure, passes
    it on once Alice is connected, and Alice reads Dave's failure through it."""
    async def scenario():
        async with line(net, ["alice", "bob", "carol", "dave"]) as (nodes, channels):
            alice, bob, carol, dave = nodes
            invoice = await dave.invoice(ETHER // 10, net.chain.timestamp() + 7200)
            h = invoice.payment_hash
            del dave.multihop.records[h]  # Dave knows no such payment: UNKNOWN_PAYMENT
            route = route_over(net, nodes, channels, ETHER // 10)
            died = asyncio.Event()
            bob.on_kill = lambda node: died.set()
            bob.faults.kill_at("hop-failed")
            paying = asyncio.create_task(alice.multihop.pay_route(route, invoice, keys_of(net, [carol, dave]),
                                                                  timeout=50))
            await died.wait()
            async with net.running("bob", forward=FORWARD["bob"]) as (bob,):
                rec = bob.multihop.records[h]
                assert rec.outgoing.released is Release.CANCELLED and len(rec.failure) == 292
                assert rec.incoming.released is None and not paying.done()  # not passed on yet
                await bob.connect(carol.address, "127.0.0.1", carol.port)  # Carol's CANCEL completes
                await carol.wait_for(h, lambda r: r.incoming.released is Release.CANCELLED)
                await bob.connect(alice.address, "127.0.0.1", alice.port)
                with pytest.raises(errors.PaymentFailed, match="knows no invoice") as failed:
                    await paying
                assert (failed.value.hop, failed.value.index, failed.value.code) == (dave.address, 2,
                                                                                    FailureCode.UNKNOWN_PAYMENT)
                await all_released(net, [alice, bob, carol, dave], channels, route, h)
    run(scenario())
