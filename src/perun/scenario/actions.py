"""What the steps do (docs/scenarios.md, Steps): open, pay and close channels, create and play
nanocontracts, open and close virtual channels, through the parties' nodes; stop, restart and
crash the nodes. A party that sends a state of its choosing, or acts while its node is down, goes
through perun.scenario.bypass; the network's faults and the chain's time, through
perun.scenario.environment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from perun import errors
from perun.core.apps import ALICE, BOB, AppState, app_named
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import tictactoe as ttt
from perun.core.apps import virtualchannel as vc
from perun.core.channel import ETH
from perun.core.machine import Stage
from perun.core.msmachine import MSRecord
from perun.core.multistate import nanocontract_id
from perun.core.onion import compressed_public_key
from perun.scenario.bypass import Bypass
from perun.scenario.narrator import Narrator
from perun.scenario.network import Network, Rule
from perun.scenario.spec import DEFAULT_EXPIRY, ChannelSpec, NanocontractSpec, VirtualSpec
from perun.scenario.world import World

STEP_TIMEOUT = 30.0  # a step that takes longer fails; a restart waits as long for its peers


class Actions:
    """Does what each step says, for one run."""

    def __init__(self, world: World, narrator: Narrator, network: Network, bypass: Bypass,
                 on_kill: Callable[[str, str | None], None]) -> None:
        self.world = world
        self.narrator = narrator
        self.network = network
        self.bypass = bypass
        self.on_kill = on_kill  # told when a node is killed
        self._background: list[asyncio.Future] = []  # an opening nobody confirms: it ends in a refund

    async def start(self, name: str) -> None:
        """Starts the party's node (or the tower) behind its relay."""
        self.network.ports[name] = await self.world.member(name).start(self.on_kill)

    async def stop(self) -> None:
        """At the end of the run: what still runs in the background, then every node."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for member in self.world.members():
            await member.shutdown()

    # ------------------------------------------------------------------ payment and multistate channels

    async def open(self, channel: str, confirm: bool) -> None:
        spec = self.world.scenario.channels[channel]
        party, bob = self.world.parties[spec.alice], self.world.parties[spec.bob]
        alice = party.running_node()
        await party.connect(bob, self.network.port(spec.bob))
        token = ETH if spec.token == "ETH" else self.world.token.address
        if not confirm:  # Bob's node dies right after it accepts: nobody confirms
            self.network.add_rule(Rule(spec.bob, "AcceptChannel", "pass", then=bob.running_node().kill))
        multistate = spec.kind == "multistate"
        opener = party.multistate() if multistate else alice
        records = party.records(multistate)
        opening = asyncio.ensure_future(opener.open(bob.address, *spec.deposits, spec.delta, token))
        # The id is known as soon as Alice stores her proposal; Bob's node may be the one to die.
        cid = None
        while cid is None and not opening.done():
            cid = next((c for c, rec in records.items() if rec.params.bob == bob.address
                        and c not in self.world.cids.values()), None)
            if cid is None:
                changed = alice.runtime.changed()
                await asyncio.wait((changed, opening), return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
        cid = cid or opening.result()
        self.world.cids[channel] = cid
        self.world.params[channel] = records[cid].params
        self.network.alice_of[cid] = spec.alice
        self.narrator.opened(channel, cid)
        if not confirm:
            self._background.append(opening)  # it ends when the channel is refunded
            await alice.wait_for(cid, lambda rec: rec.stage is not Stage.PROPOSED and rec.stage is not Stage.ACCEPTED)
            return
        await opening
        await bob.running_node().wait_for(cid, lambda rec: rec.stage is not Stage.ACCEPTED
                                          and rec.stage is not Stage.INITIALISING)

    async def pay(self, channel: str, payer: str, amount: int, send: bool, answer: bool) -> None:
        cid = self.world.cid(channel)
        alice, bob = self.world.ends(channel)
        payee = bob if payer == alice else alice
        rule = None
        if not send:
            rule = self.network.add_rule(Rule(payer, "Update", "drop"))
        elif not answer:
            rule = self.network.add_rule(Rule(payee, "UpdateAck", "drop"))
        paying = asyncio.ensure_future(self.world.parties[payer].running_node().pay(cid, amount))
        if rule is None:
            await paying
            return
        # The payer's signature (or the payee's) never arrives: the payment stays pending.
        await rule.seen.wait()
        paying.cancel()
        await asyncio.gather(paying, return_exceptions=True)
        self.narrator.note(payer, "the payment stays unanswered")

    async def cooperative_close(self, channel: str, by: str, version: int | None = None) -> None:
        """Both sign a final state, which `by`'s node submits: open or closing, the channel is paid
        out at once. With a version, both sign it by hand and `by` sends it (perun.scenario.bypass)."""
        cid, party = self.world.cid(channel), self.world.parties[by]
        if version is not None:
            self.bypass.cooperative_close(channel, by, version)
            return
        if self.world.is_multistate(channel):
            paid = await party.multistate().cooperative_close(cid)
        else:
            paid = await party.running_node().close(cid)
        alice, bob = self.world.ends(channel)
        self.narrator.note(by, f"{bob if by == alice else alice} countersigned the final state; paid out "
                               f"{self.world.amounts(*paid)}")

    async def close(self, channel: str, by: str, version: int | str) -> None:
        """A unilateral close: `by`'s node registers the latest state, or `by` sends a version
        of its choosing."""
        cid = self.world.cid(channel)
        multistate = self.world.is_multistate(channel)
        if version == "latest" and multistate:
            await self.world.parties[by].multistate().close(cid)
        elif version == "latest":
            await self.world.parties[by].running_node().register(cid)
        elif multistate:
            self.bypass.close_multistate(channel, by, version)  # type: ignore[arg-type]
        else:
            self.bypass.close(channel, by, version)  # type: ignore[arg-type]

    async def on_chain(self, action: str, channel: str, by: str) -> None:
        """`finalize` or `refund`: by the node if it runs."""
        cid, party = self.world.cid(channel), self.world.parties[by]
        if not party.running:
            self.bypass.on_chain(action, channel, by)
            return
        await getattr(party.multistate() if self.world.is_multistate(channel) else party.running_node(), action)(cid)

    # ------------------------------------------------------------------ nanocontracts

    async def create(self, spec: NanocontractSpec) -> None:
        node = self.world.parties[spec.by].multistate()
        cid = self.world.cid(spec.channel)
        me = self._role(spec.channel, spec.by)
        initial: AppState
        if spec.app == "HashTimeLock":
            timeout = self.world.chain.timestamp() + spec.timeout
            initial = htlc.initial(me, spec.amount, htlc.hashlock_of(spec.preimage), timeout)
            self.world.lock_timeouts[spec.name] = timeout
        else:
            initial = ttt.initial(*spec.stakes, self._role(spec.channel, spec.first), spec.move_timeout)
        self.world.nids[spec.name] = _next_nid(node.channel(cid))  # so that the recording names its messages
        self.world.nids[spec.name] = await node.create(cid, spec.app, initial)

    async def call(self, a: dict[str, Any]) -> None:
        node = self.world.parties[a["by"]].multistate()
        await node.call(self.world.cid(a["channel"]), self.world.nid(a["nanocontract"]), *self._fun_z(a))

    async def enforce(self, a: dict[str, Any]) -> None:
        """A call the peer will not countersign, taken to the chain: the node registers the
        nanocontract and executes the call once its window has passed."""
        node = self.world.parties[a["by"]].multistate()
        await node.enforce(self.world.cid(a["channel"]), self.world.nid(a["nanocontract"]), *self._fun_z(a))

    async def absorb(self, channel: str, by: str, name: str) -> None:
        await self.world.parties[by].multistate().absorb(self.world.cid(channel), self.world.nid(name))

    async def register(self, channel: str, by: str, name: str, version: int | str) -> None:
        cid, nid = self.world.cid(channel), self.world.nid(name)
        if version != "latest":
            self.bypass.register(channel, by, name, version)  # type: ignore[arg-type]
            return
        await self.world.parties[by].multistate().register(cid, nid)

    async def execute(self, a: dict[str, Any]) -> None:
        """Executes a registered nanocontract's function on chain: by the node if it runs."""
        cid, nid, party = self.world.cid(a["channel"]), self.world.nid(a["nanocontract"]), self.world.parties[a["by"]]
        fun, z = self._fun_z(a)
        if party.running:
            await party.multistate().execute(cid, nid, fun, z)
        else:
            self.bypass.execute(a["channel"], a["by"], nid, fun, z)

    def _role(self, channel: str, party: str) -> int:
        return ALICE if self.world.scenario.channels[channel].alice == party else BOB

    def _fun_z(self, a: dict[str, Any]) -> tuple[int, bytes]:
        """The app's function number and argument for a call, execute or enforce step."""
        spec = self.world.scenario.nanocontracts[a["nanocontract"]]
        function = a["function"]
        z = b""
        if function == "claim":  # a multi-hop payment's lock has its invoice's preimage
            invoice = self.world.invoice_of(spec.name)
            z = a.get("preimage") or (self.world.preimage(invoice) if invoice else spec.preimage)
        elif function == "move":
            z = ttt.move_arg(a["cell"])
        return app_named(spec.app).functions[function], z

    # ------------------------------------------------------------------ virtual channels

    async def open_virtual(self, gamma: VirtualSpec) -> None:
        world = self.world
        alice, bob = world.parties[gamma.alice], world.parties[gamma.bob]
        await alice.connect(bob, self.network.port(gamma.bob))  # the ends pay each other directly
        ledger_a, ledger_b = (world.cid(ledger) for ledger in gamma.ledgers)
        # Each half's nid is its ledger channel's next version (Alice proposes ν_a, Ingrid ν_b):
        # known before the messages go out, so that the recording names them.
        names = [f"{gamma.name}@{ledger}" for ledger in gamma.ledgers]
        for name, ledger, proposer in zip(names, gamma.ledgers, (gamma.alice, gamma.ingrid)):
            world.nids[name] = _next_nid(world.parties[proposer].record(world.cids[ledger]))  # type: ignore[arg-type]
        validity = world.chain.timestamp() + gamma.validity
        try:
            gid = await alice.virtual().open(ledger_a, bob.address, ledger_b, *gamma.deposits, validity, gamma.window,
                                             gamma.fee)
        except (asyncio.CancelledError, errors.PeerTimeout):
            # A node died mid-opening, or no answer came in time: γ may still open, once the
            # node is back or the late answer comes.
            if not self._opening_cut(gamma, validity):
                for name in names:
                    del world.nids[name]
            raise
        except BaseException:  # a refused opening leaves no half to name
            for name in names:
                del world.nids[name]
            raise
        world.gids[gamma.name], world.validity[gamma.name] = gid, validity
        for half in world.parties[gamma.ingrid].virtual_record(gid).halves:  # type: ignore[union-attr]
            world.nids[names[half.side]] = half.nid
        self.narrator.opened(gamma.name, gid)
        self.narrator.note(None, f"{gamma.name} is 0x{gid.hex()[:12]}…, valid until chain time {validity}")

    def _opening_cut(self, gamma: VirtualSpec, validity: int) -> bool:
        """After a crash or Alice's reply time cut `open` short: True if Alice's node holds its
        proposal of her half, which names γ, in flight or expired. Her node repeats it on
        reconnection, and adopts Ingrid's late answer to it: the opening completes once the node
        that died is back, or Bob answers (docs/protocol.md §11.2), so the file may go on naming γ."""
        ledger = self.world.cid(gamma.ledgers[0])
        nid = self.world.nids[f"{gamma.name}@{gamma.ledgers[0]}"]
        rec = self.world.parties[gamma.alice].record(ledger)
        proposals = (*getattr(rec, "pending", ()), *getattr(rec, "expired", ()))
        half = next((p.nanocontract for p in proposals if p.nanocontract is not None and p.nanocontract.nid == nid),
                    None)
        if half is None:
            return False
        gid = vc.decode(half.storage).id
        self.world.gids[gamma.name], self.world.validity[gamma.name] = gid, validity
        self.narrator.opened(gamma.name, gid)
        return True

    async def close_virtual(self, gamma: VirtualSpec, by: str, timeout: float | None) -> None:
        paid = await self.world.parties[by].virtual().close(self.world.cid(gamma.name), timeout)
        self.narrator.note(by, f"{gamma.ingrid} settled {gamma.name}: {self.world.amounts(*paid)}")

    # ------------------------------------------------------------------ multi-hop payments

    async def invoice(self, a: dict[str, Any]) -> None:
        """The payee's node makes an invoice payable for `expiry` seconds from the latest block."""
        by, name = a["by"], a["name"]
        expiry = self.world.chain.timestamp() + a.get("expiry", DEFAULT_EXPIRY)
        invoice = await self.world.parties[by].running_node().invoice(
            a["amount"], expiry, min_final=a.get("min_final", 0), description=a.get("description", ""))
        self.world.invoices[name] = invoice
        self.narrator.note(by, f"invoice {name}: {self.world.amount(invoice.amount)}, payment hash "
                               f"0x{invoice.payment_hash.hex()[:12]}…, payable until chain time {expiry}")

    async def pay_invoice(self, payer: str, name: str, channels: tuple[str, ...], timeout: float,
                          amount: int | None = None, secret: bytes | None = None) -> None:
        """The payer's node pays the invoice over the route; the step ends when it holds the
        preimage, or after `timeout` seconds (PeerTimeout: the locks stay, and the payment goes
        on or unwinds as the nodes and the chain move). With `amount` (what the route delivers)
        or `secret` (the payment secret in the payee's layer of the onion), the payer's node
        locks that without its own checks of the invoice: a payer that breaks the route."""
        world = self.world
        if name not in world.invoices:
            raise errors.WrongStage(f"invoice {name} was never made")
        invoice = world.invoices[name]
        by_hand = amount is not None or secret is not None
        route = world.route(payer, channels, invoice if amount is None else replace(invoice, amount=amount))
        hops = world.scenario.invoices[name]
        forwarders = [world.name(hop.node) for hop in route.hops[:-1]]
        fees = ", ".join(f"{who} {world.amount(fee)}" for who, fee in zip(forwarders, route.fees)) or "none"
        self.narrator.note(payer, f"route {' → '.join([payer, *map(world.name, (h.node for h in route.hops))])}: "
                                  f"locks {world.amount(route.total)} for {world.amount(route.amount)} to "
                                  f"{hops.payee}; fees {fees}")
        # Each hop's key for its layer of the onion, as announcements will give them.
        keys = {hop.node: compressed_public_key(world.member(world.name(hop.node)).account.key) for hop in route.hops}
        multihop = world.parties[payer].multihop()
        try:
            if by_hand:
                preimage = await multihop.lock_route(route, invoice.payment_hash, secret or invoice.payment_secret,
                                                     keys, timeout)
            else:
                preimage = await multihop.pay_route(route, invoice, keys, timeout)
        except errors.PeerTimeout as exc:
            raise errors.PeerTimeout(f"{payer} holds no preimage of {name} after {timeout:g} s; the payment goes on "
                                     "without it (its locks are claimed, or taken back after their timeouts)") from exc
        self.narrator.note(payer, f"holds the preimage 0x{preimage.hex()[:12]}…: {name} is paid")

    # ------------------------------------------------------------------ nodes

    async def offline(self, name: str) -> None:
        await self.world.member(name).running_node().stop()
        self.narrator.note(name, "offline")

    async def restart(self, name: str, note: str) -> None:
        """Starts the party's node again on its store, and waits until it has caught up with its
        running peers."""
        world = self.world
        if name in world.towers:
            await self._restart_tower(name, note)
            return
        party = world.parties[name]
        if party.running:
            raise errors.WrongStage(f"{name}'s node is running")
        await self.start(name)
        self.narrator.note(name, note)
        # Whoever dialled before redials (from its store, or when its connection dropped).
        opened: list[ChannelSpec | VirtualSpec] = [
            *(c for key, c in world.scenario.channels.items() if key in world.cids),
            *(g for key, g in world.scenario.virtual.items() if key in world.gids)]
        peers = {c.bob if c.alice == name else c.alice for c in opened if name in (c.alice, c.bob)}
        for peer in (world.parties[p] for p in sorted(peers)):
            if peer.running:
                await party.wait_connected(peer, STEP_TIMEOUT)
        # Then they resynchronise (Reestablish, StateSync, pending updates): wait until every open
        # channel with a running peer holds the same latest state on both sides, none pending.
        for key, cid in world.cids.items():
            c = world.scenario.channels[key]
            if name not in (c.alice, c.bob):
                continue
            peer = world.parties[c.bob if c.alice == name else c.alice]
            if peer.running:
                await party.resync(peer, cid, c.kind, STEP_TIMEOUT)
        for key, gid in world.gids.items():  # a virtual channel's ends resynchronise its updates likewise
            ends = world.scenario.virtual[key].ends
            if name not in ends:
                continue
            peer = world.parties[ends[1 - ends.index(name)]]
            if peer.running:
                await party.resync(peer, gid, "virtual", STEP_TIMEOUT)

    async def _restart_tower(self, name: str, note: str) -> None:
        """Starts the tower again on its store, and waits until each running client has redialled
        it (each then hands it the states it has not acknowledged: `expect: {tower: ...}` waits
        for those)."""
        tower = self.world.towers[name]
        if tower.running:
            raise errors.WrongStage(f"{name}'s tower is running")
        await self.start(name)
        self.narrator.note(name, note)
        for client in (self.world.parties[p] for p in self.world.scenario.clients(name)):
            if client.running:
                await client.running_node().wait_connected(tower.address, STEP_TIMEOUT)

    def crash(self, name: str, at: str | None) -> None:
        self.world.member(name).crash(at)
        if at is not None:  # the node dies when it gets there
            self.narrator.note(name, f"will die at {at}")


def _next_nid(rec: MSRecord) -> bytes:
    """The nid of the next nanocontract created in this multistate channel: the channel version
    its creation will have, known before the messages go out."""
    return nanocontract_id(rec.channel_id, max(rec.channel_signed, rec.state.version) + 1)
