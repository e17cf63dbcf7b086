"""A scenario's party and its node: how the runner builds a node, and everything it reads of one.

The runner acts through a node's calls (open, pay, close, ... on the node, or on its multistate
and virtual parts); what it reads besides (the records in memory, the store, whether the node
runs, where it crashes) goes through `Party` alone, so that a change in the node is adapted here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

from eth_account.signers.local import LocalAccount

from perun import errors
from perun.chain.backend import Chain
from perun.chain.deploy import Deployment
from perun.core.apps.virtualchannel import VirtualChannelData
from perun.core.machine import ChannelRecord, Stage
from perun.core.msmachine import MSRecord
from perun.core.mstower import MSWatched
from perun.core.multihop import HopRecord
from perun.core.multistate import NanocontractState
from perun.core.tower import Watched
from perun.core.virtual import VirtualRecord
from perun.node import REPLY_TIME, Node, Watchtower
from perun.protocols.multihop import Multihop
from perun.protocols.multistate import Multistate
from perun.protocols.policy import ACCEPT_ALL
from perun.protocols.virtual import HubPolicy, Virtual
from perun.scenario.spec import Party as PartySpec
from perun.scenario.spec import TowerSpec
from perun.store import Store

POLL = 0.05  # the nodes' own chain polling, between the runner's settles
RESPONSE_TIMEOUT = 5.0


class _NodeMultistate(TypedDict, total=False):
    """A node's arguments for multistate (and virtual) channels, when the file has any."""

    ms_contract: str
    apps: Mapping[str, str]
    accept_nanocontract: Callable[[NanocontractState], bool]
    accept_virtual: Callable[[VirtualChannelData], bool]
    hub: HubPolicy | None


class _TowerMultistate(TypedDict, total=False):
    """A tower's arguments for multistate channels, when the file has any."""

    ms_contract: str
    virtual_app: str | None


