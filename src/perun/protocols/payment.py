"""Payment channels (seed §3.1) in a node: the I/O around perun.core.machine.

A payment is the machine's update rule over the wire: the proposer signs the next state and
stores it, then sends Update; the receiver checks, countersigns, stores, then sends UpdateAck;
the proposer stores the countersignature and the payment is done (docs/protocol.md §4, §9).
After a reconnection each side says where it is (Reestablish) and the one ahead sends the state
the other lacks (StateSync). The cooperative close is a final state signed this way, submitted
at once, also during a dispute.

Other kinds whose updates are a payment channel's (a virtual channel's ends) register as an
`UpdateHost`: the same messages and rules then serve their channels, kept in their records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from perun import errors
from perun.chain.channels import Receipt
from perun.chain.payment import PaymentContract
from perun.core import machine
from perun.core.channel import Params, PaymentState
from perun.core.machine import ChannelRecord, Proposal, Role, Stage
from perun.core.machine import Duty as Due
from perun.core.monitoring import Monitoring, sign_authorisation
from perun.protocols.channels import ChannelProtocol
from perun.protocols.policy import ChannelPolicy
from perun.protocols.towers import Towers
from perun.runtime import Duty, Runtime
from perun.runtime.protocol import json_amounts
from perun.store import SignedState
from perun.wire import messages as m
from perun.wire.transport import Connection

log = logging.getLogger("perun.node")


@dataclass(frozen=True)
class ChannelInfo:
    """A channel as this node sees it (`Node.channels()`, `Node.info(cid)`); amounts in wei or
    token units, "my" and "peer" from this node's side."""

    channel: str  # 0x-hex id
    peer: str
    role: str  # alice or bob
    stage: str
    version: int  # of the latest state signed by both
    final: bool
    my_balance: int
    peer_balance: int
    my_deposit: int
    peer_deposit: int
    token: str
    delta: int
    deadline: int  # confirm deadline while initialising, dispute deadline while closing
    registered_version: int | None
    my_payout: int | None
    peer_payout: int | None
    pending: int  # own proposals not yet countersigned
    open_until: int  # chain time by which the opening must be on chain (0: no limit)
    given_up: str  # why this node gave the opening up ("" if it did not)


class UpdateHost(Protocol):
    """A kind whose channels are updated as payment channels, in records of its own."""

    def updates(self, cid: bytes) -> ChannelRecord | None:
        """The update record of channel `cid`, if this host holds it."""

    def all_updates(self) -> Iterable[ChannelRecord]:
        """Every update record it holds."""

    def with_updates(self, rec: ChannelRecord) -> Any:
        """Its own record holding `rec`, to be saved."""

    def check_update(self, cid: bytes) -> None:
        """Raises if the channel may not be updated now."""

    def final_signed(self, cid: bytes) -> None:
        """The channel now has a final state signed by both."""

    def peer_signed(self, cid: bytes) -> None:
        """A new state of the channel signed by the peer is stored: for its watchtowers, if any."""


