"""Multistate channels between two `perun node` processes on anvil, killed with SIGKILL at every
crash point of the opening and of a nanocontract's creation, call, absorption and registration
(docs/protocol.md §10.2), each victim restarted on its store at once. Whatever was interrupted
completes, both stores hold the same state at every version they share, and the restarted node
still disputes with its latest state: its peer, going behind its own node's back, closes with
an older state signed by the victim, whose watcher replaces it in time; the payout on chain is
the latest state's."""

from __future__ import annotations

from concurrent.futures import Future

from perun.chain.backend import ETHER
from perun.core.apps import ALICE
from perun.core.apps import hashtimelock as htlc
from tests.node.conftest import Deployed
from tests.node.crashing import (
    CrashPlan,
    assert_signed_once,
    close_behind_its_back,
    events_of,
    finalized,
    held_state,
    interrupted,
)
from tests.node.processes import NodeProcess, Processes

DELTA = 3600
DEPOSITS = (3 * ETHER, ETHER)
LOCKED = ETHER  # Alice's payment to Bob, locked in a HashTimeLock
PREIMAGE = bytes(range(32))


def crash_plan(processes: Processes, deployed: Deployed, plan: list[tuple[str, str]]) -> CrashPlan:
    """Alice and Bob, funded, started armed with their first points of `plan`; Alice dials Bob."""
    crashes = CrashPlan(processes, plan)
    crashes.start(*((name, deployed.chain.new_account(10 * ETHER), ()) for name in ("alice", "bob")))
    crashes.connect("alice", "bob")
    return crashes


def open_channel(alice: NodeProcess, bob: NodeProcess) -> str:
    cid = alice.call("ledger_open", peer=bob.address, deposit=str(DEPOSITS[0]), peer_deposit=str(DEPOSITS[1]),
                     delta=DELTA)["channel"]
    bob.call("wait", channel=cid, stage="open")
    return cid


def lock_data(alice: NodeProcess) -> str:
    timeout = alice.call("info")["chain_time"] + 4 * DELTA
    return "0x" + htlc.encode(ALICE, htlc.hashlock_of(PREIMAGE), timeout).hex()


def create_lock(crashes: CrashPlan, cid: str) -> Future:
    return crashes.request("alice", "nanocontract_create", channel=cid, app="HashTimeLock",
                           blocked_mine=str(LOCKED), blocked_peer="0", data=lock_data(crashes["alice"]))


def agreed(alice: NodeProcess, bob: NodeProcess, cid: str, **reached) -> dict:
    """Both nodes' view of channel `cid` once each has reached `reached` (wait's parameters),
    which must mirror each other; Alice's. They are connected again, for what comes next."""
    mine, theirs = (node.call("wait", channel=cid, **reached) for node in (alice, bob))
    alice.call("wait_peer", peer=bob.address)
    assert (mine["version"], mine["my_cash"], mine["peer_cash"], mine["pending"]) == (
        theirs["version"], theirs["peer_cash"], theirs["my_cash"], 0)
    assert [(nc["nid"], nc["version"], nc["blocked"], nc["released"]) for nc in mine["nanocontracts"]] == [
        (nc["nid"], nc["version"], nc["blocked"][::-1], nc["released"][::-1]) for nc in theirs["nanocontracts"]]
    return mine


def stale_close_answered(processes: Processes, deployed: Deployed, cheater: NodeProcess, victim: NodeProcess,
                         cid: str, stale: int, latest: int, payout: tuple[int, int]) -> None:
    """`cheater` stops its node and closes with its state at version `stale`; `victim`'s watcher
    registers `latest` within Δ and finalizes after it, paying out `payout` (Alice, Bob)."""
    chain, ms = deployed.chain, deployed.ms
    assert processes.stop(cheater) == 0
    close_behind_its_back(cheater, deployed, cid, stale)
    answered = victim.call("wait", channel=cid, registered=latest)
    assert (answered["stage"], answered["version"]) == ("closing", latest)
    chain.advance_time(DELTA + 1)
    closed = victim.call("wait", channel=cid, stage="closed")
    mine = 0 if closed["role"] == "alice" else 1
    assert (closed["my_payout"], closed["peer_payout"]) == (str(payout[mine]), str(payout[1 - mine]))
    assert finalized(ms, cid) == [(latest, *payout)]
    assert sum(payout) == sum(DEPOSITS)
    registered = [e["version"] for e in events_of(ms, "CloseRegistered", lambda a: "0x" + a["channelId"].hex() == cid)]
    assert registered == [stale, latest]


