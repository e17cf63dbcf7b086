"""Ape works on this project offline: `ape compile` (ape-solidity over the solc-js shim) produces the
ABIs of the committed artifacts, `ape run deploy` deploys PaymentContract on ape's local network
and writes a perun deployment file, and `ape run scenario` plays a scenario.

Runs the `ape` CLI in subprocesses on a temporary copy of the project (contracts/, scripts/,
ape-config.yaml, a symlink to node_modules/) with its own ape data folder, so it neither touches the
work tree's .build/ nor ~/.ape, and cannot race another run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_utils import is_checksum_address

from perun.chain import artifacts
from perun.chain.compile import ROOT, solc_binary, solc_version
from perun.chain.deploy import Deployment

APE = Path(sys.executable).with_name("ape")
TIMEOUT = 300  # seconds per ape command; a compilation takes ~6 s, a deployment ~2 s


def run_ape(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs `ape <args>` in `project`; fails the test with ape's output if it fails."""
    env = {
        **os.environ,
        "SOLCX_BINARY_PATH": str(solc_binary().parent),
        "APE_DATA_FOLDER": str(project.parent / "ape-data"),
        "NO_COLOR": "1",
    }
    command = [str(APE), *args]
    try:
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                                timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`ape {' '.join(args)}` timed out after {TIMEOUT} s\n"
                    f"--- stdout\n{_text(exc.stdout)}\n--- stderr\n{_text(exc.stderr)}")
    if result.returncode != 0:
        pytest.fail(f"`ape {' '.join(args)}` exited with {result.returncode}\n"
                    f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def abi_set(abi: list[dict[str, Any]]) -> set[str]:
    return {json.dumps(entry, sort_keys=True) for entry in abi}


@pytest.fixture(scope="module")
def ape_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's ape inputs, compiled with `ape compile --force`."""
    if not APE.exists():
        pytest.skip(f"eth-ape is not installed ({APE} missing): install the dev extra")
    if not (ROOT / "node_modules" / "@openzeppelin" / "contracts").is_dir():
        pytest.fail("node_modules/@openzeppelin/contracts is missing: run `npm ci` (the Makefile does)")
    project = tmp_path_factory.mktemp("ape") / "project"
    project.mkdir()
    shutil.copy2(ROOT / "ape-config.yaml", project / "ape-config.yaml")
    shutil.copytree(ROOT / "contracts", project / "contracts", ignore=shutil.ignore_patterns(".cache"))
    shutil.copytree(ROOT / "scripts", project / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)

    result = run_ape(project, "compile", "--force")
    log = result.stdout + result.stderr
    assert "Installing solc" not in log, f"ape tried to download solc\n{output(result)}"
    assert f"'{solc_version()}+commit." in log, f"ape did not compile with solc {solc_version()}\n{output(result)}"
    if not (project / ".build" / "__local__.json").is_file():
        pytest.fail(f"`ape compile` wrote no .build/__local__.json\n{output(result)}")
    return project


@pytest.fixture(scope="module")
def ape_contract_types(ape_project: Path) -> dict[str, Any]:
    return json.loads((ape_project / ".build" / "__local__.json").read_text())["contractTypes"]


@pytest.mark.parametrize("name", artifacts.ARTIFACT_NAMES)
def test_ape_compiles_the_abi_of_the_committed_artifact(ape_contract_types: dict[str, Any], name: str) -> None:
    assert name in ape_contract_types, f"ape compiled only {sorted(ape_contract_types)}"
    produced = abi_set(ape_contract_types[name]["abi"])
    committed = abi_set(artifacts.load(name)["abi"])
    assert produced == committed, (
        f"{name}: ABI from `ape compile` differs from src/perun/chain/artifacts/{name}.json\n"
        f"only in ape's: {sorted(produced - committed)}\nonly in the artifact: {sorted(committed - produced)}"
    )


def test_ape_run_deploy_writes_a_deployment_file(ape_project: Path) -> None:
    path = ape_project.parent / "deployment.json"
    result = run_ape(ape_project, "run", "deploy", "--out", str(path))
    assert path.is_file(), f"`ape run deploy` wrote no {path}\n{output(result)}"

    deployment = Deployment.read(path)
    assert is_checksum_address(deployment.payment_contract), deployment
    assert deployment.payment_contract in result.stdout, output(result)
    assert is_checksum_address(deployment.ms_contract) and deployment.ms_contract in result.stdout, output(result)
    assert set(deployment.apps) == {"HashTimeLock", "TicTacToe", "VirtualChannel"}, deployment
    assert deployment.block_number >= 1, deployment
    # Exactly the format perun writes.
    again = ape_project.parent / "again.json"
    deployment.write(again)
    assert path.read_text() == again.read_text()


def test_ape_run_scenario_plays_it_and_writes_the_report(ape_project: Path) -> None:
    scenario = ROOT / "scenarios" / "01-cooperative-close.yaml"
    out = ape_project.parent / "reports"
    result = run_ape(ape_project, "run", "scenario", str(scenario), "--out", str(out))
    assert "PASS 01-cooperative-close" in result.stdout, output(result)
    assert "1 passed, 0 failed" in result.stdout, output(result)
    assert (out / "01-cooperative-close.html").is_file() and (out / "01-cooperative-close.txt").is_file()
