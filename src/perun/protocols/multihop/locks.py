"""HashTimeLocks as the multistate protocol meets them, for multi-hop payments: the hooks
(perun.protocols.multistate.hooks) through which a lock that came with an onion is checked
before it is countersigned, forwarded, claimed or failed once it is signed by both, and claimed
back once the next hop claims with the preimage. A lock that goes back to its sender (CANCELled
by the next hop after its LockFailure, refused, or RECLAIMed at its timeout), off chain or on
chain, fails the payment upstream (docs/protocol.md §13.6). A lock without an onion is the
node's accept_nanocontract policy's, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from perun import errors
from perun.core import multihop as mh
from perun.core import onion
from perun.core.apps import hashtimelock as htlc
from perun.core.msmachine import Kind, MSProposal, MSRecord
from perun.core.multihop import FailureCode, HopRecord, Leg, Part, Release
from perun.core.multistate import NanocontractState
from perun.core.route import Policy
from perun.protocols.multistate.hooks import AppHooks
from perun.wire import messages as m
from perun.wire.transport import Connection

if TYPE_CHECKING:
    from perun.chain.channels import Event
    from perun.errors import PeerRejected
    from perun.protocols.multihop.protocol import Multihop

log = logging.getLogger("perun.node")

RELEASES = {htlc.CANCEL: Release.CANCELLED, htlc.RECLAIM: Release.RECLAIMED}


@dataclass(frozen=True)
class Intake:
    """A lock with an onion the peer proposed in a channel, checked, waiting to be signed by
    both: what this node does then."""

    nid: bytes
    record: HopRecord


@dataclass(frozen=True)
class Seen:
    """A function of one of this node's locks executed on chain: a CLAIM of its outgoing lock,
    with the `preimage` its calldata carries, or of its incoming lock (`incoming`: its part is
    done); or the lock's release to its sender (`released`: CANCEL or RECLAIM) of either."""

    payment_hash: bytes
    preimage: bytes = b""
    incoming: bool = False
    released: Release | None = None


