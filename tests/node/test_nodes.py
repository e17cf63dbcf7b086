"""Two nodes in one process on the embedded chain: the whole lifecycle and every dispute path
the watcher handles, with the outcome checked on chain."""

from __future__ import annotations

import asyncio

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core import machine
from perun.core.machine import Stage
from perun.protocols.policy import ChannelPolicy
from perun.wire import messages as m
from perun.wire.transport import Connection
from tests.node.conftest import DELTA, run

GWEI = 10**9
LONG_DELTA = ChannelPolicy(max_own_deposit=None, min_delta=10**4 + 1)


def payouts(net, cid):
    """(alice, bob) as the contract paid them: Finalized or CooperativelyClosed."""
    for event in net.contract.events():
        if event.name in ("Finalized", "CooperativelyClosed") and event.args["channelId"] == cid:
            return event.name, (event.args["balanceAlice"], event.args["balanceBob"])
    return None


def first_mined(chain, sender: str) -> asyncio.Future:
    """Resolved once a transaction from `sender` is mined (the node's chain thread may mine it)."""
    loop = asyncio.get_running_loop()
    mined = loop.create_future()

    def observe(tx, _) -> None:
        if tx.get("from") == sender:
            chain.observers.remove(observe)
            loop.call_soon_threadsafe(mined.set_result, None)
    chain.observers.append(observe)
    return mined


def test_open_pay_both_ways_and_close_cooperatively(net):
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            for _ in range(5):
                await alice.pay(cid, 3 * GWEI)
            await bob.pay(cid, 1 * GWEI)
            assert alice.channel(cid).current == bob.channel(cid).current
            assert alice.channel(cid).current.version == 6
            before = net.chain.balance(bob.address)
            outcome = await alice.close(cid)
            await bob.sync()
            assert bob.channel(cid).stage is Stage.CLOSED
            # Every state either node signed is stored; the last is the final one, signed by both.
            states = bob.store.states(cid)
            assert [s.state.version for s in states] == [1, 2, 3, 4, 5, 6, 7]
            assert states[-1].state.is_final and states[-1].sig_alice and states[-1].sig_bob
            return outcome, before
    outcome, bob_before = run(scenario())
    expected = (10 * ETHER - 14 * GWEI, 5 * ETHER + 14 * GWEI)
    assert outcome == expected
    cid = next(e.args["channelId"] for e in net.contract.events() if e.name == "CooperativelyClosed")
    assert payouts(net, cid) == ("CooperativelyClosed", expected)
    assert net.chain.balance(net.account("bob").address) == bob_before + expected[1]  # Alice paid the gas


def test_concurrent_payments_both_ways_all_land(net):
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            results = await asyncio.gather(
                *(alice.pay(cid, 5) for _ in range(40)), *(bob.pay(cid, 2) for _ in range(40))
            )
            versions = [s.version for s in results]
            assert len(set(versions)) == 80  # each payment its own version
            for node in (alice, bob):
                rec = node.channel(cid)
                assert rec.current.balance_alice == 10 * ETHER - 40 * 5 + 40 * 2
                assert rec.pending == ()
            assert alice.channel(cid).current == bob.channel(cid).current
    run(scenario())


def test_payments_on_separate_channels_proceed_in_parallel(net):
    async def scenario():
        async with net.running("alice", "bob") as (alice, bob):
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            cids = await asyncio.gather(*(alice.open(bob.address, ETHER, 0, DELTA) for _ in range(3)))
            await asyncio.gather(*(alice.pay(cid, 7) for cid in cids for _ in range(10)))
            assert [bob.channel(cid).my_balance for cid in cids] == [70, 70, 70]
    run(scenario())