class Payment(ChannelProtocol[PaymentContract]):
    """The payment channels of a node, on the PaymentContract at `contract`."""

    kind = "payment"
    messages = (m.ProposeChannel, m.AcceptChannel, m.Update, m.UpdateAck, m.Reestablish, m.StateSync,
                m.ReestablishDone, m.ReestablishSummary, m.Monitor, m.MonitorAck)
    record_type = ChannelRecord
    proposal_type = m.ProposeChannel
    crash_points = (*ChannelProtocol.crash_points, "update-signed", "update-sent", "update-received",
                    "update-countersigned", "ack-received", "ack-stored", "final-signed", "final-countersigned",
                    "final-acked", "close-sent")

    def __init__(self, ctx: Runtime, contract: str, policy: ChannelPolicy) -> None:
        super().__init__(ctx, PaymentContract(ctx.chain, contract), policy)
        for rec in ctx.store.channels():
            self.put(machine.restored(rec))
        self.hosts: list[UpdateHost] = []
        # After a (re)connection, per channel: set once the peer's Reestablish is answered.
        self._reestablishing: dict[bytes, tuple[Connection, asyncio.Event]] = {}
        self._reconnections: dict[Connection, _Reconnection] = {}  # per connection, until it closes
        # Per peer: its last summary's offset, and the channels it was applied to since (`_hinted`).
        self._offsets: dict[str, tuple[int, set[bytes]]] = {}
        # Watchtowers (docs/protocol.md §12): the towers this party hands its latest states to, by
        # channel id; what each acknowledged is kept in memory.
        self.towers: Towers[bytes, bytes] = Towers(ctx, self._hand_over_to)

    def new_record(self, params: Params, role: Role, stage: Stage) -> ChannelRecord:
        return machine.new_record(params, self.domain, role, stage)

    def apply_event(self, rec: ChannelRecord, name: str, args: dict) -> ChannelRecord:
        return machine.apply_event(rec, name, args)

    def version_of(self, rec: ChannelRecord) -> int:
        return rec.current.version

    def about(self) -> dict[str, Any]:
        return {"contract": self.contract.address}

    # ================================================================== update records

    def add_host(self, host: UpdateHost) -> None:
        self.hosts.append(host)

    def updates(self, cid: bytes) -> ChannelRecord | None:
        """The update record of a payment channel, or of a host's channel."""
        rec = self.records.get(cid)
        for host in self.hosts:
            rec = rec or host.updates(cid)
        return rec

    def _updates_with(self, conn: Connection, cid: bytes) -> ChannelRecord:
        rec = self.updates(cid)
        if rec is None or rec.peer != conn.peer:
            raise errors.UnknownChannel(f"no channel 0x{cid.hex()} with {conn.peer}")
        return rec

    def _host(self, cid: bytes) -> UpdateHost | None:
        return None if cid in self.records else next((h for h in self.hosts if h.updates(cid) is not None), None)

    def _save(self, rec: ChannelRecord, states: Iterable[SignedState] = (), then: Callable[[], None] | None = None,
              behind: bool = False):
        host = self._host(rec.channel_id)
        return self.ctx.save([host.with_updates(rec) if host else rec], states, then=then, behind=behind)

    def _progress(self, rec: Any) -> int:
        """The version of the updates of a channel whose record `wait_for` sees (a host's too)."""
        updates = self.updates(rec.channel_id)
        return updates.current.version if updates is not None else -1

    # ================================================================== the API

    def channels(self) -> list[ChannelInfo]:
        return [_info(rec) for rec in self.records.values()]

    def info(self, cid: bytes) -> ChannelInfo:
        return _info(self.channel(cid))

    def describe(self, cid: bytes) -> dict[str, Any]:
        info = asdict(self.info(cid))
        json_amounts(info, "my_balance", "peer_balance", "my_deposit", "peer_deposit", "my_payout", "peer_payout")
        if self.towers:  # the version each tower acknowledged (None: none yet, or not since a restart)
            info["towers"] = self.towers.shown(cid)
        return {"kind": self.kind, **info}

    async def pay(self, cid: bytes, amount: int) -> PaymentState:
        """Pays `amount` to the peer; returns the new state once the peer countersigned and stored
        it (this node stores it in its next group commit: docs/protocol.md §9, "Updates").

        Payments on one channel are serialised by version and may be in flight together; a
        conflict with a payment the peer proposed at the same time is retried.
        """
        await self.reestablished(cid)

        async def attempt(rec: ChannelRecord) -> PaymentState:
            host = self._host(cid)
            if host is not None:
                host.check_update(cid)
            rec = self._hinted(rec)
            return await self.update(rec, machine.payment(rec, amount))
        return await self.retried(cid, attempt, self._progress, self._known_updates)

    def _known_updates(self, cid: bytes) -> ChannelRecord:
        rec = self.updates(cid)
        if rec is not None:
            return rec
        holder = self.ctx.registry.holder(cid)
        if holder is not None:  # a channel of a kind that is not paid on directly
            raise errors.WrongChannel(
                f"channel 0x{cid.hex()} is a {holder.kind} channel, and payments go on payment and virtual "
                f"channels: open a virtual channel through it (`perun virtual open`), or a payment channel "
                "(`perun open`)")
        raise errors.UnknownChannel(f"no channel 0x{cid.hex()}")

    async def reestablished(self, cid: bytes) -> None:
        """Waits, after a (re)connection, until the peer's Reestablish of the channel is answered:
        a proposal sent before it would race the proposals resent for it and be refused as stale
        (docs/protocol.md §9, "Reestablishing")."""
        entry = self._reestablishing.get(cid)
        if entry is None or entry[0].closed:
            return
        conn, answered = entry
        try:
            await asyncio.wait_for(answered.wait(), self.ctx.response_timeout)
        except TimeoutError as exc:
            if self._reestablishing.get(cid) is entry:  # the next payment asks the peer as it is
                del self._reestablishing[cid]
            raise errors.PeerTimeout(f"{conn.peer} did not reestablish channel 0x{cid.hex()} within "
                                     f"{self.ctx.response_timeout:g} s of reconnecting") from exc

    async def update(self, rec: ChannelRecord, state: PaymentState) -> PaymentState:
        """Signs `state` (the next one of `rec`), sends it, and returns it once countersigned.

        A payment on a payment channel leaves before this node's commit of it, within the
        versions reserved (docs/protocol.md §9, "Updates"): its loss in a crash loses only a
        state worse for this node, and the version stays burned. A final state, a proposal
        that reserves more versions, and a virtual channel's update are committed first."""
        conn = self.ctx.peers.connection(rec.peer)
        new, proposal = machine.propose(rec, state, self.ctx.key)
        acked = self.ctx.pending.expect((rec.channel_id, state.version))
        mine = SignedState(state, *((proposal.signature, b"") if rec.role is Role.ALICE else (b"", proposal.signature)))
        def send() -> None:
            self.ctx.faults.point("final-signed" if state.is_final else "update-signed")
            conn.send(_update_message(proposal))
        if state.is_final or machine.needs_reserve(rec, new) or self._host(rec.channel_id) is not None:
            self._save(new, [mine], then=send)
        else:
            self._save(new, [mine])
            def send_ahead() -> None:
                send()
                self.ctx.faults.point("update-sent")
            self.ctx.ahead_of_commit(send_ahead)
        return await self.countersigned(rec, state.version, acked)

    async def countersigned(self, rec: ChannelRecord, version: int, acked: asyncio.Future | None = None
                            ) -> PaymentState:
        """The state at `version` that this party proposed, once the peer has countersigned it."""
        def late() -> errors.PeerTimeout:
            return errors.PeerTimeout(
                f"{rec.peer} did not countersign version {version} in time; it stays pending and completes "
                "if the peer countersigns it after reconnecting")
        acked = acked or self.ctx.pending.expect((rec.channel_id, version))
        return await self.ctx.pending.wait(acked, self.ctx.response_timeout, late)

    async def sign_final(self, cid: bytes) -> None:
        """Signs a final state with the peer (unless done before): the cooperative close's."""
        rec = self.updates(cid)
        assert rec is not None
        pending_final = next((p.state.version for p in rec.pending if p.state.is_final), None)
        if pending_final is not None:  # proposed before (and before a restart, perhaps)
            await self.countersigned(rec, pending_final)
        elif not rec.is_fully_signed_final:
            await self.reestablished(cid)
            after = self.updates(cid)
            assert after is not None  # (a channel's record stays)
            rec = self._hinted(after)
            host = self._host(cid)
            if host is not None:
                host.check_update(cid)
            await self.update(rec, machine.final(rec))

    async def cooperative_close(self, cid: bytes, timeout: float | None = None) -> tuple[int, int]:
        """Cooperative close: both sign a final state, which pays out at once, also in a running
        dispute. Returns the payout (alice, bob). If the peer does not answer, use `register`."""
        self.channel(cid)
        await self.sign_final(cid)
        if await self.cooperative_close_on_chain(cid) is None:
            await self.ctx.follower.poll()  # the peer's transaction closed it: read its payout
        rec = await self.ctx.wait_for(cid, lambda r: r.stage is Stage.CLOSED, timeout or self.ctx.response_timeout)
        return rec.outcome

    async def register(self, cid: bytes) -> Receipt | None:
        """Unilateral close: registers the latest state the peer signed and starts Δ (or
        replaces an older registered state within Δ). None if the channel closed meanwhile.
        Durable: should a reorganisation take it away, the follower sends it again."""
        receipt = await self._register(cid)
        await self.request_close(cid)
        return receipt

    async def _register(self, cid: bytes) -> Receipt | None:
        rec = self.channel(cid)
        if rec.stage not in (Stage.OPEN, Stage.CLOSING):
            raise errors.WrongStage(f"channel 0x{cid.hex()} is {rec.stage.value}")
        if rec.is_fully_signed_final:
            return await self.cooperative_close_on_chain(cid)
        receipt = await self.closing(cid, self.contract.close, rec.params, rec.current, rec.peer_signature)
        self.ctx.faults.point("close-sent")
        return receipt

    async def finalize(self, cid: bytes) -> Receipt | None:
        """Pays out the registered state once Δ has passed. None if it was paid out already."""
        return await self.closing(cid, self.contract.finalize, self.channel(cid).params)

    async def cooperative_close_on_chain(self, cid: bytes) -> Receipt | None:
        rec = self.channel(cid)
        if not rec.is_fully_signed_final:
            raise errors.WrongStage(f"channel 0x{cid.hex()} has no final state signed by both")
        return await self.closing(cid, self.contract.cooperative_close, rec.params, rec.current, rec.sig_alice,
                                  rec.sig_bob)

    # ================================================================== messages

    async def receive(self, conn: Connection, msg: m.Message) -> None:
        if isinstance(msg, m.ProposeChannel):
            self.on_propose(conn, msg)
        elif isinstance(msg, m.AcceptChannel):
            self.on_accept(conn, msg)
        elif isinstance(msg, m.Update):
            await self.caught_up(msg.channel_id)
            self._on_update(conn, msg)
        elif isinstance(msg, m.UpdateAck):
            self._on_ack(conn, msg)
        elif isinstance(msg, m.Reestablish):
            self._on_reestablish(conn, msg)
        elif isinstance(msg, m.StateSync):
            self._on_sync(conn, msg)
        elif isinstance(msg, m.ReestablishDone):
            self._on_done(conn)
        elif isinstance(msg, m.ReestablishSummary):
            self._on_summary(conn, msg)
        elif isinstance(msg, m.MonitorAck):
            if msg.channel_id in self.records:
                self.towers.holds(conn.peer, msg.channel_id, msg.version)
        elif isinstance(msg, m.Monitor):
            raise errors.ChannelRefused("this node is no watchtower")

    def refusal(self, conn: Connection, msg: m.Message, exc: errors.PerunError) -> m.Error:
        error = super().refusal(conn, msg, exc)
        rec = self.updates(error.channel_id)
        signed = rec.signed if rec is not None and rec.peer == conn.peer else 0
        return m.Error(error.code, error.ref_type, error.channel_id, error.version, signed, error.reason)

    def connected(self, conn: Connection) -> None:
        """Repeats an unanswered proposal, and says where each shared channel with a proposal in
        flight is (Reestablish); the others go in one summary (docs/protocol.md §9). A tower is
        handed the latest state of every channel it has not acknowledged."""
        if self.towers.connected(conn, list(self.records)):
            return
        self.repropose(conn)
        self._reconnections = {c: r for c, r in self._reconnections.items() if not c.closed}
        reconnection = self._reconnections[conn] = _Reconnection()
        self._offsets.pop(conn.peer, None)  # this connection's summary tells it again
        shared = self._shared(conn)
        for rec in shared:
            self._reestablishing[rec.channel_id] = (conn, asyncio.Event())
            if rec.pending:
                self._send_reestablish(conn, rec)
        if shared:  # else only in answer to the peer's (a peer that shares no channel hears nothing)
            self._send_done(conn, reconnection)

    def _shared(self, conn: Connection) -> list[ChannelRecord]:
        """The update records of the channels with `conn`'s peer that a reconnection reestablishes."""
        peer = conn.peer
        return [rec for rec in [*self.with_peer(peer), *(r for h in self.hosts for r in h.all_updates() if r.peer == peer)]
                if rec.stage not in (Stage.CLOSED, Stage.PROPOSED, Stage.FAILED)]

    def _send_reestablish(self, conn: Connection, rec: ChannelRecord) -> None:
        reconnection = self._reconnections.get(conn)
        if reconnection is not None:
            reconnection.sent.add(rec.channel_id)
        self.ctx.peers.send(conn, m.Reestablish(rec.channel_id, rec.current.version, rec.signed))

    def _send_done(self, conn: Connection, reconnection: _Reconnection) -> None:
        reconnection.done = True
        self.ctx.peers.send(conn, m.ReestablishDone())

    def _on_done(self, conn: Connection) -> None:
        """The peer sent its Reestablish messages: summarise the channels neither side sent one
        of (one with a proposal of ours in flight by now gets a Reestablish instead)."""
        reconnection = self._reconnections.get(conn)
        if reconnection is None or reconnection.digests is not None:
            return  # not after a connect, or a second one: nothing to answer
        if not reconnection.done:
            self._send_done(conn, reconnection)
        skip = reconnection.sent | reconnection.received
        recs = []
        for rec in self._shared(conn):
            if rec.channel_id in skip:
                continue
            if rec.pending:
                self._send_reestablish(conn, rec)
            else:
                recs.append(rec)
        offset, reconnection.digests = machine.summary(recs)
        reconnection.channels = tuple(rec.channel_id for rec in recs)
        self.ctx.peers.send(conn, m.ReestablishSummary(offset, reconnection.digests))

    def _on_summary(self, conn: Connection, msg: m.ReestablishSummary) -> None:
        """The channels in a bucket whose digests agree are reestablished at once (their current
        versions agree, and neither party had a proposal in flight on them); those in another get
        a Reestablish each, as the peer's do."""
        reconnection = self._reconnections.get(conn)
        if reconnection is None or reconnection.digests is None or reconnection.summarised:
            return  # not after the peer's ReestablishDone, or a second one: nothing to compare
        reconnection.summarised = True
        differ = machine.differing_buckets(reconnection.digests, msg.digests)
        for cid in reconnection.channels:
            rec = self.updates(cid)
            if rec is None or cid in reconnection.sent or cid in reconnection.received:
                continue  # gone, or reestablished by Reestablish messages since the summary
            if machine.bucket_of(cid) in differ or rec.pending:
                # A proposal made since the summary needs the peer's exact `signed`: it answers.
                self._send_reestablish(conn, rec)
            else:
                self._reestablished(conn, cid)
        if msg.offset:  # applied to each channel when this node next proposes on it, not written into all
            self._offsets[conn.peer] = (msg.offset, reconnection.sent | reconnection.received)

    def _hinted(self, rec: ChannelRecord) -> ChannelRecord:
        """`rec` before this node's first proposal on it since the peer's summary: the peer may
        have signed up to `current + offset` (it burned the versions it reserved, docs/protocol.md
        §9), so the proposal goes above that. Stored with the proposal, in the same commit."""
        offset, applied = self._offsets.get(rec.peer, (0, set()))
        if not offset or rec.channel_id in applied:
            return rec
        applied.add(rec.channel_id)
        signed = rec.current.version + offset
        if signed <= max(rec.signed, rec.peer_signed_hint):
            return rec
        new = replace(rec, peer_signed_hint=signed)
        self._save(new)
        return new

    def refused(self, conn: Connection, msg: m.Error, failure: errors.PeerRejected) -> None:
        if msg.ref_type == m.Monitor.TYPE:
            # A stale one: the tower holds `signed` already (its acknowledgement was lost, or this
            # node restarted). Any other refusal is logged by the peers; the next state is handed over.
            if failure.code == m.ErrorCode.STALE_VERSION and msg.channel_id in self.records:
                self.towers.holds(conn.peer, msg.channel_id, msg.signed)
            return
        if msg.ref_type == m.ProposeChannel.TYPE:
            self.refused_proposal(msg, failure)
            return
        if msg.ref_type != m.Update.TYPE:
            return
        rec = self.updates(msg.channel_id)
        if rec is None or rec.peer != conn.peer:
            return
        new, dropped = machine.receive_reject(rec, msg.version, msg.signed)
        if dropped:
            def fail() -> None:
                for proposal in dropped:
                    self.ctx.pending.resolve((msg.channel_id, proposal.state.version), failure)
            self._save(new, then=fail)

    def _on_update(self, conn: Connection, msg: m.Update) -> None:
        self.ctx.faults.point("update-received")
        rec = self._updates_with(conn, msg.channel_id)
        state = PaymentState(msg.channel_id, msg.version, msg.balance_alice, msg.balance_bob, msg.final)
        host = self._host(msg.channel_id)
        if host is not None:
            host.check_update(msg.channel_id)
        new, mine = machine.receive_update(rec, state, msg.prev, msg.signature, self.ctx.key)
        def ack() -> None:
            self.ctx.faults.point("final-countersigned" if state.is_final else "update-countersigned")
            conn.send(m.UpdateAck(msg.channel_id, msg.version, mine))
            if host is not None and state.is_final:
                host.final_signed(msg.channel_id)
            self._for_towers_later(msg.channel_id)
        self._save(new, [SignedState(state, new.sig_alice, new.sig_bob)], then=ack)

    def _on_ack(self, conn: Connection, msg: m.UpdateAck) -> None:
        rec = self._updates_with(conn, msg.channel_id)
        new, proposal = machine.receive_ack(rec, msg.version, msg.signature)
        state = proposal.state
        host = self._host(msg.channel_id)
        countersigned = SignedState(state, new.sig_alice, new.sig_bob)
        if state.is_final or host is not None:
            def done() -> None:
                self.ctx.faults.point("final-acked" if state.is_final else "ack-stored")
                self.ctx.pending.resolve((msg.channel_id, msg.version), state)
                if state.is_final and host is not None:
                    host.final_signed(msg.channel_id)
                if host is not None:
                    self._for_towers_later(msg.channel_id)
            self._save(new, [countersigned], then=done)
            if state.is_final:
                self.ctx.follower.wake()
            return
        # A payment this node made: the payee stored it before answering. This node's copy
        # goes into the next group commit, behind the answer; the next payment joins it. (The
        # crash point is no `then`: that would hold back the next payment's send.)
        self.ctx.pending.resolve((msg.channel_id, msg.version), state)
        stored = self._save(new, [countersigned], behind=True)
        def on_stored(f: asyncio.Future) -> None:
            if not (f.cancelled() or f.exception()):
                self.ctx.faults.point("ack-stored")
                self._for_towers_later(msg.channel_id)
        stored.add_done_callback(on_stored)
        self.ctx.faults.point("ack-received")

    def _on_reestablish(self, conn: Connection, msg: m.Reestablish) -> None:
        rec = self._updates_with(conn, msg.channel_id)
        reconnection = self._reconnections.get(conn)
        if reconnection is not None:
            reconnection.received.add(msg.channel_id)
            if msg.channel_id not in reconnection.sent:  # the peer has proposals in flight: it needs ours
                self._send_reestablish(conn, rec)
        self._resync(conn, rec, msg.current, msg.signed)

    def _resync(self, conn: Connection, rec: ChannelRecord, current: int, signed: int) -> None:
        """The peer's latest fully signed version is `current` and the highest it signed `signed`."""
        cid = rec.channel_id
        new, resync = machine.reestablish(rec, current, signed)
        behind = current > new.current.version  # the peer's StateSync is on its way: reestablished with it
        def act() -> None:
            if resync.send_current:
                c = new.current
                conn.send(m.StateSync(c.channel_id, c.version, c.balance_alice, c.balance_bob, c.is_final,
                                      new.sig_alice, new.sig_bob))
            for proposal in resync.resend:
                conn.send(_update_message(proposal))
            for proposal in resync.dropped:
                self.ctx.pending.resolve((cid, proposal.state.version),
                                         errors.UpdateConflict("the peer signed another state at this version"))
            if not behind:
                self._reestablished(conn, cid)  # new proposals go out behind the resent ones
        if new == rec:
            self.ctx.after_commit(act)  # nothing to store: behind what is staged, as the sends are
        else:
            self._save(new, then=act)

    def _reestablished(self, conn: Connection, cid: bytes) -> None:
        entry = self._reestablishing.get(cid)
        if entry is not None and entry[0] is conn:
            del self._reestablishing[cid]
            entry[1].set()

    def _on_sync(self, conn: Connection, msg: m.StateSync) -> None:
        rec = self._updates_with(conn, msg.channel_id)
        state = PaymentState(msg.channel_id, msg.version, msg.balance_alice, msg.balance_bob, msg.final)
        new = machine.receive_sync(rec, state, msg.sig_alice, msg.sig_bob)
        settled = [p for p in rec.pending if p.state.version <= state.version]
        host = self._host(msg.channel_id)
        def done() -> None:
            for proposal in settled:
                self.ctx.pending.resolve((msg.channel_id, proposal.state.version), proposal.state)
            if new.is_fully_signed_final and host is not None:
                host.final_signed(msg.channel_id)
            self._reestablished(conn, msg.channel_id)  # a proposal now builds on the peer's latest state
            self._for_towers_later(msg.channel_id)
        self._save(new, [SignedState(state, msg.sig_alice, msg.sig_bob)], then=done)
        if new.is_fully_signed_final:
            self.ctx.follower.wake()

    # ================================================================== watchtowers

    def watch_with(self, towers: Iterable[str], reward: int) -> None:
        """Hands every later state the peer signs to `towers` (addresses; the node dials them),
        offering each `reward` (at most this party's balance in the state) should it refute with it."""
        self.towers.watch(towers, reward)

    def _for_towers_later(self, cid: bytes) -> None:
        """After the commit of a state the peer signed: hand it to the towers in a later turn of the
        event loop, off the payment's path; of a burst of updates, only the latest goes out. A
        host's channel has no contract of its own to refute on: its host decides what goes."""
        host = self._host(cid)
        if host is not None:
            host.peer_signed(cid)
        elif cid in self.records:
            self.towers.later(cid)

    def _hand_over_to(self, conn: Connection, cids: Iterable[bytes]) -> None:
        for cid in cids:
            rec = self.records.get(cid)
            if rec is not None:
                self._hand_over(conn, rec)

    def _hand_over(self, conn: Connection, rec: ChannelRecord) -> None:
        """Sends the tower of `conn` the latest state of `rec` the peer signed, unless it holds it."""
        state = rec.current
        if rec.stage not in (Stage.OPEN, Stage.CLOSING) or state.version == 0 or state.is_final:
            return  # nothing the peer signed to refute with; a final state is submitted by its parties
        if not self.towers.offer(conn.peer, rec.channel_id, state.version):
            return
        reward = min(self.towers.reward, rec.my_balance)
        authorisation = sign_authorisation(self.domain, Monitoring.of(self.domain, state, conn.peer, reward),
                                           self.ctx.key)
        conn.send(m.Monitor.of(rec.params, state, rec.peer_signature, reward, authorisation))

    async def towers_hold(self, cid: bytes, version: int, timeout: float = 30.0) -> None:
        """Waits until every tower acknowledged channel `cid` at `version` or above."""
        await self.towers.hold({cid: version}, timeout, f"version {version} of 0x{cid.hex()}")

    # ================================================================== the chain

    def next_due(self, rec: ChannelRecord, now: int) -> int | None:
        return machine.next_due(rec, now)

    def duties(self, now: int) -> Iterable[Duty]:
        for cid in self.due_index.due(now):
            rec = self.records[cid]
            for due in machine.duties(rec, now):
                yield self._duty(rec, due)

    def _duty(self, rec: ChannelRecord, due: Due) -> Duty:
        cid = rec.channel_id
        if due is Due.COOPERATIVE_CLOSE:
            return Duty(due.value, cid, lambda: self.cooperative_close_on_chain(cid))
        if due is Due.DISPUTE:
            async def dispute() -> None:
                log.warning("%s: stale close of 0x%s (version %s); submitting version %s", self.ctx.name,
                            cid.hex()[:12], rec.registered_version, rec.current.version)
                await self._register(cid)
            return Duty(due.value, cid, dispute, deadline=rec.deadline)
        if due is Due.CLOSE:
            return Duty(due.value, cid, lambda: self._register(cid))
        if due is Due.FINALIZE:
            return Duty(due.value, cid, lambda: self.finalize(cid))
        duty = self.opening_duties(rec, due.value)
        assert duty is not None, due
        return duty


