"""PaymentContract on a real EVM, on the embedded chain and on anvil: every function's happy path
and every rejection, with time moved to each deadline minus one, at it, and plus one."""

from __future__ import annotations

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.chain.channels import OnChainChannel
from perun.chain.payment import PaymentContract
from perun.core.channel import ETH, PaymentState, Phase
from perun.core.eip712 import Domain, sign, sign_state
from tests.conftest import DELTA, World

# What the contract stores once a channel is open, and once it is closed: nothing left over.
OPENED = OnChainChannel(Phase.OPEN, deadline=0, version=0, balance_alice=0)
CLOSED = OnChainChannel(Phase.CLOSED, deadline=0, version=0, balance_alice=0)

MAX_DELTA = 3650 * 24 * 3600


def raw_params(w: World, **overrides) -> tuple:
    """Params as a bare ABI tuple, to send what the Python Params class would refuse."""
    fields = dict(alice=w.alice.address, bob=w.bob.address, token=ETH, deposit_alice=ETHER,
                  deposit_bob=ETHER, delta=DELTA, nonce=987654321)
    fields.update(overrides)
    return tuple(fields.values())


def create_raw(w: World, params: tuple, value: int, sender=None):
    return w.chain.transact(sender or w.alice, w.contract.contract.functions.create(params), value)


def state_at(w: World, params, version: int, balance_alice: int) -> PaymentState:
    return PaymentState(w.contract.channel_id(params), version, balance_alice, params.total - balance_alice)


# ------------------------------------------------------------------------------ create


def test_create_locks_alices_deposit_and_starts_the_confirm_window(any_world: World) -> None:
    w = any_world
    params = w.params()
    before = w.chain.balance(w.contract.address)
    receipt = w.contract.create(w.alice, params)
    event = receipt.event("Initialising")
    channel_id = w.contract.channel_id(params)
    assert event.args["channelId"] == channel_id
    assert tuple(event.args["params"].values()) == params.as_abi()
    assert event.args["deadline"] == w.chain.timestamp() + DELTA
    assert w.chain.balance(w.contract.address) == before + params.deposit_alice
    assert w.contract.channel(channel_id) == OnChainChannel(Phase.INITIALISING, event.args["deadline"], 0, 0)


def test_channel_id_matches_the_contract(any_world: World) -> None:
    params = any_world.params()
    on_chain = any_world.contract.contract.functions.channelIdOf(params.as_abi()).call()
    assert bytes(on_chain) == any_world.contract.channel_id(params)


def test_create_by_anyone_but_alice_is_rejected(any_world: World) -> None:
    w = any_world
    with pytest.raises(errors.ChannelsCallerNotAlice) as exc:
        w.contract.create(w.bob, w.params())
    assert exc.value.fields == {"caller": w.bob.address}


@pytest.mark.parametrize("bob", ["alice", "zero"])
def test_create_with_invalid_parties_is_rejected(any_world: World, bob: str) -> None:
    w = any_world
    bob_address = w.alice.address if bob == "alice" else ETH
    with pytest.raises(errors.ChannelsInvalidParties) as exc:
        create_raw(w, raw_params(w, bob=bob_address), ETHER)
    assert exc.value.fields == {"alice": w.alice.address, "bob": bob_address}


@pytest.mark.parametrize("delta", [0, MAX_DELTA + 1])
def test_create_with_invalid_delta_is_rejected(any_world: World, delta: int) -> None:
    with pytest.raises(errors.ChannelsInvalidDelta):
        create_raw(any_world, raw_params(any_world, delta=delta), ETHER)


def test_create_with_the_longest_delta_is_accepted(any_world: World) -> None:
    create_raw(any_world, raw_params(any_world, delta=MAX_DELTA), ETHER)


def test_create_with_deposits_beyond_128_bits_is_rejected(any_world: World) -> None:
    w = any_world
    with pytest.raises(errors.ChannelsDepositsTooLarge):
        create_raw(w, raw_params(w, deposit_alice=1, deposit_bob=2**128 - 1), 1)
    with pytest.raises(errors.AmountOutOfRange):  # the same rule, off chain
        w.params(1, 2**128 - 1)


