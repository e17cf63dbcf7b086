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


def towers_with(conns: dict[str, FakeConn], handed: list, then=lambda: None) -> Towers:
    """Towers that note each hand-over in `handed`, then call `then`."""
    ctx = SimpleNamespace(killed=False, peers=SimpleNamespace(get=conns.get))

    def hand_over(conn, keys) -> None:
        handed.append((conn.peer, sorted(keys)))
        then()
    towers = Towers(ctx, hand_over)  # type: ignore[arg-type]
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
        flushed = asyncio.get_running_loop().create_future()
        towers = towers_with({T1: FakeConn(T1)}, handed, lambda: flushed.set_result(None))
        for key in (b"a", b"b", b"a"):
            towers.later(key)
        assert handed == []  # never on the update's path
        await asyncio.wait_for(flushed, 1)
        assert handed == [(T1, [b"a", b"b"])]  # T2 is not connected: handed over when it connects
    asyncio.run(scenario())


def test_waiting_for_every_tower_to_hold_every_item():
    async def scenario():
        towers = towers_with({}, [])
        wanted = {b"c": 2, (b"n", False): 1}
        towers.holds(T1, b"c", 2)
        towers.holds(T1, (b"n", False), 1)
        towers.holds(T2, b"c", 7)
        with pytest.raises(errors.PeerTimeout):  # T2 lacks the nanocontract: the set is not complete
            await towers.hold(wanted, 0, "them")
        # The acknowledgement that completes the set wakes a waiter: the hold starts first (tasks
        # run in the order they were scheduled), then the acknowledgement comes.
        waiting = asyncio.ensure_future(towers.hold(wanted, 5, "them"))
        asyncio.get_running_loop().call_soon(towers.holds, T2, (b"n", False), 1)
        await asyncio.wait_for(waiting, 1)
        assert towers.shown(b"c") == {T1: 2, T2: 7}
        with pytest.raises(errors.PeerTimeout):
            await towers.hold({b"c": 8}, 0.01, "version 8")
        towers.watch((), 0)
        with pytest.raises(errors.ConfigError):
            await towers.hold({b"c": 1}, 1, "version 1")
    asyncio.run(scenario())
