"""The runner's own rules: what stops a run, what a failed expectation records, what the
network relays record."""

from __future__ import annotations

from pathlib import Path

from perun.scenario import record as r
from perun.scenario.runner import run

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
    assert rec.error.startswith("line 7: step 2 (pay) failed: AmountOutOfRange")
    assert not any("step 3" in line or "3. alice" in line for line in lines)  # step 3 never ran
    ends = [e for e in rec.entries if isinstance(e, r.Step) and e.outcome]
    assert [e.outcome for e in ends] == ["ok", "failed"]


def test_an_expected_error_that_does_not_come_is_a_failed_verdict(tmp_path: Path) -> None:
    rec, _ = play(tmp_path, "  - pay: {from: alice, amount: 1eth}\n    fails: AmountOutOfRange\n"
                            "  - pay: {from: bob, amount: 7eth}\n    fails: AmountOutOfRange\n")
    assert [(v.line, v.passed, v.found) for v in rec.verdicts][0] == (7, False, "expected AmountOutOfRange, but it succeeded")
    assert rec.verdicts[1].passed and rec.verdicts[1].found.startswith("AmountOutOfRange")
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
