"""Plays a scenario (perun.scenario.spec) with real nodes and records what happened.

Every party is a `perun.Node` in this process, listening on loopback TCP; the nodes reach each
other through the relays of perun.scenario.network, which record the frames and play the
network's faults. One chain serves all: the embedded chain (fresh for each scenario) or an RPC
URL; a file with a multistate channel also gets MSContract and the nanocontract apps, and its
nanocontracts are known by the names the file gives them (a virtual channel's halves as
`g@ledger`). After each step the runner lets the system settle (every running node reads the
chain and does its duties, then every node and relay finishes what is in flight, again until a
round changes nothing), samples the balances, and goes on. A crash is `Node.kill`: the node
stops dead where it is, as under SIGKILL, and only what its store committed survives (real
SIGKILL of node processes: tests/node/test_crashes.py).

`Run` is the coordinator: the world it stands on (perun.scenario.world, the parties and their
nodes in perun.scenario.party), the narrator that records and prints (perun.scenario.narrator),
the actions that do each step (perun.scenario.actions, perun.scenario.bypass, and
perun.scenario.environment for the network and time) and the checks that judge each `expect`
(perun.scenario.checks).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from perun import errors
from perun.chain.backend import Chain, EmbeddedChain, RpcChain
from perun.runtime import Killed
from perun.scenario import record as r
from perun.scenario.actions import STEP_TIMEOUT, Actions
from perun.scenario.bypass import Bypass
from perun.scenario.checks import Checks
from perun.scenario.environment import Environment
from perun.scenario.narrator import Narrator
from perun.scenario.network import Network
from perun.scenario.spec import DEFAULT_PAY_TIMEOUT, Scenario, Step
from perun.scenario.world import World

SETTLE_TIMEOUT = 60.0  # seconds a settle may take: far beyond any scenario's, so reaching it is a hang
TURNS = 2  # turns of the event loop in which a callback the last piece of work scheduled shows


class Unsettled(errors.PerunError):
    """The system did not come to rest after a step: what is still busy, or the relay's failure."""


