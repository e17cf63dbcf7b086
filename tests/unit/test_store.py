"""The node's store (perun.store): records and signed states survive reopening, exactly."""

from dataclasses import replace

import pytest
from eth_account import Account

from perun import errors
from perun.core.channel import Params
from perun.core.eip712 import Domain
from perun.core.machine import Role, Stage, new_record, payment, propose
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
    rec = replace(rec, registered_version=0, deadline=99, outcome=(1, 2**127))
    store.commit([rec], [SignedState(proposal.state, proposal.signature, b"")], [(BOB.address, "::1", 9)],
                 {"last_block": "42"})
    store.close()
    again = Store(path, ALICE.address, 1337, DOMAIN.verifying_contract)
    assert again.channels() == [rec]
    assert again.states(rec.channel_id) == [SignedState(proposal.state, proposal.signature, b"")]
    assert again.peers() == {BOB.address: ("::1", 9)}
    assert again.last_block() == 42


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
