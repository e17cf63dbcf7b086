"""Python binding of a deployed PaymentContract: every function, its views and its events."""

from __future__ import annotations

from perun.chain.backend import Sender
from perun.chain.channels import ChannelsContract, Event, OnChainChannel, Receipt
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import PAYMENT_CONTRACT_NAME
from perun.core.monitoring import Monitoring

__all__ = ["Event", "OnChainChannel", "PaymentContract", "Receipt"]


class PaymentContract(ChannelsContract):
    """A PaymentContract deployed at `address` on `chain`."""

    name = "PaymentContract"
    domain_name = PAYMENT_CONTRACT_NAME

    # ------------------------------------------------------------------ closing

    def close(self, sender: Sender, params: Params, state: PaymentState, signature: bytes = b"") -> Receipt:
        """Registers `state`, signed by the sender's counterparty (unsigned for version 0)."""
        return self._transact(sender, self.contract.functions.close(params.as_abi(), state.as_abi(), signature))

    def refute(self, sender: Sender, params: Params, state: PaymentState, signature: bytes,
               monitoring: Monitoring, authorisation: bytes) -> Receipt:
        """A tower (`sender`) answers a stale close with `state`, signed by one party, on behalf of
        the other, whose `authorisation` signs `monitoring`."""
        call = self.contract.functions.refute(params.as_abi(), state.as_abi(), signature, monitoring.as_abi(),
                                              authorisation)
        return self._transact(sender, call)

    def finalize(self, sender: Sender, params: Params) -> Receipt:
        return self._transact(sender, self.contract.functions.finalize(params.as_abi()))

    def cooperative_close(
        self, sender: Sender, params: Params, state: PaymentState, sig_alice: bytes, sig_bob: bytes
    ) -> Receipt:
        """Pays out a final state (`state.is_final`) signed by both parties."""
        call = self.contract.functions.cooperativeClose(params.as_abi(), state.as_abi(), sig_alice, sig_bob)
        return self._transact(sender, call)

    def contract_digest(self, state: PaymentState) -> bytes:
        """The contract's own EIP-712 digest of `state`, to check the Python one against."""
        fn = self.contract.functions.hashFinalState if state.is_final else self.contract.functions.hashPaymentState
        return bytes(fn(state.as_abi()).call())
