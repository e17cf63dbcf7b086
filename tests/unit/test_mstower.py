"""A watchtower's rules for multistate channels (perun.core.mstower): which channel states,
nanocontract states and calls it takes, MSContract events, and its duties."""

from dataclasses import replace

import pytest
from eth_account import Account

from perun import errors
from perun.core import mstower
from perun.core.apps import virtualchannel as vc
from perun.core.channel import Params
from perun.core.eip712 import sign
from perun.core.monitoring import Execution, Monitoring, sign_authorisation
from perun.core.mstower import ChainNano, Due
from perun.core.multistate import ChannelState, Funding, NanocontractState, digest, ms_domain, nanocontract_id

ALICE = Account.from_key(b"\x01" * 32)  # γ's end Alice, and Alice of the ledger channel
INGRID = Account.from_key(b"\x02" * 32)  # Bob of the ledger channel
GAMMA_BOB = Account.from_key(b"\x03" * 32)
TOWER = Account.from_key(b"\x04" * 32).address
APP = "0x" + "cd" * 20  # the VirtualChannel app
HTL = "0x" + "ef" * 20
DOMAIN = ms_domain(1337, "0x" + "ab" * 20)
PARAMS = Params(ALICE.address, INGRID.address, 100, 50, 600, 7)
CID = PARAMS.channel_id(DOMAIN.chain_id, DOMAIN.verifying_contract)
NID = nanocontract_id(CID, 1)
VALIDITY, WINDOW = 10_000, 1_000
HALF = vc.initial(ALICE.address, INGRID.address, GAMMA_BOB.address, CID, b"\x09" * 32, 30, 10, VALIDITY, WINDOW, 1,
                  vc.SIDE_A, vc.ALICE)
VDOMAIN = vc.virtual_domain(DOMAIN.chain_id, APP)


def channel(version=2, cash=(70, 40), fundings=((NID, 30, 10),), reward=5, client=ALICE, signer=INGRID):
    state = ChannelState(CID, version, *cash, tuple(Funding(*f) for f in fundings))
    signature = sign(digest(DOMAIN, state), signer.key)
    authorisation = sign_authorisation(DOMAIN, Monitoring.of(DOMAIN, state, TOWER, reward), client.key)
    return dict(params=PARAMS, state=state, signature=signature, reward=reward, authorisation=authorisation)


def nano(version=0, app=APP, data=HALF.data, blocked=(30, 10), released=(0, 0), reward=3, client=ALICE,
         signer=INGRID, nid=NID):
    state = NanocontractState(CID, nid, app, version, *blocked, *released, data)
    signature = sign(digest(DOMAIN, state), signer.key)
    authorisation = sign_authorisation(DOMAIN, Monitoring.of(DOMAIN, state, TOWER, reward), client.key)
    return dict(state=state, signature=signature, reward=reward, authorisation=authorisation)


def settle_z(version, alice, bob, signers=(ALICE, GAMMA_BOB)):
    data = vc.decode(HALF.data)
    state = vc.VirtualState(data.id, version, alice, bob)
    return vc.settle_arg(state, *(vc.sign_virtual(VDOMAIN, state, s.key) for s in signers))


def call(z, reward=2, client=ALICE, fun=vc.SETTLE, nid=NID):
    authorisation = sign_authorisation(DOMAIN, Execution.of(CID, nid, fun, z, TOWER, reward), client.key)
    return dict(channel_id=CID, nid=nid, fun=fun, z=z, reward=reward, authorisation=authorisation)


def held(with_call=True):
    rec = mstower.accept_channel(None, DOMAIN, TOWER, **channel())
    rec = mstower.accept_nano(rec, DOMAIN, TOWER, **nano())
    if with_call:
        rec = mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(4, 25, 15)))
    return rec


def test_a_channel_its_nanocontract_and_a_settle_are_taken_and_newer_ones_replace_them():
    rec = held()
    assert (rec.client, rec.version, rec.reward, [n.state.version for n in rec.nanos]) == (ALICE.address, 2, 5, [0])
    assert [(c.nid, c.version, c.reward) for c in rec.calls] == [(NID, 4, 2)]
    rec = mstower.accept_nano(rec, DOMAIN, TOWER, **nano(version=1))
    rec = mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(6, 20, 20)))
    assert ([n.state.version for n in rec.nanos], [c.version for c in rec.calls]) == ([1], [6])
    # A channel state that no longer lists the nanocontract drops what the tower held of it: O(1).
    later = mstower.accept_channel(rec, DOMAIN, TOWER, **channel(version=4, cash=(95, 55), fundings=()))
    assert (later.nanos, later.calls) == ((), ())


