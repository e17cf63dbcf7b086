"""Watchtowers on a real EVM, on the embedded chain and on anvil: PaymentContract.refute and
MSContract.refute, registerFor and executeFor, the rewards they record and what finalize pays.

A party P signs a Monitoring (or an Execution) naming the tower, the exact state the other party
signed (or the exact call) and the reward. Every test asserts the balances of the parties, the
towers and the contract, the events with their arguments, and that a refused call changed
nothing (the channel, the nanocontracts involved and every balance).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from perun import errors
from perun.chain.backend import ETHER
from perun.core.channel import Params, PaymentState, Phase
from perun.core.eip712 import sign
from perun.core.monitoring import CHANNEL_ITEM, MAX_REWARD, Execution, Monitoring, sign_authorisation
from perun.core.multistate import ChannelState, FinalChannelState, NanocontractState, digest, nanocontract_id
from tests.conftest import DELTA, MSWorld, World
from tests.contracts.test_ms_contract import (
    ALICE,
    BOB,
    CLAIM,
    PREIMAGE,
    RECLAIM,
    at,
    fund,
    fundings_abi,
    htlc_data,
    pending_time,
    ttt_data,
)

REWARD = ETHER // 10
ZERO = bytes(32)


# ------------------------------------------------------------------------------ helpers


def tower_of(w: World | MSWorld) -> LocalAccount:
    return w.chain.new_account(10 * ETHER)


def monitoring(w: World | MSWorld, state, payer: LocalAccount, tower: LocalAccount,
               reward: int = REWARD) -> tuple[Monitoring, bytes]:
    """`payer`'s authorisation for `tower` to submit `state`, and its signature."""
    m = Monitoring.of(w.contract.domain, state, tower.address, reward)
    return m, sign_authorisation(w.contract.domain, m, payer.key)


def signed_by(w: World | MSWorld, m: Monitoring | Execution, who: LocalAccount) -> bytes:
    return sign_authorisation(w.contract.domain, m, who.key)


def snapshot(w: World | MSWorld, params: Params, accounts: tuple[str, ...], nids: tuple[bytes, ...] = ()) -> tuple:
    channel_id = w.contract.channel_id(params)
    nanos = tuple(w.contract.nanocontract(channel_id, nid) for nid in nids)
    addresses = (w.contract.address, w.alice.address, w.bob.address, w.mallory.address, *accounts)
    return w.contract.channel(channel_id), nanos, tuple(w.chain.balance(a) for a in addresses)


@contextmanager
def unchanged(w: World | MSWorld, params: Params, *accounts: str, nids: tuple[bytes, ...] = ()) -> Iterator[None]:
    """The block changes neither the channel, nor these nanocontracts, nor any balance."""
    before = snapshot(w, params, accounts, nids)
    yield
    assert snapshot(w, params, accounts, nids) == before


def balances(w: World | MSWorld, *accounts: str) -> tuple[int, ...]:
    return tuple(w.chain.balance(a) for a in (w.alice.address, w.bob.address, w.contract.address, *accounts))


def names(receipt) -> list[str]:
    return [e.name for e in receipt.events]


# ------------------------------------------------------------------------------ PaymentContract


def disputed(w: World, params: Params | None = None):
    """An open channel of 6 + 4 ETH: Bob paid Alice 1 ETH (v1, Alice 7 / Bob 3), then Alice paid
    Bob 2 (v2, 5 / 5) and 1 (v3, 4 / 6). Alice closes with the stale v1 and Bob's signature on it."""
    params, s0 = w.open(params)
    s1 = s0.pay(ETHER, from_alice=False)
    s2 = s1.pay(2 * ETHER, from_alice=True)
    s3 = s2.pay(ETHER, from_alice=True)
    deadline = w.contract.close(w.alice, params, s1, w.sign(s1, w.bob)).event("CloseRegistered").args["deadline"]
    return params, (s0, s1, s2, s3), deadline


def erc20(w: World, *holders: LocalAccount):
    address = w.chain.deploy(w.chain.dev_accounts[0], "TestToken")
    token = w.chain.contract("TestToken", address)
    for holder in holders:
        w.chain.transact(holder, token.functions.mint(holder.address, 100 * ETHER))
        w.chain.transact(holder, token.functions.approve(w.contract.address, 2**256 - 1))
    return token


