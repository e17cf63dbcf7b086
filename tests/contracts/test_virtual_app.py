"""VirtualChannel on a real EVM, called alone as a view (no MSContract): every path and every
error of `transition`, `settleBy`, γ's id, and the EIP-712 digest against the Python one and
eth-account's. Each call is also run through the Python mirror, which must agree exactly.

The signature cases run on the embedded chain and on anvil: their ecrecover precompiles are
different implementations, and OpenZeppelin's ECDSA must refuse the same forgeries on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from perun import errors
from perun.chain.artifacts import load
from perun.chain.backend import Chain
from perun.chain.reverts import translate
from perun.core.apps import ALICE, BOB, AppState, Context
from perun.core.apps import virtualchannel as vc
from perun.core.apps.virtualchannel import FINALIZE, SETTLE, SIDE_A, SIDE_B, VirtualChannel, VirtualState
from perun.core.eip712 import address_of
from tests.chains import TEST_CHAIN

A_KEY, B_KEY, M_KEY = bytes([0xA1]) * 32, bytes([0xB0]) * 32, bytes([0x66]) * 32
V_ALICE, V_BOB, V_INGRID = address_of(A_KEY), address_of(B_KEY), address_of(bytes([0x16]) * 32)
ZERO = "0x" + "00" * 20
CHANNEL_A, CHANNEL_B = b"\xaa" * 32, b"\xbb" * 32
CASH_ALICE, CASH_BOB = 3 * 10**18, 7 * 10**18
TOTAL = CASH_ALICE + CASH_BOB
VALIDITY, WINDOW = 1_000_000, 3_600
U256 = 2**256 - 1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SETTLE_BY_GAS = 30_000  # MSContract.SETTLE_BY_GAS: what settleBy may use at registration


class App:
    """The deployed contract and its bound mirror; `run` calls both and holds them equal."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.contract = chain.contract("VirtualChannel", address)
        self.mirror = VirtualChannel.at(chain.chain_id, address)
        self.domain = self.mirror.domain

    def on_chain(self, ctx: Context, fun: int, z: bytes, state: AppState) -> AppState:
        try:
            result = self.contract.functions.transition(ctx.as_abi(), fun, z, state.as_abi()).call()
        except Exception as exc:
            raise translate(exc) from None
        return AppState(*result)

    def run(self, caller: int, fun: int, time: int, z: bytes, state: AppState) -> AppState:
        ctx = Context(caller, time, 0)
        try:
            result = self.on_chain(ctx, fun, z, state)
        except errors.PerunError as exc:
            with pytest.raises(type(exc)) as mirrored:
                self.mirror.transition(ctx, fun, z, state)
            assert str(mirrored.value) == str(exc)
            raise
        try:
            mirrored = self.mirror.transition(ctx, fun, z, state)
        except errors.PerunError as exc:
            # Not re-raised: `rejects` must not take the mirror's refusal for the contract's.
            pytest.fail(f"the contract accepted what the mirror refuses: {exc!r}")
        assert mirrored == result
        return result

    def sign(self, state: VirtualState, key: bytes) -> bytes:
        return vc.sign_virtual(self.domain, state, key)

    def z(self, version: int, balance_alice: int, final: bool = False, *, alice_key: bytes = A_KEY,
          bob_key: bytes = B_KEY, balance_bob: int | None = None, gamma: bytes | None = None) -> bytes:
        """SETTLE's argument: γ's state signed by `alice_key` and `bob_key`."""
        state = VirtualState(gamma or GAMMA_ID, version, balance_alice,
                             TOTAL - balance_alice if balance_bob is None else balance_bob, final)
        return vc.settle_arg(state, self.sign(state, alice_key), self.sign(state, bob_key))


def _deploy(chain: Chain) -> Iterator[App]:
    snapshot = chain.snapshot()
    yield App(chain, chain.deploy(chain.dev_accounts[0], "VirtualChannel"))
    chain.revert_to(snapshot)


