// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Channels} from "./Channels.sol";

/**
 * @title Watchtowers
 * @notice Outsourced watching (seed, Lightning §2.1): a party that may be offline signs, with
 * each latest state, an authorisation for a watchtower to submit that state on its behalf and
 * names the reward it pays for it. The tower can only answer: refute a stale close, replace a
 * stale nanocontract registration, or make one authorised call of a nanocontract; under the same
 * rules as the party itself. The reward is recorded with the submission and paid, from the
 * party's payout, when the channel is finalized with what the tower submitted still registered;
 * a higher registration by anyone forgets it. PaymentContract and MSContract build on this.
 *
 * @dev An authorisation is bound to the tower, the channel, the item (the channel's own state,
 * or one nanocontract), the version and the EIP-712 digest of the exact state the counterparty
 * signed (or, for a call, its function and argument), in this contract's domain. It needs no
 * nonce: a state is registered once, and only a strictly higher one replaces it. See
 * docs/protocol.md §12.
 */
abstract contract Watchtowers is Channels {
    /// @notice A party's authorisation for `tower` to submit one state signed by the other party.
    struct Monitoring {
        bytes32 channelId;
        bytes32 nid; // the nanocontract, for `registerFor`; zero for the channel's own state
        uint64 version; // the state's version
        bytes32 state; // the EIP-712 digest of the state, as the other party signed it
        address tower;
        uint256 reward; // paid by the signer to `tower`, from its payout at finalize
    }

    /// @notice A party's authorisation for `tower` to call function `fun` of nanocontract `nid`
    /// with an argument whose keccak256 is `argument`, as that party, whenever the app allows it.
    struct Execution {
        bytes32 channelId;
        bytes32 nid;
        uint8 fun;
        bytes32 argument;
        address tower;
        uint256 reward;
    }

    /// @notice A recorded reward: owed to `tower` by Bob if `fromBob`, else by Alice. One slot.
    struct Reward {
        address tower;
        bool fromBob;
        uint88 amount;
    }

    bytes32 public constant MONITORING_TYPEHASH = keccak256(
        "Monitoring(bytes32 channelId,bytes32 nid,uint64 version,bytes32 state,address tower,uint256 reward)"
    );
    bytes32 public constant EXECUTION_TYPEHASH = keccak256(
        "Execution(bytes32 channelId,bytes32 nid,uint8 fun,bytes32 argument,address tower,uint256 reward)"
    );

    /// @notice The largest reward an authorisation may name (it is stored in 88 bits).
    uint256 public constant MAX_REWARD = type(uint88).max;

    /// @dev Bits of Channel.rewards: which kinds of record may exist for the channel.
    uint8 internal constant _REWARD_CHANNEL = 1;
    uint8 internal constant _REWARD_NANOCONTRACTS = 2;

    mapping(bytes32 channelId => Reward) private _channelRewards;
    mapping(bytes32 channelId => mapping(bytes32 nid => Reward)) private _nanocontractRewards;

    /// @notice A tower's submission was registered with a reward; `nid` is zero for the channel's
    /// state. (Records are not readable by a view: MSContract has no code size to spare. The
    /// events and the bits of `channel(id).rewards` tell what is recorded.)
    event RewardRecorded(
        bytes32 indexed channelId, bytes32 indexed nid, address indexed tower, address payer, uint256 amount
    );
    /// @notice A recorded reward was paid at finalize (at most the payer's payout).
    event RewardPaid(
        bytes32 indexed channelId, bytes32 indexed nid, address indexed tower, address payer, uint256 amount
    );

    error WatchtowersWrongTower(address tower, address caller);
    error WatchtowersWrongNanocontract(bytes32 submitted, bytes32 authorised);
    error WatchtowersWrongVersion(uint64 submitted, uint64 authorised);
    error WatchtowersWrongState(bytes32 submitted, bytes32 authorised);
    error WatchtowersWrongCall(uint8 fun, bytes32 argument);
    error WatchtowersNotAParty(address signer);
    error WatchtowersRewardTooLarge(uint256 reward, uint256 limit);

    // ------------------------------------------------------------------ views

    /// @notice The EIP-712 digest a party signs to authorise a tower's submission.
    function hashMonitoring(Monitoring calldata m) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(MONITORING_TYPEHASH, m.channelId, m.nid, m.version, m.state, m.tower, m.reward))
        );
    }

    /// @notice The EIP-712 digest a party signs to authorise a tower's call of a nanocontract.
    function hashExecution(Execution calldata e) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(EXECUTION_TYPEHASH, e.channelId, e.nid, e.fun, e.argument, e.tower, e.reward))
        );
    }

    // ------------------------------------------------------------------ for the contracts built on this

    /// @dev The phase check of a refutation: a tower answers a close, it never starts one.
    function _refutable(bytes32 channelId) internal view returns (Channel storage ch) {
        ch = _channels[channelId];
        if (ch.phase != Phase.Closing) revert ChannelsWrongPhase(channelId, ch.phase);
    }

    /**
     * @dev Checks that the caller is the tower `m` names and that `m` names exactly this
     * submission (channel, item, version, state digest), then who signed it: returns whether
     * Bob did (else Alice did; anyone else reverts). The submitted state must then carry the
     * other party's signature.
     */
    function _checkMonitoring(
        Params calldata p,
        bytes32 channelId,
        Monitoring calldata m,
        bytes calldata mSig,
        bytes32 state
    ) internal view returns (bool fromBob) {
        if (m.tower != msg.sender) revert WatchtowersWrongTower(m.tower, msg.sender);
        _checkChannel(channelId, m.channelId);
        if (m.state != state) revert WatchtowersWrongState(state, m.state);
        if (m.reward > MAX_REWARD) revert WatchtowersRewardTooLarge(m.reward, MAX_REWARD);
        return _signedByBob(p, hashMonitoring(m), mSig);
    }

    /// @dev The item and version `m` names, checked just before `_checkMonitoring` (apart, so that
    /// the callers' stacks fit).
    function _checkMonitored(Monitoring calldata m, bytes32 nid, uint64 version) internal pure {
        if (m.nid != nid) revert WatchtowersWrongNanocontract(nid, m.nid);
        if (m.version != version) revert WatchtowersWrongVersion(version, m.version);
    }

    /// @dev As `_checkMonitoring`, for an authorised call of function `fun` with argument `z`.
    // slither-disable-next-line dead-code -- used by MSContract; unused only in PaymentContract
    function _checkExecution(
        Params calldata p,
        bytes32 channelId,
        Execution calldata e,
        bytes calldata eSig,
        bytes32 nid,
        uint8 fun,
        bytes calldata z
    ) internal view returns (bool fromBob) {
        if (e.tower != msg.sender) revert WatchtowersWrongTower(e.tower, msg.sender);
        _checkChannel(channelId, e.channelId);
        if (e.nid != nid) revert WatchtowersWrongNanocontract(nid, e.nid);
        bytes32 argument = keccak256(z);
        if (e.fun != fun || e.argument != argument) revert WatchtowersWrongCall(fun, argument);
        if (e.reward > MAX_REWARD) revert WatchtowersRewardTooLarge(e.reward, MAX_REWARD);
        return _signedByBob(p, hashExecution(e), eSig);
    }

    /// @dev A reward above what the payer gets from the submitted state could never be paid in full.
    function _checkRewardWithin(uint256 reward, uint256 payout) internal pure {
        if (reward > payout) revert WatchtowersRewardTooLarge(reward, payout);
    }

    /// @dev A registration replaced the channel's state: its tower, if any, did not win.
    function _forgetChannelReward(Channel storage ch, bytes32 channelId) internal {
        if (ch.rewards & _REWARD_CHANNEL == 0) return;
        delete _channelRewards[channelId];
        ch.rewards &= ~_REWARD_CHANNEL;
    }

    /// @dev A registration replaced nanocontract `nid`'s state: its tower, if any, did not win.
    // slither-disable-next-line dead-code -- used by MSContract; unused only in PaymentContract
    function _forgetNanocontractReward(Channel storage ch, bytes32 channelId, bytes32 nid) internal {
        if (ch.rewards & _REWARD_NANOCONTRACTS == 0) return;
        delete _nanocontractRewards[channelId][nid];
    }

    /// @dev Records the caller's reward for the channel's state (registered just now).
    function _recordChannelReward(Channel storage ch, Params calldata p, bytes32 channelId, bool fromBob, uint256 amount)
        internal
    {
        if (amount == 0) return;
        _channelRewards[channelId] = Reward(msg.sender, fromBob, uint88(amount));
        ch.rewards |= _REWARD_CHANNEL;
        emit RewardRecorded(channelId, bytes32(0), msg.sender, fromBob ? p.bob : p.alice, amount);
    }

    /// @dev At finalize, with `rewards` the channel's bits read before it was marked closed:
    /// pays the channel state's tower from its payer's payout. Returns what is left for each party.
    function _payChannelReward(Params calldata p, bytes32 channelId, uint8 rewards, uint256 payAlice, uint256 payBob)
        internal
        returns (uint256, uint256)
    {
        if (rewards & _REWARD_CHANNEL == 0) return (payAlice, payBob);
        Reward memory r = _channelRewards[channelId];
        delete _channelRewards[channelId];
        return _pay(p, channelId, bytes32(0), r, payAlice, payBob);
    }

    /// @dev At finalize: pays the tower recorded for nanocontract `nid`, whose registered state counted.
    // slither-disable-next-line dead-code -- used by MSContract; unused only in PaymentContract
    function _payNanocontractReward(
        Params calldata p,
        bytes32 channelId,
        bytes32 nid,
        uint256 payAlice,
        uint256 payBob
    ) internal returns (uint256, uint256) {
        Reward memory r = _nanocontractRewards[channelId][nid];
        if (r.amount == 0) return (payAlice, payBob);
        delete _nanocontractRewards[channelId][nid];
        return _pay(p, channelId, nid, r, payAlice, payBob);
    }

    // ------------------------------------------------------------------ internals

    /// @dev The latest tower to register or call nanocontract `nid` is the one rewarded for it.
    // slither-disable-next-line dead-code -- used by MSContract; unused only in PaymentContract
    function _recordNanocontractReward(
        Channel storage ch,
        Params calldata p,
        bytes32 channelId,
        bytes32 nid,
        bool fromBob,
        uint256 amount
    ) internal {
        if (amount == 0) {
            _forgetNanocontractReward(ch, channelId, nid);
            return;
        }
        _nanocontractRewards[channelId][nid] = Reward(msg.sender, fromBob, uint88(amount));
        ch.rewards |= _REWARD_NANOCONTRACTS;
        emit RewardRecorded(channelId, nid, msg.sender, fromBob ? p.bob : p.alice, amount);
    }

    /// @dev Never more than the payer's payout: a reward cannot take what the other party is owed.
    function _pay(Params calldata p, bytes32 channelId, bytes32 nid, Reward memory r, uint256 payAlice, uint256 payBob)
        private
        returns (uint256, uint256)
    {
        uint256 amount = r.amount;
        if (r.fromBob) {
            if (amount > payBob) amount = payBob;
            payBob -= amount;
        } else {
            if (amount > payAlice) amount = payAlice;
            payAlice -= amount;
        }
        if (amount == 0) return (payAlice, payBob); // the payer gets nothing: neither does its tower
        emit RewardPaid(channelId, nid, r.tower, r.fromBob ? p.bob : p.alice, amount);
        _payout(p.token, r.tower, amount);
        return (payAlice, payBob);
    }

    // slither-disable-next-line unused-return -- a failed recovery gives address(0), no party (open rejects it)
    function _signedByBob(Params calldata p, bytes32 digest, bytes calldata sig) private pure returns (bool) {
        (address signer, , ) = ECDSA.tryRecover(digest, sig);
        if (signer == p.bob) return true;
        if (signer == p.alice) return false;
        revert WatchtowersNotAParty(signer);
    }
}
