"""Payment onions for multi-hop payments: a Sphinx construction in the spirit of BOLT 4.

The payer wraps one fixed-size payload per hop (the next hop, the amount, the lock's timeout,
the payee's payment secret) in layers, one per hop, each readable only with that hop's key. A
hop peels its layer and learns its payload and the packet for the next hop, which is as large
as the one it got: it cannot tell how many hops came before it or follow it. A hop that fails
the payment wraps a failure that each hop on the way back re-obfuscates; only the payer, who
knows every hop's shared secret, reads it and learns which hop failed.

Not byte-compatible with Lightning. The primitives:

- shared secret: ss = SHA-256(compressed(x·E)), ECDH over secp256k1 between the ephemeral key
  E and the hop's Ethereum key x (libsecp256k1's ECDH, through coincurve);
- blinding: the next hop's ephemeral key is b·E with b = SHA-256(compressed(E) || ss), so two
  hops cannot link the packets they see by their keys;
- keys: HKDF-SHA256(ikm = ss, no salt, info = "perun/onion/v1/hop", 128 bytes) split into rho
  (the routing info's stream), mu (its MAC), um (a failure's MAC) and ammag (a failure's
  stream); the initial padding's key is HKDF-SHA256(ikm = session key, no salt,
  info = "perun/onion/v1/pad", 32 bytes);
- streams: ChaCha20 (RFC 8439), counter 0, nonce 0 (every key streams once);
- integrity: HMAC-SHA256. Not ChaCha20-Poly1305: Sphinx needs the cipher as a bare keystream,
  longer than what it encrypts (a hop decrypts the routing info followed by one zero slot, and
  the payer precomputes those tails as the filler), and a failure must be obfuscated again by
  hops that cannot authenticate it. An AEAD exposes neither; HMAC over the ciphertext
  (encrypt-then-MAC) is what the construction asks for.

Packet (PACKET_SIZE = 930 bytes, whatever the route's length):

    version (1) || ephemeral key (33, compressed) || routing info (MAX_HOPS × HOP_SIZE = 864)
    || MAC (32)

MAC = HMAC-SHA256(mu, version || routing info || payment hash): the payment hash is associated
data, so an onion cannot be moved to another lock. One hop's slot in the routing info, once
decrypted, is its payload (PAYLOAD_SIZE = 76) and the MAC of the next packet (32; all zero for
the payee):

    next hop's address (20; zero for the payee) || amount (u128, big-endian)
    || timeout (u64 seconds, big-endian) || payment secret (32; zero for an intermediary)

Failure (FAILURE_SIZE = 292 bytes, whatever the data): the failing hop forms

    HMAC-SHA256(um, body) (32) || body,   body = code (u16) || length (u16) || data || zeros

with FAILURE_DATA_SIZE = 256 bytes for data and padding, and XORs it with its ammag stream; each
hop on the way back XORs it with its own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import to_checksum_address

from perun import errors

VERSION = 1
MAX_HOPS = 8
KEY_SIZE = 32
PUBLIC_KEY_SIZE = 33
MAC_SIZE = 32
ADDRESS_SIZE = 20
AMOUNT_SIZE = 16
TIMEOUT_SIZE = 8
SECRET_SIZE = 32
PAYLOAD_SIZE = ADDRESS_SIZE + AMOUNT_SIZE + TIMEOUT_SIZE + SECRET_SIZE  # 76
HOP_SIZE = PAYLOAD_SIZE + MAC_SIZE  # 108: a payload and the next packet's MAC
ROUTING_SIZE = MAX_HOPS * HOP_SIZE  # 864
PACKET_SIZE = 1 + PUBLIC_KEY_SIZE + ROUTING_SIZE + MAC_SIZE  # 930

FAILURE_DATA_SIZE = 256  # the most data a failure carries; every failure is padded to it
FAILURE_SIZE = MAC_SIZE + 2 + 2 + FAILURE_DATA_SIZE  # 292

MAX_AMOUNT = 2**128 - 1
MAX_TIMEOUT = 2**64 - 1
MAX_CODE = 2**16 - 1

_HOP_INFO = b"perun/onion/v1/hop"
_PAD_INFO = b"perun/onion/v1/pad"
_ZERO_MAC = bytes(MAC_SIZE)
_NO_SECRET = bytes(SECRET_SIZE)


@dataclass(frozen=True)
class HopPayload:
    """What one hop must know. For an intermediary: whom to forward to (`next_hop`), how much to
    lock there (`amount`) and until when (`timeout`, unix seconds). For the payee (`next_hop`
    None): the amount and timeout the incoming lock must have (so the last intermediary cannot
    probe it with other ones) and the invoice's `payment_secret`."""

    next_hop: str | None
    amount: int
    timeout: int
    payment_secret: bytes = _NO_SECRET

    def __post_init__(self) -> None:
        if self.next_hop is not None:
            try:
                address = to_checksum_address(self.next_hop)
            except (ValueError, TypeError) as exc:
                raise errors.MalformedOnion(f"not an address: {self.next_hop!r}") from exc
            if int(address, 16) == 0:
                raise errors.MalformedOnion("the zero address is no hop: the payee's next_hop is None")
            object.__setattr__(self, "next_hop", address)
        if not 0 <= self.amount <= MAX_AMOUNT:
            raise errors.AmountOutOfRange(f"an onion carries amounts below 2**128, not {self.amount}")
        if not 0 <= self.timeout <= MAX_TIMEOUT:
            raise errors.MalformedOnion(f"an onion carries timeouts below 2**64, not {self.timeout}")
        if len(self.payment_secret) != SECRET_SIZE:
            raise errors.MalformedOnion(f"a payment secret has {SECRET_SIZE} bytes, not {len(self.payment_secret)}")

    def encode(self) -> bytes:
        hop = bytes(ADDRESS_SIZE) if self.next_hop is None else bytes.fromhex(self.next_hop[2:])
        return hop + self.amount.to_bytes(AMOUNT_SIZE, "big") + self.timeout.to_bytes(TIMEOUT_SIZE, "big") \
            + self.payment_secret

    @classmethod
    def decode(cls, raw: bytes) -> HopPayload:
        if len(raw) != PAYLOAD_SIZE:
            raise errors.MalformedOnion(f"a hop payload has {PAYLOAD_SIZE} bytes, not {len(raw)}")
        hop, at = raw[:ADDRESS_SIZE], ADDRESS_SIZE
        amount = int.from_bytes(raw[at:at + AMOUNT_SIZE], "big")
        at += AMOUNT_SIZE
        timeout = int.from_bytes(raw[at:at + TIMEOUT_SIZE], "big")
        at += TIMEOUT_SIZE
        return cls(None if hop == bytes(ADDRESS_SIZE) else "0x" + hop.hex(), amount, timeout, raw[at:])


