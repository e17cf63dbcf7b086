"""One time-control interface over the embedded chain and anvil (or Hardhat's node)."""

from __future__ import annotations

import pytest

from perun import errors
from perun.chain.backend import ETHER
from tests.conftest import World


def test_advance_time_mines_a_block_that_many_seconds_later(any_world: World) -> None:
    chain = any_world.chain
    before, number = chain.timestamp(), chain.block_number()
    chain.advance_time(1000)
    assert chain.timestamp() == before + 1000
    assert chain.block_number() == number + 1


def test_the_next_transaction_gets_the_timestamp_set_for_it(any_world: World) -> None:
    w = any_world
    # From the pending block: eth-tester's follows the wall clock, far past the latest block of a
    # world made at the start of a long session.
    target = w.chain.w3.eth.get_block("pending")["timestamp"] + 500
    w.chain.set_next_block_timestamp(target)
    receipt = w.contract.create(w.alice, w.params())
    block = w.chain.w3.eth.get_block(receipt.transaction.block_number)
    assert block["timestamp"] == target
    assert receipt.event("Initialising").args["deadline"] == target + 100


def test_mine_and_snapshots(any_world: World) -> None:
    chain = any_world.chain
    number = chain.block_number()
    chain.mine(3)
    assert chain.block_number() == number + 3
    snapshot = chain.snapshot()
    account = chain.new_account(ETHER)
    assert chain.balance(account.address) == ETHER
    chain.revert_to(snapshot)
    assert chain.balance(account.address) == 0
    assert chain.block_number() == number + 3


def test_reverting_to_a_snapshot_the_chain_does_not_have_fails(any_world: World) -> None:
    chain = any_world.chain
    with pytest.raises(errors.ChainError, match="^no snapshot"):
        chain.revert_to(chain.snapshot() + 1000)


def test_time_cannot_move_back_on_the_embedded_chain(world: World) -> None:
    with pytest.raises(errors.ChainError):
        world.chain.set_next_block_timestamp(world.chain.timestamp() - 10)
