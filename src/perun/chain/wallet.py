"""The one place a node's transactions leave from (lnd's sweeper, in small): the nonce, EIP-1559
fees, the wait until one is mined, and the re-sends with a higher bid.

A `Wallet` sends one transaction at a time, from one account, and waits until it is mined:
- Its bid is the latest block's base fee twice, plus a tip (`FeePolicy`), never above the
  operator's limit (`max_fee`).
- Not mined after `bump_after` seconds, it is signed again with the same nonce and a bid
  `bump_percent` higher (the pool's replacement rule asks for 10 % more at least), and sent
  again, until the chain time reaches the deadline of the duty it serves (`DUTY`), or
  `give_up_after` seconds for one that serves none. Same nonce: whichever version is mined,
  only one is. One gone from the node's pool unmined is sent again at once if it serves no
  duty; a duty's is given up, as the duty itself is derived again at the follower's next poll.
- Every version is written to a `Journal` before it is sent, so a restarted node knows it.
  A transaction the wallet gave up on, or that a crash left behind, is replaced by the next one
  it sends (the same nonce again): it can no longer be mined behind the caller's back, except
  if it is mined before that.

A transaction reorganised out of the chain is not the wallet's to send again: the node's chain
follower sees that the duty it served is due again, and runs it anew (docs/protocol.md, "The
chain").
"""

from __future__ import annotations

import contextvars
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from eth_typing import Hash32
from web3.exceptions import TransactionNotFound
from web3.types import TxParams, TxReceipt

from perun import errors
from perun.chain import reverts
from perun.chain.backend import Chain, Signer

GWEI = 10**9

# What the transaction being sent is for: (the duty's name and channel, the chain time by which
# it must be mined, 0 for no deadline). Set by the node's chain follower around a duty.
DUTY: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar("perun_duty", default=None)


@dataclass(frozen=True)
class FeePolicy:
    """The operator's limits on what a transaction may cost (wei per gas, seconds)."""

    max_fee: int = 500 * GWEI  # the most paid per gas, base fee and tip together
    priority_fee: int = 2 * GWEI  # the first bid's tip to the block's producer
    bump_after: float = 30.0  # seconds without being mined before the bid is raised
    bump_percent: int = 25  # each re-send bids this much more, tip and cap alike (10 at least)
    give_up_after: float = 600.0  # seconds a transaction that serves no deadline is tried for
    poll: float = 0.25  # seconds between looks for the receipt, at the most

    def __post_init__(self) -> None:
        if self.bump_percent < 10:
            raise errors.ConfigError(f"bump_percent must be 10 or more (the pool's replacement rule), "
                                     f"not {self.bump_percent}")
        if self.priority_fee > self.max_fee:
            raise errors.ConfigError(f"the tip ({self.priority_fee / GWEI:g} gwei) is above the fee limit "
                                     f"({self.max_fee / GWEI:g} gwei)")


@dataclass(frozen=True)
class InFlight:
    """A transaction sent and not known to be mined: its latest version (`tx`, unsigned, with
    its nonce and bid) and the hashes of every version sent."""

    duty: str  # what it is for ("" when it serves no duty)
    deadline: int  # chain time by which it must be mined (0: none)
    tx: dict[str, Any]
    hashes: tuple[bytes, ...]

    @property
    def nonce(self) -> int:
        return int(self.tx["nonce"])

    def to_json(self) -> str:
        return json.dumps({"duty": self.duty, "deadline": self.deadline, "tx": self.tx,
                           "hashes": ["0x" + h.hex() for h in self.hashes]})

    @classmethod
    def from_json(cls, text: str) -> InFlight:
        d = json.loads(text)
        return cls(d["duty"], d["deadline"], d["tx"], tuple(bytes.fromhex(h[2:]) for h in d["hashes"]))


class Journal(Protocol):
    """Where a wallet keeps what it has in flight. `put` and `drop` are durable when they return."""

    def in_flight(self) -> list[InFlight]: ...

    def put(self, tx: InFlight) -> None: ...

    def drop(self, nonce: int) -> None: ...


