// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/**
 * @title Channels
 * @notice What every two-party channel contract of Perun shares: the parameters and the id of a
 * channel, its opening (create, confirm, refund), the dispute window of a unilateral close,
 * signatures, deposits and payouts. PaymentContract and MSContract build on it.
 *
 * @dev One deployment holds every channel, keyed by its id. The contract stores one 32-byte slot
 * per channel; the parameters are not stored: the id is their hash, so every call passes them
 * in calldata and the contract checks them against the id. See docs/protocol.md.
 */
abstract contract Channels is EIP712 {
    using SafeERC20 for IERC20;

    /// @notice Immutable parameters of a channel; `channelId` is their hash.
    struct Params {
        address alice; // opens the channel with `create`
        address bob; // joins it with `confirm`
        address token; // ERC-20 token, or address(0) for ETH
        uint256 depositAlice;
        uint256 depositBob;
        uint64 delta; // dispute window Δ, in seconds
        uint256 nonce; // lets the same parties open several channels
    }

    enum Phase {
        None,
        Initialising,
        Open,
        Closing,
        Closed
    }

    /// @notice What the contract stores per channel, packed in one slot.
    /// `deadline` is the last second in which Bob may confirm (Initialising) or in which a
    /// higher state may replace the registered one (Closing). `balanceAlice` is Alice's part of
    /// the registered state: her balance (PaymentContract) or her cash (MSContract). `rewards`
    /// says which watchtower rewards are recorded (see {Watchtowers}), so that a channel without
    /// any pays nothing to look.
    struct Channel {
        Phase phase;
        uint40 deadline;
        uint64 version;
        uint128 balanceAlice;
        uint8 rewards;
    }

    /// @notice Longest dispute window accepted: keeps every deadline within uint40.
    uint64 public constant MAX_DELTA = 3650 days;

    /// @notice Gas forwarded with an ETH payout. A recipient that needs more, reverts or burns it
    /// is credited instead (see `withdraw`), so it cannot block the other party's payout. ERC-20
    /// payouts are not capped: the token is one both parties chose.
    uint256 public constant PAYOUT_GAS = 30_000;

    mapping(bytes32 channelId => Channel) internal _channels;

    /// @notice Payouts that could not be pushed, by recipient and token (address(0) for ETH).
    mapping(address account => mapping(address token => uint256)) public owed;

    /// @notice Alice created the channel and paid her deposit (the seed's `initialising`).
    event Initialising(bytes32 indexed channelId, Params params, uint256 deadline);
    /// @notice Bob confirmed and paid his deposit; the channel is open (the seed's `initialised`).
    event Initialised(bytes32 indexed channelId);
    /// @notice Bob did not confirm in time and Alice's deposit was returned.
    event Refunded(bytes32 indexed channelId, uint256 amount);
    /// @notice A payout could not be pushed to `account` and was credited to it instead.
    event PayoutDeferred(address indexed account, address indexed token, uint256 amount);
    /// @notice `account` withdrew credited payouts to `to`.
    event Withdrawn(address indexed account, address indexed token, address to, uint256 amount);

    error ChannelsCallerNotAlice(address caller);
    error ChannelsCallerNotBob(address caller);
    error ChannelsCallerNotParticipant(address caller);
    error ChannelsInvalidParties(address alice, address bob);
    error ChannelsInvalidDelta(uint64 delta);
    error ChannelsDepositsTooLarge(uint256 depositAlice, uint256 depositBob);
    error ChannelsChannelExists(bytes32 channelId);
    error ChannelsWrongPhase(bytes32 channelId, Phase phase);
    error ChannelsWrongDeposit(uint256 expected, uint256 received);
    error ChannelsConfirmTooLate(uint256 deadline);
    error ChannelsRefundTooEarly(uint256 deadline);
    error ChannelsWrongChannel(bytes32 expected, bytes32 received);
    error ChannelsBalancesNotConserved(uint256 balanceAlice, uint256 balanceBob, uint256 total);
    error ChannelsInvalidSignature(address expectedSigner, address recovered);
    error ChannelsStaleVersion(uint64 registered, uint64 submitted);
    error ChannelsDisputeWindowOver(uint256 deadline);
    error ChannelsFinalizeTooEarly(uint256 deadline);
    error ChannelsNothingToWithdraw(address account, address token);
    error ChannelsWithdrawFailed(address to);
    error ChannelsInvalidRecipient();

    constructor(string memory name) EIP712(name, "1") {}

    // ------------------------------------------------------------------ opening

    /**
     * @notice Opens a channel. Called by `p.alice`, who pays `p.depositAlice` (ETH as msg.value,
     * or ERC-20 pulled with transferFrom after approval).
     * @dev Emits {Initialising}. Bob may confirm until `deadline` = now + Δ; after it anyone may
     * call `refund`.
     * @return channelId The channel's id: the hash of chain id, this contract and `p`.
     */
    function create(Params calldata p) external payable returns (bytes32 channelId) {
        if (msg.sender != p.alice) revert ChannelsCallerNotAlice(msg.sender);
        if (p.alice == address(0) || p.bob == address(0) || p.alice == p.bob) {
            revert ChannelsInvalidParties(p.alice, p.bob);
        }
        if (p.delta == 0 || p.delta > MAX_DELTA) revert ChannelsInvalidDelta(p.delta);
        if (p.depositAlice > type(uint128).max || p.depositBob > type(uint128).max - p.depositAlice) {
            revert ChannelsDepositsTooLarge(p.depositAlice, p.depositBob);
        }
        channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        if (ch.phase != Phase.None) revert ChannelsChannelExists(channelId);

        uint40 deadline = uint40(block.timestamp + p.delta);
        ch.phase = Phase.Initialising;
        ch.deadline = deadline;
        emit Initialising(channelId, p, deadline);

        _collectDeposit(p.token, p.depositAlice);
    }

    /**
     * @notice Joins a channel in phase Initialising. Called by `p.bob` no later than the
     * deadline, paying exactly `p.depositBob`.
     * @dev Emits {Initialised}; the channel is then Open.
     */
    // slither-disable-next-line timestamp -- deadlines are timestamps by design; windows dwarf a proposer's drift
    function confirm(Params calldata p) external payable {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        if (ch.phase != Phase.Initialising) revert ChannelsWrongPhase(channelId, ch.phase);
        if (msg.sender != p.bob) revert ChannelsCallerNotBob(msg.sender);
        if (block.timestamp > ch.deadline) revert ChannelsConfirmTooLate(ch.deadline);

        ch.phase = Phase.Open;
        ch.deadline = 0;
        emit Initialised(channelId);

        _collectDeposit(p.token, p.depositBob);
    }

    /**
     * @notice Returns Alice's deposit when Bob has not confirmed by the deadline. Anyone may
     * call it (a watchtower, say); the deposit always goes to `p.alice`.
     * @dev Phase Initialising, after the deadline. Emits {Refunded}; the channel is Closed.
     */
    // slither-disable-next-line timestamp -- deadlines are timestamps by design; windows dwarf a proposer's drift
    function refund(Params calldata p) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        if (ch.phase != Phase.Initialising) revert ChannelsWrongPhase(channelId, ch.phase);
        if (block.timestamp <= ch.deadline) revert ChannelsRefundTooEarly(ch.deadline);

        _markClosed(ch);
        emit Refunded(channelId, p.depositAlice);

        _payout(p.token, p.alice, p.depositAlice);
    }

    /**
     * @notice Sends the caller's deferred payouts in `token` (address(0) for ETH) to `to`.
     * @dev Emits {Withdrawn}. Reverts if `to` is zero, nothing is owed or the transfer fails.
     */
    // slither-disable-next-line low-level-calls -- ETH to the owner's recipient; credit cleared first, result checked
    function withdraw(address token, address payable to) external {
        if (to == address(0)) revert ChannelsInvalidRecipient();
        uint256 amount = owed[msg.sender][token];
        if (amount == 0) revert ChannelsNothingToWithdraw(msg.sender, token);
        owed[msg.sender][token] = 0;
        emit Withdrawn(msg.sender, token, to, amount);

        if (token == address(0)) {
            (bool ok, ) = to.call{value: amount}("");
            if (!ok) revert ChannelsWithdrawFailed(to);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }

    // ------------------------------------------------------------------ views

    /// @notice The id of the channel with parameters `p` on this contract and chain.
    function channelIdOf(Params calldata p) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), p));
    }

    /// @notice What the contract holds for `channelId`.
    function channel(bytes32 channelId) external view returns (Channel memory) {
        return _channels[channelId];
    }

    /// @notice The EIP-712 domain separator (this contract's name, version "1").
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------ for the contracts built on this

    /// @dev The party whose signature a state from the caller must carry; reverts for anyone else.
    function _counterparty(Params calldata p) internal view returns (address) {
        if (msg.sender == p.alice) return p.bob;
        if (msg.sender == p.bob) return p.alice;
        revert ChannelsCallerNotParticipant(msg.sender);
    }

    /// @dev The phase check of a unilateral close, before the caller reads the state.
    function _closable(bytes32 channelId) internal view returns (Channel storage ch) {
        ch = _channels[channelId];
        if (ch.phase != Phase.Open && ch.phase != Phase.Closing) revert ChannelsWrongPhase(channelId, ch.phase);
    }

    /**
     * @dev The seed's rule for the state of a unilateral close: from Open, any state starts the
     * window Δ; in Closing, until the deadline, only a strictly higher version replaces the
     * registered one. Checked before the signature, so a late or stale state says so.
     */
    // slither-disable-next-line timestamp -- deadlines are timestamps by design; windows dwarf a proposer's drift
    function _checkReplaceable(Channel storage ch, uint64 version) internal view {
        if (ch.phase != Phase.Closing) return;
        if (block.timestamp > ch.deadline) revert ChannelsDisputeWindowOver(ch.deadline);
        if (version <= ch.version) revert ChannelsStaleVersion(ch.version, version);
    }

    /// @dev Registers a checked state; a replacement keeps the deadline. Returns the deadline.
    function _registerClose(Channel storage ch, Params calldata p, uint64 version, uint256 balanceAlice)
        internal
        virtual
        returns (uint40 deadline)
    {
        deadline = ch.deadline;
        if (ch.phase == Phase.Open) {
            deadline = uint40(block.timestamp + p.delta);
            ch.phase = Phase.Closing;
            ch.deadline = deadline;
        }
        ch.version = version;
        ch.balanceAlice = uint128(balanceAlice);
    }

    function _checkChannel(bytes32 channelId, bytes32 stateChannelId) internal pure {
        if (stateChannelId != channelId) revert ChannelsWrongChannel(channelId, stateChannelId);
    }

    // slither-disable-next-line unused-return -- a failed recovery gives address(0), no party (open rejects it)
    function _checkSignature(bytes32 digest, bytes calldata sig, address expected) internal pure {
        (address recovered, , ) = ECDSA.tryRecover(digest, sig);
        if (recovered != expected) revert ChannelsInvalidSignature(expected, recovered);
    }

    /// @dev Closed, not deleted: a deleted channel could be created again with the same id, and
    /// states signed for the old one would be valid for the new one.
    function _markClosed(Channel storage ch) internal {
        ch.phase = Phase.Closed;
        ch.deadline = 0;
        ch.version = 0;
        ch.balanceAlice = 0;
        ch.rewards = 0;
    }

    /// @dev Runs after the caller's effects: a wrong deposit reverts the whole call, so nothing
    /// changes, and ETH and tokens share one path.
    function _collectDeposit(address token, uint256 amount) private {
        if (token == address(0)) {
            if (msg.value != amount) revert ChannelsWrongDeposit(amount, msg.value);
            return;
        }
        if (msg.value != 0) revert ChannelsWrongDeposit(0, msg.value);
        if (amount == 0) return;
        // Measured, so a token that charges a fee on transfer cannot leave the channel short.
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert ChannelsWrongDeposit(amount, received);
    }

    /// @dev Never reverts: a payout that cannot be pushed is credited to `to` instead.
    // slither-disable-next-line assembly -- copies no return data: a recipient cannot make us pay for a big one
    function _payout(address token, address to, uint256 amount) internal {
        if (amount == 0) return;
        bool ok;
        if (token == address(0)) {
            uint256 gasLimit = PAYOUT_GAS;
            // Assembly, so a recipient cannot make us copy a huge return buffer.
            assembly ("memory-safe") {
                ok := call(gasLimit, to, amount, 0, 0, 0, 0)
            }
        } else {
            ok = IERC20(token).trySafeTransfer(to, amount);
        }
        if (!ok) {
            owed[to][token] += amount;
            emit PayoutDeferred(to, token, amount);
        }
    }
}
