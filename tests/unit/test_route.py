"""perun.core.route: the timing of the locks, fees, routes and finding the cheapest one."""

from __future__ import annotations

import itertools

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from perun import errors
from perun.core.apps.hashtimelock import hashlock_of
from perun.core.channel import checksum
from perun.core.eip712 import address_of
from perun.core.route import (
    DEFAULT_MARGIN,
    MAX_HOPS,
    Direction,
    Graph,
    Hop,
    Invoice,
    Policy,
    Route,
    TimingMargin,
    build_route,
    check_final,
    check_forward,
    find_route,
    hop_delay,
    route_for,
    timeouts,
)
from tests.conftest import examples

NOW = 1_700_000_000
NODES = [f"0x{i:040x}" for i in range(1, 12)]
A, B, C, D, E = (checksum(n) for n in NODES[1:6])


def cid(n: int) -> bytes:
    return n.to_bytes(32, "big")


def both(n: int, x: str, y: str, base: int = 0, ppm: int = 0, delta: int = 100, cap: int = 10**6,
         back: int | None = None) -> list[Direction]:
    """A channel as two directions: x → y with the given fees, y → x with the same fees."""
    return [Direction(cid(n), x, y, Policy(base, ppm, delta, cap)),
            Direction(cid(n), y, x, Policy(base, ppm, delta, cap if back is None else back))]


# --------------------------------------------------------------------------- timing


def test_margin_is_the_formula_of_protocol_section_9() -> None:
    assert TimingMargin().margin() == 2 * (1 + 12 + 3 * 30) + 12 * 12 == 350 == DEFAULT_MARGIN
    m = TimingMargin(poll=5, block_time=2, bump_after=10, bumps=4, reorg_depth=64)
    assert m.margin() == 2 * (5 + 2 + 4 * 10) + 64 * 2
    with pytest.raises(errors.InvalidParams):
        TimingMargin(poll=-1)


def test_timeouts_backwards_from_the_payee() -> None:
    # T_3 = now + min_final + Δ_3 + m, T_i = T_{i+1} + Δ_i + m
    assert timeouts([100, 200, 300], NOW, 350, min_final=40) == (
        NOW + 40 + 300 + 350 + 200 + 350 + 100 + 350, NOW + 40 + 300 + 350 + 200 + 350, NOW + 40 + 300 + 350)
    assert hop_delay(100, 350) == 450
    with pytest.raises(errors.RouteTooLong):
        timeouts([], NOW, 350)
    with pytest.raises(errors.RouteTooLong):
        timeouts([1] * (MAX_HOPS + 1), NOW, 350)


def test_forward_and_final_checks() -> None:
    out = Policy(base_fee=10, fee_ppm=1000, delta=100, capacity=10**6)
    check_forward(out, 200, 350, 100_110, NOW + 1000 + 550, 100_000, NOW + 1000)  # fee 10 + 100
    check_forward(out, 200, 350, 100_200, NOW + 9999, 100_000, NOW + 1000)  # overpaid, more time: fine
    with pytest.raises(errors.RouteFeeMismatch):
        check_forward(out, 200, 350, 100_109, NOW + 1550, 100_000, NOW + 1000)
    with pytest.raises(errors.RouteTimeoutTooClose):
        check_forward(out, 200, 350, 100_110, NOW + 1549, 100_000, NOW + 1000)
    with pytest.raises(errors.RouteCapacityExceeded):
        check_forward(Policy(0, 0, 100, 99_999), 200, 350, 100_000, NOW + 1550, 100_000, NOW + 1000)
    check_final(500, 40, 100, 350, NOW, 500, NOW + 490)
    with pytest.raises(errors.RouteTimeoutTooClose):
        check_final(500, 40, 100, 350, NOW, 500, NOW + 489)
    with pytest.raises(errors.RouteFeeMismatch):
        check_final(500, 40, 100, 350, NOW, 499, NOW + 490)


# --------------------------------------------------------------------------- policies and the graph


def test_fee_is_base_plus_millionths_rounded_down() -> None:
    p = Policy(base_fee=7, fee_ppm=2500, delta=1, capacity=0)
    assert p.fee(0) == 7 and p.fee(399) == 7 + 0 and p.fee(400) == 7 + 1 and p.fee(10**18) == 7 + 25 * 10**14


