"""A node with many channels: what its restart, its memory, its store, its chain poll and its
updates cost as the number of channels N grows.

`make bench-scale` (python -m benchmarks.scale) starts anvil (a block per transaction), deploys,
and runs Bob as a `perun node` process (reading the chain every second, the default). Alice's node, in this process, opens channels with Bob
through its API (`Node.open`: proposal, acceptance, Alice's create and Bob's confirm on chain),
up to --concurrency openings at once, until it holds N channels, for each N of --sizes in turn
(by default 10, 1,000 and 10,000: the channels of a size are kept for the next). Every channel is
a real one, on chain, in the records the nodes themselves store. At each N, Alice's node stops and
is restarted in a process of its own (the node measured), which:

- times its restart: the imports, `Node(...)` (the store opened and every record loaded),
  `start()` (the first chain poll, listening), the connection to Bob (it redials him), and the
  first payment, which waits for the channel's Reestablish to be answered (after a reconnection
  each side sends one per channel); from process start to the first payment as well;
- reads its RSS (VmRSS, and the peak VmHWM) after the first payment;
- times its chain follower's poll, `await node.runtime.follower.poll()`, on a quiet chain: the
  head unchanged (nothing to read), and with one empty block mined before each poll (the head
  moves, nothing concerns the node: the shape of a real chain between events). Its background
  poll is set an hour apart, so that only the timed ones run;
- times --payments sequential payments on one channel (p50, p99), as bench-updates does.

The node measured is restarted so --restarts times (3 by default), and each figure is the
median of those runs': on a shared machine single runs move by tens of percent. The store's size
on disk (database, WAL) is read after the node stops. A further restart of the
same node runs under cProfile from `Node(...)` to the first payment, then --polls polls and
--payments payments, each under a profile of its own, to say where the restart's, a poll's and a
payment's time goes (the profile slows what it times: its figures are shares). It prints a table
and writes benchmarks/scale.json. Timings depend on the machine and its load: measured here,
never asserted by a test.

With --dir, the chain (anvil's state), the stores and the keys stay in that directory when the
run ends (a snapshot/ of them), and a later run with the same --dir measures the largest size
again, each time from that same chain and those same stores: opening 10,000 channels takes most
of a run (about 10 openings a second here), measuring them again a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("scale.json")
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "benchmark"
BULK_DEPOSIT = 10**6  # wei: the channels only need to exist
PAYING_DEPOSIT = 10**18  # the channel paid on


# ---------------------------------------------------------------------- the node measured (child)


def _rss_mb() -> dict[str, float]:
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {f"{name.lower()}_mb": round(int(fields[name].split()[0]) / 1024, 1) for name in ("VmRSS", "VmHWM")}


def _ms(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": round(statistics.median(ordered) * 1e3, 3),
            "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1e3, 3),
            "p99_ms": round(ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1e3, 3), "n": len(ordered)}


async def _restart(spec: dict, marks: dict[str, float], profile=None) -> dict:
    """Restarts Alice's node from its store and pays once; then measures, or with `profile`
    stops it there."""
    from perun.chain.backend import RpcChain
    from perun.node import Node
    marks["imports"] = time.perf_counter()
    if profile is not None:
        profile.enable()
    chain = RpcChain(spec["rpc"])
    node = Node(bytes.fromhex(spec["key"]), chain, spec["contract"], spec["db"], poll_interval=3600.0, name="alice")
    marks["construct"] = time.perf_counter()
    await node.start()
    marks["start"] = time.perf_counter()
    try:
        await node.wait_connected(spec["bob"], 120)
        marks["connected"] = time.perf_counter()
        cid = bytes.fromhex(spec["channel"])
        await node.pay(cid, 1)
        marks["paid"] = time.perf_counter()
        paid_at = time.time()
        if profile is not None:
            profile.disable()
            return {"paid_at": paid_at, **await _profiled(node, chain, cid, spec, profile, marks)}
        out: dict = {"paid_at": paid_at, "channels": len(node.channels()), **_rss_mb()}
        quiet = []
        for _ in range(spec["polls"]):
            t0 = time.perf_counter()
            await node.runtime.follower.poll()
            quiet.append(time.perf_counter() - t0)
        new_block = []
        for _ in range(spec["polls"]):
            await node.on_chain(chain.mine)
            t0 = time.perf_counter()
            await node.runtime.follower.poll()
            new_block.append(time.perf_counter() - t0)
        out["poll_quiet"] = _ms(quiet)
        out["poll_new_block"] = _ms(new_block)
        for _ in range(50):  # warm-up
            await node.pay(cid, 1)
        latencies = []
        t_all = time.perf_counter()
        for _ in range(spec["payments"]):
            t0 = time.perf_counter()
            await node.pay(cid, 1)
            latencies.append(time.perf_counter() - t0)
        out["update"] = {**_ms(latencies), "updates_per_s": round(len(latencies) / (time.perf_counter() - t_all))}
        return out
    finally:
        t0 = time.perf_counter()
        await node.stop()
        marks["stop_s"] = time.perf_counter() - t0


async def _profiled(node, chain, cid: bytes, spec: dict, restart, marks: dict[str, float]) -> dict:
    """Where the time goes: of the restart (cumulative, perun's functions and what they call
    most), of the polls on a quiet chain and of the sequential payments (own time, any function)."""
    import cProfile
    import pstats
    out = {"profile": _top(pstats.Stats(restart), marks["paid"] - marks["imports"])}
    for name, n in (("poll_profile", spec["polls"]), ("update_profile", spec["payments"])):
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        for _ in range(n):
            await (node.runtime.follower.poll() if name == "poll_profile" else node.pay(cid, 1))
        profile.disable()
        out[name] = _own(pstats.Stats(profile), time.perf_counter() - start, n)
    return out


def child(spec: dict, started: float) -> dict:
    marks: dict[str, float] = {}
    if spec.get("profile"):
        import cProfile
        out = asyncio.run(_restart(spec, marks, cProfile.Profile()))
    else:
        out = asyncio.run(_restart(spec, marks))
    stages = ["imports", "construct", "start", "connected", "paid"]
    out["restart_s"] = {stage: round(marks[stage] - (marks[stages[i - 1]] if i else started), 4)
                        for i, stage in enumerate(stages)}
    out["restart_s"]["node_to_first_payment"] = round(marks["paid"] - marks["imports"], 4)
    out["stop_s"] = round(marks["stop_s"], 4)
    return out


def _own(stats, total: float, calls: int, n: int = 12) -> list[dict]:
    """The functions with the most own time (waiting in epoll included: the peer's share)."""
    rows = [{"function": _name(file, line, name), "calls_per_call": round(ncalls / calls, 2),
             "own_us_per_call": round(tottime / calls * 1e6, 1), "share": round(tottime / total, 3)}
            for (file, line, name), (_, ncalls, tottime, _, _) in stats.stats.items()]
    rows.sort(key=lambda r: r["share"], reverse=True)
    return rows[:n]


def _name(file: str, line: int, name: str) -> str:
    return f"{file.rsplit('/src/', 1)[-1].rsplit('site-packages/', 1)[-1].rsplit('/lib/python3.11/', 1)[-1]}:{line}({name})"


def _top(stats, total: float, n: int = 14) -> list[dict]:
    """The functions of perun (and what they call most) with the most cumulative time."""
    rows = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():
        if "/perun/" in file or "sqlite3" in name or "keccak" in name or "abi" in file:
            rows.append({"function": _name(file, line, name),
                         "calls": calls, "cumulative_s": round(cumtime, 4), "own_s": round(tottime, 4),
                         "share_of_restart": round(cumtime / total, 3)})
    rows.sort(key=lambda r: r["cumulative_s"], reverse=True)
    return rows[:n]


# ---------------------------------------------------------------------- the builder (parent)


def start_bob(data: Path, key_file: Path, url: str, contract: str, concurrency: int) -> tuple[subprocess.Popen, int]:
    """Bob's `perun node`, as its operator would run it (it reads the chain every second), but
    for accepting 2 x `concurrency` openings in flight from one peer; and the port it listens on."""
    from benchmarks import updates  # here: the measured child imports only what a node does

    return updates.start_bob(data, key_file, url, contract,
                             options=("--max-pending-proposals", str(max(2 * concurrency, 16))))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def grow(key: bytes, chain, contract: str, db: Path, bob: tuple[str, int], want: int,
               concurrency: int) -> tuple[bytes | None, dict]:
    """Opens channels from Alice's node (in this process) with Bob until it holds `want`; returns
    the first channel opened now (if any) and what the openings took."""
    from perun import errors
    from perun.node import Node
    async with Node(key, chain, contract, db, poll_interval=0.05, name="alice") as alice:
        try:  # redialled, if the store remembers where Bob listens (a run with --dir starts him on another port)
            await alice.wait_connected(bob[0], 5 if alice.runtime.peers.remembers(bob[0]) else 0)
        except errors.PeerTimeout:
            await alice.connect(bob[0], "127.0.0.1", bob[1])
        have = len(alice.channels())
        todo = want - have
        start = last = time.perf_counter()
        first = None
        if have == 0:  # the channel paid on, first and alone
            first = await alice.open(bob[0], PAYING_DEPOSIT, 0, 3600)
        slots = asyncio.Semaphore(concurrency)
        opened = 1 if first else 0

        async def one() -> None:
            nonlocal opened, last
            async with slots:
                await alice.open(bob[0], BULK_DEPOSIT, 0, 3600, timeout=600)
            opened += 1
            now = time.perf_counter()
            if opened % 500 == 0 or opened == todo or now - last > 30:
                last = now
                print(f"    {have + opened:>6,} channels open ({opened / (now - start):.0f} openings/s)", flush=True)

        await asyncio.gather(*(one() for _ in range(todo - opened)))
        seconds = time.perf_counter() - start
        assert len(alice.channels()) == want, len(alice.channels())
        return first, {"opened": todo, "seconds": round(seconds, 1),
                       "openings_per_s": round(todo / seconds, 1) if todo else None}


def restart(spec: dict) -> dict:
    """Runs the node measured in a process of its own; returns its report and the wall time from
    the process's start to its first payment."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    spawned = time.time()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--child", json.dumps(spec)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"the restarted node failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["restart_s"]["process_to_first_payment"] = round(out.pop("paid_at") - spawned, 4)
    return out


def medians(runs: list[dict]) -> dict:
    """One report of several restarts of the same node: each figure the median of the runs'
    (another helper or test on the machine moves single runs by tens of percent); `runs` keeps
    each run's main figures."""
    out = dict(runs[0])
    for key in ("restart_s", "poll_quiet", "poll_new_block", "update"):
        out[key] = {k: statistics.median(r[key][k] for r in runs) for k in runs[0][key]}
    for key in ("vmrss_mb", "vmhwm_mb", "stop_s"):
        out[key] = statistics.median(r[key] for r in runs)
    out["runs"] = [{"process_to_first_payment_s": r["restart_s"]["process_to_first_payment"],
                    "node_to_first_payment_s": r["restart_s"]["node_to_first_payment"],
                    "poll_quiet_p50_ms": r["poll_quiet"]["p50_ms"], "poll_new_block_p50_ms": r["poll_new_block"]["p50_ms"],
                    "update_p50_ms": r["update"]["p50_ms"]} for r in runs]
    return out


class StatefulAnvil:
    """anvil on a free port: its chain loaded from the state file `load` if given, and written to
    `dump` when it stops if given (anvil's --load-state, --dump-state). Not --state, which does
    both on one file: a reloaded chain, dumped again, lost its block 0 (anvil keeps a bounded
    block history), and the node took the changed genesis for a reset."""

    def __init__(self, load: Path | None = None, dump: Path | None = None) -> None:
        from perun.chain.anvil import Anvil
        options = [*(["--load-state", str(load)] if load else []), *(["--dump-state", str(dump)] if dump else [])]
        self.node = Anvil(startup_timeout=120, options=options)
        self.url = self.node.url

    def __enter__(self) -> StatefulAnvil:
        return self

    def __exit__(self, *exc: object) -> None:
        self.node.stop()


def _stores(src: Path, dst: Path) -> None:
    """Copies Alice's store and Bob's data directory from `src` to `dst`, over what is there."""
    for suffix in ("", "-wal", "-shm"):
        (dst / f"alice.db{suffix}").unlink(missing_ok=True)
        if (src / f"alice.db{suffix}").exists():
            shutil.copy2(src / f"alice.db{suffix}", dst / f"alice.db{suffix}")
    shutil.rmtree(dst / "bob", ignore_errors=True)
    shutil.copytree(src / "bob", dst / "bob", ignore=shutil.ignore_patterns("*.sock", "*.lock"))


def _read(db: Path, sql: str, *args: object) -> Any:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(sql, args).fetchone()
    return row[0] if row else None


def store_channels(db: Path) -> int:
    """How many payment channels Alice's store holds (0 before it exists)."""
    return _read(db, "SELECT count(*) FROM channels") if db.exists() else 0


def store_size(db: Path) -> dict[str, int]:
    return {name: (db.parent / (db.name + suffix)).stat().st_size
            for name, suffix in (("db_bytes", ""), ("wal_bytes", "-wal"))
            if (db.parent / (db.name + suffix)).exists()}


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 10000],
                        help="numbers of channels, ascending (default 10 1000 10000)")
    parser.add_argument("--concurrency", type=int, default=64, help="openings at once (default 64)")
    parser.add_argument("--payments", type=int, default=500, help="sequential payments timed at each size (default 500)")
    parser.add_argument("--polls", type=int, default=200, help="polls timed at each size and kind (default 200)")
    parser.add_argument("--restarts", type=int, default=3,
                        help="measured restarts at each size, each in a process of its own: medians (default 3)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled restart")
    parser.add_argument("--dir", help="keep the chain (anvil's state), the stores and the keys in DIR, and reuse "
                        "what an earlier run kept there: its channels need not be opened again (default: a "
                        "temporary directory, everything built anew)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the node measured: a JSON spec
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like an exception, so that anvil and the nodes this run started are stopped.
    signal.signal(signal.SIGTERM, _terminated)
    if args.child:
        started = time.perf_counter()
        print(json.dumps(child(json.loads(args.child), started)))
        return
    if args.sizes != sorted(args.sizes):
        parser.error("--sizes must be ascending")

    from eth_account import Account

    from perun import keystore
    from perun.chain.backend import ETHER, RpcChain
    from perun.chain.deploy import deploy

    results, builds = [], []
    work = Path(args.dir) if args.dir else None
    snapshot = work / "snapshot" if work else None
    reuse = snapshot is not None and (snapshot / "anvil-state.json").exists()
    if work is not None and not reuse and work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work} holds no finished run to measure again: empty it, or name another --dir")
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        manifest_file = work / "manifest.json"
        db = work / "alice.db"
        if reuse:
            # Each run starts from the chain and the stores as the run that built them left them.
            _stores(snapshot, work)
            anvil = stack.enter_context(StatefulAnvil(load=snapshot / "anvil-state.json"))
        else:
            anvil = stack.enter_context(StatefulAnvil(dump=work / "anvil-state.json" if args.dir else None))
        chain = RpcChain(anvil.url)
        if not reuse:
            alice, bob = Account.create(), Account.create()
            contract = deploy(chain, chain.dev_accounts[0]).payment_contract
            for account in (alice, bob):
                chain.fund(account.address, 1000 * ETHER)
            keystore.import_key(work / "bob.json", bob.key.hex(), PASSWORD)
            manifest = {"alice_key": bytes(alice.key).hex(), "bob_key": bytes(bob.key).hex(), "contract": contract,
                        "paying": None}  # throwaway keys of this local chain
            manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
        else:
            manifest = json.loads(manifest_file.read_text())
            alice, bob = Account.from_key(manifest["alice_key"]), Account.from_key(manifest["bob_key"])
            contract = manifest["contract"]
            have = store_channels(db)
            if _read(db, "SELECT value FROM meta WHERE key = 'genesis'") != chain.genesis_hash():
                raise SystemExit(f"the chain anvil loaded from {snapshot} has another block 0 than Alice's store knows: "
                                 "empty the directory and build anew")
            args.sizes = [have]
            print(f"reusing {work}: the chain and the stores that an earlier run left, {have:,} channels; measuring "
                  "them again", flush=True)
        proc, port = start_bob(work / "bob", work / "bob.json", anvil.url, contract, args.concurrency)
        try:
            for n in args.sizes:
                have = store_channels(db)
                if have > n:
                    print(f"{n:,} channels: skipped, Alice's store holds {have:,} already", flush=True)
                    continue
                # With nothing to open, this only tells Alice's store where Bob listens now.
                print(f"{n:,} channels: opening {n - have:,} from Alice's node ...", flush=True)
                first, build = asyncio.run(grow(bytes(alice.key), chain, contract, db, (bob.address, port), n,
                                                args.concurrency))
                if manifest["paying"] is None:
                    if first is None:
                        raise SystemExit(f"{work} lost the channel paid on (an earlier run stopped early): "
                                         "start with another --dir")
                    manifest["paying"] = first.hex()
                manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
                builds.append({"channels": n, **build})
                spec = {"rpc": anvil.url, "key": manifest["alice_key"], "contract": contract, "db": str(db),
                        "bob": bob.address, "channel": manifest["paying"], "polls": args.polls,
                        "payments": args.payments}
                print(f"{n:,} channels: restarting Alice's node in a process of its own and measuring, "
                      f"{args.restarts} times ...", flush=True)
                out = medians([restart(spec) for _ in range(args.restarts)])
                out.update(store_size(db))
                out["channels_total"] = n
                if not args.no_profile:
                    print(f"{n:,} channels: once more under cProfile ...", flush=True)
                    profiled = restart({**spec, "profile": True})
                    out["restart_profile"] = profiled["profile"]
                    out["poll_profile"] = profiled["poll_profile"]
                    out["update_profile"] = profiled["update_profile"]
                results.append(out)
                r = out["restart_s"]
                print(f"    restart {r['process_to_first_payment']:.2f} s, RSS {out['vmrss_mb']:.0f} MB, "
                      f"poll {out['poll_quiet']['p50_ms']:.2f} ms, update p50 {out['update']['p50_ms']:.3f} ms",
                      flush=True)
        finally:
            stop(proc)
    if args.dir and not reuse and results:  # anvil stopped and wrote its state: keep it with the stores
        snapshot.mkdir()
        (work / "anvil-state.json").rename(snapshot / "anvil-state.json")
        _stores(work, snapshot)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "chain": "anvil, a block per transaction", "peers": "one (every channel with Bob)",
              "builds": builds, "results": results}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)


