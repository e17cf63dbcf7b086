"""perun.core.announce: a node's signed announcement of its channel directions, its bytes, its
EIP-712 digest, and the public key a payer recovers from it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from perun import errors
from perun.core import announce
from perun.core.announce import MAX_ANNOUNCED, Announcement
from perun.core.channel import MAX_AMOUNT, MAX_DELTA
from perun.core.eip712 import address_of
from perun.core.onion import compressed_public_key
from perun.core.route import PPM, Direction, Policy
from tests.conftest import examples

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
NODE = address_of(KEY)
PEER, OTHER = "0x" + "11" * 20, "0x" + "22" * 20
TOKEN = "0x" + "33" * 20
NOW = 1_700_000_000


def direction(n: int, peer: str = PEER, base: int = 1_000, ppm: int = 2_000, delta: int = 600,
              capacity: int = 10**18, token: str = "0x" + "00" * 20) -> Direction:
    return Direction(n.to_bytes(32, "big"), NODE, peer, Policy(base, ppm, delta, capacity), token)


def announcement(directions: tuple[Direction, ...] = (direction(1), direction(2, OTHER, token=TOKEN))) -> Announcement:
    return Announcement.create(KEY, 1337, NOW, directions)


def test_layout_round_trip_and_size() -> None:
    a = announcement()
    raw = a.to_bytes()
    assert len(raw) == 1 + 8 + 20 + 8 + 1 + 2 * 116 + 65
    assert raw[0] == 1 and int.from_bytes(raw[1:9], "big") == 1337 and raw[9:29] == bytes.fromhex(NODE[2:])
    assert int.from_bytes(raw[29:37], "big") == NOW and raw[37] == 2
    first = raw[38:38 + 116]
    assert first[:32] == (1).to_bytes(32, "big") and first[32:52] == bytes.fromhex(PEER[2:])
    assert first[52:72] == bytes(20)  # ETH
    assert [int.from_bytes(first[a:b], "big") for a, b in ((72, 88), (88, 92), (92, 100), (100, 116))] == [
        1_000, 2_000, 600, 10**18]
    assert raw[-65:] == a.signature
    assert Announcement.from_bytes(raw) == a
    empty = announcement(())
    assert len(empty.to_bytes()) == 38 + 65 and Announcement.from_bytes(empty.to_bytes()) == empty
    full = announcement(tuple(direction(i, capacity=MAX_AMOUNT, base=MAX_AMOUNT, ppm=PPM, delta=MAX_DELTA)
                              for i in range(MAX_ANNOUNCED)))
    assert len(full.to_bytes()) == announce.MAX_SIZE == 3815
    assert Announcement.from_bytes(full.to_bytes()) == full


def test_digest_is_eip712_with_an_array_of_structs() -> None:
    a = announcement()
    channel_fields = [("channelId", "bytes32"), ("peer", "address"), ("token", "address"), ("baseFee", "uint128"),
                      ("feePpm", "uint32"), ("delta", "uint64"), ("capacity", "uint128")]
    typed = {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                   {"name": "chainId", "type": "uint256"}],
                  "Announcement": [{"name": "node", "type": "address"}, {"name": "timestamp", "type": "uint64"},
                                   {"name": "channels", "type": "AnnouncedChannel[]"}],
                  "AnnouncedChannel": [{"name": n, "type": t} for n, t in channel_fields]},
        "primaryType": "Announcement",
        "domain": {"name": "Perun Announcement", "version": "1", "chainId": 1337},
        "message": {"node": a.node, "timestamp": a.timestamp, "channels": [
            {"channelId": d.channel, "peer": d.target, "token": d.token, "baseFee": d.policy.base_fee,
             "feePpm": d.policy.fee_ppm, "delta": d.policy.delta, "capacity": d.policy.capacity}
            for d in a.directions]},
    }
    signable = encode_typed_data(full_message=typed)
    assert keccak(b"\x19" + signable.version + signable.header + signable.body) == a.digest
    assert Account.sign_message(signable, KEY).signature == a.signature
    # No channel: the array's hash is keccak of nothing.
    typed["message"]["channels"] = []
    signable = encode_typed_data(full_message=typed)
    assert keccak(b"\x19" + signable.version + signable.header + signable.body) == announcement(()).digest


def test_the_payer_recovers_the_announcers_public_key() -> None:
    a = Announcement.from_bytes(announcement().to_bytes())
    assert a.public_key == compressed_public_key(KEY)


def test_a_signature_by_another_key_or_a_changed_field_is_refused() -> None:
    a = announcement()
    other = Announcement.create(b"\x01" * 32, 1337, NOW, ())
    with pytest.raises(errors.AnnouncementSignatureInvalid, match="signed by"):
        Announcement.from_bytes(a.to_bytes()[:-65] + other.signature)
    for changed in (replace(a, timestamp=NOW + 1), replace(a, chain_id=1), replace(a, directions=a.directions[:1]),
                    replace(a, directions=(replace(a.directions[0], policy=Policy(999, 2_000, 600, 10**18)),
                                           a.directions[1]))):
        with pytest.raises(errors.AnnouncementSignatureInvalid):
            changed.check_signature()
    high_s = a.signature[:32] + (2**256 - 1).to_bytes(32, "big") + a.signature[64:]
    with pytest.raises(errors.AnnouncementSignatureInvalid, match="malformed"):
        replace(a, signature=high_s).check_signature()
    assert isinstance(errors.AnnouncementSignatureInvalid("x"), errors.InvalidSignature)


def test_inconsistent_content_is_refused() -> None:
    with pytest.raises(errors.InvalidAnnouncement, match="starts elsewhere"):
        Announcement.create(KEY, 1337, NOW, (replace(direction(1), source=OTHER),))
    with pytest.raises(errors.InvalidAnnouncement, match="twice"):
        Announcement.create(KEY, 1337, NOW, (direction(1), direction(1, OTHER)))
    with pytest.raises(errors.InvalidAnnouncement, match="at most 32"):
        Announcement.create(KEY, 1337, NOW, tuple(direction(i) for i in range(MAX_ANNOUNCED + 1)))
    with pytest.raises(errors.InvalidAnnouncement, match="chain id 0"):
        Announcement.create(KEY, 0, NOW, ())
    with pytest.raises(errors.InvalidAnnouncement, match="timestamp"):
        Announcement.create(KEY, 1, -1, ())
    raw = bytearray(announcement().to_bytes())
    with pytest.raises(errors.InvalidAnnouncement, match="version 2"):
        Announcement.from_bytes(b"\x02" + bytes(raw[1:]))
    for bad in (raw[:-1], raw + b"\x00", raw[:37]):
        with pytest.raises(errors.InvalidAnnouncement):
            Announcement.from_bytes(bytes(bad))
    fee = 38 + 88  # the first direction's fee ppm: above 10^6 is refused before the signature
    raw[fee:fee + 4] = (PPM + 1).to_bytes(4, "big")
    with pytest.raises(errors.InvalidAnnouncement, match="fee_ppm"):
        Announcement.from_bytes(bytes(raw))


def test_split_finds_each_announcement_by_its_count() -> None:
    parts = [announcement().to_bytes(), announcement(()).to_bytes(), announcement((direction(7),)).to_bytes()]
    assert announce.split(b"".join(parts)) == parts
    assert announce.split(b"") == []
    with pytest.raises(errors.InvalidAnnouncement, match="cut short"):
        announce.split(b"".join(parts)[:-1])
    with pytest.raises(errors.InvalidAnnouncement, match="33 directions"):
        announce.split(parts[1][:37] + bytes([33]) + parts[1][38:])


@settings(max_examples=examples(300), deadline=None)
@given(st.integers(0, len(announcement().to_bytes()) - 1), st.integers(1, 255))
def test_any_single_byte_change_is_refused(at: int, xor: int) -> None:
    raw = bytearray(announcement().to_bytes())
    raw[at] ^= xor
    with pytest.raises(errors.InvalidAnnouncement):
        Announcement.from_bytes(bytes(raw))
