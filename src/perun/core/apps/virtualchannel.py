"""VirtualChannel's Python mirror (contracts/apps/VirtualChannel.sol): one half of a virtual
payment channel γ between Alice and Bob through Ingrid (seed §3.3).

γ is two nanocontracts: ν_a (side 0) in the ledger channel Alice–Ingrid and ν_b (side 1) in
Ingrid–Bob. Alice and Bob update γ by signing `VirtualState`s in the VirtualChannel contract's
EIP-712 domain; whatever γ's final balances are, ν_a releases balanceAlice to Alice and
balanceBob to Ingrid, ν_b balanceAlice to Ingrid and balanceBob to Bob. `transition` makes the
contract's checks in the contract's order and raises the same error with the same fields, so a
node refuses off chain exactly what the chain would refuse.

The digest a signature is checked against names the contract's chain and address: SETTLE needs a
mirror bound to them (`VirtualChannel.at(chain_id, address)`); the unbound one in APPS raises
InvalidNanocontract where it would check a signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from eth_utils import keccak, to_checksum_address

from perun import errors
from perun.core.apps import ALICE, BOB, AppState, Context, checked_add, word
from perun.core.channel import PaymentState, checksum
from perun.core.eip712 import Domain, recover, sign

SETTLE = 0
FINALIZE = 1

SIDE_A = 0  # ν_a, in the ledger channel Alice–Ingrid
SIDE_B = 1  # ν_b, in the ledger channel Ingrid–Bob

UINT8_MAX = 2**8 - 1
UINT64_MAX = 2**64 - 1
UINT160_MAX = 2**160 - 1
AMOUNT_MAX = 2**128 - 1  # each amount, and cashAlice + cashBob, as a ledger channel's deposits
DATA_LENGTH = 15 * 32
ID_LENGTH = 10 * 32  # the words hashed into γ's id
FIXED_LENGTH = 12 * 32  # the words no function changes
Z_LENGTH = 10 * 32

DOMAIN_NAME = "Perun VirtualChannel"
DOMAIN_VERSION = "1"
VIRTUAL_STATE_TYPE = "VirtualState(bytes32 id,uint64 version,uint256 balanceAlice,uint256 balanceBob,bool final)"
VIRTUAL_STATE_TYPEHASH = keccak(text=VIRTUAL_STATE_TYPE)
VIRTUAL_STATE_FIELDS = [("id", "bytes32"), ("version", "uint64"), ("balanceAlice", "uint256"),
                        ("balanceBob", "uint256"), ("final", "bool")]


def _w(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(checksum(address)[2:])


# --------------------------------------------------------------------------- virtual states


@dataclass(frozen=True)
class VirtualState:
    """A state of γ that Alice and Bob sign; `final` lets Ingrid settle a half with it at once on
    chain (from γ's end, a final state counts as any other)."""

    id: bytes
    version: int
    balance_alice: int
    balance_bob: int
    final: bool = False

    def struct_hash(self) -> bytes:
        """EIP-712 hashStruct(VirtualState)."""
        return keccak(VIRTUAL_STATE_TYPEHASH + self.id + _w(self.version) + _w(self.balance_alice)
                      + _w(self.balance_bob) + _w(int(self.final)))

    def typed_data(self, domain: Domain) -> dict[str, Any]:
        """The same message as EIP-712 JSON, for wallets and eth-account."""
        message = {"id": self.id, "version": self.version, "balanceAlice": self.balance_alice,
                   "balanceBob": self.balance_bob, "final": self.final}
        return domain.typed_message({"VirtualState": VIRTUAL_STATE_FIELDS}, "VirtualState", message)


@dataclass(frozen=True)
class VirtualDomain(Domain):
    """The VirtualChannel contract's domain, in which a PaymentState of γ (its id as the channel
    id) is signed as the VirtualState with the same fields: so γ's updates between Alice and Bob
    run on the payment-channel machine (perun.core.machine) unchanged."""

    def _digest(self, state: PaymentState) -> bytes:
        return digest(self, as_virtual(state))

    def typed_data(self, state: PaymentState) -> dict[str, Any]:
        return as_virtual(state).typed_data(self)


def as_virtual(state: PaymentState) -> VirtualState:
    return VirtualState(state.channel_id, state.version, state.balance_alice, state.balance_bob, state.is_final)


def virtual_domain(chain_id: int, app_address: str) -> VirtualDomain:
    """The EIP-712 domain of the VirtualChannel contract at `app_address` on chain `chain_id`."""
    return VirtualDomain(chain_id, to_checksum_address(app_address), DOMAIN_NAME, DOMAIN_VERSION)


def digest(domain: Domain, state: VirtualState) -> bytes:
    """The 32 bytes Alice and Bob sign: the contract's hashVirtualState."""
    return domain.digest_of(state.struct_hash())


def sign_virtual(domain: Domain, state: VirtualState, private_key: bytes) -> bytes:
    """A 65-byte r || s || v signature of `state` (low s, v = 27 or 28)."""
    return sign(digest(domain, state), private_key)


# --------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class VirtualChannelData:
    """The decoded storage: γ's parameters, which half this is, and the highest state so far."""

    alice: str
    ingrid: str
    bob: str
    channel_a: bytes  # the ledger channel Alice–Ingrid
    channel_b: bytes  # the ledger channel Ingrid–Bob
    cash_alice: int
    cash_bob: int
    validity: int
    window: int
    nonce: int
    side: int  # SIDE_A or SIDE_B
    end_role: int  # ALICE or BOB: γ's end's role in this ledger channel; Ingrid holds the other
    version: int
    balance_alice: int
    balance_bob: int

    @cached_property  # a keccak and three checksummed addresses: nodes look it up on every update
    def id(self) -> bytes:
        """γ's id, the same in both halves."""
        return keccak(b"".join(_address_word(a) for a in (self.alice, self.ingrid, self.bob))
                      + self.channel_a + self.channel_b
                      + b"".join(_w(v) for v in (self.cash_alice, self.cash_bob, self.validity, self.window,
                                                 self.nonce)))

    @property
    def ingrid_role(self) -> int:
        return BOB if self.end_role == ALICE else ALICE

    @property
    def settle_by(self) -> int:
        """Until when a closing ledger channel waits: Ingrid's submissions end at validity +
        2 window, and the last window is for FINALIZE."""
        return self.validity + 3 * self.window

    def state(self) -> VirtualState:
        """The stored (highest submitted) state, as a non-final VirtualState."""
        return VirtualState(self.id, self.version, self.balance_alice, self.balance_bob)

    @cached_property
    def storage(self) -> bytes:
        """These fields as the app's 15-word storage (`encode`)."""
        return encode(self.alice, self.ingrid, self.bob, self.channel_a, self.channel_b, self.cash_alice,
                      self.cash_bob, self.validity, self.window, self.nonce, self.side, self.end_role, self.version,
                      self.balance_alice, self.balance_bob)


def encode(alice: str, ingrid: str, bob: str, channel_a: bytes, channel_b: bytes, cash_alice: int, cash_bob: int,
           validity: int, window: int, nonce: int, side: int, end_role: int, version: int = 0,
           balance_alice: int | None = None, balance_bob: int | None = None) -> bytes:
    """The storage, 15 words; the stored state defaults to the initial (0, cashAlice, cashBob)."""
    balance_alice = cash_alice if balance_alice is None else balance_alice
    balance_bob = cash_bob if balance_bob is None else balance_bob
    for name, channel in (("channel_a", channel_a), ("channel_b", channel_b)):
        if len(channel) != 32:
            raise ValueError(f"{name} must be 32 bytes, not {len(channel)}")
    amounts = {"cash_alice": cash_alice, "cash_bob": cash_bob, "cash_alice + cash_bob": cash_alice + cash_bob,
               "balance_alice": balance_alice, "balance_bob": balance_bob}
    for name, value in amounts.items():
        if not 0 <= value <= AMOUNT_MAX:
            raise ValueError(f"{name} must be in 0..2**128 - 1, not {value}")
    for name, value in (("validity", validity), ("window", window), ("nonce", nonce), ("version", version)):
        if not 0 <= value <= UINT64_MAX:
            raise ValueError(f"{name} must fit a uint64, not {value}")
    if side not in (SIDE_A, SIDE_B):
        raise ValueError(f"side must be SIDE_A (0) or SIDE_B (1), not {side}")
    if end_role not in (ALICE, BOB):
        raise ValueError(f"end_role must be ALICE (0) or BOB (1), not {end_role}")
    return (b"".join(_address_word(a) for a in (alice, ingrid, bob)) + channel_a + channel_b
            + b"".join(_w(v) for v in (cash_alice, cash_bob, validity, window, nonce, side, end_role, version,
                                       balance_alice, balance_bob)))


def _try_decode(data: bytes) -> VirtualChannelData | None:
    if len(data) != DATA_LENGTH:
        return None
    w = [word(data, i) for i in range(15)]
    alice, ingrid, bob, cash_alice, cash_bob = w[0], w[1], w[2], w[5], w[6]
    if alice > UINT160_MAX or ingrid > UINT160_MAX or bob > UINT160_MAX:
        return None
    if cash_alice > AMOUNT_MAX or cash_bob > AMOUNT_MAX or cash_alice + cash_bob > AMOUNT_MAX:
        return None
    validity, window, nonce, side, end_role, version, balance_alice, balance_bob = w[7:]
    if validity > UINT64_MAX or window > UINT64_MAX or nonce > UINT64_MAX or side > 1 or end_role > 1 \
            or version > UINT64_MAX or balance_alice > AMOUNT_MAX or balance_bob > AMOUNT_MAX:
        return None
    return VirtualChannelData(
        checksum(alice.to_bytes(20, "big")), checksum(ingrid.to_bytes(20, "big")), checksum(bob.to_bytes(20, "big")),
        data[96:128], data[128:160],
        cash_alice, cash_bob, validity, window, nonce, side, end_role, version, balance_alice, balance_bob)


def decode(data: bytes) -> VirtualChannelData:
    """The storage's fields; raises VirtualChannelMalformed where the contract would."""
    decoded = _try_decode(data)
    if decoded is None:
        raise errors.VirtualChannelMalformed({})
    return decoded


def virtual_channel_id(data: bytes) -> bytes:
    """The contract's virtualChannelId(data): γ's id; VirtualChannelMalformed unless well-formed."""
    return decode(data).id


def initial(alice: str, ingrid: str, bob: str, channel_a: bytes, channel_b: bytes, cash_alice: int, cash_bob: int,
            validity: int, window: int, nonce: int, side: int, end_role: int) -> AppState:
    """A fresh half: ν_a (side SIDE_A), where γ's end Alice blocks cash_alice and Ingrid
    cash_bob, or ν_b (SIDE_B), where Ingrid blocks cash_alice and γ's end Bob cash_bob;
    `end_role` is the end's role in this ledger channel. Nothing released yet."""
    data = encode(alice, ingrid, bob, channel_a, channel_b, cash_alice, cash_bob, validity, window, nonce, side,
                  end_role)
    by_end, by_ingrid = (cash_alice, cash_bob) if side == SIDE_A else (cash_bob, cash_alice)
    blocked_alice, blocked_bob = (by_end, by_ingrid) if end_role == ALICE else (by_ingrid, by_end)
    return AppState(blocked_alice, blocked_bob, 0, 0, data)


def initial_of(v: VirtualChannelData) -> AppState:
    """The fresh half with `v`'s parameters, side and end role."""
    return initial(v.alice, v.ingrid, v.bob, v.channel_a, v.channel_b, v.cash_alice, v.cash_bob, v.validity,
                   v.window, v.nonce, v.side, v.end_role)


# --------------------------------------------------------------------------- SETTLE's argument


@dataclass(frozen=True)
class Signed:
    """SETTLE's decoded argument: a state and Alice's and Bob's signatures as (v, r, s)."""

    version: int
    balance_alice: int
    balance_bob: int
    final: bool
    r_alice: bytes
    s_alice: bytes
    v_alice: int
    r_bob: bytes
    s_bob: bytes
    v_bob: int


def settle_arg(state: VirtualState, sig_alice: bytes, sig_bob: bytes) -> bytes:
    """z for SETTLE from `state` and Alice's and Bob's 65-byte r || s || v signatures."""
    for who, sig in (("Alice", sig_alice), ("Bob", sig_bob)):
        if len(sig) != 65:
            raise ValueError(f"{who}'s signature must be 65 bytes (r, s, v), not {len(sig)}")
    if not 0 <= state.version <= UINT64_MAX:
        raise ValueError(f"the version must fit a uint64, not {state.version}")
    return (_w(state.version) + _w(state.balance_alice) + _w(state.balance_bob) + _w(int(state.final))
            + sig_alice[:32] + sig_alice[32:64] + _w(sig_alice[64])
            + sig_bob[:32] + sig_bob[32:64] + _w(sig_bob[64]))


def decode_settle_arg(z: bytes) -> Signed:
    """SETTLE's argument; raises VirtualChannelMalformed where the contract would."""
    if len(z) != Z_LENGTH:
        raise errors.VirtualChannelMalformed({})
    version, balance_alice, balance_bob, final = (word(z, i) for i in range(4))
    v_alice, v_bob = word(z, 6), word(z, 9)
    if version > UINT64_MAX or final > 1 or v_alice > UINT8_MAX or v_bob > UINT8_MAX:
        raise errors.VirtualChannelMalformed({})
    return Signed(version, balance_alice, balance_bob, final == 1, z[128:160], z[160:192], v_alice,
                  z[224:256], z[256:288], v_bob)


def _signed_by(digest_: bytes, v: int, r: bytes, s: bytes, expected: str) -> bool:
    """OpenZeppelin's ECDSA.tryRecover(digest, v, r, s) gives `expected`, without an error."""
    if v not in (27, 28):  # ecrecover's only v; recover() checks s (0 < s <= n/2), r and the point
        return False
    try:
        return recover(digest_, r + s + bytes([v])) == checksum(expected)
    except errors.InvalidSignature:
        return False


# --------------------------------------------------------------------------- the App


def _release(state: AppState, v: VirtualChannelData, balance_alice: int, balance_bob: int, data: bytes) -> AppState:
    """Everything blocked released: the balances to γ's end and to Ingrid as the side says."""
    to_end, to_ingrid = (balance_alice, balance_bob) if v.side == SIDE_A else (balance_bob, balance_alice)
    to_alice, to_bob = (to_end, to_ingrid) if v.end_role == ALICE else (to_ingrid, to_end)
    return AppState(0, 0, checked_add(state.released_alice, to_alice), checked_add(state.released_bob, to_bob), data)


class VirtualChannel:
    """The App: SETTLE (z = settle_arg(...), by either party) and FINALIZE (after validity +
    2 window, by either party). `domain` is the contract's EIP-712 domain (see `at`)."""

    name: ClassVar[str] = "VirtualChannel"
    functions: ClassVar[dict[str, int]] = {"settle": SETTLE, "finalize": FINALIZE}
    automatic: ClassVar[tuple[int, ...]] = (FINALIZE,)

    def __init__(self, domain: Domain | None = None) -> None:
        self.domain = domain

    @classmethod
    def at(cls, chain_id: int, address: str) -> VirtualChannel:
        """The mirror of the contract at `address` on chain `chain_id`, which can check signatures."""
        return cls(virtual_domain(chain_id, address))

    def settle_by(self, state: AppState) -> int:
        decoded = _try_decode(state.data)
        return decoded.settle_by if decoded else 0

    def check_initial(self, state: AppState) -> None:
        """Well-formed storage holding the initial state (0, cashAlice, cashBob); γ's end and
        Ingrid block their shares as the side says; nothing released; a validity, a window and
        something at stake."""
        try:
            v = decode(state.data)
        except errors.VirtualChannelMalformed:
            raise errors.InvalidNanocontract("a virtual channel's storage does not decode") from None
        if (v.version, v.balance_alice, v.balance_bob) != (0, v.cash_alice, v.cash_bob):
            raise errors.InvalidNanocontract("a new virtual channel stores version 0 and balances equal to its cash")
        by_end, by_ingrid = (v.cash_alice, v.cash_bob) if v.side == SIDE_A else (v.cash_bob, v.cash_alice)
        blocked = (state.blocked_alice, state.blocked_bob)
        if blocked[v.end_role] != by_end or blocked[v.ingrid_role] != by_ingrid:
            raise errors.InvalidNanocontract(
                "a new virtual channel blocks cashAlice and cashBob, each from the party the side says")
        if state.released_alice or state.released_bob:
            raise errors.InvalidNanocontract("a new virtual channel has released nothing")
        if v.validity == 0 or v.window == 0:
            raise errors.InvalidNanocontract("a virtual channel has a positive validity and window")
        if v.cash_alice + v.cash_bob == 0:
            raise errors.InvalidNanocontract("a virtual channel holds something")

    def transition(self, ctx: Context, fun: int, z: bytes, state: AppState) -> AppState:
        if fun > FINALIZE:
            raise errors.VirtualChannelUnknownFunction({"fun": fun})
        v = decode(state.data)
        if state.blocked_alice == 0 and state.blocked_bob == 0:
            raise errors.VirtualChannelSettled({})

        if fun == FINALIZE:
            end = v.validity + 2 * v.window
            if ctx.time <= end:
                raise errors.VirtualChannelTooEarly({"until": end})
            return _release(state, v, v.balance_alice, v.balance_bob, state.data)

        st = decode_settle_arg(z)
        total = v.cash_alice + v.cash_bob
        if st.balance_alice + st.balance_bob != total:
            raise errors.VirtualChannelNotConserved({})
        if self.domain is None:
            raise errors.InvalidNanocontract(
                "this VirtualChannel mirror has no domain to check signatures in: use VirtualChannel.at(...)")
        signed = digest(self.domain, VirtualState(v.id, st.version, st.balance_alice, st.balance_bob, st.final))
        for expected, (sv, sr, ss) in ((v.alice, (st.v_alice, st.r_alice, st.s_alice)),
                                       (v.bob, (st.v_bob, st.r_bob, st.s_bob))):
            if not _signed_by(signed, sv, sr, ss, expected):
                raise errors.VirtualChannelInvalidSignature({"expected": expected})

        data = state.data[:FIXED_LENGTH] + _w(st.version) + _w(st.balance_alice) + _w(st.balance_bob)
        by_end = ctx.caller == v.end_role
        if st.final and not by_end:  # only Ingrid settles at once (see the contract)
            return _release(state, v, st.balance_alice, st.balance_bob, data)

        if ctx.time <= v.validity:
            raise errors.VirtualChannelTooEarly({"until": v.validity})
        deadline = v.validity + (v.window if by_end else 2 * v.window)
        if ctx.time > deadline:
            raise errors.VirtualChannelSubmissionOver({"deadline": deadline})
        if st.version <= v.version if by_end else st.version < v.version:
            raise errors.VirtualChannelStaleVersion({"stored": v.version, "submitted": st.version})
        return AppState(state.blocked_alice, state.blocked_bob, state.released_alice, state.released_bob, data)
