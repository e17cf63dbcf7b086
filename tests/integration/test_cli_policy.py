"""The channel acceptance policy of `perun node`, through the command with real node processes on
anvil: a node run with the defaults refuses a channel that asks it to deposit, says why, and no
transaction is sent; a node whose config file allows 2 ETH of its own accepts 1 ETH."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from perun import keystore
from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.chain.payment import PaymentContract
from tests.integration.test_cli_node import (
    PASSWORD,
    PERUN,
    NodeProcess,
    Result,
    perun,
    perun_process,
    running,
    start_node,
)


@dataclass
class Net:
    chain: RpcChain
    contract: PaymentContract
    alice: NodeProcess
    bob: NodeProcess  # the defaults
    carol: NodeProcess  # all its settings in a config file, 2 ETH of its own allowed


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("policy")
    with Anvil() as anvil:
        chain = RpcChain(anvil.url)
        deployment = deploy(chain, chain.dev_accounts[0])
        deployment.write(tmp / "deployment.json")
        keys = {}
        for name in ("alice", "bob", "carol"):
            keys[name] = tmp / f"{name}.json"
            keystore.create(keys[name], PASSWORD, kdf="scrypt", iterations=2**10)  # cheap to open
            chain.fund(keystore.address(keys[name]), 100 * ETHER)
        (tmp / "carol.toml").write_text(
            '# every setting here; paths are relative to this file\n'
            f'data = "carol"\nkeystore = "carol.json"\nrpc = "{anvil.url}"\ndeployment = "deployment.json"\n'
            'listen = "127.0.0.1:0"\npoll = 0.1\nmax-own-deposit = "2eth"\n')
        with open(tmp / "carol.log", "wb") as log:
            carol = NodeProcess(tmp / "carol", subprocess.Popen(
                [*PERUN, "node", "--config", str(tmp / "carol.toml")], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PERUN_PASSWORD": PASSWORD}), tmp / "carol.log")
        nodes = (start_node(tmp / "alice", keys["alice"], anvil.url, tmp / "deployment.json"),
                 start_node(tmp / "bob", keys["bob"], anvil.url, tmp / "deployment.json"), carol)
        with running(*nodes):
            for node in nodes:
                node.wait_ready()
            yield Net(chain, PaymentContract(chain, deployment.payment_contract), *nodes)
            for node in nodes:
                assert node.stop() == 0, node.log.read_text()
                assert "Traceback" not in node.log.read_text()


def refused(result: Result) -> str:
    """A failed command: non-zero exit, one line on stderr, no traceback."""
    assert result.code != 0 and result.out == "", (result.out, result.err)
    assert "Traceback" not in result.err and result.err.count("\n") == 1 and result.err.endswith("\n"), result.err
    return result.err.rstrip("\n")


def test_a_node_with_the_defaults_refuses_to_deposit_and_says_why_before_any_transaction(net: Net) -> None:
    alice, bob = net.alice, net.bob
    perun("connect", bob.address, f"127.0.0.1:{bob.port}", "--data", alice.data)
    block = net.chain.block_number()
    balances = [net.chain.balance(node.address) for node in (alice, bob)]
    events = len(net.contract.events())

    err = refused(perun_process("open", bob.address, "--deposit", "1eth", "--peer-deposit", "1000eth",
                                "--delta", "3600", "--data", alice.data))
    assert err.startswith("perun open: ") and err.endswith(
        f"{bob.address} deposits at most 0 ETH of its own in a channel it is offered, not 1000 ETH; its operator "
        "can allow more with --max-own-deposit (config key max_own_deposit)"), err

    # Nobody sent a transaction: no block, the same balances, no event of the contract.
    assert net.chain.block_number() == block
    assert [net.chain.balance(node.address) for node in (alice, bob)] == balances
    assert len(net.contract.events()) == events
    assert perun("--json", "status", "--data", bob.data).json() == []  # Bob stored nothing
    # A channel in which Bob deposits nothing is still welcome.
    opened = perun("--json", "open", bob.address, "--deposit", "1eth", "--peer-deposit", "0", "--delta", "3600",
                   "--data", alice.data).json()
    assert opened["stage"] == "open"


def test_a_node_allowed_2_eth_of_its_own_in_its_config_file_accepts_1_eth(net: Net) -> None:
    alice, carol = net.alice, net.carol
    perun("connect", carol.address, f"127.0.0.1:{carol.port}", "--data", alice.data)
    err = refused(perun("open", carol.address, "--deposit", "1eth", "--peer-deposit", "2.5eth", "--delta", "3600",
                        "--data", alice.data))
    assert f"{carol.address} deposits at most 2 ETH of its own in a channel it is offered, not 2.5 ETH" in err
    opened = perun("--json", "open", carol.address, "--deposit", "1eth", "--peer-deposit", "1eth", "--delta", "3600",
                   "--data", alice.data).json()
    assert (opened["stage"], opened["my_balance"], opened["peer_balance"]) == ("open", str(ETHER), str(ETHER))
