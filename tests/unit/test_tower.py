"""A watchtower's rules (perun.core.tower): which Monitors it takes, events, and its duties."""

from dataclasses import replace

import pytest
from eth_account import Account

from perun import errors
from perun.core import tower
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import Domain, sign_state
from perun.core.monitoring import Monitoring, sign_authorisation
from perun.core.tower import Due

ALICE = Account.from_key(b"\x01" * 32)
BOB = Account.from_key(b"\x02" * 32)
MALLORY = Account.from_key(b"\x03" * 32)
TOWER = Account.from_key(b"\x04" * 32).address
OTHER_TOWER = Account.from_key(b"\x05" * 32).address
DOMAIN = Domain(1337, "0x" + "ab" * 20)
PARAMS = Params(ALICE.address, BOB.address, 100, 50, 600, 7)
CID = PARAMS.channel_id(DOMAIN.chain_id, DOMAIN.verifying_contract)


def monitor(version, alice, bob, reward=1, client=BOB, signer=ALICE, tower_address=TOWER, domain=DOMAIN):
    """The fields of a Monitor from `client` for the state (version, alice, bob) that `signer` signed."""
    state = PaymentState(CID, version, alice, bob)
    signature = sign_state(domain, state, signer.key)
    authorisation = sign_authorisation(domain, Monitoring.of(domain, state, tower_address, reward), client.key)
    return dict(params=PARAMS, version=version, balance_alice=alice, balance_bob=bob, signature=signature,
                reward=reward, authorisation=authorisation)


def accept(held, **fields):
    return tower.accept(held, DOMAIN, TOWER, **fields)


def test_a_first_state_is_taken_and_a_higher_one_replaces_it():
    rec = accept(None, **monitor(3, 90, 60, reward=2))
    assert (rec.channel_id, rec.client, rec.version, rec.reward) == (CID, BOB.address, 3, 2)
    assert rec.state == PaymentState(CID, 3, 90, 60)
    assert (rec.registered, rec.refuted, rec.closed, rec.reward_paid) == (None, None, False, None)
    chain = replace(rec, registered=1, deadline=500)
    newer = accept(chain, **monitor(5, 80, 70, reward=3))
    assert (newer.version, newer.reward, newer.registered, newer.deadline) == (5, 3, 1, 500)  # the chain's view stays


@pytest.mark.parametrize("version", [0, 3, 2])
def test_a_version_not_above_the_held_one_is_stale(version):
    held = accept(None, **monitor(3, 90, 60)) if version else None
    with pytest.raises(errors.StaleVersion):
        accept(held, **monitor(version, 90, 60))


def test_alice_may_be_the_client_too():
    rec = accept(None, **monitor(2, 90, 60, reward=90, client=ALICE, signer=BOB))
    assert rec.client == ALICE.address


@pytest.mark.parametrize("who", [
    dict(client=MALLORY),  # the authorisation by no party
    dict(signer=MALLORY),  # the state by no party
    dict(signer=BOB),  # the state by the client itself, not by the other party
    dict(tower_address=OTHER_TOWER),  # an authorisation for another tower
    dict(domain=Domain(1337, "0x" + "cd" * 20)),  # signed for another contract
])
def test_signatures_by_the_wrong_party_or_for_the_wrong_tower_are_refused(who):
    with pytest.raises(errors.InvalidSignature):
        accept(None, **monitor(2, 90, 60, **who))


def test_a_malformed_signature_is_refused():
    fields = monitor(2, 90, 60)
    with pytest.raises(errors.InvalidSignature):
        accept(None, **{**fields, "signature": b"\x00" * 65})


def test_balances_must_be_conserved():
    with pytest.raises(errors.BalancesNotConserved):
        accept(None, **monitor(2, 90, 61))


def test_the_reward_is_at_most_the_clients_balance():
    accept(None, **monitor(2, 90, 60, reward=60))
    with pytest.raises(errors.AmountOutOfRange):
        accept(None, **monitor(2, 90, 60, reward=61))


