"""The `expect` step: what it checks (docs/scenarios.md, Assertions), and how each check reads
the chain, a party's records and the frames seen. Every check gives the narrator what it
expected and what it found, both as text, and holds when the two are equal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from perun.chain.payment import Event
from perun.core import multihop as mh
from perun.core.apps import virtualchannel as vc
from perun.core.channel import ETH, PaymentState
from perun.core.machine import ChannelRecord
from perun.core.msmachine import MSRecord
from perun.core.mstower import MSWatched
from perun.core.multihop import FailureCode, Part
from perun.core.multistate import NanocontractState
from perun.scenario.narrator import Narrator
from perun.scenario.spec import Step, VirtualSpec
from perun.scenario.world import World

CLOSING_EVENTS = ("Finalized", "CooperativelyClosed")
AMOUNT_ARGS = ("amount", "balanceAlice", "balanceBob", "cashAlice", "cashBob", "payoutAlice", "payoutBob",
               "blockedAlice", "blockedBob", "releasedAlice", "releasedBob")

Check = tuple[str, str, str, str]  # the field of the step it checks, what, expected, found
TOWER_WAIT = 10.0  # seconds an `expect: {tower: {T: {version: N}}}` waits for the hand-over (a client redials within 1 s)
PAYMENT_WAIT = 10.0  # seconds an `expect: {payment: ...}` waits for the preimage to travel back


class Checks:
    """Judges each `expect` step of one run."""

    def __init__(self, world: World, narrator: Narrator) -> None:
        self.world = world
        self.narrator = narrator
        self._errors_checked = 0  # error_reply looks at the replies since the last check

    def expect(self, step: Step) -> None:
        a = step.args
        channel = a.get("channel", "")  # none: the step checks nothing of a channel of its own
        gamma = self.world.scenario.virtual.get(channel)
        events = self.world.events(channel) if {"payout", "events"} & set(a) else []
        checks: list[Check] = []
        if "payout" in a and gamma is not None:
            checks += self._virtual_payout(gamma, a["payout"])
        elif "payout" in a:
            checks.append(self._payout(channel, events, a["payout"]))
        for name, change in a.get("wallets", {}).items():
            found = self.world.wallet(name) - self.world.initial[name]
            checks.append(("wallets", f"{name}'s wallet since the start, gas excluded",
                           _signed(self.world.amount, change), _signed(self.world.amount, found)))
        if "events" in a:
            checks.append(self._events(channel, events, a["events"]))
        for name, stage in a.get("stages", {}).items():
            rec = self._record(name, channel)
            checks.append(("stages", f"{name}'s stored stage of {channel}", stage,
                           rec.stage.value if rec else "no record"))
        if "state" in a and gamma is not None:
            checks += self._virtual_state(gamma, a["state"])
        elif "state" in a:
            checks += self._state(channel, a["state"])
        if "halves" in a:
            checks += self._halves(gamma, a["halves"])  # type: ignore[arg-type]
        for want in a.get("nanocontract", ()):
            checks += self._nanocontract(want)
        if "held" in a:
            what = "the contracts hold" if self.world.ms else "the contract holds"
            checks.append(("held", f"what {what}, for all channels", self.world.amount(a["held"]),
                           self.world.amount(self.world.held())))
        for name, amount in a.get("owed", {}).items():
            checks.append(("owed", f"what the contracts owe {name} (deferred payouts)", self.world.amount(amount),
                           self.world.amount(self._owed(name))))
        checks += [self._error_reply(want) for want in a.get("error_reply", ())]
        for name, want in a.get("tower", {}).items():
            checks += self._tower(name, channel, want)
        if "payment" in a:
            checks += [check for check, _ in self._payment(a["payment"])]
        self._errors_checked = len(self.narrator.errors_seen)
        for key, what, expected, got in checks:
            self.narrator.checked(step.lines.get(key, step.line), what, expected, got)

    def _owed(self, name: str) -> int:
        """What PaymentContract and MSContract owe a party in the scenario's unit (`owed`)."""
        token = ETH if self.world.token is None else self.world.token.address
        address = self.world.member(name).address
        return sum(c.owed(address, token) for c in (self.world.contract, self.world.ms) if c is not None)

    async def wait_towers(self, step: Step) -> None:
        """Before an `expect` with `tower: {T: {version: N}}` (or `nanocontracts: {NC: V}`): waits
        until each running tower T holds the channel at version N or above (a multistate channel's
        nanocontracts at V or above; a virtual channel's SETTLE with γ at N or above), or
        TOWER_WAIT seconds have passed (the check then says what it holds). A client hands its
        states over after the commit, in a later turn of its event loop, and redials a tower that
        restarted: the tower's MonitorAck or MonitorNanoAck, which it sends once the item is
        stored, is the event waited for."""
        channel = step.args.get("channel", "")
        wanted = {name: want for name, want in step.args.get("tower", {}).items()
                  if "version" in want or "nanocontracts" in want}
        if not wanted:
            return

        def behind() -> bool:
            for name, want in wanted.items():
                if not self.world.towers[name].running:
                    continue
                held = self._tower_held(name, channel)
                versions = [(held["version"], want.get("version"))] + [
                    (held["nanocontracts"].get(nc), v) for nc, v in want.get("nanocontracts", {}).items()]
                if any(target is not None and (found is None or found < target) for found, target in versions):
                    return True
            return False

        async def arrived() -> None:
            while behind():
                self.narrator.message_seen.clear()
                await self.narrator.message_seen.wait()
        try:
            await asyncio.wait_for(arrived(), TOWER_WAIT)
        except TimeoutError:
            pass  # the check says what the tower holds

    async def wait_payment(self, step: Step) -> None:
        """Before an `expect` with `payment`: waits, up to PAYMENT_WAIT seconds, while a running
        party the check names has not got there yet (it does not know the preimage, or its lock
        is not claimed yet). Both only grow, so a party that went further than named is not
        waited for. A claim back travels hop by hop behind the payer's own: each frame is the
        event waited for."""
        want = step.args.get("payment")
        if want is None:
            return

        async def arrived() -> None:
            while any(behind for _, behind in self._payment(want)):
                self.narrator.message_seen.clear()
                await self.narrator.message_seen.wait()
        try:
            await asyncio.wait_for(arrived(), PAYMENT_WAIT)
        except TimeoutError:
            pass  # the check says who got where

    def _payment(self, want: dict[str, Any]) -> list[tuple[Check, bool]]:
        """Of the invoice's payment: who knows the preimage, whose incoming lock is claimed (the
        payee's, an intermediary's), where each party's part stands, and the failure that came
        back to the payer. Each check, and whether a running party it names may still get where
        it is expected (so that wait_payment waits for it)."""
        name = want["invoice"]
        invoice = self.world.invoices.get(name)
        records = {p: party.hop(invoice.payment_hash) for p, party in self.world.parties.items()} if invoice else {}
        running = {p for p, party in self.world.parties.items() if party.running}
        result = []
        lists = {"preimage": (f"who knows the preimage of {name}", lambda rec: bool(rec.preimage)),
                 "claimed": (f"whose incoming lock of {name} is claimed",
                             lambda rec: rec.part is not Part.PAYER and rec.claimed)}
        for key, (what, holds) in lists.items():
            if key in want:
                found = [p for p, rec in records.items() if rec is not None and holds(rec)]
                behind = any(p not in found and p in running for p in want[key])
                result.append((("payment", what, ", ".join(want[key]) or "nobody", ", ".join(found) or "nobody"),
                               behind))
        for party, expected in want.get("outcome", {}).items():
            rec = records.get(party)
            outcome = mh.outcome(rec) if rec is not None else "none"
            # Pending and failing go on to settled or failed; those two are final.
            behind = outcome != expected and outcome in ("pending", "failing", "none") and party in running
            result.append((("payment", f"{party}'s part in paying {name}", expected, outcome), behind))
        if "failure" in want:
            payer = self.world.scenario.invoices[name].payer
            rec = records.get(payer)
            failed = mh.payment_failed(rec) if rec is not None else None
            if failed is None:
                shown = {"hop": "no failure yet", "code": "no failure yet"}
            else:
                shown = {"hop": "none" if failed.hop is None else self.world.name(failed.hop),
                         "code": "none" if failed.code is None else FailureCode(failed.code).name}
            for key, expected in want["failure"].items():
                what = {"hop": f"the hop whose failure of {name} came back to {payer}",
                        "code": f"the failure of {name} that came back to {payer}"}[key]
                result.append((("payment", what, expected, shown[key]), failed is None and payer in running))
        return result

    def _tower_held(self, name: str, channel: str) -> dict[str, Any]:
        """What a tower holds of a channel: `version` (None: nothing), `stage`, `refuted`,
        `reward_paid`, `nanocontracts` (name -> version of the state held). Of a virtual channel:
        `version` the lowest γ version of the SETTLEs it holds for its halves (`versions` each
        half's), `reward_paid` what it was paid for them."""
        tower = self.world.towers[name]
        gamma = self.world.scenario.virtual.get(channel)
        if gamma is not None:
            versions: dict[str, int] = {}
            paid = 0
            for ledger in gamma.ledgers:
                nid, cid = self.world.nids.get(f"{gamma.name}@{ledger}"), self.world.cids.get(ledger)
                rec = tower.record(cid) if nid and cid else None
                if not isinstance(rec, MSWatched):
                    continue
                if (call := rec.call(nid)) is not None:  # type: ignore[arg-type]
                    versions[ledger] = call.version
                paid += sum(amount for n, amount in rec.rewards_paid if n == nid)
            return {"version": min(versions.values(), default=None), "versions": versions, "reward_paid": paid}
        cid = self.world.cids.get(channel)
        rec = tower.record(cid) if cid else None
        held: dict[str, Any] = {"version": None, "stage": "none", "refuted": None, "reward_paid": 0,
                                "nanocontracts": {}}
        if rec is None:
            return held
        held |= {"version": rec.version, "refuted": rec.refuted, "reward_paid": rec.reward_paid or 0,
                 "stage": "closed" if rec.closed else "watching" if rec.registered is None else "closing"}
        if isinstance(rec, MSWatched):
            held["nanocontracts"] = {self.world.nano_name(n.nid): n.state.version for n in rec.nanos}
        return held

    def _tower(self, name: str, channel: str, want: dict[str, Any]) -> list[Check]:
        """A tower's record of the channel: the version it holds, its stage, the version it
        registered, the reward it was paid; the version of each nanocontract's state it holds; of a
        virtual channel, the γ version of the SETTLE it holds."""
        held = self._tower_held(name, channel)
        whose = f"{name}'s record of {channel}"
        checks: list[Check] = []
        if "version" in want:
            found = "none" if held["version"] is None else str(held["version"])
            if channel in self.world.scenario.virtual:
                versions = held["versions"]
                if len(set(versions.values())) > 1:
                    found = ", ".join(f"in {ledger}: {v}" for ledger, v in versions.items())
                checks.append(("tower", f"{whose}: γ version of the SETTLE it holds", str(want["version"]), found))
            else:
                checks.append(("tower", f"{whose}: version held", str(want["version"]), found))
        if "stage" in want:
            checks.append(("tower", f"{whose}: stage", want["stage"], held["stage"]))
        if "refuted" in want:
            checks.append(("tower", f"{whose}: version it registered", str(want["refuted"]),
                           "none" if held["refuted"] is None else str(held["refuted"])))
        for nc, version in want.get("nanocontracts", {}).items():
            found = held["nanocontracts"].get(nc)
            checks.append(("tower", f"{whose}: version of {nc} held", str(version),
                           "none" if found is None else str(found)))
        if "reward_paid" in want:
            checks.append(("tower", f"{whose}: reward paid to it", self.world.amount(want["reward_paid"]),
                           self.world.amount(held["reward_paid"])))
        return checks

    def _record(self, party: str, channel: str) -> ChannelRecord | MSRecord | None:
        """The party's record of a channel; None before it is open."""
        cid = self.world.cids.get(channel)
        return self.world.parties[party].record(cid) if cid else None

    # ------------------------------------------------------------------ payment and multistate channels

    def _payout(self, channel: str, events: list[Event], want: tuple[int, int]) -> Check:
        """What the closing paid out, or the refund of Alice's deposit."""
        spec = self.world.scenario.channels[channel]
        amounts = self.world.amounts
        closing = [e for e in events if e.name in CLOSING_EVENTS]
        paid = [(e.args["payoutAlice"], e.args["payoutBob"]) if "payoutAlice" in e.args
                else (e.args["balanceAlice"], e.args["balanceBob"]) for e in closing]
        found = amounts(*paid[-1]) if paid else "no payout yet"
        refunded = [e for e in events if e.name == "Refunded"]
        if refunded and not closing:  # Alice's deposit back, nothing to Bob
            found = amounts(refunded[-1].args["amount"], 0)
        return "payout", f"payout of {channel} ({spec.alice} / {spec.bob})", amounts(*want), found

    def _events(self, channel: str, events: list[Event], want: list[tuple[str, dict[str, Any]]]) -> Check:
        """The channel's events in order, each with the arguments the pattern names."""
        expected = ", ".join(self._event_shown(n, args, args) for n, args in want)
        patterns = [args for _, args in want]
        found = ", ".join(
            self._event_shown(e.name, e.args, patterns[i] if i < len(patterns)
                              else {"nid": 0, "fun": 0, "version": 0, "amount": 0})
            for i, e in enumerate(events))
        ok = len(events) == len(want) and all(
            e.name == n and all(self._arg_matches(e.args.get(k), v, k, e) for k, v in args.items())
            for e, (n, args) in zip(events, want))
        return "events", f"events of {channel}", expected, found if not ok else expected

    def _event_shown(self, name: str, args: dict[str, Any], keys: dict[str, Any]) -> str:
        """`name(k=v, ...)` for the keys a pattern names: amounts in the unit, addresses as names,
        nids as nanocontract names, `fun` as the function's name."""
        def show(key: str, value: Any) -> str:
            if key in AMOUNT_ARGS and isinstance(value, int) and not isinstance(value, bool):
                return self.world.amount(value)
            if key == "nid" and isinstance(value, bytes):
                return self.world.nano_name(value)
            if key == "fun" and isinstance(value, int) and isinstance(args.get("nid"), bytes):
                return self.world.fun_name(args["nid"], value)
            return self.world.name(value) if isinstance(value, str) and value.startswith("0x") else str(value)
        shown = [f"{k}={show(k, args[k])}" for k in keys if k in args]
        return name + (f"({', '.join(shown)})" if shown else "")

    def _arg_matches(self, found: Any, expected: Any, key: str = "", event: Event | None = None) -> bool:
        """An event's argument against a pattern's, which may name a party, a nanocontract or a
        function."""
        if isinstance(expected, str) and (expected in self.world.parties or expected in self.world.towers):
            expected = self.world.member(expected).address
        elif isinstance(expected, str) and expected in self.world.nids:
            expected = self.world.nids[expected]
        elif key == "fun" and isinstance(expected, str) and event is not None and "nid" in event.args:
            app = self.world.app_of(event.args["nid"])
            expected = app.functions.get(expected, expected) if app else expected
        if isinstance(found, str) and isinstance(expected, str):
            return found.lower() == expected.lower()
        return found == expected

    def _state(self, channel: str, want: dict[str, Any]) -> list[Check]:
        """A party's latest state of the channel: its version and balances; for a multistate
        channel its cash and the nanocontracts it lists."""
        party = want["party"]
        rec = self._record(party, channel)
        found: dict[str, str] = dict.fromkeys(("version", "balances", "nanocontracts"), "no record")
        if isinstance(rec, MSRecord):
            state = rec.state
            found = {"version": str(state.version), "balances": self.world.amounts(state.cash_alice, state.cash_bob),
                     "nanocontracts": ", ".join(sorted(self.world.nano_name(f.nid) for f in state.nanocontracts))
                     or "none"}
        elif rec is not None:
            current = rec.current
            found |= {"version": str(current.version),
                      "balances": self.world.amounts(current.balance_alice, current.balance_bob)}
        cash = "cash" if self.world.is_multistate(channel) else "balances"
        checks = []
        if "version" in want:
            checks.append(("state", f"{party}'s stored version of {channel}", str(want["version"]), found["version"]))
        if "balances" in want:
            checks.append(("state", f"{party}'s stored {cash} of {channel}", self.world.amounts(*want["balances"]),
                           found["balances"]))
        if "nanocontracts" in want:
            checks.append(("state", f"nanocontracts in {party}'s latest state of {channel}",
                           ", ".join(sorted(want["nanocontracts"])) or "none", found["nanocontracts"]))
        return checks

    def _nanocontract(self, want: dict[str, Any]) -> list[Check]:
        """A nanocontract as `party` holds it (its latest version both signed), or as the chain
        holds it (its registered state, after any execution)."""
        name = want["name"]
        spec = self.world.scenario.nanocontracts[name]
        cid, nid = self.world.cids.get(spec.channel), self.world.nids.get(name)
        state: NanocontractState | None = None
        if "party" in want:
            whose, missing = f"{want['party']}'s {name}", "none (never created, or absorbed)"
            rec = self.world.parties[want["party"]].record(cid) if cid and nid else None
            held = [s for s in rec.nanocontracts if s.state.nid == nid] if isinstance(rec, MSRecord) else []
            state = held[0].state if held else None
        else:
            whose, missing = f"{name} on chain", "not registered"
            if cid and nid:
                onchain = self.world.ms.nanocontract(cid, nid)  # type: ignore[union-attr]
                state = onchain.state(cid, nid) if onchain.registered else None
        checks = []
        if "version" in want:
            checks.append(("nanocontract", f"{whose}: version", str(want["version"]),
                           str(state.version) if state else missing))
        for key in ("blocked", "released"):
            if key in want:
                found = missing
                if state is not None:
                    found = self.world.amounts(getattr(state, f"{key}_alice"), getattr(state, f"{key}_bob"))
                channel = self.world.scenario.channels[spec.channel]
                checks.append(("nanocontract", f"{whose}: {key} ({channel.alice} / {channel.bob})",
                               self.world.amounts(*want[key]), found))
        if "terminated" in want:
            checks.append(("nanocontract", f"{whose}: terminated", str(want["terminated"]).lower(),
                           str(state.terminated).lower() if state else missing))
        return checks

    def _error_reply(self, want: dict[str, str]) -> Check:
        """The party refused a message with this code since the last check."""
        seen = self.narrator.errors_seen[self._errors_checked:]
        codes = [code for sender, _, code in seen if sender == want["from"]]
        return ("error_reply", f"{want['from']} refused a message with {want['code']}", want["code"],
                want["code"] if want["code"] in codes else (", ".join(codes) or "no error reply"))

    # ------------------------------------------------------------------ virtual channels

    def _virtual_payout(self, gamma: VirtualSpec, want: dict[str, int]) -> list[Check]:
        """What γ's ledger channels paid each party (Ingrid: both), from their Finalized or
        CooperativelyClosed events."""
        events = self.world.ms.events()  # type: ignore[union-attr]
        paid: dict[str, int] = {}
        closed = 0
        for ledger in gamma.ledgers:
            cid = self.world.cids.get(ledger)
            closing = [e for e in events if e.name in CLOSING_EVENTS and e.args["channelId"] == cid]
            if closing:
                closed += 1
                channel = self.world.scenario.channels[ledger]
                for party, key in ((channel.alice, "payoutAlice"), (channel.bob, "payoutBob")):
                    paid[party] = paid.get(party, 0) + closing[-1].args[key]
        what = f"payout of {' and '.join(gamma.ledgers)} to"
        return [("payout", f"{what} {party}", self.world.amount(amount),
                 self.world.amount(paid[party]) if closed == len(gamma.ledgers) else "no payout yet")
                for party, amount in want.items()]

    def _virtual_state(self, gamma: VirtualSpec, want: dict[str, Any]) -> list[Check]:
        """γ as a party holds it: an end's latest state signed by both; Ingrid's highest of those
        she has seen (given for the fast close, or read from a SETTLE), else the opening state."""
        party = self.world.parties[want["party"]]
        gid = self.world.gids.get(gamma.name, b"")
        rec = party.virtual_record(gid)
        whose = f"{party.name}'s {gamma.name}"
        found: dict[str, str] = dict.fromkeys(("version", "balances", "final", "settled"), "no record")
        if rec is not None:
            if rec.channel is not None:
                state = rec.channel.current
            else:
                state = max((s.state for s in rec.seen), key=lambda s: s.version,
                            default=PaymentState(rec.id, 0, gamma.deposits[0], gamma.deposits[1]))
            settled = party.virtual_settled(gid)
            found = {"version": str(state.version),
                     "balances": self.world.amounts(state.balance_alice, state.balance_bob),
                     "final": str(rec.final is not None).lower(),
                     # the node's own view: each of its halves settled off chain or on chain
                     "settled": "node not running" if settled is None else str(settled).lower()}
        checks = []
        if "version" in want:
            checks.append(("state", f"{whose}: version", str(want["version"]), found["version"]))
        if "balances" in want:
            checks.append(("state", f"{whose}: balances ({gamma.alice} / {gamma.bob})",
                           self.world.amounts(*want["balances"]), found["balances"]))
        for key in ("final", "settled"):
            if key in want:
                checks.append(("state", f"{whose}: {key}", str(want[key]).lower(), found[key]))
        return checks

    def _halves(self, gamma: VirtualSpec, want: dict[str, dict[str, Any]]) -> list[Check]:
        """γ's halves as MSContract holds them: registered, the γ state stored, settled (nothing
        blocked any more)."""
        checks = []
        for ledger, half in want.items():
            nid = self.world.nids.get(f"{gamma.name}@{ledger}")
            cids = self.world.cids
            onchain = self.world.ms.nanocontract(cids[ledger], nid) if nid else None  # type: ignore[union-attr]
            registered = onchain is not None and onchain.registered
            stored = vc.decode(onchain.storage) if registered else None  # type: ignore[union-attr]
            whose = f"{gamma.name}'s half in {ledger} on chain"
            if "registered" in half:
                checks.append(("halves", f"{whose}: registered", str(half["registered"]).lower(),
                               str(registered).lower()))
            if "version" in half:
                checks.append(("halves", f"{whose}: version", str(half["version"]),
                               str(stored.version) if stored else "not registered"))
            if "balances" in half:
                checks.append(("halves", f"{whose}: balances ({gamma.alice} / {gamma.bob})",
                               self.world.amounts(*half["balances"]),
                               self.world.amounts(stored.balance_alice, stored.balance_bob)
                               if stored else "not registered"))
            if "settled" in half:
                settled = onchain.state(cids[ledger], nid).terminated if registered else None  # type: ignore
                checks.append(("halves", f"{whose}: settled", str(half["settled"]).lower(),
                               "not registered" if settled is None else str(settled).lower()))
        return checks


def _signed(fmt: Callable[[int], str], amount: int) -> str:
    return ("+" if amount > 0 else "-" if amount < 0 else "") + fmt(abs(amount))
