"""The committed artifacts are what the pinned compiler makes of contracts/ today."""

from __future__ import annotations

import json

from perun.chain.artifacts import ARTIFACT_NAMES, load
from perun.chain.compile import ROOT, compile_contracts, solc_version


def test_committed_artifacts_match_a_fresh_compilation() -> None:
    fresh = compile_contracts()
    stale = [name for name in ARTIFACT_NAMES if fresh[name] != load(name)]
    assert not stale, f"{stale} differ from contracts/: run `make build` and commit the artifacts"


def test_ape_config_pins_the_versions_of_package_json() -> None:
    dependencies = json.loads((ROOT / "package.json").read_text())["dependencies"]
    assert solc_version() == dependencies["solc"]
    ape_config = (ROOT / "ape-config.yaml").read_text()
    assert f"version: {dependencies['solc']}" in ape_config, "ape-config.yaml must pin package.json's solc"
    oz = dependencies["@openzeppelin/contracts"]
    assert f"version: {oz}" in ape_config and f"openzeppelin/{oz}" in ape_config, (
        "ape-config.yaml must name package.json's @openzeppelin/contracts version"
    )
