"""The `perun` command: demo (the scenario catalog), scenario run, deploy to a running anvil, devnet,
and its error messages."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account

from perun import errors
from perun.chain.anvil import Anvil, free_port
from perun.chain.backend import RpcChain
from perun.chain.deploy import Deployment
from perun.cli import main
from perun.core.channel import Phase

PERUN = [sys.executable, "-m", "perun.cli"]


def test_demo_plays_the_catalog_and_prints_the_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`perun demo` plays the scenarios/ of the folder it runs in. Here a catalog of two (the
    catalog test plays every scenario of the real one, tests/scenarios/test_catalog.py)."""
    catalog = ["01-cooperative-close", "03-stale-close-refuted"]
    (tmp_path / "scenarios").mkdir()
    for name in catalog:
        shutil.copy(Path("scenarios") / f"{name}.yaml", tmp_path / "scenarios")
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "reports"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("scenario  "):]
    for name in catalog:
        assert f"{name} " in table and (tmp_path / "reports" / f"{name}.html").is_file()
    assert f"{len(catalog)} passed, 0 failed" in table
    assert f"reports: {Path('reports') / 'index.html'}" in out


def test_scenario_run_exits_1_when_an_assertion_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(Path("scenarios/01-cooperative-close.yaml").read_text().replace("payout: [7.5eth, 7.5eth]",
                                                                                   "payout: [7eth, 8eth]"))
    assert main(["scenario", "run", str(wrong), "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "expected 7 ETH / 8 ETH, found 7.5 ETH / 7.5 ETH (line 21)" in out
    assert "0 passed, 1 failed" in out


def test_scenario_run_names_the_line_of_a_wrong_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("title: x\nparties: {alice: {}}\nsteps:\n  - pay: {from: carol, amount: 1eth}\n")
    assert main(["scenario", "run", str(wrong)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"perun scenario run: {wrong}:4: step 1 (pay): from: expected a party: one of alice, "
                   "got 'carol'")


def test_deploy_to_a_running_anvil_writes_a_usable_deployment(tmp_path: Path) -> None:
    out = tmp_path / "deployment.json"
    with Anvil() as anvil:
        assert main(["deploy", "--rpc", anvil.url, "--out", str(out)]) == 0
        deployment = Deployment.read(out)
        chain = RpcChain(anvil.url)
        assert deployment.chain_id == chain.chain_id == 31337
        contract = deployment.payment(chain)
        assert contract.channel(b"\x00" * 32).phase == Phase.NONE


def test_deploy_with_a_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "deployment.json"
    with Anvil() as anvil:
        chain = RpcChain(anvil.url)
        deployer = chain.new_account(10**18)
        monkeypatch.setenv("DEPLOYER_KEY", deployer.key.hex())
        assert main(["deploy", "--rpc", anvil.url, "--key-env", "DEPLOYER_KEY", "--out", str(out)]) == 0
        # PaymentContract, MSContract and the three apps, all from the key's account.
        assert chain.w3.eth.get_transaction_count(deployer.address) == 5
        written = json.loads(out.read_text())
        assert written["payment_contract"] and written["ms_contract"] and len(written["apps"]) == 3


def test_user_errors_are_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["deploy", "--rpc", url]) == 1  # out of reach
    err = capsys.readouterr().err
    assert err.strip() == f"perun deploy: no JSON-RPC node answers at {url}: is the chain running? (`perun devnet` " \
                          "starts a local one)"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_devnet_runs_until_interrupted(tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    out = tmp_path / "devnet.json"
    proc = subprocess.Popen([*PERUN, "devnet", "--port", str(port), "--out", str(out)],
                            stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:  # ends if the process dies
            lines.append(line)
            if line.startswith("Ctrl-C stops it."):
                break
        text = "".join(lines)
        assert f"anvil listening on http://127.0.0.1:{port} (chain id 31337), a block every 1 s" in text
        chain = RpcChain(f"http://127.0.0.1:{port}")
        assert Deployment.read(out).payment(chain).address
        # Its dev accounts with their (public, test) keys.
        keys = re.findall(r"^  (0x[0-9a-fA-F]{40})  key (0x[0-9a-f]{64})$", text, re.M)
        assert [address for address, _ in keys] == chain.dev_accounts[:4]
        assert all(Account.from_key(key).address == address for address, key in keys)
        if stop is signal.SIGINT:
            # It mines without traffic, and `perun fund` sends ETH.
            first = chain.block_number()
            deadline = time.monotonic() + 10
            while chain.block_number() == first:
                assert time.monotonic() < deadline, "no block mined within 10 s"
                time.sleep(0.1)
            someone = Account.create().address
            funded = subprocess.run([*PERUN, "fund", someone, "2.5eth", "--rpc", chain.url],
                                    capture_output=True, text=True, timeout=60)
            assert (funded.returncode, funded.stderr) == (0, "")
            assert funded.stdout == (f"sent 2.5 ETH (2500000000000000000 wei) to {someone}; it has 2.5 ETH "
                                     "(2500000000000000000 wei)\n")
        proc.send_signal(stop)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(errors.ChainError):
        RpcChain(f"http://127.0.0.1:{port}")  # anvil stopped with it
