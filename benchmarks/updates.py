"""Off-chain updates between two node processes over loopback: updates/s and latency.

`make bench-updates` (python -m benchmarks.updates) starts anvil, deploys, runs Bob as a
`perun node` process and Alice's node in this process, opens 9 channels, and times payments
from Alice to Bob. Every payment counted is mutually signed and durably stored by both nodes
(SQLite WAL, synchronous=FULL) before its `pay` returns. Runs:

- sequential: one payment at a time on one channel (latency of a lone update);
- pipelined: up to --window payments in flight on one channel (serialised by version), for a
  window of 8 and of 32;
- 8 channels: one payment at a time on each of 8 channels at once.

It prints a table and writes benchmarks/updates.json. Timings depend on the machine and its
load: they are measured here, never asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eth_account import Account

from perun import control, keystore
from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.node import Node

OUT = Path(__file__).with_name("updates.json")
PASSWORD = "benchmark"


def start_bob(data: Path, key_file: Path, url: str, contract: str) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "perun.cli", "node", "--data", str(data), "--keystore", str(key_file),
           "--rpc", url, "--contract", contract, "--listen", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PERUN_PASSWORD": PASSWORD})
    line = proc.stdout.readline()
    if not line.startswith("node "):
        proc.kill()
        raise SystemExit(f"bob's node did not start: {line!r}")
    port = int(line.split(" listening on ")[1].split(",")[0].rsplit(":", 1)[1])
    return proc, port


def summary(name: str, latencies: list[float], seconds: float) -> dict:
    ordered = sorted(latencies)
    return {
        "run": name,
        "updates": len(latencies),
        "updates_per_s": round(len(latencies) / seconds),
        "p50_ms": round(statistics.median(ordered) * 1e3, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1e3, 3),
    }


async def timed(alice: Node, cid: bytes, latencies: list[float]) -> None:
    start = time.perf_counter()
    await alice.pay(cid, 1)
    latencies.append(time.perf_counter() - start)


async def sequential(alice: Node, cid: bytes, n: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    start = time.perf_counter()
    for _ in range(n):
        await timed(alice, cid, latencies)
    return latencies, time.perf_counter() - start


async def pipelined(alice: Node, cid: bytes, n: int, window: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    slots = asyncio.Semaphore(window)

    async def one() -> None:
        async with slots:
            await timed(alice, cid, latencies)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return latencies, time.perf_counter() - start


async def alice_side(chain: RpcChain, contract: str, alice_key: bytes, bob: str, port: int, tmp: Path,
                     n: int, windows: list[int]) -> list[dict]:
    async with Node(alice_key, chain, contract, tmp / "alice.db", poll_interval=0.1, name="alice") as alice:
        await alice.connect(bob, "127.0.0.1", port)
        cids = await asyncio.gather(*(alice.open(bob, 10 * ETHER, 0, 3600) for _ in range(9)))
        one, eight = cids[0], cids[1:]
        await sequential(alice, one, 200)  # warm-up
        results = [summary("1 channel, sequential", *await sequential(alice, one, n))]
        for w in windows:
            results.append(summary(f"1 channel, pipelined (window {w})", *await pipelined(alice, one, n, w)))
        latencies: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(sequential_into(alice, cid, n // 8, latencies) for cid in eight))
        results.append(summary("8 channels, sequential each", latencies, time.perf_counter() - start))
        # Bob's node holds the same latest state of every channel.
        bobs = {c["channel"]: c for c in control.call(tmp / "bob", "channels")}
        for cid in cids:
            ours = alice.channel(cid).current
            theirs = bobs["0x" + cid.hex()]
            assert int(theirs["version"]) == ours.version and int(theirs["my_balance"]) == ours.balance_bob, theirs
        return results


async def sequential_into(alice: Node, cid: bytes, n: int, latencies: list[float]) -> None:
    for _ in range(n):
        await timed(alice, cid, latencies)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=4000, help="payments per run (default 4000)")
    parser.add_argument("--window", type=int, nargs="+", default=[8, 32],
                        help="payments in flight when pipelined, one run each (default 8 32)")
    args = parser.parse_args(argv)
    alice, bob = Account.create(), Account.create()
    with tempfile.TemporaryDirectory() as tmp_name, Anvil() as anvil:
        tmp = Path(tmp_name)
        chain = RpcChain(anvil.url)
        contract = deploy(chain, chain.dev_accounts[0]).payment_contract
        for party in (alice, bob):
            chain.fund(party.address, 100 * ETHER)
        key_file = tmp / "bob.json"
        keystore.import_key(key_file, bob.key.hex(), PASSWORD)
        proc, port = start_bob(tmp / "bob", key_file, anvil.url, contract)
        try:
            results = asyncio.run(alice_side(chain, contract, bytes(alice.key), bob.address, port, tmp,
                                             args.payments, args.window))
        finally:
            proc.terminate()
            proc.wait(10)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "results": results}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'run':40} {'updates/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r['run']:40} {r['updates_per_s']:>10,} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    print(f"({report['machine']}; written to {OUT})")


if __name__ == "__main__":
    main()
