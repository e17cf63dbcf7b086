"""The wallet on anvil with mining held back: a transaction priced out by a rising base fee is
sent again with a higher bid; one dropped from the pool is sent again; one left in flight by a
stopped node is replaced (same nonce) by the next one, never mined beside it; one that serves a
deadline is given up at the deadline.

The wallet sends on a thread of its own, as in a node; the test holds the blocks back
(automine off) and mines them itself once the wallet has done what it is being tested for.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from web3.exceptions import TransactionNotFound

from perun import errors
from perun.chain.anvil import AnvilChain
from perun.chain.backend import ETHER
from perun.chain.wallet import DUTY, GWEI, FeePolicy, InFlight, Journal, MemoryJournal, Wallet
from perun.store import Store, TxJournal

FAST = FeePolicy(priority_fee=GWEI, bump_after=60, poll=0.02)


class Clock:
    """The wallet's clock, which only the test moves: a bump comes when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def bump_time(self) -> None:
        self.now += FAST.bump_after


class Watched:
    """A journal (`inner`) that tells the test each version the wallet writes before sending it."""

    def __init__(self, inner: Journal | None = None) -> None:
        self.inner = inner if inner is not None else MemoryJournal()
        self.versions: list[InFlight] = []
        self._written = threading.Condition()

    def in_flight(self) -> list[InFlight]:
        return self.inner.in_flight()

    def drop(self, nonce: int) -> None:
        self.inner.drop(nonce)

    def put(self, tx: InFlight) -> None:
        self.inner.put(tx)
        with self._written:
            self.versions.append(tx)
            self._written.notify_all()

    def wait_versions(self, n: int, timeout: float = 30) -> InFlight:
        """The n-th version written (it is sent right after)."""
        with self._written:
            if not self._written.wait_for(lambda: len(self.versions) >= n, timeout):
                raise AssertionError(f"the wallet wrote {len(self.versions)} version(s), not {n}")
            return self.versions[n - 1]

    def wait_sent(self, chain: AnvilChain, n: int, timeout: float = 30) -> InFlight:
        """The n-th version, once anvil's pool holds it."""
        version = self.wait_versions(n, timeout)
        gone = threading.Event()
        for _ in range(int(timeout / 0.01)):
            with contextlib.suppress(TransactionNotFound):
                chain.w3.eth.get_transaction(version.hashes[-1])
                return version
            gone.wait(0.01)
        raise AssertionError(f"version {n} never reached the pool")


@pytest.fixture
def chain() -> Iterator[AnvilChain]:
    anvil = AnvilChain()
    try:
        yield anvil
    finally:
        anvil.close()


@pytest.fixture
def token(chain: AnvilChain):
    return chain.contract("TestToken", chain.deploy(chain.dev_accounts[0], "TestToken"))


def funded(chain: AnvilChain, clock: Clock) -> Wallet:
    return Wallet(chain.new_account(10 * ETHER), Watched(), FAST, clock)


def in_background(fn: Callable[[], object]) -> tuple[ThreadPoolExecutor, Future]:
    pool = ThreadPoolExecutor(1, "wallet")
    return pool, pool.submit(fn)


def held(chain: AnvilChain) -> None:
    chain._dev_rpc("evm_setAutomine", [False])


def test_a_transaction_priced_out_by_the_base_fee_is_sent_again_with_a_higher_bid(chain, token) -> None:
    clock = Clock()
    wallet = funded(chain, clock)
    journal: Watched = wallet.journal  # type: ignore[assignment]
    held(chain)
    pool, sent = in_background(lambda: chain.transact(wallet, token.functions.approve(wallet.address, 7)))
    try:
        first = journal.wait_sent(chain, 1)
        # The next block's base fee is far above the first bid: it is left out.
        chain._dev_rpc("anvil_setNextBlockBaseFeePerGas", [hex(10 * first.tx["maxFeePerGas"])])
        chain.mine()
        assert not sent.done(), sent.exception() if sent.done() else None
        clock.bump_time()
        second = journal.wait_sent(chain, 2)
        assert second.nonce == first.nonce
        assert second.tx["maxFeePerGas"] >= 10 * first.tx["maxFeePerGas"]  # twice the new base fee, and more
        chain.mine()
        receipt = sent.result(30).receipt
    finally:
        wallet.stop()
        pool.shutdown()
    assert bytes(receipt["transactionHash"]) == second.hashes[-1]
    assert token.functions.allowance(wallet.address, wallet.address).call() == 7
    assert chain.w3.eth.get_transaction_count(wallet.address) == 1
    assert journal.in_flight() == []


