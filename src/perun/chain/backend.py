"""A connection to an Ethereum chain: transactions signed locally, and time control.

`EmbeddedChain` runs py-evm in this process (eth-tester): the default for the demo and most tests.
`RpcChain` talks JSON-RPC to any node; on anvil (or another dev node with the `evm_*` methods)
it can also move time. Both offer the same interface, so code and tests run on either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import URI, ChecksumAddress
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract.contract import Contract, ContractFunction
from web3.exceptions import BlockNotFound
from web3.types import RPCEndpoint, TxParams, TxReceipt, Wei

from perun import errors
from perun.chain import reverts
from perun.chain.artifacts import load


class Signer:
    """A sender that sends transactions itself (perun.chain.wallet.Wallet: nonce, fees, re-sends)."""

    address: ChecksumAddress

    def send(self, chain: Chain, tx: TxParams) -> TxReceipt:
        """Signs and sends `tx` (built and simulated, without nonce or fees); returns its receipt
        once mined."""
        raise NotImplementedError


# A key we hold, an account the node unlocks (dev chains only), or a node's wallet.
Sender = LocalAccount | str | Signer

ETHER = 10**18


@dataclass(frozen=True)
class Transaction:
    """A mined transaction (`Chain.transact` returns only successful ones)."""

    receipt: TxReceipt

    @property
    def gas_used(self) -> int:
        return self.receipt["gasUsed"]

    @property
    def block_number(self) -> int:
        return self.receipt["blockNumber"]


@dataclass(frozen=True)
class Head:
    """The latest block, as one request reads it."""

    number: int
    hash: bytes
    timestamp: int
    parent: bytes  # the hash of block number - 1 on the same chain


class Chain:
    """What the rest of the package needs from a chain. Subclasses add the time control."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.chain_id: int = w3.eth.chain_id
        # Called with each transaction this object mined, reverted ones too (the scenario
        # recorder); may be called from a node's chain thread.
        self.observers: list[Callable[[TxParams, Transaction], None]] = []

    # ------------------------------------------------------------------ accounts

    @property
    def dev_accounts(self) -> list[str]:
        """Accounts the node unlocks and funds (empty on a real network)."""
        return list(self.w3.eth.accounts)

    def new_account(self, funds: int = 0) -> LocalAccount:
        """A fresh key, optionally funded from the first dev account."""
        account: LocalAccount = Account.create()  # (eth-account's combomethod hides the type)
        if funds:
            self.fund(account.address, funds)
        return account

    def fund(self, address: str, amount: int) -> None:
        if not self.dev_accounts:
            raise errors.ChainError("this chain has no unlocked dev account to fund from")
        tx_hash = self.w3.eth.send_transaction(
            {"from": self.dev_accounts[0], "to": to_checksum_address(address), "value": Wei(amount)}
        )
        self._wait(tx_hash)

    def balance(self, address: str) -> int:
        return self.w3.eth.get_balance(to_checksum_address(address))

    # ------------------------------------------------------------------ transactions

    def transact(self, sender: Sender, call: ContractFunction, value: int = 0) -> Transaction:
        """Sends `call` from `sender` and waits for it to be mined.

        The call is simulated first, so a contract's custom error comes back as its typed
        exception (see perun.errors) and no transaction is sent.
        """
        address = sender if isinstance(sender, str) else sender.address
        params: TxParams = {"from": address, "value": Wei(value)}
        try:
            tx = call.build_transaction({**params, "gas": self._simulate(call, params)})
        except Exception as exc:
            raise reverts.translate(exc) from exc
        return self._send(sender, tx)

    def _simulate(self, call: ContractFunction, params: TxParams) -> int:
        """Runs `call` against the pending block (it carries the timestamp set for the next
        block); returns the gas limit to send it with. Raises what the node raises on revert."""
        gas = call.estimate_gas(params, block_identifier="pending")
        return gas + gas // 5

    def deploy(self, sender: Sender, name: str, *args: Any) -> str:
        """Deploys the artifact `name`; returns its address."""
        artifact = load(name)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        address = sender if isinstance(sender, str) else sender.address
        try:
            tx = factory.constructor(*args).build_transaction({"from": address})
        except Exception as exc:
            raise reverts.translate(exc) from exc
        created = self._send(sender, tx).receipt["contractAddress"]
        if created is None:
            raise errors.TransactionFailed(f"deploying {name} created no contract")
        return created

    def contract(self, name: str, address: str) -> Contract:
        """A web3 contract object for the artifact `name` at `address`."""
        return self.w3.eth.contract(address=to_checksum_address(address), abi=load(name)["abi"])

    def _send(self, sender: Sender, tx: TxParams) -> Transaction:
        if isinstance(sender, Signer):
            return self._mined(tx, sender.send(self, tx))
        try:
            if isinstance(sender, str):
                tx_hash = self.w3.eth.send_transaction(tx)
            else:
                tx["nonce"] = self.w3.eth.get_transaction_count(sender.address, "pending")
                tx["chainId"] = self.chain_id
                # (eth-account types a transaction as a plain dict; web3's TxParams is one.)
                signed = sender.sign_transaction(cast(dict[str, Any], tx))
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            raise reverts.translate(exc) from exc
        return self._mined(tx, self._wait(tx_hash))

    def _mined(self, tx: TxParams, receipt: TxReceipt) -> Transaction:
        mined = Transaction(receipt)
        for observe in self.observers:  # a reverted transaction was mined, and its gas paid, too
            observe(tx, mined)
        if receipt["status"] != 1:
            raise errors.TransactionFailed(f"transaction 0x{bytes(receipt['transactionHash']).hex()} reverted")
        return mined

    def _wait(self, tx_hash: HexBytes) -> TxReceipt:
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.05)

    # ------------------------------------------------------------------ time

    def genesis_hash(self) -> str:
        """The hash of block 0: a chain that was reset under the same chain id has another."""
        return "0x" + bytes(self.w3.eth.get_block(0)["hash"]).hex()

    def timestamp(self) -> int:
        """The timestamp of the latest block."""
        return self.w3.eth.get_block("latest")["timestamp"]

    def block_number(self) -> int:
        return self.w3.eth.block_number

    def head(self) -> Head:
        block = self.w3.eth.get_block("latest")
        return Head(block["number"], bytes(block["hash"]), block["timestamp"], bytes(block["parentHash"]))

    def block_hash(self, number: int) -> bytes | None:
        """The hash of block `number` on the chain as it is now; None above the head."""
        try:
            return bytes(self.w3.eth.get_block(number)["hash"])
        except BlockNotFound:
            return None

    def set_next_block_timestamp(self, timestamp: int) -> None:
        """The next block, and so the next transaction, gets exactly `timestamp`."""
        raise errors.ChainError(f"{type(self).__name__} cannot move time")

    def mine(self, blocks: int = 1) -> None:
        raise errors.ChainError(f"{type(self).__name__} cannot mine on demand")

    def advance_time(self, seconds: int) -> None:
        """Mines a block `seconds` after the latest one."""
        self.set_next_block_timestamp(self.timestamp() + seconds)
        self.mine()

    def close(self) -> None:
        """Releases what the chain holds (subclasses that start processes stop them)."""


