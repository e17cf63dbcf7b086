"""What the Python bindings of PaymentContract and MSContract share: the functions of their
common base contract `Channels` (opening, withdrawals, views), events and transactions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self, cast

from eth_utils import to_checksum_address
from web3.contract.contract import ContractEvent
from web3.types import BlockIdentifier

from perun.chain.backend import Chain, Sender, Transaction
from perun.core.channel import ETH, Params, Phase
from perun.core.eip712 import Domain
from perun.core.monitoring import Execution, Monitoring


@dataclass(frozen=True)
class Event:
    """A decoded contract event."""

    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: bytes
    log_index: int


@dataclass(frozen=True)
class OnChainChannel:
    """What the contract stores for a channel (Channels.Channel)."""

    phase: Phase
    deadline: int
    version: int
    balance_alice: int
    rewards: int = 0  # bits: 1 a tower's reward for the registered state, 2 for nanocontracts


@dataclass(frozen=True)
class Receipt:
    """A mined call: its gas and the events it emitted."""

    transaction: Transaction
    events: tuple[Event, ...]

    @property
    def gas_used(self) -> int:
        return self.transaction.gas_used

    def event(self, name: str) -> Event:
        """The only event called `name`; KeyError if there is none or several."""
        found = [e for e in self.events if e.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} {name} events in {[e.name for e in self.events]}")
        return found[0]


class ChannelsContract:
    """A deployed contract built on `Channels`, named `name` in the artifacts."""

    name = ""
    domain_name = ""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.address = to_checksum_address(address)
        self.contract = chain.contract(self.name, self.address)
        self.domain = Domain(chain.chain_id, self.address, name=self.domain_name)
        self._events_by_topic = {
            bytes.fromhex(event.topic[2:]): (event.event_name, event)
            # (web3 annotates ContractEvents.__iter__ as returning an Iterable, not an Iterator)
            for event in (cls() for cls in cast(Iterable[ContractEvent], self.contract.events))
        }

    @classmethod
    def deploy(cls, chain: Chain, sender: Sender) -> Self:
        return cls(chain, chain.deploy(sender, cls.name))

    # ------------------------------------------------------------------ opening and withdrawals

    def create(self, sender: Sender, params: Params) -> Receipt:
        """Alice opens the channel and pays her deposit (approve ERC-20 tokens first)."""
        value = params.deposit_alice if params.token == ETH else 0
        return self._transact(sender, self.contract.functions.create(params.as_abi()), value)

    def confirm(self, sender: Sender, params: Params) -> Receipt:
        """Bob joins and pays his deposit."""
        value = params.deposit_bob if params.token == ETH else 0
        return self._transact(sender, self.contract.functions.confirm(params.as_abi()), value)

    def refund(self, sender: Sender, params: Params) -> Receipt:
        return self._transact(sender, self.contract.functions.refund(params.as_abi()))

    def approve(self, sender: Sender, token: str, amount: int) -> Receipt:
        """Lets this contract take `amount` of the ERC-20 `token` from the sender (before create
        or confirm)."""
        erc20 = self.chain.contract("TestToken", token)  # its ABI is ERC-20's
        return self._transact(sender, erc20.functions.approve(self.address, amount))

    def withdraw(self, sender: Sender, token: str, to: str) -> Receipt:
        """Sends the sender's deferred payouts in `token` to `to`."""
        return self._transact(sender, self.contract.functions.withdraw(token, to_checksum_address(to)))

    # ------------------------------------------------------------------ views

    def channel_id(self, params: Params) -> bytes:
        return params.channel_id(self.chain.chain_id, self.address)

    def channel(self, channel_id: bytes) -> OnChainChannel:
        phase, deadline, version, balance_alice, rewards = self.contract.functions.channel(channel_id).call()
        return OnChainChannel(Phase(phase), deadline, version, balance_alice, rewards)

    def authorisation_digest(self, authorisation: Monitoring | Execution) -> bytes:
        """The contract's own EIP-712 digest of a tower's authorisation, to check the Python one against."""
        if isinstance(authorisation, Monitoring):
            return bytes(self.contract.functions.hashMonitoring(authorisation.as_abi()).call())
        return bytes(self.contract.functions.hashExecution(authorisation.as_abi()).call())

    def owed(self, account: str, token: str = ETH) -> int:
        owed: int = self.contract.functions.owed(to_checksum_address(account), to_checksum_address(token)).call()
        return owed

    # ------------------------------------------------------------------ events

    def events(self, from_block: int = 0, to_block: BlockIdentifier = "latest") -> list[Event]:
        """Every event of this contract in the block range, in chain order."""
        logs = self.chain.w3.eth.get_logs(
            {"address": self.address, "fromBlock": from_block, "toBlock": to_block}
        )
        return [self._decode(log) for log in logs]

    def _decode(self, log: Any) -> Event:
        topic = bytes(log["topics"][0])
        if topic not in self._events_by_topic:
            raise ValueError(f"unknown {self.name} log topic 0x{topic.hex()}")
        name, event = self._events_by_topic[topic]
        args = _plain(event.process_log(log)["args"])
        return Event(name, args, log["blockNumber"], bytes(log["transactionHash"]), log["logIndex"])

    def receipt_events(self, receipt: Any) -> tuple[Event, ...]:
        """The event of this contracts in a transaction receipt."""
        return tuple(self._decode(log) for log in receipt["logs"] if log["address"] == self.address)

    def _transact(self, sender: Sender, call: Any, value: int = 0) -> Receipt:
        tx = self.chain.transact(sender, call, value)
        return Receipt(tx, self.receipt_events(tx.receipt))


def _plain(value: Any) -> Any:
    """AttributeDicts and HexBytes from web3, as plain dicts and bytes."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, bytes):
        return bytes(value)
    return value
