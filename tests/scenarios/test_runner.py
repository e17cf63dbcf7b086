"""The runner's own rules: what stops a run, what a failed expectation records, what the
network relays record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from perun import errors
from perun.scenario import record as r
from perun.scenario.narrator import Narrator
from perun.scenario.party import TowerParty
from perun.scenario.runner import _is_a, run
from perun.wire import messages as m

HEAD = """title: t
parties: {alice: {}, bob: {}}
channels:
  ab: {alice: alice, bob: bob, deposits: [10eth, 5eth]}
steps:
  - open: ab
"""


def play(tmp_path: Path, steps: str) -> tuple[r.Recording, list[str]]:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + steps)
    lines: list[str] = []
    [rec] = run([path], out=lines.append)
    return rec, lines


def test_an_unexpected_failure_stops_the_run_and_names_its_line(tmp_path: Path) -> None:
    rec, lines = play(tmp_path, "  - pay: {from: alice, amount: 11eth}\n  - pay: {from: alice, amount: 1eth}\n")
    assert not rec.passed
    assert rec.error.startswith("line 7: step 2 (pay) failed: BalanceExceeded")
    assert not any("step 3" in line or "3. alice" in line for line in lines)  # step 3 never ran
    ends = [e for e in rec.entries if isinstance(e, r.Step) and e.outcome]
    assert [e.outcome for e in ends] == ["ok", "failed"]


def test_an_expected_error_that_does_not_come_is_a_failed_verdict(tmp_path: Path) -> None:
    rec, _ = play(tmp_path, "  - pay: {from: alice, amount: 1eth}\n    fails: AmountOutOfRange\n"
                            "  - pay: {from: bob, amount: 7eth}\n    fails: AmountOutOfRange\n")
    assert [(v.line, v.passed, v.found) for v in rec.verdicts][0] == (7, False, "expected AmountOutOfRange, but it succeeded")
    assert rec.verdicts[1].passed and rec.verdicts[1].found.startswith("BalanceExceeded")  # an AmountOutOfRange
    assert rec.error is None and not rec.passed


def test_a_failed_assertion_records_expected_found_and_line(tmp_path: Path) -> None:
    rec, lines = play(tmp_path, "  - pay: {from: alice, amount: 1eth}\n  - expect:\n"
                                "      state: {party: bob, version: 1, balances: [9eth, 5eth]}\n")
    version, balances = rec.verdicts
    assert version.passed and (version.line, version.expected, version.found) == (9, "1", "1")
    assert not balances.passed and (balances.expected, balances.found) == ("9 ETH / 5 ETH", "9 ETH / 6 ETH")
    assert "      ✗ bob's stored balances of ab: expected 9 ETH / 5 ETH, found 9 ETH / 6 ETH (line 9)" in lines


def test_the_relays_record_dropped_and_delayed_frames(tmp_path: Path) -> None:
    rec, _ = play(tmp_path, "  - delay: {from: bob, message: UpdateAck, seconds: 0.1}\n"
                            "  - pay: {from: alice, amount: 1eth}\n"
                            "  - pay: {from: alice, amount: 1eth, send: false}\n"
                            "  - expect: {state: {party: bob, version: 1}}\n")
    fates = [(m.sender, m.type, m.fate) for m in rec.messages if m.type in ("Update", "UpdateAck")]
    assert fates == [("alice", "Update", "delivered"), ("bob", "UpdateAck", "delayed"), ("alice", "Update", "dropped")]
    assert rec.passed


def test_held_frames_wait_for_their_release_and_then_arrive_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.replace("alice: {}", "alice: {response_timeout: 0.5}")
                    + "  - hold: {from: alice, message: Update}\n"
                      "  - pay: {from: alice, amount: 1eth}\n    fails: PeerTimeout\n"
                      "  - expect: {state: {party: bob, version: 0}}\n"
                      "  - release: alice\n"
                      "  - expect: {state: {party: bob, version: 1, balances: [9eth, 6eth]}}\n")
    [rec] = run([path], out=lambda line: None)
    assert rec.passed, [v for v in rec.verdicts if not v.passed]
    fates = [(m.sender, m.type, m.fate) for m in rec.messages if m.type in ("Update", "UpdateAck")]
    assert fates[:2] == [("alice", "Update", "delayed"), ("bob", "UpdateAck", "delivered")]
    notes = [e.text for e in rec.entries if isinstance(e, r.Note)]
    assert "the network delivers 1 frame held back from alice" in notes


MS_HEAD = """title: t
parties: {alice: {}, bob: {}}
channels:
  ab: {kind: multistate, alice: alice, bob: bob, deposits: [10eth, 5eth]}
