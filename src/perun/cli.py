"""The `perun` command.

Scenarios: demo (the catalog), scenario run. Chain and contract: deploy, devnet, compile. Keys: keystore new/import/address. A node:
`perun node` runs one until SIGINT or SIGTERM; connect, open, pay, status, close, finalize,
refund and info drive it through its control socket (perun.control) in its data directory.

Every expected failure prints one line to stderr, `perun COMMAND: what happened and what to do`
(with --json, one object {"error": {"code", "category", "message", ...}} on stdout instead), and
exits by its category (perun.control.explain): 2 for a user error, 3 for a refusal by the peer or
the chain, 1 for an internal error or an unreachable node or chain. Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from perun import errors
from perun.core.amounts import ether, parse_amount
from perun.control.explain import relative, when
from perun.core.channel import ETH as ETH_TOKEN

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line (see main), not the usage text
        raise errors.UsageError(self.prog, message)


# --------------------------------------------------------------------------- amounts


def _amount_arg(text: str) -> int:
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def show_amount(amount: int | str, token: str = ETH_TOKEN) -> str:
    amount = int(amount)
    if token != ETH_TOKEN:
        return f"{amount} units of token {token}"
    return f"{ether(amount)} ETH ({amount} wei)"


def _short_amount(amount: int | str, token: str = ETH_TOKEN) -> str:
    return f"{ether(int(amount))} ETH" if token == ETH_TOKEN else f"{int(amount)} units"


# --------------------------------------------------------------------------- small argument types


def _address_arg(text: str) -> str:
    from perun.core.address import parse_address

    try:
        return parse_address(text)
    except errors.InvalidAddress as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _channel_arg(text: str) -> str:
    """A channel id, or a unique prefix of one (at least 4 hex digits), resolved by `_resolve`."""
    if not re.fullmatch(r"0x[0-9a-fA-F]{4,64}", text):
        raise argparse.ArgumentTypeError(f"not a channel id (0x and 64 hex digits, or at least the first 4): {text!r}")
    return text.lower()


CHANNEL_ARGS = ("channel", "ledger", "ledger_b")


def _resolve(args: argparse.Namespace) -> None:
    """Replaces each channel id prefix in `args` by the one channel of the node's it names."""
    short = [name for name in CHANNEL_ARGS if len(getattr(args, name, None) or "0x" + "0" * 64) < 66]
    if not short:
        return
    known = [ch["channel"] for ch in _call(args, "status")]
    for name in short:
        prefix = getattr(args, name)
        matches = [cid for cid in known if cid.startswith(prefix)]
        if not matches:
            raise errors.UnknownChannel(f"no channel of this node starts with {prefix}")
        if len(matches) > 1:
            raise errors.ValidationError(f"{prefix} is the start of {len(matches)} channels: give more digits")
        setattr(args, name, matches[0])