@dataclass(frozen=True)
class Peeled:
    """One hop's layer: its payload, the shared secret it needs to fail the payment (and that a
    node logs to refuse a replayed onion), and the packet for the next hop (None for the payee)."""

    payload: HopPayload
    shared_secret: bytes
    next_packet: bytes | None

    @property
    def is_payee(self) -> bool:
        return self.next_packet is None


@dataclass(frozen=True)
class Failure:
    """A failure as the payer reads it: which hop of the route (0 is the payer's peer) failed,
    its code and its data."""

    hop: int
    code: int
    data: bytes


@dataclass(frozen=True)
class _Keys:
    rho: bytes
    mu: bytes
    um: bytes
    ammag: bytes


def compressed_public_key(private_key: bytes) -> bytes:
    """The 33-byte compressed secp256k1 public key of an Ethereum private key: what a payer puts
    in a route for a hop."""
    return _private(private_key, "a private key").public_key.format(compressed=True)


def build(session_key: bytes, route: Sequence[tuple[bytes, HopPayload]], payment_hash: bytes) -> bytes:
    """The onion for the first hop of `route` (each hop's compressed public key and payload, the
    payee last), bound to `payment_hash`. `session_key` is 32 fresh random bytes, never reused:
    whoever learns it reads every layer."""
    if not 1 <= len(route) <= MAX_HOPS:
        raise errors.MalformedOnion(f"a route has 1 to {MAX_HOPS} hops, not {len(route)}")
    _check_hash(payment_hash)
    for i, (_, payload) in enumerate(route):
        if (payload.next_hop is None) != (i == len(route) - 1):
            raise errors.MalformedOnion(f"hop {i}: the payee, and only the payee, has no next hop")
    secrets = _shared_secrets(session_key, [key for key, _ in route])
    keys = [_hop_keys(ss) for ss in secrets]
    filler = _filler(keys[:-1])
    # Random-looking bytes where no hop's slot is, so that the payee cannot count the hops.
    routing = _stream(_hkdf(session_key, _PAD_INFO, KEY_SIZE), ROUTING_SIZE)
    mac = _ZERO_MAC  # the payee's "next MAC": nothing follows
    for i in reversed(range(len(route))):
        shifted = route[i][1].encode() + mac + routing[:ROUTING_SIZE - HOP_SIZE]
        routing = _xor(shifted, _stream(keys[i].rho, ROUTING_SIZE))
        if i == len(route) - 1 and filler:
            # What the hops before will have appended as they peeled: the payee's MAC covers it.
            routing = routing[:ROUTING_SIZE - len(filler)] + filler
        mac = _mac(keys[i].mu, routing, payment_hash)
    ephemeral = PrivateKey(session_key).public_key.format(compressed=True)
    return bytes([VERSION]) + ephemeral + routing + mac


