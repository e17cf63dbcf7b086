"""Which virtual channels are live (a half of this party's not settled yet), and Ingrid's totals
over hers, kept as records are put in place: so that her policy check on an opening costs the
same with 1,000 live channels as with none.

Whether γ is settled depends on the records of its halves' ledger channels (absorbed,
terminated, closed), which change without γ's own. So the index is told of every record put in
place, γ's (`put`) and its ledger channels' (`ledger_changed`, through the multistate protocol's
hooks), and looks again, lazily at the next question, only at the live γ with a half in a
ledger channel that changed: at most MAX_NANOCONTRACTS per ledger channel. Settled is final
(absorbed or terminated halves never come back), so a γ found settled leaves the index for good,
until its record is put again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from perun.core.virtual import Position, VirtualRecord


class LiveSet:
    """The live γ of `records()` (by id), by `settled(rec)`; and Ingrid's: how many, and how much
    cash they block (cashAlice + cashBob each)."""

    def __init__(self, records: Mapping[bytes, VirtualRecord], settled: Callable[[VirtualRecord], bool]) -> None:
        self._records = records
        self._settled = settled
        self._live: set[bytes] = set()
        self._by_ledger: dict[bytes, set[bytes]] = {}  # ledger channel -> the live γ with a half in it
        self._ledgers: dict[bytes, frozenset[bytes]] = {}  # live γ -> its halves' ledger channels, as indexed
        self._recheck: set[bytes] = set()  # live γ whose record was put since the last look
        self._changed: set[bytes] = set()  # ledger channels whose record was put since the last look
        self._hub: dict[bytes, int] = {}  # Ingrid's live γ -> the cash it blocks
        self._hub_blocked = 0

    def put(self, rec: VirtualRecord) -> None:
        """γ's record was put in place (added, or changed: a half, a state seen)."""
        gid = rec.id
        self._drop(gid)
        self._live.add(gid)
        self._ledgers[gid] = ledgers = frozenset(h.ledger for h in rec.halves)
        for ledger in ledgers:
            self._by_ledger.setdefault(ledger, set()).add(gid)
        if rec.position is Position.INGRID:
            self._hub[gid] = blocked = rec.data.cash_alice + rec.data.cash_bob
            self._hub_blocked += blocked
        self._recheck.add(gid)

    def ledger_changed(self, ledger: bytes) -> None:
        """A ledger channel's record was put in place: its γ are looked at again."""
        self._changed.add(ledger)

    def live(self) -> list[VirtualRecord]:
        """The records with a half not settled yet: only these can have anything left to do."""
        self._look()
        return [self._records[g] for g in self._live]

    def hub_load(self) -> tuple[int, int]:
        """Ingrid's live γ: how many, and the cash they block."""
        self._look()
        return len(self._hub), self._hub_blocked

    def _look(self) -> None:
        recheck, self._recheck = self._recheck, set()
        for ledger in self._changed:
            recheck.update(self._by_ledger.get(ledger, ()))
        self._changed = set()
        for gid in recheck:
            if gid in self._live and self._settled(self._records[gid]):
                self._drop(gid)

    def _drop(self, gid: bytes) -> None:
        if gid not in self._live:
            return
        self._live.discard(gid)
        for ledger in self._ledgers.pop(gid):
            gids = self._by_ledger[ledger]
            gids.discard(gid)
            if not gids:
                del self._by_ledger[ledger]
        self._hub_blocked -= self._hub.pop(gid, 0)