@pytest.mark.parametrize("value", [ETHER - 1, ETHER + 1, 0])
def test_create_with_the_wrong_deposit_is_rejected(any_world: World, value: int) -> None:
    with pytest.raises(errors.ChannelsWrongDeposit) as exc:
        create_raw(any_world, raw_params(any_world), value)
    assert exc.value.fields == {"expected": ETHER, "received": value}


def test_create_twice_is_rejected(any_world: World) -> None:
    w = any_world
    params = w.params()
    w.contract.create(w.alice, params)
    with pytest.raises(errors.ChannelsChannelExists):
        w.contract.create(w.alice, params)


def test_a_closed_channel_cannot_be_created_again(any_world: World) -> None:
    """Else the states signed for the old channel would be valid for the new one."""
    w = any_world
    params, s0 = w.open()
    final = s0.final()
    w.contract.cooperative_close(w.alice, params, final, w.sign(final, w.alice), w.sign(final, w.bob))
    with pytest.raises(errors.ChannelsChannelExists):
        w.contract.create(w.alice, params)


# ------------------------------------------------------------------------------ confirm


def test_confirm_opens_the_channel(any_world: World) -> None:
    w = any_world
    params = w.params()
    w.contract.create(w.alice, params)
    receipt = w.contract.confirm(w.bob, params)
    assert receipt.event("Initialised").args == {"channelId": w.contract.channel_id(params)}
    assert w.contract.channel(w.contract.channel_id(params)) == OPENED
    assert w.chain.balance(w.contract.address) >= params.total


def test_confirm_by_anyone_but_bob_is_rejected(any_world: World) -> None:
    w = any_world
    params = w.params()
    w.contract.create(w.alice, params)
    for intruder in (w.alice, w.mallory):
        with pytest.raises(errors.ChannelsCallerNotBob):
            w.chain.transact(intruder, w.contract.contract.functions.confirm(params.as_abi()), params.deposit_bob)


@pytest.mark.parametrize("delta_value", [-1, 1])
def test_confirm_with_the_wrong_deposit_is_rejected(any_world: World, delta_value: int) -> None:
    w = any_world
    params = w.params()
    w.contract.create(w.alice, params)
    call = w.contract.contract.functions.confirm(params.as_abi())
    with pytest.raises(errors.ChannelsWrongDeposit):
        w.chain.transact(w.bob, call, params.deposit_bob + delta_value)


def test_confirm_twice_is_rejected(any_world: World) -> None:
    w = any_world
    params, _ = w.open()
    with pytest.raises(errors.ChannelsWrongPhase) as exc:
        w.contract.confirm(w.bob, params)
    assert exc.value.fields["phase"] == Phase.OPEN


def test_confirm_of_an_unknown_channel_is_rejected(any_world: World) -> None:
    w = any_world
    with pytest.raises(errors.ChannelsWrongPhase) as exc:
        w.contract.confirm(w.bob, w.params())
    assert exc.value.fields["phase"] == Phase.NONE


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_confirm_until_the_deadline_inclusive(any_world: World, offset: int) -> None:
    w = any_world
    params = w.params()
    deadline = w.contract.create(w.alice, params).event("Initialising").args["deadline"]
    w.chain.set_next_block_timestamp(deadline + offset)
    if offset <= 0:
        w.contract.confirm(w.bob, params)
        assert w.contract.channel(w.contract.channel_id(params)) == OPENED
    else:
        with pytest.raises(errors.ChannelsConfirmTooLate) as exc:
            w.contract.confirm(w.bob, params)
        assert exc.value.fields == {"deadline": deadline}


