// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {INanocontract} from "../interfaces/INanocontract.sol";

/**
 * @title VirtualChannel
 * @notice One half of a virtual payment channel γ between Alice and Bob through Ingrid (seed
 * §3.3). γ is two nanocontracts: ν_a in the ledger channel Alice–Ingrid, where Alice blocks
 * γ.cashAlice and Ingrid γ.cashBob, and ν_b in Ingrid–Bob, where Ingrid blocks γ.cashAlice and
 * Bob γ.cashBob. Alice and Bob update γ between themselves by signing `VirtualState`s (EIP-712,
 * this contract's domain); Ingrid takes no part. Whatever γ's final balances are, ν_a releases
 * balanceAlice to Alice and balanceBob to Ingrid, ν_b balanceAlice to Ingrid and balanceBob to
 * Bob: Ingrid ends with what she blocked iff both halves settle with the same state.
 *
 * @dev data = abi.encode(address alice, address ingrid, address bob, bytes32 channelA,
 * bytes32 channelB, uint256 cashAlice, uint256 cashBob, uint64 validity, uint64 window,
 * uint64 nonce, uint8 side, uint8 endRole, uint64 version, uint256 balanceAlice,
 * uint256 balanceBob): 15 words. `side` is 0 for ν_a, 1 for ν_b; `endRole` the ledger-channel
 * role (0 = its Alice, 1 = its Bob) of γ's end in this ledger channel (Alice in ν_a, Bob in ν_b);
 * Ingrid holds the other role. The last three words are the highest virtual state submitted so
 * far, initially (0, cashAlice, cashBob). Amounts are at most 2^128 - 1, and so is
 * cashAlice + cashBob, as the deposits of a ledger channel are.
 *
 * Functions: SETTLE (z = abi.encode(uint256 version, uint256 balanceAlice, uint256 balanceBob,
 * uint256 final, bytes32 rAlice, bytes32 sAlice, uint256 vAlice, bytes32 rBob, bytes32 sBob,
 * uint256 vBob), a state signed by Alice and Bob) and FINALIZE (z ignored). Ingrid settles a
 * final state at once (the fast close: she terminates both halves with the same state). Any
 * other submission waits for `validity`: γ's end submits its latest state until validity + window
 * (a strictly higher version than the one stored; a final state from an end counts as any other),
 * Ingrid copies the highest she has seen on either side until validity + 2 window (a version at
 * least the stored one, so that she can make both halves equal even if Alice and Bob signed two
 * states with one version). After validity + 2 window, FINALIZE releases the stored state; a
 * closing ledger channel waits for it until validity + 3 window (`settleBy`).
 */
