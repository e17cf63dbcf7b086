"""The encrypted transport (perun.wire.noise, perun.wire.transport): the Noise glue agrees with an
independent implementation (the `noiseprotocol` package), the handshake reproduces the vector
of docs/protocol.md §9, and a frame that was tampered with, replayed, reordered or cut short
ends the session before anything reads it."""

from __future__ import annotations

import asyncio
import re
import socket
import warnings

import pytest
from noise.connection import Keypair, NoiseConnection

from perun import errors
from perun.chain.compile import ROOT
from perun.core.eip712 import address_of
from perun.core.onion import compressed_public_key
from perun.wire import messages as m
from perun.wire import noise
from perun.wire.limits import Limits
from perun.wire.transport import LENGTH, PROLOGUE, Connection, handshake, read_frame

DIALER_KEY, LISTENER_KEY = (1).to_bytes(32, "big"), (2).to_bytes(32, "big")
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
VECTOR_KEYS = {"dialer static": 0x31, "dialer ephemeral": 0x32, "listener static": 0x41, "listener ephemeral": 0x42}
CID = bytes(range(32))


def fixed(name: str):
    return noise.private_key(bytes([VECTOR_KEYS[name]]) * 32)


def theirs(initiator: bool, static: bytes, ephemeral: bytes) -> NoiseConnection:
    peer = NoiseConnection.from_name(noise.PROTOCOL_NAME)
    peer.set_as_initiator() if initiator else peer.set_as_responder()
    peer.set_keypair_from_private_bytes(Keypair.STATIC, static)
    peer.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
    peer.set_prologue(PROLOGUE)
    with warnings.catch_warnings():  # "OK for testing": fixed keys are what the comparison needs
        warnings.simplefilter("ignore")
        peer.start_handshake()
    return peer


@pytest.mark.parametrize("we_initiate", [True, False], ids=["we dial", "we listen"])
def test_the_glue_agrees_with_noiseprotocol_in_both_roles_and_across_rekeys(we_initiate):
    keys = [bytes([b]) * 32 for b in (1, 2, 3, 4)]
    other = theirs(not we_initiate, keys[2], keys[3])
    ours = noise.Handshake(we_initiate, PROLOGUE, noise.private_key(keys[0]), noise.private_key(keys[1]))
    payloads = [b"", b"listener's payload", b"dialer's payload"]
    for step, payload in enumerate(payloads):
        if (step % 2 == 0) == we_initiate:
            assert other.read_message(ours.write_message(lambda h, p=payload: p)) == payload
        else:
            assert ours.read_message(bytes(other.write_message(payload)))[1] == payload
    assert ours.finished and other.handshake_finished
    assert ours.h == other.get_handshake_hash()
    send, receive = ours.split()
    for i in range(2 * noise.REKEY_AFTER + 5):
        text = b"message %d" % i
        assert other.decrypt(send.encrypt(text)) == text
        assert receive.decrypt(bytes(other.encrypt(text))) == text
        if (i + 1) % noise.REKEY_AFTER == 0:  # noiseprotocol rekeys when told; we at every 1000th
            other.rekey_inbound_cipher()
            other.rekey_outbound_cipher()


def test_rekey_replaces_the_key_after_every_thousandth_message():
    a, b = noise.CipherState(bytes(32)), noise.CipherState(bytes(32))
    for _ in range(noise.REKEY_AFTER - 1):
        b.decrypt(a.encrypt(b"x"))
    last_before = a.encrypt(b"x")  # message 999, then the rekey
    b.decrypt(last_before)
    stale = noise.CipherState(bytes(32))
    stale.n = noise.REKEY_AFTER
    after = a.encrypt(b"y")
    with pytest.raises(errors.FrameRejected):
        stale.decrypt(after)  # the old key at nonce 1000 does not open it
    assert b.decrypt(after) == b"y" and a.n == b.n == noise.REKEY_AFTER + 1


async def pair(limits: Limits = Limits(), vector: bool = False) -> tuple[Connection, Connection, list[bytes]]:
    """A dialer's and a listener's connection over a socket pair, and what each wrote, in order."""
    a, b = socket.socketpair()
    dialer_r, dialer_w = await asyncio.open_connection(sock=a)
    listener_r, listener_w = await asyncio.open_connection(sock=b)
    written: list[bytes] = []
    for writer in (dialer_w, listener_w):
        writer.write = lambda data, write=writer.write: (written.append(bytes(data)), write(data))[1]
    keys = {"static": None, "ephemeral": None}
    dialer = handshake(dialer_r, dialer_w, DIALER_KEY, 31337, CONTRACT, expected_peer=address_of(LISTENER_KEY),
                       limits=limits, **({"static": fixed("dialer static"), "ephemeral": fixed("dialer ephemeral")}
                                         if vector else keys))
    listener = handshake(listener_r, listener_w, LISTENER_KEY, 31337, CONTRACT, limits=limits,
                         **({"static": fixed("listener static"), "ephemeral": fixed("listener ephemeral")}
                            if vector else keys))
    d, lst = await asyncio.gather(dialer, listener)
    return d, lst, written


