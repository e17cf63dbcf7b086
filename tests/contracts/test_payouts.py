"""Payouts that cannot be pushed, and ERC-20 channels (a standard token, one that returns no
value, one that charges a fee, one that refuses a recipient)."""

from __future__ import annotations

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core.channel import ETH, Params
from tests.conftest import DELTA, World

ACCEPT, REJECT, BURN_GAS = 0, 1, 2


def wallet_as_bob(w: World, mode: int):
    """A contract account owned by Bob that plays Bob in a channel with Alice."""
    address = w.chain.deploy(w.bob, "TestWallet")
    wallet = w.chain.contract("TestWallet", address)
    w.chain.transact(w.bob, wallet.functions.setMode(mode))
    return wallet


def via(w: World, wallet, call, value: int = 0):
    """Makes the wallet send `call` (a PaymentContract function call)."""
    data = call._encode_transaction_data()
    return w.chain.transact(w.bob, wallet.functions.execute(w.contract.address, value, data), value)


def close_and_finalize_as_wallet(w: World, wallet, params: Params, balance_alice: int):
    fns = w.contract.contract.functions
    via(w, wallet, fns.confirm(params.as_abi()), params.deposit_bob)
    state = params.initial_state(w.chain.chain_id, w.contract.address)
    state = state.pay(params.deposit_alice - balance_alice, from_alice=True)
    via(w, wallet, fns.close(params.as_abi(), state.as_abi(), w.sign(state, w.alice)))
    w.chain.advance_time(DELTA + 1)
    return w.contract.finalize(w.alice, params)


@pytest.mark.parametrize("mode", [REJECT, BURN_GAS])
def test_a_recipient_that_refuses_eth_cannot_block_the_other_payout(any_world: World, mode: int) -> None:
    w = any_world
    wallet = wallet_as_bob(w, mode)
    params = w.params(6 * ETHER, 4 * ETHER, bob=wallet.address)
    w.contract.create(w.alice, params)
    alice_before = w.chain.balance(w.alice.address)

    receipt = close_and_finalize_as_wallet(w, wallet, params, balance_alice=5 * ETHER)

    deferred = receipt.event("PayoutDeferred").args
    assert deferred == {"account": wallet.address, "token": ETH, "amount": 5 * ETHER}
    gas_cost = receipt.gas_used * receipt.transaction.receipt["effectiveGasPrice"]
    assert w.chain.balance(w.alice.address) == alice_before + 5 * ETHER - gas_cost
    assert w.contract.owed(wallet.address) == 5 * ETHER
    assert receipt.gas_used < 120_000  # the gas burner got at most PAYOUT_GAS

    # The wallet's owner moves the credit to an account that accepts ETH.
    bob_before = w.chain.balance(w.bob.address)
    withdraw = w.contract.contract.functions.withdraw(ETH, w.bob.address)
    tx = via(w, wallet, withdraw)
    assert w.chain.balance(w.bob.address) == bob_before + 5 * ETHER - tx.gas_used * tx.receipt["effectiveGasPrice"]
    assert w.contract.owed(wallet.address) == 0
    with pytest.raises(errors.ChannelsNothingToWithdraw):
        via(w, wallet, withdraw)


def test_withdraw_to_an_address_that_refuses_eth_is_rejected_and_keeps_the_credit(any_world: World) -> None:
    w = any_world
    wallet = wallet_as_bob(w, REJECT)
    params = w.params(1 * ETHER, 1 * ETHER, bob=wallet.address)
    w.contract.create(w.alice, params)
    close_and_finalize_as_wallet(w, wallet, params, balance_alice=ETHER)
    with pytest.raises(errors.ChannelsWithdrawFailed):
        via(w, wallet, w.contract.contract.functions.withdraw(ETH, wallet.address))
    assert w.contract.owed(wallet.address) == ETHER


def test_withdraw_with_nothing_owed_or_to_the_zero_address_is_rejected(any_world: World) -> None:
    w = any_world
    with pytest.raises(errors.ChannelsNothingToWithdraw):
        w.contract.withdraw(w.mallory, ETH, w.mallory.address)
    with pytest.raises(errors.ChannelsInvalidRecipient):
        w.contract.withdraw(w.mallory, ETH, ETH)


