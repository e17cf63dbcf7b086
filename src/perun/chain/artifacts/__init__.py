"""Compiled contracts (ABI and bytecode), written by `perun.chain.compile`; never edit by hand."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACT_DIR = Path(__file__).resolve().parent
# Where load() reads: tools/mutate.py points the tests at a mutant's artifacts.
LOAD_DIR = Path(os.environ.get("PERUN_ARTIFACT_DIR") or ARTIFACT_DIR)
ARTIFACT_NAMES = ("PaymentContract", "MSContract", "HashTimeLock", "TicTacToe", "VirtualChannel", "TestToken", "NoReturnToken", "FeeToken", "TestWallet", "WaitingApp")


@cache
def load(name: str) -> dict[str, Any]:
    """{"abi": [...], "bytecode": "0x..."} of contract `name`."""
    if name not in ARTIFACT_NAMES:
        raise KeyError(f"no artifact named {name!r}; known: {', '.join(ARTIFACT_NAMES)}")
    artifact: dict[str, Any] = json.loads((LOAD_DIR / f"{name}.json").read_text())
    return artifact
