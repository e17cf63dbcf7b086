"""The Python EIP-712 digests of multistate channel, nanocontract and final channel states equal
MSContract's and eth-account's, for many random states."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perun.core.eip712 import sign
from perun.core.multistate import (
    FINAL_CHANNEL_STATE_TYPEHASH,
    ChannelState,
    FinalChannelState,
    Funding,
    NanocontractState,
    digest,
)
from tests.conftest import MSWorld, examples

amounts = st.integers(0, 2**128 - 1)
b32 = st.binary(min_size=32, max_size=32)
channel_states = st.builds(
    ChannelState,
    channel_id=b32,
    version=st.integers(0, 2**64 - 1),
    cash_alice=amounts,
    cash_bob=amounts,
    nanocontracts=st.lists(st.builds(Funding, nid=b32, alice=amounts, bob=amounts), max_size=4).map(tuple),
)
small = st.integers(0, 2**125)
nanocontract_states = st.builds(
    NanocontractState,
    channel_id=b32,
    nid=b32,
    app=st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    version=st.integers(0, 2**64 - 1),
    blocked_alice=small,
    blocked_bob=small,
    released_alice=small,
    released_bob=small,
    storage=st.binary(max_size=400),
)
final_states = st.builds(
    FinalChannelState,
    channel_id=b32,
    version=st.integers(0, 2**64 - 1),
    cash_alice=amounts,
    cash_bob=amounts,
)
any_state = st.one_of(channel_states, nanocontract_states, final_states)
SETTINGS = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(state=any_state)
def test_python_digest_equals_the_contracts(ms_world: MSWorld,
                                            state: ChannelState | NanocontractState | FinalChannelState) -> None:
    assert digest(ms_world.contract.domain, state) == ms_world.contract.contract_digest(state)


def _typed(world: MSWorld, state: ChannelState | NanocontractState | FinalChannelState) -> dict:
    domain = world.contract.domain
    if isinstance(state, FinalChannelState):
        types = {"FinalChannelState": [("channelId", "bytes32"), ("version", "uint64"), ("cashAlice", "uint256"),
                                       ("cashBob", "uint256")]}
        message = {"channelId": state.channel_id, "version": state.version, "cashAlice": state.cash_alice,
                   "cashBob": state.cash_bob}
        return domain.typed_message(types, "FinalChannelState", message)
    if isinstance(state, ChannelState):
        types = {
            "ChannelState": [("channelId", "bytes32"), ("version", "uint64"), ("cashAlice", "uint256"),
                             ("cashBob", "uint256"), ("nanocontracts", "Funding[]")],
            "Funding": [("nid", "bytes32"), ("alice", "uint256"), ("bob", "uint256")],
        }
        message = {"channelId": state.channel_id, "version": state.version, "cashAlice": state.cash_alice,
                   "cashBob": state.cash_bob,
                   "nanocontracts": [{"nid": f.nid, "alice": f.alice, "bob": f.bob} for f in state.nanocontracts]}
        return domain.typed_message(types, "ChannelState", message)
    types = {"NanocontractState": [
        ("channelId", "bytes32"), ("nid", "bytes32"), ("app", "address"), ("version", "uint64"),
        ("blockedAlice", "uint256"), ("blockedBob", "uint256"), ("releasedAlice", "uint256"),
        ("releasedBob", "uint256"), ("data", "bytes")]}
    message = {"channelId": state.channel_id, "nid": state.nid, "app": state.app, "version": state.version,
               "blockedAlice": state.blocked_alice, "blockedBob": state.blocked_bob,
               "releasedAlice": state.released_alice, "releasedBob": state.released_bob, "data": state.storage}
    return domain.typed_message(types, "NanocontractState", message)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=any_state)
def test_python_digest_and_signature_equal_eth_accounts(ms_world: MSWorld, state) -> None:
    signed = Account.sign_message(encode_typed_data(full_message=_typed(ms_world, state)), ms_world.alice.key)
    assert sign(digest(ms_world.contract.domain, state), ms_world.alice.key) == signed.signature


def test_a_payment_contract_signature_is_not_valid_on_msc(ms_world: MSWorld, world) -> None:
    """Different domains: the same struct hash signs to different digests on the two contracts."""
    state = ChannelState(b"\x01" * 32, 1, 1, 1)
    assert world.contract.domain.digest_of(state.struct_hash()) != digest(ms_world.contract.domain, state)


def test_the_final_channel_state_typehash_is_the_contracts(ms_world: MSWorld) -> None:
    assert bytes(ms_world.contract.contract.functions.FINAL_CHANNEL_STATE_TYPEHASH().call()) == \
        FINAL_CHANNEL_STATE_TYPEHASH

