"""The Python mirrors of the nanocontract apps: exact states and errors, one rule at a time.

tests/contracts/test_apps_differential.py holds them equal to the contracts on random inputs;
here each rule is pinned down by hand.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from perun import errors
from perun.core.apps import ALICE, APPS, BOB, AppState, Context, app_named, checked_add
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import tictactoe as ttt
from perun.core.apps import virtualchannel as vc
from perun.core.apps.hashtimelock import CANCEL, CLAIM, RECLAIM, HashTimeLock
from perun.core.apps.tictactoe import MOVE, TIMEOUT, Board, TicTacToe
from perun.core.apps.virtualchannel import FINALIZE, SETTLE, SIDE_A, SIDE_B, VirtualChannel, VirtualState
from perun.core.eip712 import address_of

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
    assert set(APPS) == {"HashTimeLock", "TicTacToe", "VirtualChannel"}
    assert isinstance(app_named("HashTimeLock"), HashTimeLock)
    assert isinstance(app_named("TicTacToe"), TicTacToe)
    assert isinstance(app_named("VirtualChannel"), VirtualChannel)
    assert HashTimeLock.functions == {"claim": CLAIM, "reclaim": RECLAIM, "cancel": CANCEL} \
        == {"claim": 0, "reclaim": 1, "cancel": 2}
    assert HashTimeLock.automatic == (RECLAIM,)  # never CANCEL: giving up a claim is the user's decision
    assert TicTacToe.functions == {"move": MOVE, "timeout": TIMEOUT} == {"move": 0, "timeout": 1}
    assert VirtualChannel.functions == {"settle": SETTLE, "finalize": FINALIZE} == {"settle": 0, "finalize": 1}
    assert VirtualChannel.automatic == (FINALIZE,)


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


@pytest.mark.parametrize("time", [0, DEADLINE, DEADLINE + 1, U256])
@pytest.mark.parametrize("z", [b"", PREIMAGE, b"anything"])
def test_cancel_by_the_receiver_at_any_time_releases_to_the_sender(time: int, z: bytes) -> None:
    # z is ignored, as by RECLAIM; after the timeout the outcome is RECLAIM's.
    assert run_htlc(BOB, CANCEL, time, z) == AppState(0, 0, 3 + AMOUNT, 4, lock().data)
    bobs = lock(BOB)
    assert run_htlc(ALICE, CANCEL, time, z, bobs) == AppState(0, 0, 3, 4 + AMOUNT, bobs.data)
    assert run_htlc(7, CANCEL, time, z) == AppState(0, 0, 3 + AMOUNT, 4, lock().data)  # any non-sender


def test_the_sender_cannot_cancel() -> None:
    rejects(lambda: run_htlc(ALICE, CANCEL, 0), errors.HashTimeLockWrongCaller, caller=ALICE)
    rejects(lambda: run_htlc(BOB, CANCEL, DEADLINE + 1, b"", lock(BOB)), errors.HashTimeLockWrongCaller, caller=BOB)


def test_a_settled_lock_cannot_be_cancelled() -> None:
    claimed = run_htlc(BOB, CLAIM, 0, PREIMAGE)
    rejects(lambda: run_htlc(BOB, CANCEL, 0, b"", claimed), errors.HashTimeLockSettled)
    cancelled = run_htlc(BOB, CANCEL, 0)
    rejects(lambda: run_htlc(BOB, CANCEL, 0, b"", cancelled), errors.HashTimeLockSettled)
    rejects(lambda: run_htlc(BOB, CLAIM, 0, PREIMAGE, cancelled), errors.HashTimeLockSettled)


def test_cancel_overflow_panics_like_the_contract() -> None:
    panics(lambda: run_htlc(BOB, CANCEL, 0, b"", lock(released_alice=U256 - AMOUNT + 1)))
    assert run_htlc(BOB, CANCEL, 0, b"", lock(released_alice=U256 - AMOUNT)).released_alice == U256


def test_htlc_unknown_function() -> None:
    rejects(lambda: run_htlc(BOB, 3, 0, PREIMAGE), errors.HashTimeLockUnknownFunction, fun=3)
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


# --------------------------------------------------------------------------- VirtualChannel

A_KEY, B_KEY, M_KEY = bytes([0xA1]) * 32, bytes([0xB0]) * 32, bytes([0x66]) * 32
V_ALICE, V_BOB, V_INGRID = address_of(A_KEY), address_of(B_KEY), address_of(bytes([0x16]) * 32)
CHANNEL_A, CHANNEL_B = b"\xaa" * 32, b"\xbb" * 32
CASH_ALICE, CASH_BOB = 30, 70
VALIDITY, WINDOW = 1_000, 100
VIRTUAL = VirtualChannel.at(1, "0x" + "42" * 20)
DOMAIN = VIRTUAL.domain
AMOUNT_MAX = 2**128 - 1


def half(side: int = SIDE_A, end_role: int = ALICE, **changes: object) -> AppState:
    """A new half of γ (Alice 30, Bob 70, validity 1000, window 100), with `changes`."""
    state = vc.initial(V_ALICE, V_INGRID, V_BOB, CHANNEL_A, CHANNEL_B, CASH_ALICE, CASH_BOB, VALIDITY, WINDOW, 7,
                       side, end_role)
    return replace(state, **changes)


GAMMA_ID = vc.decode(half().data).id


def settle_z(version: int, balance_alice: int, final: bool = False, *, alice_key: bytes = A_KEY,
             bob_key: bytes = B_KEY, balance_bob: int | None = None) -> bytes:
    state = VirtualState(GAMMA_ID, version, balance_alice,
                         CASH_ALICE + CASH_BOB - balance_alice if balance_bob is None else balance_bob, final)
    return vc.settle_arg(state, vc.sign_virtual(DOMAIN, state, alice_key), vc.sign_virtual(DOMAIN, state, bob_key))


def stored(state: AppState, version: int, balance_alice: int) -> bytes:
    """`state`'s storage with (version, balance_alice, the rest) as its highest state."""
    return state.data[:12 * 32] + b"".join(v.to_bytes(32, "big") for v in
                                          (version, balance_alice, CASH_ALICE + CASH_BOB - balance_alice))


