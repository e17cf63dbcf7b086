"""Scenario files: a wrong file is refused with its line, the field, and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from perun.protocols.multihop import ForwardPolicy
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


def refused(path: Path, message: str) -> None:
    """Loading the file fails with an error that starts with its path and `message`."""
    with pytest.raises(ScenarioError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}{message}"), str(info.value)


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
    ("  - expect: {error_reply: [{from: bob, code: CONFLICT}, {from: bob}]}\n",
     ":6: step 1 (expect): error_reply: expected {from: P, code: CODE}, or a list of these"),
    ("  - expect: {error_reply: [{from: bob, code: CONFLICT}, {from: carol, code: CONFLICT}]}\n",
     ":6: step 1 (expect): error_reply: expected a party or a tower"),
    ("  - open: ab\n    fails: 42\n", ":7: step 1 (open): fails: expected an error name such as StaleVersion"),
])
def test_a_wrong_step_names_its_line_field_and_expectation(tmp_path: Path, steps: str, message: str) -> None:
    path = write(tmp_path, HEAD + steps)
    refused(path, message)


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
    refused(path, message)


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


# ------------------------------------------------------------------------------- multistate channels

MS_HEAD = """title: t
parties: {alice: {}, bob: {}, carol: {}}
channels:
  ab: {kind: multistate, alice: alice, bob: bob, deposits: [10eth, 5eth]}
steps:
  - nanocontract: {by: alice, name: pay, app: HashTimeLock, amount: 1eth, preimage: "secret", timeout: 60}
  - nanocontract: {by: bob, name: game, app: TicTacToe, stakes: [1eth, 1eth], first: bob, move_timeout: 60}
