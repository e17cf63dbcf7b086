"""Two `perun node` processes on anvil over loopback TCP; one is killed with SIGKILL at each
step of open, update and close, restarted, and the channel still ends with both nodes agreeing,
the agreed state paid out, and no version signed twice with different contents."""

from __future__ import annotations

import signal
import sqlite3
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from perun import errors
from perun.chain.backend import ETHER
from perun.chain.deploy import deploy
from perun.chain.payment import PaymentContract
from tests.chains import start_dev_chain
from tests.node.processes import Processes

GWEI = 10**9
DEPOSITS = (3 * ETHER, ETHER)


@pytest.fixture(scope="module")
def anvil():
    chain = start_dev_chain()
    try:
        deployment = deploy(chain, chain.dev_accounts[0])
        yield chain, deployment.payment_contract
    finally:
        chain.close()


@pytest.fixture
def procs(anvil, tmp_path):
    chain, contract = anvil
    processes = Processes(chain.url, contract, tmp_path)
    yield processes
    processes.stop_all()


def funded(chain, n):
    return [chain.new_account(10 * ETHER) for _ in range(n)]


def states_signed(db: Path) -> dict[tuple[str, int], tuple[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT version, final, balance_alice, balance_bob FROM states").fetchall()
    return {(v, f): (a, b) for v, f, a, b in rows}


CRASHES = [
    ("alice", "propose-stored"),
    ("bob", "accept-stored"),
    ("alice", "created"),
    ("bob", "confirmed"),
    ("alice", "update-signed"),
    ("alice", "update-sent"),  # sent before Alice's commit of it
    ("bob", "update-received"),
    ("bob", "update-countersigned"),
    ("alice", "ack-received"),  # the payment answered, Alice's commit of it not yet made
    ("alice", "ack-stored"),
    ("alice", "final-signed"),
    ("bob", "final-countersigned"),
    ("alice", "final-acked"),
]


@pytest.mark.parametrize("victim, point", CRASHES, ids=[f"{v}-{p}" for v, p in CRASHES])
def test_sigkill_at_every_step_then_restart(anvil, procs, victim, point):
    chain, contract = anvil
    accounts = dict(zip(("alice", "bob"), funded(chain, 2)))
    nodes = {name: procs.start(name, accounts[name], crash_at=point if name == victim else None)
             for name in ("alice", "bob")}
    alice, bob = nodes["alice"], nodes["bob"]
    alice.call("connect", peer=bob.address, host="127.0.0.1", port=bob.port)

    def channel_id() -> str:
        for node in (alice, bob):
            for channel in node.call("channels"):
                return channel["channel"]
        raise AssertionError("no channel")

    steps = [
        ("open", lambda: alice.call("open", peer=bob.address, deposit=str(DEPOSITS[0]),
                                    peer_deposit=str(DEPOSITS[1]), delta=3600)),
        ("pay", lambda: alice.call("pay", channel=channel_id(), amount=str(GWEI))),
        ("pay", lambda: alice.call("pay", channel=channel_id(), amount=str(GWEI))),
        ("close", lambda: alice.call("close", channel=channel_id())),
    ]
    done: list[str] = []
    crashed = False
    pool = ThreadPoolExecutor(2)
    try:
        died = pool.submit(nodes[victim].wait_exit, 120)
        def restart(failure: errors.PerunError | None = None) -> None:
            nonlocal alice, bob, crashed
            crashed = True
            try:
                code = died.result(30)
            except TimeoutError:
                raise AssertionError(f"a step failed but {victim} did not die: {failure!r}") from None
            assert code == -signal.SIGKILL, f"{victim} exited with {code}"
            # Restart on the same address with the same store; the dialer redials.
            nodes[victim] = procs.start(victim, accounts[victim], port=nodes[victim].port)
            alice, bob = nodes["alice"], nodes["bob"]
            alice.call("wait_peer", peer=bob.address)  # the next steps start once the dialer is back

        for name, step in steps:
            call = pool.submit(step)
            wait([call, died], return_when=FIRST_COMPLETED)
            if died.done() and not crashed:
                restart()
            try:
                call.result(60)
                done.append(name)
            except errors.PerunError as exc:
                # The step the crash interrupted (its node died, or its peer did and it timed
                # out); the nodes settle it after the restart.
                if not crashed:
                    restart(exc)
        assert crashed, f"{point} was never reached"

        cid = channel_id()
        for node in (alice, bob):  # whatever the crash interrupted, the channel opens
            node.call("wait", channel=cid, stage="open,closed", timeout=60)
        alice.call("wait_peer", peer=bob.address)
        if "close" not in done:
            # After signing a final state nobody pays: the crash's step (final-*) or, on a slow
            # machine, the close step that timed out waiting for its acknowledgement signed one.
            if not point.startswith("final"):
                try:
                    alice.call("pay", channel=cid, amount=str(GWEI))
                    done.append("pay")
                except errors.AlreadyFinal:
                    pass
            alice.call("close", channel=cid)
    finally:  # a failure must not wait for `died` (it ends when the fixture stops the nodes)
        pool.shutdown(wait=False, cancel_futures=True)
    final = {}
    for node in (alice, bob):
        final[node.name] = node.call("wait", channel=cid, stage="closed", timeout=60)
    paid_alice, paid_bob = int(final["alice"]["my_payout"]), int(final["alice"]["peer_payout"])
    assert (int(final["bob"]["peer_payout"]), int(final["bob"]["my_payout"])) == (paid_alice, paid_bob)
    events = [e for e in PaymentContract(chain, contract).events()
              if e.name == "CooperativelyClosed" and "0x" + e.args["channelId"].hex() == cid]
    assert [(e.args["balanceAlice"], e.args["balanceBob"]) for e in events] == [(paid_alice, paid_bob)]
    assert paid_alice + paid_bob == sum(DEPOSITS)
    # Each completed payment landed; the interrupted one landed at most once.
    paid = (paid_bob - DEPOSITS[1]) // GWEI
    assert (paid_bob - DEPOSITS[1]) % GWEI == 0
    assert done.count("pay") <= paid <= done.count("pay") + 1
    # Whatever either store holds for a version, the other holds the same (no double signing).
    ours, theirs = states_signed(alice.data / "node.db"), states_signed(bob.data / "node.db")
    for key in ours.keys() & theirs.keys():
        assert ours[key] == theirs[key], key


def test_sigkill_after_a_unilateral_close_then_restart(anvil, procs):
    """Alice dies right after her close is mined, before she records it; restarted, her watcher
    finds the close in the blocks she missed and finalizes after Δ."""
    chain, contract = anvil
    accounts = dict(zip(("alice", "bob"), funded(chain, 2)))
    alice = procs.start("alice", accounts["alice"], crash_at="close-sent")
    bob = procs.start("bob", accounts["bob"])
    alice.call("connect", peer=bob.address, host="127.0.0.1", port=bob.port)
    cid = alice.call("open", peer=bob.address, deposit=str(DEPOSITS[0]), peer_deposit=str(DEPOSITS[1]),
                     delta=3600)["channel"]
    alice.call("pay", channel=cid, amount=str(GWEI))
    with pytest.raises(errors.PerunError):
        alice.call("register", channel=cid)
    assert alice.wait_exit() == -signal.SIGKILL
    alice = procs.start("alice", accounts["alice"], port=alice.port)
    closing = alice.call("wait", channel=cid, stage="closing")
    assert closing["registered_version"] == 1
    chain.advance_time(3601)
    for node in (alice, bob):
        final = node.call("wait", channel=cid, stage="closed")
    assert (int(final["peer_payout"]), int(final["my_payout"])) == (DEPOSITS[0] - GWEI, DEPOSITS[1] + GWEI)
