"""The main job: deploy PaymentContract and play the seed's payment-channel lifecycle, with a
dispute, a cooperative close and a refund, printing every step and the balances."""

from __future__ import annotations

from decimal import Decimal
from typing import Callable

from eth_account.signers.local import LocalAccount

from perun import errors
from perun.chain.backend import ETHER, Chain, EmbeddedChain
from perun.chain.payment import PaymentContract, Receipt
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import sign_state

DELTA = 3600  # one hour of dispute window


def eth(wei: int) -> str:
    return f"{Decimal(wei) / ETHER:,.4f} ETH"


class Demo:
    def __init__(self, chain: Chain, out: Callable[[str], None] = print) -> None:
        self.chain = chain
        self.out = out
        self.contract = PaymentContract.deploy(chain, chain.dev_accounts[0])
        self.alice = chain.new_account(20 * ETHER)
        self.bob = chain.new_account(20 * ETHER)
        self.names = {self.alice.address: "Alice", self.bob.address: "Bob"}
        self.nonce = 0

    def step(self, who: LocalAccount, what: str, receipt: Receipt) -> None:
        events = ", ".join(e.name for e in receipt.events)
        self.out(f"  {self.names[who.address]:<5} {what:<44} gas {receipt.gas_used:>7,}  [{events}]")

    def wallets(self) -> str:
        return f"Alice {eth(self.chain.balance(self.alice.address))}, Bob {eth(self.chain.balance(self.bob.address))}"

    def open(self, deposit_alice: int, deposit_bob: int) -> tuple[Params, PaymentState]:
        self.nonce += 1
        params = Params(self.alice.address, self.bob.address, deposit_alice, deposit_bob, DELTA, self.nonce)
        self.step(self.alice, f"create: deposits {eth(deposit_alice)}", self.contract.create(self.alice, params))
        self.step(self.bob, f"confirm: deposits {eth(deposit_bob)}", self.contract.confirm(self.bob, params))
        return params, params.initial_state(self.chain.chain_id, self.contract.address)

    def update(self, state: PaymentState, amount: int, from_alice: bool) -> tuple[PaymentState, bytes, bytes]:
        """The seed's update: both sign version + 1; each keeps the other's signature."""
        new = state.pay(amount, from_alice=from_alice)
        sig_alice = sign_state(self.contract.domain, new, self.alice.key)
        sig_bob = sign_state(self.contract.domain, new, self.bob.key)
        payer, payee = ("Alice", "Bob") if from_alice else ("Bob", "Alice")
        self.out(
            f"  off-chain v{new.version}: {payer} pays {payee} {eth(amount)}"
            f"  -> Alice {eth(new.balance_alice)}, Bob {eth(new.balance_bob)}"
        )
        return new, sig_alice, sig_bob

    def disputed_close(self) -> None:
        self.out("\n1. A dispute: Alice closes with a stale state, Bob answers with the latest one")
        before = self.wallets()
        params, s0 = self.open(6 * ETHER, 4 * ETHER)
        s1, s1_alice, s1_bob = self.update(s0, 1 * ETHER, from_alice=True)
        s2, _, s2_bob = self.update(s1, ETHER // 4, from_alice=False)
        s3, s3_alice, _ = self.update(s2, 2 * ETHER, from_alice=True)
        receipt = self.contract.close(self.alice, params, s1, s1_bob)
        deadline = receipt.event("CloseRegistered").args["deadline"]
        self.step(self.alice, "close(v1): the version that suits her", receipt)
        self.step(self.bob, "close(v3): higher version, signed by Alice", self.contract.close(self.bob, params, s3, s3_alice))
        try:
            self.contract.close(self.alice, params, s2, s2_bob)
        except errors.StaleVersion as exc:
            self.out(f"  Alice close(v2) rejected: {exc}")
        self.chain.set_next_block_timestamp(deadline)
        try:
            self.contract.finalize(self.bob, params)
        except errors.PaymentContractFinalizeTooEarly as exc:
            self.out(f"  Bob   finalize at the deadline rejected: {exc}")
        self.chain.set_next_block_timestamp(deadline + 1)
        receipt = self.contract.finalize(self.bob, params)
        paid = receipt.event("Finalized").args
        self.step(self.bob, "finalize, one second after the deadline", receipt)
        self.out(f"  paid out v{paid['version']}: Alice {eth(paid['balanceAlice'])}, Bob {eth(paid['balanceBob'])}")
        self.out(f"  wallets before: {before}\n  wallets after:  {self.wallets()} (less gas)")

    def cooperative_close(self) -> None:
        self.out("\n2. A cooperative close: both sign a final state, paid out at once")
        params, s0 = self.open(3 * ETHER, 3 * ETHER)
        s1, _, _ = self.update(s0, ETHER // 2, from_alice=False)
        final = s1.final()
        sig_alice = sign_state(self.contract.domain, final, self.alice.key)
        sig_bob = sign_state(self.contract.domain, final, self.bob.key)
        receipt = self.contract.cooperative_close(self.alice, params, final, sig_alice, sig_bob)
        self.step(self.alice, f"cooperativeClose(v{final.version}), no waiting", receipt)
        paid = receipt.event("CooperativelyClosed").args
        self.out(f"  paid out: Alice {eth(paid['balanceAlice'])}, Bob {eth(paid['balanceBob'])}")

    def refund(self) -> None:
        self.out("\n3. Bob never confirms: Alice takes her deposit back after Δ")
        self.nonce += 1
        params = Params(self.alice.address, self.bob.address, 2 * ETHER, 2 * ETHER, DELTA, self.nonce)
        receipt = self.contract.create(self.alice, params)
        self.step(self.alice, f"create: deposits {eth(params.deposit_alice)}", receipt)
        deadline = receipt.event("Initialising").args["deadline"]
        self.chain.set_next_block_timestamp(deadline + 1)
        self.step(self.alice, "refund, Δ after create", self.contract.refund(self.alice, params))
        try:
            self.contract.confirm(self.bob, params)
        except errors.PaymentContractWrongPhase as exc:
            self.out(f"  Bob   confirm afterwards rejected: {exc}")

    def run(self) -> None:
        self.out(f"PaymentContract deployed at {self.contract.address} (chain id {self.chain.chain_id})")
        self.out(f"Alice {self.alice.address}\nBob   {self.bob.address}\nwallets: {self.wallets()}")
        self.disputed_close()
        self.cooperative_close()
        self.refund()
        locked = self.chain.balance(self.contract.address)
        self.out(f"\nwallets: {self.wallets()}; left in the contract: {eth(locked)}")


def main(chain: Chain | None = None) -> None:
    chain = chain or EmbeddedChain()
    try:
        Demo(chain).run()
    finally:
        chain.close()