steps:
  - open: ab
"""


def test_a_multistate_channel_off_chain_then_a_stale_close_and_its_recording(tmp_path: Path) -> None:
    path = tmp_path / "ms.yaml"
    path.write_text(MS_HEAD + """\
  - nanocontract: {by: alice, name: pay, app: HashTimeLock, amount: 1eth, preimage: "s", timeout: 600}
  - call: {by: bob, nanocontract: pay, function: claim}
  - absorb: {by: alice, nanocontract: pay}
  - expect:
      state: {party: bob, version: 2, balances: [9eth, 6eth], nanocontracts: []}
      nanocontract: [{name: pay, party: bob, version: 1}, {name: pay, version: 1}]
  - offline: alice
  - offline: bob
  - close: {by: alice, version: 1}
  - register: {by: alice, nanocontract: pay, version: 5}
    fails: StaleVersion
  - online: bob
  - expect:
      events: [Initialising, Initialised, {CloseRegistered: {version: 1, by: alice, cashAlice: 9eth}},
               {CloseRegistered: {version: 2, by: bob}}]
  - offline: bob
  - wait: {deadline: ab, offset: 1}
  - finalize: {by: bob}
  - expect:
      payout: [9eth, 6eth]
      wallets: {alice: -1eth, bob: +1eth}
      stages: {bob: closing}
      held: 0
""")
    lines: list[str] = []
    [rec] = run([path], out=lines.append)
    # The absorbed lock is in nobody's state any more, and it never went to the chain.
    failed = [(v.line, v.what, v.found) for v in rec.verdicts if not v.passed]
    assert failed == [(12, "bob's pay: version", "none (never created, or absorbed)"),
                      (12, "pay on chain: version", "not registered")]
    assert rec.error is None
    summaries = [(m.sender, m.type, m.summary) for m in rec.messages if m.type not in ("Hello", "Auth")]
    assert summaries == [
        ("alice", "ProposeMultistate", "multistate, deposits 10 ETH / 5 ETH, Δ 600 s"),
        ("bob", "AcceptChannel", "ab"),
        ("alice", "NanocontractCreate", "ab v1: creates pay (HashTimeLock), blocking 1 ETH / 0 ETH"),
        ("bob", "NanocontractAck", "ab v1 countersigned"),
        ("bob", "NanocontractCall", "ab pay v1: claim"),
        ("alice", "NanocontractAck", "ab pay v1 countersigned"),
        ("alice", "NanocontractAbsorb", "ab v2: absorbs pay"),
        ("bob", "NanocontractAck", "ab v2 countersigned"),
    ]
    assert [(t.sender, t.function, t.events) for t in rec.transactions] == [
        ("alice", "create", ("Initialising",)), ("bob", "confirm", ("Initialised",)),
        ("alice", "close", ("CloseRegistered(version=1)",)), ("bob", "close", ("CloseRegistered(version=2)",)),
        ("bob", "finalize", ("Finalized(version=2)",))]
    ether = 10**18
    after_create, after_absorb = rec.samples[2], rec.samples[4]
    assert after_create.channels["ab"] == {"alice": 9 * ether, "bob": 5 * ether, "in nanocontracts": ether}
    assert after_absorb.channels["ab"] == {"alice": 9 * ether, "bob": 6 * ether, "in nanocontracts": 0}
    assert rec.channels["ab"].kind == "multistate"
    assert "      → failed as expected (StaleVersion: alice's store holds no version 5 of pay (it has 0, 1))" in lines


def test_a_virtual_channel_refused_by_ingrids_policy_or_by_bob_names_no_half(tmp_path: Path) -> None:
    gamma = "alice: alice, ingrid: ingrid, bob: bob, ledgers: [ai, ib], validity: 3600, window: 1200"
    path = tmp_path / "v.yaml"
    path.write_text(f"""title: t
parties: {{alice: {{}}, ingrid: {{hub: {{capacity: 3eth}}}}, bob: {{accept_virtual: false}}}}
channels:
  ai: {{kind: multistate, alice: alice, bob: ingrid, deposits: [10eth, 10eth]}}
  ib: {{kind: multistate, alice: ingrid, bob: bob, deposits: [10eth, 10eth]}}
