"""What the chaos tests share: one anvil per module with every contract deployed, nodes in this
process on it (each with its own JSON-RPC connection, `CONFIRMATIONS` deep, quick to bid up),
the faults anvil can make (reorganisations, held and dropped transactions, a rising base fee,
an endpoint cut by a relay), and the honest party's disputes of each kind of channel with the
funds checked at the end.

On the module's anvil the chain moves only when the test says: automine is on (a transaction is
mined at once), and `World.mining` mines a block every few milliseconds while the nodes do
something that needs blocks on top (an event is final `CONFIRMATIONS` blocks deep). A world on
an anvil that mines every `block_time` seconds instead lets the blocks come.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount

from perun.chain.anvil import AnvilChain
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import Deployment
from perun.chain.multistate import MSContract
from perun.chain.payment import PaymentContract
from perun.chain.wallet import GWEI, FeePolicy
from perun.core.apps import BOB
from perun.core.apps import hashtimelock as htlc
from perun.core.channel import Phase
from perun.core.machine import Stage
from perun.node import Node
from perun.protocols.multistate.wire import by_peer
from perun.protocols.policy import ACCEPT_ALL

T = TypeVar("T")
CONFIRMATIONS = 6  # above the deepest reorganisation the tests make (5)
DELTA = 3600  # chain seconds; the tests move time past it themselves
FEES = FeePolicy(priority_fee=GWEI, bump_after=0.3, poll=0.02)
PREIMAGE = b"\x09" * 32


@dataclass
class World:
    chain: AnvilChain
    deployment: Deployment
    tmp: Path
    accounts: dict[str, LocalAccount] = field(default_factory=dict)
    rpc: dict[str, list[str]] = field(default_factory=dict)  # a node's endpoints, when not anvil's own
    block_time: int | None = None  # anvil mines every block_time seconds (None: when told)
    confirmations: int = CONFIRMATIONS

    @property
    def patience(self) -> float:
        """How long to wait for something the chain must confirm: more with slow blocks."""
        return 30.0 + (self.block_time or 0) * (self.confirmations + 6)

    @property
    def payment(self) -> PaymentContract:
        return PaymentContract(self.chain, self.deployment.payment_contract)

    @property
    def ms(self) -> MSContract:
        return self.deployment.multistate(self.chain)

    def account(self, name: str) -> LocalAccount:
        """`name`'s key, funded with 30 ETH from anvil's dev accounts in turn (a long run funds
        hundreds of parties)."""
        if name not in self.accounts:
            account = Account.create()
            devs = self.chain.dev_accounts
            tx = self.chain.w3.eth.send_transaction({"from": devs[len(self.accounts) % len(devs)],
                                                     "to": account.address, "value": 30 * ETHER})
            self.chain.w3.eth.wait_for_transaction_receipt(tx)
            self.accounts[name] = account
        return self.accounts[name]

    def node(self, name: str, **kwargs: Any) -> Node:
        kwargs.setdefault("poll_interval", 0.02)
        kwargs.setdefault("response_timeout", 10.0)
        kwargs.setdefault("policy", ACCEPT_ALL)
        kwargs.setdefault("accept_nanocontract", lambda nc: True)
        kwargs.setdefault("accept_virtual", lambda v: True)
        chain = RpcChain(self.rpc.get(name, [self.chain.url]), timeout=5)
        return Node(self.account(name).key, chain, self.deployment.payment_contract, self.tmp / f"{name}.db",
                    ms_contract=self.deployment.ms_contract, apps=self.deployment.apps, name=name,
                    confirmations=self.confirmations, fees=FEES, **kwargs)

    @contextlib.asynccontextmanager
    async def running(self, *names: str, **kwargs: Any) -> AsyncIterator[list[Node]]:
        nodes: list[Node] = []
        try:
            for name in names:
                nodes.append(await self.node(name, **kwargs).start())
            yield nodes
        finally:
            for node in nodes:
                if node.serving:
                    await node.stop()

    # ------------------------------------------------------------------ the chain

    def rpc_call(self, method: str, *params: Any) -> Any:
        return self.chain._dev_rpc(method, list(params))

    def mine(self, blocks: int = 1) -> None:
        self.chain.mine(blocks)

    def reorg(self, depth: int) -> None:
        """The last `depth` blocks replaced by as many empty ones: their transactions are gone.
        The new blocks come a second after the old head, so that each differs from the one it
        replaces (an empty block at the same time would be the same block) and time goes on."""
        time = self.chain.timestamp()
        self.rpc_call("anvil_rollback", depth)
        self.chain.set_next_block_timestamp(time + 1)
        self.mine(depth)

    def reorg_from(self, block: int, depth: int) -> None:
        """A reorganisation that replaces block `block` and the blocks after it, `depth` blocks
        at least (blocks are mined first to make it so deep)."""
        self.mine(max(block + depth - 1 - self.chain.block_number(), 0))
        self.reorg(self.chain.block_number() - block + 1)

    def automine(self, on: bool) -> None:
        self.rpc_call("evm_setAutomine", on)

    async def mining(self, work: Awaitable[T], every: float = 0.01) -> T:
        """Awaits `work` while a block is mined every `every` seconds (the chain moves on, so
        what the nodes wait for becomes final)."""
        if self.block_time:
            return await work
        task = asyncio.ensure_future(work)
        while not task.done():
            self.mine()
            await asyncio.wait([task], timeout=every)
        return task.result()

    async def final(self, *nodes: Node) -> None:
        """Every block mined so far is final for `nodes`, and they have read it."""
        if self.block_time:
            top = self.chain.block_number() + self.confirmations
            await self.until(lambda: self.chain.block_number() >= top, self.block_time * (self.confirmations + 2))
        else:
            self.mine(self.confirmations)
        for node in nodes:
            await node.sync()

    async def at(self, time: int, *nodes: Node) -> None:
        """A block at chain time `time`, read by `nodes` (which act on it), then made final."""
        self.chain.set_next_block_timestamp(time)
        if self.block_time:  # the next block takes it
            await self.until(lambda: self.chain.timestamp() >= time, timeout=3 * self.block_time)
        else:
            self.mine()
        for node in nodes:
            await node.sync()
        await self.final(*nodes)

    def contract_balances(self) -> tuple[int, int]:
        return self.chain.balance(self.deployment.payment_contract), self.chain.balance(self.deployment.ms_contract)

    @contextlib.asynccontextmanager
    async def unwatched(self, node: Node) -> AsyncIterator[None]:
        """`node`'s follower paused while the test strikes and looks at the chain (it would set
        right at once what the test is to see struck), once its wallet has seen its last
        transaction mined (else it sends it again, rightly, when the strike takes it away); it
        reads the chain again after."""
        await node.watcher.stop()
        await self.until(lambda: not node.runtime.journal.in_flight())
        try:
            yield
        finally:
            node.watcher.start()

    async def until(self, condition: Callable[[], bool], timeout: float = 30.0, mine: bool = False) -> None:
        """Waits until `condition()` holds, looking every few milliseconds (mining meanwhile if
        `mine`: what the nodes are to do may need a block on top)."""
        async with asyncio.timeout(timeout):
            while not condition():
                if mine and not self.block_time:
                    self.mine()
                await asyncio.sleep(0.01)

    def pending_from(self, address: str) -> list[dict[str, Any]]:
        """The transactions of `address` in anvil's pool."""
        pool = self.rpc_call("txpool_content")["pending"]
        found = next((txs for who, txs in pool.items() if who.lower() == address.lower()), {})
        return list(found.values())


