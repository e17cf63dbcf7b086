"""A virtual channel γ between Alice and Bob through Ingrid: three `perun node` processes on
anvil, killed with SIGKILL at every crash point of γ's opening (the seed's four messages) and of
its fast close (the ends' final update, the final state given to Ingrid, her SETTLE calls and
absorptions of the halves), each victim restarted on its store (docs/protocol.md §11.2). Every
step completes, the three stores agree on every state they share, and the restarted ends still
dispute with their latest ledger states when Ingrid closes the ledger channels with older ones
behind her node's back; the payouts on chain are the latest states'."""

from __future__ import annotations

from perun.chain.backend import ETHER
from tests.node.conftest import Deployed
from tests.node.crashing import (
    CrashPlan,
    answered,
    assert_signed_once,
    close_behind_its_back,
    events_of,
    finalized,
    interrupted,
)
from tests.node.processes import Processes

DELTA = 600  # the ledger channels'
WINDOW = 1200  # γ's, above Δ
LEDGER = 3 * ETHER  # each party's deposit in each ledger channel
CASH = (ETHER, ETHER)  # γ's: Alice's and Bob's
PAID = ETHER // 4  # Alice pays Bob on γ


def triangle(processes: Processes, deployed: Deployed, plan: list[tuple[str, str]]) -> tuple[CrashPlan, str, str]:
    """Alice, Ingrid (a hub) and Bob, started (armed with their first points of `plan`) and
    connected, with ledger channels a = Alice–Ingrid and b = Ingrid–Bob open: (plan, a, b)."""
    chain = deployed.chain
    crashes = CrashPlan(processes, plan)
    crashes.start(("alice", chain.new_account(10 * ETHER), ()), ("ingrid", chain.new_account(10 * ETHER), ("--hub",)),
                  ("bob", chain.new_account(10 * ETHER), ("--accept-virtual",)))
    for dialer, listener in (("alice", "ingrid"), ("ingrid", "bob"), ("alice", "bob")):
        crashes.connect(dialer, listener)
    ledgers = []
    for proposer, peer in (("alice", "ingrid"), ("ingrid", "bob")):
        ledgers.append(crashes[proposer].call("ledger_open", peer=crashes[peer].address, deposit=str(LEDGER),
                                              peer_deposit=str(LEDGER), delta=DELTA)["channel"])
        crashes[peer].call("wait", channel=ledgers[-1], stage="open")
    return crashes, *ledgers


def open_virtual(crashes: CrashPlan, a: str, b: str):
    alice = crashes["alice"]
    validity = alice.call("info")["chain_time"] + 24 * 3600
    return crashes.request("alice", "virtual_open", ledger=a, peer=crashes["bob"].address, ledger_b=b,
                           deposit=str(CASH[0]), peer_deposit=str(CASH[1]), validity=validity, window=WINDOW)


def virtual_agreed(crashes: CrashPlan, gid: str, **reached) -> dict:
    """γ as the three see it once each has reached `reached`; Alice's view."""
    alice, ingrid, bob = (crashes[n].call("wait", channel=gid, **reached) for n in ("alice", "ingrid", "bob"))
    assert (alice["position"], ingrid["position"], bob["position"]) == ("alice", "ingrid", "bob")
    assert (ingrid["version"], ingrid["final"], ingrid["my_balance"]) == (alice["version"], alice["final"], None)
    assert (alice["version"], alice["my_balance"], alice["peer_balance"], alice["final"]) == (
        bob["version"], bob["peer_balance"], bob["my_balance"], bob["final"])
    return alice


def ledger_agreed(crashes: CrashPlan, ledger: str, names: tuple[str, str], **reached) -> dict:
    """Ledger channel `ledger` as both its parties see it (they mirror each other); the first's."""
    mine, theirs = (crashes[n].call("wait", channel=ledger, **reached) for n in names)
    assert (mine["version"], mine["my_cash"], mine["peer_cash"], mine["pending"]) == (
        theirs["version"], theirs["peer_cash"], theirs["my_cash"], 0)
    assert [(nc["nid"], nc["version"], nc["blocked"]) for nc in mine["nanocontracts"]] == [
        (nc["nid"], nc["version"], nc["blocked"][::-1]) for nc in theirs["nanocontracts"]]
    return mine