def test_watcher_refutes_a_stale_close_while_online(net):
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            await alice.pay(cid, ETHER)  # version 1
            old = alice.channel(cid)
            await alice.pay(cid, ETHER)  # version 2
            # Alice cheats: registers version 1, which Bob signed, bypassing her node.
            receipt = net.contract.close(net.account("alice"), old.params, old.current, old.peer_signature)
            deadline = receipt.event("CloseRegistered").args["deadline"]
            rec = await bob.wait_for(cid, lambda r: r.registered_version == 2)
            assert rec.stage is Stage.CLOSING and rec.deadline == deadline  # replacing does not extend Δ
            net.chain.set_next_block_timestamp(deadline + 1)
            net.chain.mine()
            await bob.wait_for(cid, lambda r: r.stage is Stage.CLOSED)
            await alice.sync()
            assert alice.channel(cid).outcome == (8 * ETHER, 7 * ETHER)
            return cid
    cid = run(scenario())
    assert payouts(net, cid) == ("Finalized", (8 * ETHER, 7 * ETHER))


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_cooperative_close_ends_a_running_dispute_at_once(net, offset):
    """Bob registers the latest state; Alice's `close` gets a final state signed by both and
    submits it, in the block before, at and after the dispute deadline (until someone finalizes,
    the contract takes it), so nobody waits for the window."""
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            await alice.pay(cid, ETHER)  # version 1
            await bob.register(cid)
            rec = await alice.wait_for(cid, lambda r: r.stage is Stage.CLOSING)
            with pytest.raises(errors.WrongStage):
                await alice.pay(cid, ETHER)  # nothing but a final state is signed in a dispute
            # From the deadline on either watcher would finalize: none does here, so the close meets D + 1.
            await asyncio.gather(alice.watcher.stop(), bob.watcher.stop())
            net.chain.set_next_block_timestamp(rec.deadline + offset)
            assert await alice.close(cid) == (9 * ETHER, 6 * ETHER)
            await bob.sync()
            await bob.wait_for(cid, lambda r: r.stage is Stage.CLOSED)
            return cid, rec.deadline
    cid, deadline = run(scenario())
    closes = [e for e in net.contract.events() if e.name in ("CloseRegistered", "CooperativelyClosed", "Finalized")
              and e.args["channelId"] == cid]
    assert [(e.name, e.args["version"]) for e in closes] == [("CloseRegistered", 1), ("CooperativelyClosed", 2)]
    assert net.chain.w3.eth.get_block(closes[1].block_number)["timestamp"] == deadline + offset
    assert payouts(net, cid) == ("CooperativelyClosed", (9 * ETHER, 6 * ETHER))


@pytest.mark.parametrize("back_before_deadline", [True, False], ids=["back-in-time", "back-too-late"])
def test_offline_node_catches_up_from_its_last_block(net, back_before_deadline):
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            await alice.pay(cid, ETHER)
            stale = alice.channel(cid)
            await alice.pay(cid, 2 * ETHER)
        # Both stopped. Alice alone registers the stale version 1; blocks go by.
        receipt = net.contract.close(net.account("alice"), stale.params, stale.current, stale.peer_signature)
        deadline = receipt.event("CloseRegistered").args["deadline"]
        net.chain.mine(5)
        net.chain.set_next_block_timestamp(deadline - 10 if back_before_deadline else deadline + 1)
        net.chain.mine()
        async with net.running("bob") as (bob,):
            # Its first poll reads from the block after its last one: it sees the close.
            if back_before_deadline:
                rec = await bob.wait_for(cid, lambda r: r.registered_version == 2)
                net.chain.set_next_block_timestamp(deadline + 1)
                net.chain.mine()
            rec = await bob.wait_for(cid, lambda r: r.stage is Stage.CLOSED)
            return cid, rec.outcome
    cid, outcome = run(scenario())
    # In time, Bob's version 2 wins; too late, the stale version 1 stands: that is what Δ is for.
    expected = (7 * ETHER, 8 * ETHER) if back_before_deadline else (9 * ETHER, 6 * ETHER)
    assert outcome == expected
    assert payouts(net, cid) == ("Finalized", expected)


