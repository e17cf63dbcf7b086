"""Multi-hop payments: the timing of the locks along a route, the fees, and finding a route.

A payment from the payer n_0 to the payee n_k goes over k channels e_1 … e_k (e_i between n_{i-1}
and n_i). Each hop locks an amount a_i in a HashTimeLock (apps/hashtimelock.py) towards n_i, with
the payment hash and a timeout T_i:

    a_k = the invoice's amount                   a_i = a_{i+1} + fee_{e_{i+1}}(a_{i+1})
    T_k = now + min_final + Δ_k + m              T_i = T_{i+1} + Δ_i + m

with fee_e(a) = base + ⌊a · ppm / 10⁶⌋ the fee that n_i announced for forwarding over e_{i+1},
Δ_i the dispute window of e_i and m = `TimingMargin.margin()` (docs/protocol.md §9). Why: n_i may
learn the preimage from its outgoing lock's CLAIM on chain as late as T_{i+1}; it must then see
it (poll, reorganisations), register its incoming lock, wait Δ_i (`execute` waits for the
registration window) and get its own CLAIM mined by T_i: Δ_i plus two transactions' worth of
margin. The payee learns of its lock at `now` and needs the same, plus the slack it asked for.

Pure: no I/O, no clock (`now` is an argument). Amounts are integers (wei or token units).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from eth_utils import keccak

from perun import errors
from perun.core.amounts import ether
from perun.core.channel import ETH, MAX_AMOUNT, MAX_DELTA, MAX_UINT64, checksum
from perun.core.eip712 import address_of, recover, recover_public_key, sign

MAX_HOPS = 8  # the onion's limit: at most 8 channels between payer and payee
PPM = 1_000_000  # proportional fees are in millionths of the amount forwarded


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class TimingMargin:
    """What it takes to get a transaction mined safely (docs/protocol.md §9, "The timing margin"):
    `poll` p, `block_time` B, `bump_after` b and `reorg_depth` c in seconds or blocks, `bumps` k
    the fee bumps a bid needs. The defaults are §9's example: 350 s."""

    poll: int = 1
    block_time: int = 12
    bump_after: int = 30
    bumps: int = 3
    reorg_depth: int = 12

    def __post_init__(self) -> None:
        for name in ("poll", "block_time", "bump_after", "bumps", "reorg_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise errors.InvalidParams(f"{name} must be a non-negative int, got {value!r}")

    def margin(self) -> int:
        """2·(p + B + k·b) + c·B: a transaction mined at most p + B + k·b after it is due, that
        time again if a reorganisation of c blocks takes it away, and the c blocks themselves."""
        return 2 * (self.poll + self.block_time + self.bumps * self.bump_after) + self.reorg_depth * self.block_time


DEFAULT_MARGIN = TimingMargin().margin()  # 350 s
# Seconds of chain time a payer adds to now when it builds a route: the time it takes the payment
# to reach the payee, whose check (check_final) reads the chain's time then.
ROUTE_SLACK = 60


def hop_delay(delta: int, margin: int) -> int:
    """How much later a lock must time out than the one its receiver forwards (or, for the payee,
    than `now + min_final`): the receiver's channel Δ and the margin."""
    return delta + margin


def timeouts(deltas: Sequence[int], now: int, margin: int, min_final: int = 0) -> tuple[int, ...]:
    """The least timeout of each hop's lock, payer's first: `deltas[i]` is the Δ of hop i's channel
    (the lock's receiver must register on it), `min_final` the payee's own requirement."""
    if not deltas or len(deltas) > MAX_HOPS:
        raise errors.RouteTooLong(f"a route has 1..{MAX_HOPS} hops, not {len(deltas)}")
    result: list[int] = []
    t = now + min_final
    for delta in reversed(deltas):
        t += hop_delay(delta, margin)
        result.append(t)
    result.reverse()
    if result[0] > MAX_UINT64:
        raise errors.RouteTimeoutTooClose(f"the first timeout {result[0]} does not fit a uint64")
    return tuple(result)


def check_forward(policy_out: Policy, delta_in: int, margin: int, amount_in: int, timeout_in: int,
                  amount_out: int, timeout_out: int) -> None:
    """An intermediary's check of what it is asked to forward: its fee at least (a payer may
    overpay), its incoming lock at least Δ_in + margin after the outgoing one, the capacity."""
    fee = policy_out.fee(amount_out)
    if amount_in - amount_out < fee:
        raise errors.RouteFeeMismatch(f"forwarding {amount_out} costs {fee}, offered {amount_in - amount_out}")
    if timeout_in - timeout_out < hop_delay(delta_in, margin):
        raise errors.RouteTimeoutTooClose(
            f"the incoming lock times out {timeout_in - timeout_out} s after the outgoing one, "
            f"needs Δ + margin = {hop_delay(delta_in, margin)} s")
    if amount_out > policy_out.capacity:
        raise errors.RouteCapacityExceeded(f"forwarding {amount_out} exceeds the capacity {policy_out.capacity}")


def check_final(amount_expected: int, min_final: int, delta_in: int, margin: int, now: int, amount_in: int,
                timeout_in: int) -> None:
    """The payee's check of its lock: at least the amount asked, and time to claim on chain."""
    if amount_in < amount_expected:
        raise errors.RouteFeeMismatch(f"the final lock carries {amount_in}, the invoice asks {amount_expected}")
    if timeout_in < now + min_final + hop_delay(delta_in, margin):
        raise errors.RouteTimeoutTooClose(
            f"the final lock times out at {timeout_in}, needs now + min_final + Δ + margin = "
            f"{now + min_final + hop_delay(delta_in, margin)}")


# --------------------------------------------------------------------------- channels and their policies


def _uint(name: str, value: int, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise errors.InvalidAnnouncement(f"{name} must be an int in 0..{limit}, got {value!r}")


@dataclass(frozen=True)
class Policy:
    """One direction of a channel as its sending side announces it: what it charges to forward
    over it (`base_fee` + `fee_ppm` millionths of the amount), the channel's Δ, and its capacity
    (what it can lock towards the other side now: its balance less what is blocked)."""

    base_fee: int
    fee_ppm: int
    delta: int
    capacity: int

    def __post_init__(self) -> None:
        _uint("base_fee", self.base_fee, MAX_AMOUNT)
        _uint("fee_ppm", self.fee_ppm, PPM)  # more than 100 % is surely a mistake
        _uint("capacity", self.capacity, MAX_AMOUNT)
        if isinstance(self.delta, bool) or not isinstance(self.delta, int) or not 0 < self.delta <= MAX_DELTA:
            raise errors.InvalidAnnouncement(f"delta must be an int in 1..{MAX_DELTA}, got {self.delta!r}")

    def fee(self, amount: int) -> int:
        """The fee for forwarding `amount` (rounded down, as Lightning's)."""
        return self.base_fee + amount * self.fee_ppm // PPM


@dataclass(frozen=True)
class Direction:
    """`source` can forward over `channel` to `target` under `policy` (an announcement)."""

    channel: bytes  # the channel id
    source: str
    target: str
    policy: Policy
    token: str = ETH

    def __post_init__(self) -> None:
        if not isinstance(self.channel, bytes) or len(self.channel) != 32:
            raise errors.InvalidAnnouncement("a channel id is 32 bytes")
        for name in ("source", "target", "token"):
            try:
                object.__setattr__(self, name, checksum(getattr(self, name)))
            except (ValueError, TypeError) as exc:
                raise errors.InvalidAnnouncement(f"{name} is not an address: {getattr(self, name)!r}") from exc
        if self.source == self.target:
            raise errors.InvalidAnnouncement("a channel joins two distinct nodes")


@dataclass(frozen=True)
class Graph:
    """The channels a node knows of (its own, and those its peers announced when asked): at most
    two directions per channel, opposite, with the same Δ and token. Built once; a new
    announcement makes a new graph (`with_`)."""

    directions: tuple[Direction, ...] = ()
    _into: dict[str, tuple[Direction, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_channel: dict[bytes, Direction] = {}
        seen: set[tuple[bytes, str]] = set()
        into: dict[str, list[Direction]] = {}
        for d in self.directions:
            if (d.channel, d.source) in seen:
                raise errors.InvalidAnnouncement(f"channel 0x{d.channel.hex()} announced twice by {d.source}")
            seen.add((d.channel, d.source))
            other = by_channel.setdefault(d.channel, d)
            if other is not d and (other.source != d.target or other.target != d.source
                                   or other.policy.delta != d.policy.delta or other.token != d.token):
                raise errors.InvalidAnnouncement(f"the two sides of channel 0x{d.channel.hex()} disagree")
            into.setdefault(d.target, []).append(d)
        # Sorted, so that the search visits them in an order that does not depend on arrival.
        object.__setattr__(self, "_into", {
            node: tuple(sorted(ds, key=lambda d: (d.channel, d.source))) for node, ds in into.items()})

    def with_(self, direction: Direction) -> Graph:
        """This graph with `direction` added, or replacing the same side's older announcement."""
        kept = tuple(d for d in self.directions if (d.channel, d.source) != (direction.channel, direction.source))
        return Graph(kept + (direction,))

    def into(self, node: str) -> tuple[Direction, ...]:
        return self._into.get(node, ())

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset(n for d in self.directions for n in (d.source, d.target))


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Hop:
    """One lock of a route: over `channel` towards `node` (the next node), `amount` blocked until
    `timeout` (chain time, unix seconds); `policy` is the direction's as announced."""

    channel: bytes
    node: str
    amount: int
    timeout: int
    policy: Policy


@dataclass(frozen=True)
class Route:
    """The hops from `payer` to the payee, the payer's first. `check` holds it to the rules."""

    payer: str
    hops: tuple[Hop, ...]

    @property
    def payee(self) -> str:
        return self.hops[-1].node

    @property
    def amount(self) -> int:
        """What the payee receives."""
        return self.hops[-1].amount

    @property
    def total(self) -> int:
        """What the payer locks: the amount and every fee."""
        return self.hops[0].amount

    @property
    def fees(self) -> tuple[int, ...]:
        """The fee each intermediary keeps, n_1 first: its incoming amount less its outgoing."""
        return tuple(a.amount - b.amount for a, b in zip(self.hops, self.hops[1:]))

    def lock_time(self, now: int) -> int:
        """How long the payer's liquidity may stay locked: the first timeout, from now."""
        return self.hops[0].timeout - now

    def cost(self, now: int, weight: int) -> int:
        """Fees + weight × lock time: what the search minimises."""
        return self.total - self.amount + weight * self.lock_time(now)

    def check(self, margin: int, now: int | None = None, min_final: int = 0) -> None:
        """The hop count, each hop's capacity, each fee exactly as announced, each timeout at least
        Δ + margin after the next one's, and (given `now`) the payee's at least now + min_final +
        Δ + margin. Raises the InvalidRoute subclass naming what is wrong."""
        if not 1 <= len(self.hops) <= MAX_HOPS:
            raise errors.RouteTooLong(f"a route has 1..{MAX_HOPS} hops, not {len(self.hops)}")
        nodes = [self.payer, *(h.node for h in self.hops)]
        if len(set(nodes)) != len(nodes):
            raise errors.InvalidRoute("a route visits each node once")
        for i, hop in enumerate(self.hops):
            if not 0 < hop.amount <= hop.policy.capacity:
                raise errors.RouteCapacityExceeded(
                    f"hop {i} locks {hop.amount}, its channel can forward 1..{hop.policy.capacity}")
            if not 0 <= hop.timeout <= MAX_UINT64:
                raise errors.RouteTimeoutTooClose(f"hop {i}'s timeout {hop.timeout} does not fit a uint64")
        for i, (hop, after) in enumerate(zip(self.hops, self.hops[1:])):
            if hop.amount - after.amount != after.policy.fee(after.amount):
                raise errors.RouteFeeMismatch(
                    f"hop {i} locks {hop.amount}, hop {i + 1} {after.amount}: the fee is "
                    f"{after.policy.fee(after.amount)}, not {hop.amount - after.amount}")
            if hop.timeout - after.timeout < hop_delay(hop.policy.delta, margin):
                raise errors.RouteTimeoutTooClose(
                    f"hop {i} times out {hop.timeout - after.timeout} s after hop {i + 1}, "
                    f"needs Δ + margin = {hop_delay(hop.policy.delta, margin)} s")
        last = self.hops[-1]
        if now is not None and last.timeout < now + min_final + hop_delay(last.policy.delta, margin):
            raise errors.RouteTimeoutTooClose(
                f"the payee's lock times out at {last.timeout}, needs "
                f"{now + min_final + hop_delay(last.policy.delta, margin)}")


def build_route(payer: str, path: Sequence[Direction], amount: int, now: int, margin: int,
                min_final: int = 0) -> Route:
    """The route over `path` (payer's direction first) that delivers `amount`: each hop's amount
    and timeout computed backwards from the payee. Capacities are not checked (`Route.check`)."""
    if not path or len(path) > MAX_HOPS:
        raise errors.RouteTooLong(f"a route has 1..{MAX_HOPS} hops, not {len(path)}")
    times = timeouts([d.policy.delta for d in path], now, margin, min_final)
    amounts = [amount]
    for d in reversed(path[1:]):  # the fee of n_i is for forwarding over e_{i+1}, on what e_{i+1} carries
        amounts.append(amounts[-1] + d.policy.fee(amounts[-1]))
    amounts.reverse()
    return Route(checksum(payer), tuple(Hop(d.channel, d.target, a, t, d.policy)
                                        for d, a, t in zip(path, amounts, times)))


# --------------------------------------------------------------------------- finding the cheapest route


@dataclass(frozen=True)
class _Label:
    """A way from a node to the payee: the amount the lock into the node must carry (with the
    node's fee), the time after now + Δ_in + margin by which it may time out at the earliest, the
    hops, and the directions (this node's outgoing first)."""

    amount: int
    time: int
    hops: int
    tail: tuple[Direction, ...]
    nodes: frozenset[str]

    def dominates(self, other: _Label) -> bool:
        """Extending either the same way, this one is never worse: fees are non-decreasing in the
        amount, a smaller amount fits wherever a larger one does, time adds up."""
        if (self.amount, self.time, self.hops) == (other.amount, other.time, other.hops):
            return _key(self.tail) <= _key(other.tail)
        return self.amount <= other.amount and self.time <= other.time and self.hops <= other.hops


def _key(path: Iterable[Direction]) -> tuple[bytes, ...]:
    return tuple(d.channel for d in path)


def find_route(graph: Graph, payer: str, payee: str, amount: int, now: int, margin: int = DEFAULT_MARGIN,
               min_final: int = 0, weight: int = 1, token: str = ETH, max_hops: int = MAX_HOPS) -> Route:
    """The cheapest route from `payer` to `payee` that can carry `amount` of `token`: least cost =
    fees + `weight` (wei per second) × the first lock's time; ties go to fewer hops, then the
    shorter lock time, then the smaller channel ids (payer's first). RouteNotFound says why not.

    Searched backwards from the payee, as Lightning does, since each hop's amount and timeout
    depend on the hops after it: labels by hop count, keeping at each node only the labels that
    no other beats in amount, time and hops together (see `_Label.dominates`)."""
    payer, payee, token = checksum(payer), checksum(payee), checksum(token)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise errors.AmountOutOfRange(f"the amount must be in 1..{MAX_AMOUNT}, got {amount!r}")
    if payer == payee:
        raise errors.RouteNotFound("the payer is the payee")
    max_hops = min(max_hops, MAX_HOPS)
    start = _Label(amount, min_final, 0, (), frozenset({payee}))
    kept: dict[str, list[_Label]] = {payee: [start]}
    frontier = [start]
    best: tuple[tuple[Any, ...], tuple[Direction, ...]] | None = None
    for hops in range(1, max_hops + 1):
        grown: list[_Label] = []
        for label in frontier:
            here = label.tail[0].source if label.tail else payee
            for d in graph.into(here):
                u = d.source
                if d.token != token or u in label.nodes or d.policy.capacity < label.amount:
                    continue
                time = label.time + hop_delay(d.policy.delta, margin)
                if u == payer:  # the payer charges itself no fee
                    key = (label.amount - amount + weight * time, hops, time, _key((d, *label.tail)))
                    if best is None or key < best[0]:
                        best = (key, (d, *label.tail))
                    continue
                fee_in = label.amount + d.policy.fee(label.amount)
                new = _Label(fee_in, time, hops, (d, *label.tail), label.nodes | {u})
                if fee_in > MAX_AMOUNT:
                    continue
                if best is not None and fee_in - amount + weight * time >= best[0][0]:
                    continue  # extending adds fees and time: never cheaper, and more hops
                at_u = kept.setdefault(u, [])
                if any(old.dominates(new) for old in at_u):
                    continue
                at_u[:] = [old for old in at_u if not new.dominates(old)]
                at_u.append(new)
                grown.append(new)
        alive = {id(label) for labels in kept.values() for label in labels}
        frontier = [label for label in grown if id(label) in alive]
        if not frontier:
            break
    if best is None:
        raise errors.RouteNotFound(_why_not(graph, payer, payee, amount, token, max_hops))
    return build_route(payer, best[1], amount, now, margin, min_final)


def _why_not(graph: Graph, payer: str, payee: str, amount: int, token: str, max_hops: int) -> str:
    """Why no route: an unknown end, no path at all within the hop limit, or too little capacity."""
    nodes = graph.nodes
    if payer not in nodes:
        return f"the payer {payer} has no known channel"
    if payee not in nodes:
        return f"the payee {payee} has no known channel"
    reached, frontier = {payee}, {payee}
    for _ in range(max_hops):
        frontier = {d.source for v in frontier for d in graph.into(v) if d.token == token} - reached
        reached |= frontier
    if payer not in reached:
        return f"no path of at most {max_hops} hops from {payer} to {payee} in token {token}"
    shown = f"{ether(amount)} ETH" if token == ETH else f"{amount} units of token {token}"
    return f"no path of at most {max_hops} hops with the capacity for {shown} and the fees"


# --------------------------------------------------------------------------- invoices

INVOICE_PREFIX = "perun1"  # "perun", and the layout's version
INVOICE_VERSION = 1
MAX_DESCRIPTION = 100  # bytes of UTF-8: an invoice should fit a QR code
MAX_MIN_FINAL = 2**32 - 1
MAX_INVOICE_TEXT = 1024
# version 1, chain id 8, token 20, payee 20, payment hash 32, payment secret 32, amount 16 (the
# contract's 128 bits), expiry 8, min final delta 4, description length 1; then the description;
# then the 65-byte signature r || s || v.
_FIXED = 1 + 8 + 20 + 20 + 32 + 32 + 16 + 8 + 4 + 1
_SIGNATURE = 65
_BASE32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")

INVOICE_DOMAIN_TYPEHASH = keccak(text="EIP712Domain(string name,string version,uint256 chainId)")
INVOICE_TYPE = ("Invoice(address payee,address token,bytes32 paymentHash,bytes32 paymentSecret,uint128 amount,"
                "uint64 expiry,uint32 minFinalDelta,string description)")
INVOICE_TYPEHASH = keccak(text=INVOICE_TYPE)
INVOICE_DOMAIN_NAME = "Perun Invoice"
INVOICE_DOMAIN_VERSION = "1"


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _bad(message: str) -> errors.InvoiceMalformed:
    return errors.InvoiceMalformed(f"not an invoice: {message}")


@dataclass(frozen=True)
class Invoice:
    """A payee's request to be paid `amount` of `token` on chain `chain_id` against the SHA-256
    preimage of `payment_hash`, until `expiry` (unix seconds). `payment_secret` goes to the payee
    in the final hop's instructions only, so an intermediary that probes the payee with a lock of
    the same hash (but without the secret) is refused. `min_final` is the time the payee needs
    on top of its channel's Δ + margin (`check_final`). Signed by the payee: EIP-712, in a domain
    of its own (`digest`)."""

    chain_id: int
    token: str
    payee: str
    payment_hash: bytes
    payment_secret: bytes
    amount: int
    expiry: int
    min_final: int
    description: str
    signature: bytes

    def __post_init__(self) -> None:
        for name in ("token", "payee"):
            try:
                object.__setattr__(self, name, checksum(getattr(self, name)))
            except (ValueError, TypeError) as exc:
                raise _bad(f"{name} is not an address") from exc
        if self.payee == ETH:
            raise _bad("the payee is the zero address")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or not 0 < self.amount <= MAX_AMOUNT:
            raise errors.InvoiceAmountOutOfRange(f"an invoice asks for 1..{MAX_AMOUNT}, not {self.amount!r}")
        for name, value, limit in (("chain_id", self.chain_id, MAX_UINT64), ("expiry", self.expiry, MAX_UINT64),
                                   ("min_final", self.min_final, MAX_MIN_FINAL)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise _bad(f"{name} must be an int in 0..{limit}, not {value!r}")
        if self.chain_id == 0:
            raise _bad("chain id 0")
        for name in ("payment_hash", "payment_secret"):
            if not isinstance(getattr(self, name), bytes) or len(getattr(self, name)) != 32:
                raise _bad(f"{name} is 32 bytes")
        if not isinstance(self.description, str) or len(self.description.encode("utf-8")) > MAX_DESCRIPTION:
            raise _bad(f"the description is at most {MAX_DESCRIPTION} bytes of UTF-8")
        if not isinstance(self.signature, bytes) or len(self.signature) != _SIGNATURE:
            raise _bad("the signature is 65 bytes")

    @classmethod
    def create(cls, key: bytes, preimage: bytes | None, amount: int, expiry: int, *, chain_id: int,
               token: str = ETH, min_final: int = 0, description: str = "",
               payment_secret: bytes | None = None) -> tuple[Invoice, bytes]:
        """A signed invoice and its preimage (drawn at random when None: the payee keeps it)."""
        preimage = secrets.token_bytes(32) if preimage is None else preimage
        if not isinstance(preimage, bytes) or len(preimage) != 32:
            raise _bad("a preimage is 32 bytes")  # HashTimeLock's CLAIM takes 32 bytes exactly
        secret = secrets.token_bytes(32) if payment_secret is None else payment_secret
        unsigned = cls(chain_id, token, address_of(key), hashlib.sha256(preimage).digest(), secret, amount,
                       expiry, min_final, description, bytes(_SIGNATURE))
        return replace(unsigned, signature=sign(unsigned.digest, key)), preimage

    @cached_property
    def digest(self) -> bytes:
        """keccak(0x1901 ‖ domain ‖ hashStruct(Invoice)), the domain {name "Perun Invoice",
        version "1", chainId} with no contract: an invoice is for a chain, not a contract."""
        domain = keccak(INVOICE_DOMAIN_TYPEHASH + keccak(text=INVOICE_DOMAIN_NAME)
                        + keccak(text=INVOICE_DOMAIN_VERSION) + _word(self.chain_id))
        struct = keccak(INVOICE_TYPEHASH + bytes(12) + bytes.fromhex(self.payee[2:])
                        + bytes(12) + bytes.fromhex(self.token[2:]) + self.payment_hash + self.payment_secret
                        + _word(self.amount) + _word(self.expiry) + _word(self.min_final)
                        + keccak(self.description.encode("utf-8")))
        return keccak(b"\x19\x01" + domain + struct)

    def check_signature(self) -> None:
        """InvoiceSignatureInvalid unless the payee signed every field."""
        try:
            signer = recover(self.digest, self.signature)
        except errors.InvalidSignature as exc:
            raise errors.InvoiceSignatureInvalid(f"the invoice's signature is malformed: {exc}") from exc
        if signer != self.payee:
            raise errors.InvoiceSignatureInvalid(f"the invoice is signed by {signer}, not its payee {self.payee}")

    def public_key(self) -> bytes:
        """The payee's compressed public key (its onion key), recovered from the signature; call
        after `check_signature` (decoding checks it), so that it is the payee's."""
        return recover_public_key(self.digest, self.signature)

    def check_payable(self, now: int) -> None:
        """The payer's check before it pays: signed by the payee, not expired."""
        self.check_signature()
        if now >= self.expiry:
            raise errors.InvoiceExpired(self.expiry)

    def to_bytes(self) -> bytes:
        description = self.description.encode("utf-8")
        return (bytes([INVOICE_VERSION]) + self.chain_id.to_bytes(8, "big") + bytes.fromhex(self.token[2:])
                + bytes.fromhex(self.payee[2:]) + self.payment_hash + self.payment_secret
                + self.amount.to_bytes(16, "big") + self.expiry.to_bytes(8, "big")
                + self.min_final.to_bytes(4, "big") + bytes([len(description)]) + description + self.signature)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Invoice:
        """The invoice `raw` encodes, with every check: length, version, fields, signature."""
        if len(raw) < _FIXED + _SIGNATURE:
            raise _bad(f"{len(raw)} bytes, at least {_FIXED + _SIGNATURE}")
        if raw[0] != INVOICE_VERSION:
            raise errors.InvoiceMalformed(f"invoice version {raw[0]} is not supported (only {INVOICE_VERSION})")
        length = raw[_FIXED - 1]
        if length > MAX_DESCRIPTION or len(raw) != _FIXED + length + _SIGNATURE:
            raise _bad(f"{len(raw)} bytes for a description of {length}")
        try:
            description = raw[_FIXED:_FIXED + length].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad("the description is not UTF-8") from exc
        field_bytes = (8, 20, 20, 32, 32, 16, 8, 4)
        parts, at = [], 1
        for size in field_bytes:
            parts.append(raw[at:at + size])
            at += size
        chain_id, token, payee, payment_hash, secret, amount, expiry, min_final = parts
        invoice = cls(int.from_bytes(chain_id, "big"), "0x" + token.hex(), "0x" + payee.hex(), payment_hash,
                      secret, int.from_bytes(amount, "big"), int.from_bytes(expiry, "big"),
                      int.from_bytes(min_final, "big"), description, raw[-_SIGNATURE:])
        invoice.check_signature()
        return invoice

    def encode(self) -> str:
        """`perun1` and the bytes in RFC 4648 base32, lower case, unpadded: one case-insensitive
        alphabet a QR code and a voice can carry; all upper case is accepted too."""
        return INVOICE_PREFIX + base64.b32encode(self.to_bytes()).decode("ascii").rstrip("=").lower()

    @classmethod
    def decode(cls, text: str) -> Invoice:
        """The invoice `text` encodes. Only the canonical text is accepted (all lower or all upper
        case, no padding, zero spare bits), so any other text is refused rather than read as the
        same invoice; InvoiceMalformed or InvoiceSignatureInvalid say what is wrong."""
        if not isinstance(text, str) or len(text) > MAX_INVOICE_TEXT:
            raise _bad(f"an invoice is a string of at most {MAX_INVOICE_TEXT} characters")
        lower = text.lower()
        if text != lower and text != text.upper():
            raise _bad("mixed case")
        if not lower.startswith(INVOICE_PREFIX):
            raise _bad(f"it does not start with {INVOICE_PREFIX}")
        body = lower[len(INVOICE_PREFIX):]
        if not set(body) <= _BASE32 or len(body) % 8 in (1, 3, 6):
            raise _bad("not base32")
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        if base64.b32encode(raw).decode("ascii").rstrip("=").lower() != body:
            raise _bad("not canonical base32 (spare bits set)")
        return cls.from_bytes(raw)


def route_for(graph: Graph, payer: str, invoice: Invoice, chain_id: int, now: int, margin: int = DEFAULT_MARGIN,
              weight: int = 1) -> Route:
    """The payer's way from an invoice to a route: checked (signed, not expired, for this chain),
    then the cheapest route for its amount, token and the payee's final delta."""
    invoice.check_payable(now)
    if invoice.chain_id != chain_id:
        raise errors.InvalidInvoice(f"the invoice is for chain {invoice.chain_id}, this node is on {chain_id}")
    return find_route(graph, payer, invoice.payee, invoice.amount, now, margin, invoice.min_final, weight,
                      invoice.token)
