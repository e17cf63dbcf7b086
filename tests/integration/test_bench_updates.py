"""The update benchmark runs end to end (a few payments; its timings are not asserted)."""

from __future__ import annotations

import json

from benchmarks import updates


def test_update_benchmark_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(updates, "OUT", tmp_path / "updates.json")
    updates.main(["--payments", "48", "--window", "4", "--channel-window", "2", "--rounds", "2",
                  "--crypto-iterations", "100", "--floor-iterations", "50", "--floor-commits", "9"])
    report = json.loads((tmp_path / "updates.json").read_text())
    runs = ["1 channel, sequential", "1 channel, pipelined (window 4)", "8 channels, sequential each",
            "8 channels, pipelined (window 2 each)"]
    for mode in ("results", "plaintext"):  # results: the encrypted runs
        assert [r["run"] for r in report[mode]] == runs
        assert [r["updates"] for r in report[mode]] == [48, 48, 48, 48]
    encryption = report["encryption"]
    assert [c["run"] for c in encryption["runs"]] == runs
    assert all(len(c["p50_ratio_by_round"]) == 2 for c in encryption["runs"])
    assert encryption["crypto_floor"]["frames_bytes"] == {"Update": 196, "UpdateAck": 123}
    # Alice's end of each connection timed in its own mode: one encrypt and one decrypt per update at least.
    for mode in ("encrypted", "plaintext"):
        assert min(encryption["in_place"][mode]["calls"].values()) >= 4 * 48
    # The floor: its primitives timed before the runs and after, pooled, next to the sequential p50.
    floor = report["floor"]
    assert floor["samples"] == {"sign": 100, "recover": 100, "commit": 18, "rtt": 100, "crypto": 10}
    assert floor["sequential_p50_ms"] == report["results"][0]["p50_ms"]
    assert set(floor["p50_over_floor"]) == set(floor["floor_us"]) == {"one_fsync", "three_commits"}
    assert floor["frames_bytes"] == [196, 123]
