"""Two nodes with multistate channels, in one process on the embedded chain: nanocontracts
created, called and absorbed off chain, several at once; and every way one goes to the chain,
when a peer is silent or cheats, with the payout checked on chain."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core import msmachine as msm
from perun.core.apps import ALICE, APPS, BOB, AppState
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import tictactoe as ttt
from perun.core.channel import Params
from perun.core.machine import Role, Stage
from perun.core.multistate import ChannelState, NanocontractState
from perun.protocols.multistate.wire import message as _message
from perun.wire import messages as m
from tests.node.conftest import DELTA, run
from tests.node.test_malicious import answer, dial

PREIMAGE = b"\x07" * 32
LOCK = htlc.hashlock_of(PREIMAGE)
MOVE_TIMEOUT = 120


def consent(nc: NanocontractState) -> bool:
    return True


@contextlib.asynccontextmanager
async def ms_pair(net, deposits=(10 * ETHER, 5 * ETHER), **kwargs):
    """alice and bob running and connected, with an open multistate channel: (alice, bob, cid)."""
    kwargs.setdefault("accept_nanocontract", consent)
    async with net.running("alice", "bob", **kwargs) as (alice, bob):
        await alice.connect(bob.address, "127.0.0.1", bob.port)
        cid = await alice.multistate.open(bob.address, *deposits, DELTA)
        await bob.wait_for(cid, lambda r: r.stage is Stage.OPEN)
        yield alice, bob, cid


def finalized(net, cid):
    for event in net.ms.contract.events():
        if event.name == "Finalized" and event.args["channelId"] == cid:
            return event.args["payoutAlice"], event.args["payoutBob"]
    return None


def lock(amount: int, sender: int = ALICE, timeout_in: int = 10 * DELTA, net=None):
    return htlc.initial(sender, amount, LOCK, net.chain.timestamp() + timeout_in)


def test_nanocontracts_created_called_in_parallel_and_absorbed(net):
    async def scenario():
        async with ms_pair(net) as (alice, bob, cid):
            pay = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
            game = await bob.multistate.create(cid, "TicTacToe", ttt.initial(2 * ETHER, ETHER, BOB, MOVE_TIMEOUT))
            # The claim and the game's moves go on at the same time, each nanocontract on its own.
            await asyncio.gather(
                bob.multistate.call(cid, pay, htlc.CLAIM, PREIMAGE),
                bob.multistate.call(cid, game, ttt.MOVE, ttt.move_arg(4)),
            )
            for cell, player in ((0, alice), (3, bob), (1, alice), (5, bob)):  # Bob wins 3-4-5
                await player.multistate.call(cid, game, ttt.MOVE, ttt.move_arg(cell))
            for node in (alice, bob):
                assert node.multistate.nanocontract(cid, game).terminated
                assert node.multistate.nanocontract(cid, pay).released_bob == ETHER
            await alice.multistate.absorb(cid, pay)
            await bob.multistate.absorb(cid, game)
            state = alice.multistate.channel(cid).state
            assert state == bob.multistate.channel(cid).state
            assert (state.cash_alice, state.cash_bob, state.nanocontracts) == (7 * ETHER, 8 * ETHER, ())
            info = bob.multistate.info(cid)
            assert (info.my_cash, info.peer_cash, info.version, info.pending) == (8 * ETHER, 7 * ETHER, 4, 0)
            # Every state both signed is in both stores: 4 channel states, 2 + 6 nanocontract states.
            for node in (alice, bob):
                stored = node.store.ms_states(cid)
                assert [s.state.version for s in stored if isinstance(s.state, ChannelState)] == [1, 2, 3, 4]
                assert sum(isinstance(s.state, NanocontractState) for s in stored) == 2 + 6
                assert all(s.sig_alice and s.sig_bob for s in stored)
            # Closing the channel: after Δ the watchers finalize and the chain pays the cash.
            await alice.multistate.close(cid)
            net.chain.advance_time(DELTA + 1)
            await alice.sync()
            rec = await alice.wait_for(cid, lambda r: r.stage is Stage.CLOSED)
            return rec.outcome
    assert run(scenario()) == (7 * ETHER, 8 * ETHER)


def test_a_game_is_refused_without_consent_and_nothing_changes(net):
    async def scenario():
        async with ms_pair(net, accept_nanocontract=lambda nc: False) as (alice, bob, cid):
            before = (alice.multistate.channel(cid).state, bob.multistate.channel(cid).state)
            for _ in range(2):
                with pytest.raises(errors.PeerRejected) as exc:
                    await alice.multistate.create(cid, "TicTacToe", ttt.initial(ETHER, ETHER, ALICE, MOVE_TIMEOUT))
                assert exc.value.code is m.ErrorCode.BALANCE_DECREASED
            assert (alice.multistate.channel(cid).state, bob.multistate.channel(cid).state) == before
            assert alice.multistate.channel(cid).pending == ()
            # Bob, who signed neither of Alice's versions 1 and 2, proposes 1 next: Alice refuses
            # it as stale and says she signed 2, and his node proposes 3 at once.
            await bob.multistate.create(cid, "HashTimeLock", lock(ETHER, BOB, net=net))
            assert alice.multistate.channel(cid).state.version == 3
            assert bob.multistate.channel(cid).peer_signed == ((b"", 2),)
            # A payment to Bob needs no consent: it blocks Alice's cash only.
            await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
            assert bob.multistate.channel(cid).state.version == 4
    run(scenario())


def test_a_wrong_preimage_is_refused_with_the_apps_error(net):
    async def scenario():
        async with ms_pair(net) as (alice, bob, cid):
            pay = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
            with pytest.raises(errors.HashTimeLockWrongPreimage):  # Bob's own mirror refuses first
                await bob.multistate.call(cid, pay, htlc.CLAIM, b"\x00" * 32)
            with pytest.raises(errors.HashTimeLockWrongCaller):
                await alice.multistate.call(cid, pay, htlc.CLAIM, PREIMAGE)
            assert alice.multistate.nanocontract(cid, pay).version == 0
    run(scenario())


def test_a_stale_nanocontract_registration_is_refuted_by_the_watcher(net):
    async def scenario():
        async with ms_pair(net) as (alice, bob, cid):
            pay = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
            await bob.multistate.call(cid, pay, htlc.CLAIM, PREIMAGE)
            # Alice registers version 0 (unclaimed) with Bob's signature from her store.
            old = next(s for s in alice.store.ms_states(cid)
                       if isinstance(s.state, NanocontractState) and s.state.version == 0)
            net.ms.contract.register(net.account("alice"), alice.multistate.channel(cid).params, old.state, old.sig_bob)
            await bob.sync()  # Bob's watcher answers with version 1 within the window
            rec = await bob.wait_for(cid, lambda r: (x := r.registered(pay)) is not None and x.version == 1)
            assert rec.registered(pay).terminated
            onchain = net.ms.contract.nanocontract(cid, pay)
            assert (onchain.version, onchain.released_bob, onchain.blocked_alice) == (1, ETHER, 0)
            registered = [e.args for e in net.ms.contract.events() if e.name == "NanocontractRegistered"]
            assert [(a["version"], a["by"]) for a in registered] == [(0, alice.address), (1, bob.address)]
    run(scenario())


def test_a_silent_player_loses_the_game_on_chain(net):
    async def scenario():
        async with ms_pair(net) as (alice, bob, cid):
            game = await alice.multistate.create(cid, "TicTacToe", ttt.initial(ETHER, ETHER, ALICE, MOVE_TIMEOUT))
            await alice.multistate.call(cid, game, ttt.MOVE, ttt.move_arg(4))
            await bob.stop()  # Bob's turn, and he is gone
            await alice.multistate.register(cid, game)
            with pytest.raises(errors.WrongStage):  # the chain decides now
                await alice.multistate.call(cid, game, ttt.MOVE, ttt.move_arg(0))
            # After the window Bob has MOVE_TIMEOUT to move on chain; then Alice's watcher calls
            # the timeout by itself: a minute early it may not, a second late it does.
            window_end = alice.multistate.channel(cid).registered(game).window_end
            net.chain.set_next_block_timestamp(window_end + MOVE_TIMEOUT - 1)
            net.chain.mine()
            await alice.sync()
            assert not [e for e in net.ms.contract.events() if e.name == "NanocontractExecuted"]
            net.chain.set_next_block_timestamp(window_end + MOVE_TIMEOUT)
            net.chain.mine()
            await alice.sync()
            rec = await alice.wait_for(cid, lambda r: r.registered(game).terminated)
            executed = [e.args for e in net.ms.contract.events() if e.name == "NanocontractExecuted"]
            assert [(a["fun"], a["by"], a["releasedAlice"]) for a in executed] == [(ttt.TIMEOUT, alice.address, 2 * ETHER)]
            # Alice closes with the channel state that lists the game; the game's result is paid.
            await alice.multistate.close(cid)
            net.chain.advance_time(DELTA + 1)
            await alice.sync()
            rec = await alice.wait_for(cid, lambda r: r.stage is Stage.CLOSED)
            return rec.outcome
    assert run(scenario()) == (11 * ETHER, 4 * ETHER)
    assert finalized(net, next(e.args["channelId"] for e in net.ms.contract.events() if e.name == "Finalized")) \
        == (11 * ETHER, 4 * ETHER)


def test_a_claim_the_sender_will_not_sign_is_enforced_on_chain_after_a_restart(net):
    async def scenario():
        async with ms_pair(net) as (alice, bob, cid):
            pay = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
            await alice.stop()  # the sender is gone before Bob claims
            with pytest.raises(errors.PeerUnavailable):
                await bob.multistate.call(cid, pay, htlc.CLAIM, PREIMAGE)
            await bob.multistate.enforce(cid, pay, htlc.CLAIM, PREIMAGE)
            assert [e.name for e in net.ms.contract.events()][-1] == "NanocontractRegistered"
            await bob.stop()
        # Bob restarts on his store: the intent survived, and his watcher claims after the window.
        net.chain.advance_time(DELTA + 1)
        async with net.running("bob", accept_nanocontract=consent) as (bob,):
            rec = await bob.wait_for(cid, lambda r: (x := r.registered(pay)) is not None and x.terminated)
            assert rec.intents == ()
            executed = [e.args for e in net.ms.contract.events() if e.name == "NanocontractExecuted"]
            assert [(a["fun"], a["by"], a["releasedBob"]) for a in executed] == [(htlc.CLAIM, bob.address, ETHER)]
            await bob.multistate.close(cid)
            net.chain.advance_time(DELTA + 1)
            await bob.sync()
            return (await bob.wait_for(cid, lambda r: r.stage is Stage.CLOSED)).outcome
    assert run(scenario()) == (9 * ETHER, 6 * ETHER)


def test_a_close_with_live_nanocontracts_registers_them_and_returns_an_expired_lock(net):
    async def scenario():
        async with ms_pair(net) as (alice, bob, cid):
            expiring = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, timeout_in=DELTA // 2, net=net))
            claimed = await alice.multistate.create(cid, "HashTimeLock", lock(2 * ETHER, net=net))
            game = await alice.multistate.create(cid, "TicTacToe", ttt.initial(ETHER, ETHER, BOB, MOVE_TIMEOUT))
            await bob.multistate.call(cid, claimed, htlc.CLAIM, PREIMAGE)
            # Bob closes with the latest channel state; both watchers register what it lists.
            await bob.multistate.close(cid)
            for node in (alice, bob):
                await node.sync()
            registered = {e.args["nid"]: e.args["version"] for e in net.ms.contract.events()
                          if e.name == "NanocontractRegistered"}
            assert registered == {expiring: 0, claimed: 1, game: 0}
            # After the windows Alice's watcher takes the expired lock back. Bob's move timeout
            # has not run out yet (it counts from the window's end), so the game is unfinished
            # at D + Δ: its predefined distribution returns each stake.
            net.chain.advance_time(DELTA + 1)
            for node in (alice, bob):
                await node.sync()
            executed = [(e.args["nid"], e.args["fun"]) for e in net.ms.contract.events()
                        if e.name == "NanocontractExecuted"]
            assert executed == [(expiring, htlc.RECLAIM)]
            net.chain.advance_time(DELTA + 1)
            for node in (alice, bob):
                await node.sync()
            return (await alice.wait_for(cid, lambda r: r.stage is Stage.CLOSED)).outcome
    assert run(scenario()) == (8 * ETHER, 7 * ETHER)  # the claimed lock moved 2 ETH; the rest came back


@pytest.mark.parametrize("action", ["create", "call"])
@pytest.mark.parametrize("point", ["nano-proposed", "nano-received", "nano-countersigned", "nano-acked"])
def test_a_crash_mid_update_completes_exactly_once_after_restart(net, point, action):
    """Alice creates a second lock, or Bob claims the first; the proposer dies after storing its
    proposal or the acknowledgement, the receiver on receipt or after countersigning."""
    async def scenario():
        async with ms_pair(net, response_timeout=1.0) as (alice, bob, cid):  # the survivor waits in vain
            pay = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
            proposer, receiver = (alice, bob) if action == "create" else (bob, alice)
            victim = proposer if point in ("nano-proposed", "nano-acked") else receiver
            victim.faults.kill_at(point)
            with contextlib.suppress(errors.PerunError, asyncio.TimeoutError):
                if action == "create":
                    await alice.multistate.create(cid, "HashTimeLock", lock(2 * ETHER, net=net))
                else:
                    await bob.multistate.call(cid, pay, htlc.CLAIM, PREIMAGE)
            assert victim.killed
        async with net.running("alice", "bob", accept_nanocontract=consent) as (alice, bob):
            await alice.connect(bob.address, "127.0.0.1", bob.port)  # Bob listens on a new port
            for node in (alice, bob):
                await node.wait_for(cid, lambda r: not r.pending, 10)
            a, b = alice.multistate.channel(cid), bob.multistate.channel(cid)
            assert (a.channel, a.nanocontracts) == (b.channel, b.nanocontracts)
            return a, pay
    rec, pay = run(scenario())
    if action == "create":
        assert (rec.state.version, len(rec.nanocontracts), rec.state.cash_alice) == (2, 2, 7 * ETHER)
    else:
        assert rec.nanocontract(pay).state.version == 1 and rec.nanocontract(pay).state.released_bob == ETHER


def test_every_bad_nanocontract_message_is_refused_with_its_code_and_changes_nothing(net):
    E = m.ErrorCode
    mallory = net.account("mallory")

    async def scenario():
        async with net.running("bob") as (bob,):
            conn = await dial(net, bob, mallory.key)
            params = Params(mallory.address, bob.address, 2 * ETHER, ETHER, DELTA, 1)
            conn.send(m.ProposeMultistate.of(params))
            cid = net.ms.contract.channel_id(params)
            assert await answer(conn) == m.AcceptChannel(cid)
            net.ms.contract.create(mallory, params)
            rec = await bob.wait_for(cid, lambda r: r.stage is Stage.OPEN)  # Bob's watcher confirmed
            mine = msm.new_record(params, bob.multistate.domain, Role.ALICE, Stage.OPEN)
            htlc_at, game_at = net.ms.apps["HashTimeLock"], net.ms.apps["TicTacToe"]
            payment = lock(ETHER, net=net)
            _, good = msm.create(mine, htlc_at, payment, mallory.key)
            _, forged = msm.create(mine, htlc_at, payment, net.account("alice").key)
            _, game = msm.create(mine, game_at, ttt.initial(ETHER, ETHER, ALICE, MOVE_TIMEOUT), mallory.key)
            _, unknown_app = msm.create(mine, "0x" + "99" * 20, payment, mallory.key)
            _, malformed = msm.create(mine, htlc_at, AppState(ETHER, 0, 0, 0, b"\x01"), mallory.key)
            bad = [
                (replace(_message(good), prev=5), E.CONFLICT),
                (_message(forged), E.INVALID_SIGNATURE),
                (_message(unknown_app), E.INVALID_NANOCONTRACT),
                (_message(malformed), E.APP_REJECTED),
                (_message(game), E.BALANCE_DECREASED),  # Bob never agreed to stake
                (m.NanocontractCall(cid, bytes(32), 1, 0, 0, htlc.CLAIM, PREIMAGE, bytes(65)), E.UNKNOWN_NANOCONTRACT),
                (m.NanocontractAck(cid, bytes(32), 1, bytes(65), bytes(65)), E.STALE_VERSION),
            ]
            for message, code in bad:
                conn.send(message)
                reply = await answer(conn)
                assert isinstance(reply, m.Error) and E(reply.code) is code, (message, reply)
                assert bob.multistate.channel(cid) == rec
            # The good one is countersigned; a claim by its own sender is the app's error.
            conn.send(_message(good))
            ack = await answer(conn)
            assert isinstance(ack, m.NanocontractAck) and ack.version == 1
            mine, _ = msm.create(mine, htlc_at, payment, mallory.key)
            mine, _ = msm.receive_ack(mine, b"", ack.sig_channel, ack.sig_nanocontract)
            assert bob.multistate.channel(cid).channel == mine.channel
            _, claim = msm.call(mine, good.nid, htlc.RECLAIM, b"", 10**12, APPS["HashTimeLock"], mallory.key)
            conn.send(m.NanocontractCall(cid, good.nid, 1, 0, 0, htlc.CLAIM, PREIMAGE, claim.sig_nanocontract))
            reply = await answer(conn)
            assert isinstance(reply, m.Error) and E(reply.code) is E.APP_REJECTED and reply.channel_id == good.nid
            assert "HashTimeLockWrongCaller" in reply.reason
            conn.close()
    run(scenario())


# ---------------------------------------------------------------------- the cooperative close


@pytest.mark.parametrize("dispute", [None, -1, 0, 1], ids=["open", "deadline-1", "deadline", "deadline+1"])
def test_a_cooperative_close_pays_out_at_once_also_ending_a_dispute(net, dispute):
    """A lock claimed and absorbed, then both sign the cash as a final state: paid out in the
    block where it is submitted, also when Bob had registered a close, before, at or after its
    deadline D (until someone finalizes)."""
    async def scenario():
        async with ms_pair(net) as (alice, bob, cid):
            pay = await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
            with pytest.raises(errors.InvalidNanocontract, match="still blocks"):
                await alice.multistate.cooperative_close(cid)
            await bob.multistate.call(cid, pay, htlc.CLAIM, PREIMAGE)
            await alice.multistate.absorb(cid, pay)
            if dispute is not None:
                await bob.multistate.close(cid)
                rec = await alice.wait_for(cid, lambda r: r.stage is Stage.CLOSING)
                # From D on either watcher would finalize: none does here, so the close meets D + 1.
                await asyncio.gather(alice.watcher.stop(), bob.watcher.stop())
                net.chain.set_next_block_timestamp(rec.deadline + dispute)
            assert await alice.multistate.cooperative_close(cid) == (9 * ETHER, 6 * ETHER)
            await bob.sync()
            await bob.wait_for(cid, lambda r: r.stage is Stage.CLOSED)
            assert bob.multistate.channel(cid).outcome == (9 * ETHER, 6 * ETHER)
    run(scenario())
    names = [e.name for e in net.ms.contract.events() if e.name in ("CloseRegistered", "CooperativelyClosed",
                                                                      "Finalized")]
    assert names == ([] if dispute is None else ["CloseRegistered"]) + ["CooperativelyClosed"]


# ---------------------------------------------------------------------- the reply time T


@contextlib.contextmanager
def held(node, message_type):
    """`node` takes in no message of `message_type` until the returned event is set."""
    gate = asyncio.Event()
    receive = node.multistate.receive

    async def gated(conn, msg):
        if isinstance(msg, message_type):
            await gate.wait()
        await receive(conn, msg)
    node.multistate.receive = gated
    try:
        yield gate
    finally:
        node.multistate.receive = receive


def test_a_proposal_not_answered_within_the_reply_time_expires_and_the_next_goes_above_it(net):
    """Bob is slow: Alice's creation expires after T, which frees the slot; Bob, when he gets to
    it, refuses it as expired (nothing changes); Alice's next creation goes above its version."""
    async def scenario():
        async with ms_pair(net, reply_time=0.5) as (alice, bob, cid):
            with held(bob, m.NanocontractCreate) as gate:
                with pytest.raises(errors.ProposalExpired, match="within the reply time"):
                    await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
                rec = alice.multistate.channel(cid)
                assert rec.pending == () and [p.version for p in rec.expired] == [1]
                gate.set()
                await alice.wait_for(cid, lambda r: r.expired == ())  # Bob's refusal: EXPIRED
            assert bob.multistate.channel(cid).state.version == 0 and bob.multistate.channel(cid).channel_signed == 0
            await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
            assert alice.multistate.channel(cid).state == bob.multistate.channel(cid).state
            assert alice.multistate.channel(cid).state.version == 2
    run(scenario())


