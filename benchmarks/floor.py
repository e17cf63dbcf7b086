"""The physical floor of one off-chain update on this machine: its primitives, timed one by one.

A sequential payment's critical path (docs/protocol.md §9, "Updates") is, in sequence: Alice
signs the new state and sends the Update (her commit of it comes later, off the path); Bob
recovers her signature, signs, commits (the channel's delta and the state with both signatures),
sends the UpdateAck; Alice recovers his signature, and her payment returns (her commit of it runs
behind the answer). That is 2 signatures, 2 recoveries, 1 fsynced SQLite commit and one round
trip, plus the transport's encryption and decryption of the two frames. Before issue 18 it had
3 commits: Alice's proposal, Bob's countersignature, Alice's acknowledgement, each a whole
record. Each primitive here is timed on its own, call by call with perf_counter, and its
median reported:

- `sign_us`: `eip712.sign_state` of a PaymentState never signed before (its EIP-712 digest is
  computed in the call, as each party computes it once per state);
- `recover_us`: `eip712.check_signature`, what the receiver of an Update or UpdateAck runs
  (recovery of the signer and comparison), on a state whose digest is known (cached), as it is
  for the second party's call;
- `commit_us`: one SQLite transaction in WAL mode with synchronous=FULL (src/perun/store.py's
  pragmas and tables), writing what Bob writes on the path: the channel's delta and the signed
  state row. The rows are the node's own: one update is run through perun.core.machine and
  committed by perun.store.Store in scratch stores, read back and written again here;
- `rtt_us`: one round trip over loopback TCP between this process and a child process, asyncio
  streams on both ends as in the node, a length-prefixed frame each way of the sizes of an
  Update and an UpdateAck (with their tags);
- `crypto_floor`: an Update and an UpdateAck encrypted and decrypted once each by the transport's
  CipherState (ChaCha20-Poly1305), in a hot loop.

`floors` adds them up: the path as it is, with one fsync on it (2 sign + 2 recover + 1 commit
+ 1 round trip + crypto), and, for comparison, the path before issue 18 (3 commits). `python -m benchmarks.floor` prints them; bench-updates
prints them next to its measured p50. Times depend on the machine and its load: never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from eth_account import Account

from benchmarks.plaintext import IdentityCipherState
from perun.chain.backend import ETHER
from perun.core import machine
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import Domain, check_signature, sign_state
from perun.core.machine import Role, Stage
from perun.store import SCHEMA, SignedState, Store
from perun.wire import messages as m
from perun.wire import noise

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # any address: the domain's, for the digests
CHAIN_ID = 31337
VERSION = 5000  # the version of the sample update: a channel some thousands of payments old
LENGTH = struct.Struct(">H")  # the transport's frame length prefix (perun.wire.transport)

# How many times each primitive counts on the critical path of one sequential update.
ONE_FSYNC = {"sign": 2, "recover": 2, "commit": 1, "rtt": 1, "crypto": 1}
THREE_COMMITS = {**ONE_FSYNC, "commit": 3}  # the path before issue 18


def median_us(times: list[float]) -> float:
    return statistics.median(times) * 1e6


def _timed(call: Callable[[], object], iterations: int) -> list[float]:
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------- signatures


def _states(n: int) -> list[PaymentState]:
    cid = os.urandom(32)
    return [PaymentState(cid, VERSION + i, 9 * ETHER - i, ETHER + i) for i in range(n)]


def sign_times(iterations: int = 2000) -> list[float]:
    """Seconds of each `sign_state` on a state not signed before (its digest computed in the call)."""
    domain, key = Domain(CHAIN_ID, CONTRACT), bytes(Account.create().key)
    states = iter(_states(iterations))
    return _timed(lambda: sign_state(domain, next(states), key), iterations)


def recover_times(iterations: int = 2000) -> list[float]:
    """Seconds of each `check_signature` (recover the signer, compare), the digest known: each
    state is signed just before it is checked, as the receiver's digest is cached once it signed."""
    domain, account = Domain(CHAIN_ID, CONTRACT), Account.create()
    key = bytes(account.key)
    times = []
    for state in _states(iterations):
        signature = sign_state(domain, state, key)
        start = time.perf_counter()
        check_signature(domain, state, signature, account.address)
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------- commits


