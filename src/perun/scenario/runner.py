"""Plays a scenario (perun.scenario.spec) with real nodes and records what happened.

Every party is a `perun.Node` in this process, listening on loopback TCP; the nodes reach each
other through the relays of perun.scenario.network, which record the frames and play the
network's faults. One chain serves all: the embedded chain (fresh for each scenario) or an RPC
URL; a file with a multistate channel also gets MSContract and the nanocontract apps, and its
nanocontracts are known by the names the file gives them (a virtual channel's halves as
`g@ledger`). After each step the runner lets the system settle (every running node reads the
chain and does its duties, until no new block appears and the relays fall quiet), samples the
balances, and goes on. A crash is `Node.kill`: the node stops dead where it is, as under
SIGKILL, and only what its store committed survives (real SIGKILL of node processes:
tests/node/test_crashes.py).
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
from perun.chain.channels import ChannelsContract
from perun.chain.deploy import Deployment, deploy
from perun.chain.multistate import MSContract
from perun.chain.payment import Event, PaymentContract
from perun.core.amounts import ether
from perun.core.apps import ALICE, BOB, App, AppState, app_named
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import tictactoe as ttt
from perun.core.apps import virtualchannel as vc
from perun.core.channel import ETH, Params, PaymentState
from perun.core.machine import ChannelRecord, Stage
from perun.core.msmachine import MSRecord
from perun.core.multistate import ChannelState, Funding, NanocontractState, nanocontract_id
from perun.core.virtual import VirtualRecord
from perun.node import Node
from perun.runtime import Killed
from perun.scenario import record as r
from perun.scenario.network import Network, Rule
from perun.scenario.spec import NanocontractSpec, Scenario, Step, VirtualSpec
from perun.store import Store
from perun.wire import messages as m

STEP_TIMEOUT = 30.0
QUIET = 0.05  # seconds without a frame on any relay: the network has settled
POLL = 0.05  # the nodes' own chain polling, between the runner's settles
RESPONSE_TIMEOUT = 5.0
TOKEN_FUNDS = 10_000  # units of the test token each party starts with
CLOSING_EVENTS = ("Finalized", "CooperativelyClosed")
AMOUNT_ARGS = ("amount", "balanceAlice", "balanceBob", "cashAlice", "cashBob", "payoutAlice", "payoutBob",
               "blockedAlice", "blockedBob", "releasedAlice", "releasedBob")


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
        self.nids: dict[str, bytes] = {}  # nanocontract name (a virtual channel's half: g@ledger) -> nid
        self.gids: dict[str, bytes] = {}  # virtual channel name -> its id
        self.validity: dict[str, int] = {}  # virtual channel name -> its validity (a chain time)
        self.lock_timeouts: dict[str, int] = {}  # HashTimeLock name -> its timeout (a chain time)
        self.ms: MSContract | None = None  # with a multistate channel in the file
        self.deployment: Deployment | None = None
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
        names = {v: k for k, v in {**self.cids, **self.gids}.items()}
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
        if isinstance(message, m.ProposeMultistate):
            return (f"multistate, deposits {self._amount(message.deposit_alice)} / "
                    f"{self._amount(message.deposit_bob)}, Δ {message.delta} s")
        if isinstance(message, m.NanocontractCreate):
            nc = self._nano_name(nanocontract_id(message.channel_id, message.version))
            return (f"{where} v{message.version}: creates {nc} ({self._app_name(message.app)}), blocking "
                    f"{self._amount(message.blocked_alice)} / {self._amount(message.blocked_bob)}")
        if isinstance(message, m.NanocontractCall):
            nc = self._nano_name(message.nid)
            return f"{where} {nc} v{message.version}: {self._call_text(message.nid, message.fun, message.z)}"
        if isinstance(message, m.NanocontractAbsorb):
            return f"{where} v{message.version}: absorbs {self._nano_name(message.nid)}"
        if isinstance(message, m.NanocontractAck):
            slot = "" if message.slot == bytes(32) else f" {self._nano_name(message.slot)}"
            return f"{where}{slot} v{message.version} countersigned"
        if isinstance(message, m.Reestablish):
            return f"{where} at v{message.current}, signed up to v{message.signed}"
        if isinstance(message, m.StateSync):
            return f"{where} v{message.version}: {self._amount(message.balance_alice)} / {self._amount(message.balance_bob)}"
        if isinstance(message, m.VirtualClose):
            return (f"{where} v{message.version} final: {self._amount(message.balance_alice)} / "
                    f"{self._amount(message.balance_bob)}")
        if isinstance(message, (m.Hello, m.Auth)):
            return "handshake"
        return where

    def _observe_tx(self, tx: dict[str, Any], mined: Transaction) -> None:
        receipt = mined.receipt
        sender = self._name(tx["from"])
        self.gas_paid[sender] = self.gas_paid.get(sender, 0) + receipt["gasUsed"] * receipt["effectiveGasPrice"]
        function = self._function(tx) + ("" if receipt["status"] == 1 else " (reverted)")
        found = self.contract.receipt_events(receipt) + (self.ms.receipt_events(receipt) if self.ms else ())
        events = tuple(self._event_text(e) for e in found)
        block = self.chain.w3.eth.get_block(receipt["blockNumber"])
        self._add(lambda seq, t: r.Transaction(seq, t, self._line, sender, function, receipt["gasUsed"],
                                               receipt["blockNumber"], block["timestamp"], events,
                                               "0x" + bytes(receipt["transactionHash"]).hex()))
        self.out(f"      ⛓ {sender} {function}  gas {receipt['gasUsed']:,}  {' '.join(events)}")

    def _function(self, tx: dict[str, Any]) -> str:
        """The function a transaction called; for a nanocontract, which one: `register(pay v0)`,
        `execute(game.timeout)`."""
        to = to_checksum_address(tx["to"]) if tx.get("to") else None
        targets = (self.contract.contract, self.ms.contract if self.ms else None, self.token)
        for target in targets:
            if target is not None and to == target.address:
                try:
                    fn, args = target.decode_function_input(tx["data"])
                except ValueError:
                    break
                if target is not self.token and fn.fn_name == "register":
                    state = args["s"]
                    nid, version = (state["nid"], state["version"]) if isinstance(state, dict) else (state[1], state[3])
                    return f"register({self._nano_name(bytes(nid))} v{version})"
                if target is not self.token and fn.fn_name == "execute":
                    nid, fun = bytes(args["nid"]), args["fun"]
                    submitted = f" {self._settled_version(args['z'])}" if self._is_settle(nid, fun) else ""
                    return f"execute({self._nano_name(nid)}.{self._fun_name(nid, fun)}{submitted})"
                return fn.fn_name
        return "transfer" if not tx.get("data") else "call"

    def _event_text(self, event: Event) -> str:
        """As printed under a transaction: `CloseRegistered(version=1)`, `Refunded(amount=...)`,
        `NanocontractExecuted(game.timeout, version=4)`."""
        shown = [f"{k}={v}" for k, v in event.args.items() if k in ("version", "amount")]
        if "nid" in event.args:
            nid = event.args["nid"]
            fun = f".{self._fun_name(nid, event.args['fun'])}" if "fun" in event.args else ""
            shown.insert(0, self._nano_name(nid) + fun)
            if fun and self._gamma_of(nid):  # a half's version counts its executions; show γ's stored state
                shown[1:] = [f"γ v{vc.decode(event.args['data']).version}"]
        return event.name + (f"({', '.join(shown)})" if shown else "")

    def _event_shown(self, name: str, args: dict[str, Any], keys: dict[str, Any]) -> str:
        """`name(k=v, ...)` for the keys a pattern names: amounts in the unit, addresses as names,
        nids as nanocontract names, `fun` as the function's name."""
        def show(key: str, value: Any) -> str:
            if key in AMOUNT_ARGS and isinstance(value, int) and not isinstance(value, bool):
                return self._amount(value)
            if key == "nid" and isinstance(value, bytes):
                return self._nano_name(value)
            if key == "fun" and isinstance(value, int) and isinstance(args.get("nid"), bytes):
                return self._fun_name(args["nid"], value)
            return self._name(value) if isinstance(value, str) and value.startswith("0x") else str(value)
        shown = [f"{k}={show(k, args[k])}" for k in keys if k in args]
        return name + (f"({', '.join(shown)})" if shown else "")

    def _arg_matches(self, found: Any, expected: Any, key: str = "", event: Event | None = None) -> bool:
        if isinstance(expected, str) and expected in self.parties:
            expected = self.parties[expected].address
        elif isinstance(expected, str) and expected in self.nids:
            expected = self.nids[expected]
        elif key == "fun" and isinstance(expected, str) and event is not None and "nid" in event.args:
            app = self._app_of(event.args["nid"])
            expected = app.functions.get(expected, expected) if app else expected
        if isinstance(found, str) and isinstance(expected, str):
            return found.lower() == expected.lower()
        return found == expected

    def _nano_name(self, nid: bytes) -> str:
        return next((name for name, n in self.nids.items() if n == nid), "0x" + nid.hex()[:8])

    def _nano_spec(self, nid: bytes) -> NanocontractSpec | None:
        return self.scenario.nanocontracts.get(self._nano_name(nid))

    def _app_of(self, nid: bytes) -> App | None:
        spec = self._nano_spec(nid)
        if spec is None:
            return app_named(vc.VirtualChannel.name) if self._gamma_of(nid) else None
        return app_named(spec.app)

    def _gamma_of(self, nid: bytes) -> str | None:
        """The virtual channel whose half `nid` is, if it is one."""
        name = self._nano_name(nid)
        return name.split("@")[0] if "@" in name else None

    def _is_settle(self, nid: bytes, fun: int) -> bool:
        return self._gamma_of(nid) is not None and fun == vc.SETTLE

    @staticmethod
    def _settled_version(z: bytes) -> str:
        """The γ state a SETTLE submits: `v3`, `v4 final`."""
        s = vc.decode_settle_arg(z)
        return f"v{s.version}" + (" final" if s.final else "")

    def _fun_name(self, nid: bytes, fun: int) -> str:
        app = self._app_of(nid)
        names = {v: k for k, v in app.functions.items()} if app else {}
        return names.get(fun, str(fun))

    def _call_text(self, nid: bytes, fun: int, z: bytes) -> str:
        name = self._fun_name(nid, fun)
        if name == "move" and len(z) == 32:
            return f"move to cell {int.from_bytes(z, 'big')}"
        if self._is_settle(nid, fun):
            s = vc.decode_settle_arg(z)
            return (f"settle with {self._settled_version(z)}: {self._amount(s.balance_alice)} / "
                    f"{self._amount(s.balance_bob)}")
        return name

    def _app_name(self, address: str) -> str:
        apps = self.deployment.apps if self.deployment else {}
        return next((n for n, a in apps.items() if a.lower() == address.lower()), address)

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
        if any(c.kind == "multistate" for c in sc.channels.values()):
            # PaymentContract, MSContract and the apps; a file of payment channels deploys (and
            # its nodes watch) the PaymentContract alone, as before multistate channels.
            self.deployment = deploy(chain, deployer)
            self.contract = self.deployment.payment(chain)
            self.ms = self.deployment.multistate(chain)
        else:
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
                                                "ETH" if spec.token == "ETH" else self.token.address, spec.deposits,
                                                spec.kind)
        for name, gamma in sc.virtual.items():
            self.rec.channels[name] = r.Channel(name, "", gamma.alice, gamma.bob,
                                                self.rec.channels[gamma.ledgers[0]].token, gamma.deposits, "virtual")
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
        party, spec = self.parties[name], self.scenario.parties[name]
        multistate = {} if self.deployment is None else {
            "ms_contract": self.deployment.ms_contract, "apps": self.deployment.apps,
            "accept_nanocontract": lambda nc: True,  # every party agrees to the games the file creates
            "accept_virtual": lambda v: spec.accept_virtual, "hub": spec.hub,
        }
        node = Node(party.account.key, self.chain, self.contract.address, party.store, poll_interval=POLL,
                    response_timeout=RESPONSE_TIMEOUT, name=name, **multistate)
        node.on_kill = self._died
        await node.start()
        party.node = node
        self.network.ports[name] = node.port
        return node

    def _died(self, node: Node) -> None:
        at = node.faults.armed
        self.note(node.name, f"killed at {at} (as by SIGKILL)" if at else "killed (as by SIGKILL)")
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
        entries, block = len(self.rec.entries), self.chain.block_number()
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
        # A step that sent nothing, mined nothing and noted nothing (a check, a refusal by the
        # node's own rules, a network rule) has nothing in flight to wait for.
        await self._settle(idle=len(self.rec.entries) == entries and self.chain.block_number() == block)
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
        gamma = self.scenario.virtual.get(a.get("channel", ""))
        match step.action:
            case "open" if gamma:
                return (f"{gamma.alice} opens virtual channel {gamma.name} with {gamma.bob} through {gamma.ingrid} "
                        f"({self._amount(gamma.deposits[0])} / {self._amount(gamma.deposits[1])}, valid for "
                        f"{gamma.validity} s, window {gamma.window} s)")
            case "open":
                spec = self.scenario.channels[a["channel"]]
                return f"{spec.alice} opens {a['channel']} with {spec.bob}"
            case "pay":
                how = "" if a.get("send", True) else " (signed, never sent)"
                how += "" if a.get("answer", True) else " (the payee never answers)"
                return f"{a['from']} pays {amount} on {a['channel']}{how}"
            case "close" if gamma:
                waiting = f" (waits {a['timeout']:g} s for {gamma.ingrid})" if "timeout" in a else ""
                return f"{a['by']} closes {gamma.name} through {gamma.ingrid}{waiting}"
            case "close":
                return f"{a['by']} closes {a['channel']} on chain with version {a.get('version', 'latest')}"
            case "submit":
                ledger = gamma.ledgers[gamma.ends.index(a["by"])]
                return f"{a['by']} submits version {a['version']} of {gamma.name} on its half in {ledger}, by hand"
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
                if "validity" in a:
                    return f"time moves to {a['validity']}'s validity {a.get('offset', 0):+d} s"
                if "deadline" in a:
                    return f"time moves to {a['deadline']}'s deadline {a.get('offset', 0):+d} s"
                if "window" in a:
                    return f"time moves to the end of {a['window']}'s window {a.get('offset', 0):+d} s"
                if "timeout" in a:
                    what = "move deadline" if self.scenario.nanocontracts[a["timeout"]].app == "TicTacToe" else "timeout"
                    return f"time moves to {a['timeout']}'s {what} {a.get('offset', 0):+d} s"
                return f"time moves {a['seconds']} s" if "seconds" in a else f"{a['blocks']} blocks are mined"
            case "expect":
                return "check " + ", ".join(k for k in a if k != "channel")
            case "nanocontract":
                spec = self.scenario.nanocontracts[a["name"]]
                channel = self.scenario.channels[spec.channel]
                if spec.app == "HashTimeLock":
                    to = channel.bob if spec.by == channel.alice else channel.alice
                    return (f"{spec.by} locks {self._amount(spec.amount)} for {to} in {spec.name} on {spec.channel} "
                            f"(HashTimeLock, {spec.timeout} s)")
                return (f"{spec.by} starts {spec.name} on {spec.channel} (TicTacToe, stakes "
                        f"{self._amount(spec.stakes[0])} / {self._amount(spec.stakes[1])}, {spec.first} first, "
                        f"{spec.move_timeout} s a move on chain)")
            case "call":
                return f"{a['by']} calls {self._step_call(a)} on {a['nanocontract']} off chain"
            case "execute":
                return f"{a['by']} executes {self._step_call(a)} on {a['nanocontract']} on chain"
            case "enforce":
                return f"{a['by']} enforces {self._step_call(a)} on {a['nanocontract']} (on chain after its window)"
            case "absorb":
                return f"{a['by']} absorbs {a['nanocontract']} into {a['channel']}'s cash"
            case "register":
                return f"{a['by']} registers {a['nanocontract']} on chain with version {a.get('version', 'latest')}"
        return step.action

    @staticmethod
    def _step_call(a: dict[str, Any]) -> str:
        if a["function"] == "move":
            return f"move to cell {a['cell']}"
        return a["function"] + (" (another preimage)" if "preimage" in a else "")

    async def _act(self, step: Step) -> None:
        a = step.args
        cid = self.cids.get(a.get("channel", ""), b"")
        gamma = self.scenario.virtual.get(a.get("channel", ""))
        match step.action:
            case "open" if gamma:
                await self._open_virtual(gamma)
            case "open":
                await self._open(a["channel"], a.get("confirm", True))
            case "pay":
                await self._pay(a["channel"], a["from"], a["amount"], a.get("send", True), a.get("answer", True))
            case "cooperative_close":
                await self._node(a["by"]).close(self._cid(a["channel"]))
            case "close" if gamma:
                await self._close_virtual(gamma, a["by"], a.get("timeout"))
            case "submit":
                await self._submit(gamma, a["by"], a["version"])
            case "close" if self._multistate(a["channel"]):
                await self._ms_close(a["channel"], a["by"], a.get("version", "latest"))
            case "close":
                await self._close(a["channel"], a["by"], a.get("version", "latest"))
            case "nanocontract":
                await self._create(self.scenario.nanocontracts[a["name"]])
            case "call":
                await self._ms_node(a["by"]).call(self._cid(a["channel"]), self._nid(a), *self._fun_z(a))
            case "absorb":
                await self._ms_node(a["by"]).absorb(self._cid(a["channel"]), self._nid(a))
            case "register":
                await self._register(a["channel"], a["by"], a["nanocontract"], a.get("version", "latest"))
            case "execute":
                await self._execute(a)
            case "enforce":
                await self._ms_node(a["by"]).enforce(self._cid(a["channel"]), self._nid(a), *self._fun_z(a))
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
        """A channel's id, or a virtual channel's."""
        cid = self.cids.get(channel, self.gids.get(channel))
        if cid is None:
            raise errors.WrongStage(f"channel {channel} is not open yet")
        return cid

    def _ends(self, channel: str) -> tuple[str, str]:
        """(alice, bob) of a channel or a virtual channel."""
        spec = self.scenario.channels.get(channel) or self.scenario.virtual[channel]
        return spec.alice, spec.bob

    async def _open(self, channel: str, confirm: bool) -> None:
        spec = self.scenario.channels[channel]
        alice, bob = self._node(spec.alice), self.parties[spec.bob]
        if bob.address not in alice.peers:
            await alice.connect(bob.address, "127.0.0.1", self.network.port(spec.bob))
        token = ETH if spec.token == "ETH" else self.token.address
        if not confirm:  # Bob's node dies right after it accepts: nobody confirms
            self.network.add_rule(Rule(spec.bob, "AcceptChannel", "pass", then=self._node(spec.bob).kill))
        opener = alice.multistate if spec.kind == "multistate" else alice
        records = opener.records
        opening = asyncio.ensure_future(opener.open(bob.address, *spec.deposits, spec.delta, token))
        # The id is known as soon as Alice stores her proposal; Bob's node may be the one to die.
        cid = None
        while cid is None and not opening.done():
            cid = next((c for c, rec in records.items() if rec.params.bob == bob.address
                        and c not in self.cids.values()), None)
            if cid is None:
                await asyncio.sleep(0)
        cid = cid or opening.result()
        self.cids[channel] = cid
        self.params[channel] = records[cid].params
        self.network.alice_of[cid] = spec.alice
        self.rec.channels[channel] = r.Channel(channel, "0x" + cid.hex(), spec.alice, spec.bob,
                                               self.rec.channels[channel].token, spec.deposits, spec.kind)
        if not confirm:
            self._background.append(opening)  # it ends when the channel is refunded
            await alice.wait_for(cid, lambda rec: rec.stage is not Stage.PROPOSED and rec.stage is not Stage.ACCEPTED)
            return
        await opening
        await self._node(spec.bob).wait_for(cid, lambda rec: rec.stage is not Stage.ACCEPTED
                                            and rec.stage is not Stage.INITIALISING)

    async def _pay(self, channel: str, payer: str, amount: int, send: bool, answer: bool) -> None:
        cid = self._cid(channel)
        alice, bob = self._ends(channel)
        payee = bob if payer == alice else alice
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
        multistate = self._multistate(channel)
        if node is not None and node.serving:
            await getattr(node.multistate if multistate else node, action)(cid)
        elif multistate and action == "finalize":  # with the nanocontracts of the registered state
            closes = [e for e in self._events(channel) if e.name == "CloseRegistered"]
            fundings = tuple(Funding(*f) for f in closes[-1].args["nanocontracts"]) if closes else ()
            self.ms.finalize(party.account, self.params[channel], fundings)  # type: ignore[union-attr]
        else:  # the node is down; the key alone is enough on chain
            getattr(self._contract_of(channel), action)(party.account, self.params[channel])

    # ------------------------------------------------------------------ virtual channels

    async def _open_virtual(self, gamma: VirtualSpec) -> None:
        alice, bob = self._node(gamma.alice), self.parties[gamma.bob]
        if bob.address not in alice.peers:  # the ends pay each other directly
            await alice.connect(bob.address, "127.0.0.1", self.network.port(gamma.bob))
        ledger_a, ledger_b = (self._cid(ledger) for ledger in gamma.ledgers)
        # Each half's nid is its ledger channel's next version (Alice proposes ν_a, Ingrid ν_b):
        # known before the messages go out, so that the recording names them.
        names = [f"{gamma.name}@{ledger}" for ledger in gamma.ledgers]
        for name, ledger, proposer in zip(names, gamma.ledgers, (gamma.alice, gamma.ingrid)):
            rec = self._record(proposer, self.cids[ledger])
            self.nids[name] = nanocontract_id(rec.channel_id, max(rec.channel_signed, rec.state.version) + 1)
        validity = self.chain.timestamp() + gamma.validity
        try:
            gid = await alice.virtual.open(ledger_a, bob.address, ledger_b, *gamma.deposits, validity, gamma.window)
        finally:  # a refused opening leaves no half to name
            for name in names:
                del self.nids[name]
        self.gids[gamma.name], self.validity[gamma.name] = gid, validity
        for half in self._virtual_record(gamma.ingrid, gid).halves:  # type: ignore[union-attr]
            self.nids[names[half.side]] = half.nid
        channel = self.rec.channels[gamma.name]
        self.rec.channels[gamma.name] = r.Channel(gamma.name, "0x" + gid.hex(), channel.alice, channel.bob,
                                                  channel.token, channel.deposits, channel.kind)
        self.note(None, f"{gamma.name} is 0x{gid.hex()[:12]}…, valid until chain time {validity}")

    async def _close_virtual(self, gamma: VirtualSpec, by: str, timeout: float | None) -> None:
        paid = await self._node(by).virtual.close(self._cid(gamma.name), timeout)
        self.note(by, f"{gamma.ingrid} settled {gamma.name}: {self._amount(paid[0])} / {self._amount(paid[1])}")

    async def _submit(self, gamma: VirtualSpec, by: str, version: int) -> None:
        """SETTLE on `by`'s half with a state of γ from its store, sent with its key: what an end
        does when it runs something other than an honest node."""
        gid = self._cid(gamma.name)
        stored = {s.state.version: s for s in self._stored(by, gid)}
        if version not in stored:
            raise errors.StaleVersion(f"{by}'s store holds no state of {gamma.name} at version {version} "
                                      f"(it has {', '.join(map(str, sorted(stored))) or 'none'})")
        s = stored[version]
        if not (s.sig_alice and s.sig_bob):
            raise errors.InvalidSignature(f"{by} holds no signature of the other end on version {version}")
        ledger = gamma.ledgers[gamma.ends.index(by)]
        z = vc.settle_arg(vc.as_virtual(s.state), s.sig_alice, s.sig_bob)
        self.ms.execute(self.parties[by].account, self.params[ledger],  # type: ignore[union-attr]
                        self.nids[f"{gamma.name}@{ledger}"], vc.SETTLE, z)

    def _virtual_record(self, name: str, gid: bytes) -> VirtualRecord | None:
        """The party's record of γ: its node's, or its store's when the node is down."""
        node = self.parties[name].node
        if node is not None and node.serving:
            return node.virtual.records.get(gid)
        if not self.parties[name].store.exists():
            return None
        store = self._open_store(name)
        try:
            return next((v for v in store.virtual_channels() if v.id == gid), None)
        finally:
            store.close()

    # ------------------------------------------------------------------ multistate channels

    def _multistate(self, channel: str) -> bool:
        return self.scenario.channels[channel].kind == "multistate"

    def _contract_of(self, channel: str) -> ChannelsContract:
        return self.ms if self._multistate(channel) else self.contract  # type: ignore[return-value]

    def _events(self, channel: str) -> list[Event]:
        cid = self.cids.get(channel)
        if cid is None:
            return []
        return [e for e in self._contract_of(channel).events() if e.args.get("channelId") == cid]

    def _ms_node(self, name: str):
        return self._node(name).multistate

    def _nid(self, a: dict[str, Any]) -> bytes:
        name = a["nanocontract"]
        if name not in self.nids:
            raise errors.UnknownNanocontract(f"nanocontract {name} was never created")
        return self.nids[name]

    def _role(self, channel: str, party: str) -> int:
        return ALICE if self.scenario.channels[channel].alice == party else BOB

    def _fun_z(self, a: dict[str, Any]) -> tuple[int, bytes]:
        """The app's function number and argument for a call, execute or enforce step."""
        spec = self.scenario.nanocontracts[a["nanocontract"]]
        function = a["function"]
        z = b""
        if function == "claim":
            z = a.get("preimage", spec.preimage)
        elif function == "move":
            z = ttt.move_arg(a["cell"])
        return app_named(spec.app).functions[function], z

    async def _create(self, spec: NanocontractSpec) -> None:
        node = self._ms_node(spec.by)
        cid = self._cid(spec.channel)
        me = self._role(spec.channel, spec.by)
        initial: AppState
        if spec.app == "HashTimeLock":
            timeout = self.chain.timestamp() + spec.timeout
            initial = htlc.initial(me, spec.amount, htlc.hashlock_of(spec.preimage), timeout)
            self.lock_timeouts[spec.name] = timeout
        else:
            initial = ttt.initial(*spec.stakes, self._role(spec.channel, spec.first), spec.move_timeout)
        rec = node.channel(cid)
        # The nid is the channel version that creates it: known before the messages go out, so
        # that the recording names them.
        self.nids[spec.name] = nanocontract_id(cid, max(rec.channel_signed, rec.state.version) + 1)
        self.nids[spec.name] = await node.create(cid, spec.app, initial)

    async def _ms_close(self, channel: str, by: str, version: int | str) -> None:
        cid = self._cid(channel)
        if version == "latest":
            await self._ms_node(by).close(cid)
            return
        params = self.params[channel]
        if version == 0:
            state, signature = ChannelState.initial(params, cid), b""
        else:
            stored = {s.state.version: s for s in self._stored_ms(by, cid) if isinstance(s.state, ChannelState)}
            if version not in stored:
                raise errors.StaleVersion(f"{by}'s store holds no channel state at version {version} "
                                          f"(it has {', '.join(map(str, sorted(stored))) or 'none'})")
            state, signature = stored[version].state, self._peer_signature(channel, by, stored[version])
        self.ms.close(self.parties[by].account, params, state, signature)  # type: ignore[union-attr]

    async def _register(self, channel: str, by: str, name: str, version: int | str) -> None:
        cid, nid = self._cid(channel), self._nid({"nanocontract": name})
        if version == "latest":
            await self._ms_node(by).register(cid, nid)
            return
        # A chosen (older) version from the party's own store, sent with its key.
        stored = {s.state.version: s for s in self._stored_ms(by, cid)
                  if isinstance(s.state, NanocontractState) and s.state.nid == nid}
        if version not in stored:
            raise errors.StaleVersion(f"{by}'s store holds no version {version} of {name} "
                                      f"(it has {', '.join(map(str, sorted(stored))) or 'none'})")
        signed = stored[version]
        self.ms.register(self.parties[by].account, self.params[channel], signed.state,  # type: ignore[union-attr]
                         self._peer_signature(channel, by, signed))

    def _peer_signature(self, channel: str, by: str, signed: Any) -> bytes:
        spec = self.scenario.channels[channel]
        signature = signed.sig_bob if by == spec.alice else signed.sig_alice
        if not signature:
            raise errors.InvalidSignature(f"{by} holds no signature of the other party on that version")
        return signature

    async def _execute(self, a: dict[str, Any]) -> None:
        cid, nid, party = self._cid(a["channel"]), self._nid(a), self.parties[a["by"]]
        fun, z = self._fun_z(a)
        if party.node is not None and party.node.serving:
            await party.node.multistate.execute(cid, nid, fun, z)
        else:  # the node is down; the key alone is enough on chain
            self.ms.execute(party.account, self.params[a["channel"]], nid, fun, z)  # type: ignore[union-attr]

    def _stored_ms(self, name: str, cid: bytes) -> list[Any]:
        node = self.parties[name].node
        if node is not None and node.serving:
            return node.store.ms_states(cid)
        store = self._open_store(name)
        try:
            return store.ms_states(cid)
        finally:
            store.close()

    async def _restart(self, name: str, note: str) -> None:
        party = self.parties[name]
        if party.node is not None and party.node.serving:
            raise errors.WrongStage(f"{name}'s node is running")
        node = await self._start(name)
        self.note(name, note)
        # Whoever dialled before redials (from its store, or when its connection dropped).
        opened = [*(c for key, c in self.scenario.channels.items() if key in self.cids),
                  *(g for key, g in self.scenario.virtual.items() if key in self.gids)]
        peers = {c.bob if c.alice == name else c.alice for c in opened if name in (c.alice, c.bob)}
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
            if peer is None or not peer.serving:
                continue
            if c.kind == "multistate":  # each side repeats its proposals in flight; wait until none is left
                for n in (node, peer):
                    if cid in n.multistate.records:
                        await n.wait_for(cid, lambda rec: rec.stage is not Stage.OPEN or not rec.pending,
                                         STEP_TIMEOUT)
                continue
            if cid in node.records:
                await self._resync((node, peer), cid)
        for key, gid in self.gids.items():  # a virtual channel's ends resynchronise its updates likewise
            ends = self.scenario.virtual[key].ends
            peer = self.parties[ends[1 - ends.index(name)]].node if name in ends else None
            if peer is not None and peer.serving:
                await self._resync((node, peer), gid)

    async def _resync(self, pair: tuple[Node, Node], cid: bytes) -> None:
        """Waits until both ends hold the same latest state of a payment or virtual channel, none
        pending."""
        def updates(rec: ChannelRecord | VirtualRecord) -> ChannelRecord:  # a virtual channel's are in its record
            return rec.channel if isinstance(rec, VirtualRecord) else rec  # type: ignore[return-value]
        for n in pair:
            await n.wait_for(cid, lambda rec: updates(rec).stage is not Stage.OPEN or not updates(rec).pending,
                             STEP_TIMEOUT)
        target = max(updates(n.records.get(cid) or n.virtual.records[cid]).current.version for n in pair)
        for n in pair:
            await n.wait_for(cid, lambda rec: updates(rec).stage is not Stage.OPEN
                             or updates(rec).current.version >= target, STEP_TIMEOUT)

    async def _crash(self, name: str, at: str | None) -> None:
        node = self._node(name)
        if at is None:
            node.kill()
            return
        node.faults.kill_at(at)  # the node dies when it gets there
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
            if "deadline" in a:
                deadline = self._contract_of(a["deadline"]).channel(self._cid(a["deadline"])).deadline
            elif "validity" in a:
                self._cid(a["validity"])  # WrongStage until it is open
                deadline = self.validity[a["validity"]]
            else:
                deadline = self._nanocontract_time(a.get("window") or a["timeout"], "window" in a)
            target = deadline + a.get("offset", 0)
            now = self.chain.timestamp()
            if target <= now:
                raise errors.WrongStage(f"the chain's time {now} is already past {target}")
            self.chain.set_next_block_timestamp(target)
            if self.chain.timestamp() != target:
                self.chain.mine()
        self.note(None, f"chain time {self.chain.timestamp()}, block {self.chain.block_number()}")

    def _nanocontract_time(self, name: str, window: bool) -> int:
        """The end of a registered nanocontract's window; or the time after which it may time
        out: a lock's timeout, a game's move deadline on chain (since its last change)."""
        spec = self.scenario.nanocontracts[name]
        if not window and spec.app == "HashTimeLock":
            if name not in self.lock_timeouts:
                raise errors.WrongStage(f"{name} was never created")
            return self.lock_timeouts[name]
        onchain = self.ms.nanocontract(self._cid(spec.channel), self.nids.get(name, bytes(32)))  # type: ignore[union-attr]
        if not onchain.registered:
            what = "window" if window else "move clock (it runs on chain only)"
            raise errors.WrongStage(f"{name} is not registered on chain: it has no {what}")
        return onchain.window_end if window else onchain.since + spec.move_timeout

    # ------------------------------------------------------------------ settling and sampling

    async def _settle(self, idle: bool = False) -> None:
        """Until nothing moves: each running node reads the chain and does its duties, and
        the relays carry no frame for QUIET seconds; again while new blocks appear. Once nothing
        is in flight (after an `idle` step, which recorded nothing, or after a quiet period), a
        round whose duties record nothing and mine nothing ends it at once: there is nothing
        left to wait for."""
        quiet = idle
        for _ in range(50):
            block, count = self.chain.block_number(), len(self.rec.entries)
            for node in self._running():
                await node.sync()
            if quiet and len(self.rec.entries) == count and self.chain.block_number() == block:
                return
            await self._quiet()
            quiet = True
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
        """What the contracts hold: PaymentContract's, and MSContract's if deployed."""
        addresses = [self.contract.address] + ([self.ms.address] if self.ms else [])
        if self.token is not None:
            return sum(self.token.functions.balanceOf(a).call() for a in addresses)
        return sum(self.chain.balance(a) for a in addresses)

    def _sample(self, label: str) -> None:
        wallets = {name: self._wallet(name) for name in self.parties}
        channels: dict[str, dict[str, int]] = {}
        for channel, cid in self.cids.items():
            spec = self.scenario.channels[channel]
            rec = self._record(spec.alice, cid) or self._record(spec.bob, cid)
            if isinstance(rec, MSRecord):  # the cash, and what the nanocontracts hold
                state = rec.state
                channels[channel] = {spec.alice: state.cash_alice, spec.bob: state.cash_bob,
                                     "in nanocontracts": sum(f.total for f in state.nanocontracts)}
            elif rec is not None:
                channels[channel] = {spec.alice: rec.current.balance_alice, spec.bob: rec.current.balance_bob}
        for name, gid in self.gids.items():  # an end's latest state of γ
            gamma = self.scenario.virtual[name]
            v_rec = self._virtual_record(gamma.alice, gid) or self._virtual_record(gamma.bob, gid)
            if v_rec is not None and v_rec.channel is not None:
                current = v_rec.channel.current
                channels[name] = {gamma.alice: current.balance_alice, gamma.bob: current.balance_bob}
        seq, _ = self._next()
        self.rec.samples.append(r.Sample(seq, label, wallets, channels))

    def _record(self, name: str, cid: bytes) -> ChannelRecord | MSRecord | None:
        node = self.parties[name].node
        if node is not None and not node.killed:
            if cid in node.records:
                return node.records[cid]
            if node.multistate is not None and cid in node.multistate.records:
                return node.multistate.records[cid]
        return next((rec for rec in self._stored_records(name) if rec.channel_id == cid), None)

    def _open_store(self, name: str) -> Store:
        party = self.parties[name]
        return Store(party.store, party.address, self.chain.chain_id, self.contract.address)

    def _stored_records(self, name: str) -> list[ChannelRecord | MSRecord]:
        if not self.parties[name].store.exists():
            return []
        store = self._open_store(name)
        try:
            return [*store.channels(), *store.ms_channels()]
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
        gamma = self.scenario.virtual.get(channel)
        cid = self.cids.get(channel)
        events = self._events(channel) if {"payout", "events"} & set(a) else []
        checks: list[tuple[str, str, str, str]] = []  # field, what, expected, found
        if "payout" in a and gamma is not None:
            checks += self._virtual_payout(gamma, a["payout"])
        elif "payout" in a:
            closing = [e for e in events if e.name in CLOSING_EVENTS]
            paid = [(e.args["payoutAlice"], e.args["payoutBob"]) if "payoutAlice" in e.args
                    else (e.args["balanceAlice"], e.args["balanceBob"]) for e in closing]
            found = f"{self._amount(paid[-1][0])} / {self._amount(paid[-1][1])}" if paid else "no payout yet"
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
                self._event_shown(e.name, e.args, patterns[i] if i < len(patterns)
                                  else {"nid": 0, "fun": 0, "version": 0, "amount": 0})
                for i, e in enumerate(events))
            ok = len(events) == len(a["events"]) and all(
                e.name == n and all(self._arg_matches(e.args.get(k), v, k, e) for k, v in args.items())
                for e, (n, args) in zip(events, a["events"]))
            checks.append(("events", f"events of {channel}", expected, found_names if not ok else expected))
        for name, stage in a.get("stages", {}).items():
            rec = self._record(name, cid) if cid else None
            checks.append(("stages", f"{name}'s stored stage of {channel}", stage, rec.stage.value if rec else "no record"))
        if "state" in a and gamma is not None:
            checks += self._virtual_state(gamma, a["state"])
        elif "state" in a:
            want = a["state"]
            rec = self._record(want["party"], cid) if cid else None
            # A multistate channel's latest channel state: its version, cash and nanocontracts.
            version, balances, listed = None, None, None
            if isinstance(rec, MSRecord):
                version, balances = rec.state.version, (rec.state.cash_alice, rec.state.cash_bob)
                listed = ", ".join(sorted(self._nano_name(f.nid) for f in rec.state.nanocontracts)) or "none"
            elif rec is not None:
                version, balances = rec.current.version, (rec.current.balance_alice, rec.current.balance_bob)
            cash = "cash" if spec.kind == "multistate" else "balances"
            if "version" in want:
                checks.append(("state", f"{want['party']}'s stored version of {channel}", str(want["version"]),
                               str(version) if rec else "no record"))
            if "balances" in want:
                found = f"{self._amount(balances[0])} / {self._amount(balances[1])}" if rec else "no record"
                checks.append(("state", f"{want['party']}'s stored {cash} of {channel}",
                               f"{self._amount(want['balances'][0])} / {self._amount(want['balances'][1])}", found))
            if "nanocontracts" in want:
                checks.append(("state", f"nanocontracts in {want['party']}'s latest state of {channel}",
                               ", ".join(sorted(want["nanocontracts"])) or "none", listed or "no record"))
        if "halves" in a:
            checks += self._halves_checks(gamma, a["halves"])  # type: ignore[arg-type]
        for want in a.get("nanocontract", ()):
            checks += self._nanocontract_checks(want)
        if "held" in a:
            what = "what the contracts hold, for all channels" if self.ms else "what the contract holds, for all channels"
            checks.append(("held", what, self._amount(a["held"]), self._amount(self._held())))
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


    def _virtual_payout(self, gamma: VirtualSpec, want: dict[str, int]) -> list[tuple[str, str, str, str]]:
        """What γ's ledger channels paid each party (Ingrid: both), from their Finalized events."""
        events = self.ms.events()  # type: ignore[union-attr]
        paid: dict[str, int] = {}
        closed = 0
        for ledger in gamma.ledgers:
            finalized = [e for e in events if e.name == "Finalized" and e.args["channelId"] == self.cids.get(ledger)]
            if finalized:
                closed += 1
                channel = self.scenario.channels[ledger]
                for party, key in ((channel.alice, "payoutAlice"), (channel.bob, "payoutBob")):
                    paid[party] = paid.get(party, 0) + finalized[-1].args[key]
        what = f"payout of {' and '.join(gamma.ledgers)} to"
        return [("payout", f"{what} {party}", self._amount(amount),
                 self._amount(paid[party]) if closed == len(gamma.ledgers) else "no payout yet")
                for party, amount in want.items()]

    def _virtual_state(self, gamma: VirtualSpec, want: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        """γ as a party holds it: an end's latest state signed by both; Ingrid's highest of those
        she has seen (given for the fast close, or read from a SETTLE), else the opening state."""
        party = want["party"]
        gid = self.gids.get(gamma.name, b"")
        rec, node = self._virtual_record(party, gid), self.parties[party].node
        whose = f"{party}'s {gamma.name}"
        found: dict[str, str] = dict.fromkeys(("version", "balances", "final", "settled"), "no record")
        if rec is not None:
            if rec.channel is not None:
                state = rec.channel.current
            else:
                state = max((s.state for s in rec.seen), key=lambda s: s.version,
                            default=PaymentState(rec.id, 0, gamma.deposits[0], gamma.deposits[1]))
            found = {"version": str(state.version),
                     "balances": f"{self._amount(state.balance_alice)} / {self._amount(state.balance_bob)}",
                     "final": str(rec.final is not None).lower(),
                     # the node's own view: each of its halves settled off chain or on chain
                     "settled": str(node.virtual.info(gid).settled).lower()
                     if node is not None and node.serving else "node not running"}
        checks = []
        if "version" in want:
            checks.append(("state", f"{whose}: version", str(want["version"]), found["version"]))
        if "balances" in want:
            checks.append(("state", f"{whose}: balances ({gamma.alice} / {gamma.bob})",
                           f"{self._amount(want['balances'][0])} / {self._amount(want['balances'][1])}",
                           found["balances"]))
        for key in ("final", "settled"):
            if key in want:
                checks.append(("state", f"{whose}: {key}", str(want[key]).lower(), found[key]))
        return checks

    def _halves_checks(self, gamma: VirtualSpec, want: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
        """γ's halves as MSContract holds them: registered, the γ state stored, settled (nothing
        blocked any more)."""
        checks = []
        for ledger, half in want.items():
            nid = self.nids.get(f"{gamma.name}@{ledger}")
            onchain = self.ms.nanocontract(self.cids[ledger], nid) if nid else None  # type: ignore[union-attr]
            registered = onchain is not None and onchain.registered
            stored = vc.decode(onchain.storage) if registered else None  # type: ignore[union-attr]
            whose = f"{gamma.name}'s half in {ledger} on chain"
            if "registered" in half:
                checks.append(("halves", f"{whose}: registered", str(half["registered"]).lower(),
                               str(registered).lower()))
            if "version" in half:
                checks.append(("halves", f"{whose}: version", str(half["version"]),
                               str(stored.version) if stored else "not registered"))
            if "balances" in half:
                checks.append(("halves", f"{whose}: balances ({gamma.alice} / {gamma.bob})",
                               f"{self._amount(half['balances'][0])} / {self._amount(half['balances'][1])}",
                               f"{self._amount(stored.balance_alice)} / {self._amount(stored.balance_bob)}"
                               if stored else "not registered"))
            if "settled" in half:
                settled = onchain.state(self.cids[ledger], nid).terminated if registered else None  # type: ignore
                checks.append(("halves", f"{whose}: settled", str(half["settled"]).lower(),
                               "not registered" if settled is None else str(settled).lower()))
        return checks

    def _nanocontract_checks(self, want: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        """A nanocontract as `party` holds it (its latest version both signed), or as the chain
        holds it (its registered state, after any execution)."""
        name = want["name"]
        spec = self.scenario.nanocontracts[name]
        cid, nid = self.cids.get(spec.channel), self.nids.get(name)
        state: NanocontractState | None = None
        if "party" in want:
            whose, missing = f"{want['party']}'s {name}", "none (never created, or absorbed)"
            rec = self._record(want["party"], cid) if cid and nid else None
            held = [s for s in rec.nanocontracts if s.state.nid == nid] if isinstance(rec, MSRecord) else []
            state = held[0].state if held else None  # type: ignore[assignment]
        else:
            whose, missing = f"{name} on chain", "not registered"
            if cid and nid:
                onchain = self.ms.nanocontract(cid, nid)  # type: ignore[union-attr]
                state = onchain.state(cid, nid) if onchain.registered else None
        checks = []
        if "version" in want:
            checks.append(("nanocontract", f"{whose}: version", str(want["version"]),
                           str(state.version) if state else missing))
        for key in ("blocked", "released"):
            if key in want:
                found = missing
                if state is not None:
                    pair = getattr(state, f"{key}_alice"), getattr(state, f"{key}_bob")
                    found = f"{self._amount(pair[0])} / {self._amount(pair[1])}"
                channel = self.scenario.channels[spec.channel]
                checks.append(("nanocontract", f"{whose}: {key} ({channel.alice} / {channel.bob})",
                               f"{self._amount(want[key][0])} / {self._amount(want[key][1])}", found))
        if "terminated" in want:
            checks.append(("nanocontract", f"{whose}: terminated", str(want["terminated"]).lower(),
                           str(state.terminated).lower() if state else missing))
        return checks


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