@pytest.fixture(scope="module")
def app(embedded_chain: Chain) -> Iterator[App]:
    yield from _deploy(embedded_chain)


@pytest.fixture(scope="module")
def anvil_app(anvil_chain: Chain) -> Iterator[App]:
    yield from _deploy(anvil_chain)


@pytest.fixture(params=["embedded", "anvil"], ids=["embedded", TEST_CHAIN])
def any_app(request: pytest.FixtureRequest) -> App:
    return request.getfixturevalue("app" if request.param == "embedded" else "anvil_app")


def half(side: int = SIDE_A, end_role: int = ALICE, *, alice: str = V_ALICE, **changes: object) -> AppState:
    state = vc.initial(alice, V_INGRID, V_BOB, CHANNEL_A, CHANNEL_B, CASH_ALICE, CASH_BOB, VALIDITY, WINDOW, 42,
                       side, end_role)
    return replace(state, **changes)


GAMMA_ID = vc.decode(half().data).id


def stored(state: AppState, version: int, balance_alice: int) -> bytes:
    return state.data[:384] + b"".join(v.to_bytes(32, "big") for v in (version, balance_alice, TOTAL - balance_alice))


def with_word(data: bytes, index: int, value: int) -> bytes:
    return data[:32 * index] + value.to_bytes(32, "big") + data[32 * index + 32:]


def rejects(call, cls: type[errors.ContractRejected], **fields: object) -> None:
    with pytest.raises(cls) as info:
        call()
    assert type(info.value) is cls
    assert info.value.fields == fields


# --------------------------------------------------------------------------- digests and views


def test_the_digest_equals_the_contracts_and_eth_accounts(any_app: App) -> None:
    views = any_app.contract.functions
    assert views.VIRTUAL_STATE_TYPEHASH().call() == vc.VIRTUAL_STATE_TYPEHASH
    _, name, version, chain_id, verifying, _, _ = views.eip712Domain().call()
    assert (name, version, chain_id, verifying) == ("Perun VirtualChannel", "1", any_app.chain.chain_id,
                                                    any_app.contract.address)
    for state in (VirtualState(GAMMA_ID, 0, TOTAL, 0), VirtualState(b"\x01" * 32, 2**64 - 1, U256, U256, True),
                  VirtualState(bytes(32), 7, 1, 2, False)):
        python = vc.digest(any_app.domain, state)
        assert views.hashVirtualState(state.id, state.version, state.balance_alice, state.balance_bob,
                                      state.final).call() == python
        signable = encode_typed_data(full_message=state.typed_data(any_app.domain))
        assert keccak(b"\x19" + signable.version + signable.header + signable.body) == python
        assert Account.sign_message(signable, A_KEY).signature == any_app.sign(state, A_KEY)


def test_the_virtual_channel_id_is_the_same_in_both_halves(app: App) -> None:
    views = app.contract.functions
    for state in (half(), half(SIDE_B, BOB), half(SIDE_A, BOB, data=stored(half(), 9, 1))):
        assert views.virtualChannelId(state.data).call() == GAMMA_ID == vc.virtual_channel_id(state.data)
    rejects(lambda: _call(views.virtualChannelId(half().data[:-1])), errors.VirtualChannelMalformed)


def _call(fn: Any) -> Any:
    try:
        return fn.call()
    except Exception as exc:
        raise translate(exc) from None


def test_settle_by_is_validity_plus_three_windows_for_well_formed_storage_else_zero(app: App) -> None:
    settle_by = app.contract.functions.settleBy
    for state in (half(), half(SIDE_B, BOB, blocked_alice=0, blocked_bob=0, released_alice=5),
                  half(SIDE_A, BOB, data=stored(half(SIDE_A, BOB), 9, 1))):
        assert settle_by(state.as_abi()).call() == VALIDITY + 3 * WINDOW == app.mirror.settle_by(state)
    top = vc.initial(V_ALICE, V_INGRID, V_BOB, CHANNEL_A, CHANNEL_B, 1, 1, 2**64 - 1, 2**64 - 1, 0, SIDE_A, ALICE)
    assert settle_by(top.as_abi()).call() == 4 * (2**64 - 1) == app.mirror.settle_by(top)
    for data in (b"", half().data + b"\x00", with_word(half().data, 10, 2), with_word(half().data, 0, 2**160)):
        state = half(data=data)
        assert settle_by(state.as_abi()).call() == 0 == app.mirror.settle_by(state)


