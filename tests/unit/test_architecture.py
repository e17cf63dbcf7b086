"""Imports go one way (pyproject.toml's import-linter contracts, docs/architecture.md): core ←
wire ← chain ← store ← runtime ← protocols ← node ← control / cli / scenario, virtual channels
on top of the other protocols, and no cycle between the modules of any package. The contracts
are checked on the package as it is, and shown to catch an upward import and a cycle planted in
a copy of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def lint(src: Path) -> subprocess.CompletedProcess:
    """import-linter with the project's contracts, on the package `perun` under `src`."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))", str(ROOT / "pyproject.toml")],
        cwd=src, env={"PYTHONPATH": str(src)}, capture_output=True, text=True, timeout=120,
    )


def test_the_package_keeps_every_import_contract() -> None:
    result = lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, planted, broken", [
    ("core/channel.py", "import perun.node", "Layers: each imports only those below it"),
    ("protocols/multistate/protocol.py", "import perun.protocols.virtual", "Protocols: virtual channels"),
    ("runtime/faults.py", "import perun.runtime.runtime", "No import cycle"),
])
def test_an_upward_import_or_a_cycle_breaks_a_contract(tmp_path: Path, module: str, planted: str, broken: str) -> None:
    shutil.copytree(ROOT / "src" / "perun", tmp_path / "perun", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "perun" / module
    path.write_text(path.read_text() + f"\n{planted}  # planted by the test\n")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{broken}" in result.stdout.split("Broken contracts")[1], result.stdout