virtual:
  blocks-bob: {{{gamma}, deposits: [1eth, 1eth]}}
  too-big: {{{gamma}, deposits: [4eth, 0]}}
  g: {{{gamma}, deposits: [2eth, 0]}}
steps:
  - open: ai
  - open: ib
  - open: blocks-bob
    fails: CHANNEL_REFUSED
  - open: too-big
    fails: CHANNEL_REFUSED
  - open: g
  - pay: {{channel: g, from: alice, amount: 0.5eth}}
  - close: {{channel: g, by: bob}}
  - expect:
      channel: g
      state: {{party: alice, version: 2, balances: [1.5eth, 0.5eth], final: true, settled: true}}
""")
    lines: list[str] = []
    [rec] = run([path], out=lines.append)
    assert rec.passed, lines
    refused_by_bob, refused_by_ingrid = (v.found for v in rec.verdicts[:2])
    assert "Bob's node refused ν_b" in refused_by_bob and "capacity" in refused_by_ingrid
    # Only g's halves were created, and the messages name them (not the refused openings' halves).
    settles = [m.summary for m in rec.messages if m.type == "NanocontractCall"]
    assert sorted(settles) == ["ai g@ai v1: settle with v2 final: 1.5 ETH / 0.5 ETH",
                               "ib g@ib v1: settle with v2 final: 1.5 ETH / 0.5 ETH"]
    assert rec.channels["g"].kind == "virtual" and rec.channels["g"].id.startswith("0x")
    assert rec.samples[-1].channels["g"] == {"alice": 15 * 10**17, "bob": 5 * 10**17}
    assert "      · bob: ingrid settled g: 1.5 ETH / 0.5 ETH" in lines


def test_ledger_channels_closed_cooperatively_one_in_a_dispute_pay_out_the_virtual_channel(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("""title: t
parties: {alice: {}, ingrid: {hub: {}}, bob: {}}
channels:
  ai: {kind: multistate, alice: alice, bob: ingrid, deposits: [10eth, 10eth]}
  ib: {kind: multistate, alice: ingrid, bob: bob, deposits: [10eth, 10eth]}
virtual:
  g: {alice: alice, ingrid: ingrid, bob: bob, ledgers: [ai, ib], deposits: [3eth, 1eth], validity: 3600, window: 1200}
steps:
  - open: ai
  - open: ib
  - open: g
  - pay: {channel: g, from: alice, amount: 1eth}
  - close: {channel: g, by: bob}
  - close: {channel: ai, by: ingrid}
  - cooperative_close: {channel: ai, by: alice}
  - cooperative_close: {channel: ib, by: bob}
  - expect:
      channel: g
      payout: {alice: 9eth, ingrid: 20eth, bob: 11eth}
      wallets: {alice: -1eth, ingrid: 0, bob: +1eth}
      held: 0
""")
    lines: list[str] = []
    [rec] = run([path], out=lines.append)
    assert rec.passed, lines
    # The final states are signed in the report (the frame carries no cash: the channel state's),
    # and the ledger channels' CooperativelyClosed events are γ's payout.
    finals = [(m.sender, m.summary) for m in rec.messages if m.type == "MultistateClose"]
    assert finals == [("alice", "ai v3 final: 9 ETH / 11 ETH"), ("bob", "ib v3 final: 9 ETH / 11 ETH")]
    assert [(t.sender, t.function, t.events) for t in rec.transactions][-3:] == [
        ("ingrid", "close", ("CloseRegistered(version=2)",)),
        ("alice", "cooperativeClose", ("CooperativelyClosed(version=3)",)),
        ("bob", "cooperativeClose", ("CooperativelyClosed(version=3)",))]
    assert "      · alice: ingrid countersigned the final state; paid out 9 ETH / 11 ETH" in lines


def test_towers_are_stopped_after_a_run_that_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    started: list[TowerParty] = []
    start = TowerParty.start

    async def recorded(self: TowerParty, on_kill: Callable[[str, str | None], None]) -> int:
        started.append(self)
        return await start(self, on_kill)

    monkeypatch.setattr(TowerParty, "start", recorded)
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.replace("parties: {alice: {}, bob: {}}",
                                 "towers: {watchtower: {}, spare: {}}\n"
                                 "parties: {alice: {}, bob: {towers: [watchtower, spare], reward: 1gwei}}")
                    + "  - pay: {from: alice, amount: 1eth}\n  - expect: {tower: {watchtower: {version: 1}}}\n"
                      "  - offline: spare\n  - pay: {from: alice, amount: 11eth}\n")
    [rec] = run([path], out=lambda line: None)
    assert rec.error.startswith("line 11: step 5 (pay) failed: BalanceExceeded")  # the run stopped there
    assert rec.towers.keys() == {"watchtower", "spare"} and rec.verdicts[0].passed
    assert [t.name for t in started] == ["watchtower", "spare"]
    assert all(t.node is not None and not t.node.runtime.serving for t in started)  # stopped, as the nodes
    # Bob's node handed version 1 to each tower through its relay, and each acknowledged it.
    assert {(m.sender, m.receiver, m.type) for m in rec.messages if m.type.startswith("Monitor")} == {
        ("bob", "watchtower", "Monitor"), ("watchtower", "bob", "MonitorAck"),
        ("bob", "spare", "Monitor"), ("spare", "bob", "MonitorAck")}


ROUTE = """title: t
parties: {alice: {}, bob: {}, carol: {}}
channels:
  ab: {kind: multistate, alice: alice, bob: bob, deposits: [5eth, 5eth]}
  bc: {kind: multistate, alice: bob, bob: carol, deposits: [5eth, 5eth]}