def execution_gas(chain: Chain, call: Any) -> int:
    """The least gas `call` runs with as a transaction, less the intrinsic 21000 and calldata:
    what it uses when called from a contract (found by bisection with eth_call, as py-evm's
    estimate_gas adds a margin). `call` must succeed: a revert would pass for want of gas."""
    data = call._encode_transaction_data()
    lo, hi = 21_000, 1_000_000
    chain.w3.eth.call({"to": call.address, "data": data, "gas": hi})  # raises if the call reverts
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            chain.w3.eth.call({"to": call.address, "data": data, "gas": mid})
            hi = mid
        except Exception:
            lo = mid + 1
    return lo - 21_000 - sum(16 if b else 4 for b in bytes.fromhex(data[2:]))


def test_settle_by_fits_mscs_gas_cap(app: App) -> None:
    """MSContract calls settleBy with SETTLE_BY_GAS; a reply over it would count as 0."""
    assert execution_gas(app.chain, app.contract.functions.settleBy(half().as_abi())) < SETTLE_BY_GAS // 5


def test_transition_and_settle_by_are_static_calls() -> None:
    mutability = {item["name"]: item["stateMutability"] for item in load("VirtualChannel")["abi"]
                  if item["type"] == "function"}
    assert mutability["transition"] in ("view", "pure") and mutability["settleBy"] in ("view", "pure")


# --------------------------------------------------------------------------- SETTLE, final

# (side, end_role, released to the ledger's Alice, to its Bob) when γ settles with balances 1, TOTAL - 1.
RELEASES = [
    (SIDE_A, ALICE, 1, TOTAL - 1),  # ν_a, Alice is the ledger's Alice: Alice balanceAlice, Ingrid balanceBob
    (SIDE_A, BOB, TOTAL - 1, 1),
    (SIDE_B, BOB, 1, TOTAL - 1),  # ν_b, Bob is the ledger's Bob: Ingrid balanceAlice, Bob balanceBob
    (SIDE_B, ALICE, TOTAL - 1, 1),
]


@pytest.mark.parametrize(("side", "end_role", "to_alice", "to_bob"), RELEASES)
def test_a_final_state_by_ingrid_settles_at_once(app: App, side: int, end_role: int, to_alice: int,
                                                 to_bob: int) -> None:
    state = half(side, end_role, released_alice=5, released_bob=6, data=stored(half(side, end_role), 9, 2))
    # Ingrid is the role γ's end does not hold, and any other caller number.
    for caller, time in ((1 - end_role, 0), (1 - end_role, VALIDITY), (1 - end_role, VALIDITY + 2 * WINDOW + 1),
                         (7, U256)):
        # Any version, even one below the stored; at any time.
        assert app.run(caller, SETTLE, time, app.z(3, 1, final=True), state) == AppState(
            0, 0, 5 + to_alice, 6 + to_bob, stored(state, 3, 1))


