"""RpcChain's own reading of the head, held against web3's."""

from __future__ import annotations

from perun.chain.backend import Chain, RpcChain


def test_the_head_read_raw_is_the_head_web3_reads(anvil_chain):
    assert isinstance(anvil_chain, RpcChain)
    for _ in range(3):
        assert anvil_chain.head() == Chain.head(anvil_chain)
        anvil_chain.mine()


def test_an_anvil_chain_given_a_balance_funds_its_dev_accounts_with_it():
    from perun.chain.anvil import AnvilChain
    from perun.chain.backend import ETHER

    chain = AnvilChain(balance=123_456)
    try:
        assert {chain.balance(account) for account in chain.dev_accounts} == {123_456 * ETHER}
    finally:
        chain.close()
