"""The scale benchmark runs end to end (a few channels; its timings are not asserted)."""

from __future__ import annotations

import json

from benchmarks import scale


def test_scale_benchmark_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "OUT", tmp_path / "scale.json")
    scale.main(["--sizes", "2", "5", "--concurrency", "4", "--payments", "5", "--polls", "3", "--restarts", "2"])
    report = json.loads((tmp_path / "scale.json").read_text())
    assert [b["channels"] for b in report["builds"]] == [2, 5]
    assert [b["opened"] for b in report["builds"]] == [2, 3]
    results = report["results"]
    assert [r["channels_total"] for r in results] == [2, 5]
    for r in results:
        # The restarted node loaded every channel from its store, and paid on one.
        assert r["channels"] == r["channels_total"]
        assert set(r["restart_s"]) == {"imports", "construct", "start", "connected", "paid",
                                       "node_to_first_payment", "process_to_first_payment"}
        assert r["poll_quiet"]["n"] == r["poll_new_block"]["n"] == 3
        assert r["update"]["n"] == 5
        assert len(r["runs"]) == 2  # the figures are medians of two restarts
        assert r["db_bytes"] > 0 and r["vmrss_mb"] > 0
        assert any("perun/" in p["function"] for p in r["restart_profile"])
        assert r["poll_profile"] and r["update_profile"]


def test_a_kept_run_is_measured_again_from_its_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "OUT", tmp_path / "scale.json")
    kept = tmp_path / "kept"
    args = ["--sizes", "3", "--concurrency", "2", "--payments", "3", "--polls", "2", "--restarts", "1", "--no-profile",
            "--dir", str(kept)]
    scale.main(args)
    assert (kept / "snapshot" / "anvil-state.json").exists()
    scale.main(args)  # the same chain and stores again: nothing opened, the same channels restarted
    report = json.loads((tmp_path / "scale.json").read_text())
    assert [(b["channels"], b["opened"]) for b in report["builds"]] == [(3, 0)]
    assert [r["channels"] for r in report["results"]] == [3]
