"""Virtual payment channels (seed §3.3) in a node: the I/O around perun.core.virtual.

Alice opens γ to Bob through Ingrid in the seed's four messages, which are the multistate
channels' own: Alice proposes ν_a to Ingrid (NanocontractCreate); Ingrid's node checks it and
proposes ν_b to Bob; Bob countersigns ν_b (NanocontractAck); then Ingrid countersigns ν_a. Alice
and Bob then pay each other over their own connection with the payment channels' messages
(`node.pay(gid, amount)`: this protocol is an UpdateHost of the payment protocol); Ingrid sees
none of it. To close, an end signs a final state with the other and gives it to Ingrid
(VirtualClose), who settles both halves with it off chain and absorbs them. Whatever goes wrong,
the follower takes γ to the chain around its validity (docs/protocol.md §11.2):

    gid = await alice.virtual.open(ledger_a, bob.address, ledger_b, deposit=10**18, peer_deposit=0,
                                   validity=now + 7 * 24 * 3600, window=24 * 3600)
    await alice.pay(gid, 10**17)
    await alice.virtual.close(gid)

A node serves as Ingrid for any γ through its ledger channels when it has a `HubPolicy`
(perun.protocols.virtual.hub). The halves are nanocontracts of the multistate protocol, which
asks this protocol about them through its hooks (perun.protocols.virtual.halves).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

from perun import errors
from perun.core import virtual as vr
from perun.core.apps import virtualchannel as vc
from perun.core.apps.virtualchannel import SIDE_A, VirtualChannelData
from perun.core.channel import ETH
from perun.core.machine import ChannelRecord, Stage
from perun.core.multistate import NanocontractState
from perun.core.virtual import Half, Position, VirtualRecord
from perun.protocols.multistate import Multistate
from perun.protocols.payment import Payment
from perun.protocols.virtual.halves import Halves
from perun.protocols.virtual.hub import Hub, HubPolicy
from perun.protocols.virtual.live import LiveSet
from perun.runtime import Duty, Protocol, Runtime
from perun.runtime.due import DueIndex
from perun.runtime.protocol import json_amounts
from perun.wire import messages as m
from perun.wire.transport import Connection

log = logging.getLogger("perun.node")

APP = "VirtualChannel"
CLOSE = "close"  # the pending slot of an end's fast close: Ingrid's refusal


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


class Virtual(Protocol):
    """The virtual channels of a node, through its multistate channels. An end accepts a γ
    that blocks its cash if `accept_virtual` does (one that only pays it needs no consent); the
    node serves as Ingrid if it has a `hub` policy."""

    kind = "virtual"
    messages = (m.VirtualClose,)
    record_type = VirtualRecord
    crash_points = ("virtual-close-sent", "virtual-close-stored")

    def __init__(self, ctx: Runtime, multistate: Multistate, payment: Payment,
                 accept_virtual: Callable[[VirtualChannelData], bool], hub: HubPolicy | None) -> None:
        if APP not in multistate.app_address:
            raise errors.InvalidParams(f"virtual channels need the {APP} app's address (Deployment.apps)")
        self.ctx = ctx
        self.ms = multistate
        self.payment = payment
        self.app_address = multistate.app_address[APP]
        self.domain = vc.virtual_domain(multistate.domain.chain_id, self.app_address)
        self.accept_virtual = accept_virtual
        self.records: dict[bytes, VirtualRecord] = {}
        # Indexes, so that a hub's work per opening grows with neither the channels it ever served
        # nor those it serves now: every half's γ, and the live γ with Ingrid's totals over hers.
        self._by_nid: dict[bytes, bytes] = {}
        self.live_set = LiveSet(self.records, self.settled)
        # The γ by the chain time from which a half may be due for registration (`duties`).
        self.due_index = DueIndex(lambda: self.records, self._next_due)
        for rec in ctx.store.virtual_channels():
            self.put(rec)
        self.hub = Hub(self, hub)
        multistate.add_hooks(Halves(self))
        payment.add_host(self)

    @property
    def policy(self) -> HubPolicy | None:
        """The hub policy, if this node serves as Ingrid."""
        return self.hub.policy

    # ================================================================== records

    def channel(self, gid: bytes) -> VirtualRecord:
        try:
            return self.records[gid]
        except KeyError:
            raise errors.UnknownChannel(f"no virtual channel 0x{gid.hex()}") from None

    def put(self, rec: VirtualRecord) -> None:
        self.records[rec.id] = rec
        self._by_nid.update((h.nid, rec.id) for h in rec.halves)
        self.live_set.put(rec)
        self.due_index.changed(rec.id)

    def holding(self, nid: bytes) -> VirtualRecord | None:
        """The record of the γ that nanocontract `nid` is a half of, if any."""
        gid = self._by_nid.get(nid)
        return self.records[gid] if gid is not None else None

    def live(self) -> list[VirtualRecord]:
        """The records with a half not settled yet: only these can have anything left to do."""
        return self.live_set.live()

    def version_of(self, rec: VirtualRecord) -> int:
        if rec.channel is not None:
            return rec.channel.current.version
        return max((s.state.version for s in rec.seen), default=0)

    def stage_of(self, rec: VirtualRecord) -> str:
        return "settled" if self.settled(rec) else "open"

    def about(self) -> dict[str, Any]:
        return {"hub": self.hub.policy is not None}

    # ================================================================== the API

    def channels(self) -> list[VirtualInfo]:
        return [self._info(rec) for rec in self.records.values()]

    def info(self, gid: bytes) -> VirtualInfo:
        return self._info(self.channel(gid))

    def describe(self, gid: bytes) -> dict[str, Any]:
        shown = asdict(self.info(gid))
        json_amounts(shown, "my_balance", "peer_balance")
        rec = self.channel(gid)
        ledger = self.ms.records.get(rec.halves[0].ledger)
        if self.ms.towers and rec.channel is not None:  # the γ version of the SETTLE each tower acknowledged
            shown["towers"] = self.ms.towers.shown((rec.halves[0].nid, True))
        return {"kind": self.kind, **shown, "token": ledger.params.token if ledger else ETH}

    async def open(self, ledger: bytes, bob: str, ledger_b: bytes, deposit: int, peer_deposit: int, validity: int,
                   window: int, fee: int = 0) -> bytes:
        """Opens γ with `bob` through the peer of this node's multistate channel `ledger` (Ingrid),
        whose channel with Bob is `ledger_b` (Bob tells it, as a route hint). This node blocks
        `deposit` in `ledger`, Bob `peer_deposit` in his; γ must close by `validity` (a chain
        time), and each end then has `window` seconds to submit its latest state. `fee` is paid
        to Ingrid with ν_a (her HubPolicy says how much). Returns γ's id once Ingrid has
        countersigned ν_a, which she does once Bob has countersigned ν_b."""
        rec = self.ms.channel(ledger)
        initial = vc.initial(self.ctx.address, rec.peer, bob, ledger, ledger_b, deposit, peer_deposit, validity,
                             window, secrets.randbits(64), SIDE_A, int(rec.role))
        v = vc.decode(initial.data)
        vr.check_half(v, rec, ledger, self.ctx.address, self.ctx.follower.chain_time)
        await self.ms.create(ledger, APP, initial, fee)
        return v.id

    async def close(self, gid: bytes, timeout: float | None = None) -> tuple[int, int]:
        """The fast close: signs a final state with the other end (unless done before), gives it
        to Ingrid and returns γ's final balances (alice, bob) once she has settled this end's half
        with it. If Ingrid refuses (PeerRejected) or does not in time (PeerTimeout), nothing is
        lost: the follower registers the half by validity − Δ − 1 and submits the final state
        after validity."""
        rec = self.channel(gid)
        if rec.channel is None:
            raise errors.WrongStage("only γ's ends close it; Ingrid settles when they ask")
        ctx = self.ctx
        refused = ctx.pending.expect((gid, CLOSE))
        try:
            if rec.channel.is_fully_signed_final:
                self.give_final(rec)
            else:
                await self.payment.sign_final(gid)  # the final_signed hook gives it to Ingrid
            settled = asyncio.ensure_future(ctx.wait_for(gid, self.settled, timeout or ctx.response_timeout))
            await asyncio.wait({settled, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ctx.pending.discard((gid, CLOSE))
        if not settled.done():
            settled.cancel()
            raise refused.exception()  # type: ignore[misc]
        await settled
        final = self.channel(gid).final
        assert final is not None
        return final.state.balance_alice, final.state.balance_bob

    async def cooperative_close(self, gid: bytes, timeout: float | None = None) -> tuple[int, int]:
        """γ's cooperative close is its fast close (`close`)."""
        return await self.close(gid, timeout)

    # ------------------------------------------------------------------ views

    def settled(self, rec: VirtualRecord) -> bool:
        """Each of this party's halves is settled: released off chain (or absorbed), executed to
        the end on chain, or its ledger channel closed."""
        return bool(rec.halves) and all(self._half_settled(h) for h in rec.halves)

    def _half_settled(self, half: Half) -> bool:
        ledger = self.ms.records.get(half.ledger)
        if ledger is None or ledger.stage is Stage.CLOSED:
            return True
        held, onchain = self.half_state(half), ledger.registered(half.nid)
        return held is None or held.terminated or (onchain is not None and onchain.terminated)

    def half_state(self, half: Half) -> NanocontractState | None:
        ledger = self.ms.records.get(half.ledger)
        if ledger is None:
            return None
        return next((s.state for s in ledger.nanocontracts if s.state.nid == half.nid), None)

    def ledger_peer(self, half: Half) -> str | None:
        ledger = self.ms.records.get(half.ledger)
        return ledger.peer if ledger is not None else None

    def _info(self, rec: VirtualRecord) -> VirtualInfo:
        v, ch = rec.data, rec.channel
        mine = peers = None
        if ch is not None:
            mine, peers = ch.my_balance, ch.peer_balance
        return VirtualInfo("0x" + rec.id.hex(), rec.position.name.lower(), v.alice, v.ingrid, v.bob,
                           self.version_of(rec), mine, peers, v.validity, v.window, rec.final is not None,
                           self.settled(rec))

    # ================================================================== γ's updates (UpdateHost)

    def updates(self, cid: bytes) -> ChannelRecord | None:
        rec = self.records.get(cid)
        return rec.channel if rec is not None else None

    def all_updates(self) -> Iterable[ChannelRecord]:
        return [rec.channel for rec in self.records.values() if rec.channel is not None]

    def with_updates(self, channel: ChannelRecord) -> VirtualRecord:
        return replace(self.records[channel.channel_id], channel=channel)

    def check_update(self, gid: bytes) -> None:
        """Before signing an update of γ: not past validity."""
        vr.live_for_updates(self.channel(gid), self.ctx.follower.chain_time)

    def final_signed(self, gid: bytes) -> None:
        """An end now holds a final state signed by both: give it to Ingrid."""
        self.give_final(self.channel(gid))

    def peer_signed(self, gid: bytes) -> None:
        """An end stored a new γ state signed by both: its watchtowers get the SETTLE with it, for
        its half, after the half's state (the multistate protocol hands them over,
        Halves.tower_call)."""
        rec = self.records.get(gid)
        if rec is not None and rec.channel is not None:
            for half in rec.halves:
                self.ms.for_towers(half.ledger)

    async def towers_hold(self, gid: bytes, version: int, timeout: float = 30.0) -> None:
        """Waits until every tower of this end acknowledged the SETTLE of its half with γ's state at
        `version` or above."""
        rec = self.channel(gid)
        if rec.channel is None or not rec.halves:
            raise errors.WrongStage("only γ's ends hand their towers a SETTLE")
        half = rec.halves[0]
        await self.ms.towers.hold({(half.nid, True): version}, timeout,
                                  f"the SETTLE of 0x{gid.hex()} at γ version {version}")

    def give_final(self, rec: VirtualRecord) -> None:
        final = rec.final
        conn = self.ctx.peers.get(rec.data.ingrid)
        if final is None or conn is None or self.settled(rec):
            return
        s = final.state
        self.ctx.faults.point("virtual-close-sent")
        self.ctx.peers.send(conn, m.VirtualClose(rec.id, s.version, s.balance_alice, s.balance_bob, final.sig_alice,
                                                 final.sig_bob))

    # ================================================================== messages

    def connected(self, conn: Connection) -> None:
        """After (re)connecting to a ledger peer: an end gives Ingrid a final state she may have
        missed; Ingrid resumes settling the halves of γ she holds a final state for."""
        for rec in self.live():
            if rec.final is None:
                continue
            if rec.position is Position.INGRID:
                if any(self.ledger_peer(h) == conn.peer for h in rec.halves):
                    self.ctx.spawn(self.hub.settle(rec.id))
            elif rec.data.ingrid == conn.peer:
                self.give_final(rec)

    async def receive(self, conn: Connection, msg: m.Message) -> None:
        assert isinstance(msg, m.VirtualClose)
        self.hub.on_close(conn, msg)

    def refused(self, conn: Connection, msg: m.Error, failure: errors.PeerRejected) -> None:
        """Ingrid refused an end's VirtualClose."""
        self.ctx.pending.resolve((msg.channel_id, CLOSE), failure)

    # ================================================================== the chain

    def _next_due(self, gid: bytes, now: int) -> int | None:
        """From when a half of γ may be due for registration: validity − Δ − 1 of its ledger
        channel's Δ (which never changes), the earliest of its halves'; never once γ is settled
        (that is final). Whether a half is due then also depends on its ledger channel's record,
        which changes without γ's: so a γ found due is looked at at every poll until it is settled."""
        rec = self.records[gid]
        if self.settled(rec):
            return None
        times = [vr.register_from(rec, ledger.params.delta) for h in rec.halves
                 if (ledger := self.ms.records.get(h.ledger)) is not None]
        return max(min(times), now) if times else None

    def duties(self, now: int) -> Iterable[Duty]:
        """The halves to register now: live ones at validity − Δ − 1."""
        for gid in self.due_index.due(now):
            rec = self.records[gid]
            for half in rec.halves:
                ledger = self.ms.records.get(half.ledger)
                held = self.half_state(half)
                if ledger is None or held is None or held.terminated or ledger.registered(half.nid) is not None:
                    continue
                if ledger.stage is Stage.OPEN and vr.register_due(rec, ledger.params.delta, now):
                    yield Duty("register", half.ledger, partial(self._register, half))

    async def _register(self, half: Half) -> None:
        log.warning("%s: virtual channel half 0x%s: registering it by validity - Δ - 1", self.ctx.name,
                    half.nid.hex()[:12])
        await self.ms.register(half.ledger, half.nid)
