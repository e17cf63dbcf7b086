"""perun.core.msmachine: nanocontracts created, called and absorbed by two parties off chain,
each proposal checked by recomputing it, and every forged or conflicting one refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account

from perun import errors
from perun.core.apps import ALICE, APPS, BOB
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import tictactoe as ttt
from perun.core.channel import Params
from perun.core.machine import Role, Stage
from perun.core.msmachine import (
    Duty,
    Intent,
    MSRecord,
    absorb,
    adopted,
    apply_event,
    call,
    close,
    create,
    duties,
    expire,
    intend,
    new_record,
    receive,
    receive_ack,
    receive_reject,
)
from perun.core.multistate import digest, ms_domain

A, B = Account.create(), Account.create()
DOMAIN = ms_domain(1337, "0x" + "ab" * 20)
PARAMS = Params(A.address, B.address, 100, 50, 600, 1)
HTLC, GAME = "0x" + "11" * 20, "0x" + "22" * 20
APP_AT = {HTLC: APPS["HashTimeLock"], GAME: APPS["TicTacToe"]}
PREIMAGE = b"\x42" * 32
NOW = 1_000


def app_of(address: str):
    return APP_AT[address]


def pair() -> tuple[MSRecord, MSRecord]:
    return (new_record(PARAMS, DOMAIN, Role.ALICE, Stage.OPEN), new_record(PARAMS, DOMAIN, Role.BOB, Stage.OPEN))


def exchange(proposer: MSRecord, receiver: MSRecord, step, key, peer_key, **receive_kw):
    """One full update: propose, receive and countersign, acknowledge."""
    proposer, proposal = step(proposer, key)
    receiver, mine = receive(receiver, proposal, app_of, NOW, peer_key, **receive_kw)
    proposer, _ = receive_ack(proposer, proposal.slot, mine.sig_channel, mine.sig_nanocontract)
    return proposer, receiver, proposal


def lock(rec, key):
    return create(rec, HTLC, htlc.initial(ALICE, 30, htlc.hashlock_of(PREIMAGE), NOW + 100), key)


def test_a_conditional_payment_created_claimed_and_absorbed() -> None:
    alice, bob = pair()
    alice, bob, made = exchange(alice, bob, lock, A.key, B.key)
    assert alice.channel == bob.channel and alice.pending == ()
    assert (alice.state.version, alice.state.cash_alice, alice.state.cash_bob) == (1, 70, 50)
    assert [s.state.nid for s in alice.nanocontracts] == [made.nid] == [s.state.nid for s in bob.nanocontracts]
    # Both hold both signatures on both structs.
    for rec in (alice, bob):
        nc = rec.nanocontract(made.nid)
        assert Account._recover_hash(digest(DOMAIN, nc.state), signature=nc.sig_alice) == A.address
        assert Account._recover_hash(digest(DOMAIN, rec.state), signature=rec.channel.sig_bob) == B.address

    bob, alice, claimed = exchange(bob, alice, lambda r, k: call(r, made.nid, htlc.CLAIM, PREIMAGE, NOW, APPS["HashTimeLock"], k), B.key, A.key)
    assert claimed.nanocontract.version == 1 and claimed.nanocontract.released_bob == 30
    assert alice.nanocontract(made.nid).state == bob.nanocontract(made.nid).state == claimed.nanocontract

    alice, bob, gone = exchange(alice, bob, lambda r, k: absorb(r, made.nid, k), A.key, B.key)
    assert alice.state == bob.state and (alice.state.version, alice.state.cash_alice, alice.state.cash_bob) == (2, 70, 80)
    assert alice.nanocontracts == bob.nanocontracts == ()


def test_a_record_keeps_no_trace_of_nanocontracts_gone() -> None:
    # A hub creates and absorbs a nanocontract per virtual channel: its record must not grow.
    alice, bob = pair()
    claim = lambda nid: lambda r, k: call(r, nid, htlc.CLAIM, PREIMAGE, NOW, APPS["HashTimeLock"], k)  # noqa: E731
    for _ in range(3):  # Alice's cash allows three
        alice, bob, made = exchange(alice, bob, lock, A.key, B.key)
        assert alice.signed_version(made.nid) == bob.signed_version(made.nid) == 0
        bob, alice, _ = exchange(bob, alice, claim(made.nid), B.key, A.key)
        alice, bob, _ = exchange(alice, bob, lambda r, k: absorb(r, made.nid, k), A.key, B.key)
        for rec in (alice, bob):
            assert (rec.nano_signed, rec.nanocontracts, rec.pending) == ((), (), ())
    # A refused creation is forgotten too: its channel version, and so its nid, stays burned.
    bob_lock = lambda r, k: create(r, HTLC, htlc.initial(BOB, 5, htlc.hashlock_of(PREIMAGE), NOW + 100), k)  # noqa: E731
    bob, refused = bob_lock(bob, B.key)
    bob, _ = receive_reject(bob, b"")
    assert bob.nano_signed == () and bob.channel_signed == refused.channel.version
    bob, again = bob_lock(bob, B.key)
    assert again.nid != refused.nid


def test_nanocontracts_update_in_parallel() -> None:
    alice, bob = pair()
    alice, bob, first = exchange(alice, bob, lock, A.key, B.key)
    alice, bob, second = exchange(alice, bob, lock, A.key, B.key)
    assert first.nid != second.nid
    claim = lambda nid: lambda r, k: call(r, nid, htlc.CLAIM, PREIMAGE, NOW, APPS["HashTimeLock"], k)  # noqa: E731
    bob, p1 = claim(first.nid)(bob, B.key)
    bob, p2 = claim(second.nid)(bob, B.key)  # both in flight at once
    alice, ack2 = receive(alice, p2, app_of, NOW, A.key)
    alice, ack1 = receive(alice, p1, app_of, NOW, A.key)
    bob, _ = receive_ack(bob, p2.slot, b"", ack2.sig_nanocontract)
    bob, _ = receive_ack(bob, p1.slot, b"", ack1.sig_nanocontract)
    assert bob.nanocontracts == alice.nanocontracts and all(s.state.terminated for s in bob.nanocontracts)


def test_the_receiver_refuses_what_the_rules_do_not_give() -> None:
    alice, bob = pair()
    alice, made = lock(alice, A.key)
    forged = {
        "nid not from the version": replace(made, nid=b"\x01" * 32, nanocontract=replace(made.nanocontract, nid=b"\x01" * 32)),
        "cash not lowered": replace(made, channel=replace(made.channel, cash_alice=100)),
        "unknown app": replace(made, nanocontract=replace(made.nanocontract, app="0x" + "33" * 20)),
    }
    for _name, proposal in forged.items():
        with pytest.raises(errors.ValidationError):
            receive(bob, proposal, app_of, NOW, B.key)
    with pytest.raises(errors.InvalidSignature):  # right content, signed by someone else
        receive(bob, replace(made, sig_channel=made.sig_nanocontract), app_of, NOW, B.key)
    # Nothing changed: the genuine proposal still goes through.
    bob, _ = receive(bob, made, app_of, NOW, B.key)
    assert bob.state == made.channel


def test_a_call_is_checked_with_the_apps_own_rules_and_the_receivers_clock() -> None:
    alice, bob = pair()
    alice, bob, made = exchange(alice, bob, lock, A.key, B.key)
    _, early = call(bob, made.nid, htlc.CLAIM, PREIMAGE, NOW, APPS["HashTimeLock"], B.key)
    with pytest.raises(errors.HashTimeLockExpired):  # Alice's clock is past the timeout
        receive(alice, early, app_of, NOW + 101, A.key)
    fake = replace(early, nanocontract=replace(early.nanocontract, released_bob=29, released_alice=1))
    with pytest.raises(errors.InvalidNanocontract):
        receive(alice, fake, app_of, NOW, A.key)
    with pytest.raises(errors.HashTimeLockWrongPreimage):
        call(bob, made.nid, htlc.CLAIM, b"\x00" * 32, NOW, APPS["HashTimeLock"], B.key)


def test_blocking_the_receivers_cash_needs_its_consent() -> None:
    alice, bob = pair()
    game = lambda r, k: create(r, GAME, ttt.initial(10, 10, ALICE, 60), k)  # noqa: E731
    _, proposal = game(alice, A.key)
    with pytest.raises(errors.BalanceDecreased):
        receive(bob, proposal, app_of, NOW, B.key)
    alice, bob, made = exchange(alice, bob, game, A.key, B.key, consents=lambda nc: nc.app == GAME)
    move = lambda cell: lambda r, k: call(r, made.nid, ttt.MOVE, ttt.move_arg(cell), NOW, APPS["TicTacToe"], k)  # noqa: E731
    with pytest.raises(errors.TicTacToeNotYourTurn):
        move(4)(bob, B.key)
    for mover, cell in [(ALICE, 0), (BOB, 4), (ALICE, 1), (BOB, 8), (ALICE, 2)]:
        if mover == ALICE:
            alice, bob, _ = exchange(alice, bob, move(cell), A.key, B.key)
        else:
            bob, alice, _ = exchange(bob, alice, move(cell), B.key, A.key)
    won = alice.nanocontract(made.nid).state
    assert won.terminated and won.released_alice == 20 and won == bob.nanocontract(made.nid).state


def test_conflicts_stale_versions_and_rejections() -> None:
    alice, bob = pair()
    alice, mine = lock(alice, A.key)
    bob, theirs = create(bob, HTLC, htlc.initial(BOB, 5, htlc.hashlock_of(PREIMAGE), NOW + 100), B.key)
    with pytest.raises(errors.UpdateConflict):
        receive(alice, theirs, app_of, NOW, A.key)
    with pytest.raises(errors.UpdateConflict):
        lock(alice, A.key)  # one proposal per slot
    alice, dropped = receive_reject(alice, b"")
    bob, _ = receive_reject(bob, b"")
    assert dropped == mine and alice.pending == () and alice.channel_signed == 1
    with pytest.raises(errors.StaleVersion):  # version 1 is burned for Alice
        receive(alice, theirs, app_of, NOW, A.key)
    alice, again = lock(alice, A.key)
    assert again.channel.version == 2
    bob, ack = receive(bob, again, app_of, NOW, B.key)
    with pytest.raises(errors.StaleVersion):  # a replay
        receive(bob, again, app_of, NOW, B.key)
    alice, _ = receive_ack(alice, b"", ack.sig_channel, ack.sig_nanocontract)
    with pytest.raises(errors.StaleVersion):
        receive_ack(alice, b"", ack.sig_channel, ack.sig_nanocontract)


def test_a_refusal_tells_the_proposer_which_versions_the_peer_burned() -> None:
    alice, bob = pair()
    # Two creations of Alice's that Bob refuses (his policy, say) burn her channel versions 1, 2.
    for _ in range(2):
        alice, _ = lock(alice, A.key)
        alice, _ = receive_reject(alice, b"")
    bob_lock = lambda r, k: create(r, HTLC, htlc.initial(BOB, 5, htlc.hashlock_of(PREIMAGE), NOW + 100), k)  # noqa: E731
    _, stale = bob_lock(bob, B.key)
    assert stale.channel.version == 1  # all Bob knows of
    with pytest.raises(errors.StaleVersion):
        receive(alice, stale, app_of, NOW, A.key)
    bob, _ = receive_reject(bob, b"", peer_signed=alice.channel_signed)  # the Error says 2
    bob, alice, made = exchange(bob, alice, bob_lock, B.key, A.key)
    assert made.channel.version == 3 and alice.state == bob.state

    # The same on a nanocontract's slot: Bob's clock says his lock expired, Alice's does not.
    reclaim = lambda r, k: call(r, made.nid, htlc.RECLAIM, b"", NOW + 101, APPS["HashTimeLock"], k)  # noqa: E731
    bob, early = reclaim(bob, B.key)
    with pytest.raises(errors.HashTimeLockNotExpired):
        receive(alice, early, app_of, NOW, A.key)
    bob, _ = receive_reject(bob, made.nid, peer_signed=alice.signed_version(made.nid))  # Alice: 0
    claim = lambda r, k: call(r, made.nid, htlc.CLAIM, PREIMAGE, NOW, APPS["HashTimeLock"], k)  # noqa: E731
    _, stale = claim(alice, A.key)
    with pytest.raises(errors.StaleVersion):  # Bob signed version 1 of the lock, his reclaim
        receive(bob, stale, app_of, NOW, B.key)
    alice, _ = receive_reject(alice, made.nid, peer_signed=bob.signed_version(made.nid))
    alice, bob, claimed = exchange(alice, bob, claim, A.key, B.key)
    assert claimed.nanocontract.version == 2 and claimed.nanocontract.released_alice == 5
    # A hint for a nanocontract gone is not kept.
    alice, bob, _ = exchange(alice, bob, lambda r, k: absorb(r, made.nid, k), A.key, B.key)
    assert alice.peer_signed == () and bob.peer_signed == ((b"", 2),)


def test_nothing_is_signed_unless_the_channel_is_open() -> None:
    alice = new_record(PARAMS, DOMAIN, Role.ALICE, Stage.CLOSING)
    with pytest.raises(errors.WrongStage):
        lock(alice, A.key)


# ---------------------------------------------------------------------- the chain's side


def with_lock_claimed() -> tuple[MSRecord, MSRecord, bytes]:
    alice, bob = pair()
    alice, bob, made = exchange(alice, bob, lock, A.key, B.key)
    claim = lambda r, k: call(r, made.nid, htlc.CLAIM, PREIMAGE, NOW, APPS["HashTimeLock"], k)  # noqa: E731
    bob, alice, _ = exchange(bob, alice, claim, B.key, A.key)
    return alice, bob, made.nid


def closed_at(rec: MSRecord, version: int, deadline: int) -> MSRecord:
    fundings = [(f.nid, f.alice, f.bob) for f in rec.state.nanocontracts]
    return apply_event(rec, "CloseRegistered", {"version": version, "deadline": deadline, "nanocontracts": fundings})


def test_a_stale_nanocontract_registration_is_answered_within_its_window() -> None:
    _, bob, nid = with_lock_claimed()  # Bob holds version 1 (claimed), signed by Alice
    bob = apply_event(bob, "NanocontractRegistered", {"nid": nid, "version": 0, "windowEnd": 500, "settleBy": 0})
    assert duties(bob, 499) == ((Duty.REGISTER, nid),)
    # The window's last second is for the transaction itself; after it the chain holds the old
    # lock for good, and it may be executed.
    assert duties(bob, 500) == ((Duty.EXECUTE, nid),)
    answered = apply_event(bob, "NanocontractRegistered", {"nid": nid, "version": 1, "windowEnd": 500, "settleBy": 0})
    assert duties(answered, 499) == () and answered.registered(nid).terminated
    assert apply_event(answered, "NanocontractRegistered", {"nid": nid, "version": 0, "windowEnd": 500, "settleBy": 0}) == answered


def test_a_close_makes_each_party_register_what_it_lists_then_finalize() -> None:
    alice, _, nid = with_lock_claimed()
    closing = closed_at(alice, alice.state.version, deadline=2_000)
    assert closing.stage is Stage.CLOSING and closing.registered_fundings[0].nid == nid
    assert duties(closing, 1_999) == ((Duty.REGISTER, nid),)
    assert duties(closing, 2_000) == ()  # registrations end at D; nothing settled: wait for D + Δ
    assert duties(closing, 2_000 + PARAMS.delta) == ((Duty.FINALIZE, b""),)
    registered = apply_event(closing, "NanocontractRegistered", {"nid": nid, "version": 1, "windowEnd": 2_100, "settleBy": 0})
    assert duties(registered, 2_099) == () and duties(registered, 2_100) == ((Duty.FINALIZE, b""),)


def test_a_stale_channel_state_is_disputed_and_an_open_channel_has_no_duty() -> None:
    alice, bob, _ = with_lock_claimed()
    assert duties(alice, 10**9) == ()
    stale = closed_at(bob, 0, deadline=2_000)  # Alice registered the initial state
    assert (Duty.DISPUTE, b"") in duties(stale, 1_999) and duties(stale, 2_000) == ()
    paid = apply_event(stale, "Finalized", {"payoutAlice": 100, "payoutBob": 50})
    assert paid.stage is Stage.CLOSED and paid.outcome == (100, 50) and duties(paid, 10**9) == ()
    assert apply_event(paid, "CloseRegistered", {"version": 9, "deadline": 1, "nanocontracts": []}) == paid


def test_a_new_nanocontract_must_start_where_its_app_starts() -> None:
    alice, bob = pair()
    midgame = ttt.encode(ALICE, 60, (1, 0, 0, 0, 2, 0, 0, 0, 0))
    bad = {
        "a game already under way": (GAME, replace(ttt.initial(10, 10, ALICE, 60), data=midgame)),
        "a game without a move timeout": (GAME, ttt.initial(10, 10, ALICE, 0)),
        "a lock that blocks the receiver's cash": (HTLC, replace(htlc.initial(ALICE, 30, bytes(32), NOW), blocked_bob=5)),
        "a lock of nothing": (HTLC, htlc.initial(ALICE, 0, bytes(32), NOW)),
    }
    for _name, (app, initial) in bad.items():
        _, proposal = create(alice, app, initial, A.key)
        with pytest.raises(errors.InvalidNanocontract):
            receive(bob, proposal, app_of, NOW, B.key, consents=lambda nc: True)


def test_a_lost_acknowledgement_is_given_again_and_nothing_is_signed_twice() -> None:
    alice, bob = pair()
    alice, made = lock(alice, A.key)
    bob, first = receive(bob, made, app_of, NOW, B.key)
    # Alice crashed before she stored Bob's acknowledgement; she sends the same proposal again.
    with pytest.raises(errors.StaleVersion):
        receive(bob, made, app_of, NOW, B.key)
    again = adopted(bob, made)
    assert again is not None and (again.sig_channel, again.sig_nanocontract) == (first.sig_channel, first.sig_nanocontract)
    alice, _ = receive_ack(alice, made.slot, again.sig_channel, again.sig_nanocontract)
    assert alice.channel == bob.channel
    # A proposal Bob never signed is not his latest state: no acknowledgement.
    _, other = lock(alice, A.key)
    assert adopted(bob, other) is None


def test_a_nanocontract_on_chain_is_executed_not_called_off_chain() -> None:
    alice, bob, nid = with_lock_claimed()
    alice, bob, game = exchange(alice, bob, lambda r, k: create(r, GAME, ttt.initial(10, 10, ALICE, 60), k), A.key,
                                B.key, consents=lambda nc: True)
    registered = apply_event(alice, "NanocontractRegistered", {"nid": game.nid, "version": 0, "windowEnd": 500, "settleBy": 0})
    with pytest.raises(errors.WrongStage, match="registered on chain"):
        call(registered, game.nid, ttt.MOVE, ttt.move_arg(4), NOW, APPS["TicTacToe"], A.key)
    _, move = call(alice, game.nid, ttt.MOVE, ttt.move_arg(4), NOW, APPS["TicTacToe"], A.key)
    bob_registered = apply_event(bob, "NanocontractRegistered", {"nid": game.nid, "version": 0, "windowEnd": 500, "settleBy": 0})
    with pytest.raises(errors.WrongStage):
        receive(bob_registered, move, app_of, NOW, B.key)
    # After the window the game may be executed on chain, whatever the party intends.
    assert duties(registered, 499) == () and duties(registered, 500) == ((Duty.EXECUTE, game.nid),)
    intending = intend(registered, game.nid, ttt.MOVE, ttt.move_arg(4))
    assert intending.intents == (Intent(game.nid, ttt.MOVE, ttt.move_arg(4)),)
    assert intend(intending, game.nid, ttt.MOVE, ttt.move_arg(4)) == intending
    with pytest.raises(errors.UnknownNanocontract):
        intend(registered, b"\x01" * 32, ttt.MOVE, b"")
    # The party's own execution of that function fulfils the intent; the peer's does not.
    executed = {"nid": game.nid, "fun": ttt.MOVE, "version": 1, "blockedAlice": 10, "blockedBob": 10}
    assert apply_event(intending, "NanocontractExecuted", {**executed, "by": B.address}).intents == intending.intents
    done = apply_event(intending, "NanocontractExecuted", {**executed, "by": A.address})
    assert done.intents == () and done.registered(game.nid).version == 1
    # A terminated nanocontract has nothing left to execute.
    over = apply_event(intending, "NanocontractExecuted",
                       {**executed, "by": B.address, "fun": ttt.TIMEOUT, "blockedAlice": 0, "blockedBob": 0})
    assert over.intents == () and duties(over, 10**6) == ()
    # In a closing channel, execution ends at D + Δ.
    closing = closed_at(registered, registered.state.version, deadline=2_000)
    assert (Duty.EXECUTE, game.nid) in duties(closing, 1_999 + PARAMS.delta)
    assert (Duty.EXECUTE, game.nid) not in duties(closing, 2_000 + PARAMS.delta)


def test_a_closing_channel_waits_for_a_nanocontracts_settle_by() -> None:
    alice, _, nid = with_lock_claimed()
    closing = closed_at(alice, alice.state.version, deadline=2_000)
    end = 2_000 + PARAMS.delta
    # Registered unsettled (version 0) by an app that asks the channel to wait until end + 500:
    # it may be executed until then, and the channel is finalized after.
    waiting = apply_event(closing, "NanocontractRegistered", {"nid": nid, "version": 0, "windowEnd": 1_500,
                                                              "settleBy": end + 500})
    assert duties(waiting, end) == ((Duty.EXECUTE, nid),)
    assert duties(waiting, end + 499) == ((Duty.EXECUTE, nid),)
    assert duties(waiting, end + 500) == ((Duty.FINALIZE, b""),)
    # A settleBy before D + Δ changes nothing.
    early = apply_event(closing, "NanocontractRegistered", {"nid": nid, "version": 0, "windowEnd": 1_500, "settleBy": 5})
    assert duties(early, end - 1) == ((Duty.EXECUTE, nid),)
    assert duties(early, end) == ((Duty.FINALIZE, b""),)


def test_a_fee_moves_with_the_creation_and_the_receiver_recomputes_it() -> None:
    alice, bob = pair()
    fee_lock = lambda r, k: create(r, HTLC, htlc.initial(ALICE, 30, htlc.hashlock_of(PREIMAGE), NOW + 100), k, 5)  # noqa: E731
    alice, bob, made = exchange(alice, bob, fee_lock, A.key, B.key)
    assert alice.state == bob.state and (alice.state.cash_alice, alice.state.cash_bob) == (65, 55)
    # Bob pays Alice a fee with his own creation, in the other direction.
    bob, alice, _ = exchange(bob, alice, lambda r, k: create(r, HTLC, htlc.initial(BOB, 10, b"\x01" * 32, NOW + 9), k, 7),
                             B.key, A.key)
    assert (alice.state.cash_alice, alice.state.cash_bob) == (72, 38)
    # A proposal whose fee is not the one its channel state was signed with is refused.
    _, proposal = fee_lock(alice, A.key)
    with pytest.raises(errors.InvalidSignature):
        receive(bob, replace(proposal, fee=6, channel=replace(proposal.channel, cash_alice=36, cash_bob=44)),
                app_of, NOW, B.key)
    with pytest.raises(errors.AmountOutOfRange):
        create(alice, HTLC, htlc.initial(ALICE, 30, htlc.hashlock_of(PREIMAGE), NOW + 100), A.key, 43)


# ---------------------------------------------------------------------- the cooperative close


@pytest.mark.parametrize("absorbed", [True, False])
def test_the_cooperative_close_signs_the_cash_once_no_nanocontract_blocks_funds(absorbed) -> None:
    """The final state is the cash with what every nanocontract released, absorbed or not (in
    a dispute nothing is absorbed any more)."""
    alice, bob = pair()
    alice, bob, made = exchange(alice, bob, lock, A.key, B.key)
    with pytest.raises(errors.InvalidNanocontract, match="still blocks 30"):
        close(alice, A.key)
    bob, alice, _ = exchange(bob, alice, lambda r, k: call(r, made.nid, htlc.CLAIM, PREIMAGE, NOW, APPS["HashTimeLock"], k),
                             B.key, A.key)
    if absorbed:
        alice, bob, _ = exchange(alice, bob, lambda r, k: absorb(r, made.nid, k), A.key, B.key)
    alice, bob, closing = exchange(alice, bob, close, A.key, B.key)
    final = closing.final
    assert (final.version, final.cash_alice, final.cash_bob) == (3 if absorbed else 2, 70, 80)
    assert alice.final == bob.final and alice.is_fully_signed_final and alice.proposed_final and not bob.proposed_final
    assert duties(alice, NOW) == ((Duty.COOPERATIVE_CLOSE, b""),) and duties(bob, NOW) == ()
    with pytest.raises(errors.AlreadyFinal):  # nothing more is signed
        lock(bob, B.key)
    with pytest.raises(errors.AlreadyFinal):
        close(alice, A.key)
    paid = apply_event(alice, "CooperativelyClosed", {"payoutAlice": 70, "payoutBob": 80})
    assert (paid.stage, paid.outcome) == (Stage.CLOSED, (70, 80))


def test_a_final_state_goes_above_every_burned_version_and_ends_a_dispute() -> None:
    alice, bob = pair()
    _, refused = lock(bob, B.key)  # Bob signed channel version 1; Alice refused it
    alice, _ = receive_reject(alice, b"", peer_signed=refused.channel.version)
    alice = replace(alice, stage=Stage.CLOSING, registered_version=0, deadline=NOW)
    bob = replace(bob, stage=Stage.CLOSING, registered_version=0, deadline=NOW)
    with pytest.raises(errors.WrongStage):
        lock(alice, A.key)  # in a dispute only a final state is signed
    alice, bob, closing = exchange(alice, bob, close, A.key, B.key)
    assert closing.final.version == 2
    assert duties(alice, NOW + 10**6) == duties(bob, NOW + 10**6) == ((Duty.COOPERATIVE_CLOSE, b""),)


def test_a_receiver_refuses_a_final_state_that_is_not_its_cash() -> None:
    alice, bob = pair()
    _, closing = close(alice, A.key)
    for forged, error in [(replace(closing.final, cash_alice=99, cash_bob=51), errors.InvalidNanocontract),
                          (replace(closing.final, cash_alice=101), errors.BalancesNotConserved),
                          (replace(closing.final, version=0), errors.StaleVersion)]:
        with pytest.raises(error):
            receive(bob, replace(closing, final=forged), app_of, NOW, B.key)
    _, own = close(bob, B.key)  # Bob's own signature on the same final state is not Alice's
    with pytest.raises(errors.InvalidSignature):
        receive(bob, replace(closing, sig_channel=own.sig_channel), app_of, NOW, B.key)


# ---------------------------------------------------------------------- the reply time T


def test_an_expired_proposal_frees_its_slot_and_its_version_stays_burned() -> None:
    alice, bob = pair()
    alice, first = lock(alice, A.key)
    with pytest.raises(errors.UpdateConflict):
        lock(alice, A.key)  # one proposal per slot
    alice = expire(alice, b"")
    assert alice.pending == () and alice.expired == (first,)
    alice, second = lock(alice, A.key)
    assert (second.channel.version, second.prev) == (2, 0)  # above the expired one, on the same state
    # The peer refuses the expired one: it is gone; the second goes through.
    alice, dropped = receive_reject(alice, b"", version=1)
    assert dropped == first and alice.expired == ()
    bob, mine = receive(bob, second, app_of, NOW, B.key)
    alice, _ = receive_ack(alice, b"", mine.sig_channel, mine.sig_nanocontract, version=2)
    assert alice.state == bob.state and alice.state.version == 2


def test_a_late_acknowledgement_of_an_expired_proposal_still_counts_unless_the_slot_moved_on() -> None:
    alice, bob = pair()
    alice, first = lock(alice, A.key)
    bob, mine = receive(bob, first, app_of, NOW, B.key)  # Bob countersigned in time; his answer is late
    alice = expire(alice, b"")
    late, _ = receive_ack(alice, b"", mine.sig_channel, mine.sig_nanocontract, version=1)
    assert late.state == bob.state and late.expired == ()
    # Had another proposal on the slot been countersigned meanwhile (by a Bob who never saw the
    # first: he could not have signed both), an answer to the first finds no state to build on.
    alice, second = lock(alice, A.key)
    _, again = receive(new_record(PARAMS, DOMAIN, Role.BOB, Stage.OPEN), second, app_of, NOW, B.key)
    moved, _ = receive_ack(alice, b"", again.sig_channel, again.sig_nanocontract, version=2)
    assert moved.state.version == 2 and moved.expired == ()  # the first can never be adopted now
    with pytest.raises(errors.StaleVersion):
        receive_ack(moved, b"", mine.sig_channel, mine.sig_nanocontract, version=1)
