"""A node: one party, its key, its store, its peers and its eye on the chain.

A thin façade: it assembles the runtime (perun.runtime: peers, group commit, chain follower)
and the protocols of the channel kinds it runs (perun.protocols: payment channels always,
multistate channels when it is given an MSContract, virtual channels when the VirtualChannel
app is deployed too), and keeps the API in one place. Its key is a private key (bytes or hex)
or an eth-account LocalAccount.

    async with Node(key, chain, contract_address, "alice.db") as alice:
        await alice.connect(bob_address, "127.0.0.1", bob_port)
        cid = await alice.open(bob_address, deposit=10**18, peer_deposit=0, delta=3600)
        await alice.pay(cid, 10**17)
        await alice.close(cid)

Multistate and virtual channels are `node.multistate` and `node.virtual`, multi-hop payments over
multistate channels `node.multihop` (with the HashTimeLock app; None when not run); a node
forwards payments when it has a `forward` policy (perun.protocols.multihop.ForwardPolicy).
`policy` (perun.protocols.policy.ChannelPolicy) says which channels the node accepts when a peer
proposes one; by default any in which it deposits nothing of its own. `confirmations` is how deep
an event must be to be final (by default 0 on a dev chain, 12 elsewhere); `fees` limits what its
transactions bid (perun.chain.wallet.FeePolicy). `towers` maps watchtowers' addresses to their
(host, port): the node dials them and hands each every later state of its channels that the peer
signs (a multistate channel's with its live nanocontracts' states, and an end's SETTLE of its
virtual channel's half), offering `tower_reward` (at most what the state gives it); `Watchtower`
is a runtime that runs only the tower protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from perun import errors
from perun.chain.backend import Chain
from perun.chain.channels import Receipt
from perun.chain.wallet import FeePolicy
from perun.core.address import parse_address
from perun.core.apps.virtualchannel import VirtualChannelData
from perun.core.channel import ETH, PaymentState
from perun.core.machine import ChannelRecord
from perun.core.multistate import NanocontractState
from perun.core.route import Invoice, Route
from perun.protocols.channels import OPEN_TIME
from perun.protocols.mstower import MSTower
from perun.protocols.multihop import APP as MULTIHOP_APP
from perun.protocols.multihop import ForwardPolicy, Multihop
from perun.protocols.multistate import REPLY_TIME, Multistate
from perun.protocols.payment import ChannelInfo, Payment
from perun.protocols.policy import ChannelPolicy
from perun.protocols.tower import Tower
from perun.protocols.virtual import APP as VIRTUAL_APP
from perun.protocols.virtual import HubPolicy, Virtual
from perun.runtime import Runtime
from perun.runtime.follower import default_confirmations
from perun.wire.limits import Limits

RESPONSE_TIMEOUT = 10.0

__all__ = ["CRASH_POINTS", "ChannelInfo", "Node", "OPEN_TIME", "REPLY_TIME", "RESPONSE_TIMEOUT",
           "TOWER_CRASH_POINTS", "Watchtower"]

# Every crash point a node may pass (perun.runtime.faults), for scenarios to name; and a watchtower.
CRASH_POINTS = tuple(dict.fromkeys((*Payment.crash_points, *Multistate.crash_points, *Virtual.crash_points,
                                    *Multihop.crash_points)))
TOWER_CRASH_POINTS = (*Tower.crash_points, *MSTower.crash_points)  # both kinds a Watchtower runs


class Node:
    def __init__(
        self,
        key: bytes | str | LocalAccount,
        chain: Chain,
        contract: str,
        store_path: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        policy: ChannelPolicy = ChannelPolicy(),
        ms_contract: str | None = None,
        apps: Mapping[str, str] | None = None,
        accept_nanocontract: Callable[[NanocontractState], bool] = lambda nc: False,
        accept_virtual: Callable[[VirtualChannelData], bool] = lambda v: False,
        hub: HubPolicy | None = None,
        forward: ForwardPolicy | None = None,
        poll_interval: float = 0.25,
        response_timeout: float = RESPONSE_TIMEOUT,
        reply_time: float = REPLY_TIME,
        open_time: int = OPEN_TIME,
        name: str | None = None,
        confirmations: int | None = None,
        fees: FeePolicy = FeePolicy(),
        limits: Limits = Limits(),
        towers: Mapping[str, tuple[str, int]] | None = None,
        tower_reward: int = 0,
    ) -> None:
        if confirmations is None:
            confirmations = default_confirmations(chain.chain_id)
        self.runtime = rt = Runtime(key, chain, (chain.chain_id, to_checksum_address(contract)), store_path,
                                    host=host, port=port, name=name, poll_interval=poll_interval,
                                    response_timeout=response_timeout, confirmations=confirmations, fees=fees,
                                    limits=limits)
        self.payment = Payment(rt, contract, policy)
        rt.registry.register(self.payment)
        # Watchtowers by address: (host, port). Each is handed every later state the peer signs.
        self.towers = {to_checksum_address(a): where for a, where in (towers or {}).items()}
        if self.towers:
            self.payment.watch_with(self.towers, tower_reward)
        self.multistate: Multistate | None = None
        self.virtual: Virtual | None = None
        self.multihop: Multihop | None = None
        if ms_contract:
            self.multistate = Multistate(rt, ms_contract, apps or {}, policy, accept_nanocontract, reply_time)
            rt.registry.register(self.multistate)
            if self.towers:
                self.multistate.watch_with(self.towers, tower_reward)
            if VIRTUAL_APP in self.multistate.app_address:
                self.virtual = Virtual(rt, self.multistate, self.payment, accept_virtual, hub)
                rt.registry.register(self.virtual)
            if MULTIHOP_APP in self.multistate.app_address:
                self.multihop = Multihop(rt, self.multistate, forward)
                rt.registry.register(self.multihop)
        for protocol in rt.registry.protocols:
            rt.faults.declare(protocol.crash_points)
        for opening in (self.payment, self.multistate):
            if opening is not None:
                opening.open_time = open_time
        # What the runtime holds, under the names programs use.
        self.key, self.account, self.address, self.name = rt.key, rt.account, rt.address, rt.name
        self.chain, self.store, self.faults, self.watcher = rt.chain, rt.store, rt.faults, rt.follower
        self.contract, self.domain, self.records = self.payment.contract, self.payment.domain, self.payment.records
        self.host = host
        self.peers = rt.peers.connections
        self.response_timeout = response_timeout
        self._on_kill: Callable[[Node], None] | None = None

    # ================================================================== lifecycle

    async def start(self) -> Node:
        await self.runtime.start()
        for tower, (host, port) in self.towers.items():
            self.runtime.peers.keep(tower, host, port)
        return self

    async def stop(self) -> None:
        await self.runtime.stop()

    def kill(self) -> None:
        """Stops dead, as SIGKILL stops a process: what the store committed survives; staged
        changes, unsent messages and running tasks do not, and the peers see a reset. For
        nodes that share a process with others (scenarios on the embedded chain)."""
        self.runtime.kill()

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self.runtime.peers.port

    @property
    def serving(self) -> bool:
        """Started, and neither stopped nor killed."""
        return self.runtime.serving

    @property
    def killed(self) -> bool:
        return self.runtime.killed

    @property
    def failed(self) -> BaseException | None:
        """The store failure that stopped the node, if any."""
        return self.runtime.failed

    @property
    def on_kill(self) -> Callable[[Node], None] | None:
        return self._on_kill

    @on_kill.setter
    def on_kill(self, callback: Callable[[Node], None] | None) -> None:
        """Told when `kill` ran."""
        self._on_kill = callback
        self.runtime.on_kill = (lambda: callback(self)) if callback else None

    # ================================================================== peers

    async def connect(self, peer: str, host: str, port: int) -> None:
        """Dials `peer` at host:port, proves our key, checks theirs, and remembers the address
        so the node redials it after a restart."""
        await self.runtime.peers.connect(peer, host, port)

    async def wait_connected(self, peer: str, timeout: float = 30.0) -> None:
        """Waits until a connection to `peer` is up (after a restart, the dialer redials)."""
        await self.runtime.peers.wait_connected(peer, timeout)

    # ================================================================== payment channels

    def channel(self, cid: bytes) -> ChannelRecord:
        return self.payment.channel(cid)

    def channels(self) -> list[ChannelInfo]:
        return self.payment.channels()

    def info(self, cid: bytes) -> ChannelInfo:
        return self.payment.info(cid)

    async def open(self, peer: str, deposit: int, peer_deposit: int, delta: int, token: str = ETH,
                   timeout: float | None = None) -> bytes:
        """Proposes a payment channel to `peer` (this node is Alice), creates it on chain once
        Bob accepts, and returns its id when Bob has confirmed. Raises what went wrong otherwise."""
        return await self.payment.open(peer, deposit, peer_deposit, delta, token, timeout)

    async def cancel(self, cid: bytes) -> None:
        """Gives up the opening of a payment or multistate channel: no create or confirm is sent
        for it any more; one Alice created already is refunded at its confirm deadline."""
        holder = self.runtime.registry.holder(cid)
        await (holder or self.payment).cancel(cid)

    async def pay(self, cid: bytes, amount: int) -> PaymentState:
        """Pays `amount` to the peer on a payment channel, or on a virtual channel this node is an
        end of; returns the new state once the peer countersigned and stored it (this node stores
        it in its next group commit, behind the answer; docs/protocol.md §9, "Updates")."""
        return await self.payment.pay(cid, amount)

    async def invoice(self, amount: int, expiry: int, *, min_final: int = 0, description: str = "") -> Invoice:
        """An invoice for `amount` wei until `expiry` (chain time), paid over multi-hop routes;
        its preimage is stored with it (docs/protocol.md §13.1)."""
        return await self._multihop().invoice(amount, expiry, min_final=min_final, description=description)

    async def pay_invoice(self, invoice: Invoice | str, timeout: float = 30.0) -> tuple[Route, bytes]:
        """Pays an invoice (or its `perun1…` text) over the cheapest route this node finds by
        asking its peers for their channels; returns the route and the preimage once the payee
        claimed (docs/protocol.md §13.9). RouteNotFound says why there is none."""
        if isinstance(invoice, str):
            invoice = Invoice.decode(invoice)
        return await self._multihop().pay(invoice, timeout)

    async def pay_to(self, payee: str, amount: int, timeout: float = 30.0) -> tuple[Route, bytes]:
        """Pays `amount` wei to `payee` over the cheapest route, without an invoice (keysend: no
        proof of payment, docs/protocol.md §13.9); returns the route and the preimage."""
        return await self._multihop().pay_to(parse_address(payee), amount, timeout)

    def _multihop(self) -> Multihop:
        if self.multihop is None:
            raise errors.WrongStage("this node runs no multi-hop payments (no MSContract or HashTimeLock app)")
        return self.multihop

    async def close(self, cid: bytes, timeout: float | None = None) -> tuple[int, int]:
        """Cooperative close: both sign a final state, which pays out at once (also during a
        dispute). Returns the payout (alice, bob). If the peer does not answer, use `register`."""
        return await self.payment.cooperative_close(cid, timeout)

    async def register(self, cid: bytes) -> Receipt | None:
        """Unilateral close: registers the latest state the peer signed and starts Δ (or
        replaces an older registered state within Δ). None if the channel closed meanwhile."""
        return await self.payment.register(cid)

    async def finalize(self, cid: bytes) -> Receipt | None:
        """Pays out the registered state once Δ has passed. None if it was paid out already."""
        return await self.payment.finalize(cid)

    async def refund(self, cid: bytes) -> Receipt | None:
        """Alice takes her deposit back when Bob did not confirm in time. None if the channel
        was refunded already."""
        return await self.payment.refund(cid)

    async def cooperative_close_on_chain(self, cid: bytes) -> Receipt | None:
        """Submits the final state both signed. None if the channel closed meanwhile."""
        return await self.payment.cooperative_close_on_chain(cid)

    async def towers_hold(self, cid: bytes, version: int, nanocontracts: Mapping[bytes, int] | None = None,
                          timeout: float = 30.0) -> None:
        """Waits until every tower (`towers`) acknowledged channel `cid` at `version` or above: a
        payment channel's state; a multistate channel's state, and each nanocontract of
        `nanocontracts` (nid: version) at its version or above; for a virtual channel of which
        this node is an end, the SETTLE of its half with γ's state at `version` or above."""
        holder = self.runtime.registry.holder(cid)
        if self.multistate is not None and holder is self.multistate:
            await self.multistate.towers_hold(cid, version, nanocontracts, timeout=timeout)
        elif self.virtual is not None and holder is self.virtual:
            await self.virtual.towers_hold(cid, version, timeout)
        else:
            await self.payment.towers_hold(cid, version, timeout)

    # ================================================================== every kind

    async def sync(self) -> None:
        """Reads the chain now and does what is due (the follower also does it every poll)."""
        await self.runtime.follower.poll()

    async def wait_for(self, cid: bytes, predicate: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        """Waits until the record of channel `cid` (of any kind) satisfies `predicate`: an event,
        not a sleep."""
        return await self.runtime.wait_for(cid, predicate, timeout)

    def describe(self, cid: bytes) -> dict[str, Any]:
        """Channel `cid` of any kind, as JSON (with its `kind`)."""
        holder = self.runtime.registry.holder(cid)
        if holder is None:
            return self.payment.describe(cid)  # raises UnknownChannel
        return holder.describe(cid)

    async def on_chain(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs a blocking chain call on the node's chain thread (inline on the embedded chain)."""
        return await self.runtime.on_chain(fn, *args)


class Watchtower:
    """A watchtower (docs/protocol.md §12): a runtime that runs only the tower protocols, with its
    own key (which pays its transactions and is paid its rewards), store, chain follower and
    listening port. Parties on the PaymentContract at `contract` connect to it and hand it their
    latest states (Node's `towers`); it refutes stale closes of their channels on their behalf.
    Given `ms_contract`, it watches multistate channels there too (perun.protocols.mstower): it
    refutes, registers their nanocontracts' latest states, and makes the SETTLE calls of
    virtual channels' halves on the VirtualChannel app at `virtual_app`.

        async with Watchtower(key, chain, contract_address, "tower.db", port=9735) as tower:
            ...
    """

    def __init__(self, key: bytes | str | LocalAccount, chain: Chain, contract: str, store_path: Path | str,
                 host: str = "127.0.0.1", port: int = 0, *, poll_interval: float = 0.25,
                 response_timeout: float = RESPONSE_TIMEOUT, name: str | None = None, confirmations: int | None = None,
                 fees: FeePolicy = FeePolicy(), limits: Limits = Limits(), ms_contract: str | None = None,
                 virtual_app: str | None = None) -> None:
        if confirmations is None:
            confirmations = default_confirmations(chain.chain_id)
        self.runtime = rt = Runtime(key, chain, (chain.chain_id, to_checksum_address(contract)), store_path,
                                    host=host, port=port, name=name, poll_interval=poll_interval,
                                    response_timeout=response_timeout, confirmations=confirmations, fees=fees,
                                    limits=limits)
        self.tower = Tower(rt, contract)
        rt.registry.register(self.tower)
        self.ms_tower: MSTower | None = None
        if ms_contract:
            self.ms_tower = MSTower(rt, ms_contract, virtual_app)
            rt.registry.register(self.ms_tower)
        for protocol in rt.registry.protocols:
            rt.faults.declare(protocol.crash_points)
        self.address, self.name, self.store, self.faults = rt.address, rt.name, rt.store, rt.faults
        self.watcher = rt.follower  # as Node's: its chain time is what the control socket's errors say "now" with
        self.records = self.tower.records
        self.ms_records = self.ms_tower.records if self.ms_tower is not None else {}

    async def start(self) -> Watchtower:
        await self.runtime.start()
        return self

    async def stop(self) -> None:
        await self.runtime.stop()

    def kill(self) -> None:
        """Stops dead, as SIGKILL stops a process (see Node.kill)."""
        self.runtime.kill()

    async def __aenter__(self) -> Watchtower:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self.runtime.peers.port

    async def sync(self) -> None:
        """Reads the chain now and does what is due."""
        await self.runtime.follower.poll()

    async def wait_for(self, cid: bytes, predicate: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        """Waits until the tower's record of channel `cid` (of either kind) satisfies `predicate`."""
        return await self.runtime.wait_for(cid, predicate, timeout)

    def describe(self, cid: bytes) -> dict[str, Any]:
        if self.ms_tower is not None and cid in self.ms_tower.records:
            return self.ms_tower.describe(cid)
        return self.tower.describe(cid)
