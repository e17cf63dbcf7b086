"""The Python EIP-712 digest equals the contract's, and eth-account's, for many random states."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perun.core.channel import PaymentState
from perun.core.eip712 import recover, sign
from tests.conftest import World, examples

states = st.builds(
    PaymentState,
    channel_id=st.binary(min_size=32, max_size=32),
    version=st.integers(0, 2**64 - 1),
    balance_alice=st.integers(0, 2**128 - 1),
    balance_bob=st.integers(0, 2**128 - 1),
    is_final=st.booleans(),
)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=states)
def test_python_digest_equals_the_contracts(world: World, state: PaymentState) -> None:
    assert world.contract.domain.digest(state) == world.contract.contract_digest(state)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=states)
def test_python_digest_and_signature_equal_eth_accounts(world: World, state: PaymentState) -> None:
    domain = world.contract.domain
    message = encode_typed_data(full_message=domain.typed_data(state))
    signed = Account.sign_message(message, world.alice.key)
    ours = sign(domain.digest(state), world.alice.key)
    assert ours == signed.signature
    assert recover(domain.digest(state), ours) == world.alice.address


def test_domain_separator_equals_the_contracts(world: World) -> None:
    on_chain = bytes(world.contract.contract.functions.domainSeparator().call())
    assert world.contract.domain.separator == on_chain
