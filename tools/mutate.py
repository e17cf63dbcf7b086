"""Mutation testing of the contracts: `make mutate` (docs/mutation.md).

No maintained Solidity mutator runs offline here with solc-js (gambit and vertigo-rs need a Rust
build or the network), so this one works on the source text: it finds the mutation sites of each
contract (comparisons swapped or relaxed, `require` / `if (...) revert` checks deleted,
assignments deleted, `+ 1` / `- 1` dropped, parties swapped, booleans flipped), compiles each
mutant with the project's solc-js into a temporary artifact directory (PERUN_ARTIFACT_DIR, which
`perun.chain.artifacts` honours) and runs that contract's own test files on the embedded chain
with `-x`. A mutant the tests pass is a survivor: kill it with a test or explain it in
docs/mutation.md.

    python -m tools.mutate [--contract NAME]... [--max N] [--seed S] [--timeout SECONDS] [--match TEXT] [--list]

The same arguments give the same sample. `--match` re-runs one survivor: `--contract TicTacToe
--match "TicTacToe.sol:58 [write]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from perun.chain.artifacts import ARTIFACT_DIR  # noqa: E402
from perun.chain.compile import SETTINGS, solc_binary  # noqa: E402

# Each contract source: the artifacts built from it, and the test files that are its own.
TARGETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "contracts/PaymentContract.sol": (("PaymentContract",),
                                      ("test_payment_contract", "test_properties", "test_payouts", "test_watchtowers")),
    "contracts/MSContract.sol": (("MSContract",), ("test_ms_contract", "test_ms_properties", "test_watchtowers")),
    "contracts/Channels.sol": (("PaymentContract", "MSContract"),
                               ("test_payment_contract", "test_payouts", "test_ms_contract")),
    "contracts/Watchtowers.sol": (("PaymentContract", "MSContract"),
                                  ("test_watchtowers", "test_tower_properties")),
    "contracts/apps/HashTimeLock.sol": (("HashTimeLock",), ("test_ms_contract", "test_apps_differential")),
    "contracts/apps/TicTacToe.sol": (("TicTacToe",), ("test_ms_contract", "test_apps_differential")),
    "contracts/apps/VirtualChannel.sol": (("VirtualChannel",),
                                          ("test_virtual_app", "test_apps_differential", "test_virtual_ledgers")),
}
SOURCE_OF = {"PaymentContract": "contracts/PaymentContract.sol", "MSContract": "contracts/MSContract.sol",
             "HashTimeLock": "contracts/apps/HashTimeLock.sol", "TicTacToe": "contracts/apps/TicTacToe.sol",
             "VirtualChannel": "contracts/apps/VirtualChannel.sol"}

COMPARISONS = {"<": ("<=", ">="), "<=": ("<", ">"), ">": (">=", "<="), ">=": (">", "<"),
               "==": ("!=",), "!=": ("==",)}
COMPARISON = re.compile(r"(?<![<>=!])(<=|>=|==|!=|<|>)(?![<>=])")
PARTIES = [("alice", "bob"), ("Alice", "Bob"), ("A", "B"), ("[0]", "[1]")]
PARTY = re.compile(r"\b\w*?(alice|Alice|bob|Bob)\w*\b|\b\w+?(A|B)\b|\[(0|1)\]")
ASSIGNMENT = re.compile(r"^\s*(?!return\b|emit\b|uint|int|bytes|bool|address|string|if\b|else\b)"
                        r"[A-Za-z_][\w.\[\]()]*\s*(=|\+=|-=)\s*[^=]")
KEYWORDS = {"bytes", "pure", "view", "public", "private", "internal", "external", "returns", "memory"}


@dataclass(frozen=True)
class Mutant:
    source: str  # path relative to ROOT
    line: int  # 1-based
    kind: str
    before: str
    after: str
    text: str  # the whole mutated source

    def describe(self) -> str:
        return f"{self.source}:{self.line} [{self.kind}] {self.before.strip()!r} -> {self.after.strip()!r}"


def _code(line: str) -> str:
    """The line with its comment blanked out, so that comments are never mutated."""
    stripped = line.lstrip()
    if stripped.startswith(("//", "*", "/*")):
        return " " * len(line)
    cut = line.find("//")
    return line if cut < 0 else line[:cut] + " " * (len(line) - cut)


def _statement_end(lines: list[str], start: int) -> int:
    """The index of the line that ends the statement beginning on line `start` (its `;`)."""
    depth = 0
    for index in range(start, len(lines)):
        for char in _code(lines[index]):
            depth += char == "("
            depth -= char == ")"
            if char in ";{" and depth == 0:
                return index if char == ";" else -1
    return -1


def sites(path: str) -> list[Mutant]:
    """Every mutant of one source file, in source order."""
    text = (ROOT / path).read_text()
    lines = text.splitlines(keepends=True)
    identifiers = set(re.findall(r"\b\w+\b", "".join(_code(line) for line in lines)))
    found: list[Mutant] = []

    def replace(index: int, start: int, end: int, new: str, kind: str) -> None:
        line = lines[index]
        mutated = line[:start] + new + line[end:]
        found.append(Mutant(path, index + 1, kind, line, mutated,
                            "".join(lines[:index]) + mutated + "".join(lines[index + 1:])))

    def delete(first: int, last: int, kind: str) -> None:
        removed = "".join(lines[first:last + 1])
        indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
        found.append(Mutant(path, first + 1, kind, removed, indent + "// deleted\n",
                            "".join(lines[:first]) + indent + "\n" + "".join(lines[last + 1:])))

    in_body = False
    for index, line in enumerate(lines):
        code = _code(line)
        stripped = code.strip()
        if stripped.startswith(("function ", "constructor", "modifier ")):
            in_body = True
        if not in_body or stripped.startswith(("function ", "error ", "event ", "import ", "pragma ")):
            continue
        for match in COMPARISON.finditer(code):
            if code[match.start() - 1:match.start()] == "=" or code[match.end():match.end() + 1] == ">":
                continue  # `=>` of a mapping
            for new in COMPARISONS[match.group(1)]:
                replace(index, match.start(1), match.end(1), new, "comparison")
        for match in re.finditer(r"\s*([+-])\s*1\b(?!\d)", code):
            replace(index, match.start(), match.end(), "", "off-by-one")
        for match in re.finditer(r"\b(true|false)\b", code):
            replace(index, match.start(), match.end(), "false" if match.group(1) == "true" else "true", "boolean")
        for match in PARTY.finditer(code):
            word = match.group(0)
            for one, other in PARTIES:
                for a, b in ((one, other), (other, one)):
                    if a.startswith("["):
                        swapped = b if word == a else None
                    elif a in ("A", "B"):
                        swapped = word[:-1] + b if word.endswith(a) and len(word) > 1 else None
                    else:
                        swapped = word.replace(a, b, 1) if a in word else None
                    if swapped and swapped != word and (swapped.startswith("[") or swapped in identifiers) \
                            and word not in KEYWORDS:
                        replace(index, match.start(), match.end(), swapped, "party")
                        break
                else:
                    continue
                break
        if stripped.startswith(("require(", "if (")):
            last = _statement_end(lines, index)  # -1 for an `if` with a block: not a plain check
            if last >= 0 and (stripped.startswith("require(") or "revert" in "".join(lines[index:last + 1])):
                delete(index, last, "check")
        elif ASSIGNMENT.match(code) or stripped.startswith("delete "):
            last = _statement_end(lines, index)
            if last >= 0:
                delete(index, last, "write")
    return found


def compile_mutant(mutant: Mutant, out: Path) -> str | None:
    """Compiles the mutant's artifacts into `out`; returns the compiler's error, or None."""
    import solcx

    names = TARGETS[mutant.source][0]
    sources = {SOURCE_OF[name]: {"content": (ROOT / SOURCE_OF[name]).read_text()} for name in names}
    sources[mutant.source] = {"content": mutant.text}
    settings = dict(SETTINGS, outputSelection={SOURCE_OF[name]: {name: ["abi", "evm.bytecode.object"]}
                                               for name in names})
    try:
        output = solcx.compile_standard({"language": "Solidity", "sources": sources, "settings": settings},
                                        base_path=str(ROOT), solc_binary=solc_binary())
    except solcx.exceptions.SolcError as error:
        return str(error).splitlines()[0]
    for name in names:
        data = output["contracts"][SOURCE_OF[name]][name]
        artifact = {"abi": data["abi"], "bytecode": "0x" + data["evm"]["bytecode"]["object"]}
        (out / f"{name}.json").write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
    return None


def run_tests(mutant: Mutant, artifacts: Path, timeout: float) -> str:
    """'killed', 'survived' or 'timeout' (undecided: on a loaded machine a survivor may time out)."""
    files = [f"tests/contracts/{name}.py" for name in TARGETS[mutant.source][1]]
    env = dict(os.environ, PERUN_ARTIFACT_DIR=str(artifacts))
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:ape_test", "-p", "tools.mutate",
               "-k", "not anvil and not hardhat", *files]
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if result.returncode == 0 else "killed"


def pytest_configure(config: object) -> None:
    """Loaded into each mutant's test run (`-p tools.mutate`): one failing example kills the
    mutant, so Hypothesis neither shrinks it (minutes on a property test) nor saves it."""
    from hypothesis import Phase, settings

    settings.register_profile("mutate", phases=[Phase.explicit, Phase.reuse, Phase.generate], database=None)
    settings.load_profile("mutate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contract", action="append", help="a contract's name (repeatable); default all")
    parser.add_argument("--max", type=int, default=0, help="at most N mutants per contract, sampled (0: all)")
    parser.add_argument("--seed", type=int, default=21, help="the sample's seed")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant's test run")
    parser.add_argument("--match", help="only the mutants whose description (as listed) contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutants without running them")
    args = parser.parse_args(argv)

    chosen = [path for path in TARGETS if not args.contract or Path(path).stem in args.contract]
    if not chosen:
        parser.error(f"no contract among {args.contract}; known: {', '.join(Path(p).stem for p in TARGETS)}")
    os.environ.setdefault("SOLCX_BINARY_PATH", str(ROOT / ".solc"))
    rng = random.Random(args.seed)
    totals: dict[str, dict[str, int]] = {}
    survivors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="perun-mutants-") as scratch:
        artifacts = Path(scratch)
        for path in chosen:
            mutants = sites(path)
            if args.max and len(mutants) > args.max:
                mutants = sorted(rng.sample(mutants, args.max), key=lambda m: (m.line, m.after))
            if args.match:
                mutants = [mutant for mutant in mutants if args.match in mutant.describe()]
            counts = totals.setdefault(Path(path).stem, {"killed": 0, "survived": 0, "timeout": 0, "invalid": 0})
            for number, mutant in enumerate(mutants, 1):
                if args.list:
                    print(mutant.describe())
                    continue
                for artifact in ARTIFACT_DIR.glob("*.json"):
                    shutil.copy(artifact, artifacts / artifact.name)
                started = time.monotonic()
                error = compile_mutant(mutant, artifacts)
                outcome = "invalid" if error else run_tests(mutant, artifacts, args.timeout)
                counts[outcome] += 1
                if outcome in ("survived", "timeout"):
                    survivors.append(f"{outcome}: {mutant.describe()}")
                print(f"{Path(path).stem} {number}/{len(mutants)} {outcome:8} {time.monotonic() - started:5.1f}s "
                      f"{mutant.describe()}", flush=True)
    if args.list:
        return 0
    print("\nscore (killed/valid mutants):")
    for name, counts in totals.items():
        valid = counts["killed"] + counts["survived"]
        notes = [f"{counts[key]} {what}" for key, what in (("timeout", "timed out"), ("invalid", "did not compile"))
                 if counts[key]]
        print(f"  {name:16} {counts['killed']}/{valid}" + (f"  ({', '.join(notes)})" if notes else ""))
    print("\nsurvivors and timeouts:" if survivors else "\nno survivors")
    for line in survivors:
        print("  " + line)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
