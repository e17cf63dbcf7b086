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

    # On an error a node sent over the control socket (perun.control.client.remote_error): the
    # name of its class there, and what the node said of it (a perun.control.explain.Explained).
    remote_type: str | None = None
    explained: object = None


# --------------------------------------------------------------------------- off-chain checks


class ValidationError(PerunError):
    """Input was rejected before anything changed."""


class InvalidAddress(ValidationError):
    """Not an address, or a mixed-case address whose EIP-55 checksum does not match."""


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


class BalanceExceeded(AmountOutOfRange):
    """A payment asks more than the payer's balance in the channel."""

    def __init__(self, amount: int, balance: int) -> None:
        self.amount, self.balance = amount, balance
        super().__init__(f"paying {amount} exceeds the payer's balance {balance}")


class UsageError(ValidationError):
    """A command line that `perun`'s parser refused; `command` is the (sub)command it was for."""

    def __init__(self, command: str, message: str) -> None:
        self.command = command
        super().__init__(f"{message} (see `{command} --help`)")


class UnknownChannel(WrongChannel):
    """No channel with this id is known to this node, or not with this peer."""


class InvalidNanocontract(ValidationError):
    """A nanocontract state or update breaks the rules of multistate channels (seed §3.2)."""


class UnknownNanocontract(InvalidNanocontract):
    """No nanocontract with this nid is live in the channel."""


class TooManyNanocontracts(InvalidNanocontract):
    """The channel already holds MSContract.MAX_NANOCONTRACTS nanocontracts."""


class OnionError(ValidationError):
    """A payment onion (perun.core.onion), or a failure travelling back through one, cannot be
    built, read or authenticated."""


class MalformedOnion(OnionError):
    """An onion or a failure of the wrong size or version, an ephemeral key not on the curve, a
    payload that does not decode, or a route or payload that no onion can carry."""


class OnionMacMismatch(OnionError):
    """An onion's MAC does not verify: it was tampered with, is bound to another payment hash, or
    is not for this node's key. The hop cannot tell which, and forwards nothing."""


class UnreadableFailure(OnionError):
    """No hop of the route authenticates a failure: a hop on the way back garbled it."""


class OpenFailed(PerunError):
    """An opening was given up before it was on chain (it failed, expired or was cancelled)."""


class ChannelRefused(ValidationError):
    """The peer's policy does not accept the proposed channel."""


# --------------------------------------------------------------------------- multi-hop payments (perun.core.route)


class InvalidInvoice(ValidationError):
    """A payment request that does not decode, is not signed by its payee, or cannot be paid."""


class InvoiceMalformed(InvalidInvoice):
    """An invoice's text or bytes do not decode: prefix, alphabet, length, version or a field."""


class InvoiceSignatureInvalid(InvalidInvoice, InvalidSignature):
    """An invoice's signature does not recover the payee it names."""


class InvoiceAmountOutOfRange(InvalidInvoice, AmountOutOfRange):
    """An invoice asks for no amount, or more than a channel can hold."""


class InvoiceExpired(InvalidInvoice):
    """An invoice's expiry has passed: the payee no longer accepts a payment for it."""

    def __init__(self, expiry: int) -> None:
        self.expiry = expiry
        super().__init__(f"the invoice expired at {expiry}")


class InvalidAnnouncement(ValidationError):
    """A channel announcement contradicts itself or another one (endpoints, Δ, token, range)."""


class AnnouncementSignatureInvalid(InvalidAnnouncement, InvalidSignature):
    """An announcement's signature does not recover the node it names."""


class RouteNotFound(ValidationError):
    """No known route from the payer to the payee can carry the amount; `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"no route: {reason}")


class InvalidRoute(ValidationError):
    """A route, or one hop of it, breaks the rules of multi-hop payments."""


class RouteFeeMismatch(InvalidRoute):
    """A hop's incoming amount minus its outgoing amount is not the fee it announced."""


class RouteTimeoutTooClose(InvalidRoute):
    """A lock's timeout leaves its receiver less than its Δ plus the timing margin."""


class RouteCapacityExceeded(InvalidRoute):
    """A hop locks more than its channel direction can forward."""


class RouteTooLong(InvalidRoute):
    """A route has no hop, or more than MAX_HOPS."""


