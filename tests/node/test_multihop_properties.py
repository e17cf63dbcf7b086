"""A property test of multi-hop payments through the nodes' own code (docs/protocol.md §13), in
one process on the embedded chain. A route of 2 to 5 hops (a line of 3 to 6 nodes with
multistate channels, each intermediary forwarding for a random fee), a random amount, and one
random trouble:

- none;
- a silent hop before the preimage: an intermediary takes its incoming lock and never forwards,
  then stops (its sender reclaims on chain after the lock's timeout) or turns deaf, dropping
  every multistate message (its watcher gives the forward up, TOO_LATE, and cancels upstream);
- a silent hop after the preimage: an intermediary countersigns no call and never claims: the
  next hop claims on chain, and the one before reclaims on chain after its lock's timeout;
- a payee that never reveals: it stops before claiming (its lock reclaimed on chain) or stays
  online and withholds (reclaimed off chain);
- a crash of any node (the payer, an intermediary, the payee) at a crash point of its
  nanocontract updates (the first it passes) or at a moment of the payment (before forwarding,
  before claiming), and a restart from its store: the payment ends paid, off chain but in one
  known case (`_check`).

The chain's time goes past the locks' timeouts where the trouble needs it, until every lock has
ended claimed, cancelled or reclaimed. Then, from what each node holds in its channels (cash,
and what each lock released to it: on chain if it was executed there, else off chain):

- funds are conserved in every channel, no lock is live, and both ends of a channel that are
  online and honest hold the same view of it;
- the payer pays the amount plus the fees if it learnt the preimage, else nothing;
- the payee gets the amount if and only if it claimed its lock (revealed the preimage);
- an honest intermediary ends with exactly its fee if it learnt the preimage, else whole.

Honest: every node but the silent hop. A silent hop before the preimage ends whole (it never
paid downstream); one after the preimage loses what it forwarded, and the hops before it are
whole, not paid, as is the payer: the preimage never reached them. A crashed node is honest: it
is back before any of its deadlines, as the protocol assumes of an honest node (a node away past
its deadlines is a stopped one, the silent troubles). The payer and the payee are never the
silent hop: a silent payer pays nobody, and a silent payee is the one that never reveals. One
trouble per payment: the steps that drive the chain's time know where each lock ends.

PERUN_MULTIHOP_EXAMPLES sets the number of examples of each trouble (by default 3, and 30 in the long
Hypothesis profile, `make test-long`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from perun import errors
from perun.chain.backend import ETHER
from perun.core import multihop as mh
from perun.core.apps import hashtimelock as htlc
from perun.core.msmachine import MSRecord
from perun.core.multihop import FailureCode, Release
from perun.core.route import Route, hop_delay
from perun.node import Node
from perun.protocols.multihop import ForwardPolicy
from perun.wire import messages as m
from tests.conftest import examples
from tests.node.conftest import DELTA, Net, run
from tests.node.test_multihop import keys_of, line, route_over
from tests.node.test_multihop_recovery import dropped
from tests.node.test_multihop_timeouts import latest_block_at, stopped, withholding

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]
DEPOSIT = 10 * ETHER  # each side of each channel of `line`
EXAMPLES = int(os.environ.get("PERUN_MULTIHOP_EXAMPLES", examples(3)))  # of each trouble
CRASH_POINTS = ("nano-received", "nano-countersigned", "nano-proposed", "nano-acked")  # each passed by every node
TROUBLES = ("none", "silent-before", "silent-after", "payee-withholds", "crash")


@dataclass(frozen=True)
class Example:
    policies: tuple[ForwardPolicy, ...]  # the intermediaries', in route order
    amount: int
    trouble: str
    node: int = 0  # the node in trouble: its place on the line, 0 the payer
    how: str = ""  # the trouble's variant: a crash's point or moment

    @property
    def hops(self) -> int:
        return len(self.policies) + 1


@st.composite
def examples(draw, trouble: str) -> Example:
    hops = draw(st.integers(2, 5))
    node, how = 0, ""
    if trouble in ("silent-before", "silent-after"):
        node = draw(st.integers(1, hops - 1))  # an intermediary
        how = draw(st.sampled_from(["stopped", "deaf"])) if trouble == "silent-before" else ""
    elif trouble == "payee-withholds":
        node, how = hops, draw(st.sampled_from(["stopped", "online"]))
    elif trouble == "crash":  # any node, at a crash point or a moment its part passes
        node = draw(st.integers(0, hops))
        how = draw(st.sampled_from([*CRASH_POINTS, *(["before-forward"] if 0 < node < hops else []),
                                    *(["before-claim"] if node > 0 else [])]))
    policies = tuple(ForwardPolicy(draw(st.integers(0, 10**15)), draw(st.integers(0, 100_000)))
                     for _ in range(hops - 1))
    amount = draw(st.integers(1, 3 * ETHER))  # with the fees, within a channel's 10 ether
    return Example(policies, amount, trouble, node, how)


# One run of examples per trouble, so that each is tried in every run.
@pytest.mark.parametrize("trouble", TROUBLES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_honest_hops_end_whole_or_with_their_fee_and_the_payer_pays_only_for_the_preimage(
        embedded_world, embedded_ms_world, trouble, data):
    ex = data.draw(examples(trouble))
    chain = embedded_world.chain
    snapshot = chain.snapshot()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            net = Net(chain, embedded_world.contract, Path(tmp), embedded_ms_world)
            run(_play(net, ex), timeout=120)
    finally:
        chain.revert_to(snapshot)


@dataclass
class Play:
    net: Net
    ex: Example
    nodes: list[Node]  # by place on the line; a restarted node replaces its old self
    channels: list[bytes]  # channels[j] between nodes[j] (its Alice) and nodes[j + 1]
    route: Route
    h: bytes  # the payment hash
    pay: Callable[[], asyncio.Task]
    stack: contextlib.AsyncExitStack
    away: set[int] = field(default_factory=set)  # nodes whose view no longer counts: stopped, deaf


async def _play(net: Net, ex: Example) -> None:
    names = NAMES[:ex.hops + 1]
    async with contextlib.AsyncExitStack() as stack:
        nodes, channels = await stack.enter_async_context(line(net, names, dict(zip(names[1:-1], ex.policies))))
        payer, payee = nodes[0], nodes[-1]
        invoice = await payee.invoice(ex.amount, net.chain.timestamp() + 7200)
        route = route_over(net, nodes, channels, ex.amount)
        fees = [p.base_fee + route.hops[j + 1].amount * p.fee_ppm // 10**6 for j, p in enumerate(ex.policies)]
        assert list(route.fees) == fees and route.hops[0].amount == ex.amount + sum(fees)
        keys = keys_of(net, nodes[1:])

        def pay() -> asyncio.Task:
            return asyncio.create_task(payer.multihop.pay_route(route, invoice, keys, timeout=60))
        play = Play(net, ex, list(nodes), list(channels), route, invoice.payment_hash, pay, stack)
        event(f"hops: {ex.hops}")
        if ex.trouble == "crash":
            part = "payer" if ex.node == 0 else "payee" if ex.node == ex.hops else "intermediary"
            event(f"crash of the {part} at {ex.how}")
        elif ex.how:
            event(ex.how)
        paying = await TROUBLE[ex.trouble](play)
        await _check(play, paying, fees)


# ---------------------------------------------------------------------- troubles


async def _none(p: Play) -> asyncio.Task:
    return p.pay()


@contextlib.contextmanager
def impatient(node: Node) -> Iterator[None]:
    """`node`'s proposals expire after half a second unanswered (a mute peer's), while inside."""
    reply_time = node.multistate.proposer.reply_time
    node.multistate.proposer.reply_time = 0.5
    try:
        yield
    finally:
        node.multistate.proposer.reply_time = reply_time


async def _silent_before(p: Play) -> asyncio.Task:
    i = p.ex.node
    paying = await _held(p, i, "forward")
    if p.ex.how == "stopped":
        await _gone(p, i)
    else:
        node = p.nodes[i]
        p.away.add(i)
        p.stack.enter_context(dropped(node, m.Message))
        # Its watcher gives the forward up as too late, and cancels its incoming lock upstream.
        latest_block_at(p.net, p.route.hops[i].timeout - hop_delay(DELTA, node.multihop.margin) + 1)
        await node.sync()
    return paying


async def _silent_after(p: Play) -> asyncio.Task:
    i = p.ex.node
    node, receiver = p.nodes[i], p.nodes[i + 1]
    withholding(node)
    p.stack.enter_context(dropped(node, m.NanocontractCall))
    with impatient(receiver):  # its claim expires unanswered: it registers the lock to CLAIM it on chain
        paying = p.pay()
        await p.nodes[-1].wait_for(p.h, lambda r: r.incoming is not None)  # so every hop holds its record
        nid = receiver.multihop.records[p.h].incoming.nid
        await receiver.wait_for(p.channels[i], lambda r: r.registered(nid) is not None and r.intents != ())
    p.net.chain.advance_time(DELTA + 1)
    await receiver.sync()
    await receiver.wait_for(p.h, lambda r: r.claimed)
    await node.sync()
    await node.wait_for(p.h, lambda r: bool(r.preimage))  # read from the CLAIM on chain; it withholds
    await _reclaimed_on_chain(p, i - 1, mute=True)
    return paying


async def _payee_withholds(p: Play) -> asyncio.Task:
    k = p.ex.hops
    paying = await _held(p, k, "claim")
    if p.ex.how == "stopped":
        await _gone(p, k)
    else:
        latest_block_at(p.net, p.route.hops[k - 1].timeout + 1)
        await p.nodes[k - 1].sync()  # reclaims off chain: the payee's node countersigns
    return paying


async def _held(p: Play, j: int, what: str) -> asyncio.Task:
    """Pays, nodes[j]'s multi-hop `what` (forward, claim) doing nothing; returns the payment once
    nodes[j] got there and its incoming lock is signed by both."""
    reached = asyncio.Event()

    async def hold(payment_hash: bytes, preimage: bytes = b"") -> None:
        reached.set()
    setattr(p.nodes[j].multihop, what, hold)
    paying = p.pay()
    await reached.wait()
    await p.nodes[j - 1].wait_for(p.h, lambda r: bool(r.outgoing.nid))
    return paying


async def _gone(p: Play, j: int) -> None:
    """nodes[j] stops for good: its sender reclaims its lock on chain."""
    p.away.add(j)
    await p.nodes[j].stop()
    await _reclaimed_on_chain(p, j - 1)


async def _crash(p: Play) -> asyncio.Task | None:
    j, how = p.ex.node, p.ex.how
    node = p.nodes[j]
    died = asyncio.Event()
    if how in CRASH_POINTS:
        node.on_kill = lambda n: died.set()
        node.faults.kill_at(how)
    else:
        async def die(payment_hash: bytes, preimage: bytes = b"") -> None:
            node.kill()
            died.set()
        setattr(node.multihop, "forward" if how == "before-forward" else "claim", die)
    paying: asyncio.Task | None = p.pay()
    await died.wait()
    if j == 0:  # its payment died with it (NodeKilled, or waiting still): the record tells how it ends
        paying.cancel()
        with contextlib.suppress(errors.NodeKilled, asyncio.CancelledError):
            await paying
        paying = None
    policy = p.ex.policies[j - 1] if 0 < j < p.ex.hops else None
    (back,) = await p.stack.enter_async_context(p.net.running(NAMES[j], forward=policy))
    p.nodes[j] = back
    if j > 0:
        await p.nodes[j - 1].connect(back.address, "127.0.0.1", back.port)
    if j < p.ex.hops:
        await back.wait_connected(p.nodes[j + 1].address)  # it redials the node it dialled
    await _through_the_chain(p)
    return paying


async def _through_the_chain(p: Play) -> None:
    """Waits for the payer's outcome. A lock that a node registered on chain meanwhile, to call it
    there, is executed once its window has passed: the chain's time goes past it."""
    while True:
        outcome = asyncio.create_task(p.nodes[0].wait_for(p.h, lambda r: bool(r.preimage) or mh.finished(r)))
        registered = [asyncio.create_task(p.nodes[end].wait_for(cid, _executes_on_chain))
                      for j, cid in enumerate(p.channels) for end in (j, j + 1)]
        await asyncio.wait([outcome, *registered], return_when=asyncio.FIRST_COMPLETED)
        for task in registered:
            await stopped(task)
        if outcome.done():
            outcome.result()
            return
        await stopped(outcome)
        event("a lock went on chain after the crash")
        p.net.chain.advance_time(DELTA + 1)
        for node in p.nodes:
            await node.sync()


