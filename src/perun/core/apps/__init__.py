"""Nanocontract apps: the Python mirror of each contract in contracts/apps/.

A node checks every nanocontract update it is asked to sign by running the same transition the
contract would run on chain (`INanocontract.transition`); a differential test holds each mirror
equal to its contract on random inputs, results and errors alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

from perun import errors

ALICE = 0
BOB = 1
UINT256_MAX = 2**256 - 1


@dataclass(frozen=True)
class AppState:
    """INanocontract.AppState: what an app reads and changes of a nanocontract."""

    blocked_alice: int
    blocked_bob: int
    released_alice: int
    released_bob: int
    data: bytes  # ν.storage, in the app's own encoding

    @property
    def blocked(self) -> int:
        return self.blocked_alice + self.blocked_bob

    @property
    def terminated(self) -> bool:
        """The seed's terminated: nothing blocked any more."""
        return self.blocked == 0

    def as_abi(self) -> tuple[Any, ...]:
        return (self.blocked_alice, self.blocked_bob, self.released_alice, self.released_bob, self.data)

    def release(self, to: int, amount: int) -> AppState:
        """Everything blocked released: `amount` more to party `to` (the rest must be zero)."""
        if to == ALICE:
            return replace(self, blocked_alice=0, blocked_bob=0, released_alice=self.released_alice + amount)
        return replace(self, blocked_alice=0, blocked_bob=0, released_bob=self.released_bob + amount)


@dataclass(frozen=True)
class Context:
    """INanocontract.Context: who calls (ALICE or BOB), the time, and when the state last
    changed on chain."""

    caller: int
    time: int
    since: int = 0

    def as_abi(self) -> tuple[Any, ...]:
        return (self.caller, self.time, self.since)


class App(Protocol):
    """An app's rules. `transition` raises the errors.* class named like the contract's error."""

    name: ClassVar[str]  # the Solidity contract's name
    functions: ClassVar[dict[str, int]]  # function name -> `fun`
    # Functions without an argument that a node calls on chain on its own as soon as the app
    # allows it: a timeout's consequence, which needs no decision by the user.
    automatic: ClassVar[tuple[int, ...]]

    def transition(self, ctx: Context, fun: int, z: bytes, state: AppState) -> AppState: ...

    def at(self, chain_id: int, address: str) -> App:
        """This app as deployed at `address` on chain `chain_id`: one that checks signatures
        needs its EIP-712 domain; the others are the same everywhere."""

    def settle_by(self, state: AppState) -> int:
        """INanocontract.settleBy: until when a closing channel waits for this nanocontract."""

    def check_initial(self, state: AppState) -> None:
        """InvalidNanocontract unless `state` is one a new nanocontract of this app may hold: the
        contract accepts any storage both parties signed, so the nodes check what they sign."""


def word(data: bytes, index: int) -> int:
    """The `index`-th 32-byte word of `data` as an unsigned integer."""
    return int.from_bytes(data[32 * index : 32 * index + 32], "big")


def checked_add(a: int, b: int) -> int:
    """`a + b` as Solidity 0.8 computes it on uint256: an overflow reverts with Panic(0x11), which
    the chain layer reports as exactly this TransactionFailed, so mirrors fail like their contracts."""
    total = a + b
    if total > UINT256_MAX:
        raise errors.TransactionFailed("reverted with panic 0x11")
    return total


# The apps import the base types above, so they are imported (and registered) after them.
from perun.core.apps.hashtimelock import HashTimeLock  # noqa: E402
from perun.core.apps.tictactoe import TicTacToe  # noqa: E402
from perun.core.apps.virtualchannel import VirtualChannel  # noqa: E402

APPS: dict[str, App] = {app.name: app for app in (HashTimeLock(), TicTacToe(), VirtualChannel())}
"""Every app the nodes know, by its Solidity contract's name. VirtualChannel's is unbound: it
checks signatures only as `VirtualChannel.at(chain_id, address)`."""


def app_named(name: str) -> App:
    """The app whose contract is called `name`."""
    try:
        return APPS[name]
    except KeyError:
        raise KeyError(f"no nanocontract app named {name!r}; known: {', '.join(sorted(APPS))}") from None