class PaymentFailed(PerunError):
    """A multi-hop payment failed and its lock went back to the payer (or was never created):
    `hop` (address) is the hop of the route, `index` its position (0: the payer's peer), whose
    failure came back, with its `code` (perun.core.multihop.FailureCode); None where the failure
    names none (the lock timed out, or the failure was unreadable). `reason` says what happened,
    `advice` what the payer can do."""

    def __init__(self, reason: str, advice: str, hop: str | None = None, index: int | None = None,
                 code: int | None = None) -> None:
        self.reason, self.advice, self.hop, self.index, self.code = reason, advice, hop, index, code
        where = f" at hop {index} ({hop})" if hop is not None else ""
        super().__init__(f"the payment failed{where}: {reason}; {advice}")


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


class FrameRejected(WireError):
    """A frame fails authentication (tampered with, replayed, reordered or cut short), or the
    peer broke a limit: the connection is closed."""


class RateLimited(FrameRejected):
    """The peer sent frames faster than the limit allows (perun.wire.limits)."""


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


class ConfirmPending(PeerTimeout):
    """The channel is created on chain but the peer has not confirmed it yet: it may until the
    confirm deadline; if it does not, the node refunds the deposit then."""

    channel_id: bytes = b""


class ProposalExpired(PeerTimeout, ValidationError):
    """A multistate proposal was not answered within the reply time T (seed §3.2): the receiver
    refuses it from then on, and the proposer goes on above its versions."""


class PaymentPending(PeerTimeout):
    """A multi-hop payment is locked towards its payee but was not claimed in the time waited
    for: it completes if the payee claims, else its lock returns after its timeout."""

    def __init__(self, payment_hash: bytes, seconds: float) -> None:
        self.payment_hash = payment_hash
        super().__init__(f"payment 0x{payment_hash.hex()} is locked but not claimed within {seconds:g} s")


class NodeKilled(PerunError):
    """The node was killed (`Node.kill`) while the call was under way."""


# --------------------------------------------------------------------------- settings


class ConfigError(PerunError):
    """A node setting is invalid: a policy whose limits contradict each other, a bad key or value
    in a config file."""


# --------------------------------------------------------------------------- storage and keys


class StoreError(PerunError):
    """The node's database is unreadable, or belongs to another key, chain or contract."""


class KeystoreError(PerunError):
    """A keystore file cannot be read, written or decrypted."""


class WrongPassword(KeystoreError):
    """The password does not decrypt the key file."""


# --------------------------------------------------------------------------- chain


class ChainError(PerunError):
    """The chain could not be reached, or did something unexpected."""


class InsufficientFunds(ChainError):
    """The account cannot pay a transaction's value plus its gas: nothing was sent."""


class ChainUnreachable(ChainError):
    """No JSON-RPC node answers at the URL."""


class DeploymentNotFound(ChainError):
    """No contract is deployed where the deployment file or the caller said."""


class TransactionNotMined(ChainError):
    """A transaction was sent, and bid up to the fee limit, but not mined in time (its duty's
    deadline, or the wallet's give_up_after)."""


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


class ChannelsError(ContractRejected):
    """Base of the custom errors of Channels, which PaymentContract and MSContract share."""


def _contract_error(
    family: type[ContractRejected], name: str, *bases: type[PerunError], doc: str
) -> type[ContractRejected]:
    cls = type(name, (family, *bases), {"__doc__": doc, "solidity_name": name})
    cls.__module__ = __name__
    return cls


def _channels_error(name: str, *bases: type[PerunError], doc: str) -> type[ContractRejected]:
    return _contract_error(ChannelsError, name, *bases, doc=doc)


ChannelsCallerNotAlice = _channels_error(
    "ChannelsCallerNotAlice", doc="Only Alice may create the channel.")
ChannelsCallerNotBob = _channels_error(
    "ChannelsCallerNotBob", doc="Only Bob may confirm the channel.")
ChannelsCallerNotParticipant = _channels_error(
    "ChannelsCallerNotParticipant", doc="Only Alice or Bob may close the channel.")
ChannelsInvalidParties = _channels_error(
    "ChannelsInvalidParties", InvalidParams, doc="Alice and Bob must be two distinct non-zero addresses.")
ChannelsInvalidDelta = _channels_error(
    "ChannelsInvalidDelta", InvalidParams, doc="Δ must be positive and at most MAX_DELTA.")
ChannelsDepositsTooLarge = _channels_error(
    "ChannelsDepositsTooLarge", AmountOutOfRange, doc="The deposits together exceed 2**128 - 1.")
ChannelsChannelExists = _channels_error(
    "ChannelsChannelExists", doc="A channel with these parameters was created before.")
ChannelsWrongPhase = _channels_error(
    "ChannelsWrongPhase", doc="The channel is not in a phase that allows this call.")
