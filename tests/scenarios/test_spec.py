"""Scenario files: a wrong file is refused with its line, the field, and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from perun.scenario.spec import ScenarioError, load

HEAD = """title: t
parties: {alice: {}, bob: {}}
channels:
  ab: {alice: alice, bob: bob, deposits: [10eth, 5eth]}
steps:
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("steps, message", [
    ("  - pay: {from: alice, amount: 1.5}\n",
     ":6: step 1 (pay): amount: expected an amount such as 1eth, 20gwei or 1000 (wei), got 1.5"),
    ("  - pay: {from: alice, amount: 1.5 wei}\n",
     ":6: step 1 (pay): amount: expected an amount such as 1eth, 20gwei or 1000 (wei): 1.5 wei is not a whole number"),
    ("  - pay: {from: carol, amount: 1eth}\n", ":6: step 1 (pay): from: expected a party: one of alice, bob, got 'carol'"),
    ("  - pay: {from: alice}\n", ":6: step 1 (pay): missing field 'amount'"),
    ("  - pay: {from: alice, amount: 1eth, sent: false}\n", ":6: step 1 (pay): unknown field 'sent': expected channel, from"),
    ("  - fly: ab\n", ":6: step 1: unknown action 'fly': expected one of open, pay"),
    ("  - open: ab\n  - crash: {party: bob, at: lunch}\n", ":7: step 2 (crash): at: expected one of propose-stored"),
    ("  - wait: {seconds: 5, blocks: 2}\n", ":6: step 1 (wait): expected exactly one of seconds, blocks, deadline"),
    ("  - expect: {channel: ab}\n", ":6: step 1 (expect): expected at least one of payout"),
    ("  - expect: {wallets: {alice: lots}}\n", ":6: step 1 (expect): wallets: expected an amount such as 1eth"),
    ("  - expect: {error_reply: {from: bob, code: RUDE}}\n", ":6: step 1 (expect): error_reply: expected an error code"),
    ("  - open: ab\n    fails: 42\n", ":7: step 1 (open): fails: expected an error name such as StaleVersion"),
])
def test_a_wrong_step_names_its_line_field_and_expectation(tmp_path: Path, steps: str, message: str) -> None:
    path = write(tmp_path, HEAD + steps)
    with pytest.raises(ScenarioError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}{message}"), str(info.value)


@pytest.mark.parametrize("text, message", [
    ("title: t\nparties: {alice: {}}\n", ":1: missing field 'steps'"),
    ("title: t\nparties: {alice: {}}\nsteps: []\ncolour: red\n", ":4: unknown top-level field 'colour'"),
    ("title: t\nparties: {alice: {}}\nchannels:\n  ab: {alice: alice, bob: alice, deposits: [1, 1]}\nsteps: [open: ab]\n",
     ":4: channel ab: bob: expected a party other than alice"),
    ("title: t\nparties: {a: {}, b: {}}\nchannels:\n  x: {alice: a, bob: b, deposits: [1, 1]}\n"
     "  y: {alice: a, bob: b, deposits: [1, 1]}\nsteps:\n  - pay: {from: a, amount: 1}\n",
     ":7: step 1 (pay): missing field 'channel' (the scenario has 2 channels)"),
    ("title: t\nparties: {alice: {key: 0x12}}\nsteps: [offline: alice]\n", ":2: party alice: key: expected quotes"),
    ("title: t\nparties: {alice: {key: '0x12'}}\nsteps: [offline: alice]\n", ":2: party alice: key: expected 32 bytes"),
    ("title: t\nparties: {a: {}, b: {}}\nchannels:\n  x: {alice: a, bob: b, deposits: [1, 1]}\n"
     "  y: {alice: a, bob: b, deposits: [1, 1], token: erc20}\nsteps: [open: x]\n",
     ":5: channel y: token: the channels of a scenario share one unit"),
    ("title: t\nparties: {alice: {}, bob: {}}\nchannels:\n  ab: {alice: alice, bob: bob, deposits: [1, 1]}\n"
     "steps:\n  - pay: {from: alice, amount: 1, send: false, answer: false}\n",
     ":6: step 1 (pay): send: false and answer: false exclude each other"),
    ("title: [\n", ":2: not valid YAML"),
])
def test_a_wrong_file_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}{message}"), str(info.value)


def test_shorthands_defaults_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "  - open: ab\n  - pay: {from: bob, amount: 20gwei, answer: false}\n"
                                  "  - close: {by: alice, version: 0}\n    fails: StaleVersion\n"
                                  "  - expect:\n      wallets: {alice: -1eth, bob: +1eth}\n")
    scenario = load(path)
    assert scenario.parties["alice"].funds == 100 * 10**18 and scenario.channels["ab"].delta == 600
    open_, pay, close, expect = scenario.steps
    assert (open_.action, open_.args, open_.line) == ("open", {"channel": "ab"}, 6)
    assert pay.args == {"channel": "ab", "from": "bob", "amount": 20 * 10**9, "answer": False}
    assert (close.args["version"], close.fails) == (0, "StaleVersion")
    assert expect.args["wallets"] == {"alice": -10**18, "bob": 10**18} and expect.lines["wallets"] == 11


def test_every_catalog_file_loads() -> None:
    for path in sorted(Path(__file__).parents[2].joinpath("scenarios").glob("*.yaml")):
        assert load(path).steps