@pytest.mark.parametrize(("side", "end_role", "to_alice", "to_bob"), RELEASES)
def test_a_final_state_by_the_end_counts_as_any_other_state(app: App, side: int, end_role: int, to_alice: int,
                                                            to_bob: int) -> None:
    """Alice and Bob could sign two final states, one for each half: only Ingrid's settles at
    once. γ's end's waits for validity, ends with its window, needs a higher version, and is
    stored, to be released by FINALIZE."""
    state = half(side, end_role, released_alice=5, released_bob=6, data=stored(half(side, end_role), 9, 2))
    z = app.z(10, 1, final=True)
    for time in (0, VALIDITY):
        rejects(lambda: app.run(end_role, SETTLE, time, z, state), errors.VirtualChannelTooEarly, until=VALIDITY)
    for time in (VALIDITY + 1, VALIDITY + WINDOW):
        assert app.run(end_role, SETTLE, time, z, state) == replace(state, data=stored(state, 10, 1))
    for time in (VALIDITY + WINDOW + 1, U256):
        rejects(lambda: app.run(end_role, SETTLE, time, z, state), errors.VirtualChannelSubmissionOver,
                deadline=VALIDITY + WINDOW)
    for version in (0, 9):
        rejects(lambda: app.run(end_role, SETTLE, VALIDITY + 1, app.z(version, 1, final=True), state),
                errors.VirtualChannelStaleVersion, stored=9, submitted=version)
    # Stored, it is released by FINALIZE as any other.
    submitted = app.run(end_role, SETTLE, VALIDITY + WINDOW, z, state)
    assert app.run(end_role, FINALIZE, VALIDITY + 2 * WINDOW + 1, b"", submitted) == AppState(
        0, 0, 5 + to_alice, 6 + to_bob, submitted.data)


def test_ingrid_settles_both_halves_with_one_of_two_final_states(app: App) -> None:
    """Alice stores a final state in ν_a, Bob another in ν_b; Ingrid settles both halves with
    Alice's, and ends with what she blocked."""
    nu_a, nu_b = half(SIDE_A, ALICE), half(SIDE_B, BOB)  # Ingrid is BOB in ν_a, ALICE in ν_b
    nu_a = app.run(ALICE, SETTLE, VALIDITY + 1, app.z(4, 1, final=True), nu_a)
    nu_b = app.run(BOB, SETTLE, VALIDITY + 1, app.z(4, TOTAL - 1, final=True), nu_b)
    assert nu_a == replace(half(SIDE_A, ALICE), data=stored(half(SIDE_A, ALICE), 4, 1))  # stored, not settled
    assert nu_b == replace(half(SIDE_B, BOB), data=stored(half(SIDE_B, BOB), 4, TOTAL - 1))
    nu_a = app.run(BOB, SETTLE, U256, app.z(4, 1, final=True), nu_a)
    nu_b = app.run(ALICE, SETTLE, VALIDITY + 1, app.z(4, 1, final=True), nu_b)
    # ν_a: Alice 1, Ingrid TOTAL - 1; ν_b: Ingrid 1, Bob TOTAL - 1.
    assert nu_a == AppState(0, 0, 1, TOTAL - 1, stored(half(SIDE_A, ALICE), 4, 1))
    assert nu_b == AppState(0, 0, 1, TOTAL - 1, stored(half(SIDE_B, BOB), 4, 1))
    assert nu_a.released_bob + nu_b.released_alice == TOTAL  # Ingrid's


def test_a_final_state_on_the_edge_of_overflowing(app: App) -> None:
    z = app.z(1, CASH_ALICE, final=True)
    # By Ingrid (BOB in ν_a), released at once: balanceAlice to Alice.
    assert app.run(BOB, SETTLE, 0, z, half(released_alice=U256 - CASH_ALICE)).released_alice == U256
    with pytest.raises(errors.TransactionFailed, match="panic 0x11"):
        app.run(BOB, SETTLE, 0, z, half(released_alice=U256 - CASH_ALICE + 1))
    # By the end, only stored: nothing is added.
    rich = half(released_alice=U256 - CASH_ALICE + 1)
    assert app.run(ALICE, SETTLE, VALIDITY + 1, z, rich) == replace(rich, data=stored(rich, 1, CASH_ALICE))


# --------------------------------------------------------------------------- SETTLE, not final


def test_a_state_is_too_early_until_validity_has_passed(app: App) -> None:
    for caller in (ALICE, BOB):
        rejects(lambda: app.run(caller, SETTLE, VALIDITY, app.z(1, 5), half()), errors.VirtualChannelTooEarly,
                until=VALIDITY)


