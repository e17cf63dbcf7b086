"""Channel announcements at a node (docs/protocol.md §13.8): the seed notes that a channel's
capacity can be known only by asking its players, so a payer asks its peers, and they theirs.

A node answers a ChannelsQuery with its own announcement of now (perun.core.announce: its
open multistate channels whose peer is connected, each with its forwarding fees, Δ and cash; none
if it does not forward), and, for a depth d > 1 when it forwards, with the announcements it
gathers by asking its own peers (those of its open multistate channels, the asker excepted, at
most FANOUT) with depth d − 1, waiting for them at most LEVEL_TIME · (d − 1) seconds. A query
keeps its number as it is passed on, so a node passes each number on once per depth (the
network has cycles); it answers again from what it gathered for the same asker within
CACHE_TIME, passes on at most MAX_PASSING queries at once, and refuses a peer's query while it
answers MAX_ANSWERING of that peer's.

Every announcement heard is checked before it is kept or passed on: its bytes, its signature
(which gives the announcer's public key, the payer's onion key for that hop), the chain, and its
age in chain time. A bad one is dropped with a log line; the rest of the answer counts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from perun import errors
from perun.core.announce import MAX_ANNOUNCED, Announcement
from perun.core.machine import Stage
from perun.core.msmachine import MSRecord
from perun.core.route import MAX_HOPS, Direction, Graph, Policy
from perun.wire import messages as m
from perun.wire.transport import Connection

if TYPE_CHECKING:
    from perun.protocols.multihop.protocol import Multihop

log = logging.getLogger("perun.node")

FANOUT = 16  # peers a node asks at once
LEVEL_TIME = 1.0  # seconds a node waits for its peers' answers, per level of depth it asks for
MAX_ANNOUNCEMENTS = 256  # announcements in one answer, and kept of one peer's answer
MAX_AGE = 600  # seconds of chain time after which an announcement is stale
MAX_AHEAD = 120  # seconds of chain time an announcement may be ahead (the announcer polled later)
CACHE_TIME = 2.0  # seconds a node answers the same asker from what it gathered for it before
MAX_PASSING = 8  # queries a node passes on at once; beyond, it answers with its own announcement
MAX_ANSWERING = 4  # queries of one peer a node answers at once; beyond, it refuses them
SEEN = 1024  # query numbers a node remembers having passed on


@dataclass
class _Asked:
    """A query this node sent one peer, the announcements that came back (by node), and how
    many came, good or bad."""

    done: asyncio.Future
    heard: dict[str, Announcement] = field(default_factory=dict)
    count: int = 0


def merge(into: dict[str, Announcement], announcements: Iterable[Announcement]) -> None:
    """Keeps each node's newest announcement (the first of equal timestamps)."""
    for a in announcements:
        if a.node not in into or a.timestamp > into[a.node].timestamp:
            into[a.node] = a