contract VirtualChannel is INanocontract, EIP712 {
    uint8 public constant SETTLE = 0;
    uint8 public constant FINALIZE = 1;
    bytes32 public constant VIRTUAL_STATE_TYPEHASH =
        keccak256("VirtualState(bytes32 id,uint64 version,uint256 balanceAlice,uint256 balanceBob,bool final)");

    uint256 private constant DATA_LENGTH = 15 * 32;
    // slither-disable-next-line unused-state -- used in calldata slices, which slither does not see
    uint256 private constant ID_LENGTH = 10 * 32; // the words hashed into γ's id
    // slither-disable-next-line unused-state -- used in a calldata slice, which slither does not see
    uint256 private constant FIXED_LENGTH = 12 * 32; // the words no function changes
    uint256 private constant Z_LENGTH = 10 * 32;
    uint256 private constant MAX_AMOUNT = type(uint128).max;

    /// @dev The decoded storage, less what only γ's id needs (ingrid, channelA, channelB, nonce).
    struct Virtual {
        address alice;
        address bob;
        uint256 cashAlice;
        uint256 cashBob;
        uint256 validity;
        uint256 window;
        uint8 side;
        uint8 endRole;
        uint256 version;
        uint256 balanceAlice;
        uint256 balanceBob;
    }

    /// @dev The decoded argument of SETTLE.
    struct Signed {
        uint256 version;
        uint256 balanceAlice;
        uint256 balanceBob;
        bool isFinal;
        bytes32 rAlice;
        bytes32 sAlice;
        uint8 vAlice;
        bytes32 rBob;
        bytes32 sBob;
        uint8 vBob;
    }

    error VirtualChannelUnknownFunction(uint8 fun);
    error VirtualChannelMalformed();
    error VirtualChannelSettled();
    error VirtualChannelNotConserved();
    error VirtualChannelInvalidSignature(address expected);
    error VirtualChannelTooEarly(uint256 until);
    error VirtualChannelSubmissionOver(uint256 deadline);
    error VirtualChannelStaleVersion(uint64 stored, uint64 submitted);

    constructor() EIP712("Perun VirtualChannel", "1") {}

    /// @inheritdoc INanocontract
    function transition(Context calldata ctx, uint8 fun, bytes calldata z, AppState calldata s)
        external
        view
        returns (AppState memory next)
    {
        if (fun > FINALIZE) revert VirtualChannelUnknownFunction(fun);
        (bool ok, Virtual memory v) = _decode(s.data);
        if (!ok) revert VirtualChannelMalformed();
        if (s.blockedAlice == 0 && s.blockedBob == 0) revert VirtualChannelSettled();

        if (fun == FINALIZE) {
            uint256 end = v.validity + 2 * v.window;
            if (ctx.time <= end) revert VirtualChannelTooEarly(end);
            return _release(s, v, s.data);
        }

        Signed memory st = _decodeSigned(z);
        uint256 total = v.cashAlice + v.cashBob; // at most 2^128 - 1: checked in _decode
        if (st.balanceAlice > total || st.balanceBob != total - st.balanceAlice) revert VirtualChannelNotConserved();
        bytes32 digest = hashVirtualState(
            keccak256(s.data[0:ID_LENGTH]), uint64(st.version), st.balanceAlice, st.balanceBob, st.isFinal
        );
        _checkSigner(digest, st.vAlice, st.rAlice, st.sAlice, v.alice);
        _checkSigner(digest, st.vBob, st.rBob, st.sBob, v.bob);

        bytes memory data =
            bytes.concat(s.data[0:FIXED_LENGTH], abi.encode(st.version, st.balanceAlice, st.balanceBob));
        bool byEnd = ctx.caller == v.endRole;
        // Only Ingrid, who is exposed on both sides, settles at once: she uses one final state for
        // both halves. Alice and Bob together could sign two, one for each half.
        if (st.isFinal && !byEnd) {
            v.balanceAlice = st.balanceAlice;
            v.balanceBob = st.balanceBob;
            return _release(s, v, data);
        }

        if (ctx.time <= v.validity) revert VirtualChannelTooEarly(v.validity);
        uint256 deadline = v.validity + (byEnd ? v.window : 2 * v.window);
        if (ctx.time > deadline) revert VirtualChannelSubmissionOver(deadline);
        if (byEnd ? st.version <= v.version : st.version < v.version) {
            revert VirtualChannelStaleVersion(uint64(v.version), uint64(st.version));
        }
        next = AppState(s.blockedAlice, s.blockedBob, s.releasedAlice, s.releasedBob, data);
    }

    /// @inheritdoc INanocontract
    /// @dev validity + 3 window for well-formed storage (Ingrid's submissions end at validity +
    /// 2 window; the last window is for FINALIZE), else 0.
    function settleBy(AppState calldata s) external pure returns (uint256) {
        (bool ok, Virtual memory v) = _decode(s.data);
        return ok ? v.validity + 3 * v.window : 0;
    }

    /// @notice γ's id: keccak256(abi.encode(alice, ingrid, bob, channelA, channelB, cashAlice,
    /// cashBob, validity, window, nonce)), the same in both halves. Reverts unless `data` is
    /// well-formed storage.
    function virtualChannelId(bytes calldata data) external pure returns (bytes32) {
        (bool ok,) = _decode(data);
        if (!ok) revert VirtualChannelMalformed();
        return keccak256(data[0:ID_LENGTH]);
    }

    /// @notice The EIP-712 digest Alice and Bob sign for a state of virtual channel `id`.
    function hashVirtualState(bytes32 id, uint64 version, uint256 balanceAlice, uint256 balanceBob, bool isFinal)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(VIRTUAL_STATE_TYPEHASH, id, version, balanceAlice, balanceBob, isFinal))
        );
    }

    /// @dev Everything blocked released: balanceAlice and balanceBob of `v` go to γ's end and to
    /// Ingrid as this half's side says.
    function _release(AppState calldata s, Virtual memory v, bytes memory data)
        private
        pure
        returns (AppState memory next)
    {
        (uint256 toEnd, uint256 toIngrid) =
            v.side == 0 ? (v.balanceAlice, v.balanceBob) : (v.balanceBob, v.balanceAlice);
        next = AppState(0, 0, s.releasedAlice, s.releasedBob, data);
        if (v.endRole == 0) {
            next.releasedAlice += toEnd;
            next.releasedBob += toIngrid;
        } else {
            next.releasedBob += toEnd;
            next.releasedAlice += toIngrid;
        }
    }

    /// @dev OpenZeppelin's ECDSA: no high-s, v 27 or 28, a recoverable signature, and its signer
    /// `expected` (checked with the error too, so that a zero `expected` matches no signature).
    // slither-disable-next-line unused-return -- the third value only details the error, checked here
    function _checkSigner(bytes32 digest, uint8 v, bytes32 r, bytes32 s, address expected) private pure {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, v, r, s);
        if (err != ECDSA.RecoverError.NoError || signer != expected) revert VirtualChannelInvalidSignature(expected);
    }

    /// @dev By hand, so that every malformed storage gets this app's error, as in Python.
    function _decode(bytes calldata data) private pure returns (bool ok, Virtual memory v) {
        if (data.length != DATA_LENGTH) return (false, v);
        uint256 alice = _word(data, 0);
        uint256 ingrid = _word(data, 1);
        uint256 bob = _word(data, 2);
        if (alice > type(uint160).max || ingrid > type(uint160).max || bob > type(uint160).max) return (false, v);
        v.alice = address(uint160(alice));
        v.bob = address(uint160(bob));
        v.cashAlice = _word(data, 5);
        v.cashBob = _word(data, 6);
        if (v.cashAlice > MAX_AMOUNT || v.cashBob > MAX_AMOUNT || v.cashAlice + v.cashBob > MAX_AMOUNT) {
            return (false, v);
        }
        v.validity = _word(data, 7);
        v.window = _word(data, 8);
        uint256 nonce = _word(data, 9);
        uint256 side = _word(data, 10);
        uint256 endRole = _word(data, 11);
        v.version = _word(data, 12);
        v.balanceAlice = _word(data, 13);
        v.balanceBob = _word(data, 14);
        if (
            v.validity > type(uint64).max || v.window > type(uint64).max || nonce > type(uint64).max || side > 1
                || endRole > 1 || v.version > type(uint64).max || v.balanceAlice > MAX_AMOUNT
                || v.balanceBob > MAX_AMOUNT
        ) return (false, v);
        v.side = uint8(side);
        v.endRole = uint8(endRole);
        ok = true;
    }

    /// @dev By hand, as `_decode`: exactly 10 words, version a uint64, final 0 or 1, v a uint8.
    function _decodeSigned(bytes calldata z) private pure returns (Signed memory st) {
        if (z.length != Z_LENGTH) revert VirtualChannelMalformed();
        st.version = _word(z, 0);
        st.balanceAlice = _word(z, 1);
        st.balanceBob = _word(z, 2);
        uint256 isFinal = _word(z, 3);
        st.rAlice = bytes32(_word(z, 4));
        st.sAlice = bytes32(_word(z, 5));
        uint256 vAlice = _word(z, 6);
        st.rBob = bytes32(_word(z, 7));
        st.sBob = bytes32(_word(z, 8));
        uint256 vBob = _word(z, 9);
        if (st.version > type(uint64).max || isFinal > 1 || vAlice > type(uint8).max || vBob > type(uint8).max) {
            revert VirtualChannelMalformed();
        }
        st.isFinal = isFinal == 1;
        st.vAlice = uint8(vAlice);
        st.vBob = uint8(vBob);
    }

    /// @dev The `i`-th word of `b`; only called with `b` at least 32 (i + 1) bytes long.
    // slither-disable-next-line assembly -- one calldataload: Solidity has no cheaper read of a calldata word
    function _word(bytes calldata b, uint256 i) private pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := calldataload(add(b.offset, shl(5, i)))
        }
    }
}
