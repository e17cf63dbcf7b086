"""Channel parameters and states: validation before anything reaches a chain."""

from __future__ import annotations

import pytest

from perun import errors
from perun.core.channel import ETH, MAX_AMOUNT, MAX_DELTA, Params, PaymentState, check_state

ALICE = "0x" + "aa" * 20
BOB = "0x" + "bb" * 20
CONTRACT = "0x" + "cc" * 20


def params(**overrides) -> Params:
    fields = dict(alice=ALICE, bob=BOB, deposit_alice=60, deposit_bob=40, delta=100, nonce=1)
    fields.update(overrides)
    return Params(**fields)


def test_params_normalise_addresses_to_checksum() -> None:
    p = params()
    assert p.alice == "0xaAaAaAaaAaAaAaaAaAAAAAAAAaaaAaAaAaaAaaAa"
    assert p.token == ETH
    assert p.total == 100


@pytest.mark.parametrize(
    "overrides, error",
    [
        (dict(bob=ALICE), errors.InvalidParams),
        (dict(alice=ETH), errors.InvalidParams),
        (dict(alice="0x1234"), errors.InvalidParams),
        (dict(delta=0), errors.InvalidParams),
        (dict(delta=MAX_DELTA + 1), errors.InvalidParams),
        (dict(delta=1.5), errors.InvalidParams),
        (dict(deposit_alice=-1), errors.AmountOutOfRange),
        (dict(deposit_alice=1.0), errors.AmountOutOfRange),
        (dict(deposit_alice=True), errors.AmountOutOfRange),
        (dict(deposit_alice=MAX_AMOUNT, deposit_bob=1), errors.AmountOutOfRange),
        (dict(nonce=-1), errors.AmountOutOfRange),
    ],
)
def test_invalid_params_are_rejected(overrides: dict, error: type) -> None:
    with pytest.raises(error):
        params(**overrides)


def test_channel_id_depends_on_chain_contract_and_every_parameter() -> None:
    p = params()
    ids = {
        p.channel_id(1, CONTRACT),
        p.channel_id(2, CONTRACT),
        p.channel_id(1, BOB),
        params(nonce=2).channel_id(1, CONTRACT),
        params(deposit_bob=41).channel_id(1, CONTRACT),
        params(delta=101).channel_id(1, CONTRACT),
    }
    assert len(ids) == 6


def test_pay_moves_funds_and_increments_the_version() -> None:
    s0 = params().initial_state(1, CONTRACT)
    s1 = s0.pay(10, from_alice=True)
    s2 = s1.pay(30, from_alice=False)
    assert (s1.version, s1.balance_alice, s1.balance_bob) == (1, 50, 50)
    assert (s2.version, s2.balance_alice, s2.balance_bob) == (2, 80, 20)
    with pytest.raises(errors.AmountOutOfRange):
        s2.pay(21, from_alice=False)
    with pytest.raises(errors.AmountOutOfRange):
        s2.pay(-1, from_alice=True)


def test_final_state_is_the_next_version() -> None:
    s0 = params().initial_state(1, CONTRACT)
    final = s0.final()
    assert final.is_final and final.version == 1 and final.balance_alice == 60


def test_state_fields_are_range_checked() -> None:
    with pytest.raises(errors.WrongChannel):
        PaymentState(b"\x00" * 31, 0, 0, 0)
    with pytest.raises(errors.AmountOutOfRange):
        PaymentState(b"\x00" * 32, 2**64, 0, 0)
    with pytest.raises(errors.AmountOutOfRange):
        PaymentState(b"\x00" * 32, 0, MAX_AMOUNT + 1, 0)


def test_check_state() -> None:
    p = params()
    s0 = p.initial_state(1, CONTRACT)
    check_state(p, s0.pay(1, from_alice=True), s0.channel_id)
    with pytest.raises(errors.BalancesNotConserved):
        check_state(p, PaymentState(s0.channel_id, 1, 60, 41), s0.channel_id)
    with pytest.raises(errors.WrongChannel):
        check_state(p, s0, p.channel_id(2, CONTRACT))
