"""perun.core.virtual: the checks on a proposed half of γ, and what each party submits on chain."""

from __future__ import annotations

from dataclasses import replace

import pytest

from perun import errors
from perun.core import virtual as vr
from perun.core.apps import AppState, Context
from perun.core.apps import virtualchannel as vc
from perun.core.apps.virtualchannel import SIDE_A, SIDE_B
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import Domain, address_of
from perun.core.machine import Role, Stage, propose, receive_update
from perun.core.msmachine import new_record
from perun.core.virtual import Half, Position, Seen

KEYS = {name: bytes([i + 1]) * 32 for i, name in enumerate(("alice", "ingrid", "bob", "mallory"))}
ADDR = {name: address_of(key) for name, key in KEYS.items()}
MS = Domain(1, "0x" + "33" * 20, "Perun MSContract")
DOMAIN = vc.virtual_domain(1, "0x" + "44" * 20)
DELTA, WINDOW, NOW = 600, 2400, 1_000_000
VALIDITY = NOW + 10 * DELTA


def ledger_params(end: str, end_is_alice: bool = True) -> Params:
    """The ledger channel between `end` and Ingrid, `end` as its Alice or its Bob."""
    a, b = (ADDR[end], ADDR["ingrid"]) if end_is_alice else (ADDR["ingrid"], ADDR[end])
    return Params(a, b, 10, 10, DELTA, 1)


A_PARAMS, B_PARAMS = ledger_params("alice"), ledger_params("bob", end_is_alice=False)
A_ID, B_ID = b"\xaa" * 32, b"\xbb" * 32


def rec_of(params: Params, me: str):
    """`me`'s record of that ledger channel."""
    role = Role.ALICE if params.alice == ADDR[me] else Role.BOB
    return new_record(params, MS, role, Stage.OPEN)


def half_a(**changes) -> vc.VirtualChannelData:
    v = vc.decode(vc.initial(ADDR["alice"], ADDR["ingrid"], ADDR["bob"], A_ID, B_ID, 3, 1, VALIDITY, WINDOW, 9,
                             SIDE_A, 0).data)
    return replace(v, **changes)


def test_a_well_formed_half_gives_each_party_its_position() -> None:
    v = half_a()
    assert vr.check_half(v, rec_of(A_PARAMS, "ingrid"), A_ID, ADDR["alice"], NOW) is Position.INGRID
    assert vr.check_half(v, rec_of(A_PARAMS, "alice"), A_ID, ADDR["alice"], NOW) is Position.ALICE
    v_b = vr.hub_half(v, rec_of(B_PARAMS, "ingrid"))
    assert (v_b.side, v_b.end_role, v_b.id) == (SIDE_B, int(Role.BOB), v.id)
    assert vr.check_half(v_b, rec_of(B_PARAMS, "bob"), B_ID, ADDR["ingrid"], NOW) is Position.BOB


@pytest.mark.parametrize("changes, proposer, reason", [
    (dict(channel_a=B_ID), "alice", "belongs to ledger channel"),
    (dict(end_role=1), "alice", "wrong role"),
    (dict(bob=ADDR["alice"]), "alice", "three distinct"),
    (dict(alice=ADDR["mallory"]), "mallory", "not this ledger channel's parties"),
    ({}, "ingrid", "Alice proposes ν_a"),
    (dict(window=DELTA), "alice", "must exceed"),
    (dict(window=10 * 365 * 24 * 3600 + 1), "alice", "must exceed"),
    (dict(validity=NOW + DELTA + 1), "alice", "validity must leave"),
    (dict(validity=NOW + 365 * 24 * 3600 - 3 * WINDOW + 1), "alice", "horizon"),
])
def test_every_rule_of_a_half_is_checked(changes, proposer, reason) -> None:
    with pytest.raises(errors.InvalidNanocontract, match=reason):
        vr.check_half(half_a(**changes), rec_of(A_PARAMS, "ingrid"), A_ID, ADDR[proposer], NOW)


def test_the_boundaries_of_validity_and_the_horizon_pass() -> None:
    rec = rec_of(A_PARAMS, "ingrid")
    vr.check_half(half_a(validity=NOW + DELTA + 2), rec, A_ID, ADDR["alice"], NOW)
    vr.check_half(half_a(validity=NOW + 365 * 24 * 3600 - 3 * WINDOW), rec, A_ID, ADDR["alice"], NOW)


def signed(v: vc.VirtualChannelData, version: int, alice: int, final: bool = False) -> Seen:
    state = PaymentState(v.id, version, alice, v.cash_alice + v.cash_bob - alice, final)
    return Seen(state, *(vc.sign_virtual(DOMAIN, vc.as_virtual(state), KEYS[n]) for n in ("alice", "bob")))


def stored(v: vc.VirtualChannelData, seen: Seen | None = None, side: int = SIDE_A) -> vc.VirtualChannelData:
    s = seen.state if seen else PaymentState(v.id, 0, v.cash_alice, v.cash_bob)
    return replace(v, side=side, version=s.version, balance_alice=s.balance_alice, balance_bob=s.balance_bob)