def run_vc(caller: int, fun: int, time: int, z: bytes = b"", state: AppState | None = None) -> AppState:
    return VIRTUAL.transition(Context(caller, time), fun, z, state or half())


def test_vc_encoding_round_trips_and_initial_blocks_each_share_where_the_side_says() -> None:
    data = half().data
    assert len(data) == 15 * 32
    decoded = vc.decode(data)
    assert decoded == vc.VirtualChannelData(V_ALICE, V_INGRID, V_BOB, CHANNEL_A, CHANNEL_B, CASH_ALICE, CASH_BOB,
                                            VALIDITY, WINDOW, 7, SIDE_A, ALICE, 0, CASH_ALICE, CASH_BOB)
    assert vc.encode(*(getattr(decoded, f) for f in decoded.__dataclass_fields__)) == data
    assert decoded.ingrid_role == BOB and decoded.settle_by == VALIDITY + 3 * WINDOW
    assert decoded.state() == VirtualState(GAMMA_ID, 0, CASH_ALICE, CASH_BOB, False)
    # ν_a: Alice blocks cashAlice, Ingrid cashBob; ν_b: Ingrid cashAlice, Bob cashBob.
    assert (half(SIDE_A, ALICE).blocked_alice, half(SIDE_A, ALICE).blocked_bob) == (CASH_ALICE, CASH_BOB)
    assert (half(SIDE_A, BOB).blocked_alice, half(SIDE_A, BOB).blocked_bob) == (CASH_BOB, CASH_ALICE)
    assert (half(SIDE_B, ALICE).blocked_alice, half(SIDE_B, ALICE).blocked_bob) == (CASH_BOB, CASH_ALICE)
    assert (half(SIDE_B, BOB).blocked_alice, half(SIDE_B, BOB).blocked_bob) == (CASH_ALICE, CASH_BOB)
    # γ's id is the same in both halves, and is the hash of its first ten words.
    assert vc.decode(half(SIDE_B, BOB).data).id == GAMMA_ID == keccak(data[:320])
    assert vc.virtual_channel_id(data) == GAMMA_ID


@pytest.mark.parametrize("change", [
    {"channel_a": b"\x00" * 31}, {"cash_alice": AMOUNT_MAX + 1}, {"cash_alice": AMOUNT_MAX, "cash_bob": 1},
    {"cash_bob": -1}, {"validity": 2**64}, {"window": -1}, {"nonce": 2**64}, {"version": 2**64}, {"side": 2},
    {"end_role": 2}, {"balance_alice": AMOUNT_MAX + 1},
])
def test_vc_encode_refuses_what_would_not_decode(change: dict) -> None:
    fields = {"alice": V_ALICE, "ingrid": V_INGRID, "bob": V_BOB, "channel_a": CHANNEL_A, "channel_b": CHANNEL_B,
              "cash_alice": 1, "cash_bob": 1, "validity": 1, "window": 1, "nonce": 1, "side": 0, "end_role": 0,
              **change}
    with pytest.raises(ValueError):
        vc.encode(**fields)


