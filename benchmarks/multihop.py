"""Multi-hop payments over loopback: the latency of a 2-, 3- and 5-hop payment, next to its floor.

`make bench-multihop` (python -m benchmarks.multihop) starts anvil, deploys, runs six nodes n0 ..
n5 in this process over loopback TCP, and opens the multistate channels n0–n1, n1–n2, ..., n4–n5
(10 ETH a side); n1 .. n5 forward, each with a ForwardPolicy. Then, with no transaction at all
(the block number is checked before and after):

- **a k-hop payment** (k = 2, 3, 5): n_k makes a fresh invoice and n0 pays it over the route n0 →
  n1 → ... → n_k (perun.core.route.build_route, each direction with its sender's policy) with
  `Multihop.pay_route(route, invoice, public_keys)`, the later hops' keys given by
  perun.core.onion.compressed_public_key. Timed from the call until it returns the preimage: the
  k locks created one after the other (each with its onion, peeled and checked by its receiver),
  the payee's claim, and each hop's claim back with the preimage it learnt.
- **the floor**: a lock, its claim and its absorption between two neighbours of the same line,
  no onion (a plain HashTimeLock, created by `Multistate.create`, claimed by the receiver's
  `Multistate.call(CLAIM)` and absorbed by its `Multistate.absorb`), timed from the creation
  until both ends hold the absorption. That is the work each hop of a payment must do at least
  (a lock towards the next hop, a claim of it, and its absorption, which a node does by itself
  after each claim), each an update stored by both ends: a k-hop payment's floor is k times it.
  The payment's time ends with the payer's preimage, before the last absorptions; but in one
  process they compete with the claims still travelling back. What a payment adds
  is the onion (built once, peeled at each hop), its LockOnion message, the hop records and the
  chain-time reads; against that, a hop's next lock may start before the acknowledgement of its
  incoming one arrives back, which the floor waits for. The ratio p50 / (k × the floor's p50) is
  the figure to read (and the same of the p99s): an absolute time depends on the machine and its
  load, a ratio to a floor measured in the same run does not so much.

Next to them, the onion's own cost in a hot loop (medians of 50): built for each length, and
peeled by a hop; it tells how much of a payment's time above its floor the onion explains.

--payments (500) of each kind are timed, alternating in --rounds (10) blocks (the floor, 2, 3
and 5 hops, again), so that the machine's load weighs on all alike. After each payment and each
floor sample, every claimed lock is absorbed back into its channel's cash (a payment's by its
receiver's node, untimed after the preimage; the floor's plain lock by the benchmark, timed), and
the payer's and the payee's cash are checked.

The nodes share one process, as in bench-virtual, the other benchmark of routes through
intermediaries: the payments go over a route the benchmark builds (`pay_route`), which no
command takes, so that the route lookup (`perun pay`'s) is not part of the time. The hops' work is sequential (each locks after its incoming lock, claims after its
outgoing one), so one event loop costs the payment little but the overlap of acknowledgements.
The chain is anvil, as for bench-updates and bench-virtual: the nodes read it over JSON-RPC as
they do in use (the payer and each claimer read the chain time), which the embedded chain, in
process, would make cheaper than it is. Every lock and claim is stored durably by both ends
(SQLite WAL, synchronous=FULL) before it counts. It prints a table and writes
benchmarks/multihop.json; timings are measured here, never asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from eth_account import Account

from benchmarks.updates import summary
from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.core import onion
from perun.core.apps import hashtimelock as htlc
from perun.core.machine import Stage
from perun.core.onion import HopPayload, compressed_public_key
from perun.core.route import DEFAULT_MARGIN, Direction, Policy, Route, build_route
from perun.node import Node
from perun.protocols.multihop import APP, ForwardPolicy
from perun.protocols.policy import ACCEPT_ALL

OUT = Path(__file__).with_name("multihop.json")
DELTA = 3600
DEPOSIT = 10 * ETHER
AMOUNT = 10**15  # what each payment delivers, and each floor lock carries
FORWARD = ForwardPolicy(base_fee=1_000, fee_ppm=1_000)
HOPS = (2, 3, 5)
SLACK = 60  # seconds of chain time between building a route and its locks' checks


def route(nodes: list[Node], channels: list[bytes], now: int) -> Route:
    """The route from nodes[0] to nodes[-1] over `channels` (as many), each direction with its
    sender's forwarding policy and cash."""
    path = []
    for left, right, cid in zip(nodes, nodes[1:], channels):
        policy = left.multihop.policy or ForwardPolicy()
        capacity = left.multistate.info(cid).my_cash
        path.append(Direction(cid, left.address, right.address,
                              Policy(policy.base_fee, policy.fee_ppm, DELTA, capacity)))
    return build_route(nodes[0].address, path, AMOUNT, now + SLACK, DEFAULT_MARGIN)