@pytest.mark.parametrize("make, error", [
    (lambda rec: mstower.accept_channel(rec, DOMAIN, TOWER, **channel()), errors.StaleVersion),
    (lambda rec: mstower.accept_channel(rec, DOMAIN, TOWER, **channel(version=3, cash=(71, 40))),
     errors.BalancesNotConserved),
    (lambda rec: mstower.accept_channel(rec, DOMAIN, TOWER, **channel(version=3, signer=ALICE)),
     errors.InvalidSignature),
    (lambda rec: mstower.accept_channel(rec, DOMAIN, TOWER, **channel(version=3, reward=71)), errors.AmountOutOfRange),
    (lambda rec: mstower.accept_channel(rec, DOMAIN, TOWER, **channel(version=3, client=INGRID, signer=ALICE)),
     errors.WrongChannel),
    (lambda rec: mstower.accept_nano(rec, DOMAIN, TOWER, **nano()), errors.StaleVersion),
    (lambda rec: mstower.accept_nano(rec, DOMAIN, TOWER, **nano(nid=b"\x05" * 32)), errors.UnknownNanocontract),
    (lambda rec: mstower.accept_nano(rec, DOMAIN, TOWER, **nano(version=1, blocked=(30, 11))),
     errors.BalancesNotConserved),
    (lambda rec: mstower.accept_nano(rec, DOMAIN, TOWER, **nano(version=1, signer=ALICE)), errors.InvalidSignature),
    (lambda rec: mstower.accept_nano(rec, DOMAIN, TOWER, **nano(version=1, client=INGRID, signer=ALICE)),
     errors.InvalidSignature),
    (lambda rec: mstower.accept_nano(rec, DOMAIN, TOWER, **nano(version=1, reward=31)), errors.AmountOutOfRange),
    (lambda rec: mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(4, 25, 15))), errors.StaleVersion),
    (lambda rec: mstower.accept_call(rec, DOMAIN, TOWER, HTL, **call(settle_z(5, 25, 15))),
     errors.InvalidNanocontract),
    (lambda rec: mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(5, 25, 15), fun=vc.FINALIZE)),
     errors.InvalidNanocontract),
    (lambda rec: mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(5, 25, 16))),
     errors.BalancesNotConserved),
    (lambda rec: mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(5, 25, 15, (ALICE, ALICE)))),
     errors.InvalidSignature),
    (lambda rec: mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(5, 25, 15), client=INGRID)),
     errors.InvalidSignature),
    (lambda rec: mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(b"\x00" * 7)), errors.VirtualChannelMalformed),
    (lambda rec: mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(5, 25, 15), reward=31)),
     errors.AmountOutOfRange),
    (lambda rec: mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(5, 25, 15), nid=b"\x05" * 32)),
     errors.UnknownNanocontract),
])
def test_what_the_tower_refuses_changes_nothing(make, error):
    rec = held()
    with pytest.raises(error):
        make(rec)


def test_nothing_of_a_channel_not_held_or_closed_is_taken():
    with pytest.raises(errors.UnknownChannel):
        mstower.accept_nano(None, DOMAIN, TOWER, **nano())
    closed = replace(held(), closed=True)
    with pytest.raises(errors.WrongStage):
        mstower.accept_nano(closed, DOMAIN, TOWER, **nano(version=1))
    with pytest.raises(errors.WrongStage):
        mstower.accept_channel(closed, DOMAIN, TOWER, **channel(version=3))


def test_an_app_that_is_not_a_virtual_half_takes_no_call_but_its_state_is_kept():
    rec = mstower.accept_channel(None, DOMAIN, TOWER, **channel())
    rec = mstower.accept_nano(rec, DOMAIN, TOWER, **nano(app=HTL, data=b"lock"))
    assert rec.nano(NID).state.app.lower() == HTL
    with pytest.raises(errors.InvalidNanocontract):
        mstower.accept_call(rec, DOMAIN, TOWER, APP, **call(settle_z(1, 30, 10)))


def close(rec, version, by, deadline=1000, fundings=((NID, 30, 10),)):
    return mstower.apply_event(rec, TOWER, "CloseRegistered", {"version": version, "by": by, "deadline": deadline,
                                                                 "nanocontracts": list(fundings)})


def registered(rec, version, by, window_end, data=None, settle_by=VALIDITY + 3 * WINDOW):
    args = {"nid": NID, "version": version, "by": by, "windowEnd": window_end, "settleBy": settle_by}
    if data is not None:
        args["data"] = data
    return mstower.apply_event(rec, TOWER, "NanocontractRegistered", args)