class Party:
    """One party: its key, its store file, and its node (None until started; a stopped or
    killed node stays here until the next start replaces it)."""

    def __init__(self, name: str, spec: PartySpec, account: LocalAccount, store: Path, chain: Chain,
                 contract: str, deployment: Deployment | None) -> None:
        self.name = name
        self.spec = spec
        self.account = account
        self.store = store
        self.node: Node | None = None
        self._chain = chain
        self._contract = contract  # PaymentContract's address: the node's, and its store's
        self._deployment = deployment  # with a multistate channel: MSContract and the apps
        self.towers: dict[str, tuple[str, int]] = {}  # the towers it hands its states to: address -> where (relays)

    @property
    def address(self) -> str:
        return self.account.address

    # ------------------------------------------------------------------ the node's life

    async def start(self, on_kill: Callable[[str, str | None], None]) -> int:
        """Starts a node on the party's store; returns the port it listens on. `on_kill(name,
        crash point)` is told when the node is killed."""
        spec = self.spec
        multistate: _NodeMultistate = {} if self._deployment is None else {
            "ms_contract": self._deployment.ms_contract, "apps": self._deployment.apps,
            "accept_nanocontract": lambda nc: True,  # every party agrees to the games the file creates
            "accept_virtual": lambda v: spec.accept_virtual, "hub": spec.hub,
        }
        # The file scripts both parties of every channel: what each deposits is the file's say.
        node = Node(self.account.key, self._chain, self._contract, self.store, poll_interval=POLL,
                    response_timeout=spec.response_timeout or RESPONSE_TIMEOUT, name=self.name, policy=ACCEPT_ALL,
                    reply_time=spec.reply_time or REPLY_TIME, towers=self.towers, tower_reward=spec.reward,
                    forward=spec.forward, **multistate)
        node.on_kill = lambda killed: on_kill(self.name, killed.faults.armed)
        await node.start()
        self.node = node
        return node.port

    @property
    def running(self) -> bool:
        return self.node is not None and self.node.serving

    def running_node(self) -> Node:
        if self.node is None or not self.node.serving:
            raise errors.PeerUnavailable(f"{self.name}'s node is not running")
        return self.node

    def multistate(self) -> Multistate:
        """The running node's multistate channels."""
        return self.running_node().multistate  # type: ignore[return-value]

    def virtual(self) -> Virtual:
        """The running node's virtual channels."""
        return self.running_node().virtual  # type: ignore[return-value]

    def multihop(self) -> Multihop:
        """The running node's multi-hop payments."""
        return self.running_node().multihop  # type: ignore[return-value]

    async def connect(self, peer: Party, port: int) -> None:
        """Dials `peer` at its relay's port, unless the running node is connected to it."""
        node = self.running_node()
        if peer.address not in node.peers:
            await node.connect(peer.address, "127.0.0.1", port)

    async def wait_connected(self, peer: Party, timeout: float) -> None:
        """After this party's restart: waits until its new node is connected to `peer`."""
        await self.node.wait_connected(peer.address, timeout)  # type: ignore[union-attr]

    async def sync(self) -> None:
        """The node reads the chain now and does what is due."""
        await self.node.sync()  # type: ignore[union-attr]

    def crash(self, at: str | None) -> None:
        """Kills the running node now, or makes it die when it reaches the crash point `at`."""
        node = self.running_node()
        if at is None:
            node.kill()
            return
        node.faults.kill_at(at)

    async def shutdown(self) -> None:
        """Stops the node at the end of the run, unless it was killed."""
        if self.node is not None and not self.node.killed:
            await self.node.stop()

    # ------------------------------------------------------------------ what the runner reads

    def records(self, multistate: bool) -> dict[bytes, Any]:
        """The running node's channel records in memory: payment or multistate channels."""
        node = self.running_node()
        return node.multistate.records if multistate else node.records  # type: ignore[union-attr]

    def record(self, cid: bytes) -> ChannelRecord | MSRecord | None:
        """The party's record of a payment or multistate channel: its node's, stopped or not,
        or its store's when the node was killed or does not hold it."""
        node = self.node
        if node is not None and not node.killed and (rec := node.runtime.registry.record(cid)) is not None:
            return rec
        return next((rec for rec in self._stored_records() if rec.channel_id == cid), None)

    def virtual_record(self, gid: bytes) -> VirtualRecord | None:
        """The party's record of γ: its node's, or its store's when the node is down."""
        if self.running:
            return self.node.virtual.records.get(gid)  # type: ignore[union-attr]
        return self._from_file(lambda store: next((v for v in store.virtual_channels() if v.id == gid), None), None)

    def virtual_settled(self, gid: bytes) -> bool | None:
        """Whether the running node sees each of γ's halves settled, off chain or on chain; None
        when the node is not running."""
        if not self.running:
            return None
        return self.node.virtual.info(gid).settled  # type: ignore[union-attr]

    def hop(self, payment_hash: bytes) -> HopRecord | None:
        """The party's part in a multi-hop payment: its node's record, or its store's when the
        node is down."""
        if self.running:
            return self.multihop().records.get(payment_hash)
        return self._from_file(lambda store: next((h for h in store.hops() if h.payment_hash == payment_hash), None),
                               None)

    def states(self, cid: bytes) -> list[Any]:
        """Every state of a payment or virtual channel the party's store holds, with signatures."""
        return self._stored(lambda store: store.states(cid), [])

    def ms_states(self, cid: bytes) -> list[Any]:
        """Every channel and nanocontract state of a multistate channel the party's store holds."""
        return self._stored(lambda store: store.ms_states(cid), [])

    def _stored(self, read: Callable[[Store], Any], missing: Any) -> Any:
        """`read` on the party's store: its node's while it runs, else the file's (`missing` if
        there is none)."""
        if self.running:
            return read(self.node.store)  # type: ignore[union-attr]
        return self._from_file(read, missing)

    def _from_file(self, read: Callable[[Store], Any], missing: Any) -> Any:
        if not self.store.exists():
            return missing
        store = Store(self.store, self.address, self._chain.chain_id, self._contract)
        try:
            return read(store)
        finally:
            store.close()

    async def resync(self, peer: Party, cid: bytes, kind: str, timeout: float) -> None:
        """After this party's restart: waits until it and `peer` agree on a channel of `kind`
        (payment, multistate or virtual), its updates resent and answered."""
        node, other = self.node, peer.running_node()
        assert node is not None  # started by the restart
        if kind == "multistate":  # each side repeats its proposals in flight; wait until none is left
            for n in (node, other):
                if cid in n.multistate.records:  # type: ignore[union-attr]
                    await n.wait_for(cid, lambda rec: rec.stage is not Stage.OPEN or not rec.pending, timeout)
        elif kind == "virtual" or cid in node.records:
            await _same_latest((node, other), cid, timeout)

    def _stored_records(self) -> list[ChannelRecord | MSRecord]:
        return self._from_file(lambda store: [*store.channels(), *store.ms_channels()], [])


