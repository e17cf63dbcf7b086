"""A `perun watchtower` process on anvil, killed with SIGKILL at each of its crash points in turn
(a Monitor taken and not stored, stored and not acknowledged, a refutation not sent and mined
but not recorded, a finalize not sent and mined but not recorded) and restarted from its store
each time: Bob's node (`perun node --tower`) still gets it his latest state, and while Bob is
offline it refutes Alice's stale close with that state, finalizes and is paid its reward; Bob
gets his latest balance minus the reward."""

from __future__ import annotations

import contextlib
import io
import signal

import pytest

from perun.chain.backend import ETHER
from perun.chain.payment import PaymentContract
from perun.cli import main
from perun.core.channel import PaymentState
from perun.node import TOWER_CRASH_POINTS
from perun.protocols.tower import Tower
from perun.store import Store
from tests.node.conftest import Deployed
from tests.node.crashing import CrashPlan
from tests.node.processes import NodeProcess, Processes

DEPOSITS = (3 * ETHER, ETHER)
PAYMENT = ETHER // 10
REWARD = ETHER // 100
DELTA = 3600

PLAN = [("tower", point) for point in ("monitor-received", "monitor-stored", "refute-due", "refute-sent",
                                       "finalize-due", "finalize-sent")]


def stale_close(alice: NodeProcess, deployed: Deployed, cid: str, version: int) -> PaymentState:
    """Alice, her node stopped, registers the state at `version` from her store, signed by Bob."""
    store = Store(alice.data / "node.db", alice.address, deployed.chain.chain_id, deployed.payment_contract)
    channel_id = bytes.fromhex(cid[2:])
    try:
        params = next(rec.params for rec in store.channels() if rec.channel_id == channel_id)
        signed = next(s for s in store.states(channel_id) if s.state.version == version)
    finally:
        store.close()
    assert signed.sig_bob and alice.account is not None
    PaymentContract(deployed.chain, deployed.payment_contract).close(alice.account, params, signed.state,
                                                                     signed.sig_bob)
    return signed.state


