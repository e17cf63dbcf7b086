"""perun.core.multistate: the channel-state and nanocontract rules, and the payout formula."""

from __future__ import annotations

import pytest

from perun import errors
from perun.core.apps import AppState
from perun.core.channel import Params
from perun.core.eip712 import Domain
from perun.core.multistate import (
    MAX_NANOCONTRACTS,
    ChannelState,
    FinalChannelState,
    Funding,
    NanocontractState,
    check_channel_state,
    check_final_state,
    check_successor,
    digest,
    ms_domain,
    nanocontract_id,
    payouts,
)

ALICE, BOB = "0x" + "aa" * 20, "0x" + "bb" * 20
APP = "0x" + "cc" * 20
PARAMS = Params(ALICE, BOB, 60, 40, 100, 1)
CID = b"\x07" * 32
C0 = ChannelState.initial(PARAMS, CID)


def nanocontract(nid_version: int, alice: int, bob: int) -> NanocontractState:
    return NanocontractState.create(CID, nanocontract_id(CID, nid_version), APP, AppState(alice, bob, 0, 0, b"g"))


def test_fund_moves_cash_into_a_sorted_funding_list() -> None:
    a, b = nanocontract(1, 10, 5), nanocontract(2, 1, 1)
    c2 = C0.fund(a).fund(b)
    assert (c2.version, c2.cash_alice, c2.cash_bob) == (2, 49, 34)
    assert [f.nid for f in c2.nanocontracts] == sorted([a.nid, b.nid])
    check_channel_state(PARAMS, c2, CID)


def test_fund_refuses_more_than_the_cash_a_duplicate_and_the_seventeenth() -> None:
    with pytest.raises(errors.AmountOutOfRange):
        C0.fund(nanocontract(1, 61, 0))
    a = nanocontract(1, 1, 1)
    with pytest.raises(errors.InvalidNanocontract):
        C0.fund(a).fund(a)
    state = C0
    for i in range(MAX_NANOCONTRACTS):
        state = state.fund(nanocontract(100 + i, 1, 1))
    with pytest.raises(errors.TooManyNanocontracts):
        state.fund(nanocontract(1, 1, 1))
    with pytest.raises(errors.InvalidNanocontract):
        C0.fund(nanocontract(1, 1, 1).successor(AppState(1, 1, 0, 0, b"")))  # not version 0


def test_absorb_returns_what_a_terminated_nanocontract_released() -> None:
    nc = nanocontract(1, 10, 10)
    c1 = C0.fund(nc)
    with pytest.raises(errors.InvalidNanocontract):
        c1.absorb(nc)  # still blocks
    done = nc.successor(AppState(0, 0, 0, 20, b"won"))
    c2 = c1.absorb(done)
    assert (c2.version, c2.cash_alice, c2.cash_bob, c2.nanocontracts) == (2, 50, 50, ())
    with pytest.raises(errors.UnknownNanocontract):
        c2.absorb(done)


def test_check_channel_state_rejects_broken_sums_order_and_channel() -> None:
    f1, f2 = Funding(b"\x01" * 32, 1, 0), Funding(b"\x02" * 32, 0, 1)
    with pytest.raises(errors.BalancesNotConserved):
        check_channel_state(PARAMS, ChannelState(CID, 1, 60, 40, (f1,)), CID)
    with pytest.raises(errors.InvalidNanocontract):
        check_channel_state(PARAMS, ChannelState(CID, 1, 59, 39, (f2, f1)), CID)
    with pytest.raises(errors.WrongChannel):
        check_channel_state(PARAMS, C0, b"\x08" * 32)


def test_check_successor_is_the_seeds_update_rule() -> None:
    nc = nanocontract(1, 10, 10)
    check_successor(nc, nc.successor(AppState(5, 10, 5, 0, b"")))
    bad = {
        errors.StaleVersion: nc,
        errors.InvalidNanocontract: nc.successor(AppState(11, 10, 0, 0, b"")),  # blocks more
        errors.BalancesNotConserved: nc.successor(AppState(5, 10, 0, 0, b"")),  # funds vanish
    }
    for error, new in bad.items():
        with pytest.raises(error):
            check_successor(nc, new)
    released = nc.successor(AppState(0, 10, 10, 0, b""))
    with pytest.raises(errors.InvalidNanocontract):
        check_successor(released, released.successor(AppState(10, 10, 0, 0, b"")))  # takes back


def test_payouts_use_registered_states_that_match_their_funding_else_the_funding() -> None:
    a, b, c = nanocontract(1, 10, 10), nanocontract(2, 5, 0), nanocontract(3, 0, 5)
    state = C0.fund(a).fund(b).fund(c)
    won = a.successor(AppState(0, 0, 20, 0, b""))
    forged = b.successor(AppState(0, 0, 0, 50, b""))  # total 50 != funding 5: ignored
    alice, bob = payouts(PARAMS, state, {a.nid: won, b.nid: forged})
    assert (alice, bob) == (45 + 20 + 5, 25 + 0 + 5)
    assert alice + bob == PARAMS.total


def test_nids_are_unique_per_channel_version() -> None:
    assert nanocontract_id(CID, 1) != nanocontract_id(CID, 2) != nanocontract_id(b"\x08" * 32, 1)


def test_a_final_state_is_the_cash_at_the_next_version_once_no_nanocontract_is_live() -> None:
    nc = nanocontract(1, 10, 0)
    c1 = C0.fund(nc)
    with pytest.raises(errors.InvalidNanocontract):
        c1.final()
    c2 = c1.absorb(nc.successor(AppState(0, 0, 0, 10, b"")))
    assert c2.final() == FinalChannelState(CID, 3, 50, 50)
    check_final_state(PARAMS, c2.final(), CID)


def test_check_final_state_rejects_another_channel_and_broken_sums() -> None:
    with pytest.raises(errors.WrongChannel):
        check_final_state(PARAMS, FinalChannelState(b"\x08" * 32, 1, 60, 40), CID)
    for cash in ((60, 39), (61, 40), (0, 0), (100, 1)):
        with pytest.raises(errors.BalancesNotConserved):
            check_final_state(PARAMS, FinalChannelState(CID, 1, *cash), CID)


def test_a_final_state_holds_amounts_in_range() -> None:
    for fields in ((b"\x07" * 31, 1, 0, 0), (CID, 2**64, 0, 0), (CID, 1, -1, 0), (CID, 1, 0, 2**128)):
        with pytest.raises((errors.AmountOutOfRange, errors.WrongChannel)):
            FinalChannelState(*fields)


def test_a_final_state_signs_to_another_digest_than_a_channel_state_of_the_same_values() -> None:
    domain: Domain = ms_domain(1, "0x" + "dd" * 20)
    final = FinalChannelState(CID, 1, 60, 40)
    assert digest(domain, final) != digest(domain, ChannelState(CID, 1, 60, 40))
