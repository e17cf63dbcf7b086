"""The node's store (perun.store): payment and multistate records and signed states survive
reopening, exactly."""

from dataclasses import MISSING, fields, replace

import pytest
from eth_account import Account

from perun import errors
from perun.core import msmachine as ms
from perun.core import tower
from perun.core import virtual as vr
from perun.core.apps import ALICE as APP_ALICE
from perun.core.apps import APPS
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import virtualchannel as vc
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import Domain, sign_state
from perun.core.machine import Role, Stage, new_record, payment, propose
from perun.core.monitoring import Monitoring, sign_authorisation
from perun.core.multistate import ChannelState, FinalChannelState, ms_domain
from perun.store import SignedState, Store

ALICE = Account.from_key(b"\x01" * 32)
BOB = Account.from_key(b"\x02" * 32)
DOMAIN = Domain(1337, "0x" + "ab" * 20)


def test_records_states_peers_and_block_round_trip(tmp_path):
    path = tmp_path / "a.db"
    store = Store(path, ALICE.address, 1337, DOMAIN.verifying_contract)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    params = Params(ALICE.address, BOB.address, 2**128 - 2, 1, 600, 2**256 - 1)
    rec = new_record(params, DOMAIN, Role.ALICE, Stage.OPEN)
    rec, proposal = propose(rec, payment(rec, 2**100), ALICE.key)
    rec = replace(rec, registered_version=0, deadline=99, outcome=(1, 2**127), close_requested=True)
    store.commit([rec], [SignedState(proposal.state, proposal.signature, b"")], [(BOB.address, "::1", 9)],
                 {"last_block": "42"})
    store.close()
    again = Store(path, ALICE.address, 1337, DOMAIN.verifying_contract)
    assert again.channels() == [rec]
    assert again.states(rec.channel_id) == [SignedState(proposal.state, proposal.signature, b"")]
    assert again.peers() == {BOB.address: ("::1", 9)}
    assert again.last_block() == 42


def test_loading_takes_each_channel_id_from_its_row_and_checks_no_params_again(tmp_path, monkeypatch):
    """The channel id is the row's key, stored, not recomputed (an eth_abi hash per channel was
    most of a restart's loading), and parameters are not checked again: the store holds only
    checked ones. Records of one domain share one Domain, and so its cached separator."""
    store = Store(tmp_path / "a.db", ALICE.address, 1337, DOMAIN.verifying_contract)
    written = [new_record(Params(ALICE.address, BOB.address, 5, 6, 600, nonce), DOMAIN, Role.ALICE, Stage.OPEN)
               for nonce in range(3)]
    ms_written = busy_ms_record()
    store.commit([*written, ms_written])
    store.close()

    def refused(*_):
        raise AssertionError("recomputed or re-checked while loading")

    monkeypatch.setattr(Params, "channel_id", refused)
    monkeypatch.setattr(Params, "__post_init__", refused)
    again = Store(tmp_path / "a.db", ALICE.address, 1337, DOMAIN.verifying_contract)
    loaded = again.channels()
    assert sorted(loaded, key=lambda r: r.channel_id) == sorted(written, key=lambda r: r.channel_id)
    assert len({id(r.domain) for r in loaded}) == 1
    assert again.ms_channels() == [ms_written]
    monkeypatch.undo()
    assert all(r.params == Params(ALICE.address, BOB.address, 5, 6, 600, r.params.nonce) for r in loaded)


@pytest.mark.parametrize("who, chain, contract", [
    (BOB.address, 1337, DOMAIN.verifying_contract),
    (ALICE.address, 1, DOMAIN.verifying_contract),
    (ALICE.address, 1337, "0x" + "cd" * 20),
])
def test_a_store_belongs_to_one_key_chain_and_contract(tmp_path, who, chain, contract):
    Store(tmp_path / "a.db", ALICE.address, 1337, DOMAIN.verifying_contract).close()
    with pytest.raises(errors.StoreError, match="belongs to"):
        Store(tmp_path / "a.db", who, chain, contract)


def test_a_failed_commit_writes_nothing(tmp_path):
    store = Store(tmp_path / "a.db", ALICE.address, 1337, DOMAIN.verifying_contract)
    with pytest.raises(errors.StoreError):
        store.commit(peers=[(BOB.address, "h", "not a port", "extra")])
    assert store.peers() == {}


