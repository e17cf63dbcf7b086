"""MSContract on a real EVM, on the embedded chain and on anvil: every function's happy path and
every rejection, with time moved to each deadline minus one, at it, and plus one.

Every rejection is also checked to change nothing: the channel, the nanocontracts involved and
the balances of the contract and the parties are the same before and after.

App storage is encoded here with eth_abi, as the NatSpec of contracts/apps/ describes it:
HashTimeLock (uint8 sender, bytes32 hashlock, uint64 timeout), TicTacToe (uint8 turn,
uint64 moveTimeout, uint8[9] cells). For the conservation checks of `execute` a "puppet" app is
deployed from hand-written bytecode: its `transition` returns whatever AppState the caller passes
ABI-encoded as `z`, so any result an app could return can be tried.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from perun import errors
from perun.chain import reverts
from perun.chain.backend import ETHER
from perun.chain.multistate import MSContract
from perun.chain.payment import PaymentContract
from perun.core.channel import Params, Phase
from perun.core.eip712 import recover, sign
from perun.core.multistate import (
    ChannelState,
    FinalChannelState,
    Funding,
    NanocontractState,
    digest,
    nanocontract_id,
    payouts,
)
from tests.conftest import DELTA, MSWorld

PREIMAGE = b"\x42" * 32
HASHLOCK = hashlib.sha256(PREIMAGE).digest()
CLAIM, RECLAIM, CANCEL = 0, 1, 2  # HashTimeLock
MOVE, TIMEOUT = 0, 1  # TicTacToe
ALICE, BOB = 0, 1
MOVE_TIMEOUT = 30

# transition(ctx, fun, z, s) returns calldata's z as is: z's offset is the word at 4 + 128.
#   PUSH1 0x84 CALLDATALOAD PUSH1 4 ADD            p = 4 + offset(z)
#   DUP1 CALLDATALOAD SWAP1 PUSH1 32 ADD           len = z.length; p + 32
#   DUP2 SWAP1 PUSH1 0 CALLDATACOPY                memory[0:len] = z
#   PUSH1 0 RETURN                                 return memory[0:len]
PUPPET_RUNTIME = bytes.fromhex("608435600401803590602001819060003760" "00f3")
PUPPET_INIT = bytes.fromhex("6014600c60003960146000f3")  # copies the 20-byte runtime and returns it
APP_STATE = "(uint256,uint256,uint256,uint256,bytes)"


# ------------------------------------------------------------------------------ helpers


def htlc_data(sender: int, timeout: int, hashlock: bytes = HASHLOCK) -> bytes:
    return encode(["uint8", "bytes32", "uint64"], [sender, hashlock, timeout])


def ttt_data(turn: int, cells: tuple[int, ...] = (0,) * 9, move_timeout: int = MOVE_TIMEOUT) -> bytes:
    return encode(["uint8", "uint64", "uint8[9]"], [turn, move_timeout, list(cells)])


def cell(index: int) -> bytes:
    return encode(["uint8"], [index])


def pending_time(w: MSWorld) -> int:
    """A time no block has yet: on anvil the pending block may be ahead of the latest one."""
    return max(w.chain.timestamp(), w.chain.w3.eth.get_block("pending")["timestamp"]) + 1


def at(w: MSWorld, timestamp: int) -> None:
    w.chain.set_next_block_timestamp(timestamp)


def other(w: MSWorld, who: LocalAccount) -> LocalAccount:
    return w.bob if who is w.alice else w.alice


def register(w: MSWorld, params: Params, nano: NanocontractState, by: LocalAccount):
    """`by` registers `nano` with the other party's signature."""
    return w.contract.register(by, params, nano, w.sign(nano, other(w, by)))


def close(w: MSWorld, params: Params, state: ChannelState, by: LocalAccount):
    """`by` closes with `state` and the other party's signature."""
    return w.contract.close(by, params, state, w.sign(state, other(w, by)))


def fund(w: MSWorld, channel: ChannelState, app: str, blocked_alice: int, blocked_bob: int,
         data: bytes) -> tuple[ChannelState, NanocontractState]:
    """The next channel state, creating a nanocontract of `app` at version 0, and that nanocontract."""
    nid = nanocontract_id(channel.channel_id, channel.version + 1)
    nano = NanocontractState(channel.channel_id, nid, w.apps[app], 0, blocked_alice, blocked_bob, 0, 0, data)
    return channel.fund(nano), nano


def with_htlc(w: MSWorld, timeout: int, amount: int = ETHER, sender: int = ALICE):
    """An open channel whose state 1 funds a hash time lock of `amount` from `sender`."""
    params, s0 = w.open()
    blocked = (amount, 0) if sender == ALICE else (0, amount)
    s1, nano = fund(w, s0, "HashTimeLock", *blocked, htlc_data(sender, timeout))
    return params, s1, nano


def with_game(w: MSWorld, stake: int = ETHER, stake_bob: int | None = None):
    """An open channel whose state 1 funds a tic-tac-toe game, Alice staking `stake` and Bob
    `stake_bob` (by default the same)."""
    params, s0 = w.open()
    s1, nano = fund(w, s0, "TicTacToe", stake, stake if stake_bob is None else stake_bob, ttt_data(ALICE))
    return params, s1, nano


def registered_at(w: MSWorld, params: Params, nano: NanocontractState, by: LocalAccount, t: int) -> int:
    """Registers `nano` at time `t`; returns its windowEnd (t + Δ)."""
    at(w, t)
    window_end = register(w, params, nano, by).event("NanocontractRegistered").args["windowEnd"]
    assert window_end == t + DELTA
    return window_end


def released_to_bob(nano: NanocontractState, amount: int) -> NanocontractState:
    """Version 1 of `nano`, terminated, with `amount` released to Bob (whatever it was funded with)."""
    return NanocontractState(nano.channel_id, nano.nid, nano.app, 1, 0, 0, 0, amount, nano.storage)


def deploy_puppet(w: MSWorld) -> str:
    tx_hash = w.chain.w3.eth.send_transaction(
        {"from": w.chain.dev_accounts[0], "data": "0x" + (PUPPET_INIT + PUPPET_RUNTIME).hex()})
    receipt = w.chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert bytes(w.chain.w3.eth.get_code(receipt["contractAddress"])) == PUPPET_RUNTIME
    return receipt["contractAddress"]


def puppet_result(blocked_alice: int, blocked_bob: int, released_alice: int, released_bob: int,
                  data: bytes = b"") -> bytes:
    """The `z` that makes the puppet app return this AppState."""
    return encode([APP_STATE], [(blocked_alice, blocked_bob, released_alice, released_bob, data)])


def observed(w: MSWorld, params: Params, nids: tuple[bytes, ...]) -> tuple:
    channel_id = w.contract.channel_id(params)
    return (
        w.contract.channel(channel_id),
        tuple(w.contract.nanocontract(channel_id, nid) for nid in nids),
        tuple(w.chain.balance(a) for a in (w.contract.address, w.alice.address, w.bob.address, w.mallory.address)),
    )


@contextmanager
def unchanged(w: MSWorld, params: Params, *nids: bytes) -> Iterator[None]:
    """The block changes neither the channel, nor these nanocontracts, nor any balance."""
    before = observed(w, params, nids)
    yield
    assert observed(w, params, nids) == before


def balances(w: MSWorld) -> tuple[int, int, int]:
    return tuple(w.chain.balance(a) for a in (w.alice.address, w.bob.address, w.contract.address))


def assert_paid(w: MSWorld, before: tuple[int, int, int], params: Params, alice: int, bob: int) -> None:
    """Since `before`, Alice got `alice`, Bob `bob` (finalize called by mallory) and the contract
    paid out exactly the deposits."""
    assert alice + bob == params.total
    assert balances(w) == (before[0] + alice, before[1] + bob, before[2] - params.total)


def fundings_abi(fundings) -> tuple:
    return tuple({"nid": f.nid, "alice": f.alice, "bob": f.bob} for f in fundings)


# ------------------------------------------------------------------------------ opening