def test_a_poll_that_finds_nothing_new_looks_at_no_channel_and_writes_nothing(net):
    """The watcher's index: no channel has a duty, so a poll asks about none; blocks without an
    event for the node's channels are read but not stored (a restart reads them again), and the
    block of an event that changes a record is stored with it."""
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            await alice.sync()
            stored = alice.store.last_block()
            commits, asked = [], []
            commit, next_due = alice.store.commit, alice.payment.next_due
            alice.store.commit = lambda *a, **k: (commits.append(a), commit(*a, **k))[1]
            alice.payment.next_due = lambda rec, now: (asked.append(rec.channel_id), next_due(rec, now))[1]
            net.chain.mine(5)
            for _ in range(3):
                await alice.sync()
            assert (commits, asked) == ([], [])
            assert alice.watcher.last_final == net.chain.block_number() > stored == alice.store.last_block()
            await bob.register(cid)
            rec = await alice.wait_for(cid, lambda r: r.stage is Stage.CLOSING)
            assert alice.store.last_block() == alice.watcher.last_final == net.chain.block_number()
            assert alice.store.channels() == [rec] and asked == [cid]
            net.chain.mine(5)
            await alice.sync()
            return rec
    rec = run(scenario())

    async def again():  # Alice restarted reads the five blocks after the stored one again: nothing changes
        async with net.running("alice") as (alice,):
            assert alice.watcher.last_final == net.chain.block_number() == alice.store.last_block() + 5
            assert alice.channel(rec.channel_id) == rec
    run(again())


def test_a_poll_knows_from_the_new_heads_parent_that_nothing_replaced_the_last_block(net):
    """One new block on the block seen last: no request to know that nothing was replaced. A
    block of the same height that replaced it is found, as before."""
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            await alice.sync()
            asked = []
            on_chain = alice.runtime.on_chain
            alice.runtime.on_chain = lambda fn, *a: (asked.append(fn.__name__), on_chain(fn, *a))[1]
            net.chain.mine()
            await alice.sync()
            assert "block_hash" not in asked and alice.watcher.reorgs == 0
            snapshot = net.chain.snapshot()
            net.chain.mine()
            await alice.sync()
            net.chain.revert_to(snapshot)  # the last block seen, replaced by another, then one more on it
            replaced = alice.watcher.head
            net.chain.set_next_block_timestamp(replaced.timestamp + 7)  # (the embedded chain mines here)
            while net.chain.block_number() < replaced.number + 1:
                net.chain.mine()
            await alice.sync()
            assert alice.watcher.reorgs == 1
    run(scenario())


def test_the_seeds_asymmetry(net):
    """Alice signs v+1; Bob keeps it and never answers. Alice closes with v, the last state she
    holds Bob's signature on; Bob replaces it with v+1. v+1 is paid out: Alice signed it, and
    nobody is punished."""
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            await alice.pay(cid, ETHER)  # v = 1, signed by both
            conn = bob.peers[alice.address]
            send = conn.send
            conn.send = lambda msg: None if isinstance(msg, m.UpdateAck) else send(msg)
            alice.response_timeout = 0.5
            with pytest.raises(errors.PeerTimeout):
                await alice.pay(cid, ETHER)  # v + 1: Bob stores it, stays silent
            assert alice.channel(cid).current.version == 1 and len(alice.channel(cid).pending) == 1
            assert bob.channel(cid).current.version == 2
            receipt = await alice.register(cid)
            assert receipt.event("CloseRegistered").args["version"] == 1
            rec = await bob.wait_for(cid, lambda r: r.registered_version == 2)
            net.chain.set_next_block_timestamp(rec.deadline + 1)
            net.chain.mine()
            await alice.wait_for(cid, lambda r: r.stage is Stage.CLOSED)
            return cid
    cid = run(scenario())
    assert payouts(net, cid) == ("Finalized", (8 * ETHER, 7 * ETHER))


@pytest.mark.parametrize("back_after", [59, 60], ids=["before-expiry", "at-expiry"])
def test_an_opening_a_crash_left_behind_goes_on_until_its_expiry_and_no_longer(net, back_after):
    """Alice's node dies right after storing its proposal, and comes back `back_after` seconds of
    chain time later: before the opening's expiry (60 s here) it proposes again and the channel
    opens; from the expiry on it gives the opening up, and nothing is sent for it."""
    async def scenario():
        async with net.running("bob") as (bob,):
            alice = await net.node("alice", open_time=60).start()
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            alice.faults.kill_at("propose-stored")
            with pytest.raises(errors.NodeKilled):
                await alice.open(bob.address, ETHER, 0, DELTA)
            net.chain.set_next_block_timestamp(alice.watcher.chain_time + back_after)
            net.chain.mine()
            async with net.running("alice", open_time=60) as (alice,):
                (rec,) = alice.payment.records.values()
                if back_after < 60:
                    await alice.wait_for(rec.channel_id, lambda r: r.stage is Stage.OPEN)
                    return rec.channel_id
                assert (rec.stage, rec.given_up) == (Stage.FAILED, f"not on chain by chain time {rec.open_until}: "
                                                                   "expired")
                await alice.wait_connected(bob.address)
                await alice.sync()
                assert alice.channel(rec.channel_id).stage is Stage.FAILED and bob.channels() == []
                return rec.channel_id
    cid = run(scenario())
    events = [e.name for e in net.contract.events() if e.args["channelId"] == cid]
    assert events == (["Initialising", "Initialised"] if back_after < 60 else [])


