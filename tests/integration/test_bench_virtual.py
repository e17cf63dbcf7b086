"""The virtual-channel benchmark runs end to end (a few openings and payments; its timings are not
asserted, but that it sends no transaction is)."""

from __future__ import annotations

import json

from benchmarks import virtual


def test_virtual_channel_benchmark_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(virtual, "OUT", tmp_path / "virtual.json")
    virtual.main(["--openings", "3", "--payments", "24", "--window", "4"])
    report = json.loads((tmp_path / "virtual.json").read_text())
    runs = report["results"]
    assert [r["run"] for r in runs] == [
        "open a virtual channel (4 messages)", "close it fast through Ingrid", "virtual channel, sequential",
        "virtual channel, pipelined (window 4)", "direct channel, sequential", "direct channel, pipelined (window 4)"]
    assert [r["updates"] for r in runs] == [3, 3, 24, 24, 24, 24]
    assert runs[0]["transactions"] == runs[1]["transactions"] == 0
