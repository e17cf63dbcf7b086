"""Multi-hop payments (docs/protocol.md §13) in a node, built on multistate channels: each hop
of a route is a HashTimeLock nanocontract in the multistate channel between two nodes, created
by the multistate protocol's NanocontractCreate right after a LockOnion that carries the
onion for it. The payer locks towards the first hop; each intermediary peels its layer, checks
it against its policy, and once its incoming lock is signed by both locks towards the next hop
with the peeled onion; the payee claims with the preimage of its invoice; each intermediary
learns the preimage from the claim of its outgoing lock and claims its incoming one with it.

    invoice = await dave.invoice(10**15, expiry=now + 3600)
    preimage = await alice.multihop.pay_route(route, invoice, {carol.address: key_c, dave.address: key_d})
    route, preimage = await alice.multihop.pay(invoice)  # the route and keys asked of the peers (directory.py)

The locks are nanocontracts of the multistate protocol, which asks this protocol about them
through its hooks (perun.protocols.multihop.locks). An intermediary learns the preimage from the
next hop's CLAIM on chain as well (its calldata) and claims back with it (`duties`); one stopped
between its incoming lock and its outgoing one forwards when the next hop is connected again if
there is still time, else gives it up (`resume`).

Failures travel back (docs/protocol.md §13.6): a hop that will not pay downstream (the next hop
refused its lock, forwarding failed, it gave up, its outgoing lock was cancelled or reclaimed;
the payee whose checks failed) CANCELs its incoming lock off chain right after a LockFailure
(`fail_back`), and only then (mh.may_cancel); the hop upstream passes it on the same way, and
the payer reads it: `pay_route` raises PaymentFailed. At each lock's deadline (§13.7) the
watcher's duties act: an outgoing lock neither claimed nor released by its timeout is RECLAIMed
(`reclaim`: off chain, else on chain), which fails the payment upstream in turn.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from perun import errors
from perun.core import multihop as mh
from perun.core import onion
from perun.core.amounts import ether
from perun.core.apps import ALICE
from perun.core.apps import hashtimelock as htlc
from perun.core.channel import ETH, checksum
from perun.core.machine import Stage
from perun.core.msmachine import Kind, MSRecord
from perun.core.multihop import FailureCode, HopDuty, HopRecord, Leg, Part
from perun.core.multistate import NanocontractState
from perun.core.onion import HopPayload
from perun.core.route import DEFAULT_MARGIN, ROUTE_SLACK, Invoice, Route, find_route, hop_delay
from perun.protocols.multihop.directory import Directory
from perun.protocols.multihop.locks import Locks
from perun.protocols.multistate import Multistate
from perun.runtime import Duty, Protocol, Runtime
from perun.runtime.due import DueIndex
from perun.wire import messages as m
from perun.wire.transport import Connection

log = logging.getLogger("perun.node")

APP = "HashTimeLock"


@dataclass(frozen=True)
class ForwardPolicy:
    """What a node charges to forward a payment over any of its multistate channels:
    `base_fee` + `fee_ppm` millionths of the amount forwarded (route.Policy's fee), and the timing
    margin it wants between its incoming and outgoing locks' timeouts beyond Δ."""

    base_fee: int = 0
    fee_ppm: int = 0
    margin: int = DEFAULT_MARGIN


class Multihop(Protocol):
    """The multi-hop payments of a node over its multistate channels. It forwards payments if it
    has a `policy`; it pays and is paid in any case."""

    kind = "multihop"
    messages = (m.LockOnion, m.LockFailure, m.ChannelsQuery, m.ChannelsAnnounce)
    record_type = HopRecord
    # A hop stored a failure to send upstream (its outgoing lock released, refused or given up;
    # the payee's checks failed), before it cancels its incoming lock with it.
    crash_points = ("hop-failed",)

    def __init__(self, ctx: Runtime, multistate: Multistate, policy: ForwardPolicy | None = None) -> None:
        if APP not in multistate.app_address:
            raise errors.InvalidParams(f"multi-hop payments need the {APP} app's address (Deployment.apps)")
        self.ctx = ctx
        self.ms = multistate
        self.policy = policy
        self.margin = policy.margin if policy is not None else DEFAULT_MARGIN
        self.app_address = multistate.app_address[APP]
        self.records: dict[bytes, HopRecord] = {}
        self.due_index = DueIndex(lambda: self.records, self._next_due)
        self._onions: dict[bytes, tuple[int, bytes]] = {}  # by channel: the peer's last LockOnion there
        self._failures: dict[tuple[bytes, bytes], bytes] = {}  # by (channel, nid) of a lock sent: its LockFailure
        # Payments (by hash) with a task under way: no second one starts.
        self._claiming: set[bytes] = set()
        self._forwarding: set[bytes] = set()
        self._cancelling: set[bytes] = set()
        self._reclaiming: set[bytes] = set()
        self._absorbing: set[tuple[bytes, bytes]] = set()
        self._unabsorbed: set[tuple[bytes, bytes]] = set()  # absorptions the peer refused: tried again
        for rec in ctx.store.hops():
            self.put(rec)
        multistate.add_hooks(Locks(self))
        self.directory = Directory(self)

    def put(self, rec: HopRecord) -> None:
        super().put(rec)
        self.due_index.changed(rec.channel_id)

    # ================================================================== the API

    async def invoice(self, amount: int, expiry: int, *, min_final: int = 0, description: str = "",
                      token: str = ETH) -> Invoice:
        """A signed invoice for `amount`, payable until `expiry` (chain time); its preimage is
        drawn at random and stored with it (durably, before this returns)."""
        invoice, preimage = Invoice.create(self.ctx.key, None, amount, expiry, chain_id=self.ms.domain.chain_id,
                                           token=token, min_final=min_final, description=description)
        await self.ctx.save([HopRecord(invoice.payment_hash, Part.PAYEE, preimage=preimage,
                                       invoice=invoice.to_bytes())])
        return invoice

    async def pay_route(self, route: Route, invoice: Invoice, public_keys: Mapping[str, bytes],
                        timeout: float = 30.0) -> bytes:
        """Pays `invoice` over `route` (this node its payer): builds the onion with each hop's
        public key (the first hop's from its connection's handshake, the others' from
        `public_keys` by address), locks the route's total towards the first hop, and returns
        the preimage once the lock is claimed. PaymentFailed once the lock comes back (a hop's
        failure, or its timeout) with the failing hop and why; PeerRejected if the first hop
        refuses the lock. PaymentPending, a PeerTimeout, after `timeout` seconds (the payment
        goes on: its record tells how it ends). An invoice whose earlier payment failed may be
        paid again."""
        now = await self.ctx.on_chain(self.ctx.chain.timestamp)
        invoice.check_payable(now)
        if route.payee != invoice.payee:
            raise errors.InvalidRoute("the route does not go to the invoice's payee")
        if route.amount < invoice.amount or invoice.token != ETH:
            raise errors.InvalidRoute(f"the route delivers {route.amount}, the invoice asks {invoice.amount}")
        return await self.lock_route(route, invoice.payment_hash, invoice.payment_secret, public_keys, timeout)

    async def pay(self, invoice: Invoice, timeout: float = 30.0) -> tuple[Route, bytes]:
        """Pays `invoice` over the cheapest route this node knows of: it asks its peers for their
        channels (directory.py), finds the route (route.find_route, timeouts from now plus
        ROUTE_SLACK) and pays over it (`pay_route`), with each hop's key from its announcement
        and the payee's from the invoice's signature. Returns the route and the preimage."""
        now = await self.ctx.on_chain(self.ctx.chain.timestamp)
        invoice.check_payable(now)
        if invoice.chain_id != self.ms.domain.chain_id:
            raise errors.InvalidInvoice(f"the invoice is for chain {invoice.chain_id}, this node is on "
                                        f"{self.ms.domain.chain_id}")
        graph, keys = await self.directory.survey()
        route = find_route(graph, self.ctx.address, invoice.payee, invoice.amount, now + ROUTE_SLACK, self.margin,
                           invoice.min_final, token=invoice.token)
        return route, await self.pay_route(route, invoice, {**keys, invoice.payee: invoice.public_key()}, timeout)

    async def pay_to(self, payee: str, amount: int, timeout: float = 30.0) -> tuple[Route, bytes]:
        """Pays `amount` wei to `payee` without an invoice ("keysend"), over the cheapest route
        as `pay` finds it: this node draws the preimage and sends it in the payee's layer of the
        onion as the payment secret; the payee takes a lock whose hash is its SHA-256. Its key
        comes from its announcement. Returns the route and the preimage, which proves nothing:
        this node knew it all along (docs/protocol.md §13.9)."""
        now = await self.ctx.on_chain(self.ctx.chain.timestamp)
        graph, keys = await self.directory.survey()
        route = find_route(graph, self.ctx.address, payee, amount, now + ROUTE_SLACK, self.margin)
        preimage = secrets.token_bytes(32)
        return route, await self.lock_route(route, hashlib.sha256(preimage).digest(), preimage, keys, timeout)

    async def lock_route(self, route: Route, payment_hash: bytes, payment_secret: bytes,
                         public_keys: Mapping[str, bytes], timeout: float) -> bytes:
        """Builds the onion of `route` for `payment_hash`, the payee's payload carrying
        `payment_secret`, locks towards the first hop, and returns the preimage once claimed
        (as `pay_route` says). It checks no invoice: `pay_route` and `pay_to` do first; called
        alone, it pays what the caller chose, as a payer that breaks the route does (less than
        the invoice, a secret not its own: the payee fails it, docs/protocol.md §13.6)."""
        if checksum(route.payer) != self.ctx.address:
            raise errors.InvalidRoute("the route is not from this node")
        if mh.retryable(self.records.get(payment_hash)) is not None:
            raise errors.InvalidInvoice("this node takes part in a payment with this hash already")
        first = route.hops[0]
        rec = self.ms.channel(first.channel)
        if rec.peer != first.node:
            raise errors.InvalidRoute(f"channel 0x{first.channel.hex()} is not with {first.node}")
        keys = [self._public_key(hop.node, public_keys, i == 0) for i, hop in enumerate(route.hops)]
        payloads = [HopPayload(after.node, after.amount, after.timeout)
                    for after in route.hops[1:]] + [HopPayload(None, route.amount, route.hops[-1].timeout,
                                                               payment_secret)]
        session_key = secrets.token_bytes(32)
        packet = onion.build(session_key, list(zip(keys, payloads)), payment_hash)
        paying = HopRecord(payment_hash, Part.PAYER, outgoing=Leg(first.channel, b"", first.amount,
                                                                  first.timeout), onion=packet,
                           session_key=session_key, route_keys=tuple(keys),
                           route_nodes=tuple(checksum(hop.node) for hop in route.hops))
        await self.ctx.save([paying])
        try:
            await self.ms.create(first.channel, APP, htlc.initial(int(rec.role), first.amount, payment_hash,
                                                                   first.timeout))
        except errors.PerunError as exc:
            self._not_created(payment_hash, exc)
            raise
        try:
            done = await self.ctx.wait_for(payment_hash, lambda r: bool(r.preimage) or mh.finished(r), timeout)
        except errors.PeerTimeout as exc:
            raise errors.PaymentPending(payment_hash, timeout) from exc
        failed = mh.payment_failed(done)
        if failed is not None:
            raise failed
        return done.preimage

    def _not_created(self, payment_hash: bytes, exc: errors.PerunError) -> None:
        """The payer's lock was not created: unless a creation is in flight (its answer tells its
        fate) or the refusal is recorded already (Locks.refused), the record says why."""
        rec = self.records[payment_hash]
        if rec.outgoing is not None and not rec.outgoing.nid and not self._creating(rec):
            self.ctx.save([replace(rec, outgoing=None, refusal=str(exc))])

    def _public_key(self, node: str, given: Mapping[str, bytes], first: bool) -> bytes:
        if first:
            conn = self.ctx.peers.connections.get(checksum(node))
            if conn is not None and conn.public_key:
                return conn.public_key
        for address, key in given.items():
            if checksum(address) == checksum(node):
                return key
        raise errors.InvalidRoute(f"no public key for hop {node}")

    # ================================================================== forwarding and claiming

    def outgoing_channel(self, peer: str, amount: int) -> MSRecord:
        """An open multistate channel with `peer` in which this node's cash covers `amount`."""
        for rec in self.ms.with_peer(checksum(peer)):
            if rec.stage is Stage.OPEN and rec.my_cash >= amount:
                return rec
        raise errors.RouteCapacityExceeded(f"no open channel with {peer} can lock {ether(amount)} ETH")

    async def forward(self, payment_hash: bytes) -> None:
        """Locks towards the next hop, with the peeled onion (the incoming lock is signed by both).
        If that fails and no creation is in flight, the payment is given up and failed back."""
        rec = self.records[payment_hash]
        out = rec.outgoing
        if out is None or out.nid or rec.preimage or rec.failure or payment_hash in self._forwarding:
            return
        self._forwarding.add(payment_hash)
        try:
            ledger = self.ms.channel(out.channel)
            await self.ms.create(out.channel, APP, htlc.initial(int(ledger.role), out.amount, payment_hash,
                                                                 out.timeout))
        except errors.PerunError as exc:
            log.warning("%s: could not forward payment 0x%s: %s", self.ctx.name, payment_hash.hex()[:12], exc)
            self._not_forwarded(payment_hash, exc)
        finally:
            self._forwarding.discard(payment_hash)

    def _not_forwarded(self, payment_hash: bytes, exc: errors.PerunError) -> None:
        """The outgoing lock was not created, and will not be unless a creation is in flight (its
        answer tells: Locks.refused, Locks.adopted): the payment is failed back."""
        rec = self.records[payment_hash]
        if not mh.unforwarded(rec) or self._creating(rec):
            return
        assert rec.next_hop is not None  # an intermediary's
        if isinstance(exc, errors.PeerRejected):
            code, data = FailureCode.NEXT_HOP_REFUSED, mh.refusal_data(int(exc.code), f"{exc.code.name}: {exc.reason}")
        elif isinstance(exc, errors.PeerUnavailable):
            code, data = FailureCode.NEXT_HOP_UNREACHABLE, mh.address_data(rec.next_hop)
        else:
            code, data = FailureCode.NO_CAPACITY, mh.text_data(str(exc))
        self.failing(mh.fail(mh.give_up(rec), code, data))

    async def resume(self, payment_hash: bytes) -> None:
        """Forwards a payment whose outgoing lock a stop kept from being created, if there is
        still time for it (mh.still_forwardable); else gives it up for good and fails it back."""
        rec = self.records[payment_hash]
        if not mh.unforwarded(rec) or payment_hash in self._forwarding or self._creating(rec):
            return
        out = rec.outgoing
        assert out is not None
        now = await self.ctx.on_chain(self.ctx.chain.timestamp)
        delta_out = self.ms.channel(out.channel).params.delta
        if mh.still_forwardable(rec, delta_out, self.margin, now):
            await self.forward(payment_hash)
            return
        self._give_up(payment_hash, now)

    def _give_up(self, payment_hash: bytes, now: int) -> None:
        """An unforwarded payment whose outgoing lock would leave the next hop too little time at
        chain time `now`: given up for good (stored), and failed back (TOO_LATE)."""
        rec = self.records[payment_hash]  # as it is now, after any await
        out = rec.outgoing
        if out is None or not mh.unforwarded(rec) or payment_hash in self._forwarding or self._creating(rec):
            return
        log.warning("%s: too late to forward payment 0x%s (its outgoing lock would time out at %s); giving it up",
                    self.ctx.name, payment_hash.hex()[:12], out.timeout)
        self.failing(mh.fail(mh.give_up(rec), FailureCode.TOO_LATE, mh.times_data(out.timeout, now)))

    def _creating(self, rec: HopRecord) -> bool:
        """A creation of the outgoing lock is in flight (or expired, its fate untold) in the
        outgoing channel: the multistate protocol sends it again itself."""
        out = rec.outgoing
        ledger = self.ms.records.get(out.channel) if out is not None else None
        if ledger is None:
            return False
        for proposal in (*ledger.pending, *ledger.expired):
            nc = proposal.nanocontract
            if proposal.kind is Kind.CREATE and nc is not None and nc.app == self.app_address \
                    and htlc.decode(nc.storage).hashlock == rec.payment_hash:
                return True
        return False

    async def claim(self, payment_hash: bytes, preimage: bytes = b"") -> None:
        """Claims the incoming lock with the preimage (the record's, or `preimage`), off chain; on
        chain if the peer does not countersign (the watcher executes the CLAIM once the
        registration window has passed). Never a lock this node fails. While the peer is not
        connected, or does not hold the lock yet (after a reconnection, its creation is still
        being completed), and time is left, the claim waits (`connected`, `duties`)."""
        rec = self.records[payment_hash]
        inc = rec.incoming
        preimage = preimage or rec.preimage
        if inc is None or not preimage or rec.claimed or rec.failure or payment_hash in self._claiming:
            return
        self._claiming.add(payment_hash)
        try:
            now = await self.ctx.on_chain(self.ctx.chain.timestamp)
            if self._waits_for_sender(inc, now):
                return
            try:
                await self.ms.call(inc.channel, inc.nid, htlc.CLAIM, preimage)
            except errors.PerunError as exc:
                if isinstance(exc, errors.PeerRejected) and exc.code == m.ErrorCode.UNKNOWN_NANOCONTRACT \
                        and self._time_left(inc, now):
                    # The sender has yet to hear the acknowledgement of the lock's creation, which
                    # it sends again after a reconnection: the watcher claims again next poll.
                    log.info("%s: the claim of payment 0x%s waits for the sender to hold the lock: %s",
                             self.ctx.name, payment_hash.hex()[:12], exc)
                    return
                log.warning("%s: the claim of payment 0x%s goes on chain: %s", self.ctx.name,
                            payment_hash.hex()[:12], exc)
                await self.ms.enforce(inc.channel, inc.nid, htlc.CLAIM, preimage)
        finally:
            self._claiming.discard(payment_hash)

    # ================================================================== failing and reclaiming

    def failing(self, rec: HopRecord) -> None:
        """Stores `rec`, which has a failure to send upstream; once it is durable, cancels the
        incoming lock with it (`fail_back`)."""
        def then() -> None:
            self.ctx.faults.point("hop-failed")
            self.ctx.spawn(self.fail_back(rec.payment_hash))
        self.ctx.save([rec], then=then)

    async def fail_back(self, payment_hash: bytes) -> None:
        """CANCELs the incoming lock off chain, the LockFailure right before the call
        (Locks.preamble), if the safety rule allows it (mh.may_cancel) and its sender is
        connected (else once it connects: `connected`, the watcher's duties). Never on chain:
        a lock registered there goes back to its sender at its timeout."""
        rec = self.records[payment_hash]
        inc = rec.incoming
        if inc is None or not mh.may_cancel(rec) or payment_hash in self._cancelling:
            return
        ledger = self.ms.records.get(inc.channel)
        if ledger is None or ledger.peer not in self.ctx.peers.connections or ledger.registered(inc.nid) is not None \
                or ledger.pending_on(inc.nid) is not None or not self._blocking(ledger, inc.nid):
            return
        self._cancelling.add(payment_hash)
        try:
            await self.ms.call(inc.channel, inc.nid, htlc.CANCEL)
        except errors.PerunError as exc:
            log.warning("%s: the cancel of payment 0x%s upstream waits: %s", self.ctx.name,
                        payment_hash.hex()[:12], exc)
        finally:
            self._cancelling.discard(payment_hash)

    async def reclaim(self, payment_hash: bytes) -> None:
        """Takes back the outgoing lock, timed out neither claimed nor released: off chain if
        its receiver is connected and countersigns the RECLAIM, else on chain (registered now,
        executed by the watcher once the registration window has passed, after a restart too).
        An intermediary then fails the payment back (Locks.called, Locks.apply_chain)."""
        rec = self.records[payment_hash]
        out = rec.outgoing
        if out is None or not out.live or rec.preimage or payment_hash in self._reclaiming:
            return
        self._reclaiming.add(payment_hash)
        try:
            try:
                await self.ms.call(out.channel, out.nid, htlc.RECLAIM)
            except errors.PerunError as exc:
                log.warning("%s: the reclaim of payment 0x%s goes on chain: %s", self.ctx.name,
                            payment_hash.hex()[:12], exc)
                await self.ms.enforce(out.channel, out.nid, htlc.RECLAIM)
        finally:
            self._reclaiming.discard(payment_hash)

    # ================================================================== absorbing

    def released_to_me(self, ledger: MSRecord, nc: NanocontractState) -> bool:
        """`nc` is a lock of one of this node's payments that has released its whole amount to
        this node, off chain (signed by both, not registered): this node absorbs it."""
        if nc.app != self.app_address or nc.blocked_alice or nc.blocked_bob or ledger.registered(nc.nid) is not None:
            return False
        mine, theirs = ((nc.released_alice, nc.released_bob) if int(ledger.role) == ALICE
                        else (nc.released_bob, nc.released_alice))
        return mine > 0 and theirs == 0 and htlc.decode(nc.storage).hashlock in self.records

    @staticmethod
    def _held(ledger: MSRecord, nid: bytes) -> NanocontractState | None:
        """Lock `nid` as both signed it last; None once absorbed."""
        return next((s.state for s in ledger.nanocontracts if s.state.nid == nid), None)

    def _blocking(self, ledger: MSRecord, nid: bytes) -> bool:
        """Lock `nid` still blocks its amount (not released, nor absorbed since)."""
        nc = self._held(ledger, nid)
        return nc is not None and nc.blocked_alice + nc.blocked_bob > 0

    async def absorb(self, cid: bytes, nid: bytes) -> None:
        """Absorbs lock `nid` once it released its amount to this node (`released_to_me`), so
        that its slot serves the next payment (a channel holds at most MAX_NANOCONTRACTS). The
        node it paid proposes it, so the two ends never race for it; if the peer does not
        answer, or refuses, the watcher tries again while it is connected (`duties`), and so
        does the next connection (`connected`)."""
        key = (cid, nid)
        ledger = self.ms.records.get(cid)
        nc = self._held(ledger, nid) if ledger is not None and ledger.stage is Stage.OPEN else None
        if ledger is None or nc is None or not self.released_to_me(ledger, nc):
            self._unabsorbed.discard(key)
            return
        if key in self._absorbing:
            return
        self._absorbing.add(key)
        try:
            await self.ms.absorb(cid, nid)
            self._unabsorbed.discard(key)
        except errors.PerunError as exc:
            # After a reconnection, say, the peer may not have the call's countersignature yet.
            log.info("%s: the lock 0x%s stays in channel 0x%s for now: %s", self.ctx.name, nid.hex()[:12],
                     cid.hex()[:12], exc)
            self._unabsorbed.add(key)
        finally:
            self._absorbing.discard(key)

    # ================================================================== the watcher

    def _next_due(self, payment_hash: bytes, now: int) -> int | None:
        rec = self.records[payment_hash]
        return mh.next_due(rec, now, self._delta_out(rec), self.margin)

    def _delta_out(self, rec: HopRecord) -> int:
        out = rec.outgoing
        ledger = self.ms.records.get(out.channel) if out is not None else None
        return ledger.params.delta if ledger is not None else 0

    def duties(self, now: int) -> Iterable[Duty]:
        """What the payments due at chain time `now` (mh.duties, through the due index) need: a
        claim, a reclaim, a forward given up, a failure sent back; and an absorption the peer
        refused, again while it is connected. Each starts its task and returns (nothing waits on
        the follower's loop). A lock this node intends to execute on chain, or executed there, is
        the multistate protocol's."""
        for payment_hash in self.due_index.due(now):
            rec = self.records[payment_hash]
            for due in mh.duties(rec, now, self._delta_out(rec), self.margin):
                duty = self._duty(rec, due, now)
                if duty is not None:
                    yield duty
        for cid, nid in list(self._unabsorbed):
            ledger = self.ms.records.get(cid)
            if (cid, nid) not in self._absorbing and ledger is not None and ledger.peer in self.ctx.peers.connections:
                yield Duty("absorb", cid, self._starting(self.absorb, cid, nid))

    def _duty(self, rec: HopRecord, due: HopDuty, now: int) -> Duty | None:
        h, inc, out = rec.payment_hash, rec.incoming, rec.outgoing
        if due is HopDuty.CLAIM:
            assert inc is not None
            # While its sender is not connected and the lock leaves more than Δ + margin, the
            # claim waits for the connection (`connected`), so as to go off chain. A preimage
            # from unconfirmed blocks counts: it is valid whatever the chain does next.
            ledger = self.ms.records.get(inc.channel)
            if h in self._claiming or ledger is None or self._on_chain(ledger, inc.nid) \
                    or self._waits_for_sender(inc, now):
                return None
            return Duty(due.value, inc.channel, self._starting(self.claim, h, rec.preimage), deadline=inc.timeout)
        if due is HopDuty.RECLAIM:
            assert out is not None
            ledger = self.ms.records.get(out.channel)
            if h in self._reclaiming or ledger is None or self._on_chain(ledger, out.nid):
                return None
            return Duty(due.value, out.channel, self._starting(self.reclaim, h))
        if due is HopDuty.GIVE_UP:
            assert out is not None
            if h in self._forwarding or self._creating(rec):
                return None
            async def give_up() -> None:
                self._give_up(h, now)
            return Duty(due.value, out.channel, give_up)
        assert inc is not None
        ledger = self.ms.records.get(inc.channel)
        if h in self._cancelling or ledger is None or ledger.peer not in self.ctx.peers.connections:
            return None
        return Duty(due.value, inc.channel, self._starting(self.fail_back, h))

    def _waits_for_sender(self, inc: Leg, now: int) -> bool:
        """The claim of incoming lock `inc` waits for its sender to connect, so as to go off chain:
        it is not connected, and the lock leaves time (`_time_left`)."""
        return self.ms.channel(inc.channel).peer not in self.ctx.peers.connections and self._time_left(inc, now)

    def _time_left(self, inc: Leg, now: int) -> bool:
        """Incoming lock `inc` leaves more than Δ_in + margin at chain time `now`: time to wait
        for its sender, and still claim on chain after."""
        return now < inc.timeout - hop_delay(self.ms.channel(inc.channel).params.delta, self.margin)

    @staticmethod
    def _on_chain(ledger: MSRecord, nid: bytes) -> bool:
        """Lock `nid` is the chain's now: this node intends to execute it there, or it was
        executed there. (Registered by the peer, it is claimed or reclaimed on chain, with an
        intent, by `claim` or `reclaim`.)"""
        if any(i.nid == nid for i in ledger.intents):
            return True
        on_chain = ledger.registered(nid)
        return on_chain is not None and on_chain.terminated

    def _starting(self, task: Callable[..., Awaitable[None]], *args: Any) -> Callable[[], Awaitable[None]]:
        async def start() -> None:
            self.ctx.spawn(task(*args))
        return start

    # ================================================================== messages

    async def receive(self, conn: Connection, msg: m.Message) -> None:
        if isinstance(msg, (m.ChannelsQuery, m.ChannelsAnnounce)):
            await self.directory.receive(conn, msg)
            return
        if isinstance(msg, m.LockOnion):
            self.ms.channel_with(conn, msg.channel_id)
            self._onions[msg.channel_id] = (msg.version, msg.packet)
            return
        assert isinstance(msg, m.LockFailure)
        ledger = self.ms.channel_with(conn, msg.channel_id)
        nc = ledger.nanocontract(msg.nid).state
        if nc.app != self.app_address or htlc.decode(nc.storage).sender != int(ledger.role):
            raise errors.InvalidNanocontract("a LockFailure comes with a HashTimeLock this node sent only")
        self._failures[(msg.channel_id, msg.nid)] = msg.failure

    def failure_for(self, cid: bytes, nid: bytes) -> bytes:
        """The failure the peer sent for this node's lock `nid` in channel `cid` (b"" if none)."""
        return self._failures.pop((cid, nid), b"")

    def refused(self, conn: Connection, msg: m.Error, failure: errors.PeerRejected) -> None:
        self.directory.refused(conn, msg)

    def onion_for(self, cid: bytes, version: int) -> bytes | None:
        """The onion the peer sent for its creation at `version` in channel `cid`, if any."""
        held = self._onions.pop(cid, None)
        return held[1] if held is not None and held[0] == version else None

    def connected(self, conn: Connection) -> None:
        """A claim or a failure sent back that a restart or a lost connection interrupted goes
        again; so does a forward whose outgoing lock a stop kept from being created, towards the
        peer now connected, and the absorption of a lock released to this node."""
        for rec in self.records.values():
            inc, out = rec.incoming, rec.outgoing
            if inc is not None and ((rec.preimage and not rec.claimed and not rec.failure) or mh.may_cancel(rec)):
                ledger = self.ms.records.get(inc.channel)
                if ledger is not None and ledger.peer == conn.peer:
                    self.ctx.spawn(self.fail_back(rec.payment_hash) if rec.failure else self.claim(rec.payment_hash))
            if out is not None and mh.unforwarded(rec):
                ledger = self.ms.records.get(out.channel)
                if ledger is not None and ledger.peer == conn.peer:
                    self.ctx.spawn(self.resume(rec.payment_hash))
        for ledger in self.ms.with_peer(conn.peer):
            for signed in ledger.nanocontracts:
                if self.released_to_me(ledger, signed.state):
                    self.ctx.spawn(self.absorb(ledger.channel_id, signed.state.nid))

    # ================================================================== views

    def version_of(self, rec: HopRecord) -> int:
        return 0

    def stage_of(self, rec: HopRecord) -> str:
        return mh.outcome(rec)

    def describe(self, cid: bytes) -> dict[str, Any]:
        rec = self.records.get(cid)
        if rec is None:
            raise errors.UnknownChannel(f"no multi-hop payment 0x{cid.hex()}")
        def leg(x: Leg | None) -> dict[str, Any] | None:
            return None if x is None else {"channel": "0x" + x.channel.hex(), "nid": "0x" + x.nid.hex(),
                                           "amount": str(x.amount), "timeout": x.timeout,
                                           "released": x.released.value if x.released else None}
        shown = {"kind": self.kind, "payment_hash": "0x" + rec.payment_hash.hex(), "part": rec.part.value,
                 "incoming": leg(rec.incoming), "outgoing": leg(rec.outgoing), "next_hop": rec.next_hop,
                 "preimage_known": bool(rec.preimage), "settled": rec.settled, "outcome": mh.outcome(rec)}
        failed = mh.payment_failed(rec)
        if failed is not None:
            shown["failure"] = {"hop": failed.hop, "index": failed.index, "code": failed.code,
                                "reason": failed.reason, "advice": failed.advice}
        return shown
