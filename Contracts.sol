// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

// The deployable contracts, for `slither .`: crytic-compile, slither's compile layer, finds no
// framework here (no foundry.toml or hardhat config) and compiles the .sol files at the top of
// the directory instead, each with what it imports (slither.config.json: the solc shim, the
// OpenZeppelin remapping, the optimizer). This one brings in every contract `make lint` checks.
import {PaymentContract} from "./contracts/PaymentContract.sol";
import {MSContract} from "./contracts/MSContract.sol";
import {HashTimeLock} from "./contracts/apps/HashTimeLock.sol";
import {TicTacToe} from "./contracts/apps/TicTacToe.sol";
import {VirtualChannel} from "./contracts/apps/VirtualChannel.sol";