async def absorbed(sender: Node, receiver: Node, cid: bytes) -> None:
    """The receiver has absorbed every claimed lock of a payment in channel `cid` (a node does
    it by itself); both ends agree on it."""
    await receiver.wait_for(cid, lambda r: not r.pending and not r.nanocontracts)
    await sender.wait_for(cid, lambda r: not r.pending and not r.nanocontracts)


async def absorb(sender: Node, receiver: Node, cid: bytes, nid: bytes) -> None:
    """The receiver absorbs plain lock `nid`, claimed (no payment's: nobody else would)."""
    await receiver.multistate.absorb(cid, nid)
    await absorbed(sender, receiver, cid)


async def pay(chain: RpcChain, nodes: list[Node], channels: list[bytes], hops: int) -> float:
    """One payment from nodes[0] to nodes[hops]; its latency (the locks absorbed after, untimed)."""
    line, over = nodes[:hops + 1], channels[:hops]
    payee = line[-1]
    now = await payee.runtime.on_chain(chain.timestamp)
    invoice = await payee.invoice(AMOUNT, now + DELTA)
    keys = {node.address: compressed_public_key(node.key) for node in line[2:]}
    paying = route(line, over, now)
    cash = line[0].multistate.info(over[0]).my_cash, payee.multistate.info(over[-1]).my_cash
    start = time.perf_counter()
    preimage = await line[0].multihop.pay_route(paying, invoice, keys)
    latency = time.perf_counter() - start
    assert htlc.hashlock_of(preimage) == invoice.payment_hash
    await payee.wait_for(invoice.payment_hash, lambda r: r.claimed)
    for sender, receiver, cid in zip(line, line[1:], over):
        await absorbed(sender, receiver, cid)
    # Paid: the payer gave the amount and the fees, the payee got the amount.
    assert line[0].multistate.info(over[0]).my_cash == cash[0] - paying.hops[0].amount
    assert payee.multistate.info(over[-1]).my_cash == cash[1] + AMOUNT
    return latency


async def lock_and_claim(chain: RpcChain, sender: Node, receiver: Node, cid: bytes) -> float:
    """A plain lock from `sender` to `receiver` in `cid`, its claim and its absorption; the time
    of the three."""
    preimage = secrets.token_bytes(32)
    now = await sender.runtime.on_chain(chain.timestamp)
    lock = htlc.initial(int(sender.multistate.channel(cid).role), AMOUNT, htlc.hashlock_of(preimage), now + 4 * DELTA)
    start = time.perf_counter()
    nid = await sender.multistate.create(cid, APP, lock)
    await receiver.multistate.call(cid, nid, htlc.CLAIM, preimage)
    await absorb(sender, receiver, cid, nid)
    return time.perf_counter() - start


def onion_costs(nodes: list[Node], samples: int = 50) -> dict:
    """The onion's own cost, in a hot loop (medians): built by the payer for each route length,
    and peeled by a hop."""
    payment_hash = secrets.token_bytes(32)

    def timed(f: Callable[[], object]) -> float:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return round(statistics.median(times) * 1e3, 3)

    layers = {}
    for k in HOPS:
        hops = nodes[1:k + 1]
        payloads = [HopPayload(after.address, AMOUNT, 2**40) for after in hops[1:]]
        payloads.append(HopPayload(None, AMOUNT, 2**40, secrets.token_bytes(32)))
        layers[k] = list(zip((compressed_public_key(hop.key) for hop in hops), payloads))
    packet = onion.build(secrets.token_bytes(32), layers[max(HOPS)], payment_hash)
    return {"build_ms": {str(k): timed(lambda: onion.build(secrets.token_bytes(32), layers[k], payment_hash))
                         for k in HOPS},
            "peel_ms": timed(lambda: onion.peel(packet, nodes[1].key, payment_hash))}


