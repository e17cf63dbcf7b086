"""How a node proposes updates of its multistate channels: the update loop (propose, wait for
the acknowledgement, again above the versions a stale or conflicting refusal burned) and the
seed's reply time T, after which a proposal expires (docs/protocol.md §10.2).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from perun import errors
from perun.core import msmachine as ms
from perun.core.msmachine import MSProposal, MSRecord
from perun.protocols.multistate import wire
from perun.runtime.pending import Pending

if TYPE_CHECKING:
    from perun.protocols.multistate.protocol import Multistate

REPLY_TIME = 30.0  # the seed's T: seconds a peer has to answer a proposal (Node(reply_time=...))


def now_ms() -> int:
    """The wall clock that `expires` is read against, in Unix milliseconds."""
    return time.time_ns() // 1_000_000


class Proposer:
    """The proposals of `protocol`'s node; a peer has `reply_time` seconds to answer each."""

    def __init__(self, protocol: Multistate, reply_time: float) -> None:
        self.protocol = protocol
        self.ctx = protocol.ctx
        self.reply_time = reply_time
        self._awaited: set[tuple[bytes, bytes]] = set()  # (channel, slot) a caller waits on, and so retries

    def retries(self, cid: bytes, slot: bytes) -> bool:
        """A caller waits for the answer to this node's proposal on the slot: a refusal as stale
        or conflicting makes it propose again."""
        return (cid, slot) in self._awaited

    async def update(self, cid: bytes, slot: bytes, step: Callable[[MSRecord, int], tuple[MSRecord, MSProposal]]
                     ) -> MSProposal:
        """Proposes what `step` makes of the channel's record (with the time the proposal
        expires), again if the peer refuses it as stale or conflicting (the versions it burned go
        into the next one)."""
        async def attempt(rec: MSRecord) -> MSProposal:
            self.expire_due(rec)
            new, proposal = step(self.protocol.channel(cid), now_ms() + int(self.reply_time * 1000))
            await self._send(rec, new, proposal)
            return proposal
        return await self.protocol.retried(cid, attempt, lambda r: ms.slot_version(r, slot))

    async def _send(self, rec: MSRecord, new: MSRecord, proposal: MSProposal) -> None:
        ctx = self.ctx
        conn = ctx.peers.connection(rec.peer)
        key = (rec.channel_id, proposal.slot)
        acked = ctx.pending.expect(key)
        def send() -> None:
            ctx.faults.point("nano-proposed")
            for before in self.protocol.preamble(new, proposal):
                conn.send(before)
            conn.send(wire.message(proposal))
        ctx.save([new], wire.signed_states(new, proposal, proposal), then=send)
        timer = asyncio.get_running_loop().call_later(self.reply_time, self._expire, rec.channel_id, proposal)
        acked.add_done_callback(lambda _: timer.cancel())
        self._awaited.add(key)
        try:
            await Pending.wait(acked, ctx.response_timeout, lambda: errors.PeerTimeout(
                f"{rec.peer} did not countersign the {proposal.kind.value} in time; it stays pending until its "
                f"reply time ends ({self.reply_time:g} s after it was proposed) and completes if the peer "
                "countersigns it by then"))
        finally:
            self._awaited.discard(key)

    def _expire(self, cid: bytes, proposal: MSProposal) -> None:
        """The reply time of `proposal` is over: the slot is free again, and whoever waits for
        the proposal learns that it expired."""
        rec = self.protocol.records.get(cid)
        if not self.ctx.serving or rec is None or rec.pending_on(proposal.slot) != proposal:
            return
        expired = errors.ProposalExpired(
            f"{rec.peer} did not answer the {proposal.kind.value} within the reply time ({self.reply_time:g} s): "
            "it refuses it from now on, and this node proposes above its version. If the peer countersigned it "
            "in time, its answer still completes it")
        answer = self.ctx.pending.detach((cid, proposal.slot))
        self.ctx.save([ms.expire(rec, proposal.slot)], then=lambda: answer(expired))

    def expire_due(self, rec: MSRecord) -> MSRecord:
        """Expires the proposals of `rec` whose reply time is over (after a restart, say)."""
        now = now_ms()
        due = [p for p in rec.pending if p.expires and p.expires <= now]
        for proposal in due:
            rec = ms.expire(rec, proposal.slot)
        if due:
            self.ctx.save([rec])
        return rec
