"""A node whose chain endpoint goes away: one log line per change of state (down, back up), no
traceback; commands that need the chain fail at once with a clear message while payments go on;
fallback endpoints are used in order; and the node catches up when the chain is back, in time
to refute a stale close made during the outage.

Alice's node reaches anvil (or Hardhat's node: tests/chains.py) through a TCP relay the test closes and opens again (`Relay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from perun import errors
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.chain.devnode import free_port
from perun.chain.payment import PaymentContract
from perun.core.machine import Stage
from perun.node import Node
from perun.protocols.policy import ACCEPT_ALL
from tests.chains import port, start_dev_chain
from tests.node.conftest import run
from tests.relay import Relay

DELTA = 600


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[RpcChain, str]]:
    anvil = start_dev_chain()
    try:
        yield anvil, deploy(anvil, anvil.dev_accounts[0]).payment_contract
    finally:
        anvil.close()


@contextlib.asynccontextmanager
async def nodes(anvil: RpcChain, contract: str, tmp: Path, alice_rpc: list[str]) -> AsyncIterator[tuple[Node, Node]]:
    """Alice's node on `alice_rpc` (in order), Bob's on anvil directly; connected."""
    keys = [anvil.new_account(10 * ETHER) for _ in range(2)]
    async with Node(keys[0], RpcChain(alice_rpc, timeout=5), contract, tmp / "alice.db", poll_interval=0.05,
                    name="alice") as alice, \
            Node(keys[1], RpcChain(anvil.url), contract, tmp / "bob.db", poll_interval=0.05, policy=ACCEPT_ALL,
                 name="bob") as bob:
        await alice.connect(bob.address, "127.0.0.1", bob.port)
        yield alice, bob


def test_an_outage_is_told_once_fails_commands_at_once_and_the_node_catches_up_in_time(
        chain, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    anvil, contract = chain

    async def scenario() -> tuple[bytes, int]:
        relay = Relay(port(anvil))
        relay.open()
        try:
            async with nodes(anvil, contract, tmp_path, [relay.url]) as (alice, bob):
                cid = await alice.open(bob.address, 2 * ETHER, ETHER, DELTA)
                await alice.pay(cid, ETHER // 2)  # version 1
                old = bob.channel(cid)
                relay.close()
                # Alice's follower finds out; from then on a command that needs the chain fails at once.
                await until(lambda: alice.runtime.chain_status.down)
                with pytest.raises(errors.ChainUnreachable, match=r"^the chain has not answered for \d+ s"):
                    await alice.sync()
                with pytest.raises(errors.ChainUnreachable, match=r"^the chain has not answered for \d+ s \(no "
                                                                  r"JSON-RPC node answers at .*\); the node keeps "
                                                                  "trying and catches up once it is back$"):
                    await alice.register(cid)
                # Payments need no chain.
                assert (await alice.pay(cid, ETHER // 4)).version == 2
                # Bob, cheating, registers version 1 while Alice's chain is away.
                receipt = PaymentContract(anvil, contract).close(bob.account, old.params, old.current,
                                                                 old.peer_signature)
                deadline = receipt.event("CloseRegistered").args["deadline"]
                # Alice's follower keeps trying, backing off, and says nothing more.
                await until(lambda: alice.watcher.unreachable_polls >= 3)
                relay.open()
                alice.watcher.wake()
                rec = await alice.wait_for(cid, lambda r: r.registered_version == 2, timeout=30)
                assert rec.stage is Stage.CLOSING and rec.deadline == deadline
                anvil.set_next_block_timestamp(deadline + 1)
                anvil.mine()
                rec = await alice.wait_for(cid, lambda r: r.stage is Stage.CLOSED, timeout=30)
                return cid, rec.outcome[0]
        finally:
            relay.stop()

    with caplog.at_level(logging.INFO, logger="perun"):
        cid, paid_alice = run(scenario())
    assert paid_alice == 2 * ETHER - ETHER // 2 - ETHER // 4  # her latest state (version 2), not the stale one
    said = [r.getMessage() for r in caplog.records if r.name == "perun.watcher" and r.getMessage().startswith("alice")]
    assert len([m for m in said if "the chain is unreachable" in m]) == 1, said
    assert len([m for m in said if "the chain answers again after" in m]) == 1, said
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


def test_a_fallback_endpoint_is_used_when_the_first_does_not_answer(chain, tmp_path: Path) -> None:
    anvil, contract = chain

    async def scenario() -> tuple[int, int]:
        dead = f"http://127.0.0.1:{free_port()}"
        async with nodes(anvil, contract, tmp_path, [dead, anvil.url]) as (alice, bob):
            cid = await alice.open(bob.address, ETHER, 0, DELTA)
            await alice.pay(cid, ETHER // 10)
            return await alice.close(cid)
    assert run(scenario()) == (ETHER - ETHER // 10, ETHER // 10)


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Waits until `condition()` holds, looking at each turn of the event loop's clock."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