@pytest.mark.parametrize("case", ["eth-bob-pays", "eth-alice-pays", "erc20-bob-pays"])
def test_a_tower_refutes_a_stale_close_and_is_paid_at_finalize(any_world: World, case: str) -> None:
    w = any_world
    tower = tower_of(w)
    token = erc20(w, w.alice, w.bob) if case.startswith("erc20") else None
    params = w.params(token=token.address) if token else w.params()
    payer_is_bob = case.endswith("bob-pays")
    params, s0 = w.open(params)
    if payer_is_bob:  # Alice closes with v1 (7 / 3); Bob's tower answers with v3 (4 / 6), signed by Alice
        stale = s0.pay(ETHER, from_alice=False)
        latest = stale.pay(2 * ETHER, from_alice=True).pay(ETHER, from_alice=True)
        closer, payer = w.alice, w.bob
    else:  # the mirror: Bob closes with v1 (5 / 5); Alice's tower answers with v3 (8 / 2), signed by Bob
        stale = s0.pay(ETHER, from_alice=True)
        latest = stale.pay(2 * ETHER, from_alice=False).pay(ETHER, from_alice=False)
        closer, payer = w.bob, w.alice
    signer = w.alice if payer_is_bob else w.bob
    deadline = w.contract.close(closer, params, stale, w.sign(stale, payer)).event("CloseRegistered").args["deadline"]
    m, m_sig = monitoring(w, latest, payer, tower)

    receipt = w.contract.refute(tower, params, latest, w.sign(latest, signer), m, m_sig)
    cid = latest.channel_id
    assert names(receipt) == ["CloseRegistered", "RewardRecorded"]
    assert receipt.event("CloseRegistered").args == {
        "channelId": cid, "by": tower.address, "version": 3, "balanceAlice": latest.balance_alice,
        "balanceBob": latest.balance_bob, "deadline": deadline,  # the window is not extended
    }
    assert receipt.event("RewardRecorded").args == {
        "channelId": cid, "nid": ZERO, "tower": tower.address, "payer": payer.address, "amount": REWARD,
    }
    stored = w.contract.channel(cid)
    assert (stored.phase, stored.deadline, stored.version, stored.balance_alice, stored.rewards) == \
        (Phase.CLOSING, deadline, 3, latest.balance_alice, 1)

    at(w, deadline + 1)
    if token:
        held = lambda: tuple(token.functions.balanceOf(a).call()  # noqa: E731
                             for a in (w.alice.address, w.bob.address, w.contract.address, tower.address))
    else:
        held = lambda: balances(w, tower.address)  # noqa: E731
    before = held()
    eth_before = balances(w, tower.address)
    receipt = w.contract.finalize(w.mallory, params)
    paid_alice = latest.balance_alice - (0 if payer_is_bob else REWARD)
    paid_bob = latest.balance_bob - (REWARD if payer_is_bob else 0)
    assert names(receipt) == ["RewardPaid", "Finalized"]
    assert receipt.event("RewardPaid").args == {
        "channelId": cid, "nid": ZERO, "tower": tower.address, "payer": payer.address, "amount": REWARD,
    }
    assert receipt.event("Finalized").args == {  # what the parties got, after the reward
        "channelId": cid, "version": 3, "balanceAlice": paid_alice, "balanceBob": paid_bob,
    }
    assert paid_alice + paid_bob + REWARD == params.total
    assert held() == (before[0] + paid_alice, before[1] + paid_bob, before[2] - params.total, before[3] + REWARD)
    if token:  # no ETH moved
        assert balances(w, tower.address) == eth_before
    stored = w.contract.channel(cid)
    assert (stored.phase, stored.version, stored.balance_alice, stored.rewards) == (Phase.CLOSED, 0, 0, 0)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_refutation_until_the_deadline_inclusive(any_world: World, offset: int) -> None:
    w = any_world
    tower = tower_of(w)
    params, (s0, s1, s2, s3), deadline = disputed(w)
    m, m_sig = monitoring(w, s3, w.bob, tower)
    at(w, deadline + offset)
    if offset > 0:
        with unchanged(w, params, tower.address), pytest.raises(errors.ChannelsDisputeWindowOver) as exc:
            w.contract.refute(tower, params, s3, w.sign(s3, w.alice), m, m_sig)
        assert exc.value.fields == {"deadline": deadline}
        return
    event = w.contract.refute(tower, params, s3, w.sign(s3, w.alice), m, m_sig).event("CloseRegistered")
    assert (event.args["by"], event.args["version"], event.args["deadline"]) == (tower.address, 3, deadline)
    assert w.contract.channel(s3.channel_id).version == 3


REJECTIONS = ["wrong_tower", "wrong_channel", "wrong_state", "wrong_version", "wrong_nid", "replayed", "not_a_party",
              "reward_too_large", "state_signed_by_the_payer"]


@pytest.mark.parametrize("offset", [-1, 0, 1])
@pytest.mark.parametrize("case", REJECTIONS)
def test_a_refutation_must_be_exactly_what_was_authorised(any_world: World, case: str, offset: int) -> None:
    """Every check of the authorisation comes before the dispute window: the same error at the
    deadline -1, 0 and +1. Two exceptions, as for `close`: the replay's version and the state's
    signature are checked after the window, so at +1 both say ChannelsDisputeWindowOver."""
    w = any_world
    tower = tower_of(w)
    params, (s0, s1, s2, s3), deadline = disputed(w)
    cid = s3.channel_id
    sender, sig = tower, w.sign(s3, w.alice)
    m, m_sig = monitoring(w, s3, w.bob, tower)
    if case == "wrong_tower":
        sender = w.mallory
        expected = errors.WatchtowersWrongTower, {"tower": tower.address, "caller": w.mallory.address}
    elif case == "wrong_channel":  # Bob's authorisation of the same version of another of his channels
        other_params, other_s0 = w.open()
        other = other_s0.pay(ETHER, from_alice=False).pay(2 * ETHER, from_alice=True).pay(ETHER, from_alice=True)
        m, m_sig = monitoring(w, other, w.bob, tower)
        expected = errors.ChannelsWrongChannel, {"expected": cid, "received": other.channel_id}
    elif case == "wrong_state":  # another state with the same version
        twin = PaymentState(cid, 3, s3.balance_alice + 1, s3.balance_bob - 1)
        m, m_sig = monitoring(w, twin, w.bob, tower)
        expected = errors.WatchtowersWrongState, {"submitted": w.contract.domain.digest(s3),
                                                  "authorised": w.contract.domain.digest(twin)}
    elif case == "wrong_version":
        s4 = s3.pay(ETHER, from_alice=True)
        m, m_sig = monitoring(w, s4, w.bob, tower)
        expected = errors.WatchtowersWrongVersion, {"submitted": 3, "authorised": 4}
    elif case == "wrong_nid":  # an authorisation for a nanocontract is none for the channel's state
        m = replace(m, nid=b"\x01" * 32)
        m_sig = signed_by(w, m, w.bob)
        expected = errors.WatchtowersWrongNanocontract, {"submitted": ZERO, "authorised": b"\x01" * 32}
    elif case == "replayed":  # the tower's own refutation, submitted again
        w.contract.refute(tower, params, s3, sig, m, m_sig)
        expected = (errors.ChannelsDisputeWindowOver, {"deadline": deadline}) if offset > 0 else \
            (errors.ChannelsStaleVersion, {"registered": 3, "submitted": 3})
    elif case == "not_a_party":
        m_sig = signed_by(w, m, w.mallory)
        expected = errors.WatchtowersNotAParty, {"signer": w.mallory.address}
    elif case == "reward_too_large":  # more than Bob's balance in v3
        m, m_sig = monitoring(w, s3, w.bob, tower, reward=s3.balance_bob + 1)
        expected = errors.WatchtowersRewardTooLarge, {"reward": s3.balance_bob + 1, "limit": s3.balance_bob}
    else:  # Bob authorises, so the state must carry Alice's signature, not his own
        sig = w.sign(s3, w.bob)
        expected = (errors.ChannelsDisputeWindowOver, {"deadline": deadline}) if offset > 0 else \
            (errors.ChannelsInvalidSignature, {"expectedSigner": w.alice.address, "recovered": w.bob.address})
    at(w, deadline + offset)
    cls, fields = expected
    with unchanged(w, params, tower.address), pytest.raises(cls) as exc:
        w.contract.refute(sender, params, s3, sig, m, m_sig)
    assert type(exc.value) is cls
    assert exc.value.fields == fields