def print_table(report: dict) -> None:
    results = report["results"]
    head = f"{'':44}" + "".join(f"{r['channels_total']:>12,}" for r in results)
    print()
    print(f"{'channels (one peer, all open)':44}" + head[44:])

    def row(label: str, values: list[str]) -> None:
        print(f"{label:44}" + "".join(f"{v:>12}" for v in values))

    row("restart: process start to first payment, s", [f"{r['restart_s']['process_to_first_payment']:.2f}" for r in results])
    row("  its runs, min-max, s", [f"{min(x['process_to_first_payment_s'] for x in r['runs']):.2f}-"
                                   f"{max(x['process_to_first_payment_s'] for x in r['runs']):.2f}" for r in results])
    row("  of which imports, s", [f"{r['restart_s']['imports']:.2f}" for r in results])
    row("  Node(): store opened, records loaded, s", [f"{r['restart_s']['construct']:.3f}" for r in results])
    row("  start(): first poll, listening, s", [f"{r['restart_s']['start']:.3f}" for r in results])
    row("  connected to the peer, s", [f"{r['restart_s']['connected']:.3f}" for r in results])
    row("  first payment (after Reestablish), s", [f"{r['restart_s']['paid']:.3f}" for r in results])
    row("restart: Node() to first payment, s", [f"{r['restart_s']['node_to_first_payment']:.2f}" for r in results])
    row("RSS after the first payment, MB", [f"{r['vmrss_mb']:.0f}" for r in results])
    row("store on disk (db + WAL), MB",
        [f"{(r.get('db_bytes', 0) + r.get('wal_bytes', 0)) / 2**20:.1f}" for r in results])
    row("poll, no new block, p50 ms", [f"{r['poll_quiet']['p50_ms']:.3f}" for r in results])
    row("poll, an empty new block, p50 ms", [f"{r['poll_new_block']['p50_ms']:.3f}" for r in results])
    row("update on one channel, p50 ms", [f"{r['update']['p50_ms']:.3f}" for r in results])
    row("update on one channel, p99 ms", [f"{r['update']['p99_ms']:.3f}" for r in results])
    row("sequential updates/s", [f"{r['update']['updates_per_s']:,}" for r in results])
    row("stop, s", [f"{r['stop_s']:.3f}" for r in results])
    builds = {b["channels"]: b for b in report["builds"]}
    row("openings to reach it (through the API), /s",
        [f"{builds[r['channels_total']]['openings_per_s'] or '-'}" for r in results])
    r = results[-1] if results else {}
    if r.get("restart_profile"):
        n = f"{r['channels_total']:,}"
        print(f"\nwith {n} channels, where the restart goes, from Node() to the first payment (cProfile, "
              "cumulative; the profile slows what it times):")
        for p in r["restart_profile"][:10]:
            print(f"  {p['share_of_restart']:>6.1%}  {p['cumulative_s']:>7.3f} s  {p['calls']:>8,} calls  {p['function']}")
        for key, what, unit in (("poll_profile", "a poll on a quiet chain", "poll"),
                                ("update_profile", "a sequential payment", "payment")):
            print(f"with {n} channels, where {what} goes (cProfile, own time per {unit}; epoll: waiting):")
            for p in r[key][:8]:
                print(f"  {p['share']:>6.1%}  {p['own_us_per_call']:>9,.1f} µs  {p['calls_per_call']:>8,} calls  "
                      f"{p['function']}")
    print(f"\n({report['machine']}; {report['chain']}; {report['peers']}; written to {OUT})")


if __name__ == "__main__":
    main()