@pytest.mark.parametrize(("side", "end_role"), [(SIDE_A, ALICE), (SIDE_A, BOB), (SIDE_B, ALICE), (SIDE_B, BOB)])
def test_the_end_submits_until_validity_plus_a_window_and_ingrid_a_window_later(app: App, side: int,
                                                                                end_role: int) -> None:
    state = half(side, end_role, released_bob=1)
    z = app.z(1, 5)
    for caller, deadline in ((end_role, VALIDITY + WINDOW), (1 - end_role, VALIDITY + 2 * WINDOW)):
        for time in (VALIDITY + 1, deadline):
            # Stored, nothing released: the half stays open for a higher state or FINALIZE.
            assert app.run(caller, SETTLE, time, z, state) == replace(state, data=stored(state, 1, 5))
        rejects(lambda: app.run(caller, SETTLE, deadline + 1, z, state), errors.VirtualChannelSubmissionOver,
                deadline=deadline)


@pytest.mark.parametrize(("side", "end_role"), [(SIDE_A, ALICE), (SIDE_B, BOB)])
def test_the_ends_version_must_be_higher_than_the_stored_one_and_ingrids_at_least_equal(app: App, side: int,
                                                                                        end_role: int) -> None:
    state = half(side, end_role, data=stored(half(side, end_role), 5, 2))
    for caller, stale, fresh in ((end_role, (0, 4, 5), (6, 2**64 - 1)),
                                 (1 - end_role, (0, 4), (5, 6, 2**64 - 1)),
                                 (7, (4,), (5,))):  # Ingrid by any other caller number
        for version in stale:
            rejects(lambda: app.run(caller, SETTLE, VALIDITY + 1, app.z(version, 1), state),
                    errors.VirtualChannelStaleVersion, stored=5, submitted=version)
        for version in fresh:
            assert app.run(caller, SETTLE, VALIDITY + 1, app.z(version, 1), state) == replace(
                state, data=stored(state, version, 1))
    # At the top version, only Ingrid submits again.
    top = half(side, end_role, data=stored(half(side, end_role), 2**64 - 1, 2))
    rejects(lambda: app.run(end_role, SETTLE, VALIDITY + 1, app.z(2**64 - 1, 1), top),
            errors.VirtualChannelStaleVersion, stored=2**64 - 1, submitted=2**64 - 1)
    assert app.run(1 - end_role, SETTLE, VALIDITY + 1, app.z(2**64 - 1, 1), top).data == stored(top, 2**64 - 1, 1)


def test_ingrid_makes_both_halves_equal_when_two_states_have_one_version(app: App) -> None:
    nu_a, nu_b = half(SIDE_A, ALICE), half(SIDE_B, BOB)  # Ingrid is BOB in ν_a, ALICE in ν_b
    nu_a = app.run(ALICE, SETTLE, VALIDITY + WINDOW, app.z(3, 1), nu_a)
    nu_b = app.run(BOB, SETTLE, VALIDITY + WINDOW, app.z(3, 2), nu_b)
    nu_b = app.run(ALICE, SETTLE, VALIDITY + 2 * WINDOW, app.z(3, 1), nu_b)
    nu_a = app.run(ALICE, FINALIZE, VALIDITY + 2 * WINDOW + 1, b"", nu_a)
    nu_b = app.run(BOB, FINALIZE, VALIDITY + 2 * WINDOW + 1, b"", nu_b)
    assert nu_a == AppState(0, 0, 1, TOTAL - 1, stored(half(SIDE_A, ALICE), 3, 1))
    assert nu_b == AppState(0, 0, 1, TOTAL - 1, stored(half(SIDE_B, BOB), 3, 1))


# --------------------------------------------------------------------------- FINALIZE