class Run:
    """One scenario on one chain. `await Run(...).play()` returns the Recording."""

    def __init__(self, scenario: Scenario, chain: Chain, chain_label: str, workdir: Path,
                 out: Callable[[str], None]) -> None:
        self.scenario = scenario
        self.chain = chain
        self.world = World(scenario, chain, workdir)
        rec = r.Recording(scenario.name, scenario.title, scenario.description, str(scenario.file), chain_label)
        self.narrator = Narrator(self.world, rec, out)
        self.network = Network({}, self.narrator.message)  # it learns the parties' addresses at setup
        self._progress = asyncio.Event()  # set when a node's or a relay's piece of work ends
        self.network.on_progress = self._progress.set
        self.bypass = Bypass(self.world)
        self.actions = Actions(self.world, self.narrator, self.network, self.bypass, self._died)
        self.environment = Environment(self.world, self.narrator, self.network)
        self.checks = Checks(self.world, self.narrator)
        self._death = asyncio.Event()

    async def play(self) -> r.Recording:
        self.narrator.heading()
        try:
            await self._setup()
            for step in self.scenario.steps:
                if not await self._step(step):
                    break
        finally:
            await self._teardown()
        return self.narrator.finish()

    async def _setup(self) -> None:
        self.world.setup()
        self.narrator.introduce()
        self.chain.observers.append(self.narrator.transaction)
        self.network.names.update({p.address: p.name for p in self.world.members()})
        self.network.keys.update({p.name: p.account.key for p in self.world.members()})
        self.network.identity = (self.chain.chain_id, self.world.contract.address)
        for name in self.scenario.towers:  # first: the parties' nodes dial them, at their relays
            await self.network.add(name)
            await self.actions.start(name)
        for party in self.world.parties.values():
            party.towers = {self.world.towers[t].address: ("127.0.0.1", self.network.port(t)) for t in party.spec.towers}
        for name in self.scenario.parties:
            await self.network.add(name)
            await self.actions.start(name)
        self.narrator.sample("start")

    async def _teardown(self) -> None:
        await self.actions.stop()
        await self.network.close()
        if self.narrator.transaction in self.chain.observers:
            self.chain.observers.remove(self.narrator.transaction)

    def _died(self, name: str, at: str | None) -> None:
        self.narrator.note(name, f"killed at {at} (as by SIGKILL)" if at else "killed (as by SIGKILL)")
        self._death.set()

    # ------------------------------------------------------------------ steps

    async def _step(self, step: Step) -> bool:
        """Runs one step; False when the run must stop (the step failed unexpectedly)."""
        text = self.narrator.step_began(step)
        outcome: r.Outcome = "ok"
        detail = ""
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
        except (TimeoutError, errors.PerunError, Killed) as exc:
            detail = self.world.named(f"{type(exc).__name__}: {exc}")
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
            self.narrator.verdict(step.line, f"step {step.index} fails with {step.fails}", step.fails,
                                  detail or "no error", outcome == "expected-error")
        unsettled = False
        try:
            await self._settle()
        except Unsettled as exc:
            outcome, detail, unsettled = "failed", str(exc), True
        self.narrator.sample(f"after step {step.index}")
        self.narrator.step_ended(step, text, outcome, detail)
        if outcome == "failed" and (unsettled or not step.fails):
            self.narrator.stopped(step, detail)
            return False
        return True

    async def _act(self, step: Step) -> None:
        a, act, env = step.args, self.actions, self.environment
        gamma = self.scenario.virtual.get(a.get("channel", ""))
        match step.action:
            case "open" if gamma:
                await act.open_virtual(gamma)
            case "open":
                await act.open(a["channel"], a.get("confirm", True))
            case "pay":
                await act.pay(a["channel"], a["from"], a["amount"], a.get("send", True), a.get("answer", True))
            case "cooperative_close":
                await act.cooperative_close(a["channel"], a["by"], a.get("version"))
            case "close" if gamma:
                await act.close_virtual(gamma, a["by"], a.get("timeout"))
            case "close":
                await act.close(a["channel"], a["by"], a.get("version", "latest"))
            case "refute":
                self.bypass.refute(a["channel"], a["by"], a["version"], a["client"], a["tower"])
            case "submit":
                self.bypass.submit(gamma, a["by"], a["version"], a.get("balances"))  # type: ignore[arg-type]
            case "finalize" | "refund":
                await act.on_chain(step.action, a["channel"], a["by"])
            case "confirm":  # Bob's node confirms by itself: this is by hand
                self.bypass.on_chain("confirm", a["channel"], a["by"])
            case "deny" | "allow":
                self.bypass.deny(a["party"], step.action == "deny")
            case "withdraw":
                self.bypass.withdraw(a["by"], a.get("to", a["by"]))
            case "nanocontract":
                await act.create(self.scenario.nanocontracts[a["name"]])
            case "call":
                await act.call(a)
            case "absorb":
                await act.absorb(a["channel"], a["by"], a["nanocontract"])
            case "register":
                await act.register(a["channel"], a["by"], a["nanocontract"], a.get("version", "latest"))
            case "execute":
                await act.execute(a)
            case "enforce":
                await act.enforce(a)
            case "offline":
                await act.offline(a["party"])
            case "online" | "restart":
                await act.restart(a["party"], "back online" if step.action == "online" else "restarted on its store")
            case "crash":
                act.crash(a["party"], a.get("at"))
            case "drop" | "delay" | "hold":
                env.fault(step.action, a["from"], a["message"], a.get("count", 1), a.get("seconds", 0.0))
            case "garble":
                env.fault(step.action, a["from"], "LockFailure", a.get("count", 1), 0.0)
            case "release":
                await env.release(a["from"])
            case "replay":
                await env.replay(a["from"], a["message"])
            case "forge":
                await env.forge(a["from"], a["channel"], a["amount"], a.get("signer"))
            case "wait":
                env.wait(a)
            case "invoice":
                await act.invoice(a)
            case "pay_invoice":
                await act.pay_invoice(a["from"], a["invoice"], a["route"], a.get("timeout", DEFAULT_PAY_TIMEOUT),
                                      a.get("amount"), a.get("secret"))
            case "expect":
                await self.checks.wait_towers(step)
                await self.checks.wait_payment(step)
                self.checks.expect(step)

    # ------------------------------------------------------------------ settling

    async def _settle(self) -> None:
        """Until nothing moves: each running node reads the chain and does its duties, then
        every node and relay finishes what is in flight; again until a round sends, mines and
        notes nothing."""
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
        while True:
            block, count = self.chain.block_number(), self.narrator.recorded
            for party in self.world.running():
                await party.sync()
            await self._idle(deadline)
            if self.narrator.recorded == count and self.chain.block_number() == block:
                return

    async def _idle(self, deadline: float) -> None:
        """Waits, woken by the nodes' and relays' ends of work, until none is busy and every frame
        sent has been read at its next hop. Unsettled after the deadline, naming what is busy."""
        loop = asyncio.get_running_loop()
        while True:
            self._progress.clear()
            for member in self.world.running():
                member.node.runtime.on_progress = self._progress.set  # type: ignore[union-attr]
            if self.network.failure:
                raise Unsettled(f"internal error: {self.network.failure}")
            busy = self._busy()
            if not busy:
                # A callback the last piece of work scheduled (a node's hand-over to its towers
                # runs in the next turn) has run within TURNS, and what it started shows in `_busy`.
                for _ in range(TURNS):
                    await asyncio.sleep(0)
                if not self._progress.is_set() and not self._busy():
                    return
                continue
            try:
                await asyncio.wait_for(self._progress.wait(), deadline - loop.time())
            except TimeoutError:
                raise Unsettled(f"not settled within {SETTLE_TIMEOUT:g} s: " + "; ".join(self._busy())) from None

    def _busy(self) -> list[str]:
        """What the running nodes and the relays are in the middle of, named."""
        running = {m.name: m.node.runtime for m in self.world.running()}  # type: ignore[union-attr]
        busy = [f"{name}: {what}" for name, runtime in running.items() for what in runtime.busy()]
        sessions = {name: runtime.sessions() for name, runtime in running.items()}
        return busy + [f"relay: {what}" for what in self.network.busy(sessions.get)]


def _is_a(exc: BaseException, name: str) -> bool:
    if isinstance(exc, errors.PeerRejected) and getattr(exc.code, "name", None) == name:
        return True
    if isinstance(exc, errors.ContractRejected) and exc.name == name:  # a token's error, which has no class
        return True
    return any(cls.__name__ == name for cls in type(exc).__mro__)


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