def _executes_on_chain(rec: MSRecord) -> bool:
    """The node registered a nanocontract of the channel on chain to call it there, and has not
    yet executed it."""
    return any((on := rec.registered(i.nid)) is not None and not on.terminated for i in rec.intents)


async def _reclaimed_on_chain(p: Play, j: int, mute: bool = False) -> None:
    """nodes[j]'s lock towards a receiver that is gone (or `mute`: online, countersigning no call)
    timed out: from its timeout + 1 it registers the lock, and RECLAIMs it once the window has
    passed."""
    sender = p.nodes[j]
    nid = sender.multihop.records[p.h].outgoing.nid
    with impatient(sender) if mute else contextlib.nullcontext():  # its RECLAIM expires unanswered
        latest_block_at(p.net, p.route.hops[j].timeout + 1)
        await sender.sync()
        await sender.wait_for(p.channels[j], lambda r: r.registered(nid) is not None)
    p.net.chain.advance_time(DELTA + 1)
    await sender.sync()
    await sender.wait_for(p.h, lambda r: r.outgoing.released is Release.RECLAIMED)


TROUBLE: dict[str, Callable[[Play], Awaitable[asyncio.Task | None]]] = {
    "none": _none, "silent-before": _silent_before, "silent-after": _silent_after,
    "payee-withholds": _payee_withholds, "crash": _crash}