def test_create_and_confirm_open_a_channel(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params = w.params()
    channel_id = w.contract.channel_id(params)
    held = w.chain.balance(w.contract.address)
    event = w.contract.create(w.alice, params).event("Initialising")
    assert event.args["channelId"] == channel_id
    assert tuple(event.args["params"].values()) == params.as_abi()
    assert event.args["deadline"] == w.chain.timestamp() + DELTA
    assert w.contract.channel(channel_id).phase == Phase.INITIALISING
    assert w.chain.balance(w.contract.address) == held + params.deposit_alice
    assert w.contract.confirm(w.bob, params).event("Initialised").args == {"channelId": channel_id}
    stored = w.contract.channel(channel_id)
    assert (stored.phase, stored.deadline, stored.version, stored.balance_alice) == (Phase.OPEN, 0, 0, 0)
    assert w.chain.balance(w.contract.address) == held + params.total


@pytest.mark.parametrize("offset", [0, 1])
def test_refund_after_the_confirm_deadline(any_ms_world: MSWorld, offset: int) -> None:
    w = any_ms_world
    params = w.params()
    deadline = w.contract.create(w.alice, params).event("Initialising").args["deadline"]
    at(w, deadline + offset)
    if offset == 0:
        with unchanged(w, params), pytest.raises(errors.ChannelsRefundTooEarly) as exc:
            w.contract.refund(w.mallory, params)
        assert exc.value.fields == {"deadline": deadline}
        return
    alice, _, held = balances(w)
    receipt = w.contract.refund(w.mallory, params)
    assert receipt.event("Refunded").args == {"channelId": w.contract.channel_id(params),
                                              "amount": params.deposit_alice}
    assert w.chain.balance(w.alice.address) == alice + params.deposit_alice
    assert w.chain.balance(w.contract.address) == held - params.deposit_alice
    assert w.contract.channel(w.contract.channel_id(params)).phase == Phase.CLOSED
    with pytest.raises(errors.ChannelsWrongPhase):
        w.contract.confirm(w.bob, params)


def test_the_channel_id_differs_from_the_same_params_on_another_contract(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params = w.params()
    twin = MSContract.deploy(w.chain, w.chain.dev_accounts[0])
    payment = PaymentContract.deploy(w.chain, w.chain.dev_accounts[0])
    ids = [bytes(c.contract.functions.channelIdOf(params.as_abi()).call()) for c in (w.contract, twin, payment)]
    assert ids[0] == w.contract.channel_id(params)
    assert len(set(ids)) == 3
    # The same params open a channel on each contract, independently.
    w.contract.create(w.alice, params)
    twin.create(w.alice, params)
    assert w.contract.channel(ids[1]).phase == Phase.NONE
    assert twin.channel(ids[1]).phase == Phase.INITIALISING


# ------------------------------------------------------------------------------ register


def test_the_first_registration_opens_a_window_of_delta(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    t = pending_time(w) + 5
    at(w, t)
    receipt = register(w, params, nano, w.bob)
    assert receipt.event("NanocontractRegistered").args == {
        "channelId": nano.channel_id, "nid": nano.nid, "by": w.bob.address, "version": 0, "windowEnd": t + DELTA,
        "settleBy": 0,  # the HashTimeLock's predefined distribution is fair at any time
    }
    stored = w.contract.nanocontract(nano.channel_id, nano.nid)
    assert stored.registered
    assert (stored.window_end, stored.since) == (t + DELTA, t + DELTA)
    assert stored.state(nano.channel_id, nano.nid) == nano
    assert w.contract.channel(nano.channel_id).phase == Phase.OPEN  # the channel stays open


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_higher_version_replaces_a_registration_until_its_window_ends(any_ms_world: MSWorld, offset: int) -> None:
    w = any_ms_world
    params, s1, v0 = with_game(w)
    v2 = NanocontractState(v0.channel_id, v0.nid, v0.app, 2, ETHER, ETHER, 0, 0, ttt_data(ALICE, (1, 2) + (0,) * 7))
    window_end = registered_at(w, params, v0, w.alice, pending_time(w))
    at(w, window_end + offset)
    if offset > 0:
        with unchanged(w, params, v0.nid), pytest.raises(errors.ChannelsDisputeWindowOver) as exc:
            register(w, params, v2, w.bob)
        assert exc.value.fields == {"deadline": window_end}
        return
    event = register(w, params, v2, w.bob).event("NanocontractRegistered")
    assert (event.args["by"], event.args["version"], event.args["windowEnd"]) == (w.bob.address, 2, window_end)
    stored = w.contract.nanocontract(v0.channel_id, v0.nid)
    assert (stored.window_end, stored.since) == (window_end, window_end)  # the window is not extended
    assert stored.state(v0.channel_id, v0.nid) == v2


@pytest.mark.parametrize("version", [2, 3])
def test_a_lower_or_equal_version_cannot_replace_a_registration(any_ms_world: MSWorld, version: int) -> None:
    w = any_ms_world
    params, s1, v0 = with_game(w)
    v3 = NanocontractState(v0.channel_id, v0.nid, v0.app, 3, ETHER, ETHER, 0, 0, ttt_data(BOB, (1, 2, 1) + (0,) * 6))
    register(w, params, v3, w.alice)
    replay = NanocontractState(v0.channel_id, v0.nid, v0.app, version, ETHER, ETHER, 0, 0, ttt_data(ALICE))
    with unchanged(w, params, v0.nid):
        with pytest.raises(errors.ChannelsStaleVersion) as exc:
            register(w, params, replay, w.bob)
        assert exc.value.fields == {"registered": 3, "submitted": version}
        with pytest.raises(errors.ChannelsStaleVersion):  # checked before the signature
            w.contract.register(w.bob, params, replay, b"")


@pytest.mark.parametrize("signer", ["caller", "mallory"])
def test_register_needs_the_counterpartys_signature(any_ms_world: MSWorld, signer: str) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    key = w.bob if signer == "caller" else w.mallory
    with unchanged(w, params, nano.nid), pytest.raises(errors.ChannelsInvalidSignature) as exc:
        w.contract.register(w.bob, params, nano, w.sign(nano, key))
    assert exc.value.fields == {"expectedSigner": w.alice.address, "recovered": key.address}


def test_register_by_a_third_party_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    with unchanged(w, params, nano.nid), pytest.raises(errors.ChannelsCallerNotParticipant) as exc:
        w.contract.register(w.mallory, params, nano, w.sign(nano, w.alice))
    assert exc.value.fields == {"caller": w.mallory.address}


def test_register_of_another_channels_nanocontract_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    other_params, other_s1, foreign = with_htlc(w, timeout=2**40)
    with unchanged(w, params, nano.nid, foreign.nid), pytest.raises(errors.ChannelsWrongChannel) as exc:
        register(w, params, foreign, w.bob)
    assert exc.value.fields == {"expected": nano.channel_id, "received": foreign.channel_id}
    assert not w.contract.nanocontract(foreign.channel_id, foreign.nid).registered


@pytest.mark.parametrize("amounts", [
    "blocked_alice", "blocked_bob", "released_alice", "released_bob", "sum", "max_uint",
])
def test_register_with_amounts_above_the_deposits_is_rejected(any_ms_world: MSWorld, amounts: str) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    total = params.total
    values = {
        "blocked_alice": (total + 1, 0, 0, 0),
        "blocked_bob": (0, total + 1, 0, 0),
        "released_alice": (0, 0, total + 1, 0),
        "released_bob": (0, 0, 0, total + 1),
        "sum": (total - 3, 1, 1, 2),  # each within the deposits, together above them
        "max_uint": (2**256 - 1, 2**256 - 1, 2**256 - 1, 2**256 - 1),  # would overflow if added up
    }[amounts]
    raw = (nano.channel_id, nano.nid, nano.app, 1, *values, nano.storage)
    digest = bytes(w.contract.contract.functions.hashNanocontractState(raw).call())
    call = w.contract.contract.functions.register(params.as_abi(), raw, sign(digest, w.alice.key))
    with unchanged(w, params, nano.nid), pytest.raises(errors.MSContractAmountTooLarge) as exc:
        w.chain.transact(w.bob, call)
    assert exc.value.fields == {"nid": nano.nid}


def test_register_with_exactly_the_deposits_is_accepted(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    full = NanocontractState(nano.channel_id, nano.nid, nano.app, 1, params.total - 3, 1, 0, 2, nano.storage)
    register(w, params, full, w.bob)
    assert w.contract.nanocontract(nano.channel_id, nano.nid).state(nano.channel_id, nano.nid) == full


@pytest.mark.parametrize("phase", [Phase.NONE, Phase.INITIALISING, Phase.CLOSED])
def test_register_in_a_channel_that_is_not_open_is_rejected(any_ms_world: MSWorld, phase: Phase) -> None:
    w = any_ms_world
    params = w.params()
    channel_id = w.contract.channel_id(params)
    if phase != Phase.NONE:
        w.contract.create(w.alice, params)
    if phase == Phase.CLOSED:
        w.contract.confirm(w.bob, params)
        deadline = w.contract.close(w.alice, params, ChannelState.initial(params, channel_id)) \
            .event("CloseRegistered").args["deadline"]
        at(w, deadline + 1)
        w.contract.finalize(w.mallory, params, ())
    nid = nanocontract_id(channel_id, 1)
    nano = NanocontractState(channel_id, nid, w.apps["HashTimeLock"], 0, ETHER, 0, 0, 0, htlc_data(ALICE, 2**40))
    with unchanged(w, params, nid), pytest.raises(errors.ChannelsWrongPhase) as exc:
        register(w, params, nano, w.bob)
    assert exc.value.fields == {"channelId": channel_id, "phase": phase}


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_register_in_a_closing_channel_until_its_deadline(any_ms_world: MSWorld, offset: int) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    deadline = close(w, params, s1, w.alice).event("CloseRegistered").args["deadline"]
    at(w, deadline + offset)
    if offset > 0:
        with unchanged(w, params, nano.nid), pytest.raises(errors.ChannelsDisputeWindowOver) as exc:
            register(w, params, nano, w.bob)
        assert exc.value.fields == {"deadline": deadline}
        return
    event = register(w, params, nano, w.bob).event("NanocontractRegistered")
    assert event.args["windowEnd"] == deadline + offset + DELTA
    assert w.contract.nanocontract(nano.channel_id, nano.nid).window_end == deadline + offset + DELTA


@pytest.mark.parametrize("offset", [0, 1])
def test_a_registration_made_at_the_close_deadline_can_be_answered_until_its_window_ends(
        any_ms_world: MSWorld, offset: int) -> None:
    """docs/protocol.md §10.5: in a Closing channel first registrations stop at D, but one made
    at D can still be replaced by a higher version until its window ends, at D + Δ."""
    w = any_ms_world
    params, s1, v0 = with_game(w)
    bob_won = NanocontractState(v0.channel_id, v0.nid, v0.app, 6, 0, 0, 0, 2 * ETHER, ttt_data(ALICE))
    deadline = close(w, params, s1, w.bob).event("CloseRegistered").args["deadline"]
    window_end = registered_at(w, params, v0, w.alice, deadline)  # stale: Bob has since won the game
    assert window_end == deadline + DELTA
    at(w, deadline + 1)
    with unchanged(w, params, v0.nid), pytest.raises(errors.MSContractWindowOpen):
        w.contract.execute(w.alice, params, v0.nid, MOVE, cell(0))
    at(w, window_end + offset)
    if offset > 0:
        with unchanged(w, params, v0.nid), pytest.raises(errors.ChannelsDisputeWindowOver) as exc:
            register(w, params, bob_won, w.bob)
        assert exc.value.fields == {"deadline": window_end}
        expected = (6 * ETHER, 4 * ETHER)  # v0 stands: the stakes go back
    else:
        event = register(w, params, bob_won, w.bob).event("NanocontractRegistered")
        assert (event.args["version"], event.args["windowEnd"]) == (6, window_end)
        expected = (5 * ETHER, 5 * ETHER)  # Bob's win counts
    at(w, window_end + 1)
    before = balances(w)
    paid = w.contract.finalize(w.mallory, params, s1.nanocontracts).event("Finalized").args
    assert (paid["payoutAlice"], paid["payoutBob"]) == expected
    assert_paid(w, before, params, *expected)


def test_a_stale_registration_is_refuted_and_execution_starts_from_the_newer_version(
        any_ms_world: MSWorld) -> None:
    """docs/protocol.md §10.7, path 2."""
    w = any_ms_world
    params, s1, v0 = with_game(w)
    board1 = (0, 0, 0, 0, 1, 0, 0, 0, 0)
    board3 = (2, 0, 0, 0, 1, 0, 0, 0, 1)
    v1 = NanocontractState(v0.channel_id, v0.nid, v0.app, 1, ETHER, ETHER, 0, 0, ttt_data(BOB, board1))
    v3 = NanocontractState(v0.channel_id, v0.nid, v0.app, 3, ETHER, ETHER, 0, 0, ttt_data(BOB, board3))
    window_end = registered_at(w, params, v1, w.alice, pending_time(w))
    at(w, window_end)
    assert register(w, params, v3, w.bob).event("NanocontractRegistered").args["windowEnd"] == window_end
    at(w, window_end + 1)
    event = w.contract.execute(w.bob, params, v0.nid, MOVE, cell(2)).event("NanocontractExecuted")
    board4 = (2, 0, 2, 0, 1, 0, 0, 0, 1)
    assert (event.args["version"], event.args["data"]) == (4, ttt_data(ALICE, board4))
    assert w.contract.nanocontract(v0.channel_id, v0.nid).storage == ttt_data(ALICE, board4)


# ------------------------------------------------------------------------------ execute


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_execute_only_after_the_registration_window(any_ms_world: MSWorld, offset: int) -> None:
    w = any_ms_world
    t = pending_time(w) + 5
    params, s1, nano = with_htlc(w, timeout=t + 3 * DELTA)
    window_end = registered_at(w, params, nano, w.bob, t)
    at(w, window_end + offset)
    if offset <= 0:
        with unchanged(w, params, nano.nid), pytest.raises(errors.MSContractWindowOpen) as exc:
            w.contract.execute(w.bob, params, nano.nid, CLAIM, PREIMAGE)
        assert exc.value.fields == {"nid": nano.nid, "windowEnd": window_end}
        return
    alice, _, held = balances(w)
    receipt = w.contract.execute(w.bob, params, nano.nid, CLAIM, PREIMAGE)
    assert receipt.event("NanocontractExecuted").args == {
        "channelId": nano.channel_id, "nid": nano.nid, "by": w.bob.address, "fun": CLAIM, "version": 1,
        "blockedAlice": 0, "blockedBob": 0, "releasedAlice": 0, "releasedBob": ETHER, "data": nano.storage,
    }
    stored = w.contract.nanocontract(nano.channel_id, nano.nid)
    assert (stored.window_end, stored.since, stored.version) == (window_end, window_end + 1, 1)
    assert (stored.blocked_alice, stored.blocked_bob, stored.released_alice, stored.released_bob) == (0, 0, 0, ETHER)
    # Nothing is paid out by execute: the release counts at the channel's payout.
    assert (w.chain.balance(w.alice.address), w.chain.balance(w.contract.address)) == (alice, held)
    # Terminated: nothing left to execute.
    with unchanged(w, params, nano.nid), pytest.raises(errors.MSContractTerminated) as exc:
        w.contract.execute(w.alice, params, nano.nid, RECLAIM)
    assert exc.value.fields == {"nid": nano.nid}


def test_execute_of_an_unregistered_nanocontract_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    with unchanged(w, params, nano.nid), pytest.raises(errors.MSContractNotRegistered) as exc:
        w.contract.execute(w.bob, params, nano.nid, CLAIM, PREIMAGE)
    assert exc.value.fields == {"nid": nano.nid}


def test_execute_of_a_nanocontract_registered_as_terminated_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, v0 = with_htlc(w, timeout=2**40)
    done = NanocontractState(v0.channel_id, v0.nid, v0.app, 1, 0, 0, 0, ETHER, v0.storage)
    window_end = registered_at(w, params, done, w.bob, pending_time(w))
    at(w, window_end + 1)
    with unchanged(w, params, v0.nid), pytest.raises(errors.MSContractTerminated) as exc:
        w.contract.execute(w.bob, params, v0.nid, CLAIM, PREIMAGE)
    assert exc.value.fields == {"nid": v0.nid}


def test_execute_by_a_third_party_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    window_end = registered_at(w, params, nano, w.bob, pending_time(w))
    at(w, window_end + 1)
    with unchanged(w, params, nano.nid), pytest.raises(errors.ChannelsCallerNotParticipant) as exc:
        w.contract.execute(w.mallory, params, nano.nid, CLAIM, PREIMAGE)
    assert exc.value.fields == {"caller": w.mallory.address}


def test_execute_of_an_unknown_channel_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params = w.params()
    with pytest.raises(errors.ChannelsWrongPhase) as exc:
        w.contract.execute(w.alice, params, bytes(32), CLAIM, PREIMAGE)
    assert exc.value.fields == {"channelId": w.contract.channel_id(params), "phase": Phase.NONE}


def test_a_wrong_preimage_surfaces_as_the_apps_error(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    window_end = registered_at(w, params, nano, w.bob, pending_time(w))
    at(w, window_end + 1)
    wrong = b"\x43" * 32
    with unchanged(w, params, nano.nid), pytest.raises(errors.HashTimeLockWrongPreimage) as exc:
        w.contract.execute(w.bob, params, nano.nid, CLAIM, wrong)
    assert exc.value.fields == {"hashlock": HASHLOCK, "hashOfPreimage": hashlib.sha256(wrong).digest()}
    with unchanged(w, params, nano.nid), pytest.raises(errors.HashTimeLockWrongCaller) as exc:
        w.contract.execute(w.alice, params, nano.nid, CLAIM, PREIMAGE)  # the sender cannot claim
    assert exc.value.fields == {"caller": ALICE}


@pytest.mark.parametrize("offset", [0, 1])
def test_a_claim_works_until_the_timeout(any_ms_world: MSWorld, offset: int) -> None:
    w = any_ms_world
    t = pending_time(w) + 5
    timeout = t + 2 * DELTA
    params, s1, nano = with_htlc(w, timeout=timeout, sender=BOB)
    registered_at(w, params, nano, w.alice, t)
    at(w, timeout + offset)
    if offset > 0:
        with unchanged(w, params, nano.nid), pytest.raises(errors.HashTimeLockExpired) as exc:
            w.contract.execute(w.alice, params, nano.nid, CLAIM, PREIMAGE)
        assert exc.value.fields == {"timeout": timeout}
        return
    event = w.contract.execute(w.alice, params, nano.nid, CLAIM, PREIMAGE).event("NanocontractExecuted")
    assert (event.args["by"], event.args["releasedAlice"], event.args["releasedBob"]) == (w.alice.address, ETHER, 0)


def test_an_execution_adds_to_what_each_party_already_has_released(any_ms_world: MSWorld) -> None:
    """The app sees the registered amounts as they are: a version that released half of Bob's lock
    to Alice already, claimed, gives her the whole lock (and nothing of Bob's own)."""
    w = any_ms_world
    t = pending_time(w) + 5
    params, s1, nano = with_htlc(w, timeout=t + 2 * DELTA, sender=BOB)
    half = replace(nano, version=2, blocked_bob=ETHER // 2, released_alice=ETHER // 2)
    window_end = registered_at(w, params, half, w.alice, t)
    at(w, window_end + 1)
    event = w.contract.execute(w.alice, params, nano.nid, CLAIM, PREIMAGE).event("NanocontractExecuted")
    assert (event.args["releasedAlice"], event.args["releasedBob"]) == (ETHER, 0)
    stored = w.contract.nanocontract(nano.channel_id, nano.nid)
    assert (stored.blocked_alice, stored.blocked_bob, stored.released_alice, stored.released_bob) == (0, 0, ETHER, 0)


@pytest.mark.parametrize("offset", [0, 1])
def test_a_reclaim_works_only_after_the_timeout(any_ms_world: MSWorld, offset: int) -> None:
    w = any_ms_world
    t = pending_time(w) + 5
    timeout = t + 2 * DELTA
    params, s1, nano = with_htlc(w, timeout=timeout)
    registered_at(w, params, nano, w.bob, t)
    at(w, timeout + offset)
    if offset == 0:
        with unchanged(w, params, nano.nid), pytest.raises(errors.HashTimeLockNotExpired) as exc:
            w.contract.execute(w.alice, params, nano.nid, RECLAIM)
        assert exc.value.fields == {"timeout": timeout}
        return
    event = w.contract.execute(w.alice, params, nano.nid, RECLAIM).event("NanocontractExecuted")
    assert (event.args["fun"], event.args["releasedAlice"], event.args["blockedAlice"]) == (RECLAIM, ETHER, 0)
    stored = w.contract.nanocontract(nano.channel_id, nano.nid)
    assert (stored.version, stored.since, stored.released_alice) == (1, timeout + 1, ETHER)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_cancel_by_the_receiver_returns_the_lock_before_and_after_the_timeout(any_ms_world: MSWorld,
                                                                                offset: int) -> None:
    """CANCEL has no time condition: the receiver may give the lock back at any time, also after
    the timeout (when the sender could RECLAIM it with the same outcome). z is ignored."""
    w = any_ms_world
    t = pending_time(w) + 5
    timeout = t + 2 * DELTA
    params, s1, nano = with_htlc(w, timeout=timeout, sender=BOB)
    registered_at(w, params, nano, w.alice, t)
    at(w, timeout + offset)
    event = w.contract.execute(w.alice, params, nano.nid, CANCEL, b"ignored").event("NanocontractExecuted")
    assert event.args == {
        "channelId": nano.channel_id, "nid": nano.nid, "by": w.alice.address, "fun": CANCEL, "version": 1,
        "blockedAlice": 0, "blockedBob": 0, "releasedAlice": 0, "releasedBob": ETHER, "data": nano.storage,
    }
    stored = w.contract.nanocontract(nano.channel_id, nano.nid)
    assert (stored.version, stored.since, stored.blocked_bob, stored.released_bob) == (1, timeout + offset, 0, ETHER)
    # Settled: the receiver can no longer claim it, nor cancel it twice.
    for by, fun, z in ((w.alice, CLAIM, PREIMAGE), (w.alice, CANCEL, b"")):
        with unchanged(w, params, nano.nid), pytest.raises(errors.MSContractTerminated):
            w.contract.execute(by, params, nano.nid, fun, z)


def test_the_sender_cannot_cancel(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    window_end = registered_at(w, params, nano, w.bob, pending_time(w))
    at(w, window_end + 1)
    with unchanged(w, params, nano.nid), pytest.raises(errors.HashTimeLockWrongCaller) as exc:
        w.contract.execute(w.alice, params, nano.nid, CANCEL)
    assert exc.value.fields == {"caller": ALICE}


def test_a_claimed_lock_cannot_be_cancelled(any_ms_world: MSWorld) -> None:
    """After a CLAIM the lock is settled: the app refuses CANCEL with HashTimeLockSettled (asked
    directly), and MSContract refuses to execute the terminated nanocontract at all."""
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    window_end = registered_at(w, params, nano, w.bob, pending_time(w))
    at(w, window_end + 1)
    w.contract.execute(w.bob, params, nano.nid, CLAIM, PREIMAGE)
    with unchanged(w, params, nano.nid), pytest.raises(errors.MSContractTerminated) as exc:
        w.contract.execute(w.bob, params, nano.nid, CANCEL)
    assert exc.value.fields == {"nid": nano.nid}
    stored = w.contract.nanocontract(nano.channel_id, nano.nid)
    claimed = (stored.blocked_alice, stored.blocked_bob, stored.released_alice, stored.released_bob, nano.storage)
    assert claimed[:4] == (0, 0, 0, ETHER)
    app = w.chain.contract("HashTimeLock", w.apps["HashTimeLock"])
    with pytest.raises(Exception) as raw:
        app.functions.transition((BOB, w.chain.timestamp(), 0), CANCEL, b"", claimed).call()
    assert isinstance(reverts.translate(raw.value), errors.HashTimeLockSettled)


# Alice's moves are the even entries, Bob's the odd ones; Alice opens at 0 in each game. Alice
# stakes 1 ether, Bob 2 (unequal, so that a draw returning the wrong stake shows); deposits 6 and 4.
GAMES = {
    "alice-wins": ((0, 3, 1, 4, 2), (3 * ETHER, 0), (8 * ETHER, 2 * ETHER)),
    "bob-wins": ((0, 3, 1, 4, 8, 5), (0, 3 * ETHER), (5 * ETHER, 5 * ETHER)),
    "draw": ((0, 1, 2, 4, 7, 5, 3, 6, 8), (ETHER, 2 * ETHER), (6 * ETHER, 4 * ETHER)),  # each stake back
}


@pytest.mark.parametrize("game", list(GAMES))
def test_a_game_of_tic_tac_toe_played_on_chain_to_its_end(any_ms_world: MSWorld, game: str) -> None:
    w = any_ms_world
    moves, released, paid_out = GAMES[game]
    params, s1, nano = with_game(w, ETHER, 2 * ETHER)
    window_end = registered_at(w, params, nano, w.bob, pending_time(w))
    cells = [0] * 9
    t = window_end
    for version, index in enumerate(moves, start=1):
        mark = (version - 1) % 2
        player = (w.alice, w.bob)[mark]
        t += 7
        if version == 2:  # on the way, the app's errors surface
            at(w, t)
            with unchanged(w, params, nano.nid), pytest.raises(errors.TicTacToeNotYourTurn) as exc:
                w.contract.execute(w.alice, params, nano.nid, MOVE, cell(4))
            assert exc.value.fields == {"caller": ALICE}
            with unchanged(w, params, nano.nid), pytest.raises(errors.TicTacToeCellTaken) as exc:
                w.contract.execute(w.bob, params, nano.nid, MOVE, cell(0))
            assert exc.value.fields == {"cell": 0}
        at(w, t)
        cells[index] = mark + 1
        receipt = w.contract.execute(player, params, nano.nid, MOVE, cell(index))
        pot = (0, 0, *released) if version == len(moves) else (ETHER, 2 * ETHER, 0, 0)
        assert receipt.event("NanocontractExecuted").args == {
            "channelId": nano.channel_id, "nid": nano.nid, "by": player.address, "fun": MOVE, "version": version,
            "blockedAlice": pot[0], "blockedBob": pot[1], "releasedAlice": pot[2], "releasedBob": pot[3],
            "data": ttt_data(1 - mark, tuple(cells)),
        }
        stored = w.contract.nanocontract(nano.channel_id, nano.nid)
        assert (stored.version, stored.since, stored.window_end) == (version, t, window_end)
        assert (stored.blocked_alice, stored.blocked_bob, stored.released_alice, stored.released_bob) == pot
    at(w, t + 1)
    with unchanged(w, params, nano.nid), pytest.raises(errors.MSContractTerminated):
        w.contract.execute(w.bob, params, nano.nid, MOVE, cell(5))
    # The game is paid out with the channel: the winner takes both stakes, a draw returns them.
    deadline = close(w, params, s1, w.bob).event("CloseRegistered").args["deadline"]
    at(w, deadline + 1)
    before = balances(w)
    paid = w.contract.finalize(w.mallory, params, s1.nanocontracts).event("Finalized").args
    assert (paid["payoutAlice"], paid["payoutBob"]) == paid_out
    assert_paid(w, before, params, *paid_out)


@pytest.mark.parametrize("moved", [False, True])
@pytest.mark.parametrize("offset", [0, 1])
def test_a_timeout_claim_after_since_plus_the_move_timeout(any_ms_world: MSWorld, moved: bool, offset: int) -> None:
    """`since` is the end of the registration window until the first execution, then its time."""
    w = any_ms_world
    params, s1, nano = with_game(w)
    window_end = registered_at(w, params, nano, w.alice, pending_time(w))
    since, claimer, loser = window_end, w.bob, ALICE  # Alice is to move first
    if moved:
        since = window_end + 3
        at(w, since)
        w.contract.execute(w.alice, params, nano.nid, MOVE, cell(4))
        claimer, loser = w.alice, BOB
    assert w.contract.nanocontract(nano.channel_id, nano.nid).since == since
    at(w, since + MOVE_TIMEOUT + offset)
    with unchanged(w, params, nano.nid), pytest.raises(errors.TicTacToeNotYourTurn):
        w.contract.execute(other(w, claimer), params, nano.nid, TIMEOUT)  # the one to move cannot
    if offset == 0:
        with unchanged(w, params, nano.nid), pytest.raises(errors.TicTacToeTooEarly) as exc:
            w.contract.execute(claimer, params, nano.nid, TIMEOUT)
        assert exc.value.fields == {"deadline": since + MOVE_TIMEOUT}
        return
    event = w.contract.execute(claimer, params, nano.nid, TIMEOUT).event("NanocontractExecuted")
    winner = 1 - loser
    assert (event.args["fun"], event.args["version"]) == (TIMEOUT, 2 if moved else 1)
    assert (event.args["blockedAlice"], event.args["blockedBob"]) == (0, 0)
    assert (event.args["releasedAlice"], event.args["releasedBob"]) == \
        ((2 * ETHER, 0) if winner == ALICE else (0, 2 * ETHER))


@pytest.mark.parametrize("offset", [0, 1])
def test_execute_in_a_closing_channel_until_deadline_plus_delta(any_ms_world: MSWorld, offset: int) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    t = pending_time(w)
    registered_at(w, params, nano, w.bob, t)
    at(w, t + 1)
    deadline = close(w, params, s1, w.alice).event("CloseRegistered").args["deadline"]
    at(w, deadline + DELTA + offset)
    if offset > 0:
        with unchanged(w, params, nano.nid), pytest.raises(errors.MSContractSettlementOver) as exc:
            w.contract.execute(w.bob, params, nano.nid, CLAIM, PREIMAGE)
        assert exc.value.fields == {"deadline": deadline + DELTA}
        return
    w.contract.execute(w.bob, params, nano.nid, CLAIM, PREIMAGE)
    assert w.contract.nanocontract(nano.channel_id, nano.nid).released_bob == ETHER
    assert w.contract.channel(nano.channel_id).phase == Phase.CLOSING


# ------------------------------------------------------------------------------ a malicious app


REGISTERED = (2 * ETHER, ETHER, ETHER, 0)  # blocked (Alice, Bob), released (Alice, Bob): 4 ETH in all


@pytest.mark.parametrize("result", [
    pytest.param((3 * ETHER, ETHER, ETHER, 0), id="blocked-rises"),
    pytest.param((2 * ETHER, ETHER, 0, ETHER), id="a-release-lowered"),
    pytest.param((ETHER, ETHER, ETHER, 0), id="total-falls"),
    pytest.param((2 * ETHER, ETHER, ETHER, 1), id="total-rises"),
    pytest.param((0, 0, 0, 4 * ETHER), id="a-release-taken-back"),
    # Added up without bounds, blocked would wrap around to 3 ETH and the total look conserved.
    pytest.param((2**256 - ETHER, 4 * ETHER, ETHER, 0), id="amounts-that-overflow"),
])
def test_an_app_result_that_does_not_conserve_the_funds_is_rejected(any_ms_world: MSWorld, result) -> None:
    w = any_ms_world
    puppet = deploy_puppet(w)
    params, s0 = w.open()
    nid = nanocontract_id(s0.channel_id, 1)
    nano = NanocontractState(s0.channel_id, nid, puppet, 5, *REGISTERED, b"")
    window_end = registered_at(w, params, nano, w.alice, pending_time(w))
    at(w, window_end + 1)
    with unchanged(w, params, nid), pytest.raises(errors.MSContractNotConserved) as exc:
        w.contract.execute(w.alice, params, nid, 0, puppet_result(*result))
    assert exc.value.fields == {"nid": nid}


def test_an_app_result_that_conserves_the_funds_is_stored(any_ms_world: MSWorld) -> None:
    """The rule is the sum: blocked may move between the parties, and part of it be released."""
    w = any_ms_world
    puppet = deploy_puppet(w)
    params, s0 = w.open()
    nid = nanocontract_id(s0.channel_id, 1)
    nano = NanocontractState(s0.channel_id, nid, puppet, 5, *REGISTERED, b"old")
    window_end = registered_at(w, params, nano, w.alice, pending_time(w))
    at(w, window_end + 1)
    event = w.contract.execute(w.bob, params, nid, 9, puppet_result(0, ETHER, 2 * ETHER, ETHER, b"new"))
    assert event.event("NanocontractExecuted").args == {
        "channelId": s0.channel_id, "nid": nid, "by": w.bob.address, "fun": 9, "version": 6,
        "blockedAlice": 0, "blockedBob": ETHER, "releasedAlice": 2 * ETHER, "releasedBob": ETHER, "data": b"new",
    }
    stored = w.contract.nanocontract(s0.channel_id, nid)
    assert stored.state(s0.channel_id, nid) == NanocontractState(
        s0.channel_id, nid, puppet, 6, 0, ETHER, 2 * ETHER, ETHER, b"new")


# ------------------------------------------------------------------------------ close


def test_close_with_the_unsigned_initial_state(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s0 = w.open()
    t = pending_time(w)
    at(w, t)
    receipt = w.contract.close(w.alice, params, s0)
    assert receipt.event("CloseRegistered").args == {
        "channelId": s0.channel_id, "by": w.alice.address, "version": 0, "cashAlice": 6 * ETHER,
        "cashBob": 4 * ETHER, "nanocontracts": (), "deadline": t + DELTA,
    }
    stored = w.contract.channel(s0.channel_id)
    assert (stored.phase, stored.deadline, stored.version, stored.balance_alice) == \
        (Phase.CLOSING, t + DELTA, 0, 6 * ETHER)


def test_close_with_a_signed_state_and_its_nanocontracts(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, htlc = with_htlc(w, timeout=2**40)
    s2, game = fund(w, s1, "TicTacToe", ETHER, 2 * ETHER, ttt_data(BOB))
    assert len(s2.nanocontracts) == 2
    t = pending_time(w)
    at(w, t)
    receipt = close(w, params, s2, w.bob)
    assert receipt.event("CloseRegistered").args == {
        "channelId": s2.channel_id, "by": w.bob.address, "version": 2, "cashAlice": 4 * ETHER,
        "cashBob": 2 * ETHER, "nanocontracts": fundings_abi(s2.nanocontracts), "deadline": t + DELTA,
    }
    stored = w.contract.channel(s2.channel_id)
    assert (stored.phase, stored.deadline, stored.version, stored.balance_alice) == \
        (Phase.CLOSING, t + DELTA, 2, 4 * ETHER)


@pytest.mark.parametrize("forged", ["other_cash", "a_nanocontract"])
def test_a_version_0_other_than_the_initial_state_needs_a_signature(any_ms_world: MSWorld, forged: str) -> None:
    w = any_ms_world
    params, s0 = w.open()
    if forged == "other_cash":
        state = ChannelState(s0.channel_id, 0, params.total, 0)
    else:  # Alice's cash as deposited, but part of Bob's in a nanocontract
        state = ChannelState(s0.channel_id, 0, 6 * ETHER, 3 * ETHER, (Funding(bytes(32), 0, ETHER),))
    with unchanged(w, params), pytest.raises(errors.ChannelsInvalidSignature) as exc:
        w.contract.close(w.alice, params, state)
    assert exc.value.fields["expectedSigner"] == w.bob.address
    close(w, params, state, w.alice)  # with Bob's signature it is a state like any other
    assert w.contract.channel(s0.channel_id).balance_alice == state.cash_alice


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_higher_version_replaces_the_registered_state_until_the_deadline(any_ms_world: MSWorld,
                                                                          offset: int) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    s2 = s1.absorb(NanocontractState(nano.channel_id, nano.nid, nano.app, 1, 0, 0, 0, ETHER, nano.storage))
    deadline = close(w, params, s1, w.alice).event("CloseRegistered").args["deadline"]
    at(w, deadline + offset)
    if offset > 0:
        with unchanged(w, params), pytest.raises(errors.ChannelsDisputeWindowOver) as exc:
            close(w, params, s2, w.bob)
        assert exc.value.fields == {"deadline": deadline}
        with unchanged(w, params), pytest.raises(errors.ChannelsDisputeWindowOver):
            w.contract.close(w.bob, params, s2, b"")  # checked before the signature
        return
    event = close(w, params, s2, w.bob).event("CloseRegistered")
    assert (event.args["version"], event.args["nanocontracts"], event.args["deadline"]) == (2, (), deadline)
    stored = w.contract.channel(s2.channel_id)
    assert (stored.deadline, stored.version, stored.balance_alice) == (deadline, 2, 5 * ETHER)
    # The registered state's fundings are the new ones: none.
    at(w, deadline + 1)
    with pytest.raises(errors.MSContractWrongNanocontracts):
        w.contract.finalize(w.mallory, params, s1.nanocontracts)
    before = balances(w)
    w.contract.finalize(w.mallory, params, ())
    assert_paid(w, before, params, 5 * ETHER, 5 * ETHER)


@pytest.mark.parametrize("version", [1, 2])
def test_a_lower_or_equal_channel_version_cannot_replace_the_registered_one(any_ms_world: MSWorld,
                                                                           version: int) -> None:
    w = any_ms_world
    params, s0 = w.open()
    s2 = ChannelState(s0.channel_id, 2, 5 * ETHER, 5 * ETHER)
    close(w, params, s2, w.alice)
    replay = ChannelState(s0.channel_id, version, 7 * ETHER, 3 * ETHER)
    with unchanged(w, params):
        with pytest.raises(errors.ChannelsStaleVersion) as exc:
            close(w, params, replay, w.alice)
        assert exc.value.fields == {"registered": 2, "submitted": version}
        with pytest.raises(errors.ChannelsStaleVersion):  # checked before the signature
            w.contract.close(w.alice, params, replay, b"")
        with pytest.raises(errors.ChannelsStaleVersion):
            w.contract.close(w.bob, params, s0)


@pytest.mark.parametrize("order", ["descending", "duplicate"])
def test_close_with_unsorted_nanocontracts_is_rejected(any_ms_world: MSWorld, order: str) -> None:
    w = any_ms_world
    params, s0 = w.open()
    low, high = b"\x01" * 32, b"\x02" * 32
    nids = (high, low, high) if order == "descending" else (low, high, high)
    fundings = tuple(Funding(nid, ETHER, 0) for nid in nids)
    state = ChannelState(s0.channel_id, 1, 3 * ETHER, 4 * ETHER, fundings)
    with unchanged(w, params), pytest.raises(errors.MSContractNanocontractsUnsorted) as exc:
        close(w, params, state, w.alice)
    assert exc.value.fields == {"index": 1 if order == "descending" else 2}


@pytest.mark.parametrize("count", [16, 17])
def test_close_with_at_most_16_nanocontracts(any_ms_world: MSWorld, count: int) -> None:
    w = any_ms_world
    params, s0 = w.open()
    fundings = tuple(Funding(i.to_bytes(32, "big"), 1, 2) for i in range(1, count + 1))
    state = ChannelState(s0.channel_id, 1, 6 * ETHER - count, 4 * ETHER - 2 * count, fundings)
    if count > 16:
        with unchanged(w, params), pytest.raises(errors.MSContractTooManyNanocontracts) as exc:
            close(w, params, state, w.alice)
        assert exc.value.fields == {"count": count}
        return
    event = close(w, params, state, w.alice).event("CloseRegistered")
    assert event.args["nanocontracts"] == fundings_abi(fundings)
    deadline = event.args["deadline"]
    at(w, deadline + DELTA + 1)  # none registered: each funding goes back
    before = balances(w)
    w.contract.finalize(w.mallory, params, fundings)
    assert_paid(w, before, params, 6 * ETHER, 4 * ETHER)


@pytest.mark.parametrize("delta", [-1, 1])
@pytest.mark.parametrize("where", ["cash", "funding"])
def test_close_with_funds_not_conserved_is_rejected(any_ms_world: MSWorld, where: str, delta: int) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    funding = s1.nanocontracts[0]
    if where == "cash":
        state = ChannelState(s1.channel_id, 2, s1.cash_alice, s1.cash_bob + delta, s1.nanocontracts)
    else:
        state = ChannelState(s1.channel_id, 2, s1.cash_alice, s1.cash_bob,
                             (Funding(funding.nid, funding.alice + delta, funding.bob),))
    with unchanged(w, params), pytest.raises(errors.ChannelsBalancesNotConserved) as exc:
        close(w, params, state, w.alice)
    assert exc.value.fields == {"balanceAlice": state.cash_alice, "balanceBob": state.cash_bob,
                                "total": params.total}


@pytest.mark.parametrize("amounts", ["cash", "funding", "cash_and_funding", "max_uint"])
def test_close_with_huge_amounts_is_rejected_without_overflow(any_ms_world: MSWorld, amounts: str) -> None:
    w = any_ms_world
    params, s0 = w.open()
    big = 2**255
    cash, fundings = {
        "cash": ((big, big), []),  # adds up to 2**256: 0 in wrapping arithmetic
        "funding": ((0, 0), [(b"\x01" * 32, big, big)]),
        "cash_and_funding": ((big, 0), [(b"\x01" * 32, 0, big)]),
        "max_uint": ((2**256 - 1, params.total + 1), []),  # wraps around to the total
    }[amounts]
    raw = (s0.channel_id, 1, *cash, fundings)
    digest = bytes(w.contract.contract.functions.hashChannelState(raw).call())
    call = w.contract.contract.functions.close(params.as_abi(), raw, sign(digest, w.alice.key))
    with unchanged(w, params), pytest.raises(errors.ChannelsBalancesNotConserved) as exc:
        w.chain.transact(w.bob, call)
    assert exc.value.fields == {"balanceAlice": cash[0], "balanceBob": cash[1], "total": params.total}


def test_close_by_a_third_party_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    with unchanged(w, params), pytest.raises(errors.ChannelsCallerNotParticipant) as exc:
        w.contract.close(w.mallory, params, s1, w.sign(s1, w.alice))
    assert exc.value.fields == {"caller": w.mallory.address}


def test_close_with_the_callers_own_signature_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    with unchanged(w, params), pytest.raises(errors.ChannelsInvalidSignature) as exc:
        w.contract.close(w.alice, params, s1, w.sign(s1, w.alice))
    assert exc.value.fields == {"expectedSigner": w.bob.address, "recovered": w.alice.address}


def test_close_with_a_state_of_another_channel_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s0 = w.open()
    other_params, other_s1, _ = with_htlc(w, timeout=2**40)
    with unchanged(w, params), pytest.raises(errors.ChannelsWrongChannel) as exc:
        close(w, params, other_s1, w.alice)
    assert exc.value.fields == {"expected": s0.channel_id, "received": other_s1.channel_id}


def test_close_before_confirm_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params = w.params()
    w.contract.create(w.alice, params)
    s0 = ChannelState.initial(params, w.contract.channel_id(params))
    with unchanged(w, params), pytest.raises(errors.ChannelsWrongPhase) as exc:
        w.contract.close(w.alice, params, s0)
    assert exc.value.fields == {"channelId": s0.channel_id, "phase": Phase.INITIALISING}


# ------------------------------------------------------------------------------ finalize


@pytest.mark.parametrize("wrong", ["none", "other_amounts", "one_more", "reordered", "dropped"])
def test_finalize_with_other_fundings_than_registered_is_rejected(any_ms_world: MSWorld, wrong: str) -> None:
    w = any_ms_world
    params, s1, htlc = with_htlc(w, timeout=2**40)
    s2, game = fund(w, s1, "TicTacToe", ETHER, ETHER, ttt_data(ALICE))
    deadline = close(w, params, s2, w.alice).event("CloseRegistered").args["deadline"]
    f1, f2 = s2.nanocontracts  # in nid order, whichever was created first
    fundings = {
        "none": (),
        "other_amounts": tuple(Funding(f.nid, 2 * ETHER, 0) if f.nid == game.nid else f for f in (f1, f2)),
        "one_more": (f1, f2, Funding(b"\xff" * 32, 0, 0)),
        "reordered": (f2, f1),
        "dropped": (f2,),
    }[wrong]
    at(w, deadline + DELTA + 1)
    with unchanged(w, params, htlc.nid, game.nid), pytest.raises(errors.MSContractWrongNanocontracts) as exc:
        w.contract.finalize(w.mallory, params, fundings)
    assert exc.value.fields == {"channelId": s2.channel_id}


@pytest.mark.parametrize("offset", [0, 1])
def test_finalize_without_nanocontracts_pays_the_cash_after_the_deadline(any_ms_world: MSWorld,
                                                                        offset: int) -> None:
    w = any_ms_world
    params, s0 = w.open()
    s1 = ChannelState(s0.channel_id, 1, 4 * ETHER, 6 * ETHER)
    deadline = close(w, params, s1, w.bob).event("CloseRegistered").args["deadline"]
    at(w, deadline + offset)
    if offset == 0:
        with unchanged(w, params), pytest.raises(errors.ChannelsFinalizeTooEarly) as exc:
            w.contract.finalize(w.mallory, params, ())
        assert exc.value.fields == {"deadline": deadline}
        return
    before = balances(w)
    receipt = w.contract.finalize(w.mallory, params, ())
    assert receipt.event("Finalized").args == {
        "channelId": s1.channel_id, "version": 1, "payoutAlice": 4 * ETHER, "payoutBob": 6 * ETHER,
    }
    assert_paid(w, before, params, 4 * ETHER, 6 * ETHER)
    stored = w.contract.channel(s1.channel_id)
    assert (stored.phase, stored.deadline, stored.version, stored.balance_alice) == (Phase.CLOSED, 0, 0, 0)


@pytest.mark.parametrize("offset", [0, 1])
def test_finalize_right_after_the_deadline_once_every_nanocontract_is_settled(any_ms_world: MSWorld,
                                                                             offset: int) -> None:
    """The hash time lock was claimed on chain while the channel was open; the channel state
    still lists it: Bob gets his cash plus what it released to him."""
    w = any_ms_world
    t = pending_time(w) + 5
    params, s1, nano = with_htlc(w, timeout=t + 3 * DELTA)
    window_end = registered_at(w, params, nano, w.bob, t)
    at(w, window_end + 1)
    w.contract.execute(w.bob, params, nano.nid, CLAIM, PREIMAGE)
    deadline = close(w, params, s1, w.bob).event("CloseRegistered").args["deadline"]
    at(w, deadline + offset)
    if offset == 0:
        with unchanged(w, params, nano.nid), pytest.raises(errors.ChannelsFinalizeTooEarly) as exc:
            w.contract.finalize(w.mallory, params, s1.nanocontracts)
        assert exc.value.fields == {"deadline": deadline}
        return
    before = balances(w)
    receipt = w.contract.finalize(w.mallory, params, s1.nanocontracts)
    assert receipt.event("Finalized").args == {
        "channelId": s1.channel_id, "version": 1, "payoutAlice": 5 * ETHER, "payoutBob": 5 * ETHER,
    }
    assert_paid(w, before, params, 5 * ETHER, 5 * ETHER)
    assert w.contract.channel(s1.channel_id).phase == Phase.CLOSED


def test_a_nanocontract_settled_after_the_close_lets_finalize_run_early(any_ms_world: MSWorld) -> None:
    """Registered and executed while the channel is Closing: finalize as soon as its window is
    over and it is terminated, before deadline + Δ."""
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40, sender=BOB)
    deadline = close(w, params, s1, w.bob).event("CloseRegistered").args["deadline"]
    window_end = registered_at(w, params, nano, w.alice, deadline - 10)
    at(w, window_end)
    with pytest.raises(errors.ChannelsFinalizeTooEarly) as exc:  # past D, but not yet settled
        w.contract.finalize(w.mallory, params, s1.nanocontracts)
    assert exc.value.fields == {"deadline": deadline + DELTA}
    at(w, window_end + 1)
    w.contract.execute(w.alice, params, nano.nid, CLAIM, PREIMAGE)
    at(w, window_end + 2)
    assert window_end + 2 < deadline + DELTA
    before = balances(w)
    paid = w.contract.finalize(w.mallory, params, s1.nanocontracts).event("Finalized").args
    assert (paid["payoutAlice"], paid["payoutBob"]) == (7 * ETHER, 3 * ETHER)
    assert_paid(w, before, params, 7 * ETHER, 3 * ETHER)


@pytest.mark.parametrize("offset", [1, DELTA, DELTA + 1])
@pytest.mark.parametrize("kind", ["live", "unregistered", "window_open"])
def test_finalize_with_an_unsettled_nanocontract_waits_for_deadline_plus_delta(any_ms_world: MSWorld, kind: str,
                                                                               offset: int) -> None:
    """After deadline + Δ the predefined distribution: a registered nanocontract pays what it
    blocks back to whoever blocks it, plus what it released; an unregistered one its funding."""
    w = any_ms_world
    params, s0 = w.open()
    s1, v0 = fund(w, s0, "TicTacToe", ETHER, ETHER, ttt_data(ALICE))
    # Some later version, registered as signed: Bob has been released more than his stake.
    v7 = NanocontractState(v0.channel_id, v0.nid, v0.app, 7, ETHER // 2, 0, 0, 3 * ETHER // 2, v0.storage)
    deadline = close(w, params, s1, w.alice).event("CloseRegistered").args["deadline"]
    if kind == "live":
        registered_at(w, params, v7, w.bob, deadline - DELTA // 2)
    elif kind == "window_open":  # registered at D: its window ends at D + Δ, when execution stops
        registered_at(w, params, v7, w.bob, deadline)
    at(w, deadline + offset)
    if offset <= DELTA:
        with unchanged(w, params, v0.nid), pytest.raises(errors.ChannelsFinalizeTooEarly) as exc:
            w.contract.finalize(w.mallory, params, s1.nanocontracts)
        assert exc.value.fields == {"deadline": deadline + DELTA}
        return
    before = balances(w)
    paid = w.contract.finalize(w.mallory, params, s1.nanocontracts).event("Finalized").args
    # Cash 5 / 3; the registered state: Alice 0.5 blocked, Bob 1.5 released; else the funding 1 / 1.
    alice, bob = (11 * ETHER // 2, 9 * ETHER // 2) if kind != "unregistered" else (6 * ETHER, 4 * ETHER)
    assert paid == {"channelId": s1.channel_id, "version": 1, "payoutAlice": alice, "payoutBob": bob}
    assert_paid(w, before, params, alice, bob)


def waiting(w: MSWorld, settle_by: int, mode: int = 0) -> tuple[Params, ChannelState, NanocontractState]:
    """An open channel whose state 1 funds a WaitingApp (1 ETH each) that asks a closing
    channel to wait until `settle_by` (mode 0), or reverts (1), burns its gas (2), returns two
    words (3) when asked."""
    params, s0 = w.open()
    app = w.chain.deploy(w.chain.dev_accounts[0], "WaitingApp")
    nid = nanocontract_id(s0.channel_id, 1)
    nano = NanocontractState(s0.channel_id, nid, app, 0, ETHER, ETHER, 0, 0, encode(["uint256", "uint256"],
                                                                                    [settle_by, mode]))
    return params, s0.fund(nano), nano


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_closing_channel_waits_for_an_apps_settle_by(any_ms_world: MSWorld, offset: int) -> None:
    """Execution stays open, and the predefined distribution waits, until the settleBy the app
    gave at registration when that is after D + Δ (a virtual channel's settlement)."""
    w = any_ms_world
    params, s1, nano = waiting(w, settle_by=2**40)  # replaced below, once D is known
    deadline = close(w, params, s1, w.alice).event("CloseRegistered").args["deadline"]
    settle_by = deadline + 3 * DELTA
    nano = replace(nano, storage=encode(["uint256", "uint256"], [settle_by, 0]))
    s1_fundings = s1.nanocontracts
    at(w, deadline - DELTA // 2)
    event = register(w, params, nano, w.bob).event("NanocontractRegistered")
    assert event.args["settleBy"] == settle_by == w.contract.nanocontract(nano.channel_id, nano.nid).settle_by
    # Past D + Δ, still executable and not yet finalizable: at settleBy + offset.
    at(w, settle_by + offset)
    if offset <= 0:
        with unchanged(w, params, nano.nid), pytest.raises(errors.ChannelsFinalizeTooEarly) as exc:
            w.contract.finalize(w.mallory, params, s1_fundings)
        assert exc.value.fields == {"deadline": settle_by}
        at(w, settle_by + offset)
        executed = w.contract.execute(w.alice, params, nano.nid, 0).event("NanocontractExecuted").args
        assert executed["releasedAlice"] == 2 * ETHER
        at(w, settle_by + 1)
        paid = w.contract.finalize(w.mallory, params, s1_fundings).event("Finalized").args
        assert (paid["payoutAlice"], paid["payoutBob"]) == (7 * ETHER, 3 * ETHER)  # cash 5 / 3, the pot
        return
    with unchanged(w, params, nano.nid), pytest.raises(errors.MSContractSettlementOver) as exc:
        w.contract.execute(w.alice, params, nano.nid, 0)
    assert exc.value.fields == {"deadline": settle_by}
    at(w, settle_by + offset)
    paid = w.contract.finalize(w.mallory, params, s1_fundings).event("Finalized").args
    assert (paid["payoutAlice"], paid["payoutBob"]) == (6 * ETHER, 4 * ETHER)  # each stake back


@pytest.mark.parametrize("mode, expected", [(0, "capped"), (1, 0), (2, 0), (3, 0)])
def test_an_apps_settle_by_is_capped_and_a_misbehaving_one_counts_as_zero(any_ms_world: MSWorld, mode: int,
                                                                          expected) -> None:
    w = any_ms_world
    params, _, nano = waiting(w, settle_by=2**200, mode=mode)
    t = pending_time(w)
    at(w, t)
    event = register(w, params, nano, w.bob).event("NanocontractRegistered")
    assert event.args["settleBy"] == (t + 365 * 24 * 3600 if expected == "capped" else 0)


def test_no_gas_limit_registers_a_wrong_settle_by(ms_world: MSWorld) -> None:
    """Withholding gas from the app's settleBy must not pass for "nothing to wait for": at every
    gas limit up to what registering needs, the transaction either records the app's settleBy or
    reverts, and the limits that starve the app are refused with MSContractGasTooLow."""
    w = ms_world
    settle_by = pending_time(w) + 10 * DELTA
    params, _, nano = waiting(w, settle_by=settle_by)
    call = w.contract.contract.functions.register(params.as_abi(), nano.as_abi(), w.sign(nano, w.alice))
    needed = call.estimate_gas({"from": w.bob.address})
    outcomes = {}
    for gas in range(needed - 60_000, needed + 1, 1_000):
        snapshot = w.chain.snapshot()
        try:
            w.chain._send(w.bob, call.build_transaction({"from": w.bob.address, "gas": gas}))
        except errors.TransactionFailed:
            try:
                call.call({"from": w.bob.address, "gas": gas})
                outcomes[gas] = "reverted"
            except Exception as exc:  # noqa: BLE001 - what it is, is the point
                outcomes[gas] = type(reverts.translate(exc)).__name__
        else:
            assert w.contract.nanocontract(nano.channel_id, nano.nid).settle_by == settle_by
            outcomes[gas] = "registered"
        w.chain.revert_to(snapshot)
    assert outcomes[needed] == "registered" and set(outcomes.values()) == {"registered", "TransactionFailed"}
    # An app that uses all it may: a limit that leaves it less than SETTLE_BY_GAS is refused.
    params, _, burner = waiting(w, settle_by=0, mode=2)
    call = w.contract.contract.functions.register(params.as_abi(), burner.as_abi(), w.sign(burner, w.alice))
    needed = call.estimate_gas({"from": w.bob.address})
    refusals = set()
    for gas in range(needed - 100_000, needed, 2_000):  # the register needs ~60k after the app
        try:
            call.call({"from": w.bob.address, "gas": gas})
        except Exception as exc:  # noqa: BLE001 - what it is, is the point
            refusals.add(type(reverts.translate(exc)).__name__)
    assert "MSContractGasTooLow" in refusals, refusals


@pytest.mark.parametrize("registered_total", [ETHER, 3 * ETHER])
def test_a_nanocontract_holding_other_than_its_funding_pays_the_funding(any_ms_world: MSWorld,
                                                                        registered_total: int) -> None:
    w = any_ms_world
    params, s0 = w.open()
    s1, v0 = fund(w, s0, "TicTacToe", ETHER, ETHER, ttt_data(ALICE))
    # Terminated, but releasing other than the 2 ETH it was funded with: ignored.
    bogus = NanocontractState(v0.channel_id, v0.nid, v0.app, 9, 0, 0, 0, registered_total, v0.storage)
    deadline = close(w, params, s1, w.alice).event("CloseRegistered").args["deadline"]
    window_end = registered_at(w, params, bogus, w.bob, deadline - DELTA + 1)
    at(w, window_end + 1)  # settled (registered, past its window, terminated): no need to wait
    assert window_end + 1 < deadline + DELTA
    before = balances(w)
    paid = w.contract.finalize(w.mallory, params, s1.nanocontracts).event("Finalized").args
    assert (paid["payoutAlice"], paid["payoutBob"]) == (6 * ETHER, 4 * ETHER)
    assert_paid(w, before, params, 6 * ETHER, 4 * ETHER)


def test_finalize_of_many_nanocontracts_pays_what_the_python_mirror_computes(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    t = pending_time(w) + 5
    params, s0 = w.open()
    s1, claimed = fund(w, s0, "HashTimeLock", 0, ETHER, htlc_data(BOB, t + 3 * DELTA))
    s2, game = fund(w, s1, "TicTacToe", ETHER, ETHER, ttt_data(ALICE))
    s3, silent = fund(w, s2, "HashTimeLock", 2 * ETHER, 0, htlc_data(ALICE, t + 3 * DELTA))
    s4, bogus = fund(w, s3, "TicTacToe", ETHER // 2, ETHER // 2, ttt_data(ALICE))
    assert (s4.cash_alice, s4.cash_bob) == (5 * ETHER // 2, 3 * ETHER // 2)
    window_end = registered_at(w, params, claimed, w.bob, t)
    registered_at(w, params, game, w.alice, t + 1)
    registered_at(w, params, released_to_bob(bogus, 3 * ETHER), w.bob, t + 2)
    at(w, window_end + 1)
    w.contract.execute(w.alice, params, claimed.nid, CLAIM, PREIMAGE)
    at(w, window_end + 2)
    w.contract.execute(w.alice, params, game.nid, MOVE, cell(4))
    deadline = close(w, params, s4, w.alice).event("CloseRegistered").args["deadline"]
    at(w, deadline + DELTA + 1)
    channel_id = s4.channel_id
    registered = {
        f.nid: nc.state(channel_id, f.nid)
        for f in s4.nanocontracts if (nc := w.contract.nanocontract(channel_id, f.nid)).registered
    }
    assert set(registered) == {claimed.nid, game.nid, bogus.nid}
    alice, bob = payouts(params, s4, registered)
    # cash 2.5 / 1.5; claimed: 1 to Alice; game: the stakes back; silent and bogus: their fundings.
    assert (alice, bob) == (7 * ETHER, 3 * ETHER)
    before = balances(w)
    paid = w.contract.finalize(w.mallory, params, s4.nanocontracts).event("Finalized").args
    assert (paid["version"], paid["payoutAlice"], paid["payoutBob"]) == (4, alice, bob)
    assert_paid(w, before, params, alice, bob)


def test_finalize_of_an_open_channel_and_twice_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s1, nano = with_htlc(w, timeout=2**40)
    with unchanged(w, params), pytest.raises(errors.ChannelsWrongPhase) as exc:
        w.contract.finalize(w.alice, params, ())
    assert exc.value.fields == {"channelId": s1.channel_id, "phase": Phase.OPEN}
    window_end = registered_at(w, params, nano, w.bob, pending_time(w))
    at(w, window_end + 1)
    deadline = close(w, params, s1, w.alice).event("CloseRegistered").args["deadline"]
    at(w, deadline + DELTA + 1)
    w.contract.finalize(w.alice, params, s1.nanocontracts)
    with unchanged(w, params, nano.nid):
        with pytest.raises(errors.ChannelsWrongPhase) as exc:
            w.contract.finalize(w.alice, params, s1.nanocontracts)
        assert exc.value.fields == {"channelId": s1.channel_id, "phase": Phase.CLOSED}
        with pytest.raises(errors.ChannelsWrongPhase):
            w.contract.finalize(w.alice, params, ())
        with pytest.raises(errors.ChannelsWrongPhase):
            w.contract.execute(w.bob, params, nano.nid, CLAIM, PREIMAGE)
        with pytest.raises(errors.ChannelsWrongPhase):
            close(w, params, s1, w.bob)
    with pytest.raises(errors.ChannelsChannelExists):  # the id is taken for good
        w.contract.create(w.alice, params)


# ------------------------------------------------------------------------------ cooperative close

ZERO_ADDRESS = "0x" + "00" * 20
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def cooperative_close(w: MSWorld, params: Params, final: FinalChannelState):
    """Mallory (anyone) submits `final` signed by Alice and Bob; he pays the gas, so the parties'
    balances move by their payouts exactly."""
    return w.contract.cooperative_close(w.mallory, params, final, w.sign(final, w.alice), w.sign(final, w.bob))


def assert_closed(w: MSWorld, channel_id: bytes) -> None:
    stored = w.contract.channel(channel_id)
    assert (stored.phase, stored.deadline, stored.version, stored.balance_alice) == (Phase.CLOSED, 0, 0, 0)


@pytest.mark.parametrize(("version", "cash"), [
    (0, (6 * ETHER, 4 * ETHER)),  # the initial cash: unlike close, not exempt from signatures
    (1, (7 * ETHER, 3 * ETHER)),
    (5, (0, 10 * ETHER)),  # a payout of 0 is skipped
    (2**64 - 1, (10 * ETHER, 0)),
])
def test_cooperative_close_pays_out_at_once_in_open(any_ms_world: MSWorld, version: int,
                                                    cash: tuple[int, int]) -> None:
    """In Open any version will do: nothing is registered to compare it with."""
    w = any_ms_world
    params, s0 = w.open()
    final = FinalChannelState(s0.channel_id, version, *cash)
    before = balances(w)
    receipt = cooperative_close(w, params, final)
    assert [e.name for e in receipt.events] == ["CooperativelyClosed"]
    assert receipt.event("CooperativelyClosed").args == {
        "channelId": s0.channel_id, "version": version, "payoutAlice": cash[0], "payoutBob": cash[1],
    }
    assert_paid(w, before, params, *cash)
    assert_closed(w, s0.channel_id)


@pytest.mark.parametrize("offset", [-1, 0, 1, DELTA + 1])
def test_cooperative_close_ends_a_dispute_even_after_the_deadline(any_ms_world: MSWorld, offset: int) -> None:
    """docs/protocol.md §10.7, path 6. A hash time lock registered while Open and claimed on chain
    during the dispute, a game registered during it: the final state's cash is paid as signed,
    at D − 1, D, D + 1 and after D + Δ, as long as nobody has finalized."""
    w = any_ms_world
    t = pending_time(w) + 5
    params, s1, htlc = with_htlc(w, timeout=t + 10 * DELTA)
    s2, game = fund(w, s1, "TicTacToe", ETHER, ETHER, ttt_data(ALICE))
    window_end = registered_at(w, params, htlc, w.bob, t)
    at(w, t + 5)
    deadline = close(w, params, s2, w.alice).event("CloseRegistered").args["deadline"]
    assert deadline == window_end + 5
    at(w, window_end + 1)
    w.contract.execute(w.bob, params, htlc.nid, CLAIM, PREIMAGE)
    at(w, window_end + 2)
    register(w, params, game, w.alice)
    at(w, deadline + offset)
    final = FinalChannelState(s2.channel_id, 3, 2 * ETHER, 8 * ETHER)  # whatever the parties agreed
    before = balances(w)
    paid = cooperative_close(w, params, final).event("CooperativelyClosed").args
    assert (paid["version"], paid["payoutAlice"], paid["payoutBob"]) == (3, 2 * ETHER, 8 * ETHER)
    assert_paid(w, before, params, 2 * ETHER, 8 * ETHER)
    assert_closed(w, s2.channel_id)
    with unchanged(w, params, htlc.nid, game.nid):
        with pytest.raises(errors.ChannelsWrongPhase) as exc:
            w.contract.finalize(w.mallory, params, s2.nanocontracts)
        assert exc.value.fields == {"channelId": s2.channel_id, "phase": Phase.CLOSED}
        with pytest.raises(errors.ChannelsWrongPhase):
            w.contract.execute(w.alice, params, game.nid, MOVE, cell(4))
        with pytest.raises(errors.ChannelsWrongPhase):
            register(w, params, replace(game, version=1), w.bob)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_cooperative_close_at_or_below_the_registered_version_is_rejected(any_ms_world: MSWorld,
                                                                          version: int) -> None:
    w = any_ms_world
    params, s0 = w.open()
    s2 = ChannelState(s0.channel_id, 2, 5 * ETHER, 5 * ETHER)
    deadline = close(w, params, s2, w.alice).event("CloseRegistered").args["deadline"]
    stale = FinalChannelState(s0.channel_id, version, 4 * ETHER, 6 * ETHER)
    for t in (deadline, deadline + 1):
        at(w, t)
        with unchanged(w, params):
            with pytest.raises(errors.ChannelsStaleVersion) as exc:
                cooperative_close(w, params, stale)
            assert exc.value.fields == {"registered": 2, "submitted": version}
            with pytest.raises(errors.ChannelsStaleVersion):  # checked before the signatures
                w.contract.cooperative_close(w.mallory, params, stale, b"", b"")
    before = balances(w)
    cooperative_close(w, params, replace(stale, version=3))
    assert_paid(w, before, params, 4 * ETHER, 6 * ETHER)


@pytest.mark.parametrize("wrong", ["missing", "mallory", "the other party", "a channel state", "another contract",
                                   "high s"])
@pytest.mark.parametrize("whose", ["alice", "bob"])
def test_cooperative_close_needs_both_parties_signatures_on_the_final_state(any_ms_world: MSWorld, whose: str,
                                                                            wrong: str) -> None:
    """Each signature must be its party's, on this FinalChannelState in this contract's domain: an
    ordinary ChannelState signature on the same values is none."""
    w = any_ms_world
    params, s0 = w.open()
    final = FinalChannelState(s0.channel_id, 1, 4 * ETHER, 6 * ETHER)
    signer = w.alice if whose == "alice" else w.bob
    if wrong == "missing":
        bad = b""
    elif wrong == "mallory":
        bad = w.sign(final, w.mallory)
    elif wrong == "the other party":
        bad = w.sign(final, other(w, signer))
    elif wrong == "a channel state":
        bad = w.sign(ChannelState(final.channel_id, final.version, final.cash_alice, final.cash_bob), signer)
    elif wrong == "another contract":
        twin = MSContract.deploy(w.chain, w.chain.dev_accounts[0])
        bad = sign(digest(twin.domain, final), signer.key)
    else:  # the same signature with s mirrored: valid for the curve, refused as malleable
        good = w.sign(final, signer)
        high = SECP256K1_N - int.from_bytes(good[32:64], "big")
        bad = good[:32] + high.to_bytes(32, "big") + bytes([55 - good[64]])
    sigs = {"alice": w.sign(final, w.alice), "bob": w.sign(final, w.bob), whose: bad}
    expected = ZERO_ADDRESS if wrong in ("missing", "high s") else recover(digest(w.contract.domain, final), bad)
    with unchanged(w, params), pytest.raises(errors.ChannelsInvalidSignature) as exc:
        w.contract.cooperative_close(w.mallory, params, final, sigs["alice"], sigs["bob"])
    assert exc.value.fields == {"expectedSigner": signer.address, "recovered": expected}


def test_final_and_channel_state_signatures_are_not_interchangeable(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s0 = w.open()
    final = FinalChannelState(s0.channel_id, 1, 4 * ETHER, 6 * ETHER)
    ordinary = ChannelState(s0.channel_id, 1, 4 * ETHER, 6 * ETHER)
    with unchanged(w, params), pytest.raises(errors.ChannelsInvalidSignature) as exc:
        w.contract.cooperative_close(w.mallory, params, final, w.sign(ordinary, w.alice), w.sign(ordinary, w.bob))
    assert exc.value.fields["expectedSigner"] == w.alice.address
    with unchanged(w, params), pytest.raises(errors.ChannelsInvalidSignature) as exc:
        w.contract.close(w.bob, params, ordinary, w.sign(final, w.alice))
    assert exc.value.fields["expectedSigner"] == w.alice.address


@pytest.mark.parametrize("cash", [
    (6 * ETHER, 4 * ETHER - 1),
    (6 * ETHER, 4 * ETHER + 1),
    (0, 0),
    (10 * ETHER + 1, 2**256 - 1),  # Alice's cash above the total: no underflow in total - cashAlice
    (2**256 - 1, 10 * ETHER + 1),  # adds up to the total in wrapping arithmetic
    (2**255, 2**255),  # adds up to 0 in wrapping arithmetic
])
def test_cooperative_close_with_funds_not_conserved_is_rejected(any_ms_world: MSWorld,
                                                                cash: tuple[int, int]) -> None:
    w = any_ms_world
    params, s0 = w.open()
    raw = (s0.channel_id, 1, *cash)  # beyond what FinalChannelState accepts: through the ABI
    d = bytes(w.contract.contract.functions.hashFinalChannelState(raw).call())
    call = w.contract.contract.functions.cooperativeClose(params.as_abi(), raw, sign(d, w.alice.key),
                                                          sign(d, w.bob.key))
    with unchanged(w, params), pytest.raises(errors.ChannelsBalancesNotConserved) as exc:
        w.chain.transact(w.mallory, call)
    assert exc.value.fields == {"balanceAlice": cash[0], "balanceBob": cash[1], "total": params.total}


def test_a_final_state_of_another_channel_or_contract_is_rejected(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s0 = w.open()
    other_params, other_s0 = w.open()
    foreign = FinalChannelState(other_s0.channel_id, 1, 4 * ETHER, 6 * ETHER)
    with unchanged(w, params), pytest.raises(errors.ChannelsWrongChannel) as exc:
        cooperative_close(w, params, foreign)
    assert exc.value.fields == {"expected": s0.channel_id, "received": other_s0.channel_id}
    # The same parameters open a channel of another id on another deployment: a final state of
    # this one is of no use there, and one with that id signed for this contract neither.
    twin = MSContract.deploy(w.chain, w.chain.dev_accounts[0])
    twin.create(w.alice, params)
    twin.confirm(w.bob, params)
    twin_id = twin.channel_id(params)
    final = FinalChannelState(s0.channel_id, 1, 4 * ETHER, 6 * ETHER)
    sigs = (w.sign(final, w.alice), w.sign(final, w.bob))
    with pytest.raises(errors.ChannelsWrongChannel) as exc:
        twin.cooperative_close(w.mallory, params, final, *sigs)
    assert exc.value.fields == {"expected": twin_id, "received": s0.channel_id}
    retargeted = replace(final, channel_id=twin_id)
    with pytest.raises(errors.ChannelsInvalidSignature):
        twin.cooperative_close(w.mallory, params, retargeted, w.sign(retargeted, w.alice),
                               w.sign(retargeted, w.bob))
    assert twin.channel(twin_id).phase == Phase.OPEN
    with unchanged(w, params), pytest.raises(errors.ChannelsWrongPhase) as exc:  # parameters of no channel
        cooperative_close(w, replace(params, nonce=params.nonce + 10**6), final)
    assert exc.value.fields["phase"] == Phase.NONE


@pytest.mark.parametrize("phase", ["none", "initialising", "finalized", "cooperatively closed"])
def test_cooperative_close_in_a_channel_that_is_neither_open_nor_closing_is_rejected(any_ms_world: MSWorld,
                                                                                    phase: str) -> None:
    w = any_ms_world
    params = w.params()
    channel_id = w.contract.channel_id(params)
    if phase != "none":
        w.contract.create(w.alice, params)
    if phase in ("finalized", "cooperatively closed"):
        w.contract.confirm(w.bob, params)
    if phase == "finalized":
        deadline = w.contract.close(w.alice, params, ChannelState.initial(params, channel_id)) \
            .event("CloseRegistered").args["deadline"]
        at(w, deadline + 1)
        w.contract.finalize(w.mallory, params, ())
    if phase == "cooperatively closed":
        cooperative_close(w, params, FinalChannelState(channel_id, 1, 5 * ETHER, 5 * ETHER))
    expected = {"none": Phase.NONE, "initialising": Phase.INITIALISING}.get(phase, Phase.CLOSED)
    final = FinalChannelState(channel_id, 2, 3 * ETHER, 7 * ETHER)
    with unchanged(w, params), pytest.raises(errors.ChannelsWrongPhase) as exc:
        cooperative_close(w, params, final)
    assert exc.value.fields == {"channelId": channel_id, "phase": expected}


def test_after_a_cooperative_close_nothing_else_runs(any_ms_world: MSWorld) -> None:
    """A hash time lock registered while Open, its window over: closed cooperatively first, the
    channel takes no registration, execution, close, finalize or refund any more."""
    w = any_ms_world
    params, s1, htlc = with_htlc(w, timeout=2**40)
    window_end = registered_at(w, params, htlc, w.bob, pending_time(w))
    at(w, window_end + 1)
    before = balances(w)
    cooperative_close(w, params, FinalChannelState(s1.channel_id, 2, 5 * ETHER, 5 * ETHER))
    assert_paid(w, before, params, 5 * ETHER, 5 * ETHER)
    claimed = NanocontractState(htlc.channel_id, htlc.nid, htlc.app, 1, 0, 0, 0, ETHER, htlc.storage)
    calls = {
        "execute": lambda: w.contract.execute(w.bob, params, htlc.nid, CLAIM, PREIMAGE),
        "register": lambda: register(w, params, claimed, w.bob),
        "close": lambda: close(w, params, s1, w.alice),
        "finalize": lambda: w.contract.finalize(w.mallory, params, s1.nanocontracts),
        "refund": lambda: w.contract.refund(w.mallory, params),
        "confirm": lambda: w.contract.confirm(w.bob, params),
        "cooperativeClose": lambda: cooperative_close(w, params, FinalChannelState(s1.channel_id, 3, 0, 10 * ETHER)),
    }
    with unchanged(w, params, htlc.nid):
        for name, call in calls.items():
            with pytest.raises(errors.ChannelsWrongPhase) as exc:
                call()
            assert exc.value.fields == {"channelId": s1.channel_id, "phase": Phase.CLOSED}, name
        with pytest.raises(errors.ChannelsChannelExists):  # the id is taken for good
            w.contract.create(w.alice, params)


def test_cooperative_close_deletes_the_registered_fundings(any_ms_world: MSWorld) -> None:
    """The hash of the registered state's fundings goes with the channel (finalize deletes it
    too): found in storage as keccak(abi.encode(fundings)), zero after the cooperative close."""
    w = any_ms_world
    params, s1, htlc = with_htlc(w, timeout=2**40)
    close(w, params, s1, w.alice)
    expected = keccak(encode(["(bytes32,uint256,uint256)[]"], [[f.as_abi() for f in s1.nanocontracts]]))

    def stored(slot: int) -> bytes:
        key = keccak(s1.channel_id + slot.to_bytes(32, "big"))
        return bytes(w.chain.w3.eth.get_storage_at(w.contract.address, int.from_bytes(key, "big")))

    [slot] = [i for i in range(16) if stored(i) == expected]
    cooperative_close(w, params, FinalChannelState(s1.channel_id, 2, 5 * ETHER, 5 * ETHER))
    assert stored(slot) == bytes(32)