def _host_port_arg(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _count_arg(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _chain(args: argparse.Namespace):
    from perun.chain.anvil import AnvilChain
    from perun.chain.backend import EmbeddedChain, RpcChain

    if args.rpc:
        return RpcChain(args.rpc)
    if getattr(args, "anvil", False):
        return AnvilChain()
    return EmbeddedChain()


def _sender(args: argparse.Namespace, chain):
    from eth_account import Account

    if args.key_env:
        key = os.environ.get(args.key_env)
        if not key:
            raise errors.PerunError(f"environment variable {args.key_env} holds no private key")
        return Account.from_key(key)
    if not chain.dev_accounts:
        raise errors.PerunError("this node unlocks no account: pass --key-env VAR with a funded private key")
    return chain.dev_accounts[0]


CATALOG = Path("scenarios")


def cmd_scenario_run(args: argparse.Namespace) -> int:
    from perun.chain.anvil import AnvilChain
    from perun.scenario import report
    from perun.scenario.runner import run

    paths = [Path(p) for p in args.files]
    if not paths:
        paths = sorted(CATALOG.glob("*.yaml"))
        if not paths:
            raise errors.PerunError(f"no scenario files given and none in {CATALOG}/ (run from the project's folder)")
    anvil = AnvilChain() if args.anvil else None
    try:
        recordings = run(paths, rpc=anvil.url if anvil else args.rpc, log_dir=Path(args.out))
    finally:
        if anvil:
            anvil.close()
    out = Path(args.out)
    for rec in recordings:
        report.write_report(rec, out)
    index = report.write_index(recordings, out)
    print()
    print(report.summary_table(recordings), end="")
    print(f"reports: {index} (one .html and one .txt per scenario, and the nodes' .log)")
    return 0 if all(rec.passed for rec in recordings) else 1


def cmd_deploy(args: argparse.Namespace) -> None:
    from perun.chain.deploy import default_path, deploy

    chain = _chain(args)
    try:
        deployment = deploy(chain, _sender(args, chain))
    finally:
        chain.close()
    path = Path(args.out) if args.out else default_path(deployment.chain_id)
    deployment.write(path)
    print(f"PaymentContract {deployment.payment_contract} on chain {deployment.chain_id}, recorded in {path}")
    print(f"MSContract {deployment.ms_contract}; apps: "
          + ", ".join(f"{name} {address}" for name, address in deployment.apps.items()))


def cmd_devnet(args: argparse.Namespace) -> None:
    from perun.chain.anvil import Anvil
    from perun.chain.backend import RpcChain
    from perun.chain.deploy import default_path, deploy

    # Block the signals so that they end the wait below, and the `with` stops anvil, rather
    # than killing this process and leaving anvil (in its own session) running.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with Anvil(args.port, block_time=args.block_time) as anvil:
        chain = RpcChain(anvil.url)
        deployment = deploy(chain, chain.dev_accounts[0])
        path = Path(args.out) if args.out else default_path(deployment.chain_id)
        deployment.write(path)
        print(f"anvil listening on {anvil.url} (chain id {chain.chain_id}), a block every {args.block_time} s")
        print(f"PaymentContract {deployment.payment_contract}, MSContract {deployment.ms_contract}, recorded in {path}")
        print("dev accounts, funded with 10000 ETH each; their keys are public test keys, never for real money:")
        for address, key in dev_keys(chain.dev_accounts[:4]):
            print(f"  {address}  key {key}")
        print(f"`perun fund ADDRESS AMOUNT --rpc {anvil.url}` sends ETH to any address.")
        print("Ctrl-C stops it.", flush=True)
        signal.sigwait(stop_signals)


# anvil's (and hardhat's) default accounts come from this well-known test mnemonic.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def dev_keys(addresses: list[str]) -> list[tuple[str, str]]:
    """(address, private key) of each dev account that the test mnemonic derives."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    derived = {}
    for i in range(len(addresses)):
        account = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        derived[account.address] = "0x" + bytes(account.key).hex()
    return [(address, derived[address]) for address in addresses if address in derived]


def cmd_fund(args: argparse.Namespace) -> None:
    from perun.chain.backend import RpcChain

    chain = RpcChain(args.rpc)
    if not chain.dev_accounts:
        raise errors.ChainError(f"the chain at {args.rpc} unlocks no dev account to send from: "
                                "`perun fund` is for a devnet; on a real network send ETH from your wallet")
    chain.fund(args.address, args.amount)
    balance = chain.balance(args.address)
    _emit(args, {"address": args.address, "amount": str(args.amount), "balance": str(balance)},
          f"sent {show_amount(args.amount)} to {args.address}; it has {show_amount(balance)}")


def cmd_compile(args: argparse.Namespace) -> None:
    from perun.chain.compile import main

    main()


def cmd_keystore_new(args: argparse.Namespace) -> None:
    from perun import keystore

    address = keystore.create(args.out, keystore.read_password(confirm=True))
    _emit(args, {"address": address, "file": str(args.out)}, f"created {args.out} for {address}")


def cmd_keystore_import(args: argparse.Namespace) -> None:
    import getpass

    from perun import keystore

    if args.key_env:
        text = os.environ.get(args.key_env)
        if not text:
            raise errors.KeystoreError(f"environment variable {args.key_env} holds no private key")
    else:
        try:
            text = getpass.getpass("Private key (hex, not shown): ")
        except EOFError:
            raise errors.KeystoreError("no private key given: type it at the prompt or pass --key-env VAR") from None
    keystore.parse_private_key(text)  # a bad key fails before the password is asked
    address = keystore.import_key(args.out, text, keystore.read_password(confirm=True))
    _emit(args, {"address": address, "file": str(args.out)}, f"imported {address} into {args.out}")


def cmd_keystore_address(args: argparse.Namespace) -> None:
    from perun import keystore

    address = keystore.address(args.file)
    _emit(args, {"address": address, "file": str(args.file)}, address)


# --------------------------------------------------------------------------- the node


@dataclass(frozen=True)
class NodeOption:
    """A setting of `perun node`: its flag, and its key in the config file (the flag without
    the leading dashes, with - or _). `type` reads the flag's text (None: a switch); a file's
    value is read the same way, as text, so "1.5eth" means the same in both places."""

    flag: str
    type: Callable[[str], Any] | None
    default: Any
    help: str
    metavar: str | None = None
    repeat: bool = False  # the flag may be given several times; in the file, a list
    path: bool = False  # relative to the config file's folder when it comes from the file

    @property
    def key(self) -> str:
        return self.flag[2:].replace("-", "_")


NODE_OPTIONS = (
    NodeOption("--data", str, None, "data directory (node.db, control.sock); required", "DIR", path=True),
    NodeOption("--keystore", Path, None, "the node's key file; required", "FILE", path=True),
    NodeOption("--rpc", str, None, "JSON-RPC URL of the chain; required", "URL"),
    NodeOption("--deployment", str, None, "deployment file (default: deployments/<chain id>.json)", "FILE",
               path=True),
    NodeOption("--contract", _address_arg, None, "PaymentContract address (payment channels only)", "ADDRESS"),
    NodeOption("--listen", _host_port_arg, ("127.0.0.1", 0), "where peers connect (default 127.0.0.1:0, a free port)",
               "HOST:PORT"),
    NodeOption("--poll", _seconds_arg, 1.0, "how often to read the chain (default 1)", "SECONDS"),
    NodeOption("--response-timeout", _seconds_arg, 10.0, "how long to wait for a peer's answer (default 10)",
               "SECONDS"),
    NodeOption("--reply-time", _seconds_arg, 30.0, "the seed's T: how long a peer has to answer a nanocontract "
               "update before it expires (default 30)", "SECONDS"),
    # Which channels a peer may open with this node (perun.protocols.policy.ChannelPolicy).
    NodeOption("--max-own-deposit", _amount_arg, 0, "the most this node deposits in a channel a peer proposes "
               "(default 0: it accepts only channels in which it deposits nothing)", "AMOUNT"),
    NodeOption("--min-peer-deposit", _amount_arg, 0, "the least a proposer must deposit (default 0)", "AMOUNT"),
    NodeOption("--max-peer-deposit", _amount_arg, None, "the most a proposer may deposit (default: no limit)",
               "AMOUNT"),
    NodeOption("--min-delta", _count_arg, 0, "the shortest dispute window Δ accepted (default: any)", "SECONDS"),
    NodeOption("--max-delta", _count_arg, None, "the longest dispute window Δ accepted (default: any)", "SECONDS"),
    NodeOption("--allow-peer", _address_arg, (), "accept channels only from this peer (repeat for several; "
               "default: from anyone)", "ADDRESS", repeat=True),
    NodeOption("--allow-token", _address_arg, (), "accept ERC-20 channels in this token (repeat for several; "
               "default: ETH channels only)", "ADDRESS", repeat=True),
    NodeOption("--accept-virtual", None, False, "let virtual channels others open to this node block some of "
               "its cash (its deposit in them); without it, only those that pay it are accepted"),
    NodeOption("--hub", None, False, "serve as Ingrid: relay virtual channels through this node's multistate "
               "channels"),
    NodeOption("--hub-fee", _amount_arg, None, "a hub's fee per virtual channel", "AMOUNT"),
    NodeOption("--hub-capacity", _amount_arg, None, "the most a hub blocks in virtual channels at once", "AMOUNT"),
    NodeOption("--hub-max-channels", _count_arg, None, "the most virtual channels a hub serves at once", "N"),
)
_EXCLUSIVE = ("deployment", "contract")  # where the contracts are: one or the other


def node_settings(args: argparse.Namespace) -> argparse.Namespace:
    """`perun node`'s settings: each flag given on the command line, else its key in --config,
    else its default. Raises ConfigError for a bad config file, UsageError for a missing setting."""
    given = {option.key: getattr(args, option.key) for option in NODE_OPTIONS if hasattr(args, option.key)}
    from_file = _read_config(args.config) if hasattr(args, "config") else {}
    if any(key in given for key in _EXCLUSIVE):  # the command line's choice replaces the file's
        from_file = {key: value for key, value in from_file.items() if key not in _EXCLUSIVE}
    settings = {option.key: option.default for option in NODE_OPTIONS} | from_file | given
    for key in ("data", "keystore", "rpc"):
        if settings[key] is None:
            raise errors.UsageError("perun node", f"--{key} is required, on the command line or as {key} in the "
                                    "--config file")
    return argparse.Namespace(**{**vars(args), **settings})


def _read_config(path: Path) -> dict[str, Any]:
    """The settings in the TOML file at `path`, by key, each read as its flag reads it."""
    import tomllib

    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise errors.ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"{path}: not a TOML file: {exc}") from None
    options = {option.key: option for option in NODE_OPTIONS}
    settings: dict[str, Any] = {}
    for name, value in table.items():
        key = name.replace("-", "_")
        option = options.get(key)
        if option is None:
            raise errors.ConfigError(f"{path}: unknown key {name!r}: the keys are the flags of `perun node --help`, "
                                     "without the leading --")
        if key in settings:
            raise errors.ConfigError(f"{path}: {key} is given twice (with - and with _)")
        try:
            settings[key] = _config_value(option, value)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise errors.ConfigError(f"{path}: {name}: {exc}") from None
        if option.path:
            settings[key] = type(settings[key])(path.parent / settings[key])  # absolute stays absolute
    if all(key in settings for key in _EXCLUSIVE):
        raise errors.ConfigError(f"{path}: deployment and contract exclude each other: give one")
    return settings


def _config_value(option: NodeOption, value: Any) -> Any:
    if option.type is None:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if option.repeat:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, as in [\"0x…\"], got {value!r}")
        return [option.type(_text(item)) for item in value]
    return option.type(_text(value))


def _text(value: Any) -> str:
    """A TOML value as the text a flag would be given: strings and numbers only."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a string or a number, got {value!r}")
    return str(value)


def _channel_policy(args: argparse.Namespace):
    from perun.protocols.policy import ChannelPolicy

    return ChannelPolicy(max_own_deposit=args.max_own_deposit, min_peer_deposit=args.min_peer_deposit,
                         max_peer_deposit=args.max_peer_deposit, min_delta=args.min_delta,
                         max_delta=args.max_delta, allow_peers=frozenset(args.allow_peer),
                         allow_tokens=frozenset(args.allow_token))


def cmd_node(args: argparse.Namespace) -> None:
    import asyncio
    import logging

    from perun import keystore
    from perun.chain.backend import RpcChain

    args = node_settings(args)
    policy = _channel_policy(args)  # its errors before the password prompt
    host, port = args.listen
    data = Path(args.data)
    key = keystore.load(args.keystore, keystore.read_password(prompt=f"Password for {args.keystore}: "))
    chain = RpcChain(args.rpc)
    contracts = _contracts(args, chain)
    try:
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.PerunError(f"cannot create the data directory {data}: {exc.strerror}") from None
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("perun").setLevel(logging.INFO)
    hub = _hub_policy(args)
    if hub is not None and "VirtualChannel" not in contracts.get("apps", {}):
        raise errors.DeploymentNotFound("a hub needs a deployment file with MSContract and the VirtualChannel app")
    options = dict(poll_interval=args.poll, response_timeout=args.response_timeout, reply_time=args.reply_time,
                   policy=policy, accept_virtual=lambda v: args.accept_virtual, hub=hub, **contracts)
    asyncio.run(_run_node(key, chain, data, host, port, options))


def _contracts(args: argparse.Namespace, chain) -> dict[str, Any]:
    """The Node's contract arguments: PaymentContract's address, and MSContract's and the apps'
    when the deployment file has them (--contract gives payment channels only)."""
    from perun.chain.deploy import Deployment, default_path

    if args.contract:
        if not chain.w3.eth.get_code(args.contract):
            raise errors.DeploymentNotFound(f"no contract at {args.contract} on chain {chain.chain_id}")
        return {"contract": args.contract}
    path = Path(args.deployment) if args.deployment else default_path(chain.chain_id)
    if not args.deployment and not path.exists():
        raise errors.DeploymentNotFound(f"no deployment file {path} for chain {chain.chain_id}: pass --deployment "
                                        "FILE or --contract ADDRESS, or deploy with `perun deploy`")
    deployment = Deployment.read(path)
    contracts: dict[str, Any] = {"contract": deployment.payment(chain).address}
    if deployment.ms_contract:
        contracts.update(ms_contract=deployment.multistate(chain).address, apps=deployment.apps)
    return contracts


def _hub_policy(args: argparse.Namespace):
    from perun.protocols.virtual import HubPolicy

    if not (args.hub or args.hub_fee is not None or args.hub_capacity is not None or args.hub_max_channels is not None):
        return None
    return HubPolicy(fee=args.hub_fee or 0, capacity=args.hub_capacity, max_channels=args.hub_max_channels)


async def _run_node(key: bytes, chain, data: Path, host: str, port: int, options: dict[str, Any]) -> None:
    import asyncio
    import logging

    from perun.control import ControlServer, socket_path
    from perun.node import Node
    from perun.runtime.faults import ENVIRONMENT

    control = ControlServer(socket_path(data))
    await control.bind()  # first: it refuses a data directory that another node serves
    node = None
    try:
        contract = options.pop("contract")
        node = Node(key, chain, contract, data / "node.db", host, port, **options)
        if os.environ.get(ENVIRONMENT):  # tests kill the process at a crash point
            node.faults.sigkill_at(os.environ[ENVIRONMENT])
        try:
            await node.start()
        except OSError as exc:
            raise errors.PerunError(f"cannot listen on {_host_port(host, port)}: {exc.strerror or exc}") from None
        await control.start(node)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"node {node.address} listening on {_host_port(host, node.port)}, control {control.path}", flush=True)
        await stop.wait()
        logging.getLogger("perun.cli").info("stopping")
    finally:
        await control.close()
        if node is not None:
            await node.stop()


