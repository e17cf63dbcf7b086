"""Reverts reported by eth-tester, by anvil and by Hardhat's node (through web3) decode to the same
exception."""

from __future__ import annotations

from eth_abi import encode
from eth_tester.exceptions import TransactionFailed as EthTesterFailed
from eth_utils import keccak
from web3.exceptions import ContractCustomError, ContractLogicError

from perun import errors
from perun.chain.artifacts import load
from perun.chain.reverts import translate
from perun.core.channel import Phase

CHANNEL = b"\x07" * 32
WRONG_PHASE = keccak(text="ChannelsWrongPhase(bytes32,uint8)")[:4] + encode(["bytes32", "uint8"], [CHANNEL, 2])


def test_eth_tester_anvil_and_hardhat_reverts_decode_alike() -> None:
    from_tester = translate(EthTesterFailed(f"execution reverted: {WRONG_PHASE!r}"))
    from_anvil = translate(ContractCustomError("0x" + WRONG_PHASE.hex(), data="0x" + WRONG_PHASE.hex()))
    # What web3 raises for Hardhat's error {"message": ..., "data": {"message": ..., "data": "0x..."}}.
    nested = {"message": "Error: VM Exception while processing transaction: reverted with an unrecognized "
                         "custom error", "data": "0x" + WRONG_PHASE.hex()}
    from_hardhat = translate(ContractLogicError(f"execution reverted: {nested['message']}", data=nested))
    for exc in (from_tester, from_anvil, from_hardhat):
        assert isinstance(exc, errors.ChannelsWrongPhase)
        assert exc.fields == {"channelId": CHANNEL, "phase": Phase.OPEN}
    assert str(from_tester) == f"ChannelsWrongPhase(channelId=0x{CHANNEL.hex()}, phase=OPEN)"


def test_reason_strings_panics_and_unknown_errors() -> None:
    reason = bytes.fromhex("08c379a0") + encode(["string"], ["owner"])
    panic = bytes.fromhex("4e487b71") + encode(["uint256"], [0x11])
    unknown = bytes.fromhex("deadbeef")
    assert str(translate(ContractLogicError("x", data="0x" + reason.hex()))) == "reverted: owner"
    assert str(translate(EthTesterFailed(f"execution reverted: {panic!r}"))) == "reverted with panic 0x11"
    assert isinstance(translate(ContractLogicError("x", data="0x" + unknown.hex())), errors.TransactionFailed)


def test_errors_of_other_contracts_keep_their_name() -> None:
    data = keccak(text="ERC20InsufficientAllowance(address,uint256,uint256)")[:4] + encode(
        ["address", "uint256", "uint256"], ["0x" + "ab" * 20, 1, 2]
    )
    exc = translate(EthTesterFailed(f"execution reverted: {data!r}"))
    assert type(exc) is errors.ContractRejected
    assert exc.name == "ERC20InsufficientAllowance"
    assert exc.fields["needed"] == 2


def test_other_failures_become_chain_errors() -> None:
    assert isinstance(translate(ConnectionError("refused")), errors.ChainError)
    same = errors.InvalidSignature("x")
    assert translate(same) is same


PROJECT_CONTRACTS = ("PaymentContract", "MSContract", "HashTimeLock", "TicTacToe", "VirtualChannel")


def test_every_contract_error_has_its_python_class() -> None:
    in_abi = {item["name"] for name in PROJECT_CONTRACTS for item in load(name)["abi"] if item["type"] == "error"}
    ours = {name for name in in_abi if name.startswith(("Channels", "Watchtowers", *PROJECT_CONTRACTS))}
    assert ours == set(errors.CONTRACT_ERRORS)
    for name, cls in errors.CONTRACT_ERRORS.items():
        assert getattr(errors, name) is cls and issubclass(cls, errors.PerunError)