def test_finalize_releases_the_stored_state_after_validity_plus_two_windows(app: App) -> None:
    state = half(SIDE_B, BOB, released_alice=1, data=stored(half(SIDE_B, BOB), 4, CASH_ALICE + 5))
    rejects(lambda: app.run(ALICE, FINALIZE, VALIDITY + 2 * WINDOW, b"", state), errors.VirtualChannelTooEarly,
            until=VALIDITY + 2 * WINDOW)
    for caller, z in ((ALICE, b""), (BOB, b"ignored")):
        # ν_b, Bob the ledger's Bob: Ingrid (ALICE) gets balanceAlice, Bob balanceBob.
        assert app.run(caller, FINALIZE, VALIDITY + 2 * WINDOW + 1, z, state) == AppState(
            0, 0, 1 + CASH_ALICE + 5, CASH_BOB - 5, state.data)
    # Nothing submitted: each gets back what it blocked.
    assert app.run(BOB, FINALIZE, U256, b"", half()) == AppState(0, 0, CASH_ALICE, CASH_BOB, half().data)


def test_settle_by_leaves_a_window_for_finalize(app: App) -> None:
    """MSContract runs a closing channel's nanocontract while time <= max(D + Δ, settleBy):
    FINALIZE works from the end of Ingrid's submissions to settleBy."""
    settle_by = app.contract.functions.settleBy(half().as_abi()).call()
    assert settle_by == VALIDITY + 3 * WINDOW
    rejects(lambda: app.run(BOB, SETTLE, settle_by - WINDOW + 1, app.z(1, 1), half()),
            errors.VirtualChannelSubmissionOver, deadline=settle_by - WINDOW)
    rejects(lambda: app.run(ALICE, FINALIZE, settle_by - WINDOW, b"", half()), errors.VirtualChannelTooEarly,
            until=settle_by - WINDOW)
    for time in (settle_by - WINDOW + 1, settle_by):
        assert app.run(ALICE, FINALIZE, time, b"", half()) == AppState(0, 0, CASH_ALICE, CASH_BOB, half().data)


def test_finalize_on_the_edge_of_overflowing(app: App) -> None:
    assert app.run(ALICE, FINALIZE, U256, b"", half(released_bob=U256 - CASH_BOB)).released_bob == U256
    with pytest.raises(errors.TransactionFailed, match="panic 0x11"):
        app.run(ALICE, FINALIZE, U256, b"", half(released_bob=U256 - CASH_BOB + 1))


# --------------------------------------------------------------------------- errors


def test_unknown_function_comes_first(app: App) -> None:
    for fun in (2, 255):
        rejects(lambda: app.run(ALICE, fun, 0, b"", AppState(0, 0, 0, 0, b"")), errors.VirtualChannelUnknownFunction,
                fun=fun)


@pytest.mark.parametrize(("index", "value"), [
    (0, 2**160), (1, 2**160), (2, 2**160), (2, U256), (5, 2**128), (6, 2**128), (5, 2**128 - 1), (7, 2**64), (8, 2**64),
    (9, 2**64), (10, 2), (11, 2), (12, 2**64), (13, 2**128), (14, 2**128),
])
def test_malformed_storage_comes_before_everything_but_the_function(app: App, index: int, value: int) -> None:
    data = with_word(half().data, index, value)
    for fun, z in ((SETTLE, app.z(1, 1, final=True)), (FINALIZE, b"")):
        for state in (half(data=data), half(data=data, blocked_alice=0, blocked_bob=0)):
            rejects(lambda: app.run(ALICE, fun, U256, z, state), errors.VirtualChannelMalformed)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_the_largest_address_is_well_formed(app: App, index: int) -> None:
    """0xff…ff (2**160 - 1) is an address like any other: one more is malformed (above)."""
    state = half(data=with_word(half().data, index, 2**160 - 1))
    finalized = app.run(ALICE, FINALIZE, U256, b"", state)
    assert (finalized.blocked_alice, finalized.blocked_bob) == (0, 0)


