"""A `perun watchtower` process for multistate channels (a deployment with MSContract: it runs
MSTower) on anvil, killed with SIGKILL at each of MSTower's crash points in turn and restarted
from its store each time: an item taken and not stored, stored and not acknowledged, and for the
refutation, the registration of a nanocontract and the finalize, the transaction not sent and
mined but not recorded. Bob's node (`perun node --tower`) still gets it his latest channel state
and the latest state of a HashTimeLock Alice paid him through; while Bob is offline, Alice closes
with the initial state and registers the lock unclaimed, and the tower refutes her close,
registers the claimed lock over hers, finalizes and is paid both rewards. Bob gets his latest
outcome minus them. (ms-execute-due and ms-execute-sent need a virtual channel's half: see
the second test.)"""

from __future__ import annotations

import signal

from perun.chain.backend import ETHER
from perun.core.multistate import ChannelState
from perun.protocols.mstower import MSTower
from perun.store import Store
from tests.node.conftest import Deployed
from tests.node.crashing import CrashPlan, events_of, finalized, held_state
from tests.node.processes import Processes
from tests.node.test_crashes_multistate import DELTA, DEPOSITS, LOCKED, PREIMAGE, lock_data
from tests.node.test_crashes_tower import perun

REWARD = ETHER // 100

PLAN = [("tower", point) for point in ("ms-monitor-received", "ms-monitor-stored", "ms-refute-due", "ms-refute-sent",
                                       "ms-register-due", "ms-register-sent", "ms-finalize-due", "ms-finalize-sent")]


def of(cid: str):
    return lambda args: "0x" + args["channelId"].hex() == cid


