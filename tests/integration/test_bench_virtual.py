"""The virtual-channel benchmark runs end to end (a few openings and payments; its timings are not
asserted, but that it sends no transaction is)."""

from __future__ import annotations

import json

from benchmarks import virtual


def test_virtual_channel_benchmark_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(virtual, "OUT", tmp_path / "virtual.json")
    virtual.main(["--openings", "3", "--payments", "24", "--window", "4", "--live", "20", "--sample", "3"])
    report = json.loads((tmp_path / "virtual.json").read_text())
    runs = report["results"]
    assert [r["run"] for r in runs] == [
        "open a virtual channel (4 messages)", "close it fast through Ingrid", "virtual channel, sequential",
        "virtual channel, pipelined (window 4)", "direct channel, sequential", "direct channel, pipelined (window 4)"]
    assert [r["updates"] for r in runs] == [3, 3, 24, 24, 24, 24]
    assert runs[0]["transactions"] == runs[1]["transactions"] == 0
    # The live set: 20 rounded up to two full ledger channels (16 each), then 3 more, none closed.
    live = report["live_set"]
    assert (live["live"], live["sample"], live["ledger_channels_per_side"], live["transactions"]) == (32, 3, 3, 0)
    assert live["first"]["updates"] == live["late"]["updates"] == 3
    assert live["first_cpu"]["updates"] == live["late_cpu"]["updates"] == 3
    assert live["slot_0"]["updates"] == 3 and live["slot_15"]["updates"] == 2
    assert live["poll_first"]["updates"] == live["poll_late"]["updates"] == 3
    assert all(live[f"ratio_{q}"] > 0 for q in ("p50", "p99", "cpu_p50", "cpu_p99"))