# ---------------------------------------------------------------------- disputes, by kind


@dataclass
class Dispute:
    """Alice and Bob's channel `cid` of `kind`; Bob has closed it with an old state that pays
    him more and gone offline. `latest` is the payout (alice, bob) the latest state gives."""

    kind: str
    alice: Node
    cid: bytes
    latest: tuple[int, int]
    stale_version: int
    latest_version: int
    world: World

    @property
    def contract(self) -> PaymentContract | MSContract:
        return self.world.payment if self.kind == "payment" else self.world.ms

    def block_of(self, event: str, version: int | None = None) -> int:
        """The block of this channel's latest `event` (with `version`, if given)."""
        found = [e.block_number for e in self.contract.events(max(self.world.chain.block_number() - 100, 0))
                 if e.name == event and e.args.get("channelId") == self.cid
                 and (version is None or e.args.get("version") == version)]
        assert found, f"no {event} of the channel"
        return found[-1]

    def registered(self) -> int:
        """The version the chain holds registered now."""
        return self.contract.channel(self.cid).version

    def outcome(self) -> tuple[int, int] | None:
        rec = self.alice.runtime.registry.record(self.cid)
        return rec.outcome if rec.stage is Stage.CLOSED else None

    async def settle(self) -> tuple[int, int]:
        """Time past the dispute window; Alice's node finalizes; the payout once final."""
        end = self.contract.channel(self.cid).deadline
        await self.world.at(max(end, self.world.chain.timestamp()) + 1, self.alice)
        await self.world.until(lambda: self.outcome() is not None, self.world.patience, mine=True)
        return self.outcome()  # type: ignore[return-value]