def test_gamma_updates_are_payment_channel_updates_signed_as_virtual_states() -> None:
    v = half_a()
    alice = vr.new_record(v, Position.ALICE, Half(SIDE_A, A_ID, b"\x01" * 32), DOMAIN).channel
    bob = vr.new_record(v, Position.BOB, Half(SIDE_B, B_ID, b"\x02" * 32), DOMAIN).channel
    state = PaymentState(v.id, 1, 2, 2)
    _, proposal = propose(alice, state, KEYS["alice"])
    _, countersigned = receive_update(bob, state, 0, proposal.signature, KEYS["bob"])
    # Exactly what the contract's SETTLE checks: a VirtualState in the app's domain.
    z = vc.settle_arg(vc.as_virtual(state), proposal.signature, countersigned)
    app = vc.VirtualChannel(DOMAIN)
    nu = vc.initial_of(v)
    after = app.transition(Context(0, VALIDITY + 1), vc.SETTLE, z, AppState(*nu.as_abi()))
    assert vc.decode(after.data).version == 1
    vr.check_seen(vr.new_record(v, Position.INGRID, Half(SIDE_A, A_ID, b"\x01" * 32), DOMAIN),
                  Seen(state, proposal.signature, countersigned), DOMAIN)


def test_an_end_submits_its_latest_state_only_above_the_stored_version() -> None:
    v = half_a()
    rec = vr.new_record(v, Position.ALICE, Half(SIDE_A, A_ID, b"\x01" * 32), DOMAIN)
    assert vr.submission(rec, SIDE_A, stored(v), None, VALIDITY + 1) is None  # version 0: nothing to say
    two = signed(v, 2, 1)
    rec = replace(rec, channel=replace(rec.channel, current=two.state, sig_alice=two.sig_alice, sig_bob=two.sig_bob))
    assert vr.submission(rec, SIDE_A, stored(v), None, VALIDITY + 1) == two
    assert vr.submission(rec, SIDE_A, stored(v, two), None, VALIDITY + 1) is None
    assert vr.submission(rec, SIDE_A, stored(v, signed(v, 3, 0)), None, VALIDITY + 1) is None


def test_ingrid_copies_the_higher_state_after_the_ends_window_and_on_a_tie_nu_a_s() -> None:
    v = half_a()
    rec = vr.new_record(v, Position.INGRID, Half(SIDE_B, B_ID, b"\x02" * 32), DOMAIN)
    two, three, three_b = signed(v, 2, 1), signed(v, 3, 0), signed(v, 3, 4)
    rec = replace(rec, seen=(two, three, three_b))
    a, b = stored(v, three), stored(v, two, SIDE_B)
    end_of_ends = VALIDITY + WINDOW
    assert vr.submission(rec, SIDE_B, b, a, end_of_ends) is None  # the ends' window is theirs
    assert vr.submission(rec, SIDE_B, b, a, end_of_ends + 1) == three
    assert vr.submission(rec, SIDE_A, a, b, end_of_ends + 1) is None  # ν_a holds the higher one already
    # Alice and Bob signed two states with version 3: ν_a's wins, on both halves.
    b = stored(v, three_b, SIDE_B)
    assert vr.submission(rec, SIDE_B, b, a, end_of_ends + 1) == three
    assert vr.submission(rec, SIDE_A, a, b, end_of_ends + 1) is None
    # A state she has not seen signed cannot be copied.
    assert vr.submission(replace(rec, seen=(two,)), SIDE_B, stored(v, two, SIDE_B), a, end_of_ends + 1) is None


def test_ingrid_settles_with_a_final_state_at_once_even_where_an_end_stored_it() -> None:
    v = half_a()
    final = signed(v, 4, 2, final=True)
    rec = replace(vr.new_record(v, Position.INGRID, Half(SIDE_A, A_ID, b"\x01" * 32), DOMAIN), seen=(final,))
    assert rec.final == final
    assert vr.submission(rec, SIDE_A, stored(v), None, NOW) == final
    # An end's submission of it only stored it; hers releases the half (which then asks no more).
    nu = vc.initial_of(v)
    state = AppState(nu.blocked_alice, nu.blocked_bob, 0, 0, stored(v, final).storage)
    again = vr.submission(rec, SIDE_A, stored(v, final), None, NOW)
    assert again == final
    assert vc.VirtualChannel(DOMAIN).transition(Context(1, NOW), vc.SETTLE, again.settle_arg(), state).terminated


def test_a_half_is_registered_from_validity_minus_delta_minus_one() -> None:
    rec = vr.new_record(half_a(), Position.BOB, Half(SIDE_B, B_ID, b"\x02" * 32), DOMAIN)
    assert not vr.register_due(rec, DELTA, VALIDITY - DELTA - 2)
    assert vr.register_due(rec, DELTA, VALIDITY - DELTA - 1)
    with pytest.raises(errors.WrongStage):
        vr.live_for_updates(rec, VALIDITY)
    vr.live_for_updates(rec, VALIDITY - 1)


def test_a_state_of_one_virtual_channel_is_worthless_in_another() -> None:
    one, other = half_a(), half_a(nonce=10)  # the same parties, channels and cash
    state = signed(one, 1, 2)
    ingrid = vr.new_record(other, Position.INGRID, Half(SIDE_A, A_ID, b"\x01" * 32), DOMAIN)
    with pytest.raises(errors.WrongChannel):
        vr.check_seen(ingrid, state, DOMAIN)
    moved = replace(state, state=replace(state.state, channel_id=other.id))
    with pytest.raises(errors.InvalidSignature):
        vr.check_seen(ingrid, moved, DOMAIN)
