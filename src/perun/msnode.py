"""Multistate channels in a node (`Node.multistate`): the I/O around perun.core.msmachine.

It shares the node's connections, store, group commit and watcher with the payment channels:
messages about a multistate channel come in on the same connection, its record is committed in
the same transaction as anything else staged in the same turn, and the watcher reads MSContract's
events with PaymentContract's and does both kinds of duty (docs/protocol.md §10).

    cid = await alice.multistate.open(bob, deposit=10**18, peer_deposit=10**18, delta=600)
    nid = await alice.multistate.create(cid, "HashTimeLock", hashtimelock.initial(ALICE, 10**17, lock, timeout))
    await bob.multistate.call(cid, nid, hashtimelock.CLAIM, preimage)
    await alice.multistate.absorb(cid, nid)

A nanocontract the peer will not update off chain goes to the chain: `register` puts this
party's latest version there, `execute` runs a function once its window has passed, and
`enforce` does both (the watcher executes the call when the window ends, after a restart too).
Functions an app marks `automatic` (a timeout's consequence) the watcher calls by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from eth_utils import to_checksum_address

from perun import errors
from perun.chain.channels import Receipt
from perun.chain.multistate import MSContract
from perun.core import msmachine as ms
from perun.core.apps import App, AppState, Context, app_named
from perun.core.channel import ETH, Params, checksum
from perun.core.machine import CONFLICT_RETRIES, Role, Stage
from perun.core.msmachine import Duty, Kind, MSProposal, MSRecord, Signed
from perun.core.multistate import ChannelState, NanocontractState, nanocontract_id
from perun.wire import messages as m
from perun.wire.transport import Connection

if TYPE_CHECKING:
    from perun.node import Node

log = logging.getLogger("perun.node")

CHANNEL_SLOT = bytes(32)  # the slot of the channel state on the wire (msmachine's b"")


@dataclass(frozen=True)
class NanocontractInfo:
    nid: str  # 0x-hex
    app: str  # the app's name
    version: int
    blocked: tuple[int, int]  # (mine, peer's)
    released: tuple[int, int]
    on_chain_version: int | None  # the version registered on chain, if any


@dataclass(frozen=True)
class MultistateInfo:
    """A multistate channel as this node sees it; "my" and "peer" from this node's side."""

    channel: str
    peer: str
    role: str
    stage: str
    version: int  # of the latest channel state signed by both
    my_cash: int
    peer_cash: int
    nanocontracts: tuple[NanocontractInfo, ...]
    deadline: int
    registered_version: int | None
    my_payout: int | None
    peer_payout: int | None
    pending: int