"""
LOCK = "name: lock, app: HashTimeLock, amount: 1eth, preimage: 's', timeout: 60"


@pytest.mark.parametrize("steps, message", [
    (f"  - nanocontract: {{by: carol, {LOCK}}}\n", ":8: step 3 (nanocontract): carol is not a party of channel ab"),
    ("  - nanocontract: {by: alice, name: pay, app: HashTimeLock, amount: 1, preimage: 's', timeout: 1}\n",
     ":8: step 3 (nanocontract): name: expected a new name: line 6 creates a nanocontract pay already, got 'pay'"),
    ("  - nanocontract: {by: alice, name: bob, app: HashTimeLock, amount: 1, preimage: 's', timeout: 1}\n",
     ":8: step 3 (nanocontract): name: expected a name that is not a party's, got 'bob'"),
    ("  - nanocontract: {by: alice, name: 2x, app: HashTimeLock, amount: 1, preimage: 's', timeout: 1}\n",
     ":8: step 3 (nanocontract): name: expected a name of letters, digits, - and _ (not starting with a digit)"),
    ("  - nanocontract: {by: alice, name: p, app: Poker}\n",
     ":8: step 3 (nanocontract): app: expected one of HashTimeLock, TicTacToe, got 'Poker'"),
    ("  - nanocontract: {by: alice, name: p, app: HashTimeLock, amount: 1eth, timeout: 60}\n",
     ":8: step 3 (nanocontract): missing field 'preimage' (HashTimeLock needs amount, preimage, timeout)"),
    (f"  - nanocontract: {{by: alice, {LOCK}, stakes: [1, 1]}}\n",
     ":8: step 3 (nanocontract): stakes goes with app TicTacToe, not HashTimeLock (which takes amount, preimage, "
     "timeout)"),
    ("  - nanocontract: {by: alice, name: g, app: TicTacToe, stakes: [1, 1], first: alice}\n",
     ":8: step 3 (nanocontract): missing field 'move_timeout' (TicTacToe needs stakes, first, move_timeout)"),
    ("  - nanocontract: {by: alice, name: p, app: HashTimeLock, amount: 1, preimage: '" + "x" * 33 + "', timeout: 1}\n",
     ":8: step 3 (nanocontract): preimage: expected a text of 1 to 32 bytes (in quotes), or \"0x\" and 64 hex digits"),
    ("  - nanocontract: {by: alice, name: p, app: HashTimeLock, amount: 1, preimage: 0x12, timeout: 1}\n",
     ":8: step 3 (nanocontract): preimage: expected a text of 1 to 32 bytes (in quotes)"),
    ("  - nanocontract: {by: alice, name: p, app: HashTimeLock, amount: 0, preimage: 's', timeout: 1}\n",
     ":8: step 3 (nanocontract): amount: a lock blocks more than 0"),
    ("  - nanocontract: {by: alice, name: p, app: HashTimeLock, amount: 1, preimage: 's', timeout: 0}\n",
     ":8: step 3 (nanocontract): timeout: expected an integer >= 1, got 0"),
    ("  - nanocontract: {by: alice, name: g, app: TicTacToe, stakes: [1, 1], first: carol, move_timeout: 9}\n",
     ":8: step 3 (nanocontract): first: carol is not a party of channel ab"),
    ("  - nanocontract: {by: alice, name: g, app: TicTacToe, stakes: [0, 0], first: bob, move_timeout: 9}\n",
     ":8: step 3 (nanocontract): stakes: a game has a stake, of one player at least"),
    ("  - call: {by: alice, nanocontract: bet, function: claim}\n",
     ":8: step 3 (call): nanocontract: expected a nanocontract created by an earlier step: one of pay, game, got 'bet'"),
    ("  - call: {by: carol, nanocontract: pay, function: claim}\n", ":8: step 3 (call): carol is not a party of channel ab"),
    ("  - call: {by: bob, nanocontract: pay, function: move, cell: 1}\n",
     ":8: step 3 (call): function: pay is a HashTimeLock, whose functions are claim, reclaim, cancel; got 'move'"),
    ("  - call: {by: bob, nanocontract: pay, function: fold}\n",
     ":8: step 3 (call): function: expected a function: one of cancel, claim, move, reclaim, timeout, got 'fold'"),
    ("  - call: {by: bob, nanocontract: game, function: move}\n", ":8: step 3 (call): cell goes with move, which needs it"),
    ("  - execute: {by: bob, nanocontract: game, function: timeout,\n      cell: 3}\n",
     ":9: step 3 (execute): cell goes with move, which needs it"),
    ("  - call: {by: bob, nanocontract: game, function: move, cell: 9}\n",
     ":8: step 3 (call): cell: expected a cell from 0 to 8 (row by row: 0 1 2 / 3 4 5 / 6 7 8), got 9"),
    ("  - enforce: {by: alice, nanocontract: pay, function: reclaim, preimage: 's'}\n",
     ":8: step 3 (enforce): preimage goes with claim"),
    ("  - absorb: {by: bob}\n", ":8: step 3 (absorb): missing field 'nanocontract'"),
    ("  - register: {by: alice, nanocontract: pay, version: -1}\n",
     ":8: step 3 (register): version: expected an integer >= 0, got -1"),
    ("  - wait: {window: pay, timeout: pay}\n",
     ":8: step 3 (wait): expected exactly one of seconds, blocks, deadline, window, timeout"),
    ("  - wait: {seconds: 5, offset: 1}\n", ":8: step 3 (wait): offset goes with deadline, window, timeout or validity"),
    ("  - wait: {window: bet}\n", ":8: step 3 (wait): window: expected a nanocontract created by an earlier step"),
    ("  - expect: {nanocontract: {name: pay}}\n",
     ":8: step 3 (expect): nanocontract: expected at least one of version, blocked, released, terminated for pay"),
    ("  - expect: {nanocontract: {name: pay, party: carol, version: 1}}\n",
     ":8: step 3 (expect): nanocontract: expected a party of pay's channel ab (alice or bob) as party"),
    ("  - expect: {nanocontract: [{name: pay, version: 1}, {name: game, colour: red}]}\n",
     ":8: step 3 (expect): nanocontract: expected only name, party, version, blocked, released, terminated "
     "(not colour)"),
    ("  - expect: {nanocontract: []}\n", ":8: step 3 (expect): nanocontract: expected {name: N, party: P"),
    ("  - expect: {state: {party: bob, nanocontracts: [pay, bet]}}\n",
     ":8: step 3 (expect): state: expected a nanocontract created by an earlier step: one of pay, game, got"),
    ("  - pay: {from: alice, amount: 1eth}\n",
     ":8: step 3 (pay): channel ab is a multistate channel: pay is for payment channels"),
    ("  - forge: {from: alice, amount: 1eth}\n",
     ":8: step 3 (forge): channel ab is a multistate channel: forge is for payment channels (a multistate channel "
     "moves money with nanocontracts)"),
    ("  - cooperative_close: {by: carol}\n", ":8: step 3 (cooperative_close): carol is not a party of channel ab"),
])
def test_a_wrong_multistate_step_names_its_line_field_and_expectation(tmp_path: Path, steps: str, message: str) -> None:
    path = write(tmp_path, MS_HEAD + steps)
    refused(path, message)


@pytest.mark.parametrize("text, message", [
    ("title: t\nparties: {a: {}, b: {}}\nchannels:\n  x: {kind: lightning, alice: a, bob: b, deposits: [1, 1]}\n"
     "steps: [open: x]\n", ":4: channel x: kind: expected one of payment, multistate, got 'lightning'"),
    ("title: t\nparties: {a: {}, b: {}}\nchannels:\n  x: {alice: a, bob: b, deposits: [1, 1]}\nsteps:\n"
     f"  - nanocontract: {{by: a, {LOCK}}}\n",
     ":6: step 1 (nanocontract): channel x is a payment channel: nanocontracts live in multistate channels "
     "(kind: multistate)"),
    ("title: t\nparties: {a: {}, b: {}}\nchannels:\n  x: {alice: a, bob: b, deposits: [1, 1]}\nsteps:\n"
     "  - expect:\n      state: {party: a, nanocontracts: []}\n",
     ":7: step 1 (expect): state: nanocontracts goes with a multistate channel, and x is a payment channel"),
    ("title: t\nparties: {a: {}, b: {}}\nchannels:\n  x: {kind: multistate, alice: a, bob: b, deposits: [1, 1]}\n"
     "  y: {kind: multistate, alice: a, bob: b, deposits: [1, 1]}\nsteps:\n"
     f"  - nanocontract: {{by: a, {LOCK}}}\n",
     ":7: step 1 (nanocontract): missing field 'channel' (the scenario has 2 channels)"),
    ("title: t\nparties: {a: {}, b: {}}\nchannels:\n  x: {kind: multistate, alice: a, bob: b, deposits: [1, 1]}\n"
     "steps:\n  - call: {by: a, nanocontract: lock, function: claim}\n"
     f"  - nanocontract: {{by: a, {LOCK}}}\n",
     ":6: step 1 (call): nanocontract: expected a nanocontract created by an earlier step: there is none, got 'lock'"),
])
def test_a_wrong_multistate_file_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    refused(path, message)


def test_multistate_steps_and_their_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, MS_HEAD + "  - call: {by: bob, nanocontract: pay, function: claim}\n"
                                     "  - call: {by: bob, nanocontract: game, function: move, cell: 4}\n"
                                     "  - register: {by: alice, nanocontract: pay, version: 0}\n"
                                     "  - execute: {by: bob, nanocontract: pay, function: claim,\n"
                                     "              preimage: '0x" + "ab" * 32 + "'}\n"
                                     "  - absorb: {by: alice, nanocontract: pay}\n"
                                     "  - wait: {timeout: game, offset: -1}\n"
                                     "  - close: {by: bob}\n"
                                     "  - expect:\n"
                                     "      state: {party: bob, balances: [9eth, 4eth], nanocontracts: [game]}\n"
                                     "      nanocontract:\n"
                                     "        - {name: pay, party: alice, version: 1, released: [0, 1eth]}\n"
                                     "        - {name: game, terminated: false}\n")
    scenario = load(path)
    assert scenario.channels["ab"].kind == "multistate" and scenario.channels["ab"].token == "ETH"
    pay, game = scenario.nanocontracts["pay"], scenario.nanocontracts["game"]
    assert (pay.channel, pay.app, pay.by, pay.line, pay.amount, pay.timeout) == ("ab", "HashTimeLock", "alice", 6,
                                                                                 10**18, 60)
    assert pay.preimage == b"secret".ljust(32, b"\0")
    assert (game.stakes, game.first, game.move_timeout) == ((10**18, 10**18), "bob", 60)
    _, _, claim, move, register, execute, absorb, wait, close, expect = scenario.steps
    assert claim.args == {"by": "bob", "nanocontract": "pay", "function": "claim", "channel": "ab"}
    assert move.args["cell"] == 4 and register.args["version"] == 0
    assert execute.args["preimage"] == b"\xab" * 32 and execute.line == 11
    assert absorb.args == {"by": "alice", "nanocontract": "pay", "channel": "ab"}
    assert wait.args == {"timeout": "game", "offset": -1}
    assert close.args == {"by": "bob", "channel": "ab"}
    assert expect.args["state"] == {"party": "bob", "balances": (9 * 10**18, 4 * 10**18), "nanocontracts": ("game",)}
    assert expect.args["nanocontract"] == (
        {"name": "pay", "party": "alice", "version": 1, "released": (0, 10**18)},
        {"name": "game", "terminated": False},
    )
    assert expect.lines["nanocontract"] == 19


def test_a_multistate_channel_closes_cooperatively_also_after_a_stale_close(tmp_path: Path) -> None:
    path = write(tmp_path, MS_HEAD + "  - close: {by: bob, version: 1}\n  - cooperative_close: {by: alice}\n")
    *_, close, cooperative = load(path).steps
    assert close.args == {"by": "bob", "version": 1, "channel": "ab"}
    assert (cooperative.action, cooperative.args, cooperative.line) == ("cooperative_close",
                                                                        {"by": "alice", "channel": "ab"}, 9)


# ------------------------------------------------------------------------------- virtual channels

V_PARTIES = "parties: {alice: {}, ingrid: {hub: {}}, bob: {}, carol: {}}\n"
V_CHANNELS = """channels:
  ai: {kind: multistate, alice: alice, bob: ingrid, deposits: [10eth, 10eth]}
  ib: {kind: multistate, alice: ingrid, bob: bob, deposits: [10eth, 10eth]}
  ab: {alice: alice, bob: bob, deposits: [1eth, 1eth]}
