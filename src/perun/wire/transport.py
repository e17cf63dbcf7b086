"""Frames over TCP (asyncio streams) and the authenticating handshake (docs/protocol.md §9).

Handshake: the dialer sends Hello, the listener answers with its Hello, then each sends Auth:
its signature on keccak("\\x19Perun handshake\\x00" || role || dialer's Hello || listener's Hello),
role 0 for the dialer and 1 for the listener. Both Hellos carry a fresh 32-byte nonce, so a
signature proves the key now and cannot be replayed into another session or reflected back.
"""

from __future__ import annotations

import asyncio
import os

from eth_utils import keccak, to_checksum_address

from perun import errors
from perun.core.eip712 import address_of, recover, sign
from perun.wire.messages import HEADER, MAX_FRAME, Auth, Hello, Message, decode

HANDSHAKE_PREFIX = b"\x19Perun handshake\x00"
HANDSHAKE_TIMEOUT = 10.0
DIALER, LISTENER = 0, 1


def handshake_digest(role: int, dialer: Hello, listener: Hello) -> bytes:
    return keccak(HANDSHAKE_PREFIX + bytes([role]) + dialer.encode() + listener.encode())


class Connection:
    """An authenticated connection to `peer` (its Ethereum address)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer

    async def read(self) -> Message:
        """The next message. MalformedMessage leaves the stream at the next frame; MessageTooLarge
        and PeerUnavailable end the connection."""
        return await read_message(self.reader)

    def send(self, message: Message) -> None:
        if self.writer.is_closing():
            raise errors.PeerUnavailable(f"connection to {self.peer} is closed")
        self.writer.write(message.encode())

    def send_raw(self, frame: bytes) -> None:
        """Bytes as they are: for tests of what a misbehaving peer can send."""
        self.writer.write(frame)

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise errors.PeerUnavailable(f"connection to {self.peer} lost: {exc}") from exc

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        """Drops what is not yet sent and resets the connection, as a killed process does."""
        self.writer.transport.abort()

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()


async def read_message(reader: asyncio.StreamReader) -> Message:
    try:
        header = await reader.readexactly(4)
        length = int.from_bytes(header, "big")
        if length > MAX_FRAME:
            raise errors.MessageTooLarge(f"frame of {length} bytes exceeds {MAX_FRAME}")
        body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise errors.PeerUnavailable("the connection closed") from exc
    if length < HEADER.size - 4:
        raise errors.MalformedMessage(f"frame of {length} bytes has no version and type")
    return decode(body[0], body[1], body[2:])


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    key: bytes,
    chain_id: int,
    contract: str,
    *,
    expected_peer: str | None = None,
) -> Connection:
    """Runs the handshake (as the dialer if `expected_peer` is given) and returns the connection.

    Raises HandshakeFailed if the peer does not prove its key, is not `expected_peer`, or is on
    another chain or contract; the caller closes the stream.
    """
    me = Hello(address_of(key), chain_id, contract, os.urandom(32))
    try:
        return await asyncio.wait_for(_handshake(reader, writer, key, me, expected_peer), HANDSHAKE_TIMEOUT)
    except asyncio.TimeoutError as exc:
        raise errors.HandshakeFailed("the peer did not complete the handshake in time") from exc
    except errors.WireError as exc:
        if isinstance(exc, errors.HandshakeFailed):
            raise
        raise errors.HandshakeFailed(str(exc)) from exc


async def _handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes, me: Hello, expected_peer: str | None
) -> Connection:
    dialing = expected_peer is not None
    if dialing:
        writer.write(me.encode())
    theirs = await read_message(reader)
    if not isinstance(theirs, Hello):
        raise errors.HandshakeFailed(f"expected Hello, got {type(theirs).__name__}")
    if not dialing:
        writer.write(me.encode())
    if dialing and theirs.address != to_checksum_address(expected_peer):
        raise errors.HandshakeFailed(f"dialed {expected_peer}, but {theirs.address} answered")
    if theirs.address == me.address:
        raise errors.HandshakeFailed("the peer claims this node's own address")
    if (theirs.chain_id, theirs.contract) != (me.chain_id, me.contract):
        raise errors.HandshakeFailed(
            f"peer is on chain {theirs.chain_id} contract {theirs.contract}, "
            f"this node on chain {me.chain_id} contract {me.contract}"
        )
    dialer, listener = (me, theirs) if dialing else (theirs, me)
    role_mine, role_theirs = (DIALER, LISTENER) if dialing else (LISTENER, DIALER)
    writer.write(Auth(sign(handshake_digest(role_mine, dialer, listener), key)).encode())
    await writer.drain()
    auth = await read_message(reader)
    if not isinstance(auth, Auth):
        raise errors.HandshakeFailed(f"expected Auth, got {type(auth).__name__}")
    try:
        signer = recover(handshake_digest(role_theirs, dialer, listener), auth.signature)
    except errors.InvalidSignature as exc:
        raise errors.HandshakeFailed(f"bad handshake signature: {exc}") from exc
    if signer != theirs.address:
        raise errors.HandshakeFailed(f"{theirs.address} did not prove its key (signed by {signer})")
    return Connection(reader, writer, theirs.address)
