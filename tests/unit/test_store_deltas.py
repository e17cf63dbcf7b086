"""A payment channel's updates go to the store as deltas (perun.store.Store.commit,
perun.core.machine.change/fold): whatever the sequence of transitions, a store reopened after any
commit holds the record a restart may take, that is the one committed but for what a crash may
lose (payments proposed within `reserved`, and versions signed up to it)."""

from __future__ import annotations

from dataclasses import replace

from eth_account import Account
from hypothesis import event, given, settings
from hypothesis import strategies as st

from perun import errors
from perun.core import machine
from perun.core.channel import Params
from perun.core.eip712 import Domain
from perun.core.machine import Change, ChannelRecord, Role, Stage
from perun.store import SCHEMA_VERSION, SignedState, Store
from tests.conftest import examples

ALICE = Account.from_key(b"\x01" * 32)
BOB = Account.from_key(b"\x02" * 32)
DOMAIN = Domain(1337, "0x" + "ab" * 20)
PARAMS = Params(ALICE.address, BOB.address, 10**6, 10**6, 600, 7)
KEYS = {Role.ALICE: bytes(ALICE.key), Role.BOB: bytes(BOB.key)}
HOT = {"current", "sig_alice", "sig_bob", "signed", "pending"}


def check_restart_safe(loaded: ChannelRecord, committed: ChannelRecord) -> None:
    assert loaded.current == committed.current
    assert (loaded.sig_alice, loaded.sig_bob) == (committed.sig_alice, committed.sig_bob)
    for name, value in committed.__dict__.items():
        if name not in HOT:
            assert loaded.__dict__[name] == value, name
    assert all(p in committed.pending for p in loaded.pending)
    for lost in (p for p in committed.pending if p not in loaded.pending):
        assert not lost.state.is_final and lost.state.version <= committed.reserved
    assert loaded.signed <= committed.signed <= machine.restored(loaded).signed


class Party:
    """One end: its record in memory, its store (open, as a running node's), what it committed."""

    def __init__(self, path, role: Role, label: bool = False) -> None:
        self.role, self.path, self.label = role, path, label
        self.rec = machine.new_record(PARAMS, DOMAIN, role, Stage.OPEN)
        account = ALICE if role is Role.ALICE else BOB
        self.identity = (account.address, DOMAIN.chain_id, DOMAIN.verifying_contract)
        self.store = Store(path, *self.identity)
        self.commit(self.rec)

    def commit(self, rec: ChannelRecord, states: list[SignedState] = ()) -> None:
        before = self.store._stored.get(rec.channel_id)
        if self.label:
            event(f"{self.role.name}: {machine.change(before, rec).value if before else 'first'}")
        self.rec = rec
        self.store.commit([rec], states)
        again = Store(self.path, *self.identity)
        try:
            [loaded] = again.channels()
            check_restart_safe(loaded, rec)
        finally:
            again.close()


# Mostly payments, delivered and acknowledged: the paths that write deltas or nothing.
OPS = st.lists(st.tuples(st.sampled_from(["pay", "deliver", "ack"] * 4 + ["refuse", "final", "burn", "stage", "restart"]),
                         st.sampled_from([Role.ALICE, Role.BOB]), st.integers(1, 3)), max_size=60)


