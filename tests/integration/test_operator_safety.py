"""Operator safety, as a new operator meets it: `perun node` processes on an anvil that mines a
block every second (as `perun devnet` does), driven through the `perun` command.

- An open that fails leaves nothing that moves money later; `perun cancel` gives an opening up.
- Deadlines pass on an idle chain; `status` says how far each is and what the node does then;
  `close --unilateral --wait` and `finalize --wait` wait for the payout.
- A devnet restarted under the same chain id leaves its channels lost, not open.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from perun import errors, keystore
from perun.chain.anvil import Anvil, free_port
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.chain.payment import PaymentContract
from perun.cli import client
from perun.node import Node
from tests.integration.test_cli_node import PASSWORD, PERUN, NodeProcess, Result, perun, running, spent, start_node

CID = re.compile(r"0x[0-9a-f]{64}")


def ok(*args: object) -> str:
    result = perun(*args)
    assert (result.code, result.err) == (0, ""), result.err
    return result.out


def refused(result: Result) -> str:
    """The one line a failed command printed (no traceback)."""
    assert result.code != 0, result.out
    assert "Traceback" not in result.err and result.err.count("\n") == 1, result.err
    return result.err.rstrip("\n")


@dataclass
class Net:
    tmp: Path
    chain: RpcChain
    contract: PaymentContract
    alice: NodeProcess
    bob: NodeProcess
    carol: NodeProcess  # holds no ETH: she accepts channels but cannot pay to confirm one

    def events(self, channel: str) -> list[str]:
        return [e.name for e in self.contract.events() if "0x" + e.args["channelId"].hex() == channel]

    def channel(self, node: NodeProcess, channel: str) -> dict:
        return perun("status", channel, "--json", "--sync", "--data", node.data).json()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("safety")
    with Anvil(block_time=1) as anvil:
        chain = RpcChain(anvil.url)
        deployment = deploy(chain, chain.dev_accounts[0])
        deployment_file = tmp / "deployment.json"
        deployment.write(deployment_file)
        nodes = []
        for name, funds in (("alice", 10 * ETHER), ("bob", 10 * ETHER), ("carol", 0)):
            key_file = tmp / f"{name}.json"
            keystore.create(key_file, PASSWORD, kdf="scrypt", iterations=2**10)  # cheap to open
            if funds:
                chain.fund(keystore.address(key_file), funds)
            nodes.append(start_node(tmp / name, key_file, anvil.url, deployment_file))
        with running(*nodes):
            alice, bob, carol = (node.wait_ready() for node in nodes)
            for peer in (bob, carol):
                ok("connect", peer.address, f"127.0.0.1:{peer.port}", "--data", alice.data)
            yield Net(tmp, chain, PaymentContract(chain, deployment.payment_contract), alice, bob, carol)
            for node in nodes:
                assert node.stop() == 0, node.log.read_text()
            assert all("Traceback" not in node.log.read_text() for node in nodes)


def test_an_open_that_could_not_be_sent_is_failed_and_never_sent_later(net: Net) -> None:
    """The story: an under-funded key's open fails, the wallet is funded later, and the node
    must not lock the deposit by itself then."""
    alice, bob = net.alice, net.bob
    line = refused(perun("open", bob.address, "--deposit", "1000eth", "--peer-deposit", "0", "--delta", 600,
                         "--data", alice.data))
    assert "was not opened: the create transaction failed: the account cannot pay" in line, line
    (cid,) = CID.findall(line)
    assert net.channel(alice, cid)["stage"] == "failed"
    assert "not opened: the create transaction failed" in ok("status", cid[:10], "--data", alice.data)

    net.chain.fund(alice.address, 2000 * ETHER)  # an hour later, the wallet is funded
    funded = net.chain.balance(alice.address)
    net.chain.mine(2)
    for _ in range(2):  # each sync reads the chain and runs every duty that is due
        assert net.channel(alice, cid)["stage"] == "failed"
    assert net.chain.balance(alice.address) == funded  # not a wei moved: no create, no gas
    assert net.events(cid) == []


def test_cancel_gives_up_an_opening_on_both_sides_and_alice_is_refunded(net: Net) -> None:
    alice, carol = net.alice, net.carol
    before = net.chain.balance(alice.address)
    first_block = net.chain.block_number() + 1
    # Carol accepts, but cannot pay the gas to confirm: the command says where the opening stands.
    out = ok("open", carol.address, "--deposit", "1eth", "--peer-deposit", "0", "--delta", 600, "--timeout", 2,
             "--data", alice.data)
    cid = CID.findall(out)[0]
    assert out.startswith(f"created channel {cid} on chain with your deposit of 1 ETH (1000000000000000000 wei); "
                          f"{carol.address} has not confirmed it yet and may until "), out
    assert re.search(r"UTC, in (9|10) min\. If it does not, your node takes your deposit back then\.", out), out

    # Both give it up: Carol will not confirm even once she can pay, Alice takes her deposit back.
    assert ok("cancel", cid[:12], "--data", carol.data) == (
        f"gave up {cid}: your node will not confirm it, and {alice.address} takes its deposit back after the "
        "confirm deadline\n")
    out = ok("cancel", cid, "--data", alice.data)
    assert out.startswith(f"gave up {cid}, which is on chain with your deposit: {carol.address} may still confirm "
                          "it until "), out
    status = ok("status", cid, "--data", alice.data)
    assert re.search(r"next      0x\w{4}…\w{4} may confirm until .* UTC, in (9|10) min; if it does not, your node "
                     r"takes 1 ETH back then \(you gave it up: cancelled by the operator\)", status), status
    net.chain.fund(carol.address, ETHER)
    net.chain.mine()
    assert net.channel(carol, cid)["stage"] == "initialising"  # she read the chain, and sent nothing
    assert net.events(cid) == ["Initialising"]

    net.chain.advance_time(601)
    refunded = net.channel(alice, cid)
    assert (refunded["stage"], refunded["my_payout"]) == ("closed", str(ETHER))
    assert net.events(cid) == ["Initialising", "Refunded"]
    assert net.chain.balance(alice.address) == before - spent(net.chain, alice.address, first_block) + ETHER

    assert refused(perun("cancel", cid, "--data", alice.data)) == (
        f"perun cancel: channel {cid} is closed, past its opening: there is nothing to cancel")


def test_deadlines_pass_on_an_idle_chain_and_the_commands_wait_for_the_payout(net: Net) -> None:
    alice, bob = net.alice, net.bob
    cid = perun("--json", "open", bob.address, "--deposit", "1eth", "--peer-deposit", "0", "--delta", 2,
                "--data", alice.data).json()["channel"]
    ok("pay", cid, "0.25eth", "--data", alice.data)
    registered = perun("close", cid, "--unilateral", "--wait", "--data", bob.data)
    assert registered.code == 0, registered.err
    assert registered.err.startswith(f"registered version 1 of {cid} on chain (transaction 0x"), registered.err
    assert f"waiting for the dispute window of {cid[:10]}… to end at " in registered.err
    assert registered.out == (f"closed {cid} after the dispute window: paid out you 0.25 ETH (250000000000000000 wei), "
                              "peer 0.75 ETH (750000000000000000 wei)\n")
    assert net.events(cid)[-2:] == ["CloseRegistered", "Finalized"]

    # The same with a look at `status` in between, and `finalize --wait`.
    cid = perun("--json", "open", bob.address, "--deposit", "1eth", "--peer-deposit", "0", "--delta", 6,
                "--data", alice.data).json()["channel"]
    ok("close", cid, "--unilateral", "--data", alice.data)
    status = ok("status", cid, "--sync", "--data", bob.data)
    assert re.search(r"next      the dispute window ends at .* UTC, in [1-6] s; then your node finalizes and pays "
                     "out", status), status
    table = ok("status", "--data", bob.data)
    assert re.search(rf"{cid} .* closing .* in [1-6] s$", table, re.M), table
    waited = perun("finalize", cid, "--wait", "--data", bob.data)
    assert re.fullmatch(rf"waiting for the dispute window of {cid[:10]}… to end at .* UTC, (in [1-6] s|now)\n",
                        waited.err), waited.err
    assert (waited.code, waited.out) == (
        0, f"{cid} is closed: paid out you 0 ETH (0 wei), peer 1 ETH (1000000000000000000 wei)\n")


def test_a_multistate_channel_is_shown_and_not_paid_on(net: Net) -> None:
    alice, bob = net.alice, net.bob
    ledger = perun("--json", "open", bob.address, "--deposit", "1eth", "--peer-deposit", "0", "--delta", 600,
                   "--multistate", "--data", alice.data).json()["channel"]
    shown = ok("status", ledger, "--data", alice.data)
    assert shown.startswith(f"channel   {ledger} (multistate)\n"), shown
    line = refused(perun("pay", ledger, "1wei", "--data", alice.data))
    assert f"channel {ledger} is a multistate channel, and payments go on payment and virtual channels" in line, line


def test_addresses_with_a_bad_checksum_and_ambiguous_prefixes_are_refused(net: Net) -> None:
    alice, bob = net.alice, net.bob
    digits = bob.address[2:]
    flip = next(i for i, c in enumerate(digits) if c.isalpha())
    typo = "0x" + digits[:flip] + digits[flip].swapcase() + digits[flip + 1:]
    line = refused(perun("connect", typo, f"127.0.0.1:{bob.port}", "--data", alice.data))
    assert f"{typo} has a wrong checksum (its mixed case): check it for a typo, or give it in lower case" in line
    assert ok("connect", bob.address.lower(), f"127.0.0.1:{bob.port}", "--data", alice.data).startswith(
        f"connected to {bob.address}")
    assert "no channel of this node starts with 0xffff" in refused(perun("status", "0xffff", "--data", alice.data))
    assert "not a channel id" in refused(perun("status", "0x123", "--data", alice.data))  # fewer than 4 digits


def test_a_channel_prefix_names_one_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    known = ["0xabcd" + "1" * 60, "0xabcd" + "2" * 60, "0xef01" + "3" * 60]
    monkeypatch.setattr(client, "call", lambda args, method: [{"channel": cid} for cid in known])
    args = argparse.Namespace(channel="0xabcd2", ledger="0xef01", ledger_b=known[0])
    client._resolve(args)
    assert (args.channel, args.ledger, args.ledger_b) == (known[1], known[2], known[0])
    with pytest.raises(errors.ValidationError, match="^0xabcd is the start of 2 channels: give more digits$"):
        client._resolve(argparse.Namespace(channel="0xabcd"))


def test_version() -> None:
    from importlib.metadata import version

    done = subprocess.run([*PERUN, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"perun {version('perun-channels')}\n", "")


def test_a_restarted_devnet_leaves_its_channels_lost_not_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Same chain id, same contract addresses, but not the chain the channel was opened on."""
    port = free_port()

    async def open_channel(chain: RpcChain, contract: str) -> tuple[str, bytes]:
        alice_key, bob_key = chain.new_account(10 * ETHER), chain.new_account(10 * ETHER)
        async with Node(alice_key, chain, contract, tmp_path / "alice.db") as alice, \
                Node(bob_key.key, chain, contract, tmp_path / "bob.db") as bob:
            await alice.connect(bob.address, "127.0.0.1", bob.port)
            cid = await alice.open(bob.address, ETHER, 0, 600)
        return "0x" + bytes(alice_key.key).hex(), cid

    async def restart(chain: RpcChain, contract: str, key: str, cid: bytes) -> str:
        async with Node(key, chain, contract, tmp_path / "alice.db") as alice:
            return alice.describe(cid)["stage"]

    with Anvil(port) as anvil:
        chain = RpcChain(anvil.url)
        contract = deploy(chain, chain.dev_accounts[0]).payment_contract
        key, cid = asyncio.run(open_channel(chain, contract))  # a LocalAccount is a key, too
        assert asyncio.run(restart(chain, contract, key, cid)) == "open"
        later = chain.timestamp() + 1
    # anvil dates block 0 by the clock: a devnet restarted a second later has another one.
    with Anvil(port, genesis_time=later) as anvil, caplog.at_level(logging.WARNING, logger="perun.node"):
        chain = RpcChain(anvil.url)
        assert deploy(chain, chain.dev_accounts[0]).payment_contract == contract
        assert asyncio.run(restart(chain, contract, key, cid)) == "lost"
    assert any("the chain was reset" in r.getMessage() and "1 channel(s) went with it" in r.getMessage()
               for r in caplog.records)
