"""What the real-SIGKILL crash tests of multistate and virtual channels share: a crash plan that
kills `perun node` processes at one crash point after another and restarts each victim at once;
the states the stores signed, to compare; and a party that goes behind its node's back to close
with an older state."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from perun import errors
from perun.chain.multistate import MSContract
from perun.core.channel import Params
from perun.core.multistate import ChannelState, NanocontractState
from perun.store import Store
from tests.node.conftest import Deployed
from tests.node.processes import NodeProcess, Processes

DEATH_TIMEOUT = 30.0


class CrashPlan:
    """Nodes that die one after another at the crash points of `plan`, a list of (victim, point)
    in the order the protocol reaches them. Each node starts armed with its first point in the
    plan (`start`); `died` checks that the next victim died there of SIGKILL and restarts it at
    once, armed with its next point. `request` sends a control request in the background, since
    the node that serves it may die before it answers. A node that would pass its next point too
    early (an end that must acknowledge a call again before it may die receiving an absorption)
    is restarted unarmed and armed later (`rearm`)."""

    def __init__(self, procs: Processes, plan: list[tuple[str, str]]) -> None:
        self.procs = procs
        self.plan = list(plan)
        self.nodes: dict[str, NodeProcess] = {}
        self.reached: list[tuple[str, str]] = []
        self.links: list[tuple[str, str]] = []  # (dialer, listener)
        self._pool = ThreadPoolExecutor(16)
        self._exits: dict[str, Future] = {}

    def __getitem__(self, name: str) -> NodeProcess:
        return self.nodes[name]

    def next_point(self, name: str) -> str | None:
        return next((point for victim, point in self.plan if victim == name), None)

    def start(self, *nodes: tuple[str, LocalAccount, tuple[str, ...]]) -> None:
        """Starts (name, account, options) nodes at once, each armed with its first point."""
        started = self.procs.start_all(*((name, account, {"crash_at": self.next_point(name), "args": args})
                                         for name, account, args in nodes))
        for node in started:
            self._watch(node)

    def connect(self, dialer: str, listener: str) -> None:
        node = self.nodes[listener]
        self.nodes[dialer].call("connect", peer=node.address, host="127.0.0.1", port=node.port)
        self.links.append((dialer, listener))

    def reconnected(self) -> None:
        """Waits until every pair `connect` linked is connected again (the dialer redials)."""
        for dialer, listener in self.links:
            if self.nodes[dialer].alive and self.nodes[listener].alive:
                self.nodes[dialer].call("wait_peer", peer=self.nodes[listener].address)

    def request(self, node: str, method: str, **params: Any) -> Future:
        target = self.nodes[node]
        return self._pool.submit(target.call, method, **params)

    def died(self, victim: str, point: str, *, restart: bool = True, armed: bool = True) -> NodeProcess:
        """The next (victim, point) of the plan happened: `victim` exited of SIGKILL (only its
        armed point kills it so). It is restarted at once, armed with its next point, unless
        told otherwise (`restart`: later, with `restart`; `armed`: later, with `rearm`)."""
        assert self.plan and self.plan[0] == (victim, point), f"the plan goes on with {self.plan[:1]}"
        try:
            code = self._exits[victim].result(DEATH_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"{victim} did not die at {point} within {DEATH_TIMEOUT:g} s") from None
        assert code == -signal.SIGKILL, f"{victim} exited with {code}, not killed at {point}"
        self.plan.pop(0)
        self.reached.append((victim, point))
        if restart:
            return self.restart(victim, armed)
        return self.nodes[victim]

    def stop(self, name: str) -> None:
        """Stops a node as its operator does (it was not in the plan to die now)."""
        assert self.procs.stop(self.nodes[name]) == 0

    def restart(self, name: str, armed: bool = True) -> NodeProcess:
        """Starts a node that exited again, armed with its next point (if `armed`)."""
        point = self.next_point(name) if armed else None
        return self._watch(self.procs.restart(self.nodes[name], point))

    def rearm(self, name: str) -> NodeProcess:
        """Stops a running node and starts it again armed with its next point."""
        self.stop(name)
        return self.restart(name)

    def adopt(self, node: NodeProcess) -> NodeProcess:
        """Follows a node started without `start` (a watchtower, say): `died` and `restart` work
        on it as on the others."""
        return self._watch(node)

    def close(self) -> None:
        """No thread waits for the nodes any more (the Processes fixture stops them)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _watch(self, node: NodeProcess) -> NodeProcess:
        self.nodes[node.name] = node
        self._exits[node.name] = self._pool.submit(node.wait_exit, None)
        return node


