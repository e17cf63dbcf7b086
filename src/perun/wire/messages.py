"""Peer messages and their binary encoding (docs/protocol.md §9).

A message is `protocol version (u8) | message type (u8) | body`, big-endian; the transport
(perun.wire.transport) encrypts each into one frame. Every body has a fixed layout of fields; all
have a fixed size except the length-prefixed ones: an Error's UTF-8 reason and the data of the
nanocontract messages. Decoding checks every length, range and flag, and raises
MalformedMessage for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, ClassVar, Self

from eth_utils import to_checksum_address

from perun import errors
from perun.core import announce
from perun.core.channel import Params, PaymentState
from perun.core.machine import SUMMARY_BUCKETS, SUMMARY_DIGEST
from perun.core.monitoring import MAX_REWARD
from perun.core.multistate import MAX_NANOCONTRACTS, ChannelState, Funding, NanocontractState
from perun.core.onion import FAILURE_SIZE, PACKET_SIZE
from perun.core.onion import VERSION as ONION_VERSION
from perun.core.route import MAX_HOPS

PROTOCOL_VERSION = 3
MAX_FRAME = 4096  # a message's bytes; a ChannelsAnnounce may fill it, the next largest (MonitorChannel with 16 fundings) has 1938
MAX_REASON = 256
MAX_BYTES = 1024  # a nanocontract's storage or a call's argument
FUNDING_SIZE = 96  # a Funding on the wire: nid, alice, bob (32 bytes each)
MAX_ANNOUNCEMENTS_BYTES = MAX_FRAME - 2 - 8 - 1 - 2  # what a ChannelsAnnounce leaves for its announcements


class ErrorCode(IntEnum):
    """Why a message was refused. Sent in Error messages; each maps to a PerunError class."""

    MALFORMED = 1
    UNKNOWN_TYPE = 2
    UNSUPPORTED_VERSION = 3
    TOO_LARGE = 4
    UNKNOWN_CHANNEL = 5
    WRONG_CHANNEL = 6
    INVALID_PARAMS = 7
    CHANNEL_REFUSED = 8
    WRONG_STAGE = 9
    ALREADY_FINAL = 10
    STALE_VERSION = 11
    CONFLICT = 12
    INVALID_SIGNATURE = 13
    BALANCES_NOT_CONSERVED = 14
    AMOUNT_OUT_OF_RANGE = 15
    BALANCE_DECREASED = 16
    INTERNAL = 17
    UNKNOWN_NANOCONTRACT = 18
    INVALID_NANOCONTRACT = 19
    APP_REJECTED = 20
    EXPIRED = 21
    RATE_LIMITED = 22


# The most specific class first: a subclass must map before its base.
_CODE_OF: tuple[tuple[type[errors.PerunError], ErrorCode], ...] = (
    (errors.ProposalExpired, ErrorCode.EXPIRED),
    (errors.MessageTooLarge, ErrorCode.TOO_LARGE),
    (errors.RateLimited, ErrorCode.RATE_LIMITED),
    (errors.UnknownMessageType, ErrorCode.UNKNOWN_TYPE),
    (errors.UnsupportedVersion, ErrorCode.UNSUPPORTED_VERSION),
    (errors.MalformedMessage, ErrorCode.MALFORMED),
    (errors.UnknownChannel, ErrorCode.UNKNOWN_CHANNEL),
    (errors.WrongChannel, ErrorCode.WRONG_CHANNEL),
    (errors.InvalidParams, ErrorCode.INVALID_PARAMS),
    (errors.ChannelRefused, ErrorCode.CHANNEL_REFUSED),
    (errors.AlreadyFinal, ErrorCode.ALREADY_FINAL),
    (errors.WrongStage, ErrorCode.WRONG_STAGE),
    (errors.UpdateConflict, ErrorCode.CONFLICT),
    (errors.StaleVersion, ErrorCode.STALE_VERSION),
    (errors.InvalidSignature, ErrorCode.INVALID_SIGNATURE),
    (errors.BalancesNotConserved, ErrorCode.BALANCES_NOT_CONSERVED),
    (errors.AmountOutOfRange, ErrorCode.AMOUNT_OUT_OF_RANGE),
    (errors.BalanceDecreased, ErrorCode.BALANCE_DECREASED),
    (errors.UnknownNanocontract, ErrorCode.UNKNOWN_NANOCONTRACT),
    (errors.InvalidNanocontract, ErrorCode.INVALID_NANOCONTRACT),
    (errors.AppRejected, ErrorCode.APP_REJECTED),
)


def code_of(exc: BaseException) -> ErrorCode:
    for cls, code in _CODE_OF:
        if isinstance(exc, cls):
            return code
    return ErrorCode.INTERNAL


# --------------------------------------------------------------------------- field kinds

_SIZES = {"u8": 1, "u16": 2, "u64": 8, "u256": 32, "b32": 32, "addr": 20, "sig": 65, "flag": 1,
          "onion": PACKET_SIZE, "failure": FAILURE_SIZE}
# u16 length, then at most this many bytes; "fundings" are a channel state's Funding list,
# "announcements" signed announcements one after the other (perun.core.announce)
_PREFIXED = {"text": MAX_REASON, "bytes": MAX_BYTES, "fundings": MAX_NANOCONTRACTS * FUNDING_SIZE,
             "announcements": MAX_ANNOUNCEMENTS_BYTES}


def _enc(kind: str, value: Any) -> bytes:
    if kind in ("u8", "u16", "u64", "u256"):
        return int(value).to_bytes(_SIZES[kind], "big")
    if kind == "flag":
        return b"\x01" if value else b"\x00"
    if kind == "addr":
        return bytes.fromhex(to_checksum_address(value)[2:])
    if kind == "text":
        # Cut to MAX_REASON bytes without splitting a character, so the reason stays UTF-8.
        text: str = value
        raw = text.encode()[:MAX_REASON].decode(errors="ignore").encode()
        return len(raw).to_bytes(2, "big") + raw
    if kind in ("bytes", "fundings", "announcements"):
        if len(value) > _PREFIXED[kind]:
            raise ValueError(f"{len(value)} bytes exceed the {_PREFIXED[kind]} a message carries")
        return len(value).to_bytes(2, "big") + bytes(value)
    if kind in ("onion", "failure") and len(value) != _SIZES[kind]:
        raise ValueError(f"an {kind} has {_SIZES[kind]} bytes, not {len(value)}")
    return bytes(value)  # b32, sig, onion, failure


def _dec(kind: str, raw: bytes) -> Any:
    if kind in ("u8", "u16", "u64", "u256"):
        return int.from_bytes(raw, "big")
    if kind == "flag":
        if raw not in (b"\x00", b"\x01"):
            raise errors.MalformedMessage(f"a flag is 0 or 1, got {raw[0]}")
        return raw == b"\x01"
    if kind == "addr":
        return to_checksum_address(raw)
    if kind == "text":
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise errors.MalformedMessage("the reason is not UTF-8") from exc
    return raw


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[int]
    LAYOUT: ClassVar[tuple[str, ...]]  # one kind per dataclass field, in order
    _NAMED: ClassVar[tuple[tuple[str, str], ...]]  # set by `encode`, per class

    def encode(self) -> bytes:
        cls = type(self)
        named = cls.__dict__.get("_NAMED")
        if named is None:  # each class's (kind, field) pairs, looked up once, not per message
            named = tuple(zip(cls.LAYOUT, (f.name for f in fields(cls))))
            cls._NAMED = named
        body = b"".join(_enc(kind, getattr(self, name)) for kind, name in named)
        return bytes((PROTOCOL_VERSION, cls.TYPE)) + body

    def _check(self) -> None:
        """Rules across a decoded message's fields that their kinds cannot state; MalformedMessage."""