# ------------------------------------------------------------------------------ refund


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_refund_only_after_the_deadline(any_world: World, offset: int) -> None:
    w = any_world
    params = w.params()
    deadline = w.contract.create(w.alice, params).event("Initialising").args["deadline"]
    w.chain.set_next_block_timestamp(deadline + offset)
    if offset <= 0:
        with pytest.raises(errors.ChannelsRefundTooEarly):
            w.contract.refund(w.mallory, params)
        return
    alice_before = w.chain.balance(w.alice.address)
    receipt = w.contract.refund(w.mallory, params)  # anyone may trigger it; Alice gets paid
    assert receipt.event("Refunded").args["amount"] == params.deposit_alice
    assert w.chain.balance(w.alice.address) == alice_before + params.deposit_alice
    assert w.contract.channel(w.contract.channel_id(params)) == CLOSED


def test_refund_after_confirm_is_rejected(any_world: World) -> None:
    w = any_world
    params, _ = w.open()
    w.chain.advance_time(DELTA + 1)
    with pytest.raises(errors.ChannelsWrongPhase):
        w.contract.refund(w.alice, params)


def test_refund_twice_and_confirm_after_refund_are_rejected(any_world: World) -> None:
    w = any_world
    params = w.params()
    w.contract.create(w.alice, params)
    w.chain.advance_time(DELTA + 1)
    w.contract.refund(w.alice, params)
    with pytest.raises(errors.ChannelsWrongPhase):
        w.contract.refund(w.alice, params)
    with pytest.raises(errors.ChannelsWrongPhase):
        w.contract.confirm(w.bob, params)


# ------------------------------------------------------------------------------ close


