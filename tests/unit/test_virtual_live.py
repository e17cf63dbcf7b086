"""The live set of virtual channels and Ingrid's totals over hers (perun.protocols.virtual.live)
stay what a scan of every record gives, whatever order records and ledger channels change in."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from perun.core.apps import virtualchannel as vc
from perun.core.apps.virtualchannel import SIDE_A, SIDE_B
from perun.core.virtual import Half, Position, VirtualRecord
from perun.protocols.virtual.live import LiveSet
from tests.conftest import examples

ALICE, INGRID, BOB = "0x" + "aa" * 20, "0x" + "11" * 20, "0x" + "bb" * 20
LEDGERS = [bytes([i]) * 32 for i in range(1, 5)]


def record(n: int, position: Position, ledger_a: bytes, ledger_b: bytes, cash_alice: int, cash_bob: int) -> VirtualRecord:
    v = vc.decode(vc.initial(ALICE, INGRID, BOB, ledger_a, ledger_b, cash_alice, cash_bob, 10**9, 3600, n, SIDE_A,
                             0).data)
    return VirtualRecord(v, position, (Half(SIDE_A, ledger_a, b"\xaa" + n.to_bytes(31, "big")),))


class LiveSetMachine(RuleBasedStateMachine):
    """Records are put, halves added and settled, ledger channels closed; the index is told of
    each put as the protocols tell it (a settled half changes its ledger channel's record)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[bytes, VirtualRecord] = {}
        self.settled_nids: set[bytes] = set()  # halves absorbed or terminated
        self.closed: set[bytes] = set()  # ledger channels closed
        self.index = LiveSet(self.records, self.settled)
        self.n = 0

    def settled(self, rec: VirtualRecord) -> bool:
        return bool(rec.halves) and all(h.nid in self.settled_nids or h.ledger in self.closed for h in rec.halves)

    def put(self, rec: VirtualRecord) -> None:
        self.records[rec.id] = rec
        self.index.put(rec)

    @rule(position=st.sampled_from(list(Position)), a=st.sampled_from(LEDGERS), b=st.sampled_from(LEDGERS),
          cash_alice=st.integers(0, 10**18), cash_bob=st.integers(0, 10**18))
    def open(self, position, a, b, cash_alice, cash_bob):
        self.n += 1
        self.put(record(self.n, position, a, b, cash_alice, cash_bob))

    @rule(data=st.data())
    def second_half(self, data):
        """Ingrid's ν_a signed after her ν_b (here: a half on side B added to any record)."""
        single = [r for r in self.records.values() if len(r.halves) == 1]
        if single:
            rec = data.draw(st.sampled_from(single))
            half = Half(SIDE_B, rec.data.channel_b, b"\xbb" + rec.halves[0].nid[1:])
            self.put(replace(rec, halves=(*rec.halves, half)))

    @rule(data=st.data())
    def settle_half(self, data):
        halves = [h for r in self.records.values() for h in r.halves if h.nid not in self.settled_nids]
        if halves:
            half = data.draw(st.sampled_from(halves))
            self.settled_nids.add(half.nid)
            self.index.ledger_changed(half.ledger)

    @rule(ledger=st.sampled_from(LEDGERS))
    def close_ledger(self, ledger):
        self.closed.add(ledger)
        self.index.ledger_changed(ledger)

    @rule(ledger=st.sampled_from(LEDGERS))
    def unrelated_change(self, ledger):
        self.index.ledger_changed(ledger)

    @rule(data=st.data())
    def put_again(self, data):
        """A record put again unchanged (a state seen, say), settled or not."""
        if self.records:
            self.put(data.draw(st.sampled_from(list(self.records.values()))))

    @invariant()
    def equals_a_scan(self):
        live = [r for r in self.records.values() if not self.settled(r)]
        hubs = [r for r in live if r.position is Position.INGRID]
        assert self.index.hub_load() == (len(hubs), sum(r.data.cash_alice + r.data.cash_bob for r in hubs))
        assert sorted(r.id for r in self.index.live()) == sorted(r.id for r in live)


LiveSetMachine.TestCase.settings = settings(max_examples=examples(200), stateful_step_count=40, deadline=None)
test_live_set_equals_a_scan_of_every_record = LiveSetMachine.TestCase