# --------------------------------------------------------------------------- commands for a running node


def _resolving(run: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], Any]:
    """`run` after the channel id prefixes in its arguments are resolved."""
    def resolved(args: argparse.Namespace) -> Any:
        _resolve(args)
        return run(args)
    return resolved


def _call(args: argparse.Namespace, method: str, **params: Any) -> Any:
    from perun.control import call

    return call(args.data, method, params)


def _emit(args: argparse.Namespace, result: Any, text: str) -> None:
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(text)


def cmd_info(args: argparse.Namespace) -> None:
    info = _call(args, "info")
    _emit(args, info, "\n".join([
        f"node      {info['address']}",
        f"listening {_host_port(info['host'], info['port'])}",
        f"chain     {info['chain_id']}, PaymentContract {info['contract']}",
        f"peers     {', '.join(info['peers']) or 'none connected'}",
        f"channels  {', '.join(f'{n} {kind}' for kind, n in info['channels'].items())}",
    ]))


def cmd_connect(args: argparse.Namespace) -> None:
    host, port = args.address
    result = _call(args, "connect", peer=args.peer, host=host, port=port)
    _emit(args, result, f"connected to {result['peer']} at {_host_port(host, port)}")


def cmd_open(args: argparse.Namespace) -> None:
    method = "ledger_open" if args.multistate else "open"
    ch = _call(args, method, peer=args.peer, deposit=str(args.deposit), peer_deposit=str(args.peer_deposit),
               delta=args.delta, timeout=args.timeout)
    kind, mine, peers = ("multistate channel", ch["my_cash"], ch["peer_cash"]) if args.multistate else (
        "channel", ch["my_balance"], ch["peer_balance"])
    if ch["stage"] == "initialising":  # created, and the peer has not confirmed yet
        now = _call(args, "info")["chain_time"]
        _emit(args, ch, f"created {kind} {ch['channel']} on chain with your deposit of {show_amount(mine)}; "
                        f"{ch['peer']} has not confirmed it yet and may until {when(ch['deadline'], now)}. "
                        f"If it does not, your node takes your deposit back then. `perun status {ch['channel']}` "
                        "shows where it is.")
        return
    _emit(args, ch, f"opened {kind} {ch['channel']} with {ch['peer']}: you {show_amount(mine)}, "
                    f"peer {show_amount(peers)}, dispute window {ch['delta']} s")


