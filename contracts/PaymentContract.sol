// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Channels} from "./Channels.sol";
import {Watchtowers} from "./Watchtowers.sol";

/**
 * @title PaymentContract
 * @notice Perun's basic two-party payment channels (create, confirm, refund, close, finalize),
 * plus a cooperative close and refutation by a watchtower. One deployment holds every channel,
 * keyed by its id.
 *
 * @dev Opening, signatures and payouts come from {Channels}, towers and their rewards from
 * {Watchtowers}. Each party keeps the latest state
 * signed by the *other* party; `close` accepts such a state, and within the dispute window Δ a
 * strictly higher version replaces it without extending the window. There is no punishment for
 * closing with an older state: a party whose counterparty went silent after an update can only
 * hold the previous version. See docs/protocol.md for the exact rules.
 */
contract PaymentContract is Watchtowers {
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

    bytes32 public constant PAYMENT_STATE_TYPEHASH =
        keccak256("PaymentState(bytes32 channelId,uint64 version,uint256 balanceAlice,uint256 balanceBob)");
    bytes32 public constant FINAL_STATE_TYPEHASH =
        keccak256("FinalState(bytes32 channelId,uint64 version,uint256 balanceAlice,uint256 balanceBob)");

    /// @notice A state was registered by `close`, first or replacing a lower version.
    event CloseRegistered(
        bytes32 indexed channelId,
        address indexed by,
        uint64 version,
        uint256 balanceAlice,
        uint256 balanceBob,
        uint256 deadline
    );
    /// @notice The dispute window ended and the registered state was paid out: what each party
    /// got, after any watchtower's reward (see {RewardPaid}).
    event Finalized(bytes32 indexed channelId, uint64 version, uint256 balanceAlice, uint256 balanceBob);
    /// @notice A final state signed by both parties was paid out.
    event CooperativelyClosed(bytes32 indexed channelId, uint64 version, uint256 balanceAlice, uint256 balanceBob);
    constructor() Channels("Perun PaymentContract") {}

    // ------------------------------------------------------------------ closing

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
        Channel storage ch = _closable(channelId);
        address counterparty = _counterparty(p);
        _checkState(channelId, p, s.channelId, s.balanceAlice, s.balanceBob);
        _checkReplaceable(ch, s.version);
        if (s.version != 0 || s.balanceAlice != p.depositAlice) {
            _checkSignature(hashPaymentState(s), sig, counterparty);
        }

        _forgetChannelReward(ch, channelId);
        uint40 deadline = _registerClose(ch, p, s.version, s.balanceAlice);
        emit CloseRegistered(channelId, msg.sender, s.version, s.balanceAlice, s.balanceBob, deadline);
    }

    /**
     * @notice A watchtower's answer to a stale close, on behalf of the party that signed `m`:
     * registers `s`, signed by the other party, as `close` would for that party, and records
     * `m.reward` for the caller, paid from that party's payout at finalize if `s` is still
     * registered then.
     * @dev Phase Closing, until the deadline, a strictly higher version. The caller must be
     * `m.tower`; `m` must name this channel, nid 0, `s.version` and the digest of `s`; the reward
     * at most the signer's balance in `s`. Emits {CloseRegistered} (by the tower) and, for a
     * reward, {RewardRecorded}.
     * @param sig the EIP-712 signature on `s` of the party that did not sign `m`.
     * @param mSig the EIP-712 signature of Alice or Bob on `m`.
     */
    function refute(
        Params calldata p,
        PaymentState calldata s,
        bytes calldata sig,
        Monitoring calldata m,
        bytes calldata mSig
    ) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _refutable(channelId);
        bytes32 digest = hashPaymentState(s);
        _checkMonitored(m, bytes32(0), s.version);
        bool fromBob = _checkMonitoring(p, channelId, m, mSig, digest);
        _checkState(channelId, p, s.channelId, s.balanceAlice, s.balanceBob);
        _checkRewardWithin(m.reward, fromBob ? s.balanceBob : s.balanceAlice);
        _checkReplaceable(ch, s.version);
        _checkSignature(digest, sig, fromBob ? p.alice : p.bob);

        _forgetChannelReward(ch, channelId);
        uint40 deadline = _registerClose(ch, p, s.version, s.balanceAlice);
        emit CloseRegistered(channelId, msg.sender, s.version, s.balanceAlice, s.balanceBob, deadline);
        _recordChannelReward(ch, p, channelId, fromBob, m.reward);
    }

    /**
     * @notice Pays out the registered state once the dispute window is over. Anyone may call it.
     * @dev Phase Closing, after the deadline. A watchtower whose refutation is the registered
     * state gets its reward from its party's payout first. Emits {RewardPaid} if so, and
     * {Finalized}; the channel is Closed.
     */
    // slither-disable-next-line timestamp -- deadlines are timestamps by design; windows dwarf a proposer's drift
    function finalize(Params calldata p) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        if (ch.phase != Phase.Closing) revert ChannelsWrongPhase(channelId, ch.phase);
        if (block.timestamp <= ch.deadline) revert ChannelsFinalizeTooEarly(ch.deadline);

        uint64 version = ch.version;
        uint8 rewards = ch.rewards;
        uint256 balanceAlice = ch.balanceAlice;
        uint256 balanceBob = p.depositAlice + p.depositBob - balanceAlice;
        _markClosed(ch);
        (balanceAlice, balanceBob) = _payChannelReward(p, channelId, rewards, balanceAlice, balanceBob);
        emit Finalized(channelId, version, balanceAlice, balanceBob);

        _payout(p.token, p.alice, balanceAlice);
        _payout(p.token, p.bob, balanceBob);
    }

    /**
     * @notice Pays out a final state signed by both parties, at once. Anyone may submit it.
     * @dev Phase Open, or Closing (also after the deadline, until someone finalizes) when its
     * version is above the registered one; a watchtower's recorded reward is then not paid.
     * Emits {CooperativelyClosed}; the channel is Closed.
     */
    function cooperativeClose(
        Params calldata p,
        FinalState calldata s,
        bytes calldata sigAlice,
        bytes calldata sigBob
    ) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _closable(channelId);
        _checkState(channelId, p, s.channelId, s.balanceAlice, s.balanceBob);
        if (ch.phase == Phase.Closing && s.version <= ch.version) {
            revert ChannelsStaleVersion(ch.version, s.version);
        }
        bytes32 digest = hashFinalState(s);
        _checkSignature(digest, sigAlice, p.alice);
        _checkSignature(digest, sigBob, p.bob);

        _forgetChannelReward(ch, channelId);
        _markClosed(ch);
        emit CooperativelyClosed(channelId, s.version, s.balanceAlice, s.balanceBob);

        _payout(p.token, p.alice, s.balanceAlice);
        _payout(p.token, p.bob, s.balanceBob);
    }

    // ------------------------------------------------------------------ views

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

    // ------------------------------------------------------------------ internals

    function _checkState(
        bytes32 channelId,
        Params calldata p,
        bytes32 stateChannelId,
        uint256 balanceAlice,
        uint256 balanceBob
    ) private pure {
        _checkChannel(channelId, stateChannelId);
        uint256 total = p.depositAlice + p.depositBob;
        if (balanceAlice > total || balanceBob != total - balanceAlice) {
            revert ChannelsBalancesNotConserved(balanceAlice, balanceBob, total);
        }
    }
}
