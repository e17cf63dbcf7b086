"""The update benchmark runs end to end (a few payments; its timings are not asserted)."""

from __future__ import annotations

import json

from benchmarks import updates


def test_update_benchmark_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(updates, "OUT", tmp_path / "updates.json")
    updates.main(["--payments", "48", "--window", "4"])
    report = json.loads((tmp_path / "updates.json").read_text())
    assert [r["run"] for r in report["results"]] == [
        "1 channel, sequential", "1 channel, pipelined (window 4)", "8 channels, sequential each"]
    assert [r["updates"] for r in report["results"]] == [48, 48, 48]