def test_an_ms_tower_killed_at_each_of_its_steps_still_refutes_registers_and_is_paid(deployed: Deployed,
                                                                                      processes: Processes):
    assert {point for _, point in PLAN + SETTLE_PLAN} == set(MSTower.crash_points)
    chain, ms = deployed.chain, deployed.ms
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
        cid = alice.call("ledger_open", peer=bob.address, deposit=str(DEPOSITS[0]), peer_deposit=str(DEPOSITS[1]),
                         delta=DELTA)["channel"]
        bob.call("wait", channel=cid, stage="open")

        # Channel version 1: Alice locks 1 ETH for Bob. Bob's node hands the tower the channel
        # state: it dies having taken it, then having stored it; Bob's node redials it each time
        # and hands it over again until the tower acknowledges it, then the lock's version 0.
        nid = alice.call("nanocontract_create", channel=cid, app="HashTimeLock", blocked_mine=str(LOCKED),
                         blocked_peer="0", data=lock_data(alice))["nid"]
        plan.died("tower", "ms-monitor-received")
        plan.died("tower", "ms-monitor-stored")
        held = bob.call("wait_towers", channel=cid, version=1, nanocontracts={nid: 0})
        assert held["towers"] == {tower.address: 1}
        # Bob claims the lock (its version 1: 1 ETH released to him); the tower gets that too.
        bob.call("nanocontract_call", channel=cid, nid=nid, fun="claim", z="0x" + PREIMAGE.hex())
        held = bob.call("wait_towers", channel=cid, version=1, nanocontracts={nid: 1})
        assert [(nc["nid"], nc["towers"]) for nc in held["nanocontracts"]] == [(nid, {tower.address: 1})]
        code, out = perun("status", "--data", bob.data, cid)  # what Bob's node shows of his tower
        assert code == 0 and f"tower     {tower.address} holds version 1\n" in out
        assert (f"HashTimeLock, version 1, blocked you 0 ETH, peer 0 ETH\n"
                f"  tower   {tower.address} holds version 1") in out
        watched = plan["tower"].call("status", channel=cid)
        assert (watched["version"], watched["client"], watched["nanocontracts"], int(watched["reward"])) == (
            1, bob.address, {nid: 1}, REWARD)

        # Bob goes offline; Alice stops her node, closes with the initial state and registers
        # the lock at version 0, unclaimed (Bob signed it), behind its back.
        plan.stop("bob")
        plan.stop("alice")
        bob_before = chain.balance(bob.address)
        params, first, bob_signature = held_state(alice, deployed, cid, 0, nid)
        ms.close(alice.account, params, ChannelState.initial(params, bytes.fromhex(cid[2:])))
        ms.register(alice.account, params, first, bob_signature)
        plan.died("tower", "ms-refute-due")  # restarted, it finds the close in the blocks it missed
        plan.died("tower", "ms-refute-sent")  # its refutation mined; restarted, it reads it back
        plan.died("tower", "ms-register-due")  # the lock's registration due over Alice's
        plan.died("tower", "ms-register-sent")
        closing = plan["tower"].call("wait", channel=cid, registered=1)
        assert (closing["stage"], closing["refuted"], closing["registered_version"]) == ("closing", 1, 1)

        chain.advance_time(2 * DELTA + 1)  # past D and past the lock's window
        plan.died("tower", "ms-finalize-due")
        plan.died("tower", "ms-finalize-sent")  # restarted unarmed: it reads its finalize back
        closed = plan["tower"].call("wait", channel=cid, stage="closed")
        assert int(closed["reward_paid"]) == 2 * REWARD
        assert not plan.plan

        code, out = perun("status", "--data", plan["tower"].data, cid[:10])
        assert code == 0 and "stage     closed, version 1 held" in out
        assert "paid      0.02 ETH (20000000000000000 wei) to this tower" in out
        plan["tower"].proc.send_signal(signal.SIGINT)
        assert plan["tower"].wait_exit(20) == 0
    finally:
        plan.close()

    assert [(e["version"], e["by"]) for e in events_of(ms, "CloseRegistered", of(cid))] == [
        (0, alice.address), (1, tower.address)]
    assert [(e["version"], e["by"]) for e in events_of(ms, "NanocontractRegistered", of(cid))] == [
        (0, alice.address), (1, tower.address)]
    paid = sorted((e["nid"].hex(), e["payer"], e["amount"]) for e in events_of(ms, "RewardPaid", of(cid)))
    assert paid == sorted([(bytes(32).hex(), bob.address, REWARD), (nid[2:], bob.address, REWARD)])
    # Bob's latest outcome: his 1 ETH of cash and the 1 ETH the lock released to him, less both rewards.
    bob_latest = DEPOSITS[1] + LOCKED
    assert finalized(ms, cid) == [(1, DEPOSITS[0] - LOCKED, bob_latest - 2 * REWARD)]
    assert chain.balance(bob.address) == bob_before + bob_latest - 2 * REWARD  # Bob sent nothing
    store = Store(tower.data / "tower.db", tower.address, chain.chain_id, deployed.payment_contract)
    try:
        [rec] = store.ms_watched()  # one row: the latest channel and lock states, and what the chain did
    finally:
        store.close()
    assert (rec.version, rec.refuted, rec.closed, rec.reward_paid) == (1, 1, True, 2 * REWARD)
    assert [(n.nid.hex(), n.state.version) for n in rec.nanos] == [(nid[2:], 1)]
    log = (processes.tmp / "tower.log").read_text()
    assert log.count("---- started to die at") == len(PLAN)
    reward = "0.01 ETH (10000000000000000 wei)"
    for line in (f"multistate channel {cid}: took version 1 from {bob.address}",
                 f"nanocontract {nid} of {cid}: took version 0 (reward 0 ETH (0 wei))",
                 f"nanocontract {nid} of {cid}: took version 1 (reward {reward})",
                 f"multistate channel {cid}: a stale close registered version 0 (we hold 1): refuting before",
                 f"nanocontract {nid} of {cid}: a stale registration of version 0 (we hold 1): registering ours",
                 f"multistate channel {cid}: our refutation with version 1 is registered",
                 f"nanocontract {nid} of {cid}: our registration of version 1 is registered",
                 f"multistate channel {cid}: reward of {reward} for the channel state paid to {tower.address}",
                 f"multistate channel {cid}: reward of {reward} for nanocontract {nid} paid to {tower.address}",
                 f"multistate channel {cid}: closed, 0.02 ETH (20000000000000000 wei) paid to this tower"):
        assert line in log, line


