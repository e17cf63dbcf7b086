"""Python binding of a deployed MSContract: multistate channels and their nanocontracts."""

from __future__ import annotations

from dataclasses import dataclass

from eth_typing import Hash32
from eth_utils import to_checksum_address

from perun.chain.backend import Sender
from perun.chain.channels import ChannelsContract, Receipt
from perun.core.channel import Params
from perun.core.eip712 import MS_CONTRACT_NAME
from perun.core.monitoring import Execution, Monitoring
from perun.core.multistate import ChannelState, FinalChannelState, Funding, NanocontractState


@dataclass(frozen=True)
class RegisteredNanocontract:
    """What MSContract stores for a registered nanocontract (MSContract.Registered)."""

    app: str
    window_end: int  # 0: never registered
    since: int
    version: int
    blocked_alice: int
    blocked_bob: int
    released_alice: int
    released_bob: int
    settle_by: int  # until when a closing channel waits for it (its app's settleBy, capped)
    storage: bytes

    @property
    def registered(self) -> bool:
        return self.window_end != 0

    def state(self, channel_id: bytes, nid: bytes) -> NanocontractState:
        return NanocontractState(channel_id, nid, self.app, self.version, self.blocked_alice, self.blocked_bob,
                                 self.released_alice, self.released_bob, self.storage)


class MSContract(ChannelsContract):
    """An MSContract deployed at `address` on `chain`."""

    name = "MSContract"
    domain_name = MS_CONTRACT_NAME

    # ------------------------------------------------------------------ nanocontracts

    def register(self, sender: Sender, params: Params, state: NanocontractState, signature: bytes) -> Receipt:
        """Registers a nanocontract state signed by the sender's counterparty."""
        call = self.contract.functions.register(params.as_abi(), state.as_abi(), signature)
        return self._transact(sender, call)

    def execute(self, sender: Sender, params: Params, nid: bytes, fun: int, z: bytes = b"") -> Receipt:
        """Runs function `fun` of a registered nanocontract's app with argument `z`."""
        return self._transact(sender, self.contract.functions.execute(params.as_abi(), nid, fun, z))

    def register_for(self, sender: Sender, params: Params, state: NanocontractState, signature: bytes,
                     monitoring: Monitoring, authorisation: bytes) -> Receipt:
        """A tower (`sender`) registers a nanocontract state signed by one party, on behalf of the
        other, whose `authorisation` signs `monitoring`."""
        call = self.contract.functions.registerFor(params.as_abi(), state.as_abi(), signature, monitoring.as_abi(),
                                                   authorisation)
        return self._transact(sender, call)

    def execute_for(self, sender: Sender, params: Params, nid: bytes, fun: int, z: bytes, execution: Execution,
                    authorisation: bytes) -> Receipt:
        """A tower (`sender`) makes the call `execution` names, as the party whose `authorisation` signs it."""
        call = self.contract.functions.executeFor(params.as_abi(), nid, fun, z, execution.as_abi(), authorisation)
        return self._transact(sender, call)

    # ------------------------------------------------------------------ closing

    def close(self, sender: Sender, params: Params, state: ChannelState, signature: bytes = b"") -> Receipt:
        """Registers a channel state signed by the sender's counterparty (unsigned for the
        initial state)."""
        return self._transact(sender, self.contract.functions.close(params.as_abi(), state.as_abi(), signature))

    def refute(self, sender: Sender, params: Params, state: ChannelState, signature: bytes,
               monitoring: Monitoring, authorisation: bytes) -> Receipt:
        """A tower (`sender`) answers a stale close with channel state `state`, signed by one party,
        on behalf of the other, whose `authorisation` signs `monitoring`."""
        call = self.contract.functions.refute(params.as_abi(), state.as_abi(), signature, monitoring.as_abi(),
                                              authorisation)
        return self._transact(sender, call)

    def finalize(self, sender: Sender, params: Params, nanocontracts: tuple[Funding, ...]) -> Receipt:
        """Pays out the channel; `nanocontracts` are those of the registered channel state."""
        call = self.contract.functions.finalize(params.as_abi(), [f.as_abi() for f in nanocontracts])
        return self._transact(sender, call)

    def cooperative_close(
        self, sender: Sender, params: Params, state: FinalChannelState, sig_alice: bytes, sig_bob: bytes
    ) -> Receipt:
        """Pays out a final channel state signed by both parties; anyone may send it."""
        call = self.contract.functions.cooperativeClose(params.as_abi(), state.as_abi(), sig_alice, sig_bob)
        return self._transact(sender, call)

    def executed_call(self, tx_hash: bytes) -> tuple[bytes, int, bytes] | None:
        """(nid, fun, z) of transaction `tx_hash` if it called this contract's `execute`, or a
        tower's `executeFor`, directly (a contract wallet's call is not visible this way), else None."""
        tx = self.chain.w3.eth.get_transaction(Hash32(tx_hash))
        if tx["to"] is None or to_checksum_address(tx["to"]) != self.address:
            return None
        try:
            function, args = self.contract.decode_function_input(tx["input"])
        except ValueError:
            return None
        if function.fn_name not in ("execute", "executeFor"):
            return None
        return bytes(args["nid"]), args["fun"], bytes(args["z"])

    # ------------------------------------------------------------------ views

    def nanocontract(self, channel_id: bytes, nid: bytes) -> RegisteredNanocontract:
        app, window_end, since, version, ba, bb, ra, rb, settle_by, data = self.contract.functions.nanocontract(
            channel_id, nid).call()
        return RegisteredNanocontract(app, window_end, since, version, ba, bb, ra, rb, settle_by, bytes(data))

    def contract_digest(self, state: ChannelState | NanocontractState | FinalChannelState) -> bytes:
        """The contract's own EIP-712 digest of `state`, to check the Python one against."""
        if isinstance(state, ChannelState):
            return bytes(self.contract.functions.hashChannelState(state.as_abi()).call())
        if isinstance(state, FinalChannelState):
            return bytes(self.contract.functions.hashFinalChannelState(state.as_abi()).call())
        return bytes(self.contract.functions.hashNanocontractState(state.as_abi()).call())