def test_announcements_must_agree() -> None:
    with pytest.raises(errors.InvalidAnnouncement):
        Policy(0, PPM_TOO_HIGH, 1, 1)
    with pytest.raises(errors.InvalidAnnouncement):
        Policy(0, 0, 0, 1)  # no dispute window
    with pytest.raises(errors.InvalidAnnouncement):
        Direction(cid(1), A, A, Policy(0, 0, 1, 1))
    with pytest.raises(errors.InvalidAnnouncement):  # the two sides disagree on Δ
        Graph((Direction(cid(1), A, B, Policy(0, 0, 1, 1)), Direction(cid(1), B, A, Policy(0, 0, 2, 1))))
    with pytest.raises(errors.InvalidAnnouncement):  # not opposite
        Graph((Direction(cid(1), A, B, Policy(0, 0, 1, 1)), Direction(cid(1), B, C, Policy(0, 0, 1, 1))))
    with pytest.raises(errors.InvalidAnnouncement):  # twice by one side
        Graph((Direction(cid(1), A, B, Policy(0, 0, 1, 1)), Direction(cid(1), A, B, Policy(0, 0, 1, 2))))
    g = Graph(tuple(both(1, A, B)))
    newer = Direction(cid(1), A, B, Policy(5, 0, 100, 7))
    assert g.with_(newer).into(B) == (newer,)


PPM_TOO_HIGH = 1_000_001


# --------------------------------------------------------------------------- routes


def test_route_amounts_fees_and_timeouts() -> None:
    g = Graph(tuple(both(1, A, B, base=1000, ppm=0, delta=100) + both(2, B, C, base=50, ppm=10_000, delta=200)
                    + both(3, C, D, base=3, ppm=0, delta=300)))
    r = find_route(g, A, D, 10_000, NOW, margin=350, min_final=40)
    # D gets 10_000; C charges 3 to forward it; B charges 50 + 1 % of 10_003 = 150; A charges itself nothing.
    assert [h.amount for h in r.hops] == [10_153, 10_003, 10_000]
    assert r.fees == (150, 3) and r.total == 10_153 and r.amount == 10_000 and r.payee == D
    assert [h.timeout for h in r.hops] == list(timeouts([100, 200, 300], NOW, 350, 40))
    assert [h.node for h in r.hops] == [B, C, D] and [h.channel for h in r.hops] == [cid(1), cid(2), cid(3)]
    r.check(350, NOW, 40)


def test_route_check_refuses_each_broken_rule() -> None:
    g = Graph(tuple(both(1, A, B, base=10) + both(2, B, C, base=10)))
    r = find_route(g, A, C, 1000, NOW, margin=350)
    r.check(350, NOW)

    def with_hop(i: int, **changes: object) -> Route:
        hops = list(r.hops)
        hops[i] = Hop(**{**hops[i].__dict__, **changes})
        return Route(r.payer, tuple(hops))

    with pytest.raises(errors.RouteFeeMismatch):
        with_hop(0, amount=r.hops[0].amount + 1).check(350)  # overpaying is not the announced fee
    with pytest.raises(errors.RouteTimeoutTooClose):
        with_hop(0, timeout=r.hops[0].timeout - 1).check(350)
    with pytest.raises(errors.RouteTimeoutTooClose):
        r.check(350, NOW + 1)
    with pytest.raises(errors.RouteCapacityExceeded):
        with_hop(1, policy=Policy(10, 0, 100, 999)).check(350)
    with pytest.raises(errors.RouteTooLong):
        Route(A, ()).check(350)
    with pytest.raises(errors.InvalidRoute):
        Route(A, (r.hops[0], Hop(cid(1), A, 990, r.hops[1].timeout, r.hops[1].policy))).check(350)


def test_cheapest_route_weighs_fees_against_lock_time() -> None:
    # A → B → D: fee 100, Δ 1000; A → C → D: fee 300, Δ 100. Per route: lock time
    # (Δ_AB + Δ_BD + 2m) versus (Δ_AC + Δ_CD + 2m): 1800 s apart.
    g = Graph(tuple(both(1, A, B, delta=1000) + both(2, B, D, base=100, delta=1000)
                    + both(3, A, C, delta=100) + both(4, C, D, base=300, delta=100)))
    assert [h.node for h in find_route(g, A, D, 500, NOW, weight=0).hops] == [B, D]
    assert [h.node for h in find_route(g, A, D, 500, NOW, weight=1).hops] == [C, D]  # 200 wei < 1800 s


