"""`perun status PAYMENT_HASH` and the payments table (perun.cli.show): a node's part in a
multi-hop payment as its describe() gives it, with the failure the payer learnt."""

from __future__ import annotations

from perun.cli.show import describe_hop, hop_table
from perun.control.explain import when

HASH, LEDGER = "0x" + "aa" * 32, "0x" + "cc" * 32
BOB = "0x" + "22" * 20
NOW = 1_700_000_000


def leg(amount: int, timeout: int) -> dict:
    return {"channel": LEDGER, "nid": "0x" + "bb" * 32, "amount": str(amount), "timeout": timeout, "released": None}


def test_a_failed_payment_shows_the_hop_that_failed_and_what_to_do():
    payer = {"kind": "multihop", "payment_hash": HASH, "part": "payer", "incoming": None,
             "outgoing": leg(10**17 + 10**14, NOW + 1300), "next_hop": None, "preimage_known": False,
             "settled": False, "outcome": "failed",
             "failure": {"hop": BOB, "index": 0, "code": 0x0101, "reason": "the next hop refused the lock",
                         "advice": "pay again over another route"}}
    assert describe_hop(payer, NOW).splitlines() == [
        f"payment   {HASH} (multi-hop, you are its payer)",
        "stage     failed, preimage not known yet",
        f"failed at hop 0 ({BOB}): the next hop refused the lock; pay again over another route",
        f"outgoing  0.1001 ETH ({10**17 + 10**14} wei) locked in {LEDGER} until {when(NOW + 1300, NOW)}",
    ]


def test_the_table_shows_each_part_with_what_it_locked_and_how_it_stands():
    forwarder = {"kind": "multihop", "payment_hash": HASH, "part": "forwarder", "incoming": leg(1100, NOW + 1300),
                 "outgoing": leg(1000, NOW + 350), "next_hop": BOB, "preimage_known": True, "settled": True,
                 "outcome": "settled"}
    assert describe_hop(forwarder, NOW).splitlines()[-1].endswith(f", to {BOB}")
    header, row = hop_table([forwarder], NOW).splitlines()
    assert header.split() == ["PAYMENT", "PART", "IN", "OUT", "STAGE"]
    assert row.split() == [HASH, "forwarder", "0.0000000000000011", "ETH", "0.000000000000001", "ETH", "settled"]
    assert header.index(" IN") + 3 == row.index(" ETH ") + 4  # amounts right-aligned under their heads
