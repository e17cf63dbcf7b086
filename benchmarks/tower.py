"""A watchtower's costs: its storage per channel as updates accumulate, and its chain poll with
many watched channels.

`make bench-tower` (python -m benchmarks.tower) starts anvil, deploys the contracts, opens one
payment channel between Alice and Bob, and runs a `Watchtower` (perun.node) in this process:

- **storage**: Bob hands the tower versions 1 .. N of the channel (`Monitor`s over the encrypted
  transport, as a node does, up to 32 unanswered), each signed by Alice and with Bob's
  authorisation. After 1, 1,000 and N (default 100,000) updates it records the bytes of the
  tower's row for the channel, the store's size (its file after a WAL checkpoint) and the
  version the tower holds. The tower keeps one row per channel, replaced: the figures stay flat.
- **poll**: the tower restarted on stores of 10 and of 10,000 watched channels, and the time of
  its chain poll (`follower.poll()`) on a quiet chain (no new block) and after an empty block
  each; p50 and p99 of --polls polls of each, and the ratio 10,000 / 10 (the figure to read: an
  absolute time depends on the machine). The other channels are records of states signed by
  their parties, written into the tower's store directly: they are not on chain, which a poll
  with nothing new never looks at (opening 10,000 channels on anvil takes about 17 minutes, see
  bench-scale).

Writes benchmarks/tower.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from eth_account import Account

from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.chain.payment import PaymentContract
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import sign_state
from perun.core.monitoring import Monitoring, sign_authorisation
from perun.core.tower import Watched
from perun.node import Watchtower
from perun.store import Store
from perun.wire import messages as m
from perun.wire.transport import handshake

OUT = Path(__file__).with_name("tower.json")
WINDOW = 32  # Monitors in flight
REWARD = ETHER // 100
DELTA = 3600


def _ms(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3)}


def _monitor(domain, params: Params, state: PaymentState, alice: bytes, bob: bytes, tower: str) -> m.Monitor:
    authorisation = sign_authorisation(domain, Monitoring.of(domain, state, tower, REWARD), bob)
    return m.Monitor.of(params, state, sign_state(domain, state, alice), REWARD, authorisation)


def _sizes(db: Path, cid: bytes) -> dict[str, int]:
    """The tower's row for `cid` and its store, in bytes (the WAL checkpointed into the file)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        row = conn.execute("SELECT length(channel_id) + length(record) FROM watched WHERE channel_id = ?",
                           (cid,)).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM watched").fetchone()[0]
    return {"row_bytes": row, "rows": rows, "store_bytes": db.stat().st_size}


async def storage(chain: RpcChain, contract: PaymentContract, keys: dict[str, bytes], tmp: Path,
                  updates: int) -> list[dict]:
    alice, bob = Account.from_key(keys["alice"]), Account.from_key(keys["bob"])
    params = Params(alice.address, bob.address, 10 * ETHER, 10 * ETHER, DELTA, 1)
    await asyncio.to_thread(contract.create, alice, params)
    await asyncio.to_thread(contract.confirm, bob, params)
    cid = contract.channel_id(params)
    db = tmp / "storage.db"
    marks = sorted({1, min(1000, updates), updates})
    results = []
    async with Watchtower(keys["tower"], chain, contract.address, db, poll_interval=3600.0, name="tower") as tower:
        reader, writer = await asyncio.open_connection("127.0.0.1", tower.port)
        conn = await handshake(reader, writer, keys["bob"], chain.chain_id, contract.address,
                               expected_peer=tower.address)
        try:
            start = time.perf_counter()
            sent = acked = 0
            for mark in marks:
                while acked < mark:
                    while sent < mark and sent - acked < WINDOW:
                        sent += 1
                        state = PaymentState(cid, sent, params.deposit_alice - sent, params.deposit_bob + sent)
                        conn.send(_monitor(contract.domain, params, state, keys["alice"], keys["bob"], tower.address))
                    await conn.drain()
                    answer = await asyncio.wait_for(conn.read(), 30)
                    if not isinstance(answer, m.MonitorAck):
                        raise RuntimeError(f"the tower refused update {acked + 1}: {answer}")
                    acked = answer.version
                results.append({"updates": mark, "held_version": tower.records[cid].version,
                                "seconds": round(time.perf_counter() - start, 2), **_sizes(db, cid)})
                print(f"  after {mark:>7,} updates: row {results[-1]['row_bytes']} B, "
                      f"store {results[-1]['store_bytes']:,} B", flush=True)
        finally:
            conn.close()
    return results


