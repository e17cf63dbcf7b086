"""Plays a scenario (perun.scenario.spec) with real nodes and records what happened.

Every party is a `perun.Node` in this process, listening on loopback TCP; the nodes reach each
other through the relays of perun.scenario.network, which record the frames and play the
network's faults. One chain serves all: the embedded chain (fresh for each scenario) or an RPC
URL. After each step the runner lets the system settle (every running node reads the chain and
does its duties, until no new block appears and the relays fall quiet), samples the balances,
and goes on. A crash is `Node.kill`: the node stops dead where it is, as under SIGKILL, and only
what its store committed survives (real SIGKILL of node processes: tests/node/test_crashes.py).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from perun import errors
from perun.chain.backend import Chain, EmbeddedChain, RpcChain, Transaction
from perun.chain.payment import Event, PaymentContract
from perun.core.amounts import ether
from perun.core.channel import ETH, Params, PaymentState
from perun.core.machine import ChannelRecord, Stage
from perun.node import Killed, Node
from perun.scenario import record as r
from perun.scenario.network import Network, Rule
from perun.scenario.spec import Scenario, Step
from perun.store import Store
from perun.wire import messages as m

STEP_TIMEOUT = 30.0
QUIET = 0.05  # seconds without a frame on any relay: the network has settled
POLL = 0.05  # the nodes' own chain polling, between the runner's settles
RESPONSE_TIMEOUT = 5.0
TOKEN_FUNDS = 10_000  # units of the test token each party starts with
CLOSING_EVENTS = ("Finalized", "CooperativelyClosed")


def party_key(name: str) -> bytes:
    """The key of a party the file gives none on the embedded chain: derived from its name, so
    every run has the same addresses."""
    return keccak(b"perun scenario party " + name.encode())


@dataclass
class _Party:
    name: str
    account: LocalAccount
    store: Path
    node: Node | None = None

    @property
    def address(self) -> str:
        return self.account.address


class Run:
    """One scenario on one chain. `await Run(...).play()` returns the Recording."""

    def __init__(self, scenario: Scenario, chain: Chain, chain_label: str, workdir: Path,
                 out: Callable[[str], None]) -> None:
        self.scenario = scenario
        self.chain = chain
        self.out = out
        self.workdir = workdir
        self.rec = r.Recording(scenario.name, scenario.title, scenario.description, str(scenario.file), chain_label)
        self._lock = threading.Lock()  # observers may run on a node's chain thread
        self._seq = 0
        self._t0 = time.perf_counter()
        self._line = 0
        self.parties: dict[str, _Party] = {}
        self.cids: dict[str, bytes] = {}
        self.params: dict[str, Params] = {}
        self.gas_paid: dict[str, int] = {}
        self.initial: dict[str, int] = {}
        self.errors_seen: list[tuple[str, str, str]] = []  # (from, to, code) of Error frames
        self._errors_checked = 0  # error_reply looks at the replies since the last check
        self._message_seen = asyncio.Event()
        self._death = asyncio.Event()
        self._background: list[asyncio.Future] = []
        self.token: Any = None

    # ------------------------------------------------------------------ recording

    def _next(self) -> tuple[int, float]:
        with self._lock:
            self._seq += 1
            return self._seq, round(time.perf_counter() - self._t0, 4)

    def _add(self, make: Callable[[int, float], r.Entry]) -> None:
        with self._lock:
            self._seq += 1
            self.rec.entries.append(make(self._seq, round(time.perf_counter() - self._t0, 4)))

    def note(self, party: str | None, text: str) -> None:
        self._add(lambda seq, t: r.Note(seq, t, self._line, party, text))
        self.out(f"      · {party + ': ' if party else ''}{text}")

    def _message(self, sender: str, receiver: str, message: m.Message, fate: str) -> None:
        self._add(lambda seq, t: r.Message(seq, t, self._line, sender, receiver, type(message).__name__,
                                           self._summary(message), fate))
        if isinstance(message, m.Error) and fate != "dropped":
            self.errors_seen.append((sender, receiver, _code_name(message.code)))
        self._message_seen.set()

    def _summary(self, message: m.Message) -> str:
        names = {v: k for k, v in self.cids.items()}
        where = names.get(getattr(message, "channel_id", b""), "")
        if isinstance(message, m.Update):
            final = " final" if message.final else ""
            return f"{where} v{message.version}{final}: {self._amount(message.balance_alice)} / {self._amount(message.balance_bob)}"
        if isinstance(message, m.UpdateAck):
            return f"{where} v{message.version} countersigned"
        if isinstance(message, m.Error):
            return f"{_code_name(message.code)}: {message.reason}"
        if isinstance(message, m.ProposeChannel):
            return f"deposits {self._amount(message.deposit_alice)} / {self._amount(message.deposit_bob)}, Δ {message.delta} s"
        if isinstance(message, m.Reestablish):
            return f"{where} at v{message.current}, signed up to v{message.signed}"
        if isinstance(message, m.StateSync):
            return f"{where} v{message.version}: {self._amount(message.balance_alice)} / {self._amount(message.balance_bob)}"
        if isinstance(message, (m.Hello, m.Auth)):
            return "handshake"
        return where

    def _observe_tx(self, tx: dict[str, Any], mined: Transaction) -> None:
        receipt = mined.receipt
        sender = self._name(tx["from"])
        self.gas_paid[sender] = self.gas_paid.get(sender, 0) + receipt["gasUsed"] * receipt["effectiveGasPrice"]
        function = self._function(tx) + ("" if receipt["status"] == 1 else " (reverted)")
        events = tuple(_event_text(e) for e in self.contract.receipt_events(receipt))
        block = self.chain.w3.eth.get_block(receipt["blockNumber"])
        self._add(lambda seq, t: r.Transaction(seq, t, self._line, sender, function, receipt["gasUsed"],
                                               receipt["blockNumber"], block["timestamp"], events,
                                               "0x" + bytes(receipt["transactionHash"]).hex()))
        self.out(f"      ⛓ {sender} {function}  gas {receipt['gasUsed']:,}  {' '.join(events)}")

    def _function(self, tx: dict[str, Any]) -> str:
        to = to_checksum_address(tx["to"]) if tx.get("to") else None
        for target in (self.contract.contract, self.token):
            if target is not None and to == target.address:
                try:
                    return target.decode_function_input(tx["data"])[0].fn_name
                except ValueError:
                    break
        return "transfer" if not tx.get("data") else "call"

    def _event_shown(self, name: str, args: dict[str, Any], keys: dict[str, Any]) -> str:
        """`name(k=v, ...)` for the keys a pattern names: amounts in the unit, addresses as names."""
        def show(key: str, value: Any) -> str:
            if key in ("amount", "balanceAlice", "balanceBob") and isinstance(value, int):
                return self._amount(value)
            return self._name(value) if isinstance(value, str) and value.startswith("0x") else str(value)
        shown = [f"{k}={show(k, args[k])}" for k in keys if k in args]
        return name + (f"({', '.join(shown)})" if shown else "")

    def _arg_matches(self, found: Any, expected: Any) -> bool:
        if isinstance(expected, str) and expected in self.parties:
            expected = self.parties[expected].address
        if isinstance(found, str) and isinstance(expected, str):
            return found.lower() == expected.lower()
        return found == expected

    def _name(self, address: str) -> str:
        address = to_checksum_address(address)
        return next((p.name for p in self.parties.values() if p.address == address), address)

    def _amount(self, amount: int) -> str:
        return f"{ether(amount)} ETH" if self.token is None else f"{amount:,}"

    # ------------------------------------------------------------------ setup and teardown

    async def play(self) -> r.Recording:
        sc = self.scenario
        self.out(f"▶ {sc.name}: {sc.title}")
        try:
            await self._setup()
            for step in sc.steps:
                if not await self._step(step):
                    break
        finally:
            await self._teardown()
        self.rec.duration = round(time.perf_counter() - self._t0, 3)
        verdict = "PASS" if self.rec.passed else "FAIL"
        self.out(f"{verdict} {sc.name}: {len(self.rec.transactions)} transactions, {self.rec.gas:,} gas, "
                 f"{sum(v.passed for v in self.rec.verdicts)}/{len(self.rec.verdicts)} assertions hold")
        return self.rec

    async def _setup(self) -> None:
        sc, chain = self.scenario, self.chain
        deployer = chain.dev_accounts[0]
        self.contract = PaymentContract.deploy(chain, deployer)
        if any(c.token == "erc20" for c in sc.channels.values()):
            self.token = chain.contract("TestToken", chain.deploy(deployer, "TestToken"))
            self.rec.unit = "TKN"
        for name, spec in sc.parties.items():
            # Keys derived from names make runs on a fresh embedded chain repeat exactly; on a
            # shared chain fresh keys keep each run's wallets apart from the last run's.
            key = spec.key or (party_key(name) if isinstance(chain, EmbeddedChain) else Account.create().key)
            account = Account.from_key(key)
            party = _Party(name, account, self.workdir / f"{name}.db")
            self.parties[name] = party
            self.rec.parties[name] = account.address
            chain.fund(account.address, spec.funds)
            if self.token is not None:
                chain.transact(deployer, self.token.functions.mint(account.address, TOKEN_FUNDS))
        for name in sc.parties:
            self.initial[name] = self._wallet(name)
        for name, spec in sc.channels.items():
            self.rec.channels[name] = r.Channel(name, "", spec.alice, spec.bob,
                                                "ETH" if spec.token == "ETH" else self.token.address, spec.deposits)
        chain.observers.append(self._observe_tx)
        self.network = Network({p.address: p.name for p in self.parties.values()}, self._message)
        for name in sc.parties:
            await self.network.add(name)
            await self._start(name)
        self._sample("start")

    async def _teardown(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for party in self.parties.values():
            if party.node is not None and not party.node.killed:
                await party.node.stop()
        if hasattr(self, "network"):
            await self.network.close()
        if self._observe_tx in self.chain.observers:
            self.chain.observers.remove(self._observe_tx)

    async def _start(self, name: str) -> Node:
        party = self.parties[name]
        node = Node(party.account.key, self.chain, self.contract.address, party.store, poll_interval=POLL,
                    response_timeout=RESPONSE_TIMEOUT, name=name)
        node.on_kill = self._died
        await node.start()
        party.node = node
        self.network.ports[name] = node.port
        return node

    def _died(self, node: Node) -> None:
        self.note(node.name, f"killed at {node.crash_at} (as by SIGKILL)" if node.crash_at else "killed (as by SIGKILL)")
        self._death.set()

    def _node(self, name: str) -> Node:
        node = self.parties[name].node
        if node is None or not node.serving:
            raise errors.PeerUnavailable(f"{name}'s node is not running")
        return node

    def _running(self) -> list[Node]:
        return [p.node for p in self.parties.values() if p.node is not None and p.node.serving]

    # ------------------------------------------------------------------ steps

    async def _step(self, step: Step) -> bool:
        """Runs one step; False when the run must stop (the step failed unexpectedly)."""
        self._line = step.line
        text = self._describe(step)
        self._add(lambda seq, t: r.Step(seq, t, step.line, step.index, text))
        self.out(f"  {step.index:>2}. {text}  (line {step.line})")
        outcome, detail = "ok", ""
        self._death.clear()
        act = asyncio.ensure_future(asyncio.wait_for(self._act(step), STEP_TIMEOUT))
        death = asyncio.ensure_future(self._death.wait())
        await asyncio.wait([act, death], return_when=asyncio.FIRST_COMPLETED)
        death.cancel()
        if not act.done():  # a node died mid-step: what it was doing is cut short, as by a crash
            act.cancel()
        try:
            await act
            if step.fails:
                outcome, detail = "failed", f"expected {step.fails}, but it succeeded"
        except asyncio.CancelledError:
            detail = "interrupted by the crash"
        except (errors.PerunError, Killed, asyncio.TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            if step.fails and _is_a(exc, step.fails):
                outcome = "expected-error"
            elif self._death.is_set() and isinstance(exc, (Killed, errors.NodeKilled, errors.PeerUnavailable)):
                detail = f"interrupted by the crash: {detail}"
            else:
                outcome = "failed"
        except Exception as exc:  # a bug in the runner or a node: the run stops here, and says so
            outcome, detail = "failed", f"internal error: {type(exc).__name__}: {exc}"
            logging.getLogger("perun.scenario").exception("step %d failed", step.index)
        if step.fails:
            self.rec.verdicts.append(r.Verdict(step.line, f"step {step.index} fails with {step.fails}",
                                               step.fails, detail or "no error", outcome == "expected-error"))
        await self._settle()
        self._sample(f"after step {step.index}")
        self._add(lambda seq, t: r.Step(seq, t, step.line, step.index, text, outcome, detail))
        mark = {"ok": "ok", "expected-error": f"failed as expected ({detail})", "failed": f"FAILED: {detail}"}[outcome]
        if outcome != "ok" or detail:
            self.out(f"      → {mark if outcome != 'ok' else detail}")
        if outcome == "failed" and not step.fails:
            self.rec.error = f"line {step.line}: step {step.index} ({step.action}) failed: {detail}"
            return False
        return True

    def _describe(self, step: Step) -> str:
        a = step.args
        amount = self._amount(a["amount"]) if "amount" in a else ""
        match step.action:
            case "open":
                spec = self.scenario.channels[a["channel"]]
                return f"{spec.alice} opens {a['channel']} with {spec.bob}"
            case "pay":
                how = "" if a.get("send", True) else " (signed, never sent)"
                how += "" if a.get("answer", True) else " (the payee never answers)"
                return f"{a['from']} pays {amount} on {a['channel']}{how}"
            case "close":
                return f"{a['by']} closes {a['channel']} on chain with version {a.get('version', 'latest')}"
            case "cooperative_close":
                return f"{a['by']} closes {a['channel']} cooperatively"
            case "finalize" | "refund":
                return f"{a['by']} {step.action}s {a['channel']}"
            case "crash":
                return f"{a['party']} will crash at {a['at']}" if "at" in a else f"{a['party']} crashes"
            case "offline":
                return f"{a['party']} goes offline"
            case "online":
                return f"{a['party']} comes back online"
            case "restart":
                return f"{a['party']} restarts on its store"
            case "drop":
                return f"the network drops {a['from']}'s next {a.get('count', 1)} {a['message']}"
            case "delay":
                return f"the network delays {a['from']}'s next {a['message']} by {a['seconds']} s"
            case "replay":
                return f"the network replays {a['from']}'s last {a['message']}"
            case "forge":
                signer = f", signed by {a['signer']}" if "signer" in a else ", with the old signature"
                return f"a forged Update from {a['from']} moves {amount} more on {a['channel']}{signer}"
            case "wait":
                if "deadline" in a:
                    return f"time moves to {a['deadline']}'s deadline {a.get('offset', 0):+d} s"
                return f"time moves {a['seconds']} s" if "seconds" in a else f"{a['blocks']} blocks are mined"
            case "expect":
                return "check " + ", ".join(k for k in a if k != "channel")
        return step.action

    async def _act(self, step: Step) -> None:
        a = step.args
        cid = self.cids.get(a.get("channel", ""), b"")
        match step.action:
            case "open":
                await self._open(a["channel"], a.get("confirm", True))
            case "pay":
                await self._pay(a["channel"], a["from"], a["amount"], a.get("send", True), a.get("answer", True))
            case "cooperative_close":
                await self._node(a["by"]).close(self._cid(a["channel"]))
            case "close":
                await self._close(a["channel"], a["by"], a.get("version", "latest"))
            case "finalize" | "refund":
                await self._on_chain(step.action, a["channel"], a["by"])
            case "offline":
                await self._node(a["party"]).stop()
                self.note(a["party"], "offline")
            case "online" | "restart":
                await self._restart(a["party"], "back online" if step.action == "online" else "restarted on its store")
            case "crash":
                await self._crash(a["party"], a.get("at"))
            case "drop" | "delay":
                self.network.add_rule(Rule(a["from"], a["message"], step.action, a.get("count", 1), a.get("seconds", 0.0)))
            case "replay":
                await self._await_reply(self.network.replay(a["from"], a["message"]))
            case "forge":
                signer = self.parties[a["signer"]].account.key if "signer" in a else None
                await self._await_reply(self.network.forge(a["from"], self._cid(a["channel"]), a["amount"],
                                                           self.contract.domain, signer))
            case "wait":
                self._wait(a, cid)
            case "expect":
                self._expect(step)

    def _cid(self, channel: str) -> bytes:
        if channel not in self.cids:
            raise errors.WrongStage(f"channel {channel} is not open yet")
        return self.cids[channel]

    async def _open(self, channel: str, confirm: bool) -> None:
        spec = self.scenario.channels[channel]
        alice, bob = self._node(spec.alice), self.parties[spec.bob]
        if bob.address not in alice.peers:
            await alice.connect(bob.address, "127.0.0.1", self.network.port(spec.bob))
        token = ETH if spec.token == "ETH" else self.token.address
        if not confirm:  # Bob's node dies right after it accepts: nobody confirms
            self.network.add_rule(Rule(spec.bob, "AcceptChannel", "pass", then=self._node(spec.bob).kill))
        opening = asyncio.ensure_future(alice.open(bob.address, *spec.deposits, spec.delta, token))
        # The id is known as soon as Alice stores her proposal; Bob's node may be the one to die.
        cid = None
        while cid is None and not opening.done():
            cid = next((c for c, rec in alice.records.items() if rec.params.bob == bob.address
                        and c not in self.cids.values()), None)
            if cid is None:
                await asyncio.sleep(0)
        cid = cid or opening.result()
        self.cids[channel] = cid
        self.params[channel] = alice.records[cid].params
        self.network.alice_of[cid] = spec.alice
        self.rec.channels[channel] = r.Channel(channel, "0x" + cid.hex(), spec.alice, spec.bob,
                                               self.rec.channels[channel].token, spec.deposits)
        if not confirm:
            self._background.append(opening)  # it ends when the channel is refunded
            await alice.wait_for(cid, lambda rec: rec.stage is not Stage.PROPOSED and rec.stage is not Stage.ACCEPTED)
            return
        await opening
        await self._node(spec.bob).wait_for(cid, lambda rec: rec.stage is not Stage.ACCEPTED
                                            and rec.stage is not Stage.INITIALISING)

    async def _pay(self, channel: str, payer: str, amount: int, send: bool, answer: bool) -> None:
        cid = self._cid(channel)
        spec = self.scenario.channels[channel]
        payee = spec.bob if payer == spec.alice else spec.alice
        rule = None
        if not send:
            rule = self.network.add_rule(Rule(payer, "Update", "drop"))
        elif not answer:
            rule = self.network.add_rule(Rule(payee, "UpdateAck", "drop"))
        paying = asyncio.ensure_future(self._node(payer).pay(cid, amount))
        if rule is None:
            await paying
            return
        # The payer's signature (or the payee's) never arrives: the payment stays pending.
        await rule.seen.wait()
        paying.cancel()
        await asyncio.gather(paying, return_exceptions=True)
        self.note(payer, "the payment stays unanswered")

    async def _close(self, channel: str, by: str, version: int | str) -> None:
        cid = self._cid(channel)
        party = self.parties[by]
        if version == "latest":
            await self._node(by).register(cid)
            return
        # A chosen (older) state from the party's own store, sent with its key: what a party
        # does when it runs something other than an honest node.
        spec = self.scenario.channels[channel]
        params = self.params[channel]
        if version == 0:
            state, signature = PaymentState(cid, 0, *spec.deposits, False), b""
        else:
            stored = {s.state.version: s for s in self._stored(by, cid) if not s.state.is_final}
            if version not in stored:
                raise errors.StaleVersion(f"{by}'s store holds no state at version {version} "
                                          f"(it has {', '.join(map(str, sorted(stored))) or 'none'})")
            s = stored[version]
            signature = s.sig_bob if by == spec.alice else s.sig_alice
            state = s.state
            if not signature:
                raise errors.InvalidSignature(f"{by} holds no signature of the other party on version {version}")
        self.contract.close(party.account, params, state, signature)

    async def _on_chain(self, action: str, channel: str, by: str) -> None:
        cid, party = self._cid(channel), self.parties[by]
        node = party.node
        if node is not None and node.serving:
            await getattr(node, action)(cid)
        else:  # the node is down; the key alone is enough on chain
            getattr(self.contract, action)(party.account, self.params[channel])

    async def _restart(self, name: str, note: str) -> None:
        party = self.parties[name]
        if party.node is not None and party.node.serving:
            raise errors.WrongStage(f"{name}'s node is running")
        node = await self._start(name)
        self.note(name, note)
        # Whoever dialled before redials (from its store, or when its connection dropped).
        peers = {c.bob if c.alice == name else c.alice for key, c in self.scenario.channels.items()
                 if key in self.cids and name in (c.alice, c.bob)}
        for peer in map(self.parties.get, sorted(peers)):
            if peer.node is not None and peer.node.serving:
                await node.wait_connected(peer.address, STEP_TIMEOUT)
        # Then they resynchronise (Reestablish, StateSync, pending updates): wait until every open
        # channel with a running peer holds the same latest state on both sides, none pending.
        for key, cid in self.cids.items():
            c = self.scenario.channels[key]
            if name not in (c.alice, c.bob):
                continue
            peer = self.parties[c.bob if c.alice == name else c.alice].node
            if peer is None or not peer.serving or cid not in node.records:
                continue
            pair = (node, peer)
            for n in pair:
                await n.wait_for(cid, lambda rec: rec.stage is not Stage.OPEN or not rec.pending, STEP_TIMEOUT)
            target = max(n.channel(cid).current.version for n in pair)
            for n in pair:
                await n.wait_for(cid, lambda rec: rec.stage is not Stage.OPEN or rec.current.version >= target,
                                 STEP_TIMEOUT)

    async def _crash(self, name: str, at: str | None) -> None:
        node = self._node(name)
        if at is None:
            node.kill()
            return
        node.crash_at = at  # the node dies when it gets there
        self.note(name, f"will die at {at}")

    async def _await_reply(self, receiver: str) -> None:
        """Waits for the receiver of an injected frame to refuse it (an Error from it)."""
        seen = len(self.errors_seen)
        while not any(sender == receiver for sender, _, _ in self.errors_seen[seen:]):
            self._message_seen.clear()
            await asyncio.wait_for(self._message_seen.wait(), RESPONSE_TIMEOUT)

    def _wait(self, a: dict[str, Any], cid: bytes) -> None:
        if "seconds" in a:
            self.chain.advance_time(a["seconds"])
        elif "blocks" in a:
            self.chain.mine(a["blocks"])
        else:
            deadline = self.contract.channel(self._cid(a["deadline"])).deadline
            target = deadline + a.get("offset", 0)
            now = self.chain.timestamp()
            if target <= now:
                raise errors.WrongStage(f"the chain's time {now} is already past {target}")
            self.chain.set_next_block_timestamp(target)
            if self.chain.timestamp() != target:
                self.chain.mine()
        self.note(None, f"chain time {self.chain.timestamp()}, block {self.chain.block_number()}")

    # ------------------------------------------------------------------ settling and sampling

    async def _settle(self) -> None:
        """Until nothing moves: each running node reads the chain and does its duties, and
        the relays carry no frame for QUIET seconds."""
        for _ in range(50):
            block = self.chain.block_number()
            for node in self._running():
                await node.sync()
            await self._quiet()
            if self.chain.block_number() == block:
                return

    async def _quiet(self) -> None:
        # No event says "nothing more will be sent": the relays' silence is the signal.
        while True:
            count = len(self.rec.entries)
            await asyncio.sleep(QUIET)
            if len(self.rec.entries) == count:
                return

    def _wallet(self, name: str) -> int:
        """On-chain money of the scenario's unit, gas excluded."""
        address = self.parties[name].address
        if self.token is not None:
            return self.token.functions.balanceOf(address).call()
        return self.chain.balance(address) + self.gas_paid.get(name, 0)

    def _held(self) -> int:
        if self.token is not None:
            return self.token.functions.balanceOf(self.contract.address).call()
        return self.chain.balance(self.contract.address)

    def _sample(self, label: str) -> None:
        wallets = {name: self._wallet(name) for name in self.parties}
        channels: dict[str, dict[str, int]] = {}
        for channel, cid in self.cids.items():
            spec = self.scenario.channels[channel]
            rec = self._record(spec.alice, cid) or self._record(spec.bob, cid)
            if rec is not None:
                channels[channel] = {spec.alice: rec.current.balance_alice, spec.bob: rec.current.balance_bob}
        seq, _ = self._next()
        self.rec.samples.append(r.Sample(seq, label, wallets, channels))

    def _record(self, name: str, cid: bytes) -> ChannelRecord | None:
        node = self.parties[name].node
        if node is not None and not node.killed and cid in node.records:
            return node.records[cid]
        return next((rec for rec in self._stored_records(name) if rec.channel_id == cid), None)

    def _open_store(self, name: str) -> Store:
        party = self.parties[name]
        return Store(party.store, party.address, self.chain.chain_id, self.contract.address)

    def _stored_records(self, name: str) -> list[ChannelRecord]:
        if not self.parties[name].store.exists():
            return []
        store = self._open_store(name)
        try:
            return store.channels()
        finally:
            store.close()

    def _stored(self, name: str, cid: bytes):
        node = self.parties[name].node
        if node is not None and node.serving:
            return node.store.states(cid)
        store = self._open_store(name)
        try:
            return store.states(cid)
        finally:
            store.close()

    # ------------------------------------------------------------------ assertions

    def _expect(self, step: Step) -> None:
        a = step.args
        channel = a["channel"]
        spec = self.scenario.channels.get(channel)
        cid = self.cids.get(channel)
        events = [e for e in self.contract.events() if cid is not None and e.args.get("channelId") == cid]
        checks: list[tuple[str, str, str, str]] = []  # field, what, expected, found
        if "payout" in a:
            closing = [e for e in events if e.name in CLOSING_EVENTS]
            found = (f"{self._amount(closing[-1].args['balanceAlice'])} / {self._amount(closing[-1].args['balanceBob'])}"
                     if closing else "no payout yet")
            refunded = [e for e in events if e.name == "Refunded"]
            if refunded and not closing:  # Alice's deposit back, nothing to Bob
                found = f"{self._amount(refunded[-1].args['amount'])} / {self._amount(0)}"
            expected = f"{self._amount(a['payout'][0])} / {self._amount(a['payout'][1])}"
            checks.append(("payout", f"payout of {channel} ({spec.alice} / {spec.bob})", expected, found))
        for name, change in a.get("wallets", {}).items():
            found_change = self._wallet(name) - self.initial[name]
            checks.append(("wallets", f"{name}'s wallet since the start, gas excluded", _signed(self._amount, change),
                           _signed(self._amount, found_change)))
        if "events" in a:
            expected = ", ".join(self._event_shown(n, args, args) for n, args in a["events"])
            patterns = [args for _, args in a["events"]]
            found_names = ", ".join(
                self._event_shown(e.name, e.args, patterns[i] if i < len(patterns) else {"version": 0, "amount": 0})
                for i, e in enumerate(events))
            ok = len(events) == len(a["events"]) and all(
                e.name == n and all(self._arg_matches(e.args.get(k), v) for k, v in args.items())
                for e, (n, args) in zip(events, a["events"]))
            checks.append(("events", f"events of {channel}", expected, found_names if not ok else expected))
        for name, stage in a.get("stages", {}).items():
            rec = self._record(name, cid) if cid else None
            checks.append(("stages", f"{name}'s stored stage of {channel}", stage, rec.stage.value if rec else "no record"))
        if "state" in a:
            want = a["state"]
            rec = self._record(want["party"], cid) if cid else None
            if "version" in want:
                checks.append(("state", f"{want['party']}'s stored version of {channel}", str(want["version"]),
                               str(rec.current.version) if rec else "no record"))
            if "balances" in want:
                found = (f"{self._amount(rec.current.balance_alice)} / {self._amount(rec.current.balance_bob)}"
                         if rec else "no record")
                checks.append(("state", f"{want['party']}'s stored balances of {channel}",
                               f"{self._amount(want['balances'][0])} / {self._amount(want['balances'][1])}", found))
        if "held" in a:
            checks.append(("held", "what the contract holds, for all channels", self._amount(a["held"]),
                           self._amount(self._held())))
        if "error_reply" in a:
            want = a["error_reply"]
            codes = [code for sender, _, code in self.errors_seen[self._errors_checked:] if sender == want["from"]]
            checks.append(("error_reply", f"{want['from']} refused a message with {want['code']}", want["code"],
                           want["code"] if want["code"] in codes else (", ".join(codes) or "no error reply")))
        self._errors_checked = len(self.errors_seen)
        for key, what, expected, found in checks:
            passed = expected == found
            line = step.lines.get(key, step.line)
            self.rec.verdicts.append(r.Verdict(line, what, expected, found, passed))
            self.out(f"      {'✓' if passed else '✗'} {what}: "
                     + (found if passed else f"expected {expected}, found {found} (line {line})"))


