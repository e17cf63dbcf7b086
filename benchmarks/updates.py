"""Off-chain updates between two node processes over loopback: updates/s and latency, how far
they are from this machine's floor, and what the transport's encryption costs of them.

`make bench-updates` (python -m benchmarks.updates) starts anvil, deploys, runs two Bobs as
`perun node` processes and Alice's node in this process, opens 9 channels with each Bob, and
times payments from Alice to Bob. Every payment counted is mutually signed, and durably stored
by Bob (SQLite WAL, synchronous=FULL), before its `pay` returns; Alice stores it in her next
group commit (docs/protocol.md §9, "Updates"). Runs:

- sequential: one payment at a time on one channel (latency of a lone update);
- pipelined: up to --window payments in flight on one channel (serialised by version), for a
  window of 8 and of 32;
- 8 channels: one payment at a time on each of 8 channels at once, and up to --channel-window
  payments in flight on each of them.

Next to them, the floor of one sequential update on this machine (benchmarks/floor.py): its
primitives (sign, recover, an fsynced SQLite commit of the node's own rows, a loopback round trip,
the frames' encryption) timed before the runs and after, and what they add up to on the
critical path (2 sign + 2 recover + 1 commit + 1 round trip + crypto) and on the path before
issue 18 (3 commits), each with the ratio of the measured sequential p50 (encrypted) to it.

Each run is made in two modes, on a connection of its own to a Bob of its own: "encrypted", the
transport as it is (every frame ChaCha20-Poly1305), and "plaintext", the same frames with the
per-frame AEAD replaced by an identity stand-in (benchmarks/plaintext.py; the handshake still
runs). The modes alternate within each run, in --rounds blocks each, in the order PE EP PE EP
..., so that the machine's load weighs on both alike; the ratio encrypted / plaintext of p50 and
of updates/s is reported per run. Next to it, what the crypto itself costs an update (an Update
and an UpdateAck, each encrypted once and decrypted once by the two nodes together): its floor,
timed on frames of their real sizes in a hot loop, and its cost in place, from Alice's encrypt and
decrypt calls timed during the runs (each mode's, so that the timing costs both alike). A call in
place costs several times one in the hot loop, its code and data no longer in the caches.

It prints tables and writes benchmarks/updates.json ("results": the encrypted runs, as the
node runs; "plaintext"; "floor": the primitives, the floors and the ratios; "encryption": the
comparison, the crypto's floor and its cost in place). Timings depend on the machine and its
load: they are measured here, never asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from eth_account import Account

from benchmarks import floor as floors
from benchmarks.plaintext import IdentityCipherState, identity_cipher
from perun import control, keystore
from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.node import Node
from perun.wire import noise

OUT = Path(__file__).with_name("updates.json")
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "benchmark"
MODES = ("plaintext", "encrypted")


def start_bob(data: Path, key_file: Path, url: str, contract: str, plaintext: bool = False,
              options: tuple[str, ...] = ()) -> tuple[subprocess.Popen, int]:
    """Bob's `perun node` (with more `options`), and the port it listens on; with `plaintext`,
    through benchmarks.plaintext (the identity stand-in)."""
    module = "benchmarks.plaintext" if plaintext else "perun.cli"
    cmd = [sys.executable, "-m", module, "node", "--data", str(data), "--keystore", str(key_file),
           "--rpc", url, "--contract", contract, "--listen", "127.0.0.1:0", *options]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PERUN_PASSWORD": PASSWORD, "PYTHONPATH": path})
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


async def each_pipelined(alice: Node, cids: list[bytes], n: int, window: int) -> tuple[list[float], float]:
    """n payments, up to `window` in flight on each of `cids` at once."""
    latencies: list[float] = []
    start = time.perf_counter()
    runs = await asyncio.gather(*(pipelined(alice, cid, k, window) for cid, k in zip(cids, parts(n, len(cids)))))
    for run_latencies, _ in runs:
        latencies += run_latencies
    return latencies, time.perf_counter() - start


async def sequential_into(alice: Node, cid: bytes, n: int, latencies: list[float]) -> None:
    for _ in range(n):
        await timed(alice, cid, latencies)


async def each_sequential(alice: Node, cids: list[bytes], n: int) -> tuple[list[float], float]:
    """n payments, one at a time on each of `cids` at once."""
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(sequential_into(alice, cid, k, latencies) for cid, k in zip(cids, parts(n, len(cids)))))
    return latencies, time.perf_counter() - start


def parts(n: int, k: int) -> list[int]:
    """n split into k near-equal whole parts."""
    return [n // k + (i < n % k) for i in range(k)]


Run = Callable[[list[bytes], int], Awaitable[tuple[list[float], float]]]


async def alternated(run: Run, cids: dict[str, list[bytes]], n: int, rounds: int
                     ) -> tuple[dict[str, tuple[list[float], float]], dict[str, list[float]]]:
    """n payments in each mode, in `rounds` blocks each, the modes alternating PE EP PE ...:
    each mode's latencies and seconds, and the ratios encrypted / plaintext of each round (a
    burst of load elsewhere on the machine skews a round or two, not their median)."""
    totals: dict[str, tuple[list[float], float]] = {mode: ([], 0.0) for mode in MODES}
    by_round: dict[str, list[float]] = {"updates_per_s": [], "p50": []}
    for r, k in enumerate(parts(n, rounds)):
        rate, p50 = {}, {}
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            latencies, seconds = await run(cids[mode], k)
            rate[mode], p50[mode] = len(latencies) / seconds, statistics.median(latencies)
            totals[mode] = (totals[mode][0] + latencies, totals[mode][1] + seconds)
        by_round["updates_per_s"].append(round(rate["encrypted"] / rate["plaintext"], 3))
        by_round["p50"].append(round(p50["encrypted"] / p50["plaintext"], 3))
    return totals, by_round


@contextmanager
def timed_ciphers(stats: dict[str, dict[str, list[float]]]) -> Iterator[None]:
    """Counts and times every encrypt and decrypt of this process's transport cipher states (Alice's
    end), the stand-in's as the AEAD's, so that the timing costs both modes alike; undone on leaving."""
    undo = []
    for cls, mode in ((noise.CipherState, "encrypted"), (IdentityCipherState, "plaintext")):
        for name in ("encrypt", "decrypt"):
            undo.append((cls, name, cls.__dict__[name]))
            setattr(cls, name, _timed(cls.__dict__[name], stats[mode].setdefault(name, [])))
    try:
        yield
    finally:
        for cls, name, method in undo:
            setattr(cls, name, method)


def _timed(method: Callable[..., bytes], into: list[float]) -> Callable[..., bytes]:
    def timed_call(self: noise.CipherState, data: bytes, ad: bytes = b"") -> bytes:
        start = time.perf_counter()
        try:
            return method(self, data, ad)
        finally:
            into.append(time.perf_counter() - start)
    return timed_call


def in_place(stats: dict[str, dict[str, list[float]]]) -> dict:
    """The median µs of a call at Alice's end during the runs (the mean counts the calls that the
    scheduler or the collector happened to interrupt), and per update at both ends: an Update and an
    UpdateAck are each encrypted and decrypted once, twice Alice's encrypt + decrypt. "net": the
    AEAD's per update less the stand-in's, what the plaintext runs save."""
    out: dict = {}
    for mode in MODES:
        calls = stats[mode]
        median = {name: statistics.median(t) * 1e6 if t else 0.0 for name, t in calls.items()}
        out[mode] = {"calls": {name: len(t) for name, t in calls.items()},
                     **{f"{name}_us": round(us, 2) for name, us in median.items()},
                     **{f"{name}_mean_us": round(statistics.fmean(t) * 1e6, 2) if t else 0.0
                        for name, t in calls.items()},
                     "us_per_update": round(2 * sum(median.values()), 2)}
    out["net_us_per_update"] = round(out["encrypted"]["us_per_update"] - out["plaintext"]["us_per_update"], 2)
    return out


async def alice_side(chain: RpcChain, contract: str, alice_key: bytes, bobs: dict[str, tuple[str, int, Path]],
                     tmp: Path, n: int, windows: list[int], channel_window: int, rounds: int) -> dict:
    async with Node(alice_key, chain, contract, tmp / "alice.db", poll_interval=0.1, name="alice") as alice:
        cids: dict[str, list[bytes]] = {}
        for mode, (bob, port, _) in bobs.items():
            if mode == "plaintext":  # this connection's cipher states are the stand-in; the other's are real
                with identity_cipher():
                    await alice.connect(bob, "127.0.0.1", port)
            else:
                await alice.connect(bob, "127.0.0.1", port)
            # The stand-in on Alice's end of this connection, and frames that decrypt at Bob's: his end
            # is in the same mode.
            conn = alice.runtime.peers.connection(bob)
            assert isinstance(conn._send, IdentityCipherState) == (mode == "plaintext"), mode
            cids[mode] = list(await asyncio.gather(*(alice.open(bob, 10 * ETHER, 0, 3600) for _ in range(9))))
        for mode in MODES:
            await sequential(alice, cids[mode][0], 200)  # warm-up
        runs: list[tuple[str, Run]] = [("1 channel, sequential", lambda c, k: sequential(alice, c[0], k))]
        for w in windows:
            runs.append((f"1 channel, pipelined (window {w})", lambda c, k, w=w: pipelined(alice, c[0], k, w)))
        runs.append(("8 channels, sequential each", lambda c, k: each_sequential(alice, c[1:], k)))
        runs.append((f"8 channels, pipelined (window {channel_window} each)",
                     lambda c, k: each_pipelined(alice, c[1:], k, channel_window)))
        report: dict = {mode: [] for mode in MODES}
        report["by_round"] = []
        stats: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
        with timed_ciphers(stats):
            for name, run in runs:
                totals, by_round = await alternated(run, cids, n, rounds)
                for mode in MODES:
                    report[mode].append(summary(name, *totals[mode]))
                report["by_round"].append(by_round)
        report["in_place"] = in_place(stats)
        # Each Bob's node holds the same latest state of every channel as Alice's.
        for mode, (_, _, data) in bobs.items():
            bobs_view = {c["channel"]: c for c in control.call(data, "channels")}
            for cid in cids[mode]:
                ours = alice.channel(cid).current
                theirs = bobs_view["0x" + cid.hex()]
                assert int(theirs["version"]) == ours.version and int(theirs["my_balance"]) == ours.balance_bob, theirs
        return report


def compare(encrypted: dict, plaintext: dict, by_round: dict[str, list[float]], floor_us: float,
            in_place_us: float) -> dict:
    """Encrypted / plaintext: over all rounds, the median of the rounds', and each round's."""
    return {
        "run": encrypted["run"],
        "updates_per_s_ratio": round(encrypted["updates_per_s"] / plaintext["updates_per_s"], 3),
        "updates_per_s_ratio_median_of_rounds": round(statistics.median(by_round["updates_per_s"]), 3),
        "updates_per_s_ratio_by_round": by_round["updates_per_s"],
        "p50_ratio": round(encrypted["p50_ms"] / plaintext["p50_ms"], 3),
        "p50_ratio_median_of_rounds": round(statistics.median(by_round["p50"]), 3),
        "p50_ratio_by_round": by_round["p50"],
        "p50_delta_us": round((encrypted["p50_ms"] - plaintext["p50_ms"]) * 1e3, 1),
        "floor_share_of_p50_pct": round(floor_us / (encrypted["p50_ms"] * 1e3) * 100, 2),
        "in_place_share_of_p50_pct": round(in_place_us / (encrypted["p50_ms"] * 1e3) * 100, 2),
    }


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=4000, help="payments per run and mode (default 4000)")
    parser.add_argument("--window", type=int, nargs="+", default=[8, 32],
                        help="payments in flight when pipelined, one run each (default 8 32)")
    parser.add_argument("--rounds", type=int, default=8,
                        help="blocks per run and mode, the modes alternating (default 8)")
    parser.add_argument("--crypto-iterations", type=int, default=20000,
                        help="updates per timing of the crypto floor (default 20000)")
    parser.add_argument("--channel-window", type=int, default=8,
                        help="payments in flight on each of the 8 channels when pipelined (default 8)")
    parser.add_argument("--floor-iterations", type=int, default=2000,
                        help="calls timed of sign, recover and the round trip for the floor, before the runs "
                             "and after (default 2000)")
    parser.add_argument("--floor-commits", type=int, default=500,
                        help="commits timed for the floor, before the runs and after (default 500)")
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like an exception, so that anvil and the Bobs this run started are stopped.
    signal.signal(signal.SIGTERM, _terminated)
    alice = Account.create()
    bob_accounts = {mode: Account.create() for mode in MODES}
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp_name, Anvil() as anvil:
        tmp = Path(tmp_name)
        chain = RpcChain(anvil.url)
        contract = deploy(chain, chain.dev_accounts[0]).payment_contract
        chain.fund(alice.address, 200 * ETHER)  # 9 channels of 10 ETH with each Bob
        for bob in bob_accounts.values():
            chain.fund(bob.address, 100 * ETHER)
        try:
            bobs = {}
            for mode, bob in bob_accounts.items():
                key_file = tmp / f"bob-{mode}.json"
                keystore.import_key(key_file, bob.key.hex(), PASSWORD)
                proc, port = start_bob(tmp / f"bob-{mode}", key_file, anvil.url, contract, mode == "plaintext")
                procs.append(proc)
                bobs[mode] = (bob.address, port, tmp / f"bob-{mode}")
            # The floor's primitives, before the runs and after (the machine's load at both times
            # weighs on it); its commits on the disk the nodes' stores are on.
            before = floors.samples(args.floor_iterations, args.floor_commits, args.crypto_iterations, tmp)
            measured = asyncio.run(alice_side(chain, contract, bytes(alice.key), bobs, tmp, args.payments,
                                              args.window, args.channel_window, args.rounds))
            crypto = floors.crypto_floor(args.crypto_iterations)
            after = floors.samples(args.floor_iterations, args.floor_commits, directory=tmp, crypto=crypto)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
    crypto.pop("aead_times")
    crypto_us = crypto["aead_us_per_update"]
    placed = measured["in_place"]
    placed_us = placed["net_us_per_update"]
    comparison = [compare(e, p, r, crypto_us, placed_us)
                  for e, p, r in zip(measured["encrypted"], measured["plaintext"], measured["by_round"])]
    sequential_p50 = measured["encrypted"][0]["p50_ms"]
    floor = floors.summary(before, after)
    floor["before_runs_us"] = floors.summary(before)["floor_us"]
    floor["after_runs_us"] = floors.summary(after)["floor_us"]
    floor["sequential_p50_ms"] = sequential_p50
    floor["p50_over_floor"] = {k: round(sequential_p50 * 1e3 / us, 2) for k, us in floor["floor_us"].items()}
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "results": measured["encrypted"],
              "plaintext": measured["plaintext"],
              "floor": floor,
              "encryption": {"rounds": args.rounds, "order": "plaintext, encrypted; then encrypted, plaintext; ...",
                             "crypto_floor": crypto, "in_place": placed, "runs": comparison}}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'run':40} {'mode':10} {'updates/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for e, p in zip(measured["encrypted"], measured["plaintext"]):
        for mode, r in (("encrypted", e), ("plaintext", p)):
            print(f"{r['run'] if mode == 'encrypted' else '':40} {mode:10} {r['updates_per_s']:>10,} "
                  f"{r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    print()
    print(f"The floor of one sequential update, its primitives timed in this run on this machine (before the runs "
          f"and after, pooled), next to the measured sequential p50 (encrypted) of {sequential_p50:.3f} ms:")
    for line in floors.table(floor, sequential_p50):
        print("  " + line)
    b, a = floor["before_runs_us"], floor["after_runs_us"]
    print(f"  (the floor before the runs {b['one_fsync'] / 1e3:.3f} ms, after {a['one_fsync'] / 1e3:.3f} ms; with "
          f"3 commits {b['three_commits'] / 1e3:.3f} and {a['three_commits'] / 1e3:.3f} ms)")
    print()
    print(f"{'encrypted / plaintext':40} {'updates/s':^15} {'p50':^27} {'p50 enc-plain':>13}  crypto per update:")
    print(f"{'':40} {'all':>7} {'median':>7} {'all':>7} {'median':>7} {'range':>11} {'':>13}  hot loop, in place"
          " (share of p50)")
    for c in comparison:
        p50s = c["p50_ratio_by_round"]
        spread = f"{min(p50s):.2f}-{max(p50s):.2f}"
        print(f"{c['run']:40} {c['updates_per_s_ratio']:>7.3f} {c['updates_per_s_ratio_median_of_rounds']:>7.3f} "
              f"{c['p50_ratio']:>7.3f} {c['p50_ratio_median_of_rounds']:>7.3f} {spread:>11} "
              f"{c['p50_delta_us']:>+10.1f} µs  {crypto_us:.1f} µs ({c['floor_share_of_p50_pct']:.2f} %), "
              f"{placed_us:.1f} µs ({c['in_place_share_of_p50_pct']:.2f} %)")
    print("(all: over every round; median: of the rounds' ratios; range: of the rounds' p50 ratios)")
    sizes = crypto["frames_bytes"]
    print(f"hot loop: an Update ({sizes['Update']}-byte frame) and an UpdateAck ({sizes['UpdateAck']}-byte frame), "
          f"each encrypted and decrypted once, {crypto_us:.1f} µs per update (the stand-in: "
          f"{crypto['stand_in_us_per_update']:.1f} µs); median of {crypto['repeats']} x {crypto['iterations']:,} updates")
    enc, plain = placed["encrypted"], placed["plaintext"]
    print(f"in place: Alice's encrypt {enc['encrypt_us']:.1f} µs and decrypt {enc['decrypt_us']:.1f} µs a call "
          f"during the runs (medians; the stand-in's {plain['encrypt_us']:.1f} and {plain['decrypt_us']:.1f}), "
          f"twice per update as Bob's end does the same: {enc['us_per_update']:.1f} µs, "
          f"{placed_us:.1f} µs more than the stand-in")
    print(f"({args.rounds} rounds per run and mode, alternating; {report['machine']}; written to {OUT})")


if __name__ == "__main__":
    main()
