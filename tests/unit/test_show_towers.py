"""`perun status CHANNEL` on a node with watchtowers (perun.cli.show): what each tower holds of a
payment channel, of a multistate channel and each of its nanocontracts (and the SETTLE of a
virtual channel's half), and of a virtual channel (the γ version of its SETTLE), from the
"towers" fields of the node's describe()."""

from __future__ import annotations

from perun.cli.show import describe_ledger, describe_payment, describe_virtual

T1, T2 = "0x" + "11" * 20, "0x" + "22" * 20
NID, HALF = "0x" + "aa" * 32, "0x" + "bb" * 32
ETH = "0x" + "00" * 20
NOW = 1_700_000_000


def ledger(**extra) -> dict:
    return {"channel": "0x" + "cc" * 32, "peer": "0x" + "33" * 20, "role": "bob", "stage": "open", "version": 4,
            "pending": 0, "my_cash": "1", "peer_cash": "2", "delta": 3600, "token": ETH, "my_payout": None,
            "nanocontracts": [
                {"nid": NID, "app": "HashTimeLock", "version": 1, "blocked": ["0", "0"],
                 "towers": {T1: 1, T2: None}},
                {"nid": HALF, "app": "VirtualChannel", "version": 0, "blocked": ["0", "0"],
                 "towers": {T1: 0, T2: 0}, "tower_calls": {T1: 3, T2: None}},
            ], **extra}


def test_a_multistate_channel_shows_what_each_tower_holds_of_it_and_of_each_nanocontract():
    lines = describe_ledger(ledger(towers={T1: 4, T2: None}), NOW).splitlines()
    start = lines.index(f"tower     {T1} holds version 4")
    assert lines[start:] == [
        f"tower     {T1} holds version 4",
        f"tower     {T2} holds no version yet (since this node started)",
        f"nanocontract {NID}: HashTimeLock, version 1, blocked you 0 ETH, peer 0 ETH",
        f"  tower   {T1} holds version 1",
        f"  tower   {T2} holds no version yet (since this node started)",
        f"nanocontract {HALF}: VirtualChannel, version 0, blocked you 0 ETH, peer 0 ETH",
        f"  tower   {T1} holds version 0",
        f"  tower   {T2} holds version 0",
        f"  tower   {T1} holds the SETTLE with γ version 3",
        f"  tower   {T2} holds no SETTLE yet (since this node started)",
    ]


def test_without_towers_nothing_is_said_of_them():
    shown = ledger()
    for nc in shown["nanocontracts"]:
        nc.pop("towers")
        nc.pop("tower_calls", None)
    assert "tower" not in describe_ledger(shown, NOW)


def test_a_virtual_channel_end_shows_the_gamma_version_of_the_settle_each_tower_holds():
    ch = {"channel": "0x" + "dd" * 32, "position": "bob", "alice": "0x" + "44" * 20, "bob": "0x" + "55" * 20,
          "ingrid": "0x" + "66" * 20, "version": 3, "final": False, "settled": False, "my_balance": "5",
          "peer_balance": "3", "validity": NOW + 100, "window": 600, "token": ETH}
    assert "tower" not in describe_virtual(ch, NOW)
    lines = describe_virtual({**ch, "towers": {T1: 3, T2: None}}, NOW).splitlines()
    assert lines[-2:] == [f"tower     {T1} holds the SETTLE with γ version 3",
                          f"tower     {T2} holds no SETTLE yet (since this node started)"]


def test_a_payment_channel_shows_the_version_each_tower_holds():
    ch = {"channel": "0x" + "ee" * 32, "peer": "0x" + "33" * 20, "role": "alice", "stage": "open", "version": 7,
          "final": False, "pending": 0, "my_balance": "1", "peer_balance": "2", "my_deposit": "1",
          "peer_deposit": "2", "delta": 3600, "token": ETH, "my_payout": None, "towers": {T1: 7, T2: None}}
    lines = describe_payment(ch, NOW).splitlines()
    assert f"tower     {T1} holds version 7" in lines
    assert f"tower     {T2} holds no version yet (since this node started)" in lines
