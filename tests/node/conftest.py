"""Nodes in this process, on the embedded chain, over loopback TCP; or `perun node` processes
on anvil (or Hardhat's node with PERUN_TEST_CHAIN=hardhat: tests/chains.py).

`net` gives a fresh deployment context per test (chain snapshot reverted afterwards); tests are
plain functions that run one coroutine with `run`, so each has its own event loop, and every
node they start is stopped when it ends, even on failure. `deployed` is one anvil per module with
every contract deployed, and `processes` the `perun node` processes a test starts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from perun.chain.backend import ETHER, Chain, RpcChain
from perun.chain.deploy import deploy
from perun.chain.multistate import MSContract
from perun.chain.payment import PaymentContract
from perun.node import Node
from perun.protocols.policy import ACCEPT_ALL
from tests.chains import start_dev_chain
from tests.conftest import MSWorld
from tests.node.processes import Processes

DELTA = 600


@dataclass
class Net:
    chain: Chain
    contract: PaymentContract
    tmp: Path
    ms: MSWorld  # MSContract and the apps, on the same chain
    accounts: dict[str, LocalAccount] = field(default_factory=dict)

    def account(self, name: str) -> LocalAccount:
        if name not in self.accounts:
            self.accounts[name] = self.chain.new_account(100 * ETHER)
        return self.accounts[name]

    def node(self, name: str, **kwargs) -> Node:
        """A node for `name` (same key and store each time: a restart)."""
        kwargs.setdefault("poll_interval", 0.02)
        kwargs.setdefault("response_timeout", 5.0)
        kwargs.setdefault("ms_contract", self.ms.contract.address)
        kwargs.setdefault("apps", self.ms.apps)
        kwargs.setdefault("policy", ACCEPT_ALL)  # the tests script both parties, their deposits too
        return Node(self.account(name).key, self.chain, self.contract.address, self.tmp / f"{name}.db",
                    name=name, **kwargs)

    @contextlib.asynccontextmanager
    async def running(self, *names: str, **kwargs) -> AsyncIterator[list[Node]]:
        nodes: list[Node] = []
        try:
            for name in names:
                nodes.append(await self.node(name, **kwargs).start())
            yield nodes
        finally:
            # Every node is stopped; the first that fails at it fails the test (after the others).
            failures = []
            for node in nodes:
                try:
                    await node.stop()
                except Exception as exc:  # re-raised below, once all are stopped
                    failures.append(exc)
            if failures:
                raise failures[0]

    def pair(self, deposit_alice: int = 10 * ETHER, deposit_bob: int = 5 * ETHER):
        """Context: alice and bob running, connected, with an open channel; yields (alice, bob, cid)."""
        return _Pair(self, deposit_alice, deposit_bob)


class _Pair:
    def __init__(self, net: Net, deposit_alice: int, deposit_bob: int) -> None:
        self.net, self.deposits = net, (deposit_alice, deposit_bob)
        self._ctx = None

    async def __aenter__(self):
        self._ctx = self.net.running("alice", "bob")
        alice, bob = await self._ctx.__aenter__()
        await alice.connect(bob.address, "127.0.0.1", bob.port)
        cid = await alice.open(bob.address, *self.deposits, DELTA)
        await bob.wait_for(cid, lambda r: r.stage.value == "open")
        return alice, bob, cid

    async def __aexit__(self, *exc):
        await self._ctx.__aexit__(*exc)


@pytest.fixture
def net(embedded_world, embedded_ms_world, tmp_path) -> Net:
    chain = embedded_world.chain
    snapshot = chain.snapshot()
    yield Net(chain, embedded_world.contract, tmp_path, embedded_ms_world)
    chain.revert_to(snapshot)


def run(coro: Awaitable, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Deployed:
    """An anvil with every contract deployed, for `perun node` processes: MSContract's binding,
    PaymentContract's address (a node's store belongs with it) and the deployment file."""

    chain: RpcChain
    ms: MSContract
    payment_contract: str
    file: Path


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """One anvil (or Hardhat node) per module."""
    chain = start_dev_chain()
    try:
        deployment = deploy(chain, chain.dev_accounts[0])
        path = tmp_path_factory.mktemp("deployment") / "deployment.json"
        deployment.write(path)
        yield Deployed(chain, deployment.multistate(chain), deployment.payment_contract, path)
    finally:
        chain.close()


@pytest.fixture
def processes(deployed: Deployed, tmp_path: Path) -> Iterator[Processes]:
    """`perun node` processes on `deployed`'s anvil with its deployment file; all stopped after the test."""
    procs = Processes(deployed.chain.url, None, tmp_path, deployment=deployed.file)
    try:
        yield procs
    finally:
        procs.stop_all()