def test_sigkill_at_each_step_of_a_multistate_opening_then_restart(processes, deployed):
    """Each step of the opening kills its node in turn, and the restarted nodes carry it on: Alice
    proposes again, Bob accepts again, Bob's watcher confirms, Alice's sees the channel open."""
    crashes = crash_plan(processes, deployed, [("alice", "propose-stored"), ("bob", "accept-stored"),
                                               ("alice", "created"), ("bob", "confirmed")])
    try:
        opening = crashes.request("alice", "ledger_open", peer=crashes["bob"].address, deposit=str(DEPOSITS[0]),
                                  peer_deposit=str(DEPOSITS[1]), delta=DELTA)
        crashes.died("alice", "propose-stored")  # stored, not sent
        crashes.died("bob", "accept-stored")  # on the proposal Alice repeats when she reconnects
        crashes.died("alice", "created")  # on the acceptance Bob repeats: her create is mined
        crashes.died("bob", "confirmed")  # his watcher saw it and confirmed
        interrupted(opening)
    finally:
        crashes.close()
    alice, bob = crashes["alice"], crashes["bob"]
    (listed,) = alice.call("ledgers")
    cid = listed["channel"]
    opened = agreed(alice, bob, cid, stage="open")
    assert (opened["my_cash"], opened["peer_cash"]) == (str(DEPOSITS[0]), str(DEPOSITS[1]))
    created = events_of(deployed.ms, "Initialised", lambda a: "0x" + a["channelId"].hex() == cid)
    assert len(created) == 1

    # The channel works: Alice locks a payment, Bob claims it, Alice absorbs it.
    nid = alice.call("nanocontract_create", channel=cid, app="HashTimeLock", blocked_mine=str(LOCKED),
                     blocked_peer="0", data=lock_data(alice))["nid"]
    bob.call("nanocontract_call", channel=cid, nid=nid, fun="claim", z="0x" + PREIMAGE.hex())
    alice.call("nanocontract_absorb", channel=cid, nid=nid)
    latest = agreed(alice, bob, cid, version=2)
    assert (latest["my_cash"], latest["peer_cash"]) == (str(DEPOSITS[0] - LOCKED), str(DEPOSITS[1] + LOCKED))
    assert assert_signed_once(alice, bob) > 0
    # Alice closes with version 1, where her lock is still unclaimed; Bob's node answers with 2.
    stale_close_answered(processes, deployed, alice, bob, cid, stale=1, latest=2,
                         payout=(DEPOSITS[0] - LOCKED, DEPOSITS[1] + LOCKED))


NANO_PLAN = [
    # Alice creates a lock of 1 ETH for Bob: the proposer dies at the first and last point, the
    # receiver at the middle two.
    ("alice", "nano-proposed"), ("bob", "nano-received"), ("bob", "nano-countersigned"), ("alice", "nano-acked"),
    # Bob claims it with the preimage (a call).
    ("bob", "nano-proposed"), ("alice", "nano-received"), ("alice", "nano-countersigned"), ("bob", "nano-acked"),
    # Alice absorbs it: what it released goes to Bob's cash.
    ("alice", "nano-proposed"), ("bob", "nano-received"), ("bob", "nano-countersigned"), ("alice", "nano-acked"),
]