@dataclass
class _Reconnection:
    """A connection's reestablishment (docs/protocol.md §9): the channels each side sent a
    Reestablish of on it (each side sends one per channel at most, and answers the peer's with
    its own), and, once the peer's ReestablishDone came, this side's summary of the others."""

    sent: set[bytes] = field(default_factory=set)
    received: set[bytes] = field(default_factory=set)
    done: bool = False  # this side sent its ReestablishDone
    channels: tuple[bytes, ...] = ()
    digests: bytes | None = None
    summarised: bool = False  # the peer's summary came


def _update_message(proposal: Proposal) -> m.Update:
    s = proposal.state
    return m.Update(s.channel_id, s.version, proposal.prev, s.balance_alice, s.balance_bob, s.is_final,
                    proposal.signature)


def _info(rec: ChannelRecord) -> ChannelInfo:
    mine, peers = (0, 1) if rec.role is Role.ALICE else (1, 0)
    deposits = (rec.params.deposit_alice, rec.params.deposit_bob)
    return ChannelInfo(
        channel="0x" + rec.channel_id.hex(),
        peer=rec.peer,
        role=rec.role.name.lower(),
        stage=rec.stage.value,
        version=rec.current.version,
        final=rec.current.is_final,
        my_balance=rec.my_balance,
        peer_balance=rec.peer_balance,
        my_deposit=deposits[mine],
        peer_deposit=deposits[peers],
        token=rec.params.token,
        delta=rec.params.delta,
        deadline=rec.deadline,
        registered_version=rec.registered_version,
        my_payout=None if rec.outcome is None else rec.outcome[mine],
        peer_payout=None if rec.outcome is None else rec.outcome[peers],
        pending=len(rec.pending),
        open_until=rec.open_until,
        given_up=rec.given_up,
    )