def test_capacity_and_the_fees_it_must_carry() -> None:
    # B can forward exactly the amount to D but not the amount plus C's fee on the longer way.
    g = Graph(tuple(both(1, A, B, cap=1004) + both(2, B, D, base=5, cap=999)
                    + both(3, A, C) + both(4, C, D, base=50)))
    r = find_route(g, A, D, 999, NOW)
    assert [h.node for h in r.hops] == [B, D] and r.total == 1004
    r = find_route(g, A, D, 1000, NOW)  # B → D cannot carry 1000
    assert [h.node for h in r.hops] == [C, D] and r.total == 1050
    g = Graph(tuple(both(1, A, B, cap=1003) + both(2, B, D, base=5, cap=999)
                    + both(3, A, C) + both(4, C, D, base=50)))
    assert [h.node for h in find_route(g, A, D, 999, NOW).hops] == [C, D]  # A → B cannot carry the fee
    with pytest.raises(errors.RouteNotFound, match="capacity"):
        find_route(Graph(tuple(both(1, A, B, cap=1000) + both(2, B, D, base=5, cap=999))), A, D, 1000, NOW)
    # The capacity is per direction: D → B → A may carry what A → B → D cannot.
    g = Graph(tuple(both(1, A, B, cap=10, back=5000) + both(2, B, D, cap=10, back=5000)))
    assert find_route(g, D, A, 4000, NOW).total == 4000
    with pytest.raises(errors.RouteNotFound):
        find_route(g, A, D, 4000, NOW)


def test_route_not_found_says_why() -> None:
    chain = Graph(tuple(d for i in range(MAX_HOPS + 1) for d in both(i + 1, NODES[i], NODES[i + 1])))
    find_route(chain, NODES[0], NODES[MAX_HOPS], 1, NOW)  # 8 hops: fine
    with pytest.raises(errors.RouteNotFound, match="at most 8 hops"):
        find_route(chain, NODES[0], NODES[MAX_HOPS + 1], 1, NOW)
    with pytest.raises(errors.RouteNotFound, match="payee"):
        find_route(chain, NODES[0], "0x" + "ab" * 20, 1, NOW)
    with pytest.raises(errors.RouteNotFound, match="payer is the payee"):
        find_route(chain, NODES[0], NODES[0], 1, NOW)
    with pytest.raises(errors.RouteNotFound, match="token"):
        find_route(chain, NODES[0], NODES[1], 1, NOW, token="0x" + "11" * 20)
    with pytest.raises(errors.AmountOutOfRange):
        find_route(chain, NODES[0], NODES[1], 0, NOW)


def test_ties_are_broken_the_same_whatever_the_order_of_announcements() -> None:
    directions = both(7, A, B) + both(3, B, D) + both(5, A, C) + both(2, C, D) + both(9, A, E) + both(1, E, D)
    routes = {find_route(Graph(tuple(p)), A, D, 10, NOW) for p in itertools.permutations(directions[::2])
              if len(p) == 6 and p[0] is directions[0]}
    assert len(routes) == 1
    # equal cost, hops and time: the smaller channel ids, payer's first
    assert [h.channel for h in routes.pop().hops] == [cid(5), cid(2)]


# --------------------------------------------------------------------------- properties on random graphs


@st.composite
def graphs(draw: st.DrawFn) -> tuple[Graph, int]:
    """Up to 8 nodes, channels between random pairs, random fees, Δs and capacities per direction."""
    n = draw(st.integers(2, 8))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] != p[1]),
                          max_size=14))
    directions = []
    for i, (x, y) in enumerate(pairs):
        delta = draw(st.integers(1, 2000))
        for s, t in ((x, y), (y, x)):
            if draw(st.booleans()) or (s, t) == (x, y):
                policy = Policy(draw(st.integers(0, 300)), draw(st.sampled_from([0, 1, 500, 10_000, 250_000])),
                                delta, draw(st.integers(0, 30_000)))
                directions.append(Direction(cid(i + 1), NODES[s], NODES[t], policy))
    return Graph(tuple(directions)), n


def simple_paths(g: Graph, payer: str, payee: str) -> list[list[Direction]]:
    """Every simple path of at most MAX_HOPS directions, by brute force (forwards)."""
    out: dict[str, list[Direction]] = {}
    for d in g.directions:
        out.setdefault(d.source, []).append(d)
    found: list[list[Direction]] = []

    def walk(node: str, path: list[Direction], seen: set[str]) -> None:
        if node == payee:
            found.append(list(path))
            return
        if len(path) == MAX_HOPS:
            return
        for d in out.get(node, []):
            if d.target not in seen:
                walk(d.target, path + [d], seen | {d.target})

    walk(payer, [], {payer})
    return found