def test_an_answer_given_in_time_but_received_late_still_completes_the_proposal(net):
    async def scenario():
        async with ms_pair(net, reply_time=0.5) as (alice, bob, cid):
            with held(alice, m.NanocontractAck) as gate:
                with pytest.raises(errors.ProposalExpired):
                    await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
                assert bob.multistate.channel(cid).state.version == 1  # Bob countersigned in time
                gate.set()
                rec = await alice.wait_for(cid, lambda r: r.state.version == 1)
            assert rec.expired == () and rec.state == bob.multistate.channel(cid).state and len(rec.nanocontracts) == 1
    run(scenario())


def test_expired_proposals_are_asked_about_again_after_a_restart(net):
    """Alice's creation expires while Bob is offline and she restarts; when he is back, she asks
    him again: he refuses it as expired, and her record forgets it."""
    async def scenario():
        async with ms_pair(net, reply_time=0.5) as (alice, bob, cid):
            with held(bob, m.NanocontractCreate):
                with pytest.raises(errors.ProposalExpired):
                    await alice.multistate.create(cid, "HashTimeLock", lock(ETHER, net=net))
        async with net.running("alice", "bob", reply_time=0.5, accept_nanocontract=consent) as (alice, bob):
            assert [p.version for p in alice.multistate.channel(cid).expired] == [1]
            await alice.connect(bob.address, "127.0.0.1", bob.port)  # Bob listens on a new port
            await alice.wait_for(cid, lambda r: r.expired == ())
            assert bob.multistate.channel(cid).state.version == 0
    run(scenario())