def perun(*args: object) -> tuple[int, str]:
    """`perun ARGS` in this process: its exit code and output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


def test_a_tower_killed_at_each_of_its_steps_still_refutes_and_is_paid(deployed: Deployed, processes: Processes):
    assert {point for _, point in PLAN} == set(Tower.crash_points) < set(TOWER_CRASH_POINTS)
    chain, contract = deployed.chain, PaymentContract(deployed.chain, deployed.payment_contract)
    alice_account, bob_account, tower_account = (chain.new_account(10 * ETHER) for _ in range(3))
    plan = CrashPlan(processes, PLAN)
    try:
        tower = plan.adopt(processes.start("tower", tower_account, crash_at=plan.next_point("tower"),
                                           command="watchtower"))
        plan.start(("alice", alice_account, ()),
                   ("bob", bob_account, ("--tower", f"{tower.address}@127.0.0.1:{tower.port}",
                                         "--tower-reward", "0.01eth")))
        alice, bob = plan["alice"], plan["bob"]
        plan.connect("alice", "bob")
        cid = alice.call("open", peer=bob.address, deposit=str(DEPOSITS[0]), peer_deposit=str(DEPOSITS[1]),
                         delta=DELTA)["channel"]
        bob.call("wait", channel=cid, stage="open")

        # Version 1: Bob's node hands it over; the tower dies having taken it, then having stored
        # it. Bob's node redials it each time and hands it over again until it is acknowledged.
        alice.call("pay", channel=cid, amount=str(PAYMENT))
        plan.died("tower", "monitor-received")
        plan.died("tower", "monitor-stored")
        assert bob.call("wait_towers", channel=cid, version=1)["towers"] == {tower.address: 1}
        for _ in range(2):
            alice.call("pay", channel=cid, amount=str(PAYMENT))
        latest = bob.call("wait_towers", channel=cid, version=3)
        bob_latest = int(latest["my_balance"])
        assert bob_latest == DEPOSITS[1] + 3 * PAYMENT
        watched = plan["tower"].call("status", channel=cid)
        assert (watched["version"], watched["client"], int(watched["reward"]), watched["stage"]) == (
            3, bob.address, REWARD, "watching")

        # Bob goes offline; Alice stops her node and registers version 1 behind its back.
        plan.stop("bob")
        plan.stop("alice")
        bob_before = chain.balance(bob.address)
        stale = stale_close(alice, deployed, cid, 1)
        plan.died("tower", "refute-due")  # restarted, it finds the close in the blocks it missed
        plan.died("tower", "refute-sent")  # its refutation mined; restarted, it reads it back
        closing = plan["tower"].call("wait", channel=cid, registered=3)
        assert (closing["stage"], closing["refuted"], closing["registered_version"]) == ("closing", 3, 3)

        chain.advance_time(DELTA + 1)
        plan.died("tower", "finalize-due")
        plan.died("tower", "finalize-sent")  # restarted unarmed: it reads its finalize back
        closed = plan["tower"].call("wait", channel=cid, stage="closed")
        assert int(closed["reward_paid"]) == REWARD
        assert not plan.plan

        code, out = perun("info", "--data", plan["tower"].data)
        assert code == 0 and f"watchtower {tower.address}" in out and "watching   1 channel(s)" in out
        code, out = perun("status", "--data", plan["tower"].data, cid[:10])
        assert code == 0 and "stage     closed, version 3 held" in out
        assert "paid      0.01 ETH (10000000000000000 wei) to this tower" in out
        plan["tower"].proc.send_signal(signal.SIGINT)
        assert plan["tower"].wait_exit(20) == 0
    finally:
        plan.close()

    registered = [(e.args["version"], e.args["by"]) for e in contract.events()
                  if e.name == "CloseRegistered" and "0x" + e.args["channelId"].hex() == cid]
    assert registered == [(stale.version, alice.address), (3, tower.address)]
    paid = [(e.args["tower"], e.args["payer"], e.args["amount"]) for e in contract.events()
            if e.name == "RewardPaid" and "0x" + e.args["channelId"].hex() == cid]
    assert paid == [(tower.address, bob.address, REWARD)]
    [finalized] = [e.args for e in contract.events()
                   if e.name == "Finalized" and "0x" + e.args["channelId"].hex() == cid]
    assert (finalized["balanceAlice"], finalized["balanceBob"]) == (sum(DEPOSITS) - bob_latest, bob_latest - REWARD)
    assert chain.balance(bob.address) == bob_before + bob_latest - REWARD  # Bob sent nothing
    store = Store(tower.data / "tower.db", tower.address, chain.chain_id, deployed.payment_contract)
    try:
        [rec] = store.watched()  # one row: the latest state, and what the chain did
    finally:
        store.close()
    assert (rec.version, rec.refuted, rec.closed, rec.reward_paid) == (3, 3, True, REWARD)
    log = (processes.tmp / "tower.log").read_text()
    for line in (f"channel {cid}: took version 3 from {bob.address}",
                 f"channel {cid}: a stale close registered version 1 (we hold 3)",
                 f"channel {cid}: our refutation with version 3 is registered",
                 f"channel {cid}: reward of 0.01 ETH (10000000000000000 wei) paid to {tower.address}",
                 f"channel {cid}: closed"):
        assert line in log, line
    assert log.count("---- started to die at") == len(PLAN)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_tower_stops_cleanly_on_a_signal(deployed: Deployed, processes: Processes, sig: signal.Signals):
    tower = processes.start("tower", deployed.chain.new_account(ETHER), command="watchtower")
    assert tower.call("info")["watched"] == 0
    tower.proc.send_signal(sig)
    assert tower.wait_exit(20) == 0
    assert not (tower.data / "control.sock").exists()
