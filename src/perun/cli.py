"""The `perun` command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from perun import errors


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


def cmd_demo(args: argparse.Namespace) -> None:
    from perun.demo import main

    main(_chain(args))


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


def cmd_devnet(args: argparse.Namespace) -> None:
    from perun.chain.anvil import Anvil
    from perun.chain.backend import RpcChain
    from perun.chain.deploy import default_path, deploy

    # Block the signals so that they end the wait below, and the `with` stops anvil, rather
    # than killing this process and leaving anvil (in its own session) running.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with Anvil(args.port) as anvil:
        chain = RpcChain(anvil.url)
        deployment = deploy(chain, chain.dev_accounts[0])
        path = Path(args.out) if args.out else default_path(deployment.chain_id)
        deployment.write(path)
        print(f"anvil listening on {anvil.url} (chain id {chain.chain_id})")
        print(f"PaymentContract {deployment.payment_contract}, recorded in {path}")
        print("dev accounts (funded, unlocked):")
        for account in chain.dev_accounts[:4]:
            print(f"  {account}")
        print("Ctrl-C stops it.", flush=True)
        signal.sigwait(stop_signals)


def cmd_compile(args: argparse.Namespace) -> None:
    from perun.chain.compile import main

    main()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="perun", description="Perun state channels on Ethereum.")
    sub = top.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="deploy and play payment-channel lifecycles, with a dispute")
    demo.add_argument("--rpc", help="JSON-RPC URL of a dev chain (default: the embedded chain)")
    demo.add_argument("--anvil", action="store_true", help="start an anvil of its own and use it")
    demo.set_defaults(run=cmd_demo)

    dep = sub.add_parser("deploy", help="deploy PaymentContract and write a deployment file")
    dep.add_argument("--rpc", required=True, help="JSON-RPC URL of the chain")
    dep.add_argument("--key-env", help="environment variable holding the deployer's private key "
                     "(default: the node's first unlocked account)")
    dep.add_argument("--out", help="deployment file (default: deployments/<chain id>.json)")
    dep.set_defaults(run=cmd_deploy)

    dev = sub.add_parser("devnet", help="run anvil with PaymentContract deployed, until Ctrl-C")
    dev.add_argument("--port", type=int, default=8545)
    dev.add_argument("--out", help="deployment file (default: deployments/31337.json)")
    dev.set_defaults(run=cmd_devnet)

    comp = sub.add_parser("compile", help="recompile contracts/ into the package's artifacts")
    comp.set_defaults(run=cmd_compile)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except errors.PerunError as exc:
        print(f"perun {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