def _fill(db: Path, tower_key: bytes, chain_id: int, contract: PaymentContract, n: int) -> None:
    """`n` watched channels in a tower's store, each with a state signed by its parties."""
    store = Store(db, Account.from_key(tower_key).address, chain_id, contract.address)
    try:
        records = []
        for i in range(n):
            a, b = Account.create(), Account.create()
            params = Params(a.address, b.address, ETHER, ETHER, DELTA, i + 1)
            cid = contract.channel_id(params)
            state = PaymentState(cid, 1, ETHER - 1, ETHER + 1)
            monitoring = Monitoring.of(contract.domain, state, Account.from_key(tower_key).address, 0)
            records.append(Watched(params, cid, b.address, state, sign_state(contract.domain, state, bytes(a.key)),
                                   0, sign_authorisation(contract.domain, monitoring, bytes(b.key))))
        store.commit(records=records)
    finally:
        store.close()


async def polls(chain: RpcChain, contract: PaymentContract, tower_key: bytes, db: Path, n: int) -> dict:
    async with Watchtower(tower_key, chain, contract.address, db, poll_interval=3600.0, name="tower") as tower:
        follower = tower.runtime.follower
        quiet, new_block = [], []
        for _ in range(n):
            start = time.perf_counter()
            await follower.poll()
            quiet.append(time.perf_counter() - start)
        for _ in range(n):
            await asyncio.to_thread(chain.mine)
            start = time.perf_counter()
            await follower.poll()
            new_block.append(time.perf_counter() - start)
        return {"watched": len(tower.records), "poll_quiet": _ms(quiet), "poll_new_block": _ms(new_block)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=100_000, help="updates handed to the tower (default 100,000)")
    parser.add_argument("--channels", type=int, default=10_000, help="watched channels in the large poll (default 10,000)")
    parser.add_argument("--polls", type=int, default=200, help="polls timed of each kind and size (default 200)")
    args = parser.parse_args(argv)
    keys = {name: bytes(Account.create().key) for name in ("alice", "bob", "tower")}
    with tempfile.TemporaryDirectory() as tmp_name, Anvil() as anvil:
        tmp = Path(tmp_name)
        chain = RpcChain(anvil.url)
        contract = PaymentContract(chain, deploy(chain, chain.dev_accounts[0]).payment_contract)
        for name in keys:
            chain.fund(Account.from_key(keys[name]).address, 100 * ETHER)
        print(f"storage: one channel, {args.updates:,} updates handed to the tower", flush=True)
        stored = asyncio.run(storage(chain, contract, keys, tmp, args.updates))
        sizes = {}
        for n in (10, args.channels):
            db = tmp / f"poll-{n}.db"
            print(f"poll: a tower watching {n:,} channels", flush=True)
            _fill(db, keys["tower"], chain.chain_id, contract, n)
            sizes[n] = asyncio.run(polls(chain, contract, keys["tower"], db, args.polls))
    small, large = sizes[10], sizes[args.channels]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "storage": stored,
        "polls": [small, large],
        "ratio_poll_quiet_p50": round(large["poll_quiet"]["p50_ms"] / small["poll_quiet"]["p50_ms"], 2),
        "ratio_poll_new_block_p50": round(large["poll_new_block"]["p50_ms"] / small["poll_new_block"]["p50_ms"], 2),
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'updates handed over':>20} {'row bytes':>10} {'rows':>5} {'store bytes':>12} {'held':>8}")
    for r in stored:
        print(f"{r['updates']:>20,} {r['row_bytes']:>10} {r['rows']:>5} {r['store_bytes']:>12,} {r['held_version']:>8,}")
    print(f"\n{'watched channels':>20} {'poll quiet p50/p99 ms':>22} {'poll new block p50/p99 ms':>26}")
    for r in (small, large):
        print(f"{r['watched']:>20,} {r['poll_quiet']['p50_ms']:>10.3f} / {r['poll_quiet']['p99_ms']:<9.3f} "
              f"{r['poll_new_block']['p50_ms']:>12.3f} / {r['poll_new_block']['p99_ms']:<9.3f}")
    print(f"{'ratio of p50s':>20} {report['ratio_poll_quiet_p50']:>10.2f} {report['ratio_poll_new_block_p50']:>25.2f}")
    print(f"\nwritten to {OUT}")


if __name__ == "__main__":
    main()
