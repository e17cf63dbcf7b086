"""What a node waits for from its peers (perun.runtime.pending.Pending)."""

from __future__ import annotations

import asyncio

from perun.runtime.pending import Pending


def test_an_answer_detached_before_its_commit_completes_only_the_proposal_it_answers():
    """A multistate answer is staged, and completes its proposal once committed; a proposal made
    on the same slot in between (the slot is free in memory at once) waits for its own answer."""
    async def scenario():
        pending = Pending()
        old = pending.expect((b"c", b"slot"))
        answer = pending.detach((b"c", b"slot"))
        new = pending.expect((b"c", b"slot"))
        assert new is not old
        answer("acked")
        assert old.result() == "acked" and not new.done()
        pending.detach((b"c", b"other"))(ValueError("nobody waits: nothing happens"))
    asyncio.run(scenario())