@pytest.mark.parametrize("length", [0, 479, 481, 512])
def test_storage_of_another_length_is_malformed(app: App, length: int) -> None:
    data = (half().data + bytes(64))[:length]
    rejects(lambda: app.run(ALICE, FINALIZE, U256, b"", half(data=data)), errors.VirtualChannelMalformed)


def test_a_settled_half_refuses_everything(app: App) -> None:
    done = half(blocked_alice=0, blocked_bob=0, released_alice=TOTAL)
    rejects(lambda: app.run(ALICE, SETTLE, 0, app.z(1, 1, final=True), done), errors.VirtualChannelSettled)
    rejects(lambda: app.run(ALICE, SETTLE, 0, b"", done), errors.VirtualChannelSettled)  # before z is read
    rejects(lambda: app.run(ALICE, FINALIZE, U256, b"", done), errors.VirtualChannelSettled)


@pytest.mark.parametrize("z", [
    b"", bytes(319), bytes(321), bytes(640),
    with_word(bytes(320), 0, 2**64), with_word(bytes(320), 3, 2), with_word(bytes(320), 6, 256),
    with_word(bytes(320), 9, U256),
])
def test_a_malformed_settle_argument(app: App, z: bytes) -> None:
    rejects(lambda: app.run(ALICE, SETTLE, VALIDITY + 1, z, half()), errors.VirtualChannelMalformed)


@pytest.mark.parametrize(("balance_alice", "balance_bob"), [
    (1, TOTAL), (1, TOTAL - 2), (TOTAL + 1, 0), (U256, TOTAL + 1), (0, 0), (U256, U256),
])
def test_balances_that_do_not_add_up_to_the_cash(app: App, balance_alice: int, balance_bob: int) -> None:
    z = app.z(1, balance_alice, balance_bob=balance_bob)
    rejects(lambda: app.run(ALICE, SETTLE, VALIDITY + 1, z, half()), errors.VirtualChannelNotConserved)


def _high_s(sig: bytes) -> bytes:
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


