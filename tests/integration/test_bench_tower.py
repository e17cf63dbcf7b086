"""The watchtower benchmark runs end to end (a few hundred updates, a few polls): its timings are
not asserted, but what the tower holds and stores is."""

from __future__ import annotations

import json

from benchmarks import tower


def test_tower_benchmark_runs_and_its_storage_stays_one_row(tmp_path, monkeypatch):
    monkeypatch.setattr(tower, "OUT", tmp_path / "tower.json")
    tower.main(["--updates", "300", "--channels", "40", "--polls", "3"])
    report = json.loads((tmp_path / "tower.json").read_text())
    stored = report["storage"]
    assert [(r["updates"], r["held_version"], r["rows"]) for r in stored] == [(1, 1, 1), (300, 300, 1)]
    # A row grows only by the digits of its version and balances; the store not at all.
    assert stored[1]["row_bytes"] - stored[0]["row_bytes"] <= 8
    assert stored[1]["store_bytes"] == stored[0]["store_bytes"]
    assert [p["watched"] for p in report["polls"]] == [10, 40]
    assert report["ratio_poll_quiet_p50"] > 0 and report["ratio_poll_new_block_p50"] > 0
