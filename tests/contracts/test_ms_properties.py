"""Random sequences of signed states and MSContract calls by two adversarial parties, on the real
EVM: no sequence of signed states and calls pays out more (or less) than was deposited.

Each example plays on two open channels. Alice and Bob sign an honest history for each
(nanocontracts funded, updated and absorbed, every state signed by both), and some of its
nanocontracts may be registered from the start. Then, step by step, either party (and Mallory,
who may not) registers nanocontract states, executes nanocontracts (random functions and
arguments, and valid claims, reclaims, cancels, moves and timeouts on HashTimeLock and TicTacToe),
closes and finalizes, and anyone submits a final state for a cooperative close, with states from
the history or forged on the spot and signed by one party: conflicting states at the same version, stale ones, channel states whose totals do not
match their fundings, that list nanocontracts nobody created or too many, with huge amounts or
another channel's id, nanocontract states with other totals than their funding, unknown
nids, foreign apps or malformed storage, and final states at a stale version, whose cash does not
add up, of another channel, or with a signature missing, swapped or on an ordinary channel state. Before each call the clock may jump to one second
before, at or after a deadline. Every example ends (teardown) with its channels paid out after
deadline + Δ, so that the payout checks see whatever the steps left.

Every call is made at a time the model chooses, so the model knows whether the contract must
accept it or with which error it must refuse it; the apps are modelled here from their Solidity
source, independently of the Python mirrors in perun.core.apps. After each step: the contract
holds exactly the deposits of the channels not yet paid out, every payout equals the channel's
deposits, and what the contract stores for the channel or nanocontract the step touched is what
the model says (so a refused call changed nothing). At finalize, the payouts are those of the
Finalized event, of the model, and of perun.core.multistate.payouts over what the chain holds,
and they are what the parties' balances gained; at a cooperative close, the final state's cash.
`--hypothesis-show-statistics` shows how often
each outcome (events "finalized with live nanocontract", "close refused: ...") was reached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from perun import errors
from perun.chain.backend import ETHER, EmbeddedChain
from perun.chain.multistate import MSContract, RegisteredNanocontract
from perun.core.channel import Params, Phase
from perun.core.eip712 import sign
from perun.core.multistate import (
    MAX_NANOCONTRACTS,
    ChannelState,
    FinalChannelState,
    Funding,
    NanocontractState,
    digest,
    nanocontract_id,
    payouts,
)
from tests.conftest import MSWorld, examples

ALICE, BOB, MALLORY = 0, 1, 2
HTLC, TTT = "HashTimeLock", "TicTacToe"
UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1
BIG = (2**128 - 1, 2**128, 2**255, UINT256_MAX)
ZERO_ADDRESS = "0x" + "00" * 20
NOT_REGISTERED = RegisteredNanocontract(ZERO_ADDRESS, 0, 0, 0, 0, 0, 0, 0, 0, b"")
LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))

PICK = st.integers(0, 2**16)
AMOUNT = st.one_of(st.integers(0, 8), st.integers(0, 2**16))
CHAN = st.sampled_from([0, 0, 0, 1])  # which of the two channels
PARTY = st.sampled_from([ALICE, BOB])
# "countersigned": the party who holds its counterparty's signature of the state, if either does.
CALLER = st.sampled_from([ALICE, BOB, MALLORY, "countersigned", "countersigned"])


# CPython 3.11 grows the interpreter's frame stack in chunks that it maps and unmaps as calls cross
# a chunk's end. At the depth pytest and Hypothesis leave, py-evm's deep call chains cross one
# thousands of times per transaction (mmap, munmap, page faults: half this test's time went to the
# kernel). From a thread with a shallow stack the same calls take half the time.
_chain_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ms-properties-chain")


def on_chain(fn, *args):
    """fn(*args), run on the chain thread; what it raises is raised here."""
    return _chain_thread.submit(fn, *args).result()


# ---------------------------------------------------------------------- states out of range

def _raw(cls, **values):
    """An instance of a frozen dataclass without its validation: the chain must refuse it."""
    obj = object.__new__(cls)
    for f in dataclasses.fields(cls):
        object.__setattr__(obj, f.name, values[f.name])
    return obj


def funding(nid: bytes, alice: int, bob: int) -> Funding:
    try:
        return Funding(nid, alice, bob)
    except errors.PerunError:
        return _raw(Funding, nid=nid, alice=alice, bob=bob)


def channel_state(cid: bytes, version: int, ca: int, cb: int, fs) -> ChannelState:
    try:
        return ChannelState(cid, version, ca, cb, tuple(fs))
    except errors.PerunError:
        return _raw(ChannelState, channel_id=cid, version=version, cash_alice=ca, cash_bob=cb,
                    nanocontracts=tuple(fs))


def nano_state(cid, nid, app, version, ba, bb, ra, rb, data) -> NanocontractState:
    try:
        return NanocontractState(cid, nid, app, version, ba, bb, ra, rb, data)
    except errors.PerunError:
        return _raw(NanocontractState, channel_id=cid, nid=nid, app=app, version=version, blocked_alice=ba,
                    blocked_bob=bb, released_alice=ra, released_bob=rb, storage=data)


def amounts(s: NanocontractState) -> tuple[int, int, int, int]:
    return s.blocked_alice, s.blocked_bob, s.released_alice, s.released_bob


# ---------------------------------------------------------------------- the apps, from their source

def htlc_data(sender: int, hashlock: bytes, timeout: int) -> bytes:
    return encode(["uint8", "bytes32", "uint64"], [sender, hashlock, timeout])


def ttt_data(turn: int, move_timeout: int, cells) -> bytes:
    return encode(["uint8", "uint64", "uint8[9]"], [turn, move_timeout, list(cells)])


def _word(data: bytes, i: int) -> int:
    return int.from_bytes(data[32 * i: 32 * i + 32], "big")


def htlc(caller: int, time: int, since: int, fun: int, z: bytes, s: tuple) -> tuple[str, tuple | None]:
    """HashTimeLock.transition: (label, next state) or (error name, None)."""
    ba, bb, ra, rb, data = s
    if fun > 2:
        return "HashTimeLockUnknownFunction", None
    if len(data) != 96:
        return "HashTimeLockMalformed", None
    sender, hashlock, timeout = _word(data, 0), data[32:64], _word(data, 2)
    if sender > 1 or timeout > UINT64_MAX:
        return "HashTimeLockMalformed", None
    amount = ba if sender == 0 else bb
    if amount == 0 or ba + bb != amount:
        return "HashTimeLockSettled", None
    if fun == 0:
        if caller == sender:
            return "HashTimeLockWrongCaller", None
        if len(z) != 32 or hashlib.sha256(z).digest() != hashlock:
            return "HashTimeLockWrongPreimage", None
        if time > timeout:
            return "HashTimeLockExpired", None
        to, label = 1 - sender, "HashTimeLock claim"
    elif fun == 1:
        if caller != sender:
            return "HashTimeLockWrongCaller", None
        if time <= timeout:
            return "HashTimeLockNotExpired", None
        to, label = sender, "HashTimeLock reclaim"
    else:  # CANCEL: by the receiver, at any time, z ignored
        if caller == sender:
            return "HashTimeLockWrongCaller", None
        to, label = sender, "HashTimeLock cancel"
    return label, (0, 0, ra + (amount if to == 0 else 0), rb + (amount if to == 1 else 0), data)


def ttt(caller: int, time: int, since: int, fun: int, z: bytes, s: tuple) -> tuple[str, tuple | None]:
    """TicTacToe.transition: (label, next state) or (error name, None)."""
    ba, bb, ra, rb, data = s
    if fun > 1:
        return "TicTacToeUnknownFunction", None
    if len(data) != 11 * 32:
        return "TicTacToeMalformed", None
    turn, move_timeout, cells = _word(data, 0), _word(data, 1), [_word(data, 2 + i) for i in range(9)]
    if turn > 1 or move_timeout > UINT64_MAX or max(cells) > 2:
        return "TicTacToeMalformed", None
    pot = ba + bb
    if pot == 0:
        return "TicTacToeGameOver", None
    if fun == 1:
        if caller == turn:
            return "TicTacToeNotYourTurn", None
        if time <= since + move_timeout:
            return "TicTacToeTooEarly", None
        return "TicTacToe timeout", _won(caller, pot, ra, rb, data)
    if caller != turn:
        return "TicTacToeNotYourTurn", None
    if len(z) != 32 or int.from_bytes(z, "big") > 8:
        return "TicTacToeMalformed", None
    cell = int.from_bytes(z, "big")
    if cells[cell]:
        return "TicTacToeCellTaken", None
    cells[cell] = turn + 1
    data = ttt_data(1 - turn, move_timeout, cells)
    if any(all(cells[i] == turn + 1 for i in line) for line in LINES):
        return "TicTacToe winning move", _won(turn, pot, ra, rb, data)
    if all(cells):
        return "TicTacToe drawing move", (0, 0, ra + ba, rb + bb, data)
    return "TicTacToe move", (ba, bb, ra, rb, data)


def _won(winner: int, pot: int, ra: int, rb: int, data: bytes) -> tuple:
    return (0, 0, ra + (pot if winner == 0 else 0), rb + (pot if winner == 1 else 0), data)


def ttt_cell_for(data: bytes, pick: int) -> int:
    """An empty cell of a well-formed board, mostly a winning one for the player to move if there
    is one; any cell otherwise."""
    if len(data) != 11 * 32 or _word(data, 0) > 1:
        return pick % 9
    turn, cells = _word(data, 0), [_word(data, 2 + i) for i in range(9)]
    empty = [i for i in range(9) if cells[i] == 0]
    if not empty:
        return pick % 9
    winning = [i for i in empty
               if any(i in line and all(cells[j] == turn + 1 for j in line if j != i) for line in LINES)]
    if winning and pick % 4:
        return winning[pick // 4 % len(winning)]
    return empty[pick % len(empty)]


# ---------------------------------------------------------------------- the model

@dataclass
class Signed:
    state: ChannelState | NanocontractState
    sigs: dict[int, bytes]  # party -> its signature


@dataclass
class Chan:
    params: Params
    cid: bytes
    cstates: list[Signed]  # every channel state someone signed (the initial one needs nobody)
    latest: ChannelState  # the honest history's latest channel state
    nstates: list[Signed] = field(default_factory=list)  # every nanocontract state someone signed
    live: dict[bytes, NanocontractState] = field(default_factory=dict)  # honest latest, by nid
    phase: Phase = Phase.OPEN
    deadline: int = 0
    registered: ChannelState | None = None  # by close
    onchain: dict[bytes, RegisteredNanocontract] = field(default_factory=dict)  # registered nanocontracts
    executed: set[bytes] = field(default_factory=set)
    paid: tuple[int, int] | None = None  # by finalize

    @property
    def delta(self) -> int:
        return self.params.delta


# The channels the examples play with, opened once before the snapshot every example starts
# from (opening one costs two transactions): (deposit Alice, deposit Bob, Δ).
CHANNELS = ((6, 4, 10), (0, 0, 1), (1, 0, 3), (0, 7, 2), (13, 13, 50), (3, 2**64, 17), (ETHER, 3 * ETHER, 25),
            (5 * ETHER, 1, 1), (2, 9, 5))


@dataclass
class Shared:
    world: MSWorld
    params: list[Params]


_shared: dict[str, Shared] = {}


def shared() -> Shared:
    if "shared" not in _shared:
        chain = EmbeddedChain()
        deployer = chain.dev_accounts[0]
        contract = MSContract.deploy(chain, deployer)
        apps = {name: chain.deploy(deployer, name) for name in (HTLC, TTT)}
        world = MSWorld(chain, contract, apps, *(chain.new_account(10_000 * ETHER) for _ in range(3)))
        params = []
        for nonce, (deposit_alice, deposit_bob, delta) in enumerate(CHANNELS, 1):
            p = Params(world.alice.address, world.bob.address, deposit_alice, deposit_bob, delta, nonce)
            contract.create(world.alice, p)
            contract.confirm(world.bob, p)
            params.append(p)
        _shared["shared"] = Shared(world, params)
    return _shared["shared"]


HONEST_STEP = st.sampled_from(["htlc", "ttt", "htlc", "ttt", "update", "update", "update", "absorb"])
# An honest history starts with a nanocontract, mostly.
HISTORY = st.builds(lambda first, rest: [first, *rest],
                    st.tuples(st.sampled_from(["htlc", "ttt", "htlc", "ttt", "absorb"]), PICK, PICK),
                    st.lists(st.tuples(HONEST_STEP, PICK, PICK), max_size=7))
# Before each call the clock may move: not at all, by some seconds, or so that the call comes one
# second before, at, or one second after a deadline.
WHEN = st.sampled_from(["now", "now", "seconds", "deadline", "deadline"])
WHEN_FINALIZE = st.sampled_from(["now", "seconds", "deadline", "channel deadline", "settlement end",
                                 "settlement end"])
OFFSET = st.sampled_from([-1, 0, 1])

CHANNEL_KINDS = ["conflict", "stale", "higher", "max version", "mismatch", "unlisted", "drop", "resplit",
                 "big", "many", "unsorted", "wrong channel"]
# A final state: the parties' settlement of the honest history, or one at another version, with
# cash that does not add up or out of range, or of another channel.
FINAL_KINDS = ["settled"] * 5 + ["registered", "stale", "higher", "mismatch", "big", "wrong channel"]
# Who signed it: both (the only valid case), or a signature is missing, swapped, repeated,
# garbage, or both are on the ChannelState of the same values.
FINAL_SIGNERS = ["both"] * 5 + ["alice twice", "mallory for alice", "swapped", "channel state", "garbage"]
NANO_KINDS = ["conflict", "stale", "higher", "mismatch", "unlisted", "big", "app", "data", "fresh htlc",
              "fresh ttt", "wrong channel"]


class MultistateChannelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        sh = shared()
        self.w = sh.world
        self.c = self.w.contract
        self.all_params = [(p, self.c.channel_id(p)) for p in sh.params]
        self.parties = (self.w.alice, self.w.bob, self.w.mallory)
        self.snapshot = self.w.chain.snapshot()
        # After a revert the pending block may already be ahead of the latest one (wall clock).
        self.now = self.w.chain.w3.eth.get_block("pending")["timestamp"] + 600
        self.chans: list[Chan] = []
        self.preimages: dict[bytes, bytes] = {}  # hashlock -> preimage
        self.touched: tuple[Chan, bytes | None] | None = None  # what the last step acted on
        self.ending = False  # in the endgame (teardown)

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is None and self.chans:  # not after a failure
                self._endgame()
        finally:
            self.w.chain.revert_to(self.snapshot)

    def _endgame(self) -> None:
        """Every example ends with its channels paid out, so that the payout checks see whatever
        the steps left: the first channel always, the second if a step closed it. Alice closes
        with the latest honest state if nobody closed yet, and anyone finalizes after
        deadline + Δ."""
        self.ending = True
        for ch in self.chans:
            if ch.phase == Phase.OPEN and ch is self.chans[0]:
                self._close(ch, ALICE, next(s for s in reversed(ch.cstates) if s.state == ch.latest), False)
            if ch.phase == Phase.CLOSING:
                self.now = max(self.now, ch.deadline + ch.delta)
                self._finalize(ch, MALLORY, 1, 0)
                assert ch.phase == Phase.CLOSED
                self.after_each_step()

    # ------------------------------------------------------------------ helpers

    # Each transaction is mined exactly at self.now + 1; the waits move the clock.
    def _at_next_second(self) -> int:
        self.now += 1
        self.w.chain.set_next_block_timestamp(self.now)
        return self.now

    def _call(self, label: str, ch: Chan, nid: bytes | None, error, action):
        """Runs `action` at self.now + 1; it must succeed (error None) or raise `error`, a class
        or the name of a contract error."""
        if self.touched is not None:  # a step of several calls: check each one
            self.chain_holds_what_the_model_says()
        self.touched = (ch, nid)
        t = self._at_next_second()
        if error is None:
            return on_chain(action)
        if isinstance(error, str):
            error = errors.CONTRACT_ERRORS[error]
        with pytest.raises(error) as refused:
            on_chain(action)
        event(f"{label} refused: {getattr(refused.value, 'name', type(refused.value).__name__)}")
        # The refused call mined nothing: keep the clock where the chain is.
        self.now = t - 1
        return None

    def _chan(self, c: int) -> Chan:
        return self.chans[c]

    def _add(self, pool: list[Signed], state, signers) -> None:
        d = digest(self.c.domain, state)
        pool.append(Signed(state, {p: sign(d, self.parties[p].key) for p in signers}))

    def _sig(self, signed: Signed, caller: int, garbage: bool) -> tuple[bytes, bool]:
        """The signature the caller sends with `signed`, and whether it is its counterparty's."""
        assert caller in (ALICE, BOB, MALLORY)
        if garbage:
            return b"\x00" * 65, False
        counterparty = 1 - caller if caller != MALLORY else BOB
        if counterparty in signed.sigs:
            return signed.sigs[counterparty], caller != MALLORY
        return next(iter(signed.sigs.values()), b""), False

    @staticmethod
    def _countersigned(signed: Signed, caller, pick: int) -> int:
        if caller != "countersigned":
            return caller
        holders = [1 - p for p in signed.sigs]
        return holders[pick % len(holders)] if holders else pick % 2

    def _hashlock(self) -> bytes:
        preimage = keccak(text=f"preimage {len(self.preimages)}")
        hashlock = hashlib.sha256(preimage).digest()
        self.preimages[hashlock] = preimage
        return hashlock

    def _listed(self, ch: Chan) -> dict[bytes, Funding]:
        """Every nanocontract some signed channel state of `ch` lists, with its funding there."""
        return {f.nid: f for s in ch.cstates for f in s.state.nanocontracts}

    def _app(self, name: str) -> str:
        return self.w.apps[name]

    # ------------------------------------------------------------------ opening, honest history

    def _adopt(self, params: Params, history) -> None:
        initial = ChannelState.initial(params, self.c.channel_id(params))
        ch = Chan(params, initial.channel_id, [Signed(initial, {})], initial)
        self.chans.append(ch)
        for op, a, b in history:
            self._honest(ch, op, a, b)

    def _honest(self, ch: Chan, op: str, a: int, b: int) -> None:
        """One step both parties sign: a nanocontract funded, updated or absorbed."""
        latest, cid = ch.latest, ch.cid
        if op in ("htlc", "ttt"):
            if len(latest.nanocontracts) >= MAX_NANOCONTRACTS:
                return
            nid = nanocontract_id(cid, latest.version + 1)
            if op == "htlc":
                sender = a % 2
                cash = latest.cash_bob if sender else latest.cash_alice
                amount = 1 + b % cash if cash else 0
                data = htlc_data(sender, self._hashlock(), self.now + ch.delta + b % (8 * ch.delta + 2))
                nc = NanocontractState(cid, nid, self._app(HTLC), 0, 0 if sender else amount,
                                       amount if sender else 0, 0, 0, data)
            else:
                stake_a, stake_b = a % (latest.cash_alice + 1), b % (latest.cash_bob + 1)
                # An empty board, or (two thirds of the time) a game begun elsewhere, undecided.
                cells = [(b // 3**i) % 3 for i in range(9)] if a % 3 else [0] * 9
                if all(cells) or any(cells[i] == cells[j] == cells[k] != 0 for i, j, k in LINES):
                    cells = [0] * 9
                data = ttt_data(a // 2 % 2, b % (2 * ch.delta + 1), cells)
                nc = NanocontractState(cid, nid, self._app(TTT), 0, stake_a, stake_b, 0, 0, data)
            new = latest.fund(nc)
        elif op == "update":
            live = [n for n in ch.live.values() if not n.terminated]
            if not live:
                return
            old = live[a % len(live)]
            if old.app == self._app(HTLC):
                sender = _word(old.storage, 0)
                # Off chain the parties may settle either way: the preimage shown, or given up.
                fun, caller = (0, 1 - sender) if b % 2 else (1, sender)
                _, nxt = htlc(caller, 0 if fun == 0 else UINT64_MAX, 0, fun, self.preimages[old.storage[32:64]],
                              (*amounts(old), old.storage))
                self._sign_update(ch, old, nxt)
            else:  # one to four moves, each signed
                for move in range(1 + b % 4):
                    if old.terminated:
                        break
                    cell = ttt_cell_for(old.storage, b >> move)
                    _, nxt = ttt(_word(old.storage, 0), 0, 0, 0, cell.to_bytes(32, "big"),
                                 (*amounts(old), old.storage))
                    old = self._sign_update(ch, old, nxt)
            return
        else:  # absorb
            done = [f for f in latest.nanocontracts if ch.live[f.nid].terminated]
            if not done:
                return
            nc = None
            new = latest.absorb(ch.live[done[a % len(done)].nid])
        if nc is not None:
            ch.live[nc.nid] = nc
            self._add(ch.nstates, nc, (ALICE, BOB))
        if new is not None:
            ch.latest = new
            self._add(ch.cstates, new, (ALICE, BOB))

    def _sign_update(self, ch: Chan, old: NanocontractState, nxt: tuple) -> NanocontractState:
        assert nxt is not None
        nc = dataclasses.replace(old, version=old.version + 1, blocked_alice=nxt[0], blocked_bob=nxt[1],
                                 released_alice=nxt[2], released_bob=nxt[3], storage=nxt[4])
        ch.live[nc.nid] = nc
        self._add(ch.nstates, nc, (ALICE, BOB))
        return nc

    @initialize(first=st.integers(0, len(CHANNELS) - 1), second=st.integers(1, len(CHANNELS) - 1),
                history=HISTORY, other_history=HISTORY,
                registrations=st.lists(st.tuples(PICK, st.sampled_from(["latest", "first", "mismatch", "mismatch"])),
                                       min_size=1, max_size=3))
    def open_channels(self, first: int, second: int, history, other_history, registrations) -> None:
        """Two of the open channels, with an honest history each; most steps act on the first,
        some of whose nanocontracts are registered already: the latest or the first state of
        one, or a state with another total than its funding, signed by the caller's counterparty."""
        self._adopt(self.all_params[first][0], history)
        self._adopt(self.all_params[(first + second) % len(CHANNELS)][0], other_history)
        ch = self.chans[0]
        for pick, kind in registrations:
            if not ch.live:
                break
            listed = sorted(f.nid for f in ch.latest.nanocontracts) or sorted(ch.live)
            latest = ch.live[listed[pick % len(listed)]]
            caller = pick // 7 % 2
            if kind == "mismatch":
                d = 1 + pick % 3  # less than its funding if it can, else more
                field_ = next((f for f in ("blocked_alice", "blocked_bob", "released_alice", "released_bob")
                               if getattr(latest, f) >= d), "blocked_alice")
                d = -d if getattr(latest, field_) >= d else d
                state = dataclasses.replace(latest, version=latest.version + 1,
                                            **{field_: getattr(latest, field_) + d})
                self._add(ch.nstates, state, (1 - caller,))
                signed = ch.nstates[-1]
            else:
                versions = [n for n in ch.nstates if n.state.nid == latest.nid and len(n.sigs) == 2]
                signed = versions[-1 if kind == "latest" else 0]
            self._register(ch, caller, signed, False)

    @rule(c=CHAN, op=HONEST_STEP, a=PICK, b=PICK)
    def sign_honest_step(self, c: int, op: str, a: int, b: int) -> None:
        self._honest(self._chan(c), op, a, b)

    # ------------------------------------------------------------------ adversarial signing

    def _forge_channel_state(self, ch: Chan, signer: int, kind: str, pick: int, amount: int) -> Signed:
        """`signer` signs a channel state no honest party would: derived from one someone signed."""
        base = ch.cstates[pick % len(ch.cstates)].state
        cid, v, ca, cb, fs = base.channel_id, base.version, base.cash_alice, base.cash_bob, list(base.nanocontracts)
        if kind in ("conflict", "stale", "higher"):
            # The same (or a lower or higher) version, with cash moved from one party to the other.
            v = {"conflict": v, "stale": max(0, v - 1 - amount % 3),
                 "higher": min(UINT64_MAX, v + 1 + amount % 4)}[kind]
            if pick % 2:
                x = amount % (ca + 1)
                ca, cb = ca - x, cb + x
            else:
                x = amount % (cb + 1)
                ca, cb = ca + x, cb - x
        elif kind == "max version":
            v = UINT64_MAX
        elif kind == "mismatch":
            d = 1 + amount % 5
            if pick % 2:
                ca += d
            else:
                cb = cb - d if cb >= d else cb + d
        elif kind == "unlisted":  # a nanocontract nobody created, funded from cash
            nid = keccak(amount.to_bytes(32, "big") + b"unlisted")
            if len(fs) < MAX_NANOCONTRACTS and all(f.nid != nid for f in fs):
                x, y = amount % (ca + 1), pick % (cb + 1)
                ca, cb = ca - x, cb - y
                fs = sorted([*fs, Funding(nid, x, y)], key=lambda f: f.nid)
        elif kind == "drop":  # a nanocontract dropped, its funds given to one party
            if fs:
                f = fs.pop(pick % len(fs))
                ca, cb = (ca + f.total, cb) if amount % 2 else (ca, cb + f.total)
        elif kind == "resplit":  # a funding's total kept, its split between the parties changed
            if fs:
                i = pick % len(fs)
                x = amount % (fs[i].total + 1)
                fs[i] = Funding(fs[i].nid, x, fs[i].total - x)
        elif kind == "big":
            huge = BIG[amount % len(BIG)]
            if fs and pick % 2:
                i = pick // 2 % len(fs)
                fs[i] = funding(fs[i].nid, huge, fs[i].bob)
            elif pick % 4 == 0:
                ca = huge
            else:  # "conserving" modulo 2**256: cash_alice + cash_bob wraps around
                ca, cb = huge, (ca + cb - huge) % 2**256
        elif kind == "many":  # 16 (allowed) or 17 nanocontracts, funded with nothing
            fs = sorted((Funding(keccak(i.to_bytes(32, "big") + b"many"), 0, 0) for i in range(16 + amount % 2)),
                        key=lambda f: f.nid)
        elif kind == "unsorted":
            if len(fs) >= 2:
                i = pick % (len(fs) - 1)
                fs[i], fs[i + 1] = fs[i + 1], fs[i]
            elif fs:
                fs = [fs[0], Funding(fs[0].nid, 0, 0)]
        elif kind == "wrong channel":
            others = [o.cid for o in self.chans if o is not ch]
            cid = others[0] if others and pick % 2 else keccak(b"elsewhere")
        self._add(ch.cstates, channel_state(cid, v, ca, cb, fs), (signer,))
        return ch.cstates[-1]

    def _forge_nanocontract_state(self, ch: Chan, signer: int, kind: str, pick: int, amount: int) -> Signed:
        """`signer` signs a nanocontract state no honest party would: derived from one someone
        signed, or made up."""
        listed = self._listed(ch)
        if not ch.nstates and kind not in ("fresh htlc", "fresh ttt"):
            kind = "fresh htlc" if pick % 2 else "fresh ttt"
        if kind.startswith("fresh"):
            if listed and pick % 4:
                f = list(listed.values())[pick % len(listed)]
            else:
                f = Funding(keccak(amount.to_bytes(32, "big") + b"fresh"), amount % 3, pick % 3)
            cid, nid, v = ch.cid, f.nid, amount % 3
            if kind == "fresh htlc":  # the whole funding blocked by one party, a deadline near now
                sender = amount % 2
                timeout = max(0, self.now + pick % (3 * ch.delta + 1) - ch.delta)
                app, data = self._app(HTLC), htlc_data(sender, self._hashlock(), timeout)
                ba, bb, ra, rb = (0, f.total, 0, 0) if sender else (f.total, 0, 0, 0)
            else:  # a game in any position, maybe one move from its end
                cells = [(pick // 3**i) % 3 for i in range(9)]
                app, data = self._app(TTT), ttt_data(amount % 2, amount % (2 * ch.delta + 1), cells)
                ba, bb, ra, rb = f.alice, f.bob, 0, 0
        else:
            base = ch.nstates[pick % len(ch.nstates)].state
            cid, nid, app, v, data = base.channel_id, base.nid, base.app, base.version, base.storage
            ba, bb, ra, rb = amounts(base)
            total = ba + bb + ra + rb
            if kind in ("conflict", "stale", "higher"):
                v = {"conflict": v, "stale": max(0, v - 1 - amount % 3),
                     "higher": min(UINT64_MAX, v + 1 + amount % 3)}[kind]
                # the same total, split anew: cut points taken from pick and amount
                cuts = sorted((pick % (total + 1), amount % (total + 1), (pick // 7) % (total + 1)))
                ba, bb, ra, rb = cuts[0], cuts[1] - cuts[0], cuts[2] - cuts[1], total - cuts[2]
            elif kind == "mismatch":  # more or less than its funding
                d = 1 + amount % 5
                if pick % 2:
                    ba += d
                elif max(ba, bb, ra, rb) >= d:
                    i = [ba, bb, ra, rb].index(max(ba, bb, ra, rb))
                    ba, bb, ra, rb = [x - d if j == i else x for j, x in enumerate((ba, bb, ra, rb))]
                else:
                    rb += d
            elif kind == "unlisted":
                nid = keccak(amount.to_bytes(32, "big") + b"unlisted nanocontract")
            elif kind == "big":
                huge = (ch.params.total, ch.params.total + 1, *BIG)[amount % (len(BIG) + 2)]
                if pick % 4 == 0:
                    ba = huge
                elif pick % 4 == 1:
                    bb = huge
                elif pick % 4 == 2:
                    ra = huge
                else:
                    rb = huge
            elif kind == "app":
                app = (self._app(HTLC if app == self._app(TTT) else TTT), self.w.mallory.address, self.c.address,
                       ZERO_ADDRESS)[amount % 4]
            elif kind == "data":
                if amount % 3 == 0:  # random bytes
                    data = b"".join(keccak(pick.to_bytes(32, "big") + bytes([i])) for i in range(12))[:amount % 400]
                elif amount % 3 == 1 and len(data) >= 32:  # first word out of range
                    data = (2 + pick % 2**200).to_bytes(32, "big") + data[32:]
                elif len(data) >= 96:  # a later word out of range (timeout, moveTimeout or a cell)
                    i = 1 + pick % (len(data) // 32 - 1)
                    value = 2**64 if i == 1 or (i == 2 and len(data) == 96) else 3
                    data = data[: 32 * i] + value.to_bytes(32, "big") + data[32 * i + 32:]
            elif kind == "wrong channel":
                others = [o.cid for o in self.chans if o is not ch]
                cid = others[0] if others and pick % 2 else keccak(b"elsewhere")
        self._add(ch.nstates, nano_state(cid, nid, app, v, ba, bb, ra, rb, data), (signer,))
        return ch.nstates[-1]

    # ------------------------------------------------------------------ on-chain calls

    @rule(c=CHAN, caller=CALLER, forge=st.sampled_from([None] * 8 + NANO_KINDS), pick=PICK, amount=AMOUNT,
          garbage=st.integers(0, 9), when=WHEN, offset=OFFSET)
    def register(self, c: int, caller, forge: str | None, pick: int, amount: int, garbage: int, when: str,
                 offset: int) -> None:
        """Any party registers any nanocontract state someone signed, or one just forged."""
        ch = self._chan(c)
        self._wait(ch, when, pick, offset)
        if forge is not None:
            caller, signer = self._forger(caller, garbage, pick)
            signed = self._forge_nanocontract_state(ch, signer, forge, pick, amount)
        elif ch.nstates:
            # Mostly a state both signed: those of the honest history.
            honest = [n for n in ch.nstates if len(n.sigs) == 2]
            pool = honest if honest and pick % 3 else ch.nstates
            signed = pool[pick // 3 % len(pool)]
            caller = self._countersigned(signed, caller, pick)
        else:
            return
        self._register(ch, caller, signed, garbage == 0)

    @staticmethod
    def _forger(caller, garbage: int, pick: int) -> tuple[int, int]:
        """(caller, signer) of a forged state: mostly signed by the caller's counterparty."""
        if caller == "countersigned":
            caller = pick % 2
        if caller == MALLORY:
            return caller, ALICE
        return caller, caller if garbage == 1 else 1 - caller

    @rule(c=CHAN, caller=PARTY, pick=PICK, when=WHEN, offset=OFFSET)
    def register_latest(self, c: int, caller: int, pick: int, when: str, offset: int) -> None:
        """A party registers the latest honest state of a nanocontract the channel lists."""
        ch = self._chan(c)
        listed = {f.nid for f in ch.latest.nanocontracts}
        if ch.registered is not None:
            listed |= {f.nid for f in ch.registered.nanocontracts if f.nid in ch.live}
        if not listed:
            return
        self._wait(ch, when, pick, offset)
        latest = ch.live[sorted(listed)[pick % len(listed)]]
        signed = next(n for n in reversed(ch.nstates) if n.state == latest and len(n.sigs) == 2)
        self._register(ch, caller, signed, False)

    def _register(self, ch: Chan, caller: int, signed: Signed, garbage: bool) -> None:
        s = signed.state
        sig, countersigned = self._sig(signed, caller, garbage)
        t = self.now + 1
        total = ch.params.total
        nc = ch.onchain.get(s.nid)
        if ch.phase not in (Phase.OPEN, Phase.CLOSING):
            error = "ChannelsWrongPhase"
        elif caller == MALLORY:
            error = "ChannelsCallerNotParticipant"
        elif s.channel_id != ch.cid:
            error = "ChannelsWrongChannel"
        elif max(amounts(s)) > total or sum(amounts(s)) > total:
            error = "MSContractAmountTooLarge"
        elif nc is not None and t > nc.window_end:
            error = "ChannelsDisputeWindowOver"
        elif nc is not None and s.version <= nc.version:
            error = "ChannelsStaleVersion"
        elif nc is None and ch.phase == Phase.CLOSING and t > ch.deadline:
            # A first registration only until the closing channel's deadline; a replacement
            # until the end of its window, which may be later.
            error = "ChannelsDisputeWindowOver"
        elif not countersigned:
            error = "ChannelsInvalidSignature"
        else:
            error = None
        receipt = self._call("register", ch, s.nid, error,
                             lambda: self.c.register(self.parties[caller], ch.params, s, sig))
        if receipt is not None:
            window_end = nc.window_end if nc is not None else t + ch.delta
            # Neither app, nor an address without code, asks a closing channel to wait.
            ch.onchain[s.nid] = RegisteredNanocontract(s.app, window_end, window_end, s.version, *amounts(s), 0,
                                                       s.storage)
            args = receipt.event("NanocontractRegistered").args
            assert (args["nid"], args["version"], args["windowEnd"], args["settleBy"]) == (s.nid, s.version,
                                                                                           window_end, 0)
            event("registered a replacement" if nc is not None else "registered a nanocontract")

    @rule(c=CHAN, caller=st.sampled_from([ALICE, BOB, MALLORY, "entitled", "entitled"]), pick=PICK,
          fun=st.sampled_from([0, 0, 1, 1, 2, 3]), z=st.sampled_from(["valid", "valid", "valid", "random", "empty"]),
          when=WHEN, offset=OFFSET)
    def execute(self, c: int, caller, pick: int, fun: int, z: str, when: str, offset: int) -> None:
        """Any party calls any function, with a valid, random or no argument."""
        ch = self._chan(c)
        self._wait(ch, when, pick, offset)
        registered = sorted(ch.onchain)
        if registered and pick % 8:
            nid = registered[pick % len(registered)]
        else:
            candidates = sorted(self._listed(ch)) or [keccak(b"nobody's")]
            nid = candidates[pick % len(candidates)]
        nc = ch.onchain.get(nid)
        app = nc.app if nc is not None else ZERO_ADDRESS
        data = nc.storage if nc is not None else b""
        if caller == "entitled":  # the party whom the app lets call `fun`
            if app == self._app(HTLC) and len(data) == 96:
                sender = _word(data, 0) % 2
                caller = sender if fun == 1 else 1 - sender
            elif app == self._app(TTT) and len(data) >= 32:
                turn = _word(data, 0) % 2
                caller = turn if fun == 0 else 1 - turn
            else:
                caller = pick % 2
        if z == "valid":
            if app == self._app(HTLC) and fun == 0:
                arg = self.preimages.get(data[32:64], keccak(b"no preimage"))
            elif app == self._app(TTT) and fun == 0:
                arg = ttt_cell_for(data, pick).to_bytes(32, "big")
            else:
                arg = b""
        elif z == "random":
            arg = keccak(pick.to_bytes(32, "big"))[: pick % 33] + (b"\x07" if pick % 5 == 0 else b"")
        else:
            arg = b""

        self._execute(ch, nid, caller, fun, arg)

    @rule(c=CHAN, pick=PICK, when=st.sampled_from(["window", "window", "now", "seconds", "deadline"]), offset=OFFSET)
    def execute_valid(self, c: int, pick: int, when: str, offset: int) -> None:
        """The party the app lets act does what it may: claims with the preimage until the
        timeout, reclaims after it, or cancels (the receiver, at any time); moves (winning if it
        can), or claims the game on a timeout."""
        ch = self._chan(c)
        live = sorted(nid for nid, nc in ch.onchain.items() if nc.blocked_alice + nc.blocked_bob)
        if not live:
            return
        nid = live[pick % len(live)]
        nc = ch.onchain[nid]
        if when == "window":  # the call in the window's last second, or one or two seconds after it
            if nc.window_end + offset > self.now:
                self.now = nc.window_end + offset
        else:
            self._wait(ch, when, pick, offset)
        t, data = self.now + 1, nc.storage
        if nc.app == self._app(TTT):
            turn = _word(data, 0) % 2
            if t > nc.since + _word(data, 1) and pick % 2:
                caller, fun, arg = 1 - turn, 1, b""
            else:
                caller, fun, arg = turn, 0, ttt_cell_for(data, pick // 2).to_bytes(32, "big")
        else:
            sender = _word(data, 0) % 2
            if pick % 5 == 0:
                caller, fun, arg = 1 - sender, 2, b""
            elif t <= _word(data, 2):
                caller, fun, arg = 1 - sender, 0, self.preimages.get(data[32:64], b"")
            else:
                caller, fun, arg = sender, 1, b""
        self._execute(ch, nid, caller, fun, arg)

    def _execute(self, ch: Chan, nid: bytes, caller: int, fun: int, arg: bytes) -> None:
        nc = ch.onchain.get(nid)
        app = nc.app if nc is not None else ZERO_ADDRESS
        data = nc.storage if nc is not None else b""
        t = self.now + 1
        nxt, label = None, None
        if ch.phase not in (Phase.OPEN, Phase.CLOSING):
            error = "ChannelsWrongPhase"
        elif caller == MALLORY:
            error = "ChannelsCallerNotParticipant"
        elif nc is None:
            error = "MSContractNotRegistered"
        elif ch.phase == Phase.CLOSING and t > max(ch.deadline + ch.delta, nc.settle_by):
            error = "MSContractSettlementOver"
        elif t <= nc.window_end:
            error = "MSContractWindowOpen"
        elif nc.blocked_alice + nc.blocked_bob == 0:
            error = "MSContractTerminated"
        elif app in (self._app(HTLC), self._app(TTT)):
            transition = htlc if app == self._app(HTLC) else ttt
            label, nxt = transition(caller, t, nc.since, fun, arg, (nc.blocked_alice, nc.blocked_bob,
                                                                    nc.released_alice, nc.released_bob, data))
            error = label if nxt is None else None
        else:  # no app there: the call into it fails
            error = errors.PerunError
        receipt = self._call("execute", ch, nid, error,
                             lambda: self.c.execute(self.parties[caller], ch.params, nid, fun, arg))
        if receipt is not None:
            ch.onchain[nid] = RegisteredNanocontract(nc.app, nc.window_end, t, nc.version + 1, *nxt[:4], 0, nxt[4])
            ch.executed.add(nid)
            args = receipt.event("NanocontractExecuted").args
            assert (args["version"], args["blockedAlice"], args["blockedBob"], args["releasedAlice"],
                    args["releasedBob"], args["data"]) == (nc.version + 1, *nxt)
            event(f"executed {label}")

    @rule(c=CHAN, caller=CALLER, forge=st.sampled_from([None] * 9 + CHANNEL_KINDS), pick=PICK, amount=AMOUNT,
          garbage=st.integers(0, 9), when=WHEN, offset=OFFSET)
    def close(self, c: int, caller, forge: str | None, pick: int, amount: int, garbage: int, when: str,
              offset: int) -> None:
        """Any party closes with any channel state someone signed, or one just forged."""
        ch = self._chan(c)
        self._wait(ch, when, pick, offset)
        if forge is not None:
            caller, signer = self._forger(caller, garbage, pick)
            signed = self._forge_channel_state(ch, signer, forge, pick, amount)
        else:
            # Mostly one of the last few states: the latest ones are those the parties fight over.
            index = -1 - pick % min(4, len(ch.cstates)) if pick % 3 else pick % len(ch.cstates)
            signed = ch.cstates[index]
            caller = self._countersigned(signed, caller, pick)
        self._close(ch, caller, signed, garbage == 0)

    @rule(c=CHAN, caller=PARTY, pick=PICK, when=WHEN, offset=OFFSET)
    def close_latest(self, c: int, caller: int, pick: int, when: str, offset: int) -> None:
        """A party closes with the honest history's latest channel state."""
        ch = self._chan(c)
        self._wait(ch, when, pick, offset)
        self._close(ch, caller, next(s for s in reversed(ch.cstates) if s.state == ch.latest), False)

    def _close(self, ch: Chan, caller: int, signed: Signed, garbage: bool) -> None:
        s = signed.state
        sig, countersigned = self._sig(signed, caller, garbage)
        if not garbage and not signed.sigs:
            sig = b""
        t = self.now + 1
        p = ch.params
        fs = s.nanocontracts
        in_range = s.cash_alice <= p.total and s.cash_bob <= p.total
        unsorted = None
        for i, f in enumerate(fs):
            if i > 0 and f.nid <= fs[i - 1].nid:
                unsorted = i
                break
            in_range = in_range and f.alice <= p.total and f.bob <= p.total
        initial = s.version == 0 and s.cash_alice == p.deposit_alice and not fs
        if ch.phase not in (Phase.OPEN, Phase.CLOSING):
            error = "ChannelsWrongPhase"
        elif caller == MALLORY:
            error = "ChannelsCallerNotParticipant"
        elif s.channel_id != ch.cid:
            error = "ChannelsWrongChannel"
        elif len(fs) > MAX_NANOCONTRACTS:
            error = "MSContractTooManyNanocontracts"
        elif unsorted is not None:
            error = "MSContractNanocontractsUnsorted"
        elif not in_range or s.cash_alice + s.cash_bob + sum(f.alice + f.bob for f in fs) != p.total:
            error = "ChannelsBalancesNotConserved"
        elif ch.phase == Phase.CLOSING and t > ch.deadline:
            error = "ChannelsDisputeWindowOver"
        elif ch.phase == Phase.CLOSING and s.version <= ch.registered.version:
            error = "ChannelsStaleVersion"
        elif not initial and not countersigned:
            error = "ChannelsInvalidSignature"
        else:
            error = None
        receipt = self._call("close", ch, None, error, lambda: self.c.close(self.parties[caller], p, s, sig))
        if receipt is not None:
            event("close replaced the registered state" if ch.phase == Phase.CLOSING else "closed")
            if ch.phase == Phase.OPEN:
                ch.phase, ch.deadline = Phase.CLOSING, t + ch.delta
            ch.registered = s
            args = receipt.event("CloseRegistered").args
            assert (args["version"], args["cashAlice"], args["cashBob"], args["deadline"]) == (
                s.version, s.cash_alice, s.cash_bob, ch.deadline)
            assert tuple((f["nid"], f["alice"], f["bob"]) for f in args["nanocontracts"]) == tuple(
                f.as_abi() for f in fs)

    @rule(c=CHAN, caller=st.sampled_from([ALICE, BOB, MALLORY]), wrong=st.integers(0, 9), pick=PICK,
          when=WHEN_FINALIZE, offset=OFFSET)
    def finalize(self, c: int, caller: int, wrong: int, pick: int, when: str, offset: int) -> None:
        """Anyone finalizes, mostly with the right fundings."""
        ch = self._chan(c)
        self._wait(ch, when, pick, offset)
        self._finalize(ch, caller, wrong, pick)

    @rule(c=CHAN, caller=st.sampled_from([ALICE, BOB, MALLORY]), pick=PICK, offset=OFFSET)
    def finalize_after_settlement(self, c: int, caller: int, pick: int, offset: int) -> None:
        """Anyone finalizes with the right fundings around deadline + Δ, when whatever a
        nanocontract still blocks goes back to who blocked it; if nobody has closed the channel
        yet, a party first closes it with the latest honest state."""
        ch = self._chan(c)
        if ch.phase == Phase.OPEN:
            self._close(ch, pick % 2, next(s for s in reversed(ch.cstates) if s.state == ch.latest), False)
        self._wait(ch, "settlement end", pick, offset)
        self._finalize(ch, caller, 1, pick)

    def _finalize(self, ch: Chan, caller: int, wrong: int, pick: int) -> None:
        p = ch.params
        listed = ch.registered.nanocontracts if ch.registered is not None else ()
        fundings = listed
        if wrong == 0:  # the fundings of another state, or none
            fundings = () if pick % 3 == 0 else ch.cstates[pick % len(ch.cstates)].state.nanocontracts
        t = self.now + 1
        settling = ch.phase == Phase.CLOSING and t <= ch.deadline + ch.delta
        if ch.phase != Phase.CLOSING:
            error = "ChannelsWrongPhase"
        elif tuple(fundings) != tuple(listed):
            error = "MSContractWrongNanocontracts"
        elif t <= ch.deadline:
            error = "ChannelsFinalizeTooEarly"
        elif settling and not all(
                (nc := ch.onchain.get(f.nid)) is not None and t > nc.window_end
                and nc.blocked_alice + nc.blocked_bob == 0 for f in listed):
            error = "ChannelsFinalizeTooEarly"
        else:
            error = None
        chain = self.w.chain
        before = [chain.balance(a.address) for a in self.parties] if error is None else []
        receipt = self._call("finalize", ch, None, error,
                             lambda: self.c.finalize(self.parties[caller], p, fundings))
        if receipt is None:
            return
        after = [chain.balance(a.address) for a in self.parties]
        tx = receipt.transaction.receipt
        fee = tx["gasUsed"] * tx["effectiveGasPrice"]
        args = receipt.event("Finalized").args
        paid = (args["payoutAlice"], args["payoutBob"])

        # The contract pays out exactly the deposits, and what it says it pays out.
        assert paid[0] + paid[1] == p.total
        for party, gained in ((ALICE, paid[0]), (BOB, paid[1]), (MALLORY, 0)):
            assert after[party] - before[party] == gained - (fee if party == caller else 0)

        # What it pays is the model's rule and perun.core.multistate.payouts over what the chain holds.
        reg = ch.registered
        expected = [reg.cash_alice, reg.cash_bob]
        for f in listed:
            nc = ch.onchain.get(f.nid)
            held = nc and nc.blocked_alice + nc.blocked_bob + nc.released_alice + nc.released_bob
            if nc is not None and held == f.total:
                expected[0] += nc.blocked_alice + nc.released_alice
                expected[1] += nc.blocked_bob + nc.released_bob
            else:
                expected[0] += f.alice
                expected[1] += f.bob
        assert paid == tuple(expected)
        reads = {f.nid: on_chain(self.c.nanocontract, ch.cid, f.nid) for f in listed}
        assert reads == {f.nid: ch.onchain.get(f.nid, NOT_REGISTERED) for f in listed}
        registered = {nid: r.state(ch.cid, nid) for nid, r in reads.items() if r.registered}
        assert payouts(p, reg, registered) == paid
        assert (args["channelId"], args["version"]) == (ch.cid, reg.version)

        ch.phase, ch.deadline, ch.paid = Phase.CLOSED, 0, paid
        self._label_finalize(ch, listed, settling)

    def _label_finalize(self, ch: Chan, listed, settling: bool) -> None:
        def label(text: str) -> None:
            event(f"{'endgame ' if self.ending else ''}finalized{text}")

        label("")
        label(" within deadline + Δ" if settling else " after deadline + Δ")
        counts = ("no nanocontract", "1 nanocontract", "2 nanocontracts", "3+ nanocontracts")
        label(f" with {counts[min(len(listed), 3)]}")
        if ch.registered.version > 0 and ch.registered not in [s.state for s in ch.cstates if len(s.sigs) == 2]:
            label(" a state only one party signed")
        for f in listed:
            nc = ch.onchain.get(f.nid)
            if nc is None:
                label(" with unregistered nanocontract")
            elif nc.blocked_alice + nc.blocked_bob + nc.released_alice + nc.released_bob != f.total:
                label(" with mismatching nanocontract")
            elif nc.blocked_alice + nc.blocked_bob:
                label(" with live nanocontract")
            else:
                label(" with terminated nanocontract")
            if f.nid in ch.executed:
                label(" with executed nanocontract")

    @rule(c=CHAN, caller=st.sampled_from([ALICE, BOB, MALLORY]), kind=st.sampled_from(FINAL_KINDS),
          signers=st.sampled_from(FINAL_SIGNERS), pick=PICK, amount=AMOUNT, dispute=st.booleans(),
          when=WHEN_FINALIZE, offset=OFFSET)
    def cooperative_close(self, c: int, caller: int, kind: str, signers: str, pick: int, amount: int,
                          dispute: bool, when: str, offset: int) -> None:
        """Anyone submits a final state, at any time: mostly the cash the parties settle on (the
        honest history's latest cash plus what each live nanocontract's latest state gives each
        party), above every channel version either party signed. With `dispute`, a party first
        closes an open channel with the latest honest state, which the final state then ends,
        around D or D + Δ."""
        ch = self._chan(c)
        if dispute and ch.phase == Phase.OPEN:
            self._close(ch, pick % 2, next(s for s in reversed(ch.cstates) if s.state == ch.latest), False)
        self._wait(ch, when, pick, offset)
        latest = ch.latest
        ca = latest.cash_alice + sum(ch.live[f.nid].payout(ALICE) for f in latest.nanocontracts)
        cb = latest.cash_bob + sum(ch.live[f.nid].payout(BOB) for f in latest.nanocontracts)
        registered = ch.registered.version if ch.registered is not None else latest.version
        cid, v = ch.cid, min(UINT64_MAX, 1 + max(s.state.version for s in ch.cstates))
        if kind == "registered":
            v = registered
        elif kind == "stale":
            v = max(0, registered - 1 - amount % 3)
        elif kind == "higher":
            v = min(UINT64_MAX, registered + 1 + amount % 3)
        elif kind == "mismatch":
            d = 1 + amount % 5
            ca, cb = (ca + d, cb) if pick % 2 else (ca, cb - d if cb >= d else cb + d)
        elif kind == "big":
            huge = BIG[amount % len(BIG)]
            ca, cb = (huge, cb) if pick % 2 else (huge, (ca + cb - huge) % 2**256)  # the latter wraps to the total
        elif kind == "wrong channel":
            others = [o.cid for o in self.chans if o is not ch]
            cid = others[0] if others and pick % 2 else keccak(b"elsewhere")
        try:
            final = FinalChannelState(cid, v, ca, cb)
        except errors.PerunError:
            final = _raw(FinalChannelState, channel_id=cid, version=v, cash_alice=ca, cash_bob=cb)
        d = digest(self.c.domain, final)
        by = {p: sign(d, self.parties[p].key) for p in (ALICE, BOB, MALLORY)}
        sig_alice, sig_bob = {
            "both": (by[ALICE], by[BOB]),
            "alice twice": (by[ALICE], by[ALICE]),
            "mallory for alice": (by[MALLORY], by[BOB]),
            "swapped": (by[BOB], by[ALICE]),
            "garbage": (by[ALICE], b"\x00" * 65) if pick % 2 else (b"\x00" * 65, by[BOB]),
        }.get(signers, (None, None))
        if signers == "channel state":
            ordinary = digest(self.c.domain, channel_state(cid, v, ca, cb, ()))
            sig_alice, sig_bob = (sign(ordinary, self.parties[p].key) for p in (ALICE, BOB))
        self._cooperative_close(ch, caller, final, sig_alice, sig_bob)

    def _cooperative_close(self, ch: Chan, caller: int, final: FinalChannelState, sig_alice: bytes,
                           sig_bob: bytes) -> None:
        p = ch.params
        d = digest(self.c.domain, final)
        t = self.now + 1
        if ch.phase not in (Phase.OPEN, Phase.CLOSING):
            error = "ChannelsWrongPhase"
        elif final.channel_id != ch.cid:
            error = "ChannelsWrongChannel"
        elif final.cash_alice > p.total or final.cash_bob != p.total - final.cash_alice:
            error = "ChannelsBalancesNotConserved"
        elif ch.phase == Phase.CLOSING and final.version <= ch.registered.version:
            error = "ChannelsStaleVersion"
        elif sig_alice != sign(d, self.w.alice.key) or sig_bob != sign(d, self.w.bob.key):
            error = "ChannelsInvalidSignature"  # (signatures are deterministic: the only valid ones)
        else:
            error = None
        chain = self.w.chain
        before = [chain.balance(a.address) for a in self.parties] if error is None else []
        phase, deadline = ch.phase, ch.deadline
        receipt = self._call("cooperative close", ch, None, error, lambda: self.c.cooperative_close(
            self.parties[caller], p, final, sig_alice, sig_bob))
        if receipt is None:
            return
        after = [chain.balance(a.address) for a in self.parties]
        tx = receipt.transaction.receipt
        fee = tx["gasUsed"] * tx["effectiveGasPrice"]
        args = receipt.event("CooperativelyClosed").args
        paid = (args["payoutAlice"], args["payoutBob"])
        assert (args["channelId"], args["version"]) == (ch.cid, final.version)
        assert paid == (final.cash_alice, final.cash_bob) and sum(paid) == p.total
        for party, gained in ((ALICE, paid[0]), (BOB, paid[1]), (MALLORY, 0)):
            assert after[party] - before[party] == gained - (fee if party == caller else 0)
        ch.phase, ch.deadline, ch.paid = Phase.CLOSED, 0, paid
        if phase == Phase.OPEN:
            event("cooperatively closed in Open")
        else:
            event("cooperatively closed in Closing " + ("by D" if t <= deadline else "after D"))
        if ch.onchain:
            event("cooperatively closed with nanocontracts on chain")

    def _wait(self, ch: Chan, when: str, pick: int, offset: int) -> None:
        """Moves the clock before a call: by some seconds, or so that the call comes one second
        before, at, or one second after a deadline: the channel's, its deadline + Δ, a
        registration window's end, a hash-time lock's timeout or a game's move timeout."""
        if when == "now":
            return
        if when == "seconds":
            self.now += pick % 61
            return
        times = set()
        if ch.phase == Phase.CLOSING:
            times = {"deadline": {ch.deadline, ch.deadline + ch.delta}, "channel deadline": {ch.deadline},
                     "settlement end": {ch.deadline + ch.delta}}[when]
        if when == "deadline":
            for nc in ch.onchain.values():
                times.add(nc.window_end)
                if nc.app == self._app(HTLC) and len(nc.storage) == 96:
                    times.add(_word(nc.storage, 2))
                elif nc.app == self._app(TTT) and len(nc.storage) == 352:
                    times.add(nc.since + _word(nc.storage, 1))
        # (A deadline far away, say a corrupted timeout of 2**64, is not one to wait for.)
        future = sorted(x + offset for x in times if self.now < x + offset - 1 < self.now + 10_000)
        if future:
            self.now = future[pick % len(future)] - 1

    # ------------------------------------------------------------------ invariants

    @invariant()
    def after_each_step(self) -> None:
        self.payouts_equal_deposits()
        if self.touched is not None:  # the step called the contract
            self.contract_holds_exactly_the_unpaid_deposits()
            self.chain_holds_what_the_model_says()
            self.touched = None

    def payouts_equal_deposits(self) -> None:
        for ch in self.chans:
            if ch.phase == Phase.CLOSED:
                assert ch.paid is not None and sum(ch.paid) == ch.params.total

    def contract_holds_exactly_the_unpaid_deposits(self) -> None:
        paid_out = {ch.cid for ch in self.chans if ch.phase == Phase.CLOSED}
        held = sum(p.total for p, cid in self.all_params if cid not in paid_out)
        assert self.w.chain.balance(self.c.address) == held

    def chain_holds_what_the_model_says(self) -> None:
        """What the contract stores for the channel (close, finalize) or the nanocontract
        (register, execute) the last call was about: what the model says, and so after a refused
        call what it was before. The others did not change (an eth_call costs 10-20 ms here, too
        much to read everything after every step)."""
        ch, nid = self.touched
        if nid is not None:
            assert on_chain(self.c.nanocontract, ch.cid, nid) == ch.onchain.get(nid, NOT_REGISTERED)
            return
        stored = on_chain(self.c.channel, ch.cid)
        assert stored.phase == ch.phase
        if ch.phase == Phase.CLOSING:
            assert (stored.deadline, stored.version, stored.balance_alice) == (
                ch.deadline, ch.registered.version, ch.registered.cash_alice)
        else:
            assert (stored.deadline, stored.version, stored.balance_alice) == (0, 0, 0)


MultistateChannelMachine.TestCase.settings = settings(
    max_examples=examples(100, long=1000), stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_multistate_channel_machine = MultistateChannelMachine.TestCase