def test_forged_signatures(any_app: App) -> None:
    app = any_app
    state = VirtualState(GAMMA_ID, 1, 5, TOTAL - 5)
    good_a, good_b = app.sign(state, A_KEY), app.sign(state, B_KEY)
    forged = {
        "by mallory": app.sign(state, M_KEY),
        "in another domain": vc.sign_virtual(vc.virtual_domain(app.chain.chain_id + 1, app.contract.address),
                                             state, A_KEY),
        "of the final twin": app.sign(replace(state, final=True), A_KEY),
        "of another channel": app.sign(replace(state, id=b"\x01" * 32), A_KEY),
        "high s": _high_s(good_a),
        "v 0": good_a[:64] + b"\x00",
        "v 29": good_a[:64] + b"\x1d",
        "r 0": bytes(32) + good_a[32:],
        "r n": SECP256K1_N.to_bytes(32, "big") + good_a[32:],
        "s 0": good_a[:32] + bytes(32) + good_a[64:],
        "s n/2 + 1": good_a[:32] + (SECP256K1_N // 2 + 1).to_bytes(32, "big") + good_a[64:],
    }
    for _what, sig in forged.items():
        rejects(lambda: app.run(ALICE, SETTLE, VALIDITY + 1, vc.settle_arg(state, sig, good_b), half()),
                errors.VirtualChannelInvalidSignature, expected=V_ALICE)
        rejects(lambda: app.run(ALICE, SETTLE, VALIDITY + 1, vc.settle_arg(state, good_a, sig), half()),
                errors.VirtualChannelInvalidSignature, expected=V_BOB)
    # The high-s twin is the same signer's to ecrecover: only the s check refuses it.
    assert app.run(ALICE, SETTLE, VALIDITY + 1, vc.settle_arg(state, good_a, good_b), half()).data == stored(
        half(), 1, 5)
    # Alice's is checked first.
    rejects(lambda: app.run(ALICE, SETTLE, VALIDITY + 1, vc.settle_arg(state, good_b, good_a), half()),
            errors.VirtualChannelInvalidSignature, expected=V_ALICE)


def test_a_zero_address_end_is_matched_by_no_signature(app: App) -> None:
    """tryRecover answers address(0) for a signature it cannot recover: its error is checked too."""
    state = half(alice=ZERO)
    gamma = vc.decode(state.data).id
    for sig in (bytes(64) + b"\x1b", b"\x01" * 64 + b"\x05", _high_s(app.sign(VirtualState(gamma, 1, 5, TOTAL - 5,
                                                                                           True), A_KEY))):
        z = vc.settle_arg(VirtualState(gamma, 1, 5, TOTAL - 5, True), sig,
                          app.sign(VirtualState(gamma, 1, 5, TOTAL - 5, True), B_KEY))
        rejects(lambda: app.run(ALICE, SETTLE, 0, z, state), errors.VirtualChannelInvalidSignature, expected=ZERO)


def test_the_checks_come_in_one_order(app: App) -> None:
    # Not conserved before the signatures.
    unsigned = vc.settle_arg(VirtualState(GAMMA_ID, 1, 1, 1), bytes(65), bytes(65))
    rejects(lambda: app.run(ALICE, SETTLE, 0, unsigned, half()), errors.VirtualChannelNotConserved)
    # The signatures before the time and the version.
    rejects(lambda: app.run(ALICE, SETTLE, 0, app.z(0, 1, bob_key=M_KEY), half()),
            errors.VirtualChannelInvalidSignature, expected=V_BOB)
    # Too early before the deadline and the version; the deadline before the version.
    rejects(lambda: app.run(ALICE, SETTLE, VALIDITY, app.z(0, 1), half()), errors.VirtualChannelTooEarly,
            until=VALIDITY)
    rejects(lambda: app.run(ALICE, SETTLE, U256, app.z(0, 1), half()), errors.VirtualChannelSubmissionOver,
            deadline=VALIDITY + WINDOW)
    # So for a final state by the end; Ingrid's settles before any time or version check.
    final = app.z(0, 1, final=True)
    rejects(lambda: app.run(ALICE, SETTLE, VALIDITY, final, half()), errors.VirtualChannelTooEarly, until=VALIDITY)
    rejects(lambda: app.run(ALICE, SETTLE, U256, final, half()), errors.VirtualChannelSubmissionOver,
            deadline=VALIDITY + WINDOW)
    assert app.run(BOB, SETTLE, U256, final, half(data=stored(half(), 5, 2))).blocked == 0


# --------------------------------------------------------------------------- gas


def test_gas_of_transition_as_a_view(app: App, record_property: Any) -> None:
    """Recorded (see the junit XML, or -rP), and bounded loosely so that a regression shows."""
    fns = app.contract.functions
    gas = {
        # Ingrid's final state (BOB in ν_a), released at once; γ's end's, only stored.
        "SETTLE final": fns.transition(Context(BOB, 0, 0).as_abi(), SETTLE, app.z(1, 5, final=True),
                                       half().as_abi()),
        "SETTLE final by the end": fns.transition(Context(ALICE, VALIDITY + 1, 0).as_abi(), SETTLE,
                                                  app.z(1, 5, final=True), half().as_abi()),
        "SETTLE": fns.transition(Context(ALICE, VALIDITY + 1, 0).as_abi(), SETTLE, app.z(1, 5), half().as_abi()),
        "FINALIZE": fns.transition(Context(ALICE, VALIDITY + 2 * WINDOW + 1, 0).as_abi(), FINALIZE, b"",
                                   half().as_abi()),
        "settleBy": fns.settleBy(half().as_abi()),
    }
    gas = {name: execution_gas(app.chain, call) for name, call in gas.items()}
    for name, used in gas.items():
        record_property(f"gas {name}", used)
    print(gas)
    assert gas["SETTLE final"] < 25_000 and gas["SETTLE final by the end"] < 25_000 and gas["SETTLE"] < 25_000
    assert gas["FINALIZE"] < 10_000
