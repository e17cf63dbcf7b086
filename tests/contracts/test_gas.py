"""Gas is deterministic: hold every figure to the snapshot of `make bench`, and to the targets."""

from __future__ import annotations

import json

import pytest

from benchmarks.gas import README, SNAPSHOT, measure, readme_section, readme_tables


@pytest.fixture(scope="module")
def figures() -> dict[str, int]:
    return measure()


def test_gas_matches_the_snapshot_within_2_percent(figures: dict[str, int]) -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    assert figures.keys() == snapshot.keys(), "steps changed: run `make bench` and commit benchmarks/gas.json"
    drifted = {k: (snapshot[k], v) for k, v in figures.items() if abs(v - snapshot[k]) > snapshot[k] * 0.02}
    assert not drifted, f"gas drifted more than 2 % (snapshot, now): {drifted}; run `make bench` if intended"


def test_lifecycles_meet_their_targets(figures: dict[str, int]) -> None:
    assert figures["lifecycle: cooperative"] <= 150_000
    assert figures["lifecycle: disputed"] <= 260_000


def test_the_readme_shows_the_snapshot() -> None:
    """The README's gas tables are rendered from gas.json (`make bench` rewrites them)."""
    snapshot = json.loads(SNAPSHOT.read_text())
    assert readme_section(README.read_text()) == readme_tables(snapshot), "run `make bench` and commit README.md"
