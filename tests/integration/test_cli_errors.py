"""Every `perun` command, given bad input: the exit code of the error's category (user 2, refused
by the peer or the chain 3, internal or out of reach 1), one line on stderr that says what to do,
no traceback, and with --json one object on stdout with the error's stable code.

One anvil with Alice's and Bob's `perun node` processes (test_cli_node's network), and Carol's,
stopped once Alice has a channel with her. The commands run through `perun.cli.main` in this
process, and as a program where the process boundary is the point.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from perun import keystore
from perun.chain.anvil import free_port
from perun.cli import parser
from perun.control.explain import CONTRACT, RULES, Category
from perun.core.route import Invoice
from perun.errors import CONTRACT_ERRORS
from tests.integration.test_cli_node import (  # noqa: F401 (net: the module's network, a fixture)
    PASSWORD,
    Net,
    NodeProcess,
    Result,
    net,
    ok,
    perun,
    perun_process,
    running,
    start_node,
)

EXIT = {Category.USER.value: 2, Category.REFUSED.value: 3, Category.INTERNAL.value: 1}


@dataclass
class World:
    net: Net
    carol: NodeProcess
    open: str  # Alice 1 ETH, Bob 0
    closing: str  # Bob registered version 1 (Alice 0.7 ETH, Bob 0.3 ETH)
    deadline: int  # of `closing`'s dispute window
    closed: str  # closed cooperatively
    offline: str  # Alice's channel with Carol, whose node has stopped
    cheap_key: Path  # Carol's key file, quick to decrypt
    closed_port: int  # nothing listens there
    tmp: Path

    @property
    def rpc_down(self) -> str:
        return f"http://127.0.0.1:{self.closed_port}"

    @property
    def alice(self) -> NodeProcess:
        return self.net.alice

    @property
    def bob(self) -> NodeProcess:
        return self.net.bob


@pytest.fixture(scope="module")
def world(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("errors")
    alice, bob = net.alice, net.bob
    ok("connect", bob.address, f"127.0.0.1:{bob.port}", "--data", alice.data)
    opened = net.open("1eth", "0")["channel"]
    closing = net.open("1eth", "0")["channel"]
    ok("pay", closing, "0.3eth", "--data", alice.data)
    deadline = perun("--json", "close", closing, "--unilateral", "--data", bob.data).json()["deadline"]
    assert net.status(alice, closing, sync=True)["stage"] == "closing"
    closed = net.open("1eth", "0")["channel"]
    ok("close", closed, "--data", alice.data)

    key = tmp / "carol.json"
    keystore.create(key, PASSWORD, kdf="scrypt", iterations=2**10)
    net.chain.fund(keystore.address(key), 10**18)
    with running(start_node(tmp / "carol", key, net.rpc, net.deployment)) as (carol,):
        carol.wait_ready()
        ok("connect", carol.address, f"127.0.0.1:{carol.port}", "--data", alice.data)
        offline = perun("--json", "open", carol.address, "--deposit", "1eth", "--peer-deposit", "0", "--delta", 3600,
                        "--data", alice.data).json()["channel"]
        assert carol.stop() == 0
        # Alice learns it when the connection ends: a few control round trips, no sleep.
        while carol.address in perun("--json", "info", "--data", alice.data).json()["peers"]:
            pass
        yield World(net, carol, opened, closing, deadline, closed, offline, key, free_port(), tmp)


# --------------------------------------------------------------------------- the table


@dataclass
class Row:
    command: str  # as the parser names it: "pay", "keystore new", "virtual open"
    what: str
    argv: Callable[[World], list[Any]]
    exit: int
    code: str
    line: Callable[[World], str | re.Pattern[str]]  # the whole line on stderr, or a pattern it matches
    env: dict[str, str] = field(default_factory=dict)
    process: bool = False  # run as a program of its own

    def __str__(self) -> str:
        return f"{self.command}: {self.what}"


def utc(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


ABSENT = "0x" + "ab" * 32
# An invoice on anvil's chain that expired in 1970.
EXPIRED = Invoice.create(b"\x05" * 32, None, 10**15, 1, chain_id=31337)[0].encode()
STRANGER = "0x" + "12" * 20
AMOUNT_HELP = "(say 1000, 100wei, 20gwei or 1.5eth)"

ROWS = [
    Row("demo", "RPC down", lambda w: ["demo", "--rpc", w.rpc_down, "--out", w.tmp / "demo"], 1, "CHAIN_UNREACHABLE",
        lambda w: f"perun demo: no JSON-RPC node answers at {w.rpc_down}: is the chain running? (`perun devnet` "
                  "starts a local one)"),
    Row("scenario run", "a missing file", lambda w: ["scenario", "run", w.tmp / "missing.yaml"], 2, "INVALID_INPUT",
        lambda w: f"perun scenario run: {w.tmp / 'missing.yaml'}: cannot read it: No such file or directory"),
    Row("deploy", "RPC down", lambda w: ["deploy", "--rpc", w.rpc_down], 1, "CHAIN_UNREACHABLE",
        lambda w: f"perun deploy: no JSON-RPC node answers at {w.rpc_down}: is the chain running? (`perun devnet` "
                  "starts a local one)"),
    Row("devnet", "a port that is no number", lambda w: ["devnet", "--port", "eighty"], 2, "USAGE",
        lambda w: "perun devnet: argument --port: invalid int value: 'eighty' (see `perun devnet --help`)"),
    Row("fund", "RPC down", lambda w: ["fund", STRANGER, "1eth", "--rpc", w.rpc_down], 1, "CHAIN_UNREACHABLE",
        lambda w: f"perun fund: no JSON-RPC node answers at {w.rpc_down}: is the chain running? (`perun devnet` "
                  "starts a local one)"),
    Row("compile", "an argument it does not take", lambda w: ["compile", "contracts/"], 2, "USAGE",
        lambda w: "perun: unrecognized arguments: contracts/ (see `perun --help`)"),
    Row("keystore new", "a file that exists", lambda w: ["keystore", "new", "--out", w.cheap_key], 2, "KEYSTORE",
        lambda w: f"perun keystore new: {w.cheap_key} exists: refusing to overwrite it", env={"PERUN_PASSWORD": "x"}),
    Row("keystore import", "not a private key",
        lambda w: ["keystore", "import", "--out", w.tmp / "k.json", "--key-env", "THE_KEY"], 2, "KEYSTORE",
        lambda w: "perun keystore import: a private key is 64 hex digits, got 3 characters",
        env={"THE_KEY": "0x123", "PERUN_PASSWORD": "x"}),
    Row("keystore address", "a directory", lambda w: ["keystore", "address", w.tmp], 2, "KEYSTORE",
        lambda w: f"perun keystore address: {w.tmp} is a directory: name the key file itself (a .json file)"),
    Row("keystore address", "a missing file", lambda w: ["keystore", "address", w.tmp / "none.json"], 2, "KEYSTORE",
        lambda w: f"perun keystore address: no keystore file at {w.tmp / 'none.json'} (`perun keystore new` "
                  "makes one)"),
    Row("node", "a directory as --keystore",
        lambda w: ["node", "--data", w.tmp / "n", "--keystore", w.tmp, "--rpc", w.net.rpc], 2, "KEYSTORE",
        lambda w: f"perun node: {w.tmp} is a directory: name the key file itself (a .json file)",
        env={"PERUN_PASSWORD": PASSWORD}, process=True),
    Row("node", "a missing key file",
        lambda w: ["node", "--data", w.tmp / "n", "--keystore", w.tmp / "none.json", "--rpc", w.net.rpc], 2,
        "KEYSTORE", lambda w: f"perun node: no keystore file at {w.tmp / 'none.json'} (`perun keystore new` makes one)",
        env={"PERUN_PASSWORD": PASSWORD}),
    Row("node", "the wrong password",
        lambda w: ["node", "--data", w.tmp / "n", "--keystore", w.cheap_key, "--rpc", w.net.rpc], 2, "WRONG_PASSWORD",
        lambda w: f"perun node: wrong password for {w.cheap_key}: give the password the key file was made with "
                  "($PERUN_PASSWORD, or at the prompt when it is not set)",
        env={"PERUN_PASSWORD": "not the password"}, process=True),
    Row("node", "RPC down", lambda w: ["node", "--data", w.tmp / "n", "--keystore", w.cheap_key, "--rpc", w.rpc_down],
        1, "CHAIN_UNREACHABLE",
        lambda w: f"perun node: no JSON-RPC node answers at {w.rpc_down}: is the chain running? (`perun devnet` "
                  "starts a local one)", env={"PERUN_PASSWORD": PASSWORD}),
    Row("node", "a missing deployment file",
        lambda w: ["node", "--data", w.tmp / "n", "--keystore", w.cheap_key, "--rpc", w.net.rpc, "--deployment",
                   w.tmp / "none.json"], 2, "DEPLOYMENT_NOT_FOUND",
        lambda w: f"perun node: cannot read deployment file {w.tmp / 'none.json'}: No such file or directory "
                  "(`perun deploy` or `perun devnet` writes one)", env={"PERUN_PASSWORD": PASSWORD}),
    Row("watchtower", "a missing key file",
        lambda w: ["watchtower", "--data", w.tmp / "t", "--keystore", w.tmp / "none.json", "--rpc", w.net.rpc], 2,
        "KEYSTORE", lambda w: f"perun watchtower: no keystore file at {w.tmp / 'none.json'} (`perun keystore new` "
                              "makes one)", env={"PERUN_PASSWORD": PASSWORD}),
    Row("watchtower", "no contract there",
        lambda w: ["watchtower", "--data", w.tmp / "t", "--keystore", w.cheap_key, "--rpc", w.net.rpc, "--contract",
                   STRANGER], 2, "DEPLOYMENT_NOT_FOUND",
        lambda w: re.compile(rf"perun watchtower: no contract at {STRANGER} on chain \d+", re.I),
        env={"PERUN_PASSWORD": PASSWORD}),
    Row("info", "no node running", lambda w: ["info", "--data", w.tmp / "nowhere"], 1, "NODE_NOT_RUNNING",
        lambda w: f"perun info: no node is running at {w.tmp / 'nowhere'} (nothing listens on "
                  f"{w.tmp / 'nowhere' / 'control.sock'}): start one with `perun node --data` and this directory, "
                  "or pass the --data of a running node"),
    Row("connect", "nobody listens there",
        lambda w: ["connect", STRANGER, f"127.0.0.1:{w.closed_port}", "--data", w.alice.data], 3, "PEER_OFFLINE",
        lambda w: re.compile(rf"perun connect: cannot reach {STRANGER} at 127\.0\.0\.1:{w.closed_port}: "
                             "Connection refused", re.I)),
    Row("connect", "not HOST:PORT", lambda w: ["connect", STRANGER, "localhost", "--data", w.alice.data], 2, "USAGE",
        lambda w: "perun connect: argument HOST:PORT: expected HOST:PORT, got 'localhost' (see `perun connect "
                  "--help`)"),
    Row("open", "an unknown peer",
        lambda w: ["open", STRANGER, "--deposit", "1eth", "--peer-deposit", "0", "--delta", "60", "--data",
                   w.alice.data], 2, "UNKNOWN_PEER",
        lambda w: re.compile(rf"perun open: this node does not know {STRANGER}: connect to it first with `perun "
                             rf"connect {STRANGER} HOST:PORT`", re.I)),
    Row("open", "a fraction of a wei",
        lambda w: ["open", STRANGER, "--deposit", "1.5", "--peer-deposit", "0", "--delta", "60", "--data",
                   w.alice.data], 2, "USAGE",
        lambda w: "perun open: argument --deposit: 1.5 is not a whole number of wei (a plain number is wei: say "
                  "1.5eth for ether) (see `perun open --help`)"),
    Row("cancel", "an open channel", lambda w: ["cancel", w.open, "--data", w.alice.data], 2, "WRONG_STAGE",
        lambda w: f"perun cancel: channel {w.open} is open, past its opening: there is nothing to cancel; "
                  f"`perun close {w.open}` closes it"),
    Row("cancel", "a prefix of no channel", lambda w: ["cancel", ABSENT[:10], "--data", w.alice.data], 2,
        "UNKNOWN_CHANNEL", lambda w: f"perun cancel: no channel of this node starts with {ABSENT[:10]}: `perun status` "
                                     "lists its channels"),
    Row("pay", "an unknown channel", lambda w: ["pay", ABSENT, "1wei", "--data", w.alice.data], 2, "UNKNOWN_CHANNEL",
        lambda w: f"perun pay: this node has no channel {ABSENT}: `perun status` lists its channels"),
    Row("pay", "more than the balance", lambda w: ["pay", w.open, "1.5eth", "--data", w.alice.data], 2,
        "INSUFFICIENT_BALANCE",
        lambda w: f"perun pay: paying 1.5 ETH exceeds your balance in channel {w.open}, which is 1 ETH: pay at most "
                  "that", process=True),
    Row("pay", "from a zero balance", lambda w: ["pay", w.open, "1wei", "--data", w.bob.data], 2,
        "INSUFFICIENT_BALANCE",
        lambda w: f"perun pay: paying 0.000000000000000001 ETH exceeds your balance in channel {w.open}, which is "
                  "0 ETH: pay at most that"),
    *(Row("pay", f"the amount {bad}", lambda w, bad=bad: ["pay", "--data", w.alice.data, "--", w.open, bad], 2,
          "USAGE", lambda w, says=says: f"perun pay: argument AMOUNT: {says} (see `perun pay --help`)")
      for bad, says in [("1.5", "1.5 is not a whole number of wei (a plain number is wei: say 1.5eth for ether)"),
                        ("0.5wei", "0.5wei is not a whole number of wei"),
                        ("5usd", "unknown unit 'usd' in '5usd': use wei, gwei, eth or ether"),
                        ("1e18", f"not an amount: '1e18' {AMOUNT_HELP}"),
                        ("-1eth", f"not an amount: '-1eth' {AMOUNT_HELP}")]),
    Row("pay", "a closing channel", lambda w: ["pay", w.closing, "1wei", "--data", w.alice.data], 2, "WRONG_STAGE",
        lambda w: re.compile(re.escape(
            f"perun pay: channel {w.closing} is closing on chain (version 1 registered), not open: its dispute "
            f"window ends at {utc(w.deadline)}, in ") + r"(59|60) min" + re.escape(
            f"; then `perun finalize {w.closing}` pays out (the node also does it itself)"))),
    Row("pay", "a peer offline", lambda w: ["pay", w.offline, "1wei", "--data", w.alice.data], 3, "PEER_OFFLINE",
        lambda w: f"perun pay: the node is not connected to {w.carol.address} and keeps reconnecting to it (its node "
                  "is down or unreachable): try again once it is back (`perun info` lists the connected peers), or "
                  f"close without it: `perun close --unilateral {w.offline}`"),
    Row("pay", "a mangled invoice", lambda w: ["pay", EXPIRED[:-1], "--data", w.alice.data], 2, "INVALID_INVOICE",
        lambda w: re.compile(r"perun pay: not an invoice: .*: give the whole text the payee's `perun invoice` "
                             r"printed \(perun1…\)")),
    Row("pay", "an expired invoice", lambda w: ["pay", EXPIRED, "--data", w.alice.data], 2, "INVOICE_EXPIRED",
        lambda w: re.compile(re.escape(f"perun pay: the invoice expired at {utc(1)}, ") + r"\d+ days ago"
                             + re.escape(": ask the payee for a new one"))),
    Row("pay", "an address with no route", lambda w: ["pay", "--to", w.bob.address, "1eth", "--data", w.alice.data],
        2, "ROUTE_NOT_FOUND",
        lambda w: f"perun pay: no route: the payer {w.alice.address} has no known channel: a route needs open "
                  "multistate channels with enough cash, from this node through nodes that forward (`perun node "
                  "--forward`) to the payee; open one (`perun open --multistate`) towards the payee or such a node, "
                  "or pay less"),
    Row("pay", "none of its forms", lambda w: ["pay", "--to", STRANGER, w.open, "1eth", "--data", w.alice.data], 2,
        "USAGE", lambda w: "perun pay: give CHANNEL AMOUNT, or an INVOICE (perun1...), or --to ADDRESS AMOUNT (see "
                           "`perun pay --help`)"),
    Row("invoice", "a description too long",
        lambda w: ["invoice", "1eth", "--description", "é" * 51, "--data", w.alice.data], 2, "BAD_REQUEST",
        lambda w: f"perun invoice: description must be text of at most 100 bytes of UTF-8, got {'é' * 51!r}"),
    Row("status", "an unknown channel", lambda w: ["status", ABSENT, "--data", w.alice.data], 2, "UNKNOWN_CHANNEL",
        lambda w: f"perun status: this node has no channel {ABSENT}: `perun status` lists its channels"),
    Row("status", "no node running", lambda w: ["status", "--data", w.tmp / "nowhere"], 1, "NODE_NOT_RUNNING",
        lambda w: re.compile(re.escape(f"perun status: no node is running at {w.tmp / 'nowhere'} ") + ".*"),
        process=True),
    Row("close", "--wait without --unilateral", lambda w: ["close", w.open, "--wait", "--data", w.alice.data], 2,
        "USAGE", lambda w: "perun close: --wait goes with --unilateral (a cooperative close waits anyway) (see "
                           "`perun close --help`)"),
    Row("close", "a double close", lambda w: ["close", w.closed, "--unilateral", "--data", w.alice.data], 2,
        "WRONG_STAGE", lambda w: f"perun close: channel {w.closed} is closed and paid out already: `perun status "
                                 f"{w.closed}` shows the payout"),
    Row("close", "a stale registration", lambda w: ["close", w.closing, "--unilateral", "--data", w.alice.data], 3,
        "STALE_VERSION", lambda w: re.compile(re.escape(
            f"perun close: version 1 of channel {w.closing} is registered on chain already, and this node holds no "
            f"later state: nothing to register; the dispute window ends at {utc(w.deadline)}, in ") + r"(59|60) min"
            + re.escape(f", then `perun finalize {w.closing}` pays out (the node also does it itself)"))),
    Row("finalize", "too early", lambda w: ["finalize", w.closing, "--data", w.alice.data], 3, "FINALIZE_TOO_EARLY",
        lambda w: re.compile(re.escape(
            f"perun finalize: channel {w.closing} can be finalized only once its dispute window ends, at "
            f"{utc(w.deadline)}, in ") + r"(59|60) min" + re.escape(
            f": the node finalizes it itself then, or run `perun finalize {w.closing}` again"))),
    Row("refund", "an open channel", lambda w: ["refund", w.open, "--data", w.alice.data], 3, "WRONG_PHASE",
        lambda w: f"perun refund: channel {w.open} is open on chain, where the contract does not allow this: "
                  f"`perun status --sync {w.open}` shows where it stands"),
    Row("virtual open", "an unknown ledger channel",
        lambda w: ["virtual", "open", ABSENT, w.bob.address, ABSENT, "--deposit", "1eth", "--validity", "3600",
                   "--window", "600", "--data", w.alice.data], 2, "UNKNOWN_CHANNEL",
        lambda w: f"perun virtual open: no multistate channel {ABSENT}: `perun status` lists its channels"),
    Row("virtual close", "an unknown channel", lambda w: ["virtual", "close", ABSENT, "--data", w.alice.data], 2,
        "UNKNOWN_CHANNEL", lambda w: f"perun virtual close: this node has no channel {ABSENT}: `perun status` lists "
                                     "its channels"),
]


def run(row: Row, w: World, monkeypatch: pytest.MonkeyPatch, *front: str) -> Result:
    argv = [*front, *map(str, row.argv(w))]
    if row.process:
        return perun_process(*argv, password=row.env.get("PERUN_PASSWORD"))
    with monkeypatch.context() as env:
        for name, value in row.env.items():
            env.setenv(name, value)
        return perun(*argv)


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_bad_input(row: Row, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = run(row, world, monkeypatch)
    assert plain.code == row.exit, (plain.out, plain.err)
    assert "Traceback" not in plain.err and plain.out == ""
    assert plain.err.endswith("\n") and plain.err.count("\n") == 1, plain.err
    line, expected = plain.err.rstrip("\n"), row.line(world)
    if isinstance(expected, re.Pattern):
        assert expected.fullmatch(line), line
    else:
        assert line == expected

    as_json = run(row, world, monkeypatch, "--json")
    assert (as_json.code, as_json.err) == (row.exit, ""), as_json.err
    error = json.loads(as_json.out)["error"]
    assert (error["code"], EXIT[error["category"]]) == (row.code, row.exit)
    assert line.endswith(": " + error["message"])


def test_every_command_has_a_row() -> None:
    def commands(p: argparse.ArgumentParser, prefix: str) -> Iterator[str]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield prefix
        for action in subs:
            for name, sub in action.choices.items():
                yield from commands(sub, f"{prefix} {name}".strip())
    assert set(commands(parser(), "")) == {row.command for row in ROWS}


def test_json_after_the_command_and_fields_in_wire_units(world: World) -> None:
    result = perun("pay", world.open, "1.5eth", "--data", world.alice.data, "--json")
    assert (result.code, result.err) == (2, "")
    error = json.loads(result.out)["error"]
    assert error.pop("message").startswith("paying 1.5 ETH exceeds your balance")
    assert error == {"code": "INSUFFICIENT_BALANCE", "category": "user", "channel": world.open,
                     "amount": str(15 * 10**17), "balance": str(10**18), "token": "0x" + "00" * 20}
    early = json.loads(perun("finalize", world.closing, "--json", "--data", world.alice.data).out)["error"]
    assert (early["code"], early["deadline"], early["channel"]) == ("FINALIZE_TOO_EARLY", world.deadline, world.closing)
    assert isinstance(early["now"], int) and early["now"] < world.deadline


def test_every_contract_error_and_rule_has_a_distinct_code() -> None:
    assert set(CONTRACT) == set(CONTRACT_ERRORS)
    codes = [code for code, _ in CONTRACT.values()] + [rule[2] for rule in RULES]
    assert len(codes) == len(set(codes))


def test_the_readme_lists_every_code() -> None:
    errors_section = Path("README.md").read_text().split("### Errors", 1)[1].split("\n## ", 1)[0]
    codes = [rule[2] for rule in RULES] + [code for code, _ in CONTRACT.values()]
    listed = {code for code in codes if f"`{code}`" in errors_section}
    by_prefix = {code for code in codes if f"`{code.split('_')[0]}_*`" in errors_section}
    assert set(codes) - listed - by_prefix == set()