# ------------------------------------------------------------------------------ ERC-20


def token(w: World, name: str, *holders):
    address = w.chain.deploy(w.chain.dev_accounts[0], name)
    contract = w.chain.contract(name, address)
    for holder in holders:
        w.chain.transact(holder, contract.functions.mint(holder.address, 100 * ETHER))
        w.chain.transact(holder, contract.functions.approve(w.contract.address, 2**256 - 1))
    return contract


@pytest.mark.parametrize("name", ["TestToken", "NoReturnToken"])
def test_an_erc20_channel_from_deposit_to_payout(any_world: World, name: str) -> None:
    w = any_world
    tok = token(w, name, w.alice, w.bob)
    params = w.params(6 * ETHER, 4 * ETHER, token=tok.address)
    params, s0 = w.open(params)
    assert tok.functions.balanceOf(w.contract.address).call() == 10 * ETHER
    final = s0.pay(ETHER, from_alice=True).final()
    w.contract.cooperative_close(w.alice, params, final, w.sign(final, w.alice), w.sign(final, w.bob))
    assert tok.functions.balanceOf(w.alice.address).call() == (100 - 6 + 5) * ETHER
    assert tok.functions.balanceOf(w.bob.address).call() == (100 - 4 + 5) * ETHER
    assert tok.functions.balanceOf(w.contract.address).call() == 0


def test_an_erc20_channel_refunds_in_tokens(any_world: World) -> None:
    w = any_world
    tok = token(w, "NoReturnToken", w.alice)
    params = w.params(3 * ETHER, 0, token=tok.address)
    w.contract.create(w.alice, params)
    w.chain.advance_time(DELTA + 1)
    w.contract.refund(w.alice, params)
    assert tok.functions.balanceOf(w.alice.address).call() == 100 * ETHER


def test_ether_sent_to_an_erc20_channel_is_rejected(any_world: World) -> None:
    w = any_world
    tok = token(w, "TestToken", w.alice)
    params = w.params(ETHER, ETHER, token=tok.address)
    with pytest.raises(errors.ChannelsWrongDeposit) as exc:
        w.chain.transact(w.alice, w.contract.contract.functions.create(params.as_abi()), 1)
    assert exc.value.fields == {"expected": 0, "received": 1}


def test_a_token_that_takes_a_fee_on_deposit_is_rejected(any_world: World) -> None:
    w = any_world
    tok = token(w, "FeeToken", w.alice)
    with pytest.raises(errors.ChannelsWrongDeposit) as exc:
        w.contract.create(w.alice, w.params(100, 0, token=tok.address))
    assert exc.value.fields == {"expected": 100, "received": 99}


def test_a_deposit_without_allowance_is_rejected_with_the_tokens_error(any_world: World) -> None:
    w = any_world
    tok = token(w, "TestToken")
    w.chain.transact(w.alice, tok.functions.mint(w.alice.address, ETHER))
    with pytest.raises(errors.ContractRejected) as exc:
        w.contract.create(w.alice, w.params(ETHER, 0, token=tok.address))
    assert exc.value.name == "ERC20InsufficientAllowance"


def test_a_token_refusing_one_recipient_does_not_block_the_other(any_world: World) -> None:
    w = any_world
    tok = token(w, "TestToken", w.alice, w.bob)
    params, s0 = w.open(w.params(6 * ETHER, 4 * ETHER, token=tok.address))
    w.chain.transact(w.alice, tok.functions.setBlocked(w.bob.address, True))
    final = s0.pay(ETHER, from_alice=True).final()
    receipt = w.contract.cooperative_close(w.alice, params, final, w.sign(final, w.alice), w.sign(final, w.bob))
    assert receipt.event("PayoutDeferred").args == {"account": w.bob.address, "token": tok.address, "amount": 5 * ETHER}
    assert tok.functions.balanceOf(w.alice.address).call() == 99 * ETHER
    assert w.contract.owed(w.bob.address, tok.address) == 5 * ETHER
    # Bob takes his tokens to another address of his.
    w.contract.withdraw(w.bob, tok.address, w.mallory.address)
    assert tok.functions.balanceOf(w.mallory.address).call() == 5 * ETHER
    assert w.contract.owed(w.bob.address, tok.address) == 0
