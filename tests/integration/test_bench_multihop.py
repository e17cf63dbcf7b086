"""The multi-hop benchmark runs end to end (a few payments of each length; its timings are not
asserted, but that every payment is paid off chain, with no transaction, is)."""

from __future__ import annotations

import json

from benchmarks import multihop


def test_multihop_benchmark_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(multihop, "OUT", tmp_path / "multihop.json")
    multihop.main(["--payments", "3", "--rounds", "2"])
    report = json.loads((tmp_path / "multihop.json").read_text())
    floor, runs = report["floor"], report["results"]
    assert [r["run"] for r in runs] == ["2-hop payment", "3-hop payment", "5-hop payment"]
    assert floor["payments"] == 3 and [r["payments"] for r in runs] == [3, 3, 3]
    assert report["transactions"] == 0
    for k, r in zip((2, 3, 5), runs):
        assert r["floor_p50_ms"] == round(k * floor["p50_ms"], 3) and r["floor_p99_ms"] == round(k * floor["p99_ms"], 3)
        assert r["p50_ms"] <= r["p99_ms"] and r["ratio_p50"] > 0 and r["ratio_p99"] > 0
    assert list(report["onion"]["build_ms"]) == ["2", "3", "5"] and report["onion"]["peel_ms"] > 0