"""
GAMMA = "alice: alice, ingrid: ingrid, bob: bob, ledgers: [ai, ib], deposits: [3eth, 1eth], validity: 3600, window: 1200"
V_HEAD = f"title: t\n{V_PARTIES}{V_CHANNELS}virtual:\n  g: {{{GAMMA}}}\nsteps:\n"


@pytest.mark.parametrize("steps, message", [
    ("  - pay: {channel: g, from: ingrid, amount: 1eth}\n",
     ":10: step 1 (pay): ingrid is not an end of virtual channel g (alice or bob)"),
    ("  - pay: {channel: h, from: alice, amount: 1eth}\n",
     ":10: step 1 (pay): channel: expected a channel or virtual channel: one of ai, ib, ab, g, got 'h'"),
    ("  - open: {channel: g, confirm: false}\n",
     ":10: step 1 (open): confirm goes with a channel on chain; virtual channel g opens off chain"),
    ("  - close: {channel: g, by: alice, version: 1}\n",
     ":10: step 1 (close): version: virtual channel g closes through ingrid with the latest state (submit puts a "
     "chosen version on chain)"),
    ("  - close: {channel: g, by: alice, timeout: 0}\n",
     ":10: step 1 (close): timeout: expected a number of seconds > 0, got 0"),
    ("  - close: {channel: ab, by: alice, timeout: 1}\n",
     ":10: step 1 (close): timeout goes with a virtual channel, and ab is not one"),
    ("  - cooperative_close: {channel: g, by: alice}\n",
     ":10: step 1 (cooperative_close): channel: expected a channel: one of ai, ib, ab (virtual channel g closes "
     "cooperatively with close, the fast close through ingrid), got 'g'"),
    ("  - cooperative_close: {channel: h, by: alice}\n",
     ":10: step 1 (cooperative_close): channel: expected a channel: one of ai, ib, ab, got 'h'"),
    ("  - finalize: {channel: g, by: alice}\n",
     ":10: step 1 (finalize): channel: expected a channel: one of ai, ib, ab (g is a virtual channel), got 'g'"),
    ("  - submit: {channel: ai, by: alice, version: 1}\n",
     ":10: step 1 (submit): channel: expected a virtual channel: one of g, got 'ai'"),
    ("  - submit: {channel: g, by: alice}\n", ":10: step 1 (submit): missing field 'version'"),
    ("  - submit: {channel: g, by: alice, version: 0}\n",
     ":10: step 1 (submit): version: expected an integer >= 1, got 0"),
    ("  - submit: {channel: g, by: alice, version: 1, balances: [1eth]}\n",
     ":10: step 1 (submit): balances: expected [alice's, bob's] amounts"),
    ("  - submit: {channel: g, by: carol, version: 1}\n",
     ":10: step 1 (submit): carol is not an end of virtual channel g (alice or bob)"),
    ("  - wait: {validity: ai}\n", ":10: step 1 (wait): validity: expected a virtual channel: one of g, got 'ai'"),
    ("  - wait: {validity: g, deadline: ai}\n",
     ":10: step 1 (wait): expected exactly one of seconds, blocks, deadline, window, timeout, validity"),
    ("  - expect: {channel: g, events: [Initialising]}\n",
     ":10: step 1 (expect): events: virtual channel g has none of its own; expect them on its ledger channels ai, ib"),
    ("  - expect: {channel: g, stages: {alice: open}}\n",
     ":10: step 1 (expect): stages: virtual channel g has none of its own"),
    ("  - expect: {channel: g, payout: [1eth, 3eth]}\n",
     ":10: step 1 (expect): payout: expected {party: amount, ...} for virtual channel g: what its ledger channels "
     "paid alice, ingrid, bob"),
    ("  - expect: {channel: g, payout: {carol: 1eth}}\n",
     ":10: step 1 (expect): payout: carol is not a party of virtual channel g (alice, ingrid, bob)"),
    ("  - expect: {channel: ai, payout: {alice: 1eth}}\n",
     ":10: step 1 (expect): payout: expected [alice's, bob's] amounts for channel ai ({party: amount} is for a "
     "virtual channel)"),
    ("  - expect: {channel: g, halves: {ab: {version: 1}}}\n",
     ":10: step 1 (expect): halves: ab is not a ledger channel of g (ai, ib)"),
    ("  - expect: {channel: g, halves: {ai: {}}}\n",
     ":10: step 1 (expect): halves: expected {LEDGER: {registered: B, version: N, balances: [a, b], settled: B}"),
    ("  - expect: {channel: g, halves: {ai: {stored: 1}}}\n",
     ":10: step 1 (expect): halves: expected only registered, version, balances, settled for a half (not stored)"),
    ("  - expect: {channel: g, halves: {ai: {settled: yes please}}}\n",
     ":10: step 1 (expect): halves: expected true or false"),
    ("  - expect: {channel: ai, halves: {ai: {version: 1}}}\n",
     ":10: step 1 (expect): halves goes with a virtual channel, and ai is not one"),
    ("  - expect: {channel: g, state: {party: carol, version: 1}}\n",
     ":10: step 1 (expect): state: carol is not a party of virtual channel g (alice, ingrid, bob)"),
    ("  - expect: {channel: g, state: {party: alice, nanocontracts: []}}\n",
     ":10: step 1 (expect): state: nanocontracts goes with a multistate channel, and g is a virtual channel"),
    ("  - expect: {channel: ai, state: {party: alice, settled: true}}\n",
     ":10: step 1 (expect): state: final and settled go with a virtual channel, and ai is not one"),
])
def test_a_wrong_virtual_step_names_its_line_field_and_expectation(tmp_path: Path, steps: str, message: str) -> None:
    path = write(tmp_path, V_HEAD + steps)
    refused(path, message)


def virtual_file(gamma: str = GAMMA, parties: str = V_PARTIES) -> str:
    return f"title: t\n{parties}{V_CHANNELS}virtual:\n  g: {{{gamma}}}\nsteps: [open: g]\n"


@pytest.mark.parametrize("text, message", [
    (virtual_file(GAMMA.replace(", window: 1200", "")), ":8: virtual channel g: missing field 'window'"),
    (virtual_file(GAMMA.replace("bob: bob", "bob: dave")), ":8: virtual channel g: bob: expected a party: one of "
                                                           "alice, ingrid, bob, carol, got 'dave'"),
    (virtual_file(GAMMA.replace("ingrid: ingrid", "ingrid: alice")),
     ":8: virtual channel g: alice, ingrid and bob are three different parties"),
    (virtual_file(GAMMA.replace("[ai, ib]", "ai")),
     ":8: virtual channel g: ledgers: expected [Alice–Ingrid's, Ingrid–Bob's] multistate channels, got 'ai'"),
    (virtual_file(GAMMA.replace("[ai, ib]", "[ai, xy]")),
     ":8: virtual channel g: ledgers: expected a channel: one of ai, ib, ab, got ['ai', 'xy']"),
    (virtual_file(GAMMA.replace("[ai, ib]", "[ab, ib]")),
     ":8: virtual channel g: ledgers: ab is a payment channel; a virtual channel's halves live in multistate channels"),
    (virtual_file(GAMMA.replace("[ai, ib]", "[ib, ai]")),
     ":8: virtual channel g: ledgers: ib is between ingrid and bob, not alice and ingrid"),
    (virtual_file(GAMMA.replace("window: 1200", "window: 600")),
     ":8: virtual channel g: window: expected more than the ledger channels' Δ (600 s), got 600"),
    (virtual_file(GAMMA.replace("validity: 3600", "validity: 601")),
     ":8: virtual channel g: validity: expected more than Δ + 1 = 601 s (the halves are registered at validity − Δ − "
     "1), got 601"),
    (virtual_file(GAMMA.replace("validity: 3600", f"validity: {365 * 24 * 3600 - 3599}")),
     ":8: virtual channel g: validity: validity + 3 windows must be within 365 days"),
    (virtual_file().replace("  g: {", "  ai: {"), ":8: virtual channel ai: expected a name that no channel has"),
    (virtual_file().replace("  g: {", "  'g@ai': {"), ":8: virtual channel g@ai: expected a name of letters, digits"),
    (virtual_file(parties="parties: {alice: {}, ingrid: {hub: {tip: 1}}, bob: {}, carol: {}}\n"),
     ":2: party ingrid: hub: unknown field 'tip': expected fast_close, capacity, max_channels, fee"),
    (virtual_file(parties="parties: {alice: {}, ingrid: {hub: {fee: 0.5}}, bob: {}, carol: {}}\n"),
     ":2: party ingrid: hub: fee: expected an amount such as 1eth"),
    (virtual_file(GAMMA + ", fee: -1"), ":8: virtual channel g: fee: expected an amount >= 0, got -1"),
    (virtual_file(GAMMA + ", tip: 1"),
     ":8: virtual channel g: unknown field 'tip': expected alice, ingrid, bob, ledgers, deposits, validity, window, "
     "fee"),
    (virtual_file(parties="parties: {alice: {}, ingrid: {hub: {fast_close: no thanks}}, bob: {}, carol: {}}\n"),
     ":2: party ingrid: hub: fast_close: expected true or false, got 'no thanks'"),
    (virtual_file(parties="parties: {alice: {}, ingrid: {hub: true}, bob: {}, carol: {}}\n"),
     ":2: party ingrid: hub: expected a mapping"),
    (virtual_file(parties="parties: {alice: {}, ingrid: {}, bob: {accept_virtual: 1}, carol: {}}\n"),
     ":2: party bob: accept_virtual: expected true or false, got 1"),
    ("title: t\nparties: {a: {}}\nsteps:\n  - submit: {channel: g, by: a, version: 1}\n",
     ":4: step 1 (submit): channel: expected a virtual channel: one of none (the file has no virtual:), got 'g'"),
])
def test_a_wrong_virtual_channel_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    refused(path, message)


def test_virtual_channels_and_their_steps(tmp_path: Path) -> None:
    parties = ("parties: {alice: {}, ingrid: {hub: {fast_close: false, capacity: 10eth, max_channels: 2}}, "
               "bob: {accept_virtual: false}, carol: {}}\n")
    path = write(tmp_path, f"title: t\n{parties}{V_CHANNELS}virtual:\n  g: {{{GAMMA}}}\nsteps:\n"
                           "  - open: g\n"
                           "  - pay: {channel: g, from: bob, amount: 0.5eth}\n"
                           "  - close: {channel: g, by: alice, timeout: 0.2}\n    fails: PeerTimeout\n"
                           "  - submit: {channel: g, by: bob, version: 1}\n"
                           "  - wait: {validity: g, offset: -601}\n"
                           "  - expect:\n"
                           "      channel: g\n"
                           "      payout: {alice: 8eth, ingrid: 20eth}\n"
                           "      state: {party: ingrid, version: 1, balances: [2.5eth, 1.5eth], final: false,"
                           " settled: true}\n"
                           "      halves: {ai: {registered: true, version: 1}, ib: {balances: [2.5eth, 1.5eth],"
                           " settled: false}}\n")
    scenario = load(path)
    assert scenario.virtual["g"].ledgers == ("ai", "ib") and scenario.virtual["g"].ends == ("alice", "bob")
    assert (scenario.virtual["g"].deposits, scenario.virtual["g"].validity, scenario.virtual["g"].window) == (
        (3 * 10**18, 10**18), 3600, 1200)
    hub = scenario.parties["ingrid"].hub
    assert (hub.fast_close, hub.capacity, hub.max_channels) == (False, 10 * 10**18, 2)
    assert scenario.parties["alice"].hub is None and scenario.parties["alice"].accept_virtual
    assert not scenario.parties["bob"].accept_virtual
    open_, pay, close, submit, wait, expect = scenario.steps
    assert open_.args == {"channel": "g"}
    assert pay.args == {"channel": "g", "from": "bob", "amount": 5 * 10**17}
    assert (close.args, close.fails) == ({"channel": "g", "by": "alice", "timeout": 0.2}, "PeerTimeout")
    assert submit.args == {"channel": "g", "by": "bob", "version": 1}
    assert wait.args == {"validity": "g", "offset": -601}
    assert expect.args["payout"] == {"alice": 8 * 10**18, "ingrid": 20 * 10**18}
    assert expect.args["state"] == {"party": "ingrid", "version": 1, "balances": (25 * 10**17, 15 * 10**17),
                                    "final": False, "settled": True}
    assert expect.args["halves"] == {"ai": {"registered": True, "version": 1},
                                     "ib": {"balances": (25 * 10**17, 15 * 10**17), "settled": False}}
    assert expect.lines["halves"] == 20


TOWERS = """title: t
towers: {watchtower: {}, spare: {funds: 2eth}}
parties: {alice: {}, bob: {towers: [watchtower, spare], reward: 0.01eth}, carol: {towers: [watchtower]}}
channels:
  ab: {alice: alice, bob: bob, deposits: [10eth, 5eth]}
  cb: {alice: carol, bob: bob, deposits: [1eth, 1eth]}