# ---------------------------------------------------------------------- multistate channels

MS_DOMAIN = ms_domain(1337, DOMAIN.verifying_contract)
HTLC = "0x" + "11" * 20
PREIMAGE = b"\x42" * 32
NOW = 1_000


def app_of(address: str):
    return {HTLC: APPS["HashTimeLock"]}[address]


def lock(rec: ms.MSRecord, fee: int = 0) -> tuple[ms.MSRecord, ms.MSProposal]:
    """Alice locks 2**100 for Bob (and pays him `fee`)."""
    initial = htlc.initial(APP_ALICE, 2**100, htlc.hashlock_of(PREIMAGE), NOW + 100)
    return ms.create(rec, HTLC, initial, ALICE.key, fee)


def claim(rec: ms.MSRecord, nid: bytes) -> tuple[ms.MSRecord, ms.MSProposal]:
    """Bob claims a lock."""
    return ms.call(rec, nid, htlc.CLAIM, PREIMAGE, NOW, APPS["HashTimeLock"], BOB.key)


def reclaim(rec: ms.MSRecord, nid: bytes) -> tuple[ms.MSRecord, ms.MSProposal]:
    """Alice takes a lock back after its timeout."""
    return ms.call(rec, nid, htlc.RECLAIM, b"", NOW + 101, APPS["HashTimeLock"], ALICE.key)


def exchange(proposed: tuple[ms.MSRecord, ms.MSProposal], receiver: ms.MSRecord, key: bytes):
    """The receiver countersigns the proposal, the proposer adopts it."""
    proposer, proposal = proposed
    receiver, mine = ms.receive(receiver, proposal, app_of, NOW, key)
    proposer, _ = ms.receive_ack(proposer, proposal.slot, mine.sig_channel, mine.sig_nanocontract)
    return proposer, receiver, proposal


def busy_ms_record() -> ms.MSRecord:
    """Bob's record of a channel with two locks, one claimed, proposals of each kind in flight
    (more than the rules allow at once: the store does not care) and every other field set."""
    params = Params(ALICE.address, BOB.address, 2**127, 2**127 - 1, 600, 2**256 - 1)
    alice = ms.new_record(params, MS_DOMAIN, Role.ALICE, Stage.OPEN)
    bob = ms.new_record(params, MS_DOMAIN, Role.BOB, Stage.OPEN)
    alice, bob, first = exchange(lock(alice), bob, BOB.key)
    alice, bob, second = exchange(lock(alice), bob, BOB.key)
    bob, alice, _ = exchange(claim(bob, first.nid), alice, ALICE.key)
    _, created = lock(alice, fee=2**99)
    _, reclaimed = reclaim(alice, second.nid)
    _, absorbed = ms.absorb(bob, first.nid, BOB.key)
    bob, claimed = claim(bob, second.nid)
    _, closing = ms.close(ms.new_record(params, MS_DOMAIN, Role.BOB, Stage.OPEN), BOB.key, expires=2**63)
    return replace(
        bob,
        stage=Stage.CLOSED,
        pending=(created, claimed, reclaimed, absorbed, closing),
        expired=(replace(claimed, expires=2**40),),
        final=ms.Signed(closing.final, b"\x05" * 65, closing.sig_channel),
        proposed_final=True,
        open_until=2**40 + 1,
        given_up="cancelled by the operator",
        close_requested=True,
        deadline=2**40,
        registered_version=bob.state.version,
        registered_fundings=bob.state.nanocontracts,
        on_chain=(ms.OnChain(first.nid, 1, 500, True), ms.OnChain(second.nid, 0, 2**63, settle_by=2**40 - 1)),
        outcome=(2**128 - 1, 0),
        intents=(ms.Intent(second.nid, htlc.CLAIM, PREIMAGE), ms.Intent(first.nid, htlc.RECLAIM)),
        peer_signed=((b"", 2**64 - 1), (second.nid, 7)),
    )


def assert_every_field_set(cls: type, instances) -> None:
    """Each field of `cls` that has a default differs from it in one of `instances`: a field
    added later must join the store's encoding, and the record these tests store."""
    for f in fields(cls):
        if f.init and f.default is not MISSING:
            assert any(getattr(x, f.name) != f.default for x in instances), f"{cls.__name__}.{f.name}"