class EmbeddedChain(Chain):
    """py-evm in this process, through eth-tester. Fast, private, gone when the process ends."""

    GAS_LIMIT = 3_000_000

    def _simulate(self, call: ContractFunction, params: TxParams) -> int:
        # One execution instead of estimate_gas's binary search (about 14 of them); the gas
        # used, and so every figure measured here, does not depend on the limit.
        call.call({**params, "gas": self.GAS_LIMIT}, block_identifier="pending")
        return self.GAS_LIMIT
    def __init__(self) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider

        self.tester = EthereumTester(PyEVMBackend())
        super().__init__(Web3(EthereumTesterProvider(self.tester)))

    def set_next_block_timestamp(self, timestamp: int) -> None:
        pending = self.tester.get_block_by_number("pending")["timestamp"]
        if timestamp < pending:
            raise errors.ChainError(f"cannot move time back from {pending} to {timestamp}")
        # eth-tester mines a block at timestamp - 1; the pending block then has `timestamp`.
        self.tester.time_travel(timestamp)

    def mine(self, blocks: int = 1) -> None:
        self.tester.mine_blocks(blocks)

    def advance_time(self, seconds: int) -> None:
        # time_travel(t) mines the block at t - 1 itself.
        self.set_next_block_timestamp(self.timestamp() + seconds + 1)

    def snapshot(self) -> int:
        return cast(int, self.tester.take_snapshot())  # (eth-tester is untyped)

    def revert_to(self, snapshot: int) -> None:
        from eth_tester.exceptions import SnapshotNotFound

        try:
            self.tester.revert_to_snapshot(snapshot)
        except SnapshotNotFound:
            raise errors.ChainError(f"no snapshot {snapshot} to revert to") from None