def test_unconfirmed_channel_is_refunded_by_alices_watcher(net):
    async def scenario():
        # Bob agrees to the channel but never looks at the chain again, so never confirms.
        async with net.running("alice") as (alice,), net.running("bob", poll_interval=3600) as (bob,):
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            created = first_mined(net.chain, alice.address)
            opening = asyncio.create_task(alice.open(bob.address, 3 * ETHER, ETHER, DELTA, timeout=20))
            await created
            (cid,) = alice.records
            await alice.wait_for(cid, lambda r: r.stage is Stage.INITIALISING)
            deadline = alice.channel(cid).deadline
            net.chain.set_next_block_timestamp(deadline - 1)
            net.chain.mine()
            await alice.sync()
            assert alice.channel(cid).stage is Stage.INITIALISING  # Bob could still confirm
            net.chain.set_next_block_timestamp(deadline)
            net.chain.mine()  # the refund goes into a later block, after the deadline
            with pytest.raises(errors.WrongStage, match="closed"):
                await opening
            assert alice.channel(cid).outcome == (3 * ETHER, 0)
            assert bob.channel(cid).stage is Stage.ACCEPTED
    run(scenario())


def test_a_payment_reaches_a_peer_that_has_not_yet_read_the_open(net):
    """Bob confirms and pays at once; Alice has not read the block with his confirmation (her
    next poll is an hour away). She reads the chain before judging the update, and accepts it."""
    async def scenario():
        async with net.running("alice", poll_interval=3600) as (alice,), net.running("bob") as (bob,):
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            created = first_mined(net.chain, alice.address)
            opening = asyncio.create_task(alice.open(bob.address, 3 * ETHER, ETHER, DELTA, timeout=20))
            await created
            (cid,) = alice.records
            await bob.wait_for(cid, lambda r: r.stage is Stage.OPEN)
            assert alice.channel(cid).stage is Stage.INITIALISING
            state = await bob.pay(cid, GWEI)
            assert alice.channel(cid).stage is Stage.OPEN and alice.channel(cid).current == state
            assert await opening == cid
    run(scenario())


def test_an_update_adopted_while_the_watcher_reads_the_chain_is_not_overwritten(net):
    """Bob's watcher reads a block with an event of the channel (his own confirmation, which he
    applied when it was mined) and, before saving what it read, waits on the chain for the
    multistate events; meanwhile Bob countersigns Alice's payment. The watcher must not save the
    record it had before the payment: Bob would lose his latest state."""
    async def scenario():
        async with net.running("alice", "bob") as (alice, bob):
            gate, reading = asyncio.Event(), asyncio.Event()
            chain_call = bob.runtime.on_chain

            async def on_chain(fn, *args):
                if fn == bob.multistate.contract.events and not gate.is_set():
                    opened = {cid for cid, rec in bob.records.items() if rec.stage is Stage.OPEN}
                    if any(e.args.get("channelId") in opened for e in bob.contract.events(*args)):
                        reading.set()
                        await gate.wait()  # the chain answers slowly, as anvil under load may
                return await chain_call(fn, *args)

            bob.runtime.on_chain = on_chain
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            cid = await alice.open(bob.address, 3 * ETHER, ETHER, DELTA)
            await reading.wait()
            paid = await alice.pay(cid, GWEI)
            gate.set()
            await bob.sync()
            assert bob.channel(cid).current == paid == alice.channel(cid).current
            assert [r.current for r in bob.store.channels() if r.channel_id == cid] == [paid]
    run(scenario())