def test_a_multistate_record_round_trips_exactly(tmp_path):
    rec = busy_ms_record()
    assert_every_field_set(ms.MSRecord, [rec])
    assert_every_field_set(ms.MSProposal, rec.pending)
    assert_every_field_set(ms.Signed, rec.nanocontracts)
    assert_every_field_set(ms.OnChain, rec.on_chain)
    assert_every_field_set(ms.Intent, rec.intents)
    assert [p.kind for p in rec.pending] == [ms.Kind.CREATE, ms.Kind.CALL, ms.Kind.CALL, ms.Kind.ABSORB, ms.Kind.CLOSE]
    assert len(rec.nanocontracts) == 2 and len(rec.nano_signed) == 2
    store = Store(tmp_path / "a.db", BOB.address, 1337, DOMAIN.verifying_contract)
    store.commit([rec])
    store.close()
    again = Store(tmp_path / "a.db", BOB.address, 1337, DOMAIN.verifying_contract)
    assert again.ms_channels() == [rec] and again.channels() == []
    assert again.ms_channels()[0].domain == MS_DOMAIN != DOMAIN


def test_multistate_states_round_trip_channel_first_then_by_nid_and_version(tmp_path):
    rec = busy_ms_record()
    created, claimed, _, absorbed, _ = rec.pending
    later = replace(absorbed.channel, version=10)  # "10" < "3" as text: the versions sort as numbers
    channel_states = [rec.final, rec.channel, ms.Signed(absorbed.channel, b"", absorbed.sig_channel),
                      ms.Signed(later, b"", b"")]
    nanocontracts = sorted(
        [*rec.nanocontracts, ms.Signed(claimed.nanocontract, b"", claimed.sig_nanocontract),
         ms.Signed(created.nanocontract, created.sig_nanocontract)],
        key=lambda s: (s.state.nid, s.state.version),
    )
    assert [s.state.version for s in channel_states] == [1, 2, 3, 10]
    store = Store(tmp_path / "a.db", BOB.address, 1337, DOMAIN.verifying_contract)
    store.commit(states=[*reversed(nanocontracts), *reversed(channel_states)])
    store.close()
    found = Store(tmp_path / "a.db", BOB.address, 1337, DOMAIN.verifying_contract).ms_states(rec.channel_id)
    assert found == channel_states + nanocontracts
    assert [type(s.state) for s in found[:4]] == [FinalChannelState] + [ChannelState] * 3


def test_a_failed_commit_writes_no_multistate_rows(tmp_path):
    rec = busy_ms_record()
    store = Store(tmp_path / "a.db", BOB.address, 1337, DOMAIN.verifying_contract)
    with pytest.raises(errors.StoreError):
        store.commit([rec], [rec.channel], peers=[(BOB.address, "h", "not a port", "extra")])
    assert store.ms_channels() == [] and store.ms_states(rec.channel_id) == []


def test_a_store_from_before_multistate_channels_gains_their_tables(tmp_path):
    store = Store(tmp_path / "a.db", ALICE.address, 1337, DOMAIN.verifying_contract)
    store.db.executescript("DROP TABLE ms_channels; DROP TABLE ms_states;")
    store.close()
    again = Store(tmp_path / "a.db", ALICE.address, 1337, DOMAIN.verifying_contract)
    assert again.ms_channels() == [] and again.ms_states(bytes(32)) == []


