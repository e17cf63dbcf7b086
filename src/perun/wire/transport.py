"""Encrypted, authenticated connections between nodes (docs/protocol.md §9, "Handshake" and
"Frames").

A Noise XX handshake (perun.wire.noise) with each party's identity bound to its Ethereum key:
the listener's second handshake message and the dialer's third carry a `Hello` (address, chain
id, contract) with the sender's signature over the handshake hash at that point, which covers
both ephemeral and both static keys, so the proof of the key holds for this session only. The
dialer names itself only after the listener proved to be the peer it dialled. Every frame after
the handshake is encrypted and authenticated; a frame that fails closes the connection before
anything reads it.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_utils import keccak, to_checksum_address

from perun import errors
from perun.core.eip712 import address_of, address_of_public_key, recover_public_key, sign
from perun.wire import noise
from perun.wire.limits import Limits
from perun.wire.messages import MAX_FRAME, PROTOCOL_VERSION, Message, decode_message

PROLOGUE = b"Perun wire protocol %d" % PROTOCOL_VERSION
HANDSHAKE_PREFIX = b"\x19Perun handshake\x00"
DIALER, LISTENER = 0, 1
LENGTH = struct.Struct(">H")
MAX_CIPHERTEXT = MAX_FRAME + noise.TAGLEN


@dataclass(frozen=True)
class Hello:
    """The payload of the listener's second and the dialer's third handshake message."""

    address: str
    chain_id: int
    contract: str
    signature: bytes
    SIZE = 20 + 8 + 20 + 65

    def identity(self) -> bytes:
        return bytes.fromhex(self.address[2:]) + self.chain_id.to_bytes(8, "big") + bytes.fromhex(self.contract[2:])

    def encode(self) -> bytes:
        return self.identity() + self.signature

    @classmethod
    def decode(cls, raw: bytes) -> Hello:
        if len(raw) != cls.SIZE:
            raise errors.HandshakeFailed(f"a Hello has {cls.SIZE} bytes, got {len(raw)}")
        return cls(to_checksum_address(raw[:20]), int.from_bytes(raw[20:28], "big"), to_checksum_address(raw[28:48]),
                   raw[48:])

    @classmethod
    def signed(cls, key: bytes, chain_id: int, contract: str, role: int, h: bytes) -> Hello:
        unsigned = cls(address_of(key), chain_id, to_checksum_address(contract), b"")
        return cls(unsigned.address, chain_id, unsigned.contract, sign(unsigned.digest(role, h), key))

    def digest(self, role: int, h: bytes) -> bytes:
        """keccak256(prefix || role || handshake hash || address || chain id || contract)."""
        return keccak(HANDSHAKE_PREFIX + bytes([role]) + h + self.identity())


class Connection:
    """An authenticated, encrypted connection to `peer` (its Ethereum address)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str,
                 send: noise.CipherState, receive: noise.CipherState, frames_per_second: int,
                 handshake_hash: bytes, public_key: bytes = b"") -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        # The peer's compressed secp256k1 key, recovered from its handshake signature (what a
        # payer needs to build an onion layer for it); empty where no handshake ran.
        self.public_key = public_key
        self.handshake_hash = handshake_hash  # names this session: the same on both ends, unique to it
        self._send = send
        self._receive = receive
        self._rate = frames_per_second
        self._tokens = float(frames_per_second)
        self._last = time.monotonic()

    async def read(self) -> Message:
        """The next message. MalformedMessage leaves the connection at the next frame;
        MessageTooLarge, FrameRejected and PeerUnavailable end it."""
        return decode_message(await self.read_plaintext())

    async def read_plaintext(self) -> bytes:
        """The next frame, decrypted and authenticated."""
        ciphertext = await read_frame(self.reader)
        self._throttle()
        return self._receive.decrypt(ciphertext)

    def _throttle(self) -> None:
        """A token bucket: `frames_per_second` tokens a second, at most one second's worth saved."""
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            raise errors.RateLimited(f"{self.peer} sent more than {self._rate} frames per second (the limit)")
        self._tokens -= 1

    def send(self, message: Message) -> None:
        self.send_plaintext(message.encode())

    def send_plaintext(self, plaintext: bytes) -> None:
        """Encrypts and sends one frame (any bytes: tests send what a misbehaving peer can)."""
        if self.writer.is_closing():
            raise errors.PeerUnavailable(f"connection to {self.peer} is closed")
        _write_frame(self.writer, self._send.encrypt(plaintext))

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise errors.PeerUnavailable(f"connection to {self.peer} lost: {exc}") from exc

    def close(self) -> None:
        self.writer.close()

    async def linger(self, seconds: float = 1.0) -> None:
        """Sends what is queued, half-closes, and discards what the peer still sends until it
        closes or `seconds` pass. Closing with unread bytes would reset the connection, and a
        reset can destroy what was just sent (the Error that says why)."""
        try:
            async with asyncio.timeout(seconds):
                await self.writer.drain()
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                while await self.reader.read(65536):
                    pass
        except (TimeoutError, ConnectionError):
            pass  # the peer is gone or goes on sending: close all the same

    def abort(self) -> None:
        """Drops what is not yet sent and resets the connection, as a killed process does."""
        self.writer.transport.abort()

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    @property
    def frames(self) -> tuple[int, int]:
        """(sent, received): the frames this end encrypted and decrypted since the handshake
        (the two directions' nonces). Both ends of a session name it by its `handshake_hash`, so
        comparing their counts tells the frames still in flight between them."""
        return self._send.n, self._receive.n


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """`length (u16) | ciphertext`: the ciphertext (or a handshake message)."""
    try:
        length = LENGTH.unpack(await reader.readexactly(LENGTH.size))[0]
        if length > MAX_CIPHERTEXT:
            raise errors.MessageTooLarge(f"frame of {length} bytes exceeds {MAX_CIPHERTEXT}")
        return await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise errors.PeerUnavailable("the connection closed") from exc


