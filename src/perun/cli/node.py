"""`perun node`: its settings (flags and the --config file), its channel policy, and running it
until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perun import errors
from perun.cli.args import (
    address_arg,
    amount_arg,
    count_arg,
    depth_arg,
    gwei_arg,
    host_port_arg,
    ppm_arg,
    seconds_arg,
    tower_arg,
)
from perun.cli.show import host_port

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
    NodeOption("--rpc", str, (), "JSON-RPC URL of the chain; required. Given more than once, the others are "
               "fallbacks, tried in order when the first does not answer", "URL", repeat=True),
    NodeOption("--deployment", str, None, "deployment file (default: deployments/<chain id>.json)", "FILE",
               path=True),
    NodeOption("--contract", address_arg, None, "PaymentContract address (payment channels only)", "ADDRESS"),
    NodeOption("--listen", host_port_arg, ("127.0.0.1", 0), "where peers connect (default 127.0.0.1:0, a free port)",
               "HOST:PORT"),
    NodeOption("--poll", seconds_arg, 1.0, "how often to read the chain (default 1)", "SECONDS"),
    NodeOption("--response-timeout", seconds_arg, 10.0, "how long to wait for a peer's answer (default 10)",
               "SECONDS"),
    NodeOption("--reply-time", seconds_arg, 30.0, "the seed's T: how long a peer has to answer a nanocontract "
               "update before it expires (default 30)", "SECONDS"),
    # The chain: when an event is final, and what transactions may bid (perun.chain.wallet.FeePolicy).
    NodeOption("--confirmations", depth_arg, None, "blocks on top of an event before it is final (default 0 on a "
               "dev chain, 12 elsewhere); a close is answered at once all the same", "BLOCKS"),
    NodeOption("--max-fee-gwei", gwei_arg, 500 * 10**9, "the most a transaction pays per gas, base fee and tip "
               "(default 500)", "GWEI"),
    NodeOption("--priority-fee-gwei", gwei_arg, 2 * 10**9, "the tip of a transaction's first bid (default 2)",
               "GWEI"),
    NodeOption("--bump-after", seconds_arg, 30.0, "seconds a transaction waits to be mined before the node bids "
               "25 %% more (default 30)", "SECONDS"),
    # What a connection and a peer are granted before the node hangs up (perun.wire.limits.Limits).
    NodeOption("--handshake-timeout", seconds_arg, 10.0, "seconds a connection has to complete the handshake "
               "(default 10)", "SECONDS"),
    NodeOption("--max-connections-per-address", count_arg, 16, "inbound connections open at once from one IP "
               "address (default 16)", "N"),
    NodeOption("--max-connections", count_arg, 512, "inbound connections open at once in all (default 512)", "N"),
    NodeOption("--max-frames-per-second", count_arg, 5000, "frames a peer may send on a connection per second, "
               "averaged over a second (default 5000)", "N"),
    NodeOption("--max-pending-proposals", count_arg, 16, "channels one peer proposed that are not on chain yet "
               "(default 16, per kind of channel)", "N"),
    # Which channels a peer may open with this node (perun.protocols.policy.ChannelPolicy).
    NodeOption("--max-own-deposit", amount_arg, 0, "the most this node deposits in a channel a peer proposes "
               "(default 0: it accepts only channels in which it deposits nothing)", "AMOUNT"),
    NodeOption("--min-peer-deposit", amount_arg, 0, "the least a proposer must deposit (default 0)", "AMOUNT"),
    NodeOption("--max-peer-deposit", amount_arg, None, "the most a proposer may deposit (default: no limit)",
               "AMOUNT"),
    NodeOption("--min-delta", count_arg, 0, "the shortest dispute window Δ accepted (default: any)", "SECONDS"),
    NodeOption("--max-delta", count_arg, None, "the longest dispute window Δ accepted (default: any)", "SECONDS"),
    NodeOption("--allow-peer", address_arg, (), "accept channels only from this peer (repeat for several; "
               "default: from anyone)", "ADDRESS", repeat=True),
    NodeOption("--allow-token", address_arg, (), "accept ERC-20 channels in this token (repeat for several; "
               "default: ETH channels only)", "ADDRESS", repeat=True),
    NodeOption("--accept-virtual", None, False, "let virtual channels others open to this node block some of "
               "its cash (its deposit in them); without it, only those that pay it are accepted"),
    NodeOption("--hub", None, False, "serve as Ingrid: relay virtual channels through this node's multistate "
               "channels"),
    NodeOption("--hub-fee", amount_arg, None, "a hub's fee per virtual channel", "AMOUNT"),
    NodeOption("--hub-capacity", amount_arg, None, "the most a hub blocks in virtual channels at once", "AMOUNT"),
    NodeOption("--hub-max-channels", count_arg, None, "the most virtual channels a hub serves at once", "N"),
    # Multi-hop payments (docs/protocol.md §13): forwarding over this node's multistate channels.
    NodeOption("--forward", None, False, "forward multi-hop payments over this node's multistate channels, and "
               "announce them to peers that ask (free unless --forward-base-fee or --forward-ppm say otherwise)"),
    NodeOption("--forward-base-fee", amount_arg, None, "what a forward costs the payer, on top of --forward-ppm "
               "(implies --forward)", "AMOUNT"),
    NodeOption("--forward-ppm", ppm_arg, None, "what a forward costs the payer in millionths of the amount "
               "forwarded (implies --forward)", "N"),
    # Watchtowers (docs/protocol.md §12) this node hands the latest state of each payment channel to.
    NodeOption("--tower", tower_arg, (), "a watchtower to hand each new state of this node's payment channels to, "
               "as its address @ where it listens (repeat for several)", "ADDRESS@HOST:PORT", repeat=True),
    NodeOption("--tower-reward", amount_arg, 0, "what each tower is offered, paid from this node's payout only if "
               "it refutes a stale close (default 0; at most this node's balance in the state)", "AMOUNT"),
)
_EXCLUSIVE = ("deployment", "contract")  # where the contracts are: one or the other


def node_settings(args: argparse.Namespace) -> argparse.Namespace:
    """`perun node`'s settings: each flag given on the command line, else its key in --config,
    else its default. Raises ConfigError for a bad config file, UsageError for a missing setting."""
    settings = service_settings(args, NODE_OPTIONS, "node")
    if settings.tower_reward and not settings.tower:
        raise errors.UsageError("perun node", "--tower-reward goes with --tower: name the towers to pay")
    addresses = [address for address, _ in settings.tower]
    if len(set(addresses)) < len(addresses):
        raise errors.UsageError("perun node", "a tower is given twice: give each tower's address once")
    return settings


def service_settings(args: argparse.Namespace, options: tuple[NodeOption, ...], command: str) -> argparse.Namespace:
    """The settings of `perun COMMAND` (node or watchtower) whose flags are `options`: each flag
    given on the command line, else its key in --config, else its default."""
    given = {option.key: getattr(args, option.key) for option in options if hasattr(args, option.key)}
    from_file = _read_config(args.config, options, command) if hasattr(args, "config") else {}
    if any(key in given for key in _EXCLUSIVE):  # the command line's choice replaces the file's
        from_file = {key: value for key, value in from_file.items() if key not in _EXCLUSIVE}
    settings = {option.key: option.default for option in options} | from_file | given
    for key in ("data", "keystore", "rpc"):
        if not settings[key]:
            raise errors.UsageError(f"perun {command}", f"--{key} is required, on the command line or as {key} in "
                                    "the --config file")
    return argparse.Namespace(**{**vars(args), **settings})


def _read_config(path: Path, all_options: tuple[NodeOption, ...] = NODE_OPTIONS, command: str = "node"
                 ) -> dict[str, Any]:
    """The settings in the TOML file at `path`, by key, each read as its flag reads it."""
    import tomllib

    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise errors.ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"{path}: not a TOML file: {exc}") from None
    options = {option.key: option for option in all_options}
    settings: dict[str, Any] = {}
    for name, value in table.items():
        key = name.replace("-", "_")
        option = options.get(key)
        if option is None:
            raise errors.ConfigError(f"{path}: unknown key {name!r}: the keys are the flags of "
                                     f"`perun {command} --help`, without the leading --")
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
        if isinstance(value, str):  # one value needs no list: rpc = "http://..."
            value = [value]
        if not isinstance(value, list):
            raise ValueError(f"expected a list, as in [\"{option.metavar or 'VALUE'}\", ...], got {value!r}")
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


def _fee_policy(args: argparse.Namespace):
    from perun.chain.wallet import FeePolicy

    return FeePolicy(max_fee=args.max_fee_gwei, priority_fee=args.priority_fee_gwei, bump_after=args.bump_after)


def _limits(args: argparse.Namespace):
    from perun.wire.limits import Limits

    proposals = {"pending_proposals": args.max_pending_proposals} if hasattr(args, "max_pending_proposals") else {}
    return Limits(handshake_timeout=args.handshake_timeout, connections_per_address=args.max_connections_per_address,
                  connections=args.max_connections, frames_per_second=args.max_frames_per_second, **proposals)


def cmd_node(args: argparse.Namespace) -> None:
    import asyncio
    import logging

    from perun import keystore
    from perun.chain.backend import RpcChain

    args = node_settings(args)
    policy = _channel_policy(args)  # its errors before the password prompt
    fees = _fee_policy(args)
    limits = _limits(args)
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
    forward = _forward_policy(args)
    if forward is not None and "HashTimeLock" not in contracts.get("apps", {}):
        raise errors.DeploymentNotFound("forwarding needs a deployment file with MSContract and the HashTimeLock app")
    options = dict(poll_interval=args.poll, response_timeout=args.response_timeout, reply_time=args.reply_time,
                   policy=policy, accept_virtual=lambda v: args.accept_virtual, hub=hub, forward=forward,
                   confirmations=args.confirmations, fees=fees, limits=limits, towers=dict(args.tower),
                   tower_reward=args.tower_reward, **contracts)
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


def _forward_policy(args: argparse.Namespace):
    from perun.protocols.multihop import ForwardPolicy

    if not (args.forward or args.forward_base_fee is not None or args.forward_ppm is not None):
        return None
    return ForwardPolicy(base_fee=args.forward_base_fee or 0, fee_ppm=args.forward_ppm or 0)


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
            raise errors.PerunError(f"cannot listen on {host_port(host, port)}: {exc.strerror or exc}") from None
        await control.start(node)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"node {node.address} listening on {host_port(host, node.port)}, control {control.path}", flush=True)
        await stop.wait()
        logging.getLogger("perun.cli").info("stopping")
    finally:
        await control.close()
        if node is not None:
            await node.stop()
