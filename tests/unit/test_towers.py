"""perun.protocols.towers.Towers: what goes to which tower, acknowledgements and waiting for them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from perun import errors
from perun.protocols.towers import Towers

T1, T2 = "0x" + "11" * 20, "0x" + "22" * 20


class FakeConn:
    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.closed = False


def towers_with(conns: dict[str, FakeConn], handed: list) -> Towers:
    ctx = SimpleNamespace(killed=False, peers=SimpleNamespace(get=conns.get))
    towers = Towers(ctx, lambda conn, keys: handed.append((conn.peer, sorted(keys))))  # type: ignore[arg-type]
    towers.watch((T1, T2), 5)
    return towers


def test_an_item_goes_once_per_connection_until_a_newer_version_or_a_reconnection():
    handed: list = []
    towers = towers_with({}, handed)
    assert towers.offer(T1, b"c", 1)
    assert not towers.offer(T1, b"c", 1)  # sent on this connection already
    assert towers.offer(T1, b"c", 2) and towers.offer(T2, b"c", 1)
    towers.holds(T2, b"c", 3)  # an acknowledgement, or a STALE_VERSION's `signed`
    assert not towers.offer(T2, b"c", 3)
    assert towers.connected(FakeConn(T1), [b"c"]) and handed == [(T1, [b"c"])]
    assert towers.offer(T1, b"c", 2)  # what went on the lost connection may not have arrived
    assert not towers.connected(FakeConn("0x" + "33" * 20), [b"c"])  # no tower
    towers.forget([b"c"])
    assert towers.shown(b"c") == {T1: None, T2: None}


def test_a_burst_is_handed_over_once_in_a_later_turn_to_each_connected_tower():
    async def scenario():
        handed: list = []
        towers = towers_with({T1: FakeConn(T1)}, handed)
        for key in (b"a", b"b", b"a"):
            towers.later(key)
        assert handed == []  # never on the update's path
        await asyncio.sleep(0)
        assert handed == [(T1, [b"a", b"b"])]  # T2 is not connected: handed over when it connects
    asyncio.run(scenario())


def test_waiting_for_every_tower_to_hold_every_item():
    async def scenario():
        towers = towers_with({}, [])
        waiting = asyncio.ensure_future(towers.hold({b"c": 2, (b"n", False): 1}, 5, "them"))
        await asyncio.sleep(0)
        towers.holds(T1, b"c", 2)
        towers.holds(T1, (b"n", False), 1)
        towers.holds(T2, b"c", 7)
        await asyncio.sleep(0)
        assert not waiting.done()
        towers.holds(T2, (b"n", False), 1)
        await asyncio.wait_for(waiting, 1)
        assert towers.shown(b"c") == {T1: 2, T2: 7}
        with pytest.raises(errors.PeerTimeout):
            await towers.hold({b"c": 8}, 0.01, "version 8")
        towers.watch((), 0)
        with pytest.raises(errors.ConfigError):
            await towers.hold({b"c": 1}, 1, "version 1")
    asyncio.run(scenario())
