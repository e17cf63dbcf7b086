// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title INanocontract
 * @notice The logic of a nanocontract (seed §3.2): an app that MSContract runs on chain when a
 * nanocontract is executed after its registration, and that the nodes run off chain (its Python
 * mirror in perun.core.apps) to check every update they are asked to sign.
 *
 * @dev An app is stateless: MSContract holds the nanocontract's state and passes it in. `transition`
 * must be a pure function of its arguments, so that the chain and the Python mirror agree. It
 * reverts with a custom error when the call is not allowed. MSContract checks what the app
 * returns: the sum blocked may only stay or fall, each party's released amount may only grow,
 * and blocked plus released stays what it was.
 */
interface INanocontract {
    /// @notice The part of a nanocontract's state an app reads and changes.
    struct AppState {
        uint256 blockedAlice; // ν.blocked(Alice): what Alice still has in the nanocontract
        uint256 blockedBob;
        uint256 releasedAlice; // what the nanocontract has given back to Alice's cash so far
        uint256 releasedBob;
        bytes data; // ν.storage, in the app's own encoding
    }

    /// @notice Who calls, and when.
    struct Context {
        uint8 caller; // 0 = Alice, 1 = Bob
        uint256 time; // the block's timestamp (off chain: the caller's clock)
        uint256 since; // when the state last changed on chain (its registration window's end)
    }

    /**
     * @notice The state after function `fun` with argument `z`, called by `ctx.caller`.
     * @dev Reverts with the app's own custom error when the call is not allowed.
     */
    function transition(Context calldata ctx, uint8 fun, bytes calldata z, AppState calldata s)
        external
        view
        returns (AppState memory);

    /**
     * @notice Until when a closing channel must wait for this nanocontract: execution stays open
     * and the predefined distribution is held back until then (or deadline + Δ, if later).
     * @dev 0 for an app whose predefined distribution is fair at any time. MSContract reads it at
     * registration with a gas cap, treats a revert as 0, and caps it at a year after the
     * registration, so that no app can lock a channel for ever.
     */
    function settleBy(AppState calldata s) external view returns (uint256);
}