def _with_word(data: bytes, index: int, value: int) -> bytes:
    return data[:32 * index] + value.to_bytes(32, "big") + data[32 * index + 32:]


@pytest.mark.parametrize("data", [
    b"",
    half().data[:-1],
    half().data + bytes(32),
    _with_word(half().data, 0, 2**160),
    _with_word(half().data, 1, 2**160),
    _with_word(half().data, 2, 2**256 - 1),
    _with_word(half().data, 5, AMOUNT_MAX + 1),
    _with_word(_with_word(half().data, 5, AMOUNT_MAX), 6, 1),  # cashAlice + cashBob over 2**128 - 1
    _with_word(half().data, 7, 2**64),
    _with_word(half().data, 8, 2**64),
    _with_word(half().data, 9, 2**64),
    _with_word(half().data, 10, 2),
    _with_word(half().data, 11, 2),
    _with_word(half().data, 12, 2**64),
    _with_word(half().data, 13, AMOUNT_MAX + 1),
    _with_word(half().data, 14, AMOUNT_MAX + 1),
])
def test_malformed_vc_storage(data: bytes) -> None:
    rejects(lambda: vc.decode(data), errors.VirtualChannelMalformed)
    # Storage is decoded before anything else but the function number, even a settled half.
    for state in (half(data=data), AppState(0, 0, 0, 0, data)):
        rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, settle_z(1, 10), state), errors.VirtualChannelMalformed)
        rejects(lambda: run_vc(ALICE, FINALIZE, 10**9, b"", state), errors.VirtualChannelMalformed)
    assert VIRTUAL.settle_by(half(data=data)) == 0
    with pytest.raises(errors.InvalidNanocontract, match="does not decode"):
        VIRTUAL.check_initial(half(data=data))


def test_vc_settle_by_is_validity_plus_three_windows() -> None:
    assert VIRTUAL.settle_by(half()) == VALIDITY + 3 * WINDOW
    assert APPS["VirtualChannel"].settle_by(half(SIDE_B, BOB)) == VALIDITY + 3 * WINDOW
    # Whatever is stored or released: only validity and window count.
    settled = half(SIDE_A, BOB, blocked_alice=0, blocked_bob=0, released_alice=5, data=stored(half(), 9, 1))
    assert VIRTUAL.settle_by(settled) == VALIDITY + 3 * WINDOW
    top = vc.initial(V_ALICE, V_INGRID, V_BOB, CHANNEL_A, CHANNEL_B, 1, 1, 2**64 - 1, 2**64 - 1, 0, SIDE_A, ALICE)
    assert VIRTUAL.settle_by(top) == 4 * (2**64 - 1)


def test_vc_settle_by_leaves_the_last_window_to_finalize() -> None:
    """MSContract runs a closing channel's nanocontract only until max(D + Δ, settleBy): Ingrid's
    submissions end a window before settleBy, and FINALIZE works throughout that window."""
    settle_by = VIRTUAL.settle_by(half())
    ingrid_deadline = settle_by - WINDOW
    assert ingrid_deadline == VALIDITY + 2 * WINDOW
    assert run_vc(BOB, SETTLE, ingrid_deadline, settle_z(1, 10)) == replace(half(), data=stored(half(), 1, 10))
    rejects(lambda: run_vc(BOB, SETTLE, ingrid_deadline + 1, settle_z(1, 10)), errors.VirtualChannelSubmissionOver,
            deadline=ingrid_deadline)
    rejects(lambda: run_vc(ALICE, FINALIZE, ingrid_deadline, b"", half()), errors.VirtualChannelTooEarly,
            until=ingrid_deadline)
    for time in (ingrid_deadline + 1, settle_by):
        assert run_vc(ALICE, FINALIZE, time, b"", half()) == AppState(0, 0, CASH_ALICE, CASH_BOB, half().data)


@pytest.mark.parametrize(("side", "end_role"), [(SIDE_A, ALICE), (SIDE_A, BOB), (SIDE_B, ALICE), (SIDE_B, BOB)])
def test_vc_check_initial_accepts_a_new_half(side: int, end_role: int) -> None:
    VIRTUAL.check_initial(half(side, end_role))


