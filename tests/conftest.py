"""Shared fixtures: a chain (embedded py-evm, and anvil for the contract tests, or Hardhat's node
with PERUN_TEST_CHAIN=hardhat: tests/chains.py), a deployed
PaymentContract, MSContract and apps, funded parties, and helpers to open channels and sign
states.

Each test runs on a snapshot of the chain that is reverted afterwards, so tests are isolated
and the contract is deployed once per chain.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import settings

from perun.chain.backend import ETHER, Chain, EmbeddedChain
from perun.chain.multistate import MSContract
from perun.chain.payment import PaymentContract
from perun.core.channel import ETH, Params, PaymentState
from perun.core.eip712 import sign, sign_state
from perun.core.multistate import ChannelState, FinalChannelState, NanocontractState, digest
from tests.chains import TEST_CHAIN, start_dev_chain

DELTA = 100
_nonces = itertools.count(1)

# Hypothesis profiles: `ci` (what `make test` runs) and `long` (`make test-long`: ten times the
# examples of every property test). HYPOTHESIS_PROFILE=long or `--hypothesis-profile=long` picks it.
CI_EXAMPLES = 100
settings.register_profile("ci", deadline=None, max_examples=CI_EXAMPLES)
settings.register_profile("long", deadline=None, max_examples=10 * CI_EXAMPLES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def long_profile() -> bool:
    """The long profile is loaded (read when a test module is imported, after the options)."""
    return settings.default.max_examples > CI_EXAMPLES


def examples(ci: int, *, long: int = 0) -> int:
    """The examples of a property test that sets its own count: `ci` in the ci profile, and in
    the long one ten times as many, or `long` if that is more."""
    return max(10 * ci, long) if long_profile() else ci


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running tests")
    # `kill` (SIGTERM) stops a run as Ctrl-C does, so that the fixtures still stop the anvils and
    # nodes they started (each in a session of its own, which the signal does not reach).
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@pytest.fixture(scope="session")
def embedded_chain() -> Iterator[Chain]:
    chain = EmbeddedChain()
    yield chain
    chain.close()


@pytest.fixture(scope="session")
def anvil_chain() -> Iterator[Chain]:
    """anvil, or the dev node PERUN_TEST_CHAIN names (tests/chains.py)."""
    chain = start_dev_chain()
    try:
        yield chain
    finally:
        chain.close()


@dataclass
class World:
    """Everything a contract test needs, on one chain."""

    chain: Chain
    contract: PaymentContract
    alice: LocalAccount
    bob: LocalAccount
    mallory: LocalAccount

    def params(self, deposit_alice: int = 6 * ETHER, deposit_bob: int = 4 * ETHER, *,
               delta: int = DELTA, token: str = ETH, alice: str | None = None,
               bob: str | None = None) -> Params:
        return Params(alice or self.alice.address, bob or self.bob.address, deposit_alice, deposit_bob,
                      delta, next(_nonces), token)

    def open(self, params: Params | None = None) -> tuple[Params, PaymentState]:
        """Creates and confirms a channel; returns its params and initial state."""
        params = params or self.params()
        self.contract.create(self.alice, params)
        self.contract.confirm(self.bob, params)
        return params, params.initial_state(self.chain.chain_id, self.contract.address)

    def sign(self, state: PaymentState, who: LocalAccount) -> bytes:
        return sign_state(self.contract.domain, state, who.key)


def _make_world(chain: Chain) -> World:
    contract = PaymentContract.deploy(chain, chain.dev_accounts[0])
    return World(chain, contract, *(chain.new_account(1000 * ETHER) for _ in range(3)))


@pytest.fixture(scope="session")
def embedded_world(embedded_chain: Chain) -> World:
    return _make_world(embedded_chain)


@pytest.fixture(scope="session")
def anvil_world(anvil_chain: Chain) -> World:
    return _make_world(anvil_chain)


@pytest.fixture
def world(embedded_world: World) -> Iterator[World]:
    """The embedded chain's world, reverted after the test."""
    snapshot = embedded_world.chain.snapshot()
    yield embedded_world
    embedded_world.chain.revert_to(snapshot)


@pytest.fixture(params=["embedded", "anvil"], ids=["embedded", TEST_CHAIN])
def any_world(request: pytest.FixtureRequest) -> Iterator[World]:
    """The same test on the embedded chain and on anvil (or Hardhat), reverted after the test."""
    world_ = request.getfixturevalue(f"{request.param}_world")
    snapshot = world_.chain.snapshot()
    yield world_
    world_.chain.revert_to(snapshot)


@dataclass
class MSWorld:
    """Everything a multistate-channel test needs, on one chain: MSContract and the apps."""

    chain: Chain
    contract: MSContract
    apps: dict[str, str]  # app name -> address
    alice: LocalAccount
    bob: LocalAccount
    mallory: LocalAccount

    def params(self, deposit_alice: int = 6 * ETHER, deposit_bob: int = 4 * ETHER, *,
               delta: int = DELTA, token: str = ETH) -> Params:
        return Params(self.alice.address, self.bob.address, deposit_alice, deposit_bob, delta, next(_nonces), token)

    def open(self, params: Params | None = None) -> tuple[Params, ChannelState]:
        """Creates and confirms a channel; returns its params and initial channel state."""
        params = params or self.params()
        self.contract.create(self.alice, params)
        self.contract.confirm(self.bob, params)
        return params, ChannelState.initial(params, self.contract.channel_id(params))

    def sign(self, state: ChannelState | NanocontractState | FinalChannelState, who: LocalAccount) -> bytes:
        return sign(digest(self.contract.domain, state), who.key)


def _make_ms_world(chain: Chain) -> MSWorld:
    deployer = chain.dev_accounts[0]
    contract = MSContract.deploy(chain, deployer)
    apps = {name: chain.deploy(deployer, name) for name in ("HashTimeLock", "TicTacToe", "VirtualChannel")}
    return MSWorld(chain, contract, apps, *(chain.new_account(1000 * ETHER) for _ in range(3)))


@pytest.fixture(scope="session")
def embedded_ms_world(embedded_chain: Chain) -> MSWorld:
    return _make_ms_world(embedded_chain)


@pytest.fixture(scope="session")
def anvil_ms_world(anvil_chain: Chain) -> MSWorld:
    return _make_ms_world(anvil_chain)


@pytest.fixture
def ms_world(embedded_ms_world: MSWorld) -> Iterator[MSWorld]:
    """The embedded chain's multistate world, reverted after the test."""
    snapshot = embedded_ms_world.chain.snapshot()
    yield embedded_ms_world
    embedded_ms_world.chain.revert_to(snapshot)


@pytest.fixture(params=["embedded", "anvil"], ids=["embedded", TEST_CHAIN])
def any_ms_world(request: pytest.FixtureRequest) -> Iterator[MSWorld]:
    """The same multistate test on the embedded chain and on anvil (or Hardhat), reverted after the test."""
    world_ = request.getfixturevalue(f"{request.param}_ms_world")
    snapshot = world_.chain.snapshot()
    yield world_
    world_.chain.revert_to(snapshot)