steps:
"""


def test_towers_their_clients_and_their_steps(tmp_path: Path) -> None:
    s = load(write(tmp_path, TOWERS + "  - offline: watchtower\n  - online: watchtower\n  - crash: spare\n"
                              "  - restart: spare\n  - crash: {party: spare, at: monitor-stored}\n"
                              "  - refute: {channel: ab, by: watchtower, version: 2}\n"
                              "  - refute: {channel: ab, by: carol, version: 2, client: bob, tower: spare}\n"
                              "  - drop: {from: watchtower, message: MonitorAck}\n"
                              "  - expect: {channel: ab, tower: {watchtower: {version: 3, stage: closing, refuted: 3, "
                              "reward_paid: 0.01eth}}, wallets: {spare: 0}, error_reply: {from: spare, "
                              "code: STALE_VERSION}}\n"))
    assert [(t.name, t.funds, t.key) for t in s.towers.values()] == [("watchtower", 10**18, None),
                                                                     ("spare", 2 * 10**18, None)]
    assert (s.parties["bob"].towers, s.parties["bob"].reward) == (("watchtower", "spare"), 10**16)
    assert (s.parties["carol"].towers, s.parties["carol"].reward, s.parties["alice"].towers) == (("watchtower",), 0, ())
    assert s.clients("watchtower") == ["bob", "carol"] and s.clients("spare") == ["bob"]
    refute, forged = (step.args for step in s.steps if step.action == "refute")
    assert (refute["client"], refute["tower"]) == ("bob", "watchtower")  # the client of ab that uses it
    assert (forged["by"], forged["client"], forged["tower"]) == ("carol", "bob", "spare")
    expect = s.steps[-1].args
    assert expect["tower"] == {"watchtower": {"version": 3, "stage": "closing", "refuted": 3, "reward_paid": 10**16}}


@pytest.mark.parametrize("text, message", [
    (TOWERS.replace("[watchtower, spare]", "[tower]"),
     ":3: party bob: towers: expected a tower: one of watchtower, spare, got ['tower']"),
    (TOWERS.replace("carol: {towers: [watchtower]}", "carol: {reward: 1eth}"),
     ":3: party carol: reward goes with towers, to pay them"),
    (TOWERS.replace("spare: {funds: 2eth}", "alice: {}"), ":3: party alice: expected a name that no tower has"),
    (TOWERS.replace("spare: {funds: 2eth}", "spare: {hub: {}}"), ":2: tower spare: unknown field 'hub'"),
    (TOWERS + "  - crash: {party: watchtower, at: update-signed}\n",
     ":8: step 1 (crash): at: watchtower is a tower, whose crash points are monitor-received, monitor-stored, "
     "refute-due, refute-sent, finalize-due, finalize-sent; got 'update-signed'"),
    (TOWERS + "  - crash: {party: bob, at: monitor-stored}\n", ":8: step 1 (crash): at: bob is a party"),
    (TOWERS + "  - refute: {channel: cb, by: watchtower, version: 1}\n",
     ":8: step 1 (refute): name the party whose authorisation it is (client): both of cb's parties use watchtower"),
    (TOWERS + "  - refute: {channel: ab, by: alice, version: 1}\n",
     ":8: step 1 (refute): alice is a party: name the tower its authorisation is for (tower)"),
    (TOWERS + "  - refute: {channel: ab, by: spare, version: 1, client: carol}\n",
     ":8: step 1 (refute): client: carol is not a party of channel ab"),
    (TOWERS + "  - expect: {channel: ab, tower: {watchtower: {held: 3}}}\n",
     ":8: step 1 (expect): tower: expected only version, stage, refuted, reward_paid, nanocontracts for a tower "
     "(not held)"),
    (TOWERS + "  - expect: {channel: ab, tower: {watchtower: {nanocontracts: {pay: 1}}}}\n",
     ":8: step 1 (expect): tower: expected a nanocontract created by an earlier step: there is none"),
    (TOWERS + "  - expect: {channel: ab, tower: {carol: {version: 3}}}\n",
     ":8: step 1 (expect): tower: expected a tower: one of watchtower, spare"),
    (TOWERS + "  - offline: dave\n", ":8: step 1 (offline): party: expected a party or a tower: one of alice, bob, "
                                     "carol, watchtower, spare, got 'dave'"),
])
def test_a_wrong_tower_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load(write(tmp_path, text))
    assert message in str(info.value)


MS_TOWERS = """title: t
towers: {watchtower: {}}
parties: {alice: {}, ingrid: {hub: {}}, bob: {towers: [watchtower], reward: 0.01eth}}
channels:
  ab: {kind: multistate, alice: alice, bob: bob, deposits: [10eth, 5eth]}
  ai: {kind: multistate, alice: alice, bob: ingrid, deposits: [10eth, 10eth]}
  ib: {kind: multistate, alice: ingrid, bob: bob, deposits: [10eth, 10eth]}
