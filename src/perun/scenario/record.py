"""What a scenario run recorded: the timeline (steps, off-chain messages, on-chain transactions,
notes), balance samples and the verdict of each assertion. The runner fills it in; the report
(perun.scenario.report) reads it. Plain data, so both stay simple and a test can build one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CHAIN = "chain"  # the timeline's lane for on-chain transactions
Outcome = Literal["ok", "failed", "expected-error"]  # how a step ended
Fate = Literal["delivered", "dropped", "delayed", "replayed", "forged"]  # what the network did with a frame


@dataclass(frozen=True)
class Step:
    """A scenario step began (`outcome` None) or ended."""

    seq: int
    t: float  # seconds since the run started
    line: int  # in the scenario file
    index: int  # 1-based position in the step list
    text: str  # "alice pays 1 ETH on ab"
    outcome: Outcome | None = None
    detail: str = ""  # the error, for failed and expected-error


@dataclass(frozen=True)
class Message:
    """A frame between two parties as the network saw it."""

    seq: int
    t: float
    line: int  # of the step that was running
    sender: str  # party names
    receiver: str
    type: str  # Update, UpdateAck, Error, ...
    summary: str  # "v3 alice 9 ETH / bob 6 ETH", "STALE_VERSION: ..."
    fate: Fate = "delivered"


@dataclass(frozen=True)
class Transaction:
    """A transaction mined during the run."""

    seq: int
    t: float
    line: int
    sender: str  # a party's name, or its address if it is not a party
    function: str  # create, confirm, close, ...
    gas_used: int
    block: int
    timestamp: int  # the block's
    events: tuple[str, ...]  # "CloseRegistered(version=1)"
    tx_hash: str


@dataclass(frozen=True)
class Note:
    """Something that is neither a message nor a transaction: a node killed or restarted,
    time moved, a party going offline."""

    seq: int
    t: float
    line: int
    party: str | None  # None: the whole network or the chain
    text: str


Entry = Step | Message | Transaction | Note


@dataclass(frozen=True)
class Sample:
    """Balances after a step: wallets on chain and each channel's latest off-chain state."""

    seq: int
    label: str  # "start", "after step 4"
    wallets: dict[str, int]  # party -> wei (or token units for a token scenario), gas excluded
    channels: dict[str, dict[str, int]]  # channel -> party -> balance in its latest state


@dataclass(frozen=True)
class Verdict:
    """One assertion and what the run found."""

    line: int
    what: str  # "payout of ab: alice"
    expected: str
    found: str
    passed: bool


@dataclass(frozen=True)
class Channel:
    name: str
    id: str  # 0x-hex, "" until opened
    alice: str
    bob: str
    token: str  # "ETH" or the token's address
    deposits: tuple[int, int]
    kind: str = "payment"  # or "multistate", or "virtual" (its id is γ's, its deposits what Alice and Bob block)


@dataclass
class Recording:
    name: str  # the file's stem
    title: str
    description: str
    file: str
    chain: str  # "embedded" or the RPC URL
    parties: dict[str, str] = field(default_factory=dict)  # name -> address, in order of appearance
    towers: dict[str, str] = field(default_factory=dict)  # watchtowers: name -> address (no channel of their own)
    channels: dict[str, Channel] = field(default_factory=dict)
    unit: str = "ETH"  # of the wallet balances
    entries: list[Entry] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    error: str | None = None  # a step failed unexpectedly: the run stopped there
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and all(v.passed for v in self.verdicts)

    @property
    def transactions(self) -> list[Transaction]:
        return [e for e in self.entries if isinstance(e, Transaction)]

    @property
    def messages(self) -> list[Message]:
        return [e for e in self.entries if isinstance(e, Message)]

    @property
    def gas(self) -> int:
        return sum(tx.gas_used for tx in self.transactions)
