"""TicTacToe's Python mirror (contracts/apps/TicTacToe.sol).

Tic-tac-toe for stakes: the winner takes both stakes, a draw returns them, and a player who lets
`move_timeout` pass without moving on chain loses. `transition` makes the contract's checks in
the contract's order and raises the same error with the same fields, so a node refuses off
chain exactly what the chain would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from perun import errors
from perun.core.apps import ALICE, BOB, AppState, Context, checked_add, word

MOVE = 0
TIMEOUT = 1

EMPTY = 0
UINT64_MAX = 2**64 - 1
CELLS = 9
DATA_LENGTH = (2 + CELLS) * 32  # abi.encode(uint8 turn, uint64 moveTimeout, uint8[9] cells)
LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
_SYMBOLS = {EMPTY: ".", ALICE + 1: "X", BOB + 1: "O"}


def mark_of(player: int) -> int:
    """The cell value of `player`'s marks: 1 for Alice, 2 for Bob."""
    return player + 1


@dataclass(frozen=True)
class Board:
    """The decoded storage: who moves next, the seconds each move may take, the nine cells."""

    turn: int
    move_timeout: int
    cells: tuple[int, ...]

    def render(self) -> str:
        """Three lines, X for Alice, O for Bob, . for empty: for logs and the CLI."""
        return "\n".join(" ".join(_SYMBOLS[c] for c in self.cells[row : row + 3]) for row in (0, 3, 6))


def encode(turn: int, move_timeout: int, cells: tuple[int, ...] | list[int]) -> bytes:
    """The storage `abi.encode(uint8 turn, uint64 moveTimeout, uint8[9] cells)`."""
    if turn not in (ALICE, BOB):
        raise ValueError(f"turn must be ALICE (0) or BOB (1), not {turn}")
    if not 0 <= move_timeout <= UINT64_MAX:
        raise ValueError(f"the move timeout must fit a uint64, not {move_timeout}")
    if len(cells) != CELLS or any(c not in _SYMBOLS for c in cells):
        raise ValueError(f"cells must be nine values in 0 (empty), 1 (Alice), 2 (Bob): {cells}")
    return b"".join(v.to_bytes(32, "big") for v in (turn, move_timeout, *cells))


def decode(data: bytes) -> Board:
    """The storage's fields; raises TicTacToeMalformed where the contract would."""
    if len(data) != DATA_LENGTH:
        raise errors.TicTacToeMalformed({})
    turn, move_timeout = word(data, 0), word(data, 1)
    cells = tuple(word(data, 2 + i) for i in range(CELLS))
    if turn > BOB or move_timeout > UINT64_MAX or any(c > mark_of(BOB) for c in cells):
        raise errors.TicTacToeMalformed({})
    return Board(turn, move_timeout, cells)


def initial(stake_alice: int, stake_bob: int, first: int, move_timeout: int) -> AppState:
    """A new game: both stakes blocked, an empty board, `first` to move."""
    return AppState(stake_alice, stake_bob, 0, 0, encode(first, move_timeout, (EMPTY,) * CELLS))


def move_arg(cell: int) -> bytes:
    """z for MOVE: `abi.encode(uint8 cell)`, cells numbered 0..8 row by row."""
    if not 0 <= cell < CELLS:
        raise ValueError(f"cell must be in 0..8, not {cell}")
    return cell.to_bytes(32, "big")


def _has_line(cells: tuple[int, ...], mark: int) -> bool:
    return any(all(cells[i] == mark for i in line) for line in LINES)


def winner(cells: tuple[int, ...]) -> int | None:
    """ALICE or BOB if they have three in a line, else None."""
    for player in (ALICE, BOB):
        if _has_line(cells, mark_of(player)):
            return player
    return None


def _pay_winner(state: AppState, winner_: int, pot: int) -> AppState:
    """Both stakes to the winner; like the contract, any winner but Alice (0) means Bob."""
    to = ALICE if winner_ == ALICE else BOB
    checked_add(state.released_alice if to == ALICE else state.released_bob, pot)  # may panic
    return state.release(to, pot)


class TicTacToe:
    """The App: MOVE (z = move_arg(cell), by the player to move) and TIMEOUT (by the other one)."""

    name: ClassVar[str] = "TicTacToe"
    functions: ClassVar[dict[str, int]] = {"move": MOVE, "timeout": TIMEOUT}
    automatic: ClassVar[tuple[int, ...]] = (TIMEOUT,)

    def at(self, chain_id: int, address: str) -> TicTacToe:
        return self  # no signatures to check: the same rules on every chain

    def settle_by(self, state: AppState) -> int:
        return 0  # the predefined distribution is fair at any time

    def check_initial(self, state: AppState) -> None:
        """An empty board, a move timeout, stakes blocked and nothing released (the contract
        would also play on from a board no game reaches)."""
        board = decode(state.data)
        if any(board.cells) or board.move_timeout == 0 or state.blocked == 0 \
                or state.released_alice or state.released_bob:
            raise errors.InvalidNanocontract("a new game has an empty board, a move timeout and stakes")

    def transition(self, ctx: Context, fun: int, z: bytes, state: AppState) -> AppState:
        if fun > TIMEOUT:
            raise errors.TicTacToeUnknownFunction({"fun": fun})
        board = decode(state.data)
        pot = checked_add(state.blocked_alice, state.blocked_bob)
        if pot == 0:
            raise errors.TicTacToeGameOver({})

        if fun == TIMEOUT:
            if ctx.caller == board.turn:
                raise errors.TicTacToeNotYourTurn({"caller": ctx.caller})
            deadline = checked_add(ctx.since, board.move_timeout)
            if ctx.time <= deadline:
                raise errors.TicTacToeTooEarly({"deadline": deadline})
            return _pay_winner(state, ctx.caller, pot)

        if ctx.caller != board.turn:
            raise errors.TicTacToeNotYourTurn({"caller": ctx.caller})
        if len(z) != 32 or int.from_bytes(z, "big") >= CELLS:
            raise errors.TicTacToeMalformed({})
        cell = int.from_bytes(z, "big")
        if board.cells[cell] != EMPTY:
            raise errors.TicTacToeCellTaken({"cell": cell})
        mark = mark_of(board.turn)
        cells = board.cells[:cell] + (mark,) + board.cells[cell + 1 :]
        next_ = replace(state, data=encode(1 - board.turn, board.move_timeout, cells))

        if _has_line(cells, mark):
            return _pay_winner(next_, board.turn, pot)
        if EMPTY not in cells:
            return AppState(0, 0, checked_add(state.released_alice, state.blocked_alice),
                            checked_add(state.released_bob, state.blocked_bob), next_.data)
        return next_
