"""Multi-hop payments at one node (docs/protocol.md §13): what a node keeps of each payment it
pays, forwards or receives, and the pure checks of an incoming lock that carries an onion.

A payment is named by its payment hash (the HashTimeLock's hashlock). A node takes part in a
payment at most once, as its payer, as one of its intermediaries or as its payee: a second lock
with the same hash is refused, so that no node holds two locks it would claim with one preimage
by mistake. The record keeps the locks of this node's part (`incoming`, `outgoing`), the onion it
sends with its outgoing lock, and the preimage once it knows it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import Enum

from perun import errors
from perun.core.onion import HopPayload
from perun.core.route import Invoice, Policy, check_final, check_forward, hop_delay


class Part(Enum):
    PAYER = "payer"
    FORWARDER = "forwarder"
    PAYEE = "payee"


@dataclass(frozen=True)
class Leg:
    """One HashTimeLock of the payment in channel `channel`: `nid` (empty until created),
    `amount` blocked by its sender, claimable until `timeout` (chain time, seconds)."""

    channel: bytes
    nid: bytes
    amount: int
    timeout: int


@dataclass(frozen=True)
class HopRecord:
    """This node's part in the payment with `payment_hash`. `onion`: the packet this node sends
    with its outgoing lock (the payer's whole onion, or an intermediary's peeled one). `invoice`:
    the payee's invoice (Invoice.to_bytes), kept with its `preimage`. `claimed`: this node's
    incoming lock is claimed (the payee's, an intermediary's), or its outgoing one (the payer's)."""

    payment_hash: bytes
    part: Part
    incoming: Leg | None = None
    outgoing: Leg | None = None
    next_hop: str | None = None
    onion: bytes = b""
    preimage: bytes = b""
    invoice: bytes = b""
    claimed: bool = False

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
    """`rec` without its outgoing lock, which it will never create: the sender reclaims the
    incoming lock after its timeout."""
    return replace(rec, outgoing=None)


def check_payee(rec: HopRecord | None, payload: HopPayload, amount_in: int, timeout_in: int, delta_in: int,
                margin: int, now: int) -> Invoice:
    """The payee's checks of a lock whose onion ends here: an invoice of its own with this hash,
    not paid yet, whose payment secret the onion carries, the amount and timeout the payer meant
    (the payload's) and enough of both for the invoice (check_final). Returns the invoice."""
    if rec is None or rec.part is not Part.PAYEE or not rec.invoice:
        raise errors.InvalidNanocontract("no invoice of this node has this payment hash")
    if rec.incoming is not None:
        raise errors.InvalidNanocontract("this invoice is being paid already")
    invoice = rec.the_invoice()
    if payload.payment_secret != invoice.payment_secret:
        raise errors.InvalidNanocontract("the onion does not carry the invoice's payment secret")
    if amount_in < payload.amount or timeout_in < payload.timeout:
        raise errors.InvalidNanocontract(
            f"the lock ({amount_in} until {timeout_in}) is not what the payer sent ({payload.amount} until "
            f"{payload.timeout})")
    check_final(invoice.amount, invoice.min_final, delta_in, margin, now, amount_in, timeout_in)
    return invoice


def check_forwarding(held: HopRecord | None, policy_out: Policy, delta_in: int, margin: int, amount_in: int,
                     timeout_in: int, payload: HopPayload) -> None:
    """An intermediary's checks of a lock it is asked to forward: no part in this payment yet,
    and its fee, timing and capacity (route.check_forward) on the outgoing channel."""
    if held is not None:
        raise errors.InvalidNanocontract("this node takes part in a payment with this hash already")
    if payload.next_hop is None:
        raise errors.InvalidNanocontract("the onion names no next hop")
    check_forward(policy_out, delta_in, margin, amount_in, timeout_in, payload.amount, payload.timeout)