virtual:
  g: {alice: alice, ingrid: ingrid, bob: bob, ledgers: [ai, ib], deposits: [3eth, 1eth], validity: 3600, window: 1200}
steps:
  - nanocontract: {channel: ab, by: alice, name: pay, app: HashTimeLock, amount: 1eth, preimage: x, timeout: 3600}
"""


def test_tower_checks_of_multistate_and_virtual_channels(tmp_path: Path) -> None:
    s = load(write(tmp_path, MS_TOWERS + "  - expect: {channel: ab, tower: {watchtower: {version: 3, stage: closing, "
                                         "refuted: 3, reward_paid: 0.02eth, nanocontracts: {pay: 1}}}}\n"
                                         "  - expect: {channel: g, tower: {watchtower: {version: 3, "
                                         "reward_paid: 0.01eth}}}\n"))
    ms, virtual = (step.args["tower"] for step in s.steps[1:])
    assert ms == {"watchtower": {"version": 3, "stage": "closing", "refuted": 3, "reward_paid": 2 * 10**16,
                                 "nanocontracts": {"pay": 1}}}
    assert virtual == {"watchtower": {"version": 3, "reward_paid": 10**16}}


@pytest.mark.parametrize("text, message", [
    (MS_TOWERS + "  - expect: {channel: g, tower: {watchtower: {stage: closed}}}\n",
     ":12: step 2 (expect): tower: only version (of the SETTLE it holds) and reward_paid for virtual channel g "
     "(not stage)"),
    (MS_TOWERS + "  - expect: {channel: ab, tower: {watchtower: {nanocontracts: {tip: 1}}}}\n",
     ":12: step 2 (expect): tower: expected a nanocontract created by an earlier step: one of pay"),
    (MS_TOWERS + "  - expect: {channel: ib, tower: {watchtower: {nanocontracts: {pay: 0}}}}\n",
     ":12: step 2 (expect): tower: nanocontract pay is in channel ab, not ib"),
    (MS_TOWERS + "  - expect: {channel: ab, tower: {watchtower: {nanocontracts: []}}}\n",
     ":12: step 2 (expect): tower: expected nanocontracts: a mapping of nanocontract to the version the tower holds"),
])
def test_a_wrong_tower_check_of_a_multistate_or_virtual_channel_names_its_line(tmp_path: Path, text: str,
                                                                                message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load(write(tmp_path, text))
    assert message in str(info.value)


# ------------------------------------------------------------------------------- multi-hop payments

MH_HEAD = """title: t
parties: {alice: {}, bob: {forward: {base_fee: 0.003eth}}, carol: {forward: {fee_ppm: 1000}}, dave: {}}
channels:
  ab: {kind: multistate, alice: alice, bob: bob, deposits: [5eth, 5eth]}
  bc: {kind: multistate, alice: bob, bob: carol, deposits: [5eth, 5eth]}
  cd: {kind: multistate, alice: carol, bob: dave, deposits: [5eth, 5eth]}
  da: {alice: dave, bob: alice, deposits: [1eth, 1eth]}
