// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice A plain ERC-20 for tests: anyone may mint. Transfers to `blocked` accounts revert,
/// like a token with a deny list.
contract TestToken is ERC20 {
    mapping(address => bool) public blocked;

    error TestTokenRecipientBlocked(address to);

    constructor() ERC20("Test Token", "TEST") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setBlocked(address account, bool isBlocked) external {
        blocked[account] = isBlocked;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blocked[to]) revert TestTokenRecipientBlocked(to);
        super._update(from, to, value);
    }
}
