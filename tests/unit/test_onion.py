"""Payment onions (perun.core.onion): each hop peels exactly its layer, packets and failures keep
their size, tampering is caught by the first hop that checks, failures reach the payer with the
failing hop's index, and a fixed vector pins the bytes (docs/protocol.md)."""

from __future__ import annotations

import hashlib

import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from perun import errors
from perun.core import onion
from perun.core.eip712 import address_of
from perun.core.onion import (
    FAILURE_SIZE,
    MAX_HOPS,
    PACKET_SIZE,
    HopPayload,
    build,
    compressed_public_key,
    decode_failure,
    failure,
    forward_failure,
    peel,
)
from perun.wire.messages import MAX_FRAME
from tests.conftest import examples

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEYS = [bytes([0x11 * (i + 1)]) * 32 for i in range(MAX_HOPS)]  # 0x11.., 0x22.., ..., 0x88..
PUBS = [compressed_public_key(k) for k in KEYS]
SESSION = bytes([0x41]) * 32
HASH = hashlib.sha256(bytes([0x42]) * 32).digest()
SECRET = bytes([0x53]) * 32


def _route(n: int, keys: list[bytes] = KEYS) -> list[tuple[bytes, HopPayload]]:
    """n hops: each forwards 10 less and an hour earlier than the one before; the payee last."""
    return [
        (compressed_public_key(keys[i]),
         HopPayload(address_of(keys[i + 1]) if i < n - 1 else None, 1_000_000 + 10 * (n - 1 - i),
                    1_700_000_000 + 3600 * (n - i), bytes(32) if i < n - 1 else SECRET))
        for i in range(n)
    ]


def _walk(first: bytes, keys: list[bytes], payment_hash: bytes = HASH) -> list[onion.Peeled]:
    """Each hop of `keys` peels the packet the one before it forwards."""
    peeled: list[onion.Peeled] = []
    packet: bytes | None = first
    for key in keys:
        assert packet is not None and len(packet) == PACKET_SIZE
        peeled.append(peel(packet, key, payment_hash))
        packet = peeled[-1].next_packet
    return peeled


@pytest.mark.parametrize("n", range(1, MAX_HOPS + 1))
def test_each_hop_peels_its_payload_and_the_payee_gets_none(n: int) -> None:
    route = _route(n)
    peeled = _walk(build(SESSION, route, HASH), KEYS[:n])
    assert [p.payload for p in peeled] == [payload for _, payload in route]
    assert [p.is_payee for p in peeled] == [False] * (n - 1) + [True]
    assert all(len(p.next_packet) == PACKET_SIZE for p in peeled[:-1])
    assert len({p.shared_secret for p in peeled}) == n


def test_the_packet_fits_one_message_with_room_and_its_size_says_nothing() -> None:
    assert PACKET_SIZE == 1 + 33 + MAX_HOPS * (20 + 16 + 8 + 32 + 32) + 32 == 930
    assert PACKET_SIZE + FAILURE_SIZE < MAX_FRAME // 3
    assert {len(build(SESSION, _route(n), HASH)) for n in range(1, MAX_HOPS + 1)} == {PACKET_SIZE}


def test_no_two_hops_see_a_common_byte_pattern() -> None:
    """The ephemeral key is blinded and the routing info re-encrypted at each hop: the packets
    two hops see share neither key nor MAC nor any long run of routing info."""
    first = build(SESSION, _route(5), HASH)
    packets = [first] + [p.next_packet for p in _walk(first, KEYS[:5])[:-1]]
    assert len({p[1:34] for p in packets}) == len({p[-32:] for p in packets}) == 5
    for a in packets:
        for b in packets:
            if a is not b:
                assert sum(x == y for x, y in zip(a[34:-32], b[34:-32])) < 20


@pytest.mark.parametrize("n", [2, 5])
def test_a_hop_cannot_peel_another_hops_layer(n: int) -> None:
    packet = build(SESSION, _route(n), HASH)
    for i, p in enumerate([packet] + [p.next_packet for p in _walk(packet, KEYS[:n])[:-1]]):
        for j, key in enumerate(KEYS):
            if j != i:
                with pytest.raises(errors.OnionMacMismatch):
                    peel(p, key, HASH)


def test_tampering_with_any_byte_fails_at_the_first_hop() -> None:
    packet = build(SESSION, _route(4), HASH)
    for at in range(PACKET_SIZE):
        bad = packet[:at] + bytes([packet[at] ^ 0x01]) + packet[at + 1:]
        # the version is refused as such; a flipped key bit may leave the curve; the rest is the MAC
        expected = errors.MalformedOnion if at == 0 else errors.OnionError if at < 34 else errors.OnionMacMismatch
        with pytest.raises(expected):
            peel(bad, KEYS[0], HASH)


