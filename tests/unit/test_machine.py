"""The off-chain update machine (perun.core.machine): every transition and every refusal."""

from dataclasses import replace

import pytest
from eth_account import Account

from perun import errors
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import Domain, sign_state
from perun.core.machine import (
    Duty,
    Role,
    Stage,
    apply_event,
    duties,
    final,
    give_up,
    new_record,
    payment,
    propose,
    receive_ack,
    receive_reject,
    receive_sync,
    receive_update,
    reestablish,
)

ALICE = Account.from_key(b"\x01" * 32)
BOB = Account.from_key(b"\x02" * 32)
MALLORY = Account.from_key(b"\x03" * 32)
DOMAIN = Domain(1337, "0x" + "ab" * 20)
PARAMS = Params(ALICE.address, BOB.address, 100, 50, 600, 7)


def pair(stage=Stage.OPEN):
    return (new_record(PARAMS, DOMAIN, Role.ALICE, stage), new_record(PARAMS, DOMAIN, Role.BOB, stage))


def exchange(proposer, receiver, proposer_key, receiver_key, amount):
    """One whole update: returns both new records."""
    proposer, proposal = propose(proposer, payment(proposer, amount), proposer_key)
    receiver, sig = receive_update(receiver, proposal.state, proposal.prev, proposal.signature, receiver_key)
    proposer, _ = receive_ack(proposer, proposal.state.version, sig)
    return proposer, receiver


def test_update_round_trip_both_directions():
    alice, bob = pair()
    alice, bob = exchange(alice, bob, ALICE.key, BOB.key, 30)
    bob, alice = exchange(bob, alice, BOB.key, ALICE.key, 10)
    for rec in (alice, bob):
        assert (rec.current.version, rec.current.balance_alice, rec.current.balance_bob) == (2, 80, 70)
        assert rec.signed == 2 and rec.pending == ()
    assert alice.sig_alice == bob.sig_alice and alice.sig_bob == bob.sig_bob
    assert alice.peer_signature == alice.sig_bob and bob.peer_signature == bob.sig_alice


def test_pipelined_proposals_are_acknowledged_in_order():
    alice, bob = pair()
    proposals = []
    for _ in range(3):
        alice, p = propose(alice, payment(alice, 5), ALICE.key)
        proposals.append(p)
    assert [p.prev for p in proposals] == [0, 1, 2]
    sigs = []
    for p in proposals:
        bob, sig = receive_update(bob, p.state, p.prev, p.signature, BOB.key)
        sigs.append(sig)
    with pytest.raises(errors.StaleVersion):
        receive_ack(alice, 2, sigs[1])  # out of order
    for p, sig in zip(proposals, sigs):
        alice, _ = receive_ack(alice, p.state.version, sig)
    assert alice.current == bob.current and alice.current.balance_alice == 85


@pytest.mark.parametrize("mutate, error", [
    (lambda s: replace(s, balance_bob=s.balance_bob + 1), errors.BalancesNotConserved),
    (lambda s: replace(s, channel_id=b"\x09" * 32), errors.WrongChannel),
    (lambda s: replace(s, version=0), errors.StaleVersion),
])
def test_receiver_refuses_bad_states_and_changes_nothing(mutate, error):
    alice, bob = pair()
    state = mutate(payment(alice, 10))
    with pytest.raises(error):
        receive_update(bob, state, 0, sign_state(DOMAIN, state, ALICE.key), BOB.key)


def test_receiver_refuses_wrong_signer_decrease_wrong_base_and_replay():
    alice, bob = pair()
    state = payment(alice, 10)
    with pytest.raises(errors.InvalidSignature):
        receive_update(bob, state, 0, sign_state(DOMAIN, state, MALLORY.key), BOB.key)
    with pytest.raises(errors.InvalidSignature):  # signed for another contract
        receive_update(bob, state, 0, sign_state(Domain(1337, "0x" + "cd" * 20), state, ALICE.key), BOB.key)
    with pytest.raises(errors.StaleVersion):
        receive_update(bob, state, 5, sign_state(DOMAIN, state, ALICE.key), BOB.key)
    theft = PaymentState(state.channel_id, 1, 110, 40)  # Alice "pays" herself from Bob
    with pytest.raises(errors.BalanceDecreased):
        receive_update(bob, theft, 0, sign_state(DOMAIN, theft, ALICE.key), BOB.key)
    bob2, _ = receive_update(bob, state, 0, sign_state(DOMAIN, state, ALICE.key), BOB.key)
    with pytest.raises(errors.StaleVersion):  # the same update again
        receive_update(bob2, state, 0, sign_state(DOMAIN, state, ALICE.key), BOB.key)


