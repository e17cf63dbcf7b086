"""Multi-hop payments at one node (docs/protocol.md §13): what a node keeps of each payment it
pays, forwards or receives, the pure checks of an incoming lock that carries an onion, the
failures that travel back (§13.6) and what is due at each lock's deadline (§13.7).

A payment is named by its payment hash (the HashTimeLock's hashlock). A node takes part in a
payment at most once at a time, as its payer, as one of its intermediaries or as its payee: a
second lock with the same hash is refused while the first attempt has a lock live, so that no
node holds two locks it would claim with one preimage by mistake. The record keeps the locks of
this node's part (`incoming`, `outgoing`), the onion it sends with its outgoing lock, the
preimage once it knows it, and what it needs to fail the payment: a hop's shared secret and the
failure it passes back, the payer's session key and route.

The safety rule of failing back (`may_cancel`): a hop cancels its incoming lock only once its
outgoing lock does not exist and never will (refused, given up) or is released back to it
(cancelled by the next hop, or reclaimed after its timeout); never while it could still be
claimed. The payee cancels only a lock it will not claim (its checks failed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import Enum, IntEnum

from eth_utils import to_checksum_address

from perun import errors
from perun.core import onion
from perun.core.amounts import ether
from perun.core.machine import first_due
from perun.core.onion import HopPayload
from perun.core.route import Invoice, Policy, check_final, check_forward, hop_delay


class Part(Enum):
    PAYER = "payer"
    FORWARDER = "forwarder"
    PAYEE = "payee"


class Release(str, Enum):
    """How a lock went back to its sender."""

    CANCELLED = "cancelled"  # by its receiver, at any time: a failure downstream (§13.6)
    RECLAIMED = "reclaimed"  # by its sender, after its timeout (§13.7)


@dataclass(frozen=True)
class Leg:
    """One HashTimeLock of the payment in channel `channel`: `nid` (empty until created),
    `amount` blocked by its sender, claimable until `timeout` (chain time, seconds); `released`
    once it went back to its sender."""

    channel: bytes
    nid: bytes
    amount: int
    timeout: int
    released: Release | None = None

    @property
    def live(self) -> bool:
        """Created, and not released to its sender (it may be claimed, which the record says)."""
        return bool(self.nid) and self.released is None


@dataclass(frozen=True)
class HopRecord:
    """This node's part in the payment with `payment_hash`. `onion`: the packet this node sends
    with its outgoing lock (the payer's whole onion, or an intermediary's peeled one). `invoice`:
    the payee's invoice (Invoice.to_bytes), kept with its `preimage`. `claimed`: this node's
    incoming lock is claimed (the payee's, an intermediary's), or its outgoing one (the payer's).

    Failing (§13.6): a hop's `shared_secret` (from its layer of the onion) makes and re-obfuscates
    the `failure` it sends upstream with the CANCEL of its incoming lock; the payer keeps its
    onion's `session_key`, the hops' public keys (`route_keys`) and addresses (`route_nodes`) to
    read the `failure` that comes back to it, and `refusal`: why its own lock was never created."""

    payment_hash: bytes
    part: Part
    incoming: Leg | None = None
    outgoing: Leg | None = None
    next_hop: str | None = None
    onion: bytes = b""
    preimage: bytes = b""
    invoice: bytes = b""
    claimed: bool = False
    shared_secret: bytes = b""
    session_key: bytes = b""
    route_keys: tuple[bytes, ...] = ()
    route_nodes: tuple[str, ...] = ()
    failure: bytes = b""
    refusal: str = ""

    channel_id: bytes = field(init=False, repr=False, compare=False)  # the runtime's key for a record

    def __post_init__(self) -> None:
        if len(self.payment_hash) != 32:
            raise errors.InvalidParams("a payment hash is 32 bytes")
        object.__setattr__(self, "channel_id", self.payment_hash)

    @property
    def settled(self) -> bool:
        """Nothing is left to do: the payer knows the preimage, the others claimed their lock."""
        return self.part is Part.PAYER and bool(self.preimage) or self.claimed

    def the_invoice(self) -> Invoice:
        if not self.invoice:
            raise errors.InvalidInvoice("this payment has no invoice here")
        return Invoice.from_bytes(self.invoice)


def learn(rec: HopRecord, preimage: bytes) -> HopRecord:
    """`rec` with the preimage, which must hash to its payment hash (InvalidNanocontract)."""
    if hashlib.sha256(preimage).digest() != rec.payment_hash:
        raise errors.InvalidNanocontract("the preimage does not hash to the payment hash")
    return replace(rec, preimage=preimage)


def unforwarded(rec: HopRecord) -> bool:
    """An intermediary's payment whose incoming lock is signed by both but whose outgoing lock
    was never created (the node stopped in between), nor given up (`give_up`)."""
    out = rec.outgoing
    return (rec.part is Part.FORWARDER and rec.incoming is not None and bool(rec.incoming.nid)
            and out is not None and not out.nid and not rec.preimage)


def still_forwardable(rec: HopRecord, delta_out: int, margin: int, now: int) -> bool:
    """Whether an intermediary may still create its outgoing lock at chain time `now`: the
    next hop gets at least Δ_out + margin before the lock times out, as a payee requires of its
    lock (check_final), and so the incoming lock, Δ_in + margin later still (check_forward),
    leaves this node the time to claim it on chain once the preimage is out."""
    out = rec.outgoing
    return out is not None and out.timeout >= now + hop_delay(delta_out, margin)


def give_up(rec: HopRecord) -> HopRecord:
    """`rec` without its outgoing lock, which it will never create (its incoming lock is then
    cancelled with a failure: `fail`)."""
    return replace(rec, outgoing=None)


def check_payee(rec: HopRecord | None, payload: HopPayload, amount_in: int, timeout_in: int, delta_in: int,
                margin: int, now: int, payment_hash: bytes = b"") -> Invoice | None:
    """The payee's checks of a lock whose onion ends here: an invoice of its own with this hash,
    not paid yet, whose payment secret the onion carries, the amount and timeout the payer meant
    (the payload's) and enough of both for the invoice (check_final). Returns the invoice; None
    for a payment without one (keysend: no record with this hash, and the payment secret is the
    preimage of `payment_hash`), whose amount is the payload's."""
    keysend = rec is None and bool(payment_hash) and hashlib.sha256(payload.payment_secret).digest() == payment_hash
    if not keysend and (rec is None or rec.part is not Part.PAYEE or not rec.invoice):
        raise errors.InvalidNanocontract("no invoice of this node has this payment hash")
    if rec is not None and rec.incoming is not None:
        raise errors.InvalidNanocontract("this invoice is being paid already")
    invoice = None if rec is None else rec.the_invoice()
    if invoice is not None and payload.payment_secret != invoice.payment_secret:
        raise errors.InvalidNanocontract("the onion does not carry the invoice's payment secret")
    if amount_in < payload.amount or timeout_in < payload.timeout:
        raise errors.InvalidNanocontract(
            f"the lock ({amount_in} until {timeout_in}) is not what the payer sent ({payload.amount} until "
            f"{payload.timeout})")
    expected, min_final = (invoice.amount, invoice.min_final) if invoice is not None else (payload.amount, 0)
    check_final(expected, min_final, delta_in, margin, now, amount_in, timeout_in)
    return invoice


def receive_as_payee(held: HopRecord | None, payment_hash: bytes, peeled: onion.Peeled, incoming: Leg, delta_in: int,
                     margin: int, now: int) -> HopRecord:
    """The payee's record of a lock on `payment_hash` whose onion ends here (`peeled`, its
    layer), `held` its record of the hash (mh.retryable), to claim if
    check_payee passes and the invoice has not expired, else to cancel with a failure of the
    payee's (UNKNOWN_PAYMENT, WRONG_AMOUNT, EXPIRY_TOO_SOON, INVOICE_EXPIRED): such a lock is
    taken, so that the payer learns why from the payee itself. A hash this node takes part in
    otherwise is refused (InvalidNanocontract): one record holds one attempt."""
    if held is not None and (held.part is not Part.PAYEE or held.incoming is not None):
        raise errors.InvalidNanocontract("this node takes part in a payment with this hash already")
    fresh = HopRecord(payment_hash, Part.PAYEE) if held is None else held
    rec = replace(fresh, incoming=incoming, shared_secret=peeled.shared_secret)
    try:
        invoice = check_payee(held, peeled.payload, incoming.amount, incoming.timeout, delta_in, margin, now,
                              payment_hash)
    except errors.RouteFeeMismatch:
        return fail(rec, FailureCode.WRONG_AMOUNT, incoming.amount.to_bytes(16, "big"))
    except errors.RouteTimeoutTooClose:
        return fail(rec, FailureCode.EXPIRY_TOO_SOON, times_data(incoming.timeout, now))
    except errors.InvalidNanocontract:
        return fail(rec, FailureCode.UNKNOWN_PAYMENT)
    if invoice is None:  # keysend: the payment secret is the preimage
        return replace(rec, preimage=peeled.payload.payment_secret)
    if now >= invoice.expiry:
        return fail(rec, FailureCode.INVOICE_EXPIRED, times_data(invoice.expiry))
    return rec


def check_forwarding(held: HopRecord | None, policy_out: Policy, delta_in: int, margin: int, amount_in: int,
                     timeout_in: int, payload: HopPayload) -> None:
    """An intermediary's checks of a lock it is asked to forward: no part in this payment yet,
    and its fee, timing and capacity (route.check_forward) on the outgoing channel."""
    if held is not None:
        raise errors.InvalidNanocontract("this node takes part in a payment with this hash already")
    if payload.next_hop is None:
        raise errors.InvalidNanocontract("the onion names no next hop")
    check_forward(policy_out, delta_in, margin, amount_in, timeout_in, payload.amount, payload.timeout)


def retryable(held: HopRecord | None) -> HopRecord | None:
    """What a new attempt of a payment meets of `held`, this node's record of an earlier one:
    nothing once that attempt failed and none of its locks is live (`finished`), except a payee's
    invoice, which may be paid again; else `held` itself (the hash is taken)."""
    if held is None or not finished(held):
        return held
    if held.part is Part.PAYEE and held.invoice:
        return replace(held, incoming=None, shared_secret=b"", failure=b"")
    return None


def finished(rec: HopRecord) -> bool:
    """This node's part in a failed attempt is over: no lock of it is live, nothing was claimed."""
    if (rec.preimage and rec.part is not Part.PAYEE) or rec.claimed:
        return False
    inc, out = rec.incoming, rec.outgoing
    if rec.part is Part.PAYER:
        return out is None or out.released is not None
    if rec.part is Part.PAYEE:
        return inc is not None and inc.released is not None
    return inc is not None and inc.released is not None and (out is None or out.released is not None)


# --------------------------------------------------------------------------- failures (§13.6)


class FailureCode(IntEnum):
    """Why a hop failed a payment: the code of its failure onion (§13.6), and what its data holds.
    0x01xx come from an intermediary, 0x02xx from the payee."""

    NEXT_HOP_REFUSED = 0x0101  # the refusal's wire error code (u16) || its reason (UTF-8)
    NO_CAPACITY = 0x0102  # why no channel with the next hop could lock the amount (UTF-8)
    NEXT_HOP_UNREACHABLE = 0x0103  # the next hop's address (20)
    TOO_LATE = 0x0104  # the outgoing lock's timeout (u64) || the chain time (u64)
    DOWNSTREAM_TIMED_OUT = 0x0105  # the outgoing lock's timeout (u64)
    NEXT_HOP_CANCELLED = 0x0106  # the next hop's address (20)
    UNKNOWN_PAYMENT = 0x0201  # none
    WRONG_AMOUNT = 0x0202  # the lock's amount (u128)
    EXPIRY_TOO_SOON = 0x0203  # the lock's timeout (u64) || the chain time (u64)
    INVOICE_EXPIRED = 0x0204  # the invoice's expiry (u64)


def text_data(text: str, room: int = onion.FAILURE_DATA_SIZE) -> bytes:
    """As much of `text` as fits in `room` bytes of UTF-8, in whole characters."""
    return text.encode()[:room].decode(errors="ignore").encode()


def refusal_data(code: int, reason: str) -> bytes:
    """NEXT_HOP_REFUSED's data: the wire code and as much of the reason as fits (the code's
    name first, for the payer to read: this layer has no table of them)."""
    return code.to_bytes(2, "big") + text_data(reason, onion.FAILURE_DATA_SIZE - 2)


def times_data(*values: int) -> bytes:
    """Timeouts and chain times as data: u64 each."""
    return b"".join(v.to_bytes(8, "big") for v in values)


def address_data(address: str) -> bytes:
    return bytes.fromhex(to_checksum_address(address)[2:])


def fail(rec: HopRecord, code: FailureCode, data: bytes = b"") -> HopRecord:
    """`rec` with a failure of its own to send upstream (an intermediary's, the payee's)."""
    return replace(rec, failure=onion.failure(rec.shared_secret, code, data))


def pass_on(rec: HopRecord, blob: bytes) -> HopRecord:
    """`rec` with the next hop's failure, obfuscated once more, to send upstream."""
    return replace(rec, failure=onion.forward_failure(rec.shared_secret, blob))


def outgoing_released(rec: HopRecord, how: Release, blob: bytes = b"") -> HopRecord:
    """`rec` once its outgoing lock went back to this node: cancelled by the next hop (with the
    failure `blob` it sent, if any) or reclaimed after its timeout. The payer keeps the blob to
    read; an intermediary passes it on, or fails the payment itself if none came."""
    out = rec.outgoing
    assert out is not None
    rec = replace(rec, outgoing=replace(out, released=how))
    if rec.part is Part.PAYER:
        return replace(rec, failure=blob)
    if rec.failure or rec.preimage:
        return rec
    if how is Release.RECLAIMED:
        return fail(rec, FailureCode.DOWNSTREAM_TIMED_OUT, times_data(out.timeout))
    if blob:
        return pass_on(rec, blob)
    assert rec.next_hop is not None  # an intermediary's outgoing lock goes to its next hop
    return fail(rec, FailureCode.NEXT_HOP_CANCELLED, address_data(rec.next_hop))


def incoming_released(rec: HopRecord, how: Release) -> HopRecord:
    inc = rec.incoming
    assert inc is not None
    return replace(rec, incoming=replace(inc, released=how))


def may_cancel(rec: HopRecord) -> bool:
    """The safety rule: this node may CANCEL its incoming lock (it has a failure to send with it)
    only if that lock is live and unclaimed and the node will never pay downstream for it: its
    outgoing lock never existed and never will (given up: no outgoing leg) or went back to it
    (released). The payee cancels only a lock it failed (it never claims one with a failure)."""
    inc, out = rec.incoming, rec.outgoing
    if rec.part is Part.PAYER or inc is None or not inc.live or rec.claimed or not rec.failure:
        return False
    if rec.part is Part.PAYEE:
        return True
    return not rec.preimage and (out is None or out.released is not None)


def outcome(rec: HopRecord) -> str:
    """Where this node's part stands: "settled" (paid, or claimed), "failed" (nothing of it is
    live: `finished`), "failing" (a failure to send upstream), or "pending"."""
    if rec.settled:
        return "settled"
    if finished(rec):
        return "failed"
    return "failing" if rec.failure and rec.part is not Part.PAYER else "pending"


def payment_failed(rec: HopRecord) -> errors.PaymentFailed | None:
    """Why the payer's payment failed, once its lock went back to it or was never created (None
    while it may still succeed, or once it did)."""
    if rec.part is not Part.PAYER or rec.preimage:
        return None
    out, nodes = rec.outgoing, rec.route_nodes
    first = nodes[0] if nodes else None
    if out is None:
        return errors.PaymentFailed(f"the lock towards the first hop was never created: {rec.refusal}",
                                    "check the channel with the first hop and pay again", hop=first, index=0)
    if out.released is None:
        return None
    if not rec.failure:
        if out.released is Release.RECLAIMED:
            return errors.PaymentFailed(
                f"no hop claimed or failed the payment before the lock timed out at {out.timeout}; this node took the "
                "lock back", "pay again over a route whose hops are online", hop=first, index=0)
        return errors.PaymentFailed("the first hop cancelled the lock without saying why",
                                    "pay again over another route", hop=first, index=0)
    try:
        got = onion.decode_failure(rec.session_key, rec.route_keys, rec.failure)
    except errors.OnionError as exc:
        return errors.PaymentFailed(
            f"the failure that came back is unreadable ({type(exc).__name__}: {exc}): a hop on the way back "
            "garbled it", "pay again over a route without the hops you doubt")
    hop = nodes[got.hop] if got.hop < len(nodes) else None
    after = nodes[got.hop + 1] if got.hop + 1 < len(nodes) else None
    reason, advice = _explain(got.code, got.data, after)
    return errors.PaymentFailed(reason, advice, hop=hop, index=got.hop, code=got.code)


def _explain(code: int, data: bytes, next_hop: str | None) -> tuple[str, str]:
    """A failure's code and data in words, and what the payer can do."""
    nxt = next_hop or "its next hop"
    times = [int.from_bytes(data[i:i + 8], "big") for i in range(0, len(data) - 7, 8)]
    if code == FailureCode.NEXT_HOP_REFUSED and len(data) >= 2:
        wire, why = int.from_bytes(data[:2], "big"), data[2:].decode(errors="replace")
        return (f"{nxt} refused the lock ({why or f'wire error {wire}'})", f"pay again over a route without {nxt}")
    if code == FailureCode.NO_CAPACITY:
        return (f"no channel with {nxt} could lock the amount ({data.decode(errors='replace')})",
                "pay again over another route, or a smaller amount")
    if code == FailureCode.NEXT_HOP_UNREACHABLE:
        return f"{nxt} was not connected", f"pay again later, or over a route without {nxt}"
    if code == FailureCode.TOO_LATE and len(times) == 2:
        return (f"too late to forward: the lock towards {nxt} would time out at {times[0]}, the chain's time was "
                f"{times[1]}", "pay again, with a new invoice if this one expires soon")
    if code == FailureCode.DOWNSTREAM_TIMED_OUT and times:
        return (f"the lock towards {nxt} timed out at {times[0]} unclaimed and was taken back",
                f"pay again over a route without {nxt}, or ask the payee whether it is online")
    if code == FailureCode.NEXT_HOP_CANCELLED:
        return f"{nxt} cancelled the lock without saying why", f"pay again over a route without {nxt}"
    if code == FailureCode.UNKNOWN_PAYMENT:
        return ("the payee knows no invoice with this payment hash and secret, or the lock is not the one this node "
                "sent", "check the invoice with the payee, or pay over another route")
    if code == FailureCode.WRONG_AMOUNT and len(data) == 16:
        return (f"the payee got {ether(int.from_bytes(data, 'big'))} ETH, less than its invoice asks",
                "pay again with the invoice's amount")
    if code == FailureCode.EXPIRY_TOO_SOON and len(times) == 2:
        return (f"the payee's lock times out at {times[0]}, too soon after the chain's time {times[1]} for it to "
                "claim on chain", "pay again: a new route gives the locks longer timeouts")
    if code == FailureCode.INVOICE_EXPIRED and times:
        return f"the invoice expired at {times[0]}", "ask the payee for a new invoice"
    return f"failure code 0x{code:04x} (data 0x{data.hex()})", "pay again over another route"


# --------------------------------------------------------------------------- deadlines (§13.7)


class HopDuty(str, Enum):
    """What a node does for a payment, by the chain's time."""

    CLAIM = "claim"  # the incoming lock, with the preimage, by its timeout
    RECLAIM = "reclaim"  # the outgoing lock, after its timeout, neither claimed nor released
    GIVE_UP = "give-up"  # an unforwarded payment whose outgoing lock would leave the next hop too little time
    FAIL_BACK = "fail-back"  # the incoming lock, cancelled with the failure (may_cancel)


def duties(rec: HopRecord, now: int, delta_out: int, margin: int) -> tuple[HopDuty, ...]:
    """What is due for `rec` at chain time `now` (`delta_out`: the outgoing channel's Δ). As in
    perun.core.machine.duties, a deadline's own second still belongs to the lock's receiver: a
    lock timing out at T is claimed until T, reclaimed from T + 1."""
    found = []
    inc, out = rec.incoming, rec.outgoing
    if inc is not None and inc.live and rec.preimage and not rec.claimed and not rec.failure and now <= inc.timeout:
        found.append(HopDuty.CLAIM)
    if out is not None and out.live and not rec.preimage and now > out.timeout:
        found.append(HopDuty.RECLAIM)
    if unforwarded(rec) and not still_forwardable(rec, delta_out, margin, now):
        found.append(HopDuty.GIVE_UP)
    if may_cancel(rec):
        found.append(HopDuty.FAIL_BACK)
    return tuple(found)


def next_due(rec: HopRecord, now: int, delta_out: int, margin: int) -> int | None:
    """The earliest chain time at or after `now` at which `duties` is not empty, None if never."""
    times = []
    if rec.incoming is not None:
        times.append(rec.incoming.timeout + 1)
    if rec.outgoing is not None:
        times += (rec.outgoing.timeout + 1, rec.outgoing.timeout - hop_delay(delta_out, margin) + 1)
    return first_due(lambda t: bool(duties(rec, t, delta_out, margin)), now, times)
