"""The interface between the runtime and a channel kind, and the registry that routes to kinds.

A protocol (perun.protocols.payment, .multistate, .virtual) owns some message types, the records
of its channels, and their duties on chain. The runtime knows no kind: it routes each message to
the protocol that owns its type, tells every protocol when a peer connects or refuses something,
asks each to read and apply its chain events and for the transactions due, and asks the one that
holds a channel for its record. Adding a kind means one new module with a `Protocol` subclass
and one `Registry.register` call (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from perun import errors
from perun.wire import messages as m
from perun.wire.transport import Connection


@dataclass(frozen=True)
class Duty:
    """A transaction a protocol wants sent now for `channel` (`what` names it in the log and in
    a failure's report); `run` sends it. A lost race or "too early" is no failure. The wallet
    bids up until `deadline` (chain time; 0 for none), after which the duty is moot."""

    what: str
    channel: bytes
    run: Callable[[], Awaitable[object]]
    deadline: int = 0


class Protocol:
    """A channel kind, as the runtime sees it. Every method has a harmless default, so a kind
    overrides only what it does."""

    kind: ClassVar[str]
    messages: ClassVar[tuple[type[m.Message], ...]] = ()  # routed here by type
    record_type: ClassVar[type]  # the records it keeps, which the runtime stores and puts back here
    crash_points: ClassVar[tuple[str, ...]] = ()

    records: dict[bytes, Any]

    # ------------------------------------------------------------------ records

    def record(self, cid: bytes) -> Any | None:
        """This kind's record of channel `cid`, if it holds one."""
        return self.records.get(cid)

    def put(self, rec: Any) -> None:
        """Puts a record being saved in memory (the runtime stores it in its commit)."""
        self.records[rec.channel_id] = rec

    # ------------------------------------------------------------------ peers

    async def receive(self, conn: Connection, msg: m.Message) -> None:
        """Handles one message of a type this protocol owns. A ValidationError refuses it."""
        raise errors.MalformedMessage(f"{type(msg).__name__} is not expected here")

    def refusal(self, conn: Connection, msg: m.Message, exc: errors.PerunError) -> m.Error:
        """The Error that refuses `msg` (docs/protocol.md §9): which slot it names, and the
        highest version this party signed there."""
        cid = getattr(msg, "channel_id", bytes(32))
        return m.Error(m.code_of(exc), msg.TYPE, cid, getattr(msg, "version", 0), 0, str(exc))

    def connected(self, conn: Connection) -> None:
        """A connection to `conn.peer` is up: repeat what the peer may have missed."""

    def refused(self, conn: Connection, msg: m.Error, failure: errors.PeerRejected) -> None:
        """The peer refused a message of a type this protocol owns."""

    # ------------------------------------------------------------------ the chain

    async def read_chain(self, start: int, end: int) -> Any:
        """Reads what this kind needs of blocks start..end (its contract's events)."""
        return None

    def apply_chain(self, read: Any) -> list[Any]:
        """The records that `read` (from `read_chain`) changes, from the records as they are now.
        The runtime stages them in one commit with the last block read: no await in between."""
        return []

    def duties(self, now: int) -> Iterable[Duty]:
        """The transactions due at chain time `now`."""
        return ()

    # ------------------------------------------------------------------ views

    def describe(self, cid: bytes) -> dict[str, Any]:
        """Channel `cid` for the operator (control's status): JSON-ready, amounts as strings,
        with `kind`."""
        raise errors.UnknownChannel(f"no {self.kind} channel 0x{cid.hex()}")

    def version_of(self, rec: Any) -> int:
        """The version of `rec`'s latest state signed by both parties."""
        raise NotImplementedError

    def registered_of(self, rec: Any) -> int | None:
        """The version of `rec`'s channel that a close registered on chain, if any."""
        return None

    def stage_of(self, rec: Any) -> str:
        """Where `rec`'s channel is, by the name the operator waits for (control's wait)."""
        return rec.stage.value

    async def cooperative_close(self, cid: bytes, timeout: float | None = None) -> tuple[int, int]:
        """The kind's cooperative close of channel `cid` (the operator's `close`): its payout
        (alice, bob) once done."""
        raise errors.WrongStage(f"{self.kind} channels are not closed cooperatively")

    def lost_with_chain(self) -> list[Any]:
        """The records of the channels that a reset of the chain took with it, marked so."""
        return []

    async def cancel(self, cid: bytes) -> Any:
        """Gives up the opening of channel `cid` on the operator's word (`perun cancel`); returns
        its record."""
        raise errors.WrongStage(f"{self.kind} channels open at once, off chain: there is no opening to cancel")

    def about(self) -> dict[str, Any]:
        """What the node's info shows of this kind (its contract, say)."""
        return {}


class Registry:
    """The protocols a node runs, and which one a message, a record or a channel belongs to."""

    def __init__(self) -> None:
        self.protocols: list[Protocol] = []
        self._by_type: dict[int, list[Protocol]] = {}
        self._by_record: dict[type, Protocol] = {}
        self._by_kind: dict[str, Protocol] = {}

    def register(self, protocol: Protocol) -> None:
        if protocol.kind in self._by_kind:
            raise ValueError(f"a {protocol.kind} protocol is registered already")
        self.protocols.append(protocol)
        self._by_kind[protocol.kind] = protocol
        self._by_record[protocol.record_type] = protocol
        for cls in protocol.messages:
            self._by_type.setdefault(cls.TYPE, []).append(protocol)

    def get(self, kind: str) -> Protocol | None:
        return self._by_kind.get(kind)

    def route(self, msg: m.Message) -> Protocol:
        """The protocol that handles `msg`. A type several kinds share (AcceptChannel) goes to the
        one holding its channel."""
        owners = self._by_type.get(msg.TYPE, [])
        if not owners:
            raise errors.ChannelRefused(f"this node runs no channels that use {type(msg).__name__}")
        return self._of(owners, getattr(msg, "channel_id", None))

    def route_error(self, msg: m.Error) -> Protocol | None:
        """The protocol that sent what the Error refuses: the owner of its type."""
        owners = self._by_type.get(msg.ref_type, [])
        return self._of(owners, msg.channel_id) if owners else None

    def _of(self, owners: list[Protocol], cid: bytes | None) -> Protocol:
        if len(owners) > 1 and cid is not None:
            return next((p for p in owners if p.record(cid) is not None), owners[0])
        return owners[0]

    def owner(self, rec: Any) -> Protocol:
        return self._by_record[type(rec)]

    def holder(self, cid: bytes) -> Protocol | None:
        """The protocol that holds channel `cid`, if any."""
        return next((p for p in self.protocols if p.record(cid) is not None), None)

    def record(self, cid: bytes) -> Any | None:
        holder = self.holder(cid)
        return holder.record(cid) if holder is not None else None


def json_amounts(info: dict[str, Any], *keys: str) -> None:
    """Amounts as decimal strings, for `Protocol.describe`: JSON numbers lose precision above 2**53."""
    for key in keys:
        if info[key] is not None:
            info[key] = str(info[key])
