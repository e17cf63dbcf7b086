"""The watcher's index of channels by the chain time of their next duty (perun.runtime.due), and
the kinds' `next_due`, held against their `duties` at every chain time."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from perun.core import machine
from perun.core import msmachine as ms
from perun.core.machine import Role, Stage
from perun.core.multistate import FinalChannelState
from perun.runtime.due import DueIndex
from tests.conftest import examples
from tests.unit.test_machine import DOMAIN, PARAMS
from tests.unit.test_msmachine import with_lock_claimed

END = 4_000  # above every time these tests give a record (at most 2,500, plus Δ = 600 twice): nothing changes after it


def brute_next_due(duties, rec, now: int) -> int | None:
    return next((t for t in range(now, END) if duties(rec, t)), None)


TIMES = st.integers(0, 2_500)


@settings(max_examples=examples(200), deadline=None)
@given(role=st.sampled_from(Role), stage=st.sampled_from(Stage), deadline=TIMES,
       open_until=st.one_of(st.just(0), TIMES), registered=st.sampled_from([None, 0, 1, 2]),
       final=st.booleans(), proposed_final=st.booleans(), close_requested=st.booleans(),
       given_up=st.sampled_from(["", "cancelled"]), now=TIMES)
def test_a_payment_channels_next_duty_is_the_first_time_it_has_one(role, stage, deadline, open_until, registered, final,
                                                                   proposed_final, close_requested, given_up, now):
    rec = machine.new_record(PARAMS, DOMAIN, role, stage)
    current = replace(rec.current, version=1, is_final=final)
    rec = replace(rec, current=current, sig_alice=b"a" if final else b"", sig_bob=b"b" if final else b"",
                  deadline=deadline, open_until=open_until, registered_version=registered,
                  proposed_final=proposed_final, close_requested=close_requested, given_up=given_up)
    assert machine.next_due(rec, now) == brute_next_due(machine.duties, rec, now)


ALICE_MS, BOB_MS, NID = with_lock_claimed()


@settings(max_examples=examples(200), deadline=None)
@given(bob=st.booleans(), stage=st.sampled_from(Stage), deadline=TIMES, open_until=st.one_of(st.just(0), TIMES),
       registered=st.sampled_from([None, 0, 1, 5]), listed=st.booleans(), close_requested=st.booleans(),
       on_chain=st.one_of(st.none(), st.tuples(st.integers(0, 2), TIMES, st.booleans(), st.one_of(st.just(0), TIMES))),
       now=TIMES)
def test_a_multistate_channels_next_duty_is_the_first_time_it_has_one(bob, stage, deadline, open_until, registered,
                                                                      listed, close_requested, on_chain, now):
    rec = BOB_MS if bob else ALICE_MS
    rec = replace(rec, stage=stage, deadline=deadline, open_until=open_until, registered_version=registered,
                  registered_fundings=rec.state.nanocontracts if listed else (), close_requested=close_requested,
                  on_chain=() if on_chain is None else (ms.OnChain(NID, *on_chain),))
    assert ms.next_due(rec, now) == brute_next_due(ms.duties, rec, now)


def test_a_multistate_channel_with_a_final_state_signed_by_both():
    final = ms.Signed(FinalChannelState(ALICE_MS.channel_id, 9, 1, 2), b"a" * 65, b"b" * 65)
    for rec in (ALICE_MS, BOB_MS):
        for stage in (Stage.OPEN, Stage.CLOSING, Stage.CLOSED):
            for proposed in (True, False):
                closing = replace(rec, stage=stage, deadline=1_000, proposed_final=proposed, final=final)
                assert closing.is_fully_signed_final
                for now in (0, 699, 700, 1_000, 2_000):
                    assert ms.next_due(closing, now) == brute_next_due(ms.duties, closing, now)


class Index:
    """A DueIndex over records that are bare "due from" times (None: never), counting its asks."""

    def __init__(self, records: dict[bytes, int | None]) -> None:
        self.records = records
        self.asked: list[bytes] = []
        self.index = DueIndex(lambda: self.records, self.next_due)

    def next_due(self, cid: bytes, now: int) -> int | None:
        self.asked.append(cid)
        due = self.records[cid]
        return None if due is None else max(due, now)

    def put(self, cid: bytes, due: int | None) -> None:
        self.records[cid] = due
        self.index.changed(cid)

    def due(self, now: int) -> list[bytes]:
        self.asked = []
        return self.index.due(now)


def cid(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_the_first_look_asks_every_channel_and_later_looks_only_the_changed_and_the_due():
    idx = Index({cid(n): (n if n % 2 else None) for n in range(1_000)})  # odd ones due from their number
    assert idx.due(0) == [] and len(idx.asked) == 1_000
    assert idx.due(0) == [] and idx.asked == []  # nothing changed, nothing due: no work per channel
    assert idx.due(10) == [cid(1), cid(3), cid(5), cid(7), cid(9)] and idx.asked == []
    # Those found due are asked again at the next look, and are due again until they change.
    assert idx.due(10) == [cid(1), cid(3), cid(5), cid(7), cid(9)] and sorted(idx.asked) == idx.due(10)
    idx.put(cid(3), None)  # its duty was done
    idx.put(cid(4), 0)  # a new duty, due at once
    idx.put(cid(999), None)  # changed twice before a look: asked once
    idx.put(cid(999), 12)
    assert idx.due(11) == [cid(1), cid(4), cid(5), cid(7), cid(9), cid(11)]
    assert sorted(idx.asked) == [cid(1), cid(3), cid(4), cid(5), cid(7), cid(9), cid(999)]
    assert idx.due(12)[-1] == cid(999)


def test_a_record_put_back_after_a_look_is_asked_about_again():
    idx = Index({cid(1): None})
    assert idx.due(100) == []
    idx.put(cid(1), 50)  # an unconfirmed close's copy: due
    assert idx.due(100) == [cid(1)]
    idx.put(cid(1), None)  # the final record put back
    assert idx.due(101) == [] and idx.asked == [cid(1)]
    assert idx.due(102) == [] and idx.asked == []


def test_when_the_chains_time_goes_back_every_channel_is_asked_again():
    idx = Index({cid(1): 10, cid(2): 20})
    assert idx.due(15) == [cid(1)]
    idx.asked = []
    assert idx.due(12) == [cid(1)] and sorted(idx.asked) == [cid(1), cid(2)]


def test_stale_entries_do_not_pile_up():
    idx = Index({cid(1): 10**9})
    idx.due(0)
    for n in range(10_000):
        idx.put(cid(1), 10**9 - n)
        idx.due(n % 7)
    assert len(idx.index._heap) <= 2 * len(idx.index) + 64