def test_a_reward_above_max_reward_is_rejected(any_world: World) -> None:
    """MAX_REWARD = 2**88 - 1 (a reward is stored in 88 bits); the Python type refuses more, so
    the authorisation is sent as a bare ABI tuple, signed with the contract's own digest."""
    w = any_world
    tower = tower_of(w)
    params, (s0, s1, s2, s3), deadline = disputed(w)
    assert w.contract.contract.functions.MAX_REWARD().call() == MAX_REWARD == 2**88 - 1
    m = Monitoring.of(w.contract.domain, s3, tower.address, 0)
    raw = (*m.as_abi()[:5], MAX_REWARD + 1)
    raw_sig = sign(bytes(w.contract.contract.functions.hashMonitoring(raw).call()), w.bob.key)
    call = w.contract.contract.functions.refute(params.as_abi(), s3.as_abi(), w.sign(s3, w.alice), raw, raw_sig)
    with unchanged(w, params, tower.address), pytest.raises(errors.WatchtowersRewardTooLarge) as exc:
        w.chain.transact(tower, call)
    assert exc.value.fields == {"reward": MAX_REWARD + 1, "limit": MAX_REWARD}


@pytest.mark.parametrize("phase", [Phase.OPEN, Phase.CLOSED])
def test_a_tower_never_starts_a_close(any_world: World, phase: Phase) -> None:
    w = any_world
    tower = tower_of(w)
    params, s0 = w.open()
    s1 = s0.pay(ETHER, from_alice=True)
    if phase == Phase.CLOSED:
        w.contract.close(w.alice, params, s0)
        w.chain.advance_time(DELTA + 1)
        w.contract.finalize(w.mallory, params)
    m, m_sig = monitoring(w, s1, w.bob, tower)
    with unchanged(w, params, tower.address), pytest.raises(errors.ChannelsWrongPhase) as exc:
        w.contract.refute(tower, params, s1, w.sign(s1, w.alice), m, m_sig)
    assert exc.value.fields == {"channelId": s1.channel_id, "phase": phase}


def test_a_higher_close_by_the_party_forgets_the_towers_reward(any_world: World) -> None:
    w = any_world
    tower = tower_of(w)
    params, (s0, s1, s2, s3), deadline = disputed(w)
    s4 = s3.pay(ETHER, from_alice=True)  # 3 / 7
    m, m_sig = monitoring(w, s3, w.bob, tower)
    w.contract.refute(tower, params, s3, w.sign(s3, w.alice), m, m_sig)
    assert w.contract.channel(s3.channel_id).rewards == 1
    receipt = w.contract.close(w.bob, params, s4, w.sign(s4, w.alice))
    assert names(receipt) == ["CloseRegistered"]
    stored = w.contract.channel(s3.channel_id)
    assert (stored.version, stored.rewards, stored.deadline) == (4, 0, deadline)
    at(w, deadline + 1)
    before = balances(w, tower.address)
    receipt = w.contract.finalize(w.mallory, params)
    assert names(receipt) == ["Finalized"]
    assert receipt.event("Finalized").args == {
        "channelId": s3.channel_id, "version": 4, "balanceAlice": 3 * ETHER, "balanceBob": 7 * ETHER}
    assert balances(w, tower.address) == (before[0] + 3 * ETHER, before[1] + 7 * ETHER, before[2] - params.total,
                                          before[3])


def test_two_towers_with_the_same_version_only_the_first_counts(any_world: World) -> None:
    w = any_world
    first, second = tower_of(w), tower_of(w)
    params, (s0, s1, s2, s3), deadline = disputed(w)
    sig = w.sign(s3, w.alice)
    m1, m1_sig = monitoring(w, s3, w.bob, first)
    m2, m2_sig = monitoring(w, s3, w.bob, second, reward=2 * REWARD)
    w.contract.refute(first, params, s3, sig, m1, m1_sig)
    with unchanged(w, params, first.address, second.address), pytest.raises(errors.ChannelsStaleVersion) as exc:
        w.contract.refute(second, params, s3, sig, m2, m2_sig)
    assert exc.value.fields == {"registered": 3, "submitted": 3}
    at(w, deadline + 1)
    before = balances(w, first.address, second.address)
    receipt = w.contract.finalize(w.mallory, params)
    assert names(receipt) == ["RewardPaid", "Finalized"]
    assert receipt.event("RewardPaid").args["tower"] == first.address
    assert balances(w, first.address, second.address) == (
        before[0] + 4 * ETHER, before[1] + 6 * ETHER - REWARD, before[2] - params.total, before[3] + REWARD, before[4])


def test_a_second_tower_with_a_higher_version_replaces_the_first(any_world: World) -> None:
    w = any_world
    first, second = tower_of(w), tower_of(w)
    params, (s0, s1, s2, s3), deadline = disputed(w)
    s4 = s3.pay(ETHER, from_alice=True)  # 3 / 7
    m1, m1_sig = monitoring(w, s3, w.bob, first)
    m2, m2_sig = monitoring(w, s4, w.bob, second, reward=2 * REWARD)
    w.contract.refute(first, params, s3, w.sign(s3, w.alice), m1, m1_sig)
    at(w, deadline)
    receipt = w.contract.refute(second, params, s4, w.sign(s4, w.alice), m2, m2_sig)
    assert receipt.event("RewardRecorded").args == {
        "channelId": s4.channel_id, "nid": ZERO, "tower": second.address, "payer": w.bob.address,
        "amount": 2 * REWARD}
    assert w.contract.channel(s4.channel_id).rewards == 1
    at(w, deadline + 1)
    before = balances(w, first.address, second.address)
    receipt = w.contract.finalize(w.mallory, params)
    assert names(receipt) == ["RewardPaid", "Finalized"]
    assert receipt.event("RewardPaid").args == {
        "channelId": s4.channel_id, "nid": ZERO, "tower": second.address, "payer": w.bob.address,
        "amount": 2 * REWARD}
    assert receipt.event("Finalized").args["balanceBob"] == 7 * ETHER - 2 * REWARD
    assert balances(w, first.address, second.address) == (
        before[0] + 3 * ETHER, before[1] + 7 * ETHER - 2 * REWARD, before[2] - params.total, before[3],
        before[4] + 2 * REWARD)