@pytest.mark.parametrize(("state", "message"), [
    (half(data=stored(half(), 1, CASH_ALICE)), "version 0"),
    (half(data=stored(half(), 0, CASH_ALICE + 1)), "version 0"),
    (half(blocked_alice=CASH_BOB, blocked_bob=CASH_ALICE), "each from the party"),
    (half(SIDE_B, blocked_alice=CASH_ALICE, blocked_bob=CASH_BOB), "each from the party"),
    (half(blocked_bob=CASH_BOB - 1), "each from the party"),
    (half(released_alice=1), "released nothing"),
    (half(released_bob=1), "released nothing"),
    (vc.initial(V_ALICE, V_INGRID, V_BOB, CHANNEL_A, CHANNEL_B, 1, 1, 0, 1, 0, SIDE_A, ALICE), "validity and window"),
    (vc.initial(V_ALICE, V_INGRID, V_BOB, CHANNEL_A, CHANNEL_B, 1, 1, 1, 0, 0, SIDE_A, ALICE), "validity and window"),
    (vc.initial(V_ALICE, V_INGRID, V_BOB, CHANNEL_A, CHANNEL_B, 0, 0, 1, 1, 0, SIDE_A, ALICE), "holds something"),
])
def test_vc_check_initial_refuses(state: AppState, message: str) -> None:
    with pytest.raises(errors.InvalidNanocontract, match=message):
        VIRTUAL.check_initial(state)


def test_vc_settle_arg_layout_and_decoding() -> None:
    state = VirtualState(GAMMA_ID, 5, 1, 99, True)
    sig_a, sig_b = vc.sign_virtual(DOMAIN, state, A_KEY), vc.sign_virtual(DOMAIN, state, B_KEY)
    z = vc.settle_arg(state, sig_a, sig_b)
    assert len(z) == 10 * 32
    assert z == b"".join(w.to_bytes(32, "big") for w in (5, 1, 99, 1)) + sig_a[:64] + sig_a[64:].rjust(32, b"\0") \
        + sig_b[:64] + sig_b[64:].rjust(32, b"\0")
    assert vc.decode_settle_arg(z) == vc.Signed(5, 1, 99, True, sig_a[:32], sig_a[32:64], sig_a[64],
                                                sig_b[:32], sig_b[32:64], sig_b[64])
    with pytest.raises(ValueError):
        vc.settle_arg(state, sig_a[:64], sig_b)


def test_vc_digest_is_eip712_in_the_virtual_channel_domain() -> None:
    state = VirtualState(GAMMA_ID, 5, 1, 99, True)
    assert DOMAIN == vc.virtual_domain(1, "0x" + "42" * 20)
    assert (DOMAIN.name, DOMAIN.version) == ("Perun VirtualChannel", "1")
    signable = encode_typed_data(full_message=state.typed_data(DOMAIN))
    assert vc.digest(DOMAIN, state) == keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert vc.sign_virtual(DOMAIN, state, A_KEY) == Account.sign_message(signable, A_KEY).signature
    assert vc.digest(DOMAIN, state) != vc.digest(DOMAIN, replace(state, final=False))
    assert vc.digest(DOMAIN, state) != vc.digest(vc.virtual_domain(2, "0x" + "42" * 20), state)


# (side, end_role, released to the ledger's Alice, to its Bob) when γ settles with balances 10, 90.
RELEASES = [
    (SIDE_A, ALICE, 10, 90),  # ν_a, Alice is the ledger's Alice: Alice 10, Ingrid 90
    (SIDE_A, BOB, 90, 10),
    (SIDE_B, BOB, 10, 90),  # ν_b, Bob is the ledger's Bob: Ingrid 10, Bob 90
    (SIDE_B, ALICE, 90, 10),
]


@pytest.mark.parametrize(("side", "end_role", "to_alice", "to_bob"), RELEASES)
@pytest.mark.parametrize("time", [0, VALIDITY, VALIDITY + 1, VALIDITY + 2 * WINDOW + 1, 2**256 - 1])
@pytest.mark.parametrize("ingrid", ["her role", 7])
def test_a_final_state_by_ingrid_settles_at_once_at_any_time(side: int, end_role: int, to_alice: int, to_bob: int,
                                                             time: int, ingrid: str | int) -> None:
    # Ingrid holds the role γ's end does not; any caller number but the end's is hers too.
    caller = 1 - end_role if ingrid == "her role" else ingrid
    state = half(side, end_role, released_alice=3, released_bob=4, data=stored(half(side, end_role), 9, 1))
    # Any version, even one below the stored one.
    after = run_vc(caller, SETTLE, time, settle_z(2, 10, final=True), state)
    assert after == AppState(0, 0, 3 + to_alice, 4 + to_bob, stored(state, 2, 10))