def test_close_registers_a_state_signed_by_the_other_party(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER // 2, from_alice=True)  # 5.5 / 4.5 ETH: the event cannot swap them unseen
    receipt = w.contract.close(w.bob, params, s1, w.sign(s1, w.alice))
    event = receipt.event("CloseRegistered")
    assert event.args == {
        "channelId": s1.channel_id, "by": w.bob.address, "version": 1,
        "balanceAlice": s1.balance_alice, "balanceBob": s1.balance_bob,
        "deadline": w.chain.timestamp() + DELTA,
    }
    assert w.contract.channel(s1.channel_id) == OnChainChannel(Phase.CLOSING, event.args["deadline"], 1,
                                                                s1.balance_alice)


def test_close_with_the_unsigned_initial_state(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    receipt = w.contract.close(w.alice, params, s0)
    assert receipt.event("CloseRegistered").args["version"] == 0


def test_close_with_other_balances_at_version_0_needs_a_signature(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    forged = PaymentState(s0.channel_id, 0, params.total, 0)
    with pytest.raises(errors.ChannelsInvalidSignature):
        w.contract.close(w.alice, params, forged)


def test_close_by_a_third_party_is_rejected(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(1, from_alice=True)
    with pytest.raises(errors.ChannelsCallerNotParticipant):
        w.contract.close(w.mallory, params, s1, w.sign(s1, w.alice))


def test_close_with_the_callers_own_signature_is_rejected(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=False)  # good for Alice: she must not sign it for herself
    with pytest.raises(errors.ChannelsInvalidSignature) as exc:
        w.contract.close(w.alice, params, s1, w.sign(s1, w.alice))
    assert exc.value.fields == {"expectedSigner": w.bob.address, "recovered": w.alice.address}


def test_close_before_confirm_is_rejected(any_world: World) -> None:
    w = any_world
    params = w.params()
    w.contract.create(w.alice, params)
    s0 = params.initial_state(w.chain.chain_id, w.contract.address)
    with pytest.raises(errors.ChannelsWrongPhase):
        w.contract.close(w.alice, params, s0)


def test_close_with_a_state_of_another_channel_is_rejected(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    other_params, other_s0 = w.open()
    other = other_s0.pay(ETHER, from_alice=True)
    with pytest.raises(errors.ChannelsWrongChannel):
        w.contract.close(w.bob, params, other, w.sign(other, w.alice))
    # The other channel's signature, relabelled with this channel's id, does not verify.
    relabelled = PaymentState(s0.channel_id, other.version, other.balance_alice, other.balance_bob)
    with pytest.raises(errors.ChannelsInvalidSignature):
        w.contract.close(w.bob, params, relabelled, w.sign(other, w.alice))


def test_close_with_a_signature_for_another_contract_is_rejected(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=True)
    twin = PaymentContract.deploy(w.chain, w.chain.dev_accounts[0])
    with pytest.raises(errors.ChannelsInvalidSignature):
        w.contract.close(w.bob, params, s1, sign_state(twin.domain, s1, w.alice.key))


def test_close_with_a_signature_for_another_chain_is_rejected(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=True)
    elsewhere = Domain(w.chain.chain_id + 1, w.contract.address)
    with pytest.raises(errors.ChannelsInvalidSignature):
        w.contract.close(w.bob, params, s1, sign_state(elsewhere, s1, w.alice.key))


@pytest.mark.parametrize("mangle", ["short", "high_s", "bad_v", "empty"])
def test_close_with_a_malformed_signature_is_rejected(any_world: World, mangle: str) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=True)
    sig = w.sign(s1, w.alice)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    bad = {
        "short": sig[:64],
        "high_s": sig[:32] + (n - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + bytes([55 - sig[64]]),
        "bad_v": sig[:64] + b"\x1d",
        "empty": b"",
    }[mangle]
    with pytest.raises(errors.ChannelsInvalidSignature):
        w.contract.close(w.bob, params, s1, bad)


@pytest.mark.parametrize("balance_bob_delta", [-1, 1])
def test_close_with_balances_not_conserved_is_rejected(any_world: World, balance_bob_delta: int) -> None:
    w = any_world
    params, s0 = w.open()
    bad = PaymentState(s0.channel_id, 1, s0.balance_alice, s0.balance_bob + balance_bob_delta)
    with pytest.raises(errors.ChannelsBalancesNotConserved) as exc:
        w.contract.close(w.bob, params, bad, w.sign(bad, w.alice))
    assert exc.value.fields == {"balanceAlice": bad.balance_alice, "balanceBob": bad.balance_bob,
                                "total": params.total}


def test_close_with_a_balance_above_the_total_is_rejected(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    bad = (s0.channel_id, 1, 2**256 - 1, params.total + 1)  # would overflow if added up
    digest = bytes(w.contract.contract.functions.hashPaymentState(bad).call())
    close = w.contract.contract.functions.close(params.as_abi(), bad, sign(digest, w.alice.key))
    with pytest.raises(errors.ChannelsBalancesNotConserved):
        w.chain.transact(w.bob, close)


@pytest.mark.parametrize("version", [1, 2])
def test_a_lower_or_equal_version_cannot_replace_the_registered_one(any_world: World, version: int) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=True)
    s2 = s1.pay(ETHER, from_alice=True)
    w.contract.close(w.bob, params, s2, w.sign(s2, w.alice))
    replay = s1 if version == 1 else PaymentState(s2.channel_id, 2, s1.balance_alice, s1.balance_bob)
    with pytest.raises(errors.ChannelsStaleVersion) as exc:
        w.contract.close(w.alice, params, replay, w.sign(replay, w.bob))
    assert exc.value.fields == {"registered": 2, "submitted": version}
    with pytest.raises(errors.ChannelsStaleVersion):  # checked before the signature
        w.contract.close(w.alice, params, replay, b"")
    assert w.contract.channel(s2.channel_id).version == 2


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_higher_version_replaces_the_registered_one_until_the_deadline(any_world: World, offset: int) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=True)
    s2 = s1.pay(ETHER, from_alice=True)
    deadline = w.contract.close(w.alice, params, s1, w.sign(s1, w.bob)).event("CloseRegistered").args["deadline"]
    w.chain.set_next_block_timestamp(deadline + offset)
    if offset > 0:
        with pytest.raises(errors.ChannelsDisputeWindowOver):
            w.contract.close(w.bob, params, s2, w.sign(s2, w.alice))
        with pytest.raises(errors.ChannelsDisputeWindowOver):
            w.contract.close(w.bob, params, s2, b"")
        assert w.contract.channel(s1.channel_id).version == 1
        return
    event = w.contract.close(w.bob, params, s2, w.sign(s2, w.alice)).event("CloseRegistered")
    assert (event.args["version"], event.args["deadline"]) == (2, deadline)  # the window is not extended
    assert w.contract.channel(s1.channel_id).deadline == deadline


def test_close_after_close_by_the_same_party_with_a_higher_version(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(1, from_alice=False)
    s2 = s1.pay(1, from_alice=False)
    w.contract.close(w.alice, params, s1, w.sign(s1, w.bob))
    w.contract.close(w.alice, params, s2, w.sign(s2, w.bob))
    assert w.contract.channel(s2.channel_id).version == 2


# ------------------------------------------------------------------------------ finalize


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_finalize_pays_out_only_after_the_deadline(any_world: World, offset: int) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(2 * ETHER, from_alice=True)
    deadline = w.contract.close(w.bob, params, s1, w.sign(s1, w.alice)).event("CloseRegistered").args["deadline"]
    w.chain.set_next_block_timestamp(deadline + offset)
    if offset <= 0:
        with pytest.raises(errors.ChannelsFinalizeTooEarly) as exc:
            w.contract.finalize(w.mallory, params)
        assert exc.value.fields == {"deadline": deadline}
        return
    alice, bob, held = (w.chain.balance(a) for a in (w.alice.address, w.bob.address, w.contract.address))
    receipt = w.contract.finalize(w.mallory, params)
    assert receipt.event("Finalized").args == {
        "channelId": s1.channel_id, "version": 1, "balanceAlice": 4 * ETHER, "balanceBob": 6 * ETHER,
    }
    assert w.chain.balance(w.alice.address) == alice + 4 * ETHER
    assert w.chain.balance(w.bob.address) == bob + 6 * ETHER
    assert w.chain.balance(w.contract.address) == held - params.total
    assert w.contract.channel(s1.channel_id) == CLOSED


def test_finalize_of_an_open_channel_and_twice_is_rejected(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    with pytest.raises(errors.ChannelsWrongPhase):
        w.contract.finalize(w.alice, params)
    w.contract.close(w.alice, params, s0)
    w.chain.advance_time(DELTA + 1)
    w.contract.finalize(w.alice, params)
    with pytest.raises(errors.ChannelsWrongPhase) as exc:
        w.contract.finalize(w.alice, params)
    assert exc.value.fields["phase"] == Phase.CLOSED
    with pytest.raises(errors.ChannelsWrongPhase):
        w.contract.close(w.alice, params, s0)


def test_the_seeds_asymmetry_alice_holds_only_the_previous_version(any_world: World) -> None:
    """Alice signs v2 for Bob, who goes silent. She closes with v1, the last state she holds
    Bob's signature on; Bob replaces it with v2 within Δ. v2 is paid out, nobody is punished."""
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=True)
    bob_sig_on_s1 = w.sign(s1, w.bob)
    s2 = s1.pay(ETHER, from_alice=True)
    alice_sig_on_s2 = w.sign(s2, w.alice)  # sent to Bob; his signature never comes back
    w.contract.close(w.alice, params, s1, bob_sig_on_s1)
    w.contract.close(w.bob, params, s2, alice_sig_on_s2)
    w.chain.advance_time(DELTA + 1)
    paid = w.contract.finalize(w.alice, params).event("Finalized").args
    assert (paid["version"], paid["balanceAlice"], paid["balanceBob"]) == (2, 4 * ETHER, 6 * ETHER)


def test_an_unrefuted_stale_close_wins_after_the_deadline(any_world: World) -> None:
    """Why Δ matters: a party that does not answer within Δ loses its newer state."""
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=False)
    s2 = s1.pay(3 * ETHER, from_alice=True)
    deadline = w.contract.close(w.alice, params, s1, w.sign(s1, w.bob)).event("CloseRegistered").args["deadline"]
    w.chain.set_next_block_timestamp(deadline + 1)
    with pytest.raises(errors.ChannelsDisputeWindowOver):
        w.contract.close(w.bob, params, s2, w.sign(s2, w.alice))
    paid = w.contract.finalize(w.bob, params).event("Finalized").args
    assert (paid["version"], paid["balanceAlice"]) == (1, 7 * ETHER)


# ------------------------------------------------------------------------------ cooperative close


def test_cooperative_close_pays_out_at_once(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    final = s0.pay(ETHER, from_alice=True).final()
    alice, bob = w.chain.balance(w.alice.address), w.chain.balance(w.bob.address)
    receipt = w.contract.cooperative_close(w.mallory, params, final, w.sign(final, w.alice), w.sign(final, w.bob))
    assert receipt.event("CooperativelyClosed").args == {
        "channelId": final.channel_id, "version": 2, "balanceAlice": 5 * ETHER, "balanceBob": 5 * ETHER,
    }
    assert w.chain.balance(w.alice.address) == alice + 5 * ETHER
    assert w.chain.balance(w.bob.address) == bob + 5 * ETHER
    assert w.contract.channel(final.channel_id) == CLOSED


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_cooperative_close_ends_a_dispute_even_after_the_deadline(any_world: World, offset: int) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=True)
    deadline = w.contract.close(w.alice, params, s0).event("CloseRegistered").args["deadline"]
    final = s1.final()
    w.chain.set_next_block_timestamp(deadline + offset)
    receipt = w.contract.cooperative_close(w.bob, params, final, w.sign(final, w.alice), w.sign(final, w.bob))
    assert receipt.event("CooperativelyClosed").args["balanceBob"] == 5 * ETHER
    with pytest.raises(errors.ChannelsWrongPhase):
        w.contract.finalize(w.bob, params)


def test_cooperative_close_below_the_registered_version_is_rejected(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    s1 = s0.pay(1, from_alice=True)
    s2 = s1.pay(1, from_alice=True)
    w.contract.close(w.bob, params, s2, w.sign(s2, w.alice))
    final = s0.final()  # version 1
    with pytest.raises(errors.ChannelsStaleVersion):
        w.contract.cooperative_close(w.alice, params, final, w.sign(final, w.alice), w.sign(final, w.bob))


@pytest.mark.parametrize("missing", ["alice", "bob"])
def test_cooperative_close_needs_both_signatures(any_world: World, missing: str) -> None:
    w = any_world
    params, s0 = w.open()
    final = s0.final()
    sig_alice = w.sign(final, w.mallory if missing == "alice" else w.alice)
    sig_bob = w.sign(final, w.mallory if missing == "bob" else w.bob)
    with pytest.raises(errors.ChannelsInvalidSignature):
        w.contract.cooperative_close(w.alice, params, final, sig_alice, sig_bob)


def test_ordinary_state_signatures_are_no_final_state(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    final = s0.pay(ETHER, from_alice=True).final()
    ordinary = PaymentState(final.channel_id, final.version, final.balance_alice, final.balance_bob)
    with pytest.raises(errors.ChannelsInvalidSignature):
        w.contract.cooperative_close(w.alice, params, final, w.sign(ordinary, w.alice), w.sign(ordinary, w.bob))


def test_cooperative_close_with_balances_not_conserved_is_rejected(any_world: World) -> None:
    w = any_world
    params, s0 = w.open()
    final = PaymentState(s0.channel_id, 1, params.total, 1, is_final=True)
    with pytest.raises(errors.ChannelsBalancesNotConserved) as exc:
        w.contract.cooperative_close(w.alice, params, final, w.sign(final, w.alice), w.sign(final, w.bob))
    assert exc.value.fields == {"balanceAlice": params.total, "balanceBob": 1, "total": params.total}
