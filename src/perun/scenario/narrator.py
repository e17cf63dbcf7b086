"""The run's story: the Recording (perun.scenario.record) that the reports are written from,
and the printout as it happens. The narrator observes the relays (every frame) and the chain
(every transaction), and is told of the steps, the notes and the verdicts; it names what it sees
by the file's names (`register(pay v0)`, `g@ib`) and samples the balances after each step.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from eth_utils import to_checksum_address
from web3.types import TxParams

from perun import errors
from perun.chain.backend import Transaction
from perun.chain.payment import Event
from perun.core.apps import virtualchannel as vc
from perun.core.msmachine import MSRecord, final_state
from perun.core.multistate import nanocontract_id
from perun.scenario import record as r
from perun.scenario.spec import Step
from perun.scenario.world import World
from perun.wire import messages as m


class Narrator:
    """Writes one run's Recording and prints it as it goes (through `out`)."""

    def __init__(self, world: World, rec: r.Recording, out: Callable[[str], None]) -> None:
        self.world = world
        self.rec = rec
        self.out = out
        self.line = 0  # of the step that runs: every entry names it
        self.errors_seen: list[tuple[str, str, str]] = []  # (from, to, code) of Error frames
        self.message_seen = asyncio.Event()  # set at every frame
        self._lock = threading.Lock()  # observers may run on a node's chain thread
        self._seq = 0
        self._t0 = time.perf_counter()

    @property
    def recorded(self) -> int:
        """How many entries the recording holds: a new one means something happened."""
        return len(self.rec.entries)

    def _next(self) -> tuple[int, float]:
        """The next sequence number (entries and samples share them) and the time since the start."""
        with self._lock:
            self._seq += 1
            return self._seq, round(time.perf_counter() - self._t0, 4)

    def _add(self, make: Callable[[int, float], r.Entry]) -> None:
        with self._lock:
            self._seq += 1
            self.rec.entries.append(make(self._seq, round(time.perf_counter() - self._t0, 4)))

    # ------------------------------------------------------------------ the run

    def heading(self) -> None:
        """Prints the scenario's name and title, before anything is set up."""
        sc = self.world.scenario
        self.out(f"▶ {sc.name}: {sc.title}")

    def introduce(self) -> None:
        """Records the parties and the channels, once the world is set up."""
        sc, world = self.world.scenario, self.world
        if world.token is not None:
            self.rec.unit = "TKN"
        for name, party in world.parties.items():
            self.rec.parties[name] = party.address
        for name, tower in world.towers.items():
            self.rec.towers[name] = tower.address
        for name, spec in sc.channels.items():
            self.rec.channels[name] = r.Channel(name, "", spec.alice, spec.bob,
                                                "ETH" if spec.token == "ETH" else world.token.address, spec.deposits,
                                                spec.kind)
        for name, gamma in sc.virtual.items():
            self.rec.channels[name] = r.Channel(name, "", gamma.alice, gamma.bob,
                                                self.rec.channels[gamma.ledgers[0]].token, gamma.deposits, "virtual")

    def opened(self, channel: str, cid: bytes) -> None:
        """A channel or a virtual channel got its id."""
        self.rec.channels[channel] = replace(self.rec.channels[channel], id="0x" + cid.hex())

    def step_began(self, step: Step) -> str:
        """Records and prints the step's beginning; returns its text."""
        self.line = step.line
        text = describe(step, self.world)
        self._add(lambda seq, t: r.Step(seq, t, step.line, step.index, text))
        self.out(f"  {step.index:>2}. {text}  (line {step.line})")
        return text

    def step_ended(self, step: Step, text: str, outcome: r.Outcome, detail: str) -> None:
        self._add(lambda seq, t: r.Step(seq, t, step.line, step.index, text, outcome, detail))
        mark = {"ok": "ok", "expected-error": f"failed as expected ({detail})", "failed": f"FAILED: {detail}"}[outcome]
        if outcome != "ok" or detail:
            self.out(f"      → {mark if outcome != 'ok' else detail}")

    def stopped(self, step: Step, detail: str) -> None:
        """The step failed unexpectedly: the run stops there."""
        self.rec.error = f"line {step.line}: step {step.index} ({step.action}) failed: {detail}"

    def note(self, party: str | None, text: str) -> None:
        self._add(lambda seq, t: r.Note(seq, t, self.line, party, text))
        self.out(f"      · {party + ': ' if party else ''}{text}")

    def verdict(self, line: int, what: str, expected: str, found: str, passed: bool) -> None:
        self.rec.verdicts.append(r.Verdict(line, what, expected, found, passed))

    def checked(self, line: int, what: str, expected: str, found: str) -> None:
        """Records and prints a check of an `expect` step: it holds if it found what was expected."""
        passed = expected == found
        self.verdict(line, what, expected, found, passed)
        self.out(f"      {'✓' if passed else '✗'} {what}: "
                 + (found if passed else f"expected {expected}, found {found} (line {line})"))

    def finish(self) -> r.Recording:
        """Prints the verdict of the whole run; returns the recording."""
        self.rec.duration = round(time.perf_counter() - self._t0, 3)
        sc = self.world.scenario
        verdict = "PASS" if self.rec.passed else "FAIL"
        self.out(f"{verdict} {sc.name}: {len(self.rec.transactions)} transactions, {self.rec.gas:,} gas, "
                 f"{sum(v.passed for v in self.rec.verdicts)}/{len(self.rec.verdicts)} assertions hold")
        return self.rec

    # ------------------------------------------------------------------ frames and transactions

    def message(self, sender: str, receiver: str, message: m.Message, fate: r.Fate) -> None:
        """The relays' observer: a frame and what the network did with it."""
        if isinstance(message, m.NanocontractCreate):  # a multi-hop payment's lock gets its name
            self.world.learn_lock(message.channel_id, message.version, message.app, message.data)
        self._add(lambda seq, t: r.Message(seq, t, self.line, sender, receiver, type(message).__name__,
                                           self._summary(message), fate))
        if isinstance(message, m.Error) and fate != "dropped":
            self.errors_seen.append((sender, receiver, _code_name(message.code)))
        self.message_seen.set()

    def transaction(self, tx: TxParams, mined: Transaction) -> None:
        """The chain's observer: a transaction mined, with its gas and events; the sender's gas counts
        for its wallet."""
        receipt, world = mined.receipt, self.world
        sender = world.name(cast(str, tx["from"]))  # (Chain.transact sends from an address string)
        world.gas_paid[sender] = world.gas_paid.get(sender, 0) + receipt["gasUsed"] * receipt["effectiveGasPrice"]
        function = self._function(tx) + ("" if receipt["status"] == 1 else " (reverted)")
        found = world.contract.receipt_events(receipt) + (world.ms.receipt_events(receipt) if world.ms else ())
        events = tuple(self._event_text(e) for e in found)
        block = world.chain.w3.eth.get_block(receipt["blockNumber"])
        self._add(lambda seq, t: r.Transaction(seq, t, self.line, sender, function, receipt["gasUsed"],
                                               receipt["blockNumber"], block["timestamp"], events,
                                               "0x" + bytes(receipt["transactionHash"]).hex()))
        self.out(f"      ⛓ {sender} {function}  gas {receipt['gasUsed']:,}  {' '.join(events)}")

    def _function(self, tx: TxParams) -> str:
        """The function a transaction called; for a nanocontract, which one: `register(pay v0)`,
        `execute(game.timeout)`."""
        to = to_checksum_address(tx["to"]) if tx.get("to") else None
        targets = (self.world.contract.contract, self.world.ms.contract if self.world.ms else None, self.world.token)
        for target in targets:
            if target is not None and to == target.address:
                try:
                    fn, args = target.decode_function_input(tx["data"])
                except ValueError:
                    break
                # A tower's registerFor and executeFor read like a party's register and execute.
                if target is not self.world.token and fn.fn_name in ("register", "registerFor"):
                    state = args["s"]
                    nid, version = (state["nid"], state["version"]) if isinstance(state, dict) else (state[1], state[3])
                    return f"{fn.fn_name}({self.world.nano_name(bytes(nid))} v{version})"
                if target is not self.world.token and fn.fn_name in ("execute", "executeFor"):
                    nid, fun = bytes(args["nid"]), args["fun"]
                    submitted = f" {self._settled_version(args['z'])}" if self.world.is_settle(nid, fun) else ""
                    return f"{fn.fn_name}({self.world.nano_name(nid)}.{self.world.fun_name(nid, fun)}{submitted})"
                return fn.fn_name
        return "transfer" if not tx.get("data") else "call"

    def _event_text(self, event: Event) -> str:
        """As printed under a transaction: `CloseRegistered(version=1)`, `Refunded(amount=...)`,
        `NanocontractExecuted(game.timeout, version=4)`."""
        if event.name in ("RewardRecorded", "RewardPaid"):  # a tower's reward: to whom, how much, for what
            nid = event.args.get("nid", bytes(32))
            what = "" if nid == bytes(32) else f"{self.world.nano_name(nid)}, "
            return (f"{event.name}({what}{self.world.name(event.args['tower'])}, "
                    f"{self.world.amount(event.args['amount'])})")
        shown = [f"{k}={v}" for k, v in event.args.items() if k in ("version", "amount")]
        if "nid" in event.args:
            nid = event.args["nid"]
            fun = f".{self.world.fun_name(nid, event.args['fun'])}" if "fun" in event.args else ""
            shown.insert(0, self.world.nano_name(nid) + fun)
            if fun and self.world.gamma_of(nid):  # a half's version counts its executions; show γ's stored state
                shown[1:] = [f"γ v{vc.decode(event.args['data']).version}"]
        return event.name + (f"({', '.join(shown)})" if shown else "")

    def _summary(self, message: m.Message) -> str:
        """A frame in a few words: `ab v3: 9 ETH / 6 ETH`, `STALE_VERSION: ...`."""
        amounts, nano_name = self.world.amounts, self.world.nano_name
        where = self.world.channel_name(getattr(message, "channel_id", b""))
        if isinstance(message, m.Monitor):  # it names the channel by its parameters
            with contextlib.suppress(errors.PerunError):
                where = self.world.channel_name(self.world.contract.channel_id(message.params()))
            return (f"{where} v{message.version}: {amounts(message.balance_alice, message.balance_bob)}, reward "
                    f"{self.world.amount(message.reward)}")
        if isinstance(message, m.MonitorAck):
            return f"{where} v{message.version} held"
        if isinstance(message, (m.MonitorChannel, m.MonitorNanocontract, m.MonitorCall, m.MonitorNanoAck)):
            return self._monitor_text(message)
        if isinstance(message, m.Update):
            final = " final" if message.final else ""
            return f"{where} v{message.version}{final}: {amounts(message.balance_alice, message.balance_bob)}"
        if isinstance(message, m.UpdateAck):
            return f"{where} v{message.version} countersigned"
        if isinstance(message, m.Error):
            return f"{_code_name(message.code)}: {self.world.named(message.reason)}"
        if isinstance(message, m.ProposeChannel):
            return f"deposits {amounts(message.deposit_alice, message.deposit_bob)}, Δ {message.delta} s"
        if isinstance(message, m.ProposeMultistate):
            return f"multistate, deposits {amounts(message.deposit_alice, message.deposit_bob)}, Δ {message.delta} s"
        if isinstance(message, m.NanocontractCreate):
            nc = nano_name(nanocontract_id(message.channel_id, message.version))
            # A multi-hop payment's lock: each times out Δ + margin before the one it was forwarded for.
            until = f", until chain time {self.world.lock_timeouts[nc]}" if self.world.invoice_of(nc) else ""
            return (f"{where} v{message.version}: creates {nc} ({self.world.app_name(message.app)}), blocking "
                    f"{amounts(message.blocked_alice, message.blocked_bob)}{until}")
        if isinstance(message, m.LockFailure):  # opaque but to the payer: the CANCEL it comes with follows
            return f"{where} {nano_name(message.nid)}: a failure for the payer, then the lock's cancel"
        if isinstance(message, m.LockOnion):
            return f"{where} v{message.version}: the onion for the lock proposed next ({len(message.packet)} bytes)"
        if isinstance(message, m.NanocontractCall):
            nc = nano_name(message.nid)
            return f"{where} {nc} v{message.version}: {self._call_text(message.nid, message.fun, message.z)}"
        if isinstance(message, m.NanocontractAbsorb):
            return f"{where} v{message.version}: absorbs {nano_name(message.nid)}"
        if isinstance(message, m.MultistateClose):
            return f"{where} v{message.version} final: {self._final_cash(message)}"
        if isinstance(message, m.NanocontractAck):
            slot = "" if message.slot == bytes(32) else f" {nano_name(message.slot)}"
            return f"{where}{slot} v{message.version} countersigned"
        if isinstance(message, m.Reestablish):
            return f"{where} at v{message.current}, signed up to v{message.signed}"
        if isinstance(message, m.StateSync):
            return f"{where} v{message.version}: {amounts(message.balance_alice, message.balance_bob)}"
        if isinstance(message, m.VirtualClose):
            return f"{where} v{message.version} final: {amounts(message.balance_alice, message.balance_bob)}"
        return where

    def _monitor_text(self, message: m.MonitorChannel | m.MonitorNanocontract | m.MonitorCall | m.MonitorNanoAck) -> str:
        """What a client hands a tower of a multistate channel, or what the tower says it holds:
        `ab v2: cash 9 ETH / 5 ETH, lists pay, reward 0.01 ETH`, `ab pay v1: released 0 ETH / 1 ETH,
        reward ...`, `ib g@ib: settle with v3: 1 ETH / 3 ETH, reward ...`, `ab pay v1 held`."""
        amounts, nano_name = self.world.amounts, self.world.nano_name
        if isinstance(message, m.MonitorChannel):  # it names the channel by its parameters
            where = ""
            with contextlib.suppress(errors.PerunError, AttributeError):
                where = self.world.channel_name(self.world.ms.channel_id(message.params()))  # type: ignore[union-attr]
            nanos = ""
            with contextlib.suppress(errors.PerunError):
                listed = [nano_name(f.nid) for f in message.state(bytes(32)).nanocontracts]
                nanos = f", lists {', '.join(listed)}" if listed else ", lists none"
            return (f"{where} v{message.version}: cash {amounts(message.cash_alice, message.cash_bob)}{nanos}, reward "
                    f"{self.world.amount(message.reward)}")
        where = self.world.channel_name(message.channel_id)
        nc = nano_name(message.nid)
        if isinstance(message, m.MonitorNanocontract):
            return (f"{where} {nc} v{message.version}: blocked {amounts(message.blocked_alice, message.blocked_bob)}, "
                    f"released {amounts(message.released_alice, message.released_bob)}, reward "
                    f"{self.world.amount(message.reward)}")
        if isinstance(message, m.MonitorCall):
            with contextlib.suppress(errors.PerunError, ValueError):
                return (f"{where} {nc}: {self._call_text(message.nid, message.fun, message.z)}, reward "
                        f"{self.world.amount(message.reward)}")
            return f"{where} {nc}: call {message.fun}, reward {self.world.amount(message.reward)}"
        if message.call:  # MonitorNanoAck of a call: for SETTLE, `version` is γ's
            return f"{where} {nc}: the call with γ v{message.version} held"
        return f"{where} {nc} v{message.version} held"

    def _final_cash(self, message: m.MultistateClose) -> str:
        """The cash a multistate channel's final state pays out. The frame carries none: it is
        that of the channel state at `prev`, which both parties hold, with what its nanocontracts
        released; read from Alice's record, or named by its version if that record is elsewhere
        or does not give it (a relay's observer must not raise)."""
        name = self.world.channel_name(message.channel_id)
        spec = self.world.scenario.channels.get(name)
        rec = self.world.parties[spec.alice].record(message.channel_id) if spec else None
        if isinstance(rec, MSRecord) and rec.state.version == message.prev:
            with contextlib.suppress(errors.PerunError):
                final = final_state(rec, message.version)
                return self.world.amounts(final.cash_alice, final.cash_bob)
        return f"the cash of v{message.prev}"

    def _call_text(self, nid: bytes, fun: int, z: bytes) -> str:
        """A nanocontract call as a frame carries it: `move to cell 4`, `settle with v3: ...`."""
        name = self.world.fun_name(nid, fun)
        if name == "claim" and self.world.invoice_of(self.world.nano_name(nid)):  # the preimage travels back
            return f"claim with the preimage 0x{z.hex()[:12]}…"
        if name == "move" and len(z) == 32:
            return f"move to cell {int.from_bytes(z, 'big')}"
        if self.world.is_settle(nid, fun):
            s = vc.decode_settle_arg(z)
            return f"settle with {self._settled_version(z)}: {self.world.amounts(s.balance_alice, s.balance_bob)}"
        return name

    @staticmethod
    def _settled_version(z: bytes) -> str:
        """The γ state a SETTLE submits: `v3`, `v4 final`."""
        s = vc.decode_settle_arg(z)
        return f"v{s.version}" + (" final" if s.final else "")

    # ------------------------------------------------------------------ balances

    def sample(self, label: str) -> None:
        """Everyone's wallet, and each channel's latest state as a party holds it."""
        parties = self.world.parties
        wallets = {p.name: self.world.wallet(p.name) for p in self.world.members()}
        channels: dict[str, dict[str, int]] = {}
        for channel, cid in self.world.cids.items():
            spec = self.world.scenario.channels[channel]
            rec = parties[spec.alice].record(cid) or parties[spec.bob].record(cid)
            if isinstance(rec, MSRecord):  # the cash, and what the nanocontracts hold
                state = rec.state
                channels[channel] = {spec.alice: state.cash_alice, spec.bob: state.cash_bob,
                                     "in nanocontracts": sum(f.total for f in state.nanocontracts)}
            elif rec is not None:
                channels[channel] = {spec.alice: rec.current.balance_alice, spec.bob: rec.current.balance_bob}
        for name, gid in self.world.gids.items():  # an end's latest state of γ
            gamma = self.world.scenario.virtual[name]
            v_rec = parties[gamma.alice].virtual_record(gid) or parties[gamma.bob].virtual_record(gid)
            if v_rec is not None and v_rec.channel is not None:
                current = v_rec.channel.current
                channels[name] = {gamma.alice: current.balance_alice, gamma.bob: current.balance_bob}
        seq, _ = self._next()
        self.rec.samples.append(r.Sample(seq, label, wallets, channels))


