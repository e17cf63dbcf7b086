"""Hooks for the protocol of an app's nanocontracts (go-perun's update interceptors).

A protocol built on multistate channels (perun.protocols.virtual: each half of a virtual
channel is a VirtualChannel nanocontract) registers an `AppHooks` with the multistate protocol
(`Multistate.add_hooks`). The multistate protocol then asks it about every nanocontract of its
app: before the rules check a proposed one, whether this party consents to what it blocks, when
one is signed by both or refused, what to execute on chain, what the chain's events carry. The
multistate protocol never imports the app's protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perun.core.msmachine import MSProposal, MSRecord
from perun.core.multistate import NanocontractState
from perun.wire import messages as m
from perun.wire.transport import Connection

if TYPE_CHECKING:
    from perun.chain.channels import Event
    from perun.chain.multistate import RegisteredNanocontract
    from perun.errors import PeerRejected


class AppHooks:
    """Every hook does nothing by default; an app's protocol overrides what it needs."""

    def claims(self, nc: NanocontractState) -> bool:
        """The nanocontract is of this hook's app."""
        return False

    def intercept(self, conn: Connection, ledger: MSRecord, msg: m.Message, proposal: MSProposal, now: int) -> bool:
        """Before the rules check the peer's `proposal` in channel `ledger` (any proposal, of any
        app): raise to refuse it, or return True to hold it unanswered for now."""
        return False

    def consents(self, ledger: MSRecord, nc: NanocontractState) -> bool:
        """Whether this party lets a nanocontract of the app, created by the peer, block its cash."""
        return False

    def adopted(self, ledger: MSRecord, nc: NanocontractState) -> None:
        """A creation of the app's nanocontract `nc` is signed by both (`ledger` is the channel's
        new record): stage what follows from it, in the same commit."""

    def called(self, ledger: MSRecord, nc: NanocontractState, fun: int, z: bytes) -> None:
        """A call `fun(z)` of the app's nanocontract, by either party, is signed by both: `nc` is
        its new state (`ledger` the channel's new record). Stage what follows, in the same commit."""

    def preamble(self, ledger: MSRecord, proposal: MSProposal) -> list[m.Message]:
        """Messages to send to the peer right before this party's `proposal` (each time it is
        sent: first, and again after a reconnection), such as what the receiver needs to judge a
        creation that the proposal's own fields do not carry."""
        return []

    def tower_call(self, ledger: MSRecord, nc: NanocontractState) -> tuple[int, bytes, int] | None:
        """The one call (fun, z) a watchtower may make on this party's behalf on nanocontract `nc`
        of channel `ledger` with executeFor, and the version it carries (a later one replaces
        it), if any: what the multistate protocol hands its towers after `nc`'s state."""
        return None

    def ledger_changed(self, ledger: bytes) -> None:
        """Channel `ledger`'s record was put in place (being saved, or a copy from unconfirmed
        blocks): what the app's protocol derives from it may have changed."""

    def refused(self, ledger: MSRecord, proposal: MSProposal, failure: PeerRejected) -> None:
        """The peer refused this party's creation of one of the app's nanocontracts for good (not
        as stale or conflicting while the caller of `create` waits, which then proposes again).
        The caller, if it still waits, learns it too: after the proposal expired, or after a
        restart, none does."""

    async def submissions(self, ledger: MSRecord, nid: bytes, registered: RegisteredNanocontract,
                          now: int) -> list[tuple[int, bytes]]:
        """Calls (fun, z) this party may execute on registered nanocontract `nid`."""
        return []

    def inputs(self, nid: bytes) -> Any:
        """What `submissions` depends on besides the chain: a look that found nothing to execute
        is repeated only when it changed."""
        return None

    async def read_chain(self, events: list[Event]) -> Any:
        """Reads what the app needs of MSContract's `events` (calldata, say)."""
        return None

    def apply_chain(self, read: Any) -> list[Any]:
        """The records (the app's own) that `read` changes, from the records as they are now."""
        return []