def node_rows(directory: Path) -> list[list[tuple[str, tuple]]]:
    """The rows the nodes write for one payment in steady state, commit by commit, as
    perun.store.Store writes them (committed into scratch stores in `directory` and read back):
    Bob's countersignature (on the critical path: a channel delta and the state with both
    signatures), then Alice's commit behind the answer (her delta and the state, and the next
    payment's state with her signature: it joins that commit). Each commit: (table, row) pairs."""
    alice, bob = Account.create(), Account.create()
    domain = Domain(CHAIN_ID, CONTRACT)
    params = Params(alice.address, bob.address, 10 * ETHER, 5 * ETHER, 3600, 12345678901234567890)
    cid = params.channel_id(CHAIN_ID, CONTRACT)
    # Both parties at version VERSION - 1, signed by both, as after some thousands of payments.
    last = PaymentState(cid, VERSION - 1, 9 * ETHER, 6 * ETHER)
    sigs = {"sig_alice": sign_state(domain, last, bytes(alice.key)), "sig_bob": sign_state(domain, last, bytes(bob.key))}
    a0, b0 = (replace(machine.new_record(params, domain, role, Stage.OPEN), current=last, signed=VERSION - 1,
                      reserved=VERSION + machine.RESERVE, **sigs)
              for role in (Role.ALICE, Role.BOB))
    a1, proposal = machine.propose(a0, machine.payment(a0, 1), bytes(alice.key))
    b1, bob_sig = machine.receive_update(b0, proposal.state, proposal.prev, proposal.signature, bytes(bob.key))
    a2, _ = machine.receive_ack(a1, proposal.state.version, bob_sig)
    a3, following = machine.propose(a2, machine.payment(a2, 1), bytes(alice.key))
    stores = {}
    for account, base in ((alice, a0), (bob, b0)):
        store = stores[account.address] = Store(directory / f"{account.address}.db", account.address, CHAIN_ID, CONTRACT)
        store.commit([base])
        store.channels()  # as a running node's store: it knows what it holds
    commits = [(bob, [b1], [SignedState(proposal.state, b1.sig_alice, b1.sig_bob)]),
               (alice, [a3], [SignedState(proposal.state, a2.sig_alice, a2.sig_bob),
                              SignedState(following.state, following.signature, b"")])]
    written = []
    for account, records, states in commits:
        store = stores[account.address]
        before = _rows(store.db)
        store.commit(records, states)
        written.append(sorted(_rows(store.db) - before))
    for store in stores.values():
        store.close()
    return written


def _rows(db: sqlite3.Connection) -> set[tuple[str, tuple]]:
    return {(table, tuple(row)) for table in ("channels", "channel_deltas", "states")
            for row in db.execute(f"SELECT * FROM {table}")}


def row_bytes(commits: list[list[tuple[str, tuple]]]) -> list[int]:
    """The bytes of each commit's rows (their fields; a number counts 8)."""
    return [sum(len(x) if isinstance(x, (bytes, str)) else 8 for _, row in rows for x in row) for rows in commits]


def commit_times(commits: list[list[tuple[str, tuple]]], iterations: int = 600, directory: Path | None = None
                 ) -> list[float]:
    """Seconds of each fsynced commit (WAL, synchronous=FULL, the store's schema) of the rows of
    the commit on the critical path (`node_rows`' first), each commit a new version (the states
    table grows as the node's does). In a scratch database in `directory` (default: a temporary
    one; give one on the disk the node's store is on)."""
    rows = commits[0]
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        try:
            assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() == "wal"
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            times = []
            for i in range(iterations):
                version = str(VERSION + i)
                start = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                for table, row in rows:
                    db.execute(f"INSERT OR REPLACE INTO {table} VALUES ({', '.join('?' * len(row))})",
                               (row[0], version, *row[2:]))
                db.execute("COMMIT")
                times.append(time.perf_counter() - start)
        finally:
            db.close()
    return times


