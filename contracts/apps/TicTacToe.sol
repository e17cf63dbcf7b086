// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {INanocontract} from "../interfaces/INanocontract.sol";

/**
 * @title TicTacToe
 * @notice Tic-tac-toe for stakes: each player blocks a stake, the winner takes both, a draw
 * returns them. A player who stops answering is forced to move on chain: once `moveTimeout`
 * seconds have passed since the state last changed on chain, the other player wins.
 *
 * @dev data = abi.encode(uint8 turn, uint64 moveTimeout, uint8[9] cells): `turn` is the player to
 * move (0 = Alice, 1 = Bob); a cell is 0 (empty), 1 (Alice's) or 2 (Bob's), row by row.
 * Functions: MOVE (z = abi.encode(uint8 cell), by the player to move) and TIMEOUT (z ignored, by
 * the other player, when time > since + moveTimeout).
 */
contract TicTacToe is INanocontract {
    uint8 public constant MOVE = 0;
    uint8 public constant TIMEOUT = 1;
    uint256 private constant WORDS = 11;

    error TicTacToeUnknownFunction(uint8 fun);
    error TicTacToeMalformed();
    error TicTacToeGameOver();
    error TicTacToeNotYourTurn(uint8 caller);
    error TicTacToeCellTaken(uint256 cell);
    error TicTacToeTooEarly(uint256 deadline);

    /// @inheritdoc INanocontract
    function transition(Context calldata ctx, uint8 fun, bytes calldata z, AppState calldata s)
        external
        pure
        returns (AppState memory next)
    {
        if (fun > TIMEOUT) revert TicTacToeUnknownFunction(fun);
        (uint8 turn, uint256 moveTimeout, uint8[9] memory cells) = _decode(s.data);
        uint256 pot = s.blockedAlice + s.blockedBob;
        if (pot == 0) revert TicTacToeGameOver();
        next = AppState(s.blockedAlice, s.blockedBob, s.releasedAlice, s.releasedBob, s.data);

        if (fun == TIMEOUT) {
            if (ctx.caller == turn) revert TicTacToeNotYourTurn(ctx.caller);
            if (ctx.time <= ctx.since + moveTimeout) revert TicTacToeTooEarly(ctx.since + moveTimeout);
            _payWinner(next, ctx.caller, pot);
            return next;
        }

        if (ctx.caller != turn) revert TicTacToeNotYourTurn(ctx.caller);
        if (z.length != 32 || uint256(bytes32(z)) > 8) revert TicTacToeMalformed();
        uint256 cell = uint256(bytes32(z));
        if (cells[cell] != 0) revert TicTacToeCellTaken(cell);
        cells[cell] = turn + 1;
        next.data = abi.encode(1 - turn, uint64(moveTimeout), cells);

        if (_wins(cells, turn + 1)) {
            _payWinner(next, turn, pot);
        } else if (_full(cells)) {
            next.releasedAlice += s.blockedAlice;
            next.releasedBob += s.blockedBob;
            next.blockedAlice = 0;
            next.blockedBob = 0;
        }
    }

    /// @inheritdoc INanocontract
    /// @dev Nothing to wait for: the predefined distribution returns each stake to its owner.
    function settleBy(AppState calldata) external pure returns (uint256) {
        return 0;
    }

    function _payWinner(AppState memory next, uint8 winner, uint256 pot) private pure {
        next.blockedAlice = 0;
        next.blockedBob = 0;
        if (winner == 0) next.releasedAlice += pot;
        else next.releasedBob += pot;
    }

    /// @dev By hand, so that every malformed state gets this app's error, as in Python.
    function _decode(bytes calldata data)
        private
        pure
        returns (uint8 turn, uint256 moveTimeout, uint8[9] memory cells)
    {
        if (data.length != WORDS * 32) revert TicTacToeMalformed();
        uint256 turnWord = uint256(bytes32(data[0:32]));
        moveTimeout = uint256(bytes32(data[32:64]));
        if (turnWord > 1 || moveTimeout > type(uint64).max) revert TicTacToeMalformed();
        turn = uint8(turnWord);
        for (uint256 i = 0; i < 9; ++i) {
            uint256 word = uint256(bytes32(data[64 + 32 * i:96 + 32 * i]));
            if (word > 2) revert TicTacToeMalformed();
            cells[i] = uint8(word);
        }
    }

    function _wins(uint8[9] memory c, uint8 mark) private pure returns (bool) {
        uint8[3][8] memory lines = [
            [0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]
        ];
        for (uint256 i = 0; i < 8; ++i) {
            if (c[lines[i][0]] == mark && c[lines[i][1]] == mark && c[lines[i][2]] == mark) return true;
        }
        return false;
    }

    function _full(uint8[9] memory c) private pure returns (bool) {
        for (uint256 i = 0; i < 9; ++i) {
            if (c[i] == 0) return false;
        }
        return true;
    }
}