ChannelsWrongDeposit = _channels_error(
    "ChannelsWrongDeposit", doc="The value paid (or the tokens received) differ from the deposit.")
ChannelsConfirmTooLate = _channels_error(
    "ChannelsConfirmTooLate", doc="Bob confirmed after the deadline.")
ChannelsRefundTooEarly = _channels_error(
    "ChannelsRefundTooEarly", doc="Refund before Bob's confirmation deadline has passed.")
ChannelsWrongChannel = _channels_error(
    "ChannelsWrongChannel", WrongChannel, doc="The state names another channel.")
ChannelsBalancesNotConserved = _channels_error(
    "ChannelsBalancesNotConserved", BalancesNotConserved, doc="The state's balances differ from the deposits.")
ChannelsInvalidSignature = _channels_error(
    "ChannelsInvalidSignature", InvalidSignature, doc="The state was not signed by the expected party.")
ChannelsStaleVersion = _channels_error(
    "ChannelsStaleVersion", StaleVersion, doc="The state's version is not above the registered one.")
ChannelsDisputeWindowOver = _channels_error(
    "ChannelsDisputeWindowOver",
    doc="The dispute window Δ has ended: no state replaces the registered one any more.")
ChannelsFinalizeTooEarly = _channels_error(
    "ChannelsFinalizeTooEarly", doc="Finalize before the dispute window has ended.")
ChannelsNothingToWithdraw = _channels_error(
    "ChannelsNothingToWithdraw", doc="No deferred payout is owed to the caller in this token.")
ChannelsWithdrawFailed = _channels_error(
    "ChannelsWithdrawFailed", doc="The withdrawal's recipient did not accept the ETH.")
ChannelsInvalidRecipient = _channels_error(
    "ChannelsInvalidRecipient", doc="A withdrawal to the zero address would burn the funds.")

class WatchtowersError(ContractRejected):
    """Base of the custom errors of a watchtower's submissions (Watchtowers.sol)."""


def _tower_error(name: str, *bases: type[PerunError], doc: str) -> type[ContractRejected]:
    return _contract_error(WatchtowersError, name, *bases, doc=doc)


WatchtowersWrongTower = _tower_error(
    "WatchtowersWrongTower", doc="The authorisation names another tower than the caller.")
WatchtowersWrongNanocontract = _tower_error(
    "WatchtowersWrongNanocontract", doc="The authorisation names another nanocontract (or the channel's own state).")
WatchtowersWrongVersion = _tower_error(
    "WatchtowersWrongVersion", doc="The authorisation names another version than the submitted state's.")
WatchtowersWrongState = _tower_error(
    "WatchtowersWrongState", doc="The authorisation names another state (its EIP-712 digest) than the one submitted.")
WatchtowersWrongCall = _tower_error(
    "WatchtowersWrongCall", doc="The authorisation names another function or argument than the call.")
WatchtowersNotAParty = _tower_error(
    "WatchtowersNotAParty", InvalidSignature, doc="The authorisation is not signed by Alice or Bob.")
WatchtowersRewardTooLarge = _tower_error(
    "WatchtowersRewardTooLarge", AmountOutOfRange,
    doc="The reward is above what its payer holds in the submitted state (or above MAX_REWARD).")


class MSContractError(ContractRejected):
    """Base of MSContract's own custom errors."""


def _ms_error(name: str, *bases: type[PerunError], doc: str) -> type[ContractRejected]:
    return _contract_error(MSContractError, name, *bases, doc=doc)


MSContractTooManyNanocontracts = _ms_error(
    "MSContractTooManyNanocontracts", doc="A channel state lists more than MAX_NANOCONTRACTS nanocontracts.")
MSContractNanocontractsUnsorted = _ms_error(
    "MSContractNanocontractsUnsorted", doc="A channel state's nanocontracts are not in strictly ascending nid order.")
MSContractAmountTooLarge = _ms_error(
    "MSContractAmountTooLarge", AmountOutOfRange, doc="A nanocontract state holds more than the channel's deposits.")
MSContractNotRegistered = _ms_error(
    "MSContractNotRegistered", doc="The nanocontract has not been registered on chain.")
MSContractWindowOpen = _ms_error(
    "MSContractWindowOpen", doc="The nanocontract's registration window has not ended yet.")
MSContractSettlementOver = _ms_error(
    "MSContractSettlementOver", doc="The closing channel's time for executing nanocontracts (deadline + Δ) is over.")
MSContractWrongNanocontracts = _ms_error(
    "MSContractWrongNanocontracts", doc="finalize was given other nanocontracts than the registered channel state lists.")