# ---------------------------------------------------------------------- round trip


async def _echo(reply: int) -> None:
    """Answers every length-prefixed frame with one of `reply` bytes (the child's side)."""
    answer = LENGTH.pack(reply) + os.urandom(reply)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = LENGTH.unpack(await reader.readexactly(LENGTH.size))[0]
                await reader.readexactly(length)
                writer.write(answer)
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


async def _round_trips(port: int, request: int, reply: int, iterations: int, warm_up: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frame = LENGTH.pack(request) + os.urandom(request)
    times = []
    try:
        for i in range(warm_up + iterations):
            start = time.perf_counter()
            writer.write(frame)
            length = LENGTH.unpack(await reader.readexactly(LENGTH.size))[0]
            await reader.readexactly(length)
            if i >= warm_up:
                times.append(time.perf_counter() - start)
        assert length == reply
    finally:
        writer.close()
        await writer.wait_closed()
    return times


def frame_sizes() -> tuple[int, int]:
    """The bytes on the wire of an Update and of an UpdateAck (tag included, length prefix not)."""
    update = m.Update(os.urandom(32), VERSION, VERSION - 1, 9 * ETHER, ETHER, False, os.urandom(65)).encode()
    ack = m.UpdateAck(os.urandom(32), VERSION, os.urandom(65)).encode()
    return len(update) + noise.TAGLEN, len(ack) + noise.TAGLEN


def rtt_times(iterations: int = 2000, warm_up: int = 300) -> list[float]:
    """Seconds of each loopback round trip: an Update-sized frame to a child process (asyncio
    streams, as the node), an UpdateAck-sized frame back."""
    request, reply = frame_sizes()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.floor", "--echo", str(reply)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": path})
    try:
        port = int(child.stdout.readline())
        times = asyncio.run(_round_trips(port, request, reply, iterations, warm_up))
    finally:
        child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return times


# ---------------------------------------------------------------------- encryption


def crypto_floor(iterations: int, repeats: int = 5) -> dict:
    """µs per update to encrypt and decrypt its two frames once each (Alice's Update, Bob's
    UpdateAck, of their real sizes), with the transport's CipherState and with the stand-in
    (benchmarks/plaintext.py): the median of `repeats` timings of `iterations` updates each
    ("aead_times": those of the CipherState, seconds per update)."""
    update = m.Update(os.urandom(32), VERSION, VERSION - 1, 9 * ETHER, ETHER, False, os.urandom(65)).encode()
    ack = m.UpdateAck(os.urandom(32), VERSION, os.urandom(65)).encode()

    def per_update(cls: type[noise.CipherState]) -> list[float]:
        out_key, back_key = os.urandom(32), os.urandom(32)
        alice_out, bob_in, bob_out, alice_in = cls(out_key), cls(out_key), cls(back_key), cls(back_key)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(iterations):
                bob_in.decrypt(alice_out.encrypt(update))
                alice_in.decrypt(bob_out.encrypt(ack))
            times.append((time.perf_counter() - start) / iterations)
        return times

    aead, stand_in = per_update(noise.CipherState), per_update(IdentityCipherState)
    return {"frames_bytes": {"Update": len(update) + noise.TAGLEN, "UpdateAck": len(ack) + noise.TAGLEN},
            "iterations": iterations, "repeats": repeats,
            "aead_us_per_update": round(median_us(aead), 2), "stand_in_us_per_update": round(median_us(stand_in), 2),
            "aead_times": aead}


# ---------------------------------------------------------------------- all of it


def floors(primitives: dict[str, float]) -> dict[str, float]:
    """µs of the critical path of one sequential update: as it is (one fsync), and before issue 18
    (3 commits)."""
    return {name: sum(count * primitives[p] for p, count in path.items())
            for name, path in (("one_fsync", ONE_FSYNC), ("three_commits", THREE_COMMITS))}