class Multistate:
    """The multistate channels of `node`, on the MSContract at `contract`; `apps` maps each app
    name the node knows to its deployed address (Deployment.apps)."""

    def __init__(
        self,
        node: Node,
        contract: str,
        apps: Mapping[str, str],
        accept_channel: Callable[[Params], bool],
        accept_nanocontract: Callable[[NanocontractState], bool],
    ) -> None:
        self.node = node
        self.contract = MSContract(node.chain, contract)
        self.domain = self.contract.domain
        self.app_address = {name: to_checksum_address(address) for name, address in apps.items()}
        self.apps: dict[str, App] = {address: app_named(name).at(self.domain.chain_id, address)
                                     for name, address in self.app_address.items()}
        self.accept_channel = accept_channel
        self.accept_nanocontract = accept_nanocontract
        self.records: dict[bytes, MSRecord] = {}
        for rec in node.store.ms_channels():
            if rec.domain != self.domain:
                raise errors.StoreError(f"the store holds multistate channels of {rec.domain.verifying_contract}, "
                                        f"not of {self.domain.verifying_contract}")
            self.records[rec.channel_id] = rec
        self._acks: dict[tuple[bytes, bytes], asyncio.Future] = {}  # (channel, slot) -> the proposal's outcome
        self._idle: dict[tuple[bytes, bytes], tuple] = {}  # (channel, nid) -> what _execute_due found nothing for

    def _app_of(self, address: str) -> App:
        return self.apps[checksum(address)]

    # ================================================================== the API

    def channel(self, cid: bytes) -> MSRecord:
        try:
            return self.records[cid]
        except KeyError:
            raise errors.UnknownChannel(f"no multistate channel 0x{cid.hex()}") from None

    def channels(self) -> list[MultistateInfo]:
        return [self._info(rec) for rec in self.records.values()]

    def info(self, cid: bytes) -> MultistateInfo:
        return self._info(self.channel(cid))

    def nanocontract(self, cid: bytes, nid: bytes) -> NanocontractState:
        """The latest version of nanocontract `nid` signed by both parties."""
        return self.channel(cid).nanocontract(nid).state  # type: ignore[return-value]

    async def open(self, peer: str, deposit: int, peer_deposit: int, delta: int, token: str = ETH,
                   timeout: float | None = None) -> bytes:
        """Proposes a multistate channel to `peer` (this node is Alice), creates it on chain once
        Bob accepts, and returns its id when Bob has confirmed."""
        node = self.node
        conn = node._connection(peer)
        params = Params(node.address, conn.peer, deposit, peer_deposit, delta, secrets.randbits(64), token)
        rec = ms.new_record(params, self.domain, Role.ALICE, Stage.PROPOSED)
        return await node._open_channel(conn, rec, m.ProposeMultistate.of(params), timeout)

    async def create(self, cid: bytes, app: str, initial: AppState, fee: int = 0) -> bytes:
        """Creates a nanocontract of `app` (a name, as in Deployment.apps) holding `initial`, with
        the peer, paying it `fee` of this node's cash at the same time; returns its nid once the
        peer has countersigned."""
        if app not in self.app_address:
            raise errors.InvalidNanocontract(f"this node knows no app {app!r}; it knows {', '.join(self.app_address)}")
        address = self.app_address[app]
        self.apps[address].check_initial(initial)
        proposal = await self._update(cid, b"", lambda rec: ms.create(rec, address, initial, self.node.key, fee))
        return proposal.nid

    async def call(self, cid: bytes, nid: bytes, fun: int, z: bytes = b"") -> NanocontractState:
        """Calls function `fun` of nanocontract `nid` with argument `z`, off chain; returns the
        new state once the peer has countersigned it. The app's errors are raised as they are."""
        app = self._app_of(self.channel(cid).nanocontract(nid).state.app)  # type: ignore[union-attr]
        now = await self.node.on_chain(self.node.chain.timestamp)
        await self._update(cid, nid, lambda rec: ms.call(rec, nid, fun, z, now, app, self.node.key))
        return self.nanocontract(cid, nid)

    async def absorb(self, cid: bytes, nid: bytes) -> ChannelState:
        """Removes terminated nanocontract `nid`: what it released goes back to the cash."""
        await self._update(cid, b"", lambda rec: ms.absorb(rec, nid, self.node.key))
        return self.channel(cid).state

    async def register(self, cid: bytes, nid: bytes) -> Receipt | None:
        """Registers this party's latest version of nanocontract `nid` on chain (signed by the
        peer), starting its window; None if the chain holds it already."""
        rec = self.channel(cid)
        signed = rec.nanocontract(nid)
        onchain = rec.registered(nid)
        if onchain is not None and onchain.version >= signed.state.version:
            return None
        receipt = await self.node._transact(self.contract.register, rec.params, signed.state, _by_peer(rec, signed))
        await self.node._apply(receipt)
        return receipt

    async def execute(self, cid: bytes, nid: bytes, fun: int, z: bytes = b"") -> Receipt:
        """Runs `fun(z)` of registered nanocontract `nid` on chain now (after its window)."""
        rec = self.channel(cid)
        receipt = await self.node._transact(self.contract.execute, rec.params, nid, fun, z)
        await self.node._apply(receipt)
        return receipt

    async def enforce(self, cid: bytes, nid: bytes, fun: int, z: bytes = b"") -> None:
        """Takes a call the peer will not countersign to the chain: registers the nanocontract
        if needed and has the watcher execute `fun(z)` when its window has passed. Durable: a
        restarted node still does it."""
        rec = self.channel(cid)
        await self.node.save(ms_records=[ms.intend(rec, nid, fun, z)])
        await self.register(cid, nid)
        self.node.watcher.wake()

    async def close(self, cid: bytes) -> Receipt | None:
        """Closes on chain with the latest channel state the peer signed (or replaces an older
        registered one before D). The watcher then registers the nanocontracts it lists, runs
        their automatic functions and finalizes. None if the channel closed meanwhile."""
        rec = self.channel(cid)
        if rec.stage not in (Stage.OPEN, Stage.CLOSING):
            raise errors.WrongStage(f"channel 0x{cid.hex()} is {rec.stage.value}")
        return await self.node._closing(cid, self.contract, self.contract.close, rec.params, rec.state,
                                        _by_peer(rec, rec.channel))

    async def finalize(self, cid: bytes) -> Receipt | None:
        """Pays out the registered channel state (after D, or D + Δ with unsettled nanocontracts)."""
        rec = self.channel(cid)
        return await self.node._closing(cid, self.contract, self.contract.finalize, rec.params,
                                        rec.registered_fundings)

    async def refund(self, cid: bytes) -> Receipt | None:
        """Alice takes her deposit back when Bob did not confirm in time."""
        return await self.node._closing(cid, self.contract, self.contract.refund, self.channel(cid).params)

    # ------------------------------------------------------------------ proposing

    async def _update(self, cid: bytes, slot: bytes, step: Callable[[MSRecord], tuple[MSRecord, MSProposal]]
                      ) -> MSProposal:
        """Proposes what `step` makes of the channel's record. Refused as stale (the peer burned
        versions this party did not know of, and said which), it proposes again at once; refused
        as conflicting, Alice at once and Bob once Alice's proposal on the slot has landed or
        after a short wait: as payments do (§4), up to CONFLICT_RETRIES times."""
        for attempt in range(CONFLICT_RETRIES):
            rec = self.channel(cid)
            new, proposal = step(rec)
            try:
                await self._propose(rec, new, proposal)
                return proposal
            except errors.PeerRejected as exc:
                if exc.code not in (m.ErrorCode.CONFLICT, m.ErrorCode.STALE_VERSION):
                    raise
                if exc.code == m.ErrorCode.CONFLICT and rec.role is Role.BOB:
                    before = _slot_version(self.channel(cid), slot)
                    with contextlib.suppress(errors.PeerTimeout):
                        await self.node.wait_for(cid, lambda r: _slot_version(r, slot) > before, 0.05 * (attempt + 1))
        raise errors.UpdateConflict(f"an update of channel 0x{cid.hex()} was refused {CONFLICT_RETRIES} times")

    async def _propose(self, rec: MSRecord, new: MSRecord, proposal: MSProposal) -> None:
        node = self.node
        conn = node._connection(rec.peer)
        key = (rec.channel_id, proposal.slot)
        acked = self._acks.setdefault(key, asyncio.get_running_loop().create_future())
        def send() -> None:
            node._crash_point("nano-proposed")
            conn.send(_message(proposal))
        node.save(ms_records=[new], ms_states=_signed_states(new, proposal, proposal), then=send)
        try:
            await asyncio.wait_for(asyncio.shield(acked), node.response_timeout)
        except asyncio.TimeoutError as exc:
            raise errors.PeerTimeout(
                f"{rec.peer} did not countersign the {proposal.kind.value} in time; it stays pending and completes "
                "if the peer countersigns it after reconnecting"
            ) from exc

    def signed_on(self, peer: str, ref: bytes) -> int:
        """What a refusal of `peer`'s proposal on `ref` (a channel id, or a nid for a call) tells
        it this party signed there (the Error's `signed`): the versions it must go above."""
        for rec in self.records.values():
            if rec.peer != peer:
                continue
            if rec.channel_id == ref:
                return rec.channel_signed
            if any(s.state.nid == ref for s in rec.nanocontracts):  # type: ignore[union-attr]
                return max(rec.signed_version(ref), 0)
        return 0

    def acks(self) -> list[asyncio.Future]:
        """The futures of this node's proposals in flight (a killed node fails them)."""
        return list(self._acks.values())

    def _resolve(self, key: tuple[bytes, bytes], outcome: BaseException | None) -> None:
        future = self._acks.pop(key, None)
        if future is None or future.done():
            return
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)

    # ================================================================== incoming messages

    def on_connected(self, conn: Connection) -> None:
        """After (re)connecting: repeat what the peer may have missed. An unanswered channel
        proposal, and every proposal in flight (the peer acknowledges one it already signed)."""
        for rec in self.records.values():
            if rec.peer != conn.peer or rec.stage is Stage.CLOSED:
                continue
            if rec.stage is Stage.PROPOSED and rec.role is Role.ALICE:
                self.node._send(conn, m.ProposeMultistate.of(rec.params))
            for proposal in rec.pending:
                self.node._send(conn, _message(proposal))

    def handles(self, cid: bytes) -> bool:
        return cid in self.records

    def opening(self, cid: bytes) -> bool:
        rec = self.records.get(cid)
        return rec is not None and rec.stage in (Stage.ACCEPTED, Stage.INITIALISING)

    def handle(self, conn: Connection, msg: m.Message, now: int | None) -> None:
        """One message about a multistate channel; `now` is the chain's time, read before for
        the proposals (whose app rules need a clock)."""
        if isinstance(msg, m.ProposeMultistate):
            self._on_propose(conn, msg)
        elif isinstance(msg, m.AcceptChannel):
            self._on_accept(conn, msg)
        elif isinstance(msg, m.NanocontractAck):
            self._on_ack(conn, msg)
        else:
            assert now is not None  # node._serve reads it for every proposal
            self._on_proposal(conn, msg, now)

    def _channel_with(self, conn: Connection, cid: bytes) -> MSRecord:
        rec = self.records.get(cid)
        if rec is None or rec.peer != conn.peer:
            raise errors.UnknownChannel(f"no multistate channel 0x{cid.hex()} with {conn.peer}")
        return rec

    def _on_propose(self, conn: Connection, msg: m.ProposeMultistate) -> None:
        node = self.node
        params = msg.params()
        if params.bob != node.address or params.alice != conn.peer:
            raise errors.InvalidParams("a proposal names its sender as alice and the receiver as bob")
        cid = params.channel_id(self.domain.chain_id, self.domain.verifying_contract)
        rec = self.records.get(cid)
        if rec is not None:
            if rec.params != params or rec.role is not Role.BOB:
                raise errors.InvalidParams(f"channel 0x{cid.hex()} exists with other parameters")
            node._send(conn, m.AcceptChannel(cid))  # Alice lost our answer: repeat it
            return
        if not self.accept_channel(params):
            raise errors.ChannelRefused(f"this node does not accept multistate channel 0x{cid.hex()}")
        new = ms.new_record(params, self.domain, Role.BOB, Stage.ACCEPTED)
        def accept() -> None:
            node._crash_point("accept-stored")
            conn.send(m.AcceptChannel(cid))
        node.save(ms_records=[new], then=accept)

    def _on_accept(self, conn: Connection, msg: m.AcceptChannel) -> None:
        rec = self._channel_with(conn, msg.channel_id)
        if rec.role is not Role.ALICE:
            raise errors.WrongStage("only the proposer expects an acceptance")
        if rec.stage is Stage.PROPOSED:
            self.node.save(ms_records=[replace(rec, stage=Stage.ACCEPTED)], then=self.node.watcher.wake)
        self.node._accepted(msg.channel_id)

    def _on_proposal(self, conn: Connection, msg: m.Message, now: int) -> None:
        node = self.node
        node._crash_point("nano-received")
        rec = self._channel_with(conn, msg.channel_id)  # type: ignore[attr-defined]
        proposal, done = self._proposal_of(rec, msg, now)
        if done is not None:  # countersigned before: acknowledge it again
            node._send(conn, _ack(done))
            return
        half = self._virtual_half(proposal)
        if half and node.virtual.received_half(conn, rec, msg, proposal, now):  # type: ignore[union-attr, arg-type]
            return  # Ingrid: ν_a waits for ν_b
        new, mine = ms.receive(rec, proposal, self._app_of, now, node.key, self._consents(rec))
        if half:
            node.virtual.adopted(new, proposal.nanocontract)  # type: ignore[union-attr, arg-type]
        def ack() -> None:
            node._crash_point("nano-countersigned")
            conn.send(_ack(mine))
        node.save(ms_records=[new], ms_states=_signed_states(new, proposal, mine), then=ack)

    def _virtual_half(self, proposal: MSProposal) -> bool:
        """The proposal creates a half of a virtual channel (perun.virtual)."""
        virtual = self.node.virtual
        nc = proposal.nanocontract
        return virtual is not None and proposal.kind is Kind.CREATE and nc is not None and virtual.is_half(nc)

    def _consents(self, rec: MSRecord) -> Callable[[NanocontractState], bool]:
        """Whether this party lets a nanocontract the peer creates block its cash."""
        virtual = self.node.virtual
        def consents(nc: NanocontractState) -> bool:
            if virtual is not None and virtual.is_half(nc):
                return virtual.consents(rec, nc)
            return self.accept_nanocontract(nc)
        return consents

    def check_proposal(self, rec: MSRecord, proposal: MSProposal, now: int) -> None:
        """Raises what receiving `proposal` would, were this party to consent: a dry run."""
        ms.receive(rec, proposal, self._app_of, now, self.node.key, lambda nc: True)

    def _proposal_of(self, rec: MSRecord, msg: m.Message, now: int) -> tuple[MSProposal, MSProposal | None]:
        """The proposal a message stands for, rebuilt from this party's own latest states (the
        wire carries only what the receiver cannot compute), and, if this party holds it as its
        latest state already, its acknowledgement."""
        if isinstance(msg, m.NanocontractCall):
            held: NanocontractState = rec.nanocontract(msg.nid).state  # type: ignore[assignment]
            if msg.version == held.version:
                again = MSProposal(Kind.CALL, msg.nid, nanocontract=held, fun=msg.fun, z=msg.z,
                                   sig_nanocontract=msg.sig_nanocontract)
                return again, _adopted(rec, again)
            _check_prev(msg.prev, held.version, "nanocontract")
            nc = ms.called(rec, msg.nid, msg.fun, msg.z, msg.version, self._app_of, now)
            return MSProposal(Kind.CALL, msg.nid, nanocontract=nc, fun=msg.fun, z=msg.z,
                              sig_nanocontract=msg.sig_nanocontract), None
        if isinstance(msg, m.NanocontractCreate):
            nid = nanocontract_id(rec.channel_id, msg.version)
            nc = NanocontractState.create(rec.channel_id, nid, msg.app,
                                          AppState(msg.blocked_alice, msg.blocked_bob, 0, 0, msg.data))
            if msg.version == rec.state.version:
                again = MSProposal(Kind.CREATE, nid, channel=rec.state, nanocontract=nc,
                                   sig_channel=msg.sig_channel, sig_nanocontract=msg.sig_nanocontract, fee=msg.fee)
                return again, _adopted(rec, again)
            _check_prev(msg.prev, rec.state.version, "channel")
            paid = rec.state.fund(nc).transfer(msg.fee, from_alice=rec.role is Role.BOB)
            return MSProposal(Kind.CREATE, nid, channel=replace(paid, version=msg.version), nanocontract=nc,
                              sig_channel=msg.sig_channel, sig_nanocontract=msg.sig_nanocontract, fee=msg.fee), None
        assert isinstance(msg, m.NanocontractAbsorb)
        if msg.version == rec.state.version:
            again = MSProposal(Kind.ABSORB, msg.nid, channel=rec.state, sig_channel=msg.sig_channel)
            return again, _adopted(rec, again)
        _check_prev(msg.prev, rec.state.version, "channel")
        channel = replace(rec.state.absorb(rec.nanocontract(msg.nid).state), version=msg.version)  # type: ignore[arg-type]
        return MSProposal(Kind.ABSORB, msg.nid, channel=channel, sig_channel=msg.sig_channel), None

    def _on_ack(self, conn: Connection, msg: m.NanocontractAck) -> None:
        rec = self._channel_with(conn, msg.channel_id)
        slot = b"" if msg.slot == CHANNEL_SLOT else msg.slot
        pending = rec.pending_on(slot)
        if pending is None or _version(pending) != msg.version:
            raise errors.StaleVersion(f"no proposal of version {msg.version} in flight on that slot")
        new, proposal = ms.receive_ack(rec, slot, msg.sig_channel, msg.sig_nanocontract)
        if self._virtual_half(proposal):
            self.node.virtual.adopted(new, proposal.nanocontract)  # type: ignore[union-attr, arg-type]
        def done() -> None:
            self.node._crash_point("nano-acked")
            self._resolve((rec.channel_id, slot), None)
        mine = replace(proposal, sig_channel=msg.sig_channel, sig_nanocontract=msg.sig_nanocontract)
        self.node.save(ms_records=[new], ms_states=_signed_states(new, proposal, mine), then=done)

    def on_error(self, conn: Connection, msg: m.Error, failure: errors.PeerRejected) -> None:
        """The peer refused a multistate message: drop the proposal on that slot (its versions
        stay burned), or fail the channel proposal."""
        if msg.ref_type == m.ProposeMultistate.TYPE:
            for cid, rec in self.records.items():
                if rec.peer == conn.peer and rec.stage is Stage.PROPOSED:
                    self.node._accepted(cid, failure)
            return
        if msg.ref_type not in (m.NanocontractCreate.TYPE, m.NanocontractCall.TYPE, m.NanocontractAbsorb.TYPE):
            return  # a refused acknowledgement: the peer lost the proposal, and will say so again
        for rec in self.records.values():
            if rec.peer != conn.peer:
                continue
            slot = msg.channel_id if msg.ref_type == m.NanocontractCall.TYPE else b""
            if slot == b"" and rec.channel_id != msg.channel_id:
                continue
            pending = rec.pending_on(slot)
            if pending is None or _version(pending) != msg.version:
                continue
            new, _ = ms.receive_reject(rec, slot, msg.signed)
            self.node.save(ms_records=[new], then=lambda key=(rec.channel_id, slot): self._resolve(key, failure))
            return

    # ================================================================== the chain

    async def create_on_chain(self, cid: bytes) -> None:
        await self.node._create_on(self.contract, self.channel(cid).params)

    async def confirm_on_chain(self, cid: bytes) -> None:
        await self.node._confirm_on(self.contract, self.channel(cid).params)

    async def do(self, duty: Duty, cid: bytes, nid: bytes) -> None:
        """One of msmachine.duties, for the watcher."""
        rec = self.channel(cid)
        if duty is Duty.CREATE:
            await self.create_on_chain(cid)
        elif duty is Duty.CONFIRM:
            await self.confirm_on_chain(cid)
        elif duty is Duty.REFUND:
            await self.refund(cid)
        elif duty is Duty.DISPUTE:
            log.warning("%s: stale close of 0x%s (version %s); submitting version %s", self.node.name,
                        cid.hex()[:12], rec.registered_version, rec.state.version)
            await self.close(cid)
        elif duty is Duty.REGISTER:
            log.warning("%s: nanocontract 0x%s: registering version %s", self.node.name, nid.hex()[:12],
                        rec.nanocontract(nid).state.version)  # type: ignore[union-attr]
            await self.register(cid, nid)
        elif duty is Duty.EXECUTE:
            await self._execute_due(rec, nid)
        elif duty is Duty.FINALIZE:
            await self.finalize(cid)

    async def _execute_due(self, rec: MSRecord, nid: bytes) -> None:
        """Executes what this party intends for `nid`, else an automatic function, if the app
        allows it now: the mirror runs on the chain's state first, so nothing is sent in vain."""
        node = self.node
        # What may be executed changes only with a new block, an intent, or (a virtual channel's
        # half) a new state: until then a look that found nothing is not repeated.
        inputs = (node.store.last_block(), tuple(i for i in rec.intents if i.nid == nid),
                  node.virtual.holding(nid) if node.virtual is not None else None)
        if self._idle.get((rec.channel_id, nid)) == inputs:
            return
        registered = await node.on_chain(self.contract.nanocontract, rec.channel_id, nid)
        app = self._app_of(registered.app)
        state = registered.state(rec.channel_id, nid).app_state()
        ctx = Context(int(rec.role), await node.on_chain(node.chain.timestamp) + 1, registered.since)
        wanted = [(i.fun, i.z) for i in rec.intents if i.nid == nid]
        if node.virtual is not None:
            wanted += await node.virtual.submission(rec, nid, registered, ctx.time)
        wanted += [(fun, b"") for fun in app.automatic]
        for fun, z in wanted:
            try:
                app.transition(ctx, fun, z, state)
            except errors.PerunError:
                continue
            log.info("%s: nanocontract 0x%s: executing %s on chain", node.name, nid.hex()[:12],
                     next((n for n, f in app.functions.items() if f == fun), fun))
            await self.execute(rec.channel_id, nid, fun, z)
            return
        self._idle[(rec.channel_id, nid)] = inputs

    # ------------------------------------------------------------------ info

    def _info(self, rec: MSRecord) -> MultistateInfo:
        mine = int(rec.role)
        cash = (rec.state.cash_alice, rec.state.cash_bob)
        names = {address: app.name for address, app in self.apps.items()}
        nanos = []
        for signed in rec.nanocontracts:
            nc: NanocontractState = signed.state  # type: ignore[assignment]
            blocked, released = (nc.blocked_alice, nc.blocked_bob), (nc.released_alice, nc.released_bob)
            onchain = rec.registered(nc.nid)
            nanos.append(NanocontractInfo("0x" + nc.nid.hex(), names.get(nc.app, nc.app), nc.version,
                                          (blocked[mine], blocked[1 - mine]), (released[mine], released[1 - mine]),
                                          onchain.version if onchain else None))
        return MultistateInfo(
            channel="0x" + rec.channel_id.hex(), peer=rec.peer, role=rec.role.name.lower(), stage=rec.stage.value,
            version=rec.state.version, my_cash=cash[mine], peer_cash=cash[1 - mine], nanocontracts=tuple(nanos),
            deadline=rec.deadline, registered_version=rec.registered_version,
            my_payout=None if rec.outcome is None else rec.outcome[mine],
            peer_payout=None if rec.outcome is None else rec.outcome[1 - mine], pending=len(rec.pending),
        )