def peel(packet: bytes, private_key: bytes, payment_hash: bytes) -> Peeled:
    """This hop's layer of `packet`, which came with a lock on `payment_hash`. Raises
    MalformedOnion or OnionMacMismatch; then nothing may be forwarded."""
    if len(packet) != PACKET_SIZE:
        raise errors.MalformedOnion(f"an onion has {PACKET_SIZE} bytes, not {len(packet)}")
    if packet[0] != VERSION:
        raise errors.MalformedOnion(f"onion version {packet[0]} is not {VERSION}")
    _check_hash(payment_hash)
    ephemeral_raw, at = packet[1:1 + PUBLIC_KEY_SIZE], 1 + PUBLIC_KEY_SIZE
    routing, mac = packet[at:at + ROUTING_SIZE], packet[at + ROUTING_SIZE:]
    try:
        ephemeral = PublicKey(ephemeral_raw)
    except ValueError as exc:
        raise errors.MalformedOnion("the onion's ephemeral key is not on secp256k1") from exc
    ss = _private(private_key, "this node's key").ecdh(ephemeral_raw)
    keys = _hop_keys(ss)
    if not hmac.compare_digest(mac, _mac(keys.mu, routing, payment_hash)):
        raise errors.OnionMacMismatch("the onion's MAC does not verify: tampered with, for another payment "
                                      "hash, or not for this node")
    # The slot appended as zeros decrypts to what the payer put in the filler.
    plain = _xor(routing + bytes(HOP_SIZE), _stream(keys.rho, ROUTING_SIZE + HOP_SIZE))
    payload = HopPayload.decode(plain[:PAYLOAD_SIZE])
    next_mac = plain[PAYLOAD_SIZE:HOP_SIZE]
    if (next_mac == _ZERO_MAC) != (payload.next_hop is None):
        raise errors.MalformedOnion("the payee, and only the payee, has no next hop")
    if next_mac == _ZERO_MAC:
        return Peeled(payload, ss, None)
    blinded = ephemeral.multiply(_blinding(ephemeral_raw, ss)).format(compressed=True)
    return Peeled(payload, ss, bytes([VERSION]) + blinded + plain[HOP_SIZE:] + next_mac)


def failure(shared_secret: bytes, code: int, data: bytes = b"") -> bytes:
    """The failure a hop sends back to its previous hop, for the payer: `code` (u16) and up to
    FAILURE_DATA_SIZE bytes of `data`, under the shared secret of the onion it peeled."""
    if not 0 <= code <= MAX_CODE:
        raise errors.MalformedOnion(f"a failure code is a u16, not {code}")
    if len(data) > FAILURE_DATA_SIZE:
        raise errors.MalformedOnion(f"a failure carries at most {FAILURE_DATA_SIZE} bytes of data, not {len(data)}")
    keys = _hop_keys(_check_secret(shared_secret))
    body = code.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data.ljust(FAILURE_DATA_SIZE, b"\0")
    return _xor(hmac.digest(keys.um, body, "sha256") + body, _stream(keys.ammag, FAILURE_SIZE))


def forward_failure(shared_secret: bytes, blob: bytes) -> bytes:
    """A failure from the next hop, obfuscated once more (by the hop that got it) so that the
    hops on the way back see unrelated bytes."""
    _check_failure(blob)
    return _xor(blob, _stream(_hop_keys(_check_secret(shared_secret)).ammag, FAILURE_SIZE))


