// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {INanocontract} from "../interfaces/INanocontract.sol";

/**
 * @title WaitingApp
 * @notice A test app whose `settleBy` the storage chooses: `data = abi.encode(uint256 settleBy,
 * uint256 mode)`, mode 0 returns it, 1 reverts, 2 burns all the gas it is given, 3 returns two
 * words. `transition` releases everything blocked to the caller.
 */
contract WaitingApp is INanocontract {
    /// @inheritdoc INanocontract
    function transition(Context calldata ctx, uint8, bytes calldata, AppState calldata s)
        external
        pure
        returns (AppState memory next)
    {
        next = s;
        uint256 pot = s.blockedAlice + s.blockedBob;
        next.blockedAlice = 0;
        next.blockedBob = 0;
        if (ctx.caller == 0) next.releasedAlice += pot;
        else next.releasedBob += pot;
    }

    /// @inheritdoc INanocontract
    function settleBy(AppState calldata s) external view returns (uint256) {
        (uint256 t, uint256 mode) = abi.decode(s.data, (uint256, uint256));
        if (mode == 1) revert("no");
        if (mode == 2) {
            while (gasleft() > 0) {}
        }
        if (mode == 3) {
            assembly {
                mstore(0, t)
                mstore(32, t)
                return(0, 64)
            }
        }
        return t;
    }
}