# ---------------------------------------------------------------------- helpers


def _code_name(code: int) -> str:
    try:
        return m.ErrorCode(code).name
    except ValueError:
        return str(code)


def _is_a(exc: BaseException, name: str) -> bool:
    if isinstance(exc, errors.PeerRejected) and getattr(exc.code, "name", None) == name:
        return True
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def _event_text(event: Event) -> str:
    shown = {k: v for k, v in event.args.items() if k in ("version", "amount")}
    return event.name + (f"({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else "")


def _signed(fmt: Callable[[int], str], amount: int) -> str:
    return ("+" if amount > 0 else "-" if amount < 0 else "") + fmt(abs(amount))


# ---------------------------------------------------------------------- entry points


def run(paths: list[Path], rpc: str | None = None, out: Callable[[str], None] = print,
        log_dir: Path | None = None) -> list[r.Recording]:
    """Loads and plays each scenario file in turn: on a fresh embedded chain each, or on the
    chain at `rpc`. The nodes' logs go to `log_dir/<scenario>.log` (else nowhere). Returns the
    recordings (write them with perun.scenario.report)."""
    from perun.scenario.spec import load

    scenarios = [load(path) for path in paths]  # every file is checked before anything runs
    shared = RpcChain(rpc) if rpc else None
    logger = logging.getLogger("perun")
    propagate, level = logger.propagate, logger.level
    logger.propagate = False  # the steps' printout is the story; the nodes' logs go to a file
    logger.setLevel(logging.INFO)
    recordings = []
    try:
        for scenario in scenarios:
            chain = shared or EmbeddedChain()
            handler: logging.Handler = logging.NullHandler()
            if log_dir is not None:
                log_dir.mkdir(parents=True, exist_ok=True)
                handler = logging.FileHandler(log_dir / f"{scenario.name}.log", mode="w")
                handler.setFormatter(logging.Formatter("%(relativeCreated)8.0f ms %(levelname)s %(message)s"))
            logger.addHandler(handler)
            try:
                with tempfile.TemporaryDirectory(prefix=f"perun-{scenario.name}-") as tmp:
                    recordings.append(asyncio.run(Run(scenario, chain, rpc or "embedded", Path(tmp), out).play()))
            finally:
                logger.removeHandler(handler)
                handler.close()
    finally:
        logger.propagate, logger.level = propagate, level
        if shared:
            shared.close()
    return recordings
