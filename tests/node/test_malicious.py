"""A malicious peer, Mallory, sending Bob's node raw messages over a valid session: every bad
message gets its own error code, changes nothing, and Bob keeps serving Mallory and his honest
channel with Alice. And peers that fail the handshake."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import sign, sign_state
from perun.core.machine import Stage
from perun.wire import messages as m
from perun.wire import noise
from perun.wire.transport import DIALER, LENGTH, MAX_CIPHERTEXT, PROLOGUE, Connection, Hello, handshake, read_frame
from tests.node.conftest import DELTA, run

E = m.ErrorCode


async def dial(net, node, key) -> Connection:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    return await handshake(reader, writer, key, net.chain.chain_id, net.contract.address, expected_peer=node.address)


def raw(type_: int, body: bytes, version: int = m.PROTOCOL_VERSION) -> bytes:
    return bytes((version, type_)) + body


async def answer(conn: Connection) -> m.Message:
    await conn.drain()
    return await asyncio.wait_for(conn.read(), 20)  # generous: CI machines are shared


def test_every_bad_message_is_refused_with_its_code_and_changes_nothing(net):
    mallory = net.account("mallory")

    async def scenario():
        async with net.pair() as (alice, bob, honest):
            conn = await dial(net, bob, mallory.key)
            # Mallory opens a channel with Bob as its Alice.
            params = Params(mallory.address, bob.address, 2 * ETHER, ETHER, DELTA, 1)
            conn.send(m.ProposeChannel.of(params))
            accepted = await answer(conn)
            cid = net.contract.channel_id(params)
            assert accepted == m.AcceptChannel(cid)
            net.contract.create(mallory, params)
            await bob.wait_for(cid, lambda r: r.stage is Stage.OPEN)

            def update(version, alice_balance, bob_balance, prev=None, key=mallory.key, channel=cid, final=False):
                state = PaymentState(channel, version, alice_balance, bob_balance, final)
                sig = sign_state(net.contract.domain, state, key)
                return m.Update(channel, version, version - 1 if prev is None else prev, alice_balance, bob_balance,
                                final, sig)

            bad = [
                (raw(99, b""), E.UNKNOWN_TYPE),
                (raw(1, bytes(20)), E.UNKNOWN_TYPE),  # version 2's plaintext Hello
                (raw(m.AcceptChannel.TYPE, cid, version=2), E.UNSUPPORTED_VERSION),
                (raw(m.Update.TYPE, update(1, ETHER, 2 * ETHER).encode()[2:-3]), E.MALFORMED),  # truncated
                (b"\x03", E.MALFORMED),  # no type
                (update(1, ETHER, 2 * ETHER, channel=honest).encode(), E.UNKNOWN_CHANNEL),
                (update(1, ETHER, 2 * ETHER, channel=os.urandom(32)).encode(), E.UNKNOWN_CHANNEL),
                (update(1, ETHER, 2 * ETHER, key=net.account("alice").key).encode(), E.INVALID_SIGNATURE),
                (update(1, ETHER, ETHER).encode(), E.BALANCES_NOT_CONSERVED),
                (m.Update(cid, 1, 0, 2**200, 0, False, bytes(65)).encode(), E.AMOUNT_OUT_OF_RANGE),
                (update(1, 3 * ETHER, 0).encode(), E.BALANCE_DECREASED),
                (update(1, ETHER, 2 * ETHER, prev=5).encode(), E.STALE_VERSION),
                (m.UpdateAck(cid, 1, bytes(65)).encode(), E.STALE_VERSION),
                (m.StateSync(cid, 1, ETHER, 2 * ETHER, False, bytes(65), bytes(65)).encode(), E.INVALID_SIGNATURE),
                (m.Reestablish(honest, 0, 0).encode(), E.UNKNOWN_CHANNEL),
                (m.ProposeChannel.of(Params(mallory.address, alice.address, 1, 1, DELTA, 2)).encode(), E.INVALID_PARAMS),
            ]
            for message, code in bad:
                conn.send_plaintext(message)
                reply = await answer(conn)
                assert isinstance(reply, m.Error), reply
                assert E(reply.code) is code, (reply, code)
            assert bob.channel(cid).current.version == 0 and bob.channel(cid).signed == 0

            # A good update is countersigned; the same one again is a replay.
            good = update(1, ETHER, 2 * ETHER)
            conn.send(good)
            ack = await answer(conn)
            assert isinstance(ack, m.UpdateAck) and ack.version == 1
            conn.send(good)
            replay = await answer(conn)
            assert (E(replay.code), replay.version, replay.signed) == (E.STALE_VERSION, 1, 1)
            assert bob.channel(cid).current.balance_bob == 2 * ETHER

            # Bob still serves his honest channel.
            await alice.pay(honest, 5)
            assert bob.channel(honest).my_balance == 5 * ETHER + 5

            # An oversized frame ends the connection, after an error.
            conn.writer.write(LENGTH.pack(MAX_CIPHERTEXT + 1) + bytes(16))
            reply = await answer(conn)
            assert E(reply.code) is E.TOO_LARGE
            with pytest.raises(errors.PeerUnavailable):
                await answer(conn)
            await alice.pay(honest, 5)
    run(scenario())


def test_a_peer_that_cannot_prove_its_key_is_refused(net):
    mallory, alice = net.account("mallory"), net.account("alice")

    async def scenario():
        async with net.running("bob") as (bob,):
            # Mallory claims to be Alice, with her own signature on the handshake hash.
            reader, writer = await asyncio.open_connection("127.0.0.1", bob.port)
            state = noise.Handshake(True, PROLOGUE, noise.private_key())
            writer.write(LENGTH.pack(32) + state.write_message())
            state.read_message(await read_frame(reader))

            def forged(h: bytes) -> bytes:
                claim = Hello(alice.address, net.chain.chain_id, net.contract.address, b"")
                return Hello(alice.address, claim.chain_id, claim.contract,
                             sign(claim.digest(DIALER, h), mallory.key)).encode()
            third = state.write_message(forged)
            writer.write(LENGTH.pack(len(third)) + third)
            with pytest.raises(errors.PeerUnavailable):
                await asyncio.wait_for(read_frame(reader), 5)  # Bob hangs up
            assert alice.address not in bob.peers
            writer.close()

            with pytest.raises(errors.HandshakeFailed, match="chain"):
                reader, writer = await asyncio.open_connection("127.0.0.1", bob.port)
                await handshake(reader, writer, mallory.key, 1, net.contract.address, expected_peer=bob.address)
            writer.close()
            with pytest.raises(errors.HandshakeFailed, match="answered"):
                reader, writer = await asyncio.open_connection("127.0.0.1", bob.port)
                await handshake(reader, writer, mallory.key, net.chain.chain_id, net.contract.address,
                                expected_peer=alice.address)
            writer.close()
            # A version 2 node's plaintext Hello is not a Noise message.
            reader, writer = await asyncio.open_connection("127.0.0.1", bob.port)
            writer.write(struct.pack(">IBB", 80, 2, 1) + bytes(78))
            with pytest.raises(errors.PeerUnavailable):
                await asyncio.wait_for(read_frame(reader), 5)
            writer.close()
            assert not bob.peers
    run(scenario())