@dataclass(frozen=True)
class Error(Message):
    """A refusal of the message of type `ref_type` about (`channel_id`, `version`).

    `signed` is the highest version the sender signed on that channel, so that a proposer
    whose update conflicted knows which versions are burned. A refusal is about one slot: for a
    NanocontractCall, `channel_id` carries the nanocontract's nid and `version` the refused
    nanocontract version; for the other multistate messages, the channel id and the refused
    channel version.
    """

    TYPE = 3
    LAYOUT = ("u16", "u8", "b32", "u64", "u64", "text")
    code: int
    ref_type: int
    channel_id: bytes
    version: int
    signed: int
    reason: str


@dataclass(frozen=True)
class _ChannelProposal(Message):
    """The parameters of a channel to open: shared by the payment and the multistate proposal,
    which differ only in their type (and so in the contract the channel lives on)."""

    LAYOUT = ("addr", "addr", "addr", "u256", "u256", "u64", "u256")
    alice: str
    bob: str
    token: str
    deposit_alice: int
    deposit_bob: int
    delta: int
    nonce: int

    @classmethod
    def of(cls, params: Params) -> Self:
        return cls(params.alice, params.bob, params.token, params.deposit_alice, params.deposit_bob,
                   params.delta, params.nonce)

    def params(self) -> Params:
        return Params(self.alice, self.bob, self.deposit_alice, self.deposit_bob, self.delta, self.nonce, self.token)


