// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Channels} from "./Channels.sol";
import {Watchtowers} from "./Watchtowers.sol";
import {INanocontract} from "./interfaces/INanocontract.sol";

/**
 * @title MSContract
 * @notice Perun's multistate channels (seed §3.2): two-party channels whose funds are either the
 * parties' cash or blocked in nanocontracts, small contracts the parties create and update off
 * chain, each with its own version, and take to the chain only in a dispute, where this contract
 * registers and executes them; plus a cooperative close, and answers by a watchtower.
 *
 * @dev Opening, signatures and payouts come from {Channels}, towers and their rewards from
 * {Watchtowers}. Off chain, the parties sign two
 * kinds of state: the channel's {ChannelState} (cash, and the nanocontracts funded from it, in
 * creation and absorption order) and each nanocontract's {NanocontractState}; to end the
 * channel, both sign a {FinalChannelState} (cash only), which `cooperativeClose` pays out as it
 * is. Payout of a channel closed by `finalize`, for each party P:
 *
 *     cash(P) + Σ over listed ν of (ν.released(P) + ν.blocked(P))
 *
 * where ν is the registered state when its blocked + released equals the funding listed for it,
 * and otherwise the funding itself. Both sums are bounded by the deposits; the argument is in
 * docs/protocol.md §10.
 */