def settled_in_the_ledgers(crashes: CrashPlan, a: str, b: str, version: int) -> None:
    """γ closed with Alice's payment: its halves absorbed, each ledger channel at `version`."""
    for ledger, names in ((a, ("alice", "ingrid")), (b, ("ingrid", "bob"))):
        seen = ledger_agreed(crashes, ledger, names, version=version)
        assert seen["nanocontracts"] == []
    end_a = crashes["alice"].call("status", channel=a)
    end_b = crashes["bob"].call("status", channel=b)
    assert (end_a["my_cash"], end_a["peer_cash"]) == (str(LEDGER - PAID), str(LEDGER + PAID))
    assert (end_b["my_cash"], end_b["peer_cash"]) == (str(LEDGER + PAID), str(LEDGER - PAID))


def ingrid_cheats_on_both_ledgers(crashes: CrashPlan, deployed: Deployed, a: str, b: str) -> None:
    """Ingrid stops her node and closes each ledger channel with version 1, where γ's half is
    still live; each end's watcher answers with version 2 (γ settled) and finalizes after Δ."""
    chain, ms = deployed.chain, deployed.ms
    crashes.stop("ingrid")
    for ledger in (a, b):
        close_behind_its_back(crashes["ingrid"], deployed, ledger, 1)
    for end, ledger in (("alice", a), ("bob", b)):
        disputed = crashes[end].call("wait", channel=ledger, registered=2)
        assert disputed["stage"] == "closing"
    chain.advance_time(DELTA + 1)
    payouts = {}
    for end, ledger in (("alice", a), ("bob", b)):
        closed = crashes[end].call("wait", channel=ledger, stage="closed")
        payouts[end] = int(closed["my_payout"]), int(closed["peer_payout"])
        registered = [e["version"] for e in events_of(ms, "CloseRegistered",
                                                      lambda args, ledger=ledger: "0x" + args["channelId"].hex() == ledger)]
        assert registered == [1, 2]
    assert payouts == {"alice": (LEDGER - PAID, LEDGER + PAID), "bob": (LEDGER + PAID, LEDGER - PAID)}
    assert finalized(ms, a) == [(2, LEDGER - PAID, LEDGER + PAID)]
    assert finalized(ms, b) == [(2, LEDGER - PAID, LEDGER + PAID)]  # Ingrid is b's Alice
    # Ingrid neither gained nor lost: her two deposits.
    assert payouts["alice"][1] + payouts["bob"][1] == 2 * LEDGER


OPENING = [
    ("alice", "nano-proposed"),  # 1. Alice stores ν_a, dies before sending it
    ("ingrid", "nano-received"),  # 2. Ingrid receives it...
    ("ingrid", "nano-proposed"),  # ...and stores ν_b for Bob, holding ν_a
    ("bob", "nano-received"),  # 3. Bob receives ν_b...
    ("bob", "nano-countersigned"),  # ...and stores his countersignature
    ("ingrid", "nano-acked"),  # 4. Ingrid stores Bob's countersignature...
    ("ingrid", "nano-countersigned"),  # ...and her own on ν_a
    ("alice", "nano-acked"),  # Alice stores it: γ is open
    ("bob", "final-countersigned"),  # the fast close: Bob stores his signature on the final state
]


def test_sigkill_at_each_step_of_a_virtual_opening_then_restart(processes, deployed):
    """Each of the opening's steps kills its node in turn; the restarted nodes carry the opening
    on (Alice repeats ν_a, Ingrid ν_b), and γ opens once at all three. Then Alice pays Bob, and
    closes γ fast while Bob dies countersigning the final state."""
    crashes, a, b = triangle(processes, deployed, OPENING)
    try:
        opening = open_virtual(crashes, a, b)
        for victim, point in OPENING[:8]:
            crashes.died(victim, point)
        interrupted(opening)
        (listed,) = crashes["alice"].call("virtuals")
        gid = listed["channel"]
        opened = virtual_agreed(crashes, gid, stage="open")
        assert (opened["my_balance"], opened["peer_balance"], opened["version"]) == (str(CASH[0]), str(CASH[1]), 0)
        for ledger, names in ((a, ("alice", "ingrid")), (b, ("ingrid", "bob"))):
            funded = ledger_agreed(crashes, ledger, names, version=1)
            (half,) = funded["nanocontracts"]
            assert (half["app"], half["version"]) == ("VirtualChannel", 0)
        crashes.reconnected()

        crashes["alice"].call("pay", channel=gid, amount=str(PAID))
        closing = crashes.request("alice", "virtual_close", channel=gid)
        crashes.died("bob", "final-countersigned")
        answered(closing)  # Alice's node completes the close if Bob is back in time, else later
    finally:
        crashes.close()
    closed = virtual_agreed(crashes, gid, stage="settled")
    assert (closed["version"], closed["final"], closed["my_balance"]) == (2, True, str(CASH[0] - PAID))
    settled_in_the_ledgers(crashes, a, b, version=2)
    assert crashes.reached == OPENING
    assert assert_signed_once(crashes["alice"], crashes["ingrid"], crashes["bob"]) > 0
    ingrid_cheats_on_both_ledgers(crashes, deployed, a, b)