def test_tampering_between_two_hops_fails_at_the_next() -> None:
    hop1 = peel(build(SESSION, _route(4), HASH), KEYS[0], HASH).next_packet
    assert hop1 is not None
    for at in (34, 34 + 500, PACKET_SIZE - 33, PACKET_SIZE - 1):  # routing info (its tail too), MAC
        with pytest.raises(errors.OnionMacMismatch):
            peel(hop1[:at] + bytes([hop1[at] ^ 0x80]) + hop1[at + 1:], KEYS[1], HASH)


def test_an_onion_is_bound_to_its_payment_hash() -> None:
    packet = build(SESSION, _route(3), HASH)
    other = hashlib.sha256(b"another lock").digest()
    with pytest.raises(errors.OnionMacMismatch):
        peel(packet, KEYS[0], other)
    # an intermediary that moves the onion to a lock on another hash is caught by the next hop
    moved = peel(packet, KEYS[0], HASH).next_packet
    with pytest.raises(errors.OnionMacMismatch):
        peel(moved, KEYS[1], other)


@pytest.mark.parametrize("packet", [b"", bytes(PACKET_SIZE - 1), bytes(PACKET_SIZE + 1)])
def test_a_packet_of_the_wrong_size_is_malformed(packet: bytes) -> None:
    with pytest.raises(errors.MalformedOnion, match="930"):
        peel(packet, KEYS[0], HASH)


def test_an_unknown_version_or_a_key_off_the_curve_is_malformed() -> None:
    packet = build(SESSION, _route(2), HASH)
    with pytest.raises(errors.MalformedOnion, match="version"):
        peel(bytes([2]) + packet[1:], KEYS[0], HASH)
    with pytest.raises(errors.MalformedOnion, match="secp256k1"):
        peel(packet[:1] + bytes([4]) + packet[2:], KEYS[0], HASH)


def test_what_no_onion_can_carry_is_refused() -> None:
    with pytest.raises(errors.MalformedOnion, match="1 to 8"):
        build(SESSION, [], HASH)
    with pytest.raises(errors.MalformedOnion, match="1 to 8"):
        build(SESSION, _route(8) + _route(1), HASH)
    last = _route(2)
    with pytest.raises(errors.MalformedOnion, match="only the payee"):
        build(SESSION, [last[1], last[0]], HASH)
    with pytest.raises(errors.MalformedOnion, match="private key"):
        build(N.to_bytes(32, "big"), _route(2), HASH)
    with pytest.raises(errors.MalformedOnion, match="public key"):
        build(SESSION, [(PUBS[0][:32], last[1][1])], HASH)
    with pytest.raises(errors.MalformedOnion, match="payment hash"):
        build(SESSION, _route(2), HASH[:31])
    with pytest.raises(errors.AmountOutOfRange):
        HopPayload(None, 2**128, 0)
    with pytest.raises(errors.MalformedOnion):
        HopPayload(None, 0, 2**64)
    with pytest.raises(errors.MalformedOnion):
        HopPayload("0x" + "00" * 20, 0, 0)
    with pytest.raises(errors.MalformedOnion):
        HopPayload(None, 0, 0, b"short")


def test_a_payload_round_trips_with_the_extremes() -> None:
    payload = HopPayload("0x" + "ab" * 20, 2**128 - 1, 2**64 - 1, b"\xff" * 32)
    assert HopPayload.decode(payload.encode()) == payload and len(payload.encode()) == onion.PAYLOAD_SIZE
    assert payload.next_hop == to_checksum_address("0x" + "ab" * 20)


def _fail_at(n: int, j: int, code: int, data: bytes) -> list[bytes]:
    """The failure as each hop from the failing one, j, back to the first passes it on."""
    peeled = _walk(build(SESSION, _route(n), HASH), KEYS[:n])
    blobs = [failure(peeled[j].shared_secret, code, data)]
    for i in reversed(range(j)):
        blobs.append(forward_failure(peeled[i].shared_secret, blobs[-1]))
    return blobs


@pytest.mark.parametrize("n", range(1, 6))
def test_a_failure_from_each_hop_reaches_the_payer_with_its_index(n: int) -> None:
    for j in range(n):
        data = b"hop %d: no balance" % j
        blobs = _fail_at(n, j, 0x1000 + j, data)
        assert {len(b) for b in blobs} == {FAILURE_SIZE}
        assert len(set(blobs)) == len(blobs)  # each hop on the way back sees other bytes
        got = decode_failure(SESSION, PUBS[:n], blobs[-1])
        assert (got.hop, got.code, got.data) == (j, 0x1000 + j, data)


