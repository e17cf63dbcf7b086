"""Turns a revert, however the node reported it, into the package's own exception.

eth-tester raises `TransactionFailed` with the raw revert bytes in its message; anvil (and geth)
answer with a JSON-RPC error whose `data` is the hex revert data, which web3 raises as
`ContractCustomError` / `ContractLogicError` carrying it; Hardhat's node nests it one level
deeper, `data: {message, data}`, which web3 passes on as that dict. All end here, in one place, and come out as the class from perun.errors named
like the contract's custom error.
"""

from __future__ import annotations

import ast
from functools import cache
from typing import Any

from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from perun import errors
from perun.chain.artifacts import ARTIFACT_NAMES, load
from perun.core.channel import Phase

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string), from require/revert with a reason
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256): overflow, assert, ...


def _abi_type(param: dict[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


@cache
def _known_errors() -> dict[bytes, tuple[str, list[dict[str, Any]]]]:
    """selector -> (name, ABI inputs), from every artifact's ABI."""
    table: dict[bytes, tuple[str, list[dict[str, Any]]]] = {}
    for artifact in ARTIFACT_NAMES:
        for item in load(artifact)["abi"]:
            if item["type"] == "error":
                types = ",".join(_abi_type(p) for p in item["inputs"])
                table[keccak(text=f"{item['name']}({types})")[:4]] = (item["name"], item["inputs"])
    return table


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data carried by a web3 or eth-tester exception, if any."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):  # Hardhat: {"message": ..., "data": "0x..."}
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    if isinstance(data, bytes):
        return data
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, bytes):
            return arg
        if isinstance(arg, str) and arg.startswith("execution reverted: b"):
            value = ast.literal_eval(arg[len("execution reverted: "):])
            if isinstance(value, bytes):
                return value
    return None


def decode_revert(data: bytes) -> errors.PerunError:
    selector, body = data[:4], data[4:]
    if selector == _ERROR_STRING:
        (reason,) = decode(["string"], body)
        return errors.TransactionFailed(f"reverted: {reason}")
    if selector == _PANIC:
        (code,) = decode(["uint256"], body)
        return errors.TransactionFailed(f"reverted with panic 0x{code:02x}")
    known = _known_errors().get(selector)
    if known is None:
        return errors.TransactionFailed(f"reverted with unknown data 0x{data.hex()}")
    name, inputs = known
    values = decode([_abi_type(p) for p in inputs], body)
    fields = {p["name"]: _readable(p, v) for p, v in zip(inputs, values)}
    cls = errors.CONTRACT_ERRORS.get(name)
    return cls(fields) if cls else errors.ContractRejected(fields, name=name)


def _readable(param: dict[str, Any], value: Any) -> object:  # (eth-abi decodes to what the type says)
    if param["type"] == "address":
        return to_checksum_address(value)
    if param.get("internalType") == "enum Channels.Phase":
        return Phase(value)
    return value


def translate(exc: BaseException) -> errors.PerunError:
    """The PerunError that `exc`, raised while sending or simulating a transaction, means."""
    if isinstance(exc, errors.PerunError):
        return exc
    data = revert_data(exc)
    if data:
        return decode_revert(data)
    text = str(exc).lower()
    if "insufficient funds" in text:  # geth, anvil and eth-tester all say so
        return errors.InsufficientFunds("the account cannot pay the transaction's value plus gas; nothing was sent")
    if "revert" in text:
        return errors.TransactionFailed(str(exc))
    return errors.ChainError(f"{type(exc).__name__}: {exc}")
