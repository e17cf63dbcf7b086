"""Compiles contracts/ with the pinned solc-js and writes the artifacts the package loads.

There is no native solc on these machines: `tools/solc-shim.js` wraps solc-js so that py-solc-x
(here) and ape-solidity (`ape compile`) both run the same compiler. Run `python -m
perun.chain.compile` (or `make build`) after changing a contract; a test holds the committed
artifacts equal to a fresh compilation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from perun.chain.artifacts import ARTIFACT_DIR, ARTIFACT_NAMES

ROOT = Path(__file__).resolve().parents[3]
CONTRACTS = ROOT / "contracts"
NODE_MODULES = ROOT / "node_modules"
SHIM = ROOT / "tools" / "solc-shim.js"
SOLC_DIR = ROOT / ".solc"

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 10_000},
    "evmVersion": "cancun",
    "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}


def solc_version() -> str:
    """The solc-js version installed from package.json."""
    version: str = json.loads((NODE_MODULES / "solc" / "package.json").read_text())["version"]
    return version


def solc_binary() -> Path:
    """`.solc/solc-v<version>`, a symlink to the shim: the name py-solc-x and ape look for.

    A symlink, not a copy: the shim finds solc-js through its own location.
    """
    link = SOLC_DIR / f"solc-v{solc_version()}"
    if not link.is_symlink():
        SOLC_DIR.mkdir(exist_ok=True)
        link.symlink_to(os.path.relpath(SHIM, SOLC_DIR))
    return link


def standard_input() -> dict[str, Any]:
    sources = {
        str(path.relative_to(ROOT)): {"content": path.read_text()}
        for path in sorted(CONTRACTS.rglob("*.sol"))
    }
    return {"language": "Solidity", "sources": sources, "settings": SETTINGS}


def compile_contracts() -> dict[str, dict[str, Any]]:
    """Compiles every contract; returns {name: {"abi": ..., "bytecode": "0x..."}}."""
    import solcx

    output = solcx.compile_standard(standard_input(), base_path=str(ROOT), solc_binary=solc_binary())
    found: dict[str, dict[str, Any]] = {}
    for unit in output["contracts"].values():
        for name, data in unit.items():
            if name in ARTIFACT_NAMES:
                found[name] = {"abi": data["abi"], "bytecode": "0x" + data["evm"]["bytecode"]["object"]}
    missing = set(ARTIFACT_NAMES) - set(found)
    if missing:
        raise RuntimeError(f"compilation produced no {sorted(missing)}")
    return found


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def main() -> None:
    ARTIFACT_DIR.mkdir(exist_ok=True)
    for name, artifact in compile_contracts().items():
        (ARTIFACT_DIR / f"{name}.json").write_text(render(artifact))
        print(f"wrote {ARTIFACT_DIR.relative_to(ROOT) / name}.json ({len(artifact['bytecode']) // 2 - 1} bytes)")


if __name__ == "__main__":
    main()
