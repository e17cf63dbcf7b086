"""The README's Python example runs as written."""

from __future__ import annotations

import re

from perun.chain.compile import ROOT


def test_readme_python_example_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README lost its Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