@pytest.mark.parametrize(("side", "end_role", "to_alice", "to_bob"), RELEASES)
def test_a_final_state_by_the_end_counts_as_any_other_state(side: int, end_role: int, to_alice: int,
                                                            to_bob: int) -> None:
    """Alice and Bob together could sign two final states, one for each half: from γ's end a
    final state waits for validity, ends with its window, needs a higher version, and is only
    stored."""
    state = half(side, end_role, released_alice=3, released_bob=4, data=stored(half(side, end_role), 9, 1))
    z = settle_z(10, 10, final=True)
    for time in (0, VALIDITY):
        rejects(lambda: run_vc(end_role, SETTLE, time, z, state), errors.VirtualChannelTooEarly, until=VALIDITY)
    for time in (VALIDITY + 1, VALIDITY + WINDOW):
        # Stored as the highest state, nothing released: the half stays open for Ingrid or FINALIZE.
        assert run_vc(end_role, SETTLE, time, z, state) == replace(state, data=stored(state, 10, 10))
    for time in (VALIDITY + WINDOW + 1, VALIDITY + 2 * WINDOW, 2**256 - 1):
        rejects(lambda: run_vc(end_role, SETTLE, time, z, state), errors.VirtualChannelSubmissionOver,
                deadline=VALIDITY + WINDOW)
    for version in (8, 9):
        rejects(lambda: run_vc(end_role, SETTLE, VALIDITY + 1, settle_z(version, 10, final=True), state),
                errors.VirtualChannelStaleVersion, stored=9, submitted=version)
    # At the same times, Ingrid's copy of that state settles the half at once.
    for time in (0, VALIDITY, VALIDITY + WINDOW + 1):
        assert run_vc(1 - end_role, SETTLE, time, z, state) == AppState(0, 0, 3 + to_alice, 4 + to_bob,
                                                                         stored(state, 10, 10))


def test_a_final_state_stored_by_the_end_is_released_by_finalize_as_stored() -> None:
    state = run_vc(ALICE, SETTLE, VALIDITY + 1, settle_z(1, 10, final=True))
    assert state == replace(half(), data=stored(half(), 1, 10))
    # A higher state still comes in after it, from the end and from Ingrid.
    assert run_vc(ALICE, SETTLE, VALIDITY + WINDOW, settle_z(2, 12), state).data == stored(state, 2, 12)
    assert run_vc(BOB, SETTLE, VALIDITY + 2 * WINDOW, settle_z(1, 11), state).data == stored(state, 1, 11)
    rejects(lambda: run_vc(BOB, FINALIZE, VALIDITY + 2 * WINDOW, b"", state), errors.VirtualChannelTooEarly,
            until=VALIDITY + 2 * WINDOW)
    # ν_a, Alice the ledger's Alice: balanceAlice 10 to her, balanceBob 90 to Ingrid.
    assert run_vc(BOB, FINALIZE, VALIDITY + 2 * WINDOW + 1, b"", state) == AppState(0, 0, 10, 90, state.data)


def test_a_non_final_state_is_stored_after_validity_until_the_callers_deadline() -> None:
    z = settle_z(1, 10)
    rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY, z), errors.VirtualChannelTooEarly, until=VALIDITY)
    for caller, deadline in ((ALICE, VALIDITY + WINDOW), (BOB, VALIDITY + 2 * WINDOW)):  # γ's end, Ingrid
        for time in (VALIDITY + 1, deadline):
            assert run_vc(caller, SETTLE, time, z) == replace(half(), data=stored(half(), 1, 10))
        rejects(lambda: run_vc(caller, SETTLE, deadline + 1, z), errors.VirtualChannelSubmissionOver,
                deadline=deadline)
    # In ν_b with Bob as the ledger's Bob, the end is BOB; any other caller number is Ingrid.
    nu_b = half(SIDE_B, BOB)
    rejects(lambda: run_vc(BOB, SETTLE, VALIDITY + WINDOW + 1, z, nu_b), errors.VirtualChannelSubmissionOver,
            deadline=VALIDITY + WINDOW)
    for ingrid in (ALICE, 7):
        assert run_vc(ingrid, SETTLE, VALIDITY + 2 * WINDOW, z, nu_b) == replace(nu_b, data=stored(nu_b, 1, 10))


