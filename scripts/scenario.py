"""`ape run scenario FILE...`: plays dispute scenarios and writes their reports.

Thin on purpose: it calls the same runner as `perun scenario run` (perun.scenario), which runs
real nodes on a fresh embedded chain per scenario, or on the dev chain at `--rpc` (anvil).

    ape run scenario scenarios/03-stale-close-refuted.yaml [--rpc http://127.0.0.1:8545] [--out DIR]
"""

from __future__ import annotations

import click

from perun import cli as perun_cli


@click.command(short_help="Play dispute scenarios with real nodes; write HTML and text reports")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--rpc", default=None, help="JSON-RPC URL of a dev chain (default: the embedded chain).")
@click.option("--out", default="build/scenarios", show_default=True, help="Where the reports go.")
def cli(files: tuple[str, ...], rpc: str | None, out: str) -> None:
    args = ["scenario", "run", *files, "--out", out, *(["--rpc", rpc] if rpc else [])]
    code = perun_cli.main(args)
    if code:
        raise SystemExit(code)
