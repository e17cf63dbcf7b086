"""Every exception the package raises, in one tree rooted in `PerunError`.

Off-chain checks raise `ValidationError` subclasses. When a contract rejects a call with one of
its custom errors, the chain layer raises the class named exactly like the Solidity error; the
ones that mean the same as an off-chain check also derive from it, so `except StaleVersion`
catches a stale version whether Python or the contract noticed it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar


class PerunError(Exception):
    """Base of every error raised by this package."""


# --------------------------------------------------------------------------- off-chain checks


class ValidationError(PerunError):
    """Input was rejected before anything changed."""


class InvalidParams(ValidationError):
    """Channel parameters that no contract would accept (parties, Δ, deposit range)."""


class WrongChannel(ValidationError):
    """A state or message names another channel, contract or chain."""


class BalancesNotConserved(ValidationError):
    """The balances of a state do not add up to the channel's deposits."""


class AmountOutOfRange(ValidationError):
    """An amount is negative or too large for the contract's storage."""


class InvalidSignature(ValidationError):
    """A signature is malformed or was not made by the expected party."""


class StaleVersion(ValidationError):
    """A state's version is not above the one it should replace."""


class UpdateConflict(ValidationError):
    """Both parties proposed an update at the same version; both proposals are dropped."""


class BalanceDecreased(ValidationError):
    """A proposed update would lower the receiver's balance."""


class WrongStage(ValidationError):
    """The channel is not in a stage that allows this (for example, updates when not open)."""


class AlreadyFinal(WrongStage):
    """This party signed a final state for the channel and signs nothing after it."""


class UnknownChannel(WrongChannel):
    """No channel with this id is known to this node, or not with this peer."""


class ChannelRefused(ValidationError):
    """The peer's policy does not accept the proposed channel."""


# --------------------------------------------------------------------------- wire


class WireError(PerunError):
    """A message could not be read, or a peer broke the protocol."""


class MalformedMessage(WireError, ValidationError):
    """A frame or message does not decode: wrong length, bad field, unknown type or version."""


class UnknownMessageType(MalformedMessage):
    """A frame's message type is not one this protocol version defines."""


class UnsupportedVersion(MalformedMessage):
    """A frame is for a protocol version this node does not speak."""


class MessageTooLarge(MalformedMessage):
    """A frame is larger than the protocol allows; the connection is closed."""


class HandshakeFailed(WireError):
    """The peer did not prove it holds its key, or is on another chain or contract."""


class PeerUnavailable(WireError):
    """No connection to the peer, or it went away before answering."""


class PeerTimeout(PeerUnavailable):
    """The peer did not answer in time."""


class PeerRejected(WireError):
    """The peer refused a message and said why (`code`, a wire.messages.ErrorCode)."""

    def __init__(self, code: Any, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"peer rejected it: {getattr(code, 'name', code)}: {reason}")


class NodeKilled(PerunError):
    """The node was killed (`Node.kill`) while the call was under way."""


# --------------------------------------------------------------------------- storage and keys


class StoreError(PerunError):
    """The node's database is unreadable, or belongs to another key, chain or contract."""


class KeystoreError(PerunError):
    """A keystore file cannot be read, written or decrypted."""


# --------------------------------------------------------------------------- chain


class ChainError(PerunError):
    """The chain could not be reached, or did something unexpected."""


class DeploymentNotFound(ChainError):
    """No contract is deployed where the deployment file or the caller said."""


class TransactionFailed(ChainError):
    """A transaction was mined but reverted, without a custom error to say why."""


class ContractRejected(ChainError):
    """A contract refused a call with one of its custom errors; nothing changed on chain.

    `fields` holds the error's arguments by name, as the ABI declares them.
    """

    solidity_name: ClassVar[str] = ""

    def __init__(self, fields: dict[str, Any] | None = None, name: str | None = None) -> None:
        self.name = name or self.solidity_name
        self.fields = dict(fields or {})
        args = ", ".join(f"{k}={_show(v)}" for k, v in self.fields.items())
        super().__init__(f"{self.name}({args})")


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value.name if isinstance(value, Enum) else str(value)


class PaymentContractError(ContractRejected):
    """Base of PaymentContract's custom errors."""


def _payment_error(name: str, *bases: type[PerunError], doc: str) -> type[PaymentContractError]:
    cls = type(name, (PaymentContractError, *bases), {"__doc__": doc, "solidity_name": name})
    cls.__module__ = __name__
    return cls


PaymentContractCallerNotAlice = _payment_error(
    "PaymentContractCallerNotAlice", doc="Only Alice may create the channel.")
PaymentContractCallerNotBob = _payment_error(
    "PaymentContractCallerNotBob", doc="Only Bob may confirm the channel.")
PaymentContractCallerNotParticipant = _payment_error(
    "PaymentContractCallerNotParticipant", doc="Only Alice or Bob may close the channel.")
PaymentContractInvalidParties = _payment_error(
    "PaymentContractInvalidParties", InvalidParams, doc="Alice and Bob must be two distinct non-zero addresses.")
PaymentContractInvalidDelta = _payment_error(
    "PaymentContractInvalidDelta", InvalidParams, doc="Δ must be positive and at most MAX_DELTA.")
PaymentContractDepositsTooLarge = _payment_error(
    "PaymentContractDepositsTooLarge", AmountOutOfRange, doc="The deposits together exceed 2**128 - 1.")
PaymentContractChannelExists = _payment_error(
    "PaymentContractChannelExists", doc="A channel with these parameters was created before.")
PaymentContractWrongPhase = _payment_error(
    "PaymentContractWrongPhase", doc="The channel is not in a phase that allows this call.")
PaymentContractWrongDeposit = _payment_error(
    "PaymentContractWrongDeposit", doc="The value paid (or the tokens received) differ from the deposit.")
PaymentContractConfirmTooLate = _payment_error(
    "PaymentContractConfirmTooLate", doc="Bob confirmed after the deadline.")
PaymentContractRefundTooEarly = _payment_error(
    "PaymentContractRefundTooEarly", doc="Refund before Bob's confirmation deadline has passed.")
PaymentContractWrongChannel = _payment_error(
    "PaymentContractWrongChannel", WrongChannel, doc="The state names another channel.")
PaymentContractBalancesNotConserved = _payment_error(
    "PaymentContractBalancesNotConserved", BalancesNotConserved, doc="The state's balances differ from the deposits.")
PaymentContractInvalidSignature = _payment_error(
    "PaymentContractInvalidSignature", InvalidSignature, doc="The state was not signed by the expected party.")
PaymentContractStaleVersion = _payment_error(
    "PaymentContractStaleVersion", StaleVersion, doc="The state's version is not above the registered one.")
PaymentContractDisputeWindowOver = _payment_error(
    "PaymentContractDisputeWindowOver",
    doc="The dispute window Δ has ended: no state replaces the registered one any more.")
PaymentContractFinalizeTooEarly = _payment_error(
    "PaymentContractFinalizeTooEarly", doc="Finalize before the dispute window has ended.")
PaymentContractNothingToWithdraw = _payment_error(
    "PaymentContractNothingToWithdraw", doc="No deferred payout is owed to the caller in this token.")
PaymentContractWithdrawFailed = _payment_error(
    "PaymentContractWithdrawFailed", doc="The withdrawal's recipient did not accept the ETH.")
PaymentContractInvalidRecipient = _payment_error(
    "PaymentContractInvalidRecipient", doc="A withdrawal to the zero address would burn the funds.")

CONTRACT_ERRORS: dict[str, type[ContractRejected]] = {
    cls.solidity_name: cls for cls in PaymentContractError.__subclasses__()
}