def test_the_ends_version_must_be_higher_than_the_stored_one() -> None:
    state = half(data=stored(half(), 5, 20))  # ν_a: γ's end is ALICE
    for version in (0, 4, 5):
        rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, settle_z(version, 10), state),
                errors.VirtualChannelStaleVersion, stored=5, submitted=version)
    assert run_vc(ALICE, SETTLE, VALIDITY + 1, settle_z(6, 10), state).data == stored(state, 6, 10)
    # The end never submits version 0, the initial state's, nor anything at the top version.
    rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, settle_z(0, 10)), errors.VirtualChannelStaleVersion,
            stored=0, submitted=0)
    top = half(data=stored(half(), 2**64 - 1, 20))
    rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, settle_z(2**64 - 1, 10), top),
            errors.VirtualChannelStaleVersion, stored=2**64 - 1, submitted=2**64 - 1)


@pytest.mark.parametrize("ingrid", [BOB, 7])
def test_ingrids_version_must_be_at_least_the_stored_one(ingrid: int) -> None:
    state = half(data=stored(half(), 5, 20))  # ν_a: γ's end is ALICE, Ingrid any other caller number
    for version in (0, 4):
        rejects(lambda: run_vc(ingrid, SETTLE, VALIDITY + 1, settle_z(version, 10), state),
                errors.VirtualChannelStaleVersion, stored=5, submitted=version)
    # An equal version replaces the stored state: Alice and Bob could sign two with one version.
    for version in (5, 6):
        assert run_vc(ingrid, SETTLE, VALIDITY + 1, settle_z(version, 10), state) == replace(
            state, data=stored(state, version, 10))
    assert run_vc(ingrid, SETTLE, VALIDITY + 2 * WINDOW, settle_z(0, 10)).data == stored(half(), 0, 10)
    top = half(data=stored(half(), 2**64 - 1, 20))
    assert run_vc(ingrid, SETTLE, VALIDITY + 1, settle_z(2**64 - 1, 10), top).data == stored(top, 2**64 - 1, 10)


def test_ingrid_makes_both_halves_equal_when_alice_and_bob_sign_two_states_with_one_version() -> None:
    """Alice stores one state in ν_a, Bob another with the same version in ν_b; Ingrid copies
    Alice's into ν_b, and both halves release the same balances: she ends with what she blocked."""
    nu_a, nu_b = half(SIDE_A, ALICE), half(SIDE_B, BOB)  # Ingrid is BOB in ν_a, ALICE in ν_b
    nu_a = run_vc(ALICE, SETTLE, VALIDITY + WINDOW, settle_z(3, 10), nu_a)
    nu_b = run_vc(BOB, SETTLE, VALIDITY + WINDOW, settle_z(3, 25), nu_b)
    rejects(lambda: run_vc(BOB, SETTLE, VALIDITY + WINDOW, settle_z(3, 10), nu_b), errors.VirtualChannelStaleVersion,
            stored=3, submitted=3)  # Bob cannot take it back
    nu_b = run_vc(ALICE, SETTLE, VALIDITY + 2 * WINDOW, settle_z(3, 10), nu_b)
    assert vc.decode(nu_a.data).state() == vc.decode(nu_b.data).state() == VirtualState(GAMMA_ID, 3, 10, 90)
    nu_a = run_vc(ALICE, FINALIZE, VALIDITY + 2 * WINDOW + 1, b"", nu_a)
    nu_b = run_vc(ALICE, FINALIZE, VALIDITY + 2 * WINDOW + 1, b"", nu_b)
    # ν_a: Alice 10, Ingrid 90; ν_b: Ingrid 10, Bob 90. Ingrid blocked 70 + 30 and gets 90 + 10.
    assert (nu_a.released_alice, nu_a.released_bob, nu_b.released_alice, nu_b.released_bob) == (10, 90, 10, 90)