@settings(max_examples=examples(300), deadline=None)
@given(graphs(), st.integers(1, 20_000), st.integers(0, 400), st.sampled_from([0, 1, 3]), st.data())
def test_found_route_is_valid_and_cheapest(gn: tuple[Graph, int], amount: int, min_final: int, weight: int,
                                           data: st.DataObject) -> None:
    g, n = gn
    payer, payee = data.draw(st.sampled_from([(NODES[i], NODES[j]) for i in range(n) for j in range(n) if i != j]))
    margin = data.draw(st.sampled_from([0, 350]))
    valid = []
    for path in simple_paths(g, payer, payee):
        r = build_route(payer, path, amount, NOW, margin, min_final)
        try:
            r.check(margin, NOW, min_final)
        except errors.RouteCapacityExceeded:
            continue
        valid.append(r)
    try:
        found = find_route(g, payer, payee, amount, NOW, margin, min_final, weight)
    except errors.RouteNotFound:
        assert not valid
        return
    found.check(margin, NOW, min_final)  # amounts, fees, timeouts, capacities, hop limit
    assert found.payer == payer and found.payee == payee and found.amount == amount
    assert found.total - found.amount == sum(found.fees)  # fees are conserved
    assert found.lock_time(NOW) == min_final + sum(h.policy.delta + margin for h in found.hops)
    assert min(r.cost(NOW, weight) for r in valid) == found.cost(NOW, weight)
    best = min(valid, key=lambda r: (r.cost(NOW, weight), len(r.hops), r.lock_time(NOW),
                                     tuple(h.channel for h in r.hops)))
    assert best == found  # and the tie-break is the documented one


# --------------------------------------------------------------------------- invoices

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
PREIMAGE = bytes(range(32))


def invoice(**kw: object) -> Invoice:
    args: dict = {"chain_id": 1337, "description": "coffee ☕", "min_final": 600, "payment_secret": b"\x07" * 32}
    args.update(kw)
    return Invoice.create(KEY, PREIMAGE, 10**15, NOW + 3600, **args)[0]


def test_invoice_create_sign_and_round_trip() -> None:
    inv, preimage = Invoice.create(KEY, PREIMAGE, 10**15, NOW + 3600, chain_id=1337, description="coffee")
    assert preimage == PREIMAGE and inv.payment_hash == hashlock_of(PREIMAGE) and inv.payee == address_of(KEY)
    assert len(inv.payment_secret) == 32 and inv.min_final == 0
    inv.check_payable(NOW)
    text = inv.encode()
    assert text.startswith("perun1") and text == text.lower()
    assert Invoice.decode(text) == inv == Invoice.from_bytes(inv.to_bytes())
    assert Invoice.decode(text.upper()) == inv  # all upper case: a QR code's alphanumeric mode
    fresh, secret = Invoice.create(KEY, None, 1, NOW, chain_id=1)
    assert fresh.payment_hash == hashlock_of(secret) and Invoice.decode(fresh.encode()) == fresh


def test_invoice_digest_is_eip712() -> None:
    inv = invoice()
    typed = {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"}],
                  "Invoice": [{"name": n, "type": t} for n, t in (
                      ("payee", "address"), ("token", "address"), ("paymentHash", "bytes32"),
                      ("paymentSecret", "bytes32"), ("amount", "uint128"), ("expiry", "uint64"),
                      ("minFinalDelta", "uint32"), ("description", "string"))]},
        "primaryType": "Invoice",
        "domain": {"name": "Perun Invoice", "version": "1", "chainId": 1337},
        "message": {"payee": inv.payee, "token": inv.token, "paymentHash": inv.payment_hash,
                    "paymentSecret": inv.payment_secret, "amount": inv.amount, "expiry": inv.expiry,
                    "minFinalDelta": inv.min_final, "description": inv.description},
    }
    signable = encode_typed_data(full_message=typed)
    assert keccak(b"\x19" + signable.version + signable.header + signable.body) == inv.digest
    assert Account.sign_message(signable, KEY).signature == inv.signature