def test_a_stale_close_is_refuted_and_a_stale_nanocontract_replaced_then_finalized():
    rec = mstower.accept_nano(held(with_call=False), DOMAIN, TOWER, **nano(version=3, app=HTL, data=b"x"))
    assert mstower.duties(rec, 0) == () and mstower.next_due(rec, 0) is None  # at rest
    rec = close(rec, 1, INGRID.address, fundings=((NID, 30, 10),))
    # The nanocontract is listed and unregistered: registerFor it, and refute the channel, before D.
    assert mstower.duties(rec, 999) == ((Due.REFUTE, b""), (Due.REGISTER, NID))
    assert mstower.duties(rec, 1000) == ()
    rec = close(rec, 2, TOWER, deadline=1000)
    assert rec.standing and mstower.duties(rec, 10) == ((Due.REGISTER, NID),)
    rec = registered(rec, 2, INGRID.address, window_end=800, settle_by=0)
    assert mstower.duties(rec, 799) == ((Due.REGISTER, NID),)  # a lower version, within its window
    rec = registered(rec, 3, TOWER, window_end=800, settle_by=0)
    assert rec.chain(NID).ours and mstower.duties(rec, 799) == ()
    assert registered(rec, 3, TOWER, window_end=800, settle_by=0) == rec  # applied twice: the same
    # Finalize after D once the nanocontract is settled: here at D + Δ (it still blocks funds).
    assert mstower.duties(rec, 1000) == ()
    assert mstower.next_due(rec, 1000) == 1600
    assert mstower.duties(rec, 1600) == ((Due.FINALIZE, b""),)
    rec = mstower.apply_event(rec, TOWER, "RewardPaid", {"nid": NID, "tower": TOWER, "amount": 3})
    rec = mstower.apply_event(rec, TOWER, "RewardPaid", {"nid": bytes(32), "tower": TOWER, "amount": 5})
    assert rec.reward_paid == 8
    rec = mstower.apply_event(rec, TOWER, "Finalized", {})
    assert rec.closed and mstower.duties(rec, 2000) == ()


def test_a_registration_by_another_forgets_the_towers_claim_and_finalize_needs_one():
    rec = close(held(with_call=False), 2, INGRID.address)  # the latest: nothing to refute
    rec = registered(rec, 0, TOWER, window_end=700)
    assert rec.chain(NID).ours
    rec = registered(rec, 1, INGRID.address, window_end=700)  # a later version, not ours
    assert not rec.chain(NID).ours
    assert mstower.duties(rec, 5000) == ()  # no submission of this tower counts: nothing to collect


def test_the_settle_is_made_once_the_half_is_registered_in_its_window_and_above_the_stored_version():
    rec = held()
    rec = registered(rec, 0, INGRID.address, window_end=VALIDITY - 100)
    assert rec.chain(NID).gamma == 0  # the tower holds that version: its storage says γ's version 0
    assert mstower.duties(rec, VALIDITY - 1) == ()  # SETTLE opens after validity
    assert mstower.next_due(rec, 0) == VALIDITY
    assert mstower.duties(rec, VALIDITY) == ((Due.EXECUTE, NID),)
    assert mstower.duties(rec, VALIDITY + WINDOW) == ()  # the end's time is over
    executed = {"nid": NID, "by": TOWER, "fun": vc.SETTLE, "version": 1, "blockedAlice": 30, "blockedBob": 10,
                "data": vc.decode(HALF.data).storage[:vc.FIXED_LENGTH] + (4).to_bytes(32, "big")
                + (25).to_bytes(32, "big") + (15).to_bytes(32, "big")}
    rec = mstower.apply_event(rec, TOWER, "NanocontractExecuted", executed)
    assert rec.chain(NID) == ChainNano(NID, 1, VALIDITY - 100, VALIDITY + 3 * WINDOW, False, 4, True)
    assert mstower.duties(rec, VALIDITY + 1) == ()  # it stores the tower's version now
    # Ingrid registered a half storing a higher γ version: the tower's is stale there.
    other = registered(held(), 0, INGRID.address, VALIDITY - 100,
                       data=vc.decode(HALF.data).storage[:vc.FIXED_LENGTH] + (9).to_bytes(32, "big")
                       + (20).to_bytes(32, "big") + (20).to_bytes(32, "big"))
    assert other.chain(NID).gamma == 9 and mstower.duties(other, VALIDITY) == ()


def test_a_closing_ledger_channel_stops_the_settle_at_its_settlement_end():
    rec = registered(close(held(), 2, INGRID.address, deadline=VALIDITY - 2000), 0, INGRID.address, VALIDITY - 100)
    end = max(rec.deadline + PARAMS.delta, rec.chain(NID).settle_by)
    assert end > VALIDITY and mstower.duties(rec, VALIDITY) == ((Due.EXECUTE, NID),)
    short = replace(rec, on_chain=(replace(rec.chain(NID), settle_by=0),))
    assert mstower.duties(short, VALIDITY) == ()  # D + Δ already passed