def test_ingrid_makes_both_halves_equal_when_alice_and_bob_sign_two_final_states() -> None:
    """A final state from each end is only stored; Ingrid settles both halves with one of them."""
    nu_a, nu_b = half(SIDE_A, ALICE), half(SIDE_B, BOB)
    nu_a = run_vc(ALICE, SETTLE, VALIDITY + 1, settle_z(4, 10, final=True), nu_a)
    nu_b = run_vc(BOB, SETTLE, VALIDITY + 1, settle_z(4, 25, final=True), nu_b)
    assert (nu_a, nu_b) == (replace(half(SIDE_A, ALICE), data=stored(half(), 4, 10)),
                            replace(half(SIDE_B, BOB), data=stored(half(SIDE_B, BOB), 4, 25)))  # neither settled
    # Ingrid (BOB in ν_a, ALICE in ν_b) submits the one Bob stored in both, at any time (10**9 is
    # past every deadline).
    nu_a = run_vc(BOB, SETTLE, 10**9, settle_z(4, 25, final=True), nu_a)
    nu_b = run_vc(ALICE, SETTLE, VALIDITY + 1, settle_z(4, 25, final=True), nu_b)
    # ν_a: Alice 25, Ingrid 75; ν_b: Ingrid 25, Bob 75. Ingrid blocked 70 + 30 and gets 75 + 25.
    assert nu_a == AppState(0, 0, 25, 75, stored(half(SIDE_A, ALICE), 4, 25))
    assert nu_b == AppState(0, 0, 25, 75, stored(half(SIDE_B, BOB), 4, 25))


def test_finalize_releases_the_stored_state_after_validity_plus_two_windows() -> None:
    state = half(SIDE_B, BOB, released_bob=1, data=stored(half(SIDE_B, BOB), 3, 25))
    rejects(lambda: run_vc(ALICE, FINALIZE, VALIDITY + 2 * WINDOW, b"", state), errors.VirtualChannelTooEarly,
            until=VALIDITY + 2 * WINDOW)
    for caller in (ALICE, BOB):
        # ν_b, Bob is the ledger's Bob: Ingrid (ALICE) gets balanceAlice 25, Bob 75. z is ignored.
        assert run_vc(caller, FINALIZE, VALIDITY + 2 * WINDOW + 1, b"junk", state) == AppState(
            0, 0, 25, 1 + 75, state.data)
    assert run_vc(ALICE, FINALIZE, 10**9, b"", half()) == AppState(0, 0, CASH_ALICE, CASH_BOB, half().data)


def test_vc_settled_half() -> None:
    done = half(blocked_alice=0, blocked_bob=0)
    rejects(lambda: run_vc(ALICE, SETTLE, 0, settle_z(1, 10, final=True), done), errors.VirtualChannelSettled)
    rejects(lambda: run_vc(ALICE, FINALIZE, 10**9, b"", done), errors.VirtualChannelSettled)
    # One side blocking anything is not settled.
    assert run_vc(ALICE, FINALIZE, 10**9, b"", half(blocked_alice=0)).blocked == 0


def test_vc_unknown_function() -> None:
    rejects(lambda: run_vc(ALICE, 2, 0), errors.VirtualChannelUnknownFunction, fun=2)
    rejects(lambda: run_vc(ALICE, 255, 0, b"", half(data=b"")), errors.VirtualChannelUnknownFunction, fun=255)


@pytest.mark.parametrize("z", [
    b"", settle_z(1, 10)[:-1], settle_z(1, 10) + b"\x00",
    _with_word(settle_z(1, 10), 0, 2**64), _with_word(settle_z(1, 10), 3, 2), _with_word(settle_z(1, 10), 6, 256),
    _with_word(settle_z(1, 10), 9, 2**256 - 1),
])
def test_a_malformed_settle_argument(z: bytes) -> None:
    rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, z), errors.VirtualChannelMalformed)


@pytest.mark.parametrize(("balance_alice", "balance_bob"), [(10, 89), (10, 91), (101, 0), (2**256 - 1, 1), (0, 0)])
def test_balances_must_add_up_to_the_cash(balance_alice: int, balance_bob: int) -> None:
    z = settle_z(1, balance_alice, balance_bob=balance_bob)
    rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, z), errors.VirtualChannelNotConserved)


def _high_s(sig: bytes) -> bytes:
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    return sig[:32] + (n - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + bytes([55 - sig[64]])


def test_both_ends_must_sign_the_state_in_this_domain() -> None:
    state = VirtualState(GAMMA_ID, 1, 10, 90)
    good_a, good_b = vc.sign_virtual(DOMAIN, state, A_KEY), vc.sign_virtual(DOMAIN, state, B_KEY)
    wrong = {
        "mallory": vc.sign_virtual(DOMAIN, state, M_KEY),
        "another chain": vc.sign_virtual(vc.virtual_domain(2, DOMAIN.verifying_contract), state, A_KEY),
        "the final twin": vc.sign_virtual(DOMAIN, replace(state, final=True), A_KEY),
        "high s": _high_s(good_a),
        "v = 1": good_a[:64] + b"\x01",
        "zero r": bytes(32) + good_a[32:],
    }
    for sig in wrong.values():
        rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, vc.settle_arg(state, sig, good_b)),
                errors.VirtualChannelInvalidSignature, expected=V_ALICE)
        rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, vc.settle_arg(state, good_a, sig)),
                errors.VirtualChannelInvalidSignature, expected=V_BOB)
    # Alice's is checked first; swapped signatures fail on hers.
    rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, vc.settle_arg(state, good_b, good_a)),
            errors.VirtualChannelInvalidSignature, expected=V_ALICE)


