"""What a node does on chain for its multistate channels (perun.core.msmachine.duties): the
opening's transactions, a stale close disputed, nanocontracts registered and executed, the
channel finalized.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from perun import errors
from perun.core import msmachine as ms
from perun.core.apps import Context
from perun.core.msmachine import MSRecord
from perun.runtime import Duty

if TYPE_CHECKING:
    from perun.protocols.multistate.protocol import Multistate

log = logging.getLogger("perun.node")


class Duties:
    def __init__(self, protocol: Multistate) -> None:
        self.protocol = protocol
        self._idle: dict[tuple[bytes, bytes], tuple] = {}  # (channel, nid) -> what `execute_due` found nothing for

    def due(self, now: int) -> Iterator[Duty]:
        records = self.protocol.records
        for cid in self.protocol.due_index.due(now):
            rec = records[cid]
            for due, nid in ms.duties(rec, now):
                yield self._duty(rec, due, nid)

    def _duty(self, rec: MSRecord, due: ms.Duty, nid: bytes) -> Duty:
        p, cid = self.protocol, rec.channel_id
        if due is ms.Duty.DISPUTE:
            async def dispute() -> None:
                log.warning("%s: stale close of 0x%s (version %s); submitting version %s", p.ctx.name, cid.hex()[:12],
                            rec.registered_version, rec.state.version)
                await p.register_close(cid)
            return Duty(due.value, cid, dispute, deadline=rec.deadline)
        if due is ms.Duty.CLOSE:
            return Duty(due.value, cid, lambda: p.register_close(cid))
        if due is ms.Duty.REGISTER:
            async def register() -> None:
                log.warning("%s: nanocontract 0x%s: registering version %s", p.ctx.name, nid.hex()[:12],
                            rec.nanocontract(nid).state.version)
                await p.register(cid, nid)
            return Duty(due.value, cid, register)
        if due is ms.Duty.EXECUTE:
            return Duty(due.value, cid, lambda: self.execute_due(cid, nid))
        if due is ms.Duty.FINALIZE:
            return Duty(due.value, cid, lambda: p.finalize(cid, rec.registered_fundings))
        if due is ms.Duty.COOPERATIVE_CLOSE:
            return Duty(due.value, cid, lambda: p.cooperative_close_on_chain(cid))
        duty = p.opening_duties(rec, due.value)
        assert duty is not None, due
        return duty

    async def execute_due(self, cid: bytes, nid: bytes) -> None:
        """Executes what this party intends for `nid`, else what an app's protocol submits, else an
        automatic function, if the app allows it now: the mirror runs on the chain's state first,
        so nothing is sent in vain."""
        p = self.protocol
        ctx, rec = p.ctx, p.channel(cid)
        # What may be executed changes only with a new block, an intent, or what an app's
        # protocol submits: until then a look that found nothing is not repeated.
        inputs = (ctx.follower.head, tuple(i for i in rec.intents if i.nid == nid),
                  tuple(h.inputs(nid) for h in p.hooks))
        if self._idle.get((cid, nid)) == inputs:
            return
        registered = await ctx.on_chain(p.contract.nanocontract, cid, nid)
        app = p.app_of(registered.app)
        state = registered.state(cid, nid).app_state()
        now = await ctx.on_chain(ctx.chain.timestamp)
        ctx_app = Context(int(rec.role), now + 1, registered.since)
        wanted: list[tuple[int, bytes]] = [(i.fun, i.z) for i in rec.intents if i.nid == nid]
        for hooks in p.hooks:
            wanted += await hooks.submissions(rec, nid, registered, ctx_app.time)
        wanted += [(fun, b"") for fun in app.automatic]
        for fun, z in wanted:
            try:
                app.transition(ctx_app, fun, z, state)
            except errors.PerunError:
                continue
            log.info("%s: nanocontract 0x%s: executing %s on chain", ctx.name, nid.hex()[:12],
                     next((n for n, f in app.functions.items() if f == fun), fun))
            await p.execute(cid, nid, fun, z)
            return
        self._idle[(cid, nid)] = inputs