@settings(max_examples=examples(100), deadline=None)
@given(ops=OPS)
def test_a_reopened_store_holds_a_record_as_safe_as_the_committed_one(tmp_path_factory, ops) -> None:
    tmp = tmp_path_factory.mktemp("deltas")
    parties = {role: Party(tmp / f"{role.name}.db", role, label=True) for role in Role}
    wire: dict[Role, list] = {Role.ALICE: [], Role.BOB: []}  # proposals each has in flight to the other
    replies: dict[Role, list] = {Role.ALICE: [], Role.BOB: []}  # countersignatures on their way back
    for op, role, n in ops:
        me, peer = parties[role], parties[Role(1 - role)]
        try:
            if op == "pay":
                rec, proposal = machine.propose(me.rec, machine.payment(me.rec, n), KEYS[role])
                me.commit(rec, [SignedState(proposal.state, *((proposal.signature, b"") if role is Role.ALICE
                                                              else (b"", proposal.signature)))])
                wire[role].append(proposal)
            elif op == "final":
                rec, proposal = machine.propose(me.rec, machine.final(me.rec), KEYS[role])
                me.commit(rec)
                wire[role].append(proposal)
            elif op == "deliver" and wire[Role(1 - role)]:
                proposal = wire[Role(1 - role)].pop(0)
                rec, mine = machine.receive_update(me.rec, proposal.state, proposal.prev, proposal.signature,
                                                   KEYS[role])
                me.commit(rec, [SignedState(proposal.state, rec.sig_alice, rec.sig_bob)])
                replies[Role(1 - role)].append((proposal.state.version, mine))
            elif op == "ack" and replies[role]:
                version, signature = replies[role].pop(0)
                rec, proposal = machine.receive_ack(me.rec, version, signature)
                me.commit(rec, [SignedState(proposal.state, rec.sig_alice, rec.sig_bob)])
            elif op == "refuse" and me.rec.pending:
                rec, _ = machine.receive_reject(me.rec, me.rec.pending[-1].state.version, peer.rec.signed)
                me.commit(rec)
            elif op == "burn":  # versions far ahead: the next proposal reserves again first
                me.commit(replace(me.rec, signed=max(me.rec.signed, me.rec.reserved) + n))
            elif op == "stage":
                me.commit(replace(me.rec, peer_signed_hint=me.rec.peer_signed_hint + n))
            elif op == "restart":  # the node restarts on its store, as the node does
                me.store.close()
                me.store = Store(me.path, *me.identity)
                [loaded] = me.store.channels()
                me.rec = machine.restored(loaded)
                wire[role].clear()
                replies[role].clear()
        except errors.PerunError:
            pass
    for party in parties.values():
        party.store.close()


def test_payments_write_a_delta_and_a_change_of_another_field_folds_it(tmp_path) -> None:
    alice = Party(tmp_path / "a.db", Role.ALICE)
    bob = Party(tmp_path / "b.db", Role.BOB)
    record_row = "SELECT record FROM channels"
    first = bob.store.db.execute(record_row).fetchone()
    for i in range(3):
        rec, proposal = machine.propose(alice.rec, machine.payment(alice.rec, 5), KEYS[Role.ALICE])
        # The first reserves versions, and the others go within them.
        assert machine.change(alice.store._stored[rec.channel_id], rec) is (Change.NONE if i else Change.WHOLE)
        alice.commit(rec)
        rec, mine = machine.receive_update(bob.rec, proposal.state, proposal.prev, proposal.signature, KEYS[Role.BOB])
        assert machine.change(bob.store._stored[rec.channel_id], rec) is Change.DELTA
        bob.commit(rec)
        rec, _ = machine.receive_ack(alice.rec, proposal.state.version, mine)
        alice.commit(rec)
    assert bob.store.db.execute(record_row).fetchone() == first  # the record as opened
    assert bob.store.db.execute("SELECT version FROM channel_deltas").fetchall() == [("3",)]
    bob.commit(replace(bob.rec, stage=Stage.CLOSING, deadline=99))
    assert bob.store.db.execute("SELECT count(*) FROM channel_deltas").fetchone() == (0,)
    [loaded] = Store(tmp_path / "b.db", *bob.identity).channels()
    assert loaded == bob.rec


def test_a_store_of_schema_1_gains_the_delta_table(tmp_path) -> None:
    path = tmp_path / "old.db"
    store = Store(path, ALICE.address, DOMAIN.chain_id, DOMAIN.verifying_contract)
    store.db.execute("DROP TABLE channel_deltas")
    store.commit(meta={"schema": "1"})
    store.close()
    again = Store(path, ALICE.address, DOMAIN.chain_id, DOMAIN.verifying_contract)
    assert again.meta("schema") == str(SCHEMA_VERSION)
    assert again.channels() == []