def samples(iterations: int = 2000, commits: int = 600, crypto_iterations: int = 20000,
            directory: Path | None = None, crypto: dict | None = None) -> dict[str, list[float]]:
    """Each primitive timed: seconds per call (per update for "crypto", one per repeat of its hot
    loop; `crypto`: a `crypto_floor` timed already). The commits in a scratch database in
    `directory` (default: a temporary one)."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        rows = node_rows(Path(tmp))
    crypto = crypto or crypto_floor(crypto_iterations)
    return {"sign": sign_times(iterations), "recover": recover_times(iterations),
            "commit": commit_times(rows, commits, directory), "rtt": rtt_times(iterations),
            "crypto": crypto["aead_times"]}


def summary(*measured: dict[str, list[float]]) -> dict:
    """The medians µs of one or more `samples` pooled (a floor measured before and after a
    benchmark's runs weighs the machine's load at both times), and the floors they add up to."""
    pooled = {name: [t for s in measured for t in s[name]] for name in measured[0]}
    primitives = {name: median_us(times) for name, times in pooled.items()}
    with tempfile.TemporaryDirectory() as tmp:
        commit_bytes = row_bytes(node_rows(Path(tmp)))
    return {"primitives_us": {k: round(v, 2) for k, v in primitives.items()},
            "floor_us": {k: round(v, 1) for k, v in floors(primitives).items()},
            "counts": {"one_fsync": ONE_FSYNC, "three_commits": THREE_COMMITS},
            "samples": {name: len(times) for name, times in pooled.items()},
            "commit_bytes": commit_bytes, "frames_bytes": list(frame_sizes())}


def measure(iterations: int = 2000, commits: int = 600, crypto_iterations: int = 20000,
            directory: Path | None = None) -> dict:
    """Every primitive's median µs on this machine, and the floors."""
    return summary(samples(iterations, commits, crypto_iterations, directory))


DESCRIPTIONS = {
    "sign": "sign (EIP-712 PaymentState, digest included)",
    "recover": "recover (check_signature, digest cached)",
    "commit": "commit (SQLite WAL, synchronous=FULL)",
    "rtt": "loopback round trip (asyncio, 2 processes)",
    "crypto": "encryption: 2 frames sealed and opened",
}


def table(floor: dict, p50_ms: float | None = None) -> list[str]:
    """The primitives and the floors, as printed lines; with the measured p50, the ratios."""
    prims, counts = floor["primitives_us"], floor["counts"]
    notes = {"commit": "channel delta + state row, {} bytes".format(floor["commit_bytes"][0]),
             "rtt": "{}/{}-byte frames".format(*floor["frames_bytes"]), "crypto": "hot loop"}
    lines = [f"{'primitive (median)':46} {'µs':>8} {'path':>6} {'before':>8}"]
    for name, us in prims.items():
        lines.append(f"{DESCRIPTIONS[name]:46} {us:>8.1f} {'x' + str(counts['one_fsync'][name]):>6} "
                     f"{'x' + str(counts['three_commits'][name]):>8}   {notes.get(name, '')}")
    labels = {"one_fsync": "floor, the path: one fsync (2 sign + 2 recover + 1 commit + RTT + crypto)",
              "three_commits": "floor, the path before issue 18 (2 sign + 2 recover + 3 commit + RTT + crypto)"}
    for name, us in floor["floor_us"].items():
        ratio = f"   p50 / floor = {p50_ms * 1e3 / us:.2f}" if p50_ms is not None else ""
        lines.append(f"{labels[name]:77} {us / 1e3:6.3f} ms{ratio}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000,
                        help="calls timed of sign, recover and the round trip (default 2000)")
    parser.add_argument("--commits", type=int, default=600, help="commits timed (default 600)")
    parser.add_argument("--echo", type=int, metavar="REPLY", help=argparse.SUPPRESS)  # the round trip's child
    args = parser.parse_args(argv)
    if args.echo is not None:
        asyncio.run(_echo(args.echo))
        return
    for line in table(measure(args.iterations, args.commits)):
        print(line)


if __name__ == "__main__":
    main()