def cmd_cancel(args: argparse.Namespace) -> None:
    ch = _call(args, "cancel", channel=args.channel)
    if ch["stage"] == "failed":
        text = f"gave up the opening of {ch['channel']}: {ch['given_up']}; nothing is on chain, nothing will be sent"
    elif ch["role"] == "alice":
        now = _call(args, "info")["chain_time"]
        text = (f"gave up {ch['channel']}, which is on chain with your deposit: {ch['peer']} may still confirm it "
                f"until {when(ch['deadline'], now)}; if it does not, your node takes your deposit back then")
    else:
        text = (f"gave up {ch['channel']}: your node will not confirm it, and {ch['peer']} takes its deposit back "
                "after the confirm deadline")
    _emit(args, ch, text)


def cmd_virtual_open(args: argparse.Namespace) -> None:
    now = _call(args, "info")["chain_time"]
    ch = _call(args, "virtual_open", ledger=args.ledger, peer=args.peer, ledger_b=args.ledger_b,
               deposit=str(args.deposit), peer_deposit=str(args.peer_deposit), validity=now + args.validity,
               window=args.window, fee=str(args.fee))
    _emit(args, ch, f"opened virtual channel {ch['channel']} with {ch['bob']} through {ch['ingrid']}: "
                    f"you {show_amount(ch['my_balance'], ch['token'])}, peer {show_amount(ch['peer_balance'], ch['token'])}; "
                    f"it closes by {when(ch['validity'], now)}")