def test_sigkill_at_each_step_of_a_nanocontract_creation_call_and_absorption_then_restart(processes, deployed):
    crashes = crash_plan(processes, deployed, NANO_PLAN)
    try:
        cid = open_channel(crashes["alice"], crashes["bob"])
        creating = create_lock(crashes, cid)
        for victim, point in NANO_PLAN[:4]:
            crashes.died(victim, point)
        interrupted(creating)
        created = agreed(crashes["alice"], crashes["bob"], cid, version=1)
        (lock,) = created["nanocontracts"]
        assert (lock["version"], lock["blocked"], created["my_cash"]) == (0, [str(LOCKED), "0"],
                                                                          str(DEPOSITS[0] - LOCKED))

        nid = lock["nid"]
        claiming = crashes.request("bob", "nanocontract_call", channel=cid, nid=nid, fun="claim",
                                   z="0x" + PREIMAGE.hex())
        for victim, point in NANO_PLAN[4:8]:
            crashes.died(victim, point)
        interrupted(claiming)
        claimed = agreed(crashes["alice"], crashes["bob"], cid, nid=nid, version=1)
        assert [(nc["version"], nc["blocked"], nc["released"]) for nc in claimed["nanocontracts"]] == [
            (1, ["0", "0"], ["0", str(LOCKED)])]

        absorbing = crashes.request("alice", "nanocontract_absorb", channel=cid, nid=nid)
        for victim, point in NANO_PLAN[8:]:
            crashes.died(victim, point)
        interrupted(absorbing)
    finally:
        crashes.close()
    alice, bob = crashes["alice"], crashes["bob"]
    absorbed = agreed(alice, bob, cid, version=2)
    assert (absorbed["nanocontracts"], absorbed["my_cash"], absorbed["peer_cash"]) == (
        [], str(DEPOSITS[0] - LOCKED), str(DEPOSITS[1] + LOCKED))
    assert crashes.reached == NANO_PLAN
    assert assert_signed_once(alice, bob) > 0
    # Alice closes with version 1, where her lock is unclaimed; Bob's node answers with version 2.
    stale_close_answered(processes, deployed, alice, bob, cid, stale=1, latest=2,
                         payout=(DEPOSITS[0] - LOCKED, DEPOSITS[1] + LOCKED))


def test_sigkill_after_a_registration_is_mined_then_restart(processes, deployed):
    """Alice registers the lock at version 0, unclaimed, behind her node's back; Bob's watcher
    answers with version 1, claimed, and is killed once that registration is mined, before he
    applies its event. Restarted, his watcher finds it in the blocks he missed and registers
    nothing more; the lock pays Bob at the channel's payout."""
    chain, ms = deployed.chain, deployed.ms
    crashes = crash_plan(processes, deployed, [("bob", "nano-registered")])
    try:
        alice, bob = crashes["alice"], crashes["bob"]
        cid = open_channel(alice, bob)
        nid = alice.call("nanocontract_create", channel=cid, app="HashTimeLock", blocked_mine=str(LOCKED),
                         blocked_peer="0", data=lock_data(alice))["nid"]
        bob.call("nanocontract_call", channel=cid, nid=nid, fun="claim", z="0x" + PREIMAGE.hex())
        agreed(alice, bob, cid, nid=nid, version=1)

        assert processes.stop(alice) == 0
        ms.register(alice.account, *held_state(alice, deployed, cid, 0, nid))
        bob = crashes.died("bob", "nano-registered")
    finally:
        crashes.close()
    found = bob.call("wait", channel=cid, nid=nid, registered=1)
    assert [nc["on_chain_version"] for nc in found["nanocontracts"]] == [1]
    registrations = events_of(ms, "NanocontractRegistered", lambda a: "0x" + a["nid"].hex() == nid)
    assert [e["version"] for e in registrations] == [0, 1]  # Bob's restarted node registered nothing again

    # Alice closes with the latest channel state, which lists the lock; after D the registered
    # version decides it: Bob is paid.
    close_behind_its_back(alice, deployed, cid, 1)
    chain.advance_time(DELTA + 1)
    closed = bob.call("wait", channel=cid, stage="closed")
    assert (closed["my_payout"], closed["peer_payout"]) == (str(DEPOSITS[1] + LOCKED), str(DEPOSITS[0] - LOCKED))
    assert finalized(ms, cid) == [(1, DEPOSITS[0] - LOCKED, DEPOSITS[1] + LOCKED)]
    assert [e["version"] for e in events_of(ms, "NanocontractRegistered",
                                            lambda a: "0x" + a["nid"].hex() == nid)] == [0, 1]

