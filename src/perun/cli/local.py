"""The commands that need no running node: scenarios, deploy, devnet, fund, compile, keystore."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from perun import errors
from perun.cli.show import emit, show_amount


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
SCENARIO_ANVIL_BALANCE = 10**6  # ether of anvil's dev accounts for `scenario run --anvil`: the catalog's funds


def cmd_scenario_run(args: argparse.Namespace) -> int:
    from perun.chain.anvil import AnvilChain
    from perun.scenario import report
    from perun.scenario.runner import run

    paths = [Path(p) for p in args.files]
    if not paths:
        paths = sorted(CATALOG.glob("*.yaml"))
        if not paths:
            raise errors.PerunError(f"no scenario files given and none in {CATALOG}/ (run from the project's folder)")
    # The runner funds every party of every file from the first dev account: 100 ETH each by default.
    anvil = AnvilChain(balance=SCENARIO_ANVIL_BALANCE) if args.anvil else None
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
    emit(args, {"address": args.address, "amount": str(args.amount), "balance": str(balance)},
          f"sent {show_amount(args.amount)} to {args.address}; it has {show_amount(balance)}")


def cmd_compile(args: argparse.Namespace) -> None:
    from perun.chain.compile import main

    main()


def cmd_keystore_new(args: argparse.Namespace) -> None:
    from perun import keystore

    address = keystore.create(args.out, keystore.read_password(confirm=True))
    emit(args, {"address": address, "file": str(args.out)}, f"created {args.out} for {address}")


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
    emit(args, {"address": address, "file": str(args.out)}, f"imported {address} into {args.out}")


def cmd_keystore_address(args: argparse.Namespace) -> None:
    from perun import keystore

    address = keystore.address(args.file)
    emit(args, {"address": address, "file": str(args.file)}, address)