def test_a_cooperative_close_after_a_refutation_pays_no_reward(any_world: World) -> None:
    w = any_world
    tower = tower_of(w)
    params, (s0, s1, s2, s3), deadline = disputed(w)
    m, m_sig = monitoring(w, s3, w.bob, tower)
    w.contract.refute(tower, params, s3, w.sign(s3, w.alice), m, m_sig)
    final = s3.final()
    at(w, deadline + 1)  # even after the deadline, until someone finalizes
    before = balances(w, tower.address)
    receipt = w.contract.cooperative_close(w.mallory, params, final, w.sign(final, w.alice), w.sign(final, w.bob))
    assert names(receipt) == ["CooperativelyClosed"]
    assert balances(w, tower.address) == (before[0] + 4 * ETHER, before[1] + 6 * ETHER, before[2] - params.total,
                                          before[3])
    stored = w.contract.channel(s3.channel_id)
    assert (stored.phase, stored.rewards) == (Phase.CLOSED, 0)
    with pytest.raises(errors.ChannelsWrongPhase):
        w.contract.finalize(w.mallory, params)


def test_a_refutation_without_a_reward_records_nothing(any_world: World) -> None:
    w = any_world
    tower = tower_of(w)
    params, (s0, s1, s2, s3), deadline = disputed(w)
    m, m_sig = monitoring(w, s3, w.bob, tower, reward=0)
    receipt = w.contract.refute(tower, params, s3, w.sign(s3, w.alice), m, m_sig)
    assert names(receipt) == ["CloseRegistered"]
    assert w.contract.channel(s3.channel_id).rewards == 0
    at(w, deadline + 1)
    before = balances(w, tower.address)
    receipt = w.contract.finalize(w.mallory, params)
    assert names(receipt) == ["Finalized"]
    assert balances(w, tower.address) == (before[0] + 4 * ETHER, before[1] + 6 * ETHER, before[2] - params.total,
                                          before[3])


# ------------------------------------------------------------------------------ MSContract


def ms_sign(w: MSWorld, state, who: LocalAccount) -> bytes:
    return w.sign(state, who)


def game_channel(w: MSWorld):
    """An open channel of 6 + 4 ETH whose v1 funds a tic-tac-toe game of 1 ETH each (cash 5 / 3),
    and the game's v5, which Bob won: 2 ETH released to him."""
    params, s0 = w.open()
    s1, game = fund(w, s0, "TicTacToe", ETHER, ETHER, ttt_data(ALICE))
    won = NanocontractState(game.channel_id, game.nid, game.app, 5, 0, 0, 0, 2 * ETHER,
                            ttt_data(ALICE, (1, 1, 0, 2, 2, 2, 1, 0, 0)))
    return params, s0, s1, game, won


def test_a_tower_refutes_with_a_channel_state_and_registers_its_nanocontract(any_ms_world: MSWorld) -> None:
    """Alice closes with the initial state; Bob's tower answers with v1, which lists the game,
    and registers the game's latest state, which Bob won. Both rewards come out of Bob's payout."""
    w = any_ms_world
    tower = tower_of(w)
    params, s0, s1, game, won = game_channel(w)
    cid = s1.channel_id
    t = pending_time(w)
    at(w, t)
    deadline = w.contract.close(w.alice, params, s0).event("CloseRegistered").args["deadline"]
    assert deadline == t + DELTA
    m1, m1_sig = monitoring(w, s1, w.bob, tower, reward=REWARD)
    receipt = w.contract.refute(tower, params, s1, ms_sign(w, s1, w.alice), m1, m1_sig)
    assert names(receipt) == ["CloseRegistered", "RewardRecorded"]
    assert receipt.event("CloseRegistered").args == {
        "channelId": cid, "by": tower.address, "version": 1, "cashAlice": 5 * ETHER, "cashBob": 3 * ETHER,
        "nanocontracts": fundings_abi(s1.nanocontracts), "deadline": deadline}
    assert receipt.event("RewardRecorded").args == {
        "channelId": cid, "nid": ZERO, "tower": tower.address, "payer": w.bob.address, "amount": REWARD}
    assert w.contract.channel(cid).rewards == 1

    m2, m2_sig = monitoring(w, won, w.bob, tower, reward=2 * REWARD)
    assert m2.nid == game.nid
    t = deadline  # the last second a first registration is accepted
    at(w, t)
    receipt = w.contract.register_for(tower, params, won, ms_sign(w, won, w.alice), m2, m2_sig)
    assert names(receipt) == ["NanocontractRegistered", "RewardRecorded"]
    assert receipt.event("NanocontractRegistered").args == {
        "channelId": cid, "nid": game.nid, "by": tower.address, "version": 5, "windowEnd": t + DELTA, "settleBy": 0}
    assert receipt.event("RewardRecorded").args == {
        "channelId": cid, "nid": game.nid, "tower": tower.address, "payer": w.bob.address, "amount": 2 * REWARD}
    assert w.contract.channel(cid).rewards == 3
    assert w.contract.nanocontract(cid, game.nid).state(cid, game.nid) == won

    at(w, t + DELTA)  # the game's window is still open: finalize waits for it
    with unchanged(w, params, tower.address, nids=(game.nid,)), pytest.raises(errors.ChannelsFinalizeTooEarly):
        w.contract.finalize(w.mallory, params, s1.nanocontracts)
    at(w, t + DELTA + 1)
    before = balances(w, tower.address)
    receipt = w.contract.finalize(w.mallory, params, s1.nanocontracts)
    assert names(receipt) == ["RewardPaid", "RewardPaid", "Finalized"]
    assert [e.args for e in receipt.events if e.name == "RewardPaid"] == [
        {"channelId": cid, "nid": ZERO, "tower": tower.address, "payer": w.bob.address, "amount": REWARD},
        {"channelId": cid, "nid": game.nid, "tower": tower.address, "payer": w.bob.address, "amount": 2 * REWARD},
    ]
    bob = 5 * ETHER - 3 * REWARD  # cash 3 + the game's 2, less both rewards
    assert receipt.event("Finalized").args == {
        "channelId": cid, "version": 1, "payoutAlice": 5 * ETHER, "payoutBob": bob}
    assert balances(w, tower.address) == (before[0] + 5 * ETHER, before[1] + bob, before[2] - params.total,
                                          before[3] + 3 * REWARD)
    stored = w.contract.channel(cid)
    assert (stored.phase, stored.rewards) == (Phase.CLOSED, 0)


