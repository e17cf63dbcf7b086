"""Random disputes with a watchtower on PaymentContract, on the real EVM.

Each example opens a channel, signs random payments, has one party close with a random (often
stale) state, then runs random answers at random times around the deadline: the tower refuting
for the other party with a random state and reward, and the parties replacing it. A model says
which call the contract must accept and with which error it must refuse the others. After
finalize: the parties and the tower got exactly what the model says (the tower only if its state
is the registered one), and the channel paid out exactly its deposits.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from perun import errors
from perun.chain.backend import ETHER, EmbeddedChain
from perun.chain.payment import PaymentContract
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import sign_state
from perun.core.monitoring import Monitoring, sign_authorisation
from tests.conftest import World, examples

_shared: dict[str, World] = {}
_nonces = iter(range(10**9))


def shared_world() -> World:
    if "world" not in _shared:
        chain = EmbeddedChain()
        contract = PaymentContract.deploy(chain, chain.dev_accounts[0])
        _shared["world"] = World(chain, contract, *(chain.new_account(10_000 * ETHER) for _ in range(3)))
    return _shared["world"]


@dataclass(frozen=True)
class Answer:
    """One call after the close: the tower's refute (for Bob if `for_bob`) or a party's close."""

    by_tower: bool
    for_bob: bool  # the tower's payer, or the closing party is Bob
    pick: int  # which state, mostly of the later half
    permille: int  # the reward, in thousandths of what its payer holds in the state (above 1000: too large)
    offset: int  # seconds from the deadline at which it is mined


answers = st.builds(Answer, st.booleans(), st.booleans(), st.integers(0, 2**16), st.integers(0, 1000) | st.just(1001),
                    st.integers(-3, 1))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deposits=st.tuples(st.integers(0, 5 * ETHER), st.integers(0, 5 * ETHER)),
       payments=st.lists(st.tuples(st.integers(0, 5 * ETHER), st.booleans()), min_size=1, max_size=6),
       closer_is_bob=st.booleans(), first=st.integers(0, 2**16), later=st.lists(answers, min_size=1, max_size=4))
def test_a_tower_is_paid_exactly_when_its_state_wins(deposits: tuple[int, int], payments: list[tuple[int, bool]],
                                                     closer_is_bob: bool, first: int, later: list[Answer]) -> None:
    w = shared_world()
    snapshot = w.chain.snapshot()
    try:
        _dispute(w, deposits, payments, closer_is_bob, first, later)
    finally:
        w.chain.revert_to(snapshot)


def _dispute(w: World, deposits: tuple[int, int], payments: list[tuple[int, bool]], closer_is_bob: bool,
             first: int, later: list[Answer]) -> None:
    params = Params(w.alice.address, w.bob.address, *deposits, 40, next(_nonces))
    w.contract.create(w.alice, params)
    w.contract.confirm(w.bob, params)
    states = [params.initial_state(w.chain.chain_id, w.contract.address)]
    for amount, from_alice in payments:
        latest = states[-1]
        states.append(latest.pay(min(amount, latest.balance_alice if from_alice else latest.balance_bob),
                                 from_alice=from_alice))
    domain, tower = w.contract.domain, w.mallory
    parties = {False: w.alice, True: w.bob}

    def signed_by(signer_is_bob: bool, state: PaymentState) -> bytes:
        return sign_state(domain, state, parties[signer_is_bob].key)

    registered = states[first % (len(states) + 1) // 2]  # mostly stale
    w.contract.close(parties[closer_is_bob], params, registered, signed_by(not closer_is_bob, registered))
    deadline = w.contract.channel(params.channel_id(w.chain.chain_id, w.contract.address)).deadline
    reward: tuple[bool, int] | None = None
    now = w.chain.timestamp()
    for answer in sorted(later, key=lambda a: a.offset):
        at = max(deadline + answer.offset, now + 1)
        state = states[len(states) // 3 + answer.pick % (len(states) - len(states) // 3)]
        late, stale = at > deadline, state.version <= registered.version
        w.chain.set_next_block_timestamp(at)
        if answer.by_tower:
            payer = parties[answer.for_bob]
            held = state.balance_bob if answer.for_bob else state.balance_alice
            amount = held * answer.permille // 1000 + (1 if answer.permille > 1000 else 0)
            monitoring = Monitoring.of(domain, state, tower.address, amount)
            error = (errors.WatchtowersRewardTooLarge if amount > held else
                     errors.ChannelsDisputeWindowOver if late else errors.ChannelsStaleVersion if stale else None)
            call = lambda: w.contract.refute(tower, params, state, signed_by(not answer.for_bob, state),  # noqa: E731
                                             monitoring, sign_authorisation(domain, monitoring, payer.key))
        else:
            error = errors.ChannelsDisputeWindowOver if late else errors.ChannelsStaleVersion if stale else None
            call = lambda: w.contract.close(parties[answer.for_bob], params, state,  # noqa: E731
                                            signed_by(not answer.for_bob, state))
        event(f"{'tower' if answer.by_tower else 'party'}: {error.__name__ if error else 'registered'}")
        if error is not None:
            with pytest.raises(error):
                call()
            continue
        call()
        now = at
        registered = state
        reward = (answer.for_bob, monitoring.reward) if answer.by_tower and monitoring.reward else None

    held_before = w.chain.balance(w.contract.address)
    before = {who: w.chain.balance(who.address) for who in (w.alice, w.bob, tower)}
    w.chain.set_next_block_timestamp(max(deadline + 1, now + 1))
    receipt = w.contract.finalize(w.bob if closer_is_bob else w.alice, params)  # not the tower: its gas stays out
    alice, bob, paid = registered.balance_alice, registered.balance_bob, 0
    if reward is not None:
        by_bob, paid = reward
        alice, bob = (alice, bob - paid) if by_bob else (alice - paid, bob)
    event(f"finalize: {'a tower rewarded' if paid else 'no reward'}")
    finalizer = w.bob if closer_is_bob else w.alice
    gas = receipt.transaction.gas_used * receipt.transaction.receipt["effectiveGasPrice"]
    got = {who: w.chain.balance(who.address) - before[who] + (gas if who is finalizer else 0)
           for who in (w.alice, w.bob, tower)}
    assert got == {w.alice: alice, w.bob: bob, tower: paid}
    assert held_before - w.chain.balance(w.contract.address) == params.total
    assert [e.name for e in receipt.events].count("RewardPaid") == (1 if paid else 0)