def cmd_virtual_close(args: argparse.Namespace) -> None:
    ch = _call(args, "virtual_close", channel=args.channel)
    _emit(args, ch, _closed_virtual(ch))


def _closed_virtual(ch: dict[str, Any]) -> str:
    return (f"closed virtual channel {ch['channel']} through {ch['ingrid']} at version {ch['version']}: "
            f"you {show_amount(ch['my_balance'], ch['token'])}, peer {show_amount(ch['peer_balance'], ch['token'])}, "
            "back in your multistate channel with Ingrid")


def cmd_pay(args: argparse.Namespace) -> None:
    ch = _call(args, "pay", channel=args.channel, amount=str(args.amount))
    token = ch["token"]
    _emit(args, ch, f"paid {show_amount(args.amount, token)} on {ch['channel']}: version {ch['paid_version']}, "
                    f"you {show_amount(ch['my_balance'], token)}, peer {show_amount(ch['peer_balance'], token)}")


def cmd_status(args: argparse.Namespace) -> None:
    if args.sync:
        _call(args, "sync")
    if args.channel:
        ch = _call(args, "status", channel=args.channel)
        describe = {"payment": _describe, "multistate": _describe_ledger, "virtual": _describe_virtual}
        _emit(args, ch, describe[ch["kind"]](ch, _call(args, "info")["chain_time"]))
        return
    every = _call(args, "status")
    now = _call(args, "info")["chain_time"] if every else 0
    tables = [table(of_kind, now) for kind, table in (("payment", _table), ("multistate", _ledger_table),
                                                      ("virtual", _virtual_table))
              if (of_kind := [ch for ch in every if ch["kind"] == kind])]
    _emit(args, every, "\n\n".join(tables) or "no channels")


def cmd_close(args: argparse.Namespace) -> None:
    if not args.unilateral:
        if args.wait:
            raise errors.UsageError("perun close", "--wait goes with --unilateral (a cooperative close waits anyway)")
        ch = _call(args, "close", channel=args.channel)
        _emit(args, ch, _closed_virtual(ch) if ch["kind"] == "virtual"
              else f"closed {ch['channel']} cooperatively: {_payouts(ch)}")
        return
    ch = _call(args, "register", channel=args.channel)
    if ch["stage"] == "closed":  # it held a final state signed by both: that pays out at once
        text = f"closed {ch['channel']} with the final state both signed: {_payouts(ch)}"
    elif args.wait:
        print(f"registered version {ch['registered_version']} of {ch['channel']} on chain{_tx(ch)}", file=sys.stderr)
        ch = _wait_closed(args, ch)
        text = f"closed {ch['channel']} after the dispute window: {_payouts(ch)}"
    else:
        text = (f"registered version {ch['registered_version']} of {ch['channel']} on chain{_tx(ch)}; "
                f"the peer may answer until {when(ch['deadline'], _call(args, 'info')['chain_time'])}, then your "
                "node finalizes and pays out (`perun finalize --wait` waits for it)")
    _emit(args, ch, text)


def cmd_finalize(args: argparse.Namespace) -> None:
    if args.wait and (ch := _call(args, "status", channel=args.channel))["stage"] == "closing":
        ch = _wait_closed(args, ch)
        _emit(args, ch, f"{ch['channel']} is closed: {_payouts(ch)}")
        return
    ch = _call(args, "finalize", channel=args.channel)
    done = f"finalized {ch['channel']}{_tx(ch)}" if ch["transaction"] else f"{ch['channel']} was closed already"
    _emit(args, ch, f"{done}: {_payouts(ch)}")