steps:
  - invoice: {by: dave, name: coffee, amount: 1eth}
"""
PAY = "  - pay_invoice: {from: alice, invoice: coffee, route: [ab, bc, cd]}\n"


def test_a_hold_its_release_a_garbled_failure_and_a_payment_by_hand(tmp_path: Path) -> None:
    head = MH_HEAD.replace("alice: {}", "alice: {reply_time: 0.5}")
    path = write(tmp_path, head + "  - hold: {from: carol, message: NanocontractCreate}\n  - release: carol\n"
                 "  - garble: carol\n  - garble: {from: bob, count: 2}\n"
                 + PAY.replace("]}", "], amount: 0.5eth, secret: guess}") +
                 "  - expect: {payment: {invoice: coffee, failure: {hop: none, code: none}}}\n")
    scenario = load(path)
    assert scenario.parties["alice"].reply_time == 0.5 and scenario.parties["bob"].reply_time is None
    _, hold, release, garble, garble2, pay, expect = scenario.steps
    assert (hold.action, hold.args) == ("hold", {"from": "carol", "message": "NanocontractCreate"})
    assert (release.args, garble.args, garble2.args) == ({"from": "carol"}, {"from": "carol"}, {"from": "bob", "count": 2})
    assert pay.args["amount"] == 5 * 10**17 and pay.args["secret"] == b"guess".ljust(32, b"\0")
    assert expect.args["payment"]["failure"] == {"hop": "none", "code": "none"}


def test_invoices_payments_and_their_checks(tmp_path: Path) -> None:
    head = MH_HEAD.replace("dave: {}", "dave: {response_timeout: 1.5}")
    path = write(tmp_path, head + PAY.replace("]}", "], timeout: 8}") +
                 "  - invoice: {by: alice, name: tea, amount: 20gwei, expiry: 60, min_final: 30, description: 'tea'}\n"
                 "  - pay_invoice: {from: carol, invoice: tea, route: [bc, ab]}\n"
                 "  - wait: {window: coffee@bc, offset: 1}\n"
                 "  - execute: {by: carol, nanocontract: coffee@bc, function: claim}\n"
                 "  - expect:\n"
                 "      payment: {invoice: coffee, preimage: [dave, alice, carol], claimed: [],\n"
                 "                outcome: {bob: failing, alice: failed}, failure: {hop: carol, code: NO_CAPACITY}}\n"
                 "      nanocontract: {name: tea@ab, party: alice, released: [0, 0]}\n")
    scenario = load(path)
    assert scenario.parties["bob"].forward == ForwardPolicy(base_fee=3 * 10**15)
    assert scenario.parties["carol"].forward == ForwardPolicy(fee_ppm=1000) and scenario.parties["alice"].forward is None
    assert scenario.parties["dave"].response_timeout == 1.5 and scenario.parties["alice"].response_timeout is None
    invoice, pay, tea, pay_tea, _, _, expect = scenario.steps
    assert invoice.args == {"by": "dave", "name": "coffee", "amount": 10**18}
    assert pay.args == {"from": "alice", "invoice": "coffee", "route": ("ab", "bc", "cd"), "timeout": 8.0}
    assert tea.args == {"by": "alice", "name": "tea", "amount": 20 * 10**9, "expiry": 60, "min_final": 30,
                        "description": "tea"}
    coffee = scenario.invoices["coffee"]
    assert (coffee.payee, coffee.amount, coffee.line, coffee.payer, coffee.paid_at) == ("dave", 10**18, 9, "alice", 10)
    assert coffee.locks() == ("coffee@ab", "coffee@bc", "coffee@cd")
    # Each lock is a nanocontract of its channel, sent by the party the route reaches it from.
    locks = [scenario.nanocontracts[name] for name in (*coffee.locks(), "tea@bc", "tea@ab")]
    assert [(n.channel, n.app, n.by, n.line) for n in locks] == [
        ("ab", "HashTimeLock", "alice", 10), ("bc", "HashTimeLock", "bob", 10), ("cd", "HashTimeLock", "carol", 10),
        ("bc", "HashTimeLock", "carol", 12), ("ab", "HashTimeLock", "bob", 12)]
    assert "channel" not in expect.args  # no check of a channel of its own: none needed among several
    assert expect.args["payment"] == {"invoice": "coffee", "preimage": ("alice", "carol", "dave"), "claimed": (),
                                      "outcome": {"bob": "failing", "alice": "failed"},
                                      "failure": {"hop": "carol", "code": "NO_CAPACITY"}}


@pytest.mark.parametrize("steps, message", [
    ("  - invoice: {by: dave, name: coffee, amount: 1eth}\n",
     ":10: step 2 (invoice): name: expected a new name: line 9 makes an invoice coffee already, got 'coffee'"),
    ("  - invoice: {by: dave, name: carol, amount: 1eth}\n",
     ":10: step 2 (invoice): name: expected a name that is not a party's, got 'carol'"),
    ("  - invoice: {by: dave, name: tea, amount: 0}\n", ":10: step 2 (invoice): amount: an invoice asks for more than 0"),
    ("  - invoice: {by: dave, name: tea, amount: 1eth, description: '" + "x" * 101 + "'}\n",
     ":10: step 2 (invoice): description: expected a text of at most 100 bytes"),
    ("  - invoice: {by: dave, name: tea, amount: 1eth, min_final: 4294967296}\n",
     ":10: step 2 (invoice): min_final: at most 4294967295 s"),
    ("  - pay_invoice: {from: alice, invoice: tea, route: [ab]}\n",
     ":10: step 2 (pay_invoice): invoice: expected an invoice made by an earlier step: one of coffee, got 'tea'"),
    ("  - pay_invoice: {from: dave, invoice: coffee, route: [cd]}\n",
     ":10: step 2 (pay_invoice): from: dave made invoice coffee, and pays itself nothing"),
    ("  - pay_invoice: {from: alice, invoice: coffee, route: []}\n",
     ":10: step 2 (pay_invoice): route: expected a list of 1 to 8 channels, the payer's first, e.g. [ab, bc, cd]"),
    ("  - pay_invoice: {from: alice, invoice: coffee, route: [ab, ab]}\n",
     ":10: step 2 (pay_invoice): route: expected a list of different channels"),
    ("  - pay_invoice: {from: alice, invoice: coffee, route: [ab, xy]}\n",
     ":10: step 2 (pay_invoice): route: expected a channel: one of ab, bc, cd, da, got ['ab', 'xy']"),
    ("  - pay_invoice: {from: alice, invoice: coffee, route: [da]}\n",
     ":10: step 2 (pay_invoice): route: da is a payment channel; multi-hop payments go over multistate channels"),
    ("  - pay_invoice: {from: alice, invoice: coffee, route: [bc, cd]}\n",
     ":10: step 2 (pay_invoice): route: bc is between bob and carol, and the route is at alice there"),
    ("  - pay_invoice: {from: alice, invoice: coffee, route: [ab, bc]}\n",
     ":10: step 2 (pay_invoice): route: it ends at carol, and dave made invoice coffee"),
    ("  - pay_invoice: {from: bob, invoice: coffee, route: [ab, bc, cd]}\n",
     ":10: step 2 (pay_invoice): route: bc is between bob and carol, and the route is at alice there"),
    ("  - pay_invoice: {from: bob, invoice: coffee, route: [bc, cd]}\n  - pay_invoice: {from: carol, invoice: coffee,"
     " route: [cd]}\n", ":11: step 3 (pay_invoice): invoice: line 10 pays coffee already"),
    ("  - pay_invoice: {from: alice, invoice: coffee, route: [ab, cd]}\n",
     ":10: step 2 (pay_invoice): route: cd is between carol and dave, and the route is at bob there"),
    ("  - pay_invoice: {from: alice, invoice: coffee, route: [ab, bc, cd], timeout: 0}\n",
     ":10: step 2 (pay_invoice): timeout: expected a number of seconds > 0, got 0"),
    (PAY + PAY, ":11: step 3 (pay_invoice): invoice: line 10 pays coffee already (a scenario pays an invoice once: make "
     "another to pay again)"),
    ("  - expect: {payment: {invoice: coffee, preimage: [dave]}}\n",
     ":10: step 2 (expect): payment: expected an invoice paid by an earlier step (no pay_invoice pays coffee)"),
    (PAY + "  - expect: {payment: {invoice: coffee}}\n",
     ":11: step 3 (expect): payment: expected {invoice: NAME, preimage: [parties], claimed: [parties], outcome:"),
    (PAY + "  - expect: {payment: {invoice: coffee, paid: true}}\n",
     ":11: step 3 (expect): payment: expected only invoice, preimage, claimed, outcome, failure (not paid)"),
    (PAY + "  - expect: {payment: {invoice: coffee, outcome: {alice: lost}}}\n",
     ":11: step 3 (expect): payment: expected one of settled, failed, failing, pending, none, got"),
    (PAY + "  - expect: {payment: {invoice: coffee, outcome: [alice]}}\n",
     ":11: step 3 (expect): payment: expected outcome: a mapping of party to one of settled, failed"),
    (PAY + "  - expect: {payment: {invoice: coffee, failure: {hop: bob, why: late}}}\n",
     ":11: step 3 (expect): payment: expected failure: {hop: P, code: CODE} (either optional)"),
    (PAY + "  - expect: {payment: {invoice: coffee, failure: {code: TOO_SLOW}}}\n",
     ":11: step 3 (expect): payment: expected one of NEXT_HOP_REFUSED, NO_CAPACITY"),
    (PAY + "  - expect: {payment: {invoice: coffee, preimage: dave}}\n",
     ":11: step 3 (expect): payment: expected a list of parties, [] for none"),
    (PAY + "  - expect: {payment: {invoice: coffee, claimed: [erin]}}\n",
     ":11: step 3 (expect): payment: expected a party: one of alice, bob, carol, dave"),
    (PAY + "  - wait: {timeout: coffee@da}\n",
     ":11: step 3 (wait): timeout: expected a nanocontract created by an earlier step: one of coffee@ab, coffee@bc, "
     "coffee@cd, got 'coffee@da'"),
    (PAY + "  - expect: {wallets: {alice: 0}, payout: [1, 1]}\n",
     ":11: step 3 (expect): missing field 'channel' (the scenario has 4 channels)"),
])
def test_a_wrong_multihop_step_names_its_line_field_and_expectation(tmp_path: Path, steps: str, message: str) -> None:
    path = write(tmp_path, MH_HEAD + steps)
    refused(path, message)


@pytest.mark.parametrize("text, message", [
    (MH_HEAD.replace("{fee_ppm: 1000}", "{fee_ppm: 1000001}"),
     ":2: party carol: forward: expected fee_ppm: an integer from 0 to 1,000,000 (millionths of the amount forwarded)"),
    (MH_HEAD.replace("{fee_ppm: 1000}", "{fee_ppm: 0.1}"), ":2: party carol: forward: expected fee_ppm: an integer"),
    (MH_HEAD.replace("{base_fee: 0.003eth}", "{base_fee: 0.003}"),
     ":2: party bob: forward: expected base_fee: an amount such as 1eth"),
    (MH_HEAD.replace("{base_fee: 0.003eth}", "{base_fee: 1, margin: 30}"),
     ":2: party bob: forward: expected only base_fee and fee_ppm (not margin)"),
    (MH_HEAD.replace("{base_fee: 0.003eth}", "free"), ":2: party bob: forward: expected {base_fee: amount, fee_ppm: N}"),
    (MH_HEAD.replace("alice: {}", "alice: {response_timeout: 0}"),
     ":2: party alice: response_timeout: expected a number of seconds > 0, got 0"),
    (MH_HEAD.replace("alice: {}", "alice: {timeout: 1}"),
     ":2: party alice: unknown field 'timeout': expected funds, key, hub, accept_virtual, towers, reward, forward, "
     "response_timeout, reply_time"),
    (MH_HEAD.replace("alice: {}", "alice: {reply_time: 0}"),
     ":2: party alice: reply_time: expected a number of seconds > 0, got 0"),
    (MH_HEAD + PAY.replace("]}", "], amount: 0}"),
     ":10: step 2 (pay_invoice): amount: a payment delivers more than 0"),
    (MH_HEAD + PAY + "  - expect: {payment: {invoice: coffee, failure: {hop: nobody}}}\n",
     ":11: step 3 (expect): payment: expected"),
    (MH_HEAD + "  - garble: {from: alice, message: Update}\n",
     ":10: step 2 (garble): unknown field 'message': expected from, count"),
    (MH_HEAD + "  - hold: {from: alice}\n", ":10: step 2 (hold): missing field 'message'"),
    (MH_HEAD.replace("dave: {}}", "dave: {}, erin: {forward: {}}}"),
     ":2: party erin: forward: erin has no multistate channel to forward payments over"),
    (MH_HEAD.replace("by: dave", "by: alice").replace("kind: multistate, alice: alice", "alice: alice"),
     ":9: step 1 (invoice): by: alice has no multistate channel, and invoices are paid over multistate channels"),
    ("title: t\nparties: {a: {}, b: {}}\nchannels:\n"
     "  x: {kind: multistate, alice: a, bob: b, deposits: [1, 1], token: erc20}\n"
     "steps:\n  - invoice: {by: a, name: i, amount: 1}\n",
     ":6: step 1 (invoice): multi-hop payments are in ETH, and the channels are in erc20"),
    ("title: t\nparties: {a: {}, b: {}, c: {}}\nchannels:\n  ab: {kind: multistate, alice: a, bob: b, deposits: [1, 1]}\n"
     "  bc: {kind: multistate, alice: b, bob: c, deposits: [1, 1]}\n"
     "  ca: {kind: multistate, alice: c, bob: a, deposits: [1, 1]}\n"
     "steps:\n  - invoice: {by: b, name: i, amount: 1}\n  - pay_invoice: {from: a, invoice: i, route: [ca, bc, ab]}\n",
     ":9: step 2 (pay_invoice): route: it comes to a twice"),
    (V_HEAD + "  - invoice: {by: alice, name: g, amount: 1}\n",
     ":10: step 1 (invoice): name: expected a name that is not a virtual channel's, got 'g'"),
])
def test_a_wrong_multihop_file_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    refused(path, message)


# ------------------------------------------------------------------------------- by hand: final states, confirm, payouts

ERC20_HEAD = HEAD.replace("deposits: [10eth, 5eth]}", "deposits: [600, 100], token: erc20}")


def test_final_states_confirmations_deny_lists_and_withdrawals_by_hand(tmp_path: Path) -> None:
    path = write(tmp_path, ERC20_HEAD + "  - confirm: {by: bob}\n  - cooperative_close: {by: alice, version: 4}\n"
                                        "  - deny: bob\n  - allow: bob\n  - withdraw: {by: bob}\n"
                                        "  - withdraw: {by: bob, to: alice}\n  - expect: {owed: {bob: 350, alice: 0}}\n"
                                        "  - wait: {deadline: ab, offset: 1, next: true}\n")
    confirm, final, deny, allow, withdraw, elsewhere, expect, wait = load(path).steps
    assert (confirm.action, confirm.args) == ("confirm", {"channel": "ab", "by": "bob"})
    assert final.args == {"channel": "ab", "by": "alice", "version": 4}
    assert (deny.args, allow.args) == ({"party": "bob"}, {"party": "bob"})
    assert (withdraw.args, elsewhere.args) == ({"by": "bob"}, {"by": "bob", "to": "alice"})
    assert expect.args == {"owed": {"bob": 350, "alice": 0}} and "channel" not in expect.args
    assert wait.args == {"deadline": "ab", "offset": 1, "next": True}


@pytest.mark.parametrize("head, steps, message", [
    (HEAD, "  - deny: bob\n", ":6: step 1 (deny): deny is for the test token's deny list: the scenario needs an erc20"),
    (HEAD, "  - confirm: {by: carol}\n", ":6: step 1 (confirm): by: expected a party: one of alice, bob"),
    (HEAD, "  - cooperative_close: {by: alice, version: 0}\n",
     ":6: step 1 (cooperative_close): version: expected an integer >= 1, got 0"),
    (HEAD, "  - expect: {owed: {bob: -1}}\n", ":6: step 1 (expect): owed: expected an amount >= 0"),
    (HEAD, "  - withdraw: {by: bob, to: mallory}\n", ":6: step 1 (withdraw): to: expected a party or a tower"),
    (HEAD, "  - wait: {seconds: 5, next: true}\n", ":6: step 1 (wait): next goes with deadline, window, timeout or"),
    (MS_HEAD.split("  - nano")[0], "  - cooperative_close: {by: alice, version: 2}\n",
     ":6: step 1 (cooperative_close): version: a final state by hand is for payment channels, and ab is a multistate"),
])
def test_a_wrong_step_by_hand_names_its_line_field_and_expectation(tmp_path: Path, head: str, steps: str,
                                                                    message: str) -> None:
    refused(write(tmp_path, head + steps), message)


def test_ingrids_fee_a_forked_submission_and_refusals_passed_on(tmp_path: Path) -> None:
    """hub's fee and a virtual channel's; submit with balances (a fork both ends sign); error_reply
    as a list, for a refusal passed on through several parties, and a single one as a list of one."""
    parties = "parties: {alice: {}, ingrid: {hub: {fee: 0.01eth}}, bob: {}, carol: {}}\n"
    scenario = load(write(tmp_path, f"title: t\n{parties}{V_CHANNELS}virtual:\n  g: {{{GAMMA}, fee: 0.005eth}}\n"
                          "steps:\n  - open: g\n  - submit: {channel: g, by: bob, version: 2, balances: [1eth, 3eth]}\n"
                          "  - expect: {error_reply: [{from: bob, code: BALANCE_DECREASED}, "
                          "{from: ingrid, code: CHANNEL_REFUSED}]}\n"
                          "  - expect: {error_reply: {from: ingrid, code: CONFLICT}}\n"))
    assert scenario.parties["ingrid"].hub.fee == 10**16 and scenario.virtual["g"].fee == 5 * 10**15
    both, one = (step.args["error_reply"] for step in scenario.steps[-2:])
    assert both == ({"from": "bob", "code": "BALANCE_DECREASED"}, {"from": "ingrid", "code": "CHANNEL_REFUSED"})
    assert one == ({"from": "ingrid", "code": "CONFLICT"},)
    assert scenario.steps[1].args == {"channel": "g", "by": "bob", "version": 2, "balances": (10**18, 3 * 10**18)}
    assert load(write(tmp_path, virtual_file())).virtual["g"].fee == 0