steps:
  - open: ab
  - open: bc
"""


def test_a_payment_through_a_party_that_does_not_forward_is_refused_and_nothing_stays_locked(tmp_path: Path) -> None:
    """Bob has no `forward`: he refuses Alice's lock, the payment step fails with the wire code,
    and nothing is locked."""
    path = tmp_path / "s.yaml"
    path.write_text(ROUTE + """  - invoice: {by: carol, name: tea, amount: 1eth, expiry: 600}
  - pay_invoice: {from: alice, invoice: tea, route: [ab, bc]}
    fails: CHANNEL_REFUSED
  - expect:
      channel: ab
      state: {party: alice, version: 0, nanocontracts: []}
      payment: {invoice: tea, preimage: [carol], claimed: []}
""")
    [rec] = run([path], out=lambda line: None)
    assert rec.passed, [v for v in rec.verdicts if not v.passed]
    refused, *checks = rec.verdicts
    assert "this node forwards no payments" in refused.found
    assert [v.found for v in checks] == ["0", "none", "carol", "nobody"]
    notes = [e.text for e in rec.entries if isinstance(e, r.Note)]
    assert any(n.startswith("invoice tea: 1 ETH, payment hash 0x") for n in notes)
    assert "route alice → bob → carol: locks 1 ETH for 1 ETH to carol; fees bob 0 ETH" in notes
    assert [(m.sender, m.type) for m in rec.messages if m.type in ("LockOnion", "NanocontractCreate", "Error")] == [
        ("alice", "LockOnion"), ("alice", "NanocontractCreate"), ("bob", "Error")]


def test_a_garbled_failure_reaches_the_payer_unreadable_after_a_payment_by_hand(tmp_path: Path) -> None:
    """Carol fails a lock that delivers less than her invoice; the relay alters her failure, which
    Bob passes on: Alice's payment fails, naming no hop and no code."""
    path = tmp_path / "s.yaml"
    path.write_text(ROUTE.replace("bob: {}", "bob: {forward: {}}") + """  - invoice: {by: carol, name: tea, amount: 1eth}
  - garble: carol
  - pay_invoice: {from: alice, invoice: tea, route: [ab, bc], amount: 0.5eth}
    fails: PaymentFailed
  - expect:
      payment: {invoice: tea, failure: {hop: none, code: none}, outcome: {alice: failed}}
""")
    [rec] = run([path], out=lambda line: None)
    assert rec.passed, [v for v in rec.verdicts if not v.passed]
    assert "unreadable" in rec.verdicts[0].found
    assert [(m.sender, m.fate) for m in rec.messages if m.type == "LockFailure"] == [("carol", "forged"),
                                                                                    ("bob", "delivered")]