def test_a_zero_address_end_accepts_no_signature() -> None:
    # tryRecover gives address(0) for an unrecoverable signature: the contract checks its error too.
    state = vc.initial("0x" + "00" * 20, V_INGRID, V_BOB, CHANNEL_A, CHANNEL_B, 30, 70, VALIDITY, WINDOW, 7,
                       SIDE_A, ALICE)
    gamma = VirtualState(vc.decode(state.data).id, 1, 10, 90, True)
    z = vc.settle_arg(gamma, bytes(64) + b"\x1b", vc.sign_virtual(DOMAIN, gamma, B_KEY))
    rejects(lambda: run_vc(ALICE, SETTLE, 0, z, state), errors.VirtualChannelInvalidSignature,
            expected="0x" + "00" * 20)


def test_vc_checks_in_the_contracts_order() -> None:
    forged = vc.settle_arg(VirtualState(GAMMA_ID, 1, 10, 91), bytes(65), bytes(65))
    # Not conserved comes before the signatures; a bad signature before the time and the version.
    rejects(lambda: run_vc(ALICE, SETTLE, 0, forged), errors.VirtualChannelNotConserved)
    rejects(lambda: run_vc(ALICE, SETTLE, 0, settle_z(0, 10, bob_key=M_KEY)), errors.VirtualChannelInvalidSignature,
            expected=V_BOB)
    # Too early comes before the stale version, the caller's deadline before it too.
    rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY, settle_z(0, 10)), errors.VirtualChannelTooEarly, until=VALIDITY)
    rejects(lambda: run_vc(ALICE, SETTLE, 10**9, settle_z(0, 10)), errors.VirtualChannelSubmissionOver,
            deadline=VALIDITY + WINDOW)
    # So for a final state by the end; by Ingrid, it settles before any time or version check.
    final = settle_z(0, 10, final=True)
    rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY, final), errors.VirtualChannelTooEarly, until=VALIDITY)
    rejects(lambda: run_vc(ALICE, SETTLE, 10**9, final), errors.VirtualChannelSubmissionOver,
            deadline=VALIDITY + WINDOW)
    rejects(lambda: run_vc(ALICE, SETTLE, VALIDITY + 1, final), errors.VirtualChannelStaleVersion, stored=0,
            submitted=0)
    assert run_vc(BOB, SETTLE, 10**9, final, half(data=stored(half(), 5, 20))).blocked == 0


def test_an_unbound_vc_mirror_cannot_check_signatures() -> None:
    unbound = APPS["VirtualChannel"]
    with pytest.raises(errors.InvalidNanocontract, match="VirtualChannel.at"):
        unbound.transition(Context(ALICE, 0), SETTLE, settle_z(1, 10, final=True), half())
    # Everything else works unbound.
    assert unbound.transition(Context(ALICE, 10**9), FINALIZE, b"", half()).blocked == 0
    rejects(lambda: unbound.transition(Context(ALICE, 0), SETTLE, b"", half()), errors.VirtualChannelMalformed)


def test_vc_overflow_panics_like_the_contract() -> None:
    panics(lambda: run_vc(ALICE, FINALIZE, 10**9, b"", half(released_bob=U256 - CASH_BOB + 1)))
    assert run_vc(ALICE, FINALIZE, 10**9, b"", half(released_bob=U256 - CASH_BOB)).released_bob == U256
    # Ingrid's final state releases at once: ν_a pays the end ALICE balanceAlice 10, Ingrid (BOB) 90.
    rich = half(released_alice=U256 - 9)
    panics(lambda: run_vc(BOB, SETTLE, 0, settle_z(1, 10, final=True), rich))
    assert run_vc(BOB, SETTLE, 0, settle_z(1, 9, final=True), rich).released_alice == U256
    # The end's final state releases nothing: no overflow, it is stored.
    assert run_vc(ALICE, SETTLE, VALIDITY + 1, settle_z(1, 10, final=True), rich) == replace(
        rich, data=stored(rich, 1, 10))
