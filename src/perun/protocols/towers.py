"""A client's watchtowers (docs/protocol.md §12), as each protocol that hands them states uses them.

The protocol says what an item is (a payment channel, a multistate channel's own state, one of
its nanocontracts, the call a tower may make on one) and how to hand one over; `Towers` keeps
the rest: which towers, the items to hand over in a later turn of the event loop (never on an
update's path; of a burst, one hand-over of the latest), what each tower acknowledged of each
item and what was sent to it on its current connection, and the callers waiting for the
acknowledgements. All in memory: after a restart, a tower's answer to the latest item (its
acknowledgement, or a STALE_VERSION refusal naming the version it holds) tells it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

from perun import errors
from perun.runtime import Runtime
from perun.wire.transport import Connection

K = TypeVar("K", bound=Hashable)  # what the kind hands over by: a channel id
Item = TypeVar("Item", bound=Hashable)  # what a tower acknowledges: a channel's state, a nanocontract's, a call
HandOver = Callable[[Connection, Iterable[K]], None]


class Towers(Generic[K, Item]):
    """The towers of one protocol's client side. `hand_over(conn, keys)` sends the tower of
    `conn` what it lacks of the protocol's items named by `keys` (channel ids, say), each through
    `offer`; `keys` is every key the protocol holds when a tower (re)connects."""

    def __init__(self, ctx: Runtime, hand_over: HandOver[K]) -> None:
        self.ctx = ctx
        self.addresses: tuple[str, ...] = ()
        self.reward = 0  # offered to each tower, capped by what the item gives this party
        self._hand_over = hand_over
        self._acked: dict[Item, dict[str, int]] = {}  # item -> tower -> version it holds
        self._sent: dict[str, dict[Item, int]] = {}  # tower -> item -> version sent on this connection
        self._due: set[K] = set()  # keys to hand over in the next turn of the event loop
        self._waiters: list[tuple[dict[Item, int], asyncio.Future]] = []

    def watch(self, towers: Iterable[str], reward: int) -> None:
        self.addresses = tuple(towers)
        self.reward = reward

    def __bool__(self) -> bool:
        return bool(self.addresses)

    def __contains__(self, peer: object) -> bool:
        return peer in self.addresses

    # ------------------------------------------------------------------ handing over

    def later(self, key: K) -> None:
        """After the commit of something new the peer signed under `key`: hand it to the
        towers in a later turn of the event loop, off the update's path."""
        if not self.addresses:
            return
        if not self._due:
            asyncio.get_running_loop().call_soon(self._flush)
        self._due.add(key)

    def _flush(self) -> None:
        keys, self._due = self._due, set()
        if self.ctx.killed:
            return
        for tower in self.addresses:
            conn = self.ctx.peers.get(tower)
            if conn is not None:  # else handed over when it connects (`connected`)
                self._hand_over(conn, keys)

    def connected(self, conn: Connection, keys: Iterable[K]) -> bool:
        """A peer connected: if it is a tower, hands it what it has not acknowledged of the items
        under `keys` (what went on a lost connection may not have arrived). True if it is one."""
        if conn.peer not in self.addresses:
            return False
        self._sent.pop(conn.peer, None)
        self._hand_over(conn, keys)
        return True

    def offer(self, tower: str, item: Item, version: int) -> bool:
        """Whether `tower` lacks `item` at `version` (it acknowledged no such version, and none
        went to it on this connection); if so, it counts as sent from now on."""
        sent = self._sent.setdefault(tower, {})
        if max(self.acked(tower, item), sent.get(item, -1)) >= version:
            return False
        sent[item] = version
        return True

    # ------------------------------------------------------------------ acknowledgements

    def acked(self, tower: str, item: Item) -> int:
        """The version of `item` that `tower` acknowledged (-1: none, or none since a restart)."""
        return self._acked.get(item, {}).get(tower, -1)

    def shown(self, item: Item) -> dict[str, int | None]:
        """For `describe`: each tower's acknowledged version of `item` (None: none yet)."""
        acked = self._acked.get(item, {})
        return {tower: acked.get(tower) for tower in self.addresses}

    def holds(self, tower: str, item: Item, version: int) -> None:
        """`tower` said it holds `item` at `version` (an acknowledgement, or a STALE_VERSION
        refusal's `signed`)."""
        if tower not in self.addresses:
            return
        acked = self._acked.setdefault(item, {})
        acked[tower] = max(acked.get(tower, -1), version)
        for waiter in list(self._waiters):
            if self._all_hold(waiter[0]):
                self._waiters.remove(waiter)
                if not waiter[1].done():
                    waiter[1].set_result(None)

    def forget(self, items: Iterable[Item]) -> None:
        """Drops what is kept of `items` (a nanocontract no longer live, say)."""
        for item in items:
            self._acked.pop(item, None)
            for sent in self._sent.values():
                sent.pop(item, None)

    def _all_hold(self, wanted: Mapping[Item, int]) -> bool:
        return bool(self.addresses) and all(self.acked(t, item) >= version for item, version in wanted.items()
                                            for t in self.addresses)

    async def hold(self, wanted: Mapping[Item, int], timeout: float, what: str) -> None:
        """Waits until every tower acknowledged each item of `wanted` at its version or above;
        PeerTimeout after `timeout` seconds (`what` names them in its message)."""
        if not self.addresses:
            raise errors.ConfigError("this node hands its states to no watchtower (Node(towers=...))")
        wanted = dict(wanted)
        if self._all_hold(wanted):
            return
        waiter = (wanted, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter[1], timeout)
        except TimeoutError as exc:
            raise errors.PeerTimeout(f"the towers did not acknowledge {what} within {timeout} s") from exc
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
