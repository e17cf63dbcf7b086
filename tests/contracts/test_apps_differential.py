"""Each nanocontract app's Python mirror equals its contract on random inputs: the same next
state, or the same error with the same fields (a Panic(0x11) overflow included).

A node signs a nanocontract update only if the mirror accepts it, and MSContract executes the
contract: any difference is a state one party signs that the chain then refuses, or the reverse.
The strategies are mostly well-formed (legal boards, the right preimage, times at a deadline
±1) so that every rule is reached, with some malformed storage and random arguments mixed in.
Run with `--hypothesis-show-statistics` to see how often each outcome was hit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

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
from perun.core.apps import virtualchannel as vc
from perun.core.eip712 import Domain, address_of
from tests.conftest import examples

U256 = 2**256 - 1
U64 = 2**64 - 1
APP_NAMES = ("HashTimeLock", "TicTacToe", "VirtualChannel")

Outcome = tuple[Any, ...]


@pytest.fixture(scope="module")
def deployed(embedded_chain: Chain) -> Iterator[dict[str, Any]]:
    """The app contracts, deployed on a snapshot that is reverted after this module."""
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


def outcome_name(outcome: Outcome) -> str:
    """The error's name, "ok, released" (nothing blocked any more) or "ok"."""
    return outcome[1] if outcome[0] == "error" else "ok, released" if outcome[1][:2] == (0, 0) else "ok"


def agree(deployed: dict[str, Any], name: str, case: tuple[Context, int, bytes, AppState],
          app: App | None = None) -> Outcome:
    """The contract's outcome of `case`, once the mirror's is found equal to it."""
    expected = on_chain(deployed[name], *case)
    assert off_chain(app or app_named(name), *case) == expected
    return expected


def check(deployed: dict[str, Any], name: str, case: tuple[Context, int, bytes, AppState],
          app: App | None = None) -> Outcome:
    """`agree`, in a Hypothesis test: the outcome is counted in its statistics."""
    expected = agree(deployed, name, case, app)
    event(outcome_name(expected))
    return expected


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
    fun = draw(rarely(st.sampled_from([htlc.CLAIM, htlc.RECLAIM, htlc.CANCEL]), st.integers(0, 255), one_in=10))
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
    # RECLAIM is the sender's; CLAIM and CANCEL the receiver's.
    ctx = Context(draw(callers(sender if fun == htlc.RECLAIM else 1 - sender)), draw(around(timeout)), draw(words))
    return ctx, fun, z, state


@settings(max_examples=examples(300), deadline=None)
@given(case=htlc_cases())
def test_hashtimelock_mirror_equals_the_contract(deployed: dict[str, Any],
                                                 case: tuple[Context, int, bytes, AppState]) -> None:
    check(deployed, "HashTimeLock", case)


@pytest.mark.parametrize("sender", [ALICE, BOB])
def test_hashtimelock_cancel_at_every_boundary(deployed: dict[str, Any], sender: int) -> None:
    """CANCEL by either party (and any uint8), at times around the timeout, with any z, on a live,
    a claimed and a cancelled lock: the same outcome on both sides, and the one the rules say."""
    preimage, timeout, amount = b"\x07" * 32, 1_000, 10**18
    live = htlc.initial(sender, amount, htlc.hashlock_of(preimage), timeout)
    receiver = 1 - sender
    claimed = htlc.HashTimeLock().transition(Context(receiver, timeout, 0), htlc.CLAIM, preimage, live)
    cancelled = htlc.HashTimeLock().transition(Context(receiver, 0, 0), htlc.CANCEL, b"", live)
    for state in (live, claimed, cancelled):
        for caller in (sender, receiver, 7):
            for time in (0, timeout - 1, timeout, timeout + 1, U256):
                for z in (b"", preimage, b"\x01" * 33):
                    outcome = agree(deployed, "HashTimeLock", (Context(caller, time, 0), htlc.CANCEL, z, state))
                    if state is not live:
                        assert outcome[:2] == ("error", "HashTimeLockSettled")
                    elif caller == sender:
                        assert outcome[:3] == ("error", "HashTimeLockWrongCaller", {"caller": caller})
                    else:
                        assert outcome == ("ok", live.release(sender, amount).as_abi())


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


@settings(max_examples=examples(300), deadline=None)
@given(case=tictactoe_cases())
def test_tictactoe_mirror_equals_the_contract(deployed: dict[str, Any],
                                              case: tuple[Context, int, bytes, AppState]) -> None:
    check(deployed, "TicTacToe", case)


