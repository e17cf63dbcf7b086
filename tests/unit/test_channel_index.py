"""The indexes a channel kind keeps where its records are put in place (perun.protocols.channels):
held against a scan of every record after any sequence of records put."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from perun.core.channel import Params
from perun.core.machine import Role, Stage, new_record
from perun.protocols.channels import ChannelProtocol
from perun.protocols.policy import ChannelPolicy
from tests.conftest import examples
from tests.unit.test_machine import DOMAIN

ME = Account.from_key(b"\x11" * 32).address
PEERS = [Account.from_key(bytes([0x21 + i]) * 32).address for i in range(3)]


def channel(n: int, peer: int, role: Role):
    """Channel `n` with PEERS[peer], this party in `role`."""
    alice, bob = (ME, PEERS[peer]) if role is Role.ALICE else (PEERS[peer], ME)
    return new_record(Params(alice, bob, 100, 50, 600, n), DOMAIN, role, Stage.PROPOSED)


PUTS = st.lists(st.tuples(st.integers(0, 7), st.sampled_from(Stage), st.booleans()), max_size=40)


@settings(max_examples=examples(200), deadline=None)
@given(shape=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(Role)), min_size=8, max_size=8), puts=PUTS)
def test_the_indexes_hold_what_a_scan_of_the_records_finds(shape, puts):
    protocol = ChannelProtocol(SimpleNamespace(), SimpleNamespace(domain=DOMAIN), ChannelPolicy())
    channels = [channel(n, peer, role) for n, (peer, role) in enumerate(shape)]
    for n, stage, given_up in puts:
        protocol.put(replace(channels[n], stage=stage, given_up="cancelled" if given_up else ""))
        records = protocol.records.values()
        for peer in [*PEERS, ME]:
            assert protocol.with_peer(peer) == [r for r in records if r.peer == peer]
            assert sorted(r.channel_id for r in protocol.proposed_to(peer)) == sorted(
                r.channel_id for r in records if r.peer == peer and r.role is Role.ALICE and r.stage is Stage.PROPOSED)
            assert sorted(r.channel_id for r in protocol.accepted_from(peer)) == sorted(
                r.channel_id for r in records
                if r.peer == peer and r.role is Role.BOB and r.stage is Stage.ACCEPTED and not r.given_up)
