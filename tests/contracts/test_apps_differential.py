"""Each nanocontract app's Python mirror equals its contract on random inputs: the same next
state, or the same error with the same fields (a Panic(0x11) overflow included).

A node signs a nanocontract update only if the mirror accepts it, and MSContract executes the
contract: any difference is a state one party signs that the chain then refuses, or the reverse.
The strategies are mostly well-formed (legal boards, the right preimage, times at a deadline
±1) so that every rule is reached, with some malformed storage and random arguments mixed in.
Run with `--hypothesis-show-statistics` to see how often each outcome was hit.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from perun import errors
from perun.chain.artifacts import load
from perun.chain.backend import Chain
from perun.chain.reverts import translate
from perun.core.apps import ALICE, BOB, App, AppState, Context, app_named
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import tictactoe as ttt

U256 = 2**256 - 1
U64 = 2**64 - 1
APP_NAMES = ("HashTimeLock", "TicTacToe")

Outcome = tuple[Any, ...]


@pytest.fixture(scope="module")
def deployed(embedded_chain: Chain) -> Iterator[dict[str, Any]]:
    """Both app contracts, deployed on a snapshot that is reverted after this module."""
    snapshot = embedded_chain.snapshot()
    yield {name: embedded_chain.contract(name, embedded_chain.deploy(embedded_chain.dev_accounts[0], name))
           for name in APP_NAMES}
    embedded_chain.revert_to(snapshot)


def _failure(exc: errors.PerunError) -> Outcome:
    return ("error", type(exc).__name__, getattr(exc, "fields", None), str(exc))


def on_chain(contract: Any, ctx: Context, fun: int, z: bytes, state: AppState) -> Outcome:
    try:
        result = contract.functions.transition(ctx.as_abi(), fun, z, state.as_abi()).call()
    except Exception as exc:  # whatever web3 / eth-tester raised, translated as the node would
        return _failure(translate(exc))
    return ("ok", tuple(result))


def off_chain(app: App, ctx: Context, fun: int, z: bytes, state: AppState) -> Outcome:
    try:
        return ("ok", app.transition(ctx, fun, z, state).as_abi())
    except errors.PerunError as exc:
        return _failure(exc)


def check(deployed: dict[str, Any], name: str, case: tuple[Context, int, bytes, AppState]) -> None:
    expected = on_chain(deployed[name], *case)
    event(expected[1] if expected[0] == "error" else "ok, released" if expected[1][:2] == (0, 0) else "ok")
    assert off_chain(app_named(name), *case) == expected


# --------------------------------------------------------------------------- shared strategies


def rarely(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int = 8) -> st.SearchStrategy[Any]:
    """`rare` one time in `one_in`, else `common`: the garbage mixed into well-formed inputs."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == 1 else common)


words = st.integers(0, U256)
amounts = rarely(st.integers(1, 10**24), st.just(0), one_in=16)
small = st.integers(0, 10**24)
funs = rarely(st.sampled_from([0, 1]), st.integers(0, 255), one_in=10)


def callers(right: int) -> st.SearchStrategy[int]:
    """The party the rules want mostly, the other one sometimes, any uint8 rarely."""
    return rarely(rarely(st.just(right), st.just(1 - right), one_in=6), st.integers(2, 255), one_in=12)


def filling(term: int) -> st.SearchStrategy[int]:
    """y such that `term` + y is 2**256 - 2, 2**256 - 1 or 2**256: Solidity's checked `+` at
    the edge of its overflow panic."""
    return st.sampled_from([-1, 0, 1]).map(lambda d: min(max(U256 - term + d, 0), U256))


def around(value: int) -> st.SearchStrategy[int]:
    """Times at `value` - 1, `value` and `value` + 1 mostly (kept a uint256), any rarely."""
    near = sorted({min(max(t, 0), U256) for t in (value - 1, value, value + 1)})
    return rarely(st.sampled_from(near), words, one_in=6)


def word_bytes(value: int) -> bytes:
    return value.to_bytes(32, "big")