class Directory:
    """A node's side of announcements: answering, asking, and the payer's graph."""

    def __init__(self, multihop: Multihop) -> None:
        self.multihop = multihop
        self.ctx = multihop.ctx
        self._asked: dict[tuple[str, int], _Asked] = {}  # by (peer, query number)
        self._passed: OrderedDict[int, int] = OrderedDict()  # query number -> the greatest depth passed on
        self._answers: dict[tuple[str, int], tuple[float, dict[str, Announcement]]] = {}  # (asker, depth)
        self._passing = 0
        self._answering: dict[str, int] = {}  # by peer: its queries this node is answering
        self._own: Announcement | None = None  # the last one signed

    # ------------------------------------------------------------------ this node's announcement

    def open_channels(self) -> list[MSRecord]:
        """This node's open multistate channels whose peer is connected: the ones it can lock in."""
        connected = self.ctx.peers.connections
        return [rec for rec in self.multihop.ms.records.values()
                if rec.stage is Stage.OPEN and rec.peer in connected and not connected[rec.peer].closed]

    def directions(self, base_fee: int, fee_ppm: int) -> list[Direction]:
        """The direction of each channel of `open_channels` with cash, under these fees; at most
        MAX_ANNOUNCED, those with the most cash."""
        found = [Direction(rec.channel_id, self.ctx.address, rec.peer,
                           Policy(base_fee, fee_ppm, rec.params.delta, rec.my_cash), rec.params.token)
                 for rec in self.open_channels() if rec.my_cash]
        found.sort(key=lambda d: (-d.policy.capacity, d.channel))
        return found[:MAX_ANNOUNCED]

    def own(self) -> Announcement:
        """This node's announcement at its chain time now (signed again only when that or a
        direction changed): the directions it forwards over, none if it does not forward (its
        key is still worth knowing: it may be a payee)."""
        policy = self.multihop.policy
        directions = tuple(self.directions(policy.base_fee, policy.fee_ppm) if policy is not None else ())
        now, last = self.ctx.follower.chain_time, self._own
        if last is None or (last.timestamp, last.directions) != (now, directions):  # else signed already
            last = self._own = Announcement.create(self.ctx.key, self.multihop.ms.domain.chain_id, now, directions)
        return last

    # ------------------------------------------------------------------ messages

    async def receive(self, conn: Connection, msg: m.Message) -> None:
        if isinstance(msg, m.ChannelsQuery):
            if self._answering.get(conn.peer, 0) >= MAX_ANSWERING:
                raise errors.ChannelRefused(f"{MAX_ANSWERING} channel queries of yours are being answered: wait")
            self._answering[conn.peer] = self._answering.get(conn.peer, 0) + 1
            self.ctx.spawn(self._answer(conn, msg))  # not in the connection's loop: it may wait
        elif isinstance(msg, m.ChannelsAnnounce):
            self._heard(conn, msg)

    def refused(self, conn: Connection, msg: m.Error) -> None:
        """The peer refused a ChannelsQuery (it answers none, or too many of ours at once):
        whatever it said so far is its answer."""
        if msg.ref_type == m.ChannelsQuery.TYPE:
            for (peer, _), asked in self._asked.items():
                if peer == conn.peer and not asked.done.done():
                    asked.done.set_result(None)

    async def _answer(self, conn: Connection, query: m.ChannelsQuery) -> None:
        try:
            gathered: dict[str, Announcement] = {}
            if query.depth > 1 and self.multihop.policy is not None:
                gathered = await self._pass_on(conn.peer, query)
            own = self.own()
            answer = [own, *(a for a in gathered.values() if a.node not in (own.node, conn.peer))]
            self._send(conn, query.query, answer[:MAX_ANNOUNCEMENTS])
        finally:
            left = self._answering.pop(conn.peer) - 1
            if left:
                self._answering[conn.peer] = left

    async def _pass_on(self, asker: str, query: m.ChannelsQuery) -> dict[str, Announcement]:
        """What this node's peers announce, asked with depth − 1 (or what it gathered for the same
        asker a moment ago): nothing if it passed this query on at this depth or deeper already."""
        now = time.monotonic()
        self._answers = {k: v for k, v in self._answers.items() if now - v[0] < CACHE_TIME}
        cached = next((v[1] for (who, depth), v in self._answers.items() if who == asker and depth >= query.depth),
                      None)
        if cached is not None:
            return cached
        if self._passed.get(query.query, 0) >= query.depth or self._passing >= MAX_PASSING:
            return {}
        self._remember(query.query, query.depth)
        self._passing += 1
        try:
            gathered = await self.gather(query.depth - 1, query.query, exclude=asker)
        finally:
            self._passing -= 1
        self._answers[asker, query.depth] = (time.monotonic(), gathered)
        return gathered

    def _remember(self, query: int, depth: int) -> None:
        self._passed[query] = depth
        self._passed.move_to_end(query)
        while len(self._passed) > SEEN:
            self._passed.popitem(last=False)

    def _send(self, conn: Connection, query: int, announcements: list[Announcement]) -> None:
        """The answer, in as few ChannelsAnnounce as hold it (one announcement always fits one)."""
        chunks: list[bytes] = [b""]
        for raw in (a.to_bytes() for a in announcements):
            if len(chunks[-1]) + len(raw) > m.MAX_ANNOUNCEMENTS_BYTES:
                chunks.append(b"")
            chunks[-1] += raw
        for i, chunk in enumerate(chunks):
            self.ctx.peers.send(conn, m.ChannelsAnnounce(query, i == len(chunks) - 1, chunk))

    def _heard(self, conn: Connection, msg: m.ChannelsAnnounce) -> None:
        """Part of a peer's answer: each announcement checked (a bad one dropped, logged)."""
        asked = self._asked.get((conn.peer, msg.query))
        if asked is None:
            log.info("%s: ignored announcements from %s for no query of ours (late, or unasked)", self.ctx.name,
                     conn.peer)
            return
        for raw in msg.parts():
            asked.count += 1
            if asked.count > MAX_ANNOUNCEMENTS:  # each costs a signature's recovery: no more than an answer holds
                if asked.count == MAX_ANNOUNCEMENTS + 1:
                    log.warning("%s: %s sent more than %d announcements: the rest is dropped", self.ctx.name,
                                conn.peer, MAX_ANNOUNCEMENTS)
                break
            try:
                merge(asked.heard, [self.checked(raw)])
            except errors.InvalidAnnouncement as exc:
                log.warning("%s: dropped an announcement relayed by %s: %s", self.ctx.name, conn.peer, exc)
        if (msg.last or asked.count > MAX_ANNOUNCEMENTS) and not asked.done.done():
            asked.done.set_result(None)

    def checked(self, raw: bytes) -> Announcement:
        """The announcement `raw` holds, if it is well formed, signed by its node, of this chain
        and neither stale nor from the future (in chain time); else InvalidAnnouncement."""
        a = Announcement.from_bytes(raw)
        chain_id, now = self.multihop.ms.domain.chain_id, self.ctx.follower.chain_time
        if a.chain_id != chain_id:
            raise errors.InvalidAnnouncement(f"{a.node} announces for chain {a.chain_id}, not {chain_id}")
        if not now - MAX_AGE <= a.timestamp <= now + MAX_AHEAD:
            raise errors.InvalidAnnouncement(
                f"{a.node}'s announcement is of chain time {a.timestamp}, now is {now} (it must be within "
                f"{MAX_AGE} s before, {MAX_AHEAD} s after)")
        return a

    # ------------------------------------------------------------------ asking

    async def gather(self, depth: int, query: int, exclude: str | None = None) -> dict[str, Announcement]:
        """What the peers of this node's open multistate channels (`exclude` excepted, at most
        FANOUT) announce when asked `query` with `depth`, by node: what came back within
        LEVEL_TIME · depth seconds, from each peer that answered, whole or in part."""
        # A peer asked this query already (passed on again, deeper, meanwhile) answers that ask.
        peers = sorted(peer for peer in {rec.peer for rec in self.open_channels()} - {exclude}
                       if (peer, query) not in self._asked)[:FANOUT]
        loop = asyncio.get_running_loop()
        asked = {peer: _Asked(loop.create_future()) for peer in peers}
        for peer, entry in asked.items():
            self._asked[peer, query] = entry
            self.ctx.peers.send(self.ctx.peers.connections[peer], m.ChannelsQuery(query, depth))
        try:
            if asked:
                await asyncio.wait([entry.done for entry in asked.values()], timeout=LEVEL_TIME * depth)
        finally:
            for peer in asked:
                del self._asked[peer, query]
        gathered: dict[str, Announcement] = {}
        for entry in asked.values():
            merge(gathered, entry.heard.values())
        gathered.pop(self.ctx.address, None)
        return gathered

    async def survey(self) -> tuple[Graph, dict[str, bytes]]:
        """What a payer knows before it looks for a route: the graph of its own channels (its
        real cash, no fee: it pays none to itself) and of the directions its peers and theirs
        announce, up to MAX_HOPS away; and the announcers' public keys, by address. An
        announcement that contradicts what is known already (a channel's other side, a Δ, a
        token) is left out whole, with a log line."""
        query = secrets.randbits(64)
        self._remember(query, MAX_HOPS)  # a query of ours coming back round a cycle is not passed on
        gathered = await self.gather(MAX_HOPS, query)
        directions = self.directions(0, 0)
        sides: dict[bytes, Direction] = {d.channel: d for d in directions}
        for a in gathered.values():
            clash = next((d for d in a.directions if d.channel in sides and not _agree(sides[d.channel], d)), None)
            if clash is not None:
                log.warning("%s: left out %s's announcement: it contradicts what is known of channel 0x%s",
                            self.ctx.name, a.node, clash.channel.hex())
                continue
            sides.update((d.channel, d) for d in a.directions)
            directions.extend(a.directions)
        return Graph(tuple(directions)), {a.node: a.public_key for a in gathered.values()}


def _agree(known: Direction, new: Direction) -> bool:
    """Whether `new` can be the other side of the channel of `known` (route.Graph's rule)."""
    return (known.source, known.target, known.policy.delta, known.token) == (
        new.target, new.source, new.policy.delta, new.token)
