"""Virtual channels over loopback: the time to open and to close one, and updates/s on it.

`make bench-virtual` (python -m benchmarks.virtual) starts anvil, deploys, runs Alice, Ingrid
and Bob as three nodes in this process over loopback TCP, and opens the ledger channels a =
Alice–Ingrid and b = Ingrid–Bob on chain. Then, with no transaction at all (the block number is
checked before and after):

- open: Alice opens γ to Bob through Ingrid (the four messages: ν_a to Ingrid, ν_b to Bob,
  Bob's and Ingrid's countersignatures), timed from `open` until it returns; each γ is then
  closed fast (a final state signed by both ends, VirtualClose to Ingrid, her SETTLE calls on
  both halves), timed until the closing end's half is settled;
- updates on γ between Alice and Bob, one at a time and pipelined (8 in flight), and the same on
  a direct payment channel between them in the same process, for comparison;
- a live set: with three new nodes, `--live` (1,000) virtual channels opened through one Ingrid
  and left open, then `--sample` (50) more: the time to open one at k = 0 live channels (the first
  `--sample` openings) and at k ≈ `--live` (rounded up to a multiple of 16), their p50 and p99
  and the ratios, and Ingrid's chain poll at both (after an empty block each). A ledger channel
  holds at most 16 nanocontracts (MSContract.MAX_NANOCONTRACTS), so they go through ⌈n/16⌉ ledger
  channels on each side, filled one after the other; both samples start at an empty ledger
  channel, so they see the same mix of nanocontracts per ledger channel.

Every update and every half is durably stored by each node (SQLite WAL, synchronous=FULL) before
the call that made it returns. It prints a table and writes benchmarks/virtual.json. Timings
depend on the machine and its load: they are measured here, never asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import tempfile
import time
from pathlib import Path

from eth_account import Account

from benchmarks.updates import pipelined, sequential, summary
from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.core.machine import Stage
from perun.core.multistate import MAX_NANOCONTRACTS
from perun.node import Node
from perun.protocols.policy import ACCEPT_ALL
from perun.protocols.virtual import HubPolicy

OUT = Path(__file__).with_name("virtual.json")
DELTA = 3600
LIVE_AMOUNT = 10**15  # what Alice blocks in each γ of the live set


async def triangle(chain: RpcChain, deployment, keys: dict[str, bytes], tmp: Path, openings: int, n: int,
                   window: int) -> list[dict]:
    def node(name: str, **kwargs) -> Node:
        return Node(keys[name], chain, deployment.payment_contract, tmp / f"{name}.db", poll_interval=0.1, name=name,
                    ms_contract=deployment.ms_contract, apps=deployment.apps, accept_virtual=lambda v: True,
                    policy=ACCEPT_ALL, **kwargs)  # Ingrid and Bob deposit in the ledger channels

    async with node("alice") as alice, node("ingrid", hub=HubPolicy()) as ingrid, node("bob") as bob:
        for end in (alice, bob):
            await end.connect(ingrid.address, "127.0.0.1", ingrid.port)
        await alice.connect(bob.address, "127.0.0.1", bob.port)
        a, b, direct = await asyncio.gather(alice.multistate.open(ingrid.address, 10 * ETHER, 10 * ETHER, DELTA),
                                            ingrid.multistate.open(bob.address, 10 * ETHER, 10 * ETHER, DELTA),
                                            alice.open(bob.address, 10 * ETHER, 0, DELTA))
        for peer, cid in ((ingrid, a), (bob, b), (bob, direct)):
            await peer.wait_for(cid, lambda r: r.stage is Stage.OPEN)
        validity = chain.timestamp() + 30 * 24 * 3600

        async def open_close(opened: list[float], closed: list[float]) -> bytes:
            start = time.perf_counter()
            gid = await alice.virtual.open(a, bob.address, b, ETHER, 0, validity, 2 * DELTA)
            opened.append(time.perf_counter() - start)
            start = time.perf_counter()
            await alice.virtual.close(gid)
            closed.append(time.perf_counter() - start)
            await ingrid.wait_for(gid, ingrid.virtual.settled)  # both halves absorbed before the next
            await ingrid.wait_for(a, lambda r: not r.pending and not r.nanocontracts)
            await ingrid.wait_for(b, lambda r: not r.pending and not r.nanocontracts)
            return gid

        await open_close([], [])  # warm-up
        block = chain.block_number()
        opened: list[float] = []
        closed: list[float] = []
        start = time.perf_counter()
        for _ in range(openings):
            await open_close(opened, closed)
        elapsed = time.perf_counter() - start
        transactions = chain.block_number() - block
        results = [summary("open a virtual channel (4 messages)", opened, elapsed),
                   summary("close it fast through Ingrid", closed, elapsed)]
        for r in results:  # one at a time: the rate is not of interest here
            del r["updates_per_s"]
            r["transactions"] = transactions

        gid = await alice.virtual.open(a, bob.address, b, 5 * ETHER, 0, validity, 2 * DELTA)
        for name, cid in (("virtual channel", gid), ("direct channel", direct)):
            await sequential(alice, cid, 100)  # warm-up
            results.append(summary(f"{name}, sequential", *await sequential(alice, cid, n)))
            results.append(summary(f"{name}, pipelined (window {window})", *await pipelined(alice, cid, n, window)))
        # Both ends hold the same latest state of γ; Ingrid saw none of it.
        assert bob.virtual.record(gid).channel.current == alice.virtual.record(gid).channel.current
        assert ingrid.virtual.info(gid).version == 0
        return results


async def live_set(chain: RpcChain, deployment, keys: dict[str, bytes], tmp: Path, live: int, sample: int,
                   profile: bool = False) -> dict:
    """Opens `live` virtual channels through one Ingrid and keeps them open, timing every opening;
    returns the samples at k = 0 and k ≈ `live` (see the module's docstring)."""
    def node(name: str, **kwargs) -> Node:
        return Node(keys[name], chain, deployment.payment_contract, tmp / f"live-{name}.db", poll_interval=0.1,
                    name=name, ms_contract=deployment.ms_contract, apps=deployment.apps,
                    accept_virtual=lambda v: True, policy=ACCEPT_ALL, **kwargs)

    late = -(-live // MAX_NANOCONTRACTS) * MAX_NANOCONTRACTS  # k of the late sample's first: an empty ledger
    total = late + sample
    pairs = -(-total // MAX_NANOCONTRACTS)
    deposit = MAX_NANOCONTRACTS * LIVE_AMOUNT
    async with node("alice") as alice, node("ingrid", hub=HubPolicy()) as ingrid, node("bob") as bob:
        for end in (alice, bob):
            await end.connect(ingrid.address, "127.0.0.1", ingrid.port)
        await alice.connect(bob.address, "127.0.0.1", bob.port)  # the ends' own connection, for the close
        ledgers: list[tuple[bytes, bytes]] = []
        while len(ledgers) < pairs:  # a few at a time: a node holds 16 unconfirmed proposals per peer
            n = min(8, pairs - len(ledgers))
            a = await asyncio.gather(*(alice.multistate.open(ingrid.address, deposit, 0, DELTA) for _ in range(n)))
            b = await asyncio.gather(*(ingrid.multistate.open(bob.address, deposit, 0, DELTA) for _ in range(n)))
            ledgers += zip(a, b)
        for a, b in ledgers:
            await ingrid.wait_for(a, lambda r: r.stage is Stage.OPEN)
            await bob.wait_for(b, lambda r: r.stage is Stage.OPEN)
        validity = chain.timestamp() + 30 * 24 * 3600
        a, b = ledgers[0]
        gid = await alice.virtual.open(a, bob.address, b, LIVE_AMOUNT, 0, validity, 2 * DELTA)  # warm-up
        await alice.virtual.close(gid)
        await ingrid.wait_for(a, lambda r: not r.pending and not r.nanocontracts)
        await ingrid.wait_for(b, lambda r: not r.pending and not r.nanocontracts)
        polls = {"first": await timed_polls(ingrid, chain, sample)}
        block = chain.block_number()
        opened: list[float] = []
        cpu: list[float] = []  # the process's CPU time (the three nodes'): what other processes do not change
        profiles = {"first": cProfile.Profile(), "late": cProfile.Profile()}
        for k in range(total):
            a, b = ledgers[k // MAX_NANOCONTRACTS]
            prof = profiles["first"] if k < sample else profiles["late"] if k >= late else None
            if profile and prof is not None:
                prof.enable()
            start, cpu_start = time.perf_counter(), time.process_time()
            await alice.virtual.open(a, bob.address, b, LIVE_AMOUNT, 0, validity, 2 * DELTA)
            opened.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
            if profile and prof is not None:
                prof.disable()
            if k == late - 1:
                polls["late"] = await timed_polls(ingrid, chain, sample)
                block += sample  # the empty blocks it mined
        transactions = chain.block_number() - block
        assert len(ingrid.virtual.live()) == total  # none settled: all live at Ingrid
    first, at_live = opened[:sample], opened[late:]
    report = {"live": late, "sample": sample, "ledger_channels_per_side": pairs, "transactions": transactions,
              "first": summary(f"open at k = 0..{sample - 1}", first, sum(first)),
              "late": summary(f"open at k = {late}..{late + sample - 1}", at_live, sum(at_live)),
              "first_cpu": summary(f"CPU time, open at k = 0..{sample - 1}", cpu[:sample], 1),
              "late_cpu": summary(f"CPU time, open at k = {late}..{late + sample - 1}", cpu[late:], 1)}
    # What a ledger channel's own nanocontracts cost (inherent: every channel state lists them all,
    # and is hashed and signed whole): the openings into an empty ledger channel and into a full one.
    for slot in (0, MAX_NANOCONTRACTS - 1):
        times = opened[slot::MAX_NANOCONTRACTS]
        report[f"slot_{slot}"] = summary(f"open into a ledger channel holding {slot}", times, sum(times))
    for r in (report["first"], report["late"], report["first_cpu"], report["late_cpu"], report["slot_0"],
              report[f"slot_{MAX_NANOCONTRACTS - 1}"]):
        del r["updates_per_s"]
    for q in ("p50_ms", "p99_ms"):
        report[f"ratio_{q[:3]}"] = round(report["late"][q] / report["first"][q], 2)
        report[f"ratio_cpu_{q[:3]}"] = round(report["late_cpu"][q] / report["first_cpu"][q], 2)
    report["poll_first"], report["poll_late"] = (summary(f"Ingrid's poll, an empty new block, k = {k}", polls[n], 1)
                                                 for n, k in (("first", 0), ("late", late)))
    for r in (report["poll_first"], report["poll_late"]):
        del r["updates_per_s"]
    if profile:
        report["profiles"] = {name: top(prof, 25) for name, prof in profiles.items()}
    return report


async def timed_polls(node: Node, chain: RpcChain, n: int) -> list[float]:
    """`n` polls of the node's chain follower, each after an empty block is mined."""
    times = []
    for _ in range(n):
        await node.on_chain(chain.mine)
        start = time.perf_counter()
        await node.runtime.follower.poll()
        times.append(time.perf_counter() - start)
    return times


def top(prof: cProfile.Profile, n: int) -> list[dict]:
    """The `n` functions with the most time of their own over the profiled openings."""
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [{"function": f"{Path(f).name}:{line} {name}", "calls": nc, "tottime_s": round(tt, 4),
             "cumtime_s": round(ct, 4)} for (f, line, name), (_, nc, tt, ct, _) in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openings", type=int, default=200, help="virtual channels opened and closed (default 200)")
    parser.add_argument("--payments", type=int, default=2000, help="payments per update run (default 2000)")
    parser.add_argument("--window", type=int, default=8, help="payments in flight when pipelined (default 8)")
    parser.add_argument("--live", type=int, default=1000,
                        help="virtual channels kept open through one Ingrid before the late sample (default 1000)")
    parser.add_argument("--sample", type=int, default=50, help="openings in each sample of the live set (default 50)")
    parser.add_argument("--profile", action="store_true",
                        help="profile (cProfile) the live set's samples, into the report; the timings then include it")
    args = parser.parse_args(argv)
    accounts = {name: Account.create() for name in ("alice", "ingrid", "bob", "live-alice", "live-ingrid", "live-bob")}
    with tempfile.TemporaryDirectory() as tmp_name, Anvil() as anvil:
        chain = RpcChain(anvil.url)
        deployment = deploy(chain, chain.dev_accounts[0])
        for account in accounts.values():
            chain.fund(account.address, 100 * ETHER)
        keys = {name: bytes(account.key) for name, account in accounts.items()}
        results = asyncio.run(triangle(chain, deployment, keys, Path(tmp_name), args.openings, args.payments,
                                       args.window))
        live_keys = {name: keys[f"live-{name}"] for name in ("alice", "ingrid", "bob")}
        live = asyncio.run(live_set(chain, deployment, live_keys, Path(tmp_name), args.live, args.sample,
                                    args.profile))
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "results": results, "live_set": live}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'run':40} {'updates/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        rate = f"{r['updates_per_s']:,}" if "updates_per_s" in r else f"{r['transactions']} tx"
        print(f"{r['run']:40} {rate:>10} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    print(f"live set through one Ingrid ({live['ledger_channels_per_side']} ledger channels a side, "
          f"{live['transactions']} tx):")
    for r in (live["first"], live["late"]):
        print(f"  {r['run']:38} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    print(f"  {'ratio late / first':38} {live['ratio_p50']:>8.2f} {live['ratio_p99']:>8.2f}")
    for r in (live["first_cpu"], live["late_cpu"]):
        print(f"  {r['run']:38} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    print(f"  {'ratio of CPU times late / first':38} {live['ratio_cpu_p50']:>8.2f} {live['ratio_cpu_p99']:>8.2f}")
    for r in (live["slot_0"], live[f"slot_{MAX_NANOCONTRACTS - 1}"], live["poll_first"], live["poll_late"]):
        print(f"  {r['run']:38} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    print(f"({report['machine']}; three nodes in one process; written to {OUT})")


if __name__ == "__main__":
    main()