def test_a_closed_channel_and_the_other_partys_states_are_refused():
    held = accept(None, **monitor(2, 90, 60))
    with pytest.raises(errors.WrongStage):
        accept(replace(held, closed=True), **monitor(3, 80, 70))
    with pytest.raises(errors.WrongChannel):
        accept(held, **monitor(3, 80, 70, client=ALICE, signer=BOB))


def registered(version, by, deadline=1000):
    return {"channelId": CID, "by": by, "version": version, "balanceAlice": 0, "balanceBob": 0, "deadline": deadline}


def test_events_move_the_record_forward_only():
    rec = accept(None, **monitor(5, 80, 70))
    rec = tower.apply_event(rec, TOWER, "CloseRegistered", registered(2, ALICE.address))
    assert (rec.registered, rec.deadline, rec.refuted, rec.standing) == (2, 1000, None, False)
    assert tower.apply_event(rec, TOWER, "CloseRegistered", registered(2, ALICE.address)) == rec  # again: no change
    rec = tower.apply_event(rec, TOWER, "CloseRegistered", registered(5, TOWER))
    assert (rec.registered, rec.refuted, rec.standing) == (5, 5, True)
    assert tower.apply_event(rec, TOWER, "CloseRegistered", registered(2, ALICE.address)) == rec  # an old one again
    higher = tower.apply_event(rec, TOWER, "CloseRegistered", registered(6, ALICE.address))
    assert (higher.registered, higher.refuted, higher.standing) == (6, 5, False)  # a higher one forgets the reward
    paid = {"channelId": CID, "nid": bytes(32), "tower": TOWER, "payer": BOB.address, "amount": 1}
    rec = tower.apply_event(rec, TOWER, "RewardPaid", paid)
    assert rec.reward_paid == 1
    assert tower.apply_event(rec, TOWER, "RewardPaid", {**paid, "tower": OTHER_TOWER, "amount": 9}) == rec
    rec = tower.apply_event(rec, TOWER, "Finalized", {"channelId": CID, "version": 5, "balanceAlice": 80,
                                                      "balanceBob": 69})
    assert rec.closed
    assert tower.apply_event(rec, TOWER, "CloseRegistered", registered(9, ALICE.address)) == rec


def test_duties_refute_a_lower_version_before_the_deadline_then_finalize_after_it():
    rec = accept(None, **monitor(5, 80, 70))
    assert tower.duties(rec, 10) == () and tower.next_due(rec, 10) is None  # nothing registered
    stale = tower.apply_event(rec, TOWER, "CloseRegistered", registered(2, ALICE.address, deadline=1000))
    assert tower.duties(stale, 999) == (Due.REFUTE,)
    assert tower.next_due(stale, 10) == 10
    assert tower.duties(stale, 1000) == ()  # too late: the stale state stands, no reward to collect
    assert tower.next_due(stale, 1000) is None
    mine = tower.apply_event(stale, TOWER, "CloseRegistered", registered(5, TOWER, deadline=1000))
    assert tower.duties(mine, 999) == ()
    assert tower.next_due(mine, 10) == 1000
    assert tower.duties(mine, 1000) == (Due.FINALIZE,)
    assert tower.duties(replace(mine, closed=True), 1000) == ()


def test_a_higher_state_by_someone_else_needs_nothing():
    rec = accept(None, **monitor(5, 80, 70))
    rec = tower.apply_event(rec, TOWER, "CloseRegistered", registered(5, BOB.address))
    assert tower.duties(rec, 10) == tower.duties(rec, 2000) == ()  # the client closed itself; it finalizes
    higher = tower.apply_event(rec, TOWER, "CloseRegistered", registered(7, ALICE.address))
    assert tower.duties(higher, 10) == ()
    newer = accept(higher, **monitor(8, 70, 80))  # a newer state handed over in the dispute: refute with it
    assert tower.duties(newer, 10) == (Due.REFUTE,)


def test_the_monitoring_rebuilt_from_the_record_is_the_one_the_client_signed():
    fields = monitor(4, 85, 65, reward=5)
    rec = accept(None, **fields)
    m = rec.monitoring(DOMAIN, TOWER)
    assert (m.channel_id, m.version, m.tower, m.reward) == (CID, 4, TOWER, 5)
    assert sign_authorisation(DOMAIN, m, BOB.key) == fields["authorisation"]