def test_failure_data_is_padded_to_a_fixed_length() -> None:
    short, full = _fail_at(3, 1, 1, b"")[-1], _fail_at(3, 1, 2, bytes(range(256)))[-1]
    assert len(short) == len(full) == FAILURE_SIZE
    assert decode_failure(SESSION, PUBS[:3], full).data == bytes(range(256))
    ss = peel(build(SESSION, _route(1), HASH), KEYS[0], HASH).shared_secret
    with pytest.raises(errors.MalformedOnion):
        failure(ss, 1, bytes(257))
    with pytest.raises(errors.MalformedOnion):
        failure(ss, 2**16, b"")
    with pytest.raises(errors.MalformedOnion):
        forward_failure(ss, bytes(FAILURE_SIZE - 1))


def test_a_failure_no_hop_authenticates_is_unreadable() -> None:
    blob = _fail_at(4, 2, 7, b"x")[-1]
    for at in (0, 40, FAILURE_SIZE - 1):  # a hop on the way back garbled it
        with pytest.raises(errors.UnreadableFailure):
            decode_failure(SESSION, PUBS[:4], blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1:])
    with pytest.raises(errors.UnreadableFailure):  # another payment's failure
        decode_failure(bytes([0x43]) * 32, PUBS[:4], blob)
    with pytest.raises(errors.UnreadableFailure):  # the route stops before the failing hop
        decode_failure(SESSION, PUBS[:2], blob)
    with pytest.raises(errors.UnreadableFailure):
        decode_failure(SESSION, PUBS[:4], bytes(FAILURE_SIZE))


_keys = st.integers(1, N - 1).map(lambda k: k.to_bytes(32, "big"))
_payloads = st.builds(
    lambda amount, timeout, secret: (amount, timeout, secret),
    st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32),
)


@settings(max_examples=examples(60), deadline=None)
@given(
    keys=st.lists(_keys, min_size=1, max_size=MAX_HOPS),
    data=st.data(),
    session=_keys,
    payment_hash=st.binary(min_size=32, max_size=32),
)
def test_any_route_round_trips_and_any_hop_can_fail(
    keys: list[bytes], data: st.DataObject, session: bytes, payment_hash: bytes
) -> None:
    n = len(keys)
    fields = data.draw(st.lists(_payloads, min_size=n, max_size=n))
    route = [
        (compressed_public_key(keys[i]),
         HopPayload(address_of(keys[i + 1]) if i < n - 1 else None, *fields[i]))
        for i in range(n)
    ]
    peeled = _walk(build(session, route, payment_hash), keys, payment_hash)
    assert [p.payload for p in peeled] == [payload for _, payload in route]
    assert peeled[-1].next_packet is None
    j = data.draw(st.integers(0, n - 1))
    code, reason = data.draw(st.integers(0, 2**16 - 1)), data.draw(st.binary(max_size=256))
    blob = failure(peeled[j].shared_secret, code, reason)
    for i in reversed(range(j)):
        blob = forward_failure(peeled[i].shared_secret, blob)
    got = decode_failure(session, [key for key, _ in route], blob)
    # even a node twice on the route has two shared secrets: the payer learns the right position
    assert (got.hop, got.code, got.data) == (j, code, reason)


# --------------------------------------------------------------------------- the fixed vector
# Alice pays Dave 1_000_000 through Bob and Carol (docs/protocol.md). Bob, Carol and Dave hold
# the keys 0x11.., 0x22.., 0x33..; Carol fails with code 0x1001 and Bob passes it back to Alice.