def doc_vector() -> dict[str, bytes]:
    """The handshake vector of docs/protocol.md §9: name -> bytes (hex wrapped over lines)."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    block = doc.split("#### Test vector", 1)[1].split("```", 2)[1]
    values: dict[str, bytes] = {}
    name = None
    for line in block.splitlines():
        match = re.match(r"^(\S.*?)\s{2,}0x([0-9a-fA-F]+)$", line)
        if match:
            name = match.group(1)
            values[name] = bytes.fromhex(match.group(2))
        elif name and re.fullmatch(r"\s+[0-9a-f]+", line):
            values[name] += bytes.fromhex(line.strip())
    return values


def test_the_handshake_reproduces_the_vector_of_section_9():
    vector = doc_vector()

    async def scenario():
        d, lst, written = await pair(vector=True)
        assert d.peer == address_of(LISTENER_KEY) and lst.peer == address_of(DIALER_KEY)
        # Each end learns the other's public key from its handshake signature (an onion's hop key).
        assert d.public_key == compressed_public_key(LISTENER_KEY)
        assert lst.public_key == compressed_public_key(DIALER_KEY)
        d.send(m.AcceptChannel(CID))
        assert await lst.read() == m.AcceptChannel(CID)
        return d, written

    d, written = asyncio.run(scenario())
    for name, key in VECTOR_KEYS.items():
        assert vector[f"{name} key"] == bytes([key]) * 32
    assert vector["dialer"] == bytes.fromhex(address_of(DIALER_KEY)[2:])
    assert vector["listener"] == bytes.fromhex(address_of(LISTENER_KEY)[2:])
    assert written == [vector["message 1"], vector["message 2"], vector["message 3"], vector["first frame"]]
    assert d.handshake_hash == vector["handshake hash"]


@pytest.mark.parametrize("fault", ["bit flipped", "replayed", "reordered", "cut short", "dropped"])
def test_a_frame_that_was_tampered_with_is_rejected(fault):
    async def scenario():
        d, lst, _ = await pair()
        frames = []
        for i in range(3):
            d.send(m.Reestablish(CID, i, i))
        await d.drain()
        for _ in range(3):
            frames.append(await read_frame(lst.reader))  # the ciphertexts as they came
        receive = lst._receive
        first, second, third = frames
        match fault:
            case "bit flipped":
                tampered = bytearray(first)
                tampered[5] ^= 0x10
                good, bad = [], bytes(tampered)
            case "replayed":
                good, bad = [first], first
            case "reordered":  # the second before the first
                good, bad = [], second
            case "cut short":
                good, bad = [], first[:-1]
            case "dropped":
                good, bad = [first], third
        for ciphertext in good:
            receive.decrypt(ciphertext)
        with pytest.raises(errors.FrameRejected, match="does not decrypt"):
            receive.decrypt(bad)
    asyncio.run(scenario())


def test_an_oversized_or_unfinished_frame_ends_the_connection():
    async def scenario():
        d, lst, _ = await pair()
        d.writer.write(LENGTH.pack(m.MAX_FRAME + noise.TAGLEN + 1))
        with pytest.raises(errors.MessageTooLarge):
            await lst.read()
        d2, l2, _ = await pair()
        d2.writer.write(LENGTH.pack(100) + bytes(10))
        d2.close()
        with pytest.raises(errors.PeerUnavailable):
            await l2.read()
    asyncio.run(scenario())


def test_a_peer_over_the_frame_rate_is_cut_off():
    async def scenario():
        d, lst, _ = await pair(Limits(frames_per_second=10))
        for i in range(11):
            d.send(m.Reestablish(CID, i, i))
        for i in range(10):  # the burst of one second
            assert (await lst.read()).current == i
        with pytest.raises(errors.RateLimited, match="more than 10 frames per second"):
            await lst.read()
    asyncio.run(scenario())


def test_the_handshake_times_out():
    async def scenario():
        a, b = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=b)
        _, silent = await asyncio.open_connection(sock=a)
        with pytest.raises(errors.HandshakeFailed, match="within 0.2 s"):
            await handshake(reader, writer, LISTENER_KEY, 31337, CONTRACT, limits=Limits(handshake_timeout=0.2))
        silent.close()
    asyncio.run(scenario())
