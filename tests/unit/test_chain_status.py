"""ChainStatus (perun.runtime.follower): an outage of the chain's endpoint is logged once when it
starts, once a minute while it lasts, and once when it ends; callers are told how long it lasts."""

from __future__ import annotations

import logging

import pytest

from perun import errors
from perun.runtime import follower
from perun.runtime.follower import ChainStatus


def test_an_outage_is_logged_at_its_start_every_minute_and_at_its_end(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = [1000.0]
    monkeypatch.setattr(follower.time, "monotonic", lambda: clock[0])
    status = ChainStatus("alice")
    down = errors.ChainUnreachable("no JSON-RPC node answers at http://127.0.0.1:8545")
    with caplog.at_level(logging.WARNING, logger="perun.watcher"):
        status.answered()  # up, and nothing to say
        for seconds in (0, 1, 30, 59.9, 60, 61, 119, 120.5):
            clock[0] = 1000.0 + seconds
            status.failed(down)
        assert status.down
        assert str(status.refusal()) == (
            "the chain has not answered for 120 s (no JSON-RPC node answers at http://127.0.0.1:8545); the node "
            "keeps trying and catches up once it is back")
        clock[0] = 1000.0 + 125
        status.answered()
        status.answered()
    assert not status.down
    assert [r.getMessage() for r in caplog.records] == [
        "alice: the chain is unreachable (no JSON-RPC node answers at http://127.0.0.1:8545); the node keeps trying",
        "alice: the chain is still unreachable, for 1 min now",
        "alice: the chain is still unreachable, for 2 min now",
        "alice: the chain answers again after 125 s; catching up",
    ]