def interrupted(request: Future) -> None:
    """A request whose node died under it failed (what it started completes all the same)."""
    try:
        request.result(DEATH_TIMEOUT)
    except errors.PerunError:
        return
    raise AssertionError("the request was answered: its node did not die under it")


def answered(request: Future) -> Any:
    """What a request answered, or the error it failed with: one whose peer died under it fails
    or, if the peer was back within its wait, succeeds."""
    try:
        return request.result(DEATH_TIMEOUT)
    except errors.PerunError as exc:
        return exc


def signed_states(db: Path) -> dict[tuple, str]:
    """What a store holds signed: (table, channel, nid, version) -> the state's contents."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        ms = conn.execute("SELECT channel_id, nid, version, state FROM ms_states").fetchall()
        payment = conn.execute("SELECT channel_id, version, final, balance_alice, balance_bob FROM states").fetchall()
    found: dict[tuple, str] = {("ms", bytes(c), bytes(n), int(v)): s for c, n, v, s in ms}
    found.update({("states", bytes(c), int(v), f): json.dumps([a, b]) for c, v, f, a, b in payment})
    return found


def assert_signed_once(*nodes: NodeProcess) -> int:
    """Whatever two stores both hold at a version, they hold with the same contents: no party
    signed two states at one version. Returns how many (table, slot, version) they share."""
    stores = [signed_states(node.data / "node.db") for node in nodes]
    shared = 0
    for i, ours in enumerate(stores):
        for theirs in stores[i + 1:]:
            for key in ours.keys() & theirs.keys():
                assert ours[key] == theirs[key], key
                shared += 1
    return shared


def held_state(holder: NodeProcess, deployed: Deployed, cid: str, version: int, nid: str | None = None
               ) -> tuple[Params, ChannelState | NanocontractState, bytes]:
    """(params, state, the peer's signature) of the state at `version` of multistate channel
    `cid` (or of its nanocontract `nid`) that `holder`, stopped, keeps in its store signed by its
    peer."""
    store = Store(holder.data / "node.db", holder.address, deployed.chain.chain_id, deployed.payment_contract)
    channel_id, slot = bytes.fromhex(cid[2:]), bytes.fromhex(nid[2:]) if nid else None
    try:
        params = next(r.params for r in store.ms_channels() if r.channel_id == channel_id)
        signed = next(s for s in store.ms_states(channel_id) if s.state.version == version and (
            isinstance(s.state, NanocontractState) and s.state.nid == slot if slot
            else isinstance(s.state, ChannelState)))
    finally:
        store.close()
    peer_signature = signed.sig_bob if params.alice == holder.address else signed.sig_alice
    assert peer_signature, f"{holder.name} holds no signature of its peer on version {version}"
    return params, signed.state, peer_signature


def close_behind_its_back(party: NodeProcess, deployed: Deployed, cid: str, version: int) -> ChannelState:
    """`party`, its node stopped, closes channel `cid` on chain with the channel state at
    `version` from its store, signed by its peer (an older one, to cheat); returns that state."""
    params, state, signature = held_state(party, deployed, cid, version)
    assert party.account is not None
    deployed.ms.close(party.account, params, state, signature)
    return state


def finalized(ms: MSContract, cid: str) -> list[tuple[int, int, int]]:
    """(version, payout Alice, payout Bob) of channel `cid`'s Finalized events."""
    return [(e.args["version"], e.args["payoutAlice"], e.args["payoutBob"]) for e in ms.events()
            if e.name == "Finalized" and "0x" + e.args["channelId"].hex() == cid]


def events_of(ms: MSContract, name: str, where: Callable[[dict], bool] = lambda args: True) -> list[dict]:
    return [e.args for e in ms.events() if e.name == name and where(e.args)]