@dataclass(frozen=True)
class ProposeChannel(_ChannelProposal):
    """Alice asks Bob to open a channel with these parameters (on the handshake's contract)."""

    TYPE = 4


@dataclass(frozen=True)
class ProposeMultistate(_ChannelProposal):
    """Alice asks Bob to open a multistate channel with these parameters (on the MSContract the
    nodes were configured with)."""

    TYPE = 10


@dataclass(frozen=True)
class AcceptChannel(Message):
    """Bob agrees to a ProposeChannel or a ProposeMultistate; Alice may create the channel on
    chain. One message serves both: the channel id names the contract too."""

    TYPE = 5
    LAYOUT = ("b32",)
    channel_id: bytes


@dataclass(frozen=True)
class Update(Message):
    """A state signed by its proposer, built on version `prev`. `final` marks a FinalState."""

    TYPE = 6
    LAYOUT = ("b32", "u64", "u64", "u256", "u256", "flag", "sig")
    channel_id: bytes
    version: int
    prev: int
    balance_alice: int
    balance_bob: int
    final: bool
    signature: bytes


@dataclass(frozen=True)
class UpdateAck(Message):
    """The receiver's countersignature on the update at `version`."""

    TYPE = 7
    LAYOUT = ("b32", "u64", "sig")
    channel_id: bytes
    version: int
    signature: bytes


@dataclass(frozen=True)
class Reestablish(Message):
    """After (re)connecting, for each shared channel: my latest fully signed version and
    the highest version I signed."""

    TYPE = 8
    LAYOUT = ("b32", "u64", "u64")
    channel_id: bytes
    current: int
    signed: int


@dataclass(frozen=True)
class ReestablishDone(Message):
    """After (re)connecting: the sender sent a Reestablish for each shared channel it has proposals
    in flight on; a ReestablishSummary of the others follows once the peer's ReestablishDone came."""

    TYPE = 17
    LAYOUT = ()


@dataclass(frozen=True)
class ReestablishSummary(Message):
    """The shared channels neither party sent a Reestablish of: per bucket of channel ids, a
    digest of their ids and current versions; and `offset`, the most any of them signed above
    its current version."""

    TYPE = 18
    LAYOUT = ("u64", "bytes")
    offset: int
    digests: bytes

    def _check(self) -> None:
        if len(self.digests) != SUMMARY_BUCKETS * SUMMARY_DIGEST:
            raise errors.MalformedMessage(f"ReestablishSummary has {len(self.digests)} bytes of digests, not "
                                          f"{SUMMARY_BUCKETS * SUMMARY_DIGEST}")


@dataclass(frozen=True)
class StateSync(Message):
    """A fully signed state the peer lacks."""

    TYPE = 9
    LAYOUT = ("b32", "u64", "u256", "u256", "flag", "sig", "sig")
    channel_id: bytes
    version: int
    balance_alice: int
    balance_bob: int
    final: bool
    sig_alice: bytes
    sig_bob: bytes


