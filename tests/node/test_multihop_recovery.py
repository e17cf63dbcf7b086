"""Multi-hop payments when a hop does not do its part at once (perun.protocols.multihop), in one
process on the embedded chain: a forwarder learns the preimage from the next hop's CLAIM on chain
and claims back with it."""

from __future__ import annotations

import asyncio
import contextlib

from perun.chain.backend import ETHER
from perun.core.apps import hashtimelock as htlc
from perun.wire import messages as m
from tests.node.conftest import DELTA, run
from tests.node.test_multihop import keys_of, line, route_over, worth


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
            (nc,) = alice.multistate.info(ab).nanocontracts
            assert (nc.blocked, nc.released) == ((0, 0), (0, ETHER + fee))
            assert worth(alice, ab) == 9 * ETHER - fee
            # bc's lock was released on chain: Carol's cash and what the chain released to her.
            bc_carol, bc_bob = carol.multistate.info(bc).my_cash, bob.multistate.info(bc).my_cash
            assert bc_bob + bc_carol == 20 * ETHER - ETHER  # the lock's amount, released on chain to Carol
            assert worth(bob, ab) + bc_bob == 20 * ETHER + fee
            assert bc_carol + ETHER == 11 * ETHER
            assert carol.multihop.records[h].claimed  # the payee learnt its claim on chain too
    run(scenario())
