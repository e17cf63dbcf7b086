"""Noise_XX_25519_ChaChaPoly_SHA256 (the Noise Protocol Framework, revision 34), the glue over
`cryptography`'s X25519, ChaCha20-Poly1305 and HKDF (docs/protocol.md §9, "Handshake").

Only what the peer transport uses: the XX pattern, payloads on every handshake message, the
handshake hash (before each payload, so that a payload can be signed over it) and the transport
cipher states with a rekey every REKEY_AFTER messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from perun import errors

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"  # 32 bytes: h starts as the name itself
DHLEN = 32
TAGLEN = 16
REKEY_AFTER = 1000  # messages per direction between rekeys, as BOLT 8 rotates
MAX_NONCE = 2**64 - 1


class CipherState:
    """One direction of a session: ChaCha20-Poly1305 with the nonce counted in the message order,
    so that a dropped, replayed or reordered message fails to decrypt."""

    __slots__ = ("_aead", "n")

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.n = 0

    def encrypt(self, plaintext: bytes, ad: bytes = b"") -> bytes:
        ciphertext = self._aead.encrypt(_nonce(self.n), plaintext, ad)
        self._advance()
        return ciphertext

    def decrypt(self, ciphertext: bytes, ad: bytes = b"") -> bytes:
        try:
            plaintext = self._aead.decrypt(_nonce(self.n), ciphertext, ad)
        except InvalidTag as exc:
            raise errors.FrameRejected(
                f"message {self.n} does not decrypt: tampered with, replayed, reordered or cut short") from exc
        self._advance()
        return plaintext

    def _advance(self) -> None:
        self.n += 1
        if self.n % REKEY_AFTER == 0:
            self.rekey()

    def rekey(self) -> None:
        """Noise's Rekey(): k = ENCRYPT(k, 2^64 - 1, empty, 32 zero bytes)[:32]; n goes on."""
        self._aead = ChaCha20Poly1305(self._aead.encrypt(_nonce(MAX_NONCE), bytes(32), b"")[:32])


def _nonce(n: int) -> bytes:
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _hkdf(ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """Noise's HKDF with two outputs: RFC 5869 with salt ck and empty info."""
    out = HKDF(hashes.SHA256(), 64, salt=ck, info=b"").derive(ikm)
    return out[:32], out[32:]


def _public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_key(raw: bytes | None = None) -> X25519PrivateKey:
    """An X25519 key: fresh, or from 32 bytes (test vectors)."""
    return X25519PrivateKey.from_private_bytes(raw) if raw is not None else X25519PrivateKey.generate()


XX = (("e",), ("e", "ee", "s", "es"), ("s", "se"))


class Handshake:
    """One side of Noise XX:

        -> e
        <- e, ee, s, es
        -> s, se

    Each message ends with a payload. `write_message` asks its caller for the payload given
    the handshake hash after the message's tokens, and `read_message` returns that hash with
    the payload it read, so that a payload can carry a signature over the hash before it.
    """

    def __init__(self, initiator: bool, prologue: bytes, static: X25519PrivateKey,
                 ephemeral: X25519PrivateKey | None = None) -> None:
        self.initiator = initiator
        self.h = PROTOCOL_NAME
        self.ck = PROTOCOL_NAME
        self._k: bytes | None = None
        self._n = 0
        self.s = static
        self.e = ephemeral or X25519PrivateKey.generate()
        self.rs: bytes | None = None  # the peer's static key, once read
        self.re: bytes | None = None
        self._step = 0
        self._mix_hash(prologue)

    @property
    def finished(self) -> bool:
        return self._step == len(XX)

    def write_message(self, payload: Callable[[bytes], bytes] = lambda h: b"") -> bytes:
        self._turn(writing=True)
        out = []
        for token in XX[self._step]:
            if token == "e":
                out.append(_public(self.e))
                self._mix_hash(out[-1])
            elif token == "s":
                out.append(self._encrypt_and_hash(_public(self.s)))
            else:
                self._mix_key(self._dh(token))
        out.append(self._encrypt_and_hash(payload(self.h)))
        self._step += 1
        return b"".join(out)

    def read_message(self, message: bytes) -> tuple[bytes, bytes]:
        """(the handshake hash before the payload, the payload)."""
        self._turn(writing=False)
        message = bytes(message)
        for token in XX[self._step]:
            if token == "e":
                self.re, message = _take(message, DHLEN, self._step)
                self._mix_hash(self.re)
            elif token == "s":
                raw, message = _take(message, DHLEN + (TAGLEN if self._k else 0), self._step)
                self.rs = self._decrypt_and_hash(raw)
            else:
                self._mix_key(self._dh(token))
        h = self.h
        payload = self._decrypt_and_hash(message)
        self._step += 1
        return h, payload

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) cipher states for this side, after the last message."""
        if not self.finished:
            raise errors.HandshakeFailed("the handshake is not finished")
        k1, k2 = _hkdf(self.ck, b"")
        initiator_to_responder, responder_to_initiator = CipherState(k1), CipherState(k2)
        if self.initiator:
            return initiator_to_responder, responder_to_initiator
        return responder_to_initiator, initiator_to_responder

    def _turn(self, writing: bool) -> None:
        # The initiator writes messages 0 and 2, the responder message 1.
        if self.finished or (self._step % 2 == 0) != (self.initiator == writing):
            raise errors.HandshakeFailed(f"handshake message {self._step + 1} is not this side's to "
                                         f"{'write' if writing else 'read'}")

    # --- symmetric state

    def _mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def _mix_key(self, ikm: bytes) -> None:
        self.ck, self._k = _hkdf(self.ck, ikm)
        self._n = 0

    def _encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if self._k is None:
            ciphertext = plaintext
        else:
            ciphertext = ChaCha20Poly1305(self._k).encrypt(_nonce(self._n), plaintext, self.h)
            self._n += 1
        self._mix_hash(ciphertext)
        return ciphertext

    def _decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self._k is None:
            plaintext = ciphertext
        else:
            try:
                plaintext = ChaCha20Poly1305(self._k).decrypt(_nonce(self._n), ciphertext, self.h)
            except InvalidTag as exc:
                raise errors.HandshakeFailed("a handshake message does not decrypt (tampered with, or the peer "
                                             "speaks another protocol version)") from exc
            self._n += 1
        self._mix_hash(ciphertext)
        return plaintext

    def _dh(self, token: str) -> bytes:
        """ee, es, se: the first letter is the initiator's key, the second the responder's."""
        mine, theirs = (token[0], token[1]) if self.initiator else (token[1], token[0])
        private = self.e if mine == "e" else self.s
        try:
            # The handshake pattern reads the peer's key before any token that uses it.
            peer = self.re if theirs == "e" else self.rs
            assert peer is not None
            return private.exchange(X25519PublicKey.from_public_bytes(peer))
        except ValueError as exc:  # a low-order point: the shared secret would be zero
            raise errors.HandshakeFailed(f"the peer sent an unusable X25519 key: {exc}") from exc


def _take(message: bytes, size: int, step: int) -> tuple[bytes, bytes]:
    if len(message) < size:
        raise errors.HandshakeFailed(f"handshake message {step + 1} is cut short ({len(message)} bytes): "
                                     "the peer speaks another protocol version?")
    return message[:size], message[size:]