class Locks(AppHooks):
    def __init__(self, multihop: Multihop) -> None:
        self.multihop = multihop
        self._intake: dict[bytes, Intake] = {}  # by channel: the peer's creation in flight there

    def claims(self, nc: NanocontractState) -> bool:
        return nc.app == self.multihop.app_address

    # ------------------------------------------------------------------ the peer's lock

    def intercept(self, conn: Connection, ledger: MSRecord, msg: m.Message, proposal: MSProposal, now: int) -> bool:
        """A creation of a lock that the peer sent an onion for (LockOnion, same channel and
        version): peeled and checked as the payee's or an intermediary's; raises to refuse it."""
        nc = proposal.nanocontract
        if proposal.kind is not Kind.CREATE or nc is None or not self.claims(nc):
            return False
        packet = self.multihop.onion_for(ledger.channel_id, proposal.version)
        self._intake.pop(ledger.channel_id, None)
        if packet is None:
            return False  # a plain lock: the multistate rules and accept_nanocontract decide
        try:
            self._intake[ledger.channel_id] = Intake(nc.nid, self._check(ledger, nc, packet, now))
        except (errors.OnionError, errors.InvalidRoute, errors.InvalidInvoice) as exc:
            raise errors.InvalidNanocontract(f"the lock's onion: {exc}") from exc
        return False

    def _check(self, ledger: MSRecord, nc: NanocontractState, packet: bytes, now: int) -> HopRecord:
        lock = htlc.decode(nc.storage)
        if lock.sender == int(ledger.role):
            raise errors.InvalidNanocontract("an onion comes with a lock towards this node only")
        amount_in = nc.blocked_bob if lock.sender else nc.blocked_alice
        peeled = onion.peel(packet, self.multihop.ctx.key, lock.hashlock)
        held = mh.retryable(self.multihop.records.get(lock.hashlock))
        delta_in, margin = ledger.params.delta, self.multihop.margin
        incoming = Leg(ledger.channel_id, nc.nid, amount_in, lock.timeout)
        if peeled.is_payee:
            return mh.receive_as_payee(held, lock.hashlock, peeled, incoming, delta_in, margin, now)
        policy = self.multihop.policy
        if policy is None:
            raise errors.ChannelRefused("this node forwards no payments")
        payload = peeled.payload
        out = self.multihop.outgoing_channel(payload.next_hop, payload.amount)  # type: ignore[arg-type]
        mh.check_forwarding(held, Policy(policy.base_fee, policy.fee_ppm, out.params.delta, out.my_cash), delta_in,
                            margin, amount_in, lock.timeout, payload)
        return HopRecord(lock.hashlock, Part.FORWARDER, incoming,
                         Leg(out.channel_id, b"", payload.amount, payload.timeout), payload.next_hop,
                         peeled.next_packet or b"", shared_secret=peeled.shared_secret)

    def consents(self, ledger: MSRecord, nc: NanocontractState) -> bool:
        """A lock that blocks this node's cash is never part of a payment: the node's policy."""
        return self.multihop.ms.accept_nanocontract(nc)

    def adopted(self, ledger: MSRecord, nc: NanocontractState) -> None:
        """A lock the peer proposed with an onion is signed by both: the payee claims it (or
        cancels it with its failure if its checks failed), an intermediary locks towards the next
        hop; each once the record is stored."""
        multihop = self.multihop
        lock = htlc.decode(nc.storage)
        if lock.sender == int(ledger.role):  # this node's own lock: its nid, in the same commit
            rec = multihop.records.get(lock.hashlock)
            out = rec.outgoing if rec is not None else None
            if rec is not None and out is not None and out.channel == ledger.channel_id and not out.nid:
                multihop.ctx.save([replace(rec, outgoing=replace(out, nid=nc.nid))])
            return
        intake = self._intake.get(ledger.channel_id)
        if intake is None or intake.nid != nc.nid:
            return
        del self._intake[ledger.channel_id]
        rec = intake.record
        if rec.failure:
            multihop.failing(rec)
            return
        then = multihop.claim if rec.part is Part.PAYEE else multihop.forward
        multihop.ctx.save([rec], then=lambda: multihop.ctx.spawn(then(rec.payment_hash)))

    def refused(self, ledger: MSRecord, proposal: MSProposal, failure: PeerRejected) -> None:
        """The next hop refused this node's lock of a payment for good: the payer keeps why (its
        caller learns it from `create`); an intermediary gives the payment up and fails it back
        with the refusal (NEXT_HOP_REFUSED)."""
        nc = proposal.nanocontract
        assert nc is not None
        multihop = self.multihop
        rec = multihop.records.get(htlc.decode(nc.storage).hashlock)
        out = rec.outgoing if rec is not None else None
        if rec is None or out is None or out.channel != ledger.channel_id or out.nid or rec.preimage:
            return
        if rec.part is Part.PAYER:
            multihop.ctx.save([replace(rec, outgoing=None, refusal=str(failure))])
            return
        multihop.failing(mh.fail(mh.give_up(rec), FailureCode.NEXT_HOP_REFUSED,
                                 mh.refusal_data(int(failure.code), f"{failure.code.name}: {failure.reason}")))

    # ------------------------------------------------------------------ calls

    def called(self, ledger: MSRecord, nc: NanocontractState, fun: int, z: bytes) -> None:
        """A call of one of this node's locks is signed by both. Of its outgoing lock: a CLAIM
        teaches the preimage (an intermediary claims its incoming lock with it); a CANCEL (after
        the next hop's LockFailure, or without one) or a RECLAIM gives the lock back, and an
        intermediary fails the payment upstream. Of its incoming lock: claimed, or released.
        A lock that released its amount to this node is then absorbed (Multihop.absorb)."""
        multihop = self.multihop
        lock = htlc.decode(nc.storage)
        rec = multihop.records.get(lock.hashlock)
        if rec is None:
            return
        if multihop.released_to_me(ledger, nc):
            multihop.ctx.spawn(multihop.absorb(ledger.channel_id, nc.nid))
        where = (ledger.channel_id, nc.nid)
        if lock.sender == int(ledger.role):
            out = rec.outgoing
            if out is None or (out.channel, out.nid) != where:
                return
            blob = multihop.failure_for(*where)
            if fun in RELEASES and out.released is None and not rec.preimage:
                self._released_out(mh.outgoing_released(rec, RELEASES[fun], blob))
            elif fun == htlc.CLAIM and not rec.preimage:
                learnt = mh.learn(rec, z)
                if rec.part is Part.PAYER:
                    multihop.ctx.save([replace(learnt, claimed=True)])
                else:
                    multihop.ctx.save([learnt], then=lambda: multihop.ctx.spawn(multihop.claim(rec.payment_hash)))
            return
        inc = rec.incoming
        if inc is None or (inc.channel, inc.nid) != where or rec.claimed or inc.released is not None:
            return
        if fun in RELEASES:
            multihop.ctx.save([mh.incoming_released(rec, RELEASES[fun])])
        elif fun == htlc.CLAIM:
            multihop.ctx.save([replace(rec, claimed=True)])

    def _released_out(self, rec: HopRecord) -> None:
        """`rec`, its outgoing lock just released to this node: the payer's outcome, an
        intermediary's failure to pass on."""
        if mh.may_cancel(rec):
            self.multihop.failing(rec)
        else:
            self.multihop.ctx.save([rec])

    def preamble(self, ledger: MSRecord, proposal: MSProposal) -> list[m.Message]:
        """The onion of this node's lock of a payment, before each send of its creation; the
        failure of a payment, before each send of the CANCEL of its incoming lock."""
        nc = proposal.nanocontract
        if nc is None or proposal.kind not in (Kind.CREATE, Kind.CALL):
            return []
        rec = self.multihop.records.get(htlc.decode(nc.storage).hashlock)
        if rec is None:
            return []
        if proposal.kind is Kind.CALL:
            inc = rec.incoming
            if proposal.fun != htlc.CANCEL or inc is None or (inc.channel, inc.nid) != (ledger.channel_id, nc.nid) \
                    or not rec.failure:
                return []
            return [m.LockFailure(ledger.channel_id, nc.nid, rec.failure)]
        out = rec.outgoing
        if out is None or out.channel != ledger.channel_id or not rec.onion or rec.preimage:
            return []
        return [m.LockOnion(ledger.channel_id, proposal.version, rec.onion)]

    # ------------------------------------------------------------------ the chain

    async def read_chain(self, events: list[Event]) -> list[Seen]:
        """The executions of this node's locks among MSContract's `events`: of an outgoing lock
        whose preimage this node does not know, the preimage from a CLAIM's calldata (the event
        does not carry it); a CANCEL or RECLAIM of either lock (its release to its sender)."""
        multihop = self.multihop
        found = []
        for event in events:
            if event.name != "NanocontractExecuted":
                continue
            fun, where = event.args["fun"], (event.args["channelId"], event.args["nid"])
            for rec in list(multihop.records.values()):
                inc, out = rec.incoming, rec.outgoing
                if inc is not None and (inc.channel, inc.nid) == where and not rec.claimed and inc.released is None:
                    if fun == htlc.CLAIM:
                        found.append(Seen(rec.payment_hash, incoming=True))
                    elif fun in RELEASES:
                        found.append(Seen(rec.payment_hash, incoming=True, released=RELEASES[fun]))
                if out is None or (out.channel, out.nid) != where or rec.preimage or out.released is not None:
                    continue
                if fun in RELEASES:
                    found.append(Seen(rec.payment_hash, released=RELEASES[fun]))
                    continue
                if fun != htlc.CLAIM:
                    continue
                call = await multihop.ctx.on_chain(multihop.ms.contract.executed_call, event.tx_hash)
                if call is None or call[0] != out.nid or htlc.hashlock_of(call[2]) != rec.payment_hash:
                    log.error("%s: the CLAIM of payment 0x%s on chain came from a contract: its preimage is not "
                              "readable", multihop.ctx.name, rec.payment_hash.hex()[:12])
                    continue
                found.append(Seen(rec.payment_hash, preimage=call[2]))
        return found

    def apply_chain(self, read: list[Seen]) -> list[HopRecord]:
        """The records with what `read_chain` found, from the records as they are now: the
        preimage learnt (the payer's part is done with it), an incoming lock claimed, a lock
        released (an intermediary's failure to pass on: no LockFailure comes with a CANCEL on
        chain). The multihop protocol's duties claim an intermediary's incoming lock with the
        preimage, or cancel it with the failure."""
        records = self.multihop.records
        changed: dict[bytes, HopRecord] = {}
        for seen in read:
            rec = changed.get(seen.payment_hash) or records.get(seen.payment_hash)
            if rec is None:
                continue
            if seen.released is not None:
                rec = mh.incoming_released(rec, seen.released) if seen.incoming \
                    else mh.outgoing_released(rec, seen.released)
            elif seen.preimage and not rec.preimage:
                rec = mh.learn(rec, seen.preimage)
                rec = replace(rec, claimed=True) if rec.part is Part.PAYER else rec
            elif seen.incoming:
                rec = replace(rec, claimed=True)
            changed[rec.payment_hash] = rec
        return list(changed.values())
