"""Hostile connections (docs/protocol.md §9, "Limits"): each limit is tested while Alice keeps
paying Bob on an open channel. The attacker connects from 127.0.0.2 (loopback, another
address) so that Bob's per-address limit tells it from Alice. Every attack is bounded in count
and time; each test checks that the attacker was cut off, that Bob logged it once, and that
every honest payment went through with the balances it should give."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.core.channel import Params
from perun.core.machine import Stage
from perun.wire import messages as m
from perun.wire.limits import Limits
from perun.wire.transport import LENGTH, handshake
from tests.node.conftest import DELTA, run

ATTACKER = "127.0.0.2"


class Payer:
    """Alice pays Bob 1 wei at a time until stopped; every payment must succeed."""

    def __init__(self, alice, bob, cid) -> None:
        self.alice, self.bob, self.cid = alice, bob, cid
        self.paid = 0
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self._start = bob.channel(cid).current.balance_bob

    async def _loop(self) -> None:
        while not self._stop.is_set():
            await self.alice.pay(self.cid, 1)
            self.paid += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Payer]:
        self._task = asyncio.ensure_future(self._loop())
        try:
            yield self
        finally:
            self._stop.set()
            await self._task  # raises if a payment failed
        assert self.bob.channel(self.cid).current.balance_bob == self._start + self.paid
        assert self.alice.channel(self.cid).current == self.bob.channel(self.cid).current

    async def progress(self, payments: int) -> None:
        """Waits until `payments` more payments went through (during the attack)."""
        target = self.paid + payments
        while self.paid < target:
            if self._task.done():
                await self._task
            await asyncio.sleep(0.01)


async def connect_from(port: int, address: str = ATTACKER) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 20) -> None:
    """Returns once the other end closed or reset the connection."""
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(4096), timeout):
            pass


def warnings_about(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


def test_a_flood_of_half_open_connections(net, caplog):
    limits = Limits(handshake_timeout=1.0, connections_per_address=8, connections=64)

    async def scenario():
        async with net.pair() as (alice, bob, cid):
            bob.runtime.limits = limits  # Bob's limits from now on
            async with Payer(alice, bob, cid).running() as payer:
                flood = [await connect_from(bob.port) for _ in range(40)]  # they send nothing
                await payer.progress(20)
                await asyncio.gather(*(closed_by_peer(reader) for reader, _ in flood))
                await payer.progress(5)
                for _, writer in flood:
                    writer.close()
            assert len(warnings_about(caplog, f"refusing connections from {ATTACKER}")) == 1
            assert len(warnings_about(caplog, "did not complete within 1 s")) == limits.connections_per_address
    run(scenario())


def test_connections_in_all_are_limited_and_freed(net, caplog):
    limits = Limits(handshake_timeout=1.0, connections_per_address=4, connections=8)
    attackers = [f"127.0.0.{i}" for i in range(2, 6)]  # 4 addresses x 4 connections: twice the total

    async def scenario():
        async with net.pair() as (alice, bob, cid):
            bob.runtime.limits = limits
            async with Payer(alice, bob, cid).running() as payer:
                flood = [await connect_from(bob.port, a) for a in attackers for _ in range(4)]
                await payer.progress(20)
                await asyncio.gather(*(closed_by_peer(reader) for reader, _ in flood))
                for _, writer in flood:
                    writer.close()
                # The slots are free again: a new peer connects and pays.
                async with net.running("carol") as (carol,):
                    await carol.connect(bob.address, "127.0.0.1", bob.port)
                    cid2 = await carol.open(bob.address, ETHER, 0, DELTA)
                    await carol.pay(cid2, 7)
                    assert bob.channel(cid2).current.balance_bob == 7
            refused = warnings_about(caplog, "inbound connections are open (the limit)")
            assert len(refused) == len({line.split()[4] for line in refused}) >= 1  # once per address
            # Alice's connection is one of the eight.
            assert len(warnings_about(caplog, "did not complete within 1 s")) == limits.connections - 1
    run(scenario())


def test_a_slowloris_handshake_is_cut_at_the_timeout(net, caplog):
    limits = Limits(handshake_timeout=1.0)

    async def scenario():
        async with net.pair() as (alice, bob, cid):
            bob.runtime.limits = limits
            async with Payer(alice, bob, cid).running() as payer:
                reader, writer = await connect_from(bob.port)
                first = LENGTH.pack(32) + bytes(range(32))  # message 1, a byte at a time
                sent = 0
                with contextlib.suppress(ConnectionError):
                    for byte in first:
                        writer.write(bytes([byte]))
                        await writer.drain()
                        sent += 1
                        await asyncio.sleep(0.1)  # the attack is to be slow: 3.4 s for 34 bytes
                        if reader.at_eof():
                            break
                await closed_by_peer(reader)
                assert sent < len(first)  # Bob hung up before the handshake's first message was in
                await payer.progress(5)
                writer.close()
            assert len(warnings_about(caplog, f"from {ATTACKER}: the handshake did not complete within 1 s")) == 1
    run(scenario())


def test_a_peer_sending_frames_as_fast_as_it_can_is_cut_off(net, caplog):
    mallory = net.account("mallory")
    limits = Limits(frames_per_second=1000)

    async def scenario():
        async with net.pair() as (alice, bob, cid):
            bob.runtime.limits = limits
            reader, writer = await connect_from(bob.port)
            conn = await handshake(reader, writer, mallory.key, net.chain.chain_id, net.contract.address,
                                   expected_peer=bob.address)
            async with Payer(alice, bob, cid).running() as payer:
                flood = 50_000
                with contextlib.suppress(errors.PeerUnavailable):
                    for i in range(flood):
                        conn.send(m.Reestablish(cid, i, i))  # not Mallory's channel: refused each time
                        if i % 100 == 0:
                            await conn.drain()
                answers = []
                with contextlib.suppress(errors.PeerUnavailable):
                    while True:  # Bob's refusals, then why he hangs up, then the end
                        answers.append(await asyncio.wait_for(conn.read(), 20))
                conn.close()
                await payer.progress(5)
            assert m.ErrorCode(answers[-1].code) is m.ErrorCode.RATE_LIMITED
            assert "more than 1000 frames per second" in answers[-1].reason
            assert len(answers) - 1 < flood  # Bob stopped reading long before the end
            assert all(m.ErrorCode(a.code) is m.ErrorCode.UNKNOWN_CHANNEL for a in answers[:-1])
            assert mallory.address not in bob.peers
            assert len(warnings_about(caplog, f"disconnected {mallory.address}: {mallory.address} sent more than "
                                              "1000 frames per second")) == 1
            assert bob.channel(cid).peer == alice.address  # Mallory's frames touched nothing
    run(scenario())


def test_pending_proposals_per_peer_are_limited(net):
    mallory = net.account("mallory")

    async def scenario():
        async with net.pair() as (alice, bob, cid):
            bob.runtime.limits = Limits(pending_proposals=2)
            reader, writer = await connect_from(bob.port)
            conn = await handshake(reader, writer, mallory.key, net.chain.chain_id, net.contract.address,
                                   expected_peer=bob.address)
            async with Payer(alice, bob, cid).running():
                answers = []
                for nonce in (1, 2, 3):
                    conn.send(m.ProposeChannel.of(Params(mallory.address, bob.address, ETHER, 0, DELTA, nonce)))
                    await conn.drain()
                    answers.append(await asyncio.wait_for(conn.read(), 20))
            assert [type(a) for a in answers] == [m.AcceptChannel, m.AcceptChannel, m.Error]
            assert m.ErrorCode(answers[2].code) is m.ErrorCode.CHANNEL_REFUSED
            assert "--max-pending-proposals" in answers[2].reason
            pending = [c for c in bob.channels() if c.peer == mallory.address]
            assert len(pending) == 2 and all(c.stage == Stage.ACCEPTED.value for c in pending)
            # The connection stays: a proposal already accepted is answered again.
            conn.send(m.ProposeChannel.of(Params(mallory.address, bob.address, ETHER, 0, DELTA, 1)))
            assert isinstance(await asyncio.wait_for(conn.read(), 20), m.AcceptChannel)
            conn.close()
    run(scenario())


class Tamperer:
    """A TCP proxy between a dialer and a listener. Once armed, it flips one bit of the next
    frame the dialer sends, then takes no new connection (so the dialer cannot redial through
    it)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.flipped = asyncio.Event()
        self.listener_closed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> Tamperer:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def dialer_to_listener() -> None:
            while header := await reader.readexactly(2):
                body = bytearray(await reader.readexactly(LENGTH.unpack(header)[0]))
                if self.armed and not self.flipped.is_set():
                    body[len(body) // 2] ^= 0x01
                    self.flipped.set()
                    self._server.close()
                up_writer.write(header + bytes(body))
                await up_writer.drain()

        async def listener_to_dialer() -> None:
            try:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            finally:  # a close, or a reset (the listener closed with the dialer's frames unread)
                self.listener_closed.set()
                writer.close()

        tasks = [asyncio.ensure_future(dialer_to_listener()), asyncio.ensure_future(listener_to_dialer())]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        up_writer.close()


def test_a_man_in_the_middle_flipping_one_bit_closes_the_connection_and_changes_nothing(net, caplog):
    async def scenario():
        async with net.running("alice", "bob") as (alice, bob):
            async with Tamperer(bob.port) as tamperer:
                await alice.connect(bob.address, "127.0.0.1", tamperer.port)  # through the man in the middle
                cid = await alice.open(bob.address, 10 * ETHER, 5 * ETHER, DELTA)
                await bob.wait_for(cid, lambda r: r.stage is Stage.OPEN)
                await alice.pay(cid, 100)
                bob_before, alice_before = bob.channel(cid), alice.channel(cid)
                tamperer.armed = True
                paying = asyncio.ensure_future(alice.pay(cid, 5))  # its Update is the frame he flips
                await asyncio.wait_for(tamperer.listener_closed.wait(), 30)  # Bob hung up
                assert tamperer.flipped.is_set()
                with pytest.raises(errors.PeerTimeout, match="stays pending"):
                    await paying
                assert bob.channel(cid) == bob_before  # Bob read nothing of the tampered frame
                assert alice.channel(cid).current == alice_before.current  # and countersigned nothing
                assert len(warnings_about(caplog, f"disconnected {alice.address}: message ")) == 1
                assert warnings_about(caplog, "does not decrypt")
            # Without the man in the middle, the channel goes on: the payment that timed out is
            # resent and countersigned (as its error said), then the next one.
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            await alice.pay(cid, 7)
            assert bob.channel(cid).current == alice.channel(cid).current
            assert bob.channel(cid).current.balance_bob == bob_before.current.balance_bob + 5 + 7
    run(scenario())
