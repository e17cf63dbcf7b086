"""What an error means to the person who ran the command: a stable code, a category, and one
sentence to act on, with amounts in ETH (or units of a token), times in UTC and relative to the
chain's time, and what to do next.

The categories and the exit codes of `perun`:

    user      2   the command cannot work as given: bad arguments, an unknown channel or peer,
                  paying more than the balance, the wrong stage (a double close), a bad key file
                  or password, no deployment file
    refused   3   the peer or the chain said no: the peer's refusal, a peer offline or silent,
                  a contract's custom error
    internal  1   anything else, and a node or chain that cannot be reached

(Ctrl-C exits 130.) The node explains the errors of its control methods, where it knows the
context (the channel, the chain's time, the peers it redials); the reply carries the code, the
category, the sentence and the fields (amounts as decimal strings of wei or token units, times as
unix seconds), and the client puts them back on the exception it raises. Errors of the `perun`
process itself are explained there, without that context. docs: README "Errors".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from perun import errors
from perun.control.protocol import BadRequest, ControlError, NodeNotRunning
from perun.core.amounts import ether
from perun.core.channel import ETH
from perun.core.multihop import FailureCode

if TYPE_CHECKING:
    from perun.node import Node, Watchtower


class Category(str, Enum):
    USER = "user"
    REFUSED = "refused"
    INTERNAL = "internal"


EXIT_CODES = {Category.USER: 2, Category.REFUSED: 3, Category.INTERNAL: 1}


@dataclass(frozen=True)
class Explained:
    code: str
    category: Category
    message: str
    fields: dict[str, Any] = field(default_factory=dict)  # wire units: amounts as strings, times as ints

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.category]

    def as_json(self) -> dict[str, Any]:
        """The `error` object of `perun --json` and of a control reply."""
        return {"code": self.code, "category": self.category.value, "message": self.message, **self.fields}


@dataclass(frozen=True)
class Context:
    """What the node knew about a failed request."""

    method: str = ""  # the control method
    channel_id: str | None = None  # the channel the request named, 0x-hex
    channel: dict[str, Any] | None = None  # and as the node describes it, if it has it
    peer: str | None = None  # the peer the request concerns (named, or the channel's)
    known: bool = False  # the node remembers where to dial the peer, or is connected to it
    reconnecting: bool = False  # the node remembers the peer's address and is redialling it
    now: int | None = None  # the chain's time at the node's last poll


def context(node: Node | Watchtower | None, method: str, params: Any) -> Context:
    """The context of a request for `method` with `params` on `node` (None while it starts), a
    node or a watchtower."""
    if node is None or not isinstance(params, dict):
        return Context(method)
    cid = params.get("channel")
    cid = cid.lower() if isinstance(cid, str) and len(cid) == 66 and cid[:2].lower() == "0x" else None
    channel = None
    if cid is not None:
        try:
            channel = node.describe(bytes.fromhex(cid[2:]))
        except (errors.PerunError, ValueError):
            pass
    peer = params.get("peer") if isinstance(params.get("peer"), str) else (channel or {}).get("peer")
    peers = node.runtime.peers
    try:
        known = peer is not None and (peers.remembers(peer) or peers.get(peer) is not None)
        reconnecting = peer is not None and peers.reconnecting(peer)
    except ValueError:  # not an address
        peer, known, reconnecting = None, False, False
    return Context(method, cid, channel, peer, known, reconnecting, node.watcher.chain_time or None)


def explain(exc: errors.PerunError, ctx: Context | None = None) -> Explained:
    """The code, category and sentence of `exc` (the node's, if it came across the socket)."""
    carried = getattr(exc, "explained", None)  # set by perun.control.client.remote_error
    if isinstance(carried, Explained):
        return carried
    ctx = ctx or Context()
    if isinstance(exc, errors.ContractRejected):
        code, sentence = CONTRACT.get(exc.name, ("CONTRACT_REJECTED", _contract_as_is))
        message, fields = sentence(exc, ctx)
        fields = {"contract_error": exc.name, **_chain_fields(exc.fields), **fields}
        return Explained(code, Category.REFUSED, message, fields)
    for cls, applies, code, category, sentence in RULES:
        if isinstance(exc, cls) and applies(ctx):
            message, fields = sentence(exc, ctx)
            return Explained(code, category, message, fields)
    raise AssertionError("RULES ends with PerunError")  # pragma: no cover


# --------------------------------------------------------------------------- wording


def amount(value: int | str, token: str = ETH) -> str:
    value = int(value)
    return f"{ether(value)} ETH" if token == ETH else f"{value} units of token {token}"


def when(timestamp: int, now: int | None = None) -> str:
    """`2026-12-04 23:15:00 UTC, in 5 min` (relative to `now`, the chain's time, if known)."""
    utc = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return utc if now is None else f"{utc}, {relative(timestamp - now)}"


def relative(seconds: int) -> str:
    """`in 5 min`, `now` or `2 h 5 min ago`."""
    return "now" if seconds == 0 else f"in {_span(seconds)}" if seconds > 0 else f"{_span(-seconds)} ago"


def _span(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def _channel(ctx: Context) -> str:
    return f"channel {ctx.channel_id}" if ctx.channel_id else "the channel"


def _cid(ctx: Context) -> str:
    return ctx.channel_id or "CHANNEL"


def _token(ctx: Context) -> str:
    return (ctx.channel or {}).get("token", ETH)


def _unilateral(ctx: Context) -> str:
    """The way out when the peer does not answer, for a channel of this node's own contract."""
    if ctx.channel is None or ctx.channel.get("kind") not in ("payment", "multistate"):
        return ""
    return f", or close without it: `perun close --unilateral {ctx.channel_id}`"


Sentence = Callable[[Any, Context], tuple[str, dict[str, Any]]]


def _as_is(exc: errors.PerunError, ctx: Context) -> tuple[str, dict[str, Any]]:
    return str(exc), {}


def _with_channel(ctx: Context) -> dict[str, Any]:
    return {"channel": ctx.channel_id} if ctx.channel_id else {}


def _with_peer(ctx: Context) -> dict[str, Any]:
    return {**_with_channel(ctx), "peer": ctx.peer} if ctx.peer else _with_channel(ctx)


def _with_now(ctx: Context) -> dict[str, Any]:
    return {"now": ctx.now} if ctx.now else {}


# --------------------------------------------------------------------------- the node's refusals


def _unknown_channel(exc: errors.UnknownChannel, ctx: Context) -> tuple[str, dict[str, Any]]:
    what = f"this node has no channel {ctx.channel_id}" if ctx.channel_id else str(exc)
    return f"{what}: `perun status` lists its channels", _with_channel(ctx)


_OPENING = {"proposed", "accepted", "initialising"}


def _wrong_stage(exc: errors.WrongStage, ctx: Context) -> tuple[str, dict[str, Any]]:
    channel = ctx.channel or {}
    stage = channel.get("stage")
    if stage is None:
        return str(exc), _with_channel(ctx)
    fields = {**_with_channel(ctx), "stage": stage}
    if ctx.method == "cancel" and stage in ("open", "closing", "closed"):
        return (f"{_channel(ctx)} is {stage}, past its opening: there is nothing to cancel"
                + (f"; `perun close {_cid(ctx)}` closes it" if stage == "open" else ""), fields)
    if stage == "closing" and channel.get("deadline"):
        deadline = channel["deadline"]
        return (f"{_channel(ctx)} is closing on chain (version {channel.get('registered_version')} "
                f"registered), not open: its dispute window ends at {when(deadline, ctx.now)}; then "
                f"`perun finalize {_cid(ctx)}` pays out (the node also does it itself)",
                {**fields, "deadline": deadline, **_with_now(ctx)})
    if stage == "closed":
        return f"{_channel(ctx)} is closed and paid out already: `perun status {_cid(ctx)}` shows the payout", fields
    if stage == "failed":
        return (f"{_channel(ctx)} was never opened ({channel.get('given_up')}); nothing is sent for it: "
                "`perun open` opens a new one", fields)
    if stage == "lost":
        return f"{_channel(ctx)} was on a chain that has been reset since: it no longer exists", fields
    if stage in _OPENING:
        return (f"{_channel(ctx)} is {stage}, not open yet: `perun status {_cid(ctx)}` shows when it is open",
                fields)
    return f"{_channel(ctx)} is {stage}: `perun status {_cid(ctx)}` shows where it stands", fields


def _already_final(exc: errors.AlreadyFinal, ctx: Context) -> tuple[str, dict[str, Any]]:
    return (f"this node signed a final state for {_channel(ctx)}, so it makes no more payments on it: "
            f"`perun close {_cid(ctx)}` pays it out{_unilateral(ctx)}", _with_channel(ctx))


def _balance_exceeded(exc: errors.BalanceExceeded, ctx: Context) -> tuple[str, dict[str, Any]]:
    token = _token(ctx)
    where = f" in {_channel(ctx)}" if ctx.channel_id else ""
    return (f"paying {amount(exc.amount, token)} exceeds your balance{where}, which is {amount(exc.balance, token)}: "
            "pay at most that",
            {**_with_channel(ctx), "amount": str(exc.amount), "balance": str(exc.balance), "token": token})


def _peer_offline(exc: errors.PeerUnavailable, ctx: Context) -> tuple[str, dict[str, Any]]:
    fields = _with_peer(ctx)
    if ctx.reconnecting:
        return (f"the node is not connected to {ctx.peer} and keeps reconnecting to it (its node is down or "
                f"unreachable): try again once it is back (`perun info` lists the connected peers)"
                f"{_unilateral(ctx)}", {**fields, "reconnecting": True})
    return f"{exc}{_unilateral(ctx)}", fields


def _peer_timeout(exc: errors.PeerTimeout, ctx: Context) -> tuple[str, dict[str, Any]]:
    return f"{exc}: try again{_unilateral(ctx)}", _with_peer(ctx)


def _peer_rejected(exc: errors.PeerRejected, ctx: Context) -> tuple[str, dict[str, Any]]:
    who = f"the peer {ctx.peer}" if ctx.peer else "the peer"
    reason = getattr(exc.code, "name", None)
    fields = {**_with_peer(ctx), "reason": exc.reason}
    if reason is not None:
        return f"{who} refused it ({reason.lower().replace('_', ' ')}): {exc.reason}", {**fields, "peer_code": reason}
    return f"{who} refused it: {exc.reason}", fields


def _channel_refused(exc: errors.ChannelRefused, ctx: Context) -> tuple[str, dict[str, Any]]:
    return f"refused: {exc}", {**_with_peer(ctx), "reason": str(exc)}


def _wrong_password(exc: errors.WrongPassword, ctx: Context) -> tuple[str, dict[str, Any]]:
    return (f"{exc}: give the password the key file was made with ($PERUN_PASSWORD, or at the prompt when "
            "it is not set)", {})


def _unknown_peer(exc: errors.PeerUnavailable, ctx: Context) -> tuple[str, dict[str, Any]]:
    return (f"this node does not know {ctx.peer}: connect to it first with `perun connect {ctx.peer} HOST:PORT`",
            {"peer": ctx.peer})


def _node_not_running(exc: NodeNotRunning, ctx: Context) -> tuple[str, dict[str, Any]]:
    return f"{exc}: start one with `perun node --data` and this directory, or pass the --data of a running node", {}


def _chain_unreachable(exc: errors.ChainUnreachable, ctx: Context) -> tuple[str, dict[str, Any]]:
    return f"{exc}: is the chain running? (`perun devnet` starts a local one)", {}


def _insufficient_funds(exc: errors.InsufficientFunds, ctx: Context) -> tuple[str, dict[str, Any]]:
    return (f"{exc}: send the node's account enough ETH for it and its gas (`perun info` shows the account; "
            "`perun fund ADDRESS AMOUNT` on a devnet), then try again", {})


def _not_mined(exc: errors.TransactionNotMined, ctx: Context) -> tuple[str, dict[str, Any]]:
    return (f"{exc}. The node replaces it with its next transaction; if fees are this high, restart the node "
            "with a higher --max-fee-gwei", {})


def _open_failed(exc: errors.OpenFailed, ctx: Context) -> tuple[str, dict[str, Any]]:
    return f"{exc}. The node sends nothing more for it: open again when that is fixed", _with_channel(ctx)


def _no_route(exc: errors.RouteNotFound, ctx: Context) -> tuple[str, dict[str, Any]]:
    return (f"{exc}: a route needs open multistate channels with enough cash, from this node through nodes "
            "that forward (`perun node --forward`) to the payee; open one (`perun open --multistate`) towards the "
            "payee or such a node, or pay less", {"reason": exc.reason})


def _invoice_expired(exc: errors.InvoiceExpired, ctx: Context) -> tuple[str, dict[str, Any]]:
    return (f"the invoice expired at {when(exc.expiry, ctx.now)}: ask the payee for a new one",
            {"expiry": exc.expiry, **_with_now(ctx)})


def _invalid_invoice(exc: errors.InvalidInvoice, ctx: Context) -> tuple[str, dict[str, Any]]:
    if isinstance(exc, (errors.InvoiceMalformed, errors.InvoiceSignatureInvalid)):
        return f"{exc}: give the whole text the payee's `perun invoice` printed (perun1…)", {}
    return str(exc), {}


def _payment_pending(exc: errors.PaymentPending, ctx: Context) -> tuple[str, dict[str, Any]]:
    hash_ = "0x" + exc.payment_hash.hex()
    return (f"{exc}: it completes if the payee claims it, else the lock returns to you after its timeout; "
            f"`perun status {hash_}` shows where it stands (do not pay again)", {"payment_hash": hash_})


def _payment_failed(exc: errors.PaymentFailed, ctx: Context) -> tuple[str, dict[str, Any]]:
    failure = None
    if exc.code is not None:
        failure = FailureCode(exc.code).name if exc.code in FailureCode._value2member_map_ else f"0x{exc.code:04x}"
    return (f"{exc}. Nothing stays locked: the amount is back in your channel",
            {"hop": exc.hop, "index": exc.index, "failure": failure})


def _always(ctx: Context) -> bool:
    return True


def _unknown(ctx: Context) -> bool:
    """A peer the request named (not through a channel) that the node has no address of; one it
    failed to `connect` to is offline, or not there."""
    return ctx.peer is not None and ctx.channel is None and not ctx.known and ctx.method != "connect"


# The most specific class first: the first that matches `exc` and applies in its context explains.
RULES: tuple[tuple[type[errors.PerunError], Callable[[Context], bool], str, Category, Sentence], ...] = (
    # the user's own mistakes
    (errors.UsageError, _always, "USAGE", Category.USER, _as_is),
    (BadRequest, _always, "BAD_REQUEST", Category.USER, _as_is),
    (errors.UnknownChannel, _always, "UNKNOWN_CHANNEL", Category.USER, _unknown_channel),
    (errors.UnknownNanocontract, _always, "UNKNOWN_NANOCONTRACT", Category.USER, _as_is),
    (errors.AlreadyFinal, _always, "ALREADY_FINAL", Category.USER, _already_final),
    (errors.WrongStage, _always, "WRONG_STAGE", Category.USER, _wrong_stage),
    (errors.BalanceExceeded, _always, "INSUFFICIENT_BALANCE", Category.USER, _balance_exceeded),
    (errors.RouteNotFound, _always, "ROUTE_NOT_FOUND", Category.USER, _no_route),
    (errors.InvoiceExpired, _always, "INVOICE_EXPIRED", Category.USER, _invoice_expired),
    (errors.InvalidInvoice, _always, "INVALID_INVOICE", Category.USER, _invalid_invoice),
    (errors.AmountOutOfRange, _always, "AMOUNT_OUT_OF_RANGE", Category.USER, _as_is),
    (errors.InvalidParams, _always, "INVALID_PARAMS", Category.USER, _as_is),
    (errors.InvalidNanocontract, _always, "INVALID_NANOCONTRACT", Category.USER, _as_is),
    (errors.WrongPassword, _always, "WRONG_PASSWORD", Category.USER, _wrong_password),
    (errors.KeystoreError, _always, "KEYSTORE", Category.USER, _as_is),
    (errors.DeploymentNotFound, _always, "DEPLOYMENT_NOT_FOUND", Category.USER, _as_is),
    (errors.ConfigError, _always, "CONFIG", Category.USER, _as_is),
    # what the peer said, or did not
    (errors.ChannelRefused, _always, "CHANNEL_REFUSED", Category.REFUSED, _channel_refused),
    (errors.PeerRejected, _always, "PEER_REJECTED", Category.REFUSED, _peer_rejected),
    (errors.ProposalExpired, _always, "PROPOSAL_EXPIRED", Category.REFUSED, _as_is),
    (errors.PaymentPending, _always, "PAYMENT_PENDING", Category.REFUSED, _payment_pending),
    (errors.PaymentFailed, _always, "PAYMENT_FAILED", Category.REFUSED, _payment_failed),
    (errors.PeerTimeout, _always, "PEER_TIMEOUT", Category.REFUSED, _peer_timeout),
    (errors.PeerUnavailable, _unknown, "UNKNOWN_PEER", Category.USER, _unknown_peer),
    (errors.PeerUnavailable, _always, "PEER_OFFLINE", Category.REFUSED, _peer_offline),
    (errors.HandshakeFailed, _always, "HANDSHAKE_FAILED", Category.REFUSED, _as_is),
    (errors.WireError, _always, "PROTOCOL_ERROR", Category.REFUSED, _as_is),
    (errors.TransactionFailed, _always, "TRANSACTION_REVERTED", Category.REFUSED, _as_is),
    (errors.TransactionNotMined, _always, "TRANSACTION_NOT_MINED", Category.REFUSED, _not_mined),
    (errors.OpenFailed, _always, "OPEN_FAILED", Category.REFUSED, _open_failed),
    (errors.InsufficientFunds, _always, "INSUFFICIENT_FUNDS", Category.USER, _insufficient_funds),
    # other checks of the user's input
    (errors.ValidationError, _always, "INVALID_INPUT", Category.USER, _as_is),
    # internal, or out of reach
    (NodeNotRunning, _always, "NODE_NOT_RUNNING", Category.INTERNAL, _node_not_running),
    (ControlError, _always, "CONTROL_ERROR", Category.INTERNAL, _as_is),
    (errors.ChainUnreachable, _always, "CHAIN_UNREACHABLE", Category.INTERNAL, _chain_unreachable),
    (errors.ChainError, _always, "CHAIN_ERROR", Category.INTERNAL, _as_is),
    (errors.StoreError, _always, "STORE_ERROR", Category.INTERNAL, _as_is),
    (errors.NodeKilled, _always, "NODE_KILLED", Category.INTERNAL, _as_is),
    (errors.PerunError, _always, "INTERNAL", Category.INTERNAL, _as_is),
)


# --------------------------------------------------------------------------- the contracts' refusals


# Which arguments of the custom errors are amounts (decimal strings on the wire) and times.
_AMOUNT_FIELDS = {"balanceAlice", "balanceBob", "total", "depositAlice", "depositBob", "expected", "received"}
_TIME_FIELDS = {"deadline", "windowEnd", "until", "timeout"}


def _chain_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A custom error's arguments in wire units (bytes as 0x-hex, a phase by name)."""
    def wire(name: str, value: Any) -> Any:
        if isinstance(value, bytes):
            return "0x" + value.hex()
        if isinstance(value, Enum):
            return value.name.lower()
        return str(value) if name in _AMOUNT_FIELDS and isinstance(value, int) else value
    return {name: wire(name, value) for name, value in fields.items()}


def _contract_as_is(exc: errors.ContractRejected, ctx: Context) -> tuple[str, dict[str, Any]]:
    return f"the contract refused it: {exc}", {}


def _says(text: str) -> Sentence:
    """A fixed sentence about the contract error's arguments: {name} is the field `name`, {channel}
    the request's channel, {cid} its id (or CHANNEL), {time_NAME} a time field in UTC (and relative to
    the chain's time) and {amount_NAME} an amount field in ETH or token units."""
    def sentence(exc: errors.ContractRejected, ctx: Context) -> tuple[str, dict[str, Any]]:
        values: dict[str, Any] = {name: _chain_fields({name: v})[name] for name, v in exc.fields.items()}
        values.update({f"time_{name}": when(v, ctx.now) for name, v in exc.fields.items() if name in _TIME_FIELDS})
        values.update({f"amount_{name}": amount(v, _token(ctx)) for name, v in exc.fields.items()
                       if name in _AMOUNT_FIELDS and isinstance(v, int)})
        values.update(channel=_channel(ctx), cid=_cid(ctx))
        return text.format(**values), {**_with_channel(ctx), **_with_now(ctx)}
    return sentence


def _stale(exc: errors.ContractRejected, ctx: Context) -> tuple[str, dict[str, Any]]:
    registered = exc.fields.get("registered")
    text, fields = f"version {registered} of {_channel(ctx)} is registered on chain already", _with_channel(ctx)
    if exc.fields.get("submitted") != registered:
        return (f"{text}, above the version {exc.fields.get('submitted')} this node submitted: its watcher answers "
                "with a later state if it holds one", fields)
    deadline = (ctx.channel or {}).get("deadline") if (ctx.channel or {}).get("stage") == "closing" else None
    if not deadline:
        return f"{text}, and this node holds no later state: nothing to register", fields
    return (f"{text}, and this node holds no later state: nothing to register; the dispute window ends at "
            f"{when(deadline, ctx.now)}, then `perun finalize {_cid(ctx)}` pays out (the node also does it itself)",
            {**fields, "deadline": deadline, **_with_now(ctx)})


CONTRACT: dict[str, tuple[str, Sentence]] = {
    # Channels (PaymentContract and MSContract)
    "ChannelsCallerNotAlice": ("CALLER_NOT_ALICE", _says(
        "only the channel's Alice (who proposed it) may create it on chain, not {caller}")),
    "ChannelsCallerNotBob": ("CALLER_NOT_BOB", _says(
        "only the channel's Bob may confirm it on chain, not {caller}")),
    "ChannelsCallerNotParticipant": ("NOT_A_PARTY", _says(
        "{caller} is not a party of {channel}: only its Alice or Bob may close it")),
    "ChannelsInvalidParties": ("INVALID_PARTIES", _says(
        "the contract refuses the parties {alice} and {bob}: they must be two distinct non-zero addresses")),
    "ChannelsInvalidDelta": ("INVALID_DELTA", _says(
        "the contract refuses a dispute window Δ of {delta} s: pass a positive --delta within its maximum")),
    "ChannelsDepositsTooLarge": ("DEPOSITS_TOO_LARGE", _says(
        "the deposits {amount_depositAlice} and {amount_depositBob} together exceed what a channel may hold "
        "(2**128 - 1 wei): open with less")),
    "ChannelsChannelExists": ("CHANNEL_EXISTS", _says(
        "channel {channelId} was created on chain already: `perun status` shows it")),
    "ChannelsWrongPhase": ("WRONG_PHASE", _says(
        "{channel} is {phase} on chain, where the contract does not allow this: `perun status --sync {cid}` "
        "shows where it stands")),
    "ChannelsWrongDeposit": ("WRONG_DEPOSIT", _says(
        "the contract expected a deposit of {amount_expected} and received {amount_received}")),
    "ChannelsConfirmTooLate": ("CONFIRM_TOO_LATE", _says(
        "the time to confirm {channel} ended at {time_deadline}: its Alice takes her deposit back with "
        "`perun refund {cid}`")),
    "ChannelsRefundTooEarly": ("REFUND_TOO_EARLY", _says(
        "{channel} can be refunded only once the peer's time to confirm it ends, at {time_deadline}: run "
        "`perun refund {cid}` then")),
    "ChannelsWrongChannel": ("STATE_OF_ANOTHER_CHANNEL", _says(
        "the contract refuses a state of channel {received} for channel {expected}")),
    "ChannelsBalancesNotConserved": ("BALANCES_NOT_CONSERVED", _says(
        "the contract refuses a state whose balances {amount_balanceAlice} and {amount_balanceBob} do not add up "
        "to the deposits, {amount_total}")),
    "ChannelsInvalidSignature": ("INVALID_SIGNATURE", _says(
        "the contract found the state signed by {recovered}, not by {expectedSigner}")),
    "ChannelsStaleVersion": ("STALE_VERSION", _stale),
    "ChannelsDisputeWindowOver": ("DISPUTE_WINDOW_OVER", _says(
        "the dispute window of {channel} ended at {time_deadline}: no state replaces the registered one any "
        "more; `perun finalize {cid}` pays it out")),
    "ChannelsFinalizeTooEarly": ("FINALIZE_TOO_EARLY", _says(
        "{channel} can be finalized only once its dispute window ends, at {time_deadline}: the node finalizes "
        "it itself then, or run `perun finalize {cid}` again")),
    "ChannelsNothingToWithdraw": ("NOTHING_TO_WITHDRAW", _says(
        "no payout is owed to {account} in token {token}: nothing to withdraw")),
    "ChannelsWithdrawFailed": ("WITHDRAW_FAILED", _says(
        "{to} did not accept the ETH withdrawn to it: withdraw to an address that accepts ETH")),
    "ChannelsInvalidRecipient": ("INVALID_RECIPIENT", _says(
        "a withdrawal to the zero address would burn the funds: name another recipient")),
    # MSContract
    "MSContractTooManyNanocontracts": ("TOO_MANY_NANOCONTRACTS", _says(
        "the state lists {count} nanocontracts, more than MSContract takes: absorb terminated ones first")),
    "MSContractNanocontractsUnsorted": ("NANOCONTRACTS_UNSORTED", _says(
        "the state's nanocontracts are not in ascending nid order (at index {index}): the node that built it "
        "has a bug")),
    "MSContractAmountTooLarge": ("NANOCONTRACT_TOO_LARGE", _says(
        "nanocontract {nid} holds more than the channel's deposits")),
    "MSContractNotRegistered": ("NANOCONTRACT_NOT_REGISTERED", _says(
        "nanocontract {nid} is not registered on chain: register it first")),
    "MSContractWindowOpen": ("NANOCONTRACT_WINDOW_OPEN", _says(
        "nanocontract {nid} may be answered until {time_windowEnd}: it is executed after that (the node does "
        "it itself)")),
    "MSContractSettlementOver": ("SETTLEMENT_OVER", _says(
        "the time to execute nanocontracts in {channel} ended at {time_deadline}: `perun finalize {cid}` pays "
        "out as registered")),
    "MSContractWrongNanocontracts": ("WRONG_NANOCONTRACTS", _says(
        "finalize was given other nanocontracts than the registered state of {channelId} lists")),
    "MSContractNotConserved": ("NANOCONTRACT_NOT_CONSERVED", _says(
        "the app's result for nanocontract {nid} does not keep its funds (it raises what is blocked, lowers "
        "a release, or changes the total)")),
    "MSContractGasTooLow": ("GAS_TOO_LOW", _says(
        "the registration was sent with too little gas for the app: send it again with more")),
    "MSContractTerminated": ("NANOCONTRACT_TERMINATED", _says(
        "nanocontract {nid} blocks nothing any more: there is nothing to execute")),
    # Watchtowers (PaymentContract and MSContract, a tower's submissions)
    "WatchtowersWrongTower": ("TOWER_WRONG_TOWER", _says(
        "the authorisation names the tower {tower}, not {caller}: only that tower may submit it")),
    "WatchtowersWrongNanocontract": ("TOWER_WRONG_NANOCONTRACT", _says(
        "the authorisation is for nanocontract {authorised}, not {submitted} (0 is the channel's own state)")),
    "WatchtowersWrongVersion": ("TOWER_WRONG_VERSION", _says(
        "the authorisation is for version {authorised}, not {submitted}")),
    "WatchtowersWrongState": ("TOWER_WRONG_STATE", _says(
        "the authorisation is for another state (digest {authorised}) than the one submitted ({submitted})")),
    "WatchtowersWrongCall": ("TOWER_WRONG_CALL", _says(
        "the authorisation names another call than function {fun} with this argument")),
    "WatchtowersNotAParty": ("TOWER_NOT_AUTHORISED", _says(
        "the authorisation is signed by {signer}, who is not a party of the channel")),
    "WatchtowersRewardTooLarge": ("TOWER_REWARD_TOO_LARGE", _says(
        "the reward {amount_reward} is more than its payer holds in the state, {amount_limit}: "
        "authorise a smaller one")),
    # the apps
    "HashTimeLockUnknownFunction": ("HTLC_UNKNOWN_FUNCTION", _says("HashTimeLock has no function {fun}")),
    "HashTimeLockMalformed": ("HTLC_MALFORMED", _says("the hash-time lock's storage does not decode")),
    "HashTimeLockWrongCaller": ("HTLC_WRONG_CALLER", _says(
        "only the receiver claims or cancels a hash-time lock, and only the sender reclaims it")),
    "HashTimeLockSettled": ("HTLC_SETTLED", _says("the hash-time lock is settled already: nothing to claim")),
    "HashTimeLockWrongPreimage": ("HTLC_WRONG_PREIMAGE", _says(
        "the preimage's SHA-256 is {hashOfPreimage}, not the lock's {hashlock}: give the right preimage")),
    "HashTimeLockExpired": ("HTLC_EXPIRED", _says(
        "the hash-time lock timed out at {time_timeout}: only the sender may take it back now")),
    "HashTimeLockNotExpired": ("HTLC_NOT_EXPIRED", _says(
        "the hash-time lock runs until {time_timeout}: the sender may take it back only then")),
    "TicTacToeUnknownFunction": ("TICTACTOE_UNKNOWN_FUNCTION", _says("TicTacToe has no function {fun}")),
    "TicTacToeMalformed": ("TICTACTOE_MALFORMED", _says("the game's storage or the move does not decode")),
    "TicTacToeGameOver": ("TICTACTOE_GAME_OVER", _says("the game is over: absorb the nanocontract")),
    "TicTacToeNotYourTurn": ("TICTACTOE_NOT_YOUR_TURN", _says(
        "it is not this player's turn: wait for the other's move (or its timeout)")),
    "TicTacToeCellTaken": ("TICTACTOE_CELL_TAKEN", _says("cell {cell} is taken: choose an empty one")),
    "TicTacToeTooEarly": ("TICTACTOE_TOO_EARLY", _says(
        "the player to move has until {time_deadline}: claim the timeout after that")),
    "VirtualChannelUnknownFunction": ("VIRTUAL_UNKNOWN_FUNCTION", _says("VirtualChannel has no function {fun}")),
    "VirtualChannelMalformed": ("VIRTUAL_MALFORMED", _says(
        "the virtual channel's storage or signed state does not decode")),
    "VirtualChannelSettled": ("VIRTUAL_SETTLED", _says("this half of the virtual channel has settled already")),
    "VirtualChannelNotConserved": ("VIRTUAL_NOT_CONSERVED", _says(
        "the virtual channel's state does not add up to its two deposits")),
    "VirtualChannelInvalidSignature": ("VIRTUAL_INVALID_SIGNATURE", _says(
        "the virtual channel's state was not signed by {expected}")),
    "VirtualChannelTooEarly": ("VIRTUAL_TOO_EARLY", _says(
        "too early for the virtual channel: not before {time_until}")),
    "VirtualChannelSubmissionOver": ("VIRTUAL_SUBMISSION_OVER", _says(
        "the time to submit the virtual channel's states ended at {time_deadline}")),
    "VirtualChannelStaleVersion": ("VIRTUAL_STALE_VERSION", _says(
        "version {stored} of the virtual channel is stored on chain already (this one is {submitted})")),
}
