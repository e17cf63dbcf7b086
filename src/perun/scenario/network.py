"""The scenario's network: every party's node is reached through a relay that the runner owns.

Nodes dial each other at the relay's port; the relay connects on to the node's real port and
passes messages along. The wire is encrypted and authenticated (docs/protocol.md §9), so no real
network can read, drop, replay or forge a single message; the relay can because it holds every
party's key (the runner made them): it ends the dialer's session as the party dialled and opens
another to that party's node as the dialer. It records the sequence diagram, and it plays the
network the scenario describes, to test the nodes' own checks behind the transport: it drops
or delays the next message of a type, holds a party's messages back until a later step
releases them, alters a failure passed back, replays one, or injects a forged one. The nodes
are not changed for any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from perun import errors
from perun.core.channel import PaymentState
from perun.core.eip712 import Domain, address_of, sign_state
from perun.scenario.record import Fate
from perun.wire import messages as m
from perun.wire.transport import Connection, handshake

Sessions = dict[bytes, tuple[int, int]]  # a node's open sessions: handshake hash -> frames (sent, received)


@dataclass
class Rule:
    """What to do with the next `count` frames of `type` that `sender` sends."""

    sender: str
    type: str
    action: str  # drop, delay, hold, garble, or pass (deliver, then call `then`)
    count: int = 1
    seconds: float = 0.0
    then: Callable[[], None] | None = None
    seen: asyncio.Event = field(default_factory=asyncio.Event)  # set once the rule has acted


@dataclass
class _Link:
    """One connection through the relay: its two sessions, by the name of the party each reaches."""

    parties: dict[str, Connection]


class Network:
    """Relays for the parties. `observe(sender, receiver, message, fate)` is told of each frame;
    if it raises, the frame goes on and `failure` says what went wrong, for the runner to stop on.
    `on_progress` is told whenever a relay's work ends (a frame forwarded, a link up or down)."""

    def __init__(self, names: dict[str, str], observe: Callable[[str, str, m.Message, Fate], None]) -> None:
        self.names = names  # address -> party name
        self.keys: dict[str, bytes] = {}  # party name -> its key (the runner fills these in)
        self.identity: tuple[int, str] = (0, "")  # the nodes' chain id and contract
        self.observe = observe
        self.ports: dict[str, int] = {}  # party -> the node's real port
        self.relays: dict[str, asyncio.Server] = {}
        self.rules: list[Rule] = []
        self.last: dict[tuple[str, str], tuple[str, bytes]] = {}  # (sender, type) -> (receiver, message)
        self.last_update: dict[tuple[str, bytes], tuple[str, bytes]] = {}  # (sender, channel) -> (receiver, message)
        self.alice_of: dict[bytes, str] = {}  # channel id -> its Alice's name (the runner fills it in)
        self._tasks: set[asyncio.Task] = set()
        self._links: list[_Link] = []
        self.on_progress: Callable[[], None] = lambda: None
        self.failure: str | None = None
        self._opening = 0  # links whose handshakes are under way
        self._forwarding = 0  # frames read and not yet passed on (a delayed one among them)
        # (sender, receiver) -> the frames held back on that link, in order, until `release`
        self.held: dict[tuple[str, str], list[tuple[bytes, Connection]]] = {}

    async def add(self, party: str) -> int:
        """Opens the relay for `party`; returns the port its peers dial."""
        server = await asyncio.start_server(lambda r, w: self._relay(party, r, w), "127.0.0.1", 0)
        self.relays[party] = server
        return server.sockets[0].getsockname()[1]

    def port(self, party: str) -> int:
        return self.relays[party].sockets[0].getsockname()[1]

    async def close(self) -> None:
        for server in self.relays.values():
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self.relays.values():
            await server.wait_closed()

    def add_rule(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def busy(self, sessions: Callable[[str], Sessions | None]) -> list[str]:
        """What is in flight, by the relays' count of frames against the nodes' (`sessions(party)`,
        None for a node that is down): empty when every frame sent has been read at its next hop,
        no relay is passing one on, and every link is open at both ends (a link whose node
        closed its end is being torn down)."""
        doing = []
        if self._opening:
            doing.append(f"{self._opening} link(s) opening")
        if self._forwarding:
            doing.append(f"{self._forwarding} frame(s) being passed on")
        for link in self._links:
            for party, conn in link.parties.items():
                other = next(name for name in link.parties if name != party)
                node = (sessions(party) or {}).get(conn.handshake_hash)
                if node is None:
                    doing.append(f"the link {party}–{other}: {party}'s end is closed or not yet open")
                    continue
                (sent, received), (node_sent, node_received) = conn.frames, node
                if node_sent > received:
                    doing.append(f"{node_sent - received} frame(s) from {party} to {other} not yet read by the relay")
                if sent > node_received:
                    doing.append(f"{sent - node_received} frame(s) from {other} not yet read by {party}")
        return doing

    # ------------------------------------------------------------------ injection

    def replay(self, sender: str, type_name: str) -> str:
        """Sends `sender`'s last message of this type to its receiver once more; returns the
        receiver."""
        if (sender, type_name) not in self.last:
            raise errors.PerunError(f"{sender} has sent no {type_name} to replay")
        receiver, raw = self.last[(sender, type_name)]
        self._inject(sender, receiver, raw, "replayed")
        return receiver

    def forge(self, sender: str, channel_id: bytes, amount: int, domain: Domain, signer_key: bytes | None) -> str:
        """Injects, as if from `sender`, an Update built on its last one on the channel that moves
        `amount` more to the receiver, with that Update's signature or one by `signer_key`.
        Returns the receiver."""
        if (sender, channel_id) not in self.last_update:
            raise errors.PerunError(f"{sender} has sent no Update on this channel to build a forgery on")
        receiver, raw = self.last_update[(sender, channel_id)]
        last = _decode(raw)
        assert isinstance(last, m.Update)
        to_bob = self._is_alice(sender, last)
        state = PaymentState(last.channel_id, last.version + 1,
                             last.balance_alice - amount if to_bob else last.balance_alice + amount,
                             last.balance_bob + amount if to_bob else last.balance_bob - amount, False)
        signature = sign_state(domain, state, signer_key) if signer_key else last.signature
        forged = replace(last, version=state.version, prev=last.version, balance_alice=state.balance_alice,
                         balance_bob=state.balance_bob, signature=signature)
        self._inject(sender, receiver, forged.encode(), "forged")
        return receiver

    async def release(self, sender: str) -> int:
        """Sends on every frame held back from `sender`, in order; returns how many."""
        count = 0
        for link in [link for link in self.held if link[0] == sender]:
            for raw, dst in self.held.pop(link):
                with contextlib.suppress(errors.PeerUnavailable):
                    dst.send_plaintext(raw)
                    await dst.drain()
                    count += 1
        return count

    def _is_alice(self, sender: str, update: m.Update) -> bool:
        return self.alice_of.get(update.channel_id) == sender

    def _inject(self, sender: str, receiver: str, raw: bytes, fate: Fate) -> None:
        for link in self._links:
            conn = link.parties.get(receiver)
            if conn is not None and sender in link.parties and not conn.closed:
                conn.send_plaintext(raw)
                message = _decode(raw)
                assert message is not None  # replayed: it decoded when it passed; forged: just encoded
                self.observe(sender, receiver, message, fate)
                self.on_progress()
                return
        raise errors.PeerUnavailable(f"no connection between {sender} and {receiver} to inject into")

    # ------------------------------------------------------------------ relaying

    async def _relay(self, party: str, dialer_r: asyncio.StreamReader, dialer_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # (a relay runs as a task of its own)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._opening += 1
        try:
            link = await self._open(party, dialer_r, dialer_w)
        finally:
            self._opening -= 1
            self.on_progress()
        if link is None:
            return
        (dialer, to_dialer), (_, to_listener) = link.parties.items()
        self._links.append(link)
        try:
            await asyncio.gather(self._pump(to_dialer, to_listener, dialer, party),
                                 self._pump(to_listener, to_dialer, party, dialer))
        finally:
            self._links.remove(link)
            to_dialer.close()
            to_listener.close()
            self.on_progress()

    async def _open(self, party: str, dialer_r: asyncio.StreamReader, dialer_w: asyncio.StreamWriter) -> _Link | None:
        """The dialer's session with the relay as `party`, and the relay's with `party`'s node as
        the dialer; None if either fails."""
        try:
            listener_r, listener_w = await asyncio.open_connection("127.0.0.1", self.ports[party])
        except (OSError, KeyError):  # the node is down: so is its address
            dialer_w.close()
            return None
        try:
            to_dialer = await handshake(dialer_r, dialer_w, self.keys[party], *self.identity)
            dialer = self.names.get(to_dialer.peer, to_dialer.peer)
            to_listener = await handshake(listener_r, listener_w, self.keys[dialer], *self.identity,
                                          expected_peer=address_of(self.keys[party]))
        except (errors.PerunError, KeyError):
            dialer_w.close()
            listener_w.close()
            return None
        return _Link({dialer: to_dialer, party: to_listener})

    async def _pump(self, src: Connection, dst: Connection, sender: str, receiver: str) -> None:
        """Messages from one side to the other."""
        try:
            while True:
                raw = await src.read_plaintext()
                self._forwarding += 1
                try:
                    await self._forward(sender, receiver, raw, _decode(raw), dst)
                finally:
                    self._forwarding -= 1
                    self.on_progress()
        except errors.PerunError:
            pass
        finally:
            dst.close()

    async def _forward(self, sender: str, receiver: str, raw: bytes, message: m.Message | None,
                       dst: Connection) -> None:
        type_name = type(message).__name__ if message else "Malformed"
        behind = self.held.get((sender, receiver))  # frames held back on this link: this one waits too
        rule = None if behind is not None else next(
            (r for r in self.rules if r.sender == sender and r.type == type_name and r.count > 0), None)
        fate: Fate = "delivered" if behind is None else "delayed"
        if rule is not None:
            rule.count -= 1
            if rule.count == 0:
                self.rules.remove(rule)
            fates: dict[str, Fate] = {"drop": "dropped", "delay": "delayed", "hold": "delayed", "garble": "forged"}
            fate = fates.get(rule.action, "delivered")
            if rule.action == "garble" and isinstance(message, m.LockFailure):
                message = _garbled(message)
                raw = message.encode()
        if message is not None:
            self.last[(sender, type_name)] = (receiver, raw)
            if isinstance(message, m.Update):
                self.last_update[(sender, message.channel_id)] = (receiver, raw)
            try:
                self.observe(sender, receiver, message, fate)
            except Exception as exc:  # a bug in the recording: the frame goes on, and the run stops on it
                logging.getLogger("perun.scenario").exception("recording %s from %s failed", type_name, sender)
                self.failure = self.failure or (f"recording the {type_name} from {sender} to {receiver} failed: "
                                                f"{type(exc).__name__}: {exc}")
        if behind is not None:
            behind.append((raw, dst))
            return
        if rule is not None:
            rule.seen.set()
            if rule.action == "drop":
                return
            if rule.action == "hold":
                self.held[(sender, receiver)] = [(raw, dst)]
                return
            await asyncio.sleep(rule.seconds)  # the link is slow: later messages wait too
        with contextlib.suppress(errors.PeerUnavailable):
            dst.send_plaintext(raw)
            if rule is not None and rule.then:
                rule.then()
            await dst.drain()


def _garbled(failure: m.LockFailure) -> m.LockFailure:
    """The failure with one byte of its blob flipped: a hop that alters what it passes on. The
    blob keeps its size, so every hop still takes it; only the payer can tell."""
    blob = bytearray(failure.failure)
    blob[len(blob) // 2] ^= 0xFF
    return replace(failure, failure=bytes(blob))


def _decode(raw: bytes) -> m.Message | None:
    try:
        return m.decode_message(raw)
    except errors.PerunError:
        return None