def _wait_closed(args: argparse.Namespace, ch: dict[str, Any]) -> dict[str, Any]:
    """Waits until a closing channel is paid out (its node finalizes once the window is over),
    with a progress line on stderr: rewritten each second on a terminal, once otherwise."""
    tty = sys.stderr.isatty()
    shown = False
    while True:
        if tty or not shown:
            now = _call(args, "info")["chain_time"]
            line = f"waiting for the dispute window of {ch['channel'][:10]}… to end at {when(ch['deadline'], now)}"
            print(("\r\033[K" if tty else "") + line, end="" if tty else "\n", file=sys.stderr, flush=True)
            shown = True
        try:
            ch = _call(args, "wait", channel=ch["channel"], stage="closed", timeout=1 if tty else 30)
        except errors.PeerTimeout:
            ch = _call(args, "status", channel=ch["channel"])
            continue
        if tty:
            print(file=sys.stderr)
        return ch


def cmd_refund(args: argparse.Namespace) -> None:
    ch = _call(args, "refund", channel=args.channel)
    done = f"refunded {ch['channel']}{_tx(ch)}" if ch["transaction"] else f"{ch['channel']} was closed already"
    _emit(args, ch, f"{done}: {_payouts(ch)}")


def _payouts(ch: dict[str, Any]) -> str:
    if ch["my_payout"] is None:
        return f"not paid out yet ({ch['stage']})"
    return (f"paid out you {show_amount(ch['my_payout'], ch['token'])}, "
            f"peer {show_amount(ch['peer_payout'], ch['token'])}")


def _tx(ch: dict[str, Any]) -> str:
    tx = ch.get("transaction")
    return f" (transaction {tx['hash']}, gas {tx['gas_used']:,})" if tx else ""


def _describe(ch: dict[str, Any], now: int) -> str:
    token = ch["token"]
    lines = [
        f"channel   {ch['channel']}",
        f"peer      {ch['peer']} (you are {ch['role']})",
        f"stage     {ch['stage']}, version {ch['version']}{' (final)' if ch['final'] else ''}"
        + (f", {ch['pending']} pending" if ch["pending"] else ""),
        f"you       {show_amount(ch['my_balance'], token)}",
        f"peer      {show_amount(ch['peer_balance'], token)}",
        f"deposits  you {_short_amount(ch['my_deposit'], token)}, peer {_short_amount(ch['peer_deposit'], token)}",
        f"Δ         {ch['delta']} s",
    ]
    if ch["stage"] == "closing":
        lines.append(f"closing   version {ch['registered_version']} registered")
    lines += _next_lines(ch, now)
    if ch["my_payout"] is not None:
        lines.append(f"paid out  you {show_amount(ch['my_payout'], token)}, "
                     f"peer {show_amount(ch['peer_payout'], token)}")
    return "\n".join(lines)


def _next_lines(ch: dict[str, Any], now: int) -> list[str]:
    """What happens next to a payment or multistate channel, when, and what the node does then."""
    peer, stage, mine = _short_address(ch["peer"]), ch["stage"], ch["role"] == "alice"
    deposit = _short_amount(ch.get("my_deposit", 0), ch["token"]) if "my_deposit" in ch else "your deposit"
    given_up = ch.get("given_up")
    if stage == "failed":
        return [f"not opened: {given_up}"]
    if stage in ("proposed", "accepted"):
        what = ("your node creates it on chain" if mine and stage == "accepted" else
                f"waiting for {peer} to " + ("accept it" if stage == "proposed" else "create it on chain"))
        if not ch["open_until"]:
            return [f"next      {what}"]
        return [f"next      {what}; the opening is given up at {when(ch['open_until'], now)} if it is not on "
                "chain by then"]
    if stage == "initialising":
        if mine:
            return [f"next      {peer} may confirm until {when(ch['deadline'], now)}; if it does not, your node "
                    f"takes {deposit} back then" + (f" (you gave it up: {given_up})" if given_up else "")]
        if given_up:
            return [f"next      you gave it up ({given_up}): your node does not confirm, and {peer} takes its "
                    f"deposit back after {when(ch['deadline'], now)}"]
        return [f"next      your node confirms it (deposit {deposit}) by {when(ch['deadline'], now)}"]
    if stage == "closing":
        if ch["registered_version"] is not None and ch["registered_version"] < ch["version"]:
            return [f"next      an older version is registered: your node disputes with version {ch['version']} "
                    f"before {when(ch['deadline'], now)}"]
        return [f"next      the dispute window ends at {when(ch['deadline'], now)}; then your node finalizes "
                "and pays out"]
    return []


def _describe_ledger(ch: dict[str, Any], now: int) -> str:
    token = ch["token"]
    lines = [
        f"channel   {ch['channel']} (multistate)",
        f"peer      {ch['peer']} (you are {ch['role']})",
        f"stage     {ch['stage']}, version {ch['version']}" + (f", {ch['pending']} pending" if ch["pending"] else ""),
        f"you       {show_amount(ch['my_cash'], token)} free",
        f"peer      {show_amount(ch['peer_cash'], token)} free",
        f"Δ         {ch['delta']} s",
    ]
    for nc in ch["nanocontracts"]:
        lines.append(f"nanocontract {nc['nid']}: {nc['app']}, version {nc['version']}, blocked you "
                     f"{_short_amount(nc['blocked'][0], token)}, peer {_short_amount(nc['blocked'][1], token)}")
    lines += _next_lines(ch, now)
    if ch["my_payout"] is not None:
        lines.append(f"paid out  you {show_amount(ch['my_payout'], token)}, "
                     f"peer {show_amount(ch['peer_payout'], token)}")
    return "\n".join(lines)


