"""`perun watchtower` on anvil, driven only through the `perun` command and config files: Bob's
`perun node` (config keys tower and tower_reward) hands it his states; `perun status` and `perun
info` on either show what the tower holds; with Bob offline the tower refutes Alice's stale
close, finalizes and is paid; it stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from eth_account import Account

from perun import control, keystore
from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.chain.payment import PaymentContract
from perun.store import Store
from tests.integration.test_cli_node import PERUN, NodeProcess, _read_line, ok, one_line_failure, perun, running

PASSWORD = "tower test password"
TOWER_READY = re.compile(r"watchtower (0x[0-9a-fA-F]{40}) listening on 127\.0\.0\.1:(\d+), PaymentContract "
                         r"(0x[0-9a-fA-F]{40}), (\d+) channel\(s\) watched, control (\S+)\n")
NODE_READY = re.compile(r"node (0x[0-9a-fA-F]{40}) listening on 127\.0\.0\.1:(\d+), control (\S+)\n")
DELTA = 3600


def launch(tmp: Path, name: str, *args: str) -> NodeProcess:
    log = tmp / f"{name}.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen([*PERUN, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                env={**os.environ, "PERUN_PASSWORD": PASSWORD})
    return NodeProcess(tmp / name, proc, log)


def ready(node: NodeProcess, pattern: re.Pattern[str]) -> re.Match[str]:
    line = _read_line(node.proc, 30)
    match = pattern.fullmatch(line)
    assert match, f"not a ready line: {line!r}; log:\n{node.log.read_text()}"
    node.address, node.port = match[1], int(match[2])
    return match


def test_a_watchtower_from_the_command_line_refutes_for_an_offline_node(tmp_path: Path) -> None:
    with Anvil() as anvil:
        chain = RpcChain(anvil.url)
        deployment = deploy(chain, chain.dev_accounts[0])
        contract = PaymentContract(chain, deployment.payment_contract)
        deployment.write(tmp_path / "deployment.json")
        for name in ("alice", "bob", "tower"):
            key = chain.new_account(10 * ETHER).key.hex()
            keystore.import_key(tmp_path / f"{name}.json", key, PASSWORD, kdf="pbkdf2", iterations=2)
        (tmp_path / "tower.toml").write_text(
            f'data = "tower"\nkeystore = "tower.json"\nrpc = "{anvil.url}"\ncontract = "{contract.address}"\n'
            'listen = "127.0.0.1:0"\npoll = 0.1\n')
        tower = launch(tmp_path, "tower", "watchtower", "--config", str(tmp_path / "tower.toml"))
        with running(tower):
            match = ready(tower, TOWER_READY)
            assert (match[3], match[4], Path(match[5])) == (contract.address, "0", tmp_path / "tower" / "control.sock")
            assert tower.address == keystore.address(tmp_path / "tower.json")
            (tmp_path / "bob.toml").write_text(
                f'data = "bob"\nkeystore = "bob.json"\nrpc = "{anvil.url}"\ndeployment = "deployment.json"\n'
                f'poll = 0.1\nmax_own_deposit = "1eth"\ntower = ["{tower.address}@127.0.0.1:{tower.port}"]\n'
                'tower_reward = "0.01eth"\n')
            bob = launch(tmp_path, "bob", "node", "--config", str(tmp_path / "bob.toml"))
            alice = launch(tmp_path, "alice", "node", "--data", str(tmp_path / "alice"), "--keystore",
                           str(tmp_path / "alice.json"), "--rpc", anvil.url, "--deployment",
                           str(tmp_path / "deployment.json"), "--poll", "0.1")
            with running(bob, alice):
                ready(bob, NODE_READY)
                ready(alice, NODE_READY)
                ok("connect", bob.address, f"127.0.0.1:{bob.port}", "--data", alice.data)
                cid = perun("--json", "open", bob.address, "--deposit", "2eth", "--peer-deposit", "1eth", "--delta",
                            DELTA, "--data", alice.data).json()["channel"]
                for _ in range(3):
                    ok("pay", cid, "0.1eth", "--data", alice.data)
                held = control.call(bob.data, "wait_towers", {"channel": cid, "version": 3})
                assert held["towers"] == {tower.address: 3}
                shown = ok("status", cid, "--sync", "--data", bob.data)
                assert f"tower     {tower.address} holds version 3\n" in shown

                info = ok("info", "--data", tower.data)
                assert info.splitlines()[0] == f"watchtower {tower.address}"
                assert f"PaymentContract {contract.address}" in info and "watching   1 channel(s)" in info
                table = ok("status", "--data", tower.data).splitlines()
                assert table[0].split() == ["WATCHED", "CHANNEL", "KIND", "CLIENT", "STAGE", "VERSION", "REGISTERED",
                                            "REWARD", "PAID", "NEXT", "DEADLINE"]
                assert table[1].split() == [cid, "payment", f"{bob.address[:6]}…{bob.address[-4:]}", "watching", "3",
                                            "0.01", "ETH"]  # nothing registered, nothing paid, no deadline
                [listed] = perun("--json", "status", "--data", tower.data).json()
                assert (listed["kind"], listed["version"], listed["client"]) == ("tower", 3, bob.address)
                refused = one_line_failure(perun("pay", cid, "1wei", "--data", tower.data), 2)
                assert refused == ("perun pay: this is a watchtower: it answers info, status, sync, wait, not pay; "
                                   "give the --data of a node for that")

                # Bob goes offline; Alice stops her node and registers version 1 behind its back.
                assert bob.stop() == 0 and alice.stop() == 0
                store = Store(alice.data / "node.db", alice.address, chain.chain_id, contract.address)
                try:
                    [rec] = store.channels()
                    [signed] = [s for s in store.states(rec.channel_id) if s.state.version == 1]
                finally:
                    store.close()
                alice_account = Account.from_key(keystore.load(tmp_path / "alice.json", PASSWORD))
                contract.close(alice_account, rec.params, signed.state, signed.sig_bob)
                bob_before = chain.balance(bob.address)

                control.call(tower.data, "wait", {"channel": cid, "registered": 3})
                closing = ok("status", cid, "--data", tower.data)
                assert "closing   version 3 registered (this tower's refutation)" in closing
                assert "next      the tower finalizes when the window ends, and is paid its reward" in closing
                chain.advance_time(DELTA + 1)
                control.call(tower.data, "wait", {"channel": cid, "stage": "closed"})
                closed = ok("status", cid, "--data", tower.data)
                assert "stage     closed, version 3 held" in closed
                assert "paid      0.01 ETH (10000000000000000 wei) to this tower" in closed
            assert tower.stop(signal.SIGTERM) == 0
        assert not (tower.data / "control.sock").exists()
        [paid] = [e.args for e in contract.events() if e.name == "RewardPaid"]
        assert (paid["tower"], paid["payer"], paid["amount"]) == (tower.address, bob.address, ETHER // 100)
        assert chain.balance(bob.address) == bob_before + ETHER + 3 * ETHER // 10 - ETHER // 100
        log = tower.log.read_text()
        assert "Traceback" not in log
        for line in (f"took version 3 from {bob.address}", "a stale close registered version 1 (we hold 3)",
                     "our refutation with version 3 is registered", "reward of 0.01 ETH", f"channel {cid}: closed",
                     "perun.watchtower: stopping"):
            assert line in log, line
