"""What a party sends on chain with its key alone, bypassing its node: a state it chose from its
own store (a stale close, an old nanocontract version, a SETTLE by hand), which is what a party
does when it runs something other than an honest node; or a duty while its node is down.
"""

from __future__ import annotations

from typing import Any

from perun import errors
from perun.core.apps import virtualchannel as vc
from perun.core.channel import ETH, PaymentState
from perun.core.eip712 import sign_state
from perun.core.monitoring import Monitoring, sign_authorisation
from perun.core.multistate import ChannelState, Funding, NanocontractState
from perun.scenario.spec import VirtualSpec
from perun.scenario.world import World


class Bypass:
    """Transactions with a party's key, built from what its store holds."""

    def __init__(self, world: World) -> None:
        self.world = world

    def close(self, channel: str, by: str, version: int) -> None:
        """Closes a payment channel with a non-final version `by` holds, signed by the other
        party; 0 is the opening state (the deposits), which needs no signature."""
        cid = self.world.cid(channel)
        party = self.world.parties[by]
        spec = self.world.scenario.channels[channel]
        params = self.world.params[channel]
        if version == 0:
            state, signature = PaymentState(cid, 0, *spec.deposits, False), b""
        else:
            stored = {s.state.version: s for s in party.states(cid) if not s.state.is_final}
            if version not in stored:
                raise errors.StaleVersion(f"{by}'s store holds no state at version {version} "
                                          f"(it has {_listed(stored)})")
            s = stored[version]
            signature = s.sig_bob if by == spec.alice else s.sig_alice
            state = s.state
            if not signature:
                raise errors.InvalidSignature(f"{by} holds no signature of the other party on version {version}")
        self.world.contract.close(party.account, params, state, signature)

    def cooperative_close(self, channel: str, by: str, version: int) -> None:
        """A final state at `version`, with the balances of the latest state `by` holds signed by
        both (the deposits if none), signed with both parties' keys and sent with `by`'s: what the
        two sign by hand, whatever their nodes have signed or registered."""
        cid, party = self.world.cid(channel), self.world.parties[by]
        spec = self.world.scenario.channels[channel]
        signed = [s.state for s in party.states(cid) if not s.state.is_final and s.sig_alice and s.sig_bob]
        latest = max(signed, key=lambda state: state.version, default=None)
        alice, bob = (latest.balance_alice, latest.balance_bob) if latest else spec.deposits
        final = PaymentState(cid, version, alice, bob, is_final=True)
        domain = self.world.contract.domain
        sig_alice, sig_bob = (sign_state(domain, final, self.world.parties[p].account.key) for p in (spec.alice, spec.bob))
        self.world.contract.cooperative_close(party.account, self.world.params[channel], final, sig_alice, sig_bob)

    def withdraw(self, by: str, to: str) -> None:
        """`by` withdraws its deferred payouts in the scenario's unit to `to`'s address: from the
        contract that owes it some (PaymentContract if none does, which refuses)."""
        token = ETH if self.world.token is None else self.world.token.address
        member = self.world.member(by)
        owing = [c for c in (self.world.contract, self.world.ms) if c is not None and c.owed(member.address, token)]
        (owing or [self.world.contract])[0].withdraw(member.account, token, self.world.member(to).address)

    def deny(self, name: str, denied: bool) -> None:
        """The test token refuses transfers to `name` from now on (or accepts them again): a
        recipient that cannot receive, like an address on a token's deny list."""
        token = self.world.token
        self.world.chain.transact(self.world.chain.dev_accounts[0],
                                  token.functions.setBlocked(self.world.member(name).address, denied))

    def refute(self, channel: str, by: str, version: int, client: str, tower: str) -> None:
        """A refutation sent with `by`'s key: version `version` from `client`'s store, signed by the
        other party, with `client`'s authorisation naming `tower` and offering `client`'s reward
        (at most its balance in the state), as its node would have handed it over. What a tower
        does with an older state it was once handed, or anyone who got hold of an authorisation."""
        cid = self.world.cid(channel)
        party, spec = self.world.parties[client], self.world.scenario.channels[channel]
        stored = {s.state.version: s for s in party.states(cid) if not s.state.is_final}
        if version not in stored:
            raise errors.StaleVersion(f"{client}'s store holds no state at version {version} "
                                      f"(it has {_listed(stored)})")
        s = stored[version]
        signature = s.sig_bob if client == spec.alice else s.sig_alice
        if not signature:
            raise errors.InvalidSignature(f"{client} holds no signature of the other party on version {version}")
        balance = s.state.balance_alice if client == spec.alice else s.state.balance_bob
        domain = self.world.contract.domain
        monitoring = Monitoring.of(domain, s.state, self.world.towers[tower].address,
                                   min(party.spec.reward, balance))
        authorisation = sign_authorisation(domain, monitoring, party.account.key)
        self.world.contract.refute(self.world.member(by).account, self.world.params[channel], s.state, signature,
                                   monitoring, authorisation)

    def close_multistate(self, channel: str, by: str, version: int) -> None:
        """Closes a multistate channel with a channel state `by` holds (its cash and the
        nanocontracts it lists), signed by the other party; 0 is the opening state."""
        cid = self.world.cid(channel)
        params = self.world.params[channel]
        if version == 0:
            state, signature = ChannelState.initial(params, cid), b""
        else:
            stored = {s.state.version: s for s in self.world.parties[by].ms_states(cid)
                      if isinstance(s.state, ChannelState)}
            if version not in stored:
                raise errors.StaleVersion(f"{by}'s store holds no channel state at version {version} "
                                          f"(it has {_listed(stored)})")
            state, signature = stored[version].state, self._peer_signature(channel, by, stored[version])
        self.world.ms.close(self.world.parties[by].account, params, state, signature)  # type: ignore[union-attr]

    def register(self, channel: str, by: str, name: str, version: int) -> None:
        """Registers a version of a nanocontract that `by` holds, signed by the other party."""
        cid, nid = self.world.cid(channel), self.world.nid(name)
        stored = {s.state.version: s for s in self.world.parties[by].ms_states(cid)
                  if isinstance(s.state, NanocontractState) and s.state.nid == nid}
        if version not in stored:
            raise errors.StaleVersion(f"{by}'s store holds no version {version} of {name} "
                                      f"(it has {_listed(stored)})")
        signed = stored[version]
        self.world.ms.register(self.world.parties[by].account, self.world.params[channel],  # type: ignore[union-attr]
                               signed.state, self._peer_signature(channel, by, signed))

    def submit(self, gamma: VirtualSpec, by: str, version: int, balances: tuple[int, int] | None = None) -> None:
        """SETTLE on `by`'s half with a state of γ from its store, signed by both ends; with
        `balances`, a state at `version` that both ends sign now, with their keys: a fork of γ,
        which only two colluding ends can make (docs/protocol.md §11.1)."""
        gid = self.world.cid(gamma.name)
        if balances is not None:
            rec = self.world.parties[by].virtual_record(gid)
            state = vc.VirtualState(gid, version, *balances)
            sig_alice, sig_bob = (vc.sign_virtual(rec.channel.domain, state,  # type: ignore[union-attr]
                                                  self.world.parties[end].account.key) for end in gamma.ends)
            z = vc.settle_arg(state, sig_alice, sig_bob)
        else:
            stored = {s.state.version: s for s in self.world.parties[by].states(gid)}
            if version not in stored:
                raise errors.StaleVersion(f"{by}'s store holds no state of {gamma.name} at version {version} "
                                          f"(it has {_listed(stored)})")
            s = stored[version]
            if not (s.sig_alice and s.sig_bob):
                raise errors.InvalidSignature(f"{by} holds no signature of the other end on version {version}")
            z = vc.settle_arg(vc.as_virtual(s.state), s.sig_alice, s.sig_bob)
        ledger = gamma.ledgers[gamma.ends.index(by)]
        self.world.ms.execute(self.world.parties[by].account, self.world.params[ledger],  # type: ignore[union-attr]
                              self.world.nids[f"{gamma.name}@{ledger}"], vc.SETTLE, z)

    def on_chain(self, action: str, channel: str, by: str) -> None:
        """`finalize` or `refund` while the node is down, or `confirm`: the key alone is enough on
        chain."""
        account, params = self.world.parties[by].account, self.world.params[channel]
        if action == "confirm" and params.token != ETH:  # the deposit is pulled with transferFrom
            self.world.contract_of(channel).approve(account, params.token, params.deposit_bob)
        if self.world.is_multistate(channel) and action == "finalize":  # with the registered state's nanocontracts
            closes = [e for e in self.world.events(channel) if e.name == "CloseRegistered"]
            fundings = tuple(_funding(f) for f in closes[-1].args["nanocontracts"]) if closes else ()
            self.world.ms.finalize(account, params, fundings)  # type: ignore[union-attr]
        else:
            getattr(self.world.contract_of(channel), action)(account, params)

    def execute(self, channel: str, by: str, nid: bytes, fun: int, z: bytes) -> None:
        """Executes a registered nanocontract's function while the node is down."""
        self.world.ms.execute(self.world.parties[by].account, self.world.params[channel],  # type: ignore[union-attr]
                              nid, fun, z)

    def _peer_signature(self, channel: str, by: str, signed: Any) -> bytes:
        spec = self.world.scenario.channels[channel]
        signature = signed.sig_bob if by == spec.alice else signed.sig_alice
        if not signature:
            raise errors.InvalidSignature(f"{by} holds no signature of the other party on that version")
        return signature


def _funding(raw: Any) -> Funding:
    """A Funding of a CloseRegistered event, decoded as a tuple or (by some backends) a mapping."""
    if isinstance(raw, dict):
        return Funding(bytes(raw["nid"]), raw["alice"], raw["bob"])
    nid, alice, bob = raw
    return Funding(bytes(nid), alice, bob)


def _listed(stored: dict[int, Any]) -> str:
    """The versions a store holds, for an error: `1, 2, 4` or `none`."""
    return ", ".join(map(str, sorted(stored))) or "none"