@dataclass(frozen=True)
class NanocontractCreate(Message):
    """A new nanocontract of `app`, blocking `blocked_alice` / `blocked_bob` and holding `data`
    as its storage: the proposer's signatures on the channel state at `version` (built on channel
    version `prev`) that funds it and moves `fee` of the proposer's cash to the receiver, and on
    the nanocontract at version 0, whose nid is nanocontract_id(channel_id, version). The
    receiver rebuilds both from its own latest channel state. Like every multistate proposal, it
    is refused after `expires` (Unix time in ms; 0: never), the end of the seed's reply time T."""

    TYPE = 11
    LAYOUT = ("b32", "u64", "u64", "u64", "addr", "u256", "u256", "u256", "bytes", "sig", "sig")
    channel_id: bytes
    version: int
    prev: int
    expires: int
    app: str
    blocked_alice: int
    blocked_bob: int
    fee: int
    data: bytes
    sig_channel: bytes
    sig_nanocontract: bytes


@dataclass(frozen=True)
class NanocontractCall(Message):
    """The proposer calls function `fun` of nanocontract `nid` with argument `z`: its signature
    on the nanocontract at `version`, built on version `prev`, which the receiver recomputes."""

    TYPE = 12
    LAYOUT = ("b32", "b32", "u64", "u64", "u64", "u8", "bytes", "sig")
    channel_id: bytes
    nid: bytes
    version: int
    prev: int
    expires: int
    fun: int
    z: bytes
    sig_nanocontract: bytes


@dataclass(frozen=True)
class NanocontractAbsorb(Message):
    """The proposer's signature on the channel state at `version` (built on `prev`) that removes
    terminated nanocontract `nid` and returns what it released to the cash."""

    TYPE = 13
    LAYOUT = ("b32", "b32", "u64", "u64", "u64", "sig")
    channel_id: bytes
    nid: bytes
    version: int
    prev: int
    expires: int
    sig_channel: bytes


@dataclass(frozen=True)
class NanocontractAck(Message):
    """The receiver's countersignatures on the proposal on `slot` (the nid for a call, 32 zero
    bytes for the channel state) at `version` (the nanocontract's for a call, the channel's
    otherwise). Each signature is empty when the proposal signed no such struct."""

    TYPE = 14
    LAYOUT = ("b32", "b32", "u64", "bytes", "bytes")
    channel_id: bytes
    slot: bytes
    version: int
    sig_channel: bytes
    sig_nanocontract: bytes

    def _check(self) -> None:
        for sig in (self.sig_channel, self.sig_nanocontract):
            if len(sig) not in (0, _SIZES["sig"]):
                raise errors.MalformedMessage(f"NanocontractAck has a signature of {len(sig)} bytes, not 0 or 65")


@dataclass(frozen=True)
class VirtualClose(Message):
    """An end of virtual channel `channel_id` gives Ingrid its final state, signed by Alice and
    by Bob, so that she settles both halves with it (the fast close). Ingrid answers with her
    SETTLE calls on the halves, or an Error."""

    TYPE = 15
    LAYOUT = ("b32", "u64", "u256", "u256", "sig", "sig")
    channel_id: bytes
    version: int
    balance_alice: int
    balance_bob: int
    sig_alice: bytes
    sig_bob: bytes


@dataclass(frozen=True)
class MultistateClose(Message):
    """The cooperative close of a multistate channel: the proposer's signature on the
    FinalChannelState at `version` with the cash of its channel state at `prev` (no nanocontract
    live), which the receiver rebuilds from its own. Acknowledged with a NanocontractAck on the
    channel's slot; refused after `expires`, as the other multistate proposals."""

    TYPE = 16
    LAYOUT = ("b32", "u64", "u64", "u64", "sig")
    channel_id: bytes
    version: int
    prev: int
    expires: int
    sig_final: bytes


