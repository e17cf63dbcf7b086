"""The `perun` command.

This module holds the parser and the exit codes. Scenarios: demo (the catalog), scenario run;
chain and contract: deploy, devnet, fund, compile; keys: keystore new/import/address (all in
local.py). A node: `perun node` runs one until SIGINT or SIGTERM (node.py); connect, open,
cancel, pay, invoice, status, close, finalize, refund, info and virtual open/close drive it through its
control socket (perun.control) in its data directory (client.py). `perun watchtower` runs a
watchtower (tower.py), whose control socket `status` and `info` read.

Every expected failure prints one line to stderr, `perun COMMAND: what happened and what to do`
(with --json, one object {"error": {"code", "category", "message", ...}} on stdout instead), and
exits by its category (perun.control.explain): 2 for a user error, 3 for a refusal by the peer or
the chain, 1 for an internal error or an unreachable node or chain. Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from perun import errors
from perun.cli.args import address_arg, amount_arg, channel_arg, count_arg, host_port_arg
from perun.cli.client import (
    cmd_cancel,
    cmd_close,
    cmd_connect,
    cmd_finalize,
    cmd_info,
    cmd_invoice,
    cmd_open,
    cmd_pay,
    cmd_refund,
    cmd_status,
    cmd_virtual_close,
    cmd_virtual_open,
    resolving,
)
from perun.cli.local import (
    cmd_compile,
    cmd_deploy,
    cmd_devnet,
    cmd_fund,
    cmd_keystore_address,
    cmd_keystore_import,
    cmd_keystore_new,
    cmd_scenario_run,
)
from perun.cli.node import _EXCLUSIVE, NODE_OPTIONS, NodeOption, cmd_node
from perun.cli.tower import TOWER_OPTIONS, cmd_watchtower

__all__ = ["main", "parser"]



class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line (see main), not the usage text
        raise errors.UsageError(self.prog, message)



# --------------------------------------------------------------------------- the parser


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="perun", description="Perun state channels on Ethereum.")
    top.add_argument("--version", action="version", version=f"perun {_version()}")
    top.add_argument("--json", action="store_true", help="print machine-readable JSON (amounts as decimal strings of wei)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Also accepted after the command (perun status --json); SUPPRESS keeps the top-level value.
    json_flag = _Parser(add_help=False)
    json_flag.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def scenario_args(parser: argparse.ArgumentParser) -> None:
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--rpc", help="JSON-RPC URL of a dev chain (default: a fresh embedded chain per scenario)")
        where.add_argument("--anvil", action="store_true", help="start an anvil of its own and use it")
        parser.add_argument("--out", default="build/scenarios", metavar="DIR",
                            help="where the reports go (default: build/scenarios)")

    demo = sub.add_parser("demo", help="play the scenario catalog (scenarios/*.yaml) and print the summary")
    scenario_args(demo)
    demo.set_defaults(run=cmd_scenario_run, files=[])

    scen = sub.add_parser("scenario", help="scripted dispute scenarios: run")
    scen_sub = scen.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")
    scen_run = scen_sub.add_parser("run", help="play scenario files with real nodes; write HTML and text reports")
    scen_run.add_argument("files", nargs="*", metavar="FILE", help="scenario files (default: scenarios/*.yaml)")
    scenario_args(scen_run)
    scen_run.set_defaults(run=cmd_scenario_run, name="scenario run")

    dep = sub.add_parser("deploy", help="deploy the contracts (PaymentContract, MSContract, the apps) and write a deployment file")
    dep.add_argument("--rpc", required=True, help="JSON-RPC URL of the chain")
    dep.add_argument("--key-env", help="environment variable holding the deployer's private key "
                     "(default: the node's first unlocked account)")
    dep.add_argument("--out", help="deployment file (default: deployments/<chain id>.json)")
    dep.set_defaults(run=cmd_deploy)

    dev = sub.add_parser("devnet", help="run anvil with the contracts deployed, until Ctrl-C")
    dev.add_argument("--port", type=int, default=8545)
    dev.add_argument("--block-time", type=count_arg, default=1, metavar="SECONDS",
                     help="mine a block every SECONDS, so that deadlines pass without traffic (default 1)")
    dev.add_argument("--out", help="deployment file (default: deployments/31337.json)")
    dev.set_defaults(run=cmd_devnet)

    fund = sub.add_parser("fund", parents=[json_flag], help="send ETH from a devnet's first dev account")
    fund.add_argument("address", type=address_arg, metavar="ADDRESS")
    fund.add_argument("amount", type=amount_arg, metavar="AMOUNT", help="wei, or with a unit: 10eth")
    fund.add_argument("--rpc", default="http://127.0.0.1:8545", metavar="URL",
                      help="JSON-RPC URL of the devnet (default: `perun devnet`'s, http://127.0.0.1:8545)")
    fund.set_defaults(run=cmd_fund)

    comp = sub.add_parser("compile", help="recompile contracts/ into the package's artifacts")
    comp.set_defaults(run=cmd_compile)

    ks = sub.add_parser("keystore", help="encrypted key files: new, import, address")
    ks_sub = ks.add_subparsers(dest="keystore_command", required=True, metavar="ACTION")
    new = ks_sub.add_parser("new", parents=[json_flag], help="create a key file with a new random key",
                            description="Creates FILE (mode 0600, never overwritten) holding a new key, encrypted "
                            "with a password from $PERUN_PASSWORD or typed twice.")
    new.add_argument("--out", required=True, type=Path, metavar="FILE")
    new.set_defaults(run=cmd_keystore_new, name="keystore new")
    imp = ks_sub.add_parser("import", parents=[json_flag], help="encrypt an existing private key into a key file",
                            description="Reads a private key (hex) at a prompt, or from the environment variable "
                            "--key-env names, and writes it to FILE like `keystore new`.")
    imp.add_argument("--out", required=True, type=Path, metavar="FILE")
    imp.add_argument("--key-env", metavar="VAR", help="environment variable holding the private key (hex)")
    imp.set_defaults(run=cmd_keystore_import, name="keystore import")
    addr = ks_sub.add_parser("address", parents=[json_flag], help="print a key file's address (no password needed)")
    addr.add_argument("file", type=Path, metavar="FILE")
    addr.set_defaults(run=cmd_keystore_address, name="keystore address")

    node = sub.add_parser(
        "node", help="run a node until SIGINT or SIGTERM",
        description="Runs a node: its key from --keystore (password from $PERUN_PASSWORD or a prompt), its "
        "store and control socket in --data. Prints one line when ready, then logs to stderr. Every flag can "
        "also be a key of the --config file (see docs/node.toml.example); a flag given here wins over the file.",
        argument_default=argparse.SUPPRESS)  # absent unless given: the config file fills the rest
    service_options(node, NODE_OPTIONS)
    node.set_defaults(run=cmd_node)

    tower = sub.add_parser(
        "watchtower", help="run a watchtower until SIGINT or SIGTERM",
        description="Runs a watchtower (docs/protocol.md §12): nodes started with --tower hand it the latest state "
        "of their payment channels; it refutes a stale close of one on their behalf and finalizes, paid the reward "
        "they offer. Its key from --keystore (password from $PERUN_PASSWORD or a prompt) pays its transactions; its "
        "store (tower.db) and control socket in --data (`perun status` and `perun info` read it). Prints one line "
        "when ready, then logs to stderr what it does. Every flag can also be a key of the --config file, as for "
        "`perun node`.", argument_default=argparse.SUPPRESS)
    service_options(tower, TOWER_OPTIONS)
    tower.set_defaults(run=cmd_watchtower)

    def client(name: str, run, summary: str, within=sub, **kwargs: Any) -> argparse.ArgumentParser:
        """A command for a running node (`within` a group's subparsers: `perun virtual open`)."""
        cmd = within.add_parser(name, parents=[json_flag], help=summary, **kwargs)
        cmd.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
        cmd.set_defaults(run=resolving(run))
        return cmd

    client("info", cmd_info, "show a running node's address, port, chain and contract")
    con = client("connect", cmd_connect, "connect the node to a peer (remembered across restarts)")
    con.add_argument("peer", type=address_arg, metavar="PEER_ADDRESS")
    con.add_argument("address", type=host_port_arg, metavar="HOST:PORT")
    opn = client("open", cmd_open, "open a channel with a connected peer")
    opn.add_argument("peer", type=address_arg, metavar="PEER_ADDRESS")
    opn.add_argument("--deposit", required=True, type=amount_arg, metavar="AMOUNT", help="this node's deposit")
    opn.add_argument("--peer-deposit", required=True, type=amount_arg, metavar="AMOUNT", help="the peer's deposit")
    opn.add_argument("--delta", required=True, type=int, metavar="SECONDS", help="the dispute window Δ")
    opn.add_argument("--timeout", type=count_arg, default=60, metavar="SECONDS",
                     help="how long to wait for the peer to accept and confirm (default 60); after it, the command "
                          "says where the opening stands")
    opn.add_argument("--multistate", action="store_true",
                     help="a multistate channel (nanocontracts; a ledger channel for virtual channels)")
    can = client("cancel", cmd_cancel, "give up a channel's opening: no deposit is sent for it any more",
                 description="Gives up the opening of CHANNEL: the node sends no create or confirm for it from "
                 "now on. If this node (Alice) created it on chain already, it takes its deposit back at the "
                 "confirm deadline, unless the peer confirms before. An open channel is closed, not cancelled.")
    can.add_argument("channel", type=channel_arg, metavar="CHANNEL")
    pay = client(
        "pay", cmd_pay, "pay on a channel, pay an invoice, or pay an address over a route",
        usage="perun pay [-h] --data DIR (CHANNEL AMOUNT | INVOICE | --to ADDRESS AMOUNT) [--timeout SECONDS]",
        description="Three forms. `perun pay CHANNEL AMOUNT` pays the peer on a payment or virtual channel of this "
        "node. `perun pay INVOICE` pays an invoice (the perun1... text of the payee's `perun invoice`) over the "
        "cheapest route the node finds by asking its peers: its multistate channels, then nodes that forward "
        "(`perun node --forward`), each hop's fee on top. `perun pay --to ADDRESS AMOUNT` pays an address the same "
        "way without an invoice (keysend: no proof of payment). AMOUNT is wei, or with a unit: 1.5eth, 20gwei.")
    pay.add_argument("what", nargs="+", metavar="CHANNEL AMOUNT | INVOICE | AMOUNT", help=argparse.SUPPRESS)
    pay.add_argument("--to", type=address_arg, metavar="ADDRESS", help="pay this address over a route, without "
                     "an invoice (give AMOUNT only)")
    pay.add_argument("--timeout", type=count_arg, default=30, metavar="SECONDS",
                     help="over a route: how long to wait for the payee to claim (default 30); after it, the "
                          "payment may still complete (`perun status PAYMENT_HASH`)")
    inv = client("invoice", cmd_invoice, "make an invoice: print its text for the payer's `perun pay`",
                 description="Makes an invoice for AMOUNT to this node, signed by it, and prints its text "
                 "(perun1...): the payer pays it with `perun pay INVOICE`, over multistate channels. The node "
                 "keeps its secret (the preimage) and claims the payment when it comes.")
    inv.add_argument("amount", type=amount_arg, metavar="AMOUNT", help="wei, or with a unit: 1.5eth, 20gwei, 100wei")
    inv.add_argument("--expiry", type=count_arg, default=3600, metavar="SECONDS",
                     help="payable for this long from now, in chain time (default 3600)")
    inv.add_argument("--description", default="", metavar="TEXT", help="what it is for (at most 100 bytes)")
    sts = client("status", cmd_status, "show every channel, or one")
    sts.add_argument("channel", nargs="?", type=channel_arg, metavar="CHANNEL")
    sts.add_argument("--sync", action="store_true", help="have the node read the chain first (it also does "
                     "every --poll seconds)")
    cls = client("close", cmd_close, "close a channel: cooperatively, or alone with --unilateral")
    cls.add_argument("channel", type=channel_arg, metavar="CHANNEL")
    cls.add_argument("--unilateral", action="store_true",
                     help="register the latest state on chain without the peer; finalize after Δ")
    cls.add_argument("--wait", action="store_true", help="with --unilateral: wait until it is paid out")
    fin = client("finalize", cmd_finalize, "pay out a channel whose dispute window is over")
    fin.add_argument("channel", type=channel_arg, metavar="CHANNEL")
    fin.add_argument("--wait", action="store_true", help="if the window is not over yet, wait until it is paid out")
    ref = client("refund", cmd_refund, "take the deposit back when the peer never confirmed")
    ref.add_argument("channel", type=channel_arg, metavar="CHANNEL")

    virt = sub.add_parser("virtual", help="virtual channels through an intermediary: open, close")
    virt_sub = virt.add_subparsers(dest="virtual_command", required=True, metavar="ACTION")
    vopen = client(
        "open", cmd_virtual_open, "open a virtual channel to a peer through Ingrid, off chain", virt_sub,
        description="Opens a virtual channel to PEER through the peer of this node's multistate channel LEDGER "
        "(Ingrid), whose multistate channel with PEER is LEDGER_B. No transaction: pay on it with `perun pay`, "
        "close it with `perun virtual close`.")
    vopen.add_argument("ledger", type=channel_arg, metavar="LEDGER", help="this node's multistate channel with Ingrid")
    vopen.add_argument("peer", type=address_arg, metavar="PEER_ADDRESS")
    vopen.add_argument("ledger_b", type=channel_arg, metavar="LEDGER_B", help="Ingrid's multistate channel with PEER")
    vopen.add_argument("--deposit", required=True, type=amount_arg, metavar="AMOUNT", help="this node's deposit")
    vopen.add_argument("--peer-deposit", type=amount_arg, default=0, metavar="AMOUNT",
                       help="the peer's deposit (default 0; the peer must run with --accept-virtual)")
    vopen.add_argument("--validity", required=True, type=count_arg, metavar="SECONDS",
                       help="the channel closes by the chain's time now plus SECONDS")
    vopen.add_argument("--window", required=True, type=count_arg, metavar="SECONDS",
                       help="after validity, how long each end has to submit its latest state (more than Δ)")
    vopen.add_argument("--fee", type=amount_arg, default=0, metavar="AMOUNT", help="Ingrid's fee, if she asks one")
    vopen.set_defaults(name="virtual open")
    vclose = client("close", cmd_virtual_close, "close a virtual channel fast through Ingrid", virt_sub)
    vclose.add_argument("channel", type=channel_arg, metavar="CHANNEL")
    vclose.set_defaults(name="virtual close")
    return top


def service_options(parser: argparse.ArgumentParser, options: tuple[NodeOption, ...]) -> None:
    """--config and the flags of `options` (a service: `perun node`, `perun watchtower`)."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="a TOML file of settings: the flags below as keys")
    where = parser.add_mutually_exclusive_group()
    for option in options:
        kwargs: dict[str, Any] = {"help": option.help}
        if option.type is None:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=option.type, metavar=option.metavar, action="append" if option.repeat else "store")
        (where if option.key in _EXCLUSIVE else parser).add_argument(option.flag, **kwargs)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("perun-channels")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = None
    try:
        args = parser().parse_args(argv)
        code = args.run(args)
    except SystemExit as exc:  # --help and --version print and exit 0
        return exc.code if isinstance(exc.code, int) else 0
    except errors.PerunError as exc:
        return _failed(exc, args, argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (perun status | head -1): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code or 0


def _failed(exc: errors.PerunError, args: argparse.Namespace | None, argv: list[str]) -> int:
    """Says what went wrong, as one line on stderr or (--json) one object on stdout, and
    returns the exit code of its category."""
    from perun.control.explain import explain

    explained = explain(exc)
    # A command line the parser refused has no args: look for --json before any `--`.
    wants_json = args.json if args is not None else "--json" in argv[:argv.index("--") if "--" in argv else None]
    if wants_json:
        print(json.dumps({"error": explained.as_json()}))
    else:
        if isinstance(exc, errors.UsageError):
            command = exc.command
        else:
            assert args is not None  # only the parser's refusal, a UsageError, comes without them
            command = f"perun {getattr(args, 'name', args.command)}"
        print(f"{command}: {' '.join(explained.message.splitlines())}", file=sys.stderr)
    return explained.exit_code

