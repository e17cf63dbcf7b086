// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {INanocontract} from "../interfaces/INanocontract.sol";

/**
 * @title HashTimeLock
 * @notice A hash-time-locked conditional payment, the building block of Lightning's multi-hop
 * payments: the sender blocks `amount`; the receiver gets it with the preimage of `hashlock`
 * (SHA-256, as in Lightning) until `timeout`; after `timeout` the sender gets it back. The
 * receiver may also give it back at any time (a multi-hop payment that failed downstream frees
 * its locks upstream at once, as Lightning's update_fail_htlc, instead of at their timeouts).
 *
 * @dev data = abi.encode(uint8 sender, bytes32 hashlock, uint64 timeout); the amount is what the
 * sender has blocked. Functions: CLAIM (z = the 32-byte preimage, by the receiver, at or before
 * `timeout`), RECLAIM (z ignored, by the sender, after `timeout`) and CANCEL (z ignored, by the
 * receiver, at any time, before or after `timeout`: everything goes back to the sender). Each
 * releases everything blocked and so settles the lock; a settled lock refuses every function.
 * Any caller other than the sender counts as the receiver, as MSContract passes only 0 or 1.
 */
contract HashTimeLock is INanocontract {
    uint8 public constant CLAIM = 0;
    uint8 public constant RECLAIM = 1;
    /// @notice The receiver gives up its claim: everything blocked goes back to the sender. No
    /// time condition: after `timeout` the sender could RECLAIM anyway, and the outcome is the same.
    uint8 public constant CANCEL = 2;

    error HashTimeLockUnknownFunction(uint8 fun);
    error HashTimeLockMalformed();
    error HashTimeLockWrongCaller(uint8 caller);
    error HashTimeLockSettled();
    error HashTimeLockWrongPreimage(bytes32 hashlock, bytes32 hashOfPreimage);
    error HashTimeLockExpired(uint256 timeout);
    error HashTimeLockNotExpired(uint256 timeout);

    /// @inheritdoc INanocontract
    // slither-disable-next-line cyclomatic-complexity -- one short branch per move of the lock in docs/protocol.md
    function transition(Context calldata ctx, uint8 fun, bytes calldata z, AppState calldata s)
        external
        pure
        returns (AppState memory next)
    {
        if (fun > CANCEL) revert HashTimeLockUnknownFunction(fun);
        // Decoded by hand so that every malformed input gets this app's error, as in Python.
        if (s.data.length != 96) revert HashTimeLockMalformed();
        uint256 senderWord = uint256(bytes32(s.data[0:32]));
        bytes32 hashlock = bytes32(s.data[32:64]);
        uint256 timeout = uint256(bytes32(s.data[64:96]));
        if (senderWord > 1 || timeout > type(uint64).max) revert HashTimeLockMalformed();
        uint8 sender = uint8(senderWord);
        uint256 amount = sender == 0 ? s.blockedAlice : s.blockedBob;
        if (amount == 0 || s.blockedAlice + s.blockedBob != amount) revert HashTimeLockSettled();

        uint8 to;
        if (fun == CLAIM) {
            if (ctx.caller == sender) revert HashTimeLockWrongCaller(ctx.caller);
            if (z.length != 32) revert HashTimeLockWrongPreimage(hashlock, bytes32(0));
            bytes32 h = sha256(z);
            if (h != hashlock) revert HashTimeLockWrongPreimage(hashlock, h);
            if (ctx.time > timeout) revert HashTimeLockExpired(timeout);
            to = 1 - sender;
        } else if (fun == RECLAIM) {
            if (ctx.caller != sender) revert HashTimeLockWrongCaller(ctx.caller);
            if (ctx.time <= timeout) revert HashTimeLockNotExpired(timeout);
            to = sender;
        } else {
            // CANCEL: z is ignored, as by RECLAIM; the result does not depend on it.
            if (ctx.caller == sender) revert HashTimeLockWrongCaller(ctx.caller);
            to = sender;
        }
        next = AppState(0, 0, s.releasedAlice, s.releasedBob, s.data);
        if (to == 0) next.releasedAlice += amount;
        else next.releasedBob += amount;
    }

    /// @inheritdoc INanocontract
    /// @dev Nothing to wait for: the predefined distribution returns each stake to its owner.
    function settleBy(AppState calldata) external pure returns (uint256) {
        return 0;
    }
}
