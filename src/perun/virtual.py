"""Virtual payment channels in a node (`Node.virtual`): the I/O around perun.core.virtual.

Alice opens γ to Bob through Ingrid in the seed's four messages, which are the multistate
channels' own: Alice proposes ν_a to Ingrid (NanocontractCreate); Ingrid's node checks it and
proposes ν_b to Bob; Bob countersigns ν_b (NanocontractAck); then Ingrid countersigns ν_a. Alice
and Bob then pay each other over their own connection with the payment channels' messages
(`node.pay(gid, amount)`); Ingrid sees none of it. To close, an end signs a final state with the
other and gives it to Ingrid (VirtualClose), who settles both halves with it off chain and
absorbs them. Whatever goes wrong, the watcher's duties take γ to the chain around its validity
(docs/protocol.md §11.2):

    gid = await alice.virtual.open(ledger_a, bob.address, ledger_b, deposit=10**18, peer_deposit=0,
                                   validity=now + 7 * 24 * 3600, window=24 * 3600)
    await alice.pay(gid, 10**17)
    await alice.virtual.close(gid)

A node serves as Ingrid for any γ through its ledger channels when it has a `HubPolicy`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from perun import errors
from perun.core import machine
from perun.core import virtual as vr
from perun.core.apps import virtualchannel as vc
from perun.core.apps.virtualchannel import SIDE_A, SIDE_B, VirtualChannelData
from perun.core.channel import PaymentState, checksum
from perun.core.machine import Stage
from perun.core.msmachine import MSProposal, MSRecord
from perun.core.multistate import NanocontractState
from perun.core.virtual import Half, Position, Seen, VirtualRecord
from perun.wire import messages as m
from perun.wire.transport import Connection

if TYPE_CHECKING:
    from perun.chain.channels import Event
    from perun.chain.multistate import RegisteredNanocontract
    from perun.node import Node

log = logging.getLogger("perun.node")

APP = "VirtualChannel"


@dataclass(frozen=True)
class HubPolicy:
    """What a node serving as Ingrid accepts. `fee` is what she charges per virtual channel, paid
    by Alice in the same channel state that funds ν_a; `capacity` bounds her cash blocked in live
    virtual channels at once (she blocks cashAlice + cashBob for each), `max_channels` their
    number; `accept` may refuse any other γ; `fast_close` False makes her refuse fast closes (the
    ends then settle on chain after validity)."""

    fee: int = 0
    capacity: int | None = None
    max_channels: int | None = None
    accept: Callable[[VirtualChannelData], bool] = lambda v: True
    fast_close: bool = True


@dataclass(frozen=True)
class VirtualInfo:
    """A virtual channel as this node sees it; "my" and "peer" from an end's side."""

    channel: str  # γ's id
    position: str  # alice, bob or ingrid
    alice: str
    ingrid: str
    bob: str
    version: int  # of the latest state signed by both (an end's)
    my_balance: int | None  # an end's
    peer_balance: int | None
    validity: int
    window: int
    final: bool  # a final state signed by both is held
    settled: bool  # every half of this party's is settled (off chain or on chain)


