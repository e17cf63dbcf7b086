"""Fault injection: the crash points a node passes, and what a test makes of them.

Production code only names its points (`faults.point("update-signed")`), at the steps where a
crash is most interesting: right after a change was committed, before what depends on it is
sent. Nothing happens there unless a hook is installed: `kill_at` stops the node as SIGKILL
would (nodes that share a process: tests, scenarios), `sigkill_at` kills the whole process (the
`perun node` command installs it when $PERUN_CRASH_AT names a point).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable

ENVIRONMENT = "PERUN_CRASH_AT"


class Killed(BaseException):
    """Unwinds the call that reached a `kill_at` point: the node is dead. A BaseException, so
    that no `except Exception` in the node carries on after its death."""


class Faults:
    """The crash points of one node. `points` are the names its protocols declare; `kill` stops
    the node at once (Runtime.kill)."""

    def __init__(self, kill: Callable[[], None]) -> None:
        self.points: set[str] = set()
        self.armed: str | None = None  # the point a hook waits for
        self._kill = kill
        self._hook: Callable[[str], None] | None = None

    def declare(self, names: Iterable[str]) -> None:
        self.points.update(names)

    def point(self, name: str) -> None:
        """Production code passes the crash point `name` here."""
        if self._hook is not None and name == self.armed:
            self._hook(name)

    def kill_at(self, name: str) -> None:
        """The node dies when it next reaches `name`: killed in this process, and the call that got
        there unwinds with Killed."""
        def hook(point: str) -> None:
            self._kill()
            raise Killed(f"killed at {point}")
        self._install(name, hook)

    def sigkill_at(self, name: str) -> None:
        """The whole process dies of SIGKILL when the node next reaches `name`: the only way to
        stop a process exactly there."""
        self._install(name, lambda point: os.kill(os.getpid(), signal.SIGKILL))

    def clear(self) -> None:
        self.armed, self._hook = None, None

    def _install(self, name: str, hook: Callable[[str], None]) -> None:
        if name not in self.points:
            raise ValueError(f"no crash point {name!r}; the points are {', '.join(sorted(self.points))}")
        self.armed, self._hook = name, hook