# ---------------------------------------------------------------------- the outcome


async def _check(p: Play, paying: asyncio.Task | None, fees: list[int]) -> None:
    ex, h, k = p.ex, p.h, p.ex.hops
    outcome: bytes | errors.PaymentFailed | None = None  # what pay_route returned or raised
    if paying is not None:
        try:
            outcome = await paying
        except errors.PaymentFailed as exc:
            outcome = exc
    done = await p.nodes[0].wait_for(h, lambda r: bool(r.preimage) or mh.finished(r))
    failed = mh.payment_failed(done)
    if isinstance(outcome, errors.PaymentFailed):
        assert failed is not None and (outcome.hop, outcome.index, outcome.code) == (failed.hop, failed.index,
                                                                                      failed.code)
    elif outcome is not None:
        assert outcome == done.preimage
    paid = bool(done.preimage)
    event("outcome: paid" if paid else f"outcome: failed, {_code(failed)}")
    await _ended(p)

    held = [0] * (k + 1)
    for j, cid in enumerate(p.channels):
        views = [_holdings(p, p.nodes[end], cid) for end in (j, j + 1) if end not in p.away]
        assert views and all(v == views[0] for v in views), f"the ends of channel {j} disagree: {views}"
        held[j] += views[0][0]
        held[j + 1] += views[0][1]
    gain = [held[j] - DEPOSIT * (1 if j in (0, k) else 2) for j in range(k + 1)]
    on_chain = any(e.name == "NanocontractExecuted" for e in p.net.ms.contract.events())
    if on_chain:
        event("a lock executed on chain")

    revealed = p.nodes[k].multihop.records[h].claimed  # a stopped payee's as it stopped
    assert gain[0] == (-ex.amount - sum(fees) if paid else 0), gain
    assert gain[k] == (ex.amount if revealed else 0), gain
    silent = ex.node if ex.trouble.startswith("silent") else None
    for j in range(1, k):
        rec = p.nodes[j].multihop.records.get(h)
        if j != silent:
            assert gain[j] == (fees[j - 1] if rec is not None and rec.preimage else 0), (j, gain)

    # Which path the trouble took.
    if ex.trouble in ("none", "crash"):
        assert paid and revealed, failed
        # A node back before its deadlines finishes the payment off chain.
        assert not on_chain, "a lock went on chain"
        return
    assert not paid
    if ex.trouble == "silent-before":
        assert not revealed and gain[silent] == 0
        expected = (silent, FailureCode.TOO_LATE) if ex.how == "deaf" else _reclaimed_by(silent - 1)
    elif ex.trouble == "silent-after":
        assert revealed and gain[silent] == -p.route.hops[silent].amount
        assert all(p.nodes[j].multihop.records[h].preimage for j in range(silent + 1, k))
        expected = _reclaimed_by(silent - 1)
    else:
        assert not revealed
        expected = (k - 1, FailureCode.DOWNSTREAM_TIMED_OUT)
    assert (_place(p, failed.hop), failed.code) == expected, failed