SETTLE_PLAN = [("tower", "ms-execute-due"), ("tower", "ms-execute-sent")]
VIRTUAL_DELTA, WINDOW = 600, 1200  # the ledger channels' Δ; γ's window, above it


def test_an_ms_tower_killed_before_and_after_its_settle_still_settles_bobs_half(deployed: Deployed,
                                                                                processes: Processes):
    """γ between Alice and Bob through Ingrid; Bob's node hands his tower the SETTLE of his half ν_b
    with his latest γ state. Both ends offline, Ingrid registers ν_b with γ's opening state; the
    tower dies before sending its SETTLE and once it is mined, and restarted, SETTLEs ν_b with
    Bob's latest γ state once."""
    chain, ms = deployed.chain, deployed.ms
    plan = CrashPlan(processes, SETTLE_PLAN)
    try:
        tower = plan.adopt(processes.start("tower", chain.new_account(10 * ETHER), crash_at="ms-execute-due",
                                           command="watchtower"))
        plan.start(("alice", chain.new_account(10 * ETHER), ()),
                   ("ingrid", chain.new_account(10 * ETHER), ("--hub",)),
                   ("bob", chain.new_account(10 * ETHER), ("--accept-virtual", "--tower",
                                                           f"{tower.address}@127.0.0.1:{tower.port}",
                                                           "--tower-reward", "0.01eth")))
        for dialer, listener in (("alice", "ingrid"), ("ingrid", "bob"), ("alice", "bob")):
            plan.connect(dialer, listener)
        ledgers = []
        for proposer, peer in (("alice", "ingrid"), ("ingrid", "bob")):
            ledgers.append(plan[proposer].call("ledger_open", peer=plan[peer].address, deposit=str(3 * ETHER),
                                               peer_deposit=str(3 * ETHER), delta=VIRTUAL_DELTA)["channel"])
            plan[peer].call("wait", channel=ledgers[-1], stage="open")
        a, b = ledgers
        validity = plan["alice"].call("info")["chain_time"] + 24 * 3600
        gid = plan["alice"].call("virtual_open", ledger=a, peer=plan["bob"].address, ledger_b=b,
                                 deposit=str(ETHER), peer_deposit=str(ETHER), validity=validity,
                                 window=WINDOW)["channel"]
        plan["bob"].call("wait", channel=gid, stage="open")
        paid = plan["alice"].call("pay", channel=gid, amount=str(ETHER // 4))
        version = paid["version"]
        held = plan["bob"].call("wait_towers", channel=gid, version=version)
        assert held["towers"] == {tower.address: version}
        code, out = perun("status", "--data", plan["bob"].data, gid)
        assert code == 0 and f"tower     {tower.address} holds the SETTLE with γ version {version}" in out
        [half] = plan["bob"].call("status", channel=b)["nanocontracts"]
        nid = half["nid"]

        plan.stop("alice")
        plan.stop("bob")
        # Ingrid registers the halves before validity; ν_b's window is over after validity.
        chain.advance_time(validity - VIRTUAL_DELTA - 1 - chain.timestamp())
        plan["ingrid"].call("wait", channel=b, nid=nid, registered=0)
        chain.advance_time(validity + VIRTUAL_DELTA - chain.timestamp())
        plan.died("tower", "ms-execute-due")
        plan.died("tower", "ms-execute-sent")  # restarted unarmed: it reads its SETTLE back
        assert not plan.plan
        executed = [(e["by"], e["version"]) for e in events_of(ms, "NanocontractExecuted",
                                                                  lambda args: "0x" + args["nid"].hex() == nid)]
        assert [by for by, _ in executed] == [tower.address]  # once, by the tower
        watched = plan["tower"].call("status", channel=b)
        assert watched["calls"] == {nid: version}
    finally:
        plan.close()
    log = (processes.tmp / "tower.log").read_text()
    assert f"nanocontract {nid} of {b}: took the SETTLE with γ version {version}" in log
    assert f"nanocontract {nid} of {b}: our SETTLE with γ version {version} is executed" in log