def decode_failure(session_key: bytes, route_public_keys: Sequence[bytes], blob: bytes) -> Failure:
    """Which hop of the route (built with `session_key`) failed, and why: the first whose keys
    authenticate the blob once the layers of the hops before it are removed. Raises
    UnreadableFailure if none does."""
    _check_failure(blob)
    if not 1 <= len(route_public_keys) <= MAX_HOPS:
        raise errors.MalformedOnion(f"a route has 1 to {MAX_HOPS} hops, not {len(route_public_keys)}")
    for i, ss in enumerate(_shared_secrets(session_key, route_public_keys)):
        keys = _hop_keys(ss)
        blob = _xor(blob, _stream(keys.ammag, FAILURE_SIZE))
        mac, body = blob[:MAC_SIZE], blob[MAC_SIZE:]
        if hmac.compare_digest(mac, hmac.digest(keys.um, body, "sha256")):
            length = int.from_bytes(body[2:4], "big")
            if length > FAILURE_DATA_SIZE:
                raise errors.MalformedOnion(f"hop {i}'s failure claims {length} bytes of data")
            return Failure(i, int.from_bytes(body[:2], "big"), body[4:4 + length])
    raise errors.UnreadableFailure("no hop of the route authenticates the failure")


# --------------------------------------------------------------------------- the construction


def _shared_secrets(session_key: bytes, public_keys: Sequence[bytes]) -> list[bytes]:
    """The payer's side of each hop's ECDH, blinding the ephemeral key as each hop will."""
    ephemeral = _private(session_key, "the session key")
    secrets = []
    for i, key in enumerate(public_keys):
        if len(key) != PUBLIC_KEY_SIZE:
            raise errors.MalformedOnion(
                f"hop {i}'s public key has {len(key)} bytes, not {PUBLIC_KEY_SIZE} (compressed)")
        try:
            ss = ephemeral.ecdh(key)
        except ValueError as exc:
            raise errors.MalformedOnion(f"hop {i}'s public key is not on secp256k1") from exc
        secrets.append(ss)
        ephemeral = ephemeral.multiply(_blinding(ephemeral.public_key.format(compressed=True), ss))
    return secrets


def _filler(keys: Sequence[_Keys]) -> bytes:
    """The tail of the payee's routing info: what the hops before it appended as they peeled
    (each a zero slot decrypted with its stream, then shifted and decrypted by those after)."""
    filler = b""
    for i, k in enumerate(keys):
        start = ROUTING_SIZE - i * HOP_SIZE
        filler = _xor(filler + bytes(HOP_SIZE), _stream(k.rho, ROUTING_SIZE + HOP_SIZE)[start:])
    return filler


def _blinding(ephemeral: bytes, ss: bytes) -> bytes:
    return hashlib.sha256(ephemeral + ss).digest()


def _hop_keys(ss: bytes) -> _Keys:
    okm = _hkdf(ss, _HOP_INFO, 4 * KEY_SIZE)
    return _Keys(*(okm[i:i + KEY_SIZE] for i in range(0, 4 * KEY_SIZE, KEY_SIZE)))


def _hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def _stream(key: bytes, length: int) -> bytes:
    # cryptography's 16-byte ChaCha20 nonce is the block counter (4, little-endian) then the nonce.
    return Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(length))


def _mac(mu: bytes, routing: bytes, payment_hash: bytes) -> bytes:
    return hmac.digest(mu, bytes([VERSION]) + routing + payment_hash, "sha256")


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b[:len(a)], "big")).to_bytes(len(a), "big")


def _private(key: bytes, what: str) -> PrivateKey:
    try:
        return PrivateKey(key)
    except (ValueError, TypeError) as exc:
        raise errors.MalformedOnion(f"{what} is not a secp256k1 private key") from exc


def _check_hash(payment_hash: bytes) -> None:
    if len(payment_hash) != 32:
        raise errors.MalformedOnion(f"a payment hash has 32 bytes, not {len(payment_hash)}")


def _check_secret(shared_secret: bytes) -> bytes:
    if len(shared_secret) != KEY_SIZE:
        raise errors.MalformedOnion(f"a shared secret has {KEY_SIZE} bytes, not {len(shared_secret)}")
    return shared_secret


def _check_failure(blob: bytes) -> None:
    if len(blob) != FAILURE_SIZE:
        raise errors.MalformedOnion(f"a failure has {FAILURE_SIZE} bytes, not {len(blob)}")