FAST_CLOSE = [
    # The ends sign the final state (Ingrid offline): Alice proposes it...
    ("alice", "final-signed"), ("alice", "final-acked"),
    # ...and gives it to Ingrid (Bob offline from here on).
    ("alice", "virtual-close-sent"), ("ingrid", "virtual-close-stored"),
    # Ingrid settles Alice's half: SETTLE with the final state...
    ("ingrid", "nano-proposed"), ("alice", "nano-received"), ("alice", "nano-countersigned"), ("ingrid", "nano-acked"),
    # ...and absorbs it.
    ("ingrid", "nano-proposed"), ("alice", "nano-received"), ("alice", "nano-countersigned"), ("ingrid", "nano-acked"),
]


def test_sigkill_at_each_step_of_a_fast_close_then_restart(processes, deployed):
    """γ open and paid on, Alice closes it fast, and each step kills its node in turn: the ends'
    final update (Ingrid offline, so that nobody else acts meanwhile), Alice giving the final
    state to Ingrid, Ingrid storing it, then SETTLE and absorption of Alice's half (Bob offline).
    Bob's half settles once he is back."""
    crashes, a, b = triangle(processes, deployed, FAST_CLOSE)  # no first point comes before the close
    try:
        gid = open_virtual(crashes, a, b).result(30)["channel"]
        crashes["alice"].call("pay", channel=gid, amount=str(PAID))
        crashes.stop("ingrid")

        closing = crashes.request("alice", "virtual_close", channel=gid)
        crashes.died("alice", "final-signed")  # stored, not sent
        crashes.died("alice", "final-acked")  # on Bob's countersignature of the final state she sent again
        interrupted(closing)
        assert crashes["bob"].call("status", channel=gid)["final"] is True

        crashes.stop("bob")
        crashes.restart("ingrid")  # armed: Alice's node gives her the final state when it reconnects
        crashes.died("alice", "virtual-close-sent")
        crashes.died("ingrid", "virtual-close-stored")  # when Alice's node gave it again
        crashes.died("ingrid", "nano-proposed")  # SETTLE on ν_a, proposed on her restart
        crashes.died("alice", "nano-received")  # the SETTLE Ingrid sends again
        crashes.died("alice", "nano-countersigned", armed=False)  # she acknowledges it again, unarmed
        crashes.died("ingrid", "nano-acked", restart=False)  # ν_a settled on both sides
        crashes.rearm("alice")  # for the absorption (while Ingrid is down, so that none comes first)
        crashes.restart("ingrid")
        crashes.died("ingrid", "nano-proposed")  # the absorption of ν_a
        crashes.died("alice", "nano-received")
        crashes.died("alice", "nano-countersigned")
        crashes.died("ingrid", "nano-acked")
        half_a = ledger_agreed(crashes, a, ("alice", "ingrid"), version=2)
        assert half_a["nanocontracts"] == []

        crashes.restart("bob")  # Ingrid settles his half too
    finally:
        crashes.close()
    closed = virtual_agreed(crashes, gid, stage="settled")
    assert (closed["version"], closed["final"], closed["my_balance"]) == (2, True, str(CASH[0] - PAID))
    settled_in_the_ledgers(crashes, a, b, version=2)
    assert crashes.reached == FAST_CLOSE
    assert assert_signed_once(crashes["alice"], crashes["ingrid"], crashes["bob"]) > 0
    ingrid_cheats_on_both_ledgers(crashes, deployed, a, b)
