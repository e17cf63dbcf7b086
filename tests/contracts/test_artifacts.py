"""The committed artifacts are what the pinned compiler makes of contracts/ today."""

from __future__ import annotations

import json

from perun.chain.artifacts import ARTIFACT_NAMES, load
from perun.chain.compile import ROOT, compile_contracts, solc_version


def test_committed_artifacts_match_a_fresh_compilation() -> None:
    fresh = compile_contracts()
    stale = [name for name in ARTIFACT_NAMES if fresh[name] != load(name)]
    assert not stale, f"{stale} differ from contracts/: run `make build` and commit the artifacts"


def test_one_solc_version_everywhere() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["solc"]
    assert solc_version() == pinned
    ape_config = (ROOT / "ape-config.yaml").read_text()
    assert f"version: {pinned}" in ape_config, "ape-config.yaml must pin the solc of package.json"