def _write_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(LENGTH.pack(len(data)) + data)


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    key: bytes,
    chain_id: int,
    contract: str,
    *,
    expected_peer: str | None = None,
    static: X25519PrivateKey | None = None,
    ephemeral: X25519PrivateKey | None = None,
    limits: Limits = Limits(),
) -> Connection:
    """Runs the handshake (as the dialer if `expected_peer` is given) and returns the connection.

    Raises HandshakeFailed if the peer does not prove its key, is not `expected_peer`, is on
    another chain or contract, or takes longer than the limit; the caller closes the stream.
    `static` is the node's Noise static key (a fresh one if None); `ephemeral` is given only by
    the test of the specification's vector.
    """
    state = noise.Handshake(expected_peer is not None, PROLOGUE, static or noise.private_key(), ephemeral)
    me = (key, chain_id, to_checksum_address(contract))
    try:
        async with asyncio.timeout(limits.handshake_timeout):
            if expected_peer is None:
                peer, public_key = await _listen(reader, writer, state, me)
            else:
                peer, public_key = await _dial(reader, writer, state, me, to_checksum_address(expected_peer))
    except TimeoutError as exc:
        raise errors.HandshakeFailed(f"the handshake did not complete within {limits.handshake_timeout:g} s") from exc
    except errors.PeerUnavailable as exc:
        raise errors.HandshakeFailed(f"the connection closed during the handshake: {exc}") from exc
    except errors.MessageTooLarge as exc:
        raise errors.HandshakeFailed(str(exc)) from exc
    send, receive = state.split()
    return Connection(reader, writer, peer, send, receive, limits.frames_per_second, state.h, public_key)


async def _dial(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: noise.Handshake,
                me: tuple[bytes, int, str], expected: str) -> tuple[str, bytes]:
    _write_frame(writer, state.write_message())
    h, payload = state.read_message(await read_frame(reader))
    theirs, public_key = _check(Hello.decode(payload), LISTENER, h, me)
    if theirs.address != expected:
        raise errors.HandshakeFailed(f"dialled {expected}, but {theirs.address} answered")
    _write_frame(writer, state.write_message(lambda h: Hello.signed(*me, DIALER, h).encode()))
    await writer.drain()
    return theirs.address, public_key


async def _listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: noise.Handshake,
                  me: tuple[bytes, int, str]) -> tuple[str, bytes]:
    first = await read_frame(reader)
    if len(first) != noise.DHLEN:  # an ephemeral key and an empty payload
        raise errors.HandshakeFailed(f"the first handshake message has {len(first)} bytes, not {noise.DHLEN}: "
                                     f"the peer speaks another protocol version (this node speaks {PROTOCOL_VERSION})")
    state.read_message(first)
    _write_frame(writer, state.write_message(lambda h: Hello.signed(*me, LISTENER, h).encode()))
    await writer.drain()
    h, payload = state.read_message(await read_frame(reader))
    theirs, public_key = _check(Hello.decode(payload), DIALER, h, me)
    return theirs.address, public_key


def _check(theirs: Hello, role: int, h: bytes, me: tuple[bytes, int, str]) -> tuple[Hello, bytes]:
    """The peer's Hello, checked, and the public key its signature recovers."""
    key, chain_id, contract = me
    try:
        public_key = recover_public_key(theirs.digest(role, h), theirs.signature)
    except errors.InvalidSignature as exc:
        raise errors.HandshakeFailed(f"bad handshake signature: {exc}") from exc
    signer = address_of_public_key(public_key)
    if signer != theirs.address:
        raise errors.HandshakeFailed(f"{theirs.address} did not prove its key (signed by {signer})")
    if theirs.address == address_of(key):
        raise errors.HandshakeFailed("the peer claims this node's own address")
    if (theirs.chain_id, theirs.contract) != (chain_id, contract):
        raise errors.HandshakeFailed(
            f"peer is on chain {theirs.chain_id} contract {theirs.contract}, "
            f"this node on chain {chain_id} contract {contract}"
        )
    return theirs, public_key