def _code_name(code: int) -> str:
    try:
        return m.ErrorCode(code).name
    except ValueError:
        return str(code)


def describe(step: Step, world: World) -> str:
    """The step in one line, as the recording and the printout show it."""
    a = step.args
    amount = world.amount(a["amount"]) if "amount" in a else ""
    gamma = world.scenario.virtual.get(a.get("channel", ""))
    match step.action:
        case "open" if gamma:
            return (f"{gamma.alice} opens virtual channel {gamma.name} with {gamma.bob} through {gamma.ingrid} "
                    f"({world.amount(gamma.deposits[0])} / {world.amount(gamma.deposits[1])}, valid for "
                    f"{gamma.validity} s, window {gamma.window} s)")
        case "open":
            spec = world.scenario.channels[a["channel"]]
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
        case "refute":
            named = "" if a["tower"] == a["by"] else f", naming {a['tower']}"
            return (f"{a['by']} refutes on {a['channel']} with version {a['version']}, on {a['client']}'s "
                    f"authorisation{named}, by hand")
        case "submit":
            assert gamma is not None  # (the file's check: a submit names a virtual channel)
            ledger = gamma.ledgers[gamma.ends.index(a["by"])]
            if "balances" in a:  # a fork, signed by both ends for this step
                return (f"{a['by']} submits a version {a['version']} of {gamma.name} paying "
                        f"{world.amounts(*a['balances'])}, signed by both ends now, on its half in {ledger}, by hand")
            return f"{a['by']} submits version {a['version']} of {gamma.name} on its half in {ledger}, by hand"
        case "cooperative_close" if "version" in a:
            return f"{a['by']} closes {a['channel']} cooperatively with a final state at version {a['version']}, by hand"
        case "cooperative_close":
            return f"{a['by']} closes {a['channel']} cooperatively"
        case "finalize" | "refund":
            return f"{a['by']} {step.action}s {a['channel']}"
        case "confirm":
            return f"{a['by']} confirms {a['channel']}, by hand"
        case "deny":
            return f"the test token refuses transfers to {a['party']} from now on"
        case "allow":
            return f"the test token accepts transfers to {a['party']} again"
        case "withdraw":
            return f"{a['by']} withdraws its deferred payouts to {a.get('to', a['by'])}"
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
        case "hold":
            return f"the network holds back {a['from']}'s next {a['message']}, and what follows it, until released"
        case "release":
            return f"the network releases what it held back from {a['from']}"
        case "garble":
            count = a.get("count", 1)
            frames = "LockFailure" if count == 1 else f"{count} LockFailure frames"
            return f"the network alters the failure in {a['from']}'s next {frames}"
        case "forge":
            signer = f", signed by {a['signer']}" if "signer" in a else ", with the old signature"
            return f"a forged Update from {a['from']} moves {amount} more on {a['channel']}{signer}"
        case "wait" if a.get("next"):  # the same target, as the next block's time
            plain = replace(step, args={k: v for k, v in a.items() if k != "next"})
            return describe(plain, world).replace("time moves to", "the next block is at", 1)
        case "wait":
            if "validity" in a:
                return f"time moves to {a['validity']}'s validity {a.get('offset', 0):+d} s"
            if "deadline" in a:
                return f"time moves to {a['deadline']}'s deadline {a.get('offset', 0):+d} s"
            if "window" in a:
                return f"time moves to the end of {a['window']}'s window {a.get('offset', 0):+d} s"
            if "timeout" in a:
                what = "move deadline" if world.scenario.nanocontracts[a["timeout"]].app == "TicTacToe" else "timeout"
                return f"time moves to {a['timeout']}'s {what} {a.get('offset', 0):+d} s"
            return f"time moves {a['seconds']} s" if "seconds" in a else f"{a['blocks']} blocks are mined"
        case "expect":
            return "check " + ", ".join(k for k in a if k != "channel")
        case "nanocontract":
            nano = world.scenario.nanocontracts[a["name"]]
            channel = world.scenario.channels[nano.channel]
            if nano.app == "HashTimeLock":
                to = channel.bob if nano.by == channel.alice else channel.alice
                return (f"{nano.by} locks {world.amount(nano.amount)} for {to} in {nano.name} on {nano.channel} "
                        f"(HashTimeLock, {nano.timeout} s)")
            return (f"{nano.by} starts {nano.name} on {nano.channel} (TicTacToe, stakes "
                    f"{world.amount(nano.stakes[0])} / {world.amount(nano.stakes[1])}, {nano.first} first, "
                    f"{nano.move_timeout} s a move on chain)")
        case "call":
            return f"{a['by']} calls {_step_call(a)} on {a['nanocontract']} off chain"
        case "execute":
            return f"{a['by']} executes {_step_call(a)} on {a['nanocontract']} on chain"
        case "enforce":
            return f"{a['by']} enforces {_step_call(a)} on {a['nanocontract']} (on chain after its window)"
        case "absorb":
            return f"{a['by']} absorbs {a['nanocontract']} into {a['channel']}'s cash"
        case "register":
            return f"{a['by']} registers {a['nanocontract']} on chain with version {a.get('version', 'latest')}"
        case "invoice":
            return f"{a['by']} makes invoice {a['name']} for {amount}"
        case "pay_invoice":
            invoice = world.scenario.invoices[a["invoice"]]
            by_hand = []
            if "amount" in a:
                by_hand.append(f"delivering {world.amount(a['amount'])}")
            if "secret" in a:
                by_hand.append("with a payment secret not the invoice's")
            return (f"{a['from']} pays invoice {a['invoice']} ({world.amount(invoice.amount)} to {invoice.payee}) over "
                    f"{', '.join(a['route'])}" + (f", by hand: {', '.join(by_hand)}" if by_hand else ""))
    return step.action



def _step_call(a: dict[str, Any]) -> str:
    if a["function"] == "move":
        return f"move to cell {a['cell']}"
    return a["function"] + (" (another preimage)" if "preimage" in a else "")