@dataclass(frozen=True)
class Monitor(Message):
    """A party hands a watchtower its latest state of a payment channel (docs/protocol.md §12):
    the channel's parameters (as ProposeChannel carries them), the state's version and balances,
    the other party's signature on it, the reward the party pays the tower should its refutation
    stand, and the party's signature on the Monitoring that authorises the tower. The tower
    rebuilds that Monitoring itself (itself as tower, the channel's own slot, the state's digest
    in the channel contract's domain), so no field of it travels but the reward."""

    TYPE = 19
    LAYOUT = ("addr", "addr", "addr", "u256", "u256", "u64", "u256", "u64", "u256", "u256", "sig", "u256", "sig")
    alice: str
    bob: str
    token: str
    deposit_alice: int
    deposit_bob: int
    delta: int
    nonce: int
    version: int
    balance_alice: int
    balance_bob: int
    signature: bytes  # the other party's, on the state
    reward: int
    authorisation: bytes  # the party's, on the Monitoring

    def _check(self) -> None:
        if self.reward > MAX_REWARD:  # the contract stores a reward in 88 bits
            raise errors.MalformedMessage(f"Monitor names a reward of {self.reward}, more than {MAX_REWARD}")

    @classmethod
    def of(cls, params: Params, state: PaymentState, signature: bytes, reward: int, authorisation: bytes) -> Monitor:
        return cls(params.alice, params.bob, params.token, params.deposit_alice, params.deposit_bob, params.delta,
                   params.nonce, state.version, state.balance_alice, state.balance_bob, signature, reward,
                   authorisation)

    def params(self) -> Params:
        return Params(self.alice, self.bob, self.deposit_alice, self.deposit_bob, self.delta, self.nonce, self.token)


@dataclass(frozen=True)
class MonitorAck(Message):
    """The tower stored the state of channel `channel_id` at `version` (the latest it holds)."""

    TYPE = 20
    LAYOUT = ("b32", "u64")
    channel_id: bytes
    version: int


def _monitoring_reward(cls: type, reward: int) -> None:
    if reward > MAX_REWARD:  # the contract stores a reward in 88 bits
        raise errors.MalformedMessage(f"{cls.__name__} names a reward of {reward}, more than {MAX_REWARD}")


@dataclass(frozen=True)
class MonitorChannel(Message):
    """A party hands a watchtower its latest channel state of a multistate channel (docs/protocol.md
    §12): the channel's parameters, the state (version, cash, and its fundings: `fundings` holds
    each Funding as nid, alice, bob, 32 bytes each, in the state's order), the other party's
    signature on it, the reward, and the party's signature on the Monitoring (nid 0) that the
    tower rebuilds itself, as for Monitor."""

    TYPE = 21
    LAYOUT = ("addr", "addr", "addr", "u256", "u256", "u64", "u256", "u64", "u256", "u256", "fundings", "sig", "u256",
              "sig")
    alice: str
    bob: str
    token: str
    deposit_alice: int
    deposit_bob: int
    delta: int
    nonce: int
    version: int
    cash_alice: int
    cash_bob: int
    fundings: bytes
    signature: bytes  # the other party's, on the channel state
    reward: int
    authorisation: bytes  # the party's, on the Monitoring

    def _check(self) -> None:
        if len(self.fundings) % FUNDING_SIZE:
            raise errors.MalformedMessage(f"MonitorChannel has {len(self.fundings)} bytes of fundings, not a multiple "
                                          f"of {FUNDING_SIZE}")
        _monitoring_reward(type(self), self.reward)

    @classmethod
    def of(cls, params: Params, state: ChannelState, signature: bytes, reward: int,
           authorisation: bytes) -> MonitorChannel:
        fundings = b"".join(f.nid + f.alice.to_bytes(32, "big") + f.bob.to_bytes(32, "big")
                            for f in state.nanocontracts)
        return cls(params.alice, params.bob, params.token, params.deposit_alice, params.deposit_bob, params.delta,
                   params.nonce, state.version, state.cash_alice, state.cash_bob, fundings, signature, reward,
                   authorisation)

    def params(self) -> Params:
        return Params(self.alice, self.bob, self.deposit_alice, self.deposit_bob, self.delta, self.nonce, self.token)

    def state(self, channel_id: bytes) -> ChannelState:
        """The channel state it carries (a ValidationError for an amount out of range)."""
        raw = self.fundings
        fundings = tuple(Funding(raw[i:i + 32], int.from_bytes(raw[i + 32:i + 64], "big"),
                                 int.from_bytes(raw[i + 64:i + 96], "big")) for i in range(0, len(raw), FUNDING_SIZE))
        return ChannelState(channel_id, self.version, self.cash_alice, self.cash_bob, fundings)


