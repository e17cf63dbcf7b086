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
  a direct payment channel between them in the same process, for comparison.

Every update and every half is durably stored by each node (SQLite WAL, synchronous=FULL) before
the call that made it returns. It prints a table and writes benchmarks/virtual.json. Timings
depend on the machine and its load: they are measured here, never asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from eth_account import Account

from benchmarks.updates import pipelined, sequential, summary
from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.core.machine import Stage
from perun.node import Node
from perun.protocols.policy import ACCEPT_ALL
from perun.protocols.virtual import HubPolicy

OUT = Path(__file__).with_name("virtual.json")
DELTA = 3600


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openings", type=int, default=200, help="virtual channels opened and closed (default 200)")
    parser.add_argument("--payments", type=int, default=2000, help="payments per update run (default 2000)")
    parser.add_argument("--window", type=int, default=8, help="payments in flight when pipelined (default 8)")
    args = parser.parse_args(argv)
    accounts = {name: Account.create() for name in ("alice", "ingrid", "bob")}
    with tempfile.TemporaryDirectory() as tmp_name, Anvil() as anvil:
        chain = RpcChain(anvil.url)
        deployment = deploy(chain, chain.dev_accounts[0])
        for account in accounts.values():
            chain.fund(account.address, 100 * ETHER)
        keys = {name: bytes(account.key) for name, account in accounts.items()}
        results = asyncio.run(triangle(chain, deployment, keys, Path(tmp_name), args.openings, args.payments,
                                       args.window))
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "results": results}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'run':40} {'updates/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        rate = f"{r['updates_per_s']:,}" if "updates_per_s" in r else f"{r['transactions']} tx"
        print(f"{r['run']:40} {rate:>10} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    print(f"({report['machine']}; three nodes in one process; written to {OUT})")


if __name__ == "__main__":
    main()