# ---------------------------------------------------------------------- helpers


def _by_peer(rec: MSRecord, signed: Signed) -> bytes:
    """The peer's signature on `signed`: what the contract takes from this party."""
    return signed.by(Role.BOB if rec.role is Role.ALICE else Role.ALICE)


def _slot_version(rec: MSRecord, slot: bytes) -> int:
    if slot == b"":
        return rec.state.version
    return next((s.state.version for s in rec.nanocontracts if s.state.nid == slot), -1)  # type: ignore[union-attr]


def _adopted(rec: MSRecord, proposal: MSProposal) -> MSProposal:
    done = ms.adopted(rec, proposal)
    if done is None:
        raise errors.StaleVersion(f"this party holds another state at that version of 0x{proposal.nid.hex()}")
    return done


def _check_prev(prev: int, held: int, what: str) -> None:
    if prev != held:
        raise errors.UpdateConflict(f"the proposal builds on {what} version {prev}; this party holds {held}")


def _version(proposal: MSProposal) -> int:
    """The version a proposal's messages name: the nanocontract's for a call, else the channel's."""
    return proposal.nanocontract.version if proposal.kind is Kind.CALL else proposal.channel.version  # type: ignore[union-attr]


def _message(p: MSProposal) -> m.Message:
    if p.kind is Kind.CREATE:
        nc, ch = p.nanocontract, p.channel
        return m.NanocontractCreate(ch.channel_id, ch.version, p.prev, nc.app, nc.blocked_alice, nc.blocked_bob,
                                    p.fee, nc.storage, p.sig_channel, p.sig_nanocontract)
    if p.kind is Kind.CALL:
        nc = p.nanocontract
        return m.NanocontractCall(nc.channel_id, p.nid, nc.version, p.prev, p.fun, p.z, p.sig_nanocontract)
    return m.NanocontractAbsorb(p.channel.channel_id, p.nid, p.channel.version, p.prev, p.sig_channel)


def _ack(p: MSProposal) -> m.NanocontractAck:
    cid = (p.channel or p.nanocontract).channel_id  # type: ignore[union-attr]
    slot = p.nid if p.kind is Kind.CALL else CHANNEL_SLOT
    return m.NanocontractAck(cid, slot, _version(p), p.sig_channel, p.sig_nanocontract)


def _signed_states(rec: MSRecord, proposal: MSProposal, signatures: MSProposal) -> list[Signed]:
    """The states of `proposal` with what this party holds of their signatures after `rec`."""
    out = []
    for state in (proposal.channel, proposal.nanocontract):
        if state is None:
            continue
        if state == rec.state:
            out.append(rec.channel)
        else:
            held = next((s for s in rec.nanocontracts if s.state == state), None)
            own = signatures.sig_channel if isinstance(state, ChannelState) else signatures.sig_nanocontract
            out.append(held or Signed(state, *((own, b"") if rec.role is Role.ALICE else (b"", own))))
    return out
