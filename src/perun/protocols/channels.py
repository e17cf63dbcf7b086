"""What every kind whose channels live on a contract of its own (Channels.sol: payment and
multistate channels) shares, written once: the records by channel id; the opening (Alice
proposes, Bob accepts, Alice creates on chain, Bob confirms, Alice refunds if he does not); the
propose, wait for the acknowledgement, retry on conflict loop of updates; closing transactions
that may lose a race to the peer's; and the contract's events applied to the records.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, ClassVar, Generic, TypeVar

from perun import errors
from perun.chain.channels import ChannelsContract, Event, Receipt
from perun.core.channel import ETH, Params, Phase
from perun.core.eip712 import Domain
from perun.core.machine import CONFLICT_RETRIES, Role, Stage, give_up
from perun.protocols.policy import ChannelPolicy
from perun.runtime import Duty, Protocol, Runtime
from perun.runtime.due import DueIndex
from perun.runtime.pending import Pending
from perun.wire import messages as m
from perun.wire.transport import Connection

log = logging.getLogger("perun.node")
T = TypeVar("T")
C = TypeVar("C", bound=ChannelsContract)  # the kind's own contract

ACCEPTED = "accepted"  # the pending slot of a proposed channel: Bob's acceptance
# Chain seconds an opening has to get on chain (Alice's proposal to her create mined); Bob keeps
# his acceptance twice as long, so that a create sent just in time still finds it.
OPEN_TIME = 600


class ChannelProtocol(Protocol, Generic[C]):
    """Channels on `contract`. A subclass names its proposal message and how to make a record
    and apply an event to one; `policy` says which channels this party accepts when offered one."""

    proposal_type: ClassVar[type[m.ProposeChannel] | type[m.ProposeMultistate]]
    crash_points: ClassVar[tuple[str, ...]] = ("propose-stored", "accept-stored", "created", "confirmed")

    def __init__(self, ctx: Runtime, contract: C, policy: ChannelPolicy) -> None:
        self.ctx = ctx
        self.contract = contract
        self.domain: Domain = contract.domain
        self.policy = policy
        self.open_time = OPEN_TIME
        self.records: dict[bytes, Any] = {}
        # The channels by the chain time of their next duty: a poll looks only at those due.
        self.due_index = DueIndex(lambda: self.records, lambda cid, now: self.next_due(self.records[cid], now))
        # Kept where records are put in place, so that a (re)connection or a proposal looks at the
        # peer's channels or at the work to do, not at every record: the channels by peer (in the
        # order they came; a channel's peer never changes), Alice's proposals not answered yet,
        # and Bob's acceptances not on chain yet.
        self._by_peer: dict[str, dict[bytes, None]] = {}
        self._proposed: set[bytes] = set()
        self._accepted: set[bytes] = set()

    # ------------------------------------------------------------------ what a kind defines

    def new_record(self, params: Params, role: Role, stage: Stage) -> Any:
        raise NotImplementedError

    def apply_event(self, rec: Any, name: str, args: dict) -> Any:
        """The record after one of the contract's events (idempotent and monotonic)."""
        raise NotImplementedError

    def next_due(self, rec: Any, now: int) -> int | None:
        """The earliest chain time at or after `now` at which `rec`, unchanged, has a duty (None: never)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ records

    def put(self, rec: Any) -> None:
        cid = rec.channel_id
        if cid not in self.records:
            self._by_peer.setdefault(rec.peer, {})[cid] = None
        self.records[cid] = rec
        if rec.stage is Stage.PROPOSED and rec.role is Role.ALICE:
            self._proposed.add(cid)
        else:
            self._proposed.discard(cid)
        if rec.stage is Stage.ACCEPTED and rec.role is Role.BOB and not rec.given_up:
            self._accepted.add(cid)
        else:
            self._accepted.discard(cid)
        self.due_index.changed(cid)

    def with_peer(self, peer: str) -> list[Any]:
        """The records of the channels with `peer`."""
        return [self.records[cid] for cid in self._by_peer.get(peer, ())]

    def proposed_to(self, peer: str) -> list[Any]:
        """The channels this party (Alice) proposed to `peer` that it has not answered yet."""
        return [rec for rec in map(self.records.__getitem__, self._proposed) if rec.peer == peer]

    def accepted_from(self, peer: str) -> list[Any]:
        """The channels `peer` proposed that this party (Bob) accepted, not on chain yet and not given up."""
        return [rec for rec in map(self.records.__getitem__, self._accepted) if rec.peer == peer]

    # ------------------------------------------------------------------ views

    def channel(self, cid: bytes) -> Any:
        try:
            return self.records[cid]
        except KeyError:
            raise errors.UnknownChannel(f"no {self.kind} channel 0x{cid.hex()}") from None

    def registered_of(self, rec: Any) -> int | None:
        return rec.registered_version

    def channel_with(self, conn: Connection, cid: bytes) -> Any:
        """The record of `cid` if `conn`'s peer is its other party; UnknownChannel otherwise."""
        rec = self.records.get(cid)
        if rec is None or rec.peer != conn.peer:
            raise errors.UnknownChannel(f"no {self.kind} channel 0x{cid.hex()} with {conn.peer}")
        return rec

    async def caught_up(self, cid: bytes) -> None:
        """Before an update of a channel this party still sees opening: the proposer saw it open,
        and this node may not have read that block yet. Read it first (after any confirm this
        node has in flight); a failed read leaves the update to be refused as WRONG_STAGE."""
        rec = self.records.get(cid)
        if rec is None or rec.stage not in (Stage.ACCEPTED, Stage.INITIALISING):
            return
        try:
            await self.ctx.follower.poll()
        except errors.ChainError as exc:
            log.warning("%s: chain poll failed: %s", self.ctx.name, exc)

    # ------------------------------------------------------------------ opening

    async def open(self, peer: str, deposit: int, peer_deposit: int, delta: int, token: str = ETH,
                   timeout: float | None = None) -> bytes:
        """Proposes a channel to `peer` (this node is Alice), creates it on chain once Bob
        accepts, and returns its id when Bob has confirmed it. Raises what went wrong otherwise;
        an opening that fails before it is on chain is given up (stage failed), so nothing moves
        money for it later. One created on chain that Bob has not confirmed in time raises
        ConfirmPending: he may still confirm until the deadline, else the node refunds then."""
        ctx = self.ctx
        conn = ctx.peers.connection(peer)
        params = Params(ctx.address, conn.peer, deposit, peer_deposit, delta, secrets.randbits(64), token)
        rec = replace(self.new_record(params, Role.ALICE, Stage.PROPOSED), open_until=self.open_until())
        cid = rec.channel_id
        accepted = ctx.pending.expect((cid, ACCEPTED))
        def propose() -> None:
            ctx.faults.point("propose-stored")
            conn.send(self.proposal_type.of(params))
        try:
            await ctx.save([rec], then=propose)
            await Pending.wait(accepted, timeout or ctx.response_timeout,
                               lambda: errors.PeerTimeout(f"{conn.peer} did not answer the channel proposal"))
            # Bob's confirmation may take up to Δ of chain time: the caller's timeout bounds the wait.
            rec = await ctx.wait_for(cid, lambda r: r.stage in (Stage.FAILED, Stage.OPEN, Stage.CLOSING, Stage.CLOSED),
                                     timeout or max(ctx.response_timeout, 30.0))
        except errors.PerunError as exc:
            rec = self.records[cid]
            if rec.stage in (Stage.PROPOSED, Stage.ACCEPTED) and not isinstance(exc, errors.NodeKilled):
                await ctx.save([give_up(rec, str(exc))])
            elif rec.stage is Stage.INITIALISING and isinstance(exc, errors.PeerTimeout):
                pending = errors.ConfirmPending(f"channel 0x{cid.hex()} is created on chain; {rec.peer} has not "
                                                f"confirmed it yet and may until chain time {rec.deadline}")
                pending.channel_id = cid
                raise pending from exc
            raise
        finally:
            ctx.pending.discard((cid, ACCEPTED))
        if rec.stage is Stage.FAILED:
            raise errors.OpenFailed(f"channel 0x{cid.hex()} was not opened: {rec.given_up}")
        if rec.stage is not Stage.OPEN:
            raise errors.WrongStage(f"channel 0x{cid.hex()} was {rec.stage.value} before it opened (refunded?)")
        return cid

    def lost_with_chain(self) -> list[Any]:
        return [replace(rec, stage=Stage.LOST) for rec in self.records.values()
                if rec.stage not in (Stage.CLOSED, Stage.FAILED, Stage.LOST)]

    def open_until(self) -> int:
        """The chain time by which an opening proposed or accepted now must be on chain."""
        return self.ctx.follower.chain_time + self.open_time

    async def cancel(self, cid: bytes) -> Any:
        """Gives an opening up on the operator's word: no create or confirm is sent for it from
        now on; if Alice created it already, she takes her deposit back at the confirm deadline
        (the contract allows no refund before). WrongStage once it is open."""
        rec = self.channel(cid)
        given_up = give_up(rec, "cancelled by the operator")
        if given_up is not rec:
            await self.ctx.save([given_up])
        return given_up

    def on_propose(self, conn: Connection, msg: m.ProposeChannel | m.ProposeMultistate) -> None:
        params = msg.params()
        if params.bob != self.ctx.address or params.alice != conn.peer:
            raise errors.InvalidParams("a proposal names its sender as alice and the receiver as bob")
        cid = self.contract.channel_id(params)
        rec = self.records.get(cid)
        if rec is not None:
            if rec.params != params or rec.role is not Role.BOB:
                raise errors.InvalidParams(f"channel 0x{cid.hex()} exists with other parameters")
            self.ctx.peers.send(conn, m.AcceptChannel(cid))  # Alice lost our answer: repeat it
            return
        reason = self.policy.refusal(params) or self._too_many_pending(conn.peer)
        if reason is not None:  # the proposer's `open` raises PeerRejected with this reason
            raise errors.ChannelRefused(reason)
        new = replace(self.new_record(params, Role.BOB, Stage.ACCEPTED), open_until=self.open_until() + self.open_time)
        def accept() -> None:
            self.ctx.faults.point("accept-stored")
            conn.send(m.AcceptChannel(cid))
        self.ctx.save([new], then=accept)

    def _too_many_pending(self, peer: str) -> str | None:
        """Each accepted proposal is stored and watched until it is on chain or expires."""
        limit = self.ctx.limits.pending_proposals
        pending = len(self.accepted_from(peer))
        if pending >= limit:
            return (f"{pending} channels you proposed are not on chain yet, the most this node holds for one peer "
                    f"(its --max-pending-proposals); create them or let them expire first")
        return None

    def on_accept(self, conn: Connection, msg: m.AcceptChannel) -> None:
        rec = self.channel_with(conn, msg.channel_id)
        if rec.role is not Role.ALICE:
            raise errors.WrongStage("only the proposer expects an acceptance")
        if rec.stage is Stage.PROPOSED:
            self.ctx.save([replace(rec, stage=Stage.ACCEPTED)], then=self.ctx.follower.wake)
        self.ctx.pending.resolve((msg.channel_id, ACCEPTED))

    def refusal(self, conn: Connection, msg: m.Message, exc: errors.PerunError) -> m.Error:
        if isinstance(msg, self.proposal_type):  # names the channel it refuses
            cid = self.contract.channel_id(msg.params())
            return m.Error(m.code_of(exc), msg.TYPE, cid, 0, 0, str(exc))
        return super().refusal(conn, msg, exc)

    def refused_proposal(self, msg: m.Error, failure: errors.PeerRejected) -> None:
        """Bob refused the channel that `open` waits for."""
        self.ctx.pending.resolve((msg.channel_id, ACCEPTED), failure)

    def repropose(self, conn: Connection) -> None:
        """After (re)connecting: repeat the proposals the peer has not answered."""
        for rec in self.proposed_to(conn.peer):
            self.ctx.peers.send(conn, self.proposal_type.of(rec.params))

    async def create_on_chain(self, cid: bytes) -> None:
        """Alice's deposit. A create that cannot be sent gives the opening up: it is never sent
        again by itself (the operator opens anew)."""
        params = self.channel(cid).params
        if (await self.ctx.on_chain(self.contract.channel, cid)).phase is not Phase.NONE:
            return  # created before a crash; the follower applies its event
        if self.channel(cid).stage is not Stage.ACCEPTED:
            return  # given up while the chain was read
        try:
            if params.token != ETH:
                await self.ctx.transact(self.contract.approve, params.token, params.deposit_alice)
            receipt = await self.ctx.transact(self.contract.create, params)
        except (errors.ChannelsChannelExists, errors.NodeKilled):
            raise
        except errors.PerunError as exc:
            rec = self.channel(cid)
            if rec.stage is Stage.ACCEPTED:
                await self.ctx.save([give_up(rec, f"the create transaction failed: {exc}")])
            raise
        self.ctx.faults.point("created")
        await self.apply(receipt)

    async def confirm_on_chain(self, cid: bytes) -> None:
        params = self.channel(cid).params
        if (await self.ctx.on_chain(self.contract.channel, cid)).phase is not Phase.INITIALISING:
            return
        if self.channel(cid).given_up:
            return  # cancelled while the chain was read
        if params.token != ETH:
            await self.ctx.transact(self.contract.approve, params.token, params.deposit_bob)
        receipt = await self.ctx.transact(self.contract.confirm, params)
        self.ctx.faults.point("confirmed")
        await self.apply(receipt)

    async def refund(self, cid: bytes) -> Receipt | None:
        """Alice takes her deposit back when Bob did not confirm in time. None if the channel
        was refunded already."""
        return await self.closing(cid, self.contract.refund, self.channel(cid).params)

    async def expire(self, cid: bytes) -> None:
        rec = self.channel(cid)
        if rec.stage in (Stage.PROPOSED, Stage.ACCEPTED):
            log.warning("%s: the opening of 0x%s expired", self.ctx.name, cid.hex()[:12])
            await self.ctx.save([give_up(rec, f"not on chain by chain time {rec.open_until}: expired")])

    def opening_duties(self, rec: Any, duty: str) -> Duty | None:
        """The opening's duties: create, confirm, refund and expire (None for another duty)."""
        steps = {"create": self.create_on_chain, "confirm": self.confirm_on_chain, "refund": self.refund,
                 "expire": self.expire}
        step = steps.get(duty)
        return Duty(duty, rec.channel_id, lambda: step(rec.channel_id)) if step else None

    # ------------------------------------------------------------------ updates

    async def retried(self, cid: bytes, attempt: Callable[[Any], Awaitable[T]], progress: Callable[[Any], int],
                      updates: Callable[[bytes], Any] | None = None) -> T:
        """Runs `attempt(rec)` on the channel's latest update record until the peer does not
        refuse it as conflicting or stale (docs/protocol.md §4), up to CONFLICT_RETRIES times.
        Alice proposes again at once; Bob first lets Alice's proposal land, watching `progress`
        (a version of the channel's record) go up for a short while."""
        updates = updates or self.channel
        for n in range(CONFLICT_RETRIES):
            rec = updates(cid)
            try:
                return await attempt(rec)
            except errors.PeerRejected as exc:
                if exc.code not in (m.ErrorCode.CONFLICT, m.ErrorCode.STALE_VERSION):
                    raise
                if rec.role is Role.BOB:
                    before = progress(self.ctx.registry.record(cid))
                    with contextlib.suppress(errors.PeerTimeout):
                        await self.ctx.wait_for(cid, lambda r: progress(r) > before, 0.05 * (n + 1))
        raise errors.UpdateConflict(f"an update of channel 0x{cid.hex()} was refused {CONFLICT_RETRIES} times")

    # ------------------------------------------------------------------ the chain

    async def closing(self, cid: bytes, fn: Callable[..., Receipt], *args: Any) -> Receipt | None:
        """Sends a transaction that moves the channel towards Closed. Both parties' nodes, and
        their followers, may send one at the same time: losing that race is not an error."""
        rec = self.records.get(cid)
        if rec is None or rec.stage is Stage.CLOSED:
            return None
        try:
            receipt = await self.ctx.transact(fn, *args)
        except (errors.ChannelsWrongPhase, errors.TransactionFailed):
            if (await self.ctx.on_chain(self.contract.channel, cid)).phase is not Phase.CLOSED:
                raise
            self.ctx.follower.wake()  # it applies the winner's event
            return None
        await self.apply(receipt)
        return receipt

    async def request_close(self, cid: bytes) -> None:
        """Records the operator's unilateral close, once it is mined, while the channel is open
        in the records (its close is not final yet): should a reorganisation take it away, the
        follower sends it again (`close_requested`)."""
        rec = self.channel(cid)
        if rec.stage is Stage.OPEN and not rec.close_requested:
            await self.ctx.save([replace(rec, close_requested=True)])

    async def apply(self, receipt: Receipt) -> None:
        """Applies a transaction's events at once when every event is final at once (no
        confirmations); the follower will see them again, harmlessly. Else the follower applies
        them once they are final: until then, they count for the duties only."""
        if self.ctx.follower.confirmations:
            self.ctx.follower.wake()
            return
        await self.ctx.save(self.applied(receipt.events))

    # The contract's events; Multistate reads its apps' too, so the read is Any here as in Protocol.
    async def read_chain(self, start: int, end: int) -> Any:
        return await self.ctx.on_chain(self.contract.events, start, end)

    def apply_chain(self, read: Any) -> list[Any]:
        return self.applied(read, log_changes=not self.ctx.follower.speculating)

    def applied(self, events: Iterable[Event], log_changes: bool = False) -> list[Any]:
        """The records that `events` change, from the records as they are now."""
        changed: dict[bytes, Any] = {}
        for event in events:
            cid = event.args.get("channelId")
            if cid is None:
                continue
            rec = changed.get(cid) or self.records.get(cid)
            if rec is None:
                continue
            new = self.apply_event(rec, event.name, event.args)
            if log_changes and new != rec:
                log.info("%s: %s 0x%s -> %s", self.ctx.name, event.name, cid.hex()[:12], new.stage.value)
            changed[cid] = new
        return list(changed.values())