VECTOR_T = 1_700_000_000
VECTOR_PACKET_SHA256 = "f839db1ffdba10437ab6898bc061eaf30278a9ff758284abae04c485e61df747"
VECTOR_PACKET_HEAD = "0102eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619"  # version, key
VECTOR_SHARED_SECRETS = [
    "db6f7df09179d90408351bff9f16d79abd13679e5fd212e1e990eacb3bfc5f28",
    "dd5122cd5dddd0c81145b35518e9110ce0b5e6d355678d0fefffdf50d24cec8a",
    "c93dffd7bc34f32810a98446daa3ddfec738b66d727053d408d0d7434151b98b",
]
VECTOR_NEXT_SHA256 = [  # the packets Bob and Carol forward
    "6f34d9c6b509c9374e9a95a14dcfaef49219372cfec2f87e9dcedf357455eefd",
    "b5057df5e4001939e7b879e7afd39c2eb26c42ff66ea63c16e9e7f5aad51ce88",
]
VECTOR_FAILURE = (  # as Alice receives it from Bob
    "373dc19215e0cefad3c1349a71235358603db0bb5e4ec4bcf3430c735b779fdf74b5c1450376c6b3c0ad75949984ffd5"
    "fa5a144bc32225fc74b9dacef00d485e7e1f56f4b665e2a12b9fb2b6c0d29e1ff8f08659bc683b12ffc20f8b0890a149"
    "2f1481c996cefe643f9d8e77ffd5c9106ee079e4b3d47737df9b1df2f8892501bd469505849d04d358ff3fe836182a85"
    "ffffc8beb9001c72840bd8e7201eed9cdf447ec932c3f3c906d1934b61eb10d1bfa5db512b46f3afdd4b08821b925a0a"
    "171b6944a332208cc317b2853c9718e0d0c27aa2b6e8864cc04d7a41a3096fc086678c501882b1c056913a95b2d7fbaa"
    "7bd7f6208f1d333a5b88d4c1a91fbbd1f5ed4689b5cb2bfa9407ff3068f065ed50a203d990bea30596d730e1672b95bf"
    "0ee78725"
)


def _vector_route() -> list[tuple[bytes, HopPayload]]:
    bob, carol, dave = KEYS[:3]
    return [
        (compressed_public_key(bob), HopPayload(address_of(carol), 1_000_100, VECTOR_T + 7200)),
        (compressed_public_key(carol), HopPayload(address_of(dave), 1_000_000, VECTOR_T + 3600)),
        (compressed_public_key(dave), HopPayload(None, 1_000_000, VECTOR_T + 3600, SECRET)),
    ]


def test_the_fixed_vector() -> None:
    assert HASH.hex() == "425ed4e4a36b30ea21b90e21c712c649e8214c29b7eaf68089d1039c6e55384c"
    route = _vector_route()
    packet = build(SESSION, route, HASH)
    assert hashlib.sha256(packet).hexdigest() == VECTOR_PACKET_SHA256
    assert packet[:34].hex() == VECTOR_PACKET_HEAD
    peeled = _walk(packet, KEYS[:3])
    assert [p.shared_secret.hex() for p in peeled] == VECTOR_SHARED_SECRETS
    assert [hashlib.sha256(p.next_packet).hexdigest() for p in peeled[:2] if p.next_packet] == VECTOR_NEXT_SHA256
    blob = forward_failure(peeled[0].shared_secret, failure(peeled[1].shared_secret, 0x1001, b"insufficient balance"))
    assert blob.hex() == VECTOR_FAILURE
    assert decode_failure(SESSION, [key for key, _ in route], blob) == onion.Failure(1, 0x1001, b"insufficient balance")


def test_the_vector_from_the_description_alone() -> None:
    """Bob's layer of the vector, read with nothing but the module docstring's description."""
    import hmac as hmac_

    from coincurve import PublicKey
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    packet = build(SESSION, _vector_route(), HASH)
    version, ephemeral, routing, mac = packet[0], packet[1:34], packet[34:898], packet[898:]
    assert version == 1 and ephemeral == compressed_public_key(SESSION)
    ss = hashlib.sha256(PublicKey(PUBS[0]).multiply(SESSION).format(compressed=True)).digest()
    assert ss.hex() == VECTOR_SHARED_SECRETS[0]
    okm = HKDF(algorithm=hashes.SHA256(), length=128, salt=None, info=b"perun/onion/v1/hop").derive(ss)
    rho, mu = okm[:32], okm[32:64]
    assert mac == hmac_.digest(mu, bytes([1]) + routing + HASH, "sha256")
    stream = Cipher(algorithms.ChaCha20(rho, bytes(16)), mode=None).encryptor().update(bytes(864))
    plain = bytes(a ^ b for a, b in zip(routing, stream))
    assert plain[:20] == bytes.fromhex(address_of(KEYS[1])[2:])  # Carol
    assert int.from_bytes(plain[20:36], "big") == 1_000_100
    assert int.from_bytes(plain[36:44], "big") == VECTOR_T + 7200
    assert plain[44:76] == bytes(32)  # no payment secret for an intermediary
    # Carol's ephemeral key: Bob's blinded by SHA-256(Bob's ephemeral key || ss)
    blinded = PublicKey(ephemeral).multiply(hashlib.sha256(ephemeral + ss).digest()).format(compressed=True)
    assert _walk(packet, KEYS[:1])[0].next_packet[1:34] == blinded