def test_no_updates_unless_open_or_after_a_final_state():
    alice, bob = pair(Stage.INITIALISING)
    with pytest.raises(errors.WrongStage):
        propose(alice, payment(alice, 1), ALICE.key)
    alice, bob = pair()
    alice, p = propose(alice, final(alice), ALICE.key)
    assert alice.final_signed
    with pytest.raises(errors.AlreadyFinal):
        propose(alice, payment(alice, 1), ALICE.key)
    bob, sig = receive_update(bob, p.state, p.prev, p.signature, BOB.key)
    alice, _ = receive_ack(alice, p.state.version, sig)
    assert alice.is_fully_signed_final and bob.is_fully_signed_final
    later = payment(bob, 1)
    with pytest.raises(errors.AlreadyFinal):
        receive_update(bob, later, 1, sign_state(DOMAIN, later, ALICE.key), BOB.key)


def test_in_a_running_dispute_only_a_final_state_is_signed():
    alice, bob = pair()
    alice, bob = exchange(alice, bob, ALICE.key, BOB.key, 30)
    alice, bob = (replace(r, stage=Stage.CLOSING, registered_version=1) for r in (alice, bob))
    with pytest.raises(errors.WrongStage):
        propose(alice, payment(alice, 1), ALICE.key)
    ordinary = payment(bob, 1)
    with pytest.raises(errors.WrongStage):
        receive_update(alice, ordinary, 1, sign_state(DOMAIN, ordinary, BOB.key), ALICE.key)
    alice, p = propose(alice, final(alice), ALICE.key)
    bob, sig = receive_update(bob, p.state, p.prev, p.signature, BOB.key)
    alice, _ = receive_ack(alice, p.state.version, sig)
    assert alice.current == bob.current == p.state and p.state.version == 2 and p.state.is_final
    assert duties(alice, 10**12) == duties(bob, 10**12) == (Duty.COOPERATIVE_CLOSE,)  # also after the deadline


def test_concurrent_proposals_conflict_burn_their_version_and_never_double_sign():
    alice, bob = pair()
    alice, pa = propose(alice, payment(alice, 10), ALICE.key)
    bob, pb = propose(bob, payment(bob, 3), BOB.key)
    with pytest.raises(errors.UpdateConflict):
        receive_update(bob, pa.state, pa.prev, pa.signature, BOB.key)
    with pytest.raises(errors.UpdateConflict):
        receive_update(alice, pb.state, pb.prev, pb.signature, ALICE.key)
    alice, dropped = receive_reject(alice, 1, peer_signed=bob.signed)
    bob, _ = receive_reject(bob, 1, peer_signed=alice.signed)
    assert dropped == (pa,) and alice.pending == ()
    retry = payment(alice, 10)
    assert retry.version == 2  # version 1 stays burned on both sides
    alice, bob = exchange(alice, bob, ALICE.key, BOB.key, 10)
    assert alice.current.version == bob.current.version == 2