def test_a_final_state_by_hand_closes_an_open_channel_and_owed_reads_the_contract(tmp_path: Path) -> None:
    # In Open any version closes at once; the running nodes read the payout they never signed.
    rec, lines = play(tmp_path, "  - pay: {from: alice, amount: 1eth}\n"
                                "  - cooperative_close: {by: bob, version: 7}\n"
                                "  - expect:\n      events: [Initialising, Initialised, {CooperativelyClosed: {version: 7}}]\n"
                                "      payout: [9eth, 6eth]\n      stages: {alice: closed, bob: closed}\n"
                                "      owed: {alice: 1eth}\n")
    assert [t.function for t in rec.transactions][-1] == "cooperativeClose"
    assert [v.passed for v in rec.verdicts] == [True, True, True, True, False]
    assert (rec.verdicts[-1].expected, rec.verdicts[-1].found) == ("1 ETH", "0 ETH")
    assert "   3. bob closes ab cooperatively with a final state at version 7, by hand  (line 8)" in lines


def test_fails_names_a_contract_error_by_its_class_or_by_its_solidity_name() -> None:
    token = errors.ContractRejected({"to": "bob"}, name="TestTokenRecipientBlocked")  # no class of its own
    assert _is_a(token, "TestTokenRecipientBlocked") and _is_a(token, "ContractRejected")
    assert not _is_a(token, "ChannelsWrongPhase")
    stale = errors.CONTRACT_ERRORS["ChannelsStaleVersion"]({"registered": 3, "submitted": 2})
    assert _is_a(stale, "ChannelsStaleVersion") and _is_a(stale, "StaleVersion") and not _is_a(stale, "WrongPhase")


def test_a_virtual_channel_opening_cut_by_a_crash_goes_on_under_its_name(tmp_path: Path) -> None:
    """Ingrid dies with ν_b stored and unsent: the step is cut short, but Alice's stored half names
    γ, so the file names it once Ingrid's restart completes the opening; its fee paid to her."""
    path = tmp_path / "v.yaml"
    path.write_text("""title: t
parties: {alice: {}, ingrid: {hub: {fee: 0.01eth}}, bob: {}}
channels:
  ai: {kind: multistate, alice: alice, bob: ingrid, deposits: [10eth, 10eth]}
  ib: {kind: multistate, alice: ingrid, bob: bob, deposits: [10eth, 10eth]}
virtual:
  g: {alice: alice, ingrid: ingrid, bob: bob, ledgers: [ai, ib], deposits: [3eth, 1eth], validity: 3600, window: 1200,
      fee: 0.01eth}
steps:
  - open: ai
  - open: ib
  - crash: {party: ingrid, at: nano-proposed}
  - open: g
  - restart: ingrid
  - pay: {channel: g, from: alice, amount: 1eth}
  - expect:
      channel: g
      state: {party: bob, version: 1, balances: [2eth, 2eth]}
  - expect: {channel: ai, state: {party: ingrid, balances: [6.99eth, 9.01eth]}}
""")
    lines: list[str] = []
    [rec] = run([path], out=lines.append)
    assert rec.passed, lines
    assert "      → interrupted by the crash" in lines
    assert rec.channels["g"].id.startswith("0x")
    assert [m.summary for m in rec.messages if m.type == "NanocontractCreate" and m.sender == "ingrid"] == [
        "ib v1: creates g@ib (VirtualChannel), blocking 3 ETH / 1 ETH"]  # sent once: after the restart


def test_a_recording_that_fails_on_a_frame_stops_the_run_and_says_so(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The relay passes the frame on regardless (the nodes are not to reconnect in a loop); the
    # run stops at the step whose frame could not be recorded, with what went wrong.
    message = Narrator.message

    def broken(self: Narrator, sender: str, receiver: str, msg: m.Message, fate: str) -> None:
        if isinstance(msg, m.UpdateAck):
            raise RuntimeError("no room for acks")
        message(self, sender, receiver, msg, fate)
    monkeypatch.setattr(Narrator, "message", broken)
    rec, lines = play(tmp_path, "  - pay: {from: alice, amount: 1eth}\n  - pay: {from: alice, amount: 1eth}\n")
    assert not rec.passed
    assert rec.error == ("line 7: step 2 (pay) failed: internal error: recording the UpdateAck from bob to alice "
                         "failed: RuntimeError: no room for acks"), rec.error
    assert not any("step 3" in line or "3. alice" in line for line in lines)
    after = rec.samples[-1]  # the payment itself went through
    assert after.label == "after step 2" and after.channels["ab"] == {"alice": 9 * 10**18, "bob": 6 * 10**18}