@dataclass(frozen=True)
class MonitorNanocontract(Message):
    """A party hands a watchtower the latest state of a nanocontract of a multistate channel whose
    channel state it handed over before (MonitorChannel): the state, the other party's signature
    on it, the reward, and the party's signature on the Monitoring (nid = the nanocontract's)."""

    TYPE = 22
    LAYOUT = ("b32", "b32", "addr", "u64", "u256", "u256", "u256", "u256", "bytes", "sig", "u256", "sig")
    channel_id: bytes
    nid: bytes
    app: str
    version: int
    blocked_alice: int
    blocked_bob: int
    released_alice: int
    released_bob: int
    data: bytes
    signature: bytes  # the other party's, on the nanocontract state
    reward: int
    authorisation: bytes  # the party's, on the Monitoring

    def _check(self) -> None:
        _monitoring_reward(type(self), self.reward)

    @classmethod
    def of(cls, state: NanocontractState, signature: bytes, reward: int, authorisation: bytes) -> MonitorNanocontract:
        return cls(state.channel_id, state.nid, state.app, state.version, state.blocked_alice, state.blocked_bob,
                   state.released_alice, state.released_bob, state.storage, signature, reward, authorisation)

    def state(self) -> NanocontractState:
        """The nanocontract state it carries (a ValidationError for an amount out of range)."""
        return NanocontractState(self.channel_id, self.nid, self.app, self.version, self.blocked_alice,
                                 self.blocked_bob, self.released_alice, self.released_bob, self.data)


@dataclass(frozen=True)
class MonitorCall(Message):
    """A party hands a watchtower the one call `fun(z)` of nanocontract `nid` in multistate channel
    `channel_id` that the tower may make on its behalf (executeFor), with the reward and the
    party's signature on the Execution, which the tower rebuilds itself. Towers take VirtualChannel's
    SETTLE with the party's latest γ state signed by both ends; a later one replaces it."""

    TYPE = 23
    LAYOUT = ("b32", "b32", "u8", "bytes", "u256", "sig")
    channel_id: bytes
    nid: bytes
    fun: int
    z: bytes
    reward: int
    authorisation: bytes  # the party's, on the Execution

    def _check(self) -> None:
        _monitoring_reward(type(self), self.reward)


@dataclass(frozen=True)
class MonitorNanoAck(Message):
    """The tower stored, for nanocontract `nid` of channel `channel_id`, its state at `version`
    (`call` false: a MonitorNanocontract), or the call whose argument carries `version` (`call`
    true: a MonitorCall; for SETTLE, the γ state's version): the latest it holds."""

    TYPE = 24
    LAYOUT = ("b32", "b32", "flag", "u64")
    channel_id: bytes
    nid: bytes
    call: bool
    version: int


@dataclass(frozen=True)
class LockOnion(Message):
    """The onion (docs/protocol.md §13.4) for the HashTimeLock that the NanocontractCreate sent
    right after it proposes in channel `channel_id` at channel `version`: the receiver peels it
    with the lock's hashlock as the payment hash, and forwards or claims (multi-hop payments).
    Sent again before each repetition of that proposal. Decoding checks the packet's version
    byte and that its ephemeral key is a compressed point's encoding (peeling checks the rest)."""

    TYPE = 25
    LAYOUT = ("b32", "u64", "onion")
    channel_id: bytes
    version: int
    packet: bytes

    def _check(self) -> None:
        if self.packet[0] != ONION_VERSION:
            raise errors.MalformedMessage(f"LockOnion carries onion version {self.packet[0]}, not {ONION_VERSION}")
        if self.packet[1] not in (2, 3):
            raise errors.MalformedMessage("LockOnion's ephemeral key is not a compressed public key")


