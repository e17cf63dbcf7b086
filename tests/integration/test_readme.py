"""The README's Python examples run as written, and its scenario passes."""

from __future__ import annotations

import re
from pathlib import Path

from perun.chain.compile import ROOT
from perun.scenario.report import text_summary
from perun.scenario.runner import run


def test_readme_python_example_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README lost its Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_scenario_passes(tmp_path: Path) -> None:
    [block] = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    path = tmp_path / "readme.yaml"
    path.write_text(block)
    [rec] = run([path], out=lambda line: None)
    assert rec.passed and len(rec.verdicts) == 4, text_summary(rec)