async def measure(chain: RpcChain, deployment, keys: list[bytes], tmp: Path, n: int, rounds: int) -> dict:
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for i, key in enumerate(keys):
            node = Node(key, chain, deployment.payment_contract, tmp / f"n{i}.db", poll_interval=0.1, name=f"n{i}",
                        ms_contract=deployment.ms_contract, apps=deployment.apps, policy=ACCEPT_ALL,
                        forward=FORWARD if i else None)
            nodes.append(await stack.enter_async_context(node))
        for left, right in zip(nodes, nodes[1:]):
            await left.connect(right.address, "127.0.0.1", right.port)
        channels = await asyncio.gather(*(left.multistate.open(right.address, DEPOSIT, DEPOSIT, DELTA)
                                          for left, right in zip(nodes, nodes[1:])))
        for right, cid in zip(nodes[1:], channels):
            await right.wait_for(cid, lambda r: r.stage is Stage.OPEN)
        pairs = list(zip(nodes, nodes[1:], channels))
        for hops in HOPS:  # warm-up
            await pay(chain, nodes, channels, hops)
        for pair in pairs:
            await lock_and_claim(chain, *pair)
        costs = onion_costs(nodes)

        block = chain.block_number()
        times: dict[str, list[float]] = {"floor": [], **{f"{k} hops": [] for k in HOPS}}
        started = time.perf_counter()
        for r in range(rounds):
            share = n // rounds + (r < n % rounds)
            for _ in range(share):  # the floor on each channel of the line in turn
                times["floor"].append(await lock_and_claim(chain, *pairs[len(times["floor"]) % len(pairs)]))
            for k in HOPS:
                for _ in range(share):
                    times[f"{k} hops"].append(await pay(chain, nodes, channels, k))
        elapsed = time.perf_counter() - started
        transactions = chain.block_number() - block

    floor = summary("floor: lock, claim, absorb", times["floor"], elapsed)
    results = []
    for k in HOPS:
        r = summary(f"{k}-hop payment", times[f"{k} hops"], elapsed)
        r["floor_p50_ms"] = round(k * floor["p50_ms"], 3)
        r["floor_p99_ms"] = round(k * floor["p99_ms"], 3)
        r["ratio_p50"] = round(r["p50_ms"] / r["floor_p50_ms"], 2)
        r["ratio_p99"] = round(r["p99_ms"] / r["floor_p99_ms"], 2)
        results.append(r)
    for r in (floor, *results):
        del r["updates_per_s"]  # one at a time: the rate is not of interest
        r["payments"] = r.pop("updates")
    return {"floor": floor, "results": results, "onion": costs, "transactions": transactions,
            "seconds": round(elapsed, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=500,
                        help="payments of each length, and floor samples (default 500)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="blocks in which the floor and the three lengths alternate (default 10)")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= args.payments:
        parser.error("--rounds must be between 1 and --payments")
    accounts = [Account.create() for _ in range(max(HOPS) + 1)]
    with tempfile.TemporaryDirectory() as tmp_name, Anvil() as anvil:
        chain = RpcChain(anvil.url)
        deployment = deploy(chain, chain.dev_accounts[0])
        for account in accounts:
            chain.fund(account.address, 100 * ETHER)
        report = asyncio.run(measure(chain, deployment, [bytes(a.key) for a in accounts], Path(tmp_name),
                                     args.payments, args.rounds))
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "rounds": args.rounds, **report}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    floor = report["floor"]
    print(f"{'run':28} {'p50 ms':>8} {'p99 ms':>8} {'floor p50':>10} {'floor p99':>10} {'ratio p50':>10} "
          f"{'ratio p99':>10}")
    print(f"{floor['run']:28} {floor['p50_ms']:>8.2f} {floor['p99_ms']:>8.2f}")
    for r in report["results"]:
        print(f"{r['run']:28} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['floor_p50_ms']:>10.2f} "
              f"{r['floor_p99_ms']:>10.2f} {r['ratio_p50']:>10.2f} {r['ratio_p99']:>10.2f}")
    costs = report["onion"]
    print(f"the onion, hot loop: built for {' / '.join(map(str, HOPS))} hops in "
          f"{' / '.join(f'{v:.2f}' for v in costs['build_ms'].values())} ms, peeled by a hop in "
          f"{costs['peel_ms']:.2f} ms")
    print(f"({report['machine']}; six nodes in one process, {floor['payments']} of each, {report['transactions']} "
          f"transactions, {report['seconds']} s; written to {OUT})")


if __name__ == "__main__":
    main()
