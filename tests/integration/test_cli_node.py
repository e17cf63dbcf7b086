"""Two `perun node` processes on anvil, driven only through the `perun` command.

The module starts one anvil with PaymentContract deployed, creates Alice's and Bob's key files
with `perun keystore new`, funds them, and runs a node for each. The client commands run as the
`perun` program (in a subprocess) wherever the exit code and stderr are the point, and through
`perun.cli.main` in this process otherwise, which is the same code without ~0.7 s of start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from perun import control, errors, keystore
from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import deploy
from perun.chain.payment import PaymentContract
from perun.cli import main
from perun.runtime import Registry
from perun.wire.messages import ErrorCode

PERUN = [sys.executable, "-m", "perun.cli"]
PASSWORD = "node password for the tests"
READY = re.compile(r"node (0x[0-9a-fA-F]{40}) listening on 127\.0\.0\.1:(\d+), control (\S+)\n")
GWEI = 10**9


# --------------------------------------------------------------------------- running the command


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


def perun(*args: Any) -> Result:
    """`perun ARGS` in this process (perun.cli.main), its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


def perun_process(*args: Any, password: str | None = None, timeout: float = 60) -> Result:
    """`perun ARGS` as a program of its own."""
    env = dict(os.environ)
    if password is not None:
        env["PERUN_PASSWORD"] = password
    done = subprocess.run([*PERUN, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    return Result(done.returncode, done.stdout, done.stderr)


def ok(*args: Any) -> str:
    result = perun(*args)
    assert (result.code, result.err) == (0, ""), result.err
    return result.out


def one_line_failure(result: Result, exit_code: int) -> str:
    """Asserts the command failed with `exit_code` (2 a user error, 3 refused by the peer or the
    chain, 1 internal or out of reach), one line on stderr, no traceback."""
    assert result.code == exit_code, (result.out, result.err)
    assert "Traceback" not in result.err
    assert result.err.endswith("\n") and result.err.count("\n") == 1, result.err
    return result.err.rstrip("\n")


# --------------------------------------------------------------------------- node processes


@dataclass
class NodeProcess:
    data: Path
    proc: subprocess.Popen
    log: Path
    address: str = ""
    port: int = 0

    def wait_ready(self, timeout: float = 30) -> NodeProcess:
        line = _read_line(self.proc, timeout)
        match = READY.fullmatch(line)
        assert match, f"not a ready line: {line!r}; log:\n{self.log.read_text()}"
        assert Path(match[3]) == self.data / "control.sock"
        assert stat.S_IMODE(Path(match[3]).stat().st_mode) == 0o600
        self.address, self.port = match[1], int(match[2])
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    return _read_until(proc.stdout, lambda data: data.endswith(b"\n"), timeout).decode()


def _read_until(stream: Any, done: Callable[[bytes], bool], timeout: float) -> bytes:
    """Reads a pipe until `done(what was read)`, the writer exits, or `timeout` (a failure)."""
    deadline = time.monotonic() + timeout
    data = b""
    while not done(data):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"not there within {timeout} s (got {data!r})"
        if select.select([stream], [], [], remaining)[0]:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:  # the process exited
                break
            data += chunk
    return data


def start_node(data: Path, key_file: Path, rpc: str, deployment: Path, *extra: str,
               password: str = PASSWORD) -> NodeProcess:
    log = data.with_suffix(".log")
    env = {**os.environ, "PERUN_PASSWORD": password}
    with open(log, "wb") as stderr:  # a file, not a pipe: a chatty node never blocks on it
        proc = subprocess.Popen(
            [*PERUN, "node", "--data", str(data), "--keystore", str(key_file), "--rpc", rpc,
             "--deployment", str(deployment), "--listen", "127.0.0.1:0", "--poll", "0.1", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env,
        )
    return NodeProcess(data, proc, log)


@contextlib.contextmanager
def running(*nodes: NodeProcess) -> Iterator[tuple[NodeProcess, ...]]:
    """Stops the nodes on the way out, whatever happened (SIGKILL if SIGTERM is not enough)."""
    try:
        yield nodes
    finally:
        for node in nodes:
            if node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait()
            if not node.proc.stdout.closed:
                node.proc.stdout.close()


@contextlib.contextmanager
def nodes_on_anvil(tmp: Path, flags: dict[str, tuple[str, ...]]) -> Iterator[tuple[NodeProcess, ...]]:
    """An anvil with every contract deployed, and a `perun node` for each name of `flags` (with
    its extra flags), funded with 100 ETH and ready; each must stop cleanly, with no traceback."""
    with Anvil() as anvil:
        chain = RpcChain(anvil.url)
        deployment = tmp / "deployment.json"
        deploy(chain, chain.dev_accounts[0]).write(deployment)
        nodes = []
        for name, extra in flags.items():
            key = tmp / f"{name}.json"
            keystore.create(key, PASSWORD, kdf="scrypt", iterations=2**10)  # cheap to open
            chain.fund(keystore.address(key), 100 * ETHER)
            nodes.append(start_node(tmp / name, key, anvil.url, deployment, *extra))
        with running(*nodes):
            for node in nodes:
                node.wait_ready()
            yield tuple(nodes)
            for node in nodes:
                assert node.stop() == 0, node.log.read_text()
                assert "Traceback" not in node.log.read_text()


# --------------------------------------------------------------------------- the network


@dataclass
class Net:
    tmp: Path
    rpc: str
    chain: RpcChain
    contract: PaymentContract
    deployment: Path
    alice: NodeProcess
    bob: NodeProcess

    def open(self, deposit: str, peer_deposit: str, delta: int = 3600) -> dict[str, Any]:
        return perun("--json", "open", self.bob.address, "--deposit", deposit, "--peer-deposit", peer_deposit,
                     "--delta", delta, "--data", self.alice.data).json()

    def status(self, node: NodeProcess, channel: str, *, sync: bool = False) -> dict[str, Any]:
        """The channel as `node` sees it; with `sync`, after it read the chain up to now."""
        return perun("status", channel, "--json", *(["--sync"] if sync else []), "--data", node.data).json()

    def events(self, name: str, channel: str) -> list[dict[str, Any]]:
        return [e.args for e in self.contract.events()
                if e.name == name and "0x" + e.args["channelId"].hex() == channel]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("nodes")
    with Anvil() as anvil:
        chain = RpcChain(anvil.url)
        deployment = deploy(chain, chain.dev_accounts[0])
        deployment_file = tmp / "deployment.json"
        deployment.write(deployment_file)

        # Both key files at once: each costs a second of scrypt.
        env = {**os.environ, "PERUN_PASSWORD": PASSWORD}
        makers = [subprocess.Popen([*PERUN, "keystore", "new", "--out", str(tmp / f"{name}.json")], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for name in ("alice", "bob")]
        try:
            made = [maker.communicate(timeout=60) for maker in makers]
        finally:
            for maker in makers:
                if maker.poll() is None:
                    maker.kill()
                    maker.communicate()
        for maker, (out, err) in zip(makers, made):
            assert maker.returncode == 0 and err == "", err
            assert re.fullmatch(r"created \S+ for 0x[0-9a-fA-F]{40}\n", out)
        for name in ("alice", "bob"):
            chain.fund(keystore.address(tmp / f"{name}.json"), 100 * ETHER)

        alice = start_node(tmp / "alice", tmp / "alice.json", anvil.url, deployment_file)
        bob = start_node(tmp / "bob", tmp / "bob.json", anvil.url, deployment_file, "--max-own-deposit", "10eth")
        with running(alice, bob):
            alice.wait_ready()
            bob.wait_ready()
            assert alice.address == keystore.address(tmp / "alice.json")
            assert bob.address == keystore.address(tmp / "bob.json")
            yield Net(tmp, anvil.url, chain, PaymentContract(chain, deployment.payment_contract), deployment_file,
                      alice, bob)
            # Both stop cleanly, on either signal, and take their control sockets with them.
            assert alice.stop(signal.SIGINT) == 0, alice.log.read_text()
            assert bob.stop(signal.SIGTERM) == 0, bob.log.read_text()
            assert not (alice.data / "control.sock").exists() and not (bob.data / "control.sock").exists()
            assert "Traceback" not in alice.log.read_text() + bob.log.read_text()


def spent(chain: RpcChain, address: str, first_block: int) -> int:
    """Wei that `address` sent since `first_block`: values plus fees, from the receipts."""
    total = 0
    for number in range(first_block, chain.block_number() + 1):
        for tx in chain.w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] == address:
                receipt = chain.w3.eth.get_transaction_receipt(tx["hash"])
                total += tx["value"] + receipt["gasUsed"] * receipt["effectiveGasPrice"]
    return total


# --------------------------------------------------------------------------- the tests


def test_connect_open_pay_both_ways_and_close_cooperatively(net: Net) -> None:
    alice, bob = net.alice, net.bob
    # As a program of its own once; the rest runs the same main() in this process.
    connected = perun_process("connect", bob.address, f"127.0.0.1:{bob.port}", "--data", alice.data)
    assert (connected.code, connected.err) == (0, ""), connected.err
    assert connected.out == f"connected to {bob.address} at 127.0.0.1:{bob.port}\n"
    info = perun("--json", "info", "--data", alice.data).json()
    assert (info["address"], info["port"], info["chain_id"], info["contract"]) == (
        alice.address, alice.port, 31337, net.contract.address)
    assert info["peers"] == [bob.address]

    first_block = net.chain.block_number() + 1
    before = {who.address: net.chain.balance(who.address) for who in (alice, bob)}
    ch = net.open("2eth", "1.5ether")
    cid = ch["channel"]
    assert (ch["stage"], ch["role"], ch["peer"]) == ("open", "alice", bob.address)
    assert (ch["my_balance"], ch["peer_balance"]) == (str(2 * ETHER), str(15 * ETHER // 10))

    # Payments both ways, in every unit.
    out = ok("pay", cid, "0.5eth", "--data", alice.data)
    assert out == (f"paid 0.5 ETH (500000000000000000 wei) on {cid}: version 1, "
                   f"you 1.5 ETH (1500000000000000000 wei), peer 2 ETH (2000000000000000000 wei)\n")
    ok("pay", cid, "0.25ether", "--data", bob.data)
    ok("pay", cid, "20gwei", "--data", alice.data)
    paid = perun("--json", "pay", cid, "1234", "--data", bob.data).json()
    assert paid["paid_version"] == 4
    alice_balance = 2 * ETHER - ETHER // 2 + ETHER // 4 - 20 * GWEI + 1234
    bob_balance = 35 * ETHER // 10 - alice_balance

    mine, theirs = net.status(alice, cid), net.status(bob, cid)
    assert (mine["version"], mine["my_balance"], mine["peer_balance"]) == (4, str(alice_balance), str(bob_balance))
    assert (theirs["version"], theirs["my_balance"], theirs["peer_balance"]) == (4, str(bob_balance), str(alice_balance))
    assert theirs["role"] == "bob" and theirs["peer"] == alice.address

    table = ok("status", "--data", alice.data).splitlines()
    assert table[0].split() == ["CHANNEL", "PEER", "ROLE", "STAGE", "VERSION", "MINE", "PEER'S", "NEXT", "DEADLINE"]
    row = next(line for line in table if line.startswith(cid)).split()
    assert row[2:] == ["alice", "open", "4", "1.749999980000001234", "ETH", "1.750000019999998766", "ETH"]
    detail = ok("status", cid, "--data", bob.data)
    assert f"you       1.750000019999998766 ETH ({bob_balance} wei)\n" in detail
    assert f"peer      {alice.address} (you are bob)\n" in detail

    closed = ok("close", cid, "--data", alice.data)
    assert closed == (f"closed {cid} cooperatively: paid out you 1.749999980000001234 ETH ({alice_balance} wei), "
                      f"peer 1.750000019999998766 ETH ({bob_balance} wei)\n")
    (event,) = net.events("CooperativelyClosed", cid)
    assert (event["balanceAlice"], event["balanceBob"]) == (alice_balance, bob_balance)
    bob_view = net.status(bob, cid, sync=True)
    assert bob_view["stage"] == "closed"
    assert (bob_view["my_payout"], bob_view["peer_payout"]) == (str(bob_balance), str(alice_balance))

    # On chain: each got the payout, less its deposit and the fees it paid (from the receipts).
    for who, deposit, payout in ((alice, 2 * ETHER, alice_balance), (bob, 15 * ETHER // 10, bob_balance)):
        fees_and_deposit = spent(net.chain, who.address, first_block)
        assert fees_and_deposit > deposit  # the deposit and at least one transaction's gas
        assert net.chain.balance(who.address) == before[who.address] - fees_and_deposit + payout


def test_unilateral_close_then_finalize_after_delta(net: Net) -> None:
    alice, bob = net.alice, net.bob
    delta = 600
    cid = net.open("1eth", "1eth", delta)["channel"]
    ok("pay", cid, "0.3eth", "--data", alice.data)
    ok("pay", cid, "0.1eth", "--data", bob.data)

    registered = perun("--json", "close", cid, "--unilateral", "--data", bob.data).json()
    assert (registered["stage"], registered["registered_version"]) == ("closing", 2)
    assert registered["transaction"]["gas_used"] > 0
    (event,) = net.events("CloseRegistered", cid)
    assert event["version"] == 2 and registered["deadline"] == event["deadline"]
    # Alice learns it from the chain.
    alice_view = net.status(alice, cid, sync=True)
    assert (alice_view["stage"], alice_view["registered_version"]) == ("closing", 2)  # nothing to dispute

    too_early = one_line_failure(perun("finalize", cid, "--data", alice.data), 3)
    assert too_early.startswith(f"perun finalize: channel {cid} can be finalized only once its dispute window ends")
    no_more = one_line_failure(perun("pay", cid, "1wei", "--data", alice.data), 2)
    assert no_more.startswith(f"perun pay: channel {cid} is closing on chain (version 2 registered), not open")

    net.chain.advance_time(delta + 1)
    # Whoever is first pays out: this command, or either node's watcher, which finalizes as
    # soon as Δ is over. Either way the command reports the payout.
    out = ok("finalize", cid, "--data", bob.data)
    payouts = "paid out you 1.2 ETH (1200000000000000000 wei), peer 0.8 ETH (800000000000000000 wei)\n"
    assert re.fullmatch(rf"(finalized {cid} \(transaction 0x[0-9a-f]{{64}}, gas [\d,]+\)|{cid} was closed already): "
                        + re.escape(payouts), out), out
    (paid,) = net.events("Finalized", cid)
    assert (paid["balanceAlice"], paid["balanceBob"]) == (8 * ETHER // 10, 12 * ETHER // 10)
    assert ok("finalize", cid, "--data", bob.data) == f"{cid} was closed already: {payouts}"
    alice_view = net.status(alice, cid, sync=True)
    assert alice_view["stage"] == "closed"
    assert (alice_view["my_payout"], alice_view["peer_payout"]) == (str(8 * ETHER // 10), str(12 * ETHER // 10))


def test_user_errors_exit_2_with_one_line(net: Net) -> None:
    alice = net.alice
    unknown = "0x" + "ab" * 32
    assert one_line_failure(perun_process("pay", unknown, "1wei", "--data", alice.data), 2) == (
        f"perun pay: this node has no channel {unknown}: `perun status` lists its channels")

    cid = net.open("1eth", "0")["channel"]
    too_much = one_line_failure(perun_process("pay", cid, "1.000000000000000001eth", "--data", alice.data), 2)
    assert too_much == (f"perun pay: paying 1.000000000000000001 ETH exceeds your balance in channel {cid}, which "
                        "is 1 ETH: pay at most that")
    assert one_line_failure(perun("pay", cid, "1wei", "--data", net.bob.data), 2) == (
        f"perun pay: paying 0.000000000000000001 ETH exceeds your balance in channel {cid}, which is 0 ETH: pay at "
        "most that")
    assert net.status(alice, cid)["version"] == 0  # nothing changed

    for bad, message in [("1.5", "1.5 is not a whole number of wei (a plain number is wei: say 1.5eth for ether)"),
                         ("0.5wei", "0.5wei is not a whole number of wei"),
                         ("5usd", "unknown unit 'usd' in '5usd': use wei, gwei, eth or ether"),
                         ("1e18", "not an amount: '1e18' (say 1000, 100wei, 20gwei or 1.5eth)"),
                         ("-1eth", "not an amount: '-1eth' (say 1000, 100wei, 20gwei or 1.5eth)")]:
        assert one_line_failure(perun("pay", "--data", alice.data, "--", cid, bad), 2) == (
            f"perun pay: argument AMOUNT: {message} (see `perun pay --help`)")

    nowhere = net.tmp / "nowhere"
    assert one_line_failure(perun_process("status", "--data", nowhere), 1) == (
        f"perun status: no node is running at {nowhere} (nothing listens on {nowhere}/control.sock): start one "
        "with `perun node --data` and this directory, or pass the --data of a running node")

    wrong = perun_process("node", "--data", net.tmp / "wrong", "--keystore", net.tmp / "alice.json", "--rpc", net.rpc,
                          "--deployment", net.deployment, password="not the password")
    assert one_line_failure(wrong, 2).startswith(f"perun node: wrong password for {net.tmp / 'alice.json'}: ")
    assert PASSWORD not in wrong.out + wrong.err and "not the password" not in wrong.out + wrong.err
    assert not (net.tmp / "wrong").exists()


def test_a_data_directory_serves_one_node_and_survives_a_crash(net: Net) -> None:
    key_file = net.tmp / "carol.json"
    keystore.create(key_file, PASSWORD, kdf="scrypt", iterations=2**10)  # cheap to open
    data = net.tmp / "carol"
    with running(start_node(data, key_file, net.rpc, net.deployment)) as (carol,):
        carol.wait_ready()
        twin = perun_process("node", "--data", data, "--keystore", key_file, "--rpc", net.rpc,
                             "--deployment", net.deployment, password=PASSWORD)
        assert one_line_failure(twin, 1) == f"perun node: a node is already running at {data}"
        assert perun("--json", "info", "--data", data).json()["address"] == carol.address

        carol.stop(signal.SIGKILL)  # leaves a stale control.sock behind
        assert (data / "control.sock").exists()
        assert one_line_failure(perun("info", "--data", data), 1).startswith(
            f"perun info: no node is running at {data} (nothing listens on {data}/control.sock): ")

    with running(start_node(data, key_file, net.rpc, net.deployment)) as (carol,):
        carol.wait_ready()
        assert perun("--json", "status", "--data", data).json() == []
        assert carol.stop(signal.SIGINT) == 0
        assert not (data / "control.sock").exists()


def test_ctrl_c_at_a_prompt_exits_130_quietly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PERUN_PASSWORD"}
    # A session of its own: no controlling terminal, so getpass prompts on stderr and reads stdin.
    # Ctrl-C's own disposition, also when this run was started in the background (which ignores SIGINT).
    proc = subprocess.Popen([*PERUN, "keystore", "new", "--out", str(tmp_path / "k.json")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        err = _read_until(proc.stderr, lambda data: data.endswith(b"Keystore password: "), 30)
        assert err.endswith(b"Keystore password: "), err
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)  # before communicate closes stdin: an end of input at the prompt is another failure
        out, rest = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert out == b"" and rest == b""  # nothing after the prompt: no traceback, no message
    assert not (tmp_path / "k.json").exists()


# --------------------------------------------------------------------------- the control protocol itself


class StubNode:
    """Just enough of perun.node.Node for the control server, with failures on demand."""

    address = "0x" + "11" * 20

    def __init__(self) -> None:
        self.connected: tuple[str, str, int] | None = None
        self.runtime = SimpleNamespace(registry=Registry(),  # no protocol: not even multistate channels
                                       peers=SimpleNamespace(remembers=lambda peer: False, get=lambda peer: None,
                                                             reconnecting=lambda peer: False))
        self.watcher = SimpleNamespace(chain_time=0)  # no poll yet

    def describe(self, cid: bytes) -> Any:
        raise errors.UnknownChannel(f"no channel 0x{cid.hex()}")

    async def connect(self, peer: str, host: str, port: int) -> None:
        self.connected = (peer, host, port)

    async def pay(self, cid: bytes, amount: int) -> Any:
        raise ValueError("a bug")

    async def sync(self) -> None:
        raise errors.PeerRejected(ErrorCode.CONFLICT, "another state at this version")


def test_control_protocol_replies_with_typed_errors_never_tracebacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "control.sock"

    def raw(*lines: str) -> list[dict[str, Any]]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall("".join(line + "\n" for line in lines).encode())
            data = b""
            while data.count(b"\n") < len(lines):
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
        return [json.loads(line) for line in data.splitlines()]

    def client_side() -> None:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # One connection, several requests, each answered in order.
        replies = raw("not json", '{"method": "nope"}', '{"method": "pay", "params": {"channel": "0x12", "amount": "1"}}',
                      '{"method": "pay", "params": {"channel": "0x' + "00" * 32 + '", "amount": 1.5}}',
                      '{"method": "connect", "params": {"peer": "0x' + "22" * 20 + '", "host": "h", "port": "80"}}')
        assert [r["ok"] for r in replies] == [False, False, False, False, True]
        assert [r["error"]["type"] for r in replies[:4]] == ["BadRequest"] * 4
        assert replies[1]["error"]["message"].startswith("unknown method 'nope'; known: cancel, channels, close, connect")
        assert replies[4]["result"] == {"peer": "0x" + "22" * 20, "host": "h", "port": 80}

        # The client raises the class the node named, with its message.
        with pytest.raises(errors.UnknownChannel, match="^this node has no channel 0x00") as unknown:
            control.call(tmp_path, "status", {"channel": "0x" + "00" * 32})
        assert (unknown.value.explained.code, unknown.value.explained.category.value) == ("UNKNOWN_CHANNEL", "user")
        assert unknown.value.explained.fields == {"channel": "0x" + "00" * 32}
        with pytest.raises(errors.PeerRejected, match=r"^the peer refused it \(conflict\): another state") as refused:
            control.call(tmp_path, "sync")
        assert (refused.value.explained.code, refused.value.explained.fields["reason"]) == (
            "PEER_REJECTED", "another state at this version")
        assert raw('{"method": "sync"}')[0]["error"] == {
            "type": "PeerRejected", "code": "PEER_REJECTED", "category": "refused",
            "message": "the peer refused it (conflict): another state at this version",
            "fields": {"reason": "another state at this version", "peer_code": "CONFLICT"}}
        with pytest.raises(control.BadRequest, match="^missing parameter amount$"):
            control.call(tmp_path, "pay", {"channel": "0x" + "00" * 32})
        with pytest.raises(control.InternalError, match=r"^internal error in the node: ValueError: a bug$"):
            control.call(tmp_path, "pay", {"channel": "0x" + "00" * 32, "amount": "1"})
        with pytest.raises(control.ControlError, match="^this node runs no multistate channels"):
            control.call(tmp_path, "virtual_open", {"ledger": "0x" + "00" * 32, "peer": "0x" + "22" * 20,
                                                    "ledger_b": "0x" + "00" * 32, "deposit": "1", "peer_deposit": "0",
                                                    "validity": 100, "window": 10})

    async def scenario() -> None:
        server = control.ControlServer(path)
        await server.bind()
        try:
            twin = control.ControlServer(path)
            with pytest.raises(control.ControlError, match=f"^a node is already running at {tmp_path}$"):
                await twin.bind()
            await server.start(StubNode())
            await asyncio.to_thread(client_side)
        finally:
            await server.close()
        assert not path.exists()
        again = control.ControlServer(path)  # the lock went with the first server
        await again.bind()
        await again.close()

    with caplog.at_level(logging.INFO, logger="perun.control"):
        asyncio.run(scenario())
    (bug,) = [r for r in caplog.records if r.exc_info]  # the unexpected error is logged with its traceback
    assert bug.getMessage() == "control: pay failed unexpectedly" and bug.exc_info[0] is ValueError
    with pytest.raises(control.NodeNotRunning, match=f"^no node is running at {tmp_path} "):
        control.call(tmp_path, "info")