@dataclass(frozen=True)
class LockFailure(Message):
    """A failure (docs/protocol.md §13.6) for the payer of the HashTimeLock `nid` in channel
    `channel_id`, which the sender of this message received and cancels right after it (the
    NanocontractCall of CANCEL follows; sent again before each repetition of that call). The
    receiver, the lock's sender, passes it on upstream once the CANCEL is signed by both. The
    blob is opaque to all but the payer: decoding checks its size only."""

    TYPE = 26
    LAYOUT = ("b32", "b32", "failure")
    channel_id: bytes
    nid: bytes
    failure: bytes


@dataclass(frozen=True)
class ChannelsQuery(Message):
    """Asks the peer for its announcement (docs/protocol.md §13.8) and, for `depth` > 1, those
    it gathers by asking its own peers with depth − 1. `query` names the question: the peer
    answers with it, and passes it on with the same number, so that a node asked the same
    question twice (the network has cycles) does not ask its peers again."""

    TYPE = 27
    LAYOUT = ("u64", "u8")
    query: int
    depth: int

    def _check(self) -> None:
        if not 1 <= self.depth <= MAX_HOPS:
            raise errors.MalformedMessage(f"ChannelsQuery asks for depth {self.depth}, not 1..{MAX_HOPS}")


@dataclass(frozen=True)
class ChannelsAnnounce(Message):
    """Part of the answer to ChannelsQuery `query`: signed announcements one after the other
    (each checked when decoded: a bad one is dropped, not the message); `last` ends the answer."""

    TYPE = 28
    LAYOUT = ("u64", "flag", "announcements")
    query: int
    last: bool
    announcements: bytes

    def parts(self) -> list[bytes]:
        """Each announcement's bytes."""
        return announce.split(self.announcements)

    def _check(self) -> None:
        try:
            self.parts()
        except errors.InvalidAnnouncement as exc:
            raise errors.MalformedMessage(f"ChannelsAnnounce: {exc}") from exc


MESSAGES: dict[int, type[Message]] = {
    cls.TYPE: cls for cls in (
        Error, ProposeChannel, AcceptChannel, Update, UpdateAck, Reestablish, StateSync,
        ProposeMultistate, NanocontractCreate, NanocontractCall, NanocontractAbsorb, NanocontractAck, VirtualClose,
        MultistateClose, ReestablishDone, ReestablishSummary, Monitor, MonitorAck, MonitorChannel,
        MonitorNanocontract, MonitorCall, MonitorNanoAck, LockOnion, LockFailure, ChannelsQuery, ChannelsAnnounce,
    )
}


def decode(version: int, type_: int, body: bytes) -> Message:
    """One message from a frame's version, type and body."""
    if version != PROTOCOL_VERSION:
        raise errors.UnsupportedVersion(f"protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})")
    cls = MESSAGES.get(type_)
    if cls is None:
        raise errors.UnknownMessageType(f"unknown message type {type_}")
    values: list[Any] = []
    offset = 0
    for kind in cls.LAYOUT:
        if kind in _PREFIXED:
            if len(body) < offset + 2:
                raise errors.MalformedMessage(f"{cls.__name__} is truncated")
            size = int.from_bytes(body[offset:offset + 2], "big")
            offset += 2
            if size > _PREFIXED[kind]:
                raise errors.MalformedMessage(f"{cls.__name__} has a {kind} field of {size} bytes, "
                                              f"more than {_PREFIXED[kind]}")
        else:
            size = _SIZES[kind]
        if len(body) < offset + size:
            raise errors.MalformedMessage(f"{cls.__name__} is truncated")
        values.append(_dec(kind, body[offset:offset + size]))
        offset += size
    if offset != len(body):
        raise errors.MalformedMessage(f"{cls.__name__} has {len(body) - offset} bytes too many")
    message = cls(*values)
    message._check()
    return message


def decode_message(raw: bytes) -> Message:
    """A message from its bytes: version, type and body."""
    if len(raw) < 2:
        raise errors.MalformedMessage(f"a message of {len(raw)} bytes has no version and type")
    return decode(raw[0], raw[1], raw[2:])
