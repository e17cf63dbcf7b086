"""Which channels a poll looks at: an index of a protocol's channels by the chain time at which
each may next have a duty, so that a poll with nothing due does no work per channel
(docs/protocol.md §9, "The watcher").

The protocol says when a channel's duty may next be due (`next_due(cid, now)`: the earliest chain
time at or after `now` at which its record, unchanged, may have one; None if never; the kinds'
pure rules compute it, e.g. perun.core.machine.next_due) and tells the
index of every record it puts in place (`changed`, from `Protocol.put`: the runtime's save and the
follower's unconfirmed copies both go through it). The index asks again lazily, at the next poll,
once per changed channel however often it changed, so nothing is added to the update path but a
set insertion. A channel found due is asked about again at every poll until it is not (its duty
was done, which changed its record, or its time has passed), as a full scan would find it.

`next_due` may be early, never late: an early answer costs a look at the channel, a late one
misses a duty. Its answers hold for chain times from the `now` they were given for on: when the
chain's time goes back (a reorganisation onto blocks with earlier timestamps, a devnet reverted
to a snapshot), every channel is asked again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Any


class DueIndex:
    """The channels of `records()` (a protocol's records by channel id) by the chain time of
    their next duty, as `next_due(cid, now)` says."""

    def __init__(self, records: Callable[[], Mapping[bytes, Any]], next_due: Callable[[bytes, int], int | None]) -> None:
        self._records = records
        self._next_due = next_due
        self._key: dict[bytes, int] = {}  # channel -> the chain time from which it may be due
        self._heap: list[tuple[int, bytes]] = []  # (time, channel); entries whose time is not _key's are stale
        self._changed: set[bytes] = set()
        self._now: int | None = None  # the chain time of the last look; None before the first (all are asked)

    def changed(self, cid: bytes) -> None:
        """Channel `cid`'s record changed (or was added): its next duty is asked again at the next look."""
        self._changed.add(cid)

    def due(self, now: int) -> list[bytes]:
        """The channels that may have a duty at chain time `now`, by the time they became due."""
        if self._now is None or now < self._now:
            self._changed = set(self._records())
            self._key, self._heap = {}, []
        self._now = now
        changed, self._changed = self._changed, set()
        for cid in changed:
            key = self._next_due(cid, now) if cid in self._records() else None
            if key is None:
                self._key.pop(cid, None)
            elif self._key.get(cid) != key:
                self._key[cid] = key
                heapq.heappush(self._heap, (key, cid))
        found = []
        while self._heap and self._heap[0][0] <= now:
            key, cid = heapq.heappop(self._heap)
            if self._key.get(cid) == key:
                del self._key[cid]
                found.append(cid)
        self._changed.update(found)  # asked again at the next look: still due, due later, or never
        if len(self._heap) > 2 * len(self._key) + 64:  # mostly stale entries: rebuild
            self._heap = [(key, cid) for cid, key in self._key.items()]
            heapq.heapify(self._heap)
        return found

    def __len__(self) -> int:
        """The channels indexed with a next duty (found due ones are counted again after the next look)."""
        return len(self._key)