# --------------------------------------------------------------------------- VirtualChannel

ALICE_KEY, BOB_KEY, MALLORY_KEY = (bytes([k]) * 32 for k in (0xA1, 0xB0, 0x66))
VC_ALICE, VC_BOB = address_of(ALICE_KEY), address_of(BOB_KEY)
VC_INGRID = address_of(bytes([0x16]) * 32)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
AMOUNT_MAX = 2**128 - 1


def high_s(sig: bytes) -> bytes:
    """The same signature's malleable twin (n - s, v flipped): ecrecover accepts it, ECDSA does not."""
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


@st.composite
def virtual_signatures(draw: st.DrawFn, domain: Domain, other_domain: Domain, state: vc.VirtualState, key: bytes,
                       other_key: bytes) -> bytes:
    """Mostly `key`'s signature of `state`; else a forgery: another signer, another domain or
    state, a high-s twin, a v that ecrecover refuses, r or s zero or out of range, random bytes."""
    good = vc.sign_virtual(domain, state, key)
    forged = st.one_of(
        st.just(vc.sign_virtual(domain, state, draw(st.sampled_from([other_key, MALLORY_KEY])))),
        st.just(vc.sign_virtual(other_domain, state, key)),
        st.builds(lambda n: vc.sign_virtual(domain, vc.VirtualState(state.id, n, state.balance_alice,
                                                                    state.balance_bob, not state.final), key),
                  st.integers(0, U64)),
        st.just(high_s(good)),
        st.sampled_from([0, 1, 26, 29, 255]).map(lambda v: good[:64] + bytes([v])),
        st.sampled_from([bytes(32), SECP256K1_N.to_bytes(32, "big"), b"\xff" * 32]).map(lambda r: r + good[32:]),
        st.sampled_from([bytes(32), (SECP256K1_N // 2 + 1).to_bytes(32, "big")]).map(
            lambda s: good[:32] + s + good[64:]),
        st.binary(min_size=64, max_size=64).flatmap(lambda rs: st.sampled_from([27, 28]).map(
            lambda v: rs + bytes([v]))),
    )
    return draw(rarely(st.just(good), forged, one_in=8))


@st.composite
def virtual_cases(draw: st.DrawFn, contract: Any, chain_id: int) -> tuple[Context, int, bytes, AppState]:
    domain = vc.virtual_domain(chain_id, contract.address)
    other_domain = vc.virtual_domain(chain_id + 1, contract.address)
    side, end_role = draw(st.sampled_from([vc.SIDE_A, vc.SIDE_B])), draw(st.sampled_from([ALICE, BOB]))
    # SETTLE mostly: it has many more paths than FINALIZE.
    fun = draw(rarely(st.sampled_from([vc.SETTLE] * 3 + [vc.FINALIZE]), st.integers(0, 255), one_in=10))
    validity = draw(rarely(st.integers(1, 2**40), st.sampled_from([0, U64])))
    window = draw(rarely(st.integers(1, 2**20), st.sampled_from([0, U64])))
    cash_alice = draw(rarely(st.integers(0, 10**24), st.sampled_from([0, AMOUNT_MAX])))
    cash_bob = draw(rarely(st.integers(0, min(10**24, AMOUNT_MAX - cash_alice)), st.just(AMOUNT_MAX - cash_alice)))
    total = cash_alice + cash_bob
    stored = draw(rarely(st.integers(0, 10), st.sampled_from([0, U64])))
    stored_alice = draw(rarely(st.integers(0, total), st.just(cash_alice)))
    alice = draw(rarely(st.just(VC_ALICE), st.just("0x" + "00" * 20), one_in=20))
    channel_a, channel_b = draw(st.binary(min_size=32, max_size=32)), draw(st.binary(min_size=32, max_size=32))
    good = vc.encode(alice, VC_INGRID, VC_BOB, channel_a, channel_b, cash_alice, cash_bob, validity, window,
                     draw(st.integers(0, U64)), side, end_role, stored, stored_alice, total - stored_alice)
    data = draw(rarely(st.just(good), st.one_of(
        st.binary(max_size=16 * 32),  # any length
        st.sampled_from([-32, -1, 1, 32]).map(lambda n: good[:n] if n < 0 else good + bytes(n)),
        # one word changed, often out of range: an address, an amount, a uint64, side or endRole
        st.builds(lambda i, v: good[: 32 * i] + word_bytes(v) + good[32 * i + 32:],
                  st.sampled_from([0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]),
                  st.sampled_from([1, 2, U64, U64 + 1, 2**160 - 1, 2**160, AMOUNT_MAX, AMOUNT_MAX + 1, U256])),
    ), one_in=12))
    # Blocked as the side says mostly; rarely nothing (settled) or anything.
    by_end, by_ingrid = (cash_alice, cash_bob) if side == vc.SIDE_A else (cash_bob, cash_alice)
    blocked = (by_end, by_ingrid) if end_role == ALICE else (by_ingrid, by_end)
    blocked = draw(rarely(st.just(blocked), st.one_of(st.just((0, 0)), st.tuples(amounts, amounts)), one_in=10))
    # Released: small, or at the edge of overflowing when a half pays out.
    released = [draw(rarely(small, st.sampled_from([0, total, cash_alice, cash_bob]).flatmap(filling), one_in=6))
                for _ in range(2)]
    state = AppState(*blocked, *released, data)

    version = draw(rarely(st.sampled_from(sorted({max(stored - 1, 0), stored, min(stored + 1, U64)})),
                          st.integers(0, U64), one_in=4))
    balance_alice = draw(rarely(st.integers(0, total), st.sampled_from([0, total, total + 1, U256])))
    rest = max(total - balance_alice, 0)
    balance_bob = draw(rarely(st.just(rest), st.sampled_from([rest + 1, 0, U256]), one_in=10))
    # Final half the time: a final state settles at once only by Ingrid, and counts as any other
    # state by γ's end (the time and version rules), so each caller needs both.
    final = draw(st.booleans())
    signed = vc.VirtualState(vc.decode(good).id, version, balance_alice, balance_bob, final)
    sig_alice = draw(virtual_signatures(domain, other_domain, signed, ALICE_KEY, BOB_KEY))
    sig_bob = draw(virtual_signatures(domain, other_domain, signed, BOB_KEY, ALICE_KEY))
    z = vc.settle_arg(signed, *draw(rarely(st.just((sig_alice, sig_bob)), st.just((sig_bob, sig_alice)), one_in=30)))
    z = draw(rarely(st.just(z), st.one_of(
        wrong_length,
        st.sampled_from([-1, 1, 32]).map(lambda n: z[:n] if n < 0 else z + bytes(n)),
        # a word out of range: version, final, vAlice or vBob
        st.builds(lambda i, v: z[: 32 * i] + word_bytes(v) + z[32 * i + 32:],
                  st.sampled_from([0, 3, 6, 9]), st.sampled_from([2, 256, U64 + 1, U256])),
    ), one_in=12))
    # γ's end or Ingrid about half the time each (any other caller number is Ingrid too).
    caller = draw(callers(draw(st.sampled_from([end_role, 1 - end_role]))))
    # At each deadline ±1, more often at the one that rules this call: validity + window for γ's
    # end's submissions, final or not, validity + 2 window for Ingrid's and for FINALIZE.
    ruling = validity + (window if fun == vc.SETTLE and caller == end_role else 2 * window)
    time = draw(st.sampled_from([validity, validity + window, validity + 2 * window, ruling, ruling]).flatmap(around))
    return Context(caller, time, draw(words)), fun, z, state


def settle_kind(case: tuple[Context, int, bytes, AppState]) -> str | None:
    """For a SETTLE on well-formed storage and argument: whose (γ's end's or Ingrid's) state,
    final or not, and its version against the stored one; else None."""
    ctx, fun, z, state = case
    try:
        stored, signed = vc.decode(state.data), vc.decode_settle_arg(z)
    except errors.VirtualChannelMalformed:
        return None
    if fun != vc.SETTLE:
        return None
    relation = "<" if signed.version < stored.version else "=" if signed.version == stored.version else ">"
    return (f"{'final' if signed.final else 'non-final'} by {'the end' if ctx.caller == stored.end_role else 'Ingrid'}"
            f", version {relation} stored")


@settings(max_examples=examples(300), deadline=None)
@given(data=st.data())
def test_virtualchannel_mirror_equals_the_contract(deployed: dict[str, Any], embedded_chain: Chain,
                                                   data: st.DataObject) -> None:
    contract = deployed["VirtualChannel"]
    case = data.draw(virtual_cases(contract, embedded_chain.chain_id))
    outcome = check(deployed, "VirtualChannel", case, vc.VirtualChannel.at(embedded_chain.chain_id, contract.address))
    kind = settle_kind(case)
    if kind is not None:
        event(f"SETTLE {kind}: {outcome_name(outcome)}")


def virtual_rule(final: bool, by_end: bool, version: int, stored: int, time: int, validity: int,
                 window: int) -> str:
    """The outcome of a well-formed, well-signed SETTLE, by the rules as the contract states them."""
    if final and not by_end:
        return "ok, released"  # only Ingrid settles at once, whatever the time and version
    if time <= validity:
        return "VirtualChannelTooEarly"
    if time > validity + (window if by_end else 2 * window):
        return "VirtualChannelSubmissionOver"
    if version < stored or (by_end and version == stored):
        return "VirtualChannelStaleVersion"
    return "ok"


# γ's end is ALICE in one (ν_a with Alice the ledger's Alice) and BOB in the other.
@pytest.mark.parametrize(("side", "end_role"), [(vc.SIDE_A, ALICE), (vc.SIDE_B, BOB)])
def test_virtualchannel_rules_at_every_boundary(deployed: dict[str, Any], embedded_chain: Chain, side: int,
                                                end_role: int) -> None:
    """Every rule at its edges, whatever the random cases hit: a final or non-final state by γ's
    end, by Ingrid's role and by another caller number, with a version below, equal to and above
    the stored one, at validity, validity + window and validity + 2 window ±1; FINALIZE at
    validity + 2 window ±1 and at settleBy. The contract and the mirror agree, and both follow
    the rules."""
    contract = deployed["VirtualChannel"]
    mirror = vc.VirtualChannel.at(embedded_chain.chain_id, contract.address)
    domain = mirror.domain
    validity, window, stored, cash_alice, cash_bob = 10**6, 3_600, 5, 30, 70
    parameters = (VC_ALICE, VC_INGRID, VC_BOB, b"\xaa" * 32, b"\xbb" * 32, cash_alice, cash_bob, validity, window,
                  9, side, end_role)
    state = replace(vc.initial(*parameters), data=vc.encode(*parameters, stored, 40, 60))
    gamma = vc.decode(state.data).id
    times = [0, validity, validity + 1, validity + window, validity + window + 1, validity + 2 * window,
             validity + 2 * window + 1, U256]
    reached: dict[tuple[bool, bool, int], set[str]] = {}  # (final, by the end, version - stored): outcomes
    for final in (False, True):
        for version in (stored - 1, stored, stored + 1):
            signed = vc.VirtualState(gamma, version, 10, 90, final)
            z = vc.settle_arg(signed, vc.sign_virtual(domain, signed, ALICE_KEY),
                              vc.sign_virtual(domain, signed, BOB_KEY))
            for caller in (end_role, 1 - end_role, 7):
                for time in times:
                    outcome = outcome_name(agree(deployed, "VirtualChannel", (Context(caller, time), vc.SETTLE, z,
                                                                               state), mirror))
                    by_end = caller == end_role
                    assert outcome == virtual_rule(final, by_end, version, stored, time, validity, window), (
                        final, caller, version, time)
                    reached.setdefault((final, by_end, version - stored), set()).add(outcome)
    # Each kind of submission reached every outcome it can have: Ingrid's final state only
    # settles; the end's, final or not, and Ingrid's other states meet every time and version
    # rule, and an equal version is stored for Ingrid only.
    timed = {"VirtualChannelTooEarly", "VirtualChannelSubmissionOver"}
    assert reached == {
        **{(True, False, d): {"ok, released"} for d in (-1, 0, 1)},
        **{(final, True, d): timed | {"VirtualChannelStaleVersion" if d <= 0 else "ok"}
           for final in (False, True) for d in (-1, 0, 1)},
        **{(False, False, d): timed | {"VirtualChannelStaleVersion" if d < 0 else "ok"} for d in (-1, 0, 1)},
    }
    settle_by = contract.functions.settleBy(state.as_abi()).call()
    assert settle_by == validity + 3 * window == mirror.settle_by(state)
    for time, outcome in ((validity + 2 * window, "VirtualChannelTooEarly"), (validity + 2 * window + 1,
                                                                             "ok, released"),
                          (settle_by, "ok, released")):
        for caller in (end_role, 1 - end_role):
            assert outcome_name(agree(deployed, "VirtualChannel", (Context(caller, time), vc.FINALIZE, b"", state),
                                      mirror)) == outcome


# --------------------------------------------------------------------------- static


@pytest.mark.parametrize("name", APP_NAMES)
def test_transition_is_a_static_call(name: str) -> None:
    (transition,) = [item for item in load(name)["abi"] if item.get("name") == "transition"]
    assert transition["stateMutability"] in ("view", "pure")
