// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/**
 * @title PaymentContract
 * @notice Perun's basic two-party payment channels (create, confirm, refund, close, finalize),
 * plus a cooperative close. One deployment holds every channel, keyed by its id.
 *
 * @dev The contract stores one 32-byte slot per channel. The channel parameters are not stored:
 * the id is their hash, so every call passes them in calldata and the contract checks them
 * against the id. Each party keeps the latest state signed by the *other* party; `close` accepts
 * such a state, and within the dispute window Δ a strictly higher version replaces it without
 * extending the window. There is no punishment for closing with an older state: a party whose
 * counterparty went silent after an update can only hold the previous version. See
 * docs/protocol.md for the exact rules.
 */
contract PaymentContract is EIP712 {
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

    /// @notice An off-chain state, signed by one party with EIP-712.
    struct PaymentState {
        bytes32 channelId;
        uint64 version;
        uint256 balanceAlice;
        uint256 balanceBob;
    }

    /// @notice The last state of a channel, signed by both parties for a cooperative close.
    /// Its own type, so an ordinary state signature can never be used as one.
    struct FinalState {
        bytes32 channelId;
        uint64 version;
        uint256 balanceAlice;
        uint256 balanceBob;
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
    /// higher state may replace the registered one (Closing).
    struct Channel {
        Phase phase;
        uint40 deadline;
        uint64 version;
        uint128 balanceAlice;
    }

    bytes32 public constant PAYMENT_STATE_TYPEHASH =
        keccak256("PaymentState(bytes32 channelId,uint64 version,uint256 balanceAlice,uint256 balanceBob)");
    bytes32 public constant FINAL_STATE_TYPEHASH =
        keccak256("FinalState(bytes32 channelId,uint64 version,uint256 balanceAlice,uint256 balanceBob)");

    /// @notice Longest dispute window accepted: keeps every deadline within uint40.
    uint64 public constant MAX_DELTA = 3650 days;

    /// @notice Gas forwarded with an ETH payout. A recipient that needs more, reverts or burns it
    /// is credited instead (see `withdraw`), so it cannot block the other party's payout. ERC-20
    /// payouts are not capped: the token is one both parties chose.
    uint256 public constant PAYOUT_GAS = 30_000;

    mapping(bytes32 channelId => Channel) private _channels;

    /// @notice Payouts that could not be pushed, by recipient and token (address(0) for ETH).
    mapping(address account => mapping(address token => uint256)) public owed;

    /// @notice Alice created the channel and paid her deposit (the seed's `initialising`).
    event Initialising(bytes32 indexed channelId, Params params, uint256 deadline);
    /// @notice Bob confirmed and paid his deposit; the channel is open (the seed's `initialised`).
    event Initialised(bytes32 indexed channelId);
    /// @notice Bob did not confirm in time and Alice's deposit was returned.
    event Refunded(bytes32 indexed channelId, uint256 amount);
    /// @notice A state was registered by `close`, first or replacing a lower version.
    event CloseRegistered(
        bytes32 indexed channelId,
        address indexed by,
        uint64 version,
        uint256 balanceAlice,
        uint256 balanceBob,
        uint256 deadline
    );
    /// @notice The dispute window ended and the registered state was paid out.
    event Finalized(bytes32 indexed channelId, uint64 version, uint256 balanceAlice, uint256 balanceBob);
    /// @notice A final state signed by both parties was paid out.
    event CooperativelyClosed(bytes32 indexed channelId, uint64 version, uint256 balanceAlice, uint256 balanceBob);
    /// @notice A payout could not be pushed to `account` and was credited to it instead.
    event PayoutDeferred(address indexed account, address indexed token, uint256 amount);
    /// @notice `account` withdrew credited payouts to `to`.
    event Withdrawn(address indexed account, address indexed token, address to, uint256 amount);

    error PaymentContractCallerNotAlice(address caller);
    error PaymentContractCallerNotBob(address caller);
    error PaymentContractCallerNotParticipant(address caller);
    error PaymentContractInvalidParties(address alice, address bob);
    error PaymentContractInvalidDelta(uint64 delta);
    error PaymentContractDepositsTooLarge(uint256 depositAlice, uint256 depositBob);
    error PaymentContractChannelExists(bytes32 channelId);
    error PaymentContractWrongPhase(bytes32 channelId, Phase phase);
    error PaymentContractWrongDeposit(uint256 expected, uint256 received);
    error PaymentContractConfirmTooLate(uint256 deadline);
    error PaymentContractRefundTooEarly(uint256 deadline);
    error PaymentContractWrongChannel(bytes32 expected, bytes32 received);
    error PaymentContractBalancesNotConserved(uint256 balanceAlice, uint256 balanceBob, uint256 total);
    error PaymentContractInvalidSignature(address expectedSigner, address recovered);
    error PaymentContractStaleVersion(uint64 registered, uint64 submitted);
    error PaymentContractDisputeWindowOver(uint256 deadline);
    error PaymentContractFinalizeTooEarly(uint256 deadline);
    error PaymentContractNothingToWithdraw(address account, address token);
    error PaymentContractWithdrawFailed(address to);
    error PaymentContractInvalidRecipient();

    constructor() EIP712("Perun PaymentContract", "1") {}

    // ------------------------------------------------------------------ channel lifecycle

    /**
     * @notice Opens a channel. Called by `p.alice`, who pays `p.depositAlice` (ETH as msg.value,
     * or ERC-20 pulled with transferFrom after approval).
     * @dev Emits {Initialising}. Bob may confirm until `deadline` = now + Δ; after it Alice may
     * call `refund`.
     * @return channelId The channel's id: the hash of chain id, this contract and `p`.
     */
    function create(Params calldata p) external payable returns (bytes32 channelId) {
        if (msg.sender != p.alice) revert PaymentContractCallerNotAlice(msg.sender);
        if (p.alice == address(0) || p.bob == address(0) || p.alice == p.bob) {
            revert PaymentContractInvalidParties(p.alice, p.bob);
        }
        if (p.delta == 0 || p.delta > MAX_DELTA) revert PaymentContractInvalidDelta(p.delta);
        if (p.depositAlice > type(uint128).max || p.depositBob > type(uint128).max - p.depositAlice) {
            revert PaymentContractDepositsTooLarge(p.depositAlice, p.depositBob);
        }
        channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        if (ch.phase != Phase.None) revert PaymentContractChannelExists(channelId);

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
    function confirm(Params calldata p) external payable {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        if (ch.phase != Phase.Initialising) revert PaymentContractWrongPhase(channelId, ch.phase);
        if (msg.sender != p.bob) revert PaymentContractCallerNotBob(msg.sender);
        if (block.timestamp > ch.deadline) revert PaymentContractConfirmTooLate(ch.deadline);

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
    function refund(Params calldata p) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        if (ch.phase != Phase.Initialising) revert PaymentContractWrongPhase(channelId, ch.phase);
        if (block.timestamp <= ch.deadline) revert PaymentContractRefundTooEarly(ch.deadline);

        _markClosed(ch);
        emit Refunded(channelId, p.depositAlice);

        _payout(p.token, p.alice, p.depositAlice);
    }

    /**
     * @notice Registers a state signed by the other party. Called by Alice or Bob.
     * @dev In phase Open, any valid state starts the dispute window: deadline = now + Δ. In
     * phase Closing, until the deadline, a strictly higher version replaces the registered
     * state; the deadline stays. The initial state (version 0, balances equal to the deposits)
     * needs no signature. Emits {CloseRegistered}.
     * @param sig the EIP-712 signature of the caller's counterparty on `s`.
     */
    function close(Params calldata p, PaymentState calldata s, bytes calldata sig) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        Phase phase = ch.phase;
        if (phase != Phase.Open && phase != Phase.Closing) revert PaymentContractWrongPhase(channelId, phase);

        address counterparty;
        if (msg.sender == p.alice) counterparty = p.bob;
        else if (msg.sender == p.bob) counterparty = p.alice;
        else revert PaymentContractCallerNotParticipant(msg.sender);

        _checkState(channelId, p, s.channelId, s.balanceAlice, s.balanceBob);
        uint40 deadline = ch.deadline;
        if (phase == Phase.Closing) {
            if (block.timestamp > deadline) revert PaymentContractDisputeWindowOver(deadline);
            if (s.version <= ch.version) revert PaymentContractStaleVersion(ch.version, s.version);
        }
        if (s.version != 0 || s.balanceAlice != p.depositAlice) {
            _checkSignature(hashPaymentState(s), sig, counterparty);
        }

        if (phase == Phase.Open) {
            deadline = uint40(block.timestamp + p.delta);
            ch.phase = Phase.Closing;
            ch.deadline = deadline;
        }
        ch.version = s.version;
        ch.balanceAlice = uint128(s.balanceAlice);
        emit CloseRegistered(channelId, msg.sender, s.version, s.balanceAlice, s.balanceBob, deadline);
    }

    /**
     * @notice Pays out the registered state once the dispute window is over. Anyone may call it.
     * @dev Phase Closing, after the deadline. Emits {Finalized}; the channel is Closed.
     */
    function finalize(Params calldata p) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        if (ch.phase != Phase.Closing) revert PaymentContractWrongPhase(channelId, ch.phase);
        if (block.timestamp <= ch.deadline) revert PaymentContractFinalizeTooEarly(ch.deadline);

        uint64 version = ch.version;
        uint256 balanceAlice = ch.balanceAlice;
        uint256 balanceBob = p.depositAlice + p.depositBob - balanceAlice;
        _markClosed(ch);
        emit Finalized(channelId, version, balanceAlice, balanceBob);

        _payout(p.token, p.alice, balanceAlice);
        _payout(p.token, p.bob, balanceBob);
    }

    /**
     * @notice Pays out a final state signed by both parties, at once. Anyone may submit it.
     * @dev Phase Open, or Closing (also after the deadline, until someone finalizes) when its
     * version is above the registered one. Emits {CooperativelyClosed}; the channel is Closed.
     */
    function cooperativeClose(
        Params calldata p,
        FinalState calldata s,
        bytes calldata sigAlice,
        bytes calldata sigBob
    ) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        Phase phase = ch.phase;
        if (phase != Phase.Open && phase != Phase.Closing) revert PaymentContractWrongPhase(channelId, phase);
        _checkState(channelId, p, s.channelId, s.balanceAlice, s.balanceBob);
        if (phase == Phase.Closing && s.version <= ch.version) {
            revert PaymentContractStaleVersion(ch.version, s.version);
        }
        bytes32 digest = hashFinalState(s);
        _checkSignature(digest, sigAlice, p.alice);
        _checkSignature(digest, sigBob, p.bob);

        _markClosed(ch);
        emit CooperativelyClosed(channelId, s.version, s.balanceAlice, s.balanceBob);

        _payout(p.token, p.alice, s.balanceAlice);
        _payout(p.token, p.bob, s.balanceBob);
    }

    /**
     * @notice Sends the caller's deferred payouts in `token` (address(0) for ETH) to `to`.
     * @dev Emits {Withdrawn}. Reverts if `to` is zero, nothing is owed or the transfer fails.
     */
    function withdraw(address token, address payable to) external {
        if (to == address(0)) revert PaymentContractInvalidRecipient();
        uint256 amount = owed[msg.sender][token];
        if (amount == 0) revert PaymentContractNothingToWithdraw(msg.sender, token);
        owed[msg.sender][token] = 0;
        emit Withdrawn(msg.sender, token, to, amount);

        if (token == address(0)) {
            (bool ok, ) = to.call{value: amount}("");
            if (!ok) revert PaymentContractWithdrawFailed(to);
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

    /// @notice The EIP-712 digest a party signs for an ordinary state.
    function hashPaymentState(PaymentState calldata s) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(PAYMENT_STATE_TYPEHASH, s.channelId, s.version, s.balanceAlice, s.balanceBob))
        );
    }

    /// @notice The EIP-712 digest both parties sign for a cooperative close.
    function hashFinalState(FinalState calldata s) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(FINAL_STATE_TYPEHASH, s.channelId, s.version, s.balanceAlice, s.balanceBob))
        );
    }

    /// @notice The EIP-712 domain separator (name "Perun PaymentContract", version "1").
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------ internals

    function _checkState(
        bytes32 channelId,
        Params calldata p,
        bytes32 stateChannelId,
        uint256 balanceAlice,
        uint256 balanceBob
    ) private pure {
        if (stateChannelId != channelId) revert PaymentContractWrongChannel(channelId, stateChannelId);
        uint256 total = p.depositAlice + p.depositBob;
        if (balanceAlice > total || balanceBob != total - balanceAlice) {
            revert PaymentContractBalancesNotConserved(balanceAlice, balanceBob, total);
        }
    }

    function _checkSignature(bytes32 digest, bytes calldata sig, address expected) private pure {
        (address recovered, , ) = ECDSA.tryRecover(digest, sig);
        if (recovered != expected) revert PaymentContractInvalidSignature(expected, recovered);
    }

    /// @dev Closed, not deleted: a deleted channel could be created again with the same id, and
    /// states signed for the old one would be valid for the new one.
    function _markClosed(Channel storage ch) private {
        ch.phase = Phase.Closed;
        ch.deadline = 0;
        ch.version = 0;
        ch.balanceAlice = 0;
    }

    /// @dev Runs after the caller's effects: a wrong deposit reverts the whole call, so nothing
    /// changes, and ETH and tokens share one path.
    function _collectDeposit(address token, uint256 amount) private {
        if (token == address(0)) {
            if (msg.value != amount) revert PaymentContractWrongDeposit(amount, msg.value);
            return;
        }
        if (msg.value != 0) revert PaymentContractWrongDeposit(0, msg.value);
        if (amount == 0) return;
        // Measured, so a token that charges a fee on transfer cannot leave the channel short.
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert PaymentContractWrongDeposit(amount, received);
    }

    /// @dev Never reverts: a payout that cannot be pushed is credited to `to` instead.
    function _payout(address token, address to, uint256 amount) private {
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