# A z of a length the apps refuse: empty, a byte short or over a word, two words.
wrong_length = st.sampled_from([0, 1, 31, 33, 64]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


# --------------------------------------------------------------------------- HashTimeLock


@st.composite
def htlc_cases(draw: st.DrawFn) -> tuple[Context, int, bytes, AppState]:
    sender = draw(st.sampled_from([ALICE, BOB]))
    fun = draw(funs)
    preimage = draw(st.binary(min_size=32, max_size=32))
    hashlock = draw(rarely(st.just(htlc.hashlock_of(preimage)), st.binary(min_size=32, max_size=32), one_in=6))
    timeout = draw(rarely(st.integers(0, 2**40), st.sampled_from([0, U64])))
    data = draw(rarely(st.just(htlc.encode(sender, hashlock, timeout)), st.one_of(
        st.binary(max_size=128),  # any length
        st.builds(lambda s, t: word_bytes(s) + hashlock + word_bytes(t),
                  st.integers(0, 3), st.integers(U64 - 1, U64 + 1)),  # sender or timeout out of range
    )))
    amount = draw(amounts)
    other = draw(rarely(st.just(0), st.one_of(amounts, filling(amount))))
    blocked = (amount, other) if sender == ALICE else (other, amount)
    released = rarely(small, filling(amount), one_in=4)
    state = AppState(*blocked, draw(released), draw(released), data)
    # The right preimage half the time; another one, or one of the wrong length, the rest.
    z = draw(st.one_of(st.just(preimage), st.one_of(st.binary(min_size=32, max_size=32), wrong_length)))
    ctx = Context(draw(callers(sender if fun == htlc.RECLAIM else 1 - sender)), draw(around(timeout)), draw(words))
    return ctx, fun, z, state


@settings(max_examples=300, deadline=None)
@given(case=htlc_cases())
def test_hashtimelock_mirror_equals_the_contract(deployed: dict[str, Any],
                                                 case: tuple[Context, int, bytes, AppState]) -> None:
    check(deployed, "HashTimeLock", case)


# --------------------------------------------------------------------------- TicTacToe


@st.composite
def games(draw: st.DrawFn) -> tuple[int, tuple[int, ...]]:
    """(turn, cells) of a board reached by legal moves, stopping at a win; often one move from
    full, where the next move wins or draws."""
    turn = draw(st.sampled_from([ALICE, BOB]))
    order = draw(st.permutations(range(9)))
    cells = [ttt.EMPTY] * 9
    for cell in order[: draw(rarely(st.integers(0, 7), st.just(8), one_in=4))]:
        cells[cell] = ttt.mark_of(turn)
        turn = 1 - turn
        if ttt.winner(tuple(cells)) is not None:
            break
    return turn, tuple(cells)


@st.composite
def tictactoe_cases(draw: st.DrawFn) -> tuple[Context, int, bytes, AppState]:
    turn, cells = draw(games())
    fun = draw(funs)
    move_timeout = draw(rarely(st.integers(0, 3600), st.sampled_from([0, U64])))
    good = ttt.encode(turn, move_timeout, cells)
    data = draw(rarely(st.just(good), st.one_of(
        st.binary(max_size=12 * 32),  # any length
        # one word changed, often out of range: turn > 1, moveTimeout > uint64, or a cell > 2
        st.builds(lambda i, v: good[: 32 * i] + word_bytes(v) + good[32 * i + 32 :],
                  st.integers(0, 10), st.sampled_from([1, 2, 3, U64, U64 + 1, U256])),
    )))
    over = ttt.winner(cells) is not None or ttt.EMPTY not in cells
    # A finished game blocks nothing; rarely, a state that says otherwise.
    stake_alice = draw(amounts)
    stakes = st.tuples(st.just(stake_alice), rarely(amounts, filling(stake_alice)))
    blocked = draw(rarely(st.just((0, 0)), stakes) if over else rarely(stakes, st.just((0, 0)), one_in=20))
    # At the edge of overflowing with the pot (a win) or with one's own stake (a draw).
    released = [draw(rarely(small, st.sampled_from([sum(blocked), stake]).flatmap(filling), one_in=3))
                for stake in blocked]
    state = AppState(*blocked, *released, data)
    empty = [i for i, c in enumerate(cells) if c == ttt.EMPTY] or [0]
    taken = [i for i, c in enumerate(cells) if c != ttt.EMPTY] or [0]
    cell = rarely(st.sampled_from(empty), st.sampled_from(taken), one_in=3)
    z = draw(rarely(cell.map(ttt.move_arg), st.one_of(st.integers(9, U256).map(word_bytes), wrong_length)))
    since = draw(rarely(st.integers(0, 2**40), filling(move_timeout)))
    ctx = Context(draw(callers(turn if fun == ttt.MOVE else 1 - turn)), draw(around(since + move_timeout)), since)
    return ctx, fun, z, state


@settings(max_examples=300, deadline=None)
@given(case=tictactoe_cases())
def test_tictactoe_mirror_equals_the_contract(deployed: dict[str, Any],
                                              case: tuple[Context, int, bytes, AppState]) -> None:
    check(deployed, "TicTacToe", case)


# --------------------------------------------------------------------------- static


@pytest.mark.parametrize("name", APP_NAMES)
def test_transition_is_a_static_call(name: str) -> None:
    (transition,) = [item for item in load(name)["abi"] if item.get("name") == "transition"]
    assert transition["stateMutability"] in ("view", "pure")