def test_a_virtual_channel_record_round_trips_exactly(tmp_path):
    carol = Account.from_key(b"\x03" * 32)
    domain = vc.virtual_domain(1337, "0x" + "cd" * 20)
    data = vc.decode(vc.initial(ALICE.address, carol.address, BOB.address, b"\x0a" * 32, b"\x0b" * 32, 2**127, 5,
                                2**63, 3600, 2**64 - 1, vc.SIDE_B, 1).data)
    end = vr.new_record(data, vr.Position.BOB, vr.Half(vc.SIDE_B, b"\x0b" * 32, b"\x0c" * 32), domain)
    ch = end.channel
    ch, _ = propose(ch, replace(ch.current, version=1, balance_alice=2**127 - 1, balance_bob=6), BOB.key)
    final = PaymentState(data.id, 7, 1, 2**127 + 4, True)
    other = replace(data, nonce=1)  # one record per γ: this node is Ingrid of another one
    final = replace(final, channel_id=other.id)
    seen = vr.Seen(final, b"\x01" * 65, b"\x02" * 65)
    ingrid = replace(vr.new_record(other, vr.Position.INGRID, vr.Half(vc.SIDE_A, b"\x0a" * 32, b"\x0d" * 32), domain),
                     seen=(seen, vr.Seen(replace(final, is_final=False), b"", b"\x03" * 65)))
    ingrid = vr.with_half(ingrid, vr.Half(vc.SIDE_B, b"\x0b" * 32, b"\x0c" * 32))
    records = [replace(end, channel=replace(ch, sig_alice=b"\x04" * 65, peer_signed_hint=3, open_until=7,
                                            given_up="expired")), ingrid]
    for cls, instances in ((vr.VirtualRecord, records), (vr.Seen, ingrid.seen)):
        for f in fields(cls):
            if f.init and f.default is not MISSING:
                assert any(getattr(x, f.name) != f.default for x in instances), f"{cls.__name__}.{f.name}"
    store = Store(tmp_path / "v.db", BOB.address, 1337, DOMAIN.verifying_contract)
    store.commit(records)
    store.close()
    store = Store(tmp_path / "v.db", BOB.address, 1337, DOMAIN.verifying_contract)
    assert sorted(store.virtual_channels(), key=lambda r: r.position) == sorted(records, key=lambda r: r.position)
    store.close()


def test_a_towers_watched_channel_round_trips_and_replaces_its_row(tmp_path):
    tower_address = Account.from_key(b"\x04" * 32).address
    params = Params(ALICE.address, BOB.address, 2**128 - 2, 1, 600, 2**256 - 1)
    cid = params.channel_id(DOMAIN.chain_id, DOMAIN.verifying_contract)

    def watched(version, reward):
        state = PaymentState(cid, version, 2**128 - 3, 2)
        authorisation = sign_authorisation(DOMAIN, Monitoring.of(DOMAIN, state, tower_address, reward), BOB.key)
        return tower.accept(None, DOMAIN, tower_address, params, version, state.balance_alice, state.balance_bob,
                            sign_state(DOMAIN, state, ALICE.key), reward, authorisation)

    path = tmp_path / "tower.db"
    store = Store(path, tower_address, DOMAIN.chain_id, DOMAIN.verifying_contract)
    store.commit([watched(3, 1)])
    latest = replace(watched(2**64 - 1, 2), registered=1, deadline=99, refuted=2**64 - 1, reward_paid=2)
    store.commit([latest])
    store.close()
    again = Store(path, tower_address, DOMAIN.chain_id, DOMAIN.verifying_contract)
    assert again.watched() == [latest]  # one row per channel: the latest state only
    assert again.db.execute("SELECT count(*) FROM watched").fetchone() == (1,)
    assert again.channels() == []


def test_a_towers_multistate_channel_round_trips_and_an_older_store_gains_its_table(tmp_path):
    from perun.core.mstower import ChainNano
    from tests.unit.test_mstower import APP, NID, TOWER, held
    from tests.unit.test_mstower import DOMAIN as MS_DOMAIN
    rec = held()
    latest = replace(rec, registered=1, deadline=99, refuted=2, fundings=rec.state.nanocontracts,
                     on_chain=(ChainNano(NID, 3, 50, 60, True, 4, True),), closed=True,
                     rewards_paid=((NID, 2), (bytes(32), 5)))
    assert rec.nano(NID).state.app.lower() == APP
    path = tmp_path / "tower.db"
    store = Store(path, TOWER, MS_DOMAIN.chain_id, MS_DOMAIN.verifying_contract)
    store.commit([rec])
    store.commit([latest])
    store.db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")  # as a store of the version before
    store.db.execute("DROP TABLE ms_watched")
    store.close()
    again = Store(path, TOWER, MS_DOMAIN.chain_id, MS_DOMAIN.verifying_contract)
    assert again.ms_watched() == []
    assert again.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("5",)
    again.commit([latest])
    again.close()
    again = Store(path, TOWER, MS_DOMAIN.chain_id, MS_DOMAIN.verifying_contract)
    assert again.ms_watched() == [latest]  # one row per channel
    again.close()