class Endpoints(HTTPProvider):
    """JSON-RPC over HTTP to the first of `urls` that answers, tried in the order given (the
    others are fallbacks), each request anew. No retries of its own: a node's follower retries
    with back-off, and a command fails at once. ChainUnreachable when none answers."""

    def __init__(self, urls: Sequence[str], timeout: float) -> None:
        super().__init__(urls[0], request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        self.urls = [URI(url) for url in urls]

    def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        for url in self.urls:
            try:
                return self._request_session_manager.make_post_request(url, request_data,
                                                                       **self.get_request_kwargs())
            except (requests.ConnectionError, requests.Timeout, requests.HTTPError):
                continue
        raise errors.ChainUnreachable(f"no JSON-RPC node answers at {', '.join(self.urls)}")


class RpcChain(Chain):
    """Any JSON-RPC node, or the first that answers of several (fallbacks, in order). Time
    control needs a dev node (anvil, hardhat)."""

    def __init__(self, url: str | Sequence[str], timeout: float = 30) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        w3 = Web3(Endpoints(urls, timeout))
        try:
            w3.eth.chain_id  # noqa: B018 -- the first request, which raises if no node answers
        except errors.ChainUnreachable:
            raise errors.ChainUnreachable(f"no JSON-RPC node answers at {', '.join(urls)}") from None
        self.url = urls[0]
        self.urls = urls
        super().__init__(w3)

    def _dev_rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(RPCEndpoint(method), params)
        if "error" in response:
            raise errors.ChainError(f"{method} failed: {response['error']}")
        return response.get("result")

    def head(self) -> Head:
        # A follower's every poll asks this, most of them to find nothing new: the answer as the
        # node sends it, without web3's formatting of the whole block (a quarter of a quiet poll).
        block = self._dev_rpc("eth_getBlockByNumber", ["latest", False])
        return Head(int(block["number"], 16), bytes.fromhex(block["hash"][2:]), int(block["timestamp"], 16),
                    bytes.fromhex(block["parentHash"][2:]))

    def set_next_block_timestamp(self, timestamp: int) -> None:
        self._dev_rpc("evm_setNextBlockTimestamp", [hex(timestamp)])

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self._dev_rpc("evm_mine", [])

    def snapshot(self) -> int:
        return int(self._dev_rpc("evm_snapshot", []), 16)

    def revert_to(self, snapshot: int) -> None:
        # anvil and Hardhat answer false, not an error, for a snapshot they do not have (one
        # already reverted to, or taken after it): the chain would go on unreverted.
        if self._dev_rpc("evm_revert", [hex(snapshot)]) is not True:
            raise errors.ChainError(f"no snapshot {snapshot} to revert to")