def test_reestablish_resends_unseen_proposals_and_syncs_a_lost_ack():
    alice, bob = pair()
    alice, p = propose(alice, payment(alice, 10), ALICE.key)
    # Bob never got it: Alice resends.
    alice2, resync = reestablish(alice, peer_current=0, peer_signed=0)
    assert resync.resend == (p,) and not resync.send_current and not resync.dropped
    # Bob countersigned, but the ack was lost: Bob sends his fully signed state, Alice adopts it.
    bob, _ = receive_update(bob, p.state, p.prev, p.signature, BOB.key)
    _, bob_resync = reestablish(bob, peer_current=alice.current.version, peer_signed=alice.signed)
    assert bob_resync.send_current
    alice3, resync = reestablish(alice, peer_current=1, peer_signed=1)
    assert resync.resend == () and resync.dropped == ()
    alice3 = receive_sync(alice3, bob.current, bob.sig_alice, bob.sig_bob)
    assert alice3.current == bob.current and alice3.pending == ()
    with pytest.raises(errors.StaleVersion):
        receive_sync(alice3, bob.current, bob.sig_alice, bob.sig_bob)


def test_sync_needs_both_signatures():
    alice, bob = pair()
    state = payment(alice, 10)
    good = sign_state(DOMAIN, state, ALICE.key)
    with pytest.raises(errors.InvalidSignature):
        receive_sync(bob, state, good, sign_state(DOMAIN, state, MALLORY.key))


def test_reestablish_drops_proposals_the_peer_signed_over():
    alice, bob = pair()
    alice, pa = propose(alice, payment(alice, 10), ALICE.key)
    bob, _ = propose(bob, payment(bob, 3), BOB.key)
    alice, resync = reestablish(alice, peer_current=0, peer_signed=bob.signed)
    assert resync.dropped == (pa,) and alice.pending == ()


def test_chain_events_move_stages_forward_only():
    alice, _ = pair(Stage.ACCEPTED)
    alice = apply_event(alice, "Initialising", {"deadline": 500})
    assert (alice.stage, alice.deadline) == (Stage.INITIALISING, 500)
    alice = apply_event(alice, "Initialised", {})
    alice = apply_event(alice, "CloseRegistered", {"version": 3, "deadline": 900})
    assert (alice.stage, alice.registered_version) == (Stage.CLOSING, 3)
    assert apply_event(alice, "CloseRegistered", {"version": 2, "deadline": 900}) == alice
    assert apply_event(alice, "Initialised", {}) == alice
    closed = apply_event(alice, "Finalized", {"balanceAlice": 90, "balanceBob": 60})
    assert (closed.stage, closed.outcome) == (Stage.CLOSED, (90, 60))
    assert apply_event(closed, "CloseRegistered", {"version": 9, "deadline": 1}) == closed


@pytest.mark.parametrize("role, stage, deadline, now, expected", [
    (Role.ALICE, Stage.ACCEPTED, 0, 0, (Duty.CREATE,)),
    (Role.BOB, Stage.ACCEPTED, 0, 0, ()),
    (Role.BOB, Stage.INITIALISING, 100, 99, (Duty.CONFIRM,)),
    (Role.BOB, Stage.INITIALISING, 100, 100, ()),
    (Role.ALICE, Stage.INITIALISING, 100, 99, ()),
    (Role.ALICE, Stage.INITIALISING, 100, 100, (Duty.REFUND,)),
    (Role.BOB, Stage.CLOSING, 100, 99, ()),  # registered version == current
    (Role.BOB, Stage.CLOSING, 100, 100, (Duty.FINALIZE,)),
    (Role.BOB, Stage.CLOSING, 100, 101, (Duty.FINALIZE,)),
])
def test_duties_at_each_deadline(role, stage, deadline, now, expected):
    rec = new_record(PARAMS, DOMAIN, role, stage)
    rec = replace(rec, deadline=deadline, registered_version=0 if stage is Stage.CLOSING else None)
    assert duties(rec, now) == expected


