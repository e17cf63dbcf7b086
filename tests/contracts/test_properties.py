"""Random sequences of PaymentContract calls against a model of the protocol, on the real EVM.

Every call is made at a time the model chooses, so the model knows whether the contract must
accept it or with which error it must refuse. After each step: the contract holds exactly the
deposits of the channels not yet paid out, every payout equals the channel's deposits, and the
registered state is the highest version submitted in time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from perun import errors
from perun.chain.backend import ETHER, EmbeddedChain
from perun.chain.payment import PaymentContract
from perun.core.channel import Params, PaymentState, Phase
from perun.core.eip712 import sign_state
from tests.conftest import World, examples


@dataclass
class Model:
    params: Params
    states: list[PaymentState]  # every state both parties signed, by version
    phase: Phase = Phase.INITIALISING
    deadline: int = 0
    registered: int = -1  # version registered by close
    paid_out: int = 0  # as the payout events report it
    refunded: bool = False


_shared: dict[str, World] = {}


def shared_world() -> World:
    if "world" not in _shared:
        chain = EmbeddedChain()
        contract = PaymentContract.deploy(chain, chain.dev_accounts[0])
        _shared["world"] = World(chain, contract, *(chain.new_account(10_000 * ETHER) for _ in range(3)))
    return _shared["world"]


class PaymentChannelMachine(RuleBasedStateMachine):
    channels = Bundle("channels")

    def __init__(self) -> None:
        super().__init__()
        self.w = shared_world()
        self.snapshot = self.w.chain.snapshot()
        # After a revert the pending block may already be ahead of the latest one (wall clock).
        self.now = self.w.chain.w3.eth.get_block("pending")["timestamp"] + 600
        self.models: list[Model] = []
        self.held_before = self.w.chain.balance(self.w.contract.address)
        self.nonce = 0
        self.touched: Model | None = None  # the channel the last step acted on

    def teardown(self) -> None:
        self.w.chain.revert_to(self.snapshot)

    # Each transaction is mined exactly at self.now + 1; `wait` moves the clock.
    def _at_next_second(self) -> int:
        self.now += 1
        self.w.chain.set_next_block_timestamp(self.now)
        return self.now

    def _expect(self, m: Model, error: type[Exception] | None, action) -> object:
        self.touched = m
        t = self._at_next_second()
        if error is None:
            return action()
        with pytest.raises(error):
            action()
        # The refused call mined nothing: keep the clock where the chain is.
        self.now = t - 1
        return None

    @rule(target=channels, deposit_alice=st.integers(0, 5 * ETHER), deposit_bob=st.integers(0, 5 * ETHER),
          delta=st.integers(1, 50))
    def create(self, deposit_alice: int, deposit_bob: int, delta: int) -> Model:
        self.nonce += 1
        params = Params(self.w.alice.address, self.w.bob.address, deposit_alice, deposit_bob, delta, self.nonce)
        t = self._at_next_second()
        self.w.contract.create(self.w.alice, params)
        model = Model(params, [params.initial_state(self.w.chain.chain_id, self.w.contract.address)],
                      deadline=t + delta)
        self.models.append(model)
        self.touched = model
        return model

    @rule(m=channels)
    def confirm(self, m: Model) -> None:
        late = self.now + 1 > m.deadline
        error = (errors.ChannelsWrongPhase if m.phase != Phase.INITIALISING
                 else errors.ChannelsConfirmTooLate if late else None)
        if self._expect(m, error, lambda: self.w.contract.confirm(self.w.bob, m.params)) is not None:
            m.phase, m.deadline = Phase.OPEN, 0

    @rule(m=channels)
    def refund(self, m: Model) -> None:
        error = (errors.ChannelsWrongPhase if m.phase != Phase.INITIALISING
                 else errors.ChannelsRefundTooEarly if self.now + 1 <= m.deadline else None)
        receipt = self._expect(m, error, lambda: self.w.contract.refund(self.w.mallory, m.params))
        if receipt is not None:
            m.phase, m.refunded, m.paid_out = Phase.CLOSED, True, receipt.event("Refunded").args["amount"]

    @rule(m=channels, amount=st.integers(0, 5 * ETHER), from_alice=st.booleans())
    def pay(self, m: Model, amount: int, from_alice: bool) -> None:
        latest = m.states[-1]
        payer = latest.balance_alice if from_alice else latest.balance_bob
        m.states.append(latest.pay(min(amount, payer), from_alice=from_alice))

    @rule(m=channels, by_alice=st.booleans(), pick=st.integers(0, 2**16))
    def close(self, m: Model, by_alice: bool, pick: int) -> None:
        state = m.states[pick % len(m.states)]
        caller, signer = (self.w.alice, self.w.bob) if by_alice else (self.w.bob, self.w.alice)
        sig = sign_state(self.w.contract.domain, state, signer.key)
        if m.phase not in (Phase.OPEN, Phase.CLOSING):
            error = errors.ChannelsWrongPhase
        elif m.phase == Phase.CLOSING and self.now + 1 > m.deadline:
            error = errors.ChannelsDisputeWindowOver
        elif m.phase == Phase.CLOSING and state.version <= m.registered:
            error = errors.ChannelsStaleVersion
        else:
            error = None
        if self._expect(m, error, lambda: self.w.contract.close(caller, m.params, state, sig)) is not None:
            if m.phase == Phase.OPEN:
                m.phase, m.deadline = Phase.CLOSING, self.now + m.params.delta
            m.registered = state.version

    @rule(m=channels)
    def finalize(self, m: Model) -> None:
        error = (errors.ChannelsWrongPhase if m.phase != Phase.CLOSING
                 else errors.ChannelsFinalizeTooEarly if self.now + 1 <= m.deadline else None)
        receipt = self._expect(m, error, lambda: self.w.contract.finalize(self.w.mallory, m.params))
        if receipt is not None:
            paid = receipt.event("Finalized").args
            expected = m.states[m.registered]
            assert (paid["version"], paid["balanceAlice"], paid["balanceBob"]) == (
                expected.version, expected.balance_alice, expected.balance_bob)
            m.phase, m.paid_out = Phase.CLOSED, paid["balanceAlice"] + paid["balanceBob"]

    @rule(m=channels)
    def cooperative_close(self, m: Model) -> None:
        final = m.states[-1].final()
        if m.phase not in (Phase.OPEN, Phase.CLOSING):
            error = errors.ChannelsWrongPhase
        elif m.phase == Phase.CLOSING and final.version <= m.registered:
            error = errors.ChannelsStaleVersion
        else:
            error = None
        domain = self.w.contract.domain
        sigs = (sign_state(domain, final, self.w.alice.key), sign_state(domain, final, self.w.bob.key))
        receipt = self._expect(m, error, lambda: self.w.contract.cooperative_close(self.w.alice, m.params, final, *sigs))
        if receipt is not None:
            paid = receipt.event("CooperativelyClosed").args
            m.phase, m.paid_out = Phase.CLOSED, paid["balanceAlice"] + paid["balanceBob"]
            m.states.append(final)  # no further state may follow

    @rule(seconds=st.integers(0, 60))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @invariant()
    def contract_holds_exactly_the_unpaid_deposits(self) -> None:
        held = 0
        for m in self.models:
            if m.phase == Phase.INITIALISING:
                held += m.params.deposit_alice
            elif m.phase in (Phase.OPEN, Phase.CLOSING):
                held += m.params.total
        assert self.w.chain.balance(self.w.contract.address) - self.held_before == held

    @invariant()
    def payouts_equal_deposits(self) -> None:
        for m in self.models:
            if m.phase == Phase.CLOSED:
                assert m.paid_out == (m.params.deposit_alice if m.refunded else m.params.total)

    @invariant()
    def registered_state_is_the_highest_submitted_in_time(self) -> None:
        m = self.touched  # the others did not change: an eth_call costs 20 ms here
        if m is None:
            return
        stored = self.w.contract.channel(m.states[0].channel_id)
        assert stored.phase == m.phase
        if m.phase == Phase.CLOSING:
            expected = m.states[m.registered]
            assert (stored.version, stored.balance_alice, stored.deadline) == (
                expected.version, expected.balance_alice, m.deadline)


PaymentChannelMachine.TestCase.settings = settings(
    max_examples=examples(200), stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_payment_channel_machine = PaymentChannelMachine.TestCase
