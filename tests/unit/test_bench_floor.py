"""The update benchmark's floor (benchmarks/floor.py): each primitive is timed, and the floors add
them up as the critical path counts them. No time is asserted, only that there is one."""

from __future__ import annotations

import pytest

from benchmarks import floor


def test_each_primitive_is_timed_call_by_call(tmp_path) -> None:
    rows = floor.node_rows(tmp_path)
    measured = {"sign": floor.sign_times(5), "recover": floor.recover_times(5),
                "commit": floor.commit_times(rows, 6, tmp_path), "rtt": floor.rtt_times(5, warm_up=1)}
    for name, times in measured.items():
        assert len(times) in (5, 6) and all(t > 0 for t in times), name
    assert floor.median_us(measured["commit"]) > 0


def test_the_commits_write_the_nodes_own_rows(tmp_path) -> None:
    """Bob's countersignature on the path: the channel's delta and the state with both
    signatures; Alice's commit behind it: her delta, that state, and the next payment's state
    with her signature alone. No whole record: neither changed more than an update does."""
    commits = floor.node_rows(tmp_path)
    tables = [sorted(table for table, _ in rows) for rows in commits]
    assert tables == [["channel_deltas", "states"], ["channel_deltas", "states", "states"]]
    states = [sorted((int(row[1]), len(row[5]), len(row[6])) for table, row in rows if table == "states")
              for rows in commits]
    assert states == [[(floor.VERSION, 65, 65)], [(floor.VERSION, 65, 65), (floor.VERSION + 1, 65, 0)]]
    bob, alice = floor.row_bytes(commits)
    assert 400 < bob < 700 and alice > bob


def test_the_floors_add_up_the_critical_path() -> None:
    primitives = {"sign": 1.0, "recover": 10.0, "commit": 100.0, "rtt": 1000.0, "crypto": 10000.0}
    assert floor.floors(primitives) == {"one_fsync": 2 + 20 + 100 + 1000 + 10000,
                                        "three_commits": 2 + 20 + 300 + 1000 + 10000}


def test_summary_pools_measurements_and_reports_medians(tmp_path) -> None:
    first = {"sign": [1e-6, 3e-6], "recover": [2e-6], "commit": [1e-3], "rtt": [5e-5], "crypto": [4e-6]}
    second = {"sign": [2e-6], "recover": [2e-6], "commit": [3e-3, 2e-3], "rtt": [5e-5], "crypto": [4e-6]}
    summary = floor.summary(first, second)
    assert summary["primitives_us"] == pytest.approx({"sign": 2.0, "recover": 2.0, "commit": 2000.0, "rtt": 50.0,
                                                      "crypto": 4.0})
    assert summary["samples"] == {"sign": 3, "recover": 2, "commit": 3, "rtt": 2, "crypto": 2}
    assert summary["floor_us"]["three_commits"] == pytest.approx(2 * 2 + 2 * 2 + 3 * 2000 + 50 + 4, abs=0.1)
    assert summary["floor_us"]["one_fsync"] == pytest.approx(2 * 2 + 2 * 2 + 2000 + 50 + 4, abs=0.1)
    lines = floor.table(summary, p50_ms=12.124)
    assert "p50 / floor = 5.88" in lines[-2] and "p50 / floor = 2.00" in lines[-1]