async def _same_latest(pair: tuple[Node, Node], cid: bytes, timeout: float) -> None:
    """Waits until both ends hold the same latest state of a payment or virtual channel (whose
    updates are a payment channel's too), none pending."""
    def updates(n: Node) -> ChannelRecord:
        return n.payment.updates(cid)  # type: ignore[return-value]
    def idle(n: Node, _: object) -> bool:
        return updates(n).stage is not Stage.OPEN or not updates(n).pending

    def reached(target: int, n: Node, _: object) -> bool:
        return updates(n).stage is not Stage.OPEN or updates(n).current.version >= target
    for n in pair:
        await n.wait_for(cid, partial(idle, n), timeout)
    target = max(updates(n).current.version for n in pair)
    for n in pair:
        await n.wait_for(cid, partial(reached, target, n), timeout)


class TowerParty:
    """A watchtower of the scenario: its key, its store file, and its `Watchtower` (None until
    started; a stopped or killed one stays here until the next start replaces it). It runs, stops,
    crashes and restarts as a party's node does."""

    def __init__(self, name: str, spec: TowerSpec, account: LocalAccount, store: Path, chain: Chain,
                 contract: str, deployment: Deployment | None) -> None:
        self.name = name
        self.spec = spec
        self.account = account
        self.store = store
        self.node: Watchtower | None = None
        self._chain = chain
        self._contract = contract
        self._deployment = deployment  # with a multistate channel: it watches MSContract and makes SETTLEs too

    @property
    def address(self) -> str:
        return self.account.address

    async def start(self, on_kill: Callable[[str, str | None], None]) -> int:
        """Starts the tower on its store; returns the port it listens on."""
        multistate: _TowerMultistate = {} if self._deployment is None else {
            "ms_contract": self._deployment.ms_contract, "virtual_app": self._deployment.apps.get("VirtualChannel")}
        tower = Watchtower(self.account.key, self._chain, self._contract, self.store, poll_interval=POLL,
                           response_timeout=RESPONSE_TIMEOUT, name=self.name, **multistate)
        tower.runtime.on_kill = lambda: on_kill(self.name, tower.faults.armed)
        await tower.start()
        self.node = tower
        return tower.port

    @property
    def running(self) -> bool:
        return self.node is not None and self.node.runtime.serving

    def running_node(self) -> Watchtower:
        if self.node is None or not self.node.runtime.serving:
            raise errors.PeerUnavailable(f"{self.name}'s tower is not running")
        return self.node

    async def sync(self) -> None:
        """The tower reads the chain now and does what is due."""
        await self.node.sync()  # type: ignore[union-attr]

    def crash(self, at: str | None) -> None:
        tower = self.running_node()
        if at is None:
            tower.kill()
            return
        tower.faults.kill_at(at)

    async def shutdown(self) -> None:
        if self.node is not None and not self.node.runtime.killed:
            await self.node.stop()

    async def stop(self) -> None:
        """`offline`: stops the running tower cleanly."""
        await self.running_node().stop()

    def record(self, cid: bytes) -> Watched | MSWatched | None:
        """The tower's record of a payment or multistate channel: its running tower's, else its
        store's."""
        if self.running:
            node = self.node
            return node.records.get(cid) or node.ms_records.get(cid)  # type: ignore[union-attr]
        if not self.store.exists():
            return None
        store = Store(self.store, self.address, self._chain.chain_id, self._contract)
        try:
            held: list[Watched | MSWatched] = [*store.watched(), *store.ms_watched()]
            return next((rec for rec in held if rec.channel_id == cid), None)
        finally:
            store.close()