def test_invoice_decoding_refuses_each_flaw() -> None:
    inv = invoice()
    raw = inv.to_bytes()
    with pytest.raises(errors.InvoiceMalformed, match="version"):
        Invoice.from_bytes(b"\x02" + raw[1:])
    with pytest.raises(errors.InvoiceMalformed):
        Invoice.from_bytes(raw[:-1])
    with pytest.raises(errors.InvoiceMalformed):
        Invoice.from_bytes(raw + b"\x00")
    with pytest.raises(errors.InvoiceMalformed, match="mixed case"):
        Invoice.decode(inv.encode()[:-1] + inv.encode()[-1].upper())
    with pytest.raises(errors.InvoiceMalformed):
        Invoice.decode("lnbc1" + inv.encode()[6:])
    with pytest.raises(errors.InvoiceMalformed):
        Invoice.decode(inv.encode() + "=")
    with pytest.raises(errors.InvoiceAmountOutOfRange):
        Invoice.create(KEY, PREIMAGE, 0, NOW, chain_id=1)
    with pytest.raises(errors.InvoiceAmountOutOfRange):
        Invoice.create(KEY, PREIMAGE, 2**128, NOW, chain_id=1)
    with pytest.raises(errors.InvoiceMalformed):
        Invoice.create(KEY, PREIMAGE, 1, NOW, chain_id=1, description="x" * 101)
    with pytest.raises(errors.InvoiceMalformed):
        Invoice.create(KEY, PREIMAGE[:31], 1, NOW, chain_id=1)
    other = Invoice.create(b"\x01" * 32, PREIMAGE, 10**15, NOW + 3600, chain_id=1337)[0]
    with pytest.raises(errors.InvoiceSignatureInvalid):
        Invoice.from_bytes(raw[:-65] + other.signature)  # a valid signature, by someone else
    with pytest.raises(errors.InvoiceExpired):
        inv.check_payable(NOW + 3600)
    assert isinstance(errors.InvoiceSignatureInvalid("x"), errors.InvalidSignature)


def _mutations(text: str) -> st.SearchStrategy[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567ABZ=1 é"
    return st.tuples(st.integers(0, len(text) - 1), st.sampled_from(alphabet)).filter(
        lambda m: text[m[0]] != m[1]).map(lambda m: text[:m[0]] + m[1] + text[m[0] + 1:])


TEXT = invoice().encode()


@settings(max_examples=examples(400), deadline=None)
@given(_mutations(TEXT))
def test_any_single_character_change_is_refused(changed: str) -> None:
    with pytest.raises(errors.InvalidInvoice):
        Invoice.decode(changed)


@settings(max_examples=examples(400), deadline=None)
@given(st.integers(0, len(invoice().to_bytes()) - 1), st.integers(1, 255))
def test_any_single_byte_change_is_refused(at: int, xor: int) -> None:
    raw = bytearray(invoice().to_bytes())
    raw[at] ^= xor
    with pytest.raises(errors.InvalidInvoice):
        Invoice.from_bytes(bytes(raw))


@settings(max_examples=examples(100), deadline=None)
@given(st.integers(1, 2**128 - 1), st.integers(0, 2**64 - 1), st.integers(1, 2**64 - 1),
       st.integers(0, 2**32 - 1), st.text(max_size=25), st.binary(min_size=32, max_size=32))
def test_invoices_round_trip(amount: int, expiry: int, chain_id: int, min_final: int, description: str,
                             preimage: bytes) -> None:
    inv, _ = Invoice.create(KEY, preimage, amount, expiry, chain_id=chain_id, min_final=min_final,
                            description=description, token="0x" + "ee" * 20)
    assert Invoice.decode(inv.encode()) == inv


def test_route_for_an_invoice() -> None:
    inv = invoice()
    g = Graph(tuple(both(1, A, B, cap=10**16) + both(2, B, inv.payee, base=5, cap=10**16, delta=700)))  # B charges 5
    r = route_for(g, A, inv, 1337, NOW, margin=350)
    assert r.amount == inv.amount and r.total == inv.amount + 5 and r.payee == inv.payee
    assert r.hops[-1].timeout == NOW + inv.min_final + 700 + 350
    r.check(350, NOW, inv.min_final)
    with pytest.raises(errors.InvalidInvoice, match="chain"):
        route_for(g, A, inv, 1, NOW)
    with pytest.raises(errors.InvoiceExpired):
        route_for(g, A, inv, 1337, inv.expiry)
