"""Scenario files: YAML with parties, channels and an ordered list of steps (docs/scenarios.md).

`load(path)` checks a file against the schema below and returns a `Scenario`; a wrong file
raises `ScenarioError` naming the file, the line, the field and what was expected. Every step
keeps its line, so the runner can say where a failed assertion was written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from perun import errors
from perun.core.amounts import parse_amount
from perun.core.apps import APPS
from perun.core.multihop import FailureCode
from perun.core.route import MAX_DESCRIPTION, MAX_HOPS, MAX_MIN_FINAL, PPM
from perun.core.virtual import MAX_SETTLE_DELAY
from perun.node import CRASH_POINTS
from perun.protocols.multihop import ForwardPolicy
from perun.protocols.tower import Tower
from perun.protocols.virtual import HubPolicy
from perun.wire.messages import MESSAGES, ErrorCode

DEFAULT_FUNDS = 100 * 10**18
DEFAULT_DELTA = 600
DEFAULT_TOWER_FUNDS = 10**18  # a tower pays gas only
DEFAULT_EXPIRY = 3600  # seconds an invoice may be paid for
DEFAULT_PAY_TIMEOUT = 5.0  # seconds a `pay_invoice` waits for the preimage
TOWER_CRASH_POINTS = Tower.crash_points
TOWER_STAGES = ("none", "watching", "closing", "closed")  # a tower's record of a channel ("none": it holds none)
MESSAGE_TYPES = {cls.__name__ for cls in MESSAGES.values()}
KINDS = ("payment", "multistate")
# The fields of a `nanocontract` step that each app needs (and no other app takes).
APP_FIELDS = {"HashTimeLock": ("amount", "preimage", "timeout"), "TicTacToe": ("stakes", "first", "move_timeout")}
# The apps a scenario can create (not every app in APPS: VirtualChannel has no scenario fields yet).
FUNCTIONS = {name: tuple(APPS[name].functions) for name in APP_FIELDS}  # app -> its function names


class ScenarioError(errors.ValidationError):
    """A scenario file that does not follow the schema."""


@dataclass(frozen=True)
class Party:
    name: str
    funds: int
    key: bytes | None  # None: derived from the name
    hub: HubPolicy | None = None  # serves as Ingrid for virtual channels
    accept_virtual: bool = True  # agrees to a virtual channel that blocks its cash
    towers: tuple[str, ...] = ()  # the watchtowers its node hands the states of its payment channels to
    reward: int = 0  # what it offers a tower that refutes for it (at most its balance in the state)
    forward: ForwardPolicy | None = None  # forwards multi-hop payments, for these fees
    response_timeout: float | None = None  # seconds its node waits for a peer's answer (None: the runner's default)
    reply_time: float | None = None  # the seed's T: seconds a peer has to answer its proposals (None: the node's)


@dataclass(frozen=True)
class TowerSpec:
    """A watchtower (docs/protocol.md §12): no channel of its own; the parties that name it hand
    it their states."""

    name: str
    funds: int
    key: bytes | None  # None: derived from the name


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    alice: str
    bob: str
    deposits: tuple[int, int]
    delta: int
    token: str  # "ETH" or "erc20" (a test token the runner deploys and mints)
    kind: str = "payment"  # or "multistate": cash and nanocontracts, on MSContract


@dataclass(frozen=True)
class VirtualSpec:
    """A virtual payment channel γ between `alice` and `bob` through `ingrid`: two halves, in the
    multistate channels `ledgers` (Alice–Ingrid, Ingrid–Bob)."""

    name: str
    alice: str
    ingrid: str
    bob: str
    ledgers: tuple[str, str]
    deposits: tuple[int, int]  # what alice and bob block (Ingrid blocks the same, on the other side)
    validity: int  # seconds after the latest block's time when `open` runs
    window: int  # the ends' submission window after validity, in seconds
    fee: int = 0  # what Alice pays Ingrid for it, in the channel state that funds her half

    @property
    def ends(self) -> tuple[str, str]:
        return self.alice, self.bob


@dataclass(frozen=True)
class NanocontractSpec:
    """A nanocontract a `nanocontract` step creates; `name` is the file's handle for its nid."""

    name: str
    channel: str
    app: str  # HashTimeLock or TicTacToe
    by: str  # who proposes it: a lock's sender
    line: int
    amount: int = 0  # HashTimeLock: what `by` locks for the other party
    preimage: bytes = b""  # HashTimeLock: 32 bytes, whose SHA-256 is the hashlock
    timeout: int = 0  # HashTimeLock: seconds after the latest block when the step runs
    stakes: tuple[int, int] = (0, 0)  # TicTacToe: [alice's, bob's] (the channel's alice and bob)
    first: str = ""  # TicTacToe: the party who moves first
    move_timeout: int = 0  # TicTacToe: seconds a player has for a move on chain


@dataclass(frozen=True)
class InvoiceSpec:
    """An invoice an `invoice` step makes (`name` is the file's handle for it), and the
    `pay_invoice` step that pays it, if any: its payer and route (channel names, the payer's
    first); each lock of the route is a nanocontract named `name@channel`."""

    name: str
    payee: str
    amount: int
    line: int
    payer: str = ""
    route: tuple[str, ...] = ()
    paid_at: int = 0  # the line of the step that pays it

    def locks(self) -> tuple[str, ...]:
        return tuple(f"{self.name}@{channel}" for channel in self.route)


@dataclass(frozen=True)
class Step:
    """One step: `action` names it, `args` holds its checked fields, `fails` the error name it
    must raise (or None)."""

    line: int
    index: int
    action: str
    args: dict[str, Any]
    fails: str | None = None
    lines: dict[str, int] = field(default_factory=dict)  # field -> its line (for assertions)


@dataclass(frozen=True)
class Scenario:
    file: Path
    name: str
    title: str
    description: str
    parties: dict[str, Party]
    channels: dict[str, ChannelSpec]
    steps: tuple[Step, ...] = field(default_factory=tuple)
    nanocontracts: dict[str, NanocontractSpec] = field(default_factory=dict)  # by name, as the steps create them
    virtual: dict[str, VirtualSpec] = field(default_factory=dict)
    towers: dict[str, TowerSpec] = field(default_factory=dict)
    invoices: dict[str, InvoiceSpec] = field(default_factory=dict)  # by name, as the steps make them

    def clients(self, tower: str) -> list[str]:
        """The parties that hand their states to `tower`."""
        return [p.name for p in self.parties.values() if tower in p.towers]


# ----------------------------------------------------------------------------- field types


class _Bad(Exception):
    """A value that does not fit: says what was expected."""


def _int(min_value: int = 0) -> Callable[[Any, Scenario], int]:
    def check(value: Any, _: Scenario) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < min_value:
            raise _Bad(f"an integer >= {min_value}")
        return value
    return check


def _seconds(value: Any, _: Scenario) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _Bad("a number of seconds >= 0")
    return float(value)


def _positive_seconds(value: Any, scenario: Scenario) -> float:
    if _seconds(value, scenario) == 0:
        raise _Bad("a number of seconds > 0")
    return float(value)