class Virtual:
    """The virtual channels of `node`, through its multistate channels (`node.multistate`)."""

    def __init__(self, node: Node, accept_virtual: Callable[[VirtualChannelData], bool],
                 hub: HubPolicy | None) -> None:
        assert node.multistate is not None
        self.node = node
        self.ms = node.multistate
        if APP not in self.ms.app_address:
            raise errors.InvalidParams(f"virtual channels need the {APP} app's address (Deployment.apps)")
        self.app_address = self.ms.app_address[APP]
        self.domain = vc.virtual_domain(self.ms.domain.chain_id, self.app_address)
        self.accept_virtual = accept_virtual
        self.hub = hub
        self.records: dict[bytes, VirtualRecord] = {}
        # Indexes, so that a hub's work grows with its live channels, not with all it ever served:
        # every half's γ, and the γ not known to be settled yet (pruned as they are found settled).
        self._by_nid: dict[bytes, bytes] = {}
        self._live: set[bytes] = set()
        for rec in node.store.virtual_channels():
            self.put(rec)
        self._waiting: dict[bytes, tuple[Connection, m.NanocontractCreate]] = {}  # Ingrid: ν_a held for ν_b
        self._settling: set[bytes] = set()  # Ingrid: γ being settled off chain
        self._refused: dict[bytes, asyncio.Future] = {}  # an end's close: Ingrid's refusal

    # ================================================================== the API

    def record(self, gid: bytes) -> VirtualRecord:
        try:
            return self.records[gid]
        except KeyError:
            raise errors.UnknownChannel(f"no virtual channel 0x{gid.hex()}") from None

    def put(self, rec: VirtualRecord) -> None:
        """Puts `rec` in memory (the node stores it in its commit)."""
        self.records[rec.id] = rec
        self._by_nid.update((h.nid, rec.id) for h in rec.halves)
        self._live.add(rec.id)

    def live(self) -> list[VirtualRecord]:
        """The records with a half not settled yet: only these can have anything left to do."""
        for gid in [g for g in self._live if self.settled(self.records[g])]:
            self._live.discard(gid)  # settled is final: a settled half never becomes live again
        return [self.records[g] for g in self._live]

    def channels(self) -> list[VirtualInfo]:
        return [self._info(rec) for rec in self.records.values()]

    def info(self, gid: bytes) -> VirtualInfo:
        return self._info(self.record(gid))

    async def open(self, ledger: bytes, bob: str, ledger_b: bytes, deposit: int, peer_deposit: int, validity: int,
                   window: int, fee: int = 0) -> bytes:
        """Opens γ with `bob` through the peer of this node's multistate channel `ledger` (Ingrid),
        whose channel with Bob is `ledger_b` (Bob tells it, as a route hint). This node blocks
        `deposit` in `ledger`, Bob `peer_deposit` in his; γ must close by `validity` (a chain
        time), and each end then has `window` seconds to submit its latest state. `fee` is paid
        to Ingrid with ν_a (her HubPolicy says how much). Returns γ's id once Ingrid has
        countersigned ν_a, which she does once Bob has countersigned ν_b."""
        rec = self.ms.channel(ledger)
        initial = vc.initial(self.node.address, rec.peer, bob, ledger, ledger_b, deposit, peer_deposit, validity,
                             window, secrets.randbits(64), SIDE_A, int(rec.role))
        v = vc.decode(initial.data)
        vr.check_half(v, rec, ledger, self.node.address, self.node.watcher.chain_time)
        await self.ms.create(ledger, APP, initial, fee)
        return v.id

    async def close(self, gid: bytes, timeout: float | None = None) -> tuple[int, int]:
        """The fast close: signs a final state with the other end (unless done before), gives it
        to Ingrid and returns γ's final balances (alice, bob) once she has settled this end's half
        with it. If Ingrid refuses (PeerRejected) or does not in time (PeerTimeout), nothing is
        lost: the watcher registers the half by validity − Δ − 1 and submits the final state
        after validity."""
        rec = self.record(gid)
        if rec.channel is None:
            raise errors.WrongStage("only γ's ends close it; Ingrid settles when they ask")
        node, ch = self.node, rec.channel
        refused = self._refused.setdefault(gid, asyncio.get_running_loop().create_future())
        try:
            pending_final = next((p.state.version for p in ch.pending if p.state.is_final), None)
            if pending_final is not None:
                await node._countersigned(ch.peer, node._ack_future(gid, pending_final), pending_final)
            elif not ch.is_fully_signed_final:
                self._check_live(rec)
                await node._update(ch, machine.final(ch))  # the final_signed hook gives it to Ingrid
            else:
                self._give_final(rec)
            settled = asyncio.ensure_future(node.wait_for(gid, self.settled, timeout or node.response_timeout))
            await asyncio.wait({settled, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._refused.pop(gid, None)
        if not settled.done():
            settled.cancel()
            raise refused.exception()  # type: ignore[misc]
        await settled
        final = self.record(gid).final
        assert final is not None
        return final.state.balance_alice, final.state.balance_bob

    # ------------------------------------------------------------------ views

    def settled(self, rec: VirtualRecord) -> bool:
        """Each of this party's halves is settled: released off chain (or absorbed), executed to
        the end on chain, or its ledger channel closed."""
        return bool(rec.halves) and all(self._half_settled(h) for h in rec.halves)

    def _half_settled(self, half: Half) -> bool:
        ledger = self.ms.records.get(half.ledger)
        if ledger is None or ledger.stage is Stage.CLOSED:
            return True
        held, onchain = self._half_state(half), ledger.registered(half.nid)
        return held is None or held.terminated or (onchain is not None and onchain.terminated)

    def _half_state(self, half: Half) -> NanocontractState | None:
        ledger = self.ms.records.get(half.ledger)
        if ledger is None:
            return None
        return next((s.state for s in ledger.nanocontracts if s.state.nid == half.nid), None)  # type: ignore[misc]

    def _info(self, rec: VirtualRecord) -> VirtualInfo:
        v, ch = rec.data, rec.channel
        mine = peers = None
        if ch is not None:
            mine, peers = ch.my_balance, ch.peer_balance
        return VirtualInfo("0x" + rec.id.hex(), rec.position.name.lower(), v.alice, v.ingrid, v.bob,
                           ch.current.version if ch else max((s.state.version for s in rec.seen), default=0),
                           mine, peers, v.validity, v.window, rec.final is not None, self.settled(rec))

    def _check_live(self, rec: VirtualRecord) -> None:
        vr.live_for_updates(rec, self.node.watcher.chain_time)

    # ================================================================== the node's hooks

    def holding(self, nid: bytes) -> VirtualRecord | None:
        """The record of the γ that nanocontract `nid` is a half of, if any."""
        gid = self._by_nid.get(nid)
        return self.records[gid] if gid is not None else None

    def channel_record(self, gid: bytes) -> machine.ChannelRecord | None:
        """γ's update record, for the node's payment-channel update path (an end's only)."""
        rec = self.records.get(gid)
        return rec.channel if rec is not None else None

    def with_updates(self, channel: machine.ChannelRecord) -> VirtualRecord:
        """γ's record with its updates replaced by `channel` (which the node is saving)."""
        return replace(self.records[channel.channel_id], channel=channel)

    def check_update(self, gid: bytes) -> None:
        """Before signing an update of γ: not past validity."""
        self._check_live(self.record(gid))

    def final_signed(self, gid: bytes) -> None:
        """An end now holds a final state signed by both: give it to Ingrid."""
        self._give_final(self.record(gid))

    def on_connected(self, conn: Connection) -> None:
        """After (re)connecting to a ledger peer: an end gives Ingrid a final state she may have
        missed; Ingrid resumes settling the halves of γ she holds a final state for."""
        for rec in self.live():
            if rec.final is None:
                continue
            if rec.position is Position.INGRID:
                if any(self._ledger_peer(h) == conn.peer for h in rec.halves):
                    self.node._spawn(self._settle(rec.id))
            elif rec.data.ingrid == conn.peer:
                self._give_final(rec)

    def _ledger_peer(self, half: Half) -> str | None:
        ledger = self.ms.records.get(half.ledger)
        return ledger.peer if ledger is not None else None

    # ------------------------------------------------------------------ opening (ν_a and ν_b)

    def is_half(self, nc: NanocontractState) -> bool:
        return nc.app == self.app_address

    def received_half(self, conn: Connection, ledger: MSRecord, msg: m.NanocontractCreate, proposal: MSProposal,
                      now: int) -> bool:
        """Checks a proposed half before the multistate rules run; True if Ingrid holds Alice's ν_a
        until Bob has countersigned ν_b (message 2 of the opening goes out now)."""
        nc = proposal.nanocontract
        assert nc is not None
        v = vc.decode(nc.storage)
        position = vr.check_half(v, ledger, ledger.channel_id, conn.peer, now)
        held = self.records.get(v.id)
        if position is not Position.INGRID:
            if held is not None:
                raise errors.InvalidNanocontract(f"virtual channel 0x{v.id.hex()} has its half here already")
            return False
        if held is not None:
            if held.half(SIDE_A) is not None or held.half(SIDE_B) is None:
                raise errors.InvalidNanocontract(f"virtual channel 0x{v.id.hex()} is being opened or open already")
            return False  # ν_b is countersigned (before a restart, say): countersign ν_a now
        if v.id in self._waiting:
            self._waiting[v.id] = (conn, msg)  # Alice repeated it after a reconnection
            return True
        self._check_hub(v, proposal.fee)
        # Everything else Ingrid checks on ν_a before she commits anything to ν_b.
        self.ms.check_proposal(ledger, proposal, now)
        ledger_b = self.ms.records.get(v.channel_b)
        if ledger_b is None or ledger_b.peer != v.bob or ledger_b.stage is not Stage.OPEN:
            raise errors.InvalidNanocontract(f"Ingrid has no open ledger channel 0x{v.channel_b.hex()} with {v.bob}")
        half_b = vr.hub_half(v, ledger_b)
        vr.check_half(half_b, ledger_b, ledger_b.channel_id, self.node.address, now)
        self._waiting[v.id] = (conn, msg)
        self.node._spawn(self._propose_b(v.id, ledger_b.channel_id, half_b))
        return True

    def _check_hub(self, v: VirtualChannelData, fee: int) -> None:
        hub = self.hub
        if hub is None:
            raise errors.ChannelRefused("this node does not serve virtual channels (no HubPolicy)")
        if fee < hub.fee:
            raise errors.ChannelRefused(f"Ingrid charges a fee of {hub.fee} per virtual channel, not {fee}")
        live = [r for r in self.live() if r.position is Position.INGRID]
        if hub.max_channels is not None and len(live) + len(self._waiting) >= hub.max_channels:
            raise errors.ChannelRefused(f"Ingrid serves at most {hub.max_channels} virtual channels at once")
        opening = [vc.decode(msg.data) for _, msg in self._waiting.values()]
        blocked = sum(v.cash_alice + v.cash_bob for v in [*(r.data for r in live), *opening])
        if hub.capacity is not None and blocked + v.cash_alice + v.cash_bob > hub.capacity:
            raise errors.ChannelRefused(f"Ingrid's capacity {hub.capacity} would be exceeded ({blocked} blocked)")
        if not hub.accept(v):
            raise errors.ChannelRefused("Ingrid's policy refuses this virtual channel")

    async def _propose_b(self, gid: bytes, ledger_b: bytes, half_b: VirtualChannelData) -> None:
        """Message 2: ν_b to Bob. His countersignature (`adopted`) releases Alice's ν_a; his
        refusal is hers. If he does not answer in time, ν_a waits: it completes if he does."""
        try:
            await self.ms.create(ledger_b, APP, vc.initial_of(half_b))
        except errors.PeerTimeout as exc:
            log.warning("%s: virtual channel 0x%s: %s", self.node.name, gid.hex()[:12], exc)
        except errors.PerunError as exc:
            held = self._waiting.pop(gid, None)
            if held is not None:
                conn, msg = held
                refusal = errors.ChannelRefused(f"Bob's node refused ν_b: {exc}")
                self.node._refuse(conn, refusal, msg.TYPE, msg.channel_id, msg.version)

    def consents(self, ledger: MSRecord, nc: NanocontractState) -> bool:
        """Whether this party lets a half block its cash: Ingrid once the other half is signed
        (ν_b before ν_a), an end if its policy accepts γ."""
        v = vc.decode(nc.storage)
        if ledger.me == v.ingrid:
            held = self.records.get(v.id)
            return held is not None and held.half(SIDE_B) is not None and held.half(SIDE_A) is None
        return self.accept_virtual(v)

    def adopted(self, ledger: MSRecord, nc: NanocontractState) -> None:
        """A half is signed by both: stage γ's record with it (in the same commit)."""
        v = vc.decode(nc.storage)
        half = Half(v.side, ledger.channel_id, nc.nid)
        held = self.records.get(v.id)
        if held is None:
            position = Position.INGRID if ledger.me == v.ingrid else Position(v.side)
            rec = vr.new_record(v, position, half, self.domain)
        else:
            rec = vr.with_half(held, half)
        then = None
        if rec.position is Position.INGRID and v.side == SIDE_B and v.id in self._waiting:
            conn, msg = self._waiting.pop(v.id)
            then = lambda: self._countersign_a(conn, msg)  # noqa: E731
        self.node.save(virtual_records=[rec], then=then)

    def _countersign_a(self, conn: Connection, msg: m.NanocontractCreate) -> None:
        """Message 4: Ingrid countersigns the ν_a she held, now that ν_b is durably signed by both."""
        try:
            self.ms.handle(conn, msg, self.node.watcher.chain_time)
        except errors.ValidationError as exc:
            self.node._refuse(conn, exc, msg.TYPE, msg.channel_id, msg.version)

    # ------------------------------------------------------------------ closing

    def _give_final(self, rec: VirtualRecord) -> None:
        final = rec.final
        conn = self.node.peers.get(rec.data.ingrid)
        if final is None or conn is None or conn.closed or self.settled(rec):
            return
        s = final.state
        self.node._send(conn, m.VirtualClose(rec.id, s.version, s.balance_alice, s.balance_bob, final.sig_alice,
                                             final.sig_bob))

    def on_close(self, conn: Connection, msg: m.VirtualClose) -> None:
        """Ingrid: an end's final state. Checked, stored, then both halves settled with it."""
        rec = self.records.get(msg.channel_id)
        if rec is None or rec.position is not Position.INGRID or conn.peer not in (rec.data.alice, rec.data.bob):
            raise errors.UnknownChannel(f"no virtual channel 0x{msg.channel_id.hex()} through this node with "
                                        f"{conn.peer}")
        if self.hub is not None and not self.hub.fast_close:
            raise errors.ChannelRefused("Ingrid does not close virtual channels fast now: settle on chain")
        seen = Seen(PaymentState(msg.channel_id, msg.version, msg.balance_alice, msg.balance_bob, True),
                    msg.sig_alice, msg.sig_bob)
        vr.check_seen(rec, seen, self.domain)
        held = rec.final
        if held is not None and held != seen:
            raise errors.AlreadyFinal(f"virtual channel 0x{rec.id.hex()} has another final state")
        self.node.save(virtual_records=[vr.learn(rec, seen)], then=lambda: self.node._spawn(self._settle(rec.id)))

    async def _settle(self, gid: bytes) -> None:
        """Ingrid's fast close: SETTLE with the final state on each half off chain, then absorb.
        A half whose end does not answer stays as it is; its end's next connection retries, and
        by validity − Δ − 1 the watcher takes it to the chain, where the final state settles it."""
        if gid in self._settling:
            return
        self._settling.add(gid)
        try:
            rec = self.records[gid]
            final = rec.final
            assert final is not None
            await asyncio.gather(*(self._settle_half(h, final.settle_arg()) for h in rec.halves))
        finally:
            self._settling.discard(gid)

    async def _settle_half(self, half: Half, z: bytes) -> None:
        ledger = self.ms.records.get(half.ledger)
        held = self._half_state(half)
        if ledger is None or held is None or ledger.stage is not Stage.OPEN or ledger.registered(half.nid):
            return  # absorbed, or on chain, where the watcher submits the final state
        try:
            if not held.terminated:
                await self.ms.call(half.ledger, half.nid, vc.SETTLE, z)
            await self.ms.absorb(half.ledger, half.nid)
        except (errors.PeerUnavailable, errors.PeerRejected, errors.ValidationError) as exc:
            log.warning("%s: settling nanocontract 0x%s off chain: %s", self.node.name, half.nid.hex()[:12], exc)

    def closes(self) -> list[asyncio.Future]:
        """The futures of this node's closes waiting for Ingrid (a killed node fails them)."""
        return list(self._refused.values())

    def on_error(self, conn: Connection, msg: m.Error, failure: errors.PeerRejected) -> None:
        """Ingrid refused an end's VirtualClose."""
        future = self._refused.get(msg.channel_id)
        if future is not None and not future.done():
            future.set_exception(failure)

    # ================================================================== the chain

    async def submission(self, ledger: MSRecord, nid: bytes, registered: RegisteredNanocontract,
                         now: int) -> list[tuple[int, bytes]]:
        """What the watcher may execute on registered nanocontract `nid` of `ledger` if it is a half
        of γ: SETTLE with this party's state (perun.core.virtual.submission)."""
        if checksum(registered.app) != self.app_address:
            return []
        stored = vc.decode(registered.storage)
        rec = self.records.get(stored.id)
        half = rec.half(stored.side) if rec is not None else None
        if rec is None or half is None or half.nid != nid or half.ledger != ledger.channel_id:
            return []
        other = None
        if rec.position is Position.INGRID:
            other = await self._stored(rec.half(SIDE_B if stored.side == SIDE_A else SIDE_A))
        seen = vr.submission(rec, stored.side, stored, other, now)
        return [(vc.SETTLE, seen.settle_arg())] if seen is not None else []

    async def _stored(self, half: Half | None) -> VirtualChannelData | None:
        """What the chain stores for `half`, if it is registered (this party's view)."""
        if half is None:
            return None
        ledger = self.ms.records.get(half.ledger)
        if ledger is None or ledger.registered(half.nid) is None:
            return None
        registered = await self.node.on_chain(self.ms.contract.nanocontract, half.ledger, half.nid)
        return vc.decode(registered.storage)

    def duties(self, now: int) -> list[tuple[bytes, bytes]]:
        """The halves (ledger, nid) to register now: live ones at validity − Δ − 1."""
        due = []
        for rec in self.live():
            for half in rec.halves:
                ledger = self.ms.records.get(half.ledger)
                held = self._half_state(half)
                if ledger is None or held is None or held.terminated or ledger.registered(half.nid) is not None:
                    continue
                if ledger.stage is Stage.OPEN and vr.register_due(rec, ledger.params.delta, now):
                    due.append((half.ledger, half.nid))
        return due

    async def harvest(self, events: list[Event]) -> list[Seen]:
        """The γ states that SETTLE transactions carry (their calldata: the events do not hold the
        signatures), which Ingrid keeps to copy them to the other half (`learned`)."""
        found = []
        for event in events:
            settled = event.name == "NanocontractExecuted" and event.args["fun"] == vc.SETTLE
            held = self.holding(event.args["nid"]) if settled else None
            if held is None or held.position is not Position.INGRID:
                continue
            call = await self.node.on_chain(self.ms.contract.executed_call, event.tx_hash)
            if call is None:
                log.warning("%s: a SETTLE of 0x%s came from a contract: its state is not readable",
                            self.node.name, event.args["nid"].hex()[:12])
                continue
            s = vc.decode_settle_arg(call[2])
            seen = Seen(PaymentState(held.id, s.version, s.balance_alice, s.balance_bob, s.final),
                        s.r_alice + s.s_alice + bytes([s.v_alice]), s.r_bob + s.s_bob + bytes([s.v_bob]))
            try:
                vr.check_seen(held, seen, self.domain)  # the contract checked it already
            except errors.PerunError as exc:
                log.error("%s: a SETTLE of 0x%s carried a state that does not check: %s", self.node.name,
                          event.args["nid"].hex()[:12], exc)
                continue
            found.append(seen)
        return found

    def learned(self, found: list[Seen]) -> list[VirtualRecord]:
        """The records with the states `harvest` found, from the records as they are now."""
        changed: dict[bytes, VirtualRecord] = {}
        for seen in found:
            gid = seen.state.channel_id
            changed[gid] = vr.learn(changed.get(gid, self.records[gid]), seen)
        return list(changed.values())