def test_register_for_in_an_open_channel_never_starts_a_registration(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    tower = tower_of(w)
    params, s0, s1, game, won = game_channel(w)
    m, m_sig = monitoring(w, won, w.bob, tower)
    with unchanged(w, params, tower.address, nids=(game.nid,)), pytest.raises(errors.ChannelsWrongPhase) as exc:
        w.contract.register_for(tower, params, won, ms_sign(w, won, w.alice), m, m_sig)
    assert exc.value.fields == {"channelId": s1.channel_id, "phase": Phase.OPEN}


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_register_for_replaces_a_stale_registration_in_an_open_channel_until_its_window_ends(
        any_ms_world: MSWorld, offset: int) -> None:
    w = any_ms_world
    tower = tower_of(w)
    params, s0, s1, game, won = game_channel(w)
    cid = s1.channel_id
    t = pending_time(w)
    at(w, t)
    w.contract.register(w.alice, params, game, ms_sign(w, game, w.bob))  # stale: Bob has since won
    window_end = t + DELTA
    m, m_sig = monitoring(w, won, w.bob, tower)
    at(w, window_end + offset)
    if offset > 0:
        with unchanged(w, params, tower.address, nids=(game.nid,)), \
                pytest.raises(errors.ChannelsDisputeWindowOver) as exc:
            w.contract.register_for(tower, params, won, ms_sign(w, won, w.alice), m, m_sig)
        assert exc.value.fields == {"deadline": window_end}
        return
    receipt = w.contract.register_for(tower, params, won, ms_sign(w, won, w.alice), m, m_sig)
    assert names(receipt) == ["NanocontractRegistered", "RewardRecorded"]
    event = receipt.event("NanocontractRegistered").args
    assert (event["by"], event["version"], event["windowEnd"]) == (tower.address, 5, window_end)
    stored = w.contract.channel(cid)
    assert (stored.phase, stored.rewards) == (Phase.OPEN, 2)
    assert w.contract.nanocontract(cid, game.nid).state(cid, game.nid) == won


@pytest.mark.parametrize("case", ["wrong_tower", "wrong_nid", "wrong_version", "wrong_state", "not_a_party",
                                  "reward_too_large", "alices_reward_too_large", "state_signed_by_the_payer",
                                  "after_the_deadline"])
def test_register_for_must_be_exactly_what_was_authorised(any_ms_world: MSWorld, case: str) -> None:
    w = any_ms_world
    tower = tower_of(w)
    params, s0, s1, game, won = game_channel(w)
    s2, htlc = fund(w, s1, "HashTimeLock", ETHER, 0, htlc_data(ALICE, 2**40))
    cid = s1.channel_id
    deadline = w.contract.close(w.alice, params, s2, ms_sign(w, s2, w.bob)).event("CloseRegistered").args["deadline"]
    sender, sig = tower, ms_sign(w, won, w.alice)
    m, m_sig = monitoring(w, won, w.bob, tower)
    if case == "wrong_tower":
        sender = w.mallory
        expected = errors.WatchtowersWrongTower, {"tower": tower.address, "caller": w.mallory.address}
    elif case == "wrong_nid":  # Bob's authorisation for the hash time lock
        m, m_sig = monitoring(w, replace(htlc, version=5), w.bob, tower)
        expected = errors.WatchtowersWrongNanocontract, {"submitted": game.nid, "authorised": htlc.nid}
    elif case == "wrong_version":
        m, m_sig = monitoring(w, replace(won, version=6), w.bob, tower)
        expected = errors.WatchtowersWrongVersion, {"submitted": 5, "authorised": 6}
    elif case == "wrong_state":
        twin = replace(won, released_alice=ETHER, released_bob=ETHER)
        m, m_sig = monitoring(w, twin, w.bob, tower)
        expected = errors.WatchtowersWrongState, {"submitted": digest(w.contract.domain, won),
                                                  "authorised": digest(w.contract.domain, twin)}
    elif case == "not_a_party":
        m_sig = signed_by(w, m, w.mallory)
        expected = errors.WatchtowersNotAParty, {"signer": w.mallory.address}
    elif case == "reward_too_large":  # more than Bob holds in the game: 2 ETH released
        m, m_sig = monitoring(w, won, w.bob, tower, reward=2 * ETHER + 1)
        expected = errors.WatchtowersRewardTooLarge, {"reward": 2 * ETHER + 1, "limit": 2 * ETHER}
    elif case == "alices_reward_too_large":  # Alice holds nothing in the won game: her own amounts bound it
        m, m_sig = monitoring(w, won, w.alice, tower, reward=1)
        sig = ms_sign(w, won, w.bob)
        expected = errors.WatchtowersRewardTooLarge, {"reward": 1, "limit": 0}
    elif case == "state_signed_by_the_payer":
        sig = ms_sign(w, won, w.bob)
        expected = errors.ChannelsInvalidSignature, {"expectedSigner": w.alice.address, "recovered": w.bob.address}
    else:  # a first registration in a closing channel only until its deadline, as `register`
        at(w, deadline + 1)
        expected = errors.ChannelsDisputeWindowOver, {"deadline": deadline}
    cls, fields = expected
    with unchanged(w, params, tower.address, nids=(game.nid, htlc.nid)), pytest.raises(cls) as exc:
        w.contract.register_for(sender, params, won, sig, m, m_sig)
    assert type(exc.value) is cls
    assert exc.value.fields == fields
    assert not w.contract.nanocontract(cid, game.nid).registered


def htlc_channel(w: MSWorld, amount: int = ETHER, timeout: int = 2**40):
    """An open channel whose v1 funds a hash time lock of `amount` from Alice to Bob."""
    params, s0 = w.open()
    s1, htlc = fund(w, s0, "HashTimeLock", amount, 0, htlc_data(ALICE, timeout))
    return params, s0, s1, htlc


def execution(w: MSWorld, htlc: NanocontractState, payer: LocalAccount, tower: LocalAccount, fun: int = CLAIM,
              z: bytes = PREIMAGE, reward: int = REWARD) -> tuple[Execution, bytes]:
    e = Execution.of(htlc.channel_id, htlc.nid, fun, z, tower.address, reward)
    return e, signed_by(w, e, payer)


def test_a_tower_claims_a_hash_time_lock_as_bob_and_is_paid_at_finalize(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    tower = tower_of(w)
    params, s0, s1, htlc = htlc_channel(w)
    cid = s1.channel_id
    deadline = w.contract.close(w.alice, params, s1, ms_sign(w, s1, w.bob)).event("CloseRegistered").args["deadline"]
    t = pending_time(w)
    at(w, t)
    w.contract.register(w.alice, params, htlc, ms_sign(w, htlc, w.bob))
    e, e_sig = execution(w, htlc, w.bob, tower)
    at(w, t + DELTA + 1)
    receipt = w.contract.execute_for(tower, params, htlc.nid, CLAIM, PREIMAGE, e, e_sig)
    assert names(receipt) == ["NanocontractExecuted", "RewardRecorded"]
    assert receipt.event("NanocontractExecuted").args == {
        "channelId": cid, "nid": htlc.nid, "by": tower.address, "fun": CLAIM, "version": 1, "blockedAlice": 0,
        "blockedBob": 0, "releasedAlice": 0, "releasedBob": ETHER, "data": htlc.storage}
    assert receipt.event("RewardRecorded").args == {
        "channelId": cid, "nid": htlc.nid, "tower": tower.address, "payer": w.bob.address, "amount": REWARD}
    assert w.contract.channel(cid).rewards == 2
    at(w, max(deadline, t + DELTA + 1) + 1)
    before = balances(w, tower.address)
    receipt = w.contract.finalize(w.mallory, params, s1.nanocontracts)
    assert names(receipt) == ["RewardPaid", "Finalized"]
    assert receipt.event("RewardPaid").args == {
        "channelId": cid, "nid": htlc.nid, "tower": tower.address, "payer": w.bob.address, "amount": REWARD}
    assert receipt.event("Finalized").args == {
        "channelId": cid, "version": 1, "payoutAlice": 5 * ETHER, "payoutBob": 5 * ETHER - REWARD}
    assert balances(w, tower.address) == (before[0] + 5 * ETHER, before[1] + 5 * ETHER - REWARD,
                                          before[2] - params.total, before[3] + REWARD)


@pytest.mark.parametrize("case", ["other_fun", "other_z", "wrong_tower", "wrong_nid", "not_a_party",
                                  "signed_by_alice"])
def test_execute_for_makes_exactly_the_authorised_call_as_the_signer(any_ms_world: MSWorld, case: str) -> None:
    w = any_ms_world
    tower = tower_of(w)
    params, s0, s1, htlc = htlc_channel(w)
    t = pending_time(w)
    at(w, t)
    w.contract.register(w.alice, params, htlc, ms_sign(w, htlc, w.bob))
    sender, fun, z = tower, CLAIM, PREIMAGE
    e, e_sig = execution(w, htlc, w.bob, tower)
    if case == "other_fun":
        fun, z = RECLAIM, PREIMAGE
        expected = errors.WatchtowersWrongCall, {"fun": RECLAIM, "argument": keccak(PREIMAGE)}
    elif case == "other_z":
        z = b"\x43" * 32
        expected = errors.WatchtowersWrongCall, {"fun": CLAIM, "argument": keccak(z)}
    elif case == "wrong_tower":
        sender = w.mallory
        expected = errors.WatchtowersWrongTower, {"tower": tower.address, "caller": w.mallory.address}
    elif case == "wrong_nid":
        e = replace(e, nid=b"\x07" * 32)
        e_sig = signed_by(w, e, w.bob)
        expected = errors.WatchtowersWrongNanocontract, {"submitted": htlc.nid, "authorised": b"\x07" * 32}
    elif case == "not_a_party":
        e_sig = signed_by(w, e, w.mallory)
        expected = errors.WatchtowersNotAParty, {"signer": w.mallory.address}
    else:  # Alice's authorisation: the app sees Alice, the lock's sender, who cannot claim
        e_sig = signed_by(w, e, w.alice)
        expected = errors.HashTimeLockWrongCaller, {"caller": ALICE}
    at(w, t + DELTA + 1)
    cls, fields = expected
    with unchanged(w, params, tower.address, nids=(htlc.nid,)), pytest.raises(cls) as exc:
        w.contract.execute_for(sender, params, htlc.nid, fun, z, e, e_sig)
    assert type(exc.value) is cls
    assert exc.value.fields == fields


def test_an_execution_reward_is_not_paid_when_the_nanocontract_no_longer_counts(any_ms_world: MSWorld) -> None:
    """The tower claims while the channel is open; the parties then absorb the lock into their
    cash (v2) and the channel closes over v2, which lists no nanocontract: no reward is paid."""
    w = any_ms_world
    tower = tower_of(w)
    params, s0, s1, htlc = htlc_channel(w)
    t = pending_time(w)
    at(w, t)
    w.contract.register(w.alice, params, htlc, ms_sign(w, htlc, w.bob))
    e, e_sig = execution(w, htlc, w.bob, tower)
    at(w, t + DELTA + 1)
    w.contract.execute_for(tower, params, htlc.nid, CLAIM, PREIMAGE, e, e_sig)
    claimed = w.contract.nanocontract(htlc.channel_id, htlc.nid).state(htlc.channel_id, htlc.nid)
    s2 = s1.absorb(claimed)
    deadline = w.contract.close(w.alice, params, s2, ms_sign(w, s2, w.bob)).event("CloseRegistered").args["deadline"]
    assert w.contract.channel(s2.channel_id).rewards == 2
    at(w, deadline + 1)
    before = balances(w, tower.address)
    receipt = w.contract.finalize(w.mallory, params, ())
    assert names(receipt) == ["Finalized"]
    assert balances(w, tower.address) == (before[0] + 5 * ETHER, before[1] + 5 * ETHER, before[2] - params.total,
                                          before[3])


@pytest.mark.parametrize("by", ["party", "tower"])
def test_a_higher_registration_forgets_a_nanocontract_reward(any_ms_world: MSWorld, by: str) -> None:
    """Tower 1 registers the game's v3 for Bob; a higher version, registered by Alice (signed by
    Bob) or by tower 2 for Bob, replaces it: tower 1 is not paid."""
    w = any_ms_world
    first, second = tower_of(w), tower_of(w)
    params, s0, s1, game, won = game_channel(w)
    cid = s1.channel_id
    deadline = w.contract.close(w.alice, params, s1, ms_sign(w, s1, w.bob)).event("CloseRegistered").args["deadline"]
    v3 = NanocontractState(cid, game.nid, game.app, 3, ETHER, ETHER, 0, 0, ttt_data(BOB, (1, 2, 1) + (0,) * 6))
    m1, m1_sig = monitoring(w, v3, w.bob, first)
    t = pending_time(w)
    at(w, t)
    w.contract.register_for(first, params, v3, ms_sign(w, v3, w.alice), m1, m1_sig)
    if by == "party":  # Alice registers v5 with Bob's signature: Bob's win stands, but not tower 1's reward
        receipt = w.contract.register(w.alice, params, won, ms_sign(w, won, w.bob))
        assert names(receipt) == ["NanocontractRegistered"]
        reward_to = None
    else:
        m2, m2_sig = monitoring(w, won, w.bob, second, reward=3 * REWARD)
        receipt = w.contract.register_for(second, params, won, ms_sign(w, won, w.alice), m2, m2_sig)
        assert names(receipt) == ["NanocontractRegistered", "RewardRecorded"]
        reward_to = second
    at(w, max(deadline, t + DELTA) + 1)
    before = balances(w, first.address, second.address)
    receipt = w.contract.finalize(w.mallory, params, s1.nanocontracts)
    reward = 3 * REWARD if reward_to else 0
    if reward_to:
        assert names(receipt) == ["RewardPaid", "Finalized"]
        assert receipt.event("RewardPaid").args == {
            "channelId": cid, "nid": game.nid, "tower": second.address, "payer": w.bob.address, "amount": reward}
    else:
        assert names(receipt) == ["Finalized"]
    assert receipt.event("Finalized").args == {
        "channelId": cid, "version": 1, "payoutAlice": 5 * ETHER, "payoutBob": 5 * ETHER - reward}
    assert balances(w, first.address, second.address) == (
        before[0] + 5 * ETHER, before[1] + 5 * ETHER - reward, before[2] - params.total, before[3], before[4] + reward)


@pytest.mark.parametrize("reward", [3 * REWARD, 0])
def test_the_latest_tower_to_register_or_call_a_nanocontract_is_the_one_rewarded(any_ms_world: MSWorld,
                                                                                 reward: int) -> None:
    """Tower 1 registers the game's v3 for Bob; after the window tower 2 makes Bob's move with
    his Execution. Tower 2's reward replaces tower 1's, also when it is 0 (then nobody is paid).
    The game is still running at D + Δ: its stakes go back and the nanocontract counts."""
    w = any_ms_world
    first, second = tower_of(w), tower_of(w)
    params, s0, s1, game, won = game_channel(w)
    cid = s1.channel_id
    deadline = w.contract.close(w.alice, params, s1, ms_sign(w, s1, w.bob)).event("CloseRegistered").args["deadline"]
    v3 = NanocontractState(cid, game.nid, game.app, 3, ETHER, ETHER, 0, 0, ttt_data(BOB, (1, 2, 1) + (0,) * 6))
    m1, m1_sig = monitoring(w, v3, w.bob, first)
    t = pending_time(w)
    at(w, t)
    w.contract.register_for(first, params, v3, ms_sign(w, v3, w.alice), m1, m1_sig)
    move = (4).to_bytes(32, "big")  # abi.encode(uint8 4)
    e = Execution.of(cid, game.nid, 0, move, second.address, reward)
    at(w, t + DELTA + 1)
    receipt = w.contract.execute_for(second, params, game.nid, 0, move, e, signed_by(w, e, w.bob))
    assert names(receipt) == (["NanocontractExecuted", "RewardRecorded"] if reward else ["NanocontractExecuted"])
    assert (receipt.event("NanocontractExecuted").args["by"], receipt.event("NanocontractExecuted").args["version"]) \
        == (second.address, 4)
    at(w, deadline + DELTA + 1)
    before = balances(w, first.address, second.address)
    receipt = w.contract.finalize(w.mallory, params, s1.nanocontracts)
    if reward:
        assert names(receipt) == ["RewardPaid", "Finalized"]
        assert receipt.event("RewardPaid").args == {
            "channelId": cid, "nid": game.nid, "tower": second.address, "payer": w.bob.address, "amount": reward}
    else:
        assert names(receipt) == ["Finalized"]
    assert receipt.event("Finalized").args == {
        "channelId": cid, "version": 1, "payoutAlice": 6 * ETHER, "payoutBob": 4 * ETHER - reward}
    assert balances(w, first.address, second.address) == (
        before[0] + 6 * ETHER, before[1] + 4 * ETHER - reward, before[2] - params.total, before[3], before[4] + reward)


@pytest.mark.parametrize("cash_alice", [ETHER, 0])
def test_a_nanocontract_reward_is_capped_at_the_payers_payout(any_ms_world: MSWorld, cash_alice: int) -> None:
    """Alice's tower registers her hash time lock to Bob (she holds all of it then) for a reward
    of 3 ETH; Bob claims it with the preimage. Alice finally gets only her cash: the tower gets
    that, never more, and Bob all that is his."""
    w = any_ms_world
    tower = tower_of(w)
    params, s0 = w.open()
    amount = params.deposit_alice - cash_alice
    s1, htlc = fund(w, s0, "HashTimeLock", amount, 0, htlc_data(ALICE, 2**40))
    cid = s1.channel_id
    deadline = w.contract.close(w.bob, params, s1, ms_sign(w, s1, w.alice)).event("CloseRegistered").args["deadline"]
    m, m_sig = monitoring(w, htlc, w.alice, tower, reward=3 * ETHER)
    t = pending_time(w)
    at(w, t)
    receipt = w.contract.register_for(tower, params, htlc, ms_sign(w, htlc, w.bob), m, m_sig)
    assert receipt.event("RewardRecorded").args["amount"] == 3 * ETHER
    at(w, t + DELTA + 1)
    w.contract.execute(w.bob, params, htlc.nid, CLAIM, PREIMAGE)  # a party's call keeps the tower's reward
    assert w.contract.channel(cid).rewards == 2
    at(w, max(deadline, t + DELTA + 1) + 1)
    before = balances(w, tower.address)
    receipt = w.contract.finalize(w.mallory, params, s1.nanocontracts)
    if cash_alice:
        assert names(receipt) == ["RewardPaid", "Finalized"]
        assert receipt.event("RewardPaid").args == {
            "channelId": cid, "nid": htlc.nid, "tower": tower.address, "payer": w.alice.address, "amount": cash_alice}
    else:
        assert names(receipt) == ["Finalized"]  # nothing left to pay the tower from
    assert receipt.event("Finalized").args == {
        "channelId": cid, "version": 1, "payoutAlice": 0, "payoutBob": params.total - cash_alice}
    assert balances(w, tower.address) == (before[0], before[1] + params.total - cash_alice, before[2] - params.total,
                                          before[3] + cash_alice)


@pytest.mark.parametrize("cash_bob", [ETHER, 0])
def test_bobs_nanocontract_reward_is_capped_at_his_payout_not_alices(any_ms_world: MSWorld, cash_bob: int) -> None:
    """The same for Bob's tower: a reward of 3 ETH, above Bob's payout after Alice claims his lock
    and below Alice's, is capped at Bob's payout (and taken from it, never from Alice's)."""
    w = any_ms_world
    tower = tower_of(w)
    params, s0 = w.open()
    amount = params.deposit_bob - cash_bob
    s1, htlc = fund(w, s0, "HashTimeLock", 0, amount, htlc_data(BOB, 2**40))
    cid = s1.channel_id
    deadline = w.contract.close(w.alice, params, s1, ms_sign(w, s1, w.bob)).event("CloseRegistered").args["deadline"]
    m, m_sig = monitoring(w, htlc, w.bob, tower, reward=3 * ETHER)
    t = pending_time(w)
    at(w, t)
    w.contract.register_for(tower, params, htlc, ms_sign(w, htlc, w.alice), m, m_sig)
    at(w, t + DELTA + 1)
    w.contract.execute(w.alice, params, htlc.nid, CLAIM, PREIMAGE)
    at(w, max(deadline, t + DELTA + 1) + 1)
    before = balances(w, tower.address)
    receipt = w.contract.finalize(w.mallory, params, s1.nanocontracts)
    if cash_bob:
        assert receipt.event("RewardPaid").args == {
            "channelId": cid, "nid": htlc.nid, "tower": tower.address, "payer": w.bob.address, "amount": cash_bob}
    else:
        assert names(receipt) == ["Finalized"]  # nothing left to pay the tower from
    assert receipt.event("Finalized").args == {
        "channelId": cid, "version": 1, "payoutAlice": params.total - cash_bob, "payoutBob": 0}
    assert balances(w, tower.address) == (before[0] + params.total - cash_bob, before[1], before[2] - params.total,
                                          before[3] + cash_bob)


def test_a_cooperative_close_of_a_multistate_channel_pays_no_reward(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    tower = tower_of(w)
    params, s0 = w.open()
    s1 = ChannelState(s0.channel_id, 1, 5 * ETHER, 5 * ETHER)
    w.contract.close(w.alice, params, s0)
    m, m_sig = monitoring(w, s1, w.bob, tower)
    w.contract.refute(tower, params, s1, ms_sign(w, s1, w.alice), m, m_sig)
    assert w.contract.channel(s1.channel_id).rewards == 1
    final = FinalChannelState(s1.channel_id, 2, 5 * ETHER, 5 * ETHER)
    before = balances(w, tower.address)
    receipt = w.contract.cooperative_close(w.mallory, params, final, ms_sign(w, final, w.alice),
                                           ms_sign(w, final, w.bob))
    assert names(receipt) == ["CooperativelyClosed"]
    assert balances(w, tower.address) == (before[0] + 5 * ETHER, before[1] + 5 * ETHER, before[2] - params.total,
                                          before[3])
    assert w.contract.channel(s1.channel_id).rewards == 0


@pytest.mark.parametrize("case", ["cash", "open"])
def test_a_multistate_refutation_is_bounded_by_the_payers_cash_and_needs_a_close(any_ms_world: MSWorld,
                                                                                 case: str) -> None:
    w = any_ms_world
    tower = tower_of(w)
    params, s0, s1, game, won = game_channel(w)
    if case == "cash":  # Bob's cash in v1 is 3 ETH; his stake in the game does not count
        w.contract.close(w.alice, params, s0)
        m, m_sig = monitoring(w, s1, w.bob, tower, reward=3 * ETHER + 1)
        expected = errors.WatchtowersRewardTooLarge, {"reward": 3 * ETHER + 1, "limit": 3 * ETHER}
    else:
        m, m_sig = monitoring(w, s1, w.bob, tower)
        expected = errors.ChannelsWrongPhase, {"channelId": s1.channel_id, "phase": Phase.OPEN}
    cls, fields = expected
    with unchanged(w, params, tower.address), pytest.raises(cls) as exc:
        w.contract.refute(tower, params, s1, ms_sign(w, s1, w.alice), m, m_sig)
    assert exc.value.fields == fields


# ------------------------------------------------------------------------------ digests


MONITORING_FIELDS = [("channelId", "bytes32"), ("nid", "bytes32"), ("version", "uint64"), ("state", "bytes32"),
                     ("tower", "address"), ("reward", "uint256")]
EXECUTION_FIELDS = [("channelId", "bytes32"), ("nid", "bytes32"), ("fun", "uint8"), ("argument", "bytes32"),
                    ("tower", "address"), ("reward", "uint256")]


def authorisations(w: World | MSWorld) -> list[Monitoring | Execution]:
    tower = w.mallory.address
    cid = keccak(b"a channel")
    return [
        Monitoring(cid, CHANNEL_ITEM, 0, keccak(b"s0"), tower, 0),
        Monitoring(cid, keccak(b"nid"), 2**64 - 1, keccak(b"s"), tower, MAX_REWARD),
        Execution.of(cid, keccak(b"nid"), 0, PREIMAGE, tower, 1),
        Execution(cid, nanocontract_id(cid, 7), 255, keccak(b""), tower, MAX_REWARD),
    ]


def check_digests(w: World | MSWorld) -> None:
    domain = w.contract.domain
    for a in authorisations(w):
        ours = a.digest(domain)
        assert w.contract.authorisation_digest(a) == ours
        if isinstance(a, Monitoring):
            primary, fields = "Monitoring", MONITORING_FIELDS
            message = {"channelId": a.channel_id, "nid": a.nid, "version": a.version, "state": a.state,
                       "tower": a.tower, "reward": a.reward}
        else:
            primary, fields = "Execution", EXECUTION_FIELDS
            message = {"channelId": a.channel_id, "nid": a.nid, "fun": a.fun, "argument": a.argument,
                       "tower": a.tower, "reward": a.reward}
        typed = encode_typed_data(full_message=domain.typed_message({primary: fields}, primary, message))
        signed = Account.sign_message(typed, w.alice.key)
        assert signed.message_hash == ours
        assert sign_authorisation(domain, a, w.alice.key) == signed.signature


def test_authorisation_digests_equal_the_payment_contracts_and_eth_accounts(any_world: World) -> None:
    check_digests(any_world)


def test_authorisation_digests_equal_the_ms_contracts_and_eth_accounts(any_ms_world: MSWorld) -> None:
    check_digests(any_ms_world)


def test_a_monitoring_of_a_state_names_its_item_version_and_digest(any_ms_world: MSWorld) -> None:
    w = any_ms_world
    params, s0, s1, game, won = game_channel(w)
    m = Monitoring.of(w.contract.domain, s1, w.mallory.address, 1)
    assert (m.channel_id, m.nid, m.version, m.state) == (s1.channel_id, ZERO, 1, w.contract.contract_digest(s1))
    m = Monitoring.of(w.contract.domain, won, w.mallory.address, 1)
    assert (m.nid, m.version, m.state) == (game.nid, 5, w.contract.contract_digest(won))
