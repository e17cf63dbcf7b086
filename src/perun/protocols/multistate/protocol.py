"""Multistate channels (seed §3.2) in a node: the I/O around perun.core.msmachine.

They share the node's connections, store, group commit and chain follower with the other kinds:
messages about a multistate channel come in on the same connection, its record is committed in
the same transaction as anything else staged in the same turn (docs/protocol.md §10).

    cid = await alice.multistate.open(bob, deposit=10**18, peer_deposit=10**18, delta=600)
    nid = await alice.multistate.create(cid, "HashTimeLock", hashtimelock.initial(ALICE, 10**17, lock, timeout))
    await bob.multistate.call(cid, nid, hashtimelock.CLAIM, preimage)
    await alice.multistate.absorb(cid, nid)

A nanocontract the peer will not update off chain goes to the chain: `register` puts this
party's latest version there, `execute` runs a function once its window has passed, and
`enforce` does both (the follower executes the call when the window ends, after a restart too).
Functions an app marks `automatic` (a timeout's consequence) the follower calls by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from eth_utils import to_checksum_address

from perun import errors
from perun.chain.channels import Event, Receipt
from perun.chain.multistate import MSContract
from perun.core import msmachine as ms
from perun.core.apps import App, AppState, app_named
from perun.core.channel import Params, checksum
from perun.core.machine import Role, Stage
from perun.core.monitoring import Execution, Monitoring, sign_authorisation
from perun.core.msmachine import MSProposal, MSRecord
from perun.core.multistate import ChannelState, Funding, NanocontractState
from perun.protocols.channels import ChannelProtocol
from perun.protocols.multistate import views, wire
from perun.protocols.multistate.duties import Duties
from perun.protocols.multistate.hooks import AppHooks
from perun.protocols.multistate.proposer import REPLY_TIME, Proposer, now_ms
from perun.protocols.policy import ChannelPolicy
from perun.protocols.towers import Towers
from perun.runtime import Duty, Runtime
from perun.wire import messages as m
from perun.wire.transport import Connection

log = logging.getLogger("perun.node")



class Multistate(ChannelProtocol[MSContract]):
    """The multistate channels of a node, on the MSContract at `contract`; `apps` maps each app
    name the node knows to its deployed address (Deployment.apps). A creation that blocks this
    node's cash needs `accept_nanocontract` (a conditional payment to it does not). A proposal
    the peer does not answer within `reply_time` seconds (the seed's T) expires."""

    kind = "multistate"
    messages = (m.ProposeMultistate, m.AcceptChannel, *wire.PROPOSALS, m.NanocontractAck, m.MonitorAck,
                m.MonitorNanoAck, m.MonitorChannel, m.MonitorNanocontract, m.MonitorCall)
    record_type = MSRecord
    proposal_type = m.ProposeMultistate
    crash_points = (*ChannelProtocol.crash_points, "nano-proposed", "nano-received", "nano-countersigned",
                    "nano-acked", "nano-registered")

    def __init__(self, ctx: Runtime, contract: str, apps: Mapping[str, str], policy: ChannelPolicy,
                 accept_nanocontract: Callable[[NanocontractState], bool], reply_time: float = REPLY_TIME) -> None:
        super().__init__(ctx, MSContract(ctx.chain, contract), policy)
        self.proposer = Proposer(self, reply_time)
        self.app_address = {name: to_checksum_address(address) for name, address in apps.items()}
        self.apps: dict[str, App] = {address: app_named(name).at(self.domain.chain_id, address)
                                     for name, address in self.app_address.items()}
        self.accept_nanocontract = accept_nanocontract
        self.hooks: list[AppHooks] = []
        for rec in ctx.store.ms_channels():
            if rec.domain != self.domain:
                raise errors.StoreError(f"the store holds multistate channels of {rec.domain.verifying_contract}, "
                                        f"not of {self.domain.verifying_contract}")
            self.put(rec)
        self.chain_duties = Duties(self)
        # Watchtowers (docs/protocol.md §12), by channel id: its own state (item: the channel id),
        # and each live nanocontract's (nid, False) and call (nid, True), as MonitorNanoAck names them.
        # Items: a channel's state by its id, a nanocontract's state by (nid, False), its call by (nid, True).
        self.towers: Towers[bytes, bytes | tuple[bytes, bool]] = Towers(ctx, self._hand_over_to)

    def new_record(self, params: Params, role: Role, stage: Stage) -> MSRecord:
        return ms.new_record(params, self.domain, role, stage)

    def apply_event(self, rec: MSRecord, name: str, args: dict) -> MSRecord:
        return ms.apply_event(rec, name, args)

    def next_due(self, rec: MSRecord, now: int) -> int | None:
        return ms.next_due(rec, now)

    def version_of(self, rec: MSRecord) -> int:
        return rec.state.version

    def about(self) -> dict[str, Any]:
        return {"ms_contract": self.contract.address}

    def nanocontract_version(self, rec: MSRecord, nid: bytes) -> int:
        """The version of nanocontract `nid` signed by both in `rec` (-1 if it holds none)."""
        return ms.slot_version(rec, nid)

    def nanocontract_registered(self, rec: MSRecord, nid: bytes) -> int | None:
        """The version of nanocontract `nid` registered on chain, as far as `rec` knows."""
        onchain = rec.registered(nid)
        return onchain.version if onchain is not None else None

    def put(self, rec: MSRecord) -> None:
        super().put(rec)
        for hooks in self.hooks:
            hooks.ledger_changed(rec.channel_id)

    def add_hooks(self, hooks: AppHooks) -> None:
        self.hooks.append(hooks)

    def hooks_of(self, nc: NanocontractState | None) -> AppHooks | None:
        """The hooks of `nc`'s app, if an app's protocol registered some."""
        return next((h for h in self.hooks if nc is not None and h.claims(nc)), None)

    def app_of(self, address: str) -> App:
        return self.apps[checksum(address)]

    # ================================================================== the API

    def channels(self) -> list[views.MultistateInfo]:
        return [self.info(cid) for cid in self.records]

    def info(self, cid: bytes) -> views.MultistateInfo:
        return views.info(self.channel(cid), self.apps)

    def describe(self, cid: bytes) -> dict[str, Any]:
        rec = self.channel(cid)
        shown = views.describe(rec, self.apps)
        if self.towers:  # what each tower acknowledged (None: nothing yet, or not since a restart)
            shown["towers"] = self.towers.shown(cid)
            for nc in shown["nanocontracts"]:
                nid = bytes.fromhex(nc["nid"][2:])
                nc["towers"] = self.towers.shown((nid, False))
                if self._tower_call(rec, rec.nanocontract(nid).state) is not None:
                    nc["tower_calls"] = self.towers.shown((nid, True))
        return shown

    def nanocontract(self, cid: bytes, nid: bytes) -> NanocontractState:
        """The latest version of nanocontract `nid` signed by both parties."""
        return self.channel(cid).nanocontract(nid).state

    async def create(self, cid: bytes, app: str, initial: AppState, fee: int = 0) -> bytes:
        """Creates a nanocontract of `app` (a name, as in Deployment.apps) holding `initial`, with
        the peer, paying it `fee` of this node's cash at the same time; returns its nid once the
        peer has countersigned."""
        if app not in self.app_address:
            raise errors.InvalidNanocontract(f"this node knows no app {app!r}; it knows {', '.join(self.app_address)}")
        address = self.app_address[app]
        self.apps[address].check_initial(initial)
        proposal = await self.proposer.update(cid, b"", lambda rec, t: ms.create(rec, address, initial, self.ctx.key, fee, t))
        return proposal.nid

    async def call(self, cid: bytes, nid: bytes, fun: int, z: bytes = b"") -> NanocontractState:
        """Calls function `fun` of nanocontract `nid` with argument `z`, off chain; returns the
        new state once the peer has countersigned it. The app's errors are raised as they are."""
        app = self.app_of(self.channel(cid).nanocontract(nid).state.app)
        now = await self.ctx.on_chain(self.ctx.chain.timestamp)
        proposal = await self.proposer.update(cid, nid, lambda rec, t: ms.call(rec, nid, fun, z, now, app, self.ctx.key,
                                                                             t))
        assert proposal.nanocontract is not None
        return proposal.nanocontract  # not the record's: a call that terminates it may be absorbed at once

    async def absorb(self, cid: bytes, nid: bytes) -> ChannelState:
        """Removes terminated nanocontract `nid`: what it released goes back to the cash."""
        await self.proposer.update(cid, b"", lambda rec, t: ms.absorb(rec, nid, self.ctx.key, t))
        return self.channel(cid).state

    async def register(self, cid: bytes, nid: bytes) -> Receipt | None:
        """Registers this party's latest version of nanocontract `nid` on chain (signed by the
        peer), starting its window; None if the chain holds it already."""
        rec = self.channel(cid)
        signed = rec.nanocontract(nid)
        onchain = rec.registered(nid)
        if onchain is not None and onchain.version >= signed.state.version:
            return None
        receipt = await self.ctx.transact(self.contract.register, rec.params, signed.state, wire.by_peer(rec, signed))
        self.ctx.faults.point("nano-registered")
        await self.apply(receipt)
        return receipt

    async def execute(self, cid: bytes, nid: bytes, fun: int, z: bytes = b"") -> Receipt:
        """Runs `fun(z)` of registered nanocontract `nid` on chain now (after its window)."""
        receipt = await self.ctx.transact(self.contract.execute, self.channel(cid).params, nid, fun, z)
        await self.apply(receipt)
        return receipt

    async def enforce(self, cid: bytes, nid: bytes, fun: int, z: bytes = b"") -> None:
        """Takes a call the peer will not countersign to the chain: registers the nanocontract
        if needed and has the follower execute `fun(z)` when its window has passed. Durable: a
        restarted node still does it."""
        await self.ctx.save([ms.intend(self.channel(cid), nid, fun, z)])
        await self.register(cid, nid)
        self.ctx.follower.wake()

    async def close(self, cid: bytes) -> Receipt | None:
        """Closes on chain with the latest channel state the peer signed (or replaces an older
        registered one before D). The follower then registers the nanocontracts it lists, runs
        their automatic functions and finalizes. None if the channel closed meanwhile. Durable:
        should a reorganisation take it away, the follower sends it again."""
        receipt = await self.register_close(cid)
        await self.request_close(cid)
        return receipt

    async def register_close(self, cid: bytes) -> Receipt | None:
        """The close transaction itself (the follower's duties: a dispute, a requested close)."""
        rec = self.channel(cid)
        if rec.stage not in (Stage.OPEN, Stage.CLOSING):
            raise errors.WrongStage(f"channel 0x{cid.hex()} is {rec.stage.value}")
        return await self.closing(cid, self.contract.close, rec.params, rec.state, wire.by_peer(rec, rec.channel))

    async def finalize(self, cid: bytes, fundings: tuple[Funding, ...] | None = None) -> Receipt | None:
        """Pays out the registered channel state (after D, or D + Δ with unsettled nanocontracts).
        `fundings`: its nanocontracts, when the close that listed them is not final yet (the
        follower's duty knows them); else the record's."""
        rec = self.channel(cid)
        return await self.closing(cid, self.contract.finalize, rec.params,
                                  rec.registered_fundings if fundings is None else fundings)

    async def cooperative_close(self, cid: bytes, timeout: float | None = None) -> tuple[int, int]:
        """Both sign the cash as a final state, which pays out at once, also in a running dispute
        (every nanocontract must be absorbed first). Returns the payout (alice, bob). If the peer
        does not answer, use `close` (unilateral)."""
        if not self.channel(cid).is_fully_signed_final:
            await self.proposer.update(cid, b"", lambda rec, t: ms.close(rec, self.ctx.key, t))
        if await self.cooperative_close_on_chain(cid) is None:
            await self.ctx.follower.poll()  # the peer's transaction closed it: read its payout
        rec = await self.ctx.wait_for(cid, lambda r: r.stage is Stage.CLOSED, timeout or self.ctx.response_timeout)
        return rec.outcome

    async def cooperative_close_on_chain(self, cid: bytes) -> Receipt | None:
        rec = self.channel(cid)
        if rec.final is None or not rec.is_fully_signed_final:
            raise errors.WrongStage(f"channel 0x{cid.hex()} has no final state signed by both")
        return await self.closing(cid, self.contract.cooperative_close, rec.params, rec.final.state,
                                  rec.final.sig_alice, rec.final.sig_bob)

    # ------------------------------------------------------------------ proposing

    def signed_on(self, peer: str, ref: bytes) -> int:
        """What a refusal of `peer`'s proposal on `ref` (a channel id, or a nid for a call) tells
        it this party signed there (the Error's `signed`): the versions it must go above."""
        rec = self.records.get(ref)
        if rec is not None:  # a refused creation (an opening of a virtual channel, say): no scan
            return rec.channel_signed if rec.peer == peer else 0
        for rec in self.with_peer(peer):
            if any(s.state.nid == ref for s in rec.nanocontracts):
                return max(rec.signed_version(ref), 0)
        return 0

    # ================================================================== messages

    async def receive(self, conn: Connection, msg: m.Message) -> None:
        if isinstance(msg, m.ProposeMultistate):
            self.on_propose(conn, msg)
        elif isinstance(msg, m.AcceptChannel):
            self.on_accept(conn, msg)
        elif isinstance(msg, m.NanocontractAck):
            self._on_ack(conn, msg)
        elif isinstance(msg, m.MonitorAck):
            if msg.channel_id in self.records:
                self.towers.holds(conn.peer, msg.channel_id, msg.version)
        elif isinstance(msg, m.MonitorNanoAck):
            if msg.channel_id in self.records:
                self.towers.holds(conn.peer, (msg.nid, msg.call), msg.version)
        elif isinstance(msg, (m.MonitorChannel, m.MonitorNanocontract, m.MonitorCall)):
            raise errors.ChannelRefused("this node is no watchtower")
        else:
            await self.caught_up(msg.channel_id)  # type: ignore[attr-defined]
            # The receiver's clock for the app's rules. No app's rule for a new nanocontract
            # depends on the time; a virtual channel's validity bound has Δ to spare: the last
            # poll's block will do.
            if isinstance(msg, m.NanocontractCreate):
                now = self.ctx.follower.chain_time
            else:
                now = await self.ctx.on_chain(self.ctx.chain.timestamp)
            self.on_proposal(conn, msg, now)

    def refusal(self, conn: Connection, msg: m.Message, exc: errors.PerunError) -> m.Error:
        error = super().refusal(conn, msg, exc)
        if not isinstance(msg, wire.PROPOSALS):
            return error
        ref = wire.refers_to(msg)
        return m.Error(error.code, error.ref_type, ref, error.version, self.signed_on(conn.peer, ref), error.reason)

    def connected(self, conn: Connection) -> None:
        """After (re)connecting: repeat what the peer may have missed. An unanswered channel
        proposal, and every proposal in flight or expired: the peer acknowledges one it signed
        already, and refuses one that expired before it signed it, which tells this node its fate.
        A tower is handed what it has not acknowledged of every channel."""
        if self.towers.connected(conn, list(self.records)):
            return
        self.repropose(conn)
        for rec in self.with_peer(conn.peer):
            if rec.stage not in (Stage.CLOSED, Stage.FAILED):
                rec = self.proposer.expire_due(rec)
                for proposal in (*rec.expired, *rec.pending):
                    for before in self.preamble(rec, proposal):
                        self.ctx.peers.send(conn, before)
                    self.ctx.peers.send(conn, wire.message(proposal))

    def on_proposal(self, conn: Connection, msg: m.Message, now: int, held: bool = False) -> None:
        """The peer's proposal: checked by recomputing it, countersigned, stored, acknowledged.
        `held`: one an app's protocol held when it came, within its reply time."""
        ctx = self.ctx
        ctx.faults.point("nano-received")
        rec = self.channel_with(conn, msg.channel_id)  # type: ignore[attr-defined]
        proposal, done = wire.proposal_of(rec, msg, self.app_of, now)
        if done is not None:  # countersigned before: acknowledge it again
            ctx.peers.send(conn, wire.ack(done))
            return
        if not held and proposal.expires and now_ms() > proposal.expires:
            raise errors.ProposalExpired(f"the {proposal.kind.value} came after its reply time ended")
        if not held and any(h.intercept(conn, rec, msg, proposal, now) for h in self.hooks):
            return  # held by an app's protocol
        new, mine = ms.receive(rec, proposal, self.app_of, now, ctx.key, self._consents(rec))
        self._adopted(new, proposal)
        def countersigned() -> None:
            ctx.faults.point("nano-countersigned")
            conn.send(wire.ack(mine))
            self._for_towers_later(new, proposal)
        ctx.save([new], wire.signed_states(new, proposal, mine), then=countersigned)

    def check_proposal(self, rec: MSRecord, proposal: MSProposal, now: int) -> None:
        """Raises what receiving `proposal` would, were this party to consent: a dry run."""
        ms.receive(rec, proposal, self.app_of, now, self.ctx.key, lambda nc: True)

    def _consents(self, rec: MSRecord) -> Callable[[NanocontractState], bool]:
        """Whether this party lets a nanocontract the peer creates block its cash."""
        def consents(nc: NanocontractState) -> bool:
            hooks = self.hooks_of(nc)
            return hooks.consents(rec, nc) if hooks is not None else self.accept_nanocontract(nc)
        return consents

    def preamble(self, rec: MSRecord, proposal: MSProposal) -> list[m.Message]:
        """What the hooks of the proposal's app send right before it (AppHooks.preamble)."""
        hooks = self.hooks_of(proposal.nanocontract)
        return hooks.preamble(rec, proposal) if hooks is not None else []

    def _adopted(self, new: MSRecord, proposal: MSProposal) -> None:
        hooks = self.hooks_of(proposal.nanocontract) if proposal.kind in (ms.Kind.CREATE, ms.Kind.CALL) else None
        if hooks is None:
            return
        if proposal.kind is ms.Kind.CREATE:
            hooks.adopted(new, proposal.nanocontract)  # type: ignore[arg-type]
        else:
            hooks.called(new, proposal.nanocontract, proposal.fun, proposal.z)  # type: ignore[arg-type]

    def _on_ack(self, conn: Connection, msg: m.NanocontractAck) -> None:
        rec = self.channel_with(conn, msg.channel_id)
        slot = b"" if msg.slot == wire.CHANNEL_SLOT else msg.slot
        new, proposal = ms.receive_ack(rec, slot, msg.sig_channel, msg.sig_nanocontract, msg.version)
        self._adopted(new, proposal)
        acked = self.ctx.pending.detach((rec.channel_id, slot))
        def done() -> None:
            self.ctx.faults.point("nano-acked")
            acked()
            self._for_towers_later(new, proposal)
        mine = replace(proposal, sig_channel=msg.sig_channel, sig_nanocontract=msg.sig_nanocontract)
        self.ctx.save([new], wire.signed_states(new, proposal, mine), then=done)

    def refused(self, conn: Connection, msg: m.Error, failure: errors.PeerRejected) -> None:
        """The peer refused a multistate message: drop the proposal on that slot (its versions
        stay burned), or fail the channel proposal. A tower's STALE_VERSION says which version it
        holds (of the channel, or of the nanocontract the Error names); its other refusals are
        logged, and the next version goes."""
        tower_item = self._tower_item(msg)
        if tower_item is not None:
            if failure.code == m.ErrorCode.STALE_VERSION:
                self.towers.holds(conn.peer, tower_item, msg.signed)
            return
        if msg.ref_type == m.ProposeMultistate.TYPE:
            self.refused_proposal(msg, failure)
            return
        if msg.ref_type not in {cls.TYPE for cls in wire.PROPOSALS}:
            return  # a refused acknowledgement: the peer lost the proposal, and will say so again
        slot = msg.channel_id if msg.ref_type == m.NanocontractCall.TYPE else b""
        for rec in self.with_peer(conn.peer):
            if slot == b"" and rec.channel_id != msg.channel_id:
                continue
            new, dropped = ms.receive_reject(rec, slot, msg.signed, msg.version)
            if dropped is None:
                continue
            # An app's protocol learns of every final refusal of a creation of its nanocontracts:
            # the caller of `create` may be gone (expired, or a restart since it was proposed);
            # one that is still waiting proposes again after a stale or conflicting one.
            again = failure.code in (m.ErrorCode.CONFLICT, m.ErrorCode.STALE_VERSION) \
                and self.proposer.retries(rec.channel_id, slot)
            hooks = self.hooks_of(dropped.nanocontract) if dropped.kind is ms.Kind.CREATE and not again else None
            if hooks is not None:
                hooks.refused(new, dropped, failure)
            answer = self.ctx.pending.detach((rec.channel_id, slot))
            self.ctx.save([new], then=partial(answer, failure))
            return

    # ================================================================== watchtowers

    def watch_with(self, towers: Iterable[str], reward: int) -> None:
        """Hands `towers` (addresses; the node dials them) every later channel state the peer signs,
        then the latest state of each live nanocontract it lists and the call an app lets a tower
        make on it (AppHooks.tower_call), offering each `reward` (at most what the state gives
        this party) should it act with it (docs/protocol.md §12)."""
        self.towers.watch(towers, reward)

    def for_towers(self, cid: bytes) -> None:
        """Something of channel `cid` changed for its towers (an app's call, say): hand it over
        in a later turn of the event loop."""
        self.towers.later(cid)

    def _for_towers_later(self, rec: MSRecord, proposal: MSProposal) -> None:
        """After the commit of `proposal`, signed by both."""
        if proposal.kind is ms.Kind.ABSORB:
            self.towers.forget([(proposal.nid, False), (proposal.nid, True)])
        self.towers.later(rec.channel_id)

    def _tower_item(self, msg: m.Error) -> Any:
        """The item a tower's refusal names, if it refuses a hand-over."""
        if msg.ref_type == m.MonitorChannel.TYPE:
            return msg.channel_id
        if msg.ref_type in (m.MonitorNanocontract.TYPE, m.MonitorCall.TYPE):
            return msg.channel_id, msg.ref_type == m.MonitorCall.TYPE  # the nid
        return None

    def _tower_call(self, rec: MSRecord, nc: NanocontractState) -> tuple[int, bytes, int] | None:
        hooks = self.hooks_of(nc)
        return hooks.tower_call(rec, nc) if hooks is not None else None

    def _hand_over_to(self, conn: Connection, cids: Iterable[bytes]) -> None:
        for cid in cids:
            rec = self.records.get(cid)
            if rec is not None:
                self._hand_over(conn, rec)

    def _hand_over(self, conn: Connection, rec: MSRecord) -> None:
        """Sends the tower of `conn`, in this order (it takes a nanocontract's state only if the
        channel state it holds lists it, and a call only for a nanocontract state it holds), what
        it lacks of: the latest channel state signed by the peer, the latest state of each
        nanocontract that state lists, and the call an app lets a tower make on each."""
        if rec.stage not in (Stage.OPEN, Stage.CLOSING) or rec.state.version == 0 or rec.is_fully_signed_final:
            return  # nothing the peer signed to refute with; a final state is submitted by its parties
        tower, key, cid, role = conn.peer, self.ctx.key, rec.channel_id, int(rec.role)
        state = rec.state
        if self.towers.offer(tower, cid, state.version):
            reward = min(self.towers.reward, rec.my_cash)
            authorisation = sign_authorisation(self.domain, Monitoring.of(self.domain, state, tower, reward), key)
            conn.send(m.MonitorChannel.of(rec.params, state, wire.by_peer(rec, rec.channel), reward, authorisation))
        listed = {f.nid for f in state.nanocontracts}
        for signed in rec.nanocontracts:
            nc = signed.state
            if nc.nid not in listed:
                continue
            limit = min(self.towers.reward, nc.payout(role))
            if self.towers.offer(tower, (nc.nid, False), nc.version):
                authorisation = sign_authorisation(self.domain, Monitoring.of(self.domain, nc, tower, limit), key)
                conn.send(m.MonitorNanocontract.of(nc, wire.by_peer(rec, signed), limit, authorisation))
            call = self._tower_call(rec, nc)
            if call is not None and self.towers.offer(tower, (nc.nid, True), call[2]):
                fun, z, _ = call
                execution = Execution.of(cid, nc.nid, fun, z, tower, limit)
                conn.send(m.MonitorCall(cid, nc.nid, fun, z, limit, sign_authorisation(self.domain, execution, key)))

    async def towers_hold(self, cid: bytes, version: int, nanocontracts: Mapping[bytes, int] | None = None,
                          calls: Mapping[bytes, int] | None = None, timeout: float = 30.0) -> None:
        """Waits until every tower acknowledged channel `cid` at `version` or above, and each
        nanocontract of `nanocontracts` (nid: version) and call of `calls` (nid: the version it
        carries) at its version or above."""
        wanted: dict[Any, int] = {cid: version}
        wanted.update(((nid, False), v) for nid, v in (nanocontracts or {}).items())
        wanted.update(((nid, True), v) for nid, v in (calls or {}).items())
        items = len(wanted) - 1
        await self.towers.hold(wanted, timeout, f"version {version} of 0x{cid.hex()}"
                                                + (f" and {items} of its nanocontracts' items" if items else ""))

    # ================================================================== the chain

    async def read_chain(self, start: int, end: int) -> tuple[list[Event], list[Any]]:
        events = await super().read_chain(start, end)
        return events, [await h.read_chain(events) for h in self.hooks]

    def apply_chain(self, read: tuple[list[Event], list[Any]]) -> list[Any]:
        events, apps = read
        return [*super().apply_chain(events), *(r for h, a in zip(self.hooks, apps) for r in h.apply_chain(a))]

    def duties(self, now: int) -> Iterable[Duty]:
        return self.chain_duties.due(now)