def _describe_virtual(ch: dict[str, Any], now: int) -> str:
    token = ch["token"]
    lines = [
        f"channel   {ch['channel']} (virtual, you are {ch['position']})",
        f"alice     {ch['alice']}",
        f"bob       {ch['bob']}",
        f"through   {ch['ingrid']} (Ingrid)",
        f"version   {ch['version']}{' (final)' if ch['final'] else ''}{', settled' if ch['settled'] else ''}",
    ]
    if ch["my_balance"] is not None:
        lines += [f"you       {show_amount(ch['my_balance'], token)}",
                  f"peer      {show_amount(ch['peer_balance'], token)}"]
    lines.append(f"validity  {when(ch['validity'], now)}, then {ch['window']} s for each end's latest state")
    return "\n".join(lines)


def _short_address(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def _table(channels: list[dict[str, Any]], now: int) -> str:
    rows = [("CHANNEL", "PEER", "ROLE", "STAGE", "VERSION", "MINE", "PEER'S", "NEXT DEADLINE")]
    for ch in channels:
        rows.append((ch["channel"], _short_address(ch["peer"]), ch["role"], ch["stage"], str(ch["version"]),
                     _short_amount(ch["my_balance"], ch["token"]), _short_amount(ch["peer_balance"], ch["token"]),
                     _due(ch, now)))
    return _grid(rows, right={4, 5, 6})


def _ledger_table(ledgers: list[dict[str, Any]], now: int) -> str:
    rows = [("MULTISTATE CHANNEL", "PEER", "ROLE", "STAGE", "VERSION", "MY CASH", "PEER'S", "NANOCONTRACTS",
             "NEXT DEADLINE")]
    for ch in ledgers:
        rows.append((ch["channel"], _short_address(ch["peer"]), ch["role"], ch["stage"], str(ch["version"]),
                     _short_amount(ch["my_cash"], ch["token"]), _short_amount(ch["peer_cash"], ch["token"]),
                     str(len(ch["nanocontracts"])), _due(ch, now)))
    return _grid(rows, right={4, 5, 6, 7})


def _due(ch: dict[str, Any], now: int) -> str:
    """How far the deadline that matters in the channel's stage is (see `status CHANNEL`)."""
    if ch["stage"] in ("initialising", "closing"):
        return relative(ch["deadline"] - now)
    if ch["stage"] in ("proposed", "accepted") and ch["open_until"]:
        return relative(ch["open_until"] - now)
    return ""


def _virtual_table(virtuals: list[dict[str, Any]], now: int) -> str:
    rows = [("VIRTUAL CHANNEL", "YOU ARE", "ALICE", "BOB", "VERSION", "MINE", "PEER'S", "SETTLED")]
    for ch in virtuals:
        mine, peers = ((_short_amount(ch[key], ch["token"]) if ch[key] is not None else "-")
                       for key in ("my_balance", "peer_balance"))
        rows.append((ch["channel"], ch["position"], _short_address(ch["alice"]), _short_address(ch["bob"]),
                     str(ch["version"]), mine, peers, "yes" if ch["settled"] else "no"))
    return _grid(rows, right={4, 5, 6})


def _grid(rows: list[tuple[str, ...]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    )


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
    dev.add_argument("--block-time", type=_count_arg, default=1, metavar="SECONDS",
                     help="mine a block every SECONDS, so that deadlines pass without traffic (default 1)")
    dev.add_argument("--out", help="deployment file (default: deployments/31337.json)")
    dev.set_defaults(run=cmd_devnet)

    fund = sub.add_parser("fund", parents=[json_flag], help="send ETH from a devnet's first dev account")
    fund.add_argument("address", type=_address_arg, metavar="ADDRESS")
    fund.add_argument("amount", type=_amount_arg, metavar="AMOUNT", help="wei, or with a unit: 10eth")
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
    node.add_argument("--config", type=Path, metavar="FILE", help="a TOML file of settings: the flags below as keys")
    where = node.add_mutually_exclusive_group()
    for option in NODE_OPTIONS:
        kwargs: dict[str, Any] = {"help": option.help}
        if option.type is None:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=option.type, metavar=option.metavar, action="append" if option.repeat else "store")
        (where if option.key in _EXCLUSIVE else node).add_argument(option.flag, **kwargs)
    node.set_defaults(run=cmd_node)

    def client(name: str, run, summary: str, within=sub, **kwargs: Any) -> argparse.ArgumentParser:
        """A command for a running node (`within` a group's subparsers: `perun virtual open`)."""
        cmd = within.add_parser(name, parents=[json_flag], help=summary, **kwargs)
        cmd.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
        cmd.set_defaults(run=_resolving(run))
        return cmd

    client("info", cmd_info, "show a running node's address, port, chain and contract")
    con = client("connect", cmd_connect, "connect the node to a peer (remembered across restarts)")
    con.add_argument("peer", type=_address_arg, metavar="PEER_ADDRESS")
    con.add_argument("address", type=_host_port_arg, metavar="HOST:PORT")
    opn = client("open", cmd_open, "open a channel with a connected peer")
    opn.add_argument("peer", type=_address_arg, metavar="PEER_ADDRESS")
    opn.add_argument("--deposit", required=True, type=_amount_arg, metavar="AMOUNT", help="this node's deposit")
    opn.add_argument("--peer-deposit", required=True, type=_amount_arg, metavar="AMOUNT", help="the peer's deposit")
    opn.add_argument("--delta", required=True, type=int, metavar="SECONDS", help="the dispute window Δ")
    opn.add_argument("--timeout", type=_count_arg, default=60, metavar="SECONDS",
                     help="how long to wait for the peer to accept and confirm (default 60); after it, the command "
                          "says where the opening stands")
    opn.add_argument("--multistate", action="store_true",
                     help="a multistate channel (nanocontracts; a ledger channel for virtual channels)")
    can = client("cancel", cmd_cancel, "give up a channel's opening: no deposit is sent for it any more",
                 description="Gives up the opening of CHANNEL: the node sends no create or confirm for it from "
                 "now on. If this node (Alice) created it on chain already, it takes its deposit back at the "
                 "confirm deadline, unless the peer confirms before. An open channel is closed, not cancelled.")
    can.add_argument("channel", type=_channel_arg, metavar="CHANNEL")
    pay = client("pay", cmd_pay, "pay the peer on a channel")
    pay.add_argument("channel", type=_channel_arg, metavar="CHANNEL")
    pay.add_argument("amount", type=_amount_arg, metavar="AMOUNT", help="wei, or with a unit: 1.5eth, 20gwei, 100wei")
    sts = client("status", cmd_status, "show every channel, or one")
    sts.add_argument("channel", nargs="?", type=_channel_arg, metavar="CHANNEL")
    sts.add_argument("--sync", action="store_true", help="have the node read the chain first (it also does "
                     "every --poll seconds)")
    cls = client("close", cmd_close, "close a channel: cooperatively, or alone with --unilateral")
    cls.add_argument("channel", type=_channel_arg, metavar="CHANNEL")
    cls.add_argument("--unilateral", action="store_true",
                     help="register the latest state on chain without the peer; finalize after Δ")
    cls.add_argument("--wait", action="store_true", help="with --unilateral: wait until it is paid out")
    fin = client("finalize", cmd_finalize, "pay out a channel whose dispute window is over")
    fin.add_argument("channel", type=_channel_arg, metavar="CHANNEL")
    fin.add_argument("--wait", action="store_true", help="if the window is not over yet, wait until it is paid out")
    ref = client("refund", cmd_refund, "take the deposit back when the peer never confirmed")
    ref.add_argument("channel", type=_channel_arg, metavar="CHANNEL")

    virt = sub.add_parser("virtual", help="virtual channels through an intermediary: open, close")
    virt_sub = virt.add_subparsers(dest="virtual_command", required=True, metavar="ACTION")
    vopen = client(
        "open", cmd_virtual_open, "open a virtual channel to a peer through Ingrid, off chain", virt_sub,
        description="Opens a virtual channel to PEER through the peer of this node's multistate channel LEDGER "
        "(Ingrid), whose multistate channel with PEER is LEDGER_B. No transaction: pay on it with `perun pay`, "
        "close it with `perun virtual close`.")
    vopen.add_argument("ledger", type=_channel_arg, metavar="LEDGER", help="this node's multistate channel with Ingrid")
    vopen.add_argument("peer", type=_address_arg, metavar="PEER_ADDRESS")
    vopen.add_argument("ledger_b", type=_channel_arg, metavar="LEDGER_B", help="Ingrid's multistate channel with PEER")
    vopen.add_argument("--deposit", required=True, type=_amount_arg, metavar="AMOUNT", help="this node's deposit")
    vopen.add_argument("--peer-deposit", type=_amount_arg, default=0, metavar="AMOUNT",
                       help="the peer's deposit (default 0; the peer must run with --accept-virtual)")
    vopen.add_argument("--validity", required=True, type=_count_arg, metavar="SECONDS",
                       help="the channel closes by the chain's time now plus SECONDS")
    vopen.add_argument("--window", required=True, type=_count_arg, metavar="SECONDS",
                       help="after validity, how long each end has to submit its latest state (more than Δ)")
    vopen.add_argument("--fee", type=_amount_arg, default=0, metavar="AMOUNT", help="Ingrid's fee, if she asks one")
    vopen.set_defaults(name="virtual open")
    vclose = client("close", cmd_virtual_close, "close a virtual channel fast through Ingrid", virt_sub)
    vclose.add_argument("channel", type=_channel_arg, metavar="CHANNEL")
    vclose.set_defaults(name="virtual close")
    return top


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
        command = exc.command if isinstance(exc, errors.UsageError) else f"perun {getattr(args, 'name', args.command)}"
        print(f"{command}: {' '.join(explained.message.splitlines())}", file=sys.stderr)
    return explained.exit_code


if __name__ == "__main__":
    sys.exit(main())