MSContractNotConserved = _ms_error(
    "MSContractNotConserved", BalancesNotConserved,
    doc="An app's result raises the blocked sum, lowers a release, or changes blocked + released.")
MSContractGasTooLow = _ms_error(
    "MSContractGasTooLow", doc="register was sent with too little gas for the app's settleBy: retry with more.")
MSContractTerminated = _ms_error(
    "MSContractTerminated", doc="The nanocontract blocks nothing any more: there is nothing to execute.")


class AppRejected(ContractRejected, ValidationError):
    """A nanocontract app's rules refuse the call: the same class whether its contract refused it
    on chain or its Python mirror (perun.core.apps) did off chain."""


class HashTimeLockError(AppRejected):
    """Base of HashTimeLock's custom errors."""


class TicTacToeError(AppRejected):
    """Base of TicTacToe's custom errors."""


class VirtualChannelError(AppRejected):
    """Base of VirtualChannel's custom errors."""


def _app_error(family: type[AppRejected], name: str, doc: str) -> type[ContractRejected]:
    return _contract_error(family, name, doc=doc)


HashTimeLockUnknownFunction = _app_error(HashTimeLockError, "HashTimeLockUnknownFunction", "No such function.")
HashTimeLockMalformed = _app_error(HashTimeLockError, "HashTimeLockMalformed", "The storage does not decode.")
HashTimeLockWrongCaller = _app_error(
    HashTimeLockError, "HashTimeLockWrongCaller", "Only the receiver claims or cancels; only the sender reclaims.")
HashTimeLockSettled = _app_error(
    HashTimeLockError, "HashTimeLockSettled", "Nothing (or not only the sender's amount) is blocked.")
HashTimeLockWrongPreimage = _app_error(
    HashTimeLockError, "HashTimeLockWrongPreimage", "The preimage's SHA-256 is not the hashlock.")
HashTimeLockExpired = _app_error(HashTimeLockError, "HashTimeLockExpired", "Claimed after the timeout.")
HashTimeLockNotExpired = _app_error(HashTimeLockError, "HashTimeLockNotExpired", "Reclaimed before the timeout.")

TicTacToeUnknownFunction = _app_error(TicTacToeError, "TicTacToeUnknownFunction", "No such function.")
TicTacToeMalformed = _app_error(TicTacToeError, "TicTacToeMalformed", "The storage or the move does not decode.")
TicTacToeGameOver = _app_error(TicTacToeError, "TicTacToeGameOver", "The game has ended.")
TicTacToeNotYourTurn = _app_error(
    TicTacToeError, "TicTacToeNotYourTurn", "The caller may not move now (or claim a timeout on its own turn).")
TicTacToeCellTaken = _app_error(TicTacToeError, "TicTacToeCellTaken", "The cell is not empty.")
TicTacToeTooEarly = _app_error(
    TicTacToeError, "TicTacToeTooEarly", "The player to move still has time (since + moveTimeout).")

VirtualChannelUnknownFunction = _app_error(VirtualChannelError, "VirtualChannelUnknownFunction", "No such function.")
VirtualChannelMalformed = _app_error(
    VirtualChannelError, "VirtualChannelMalformed", "The storage or the signed state does not decode.")
VirtualChannelSettled = _app_error(
    VirtualChannelError, "VirtualChannelSettled", "Nothing is blocked any more: this half has settled.")
VirtualChannelNotConserved = _app_error(
    VirtualChannelError, "VirtualChannelNotConserved", "The state's balances do not add up to cashAlice + cashBob.")
VirtualChannelInvalidSignature = _app_error(
    VirtualChannelError, "VirtualChannelInvalidSignature", "The state was not signed by `expected` (Alice or Bob).")
VirtualChannelTooEarly = _app_error(
    VirtualChannelError, "VirtualChannelTooEarly",
    "Not before `until`: a non-final state after validity, FINALIZE after validity + 2 window.")
VirtualChannelSubmissionOver = _app_error(
    VirtualChannelError, "VirtualChannelSubmissionOver",
    "The caller's time to submit states ended at `deadline` (validity + window for γ's end, + 2 window for Ingrid).")
VirtualChannelStaleVersion = _app_error(
    VirtualChannelError, "VirtualChannelStaleVersion", "The state's version is not above the stored one.")


def _all_subclasses(cls: type[ContractRejected]) -> list[type[ContractRejected]]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_all_subclasses(direct))]


CONTRACT_ERRORS: dict[str, type[ContractRejected]] = {
    cls.solidity_name: cls for cls in _all_subclasses(ContractRejected) if cls.solidity_name
}
