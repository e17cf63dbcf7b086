"""The Python mirrors of the nanocontract apps: exact states and errors, one rule at a time.

tests/contracts/test_apps_differential.py holds them equal to the contracts on random inputs;
here each rule is pinned down by hand.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from perun import errors
from perun.core.apps import ALICE, APPS, BOB, AppState, Context, app_named, checked_add
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import tictactoe as ttt
from perun.core.apps.hashtimelock import CLAIM, RECLAIM, HashTimeLock
from perun.core.apps.tictactoe import MOVE, TIMEOUT, Board, TicTacToe

U256 = 2**256 - 1
PANIC_0x11 = "reverted with panic 0x11"


def rejects(call, cls: type[errors.ContractRejected], **fields: object) -> None:
    with pytest.raises(cls) as info:
        call()
    assert type(info.value) is cls
    assert info.value.fields == fields


def panics(call) -> None:
    with pytest.raises(errors.TransactionFailed) as info:
        call()
    assert type(info.value) is errors.TransactionFailed
    assert str(info.value) == PANIC_0x11


# --------------------------------------------------------------------------- registry and helpers


def test_registry_names_every_app_by_its_contract() -> None:
    assert set(APPS) == {"HashTimeLock", "TicTacToe"}
    assert isinstance(app_named("HashTimeLock"), HashTimeLock)
    assert isinstance(app_named("TicTacToe"), TicTacToe)
    assert HashTimeLock.functions == {"claim": CLAIM, "reclaim": RECLAIM} == {"claim": 0, "reclaim": 1}
    assert TicTacToe.functions == {"move": MOVE, "timeout": TIMEOUT} == {"move": 0, "timeout": 1}


def test_an_unknown_app_name_says_which_are_known() -> None:
    with pytest.raises(KeyError, match="Chess.*HashTimeLock, TicTacToe"):
        app_named("Chess")


def test_checked_add_panics_like_solidity_past_uint256() -> None:
    assert checked_add(U256 - 1, 1) == U256
    panics(lambda: checked_add(U256, 1))


# --------------------------------------------------------------------------- HashTimeLock

PREIMAGE = bytes(range(32))
HASHLOCK = htlc.hashlock_of(PREIMAGE)
DEADLINE = 1_000
AMOUNT = 10


def lock(sender: int = ALICE, **changes: object) -> AppState:
    """AMOUNT locked by `sender`, with something released before to show it is kept."""
    fields = {"released_alice": 3, "released_bob": 4, **changes}
    return replace(htlc.initial(sender, AMOUNT, HASHLOCK, DEADLINE), **fields)


def run_htlc(caller: int, fun: int, time: int, z: bytes = b"", state: AppState | None = None) -> AppState:
    return HashTimeLock().transition(Context(caller, time, since=0), fun, z, state or lock())


def test_htlc_encoding_round_trips_and_initial_blocks_the_senders_amount() -> None:
    data = htlc.encode(BOB, HASHLOCK, 2**64 - 1)
    assert data == (1).to_bytes(32, "big") + HASHLOCK + (2**64 - 1).to_bytes(32, "big")
    assert htlc.decode(data) == htlc.Lock(BOB, HASHLOCK, 2**64 - 1)
    assert htlc.decode(data).receiver == ALICE
    assert htlc.initial(ALICE, 7, HASHLOCK, 5) == AppState(7, 0, 0, 0, htlc.encode(ALICE, HASHLOCK, 5))
    assert htlc.initial(BOB, 7, HASHLOCK, 5) == AppState(0, 7, 0, 0, htlc.encode(BOB, HASHLOCK, 5))
    assert HASHLOCK == bytes.fromhex("630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd")


@pytest.mark.parametrize(("sender", "hashlock", "timeout"),
                         [(2, HASHLOCK, 1), (ALICE, HASHLOCK[:31], 1), (ALICE, HASHLOCK, 2**64), (BOB, HASHLOCK, -1)])
def test_htlc_encode_refuses_what_would_not_decode(sender: int, hashlock: bytes, timeout: int) -> None:
    with pytest.raises(ValueError):
        htlc.encode(sender, hashlock, timeout)


@pytest.mark.parametrize("time", [DEADLINE - 1, DEADLINE])
def test_claim_with_the_preimage_until_the_timeout_releases_to_the_receiver(time: int) -> None:
    assert run_htlc(BOB, CLAIM, time, PREIMAGE) == AppState(0, 0, 3, 4 + AMOUNT, lock().data)
    bobs = lock(BOB)
    assert run_htlc(ALICE, CLAIM, time, PREIMAGE, bobs) == AppState(0, 0, 3 + AMOUNT, 4, bobs.data)


def test_claim_after_the_timeout_is_expired() -> None:
    rejects(lambda: run_htlc(BOB, CLAIM, DEADLINE + 1, PREIMAGE), errors.HashTimeLockExpired, timeout=DEADLINE)


def test_reclaim_at_the_timeout_is_not_expired_and_after_it_releases_to_the_sender() -> None:
    rejects(lambda: run_htlc(ALICE, RECLAIM, DEADLINE), errors.HashTimeLockNotExpired, timeout=DEADLINE)
    assert run_htlc(ALICE, RECLAIM, DEADLINE + 1) == AppState(0, 0, 3 + AMOUNT, 4, lock().data)


def test_a_wrong_preimage_is_reported_with_its_hash() -> None:
    wrong = bytes(32)
    rejects(lambda: run_htlc(BOB, CLAIM, 0, wrong), errors.HashTimeLockWrongPreimage,
            hashlock=HASHLOCK, hashOfPreimage=htlc.hashlock_of(wrong))


@pytest.mark.parametrize("z", [b"", PREIMAGE[:31], PREIMAGE + b"\x00"])
def test_a_preimage_of_the_wrong_length_is_reported_with_a_zero_hash(z: bytes) -> None:
    rejects(lambda: run_htlc(BOB, CLAIM, 0, z), errors.HashTimeLockWrongPreimage,
            hashlock=HASHLOCK, hashOfPreimage=bytes(32))


def test_only_the_receiver_claims_and_only_the_sender_reclaims() -> None:
    rejects(lambda: run_htlc(ALICE, CLAIM, 0, PREIMAGE), errors.HashTimeLockWrongCaller, caller=ALICE)
    rejects(lambda: run_htlc(BOB, RECLAIM, DEADLINE + 1), errors.HashTimeLockWrongCaller, caller=BOB)


def test_htlc_unknown_function() -> None:
    rejects(lambda: run_htlc(BOB, 2, 0, PREIMAGE), errors.HashTimeLockUnknownFunction, fun=2)
    rejects(lambda: run_htlc(BOB, 255, 0, PREIMAGE, lock(data=b"")), errors.HashTimeLockUnknownFunction, fun=255)


@pytest.mark.parametrize("data", [
    b"",
    htlc.encode(ALICE, HASHLOCK, DEADLINE)[:95],
    htlc.encode(ALICE, HASHLOCK, DEADLINE) + b"\x00",
    (2).to_bytes(32, "big") + HASHLOCK + DEADLINE.to_bytes(32, "big"),
    bytes(31) + b"\x01" + HASHLOCK + (2**64).to_bytes(32, "big"),
])
def test_malformed_htlc_storage(data: bytes) -> None:
    rejects(lambda: htlc.decode(data), errors.HashTimeLockMalformed)
    rejects(lambda: run_htlc(BOB, CLAIM, 0, PREIMAGE, lock(data=data)), errors.HashTimeLockMalformed)


@pytest.mark.parametrize(("blocked_alice", "blocked_bob"), [(0, 0), (AMOUNT, 1), (0, AMOUNT)])
def test_htlc_is_settled_unless_only_the_sender_blocks(blocked_alice: int, blocked_bob: int) -> None:
    state = lock(blocked_alice=blocked_alice, blocked_bob=blocked_bob)
    # Settled comes before the caller and preimage checks.
    rejects(lambda: run_htlc(ALICE, CLAIM, 0, b"", state), errors.HashTimeLockSettled)


def test_htlc_checks_in_the_contracts_order() -> None:
    # A wrong preimage is reported even when it is also too late.
    rejects(lambda: run_htlc(BOB, CLAIM, DEADLINE + 1, b"x"), errors.HashTimeLockWrongPreimage,
            hashlock=HASHLOCK, hashOfPreimage=bytes(32))
    # RECLAIM does not look at z.
    assert run_htlc(ALICE, RECLAIM, DEADLINE + 1, b"anything") == AppState(0, 0, 3 + AMOUNT, 4, lock().data)


def test_htlc_takes_any_other_caller_number_for_the_receiver_like_the_contract() -> None:
    # MSContract only passes 0 or 1; the mirror still agrees with the contract on any uint8.
    assert run_htlc(7, CLAIM, 0, PREIMAGE) == AppState(0, 0, 3, 4 + AMOUNT, lock().data)
    rejects(lambda: run_htlc(7, RECLAIM, DEADLINE + 1), errors.HashTimeLockWrongCaller, caller=7)


def test_htlc_overflow_panics_like_the_contract() -> None:
    # The sum of the blocked amounts, computed only when the sender's amount is not zero.
    panics(lambda: run_htlc(BOB, CLAIM, 0, PREIMAGE, lock(blocked_alice=U256, blocked_bob=1)))
    rejects(lambda: run_htlc(BOB, CLAIM, 0, PREIMAGE, lock(BOB, blocked_alice=U256, blocked_bob=0)),
            errors.HashTimeLockSettled)
    # The receiver's released amount.
    panics(lambda: run_htlc(BOB, CLAIM, 0, PREIMAGE, lock(released_bob=U256 - AMOUNT + 1)))
    assert run_htlc(BOB, CLAIM, 0, PREIMAGE, lock(released_bob=U256 - AMOUNT)).released_bob == U256


# --------------------------------------------------------------------------- TicTacToe

STAKE_ALICE, STAKE_BOB = 5, 7
MOVE_TIMEOUT = 60
GAME = TicTacToe()


def play(*cells: int, first: int = ALICE, state: AppState | None = None) -> AppState:
    """Plays `cells` in turn, starting with `first`."""
    state = state or ttt.initial(STAKE_ALICE, STAKE_BOB, first, MOVE_TIMEOUT)
    for i, cell in enumerate(cells):
        state = GAME.transition(Context((first + i) % 2, 0), MOVE, ttt.move_arg(cell), state)
    return state


def board(turn: int, marks: str) -> bytes:
    """The storage for `marks` written as in render(), without spaces: "XO.X.....". """
    return ttt.encode(turn, MOVE_TIMEOUT, tuple(".XO".index(m) for m in marks))


def test_tictactoe_encoding_round_trips_and_renders() -> None:
    cells = (1, 2, 0, 0, 1, 0, 2, 0, 0)
    data = ttt.encode(BOB, MOVE_TIMEOUT, cells)
    assert len(data) == 11 * 32
    assert data == b"".join(v.to_bytes(32, "big") for v in (BOB, MOVE_TIMEOUT, *cells))
    assert ttt.decode(data) == Board(BOB, MOVE_TIMEOUT, cells)
    assert ttt.decode(data).render() == "X O .\n. X .\nO . ."
    assert ttt.initial(3, 4, BOB, 9) == AppState(3, 4, 0, 0, ttt.encode(BOB, 9, (0,) * 9))
    assert ttt.move_arg(8) == (8).to_bytes(32, "big")
    with pytest.raises(ValueError):
        ttt.move_arg(9)


@pytest.mark.parametrize(("turn", "timeout", "cells"),
                         [(2, 1, (0,) * 9), (ALICE, 2**64, (0,) * 9), (ALICE, 1, (0,) * 8), (BOB, 1, (3,) + (0,) * 8)])
def test_tictactoe_encode_refuses_what_would_not_decode(turn: int, timeout: int, cells: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        ttt.encode(turn, timeout, cells)


def test_winner() -> None:
    assert ttt.winner((0,) * 9) is None
    assert ttt.winner((1, 1, 1, 2, 2, 0, 0, 0, 0)) == ALICE
    assert ttt.winner((2, 1, 1, 2, 1, 0, 2, 0, 0)) == BOB
    assert ttt.winner((1, 2, 1, 1, 2, 2, 2, 1, 1)) is None


def test_a_move_marks_the_cell_and_passes_the_turn() -> None:
    assert play(4) == AppState(STAKE_ALICE, STAKE_BOB, 0, 0, board(BOB, "....X...."))
    assert play(4, 0) == AppState(STAKE_ALICE, STAKE_BOB, 0, 0, board(ALICE, "O...X...."))
    assert play(4, first=BOB) == AppState(STAKE_ALICE, STAKE_BOB, 0, 0, board(ALICE, "....O...."))


def test_a_row_wins_the_pot() -> None:
    assert play(0, 3, 1, 4, 2) == AppState(0, 0, STAKE_ALICE + STAKE_BOB, 0, board(BOB, "XXXOO...."))


def test_a_column_wins_the_pot() -> None:
    assert play(0, 1, 3, 2, 6, first=BOB) == AppState(0, 0, 0, STAKE_ALICE + STAKE_BOB, board(ALICE, "OXXO..O.."))


def test_a_diagonal_wins_the_pot() -> None:
    assert play(2, 0, 4, 1, 6) == AppState(0, 0, STAKE_ALICE + STAKE_BOB, 0, board(BOB, "OOX.X.X.."))
    assert play(0, 1, 4, 2, 8) == AppState(0, 0, STAKE_ALICE + STAKE_BOB, 0, board(BOB, "XOO.X...X"))


def test_a_win_on_the_last_cell_is_a_win_not_a_draw() -> None:
    assert play(0, 1, 2, 4, 3, 5, 7, 8, 6) == AppState(0, 0, STAKE_ALICE + STAKE_BOB, 0, board(BOB, "XOXXOOXXO"))


def test_a_draw_returns_the_stakes() -> None:
    before = replace(ttt.initial(STAKE_ALICE, STAKE_BOB, ALICE, MOVE_TIMEOUT), released_alice=1, released_bob=2)
    assert play(0, 1, 2, 4, 3, 5, 7, 6, 8, state=before) == AppState(
        0, 0, 1 + STAKE_ALICE, 2 + STAKE_BOB, board(BOB, "XOXXOOOXX"))


def test_a_taken_cell() -> None:
    rejects(lambda: play(4, 4), errors.TicTacToeCellTaken, cell=4)


def test_not_your_turn() -> None:
    rejects(lambda: play(4, first=ALICE, state=ttt.initial(1, 1, BOB, MOVE_TIMEOUT)),
            errors.TicTacToeNotYourTurn, caller=ALICE)


def test_no_move_after_the_game_is_over() -> None:
    won = play(0, 3, 1, 4, 2)
    rejects(lambda: GAME.transition(Context(BOB, 0), MOVE, ttt.move_arg(8), won), errors.TicTacToeGameOver)
    rejects(lambda: GAME.transition(Context(ALICE, 10**9), TIMEOUT, b"", won), errors.TicTacToeGameOver)


def test_timeout_wins_the_pot_only_after_since_plus_move_timeout() -> None:
    state = play(4)  # Bob to move
    since = 100
    rejects(lambda: GAME.transition(Context(ALICE, since + MOVE_TIMEOUT, since), TIMEOUT, b"", state),
            errors.TicTacToeTooEarly, deadline=since + MOVE_TIMEOUT)
    assert GAME.transition(Context(ALICE, since + MOVE_TIMEOUT + 1, since), TIMEOUT, b"", state) == AppState(
        0, 0, STAKE_ALICE + STAKE_BOB, 0, state.data)


def test_the_player_to_move_cannot_claim_a_timeout() -> None:
    rejects(lambda: GAME.transition(Context(BOB, 10**9), TIMEOUT, b"", play(4)),
            errors.TicTacToeNotYourTurn, caller=BOB)


def test_a_timeout_by_any_other_caller_number_pays_bob_like_the_contract() -> None:
    # MSContract only passes 0 or 1; the mirror still agrees with the contract on any uint8.
    state = play(4)  # Bob to move
    assert GAME.transition(Context(2, 10**9), TIMEOUT, b"", state) == AppState(
        0, 0, 0, STAKE_ALICE + STAKE_BOB, state.data)
    rejects(lambda: GAME.transition(Context(2, 0), MOVE, ttt.move_arg(0), state), errors.TicTacToeNotYourTurn, caller=2)


def test_tictactoe_unknown_function() -> None:
    rejects(lambda: GAME.transition(Context(ALICE, 0), 2, b"", play()), errors.TicTacToeUnknownFunction, fun=2)


@pytest.mark.parametrize("data", [
    b"",
    board(ALICE, ".........")[:-1],
    board(ALICE, ".........") + bytes(32),
    (2).to_bytes(32, "big") + board(ALICE, ".........")[32:],
    bytes(32) + (2**64).to_bytes(32, "big") + bytes(9 * 32),
    board(ALICE, ".........")[:-1] + b"\x03",
])
def test_malformed_tictactoe_storage(data: bytes) -> None:
    rejects(lambda: ttt.decode(data), errors.TicTacToeMalformed)
    rejects(lambda: play(4, state=replace(play(), data=data)), errors.TicTacToeMalformed)
    # Storage is decoded before anything else but the function number.
    rejects(lambda: play(4, state=AppState(0, 0, 0, 0, data)), errors.TicTacToeMalformed)


@pytest.mark.parametrize("z", [b"", bytes(30) + b"\x04", bytes(32) + b"\x04", (9).to_bytes(32, "big"), b"\xff" * 32])
def test_a_malformed_move(z: bytes) -> None:
    rejects(lambda: GAME.transition(Context(ALICE, 0), MOVE, z, play()), errors.TicTacToeMalformed)


def test_tictactoe_overflow_panics_like_the_contract() -> None:
    panics(lambda: play(4, state=ttt.initial(U256, 1, ALICE, MOVE_TIMEOUT)))
    panics(lambda: GAME.transition(Context(BOB, U256, since=U256), TIMEOUT, b"", play()))
    rich = replace(play(0, 3, 1, 4), released_alice=U256 - STAKE_ALICE - STAKE_BOB + 1)
    panics(lambda: play(2, state=rich))
    assert play(2, state=replace(rich, released_alice=U256 - STAKE_ALICE - STAKE_BOB)).released_alice == U256
