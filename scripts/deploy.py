"""`ape run deploy`: deploys PaymentContract, MSContract and the nanocontract apps with ape and writes a perun deployment file.

Thin on purpose: the contract comes from `ape compile` (ape-config.yaml) and the file format is
perun.chain.deploy.Deployment's, so `perun` commands can use the deployment. The sender is ape's
first test account, so this is for local networks (the default ethereum:local:test, or
`--network ethereum:local:foundry`).

    SOLCX_BINARY_PATH=$PWD/.solc ape run deploy [--out FILE] [--network ...]
"""

from __future__ import annotations

from pathlib import Path

import click
from ape import accounts, chain, project
from ape.cli import ConnectedProviderCommand

from perun.chain.deploy import APP_NAMES, Deployment, default_path


@click.command(cls=ConnectedProviderCommand, short_help="Deploy the contracts, write a deployment file")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Deployment file to write (default: deployments/<chain id>.json).",
)
def cli(out: Path | None) -> None:
    sender = accounts.test_accounts[0]
    contract = project.PaymentContract.deploy(sender=sender)
    ms = project.MSContract.deploy(sender=sender)
    apps = {name: getattr(project, name).deploy(sender=sender).address for name in APP_NAMES}
    deployment = Deployment(chain.chain_id, contract.address, chain.blocks.height, ms.address, apps)
    path = out or default_path(deployment.chain_id)
    deployment.write(path)
    click.echo(f"PaymentContract deployed at {contract.address} (chain {deployment.chain_id})")
    click.echo(f"MSContract deployed at {ms.address}; apps: {apps}")
    click.echo(f"wrote {path}")
