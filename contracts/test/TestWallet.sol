// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice A contract account for tests: its owner makes it call other contracts, and it can be
/// set to accept ETH, reject it, or burn all the gas it is given.
contract TestWallet {
    enum Mode {
        Accept,
        Reject,
        BurnGas
    }

    address public immutable owner;
    Mode public mode;

    error TestWalletRejected();

    constructor() {
        owner = msg.sender;
    }

    function setMode(Mode newMode) external {
        require(msg.sender == owner, "owner");
        mode = newMode;
    }

    function execute(address target, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        require(msg.sender == owner, "owner");
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        if (mode == Mode.Reject) revert TestWalletRejected();
        if (mode == Mode.BurnGas) {
            while (true) {}
        }
    }
}
