"""What a node waits for from its peers: one future per (channel, slot).

A slot names what is awaited on the channel: a payment's version, a multistate slot (the
channel state or a nanocontract), the acceptance of a proposed channel, Ingrid's answer to a
fast close. The protocol that sent the message resolves the future when the answer is durable;
a killed node fails them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any, Protocol

Key = tuple[bytes, Hashable]


class Completion(Protocol):
    """Completes a detached future with `outcome` (raised if it is an exception)."""

    def __call__(self, outcome: Any = None) -> None: ...


class Pending:
    def __init__(self) -> None:
        self._futures: dict[Key, asyncio.Future] = {}

    def expect(self, key: Key) -> asyncio.Future:
        """The future of `key`, made on first use (a second caller waits for the same answer)."""
        future = self._futures.get(key)
        if future is None:
            future = self._futures[key] = asyncio.get_running_loop().create_future()
        return future

    def resolve(self, key: Key, outcome: Any = None) -> None:
        """Completes `key` with `outcome`, raised if it is an exception."""
        _complete(self._futures.pop(key, None), outcome)

    def detach(self, key: Key) -> Completion:
        """Takes the future of `key` out now, and returns what completes it later (after a
        commit): a proposal made meanwhile on the same key (a multistate slot) gets a future of
        its own, which this answer does not complete."""
        future = self._futures.pop(key, None)

        def complete(outcome: Any = None) -> None:
            _complete(future, outcome)
        return complete

    def discard(self, key: Key) -> None:
        self._futures.pop(key, None)

    @staticmethod
    async def wait(future: asyncio.Future, timeout: float, timed_out: Callable[[], Exception]) -> Any:
        """The outcome of `future` (from `expect`); `timed_out()` is raised after `timeout`
        seconds. The future stays: an answer that comes later still completes what it answers.

        One waiter future and one timer, not wait_for(shield()): the answer wakes the caller
        two turns of the event loop after it came, before a commit staged with it
        (Runtime.save(behind=True)) runs."""
        if not future.done():
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()

            def wake(_: object = None) -> None:
                if not waiter.done():
                    waiter.set_result(None)
            future.add_done_callback(wake)
            timer = loop.call_later(timeout, wake)
            try:
                await waiter
            finally:
                timer.cancel()
                future.remove_done_callback(wake)
            if not future.done():
                raise timed_out()
        return future.result()

    def fail_all(self, exc: BaseException) -> None:
        for future in self._futures.values():
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: nobody may be waiting
        self._futures.clear()


def _complete(future: asyncio.Future | None, outcome: Any) -> None:
    if future is None or future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
        future.exception()  # retrieved: the caller may have stopped waiting
    else:
        future.set_result(outcome)