def test_a_transaction_dropped_from_the_pool_is_sent_again(chain, token) -> None:
    wallet = funded(chain, Clock())
    journal: Watched = wallet.journal  # type: ignore[assignment]
    held(chain)
    pool, sent = in_background(lambda: chain.transact(wallet, token.functions.approve(wallet.address, 8)))
    try:
        first = journal.wait_sent(chain, 1)
        chain._dev_rpc("anvil_dropTransaction", ["0x" + first.hashes[-1].hex()])
        again = journal.wait_sent(chain, 2)
        assert again.nonce == first.nonce and again.tx["maxFeePerGas"] > first.tx["maxFeePerGas"]
        chain.mine()
        sent.result(30)
    finally:
        wallet.stop()
        pool.shutdown()
    assert token.functions.allowance(wallet.address, wallet.address).call() == 8
    assert wallet.sent == 2


def test_what_a_stopped_node_left_in_flight_is_replaced_by_its_next_transaction_after_a_restart(
        chain, token, tmp_path: Path) -> None:
    account = chain.new_account(10 * ETHER)
    Store(tmp_path / "node.db", account.address, chain.chain_id, token.address).close()  # the node's store file
    held(chain)
    journal = TxJournal(tmp_path / "node.db")
    before = Wallet(account, Watched(journal), FAST, Clock())
    pool, sent = in_background(lambda: chain.transact(before, token.functions.approve(account.address, 1)))
    try:
        before.journal.wait_sent(chain, 1)  # type: ignore[attr-defined]
        before.stop()
        with pytest.raises(errors.TransactionNotMined, match="the node stopped"):
            sent.result(30)
    finally:
        pool.shutdown()
    journal.close()
    left = TxJournal(tmp_path / "node.db").in_flight()
    assert [t.nonce for t in left] == [0]

    # The restarted node's wallet replaces it: same nonce, a higher bid, the new call.
    after = Wallet(account, Watched(TxJournal(tmp_path / "node.db")), FAST, Clock())
    pool, sent = in_background(lambda: chain.transact(after, token.functions.approve(account.address, 2)))
    try:
        replacing = after.journal.wait_sent(chain, 1)  # type: ignore[attr-defined]
        assert replacing.nonce == 0 and len(replacing.hashes) == 2  # the left one's hash, and its own
        assert replacing.tx["maxFeePerGas"] > left[0].tx["maxFeePerGas"]
        chain.mine()
        receipt = sent.result(30).receipt
    finally:
        after.stop()
        pool.shutdown()
    assert chain.w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == 0
    assert token.functions.allowance(account.address, account.address).call() == 2  # the first never mined
    chain.mine(3)
    assert chain.w3.eth.get_transaction_count(account.address) == 1
    assert after.journal.in_flight() == []


def test_a_duty_s_transaction_is_given_up_at_its_deadline(chain, token) -> None:
    clock = Clock()
    wallet = Wallet(chain.new_account(10 * ETHER), Watched(), FeePolicy(max_fee=3 * GWEI, priority_fee=GWEI,
                                                                         bump_after=FAST.bump_after, poll=0.02), clock)
    journal: Watched = wallet.journal  # type: ignore[assignment]
    held(chain)
    deadline = chain.timestamp() + 100

    def dispute():
        DUTY.set(("dispute of 0xabc", deadline))
        return chain.transact(wallet, token.functions.approve(wallet.address, 1))

    pool, sent = in_background(dispute)
    try:
        journal.wait_sent(chain, 1)
        # No block for a while: the bid goes up to the operator's limit, no higher.
        clock.bump_time()
        assert journal.wait_sent(chain, 2).tx["maxFeePerGas"] == 3 * GWEI
        clock.bump_time()  # and again: there is no higher bid to make
        # The deadline's block, with a base fee above the limit: it is left out.
        chain._dev_rpc("anvil_setNextBlockBaseFeePerGas", [hex(50 * GWEI)])
        chain.set_next_block_timestamp(deadline)
        chain.mine()
        with pytest.raises(errors.TransactionNotMined, match=rf"dispute of 0xabc was not mined by its deadline "
                                                             rf"\(chain time {deadline}\); last bid 3 gwei"):
            sent.result(30)
    finally:
        wallet.stop()
        pool.shutdown()
    assert [t.tx["maxFeePerGas"] for t in journal.in_flight()] == [3 * GWEI]  # never above the limit
    assert len(journal.versions) == 2  # at the limit, nothing more to bid


def test_fee_limits_are_checked() -> None:
    with pytest.raises(errors.ConfigError, match="bump_percent must be 10 or more"):
        FeePolicy(bump_percent=5)
    with pytest.raises(errors.ConfigError, match=r"the tip \(5 gwei\) is above the fee limit \(1 gwei\)"):
        FeePolicy(max_fee=GWEI, priority_fee=5 * GWEI)