class MemoryJournal:
    """A journal that forgets everything with the process (for a wallet outside a node)."""

    def __init__(self) -> None:
        self._txs: dict[int, InFlight] = {}

    def in_flight(self) -> list[InFlight]:
        return sorted(self._txs.values(), key=lambda t: t.nonce)

    def put(self, tx: InFlight) -> None:
        self._txs[tx.nonce] = tx

    def drop(self, nonce: int) -> None:
        self._txs.pop(nonce, None)


class Wallet(Signer):
    """Sends every transaction of `account` (Chain.transact with the wallet as its sender)."""

    def __init__(self, account: LocalAccount, journal: Journal | None = None, fees: FeePolicy = FeePolicy(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.account = account
        self.address = account.address
        self.journal: Journal = journal if journal is not None else MemoryJournal()
        self.fees = fees
        self.clock = clock
        self.sent = 0  # versions broadcast, re-sends included
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Ends the wait of a transaction being sent (the node stops): it stays in the journal,
        and the next one sent after a restart replaces it."""
        self._stopped.set()

    def send(self, chain: Chain, tx: TxParams) -> TxReceipt:
        duty, deadline = DUTY.get() or ("", 0)
        for _ in range(3):  # a nonce another version took: once more with the next one
            receipt = self._send(chain, dict(tx), duty, deadline)
            if receipt is not None:
                return receipt
        raise errors.TransactionNotMined("the account's nonce kept being taken by other transactions")

    def _send(self, chain: Chain, tx: dict[str, Any], duty: str, deadline: int) -> TxReceipt | None:
        w3 = chain.w3
        leftover = self._leftover(chain)
        tx.pop("gasPrice", None)
        tx.update(type=2, chainId=chain.chain_id,
                  nonce=leftover.nonce if leftover else w3.eth.get_transaction_count(self.address, "pending"))
        tx.update(self._bid(chain, leftover.tx if leftover else None))
        if leftover is not None:
            tx["gas"] = self._gas_without(chain, tx)
        flight = InFlight(duty, deadline, tx, leftover.hashes if leftover else ())
        mine: set[bytes] = set()  # the versions that carry this call
        flight = self._broadcast(chain, flight, mine)
        started = sent_at = self.clock()
        wait = 0.01
        while True:
            for tx_hash in flight.hashes:
                try:
                    receipt = w3.eth.get_transaction_receipt(Hash32(tx_hash))
                except TransactionNotFound:
                    continue
                self.journal.drop(flight.nonce)
                return receipt if tx_hash in mine else None  # else a version of a given-up call took the nonce
            if deadline and chain.timestamp() >= deadline:
                raise self._late(duty, deadline, flight)
            if not deadline and self.clock() - started >= self.fees.give_up_after:
                raise errors.TransactionNotMined(
                    f"a transaction was not mined within {self.fees.give_up_after:.0f} s; last bid "
                    f"{_gwei(flight.tx['maxFeePerGas'])} gwei per gas (the limit is --max-fee-gwei)")
            gone = self._gone(chain, flight)
            if gone and duty and not self._nonce_used(chain, flight):
                # Dropped, or mined and reorganised out before the wallet saw it: whether the duty
                # still needs it is the follower's to say (a close gone takes its answer's need).
                if deadline and chain.timestamp() >= deadline:
                    raise self._late(duty, deadline, flight)
                raise errors.TransactionNotMined(
                    f"{duty}: its transaction left the pool unmined (dropped, or reorganised out); the duty is "
                    "tried again at the next poll")
            if gone or self.clock() - sent_at >= self.fees.bump_after:
                if self._nonce_used(chain, flight):
                    if not any(self._mined(chain, h) for h in flight.hashes):
                        self.journal.drop(flight.nonce)  # another transaction of this key took the nonce
                        return None
                    continue  # one of the versions was mined meanwhile: its receipt comes next
                bid = self._bid(chain, flight.tx)
                if bid["maxFeePerGas"] > flight.tx["maxFeePerGas"] or gone:
                    flight = self._broadcast(chain, replace(flight, tx={**flight.tx, **bid}), mine)
                sent_at = self.clock()
            if self._stopped.wait(wait):
                raise errors.TransactionNotMined("the node stopped before the transaction was mined")
            wait = min(wait * 2, self.fees.poll)

    def _late(self, duty: str, deadline: int, flight: InFlight) -> errors.TransactionNotMined:
        return errors.TransactionNotMined(
            f"{duty or 'a transaction'} was not mined by its deadline (chain time {deadline}); last bid "
            f"{_gwei(flight.tx['maxFeePerGas'])} gwei per gas")

    def _leftover(self, chain: Chain) -> InFlight | None:
        """The one transaction a given-up call or a crash left in flight, if it is not mined; it
        is replaced by the next one sent. Mined ones are forgotten."""
        mined = chain.w3.eth.get_transaction_count(self.address, "latest")
        left = None
        for flight in self.journal.in_flight():
            if flight.nonce < mined:
                self.journal.drop(flight.nonce)
            elif left is None:
                left = flight
        return left

    def _gas_without(self, chain: Chain, tx: dict[str, Any]) -> int:
        """The gas limit of a call that replaces a transaction left in flight: it was simulated
        on top of that one (the pending block), and may need more without it."""
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        simulated: int = tx["gas"]
        try:
            gas = chain.w3.eth.estimate_gas(call, "latest")  # type: ignore[arg-type]
        except Exception:  # it reverts on the latest block (a time-bound call): keep the estimate
            return simulated
        return max(simulated, gas + gas // 5)

    def _bid(self, chain: Chain, before: dict[str, Any] | None) -> dict[str, int]:
        """Twice the next block's base fee plus the tip, capped at the limit; above `before`'s bid
        by bump_percent when it replaces it."""
        fees = self.fees
        base = chain.w3.eth.get_block("pending").get("baseFeePerGas", 0)
        tip = fees.priority_fee
        cap = 2 * base + tip
        if before is not None:
            raise_by = 1 + fees.bump_percent / 100
            tip = max(tip, math.ceil(before["maxPriorityFeePerGas"] * raise_by))
            cap = max(cap, math.ceil(before["maxFeePerGas"] * raise_by))
        cap = min(cap, fees.max_fee)
        return {"maxFeePerGas": cap, "maxPriorityFeePerGas": min(tip, cap)}

    def _broadcast(self, chain: Chain, flight: InFlight, mine: set[bytes]) -> InFlight:
        raw = self.account.sign_transaction(flight.tx)
        if bytes(raw.hash) not in flight.hashes:  # else the same version again, into a pool that lost it
            flight = replace(flight, hashes=(*flight.hashes, bytes(raw.hash)))
            self.journal.put(flight)  # before it can be mined: a restart then knows its nonce is used
        mine.add(bytes(raw.hash))
        try:
            chain.w3.eth.send_raw_transaction(raw.raw_transaction)
        except Exception as exc:
            text = str(exc).lower()
            if "already known" in text or "already imported" in text:
                return flight
            if "nonce too low" in text:
                return flight  # a version was mined: the wait finds its receipt
            if "underpriced" in text or "less than block base fee" in text:
                return flight  # the pool holds a better version, or wants more: bid more at the next bump
            raise reverts.translate(exc) from exc
        self.sent += 1
        return flight

    def _gone(self, chain: Chain, flight: InFlight) -> bool:
        """No version is in the node's pool or mined (dropped, or reorganised out)."""
        for tx_hash in flight.hashes:
            try:
                if chain.w3.eth.get_transaction(Hash32(tx_hash)) is not None:
                    return False
            except TransactionNotFound:
                continue
        return True

    def _mined(self, chain: Chain, tx_hash: bytes) -> bool:
        try:
            return chain.w3.eth.get_transaction_receipt(Hash32(tx_hash)) is not None
        except TransactionNotFound:
            return False

    def _nonce_used(self, chain: Chain, flight: InFlight) -> bool:
        return chain.w3.eth.get_transaction_count(self.address, "latest") > flight.nonce


def _gwei(wei: int) -> str:
    return f"{wei / GWEI:.3g}"