def _bool(value: Any, _: Scenario) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _amount(value: Any, _: Scenario | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Bad("an amount such as 1eth, 20gwei or 1000 (wei)")
    if isinstance(value, int):
        if value < 0:
            raise _Bad("an amount >= 0")
        return value
    try:
        return parse_amount(value)
    except ValueError as exc:
        raise _Bad(f"an amount such as 1eth, 20gwei or 1000 (wei): {exc}") from None


def _change(value: Any, _: Scenario) -> int:
    """A signed amount: +1eth, -0.5eth, 0, -200."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip()[:1] in "+-":
        text = value.strip()
        return (-1 if text[0] == "-" else 1) * _amount(text[1:])
    return _amount(value)


def _party(value: Any, scenario: Scenario) -> str:
    if value not in scenario.parties:
        raise _Bad(f"a party: one of {', '.join(scenario.parties)}")
    return value


def _tower(value: Any, scenario: Scenario) -> str:
    if value not in scenario.towers:
        raise _Bad(f"a tower: one of {', '.join(scenario.towers) or 'none (the file has no towers:)'}")
    return value


def _tower_list(value: Any, scenario: Scenario) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _Bad("a list of towers, e.g. [watchtower]")
    towers = tuple(_tower(v, scenario) for v in value)
    if len(set(towers)) != len(towers):
        raise _Bad("a list of different towers")
    return towers


def _member(value: Any, scenario: Scenario) -> str:
    """A party or a tower: each runs a node of its own."""
    if value not in scenario.parties and value not in scenario.towers:
        raise _Bad(f"a party or a tower: one of {', '.join([*scenario.parties, *scenario.towers])}")
    return value


def _channel(value: Any, scenario: Scenario) -> str:
    if value not in scenario.channels:
        virtual = f" ({value} is a virtual channel)" if value in scenario.virtual else ""
        raise _Bad(f"a channel: one of {', '.join(scenario.channels)}{virtual}")
    return value


def _closable(value: Any, scenario: Scenario) -> str:
    """The channel of a `cooperative_close`: one on chain, of either kind."""
    gamma = scenario.virtual.get(value) if isinstance(value, str) else None
    if gamma is not None:  # its final state goes to Ingrid, not to a contract
        raise _Bad(f"a channel: one of {', '.join(scenario.channels)} (virtual channel {value} closes cooperatively "
                   f"with close, the fast close through {gamma.ingrid})")
    return _channel(value, scenario)


def _virtual(value: Any, scenario: Scenario) -> str:
    if value not in scenario.virtual:
        raise _Bad(f"a virtual channel: one of {', '.join(scenario.virtual) or 'none (the file has no virtual:)'}")
    return value


def _any_channel(value: Any, scenario: Scenario) -> str:
    """A channel, or a virtual channel: the steps that take both."""
    if value not in scenario.channels and value not in scenario.virtual:
        raise _Bad(f"a channel or virtual channel: one of {', '.join([*scenario.channels, *scenario.virtual])}")
    return value


def _choice(*options: str) -> Callable[[Any, Scenario], str]:
    def check(value: Any, _: Scenario) -> str:
        if value not in options:
            raise _Bad(f"one of {', '.join(options)}")
        return value
    return check


def _version(value: Any, scenario: Scenario) -> int | str:
    if value == "latest":
        return value
    return _int(0)(value, scenario)


def _balances(value: Any, scenario: Scenario) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise _Bad("[alice's, bob's] amounts")
    return _amount(value[0]), _amount(value[1])


def _payout(value: Any, scenario: Scenario) -> tuple[int, int] | dict[str, int]:
    """[alice's, bob's] for a channel; {party: amount} for a virtual channel (its ledger channels'
    payouts to each of its parties)."""
    if isinstance(value, dict) and value:
        return {_party(k, scenario): _amount(v) for k, v in value.items()}
    if not isinstance(value, list) or len(value) != 2:
        raise _Bad("[alice's, bob's] amounts (for a virtual channel: {party: amount, ...})")
    return _balances(value, scenario)


def _party_amounts(value: Any, scenario: Scenario) -> dict[str, int]:
    """{alice: -1eth, bob: +1eth, watchtower: +0.01eth}: parties' and towers' wallets."""
    if not isinstance(value, dict) or not value:
        raise _Bad("a mapping of party (or tower) to signed amount, e.g. {alice: -1eth, bob: +1eth}")
    return {_member(k, scenario): _change(v, scenario) for k, v in value.items()}


def _owed(value: Any, scenario: Scenario) -> dict[str, int]:
    """{bob: 300, alice: 0}: the deferred payouts the contracts hold for parties (or towers)."""
    if not isinstance(value, dict) or not value:
        raise _Bad("a mapping of party (or tower) to amount, e.g. {bob: 300}")
    return {_member(k, scenario): _amount(v) for k, v in value.items()}


def _party_stages(value: Any, scenario: Scenario) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise _Bad("a mapping of party to stage, e.g. {alice: closed, bob: closed}")
    stages = ("proposed", "accepted", "failed", "initialising", "open", "closing", "closed", "lost")
    return {_party(k, scenario): _choice(*stages)(v, scenario) for k, v in value.items()}


def _events(value: Any, _: Scenario) -> tuple[tuple[str, dict[str, Any]], ...]:
    """[Initialising, Initialised, {CloseRegistered: {version: 1, by: bob}}, Finalized]."""
    if not isinstance(value, list):
        raise _Bad("a list of event names, or {Name: {arg: value}}")
    result: list[tuple[str, dict[str, Any]]] = []
    for item in value:
        if isinstance(item, str):
            result.append((item, {}))
        elif isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict):
            (name, args), = item.items()
            result.append((str(name), {str(k): _event_arg(v) for k, v in args.items()}))
        else:
            raise _Bad("a list of event names, or {Name: {arg: value}}")
    return tuple(result)


def _event_arg(value: Any) -> Any:
    """Amounts as written (1eth), numbers and names as they are (a party's name stands for its
    address)."""
    if isinstance(value, str) and value[:1].isdigit() and not value.startswith("0x"):
        return _amount(value)
    return value


def _state(value: Any, scenario: Scenario) -> dict[str, Any]:
    """{party: alice, version: 3, balances: [9eth, 6eth]}: the state the party's store holds;
    in a multistate channel also `nanocontracts: [names]`, those its channel state lists; in a
    virtual channel also `final` and `settled`."""
    if not isinstance(value, dict) or "party" not in value:
        raise _Bad("{party: P, version: N, balances: [a, b]} (version and balances optional)")
    extra = set(value) - {"party", "version", "balances", "nanocontracts", "final", "settled"}
    if extra:
        raise _Bad(f"only party, version, balances, nanocontracts, final and settled (not {', '.join(sorted(extra))})")
    result: dict[str, Any] = {"party": _party(value["party"], scenario)}
    if "version" in value:
        result["version"] = _int(0)(value["version"], scenario)
    if "balances" in value:
        result["balances"] = _balances(value["balances"], scenario)
    for key in ("final", "settled"):
        if key in value:
            result[key] = _bool(value[key], scenario)
    if "nanocontracts" in value:
        if not isinstance(value["nanocontracts"], list):
            raise _Bad("nanocontracts: a list of nanocontract names, [] for none")
        result["nanocontracts"] = tuple(_nanocontract(n, scenario) for n in value["nanocontracts"])
    return result


HALF_CHECKS = ("registered", "version", "balances", "settled")


def _halves(value: Any, scenario: Scenario) -> dict[str, dict[str, Any]]:
    """{ai: {registered: true, version: 2, balances: [1eth, 3eth], settled: false}, ib: ...}: a
    virtual channel's halves as MSContract holds them, by ledger channel."""
    form = "{LEDGER: {registered: B, version: N, balances: [a, b], settled: B}, ...} (at least one check each)"
    if not isinstance(value, dict) or not value:
        raise _Bad(form)
    result = {}
    for ledger, checks in value.items():
        _channel(ledger, scenario)
        if not isinstance(checks, dict) or not checks:
            raise _Bad(form)
        extra = set(checks) - set(HALF_CHECKS)
        if extra:
            raise _Bad(f"only {', '.join(HALF_CHECKS)} for a half (not {', '.join(sorted(extra))})")
        half: dict[str, Any] = {}
        for key in ("registered", "settled"):
            if key in checks:
                half[key] = _bool(checks[key], scenario)
        if "version" in checks:
            half["version"] = _int(0)(checks["version"], scenario)
        if "balances" in checks:
            half["balances"] = _balances(checks["balances"], scenario)
        result[ledger] = half
    return result


def _ledgers(value: Any, scenario: Scenario) -> tuple[str, str]:
    if not isinstance(value, list) or len(value) != 2:
        raise _Bad("[Alice–Ingrid's, Ingrid–Bob's] multistate channels")
    return _channel(value[0], scenario), _channel(value[1], scenario)


def _error_reply(value: Any, scenario: Scenario) -> tuple[dict[str, str], ...]:
    """{from: bob, code: STALE_VERSION}: the party refused a message with that code; or a list of
    these, for a refusal that passes through several parties."""
    result = []
    for item in value if isinstance(value, list) and value else [value]:
        if not isinstance(item, dict) or set(item) != {"from", "code"}:
            raise _Bad("{from: P, code: CODE}, or a list of these")
        if item["code"] not in ErrorCode.__members__:
            raise _Bad(f"an error code: one of {', '.join(ErrorCode.__members__)}")
        result.append({"from": _member(item["from"], scenario), "code": item["code"]})
    return tuple(result)


TOWER_CHECKS = ("version", "stage", "refuted", "reward_paid", "nanocontracts")


def _tower_checks(value: Any, scenario: Scenario) -> dict[str, dict[str, Any]]:
    """{watchtower: {version: 3, stage: closing, refuted: 3, reward_paid: 0.01eth}}: each tower's
    record of the expect's channel; for a multistate channel also `nanocontracts: {pay: 1}`, the
    version of each nanocontract's state it holds. (Which checks go with which kind of channel is
    the step's check: Loader.check_tower_expect.)"""
    form = ("{TOWER: {version: N, stage: S, refuted: N, reward_paid: amount, nanocontracts: {NC: N}}, ...} "
            "(at least one check each)")
    if not isinstance(value, dict) or not value:
        raise _Bad(form)
    result = {}
    for name, checks in value.items():
        _tower(name, scenario)
        if not isinstance(checks, dict) or not checks:
            raise _Bad(form)
        extra = set(checks) - set(TOWER_CHECKS)
        if extra:
            raise _Bad(f"only {', '.join(TOWER_CHECKS)} for a tower (not {', '.join(sorted(extra))})")
        check: dict[str, Any] = {}
        for key in ("version", "refuted"):
            if key in checks:
                check[key] = _int(0)(checks[key], scenario)
        if "stage" in checks:
            check["stage"] = _choice(*TOWER_STAGES)(checks["stage"], scenario)
        if "reward_paid" in checks:
            check["reward_paid"] = _amount(checks["reward_paid"])
        if "nanocontracts" in checks:
            nanos = checks["nanocontracts"]
            if not isinstance(nanos, dict) or not nanos:
                raise _Bad("nanocontracts: a mapping of nanocontract to the version the tower holds, e.g. {pay: 1}")
            check["nanocontracts"] = {_nanocontract(nc, scenario): _int(0)(v, scenario) for nc, v in nanos.items()}
        result[name] = check
    return result


def _handle(value: Any, scenario: Scenario) -> str:
    """A name a step gives what it makes: letters, digits, - and _, and no party's or tower's
    (in event patterns a party's name stands for its address, a nanocontract's for its nid)."""
    if not isinstance(value, str) or not value.replace("-", "_").isidentifier():
        raise _Bad("a name of letters, digits, - and _ (not starting with a digit)")
    if value in scenario.parties:
        raise _Bad("a name that is not a party's")
    if value in scenario.towers:
        raise _Bad("a name that is not a tower's")
    return value


def _new_name(value: Any, scenario: Scenario) -> str:
    """The handle a `nanocontract` step gives its nanocontract: new."""
    if value in scenario.nanocontracts:
        raise _Bad(f"a new name: line {scenario.nanocontracts[value].line} creates a nanocontract {value} already")
    return _handle(value, scenario)


def _new_invoice(value: Any, scenario: Scenario) -> str:
    """The handle an `invoice` step gives its invoice: new, and no virtual channel's (its locks
    are named `invoice@channel`, as a virtual channel's halves `g@ledger`)."""
    if value in scenario.invoices:
        raise _Bad(f"a new name: line {scenario.invoices[value].line} makes an invoice {value} already")
    if value in scenario.virtual:
        raise _Bad("a name that is not a virtual channel's")
    return _handle(value, scenario)


def _invoice(value: Any, scenario: Scenario) -> str:
    return _earlier(value, scenario.invoices, "an invoice made")


def _description(value: Any, _: Scenario) -> str:
    if not isinstance(value, str) or len(value.encode()) > MAX_DESCRIPTION:
        raise _Bad(f"a text of at most {MAX_DESCRIPTION} bytes")
    return value


def _route(value: Any, scenario: Scenario) -> tuple[str, ...]:
    """The channels a multi-hop payment goes over, the payer's first (the step checks the path)."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_HOPS:
        raise _Bad(f"a list of 1 to {MAX_HOPS} channels, the payer's first, e.g. [ab, bc, cd]")
    route = tuple(_channel(v, scenario) for v in value)
    if len(set(route)) != len(route):
        raise _Bad("a list of different channels")
    return route


def _parties(value: Any, scenario: Scenario) -> tuple[str, ...]:
    """A list of parties, in the file's order of parties (so that two lists compare as sets)."""
    if not isinstance(value, list):
        raise _Bad("a list of parties, [] for none")
    named = {_party(v, scenario) for v in value}
    return tuple(p for p in scenario.parties if p in named)


PAYMENT_CHECKS = ("preimage", "claimed", "outcome", "failure")
OUTCOMES = ("settled", "failed", "failing", "pending", "none")  # a party's part in a payment (core.multihop.outcome)


def _payment(value: Any, scenario: Scenario) -> dict[str, Any]:
    """{invoice: coffee, preimage: [alice, dave], claimed: [dave], outcome: {alice: failed},
    failure: {hop: bob, code: NEXT_HOP_REFUSED}}: of an invoice paid by an earlier step, who
    knows the preimage, whose lock towards it is claimed, where each party's part stands, and
    the failure that came back to the payer."""
    form = ("{invoice: NAME, preimage: [parties], claimed: [parties], outcome: {party: outcome}, failure: {hop: P, "
            "code: CODE}} (at least one but invoice)")
    if not isinstance(value, dict) or "invoice" not in value:
        raise _Bad(form)
    extra = set(value) - {"invoice", *PAYMENT_CHECKS}
    if extra:
        raise _Bad(f"only invoice, {', '.join(PAYMENT_CHECKS)} (not {', '.join(sorted(extra))})")
    if not set(value) & set(PAYMENT_CHECKS):
        raise _Bad(form)
    name = _invoice(value["invoice"], scenario)
    if not scenario.invoices[name].payer:
        raise _Bad(f"an invoice paid by an earlier step (no pay_invoice pays {name})")
    result: dict[str, Any] = {"invoice": name}
    for key in ("preimage", "claimed"):
        if key in value:
            result[key] = _parties(value[key], scenario)
    if "outcome" in value:
        outcomes = value["outcome"]
        if not isinstance(outcomes, dict) or not outcomes:
            raise _Bad(f"outcome: a mapping of party to one of {', '.join(OUTCOMES)}, e.g. {{alice: failed}}")
        result["outcome"] = {_party(p, scenario): _choice(*OUTCOMES)(o, scenario) for p, o in outcomes.items()}
    if "failure" in value:
        failure = value["failure"]
        codes = [code.name for code in FailureCode]
        if not isinstance(failure, dict) or not failure or set(failure) - {"hop", "code"}:
            raise _Bad("failure: {hop: P, code: CODE} (either optional): the hop whose failure came back to the payer")
        # `none`: the failure names no hop or code (it was unreadable, or the lock timed out).
        result["failure"] = {**({"hop": "none" if failure["hop"] == "none" else _party(failure["hop"], scenario)}
                                if "hop" in failure else {}),
                             **({"code": _choice(*codes, "none")(failure["code"], scenario)} if "code" in failure else {})}
    return result


def _forward(value: Any, scenario: Scenario) -> ForwardPolicy:
    """{base_fee: 0.001eth, fee_ppm: 1000}, each optional: what a party charges to forward."""
    if not isinstance(value, dict):
        raise _Bad("{base_fee: amount, fee_ppm: N} (each optional; {} forwards for free)")
    extra = set(value) - {"base_fee", "fee_ppm"}
    if extra:
        raise _Bad(f"only base_fee and fee_ppm (not {', '.join(sorted(extra))})")
    ppm = value.get("fee_ppm", 0)
    if isinstance(ppm, bool) or not isinstance(ppm, int) or not 0 <= ppm <= PPM:
        raise _Bad(f"fee_ppm: an integer from 0 to {PPM:,} (millionths of the amount forwarded)")
    try:
        base_fee = _amount(value.get("base_fee", 0))
    except _Bad as exc:
        raise _Bad(f"base_fee: {exc}") from None
    return ForwardPolicy(base_fee=base_fee, fee_ppm=ppm)


def _earlier(value: Any, made: dict[str, Any], what: str) -> str:
    """The name an earlier step gave what it made (`made`, by name)."""
    if value not in made:
        known = ", ".join(made)
        raise _Bad(f"{what} by an earlier step: " + (f"one of {known}" if known else "there is none"))
    return value


def _nanocontract(value: Any, scenario: Scenario) -> str:
    return _earlier(value, scenario.nanocontracts, "a nanocontract created")


def _preimage(value: Any, _: Scenario) -> bytes:
    """A text of 1 to 32 bytes, padded with zero bytes to 32; or exactly 32 bytes as 0x-hex."""
    form = "a text of 1 to 32 bytes (in quotes), or \"0x\" and 64 hex digits"
    if not isinstance(value, str):
        raise _Bad(form)
    if value.startswith("0x"):
        try:
            data = bytes.fromhex(value[2:])
        except ValueError:
            raise _Bad(form) from None
        if len(data) != 32:
            raise _Bad(form)
        return data
    data = value.encode()
    if not 0 < len(data) <= 32:
        raise _Bad(form)
    return data.ljust(32, b"\0")


def _function(value: Any, _: Scenario) -> str:
    names = sorted({f for functions in FUNCTIONS.values() for f in functions})
    if value not in names:
        raise _Bad(f"a function: one of {', '.join(names)}")
    return value


def _cell(value: Any, scenario: Scenario) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 8:
        raise _Bad("a cell from 0 to 8 (row by row: 0 1 2 / 3 4 5 / 6 7 8)")
    return value


NANOCONTRACT_CHECKS = ("version", "blocked", "released", "terminated")


def _nanocontract_checks(value: Any, scenario: Scenario) -> tuple[dict[str, Any], ...]:
    """{name: pay, party: bob, version: 1, blocked: [0, 0], released: [0, 1eth], terminated: true},
    or a list of them: a nanocontract as a party holds it (with `party`) or as the chain does."""
    form = ("{name: N, party: P, version: V, blocked: [a, b], released: [a, b], terminated: true} "
            "(party optional, at least one of version, blocked, released, terminated), or a list of them")
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _Bad(form)
    result = []
    for item in items:
        if not isinstance(item, dict) or "name" not in item:
            raise _Bad(form)
        extra = set(item) - {"name", "party", *NANOCONTRACT_CHECKS}
        if extra:
            raise _Bad(f"only name, party, {', '.join(NANOCONTRACT_CHECKS)} (not {', '.join(sorted(extra))})")
        name = _nanocontract(item["name"], scenario)
        if not set(item) & set(NANOCONTRACT_CHECKS):
            raise _Bad(f"at least one of {', '.join(NANOCONTRACT_CHECKS)} for {name}")
        check: dict[str, Any] = {"name": name}
        if "party" in item:
            check["party"] = _party(item["party"], scenario)
            channel = scenario.channels[scenario.nanocontracts[name].channel]
            if check["party"] not in (channel.alice, channel.bob):
                raise _Bad(f"a party of {name}'s channel {channel.name} ({channel.alice} or {channel.bob}) as party")
        if "version" in item:
            check["version"] = _int(0)(item["version"], scenario)
        for key in ("blocked", "released"):
            if key in item:
                check[key] = _balances(item[key], scenario)
        if "terminated" in item:
            check["terminated"] = _bool(item["terminated"], scenario)
        result.append(check)
    return tuple(result)


# A step's fields: name -> (check, required). `channel` may be left out when there is one.
Fields = dict[str, tuple[Callable[[Any, Scenario], Any], bool]]
CHANNEL: Fields = {"channel": (_channel, False)}
ANY_CHANNEL: Fields = {"channel": (_any_channel, False)}  # a channel, or a virtual channel
NANO: Fields = {"by": (_party, True), "nanocontract": (_nanocontract, True)}  # the channel is the nanocontract's
CALL: Fields = {"function": (_function, True), "cell": (_cell, False), "preimage": (_preimage, False)}
ACTIONS: dict[str, tuple[Fields, str | None]] = {
    # action: (fields, the field a scalar shorthand fills: `open: ab`, `offline: bob`)
    "open": ({**ANY_CHANNEL, "confirm": (_bool, False)}, "channel"),
    "pay": ({**ANY_CHANNEL, "from": (_party, True), "amount": (_amount, True), "send": (_bool, False),
             "answer": (_bool, False)}, None),
    "cooperative_close": ({"channel": (_closable, False), "by": (_party, True), "version": (_int(1), False)}, None),
    "close": ({**ANY_CHANNEL, "by": (_party, True), "version": (_version, False),
               "timeout": (_positive_seconds, False)}, None),
    "finalize": ({**CHANNEL, "by": (_party, True)}, None),
    "refund": ({**CHANNEL, "by": (_party, True)}, None),
    "offline": ({"party": (_member, True)}, "party"),
    "online": ({"party": (_member, True)}, "party"),
    "crash": ({"party": (_member, True), "at": (_choice(*CRASH_POINTS, *TOWER_CRASH_POINTS), False)}, "party"),
    "restart": ({"party": (_member, True)}, "party"),
    "drop": ({"from": (_member, True), "message": (_choice(*sorted(MESSAGE_TYPES)), True),
              "count": (_int(1), False)}, None),
    "delay": ({"from": (_member, True), "message": (_choice(*sorted(MESSAGE_TYPES)), True),
               "seconds": (_seconds, True), "count": (_int(1), False)}, None),
    "replay": ({"from": (_member, True), "message": (_choice(*sorted(MESSAGE_TYPES)), True)}, None),
    "hold": ({"from": (_member, True), "message": (_choice(*sorted(MESSAGE_TYPES)), True)}, None),
    "release": ({"from": (_member, True)}, "from"),
    "garble": ({"from": (_member, True), "count": (_int(1), False)}, "from"),
    "forge": ({**CHANNEL, "from": (_party, True), "amount": (_amount, True), "signer": (_party, False)}, None),
    "wait": ({"seconds": (_int(1), False), "blocks": (_int(1), False), "deadline": (_channel, False),
              "window": (_nanocontract, False), "timeout": (_nanocontract, False),
              "validity": (_virtual, False), "offset": (_int(-10**9), False), "next": (_bool, False)}, None),
    "expect": ({**ANY_CHANNEL, "payout": (_payout, False), "wallets": (_party_amounts, False),
                "events": (_events, False), "stages": (_party_stages, False),
                "state": (_state, False), "error_reply": (_error_reply, False),
                "held": (_amount, False), "nanocontract": (_nanocontract_checks, False),
                "halves": (_halves, False), "tower": (_tower_checks, False), "payment": (_payment, False),
                "owed": (_owed, False)}, None),
    # Multistate channels: nanocontracts are named by the step that creates them.
    "nanocontract": ({**CHANNEL, "by": (_party, True), "name": (_new_name, True), "app": (_choice(*APP_FIELDS), True),
                      "amount": (_amount, False), "preimage": (_preimage, False), "timeout": (_int(1), False),
                      "stakes": (_balances, False), "first": (_party, False), "move_timeout": (_int(1), False)},
                     None),
    "call": ({**NANO, **CALL}, None),
    "absorb": (NANO, None),
    "register": ({**NANO, "version": (_version, False)}, None),
    "execute": ({**NANO, **CALL}, None),
    "enforce": ({**NANO, **CALL}, None),
    # Virtual channels: an end submits a state of γ from its store on chain, by hand.
    "submit": ({"channel": (_virtual, True), "by": (_party, True), "version": (_int(1), True),
                "balances": (_balances, False)}, None),
    # Watchtowers: a refutation sent by hand, with a state from the client's store and the client's
    # authorisation for it, naming `tower` (by default the sender).
    "refute": ({**CHANNEL, "by": (_member, True), "version": (_int(1), True), "client": (_party, False),
                "tower": (_tower, False)}, None),
    # Multi-hop payments: the payee makes an invoice, the payer pays it over a route of channels.
    "invoice": ({"by": (_party, True), "name": (_new_invoice, True), "amount": (_amount, True),
                 "expiry": (_int(1), False), "min_final": (_int(0), False), "description": (_description, False)},
                None),
    "pay_invoice": ({"from": (_party, True), "invoice": (_invoice, True), "route": (_route, True),
                     "timeout": (_positive_seconds, False), "amount": (_amount, False), "secret": (_preimage, False)},
                    None),
    # Opening and payouts by hand (docs/protocol.md §6, 7 and 10): Bob's confirmation with his key,
    # the test token's deny list, a deferred payout withdrawn.
    "confirm": ({**CHANNEL, "by": (_party, True)}, None),
    "deny": ({"party": (_member, True)}, "party"),
    "allow": ({"party": (_member, True)}, "party"),
    "withdraw": ({"by": (_member, True), "to": (_member, False)}, None),
}
WAIT_FORMS = ("seconds", "blocks", "deadline", "window", "timeout", "validity")
OFFSET_FORMS = ("deadline", "window", "timeout", "validity")
EXPECT_CHECKS = ("payout", "wallets", "events", "stages", "state", "error_reply", "held", "nanocontract", "halves",
                 "tower", "payment", "owed")
CHANNEL_CHECKS = ("payout", "events", "stages", "state", "halves", "tower")  # an expect with one of these names a channel



# ----------------------------------------------------------------------------- loading


def load(path: Path | str) -> Scenario:
    """Reads and checks the scenario at `path`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ScenarioError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return _Loader(path).scenario(root)


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.forwarding: dict[str, yaml.Node] = {}  # the parties with `forward`: its node, checked with the channels

    def fail(self, node: yaml.Node | None, what: str) -> ScenarioError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return ScenarioError(f"{self.path}{line}: {what}")

    def mapping(self, node: yaml.Node | None, what: str) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what}: expected a mapping (key: value lines)")
        result: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise self.fail(key, f"{what}: keys must be plain names")
            if key.value in result:
                raise self.fail(key, f"{what}: {key.value!r} appears twice")
            result[key.value] = value
        return result

    def plain(self, node: yaml.Node | None) -> Any:
        return yaml.SafeLoader(yaml.serialize(node)).get_single_data() if node is not None else None

    def scenario(self, root: yaml.Node | None) -> Scenario:
        top = self.mapping(root, "the file")
        unknown = set(top) - {"title", "description", "parties", "towers", "channels", "virtual", "steps"}
        if unknown:
            key = sorted(unknown)[0]
            raise self.fail(top[key], f"unknown top-level field {key!r}: expected title, description, "
                                      "parties, towers, channels, virtual, steps")
        for required in ("title", "parties", "steps"):
            if required not in top:
                raise self.fail(root, f"missing field {required!r}")
        title = self.plain(top["title"])
        if not isinstance(title, str) or not title.strip():
            raise self.fail(top["title"], "title: expected a line of text")
        description = self.plain(top.get("description")) or ""
        if not isinstance(description, str):
            raise self.fail(top["description"], "description: expected text")
        scenario = Scenario(self.path, self.path.stem, title.strip(), description.strip(), {}, {})
        if "towers" in top:  # before the parties, which name them
            self.towers(top["towers"], scenario)
        self.parties(top["parties"], scenario)
        if "channels" in top:
            self.channels(top["channels"], scenario)
        if "virtual" in top:
            self.virtual(top["virtual"], scenario)
        for name, node in self.forwarding.items():
            if not any(c.kind == "multistate" and name in (c.alice, c.bob) for c in scenario.channels.values()):
                raise self.fail(node, f"party {name}: forward: {name} has no multistate channel to forward payments "
                                      "over")
        steps_node = top["steps"]
        if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
            raise self.fail(steps_node, "steps: expected a list of steps (- action: ...)")
        steps = tuple(self.step(node, i, scenario) for i, node in enumerate(steps_node.value, 1))
        return Scenario(scenario.file, scenario.name, scenario.title, scenario.description,
                        scenario.parties, scenario.channels, steps, scenario.nanocontracts, scenario.virtual,
                        scenario.towers, scenario.invoices)

    def key(self, fields: dict[str, yaml.Node], where: str) -> bytes | None:
        """A `key` field: 32 bytes of hex, quoted."""
        if "key" not in fields:
            return None
        text = self.plain(fields["key"])
        if isinstance(text, int):
            raise self.fail(fields["key"], f"{where}: key: expected quotes around it ('0x...'): "
                                           "unquoted, YAML reads it as a number")
        try:
            key = bytes.fromhex(str(text).removeprefix("0x"))
            if len(key) != 32:
                raise ValueError
        except ValueError:
            raise self.fail(fields["key"], f"{where}: key: expected 32 bytes of hex (0x...)") from None
        return key

    def towers(self, node: yaml.Node, scenario: Scenario) -> None:
        for name, value in self.mapping(node, "towers").items():
            where = f"tower {name}"
            if not name.replace("-", "_").isidentifier():
                raise self.fail(value, f"{where}: expected a name of letters, digits, - and _ (not starting with a "
                                       "digit)")
            fields = self.mapping(value, where) if not _is_null(value) else {}
            for key in set(fields) - {"funds", "key"}:
                raise self.fail(fields[key], f"{where}: unknown field {key!r}: expected funds, key")
            funds = self.field(fields, "funds", _amount, scenario, where, DEFAULT_TOWER_FUNDS)
            scenario.towers[name] = TowerSpec(name, funds, self.key(fields, where))

    def parties(self, node: yaml.Node, scenario: Scenario) -> None:
        for name, value in self.mapping(node, "parties").items():
            fields = self.mapping(value, f"party {name}") if not _is_null(value) else {}
            if name in scenario.towers:
                raise self.fail(value, f"party {name}: expected a name that no tower has")
            for key in set(fields) - {"funds", "key", "hub", "accept_virtual", "towers", "reward", "forward",
                                      "response_timeout", "reply_time"}:
                raise self.fail(fields[key], f"party {name}: unknown field {key!r}: expected funds, key, hub, "
                                             "accept_virtual, towers, reward, forward, response_timeout, reply_time")
            funds = self.field(fields, "funds", _amount, scenario, f"party {name}", DEFAULT_FUNDS)
            accept_virtual = self.field(fields, "accept_virtual", _bool, scenario, f"party {name}", True)
            hub = self.hub(fields["hub"], scenario, f"party {name}: hub") if "hub" in fields else None
            towers = self.field(fields, "towers", _tower_list, scenario, f"party {name}", ())
            reward = self.field(fields, "reward", _amount, scenario, f"party {name}", 0)
            if "reward" in fields and not towers:
                raise self.fail(fields["reward"], f"party {name}: reward goes with towers, to pay them")
            forward = self.field(fields, "forward", _forward, scenario, f"party {name}")
            if forward is not None:
                self.forwarding[name] = fields["forward"]
            response_timeout = self.field(fields, "response_timeout", _positive_seconds, scenario, f"party {name}")
            reply_time = self.field(fields, "reply_time", _positive_seconds, scenario, f"party {name}")
            scenario.parties[name] = Party(name, funds, self.key(fields, f"party {name}"), hub, accept_virtual,
                                           towers, reward, forward, response_timeout, reply_time)

    def hub(self, node: yaml.Node, scenario: Scenario, where: str) -> HubPolicy:
        """{fast_close: false, capacity: 10eth, max_channels: 2, fee: 0.01eth}, each optional: Ingrid's
        policy."""
        fields = self.mapping(node, where)
        for key in set(fields) - {"fast_close", "capacity", "max_channels", "fee"}:
            raise self.fail(fields[key], f"{where}: unknown field {key!r}: expected fast_close, capacity, max_channels, "
                                         "fee")
        return HubPolicy(fee=self.field(fields, "fee", _amount, scenario, where, 0),
                         capacity=self.field(fields, "capacity", _amount, scenario, where),
                         max_channels=self.field(fields, "max_channels", _int(1), scenario, where),
                         fast_close=self.field(fields, "fast_close", _bool, scenario, where, True))

    def channels(self, node: yaml.Node, scenario: Scenario) -> None:
        for name, value in self.mapping(node, "channels").items():
            where = f"channel {name}"
            fields = self.mapping(value, where)
            for key in set(fields) - {"alice", "bob", "deposits", "delta", "token", "kind"}:
                raise self.fail(fields[key], f"{where}: unknown field {key!r}: expected alice, bob, deposits, delta, "
                                             "token, kind")
            for required in ("alice", "bob", "deposits"):
                if required not in fields:
                    raise self.fail(value, f"{where}: missing field {required!r}")
            alice = self.field(fields, "alice", _party, scenario, where)
            bob = self.field(fields, "bob", _party, scenario, where)
            if alice == bob:
                raise self.fail(fields["bob"], f"{where}: bob: expected a party other than alice")
            deposits = self.field(fields, "deposits", _balances, scenario, where)
            delta = self.field(fields, "delta", _int(1), scenario, where, DEFAULT_DELTA)
            token = self.field(fields, "token", _choice("ETH", "erc20"), scenario, where, "ETH")
            kind = self.field(fields, "kind", _choice(*KINDS), scenario, where, "payment")
            scenario.channels[name] = ChannelSpec(name, alice, bob, deposits, delta, token, kind)
            if len({c.token for c in scenario.channels.values()}) > 1:
                raise self.fail(fields.get("token", value), f"{where}: token: the channels of a scenario share one "
                                                            "unit (all ETH or all erc20), which its wallets are counted in")

    def virtual(self, node: yaml.Node, scenario: Scenario) -> None:
        keys = ("alice", "ingrid", "bob", "ledgers", "deposits", "validity", "window")
        for name, value in self.mapping(node, "virtual").items():
            where = f"virtual channel {name}"
            if not name.replace("-", "_").isidentifier():
                raise self.fail(value, f"{where}: expected a name of letters, digits, - and _ (not starting with a "
                                       "digit)")
            if name in scenario.channels:
                raise self.fail(value, f"{where}: expected a name that no channel has")
            fields = self.mapping(value, where)
            for key in set(fields) - {*keys, "fee"}:
                raise self.fail(fields[key], f"{where}: unknown field {key!r}: expected {', '.join(keys)}, fee")
            for required in keys:
                if required not in fields:
                    raise self.fail(value, f"{where}: missing field {required!r}")
            alice, ingrid, bob = (self.field(fields, key, _party, scenario, where) for key in ("alice", "ingrid", "bob"))
            if len({alice, ingrid, bob}) != 3:
                raise self.fail(value, f"{where}: alice, ingrid and bob are three different parties")
            ledgers = self.field(fields, "ledgers", _ledgers, scenario, where)
            for ledger, end in zip(ledgers, (alice, bob)):
                channel = scenario.channels[ledger]
                if channel.kind != "multistate":
                    raise self.fail(fields["ledgers"], f"{where}: ledgers: {ledger} is a payment channel; a virtual "
                                                       "channel's halves live in multistate channels")
                if {channel.alice, channel.bob} != {end, ingrid}:
                    raise self.fail(fields["ledgers"], f"{where}: ledgers: {ledger} is between {channel.alice} and "
                                                       f"{channel.bob}, not {end} and {ingrid}")
            deposits = self.field(fields, "deposits", _balances, scenario, where)
            validity = self.field(fields, "validity", _int(1), scenario, where)
            window = self.field(fields, "window", _int(1), scenario, where)
            delta = max(scenario.channels[ledger].delta for ledger in ledgers)
            if window <= delta:
                raise self.fail(fields["window"], f"{where}: window: expected more than the ledger channels' Δ "
                                                  f"({delta} s), got {window}")
            if validity <= delta + 1:
                raise self.fail(fields["validity"], f"{where}: validity: expected more than Δ + 1 = {delta + 1} s (the "
                                                    f"halves are registered at validity − Δ − 1), got {validity}")
            if validity + 3 * window > MAX_SETTLE_DELAY:
                raise self.fail(fields["validity"], f"{where}: validity: validity + 3 windows must be within 365 days "
                                                    "(MSContract's settleBy horizon)")
            fee = self.field(fields, "fee", _amount, scenario, where, 0)
            scenario.virtual[name] = VirtualSpec(name, alice, ingrid, bob, ledgers, deposits, validity, window, fee)

    def field(self, fields: dict[str, yaml.Node], key: str, check: Callable[[Any, Scenario], Any],
              scenario: Scenario, where: str, default: Any = None) -> Any:
        if key not in fields:
            return default
        try:
            return check(self.plain(fields[key]), scenario)
        except _Bad as exc:
            raise self.fail(fields[key], f"{where}: {key}: expected {exc}, got {self.plain(fields[key])!r}") from None

    def step(self, node: yaml.Node, index: int, scenario: Scenario) -> Step:
        entry = self.mapping(node, f"step {index}")
        fails_node = entry.pop("fails", None)
        if len(entry) != 1:
            raise self.fail(node, f"step {index}: expected one action ({', '.join(ACTIONS)}), "
                                  f"got {', '.join(entry) or 'none'}")
        (action, body), = entry.items()
        if action not in ACTIONS:
            raise self.fail(node, f"step {index}: unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
        spec, shorthand = ACTIONS[action]
        where = f"step {index} ({action})"
        if isinstance(body, yaml.MappingNode):
            fields = self.mapping(body, where)
        elif shorthand and isinstance(body, yaml.ScalarNode) and not _is_null(body):
            fields = {shorthand: body}
        elif _is_null(body) and not any(required for _, required in spec.values()):
            fields = {}
        else:
            form = f"{action}: <{shorthand}> or " if shorthand else ""
            raise self.fail(body, f"{where}: expected {form}a mapping of {', '.join(spec)}")
        for key in fields:
            if key not in spec:
                raise self.fail(fields[key], f"{where}: unknown field {key!r}: expected {', '.join(spec)}")
        args = {}
        for key, (check, required) in spec.items():
            if key in fields:
                args[key] = self.field(fields, key, check, scenario, where)
            elif required:
                raise self.fail(node, f"{where}: missing field {key!r}")
        needs_channel = action != "expect" or bool(set(CHANNEL_CHECKS) & set(args))
        if "channel" in spec and "channel" not in args and needs_channel:
            if len(scenario.channels) != 1:
                raise self.fail(node, f"{where}: missing field 'channel' (the scenario has "
                                      f"{len(scenario.channels)} channels)")
            args["channel"] = next(iter(scenario.channels))
        self.check_step(action, args, node, where, scenario, fields)
        fails = None
        if fails_node is not None:
            fails = self.plain(fails_node)
            if not isinstance(fails, str) or not fails.isidentifier():
                raise self.fail(fails_node, f"{where}: fails: expected an error name such as StaleVersion")
        lines = {key: value.start_mark.line + 1 for key, value in fields.items()}
        return Step(node.start_mark.line + 1, index, action, args, fails, lines)

    def check_step(self, action: str, args: dict[str, Any], node: yaml.Node, where: str, scenario: Scenario,
                   fields: dict[str, yaml.Node]) -> None:
        if action == "invoice":
            self.check_invoice(args, node, where, scenario, fields)
            return
        if action == "pay_invoice":
            self.check_pay_invoice(args, node, where, scenario, fields)
            return
        if action == "wait" and len(set(WAIT_FORMS) & set(args)) != 1:
            raise self.fail(node, f"{where}: expected exactly one of {', '.join(WAIT_FORMS)}")
        if action == "wait" and {"offset", "next"} & set(args) and not set(OFFSET_FORMS) & set(args):
            key = "offset" if "offset" in args else "next"
            raise self.fail(node, f"{where}: {key} goes with deadline, window, timeout or validity")
        if action == "pay" and args.get("send") is False and args.get("answer") is False:
            raise self.fail(node, f"{where}: send: false and answer: false exclude each other (an Update "
                                  "never sent is never answered)")
        if action == "expect" and set(args) <= {"channel"}:
            raise self.fail(node, f"{where}: expected at least one of {', '.join(EXPECT_CHECKS)}")
        if action == "crash" and "at" in args:
            tower = args["party"] in scenario.towers
            points = TOWER_CRASH_POINTS if tower else CRASH_POINTS
            if args["at"] not in points:
                raise self.fail(fields["at"], f"{where}: at: {args['party']} is a {'tower' if tower else 'party'}, "
                                              f"whose crash points are {', '.join(points)}; got {args['at']!r}")
        if action in ("deny", "allow") and not any(c.token == "erc20" for c in scenario.channels.values()):
            raise self.fail(node, f"{where}: {action} is for the test token's deny list: the scenario needs an erc20 "
                                  "channel")
        if action == "refute":
            self.check_refute(args, node, where, scenario, fields)
        if "nanocontract" in args and action != "expect":  # a nanocontract's steps are on its channel
            args["channel"] = scenario.nanocontracts[args["nanocontract"]].channel
        gamma = scenario.virtual.get(args.get("channel", ""))
        if gamma is not None:
            self.check_virtual_step(action, args, node, where, gamma, fields)
            return
        channel = scenario.channels.get(args.get("channel", ""))
        if channel is None:
            return  # a step on no channel (wait, crash, ...): what follows checks a channel's steps
        for key, only in (("timeout", "close"), ("halves", "expect")):
            if action == only and key in args:
                raise self.fail(fields[key], f"{where}: {key} goes with a virtual channel, and {channel.name} is not one")
        if action == "expect" and isinstance(args.get("payout"), dict):
            raise self.fail(fields["payout"], f"{where}: payout: expected [alice's, bob's] amounts for channel "
                                              f"{channel.name} ({{party: amount}} is for a virtual channel)")
        if action == "expect" and {"final", "settled"} & set(args.get("state", {})):
            raise self.fail(fields["state"], f"{where}: state: final and settled go with a virtual channel, and "
                                             f"{channel.name} is not one")
        if action in ("pay", "forge") and channel.kind == "multistate":
            raise self.fail(node, f"{where}: channel {channel.name} is a multistate channel: {action} is for payment "
                                  "channels (a multistate channel moves money with nanocontracts)")
        if action == "nanocontract" and channel.kind != "multistate":
            raise self.fail(node, f"{where}: channel {channel.name} is a payment channel: nanocontracts live in "
                                  "multistate channels (kind: multistate)")
        if action == "expect":
            for _tower, checks in args.get("tower", {}).items():
                if "nanocontracts" in checks and channel.kind == "payment":
                    raise self.fail(fields["tower"], f"{where}: tower: nanocontracts goes with a multistate channel, "
                                                     f"and {channel.name} is a payment channel")
                for nc in checks.get("nanocontracts", {}):
                    if scenario.nanocontracts[nc].channel != channel.name:
                        raise self.fail(fields["tower"], f"{where}: tower: nanocontract {nc} is in channel "
                                                         f"{scenario.nanocontracts[nc].channel}, not {channel.name}")
        if action == "expect" and "nanocontracts" in args.get("state", {}) and channel.kind != "multistate":
            raise self.fail(fields["state"], f"{where}: state: nanocontracts goes with a multistate channel, and "
                                             f"{channel.name} is a payment channel")
        if action == "cooperative_close" and "version" in args and channel and channel.kind == "multistate":
            raise self.fail(fields["version"], f"{where}: version: a final state by hand is for payment channels, and "
                                               f"{channel.name} is a multistate channel")
        if action in ("pay", "forge", "cooperative_close", "close", "finalize", "refund", "confirm", "nanocontract",
                      "call", "absorb", "register", "execute", "enforce"):
            party = args.get("from", args.get("by"))
            if party not in (channel.alice, channel.bob):
                raise self.fail(node, f"{where}: {party} is not a party of channel {channel.name}")
        if action == "nanocontract":
            self.check_nanocontract(args, node, where, scenario, channel, fields)
        if action in ("call", "execute", "enforce"):
            spec = scenario.nanocontracts[args["nanocontract"]]
            function = args["function"]
            if function not in FUNCTIONS[spec.app]:
                raise self.fail(fields["function"], f"{where}: function: {spec.name} is a {spec.app}, whose functions "
                                                    f"are {', '.join(FUNCTIONS[spec.app])}; got {function!r}")
            if (function == "move") != ("cell" in args):
                raise self.fail(fields.get("cell", node), f"{where}: cell goes with move, which needs it")
            if "preimage" in args and function != "claim":
                raise self.fail(fields["preimage"], f"{where}: preimage goes with claim (which takes the lock's own "
                                                    "preimage unless given another)")

    def check_invoice(self, args: dict[str, Any], node: yaml.Node, where: str, scenario: Scenario,
                      fields: dict[str, yaml.Node]) -> None:
        """`invoice`: its payee has a multistate channel in ETH (multi-hop payments go over
        them); `min_final` fits the invoice."""
        by = args["by"]
        if not any(c.kind == "multistate" and by in (c.alice, c.bob) for c in scenario.channels.values()):
            raise self.fail(fields["by"], f"{where}: by: {by} has no multistate channel, and invoices are paid over "
                                          "multistate channels")
        if any(c.token != "ETH" for c in scenario.channels.values()):
            raise self.fail(node, f"{where}: multi-hop payments are in ETH, and the channels are in erc20")
        if args["amount"] == 0:
            raise self.fail(fields["amount"], f"{where}: amount: an invoice asks for more than 0")
        if args.get("min_final", 0) > MAX_MIN_FINAL:
            raise self.fail(fields["min_final"], f"{where}: min_final: at most {MAX_MIN_FINAL} s")
        scenario.invoices[args["name"]] = InvoiceSpec(args["name"], by, args["amount"], node.start_mark.line + 1)

    def check_pay_invoice(self, args: dict[str, Any], node: yaml.Node, where: str, scenario: Scenario,
                          fields: dict[str, yaml.Node]) -> None:
        """`pay_invoice`: an invoice not paid yet, by another party, over multistate channels that
        lead from the payer to the payee, visiting each party once. Names each lock of the route
        `invoice@channel`, sent by the party the route reaches that channel from."""
        invoice, payer, route = scenario.invoices[args["invoice"]], args["from"], args["route"]
        if invoice.payer:
            raise self.fail(fields["invoice"], f"{where}: invoice: line {invoice.paid_at} pays {invoice.name} already "
                                               "(a scenario pays an invoice once: make another to pay again)")
        if payer == invoice.payee:
            raise self.fail(fields["from"], f"{where}: from: {payer} made invoice {invoice.name}, and pays itself "
                                            "nothing")
        if args.get("amount") == 0:
            raise self.fail(fields["amount"], f"{where}: amount: a payment delivers more than 0")
        at, visited = payer, [payer]
        for name in route:
            channel = scenario.channels[name]
            if channel.kind != "multistate":
                raise self.fail(fields["route"], f"{where}: route: {name} is a payment channel; multi-hop payments go "
                                                 "over multistate channels")
            if at not in (channel.alice, channel.bob):
                raise self.fail(fields["route"], f"{where}: route: {name} is between {channel.alice} and "
                                                 f"{channel.bob}, and the route is at {at} there")
            at = channel.bob if at == channel.alice else channel.alice
            if at in visited:
                raise self.fail(fields["route"], f"{where}: route: it comes to {at} twice")
            visited.append(at)
        if at != invoice.payee:
            raise self.fail(fields["route"], f"{where}: route: it ends at {at}, and {invoice.payee} made invoice "
                                             f"{invoice.name}")
        paid = replace(invoice, payer=payer, route=route, paid_at=node.start_mark.line + 1)
        for lock, channel, sender in zip(paid.locks(), route, visited):
            scenario.nanocontracts[lock] = NanocontractSpec(lock, channel, "HashTimeLock", sender, paid.paid_at)
        scenario.invoices[invoice.name] = paid

    def check_refute(self, args: dict[str, Any], node: yaml.Node, where: str, scenario: Scenario,
                     fields: dict[str, yaml.Node]) -> None:
        """`refute`: a payment channel; `client` one of its parties, by default the one whose towers
        include `by`; `tower` the one its authorisation names, by default `by`."""
        channel = scenario.channels[args["channel"]]
        if channel.kind != "payment":
            raise self.fail(node, f"{where}: channel {channel.name} is a multistate channel: towers refute on "
                                  "payment channels")
        by = args["by"]
        if "tower" not in args:
            if by not in scenario.towers:
                raise self.fail(node, f"{where}: {by} is a party: name the tower its authorisation is for (tower)")
            args["tower"] = by
        if "client" not in args:
            clients = [p for p in (channel.alice, channel.bob) if args["tower"] in scenario.parties[p].towers]
            if len(clients) != 1:
                raise self.fail(node, f"{where}: name the party whose authorisation it is (client): "
                                      f"{'both' if clients else 'neither'} of {channel.name}'s parties use "
                                      f"{args['tower']}")
            args["client"] = clients[0]
        if args["client"] not in (channel.alice, channel.bob):
            raise self.fail(fields["client"], f"{where}: client: {args['client']} is not a party of channel "
                                              f"{channel.name}")

    def check_virtual_step(self, action: str, args: dict[str, Any], node: yaml.Node, where: str, gamma: VirtualSpec,
                           fields: dict[str, yaml.Node]) -> None:
        name = gamma.name
        if action == "open" and "confirm" in args:
            raise self.fail(fields["confirm"], f"{where}: confirm goes with a channel on chain; virtual channel {name} "
                                               "opens off chain")
        if action in ("pay", "close", "submit"):
            party = args.get("from", args.get("by"))
            if party not in gamma.ends:
                raise self.fail(node, f"{where}: {party} is not an end of virtual channel {name} ({gamma.alice} or "
                                      f"{gamma.bob})")
        if action == "close" and "version" in args:
            raise self.fail(fields["version"], f"{where}: version: virtual channel {name} closes through "
                                               f"{gamma.ingrid} with the latest state (submit puts a chosen version "
                                               "on chain)")
        if action != "expect":
            return
        for _tower, checks in args.get("tower", {}).items():
            extra = sorted(set(checks) - {"version", "reward_paid"})
            if extra:
                raise self.fail(fields["tower"], f"{where}: tower: only version (of the SETTLE it holds) and "
                                                 f"reward_paid for virtual channel {name} (not {', '.join(extra)})")
        ledgers = ", ".join(gamma.ledgers)
        for key in ("events", "stages"):
            if key in args:
                raise self.fail(fields[key], f"{where}: {key}: virtual channel {name} has none of its own; expect "
                                             f"them on its ledger channels {ledgers}")
        parties = (gamma.alice, gamma.ingrid, gamma.bob)
        if "payout" in args:
            if not isinstance(args["payout"], dict):
                raise self.fail(fields["payout"], f"{where}: payout: expected {{party: amount, ...}} for virtual "
                                                  f"channel {name}: what its ledger channels paid {', '.join(parties)}")
            for party in args["payout"]:
                if party not in parties:
                    raise self.fail(fields["payout"], f"{where}: payout: {party} is not a party of virtual channel "
                                                      f"{name} ({', '.join(parties)})")
        if "state" in args:
            if args["state"]["party"] not in parties:
                raise self.fail(fields["state"], f"{where}: state: {args['state']['party']} is not a party of virtual "
                                                 f"channel {name} ({', '.join(parties)})")
            if "nanocontracts" in args["state"]:
                raise self.fail(fields["state"], f"{where}: state: nanocontracts goes with a multistate channel, "
                                                 f"and {name} is a virtual channel")
        for ledger in args.get("halves", {}):
            if ledger not in gamma.ledgers:
                raise self.fail(fields["halves"], f"{where}: halves: {ledger} is not a ledger channel of {name} "
                                                  f"({ledgers})")

    def check_nanocontract(self, args: dict[str, Any], node: yaml.Node, where: str, scenario: Scenario,
                           channel: ChannelSpec, fields: dict[str, yaml.Node]) -> None:
        app = args["app"]
        for other, keys in APP_FIELDS.items():
            for key in keys:
                if other != app and key in args:
                    raise self.fail(fields[key], f"{where}: {key} goes with app {other}, not {app} (which takes "
                                                 f"{', '.join(APP_FIELDS[app])})")
        for key in APP_FIELDS[app]:
            if key not in args:
                raise self.fail(node, f"{where}: missing field {key!r} ({app} needs {', '.join(APP_FIELDS[app])})")
        if app == "HashTimeLock" and args["amount"] == 0:
            raise self.fail(fields["amount"], f"{where}: amount: a lock blocks more than 0")
        if app == "TicTacToe":
            if args["first"] not in (channel.alice, channel.bob):
                raise self.fail(fields["first"], f"{where}: first: {args['first']} is not a party of channel "
                                                 f"{channel.name}")
            if args["stakes"] == (0, 0):
                raise self.fail(fields["stakes"], f"{where}: stakes: a game has a stake, of one player at least")
        scenario.nanocontracts[args["name"]] = NanocontractSpec(
            args["name"], channel.name, app, args["by"], node.start_mark.line + 1, args.get("amount", 0),
            args.get("preimage", b""), args.get("timeout", 0), args.get("stakes", (0, 0)), args.get("first", ""),
            args.get("move_timeout", 0))


def _is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null")