@pytest.mark.parametrize("role, stage, now, expected", [
    # Alice creates until the opening's expiry (chain time 500), and gives it up from then on.
    (Role.ALICE, Stage.ACCEPTED, 499, (Duty.CREATE,)),
    (Role.ALICE, Stage.ACCEPTED, 500, (Duty.EXPIRE,)),
    (Role.ALICE, Stage.ACCEPTED, 501, (Duty.EXPIRE,)),
    (Role.ALICE, Stage.PROPOSED, 499, ()),
    (Role.ALICE, Stage.PROPOSED, 500, (Duty.EXPIRE,)),
    (Role.BOB, Stage.ACCEPTED, 499, ()),
    (Role.BOB, Stage.ACCEPTED, 500, (Duty.EXPIRE,)),
    (Role.ALICE, Stage.FAILED, 10**9, ()),
    (Role.BOB, Stage.FAILED, 10**9, ()),
])
def test_an_opening_expires_at_its_open_until(role, stage, now, expected):
    rec = replace(new_record(PARAMS, DOMAIN, role, stage), open_until=500)
    assert duties(rec, now) == expected
    assert duties(replace(rec, open_until=0), now) == ((Duty.CREATE,) if (role, stage) == (Role.ALICE, Stage.ACCEPTED)
                                                      else ())  # no limit


def test_an_opening_given_up_sends_nothing_but_alices_refund():
    for stage in (Stage.PROPOSED, Stage.ACCEPTED):
        for role in Role:
            failed = give_up(new_record(PARAMS, DOMAIN, role, stage), "cancelled")
            assert (failed.stage, failed.given_up) == (Stage.FAILED, "cancelled")
            assert give_up(failed, "again") is failed
            assert duties(failed, 0) == ()
            # The chain shows it created after all: Bob never confirms, Alice refunds at the deadline.
            created = apply_event(failed, "Initialising", {"deadline": 100})
            assert (created.stage, created.given_up) == (Stage.INITIALISING, "cancelled")
            assert [duties(created, now) for now in (99, 100, 101)] == (
                [(), (Duty.REFUND,), (Duty.REFUND,)] if role is Role.ALICE else [(), (), ()])
    bob = give_up(replace(new_record(PARAMS, DOMAIN, Role.BOB, Stage.INITIALISING), deadline=100), "cancelled")
    assert (bob.stage, duties(bob, 99)) == (Stage.INITIALISING, ())
    for stage in (Stage.OPEN, Stage.CLOSING, Stage.CLOSED):
        with pytest.raises(errors.WrongStage, match=f"is {stage.value}: close it instead"):
            give_up(new_record(PARAMS, DOMAIN, Role.ALICE, stage), "cancelled")


@pytest.mark.parametrize("now, expected", [(98, (Duty.DISPUTE,)), (99, (Duty.DISPUTE,)), (100, (Duty.FINALIZE,))])
def test_a_stale_registration_is_disputed_until_the_deadline(now, expected):
    alice, bob = pair()
    alice, bob = exchange(alice, bob, ALICE.key, BOB.key, 10)
    bob = replace(bob, stage=Stage.CLOSING, registered_version=0, deadline=100)
    assert duties(bob, now) == expected


@pytest.mark.parametrize("proposed, stage, now, due", [
    (True, Stage.OPEN, 0, True), (False, Stage.OPEN, 10**9, False),
    (True, Stage.CLOSING, 0, True),
    (False, Stage.CLOSING, 1000 - 300 - 1, False), (False, Stage.CLOSING, 1000 - 300, True),
])
def test_a_final_state_is_submitted_by_its_proposer_and_in_a_dispute_by_the_other_after_half_the_window(
        proposed, stage, now, due):
    alice, bob = pair()
    alice, p = propose(alice, final(alice), ALICE.key)
    bob, sig = receive_update(bob, p.state, p.prev, p.signature, BOB.key)
    alice, _ = receive_ack(alice, p.state.version, sig)
    rec = replace(alice if proposed else bob, stage=stage, deadline=1000, registered_version=0)  # Δ = 600
    assert duties(rec, now) == ((Duty.COOPERATIVE_CLOSE,) if due else ())


def test_a_restored_record_signs_none_of_the_versions_it_reserved():
    from perun.core.machine import restored
    rec = new_record(PARAMS, DOMAIN, Role.ALICE, Stage.OPEN)
    for signed, reserved in ((0, 0), (5, 5), (7, 3), (2, 9)):
        before = replace(rec, signed=signed, reserved=reserved)
        after = restored(before)
        assert after.signed == max(signed, reserved)
        assert after == replace(before, signed=max(signed, reserved))