def _reclaimed_by(j: int) -> tuple[int, FailureCode | None]:
    """The failure the payer reads when nodes[j] reclaimed its lock: DOWNSTREAM_TIMED_OUT from
    an intermediary; the payer's own (no code, the first hop named) if j is the payer."""
    return (j, FailureCode.DOWNSTREAM_TIMED_OUT) if j > 0 else (1, None)


def _place(p: Play, address: str | None) -> int | None:
    return next((j for j, node in enumerate(p.nodes) if node.address == address), None)


def _code(failed: errors.PaymentFailed) -> str:
    return FailureCode(failed.code).name if failed.code is not None else "the payer reclaimed its lock"


async def _ended(p: Play) -> None:
    """Every lock of the payment has ended, as each end that is there knows: its sender's
    record has it back or knows the preimage, its receiver's has it claimed or released."""
    for j, cid in enumerate(p.channels):
        for end, done in ((j, lambda r: r.outgoing is None or r.outgoing.released is not None or bool(r.preimage)),
                          (j + 1, lambda r: r.claimed or r.incoming.released is not None)):
            node = p.nodes[end]
            if end not in p.away and _lock_in(node, cid, p.h):
                await node.wait_for(p.h, done)


def _lock_in(node: Node, cid: bytes, payment_hash: bytes) -> bool:
    app = node.multihop.app_address
    return any(s.state.app == app and htlc.decode(s.state.storage).hashlock == payment_hash
               for s in node.multistate.channel(cid).nanocontracts)


def _holdings(p: Play, node: Node, cid: bytes) -> tuple[int, int]:
    """What channel `cid`'s Alice and Bob hold by `node`'s view of it: their cash, and what each
    lock released to them, as the chain executed it if it ran there, else off chain. No lock is
    live, and the channel holds its deposits."""
    rec = node.multistate.channel(cid)
    executed = {e.args["nid"]: (e.args["releasedAlice"], e.args["releasedBob"]) for e in p.net.ms.contract.events()
                if e.name == "NanocontractExecuted" and e.args["channelId"] == cid}
    alice, bob = rec.state.cash_alice, rec.state.cash_bob
    for signed in rec.nanocontracts:
        nc = signed.state
        if nc.nid in executed:
            released = executed[nc.nid]
        else:
            assert (nc.blocked_alice, nc.blocked_bob) == (0, 0), f"a lock is live in {node.name}'s view: {nc}"
            released = (nc.released_alice, nc.released_bob)
        alice, bob = alice + released[0], bob + released[1]
    assert alice + bob == rec.params.deposit_alice + rec.params.deposit_bob
    return alice, bob
