"""What the steps do around the nodes, which never see it happen: the network's faults (`drop`,
`delay`, `hold` and `release`, `garble`, `replay`, `forge`), played by the relays of
perun.scenario.network, and the chain's time (`wait`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from perun import errors
from perun.scenario.narrator import Narrator
from perun.scenario.network import Network, Rule
from perun.scenario.party import RESPONSE_TIMEOUT
from perun.scenario.world import World


class Environment:
    """Plays the network and the chain's clock for one run."""

    def __init__(self, world: World, narrator: Narrator, network: Network) -> None:
        self.world = world
        self.narrator = narrator
        self.network = network

    # ------------------------------------------------------------------ the network

    def fault(self, action: str, sender: str, message: str, count: int, seconds: float) -> None:
        """The relay drops or delays the sender's next `count` frames of a type."""
        self.network.add_rule(Rule(sender, message, action, count, seconds))

    async def release(self, sender: str) -> None:
        """The frames `hold` kept back from the sender go on, in order, as a slow link delivers
        them at last."""
        count = await self.network.release(sender)
        self.narrator.note(None, f"the network delivers {count} frame{'s' * (count != 1)} held back from {sender}")

    async def replay(self, sender: str, message: str) -> None:
        await self._await_reply(self.network.replay(sender, message))

    async def forge(self, sender: str, channel: str, amount: int, signer: str | None) -> None:
        """An Update that moves `amount` more, with the old signature or one by `signer`."""
        key = self.world.parties[signer].account.key if signer else None
        await self._await_reply(self.network.forge(sender, self.world.cid(channel), amount,
                                                   self.world.contract.domain, key))

    async def _await_reply(self, receiver: str) -> None:
        """Waits for the receiver of an injected frame to refuse it (an Error from it)."""
        seen = len(self.narrator.errors_seen)
        while not any(sender == receiver for sender, _, _ in self.narrator.errors_seen[seen:]):
            self.narrator.message_seen.clear()
            await asyncio.wait_for(self.narrator.message_seen.wait(), RESPONSE_TIMEOUT)

    # ------------------------------------------------------------------ time

    def wait(self, a: dict[str, Any]) -> None:
        """Moves the chain's time by seconds or blocks, or to a deadline plus an offset: a block
        at that time, or with `next` the next block's time (the next transaction is mined at
        exactly it, on any chain; the embedded chain mines a block a second before)."""
        chain = self.world.chain
        if "seconds" in a:
            chain.advance_time(a["seconds"])
        elif "blocks" in a:
            chain.mine(a["blocks"])
        else:
            if "deadline" in a:
                deadline = self.world.contract_of(a["deadline"]).channel(self.world.cid(a["deadline"])).deadline
            elif "validity" in a:
                self.world.cid(a["validity"])  # WrongStage until it is open
                deadline = self.world.validity[a["validity"]]
            else:
                deadline = self._nanocontract_time(a.get("window") or a["timeout"], "window" in a)
            target = deadline + a.get("offset", 0)
            now = chain.timestamp()
            if target <= now:
                raise errors.WrongStage(f"the chain's time {now} is already past {target}")
            chain.set_next_block_timestamp(target)
            if chain.timestamp() != target and not a.get("next", False):
                chain.mine()
        self.narrator.note(None, f"chain time {chain.timestamp()}, block {chain.block_number()}")

    def _nanocontract_time(self, name: str, window: bool) -> int:
        """The end of a registered nanocontract's window; or the time after which it may time
        out: a lock's timeout, a game's move deadline on chain (since its last change)."""
        spec = self.world.scenario.nanocontracts[name]
        if not window and spec.app == "HashTimeLock":
            if name not in self.world.lock_timeouts:
                raise errors.WrongStage(f"{name} was never created")
            return self.world.lock_timeouts[name]
        onchain = self.world.ms.nanocontract(self.world.cid(spec.channel),  # type: ignore[union-attr]
                                             self.world.nids.get(name, bytes(32)))
        if not onchain.registered:
            what = "window" if window else "move clock (it runs on chain only)"
            raise errors.WrongStage(f"{name} is not registered on chain: it has no {what}")
        return onchain.window_end if window else onchain.since + spec.move_timeout