def test_a_refused_channel_raises_the_peers_reason(net):
    async def scenario():
        async with net.running("alice") as (alice,), net.running("bob", policy=LONG_DELTA) as (bob,):
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            with pytest.raises(errors.PeerRejected) as refused:
                await alice.open(bob.address, ETHER, 0, DELTA)
            assert refused.value.code is m.ErrorCode.CHANNEL_REFUSED
            assert refused.value.reason == (
                f"{bob.address} accepts a dispute window Δ of at least 10001 s, not {DELTA} s; its operator can "
                "lower that with --min-delta (config key min_delta)")
            assert [c.stage for c in alice.channels()] == ["failed"]
            assert bob.channels() == []
    run(scenario())


def test_a_refusal_names_the_proposal_it_refuses_and_fails_only_that_open(net):
    async def scenario():
        async with net.running("alice") as (alice,), net.running("bob", policy=LONG_DELTA) as (bob,):
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            refused, opened = await asyncio.gather(alice.open(bob.address, ETHER, 0, DELTA),
                                                   alice.open(bob.address, ETHER, 0, 2 * 10**4),
                                                   return_exceptions=True)
            assert isinstance(refused, errors.PeerRejected) and refused.code is m.ErrorCode.CHANNEL_REFUSED
            assert isinstance(opened, bytes) and alice.channel(opened).stage is Stage.OPEN
            (failed,) = [c for c in alice.channels() if c.stage == "failed"]
            assert f"not {DELTA} s" in refused.reason and refused.reason in failed.given_up  # Bob's policy says why
    run(scenario())


def test_a_dropped_connection_is_redialled_and_pending_updates_complete(net):
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            conn = bob.peers[alice.address]
            send = conn.send
            conn.send = lambda msg: None if isinstance(msg, m.UpdateAck) else send(msg)
            paying = asyncio.gather(*(alice.pay(cid, 1) for _ in range(5)))
            await bob.wait_for(cid, lambda r: r.current.version == 5)
            conn.close()  # the acks never went out; Alice redials and reestablishes
            results = await paying
            assert [s.version for s in results] == [1, 2, 3, 4, 5]
            assert alice.channel(cid).current == bob.channel(cid).current
    run(scenario())


async def reconnected(alice, bob, before=None) -> None:
    """Until Alice and Bob are connected again (not through `before`) and each has the other's
    answer for every shared payment channel."""
    def up(node, peer) -> bool:
        conn = node.peers.get(peer.address)
        return conn is not None and conn is not before and not conn.closed
    async with asyncio.timeout(10):
        while not (up(alice, bob) and up(bob, alice)) or alice.payment._reestablishing or bob.payment._reestablishing:
            await asyncio.sleep(0.005)


def test_a_reconnection_exchanges_one_summary_and_reestablishes_only_the_channels_that_differ(net, monkeypatch):
    sent: list[m.Message] = []
    send = Connection.send
    monkeypatch.setattr(Connection, "send", lambda conn, msg: (sent.append(msg), send(conn, msg))[1])

    async def scenario():
        async with net.running("alice", "bob") as (alice, bob):
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            cids = [await alice.open(bob.address, ETHER, ETHER, DELTA) for _ in range(6)]
            for cid in cids:
                await bob.wait_for(cid, lambda r: r.stage is Stage.OPEN)
                await alice.pay(cid, 1)
                await bob.pay(cid, 2)
            # Quiet channels: one ReestablishDone and one ReestablishSummary each way, and nothing else.
            sent.clear()
            before = bob.peers[alice.address]
            before.close()
            await reconnected(alice, bob, before)
            assert sorted(type(msg).__name__ for msg in sent) == ["ReestablishDone"] * 2 + ["ReestablishSummary"] * 2
            await alice.pay(cids[0], 1)
            # Alice loses her last payment on one channel, as a crash before her commit would
            # (Bob stored it; the versions she reserved stay burned).
            lost = cids[1]
            before = alice.channel(lost)
            await alice.pay(lost, 1)
            latest = bob.channel(lost).current
        alice_store = net.node("alice").runtime.store
        alice_store.commit([before])
        alice_store.close()
        async with net.running("bob", "alice") as (bob, alice):
            sent.clear()
            await alice.connect(bob.address, "127.0.0.1", bob.port)  # Bob listens on another port now
            await reconnected(alice, bob)
            await alice.wait_for(lost, lambda r: r.current == latest, 5)  # Bob's StateSync
            # Only the channels in its bucket got a Reestablish, from each party.
            bucket = {cid for cid in cids if machine.bucket_of(cid) == machine.bucket_of(lost)}
            assert sorted(msg.channel_id for msg in sent if isinstance(msg, m.Reestablish)) == sorted([*bucket] * 2)
            # Restarted, Alice burned the versions she had reserved; the summary told Bob so, and
            # his next payments go above them: none is refused. The summary wrote none of his
            # records: its offset goes into each with his next proposal on it.
            burned = {cid: alice.channel(cid).signed for cid in cids}
            assert all(burned[cid] >= machine.RESERVE for cid in cids)
            assert all(bob.channel(cid).peer_signed_hint < burned[cid] for cid in cids if cid not in bucket)
            for cid in cids:
                assert (await bob.pay(cid, 1)).version > burned[cid]
            assert not [msg for msg in sent if isinstance(msg, m.Error)]
    run(scenario())