contract MSContract is Watchtowers {
    /// @notice A nanocontract funded from the channel's cash: what each party moved into it.
    struct Funding {
        bytes32 nid;
        uint256 alice;
        uint256 bob;
    }

    /// @notice The channel's own state: the parties' cash and the live nanocontracts, by nid,
    /// strictly ascending. Signed by the other party for `close`.
    struct ChannelState {
        bytes32 channelId;
        uint64 version;
        uint256 cashAlice;
        uint256 cashBob;
        Funding[] nanocontracts;
    }

    /// @notice The seed's ν = (nid, blocked, storage, ver-num) with its app and what it released.
    /// Signed by the other party for `register`.
    struct NanocontractState {
        bytes32 channelId;
        bytes32 nid;
        address app;
        uint64 version;
        uint256 blockedAlice;
        uint256 blockedBob;
        uint256 releasedAlice;
        uint256 releasedBob;
        bytes data; // ν.storage
    }

    /// @notice The last state of a channel, signed by both parties for a cooperative close: cash
    /// only, no nanocontract, cashAlice + cashBob = the deposits. Its own type, so no
    /// {ChannelState} signature can ever be used as one.
    struct FinalChannelState {
        bytes32 channelId;
        uint64 version;
        uint256 cashAlice;
        uint256 cashBob;
    }

    /// @notice A registered nanocontract. `windowEnd` is the last second in which a higher
    /// version replaces it; `since` when it last changed on chain (the apps' clock); `settleBy`
    /// until when a closing channel waits for it (its app's `settleBy`, capped).
    struct Registered {
        address app;
        uint40 windowEnd;
        uint40 since;
        uint64 version;
        uint128 blockedAlice;
        uint128 blockedBob;
        uint128 releasedAlice;
        uint128 releasedBob;
        uint40 settleBy;
        bytes data;
    }

    bytes32 public constant FUNDING_TYPEHASH = keccak256("Funding(bytes32 nid,uint256 alice,uint256 bob)");
    bytes32 public constant CHANNEL_STATE_TYPEHASH = keccak256(
        "ChannelState(bytes32 channelId,uint64 version,uint256 cashAlice,uint256 cashBob,Funding[] nanocontracts)"
        "Funding(bytes32 nid,uint256 alice,uint256 bob)"
    );
    bytes32 public constant NANOCONTRACT_STATE_TYPEHASH = keccak256(
        "NanocontractState(bytes32 channelId,bytes32 nid,address app,uint64 version,uint256 blockedAlice,"
        "uint256 blockedBob,uint256 releasedAlice,uint256 releasedBob,bytes data)"
    );
    bytes32 public constant FINAL_CHANNEL_STATE_TYPEHASH =
        keccak256("FinalChannelState(bytes32 channelId,uint64 version,uint256 cashAlice,uint256 cashBob)");

    /// @notice Most nanocontracts a channel state may list: bounds the loops in `close` and
    /// `finalize`.
    uint256 public constant MAX_NANOCONTRACTS = 16;
    /// @notice The longest a nanocontract's app may hold a closing channel after its registration.
    uint256 public constant MAX_SETTLE_DELAY = 365 days;
    /// @notice The gas an app's `settleBy` may use; more, or a revert, counts as 0.
    uint256 public constant SETTLE_BY_GAS = 30_000;

    mapping(bytes32 channelId => bytes32) private _fundingsHash;
    mapping(bytes32 channelId => mapping(bytes32 nid => Registered)) private _nanocontracts;

    /// @notice A channel state was registered by `close`, first or replacing a lower version.
    event CloseRegistered(
        bytes32 indexed channelId,
        address indexed by,
        uint64 version,
        uint256 cashAlice,
        uint256 cashBob,
        Funding[] nanocontracts,
        uint256 deadline
    );
    /// @notice A nanocontract state was registered, first or replacing a lower version.
    event NanocontractRegistered(
        bytes32 indexed channelId,
        bytes32 indexed nid,
        address indexed by,
        uint64 version,
        uint256 windowEnd,
        uint256 settleBy
    );
    /// @notice `by` executed function `fun` of a registered nanocontract; this is its new state.
    event NanocontractExecuted(
        bytes32 indexed channelId,
        bytes32 indexed nid,
        address indexed by,
        uint8 fun,
        uint64 version,
        uint256 blockedAlice,
        uint256 blockedBob,
        uint256 releasedAlice,
        uint256 releasedBob,
        bytes data
    );
    /// @notice The channel was paid out: its cash amended by its nanocontracts, less any
    /// watchtower's reward (see {RewardPaid}).
    event Finalized(bytes32 indexed channelId, uint64 version, uint256 payoutAlice, uint256 payoutBob);
    /// @notice A final channel state signed by both parties was paid out.
    event CooperativelyClosed(bytes32 indexed channelId, uint64 version, uint256 payoutAlice, uint256 payoutBob);

    error MSContractTooManyNanocontracts(uint256 count);
    error MSContractNanocontractsUnsorted(uint256 index);
    error MSContractAmountTooLarge(bytes32 nid);
    error MSContractNotRegistered(bytes32 nid);
    error MSContractWindowOpen(bytes32 nid, uint256 windowEnd);
    error MSContractSettlementOver(uint256 deadline);
    /// @notice The transaction left an app's `settleBy` too little gas to tell (retry with more).
    error MSContractGasTooLow();
    error MSContractWrongNanocontracts(bytes32 channelId);
    error MSContractNotConserved(bytes32 nid);
    error MSContractTerminated(bytes32 nid);

    constructor() Channels("Perun MSContract") {}

    // ------------------------------------------------------------------ nanocontracts

    /**
     * @notice Registers a nanocontract state signed by the caller's counterparty. Called by
     * Alice or Bob while the channel is Open or Closing; in Closing, a first registration only
     * until the channel's deadline.
     * @dev The first registration opens a window of Δ; until its end a strictly higher version
     * replaces the registered one (the window stays). After it, only `execute` changes the
     * state. Emits {NanocontractRegistered}.
     */
    function register(Params calldata p, NanocontractState calldata s, bytes calldata sig) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _closable(channelId);
        address counterparty = _counterparty(p);
        _checkChannel(channelId, s.channelId);
        _checkAmounts(p, s);
        _register(p, ch, s, sig, counterparty);
    }

    /**
     * @notice A watchtower's answer to a stale nanocontract registration, or its registration of
     * a nanocontract listed by a closing channel, on behalf of the party that signed `m`:
     * registers `s`, signed by the other party, as `register` would for that party, and records
     * `m.reward` for the caller, paid from that party's payout at finalize if `s` (or what
     * execution made of it) counts then.
     * @dev As `register`, except that a first registration needs the channel to be Closing. The
     * caller must be `m.tower`; `m` must name this channel, `s.nid`, `s.version` and the digest of
     * `s`; the reward at most what the signer holds in `s`. Emits {NanocontractRegistered} (by
     * the tower) and, for a reward, {RewardRecorded}.
     * @param sig the EIP-712 signature on `s` of the party that did not sign `m`.
     * @param mSig the EIP-712 signature of Alice or Bob on `m`.
     */
    function registerFor(
        Params calldata p,
        NanocontractState calldata s,
        bytes calldata sig,
        Monitoring calldata m,
        bytes calldata mSig
    ) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _closable(channelId);
        if (ch.phase == Phase.Open && _nanocontracts[channelId][s.nid].windowEnd == 0) {
            revert ChannelsWrongPhase(channelId, ch.phase); // a tower answers, it never starts
        }
        _checkMonitored(m, s.nid, s.version);
        bool fromBob = _checkMonitoring(p, channelId, m, mSig, hashNanocontractState(s));
        _checkChannel(channelId, s.channelId);
        _checkAmounts(p, s);
        _checkRewardWithin(m.reward, fromBob ? s.blockedBob + s.releasedBob : s.blockedAlice + s.releasedAlice);
        _register(p, ch, s, sig, fromBob ? p.alice : p.bob);
        _rewardRegistration(ch, p, s, fromBob, m.reward);
    }

    /**
     * @notice Runs function `fun` of a registered nanocontract's app with argument `z` and
     * records the new state. Called by Alice or Bob, as the app allows, after the nanocontract's
     * registration window; while the channel is Open, or Closing until its deadline + Δ.
     * @dev The app's result must keep blocked + released, not raise the sum blocked and not lower
     * what either party was released. Emits {NanocontractExecuted}; the version goes up by one.
     */
    function execute(Params calldata p, bytes32 nid, uint8 fun, bytes calldata z) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _closable(channelId);
        _counterparty(p); // only the parties
        _execute(p, channelId, ch, nid, fun, z, msg.sender == p.bob);
    }

    /**
     * @notice A watchtower's call of a registered nanocontract, as the party that signed `e` and
     * exactly as `e` names it (function and argument), e.g. a virtual channel's SETTLE with the
     * party's latest state. Records `e.reward` for the caller, paid from that party's payout at
     * finalize if the nanocontract counts then.
     * @dev As `execute`, for the signer of `e`. The caller must be `e.tower`; `e` must name this
     * channel, `nid`, `fun` and keccak256(`z`). Emits {NanocontractExecuted} (by the tower) and,
     * for a reward, {RewardRecorded}.
     * @param eSig the EIP-712 signature of Alice or Bob on `e`.
     */
    function executeFor(
        Params calldata p,
        bytes32 nid,
        uint8 fun,
        bytes calldata z,
        Execution calldata e,
        bytes calldata eSig
    ) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _closable(channelId);
        bool fromBob = _checkExecution(p, channelId, e, eSig, nid, fun, z);
        _execute(p, channelId, ch, nid, fun, z, fromBob);
        _recordNanocontractReward(ch, p, e.channelId, e.nid, fromBob, e.reward);
    }

    // ------------------------------------------------------------------ closing

    /**
     * @notice Registers a channel state signed by the caller's counterparty. Called by Alice or
     * Bob.
     * @dev As PaymentContract.close: from Open it starts the window Δ; in Closing, until the
     * deadline, a strictly higher version replaces the registered state. The initial state
     * (version 0, cash equal to the deposits, no nanocontract) needs no signature. Until the
     * deadline both parties may also `register` their latest nanocontract states. Emits
     * {CloseRegistered}.
     */
    function close(Params calldata p, ChannelState calldata s, bytes calldata sig) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _closable(channelId);
        address counterparty = _counterparty(p);
        _checkChannel(channelId, s.channelId);
        _checkFundings(p, s);
        _checkReplaceable(ch, s.version);
        if (s.version != 0 || s.cashAlice != p.depositAlice || s.nanocontracts.length != 0) {
            _checkSignature(hashChannelState(s), sig, counterparty);
        }

        _registerChannelState(p, ch, s);
    }

    /**
     * @notice A watchtower's answer to a stale close, on behalf of the party that signed `m`:
     * registers channel state `s`, signed by the other party, as `close` would for that party,
     * and records `m.reward` for the caller, paid from that party's payout at finalize if `s` is
     * still registered then.
     * @dev Phase Closing, until the deadline, a strictly higher version. The caller must be
     * `m.tower`; `m` must name this channel, nid 0, `s.version` and the digest of `s`; the reward
     * at most the signer's cash in `s`. Emits {CloseRegistered} (by the tower) and, for a reward,
     * {RewardRecorded}.
     * @param sig the EIP-712 signature on `s` of the party that did not sign `m`.
     * @param mSig the EIP-712 signature of Alice or Bob on `m`.
     */
    function refute(
        Params calldata p,
        ChannelState calldata s,
        bytes calldata sig,
        Monitoring calldata m,
        bytes calldata mSig
    ) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _refutable(channelId);
        bytes32 digest = hashChannelState(s);
        _checkMonitored(m, bytes32(0), s.version);
        bool fromBob = _checkMonitoring(p, channelId, m, mSig, digest);
        _checkChannel(channelId, s.channelId);
        _checkFundings(p, s);
        _checkRewardWithin(m.reward, fromBob ? s.cashBob : s.cashAlice);
        _checkReplaceable(ch, s.version);
        _checkSignature(digest, sig, fromBob ? p.alice : p.bob);

        _registerChannelState(p, ch, s);
        _recordChannelReward(ch, p, channelId, fromBob, m.reward);
    }

    /**
     * @notice Pays out a closed channel: each party's cash amended by the nanocontracts of the
     * registered channel state, passed again as `fundings`. Anyone may call it.
     * @dev Phase Closing, after the deadline, once every listed nanocontract is registered,
     * past its window and terminated; and in any case after deadline + Δ, when whatever a
     * nanocontract still blocks goes to the party who blocked it (the predefined distribution).
     * Emits {Finalized}; the channel is Closed.
     */
    // slither-disable-next-line timestamp -- deadlines are timestamps by design; windows dwarf a proposer's drift
    function finalize(Params calldata p, Funding[] calldata fundings) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _channels[channelId];
        if (ch.phase != Phase.Closing) revert ChannelsWrongPhase(channelId, ch.phase);
        if (_hashFundings(fundings) != _fundingsHash[channelId]) revert MSContractWrongNanocontracts(channelId);
        if (block.timestamp <= ch.deadline) revert ChannelsFinalizeTooEarly(ch.deadline);

        uint256 payAlice = ch.balanceAlice;
        uint256 payBob = p.depositAlice + p.depositBob - payAlice;
        for (uint256 i = 0; i < fundings.length; ++i) {
            Funding calldata f = fundings[i];
            Registered storage nc = _nanocontracts[channelId][f.nid];
            uint256 alice = uint256(nc.blockedAlice) + nc.releasedAlice;
            uint256 bob = uint256(nc.blockedBob) + nc.releasedBob;
            bool settled = nc.windowEnd != 0 && block.timestamp > nc.windowEnd && nc.blockedAlice == 0
                && nc.blockedBob == 0;
            if (!settled) {
                uint256 end = _settlementEnd(ch, p, nc);
                if (block.timestamp <= end) revert ChannelsFinalizeTooEarly(end);
            }
            payBob -= f.alice + f.bob;
            if (nc.windowEnd != 0 && alice + bob == f.alice + f.bob) {
                payAlice += alice;
                payBob += bob;
            } else {
                payAlice += f.alice;
                payBob += f.bob;
            }
        }
        uint64 version = ch.version;
        uint8 rewards = ch.rewards;
        _markClosed(ch);
        delete _fundingsHash[channelId];
        if (rewards != 0) (payAlice, payBob) = _payRewards(p, channelId, rewards, fundings, payAlice, payBob);
        emit Finalized(channelId, version, payAlice, payBob);

        _payout(p.token, p.alice, payAlice);
        _payout(p.token, p.bob, payBob);
    }

    /**
     * @notice Pays out a final channel state signed by both parties, at once. Anyone may submit
     * it (the signatures carry the authority).
     * @dev Phase Open, or Closing (also after the deadline, until someone finalizes) when its
     * version is strictly above the registered channel version. The final state's cash is paid
     * as it is: nanocontracts listed, registered or executed on chain no longer count once both
     * signed it, and no watchtower's reward is paid. Emits {CooperativelyClosed}; the channel is
     * Closed.
     * @param sigAlice the EIP-712 signature of `p.alice` on `s`.
     * @param sigBob the EIP-712 signature of `p.bob` on `s`.
     */
    function cooperativeClose(
        Params calldata p,
        FinalChannelState calldata s,
        bytes calldata sigAlice,
        bytes calldata sigBob
    ) external {
        bytes32 channelId = channelIdOf(p);
        Channel storage ch = _closable(channelId);
        _checkChannel(channelId, s.channelId);
        uint256 total = p.depositAlice + p.depositBob;
        if (s.cashAlice > total || s.cashBob != total - s.cashAlice) {
            revert ChannelsBalancesNotConserved(s.cashAlice, s.cashBob, total);
        }
        bool closing = ch.phase == Phase.Closing;
        if (closing && s.version <= ch.version) revert ChannelsStaleVersion(ch.version, s.version);
        bytes32 digest = hashFinalChannelState(s);
        _checkSignature(digest, sigAlice, p.alice);
        _checkSignature(digest, sigBob, p.bob);

        _forgetChannelReward(ch, channelId);
        _markClosed(ch);
        if (closing) delete _fundingsHash[channelId]; // only `close` and `refute` write it
        emit CooperativelyClosed(channelId, s.version, s.cashAlice, s.cashBob);

        _payout(p.token, p.alice, s.cashAlice);
        _payout(p.token, p.bob, s.cashBob);
    }

    // ------------------------------------------------------------------ views

    /// @notice A registered nanocontract (all zero if it was never registered).
    function nanocontract(bytes32 channelId, bytes32 nid) external view returns (Registered memory) {
        return _nanocontracts[channelId][nid];
    }

    /// @notice The EIP-712 digest a party signs for a channel state.
    function hashChannelState(ChannelState calldata s) public view returns (bytes32) {
        bytes32[] memory fundings = new bytes32[](s.nanocontracts.length);
        for (uint256 i = 0; i < fundings.length; ++i) {
            Funding calldata f = s.nanocontracts[i];
            fundings[i] = keccak256(abi.encode(FUNDING_TYPEHASH, f.nid, f.alice, f.bob));
        }
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    CHANNEL_STATE_TYPEHASH,
                    s.channelId,
                    s.version,
                    s.cashAlice,
                    s.cashBob,
                    keccak256(abi.encodePacked(fundings))
                )
            )
        );
    }

    /// @notice The EIP-712 digest a party signs for a nanocontract state.
    function hashNanocontractState(NanocontractState calldata s) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    NANOCONTRACT_STATE_TYPEHASH,
                    s.channelId,
                    s.nid,
                    s.app,
                    s.version,
                    s.blockedAlice,
                    s.blockedBob,
                    s.releasedAlice,
                    s.releasedBob,
                    keccak256(s.data)
                )
            )
        );
    }

    /// @notice The EIP-712 digest both parties sign for a cooperative close.
    function hashFinalChannelState(FinalChannelState calldata s) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(FINAL_CHANNEL_STATE_TYPEHASH, s.channelId, s.version, s.cashAlice, s.cashBob))
        );
    }

    // ------------------------------------------------------------------ internals

    /// @dev Each amount of `s`, and their sum, at most the deposits.
    function _checkAmounts(Params calldata p, NanocontractState calldata s) private pure {
        uint256 total = p.depositAlice + p.depositBob;
        if (
            s.blockedAlice > total || s.blockedBob > total || s.releasedAlice > total || s.releasedBob > total
                || s.blockedAlice + s.blockedBob + s.releasedAlice + s.releasedBob > total
        ) revert MSContractAmountTooLarge(s.nid);
    }

    /// @dev The effects of `close` and `refute`, for a checked state of this channel.
    function _registerChannelState(Params calldata p, Channel storage ch, ChannelState calldata s) private {
        bytes32 channelId = s.channelId;
        _forgetChannelReward(ch, channelId);
        uint40 deadline = _registerClose(ch, p, s.version, s.cashAlice);
        _fundingsHash[channelId] = _hashFundings(s.nanocontracts);
        emit CloseRegistered(channelId, msg.sender, s.version, s.cashAlice, s.cashBob, s.nanocontracts, deadline);
    }

    /// @dev Apart from `registerFor`, so that its stack fits.
    function _rewardRegistration(
        Channel storage ch,
        Params calldata p,
        NanocontractState calldata s,
        bool fromBob,
        uint256 amount
    ) private {
        _recordNanocontractReward(ch, p, s.channelId, s.nid, fromBob, amount);
    }

    /// @dev `register`'s timing and signature rules and its effects, for a state of this channel
    /// (`s.channelId` checked) signed by `signer`.
    // slither-disable-next-line timestamp -- deadlines are timestamps by design; windows dwarf a proposer's drift
    function _register(
        Params calldata p,
        Channel storage ch,
        NanocontractState calldata s,
        bytes calldata sig,
        address signer
    ) private {
        bytes32 channelId = s.channelId;
        Registered storage nc = _nanocontracts[channelId][s.nid];
        uint40 windowEnd = nc.windowEnd;
        if (windowEnd != 0) {
            // A replacement may come until the window's end, even after a closing channel's D:
            // the window of a registration made at D must be answerable too.
            if (block.timestamp > windowEnd) revert ChannelsDisputeWindowOver(windowEnd);
            if (s.version <= nc.version) revert ChannelsStaleVersion(nc.version, s.version);
        } else {
            if (ch.phase == Phase.Closing && block.timestamp > ch.deadline) revert ChannelsDisputeWindowOver(ch.deadline);
            windowEnd = uint40(block.timestamp + p.delta);
        }
        _checkSignature(hashNanocontractState(s), sig, signer);

        _forgetNanocontractReward(ch, channelId, s.nid);
        nc.app = s.app;
        nc.windowEnd = windowEnd;
        nc.since = windowEnd;
        nc.version = s.version;
        nc.blockedAlice = uint128(s.blockedAlice);
        nc.blockedBob = uint128(s.blockedBob);
        nc.releasedAlice = uint128(s.releasedAlice);
        nc.releasedBob = uint128(s.releasedBob);
        uint40 settleBy = _settleBy(s);
        nc.settleBy = settleBy;
        nc.data = s.data;
        emit NanocontractRegistered(channelId, s.nid, msg.sender, s.version, windowEnd, settleBy);
    }

    /// @dev `execute`'s rules and effects, with Bob as the app's caller if `byBob`, else Alice.
    // slither-disable-next-line timestamp -- deadlines are timestamps by design; windows dwarf a proposer's drift
    function _execute(
        Params calldata p,
        bytes32 channelId,
        Channel storage ch,
        bytes32 nid,
        uint8 fun,
        bytes calldata z,
        bool byBob
    ) private {
        Registered storage nc = _nanocontracts[channelId][nid];
        if (nc.windowEnd == 0) revert MSContractNotRegistered(nid);
        if (ch.phase == Phase.Closing) {
            uint256 end = _settlementEnd(ch, p, nc);
            if (block.timestamp > end) revert MSContractSettlementOver(end);
        }
        if (block.timestamp <= nc.windowEnd) revert MSContractWindowOpen(nid, nc.windowEnd);
        uint256 blocked = uint256(nc.blockedAlice) + nc.blockedBob;
        if (blocked == 0) revert MSContractTerminated(nid);

        INanocontract.AppState memory next = INanocontract(nc.app).transition(
            INanocontract.Context(byBob ? 1 : 0, block.timestamp, nc.since),
            fun,
            z,
            INanocontract.AppState(nc.blockedAlice, nc.blockedBob, nc.releasedAlice, nc.releasedBob, nc.data)
        );
        // Each amount is bounded by what the nanocontract holds before anything is added, so no
        // result, however large, can overflow the sums.
        uint256 held = blocked + nc.releasedAlice + nc.releasedBob;
        if (
            next.blockedAlice > held || next.blockedBob > held || next.releasedAlice > held
                || next.releasedBob > held || next.blockedAlice + next.blockedBob > blocked
                || next.releasedAlice < nc.releasedAlice || next.releasedBob < nc.releasedBob
                || next.blockedAlice + next.blockedBob + next.releasedAlice + next.releasedBob != held
        ) revert MSContractNotConserved(nid);

        uint64 version = nc.version + 1;
        nc.version = version;
        nc.since = uint40(block.timestamp);
        nc.blockedAlice = uint128(next.blockedAlice);
        nc.blockedBob = uint128(next.blockedBob);
        nc.releasedAlice = uint128(next.releasedAlice);
        nc.releasedBob = uint128(next.releasedBob);
        nc.data = next.data;
        emit NanocontractExecuted(
            channelId,
            nid,
            msg.sender,
            fun,
            version,
            next.blockedAlice,
            next.blockedBob,
            next.releasedAlice,
            next.releasedBob,
            next.data
        );
    }

    /// @dev The rewards of `finalize`: the channel state's tower, then the tower of each listed
    /// nanocontract whose registered state counts (as in `finalize`'s payout).
    function _payRewards(
        Params calldata p,
        bytes32 channelId,
        uint8 rewards,
        Funding[] calldata fundings,
        uint256 payAlice,
        uint256 payBob
    ) private returns (uint256, uint256) {
        (payAlice, payBob) = _payChannelReward(p, channelId, rewards, payAlice, payBob);
        if (rewards & _REWARD_NANOCONTRACTS == 0) return (payAlice, payBob);
        for (uint256 i = 0; i < fundings.length; ++i) {
            Funding calldata f = fundings[i];
            Registered storage nc = _nanocontracts[channelId][f.nid];
            uint256 held = uint256(nc.blockedAlice) + nc.releasedAlice + nc.blockedBob + nc.releasedBob;
            if (nc.windowEnd != 0 && held == f.alice + f.bob) {
                (payAlice, payBob) = _payNanocontractReward(p, channelId, f.nid, payAlice, payBob);
            }
        }
        return (payAlice, payBob);
    }

    /// @dev Zero for no nanocontract, so a close without any writes no new storage slot.
    function _hashFundings(Funding[] calldata fundings) private pure returns (bytes32) {
        return fundings.length == 0 ? bytes32(0) : keccak256(abi.encode(fundings));
    }

    /// @dev The last second a closing channel's nanocontract may be executed, after which its
    /// predefined distribution applies: D + Δ, or later if its app asked for it at registration.
    function _settlementEnd(Channel storage ch, Params calldata p, Registered storage nc)
        private
        view
        returns (uint256)
    {
        uint256 end = uint256(ch.deadline) + p.delta;
        return nc.settleBy > end ? nc.settleBy : end;
    }

    /// @dev The app's `settleBy` for state `s`, capped at MAX_SETTLE_DELAY from now. A low-level
    /// call with a gas cap that copies at most one word back: an app that reverts, runs out of
    /// gas, returns anything but one word or has no code counts as 0 and cannot block `register`.
    // slither-disable-next-line timestamp,assembly -- capped at now + MAX_SETTLE_DELAY; copies at most one word back
    function _settleBy(NanocontractState calldata s) private view returns (uint40) {
        bytes memory call_ = abi.encodeCall(
            INanocontract.settleBy,
            (INanocontract.AppState(s.blockedAlice, s.blockedBob, s.releasedAlice, s.releasedBob, s.data))
        );
        address app = s.app;
        uint256 gasCap = SETTLE_BY_GAS;
        bool ok;
        uint256 t;
        assembly ("memory-safe") {
            ok := staticcall(gasCap, app, add(call_, 32), mload(call_), 0, 32)
            if and(ok, eq(returndatasize(), 32)) { t := mload(0) }
        }
        // A call that failed with at most 1/64 of the cap left may have failed for want of the
        // gas the sender withheld: that must not pass for "nothing to wait for".
        if (!ok && gasleft() <= gasCap / 63) revert MSContractGasTooLow();
        uint256 cap = block.timestamp + MAX_SETTLE_DELAY;
        return uint40(t > cap ? cap : t);
    }

    /// @dev cash + Σ funding = deposits, at most MAX_NANOCONTRACTS, nids strictly ascending (so
    /// none is counted twice). Each amount is checked against the total first: no overflow.
    function _checkFundings(Params calldata p, ChannelState calldata s) private pure {
        uint256 n = s.nanocontracts.length;
        if (n > MAX_NANOCONTRACTS) revert MSContractTooManyNanocontracts(n);
        uint256 total = p.depositAlice + p.depositBob;
        bool inRange = s.cashAlice <= total && s.cashBob <= total;
        uint256 sum = inRange ? s.cashAlice + s.cashBob : 0;
        for (uint256 i = 0; i < n; ++i) {
            Funding calldata f = s.nanocontracts[i];
            if (i > 0 && f.nid <= s.nanocontracts[i - 1].nid) revert MSContractNanocontractsUnsorted(i);
            inRange = inRange && f.alice <= total && f.bob <= total;
            if (inRange) sum += f.alice + f.bob;
        }
        if (!inRange || sum != total) revert ChannelsBalancesNotConserved(s.cashAlice, s.cashBob, total);
    }
}