async def stale_close(world: World, kind: str, alice: Node, bob: Node,
                      before_close: Callable[[], Awaitable[None]] | None = None) -> Dispute:
    """Opens a channel of `kind` (Alice 2 ETH, Bob 1 ETH), moves money both ways so that an old
    state pays Bob more than the latest, stops Bob's node and has Bob close with the old state
    (after `before_close`)."""
    await alice.connect(bob.address, "127.0.0.1", bob.port)
    if kind == "payment":
        cid = await world.mining(alice.open(bob.address, 2 * ETHER, ETHER, DELTA, timeout=world.patience))
        await world.mining(bob.wait_for(cid, lambda r: r.stage is Stage.OPEN, world.patience))
        await alice.pay(cid, ETHER // 2)  # version 1: 1.5 / 1.5
        old = bob.channel(cid)
        await bob.pay(cid, ETHER)  # version 2: 2.5 / 0.5
        await bob.stop()
        if before_close:
            await before_close()
        world.payment.close(bob.account, old.params, old.current, old.peer_signature)
        return Dispute(kind, alice, cid, (5 * ETHER // 2, ETHER // 2), 1, 2, world)
    cid = await world.mining(alice.multistate.open(bob.address, 2 * ETHER, ETHER, DELTA, timeout=world.patience))
    await world.mining(bob.wait_for(cid, lambda r: r.stage is Stage.OPEN, world.patience))
    # Bob pays Alice 0.5 ETH with a hash-time lock she claims, absorbed into the cash.
    nid = await bob.multistate.create(cid, "HashTimeLock", htlc.initial(BOB, ETHER // 2, htlc.hashlock_of(PREIMAGE),
                                                                         world.chain.timestamp() + 10 * DELTA))
    old = bob.multistate.channel(cid)  # the lock blocks Bob's 0.5 here: closing with it, he reclaims it
    await alice.multistate.call(cid, nid, htlc.CLAIM, PREIMAGE)
    await alice.multistate.absorb(cid, nid)
    latest = bob.multistate.channel(cid)
    await bob.stop()
    if before_close:
        await before_close()
    world.ms.close(bob.account, old.params, old.state, by_peer(old, old.channel))
    return Dispute(kind, alice, cid, (5 * ETHER // 2, ETHER // 2), old.state.version, latest.state.version, world)


# ---------------------------------------------------------------------- the faults


async def refutation_reorganised_out(world: World, dispute: Dispute, depth: int) -> None:
    """Alice's refutation, and the blocks after it (`depth` at least), replaced by empty blocks."""
    await world.until(lambda: dispute.registered() == dispute.latest_version)  # refuted at depth 0
    async with world.unwatched(dispute.alice):
        world.reorg_from(dispute.block_of("CloseRegistered", dispute.latest_version), depth)
        assert dispute.registered() == dispute.stale_version
    await world.until(lambda: dispute.registered() == dispute.latest_version)  # and again


async def close_reorganised_out(world: World, dispute: Dispute, depth: int) -> None:
    """Bob's close and the blocks after it (Alice's refutation among them; `depth` at least),
    replaced by empty blocks: the channel is open, and Alice's record never stopped saying so."""
    await world.until(lambda: dispute.registered() == dispute.latest_version)
    async with world.unwatched(dispute.alice):
        block = dispute.block_of("CloseRegistered", dispute.stale_version)
        head = world.chain.block_number()
        world.reorg_from(block, depth)
        assert dispute.contract.channel(dispute.cid).phase is Phase.OPEN, (
            block, head, world.chain.block_number(), dispute.contract.channel(dispute.cid),
            [(e.name, e.block_number, e.args.get("version")) for e in dispute.contract.events(block - 5)
             if e.args.get("channelId") == dispute.cid])
    await world.final(dispute.alice)
    assert dispute.alice.runtime.registry.record(dispute.cid).stage is Stage.OPEN


async def finalize_reorganised_out(world: World, dispute: Dispute, depth: int) -> None:
    """Alice's finalize, and the blocks after it (`depth` at least), replaced by empty blocks."""
    await world.until(lambda: dispute.registered() == dispute.latest_version)
    await world.final(dispute.alice)
    world.chain.set_next_block_timestamp(dispute.contract.channel(dispute.cid).deadline + 1)
    world.mine()
    await world.until(lambda: dispute.contract.channel(dispute.cid).phase is Phase.CLOSED)  # finalized
    async with world.unwatched(dispute.alice):
        world.reorg_from(dispute.block_of("Finalized"), depth)
        assert dispute.contract.channel(dispute.cid).phase is Phase.CLOSING


async def refutation_held_out(world: World, dispute: Dispute, how: str) -> None:
    """With blocks held back, Alice's first bid is priced out by the base fee (`how`
    "priced-out") or dropped from the pool ("dropped"); her wallet sends it again, higher, and it
    is mined. Her follower was stopped before the close (`unwatched`): it is started here."""
    world.automine(False)
    try:
        dispute.alice.watcher.start()
        await world.until(lambda: len(world.pending_from(dispute.alice.address)) == 1)
        [first] = world.pending_from(dispute.alice.address)
        if how == "priced-out":
            world.rpc_call("anvil_setNextBlockBaseFeePerGas", hex(10 * int(first["maxFeePerGas"], 16)))
            world.mine()
            assert dispute.registered() == dispute.stale_version  # left out of that block
        else:
            world.rpc_call("anvil_dropTransaction", first["hash"])
            assert world.pending_from(dispute.alice.address) == []
        await world.until(lambda: [t["hash"] for t in world.pending_from(dispute.alice.address)]
                          not in ([], [first["hash"]]))
        [again] = world.pending_from(dispute.alice.address)
        assert again["nonce"] == first["nonce"]
        assert int(again["maxFeePerGas"], 16) > int(first["maxFeePerGas"], 16)
        world.mine()
        assert dispute.registered() == dispute.latest_version
    finally:
        world.automine(True)