def test_a_node_behind_its_peer_after_a_reconnection_proposes_only_once_it_has_the_peers_state(net, monkeypatch):
    """Alice lost her last payment (a crash before her commit); reconnected, her close waits for
    Bob's StateSync, however late it comes: a final state built on the state Bob has passed would
    be refused, and she could sign no other."""
    send = Connection.send
    def late(conn, msg):
        if isinstance(msg, m.StateSync):
            asyncio.get_running_loop().call_later(0.3, send, conn, msg)
        else:
            send(conn, msg)

    async def scenario():
        async with net.pair() as (alice, bob, cid):
            await alice.pay(cid, GWEI)
            before = alice.channel(cid)
            await alice.pay(cid, GWEI)
        store = net.node("alice").runtime.store
        store.commit([before])
        store.close()
        monkeypatch.setattr(Connection, "send", late)
        async with net.running("bob", "alice") as (bob, alice):
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            return await alice.close(cid)
    assert run(scenario()) == (10 * ETHER - 2 * GWEI, 5 * ETHER + 2 * GWEI)


def test_an_erc20_channel_from_approve_to_payout(net):
    token_address = net.chain.deploy(net.chain.dev_accounts[0], "TestToken")
    token = net.chain.contract("TestToken", token_address)
    alice, bob = net.account("alice"), net.account("bob")
    for party in (alice, bob):
        net.chain.transact(net.chain.dev_accounts[0], token.functions.mint(party.address, 1000))

    async def scenario():
        async with net.running("alice", "bob") as (a, b):
            await a.connect(b.address, "127.0.0.1", b.port)
            cid = await a.open(b.address, 600, 100, DELTA, token=token_address)  # each node approves first
            await a.pay(cid, 250)
            await b.pay(cid, 50)
            return await a.close(cid)
    assert run(scenario()) == (400, 300)
    balances = [token.functions.balanceOf(p.address).call() for p in (alice, bob)]
    assert balances == [1000 - 600 + 400, 1000 - 100 + 300]
    assert token.functions.balanceOf(net.contract.address).call() == 0


def test_a_node_says_what_it_is_busy_with_and_counts_the_frames_of_each_session(net):
    # What the scenario runner settles on: the work under way, and the frames each end of a
    # session sent and read (both ends name the session by its handshake hash).
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            committed = alice.runtime.save(meta={"note": "x"})
            assert alice.runtime.busy() == ["committing"]
            await committed
            assert alice.runtime.busy() == []
            told = asyncio.Event()
            bob.runtime.on_progress = lambda: bob.runtime.busy() or told.set()
            await alice.pay(cid, GWEI)  # Bob's answer came: he handled the Update and committed
            assert told.is_set() and bob.runtime.busy() == []
            [(session, (sent, received))] = alice.runtime.sessions().items()
            assert bob.runtime.sessions() == {session: (received, sent)} and sent >= 1
    run(scenario())


def test_changed_is_done_at_the_next_stored_change_of_any_record(net):
    # What the runner awaits while a new channel's id is still unknown to it: no busy loop.
    async def scenario():
        async with net.pair() as (alice, bob, cid):
            changed = alice.runtime.changed()
            assert not changed.done()
            await alice.pay(cid, GWEI)
            assert changed.done() and changed.result() is None
            assert not alice.runtime.changed().done()
    run(scenario())
