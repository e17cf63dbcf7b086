"""A virtual channel through a hub, with the `perun` command only: three `perun node` processes
on anvil (Alice, Ingrid serving as a hub with a fee and a capacity, and Bob), multistate ledger
channels opened with `perun open --multistate`, then `perun virtual open`, `perun pay` both ways
and `perun virtual close`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perun import control, errors, keystore
from perun.chain.anvil import Anvil
from perun.chain.backend import ETHER, RpcChain
from perun.chain.deploy import Deployment, deploy
from perun.core.apps import ALICE
from perun.core.apps import hashtimelock as htlc
from tests.integration.test_cli_node import (
    PASSWORD,
    NodeProcess,
    nodes_on_anvil,
    ok,
    one_line_failure,
    perun,
    perun_process,
)

FEE = ETHER // 100


@pytest.fixture(scope="module")
def triangle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, NodeProcess, NodeProcess]]:
    with nodes_on_anvil(tmp_path_factory.mktemp("virtual"), {
            "alice": (),
            "ingrid": ("--hub", "--hub-fee", "0.01eth", "--hub-capacity", "3eth", "--max-own-deposit", "5eth"),
            "bob": ("--accept-virtual", "--max-own-deposit", "5eth")}) as nodes:
        yield nodes


def status(node: NodeProcess, channel: str) -> dict[str, Any]:
    return perun("--json", "status", channel, "--data", node.data).json()


def held(node: NodeProcess, ledger: str) -> int:
    """What `node` has in multistate channel `ledger`: free cash, and what its nanocontracts
    block for it or released to it."""
    ch = status(node, ledger)
    return int(ch["my_cash"]) + sum(int(nc["blocked"][0]) + int(nc["released"][0]) for nc in ch["nanocontracts"])


def test_a_virtual_channel_opened_used_and_closed_through_a_hub(triangle) -> None:
    alice, ingrid, bob = triangle
    for end in (alice, bob):
        ok("connect", ingrid.address, f"127.0.0.1:{ingrid.port}", "--data", end.data)
    ok("connect", bob.address, f"127.0.0.1:{bob.port}", "--data", alice.data)

    out = ok("open", ingrid.address, "--multistate", "--deposit", "5eth", "--peer-deposit", "5eth", "--delta", "3600",
             "--data", alice.data)
    a = out.split()[3]
    assert out == (f"opened multistate channel {a} with {ingrid.address}: you 5 ETH ({5 * ETHER} wei), "
                   f"peer 5 ETH ({5 * ETHER} wei), dispute window 3600 s\n")
    b = perun("--json", "open", bob.address, "--multistate", "--deposit", "5eth", "--peer-deposit", "5eth",
              "--delta", "3600", "--data", ingrid.data).json()["channel"]
    for node, ledger in ((ingrid, a), (bob, b)):  # the peer's watcher sees it confirmed
        control.call(node.data, "wait", {"channel": ledger, "stage": "open"})

    # Without Ingrid's fee: refused with the fee in ETH and the flag that pays it; nothing blocked.
    no_fee = one_line_failure(perun("virtual", "open", a, bob.address, b, "--deposit", "2eth", "--validity", "86400",
                                    "--window", "7200", "--data", alice.data), 3)
    assert no_fee.startswith("perun virtual open: ") and no_fee.endswith(
        "Ingrid charges a fee of 0.01 ETH per virtual channel, not 0 ETH: pass --fee 0.01eth to "
        f"`perun virtual open` (fee={FEE} in Python)"), no_fee
    assert (held(alice, a), status(alice, a)["my_cash"]) == (5 * ETHER, str(5 * ETHER))

    opened = perun("--json", "virtual", "open", a, bob.address, b, "--deposit", "2eth", "--peer-deposit", "0.5eth",
                   "--validity", "86400", "--window", "7200", "--fee", "0.01eth", "--data", alice.data).json()
    gid = opened["channel"]
    assert (opened["kind"], opened["position"], opened["ingrid"], opened["bob"]) == (
        "virtual", "alice", ingrid.address, bob.address)
    assert (opened["my_balance"], opened["peer_balance"], opened["version"]) == (str(2 * ETHER), str(ETHER // 2), 0)

    # Payments both ways, between the ends only; Ingrid sees none of them.
    assert ok("pay", gid, "0.25eth", "--data", alice.data) == (
        f"paid 0.25 ETH ({ETHER // 4} wei) on {gid}: version 1, you 1.75 ETH ({7 * ETHER // 4} wei), "
        f"peer 0.75 ETH ({3 * ETHER // 4} wei)\n")
    ok("pay", gid, "0.05eth", "--data", bob.data)
    assert (status(bob, gid)["version"], status(ingrid, gid)["version"]) == (2, 0)
    assert status(ingrid, gid)["position"] == "ingrid" and status(ingrid, gid)["my_balance"] is None
    detail = ok("status", gid, "--data", bob.data)
    assert f"channel   {gid} (virtual, you are bob)\n" in detail and f"through   {ingrid.address} (Ingrid)\n" in detail

    ledger = ok("status", a, "--data", alice.data)
    assert f"channel   {a} (multistate)\n" in ledger
    assert ": VirtualChannel, version 0, blocked you 2 ETH, peer 0.5 ETH\n" in ledger  # ν_a: Ingrid matches Bob's
    tables = ok("status", "--data", alice.data)
    assert "MULTISTATE CHANNEL" in tables and "VIRTUAL CHANNEL" in tables
    row = next(line for line in tables.splitlines() if line.startswith(gid)).split()
    assert row[1] == "alice" and row[4:] == ["2", "1.8", "ETH", "0.7", "ETH", "no"]

    # Beyond Ingrid's capacity (3 ether blocked at once): refused, and nothing is blocked.
    before = held(alice, a), status(alice, a)["version"]
    refused = one_line_failure(perun("virtual", "open", a, bob.address, b, "--deposit", "1eth", "--validity", "86400",
                                     "--window", "7200", "--fee", "0.01eth", "--data", alice.data), 3)
    assert refused.startswith("perun virtual open: ") and "capacity" in refused
    assert (held(alice, a), status(alice, a)["my_cash"]) == (before[0], str(before[0] - 2 * ETHER))

    closed = perun("--json", "virtual", "close", gid, "--data", bob.data).json()
    assert (closed["version"], closed["final"], closed["settled"]) == (3, True, True)
    assert (closed["my_balance"], closed["peer_balance"]) == (str(7 * ETHER // 10), str(18 * ETHER // 10))
    assert ok("virtual", "close", gid, "--data", alice.data) == (
        f"closed virtual channel {gid} through {ingrid.address} at version 3: you 1.8 ETH ({18 * ETHER // 10} wei), "
        f"peer 0.7 ETH ({7 * ETHER // 10} wei), back in your multistate channel with Ingrid\n")
    # Each end has its balance back in its ledger channel; Ingrid has her deposits and the fee.
    assert held(alice, a) == 5 * ETHER - FEE - 2 * ETHER + 18 * ETHER // 10
    assert held(bob, b) == 5 * ETHER - ETHER // 2 + 7 * ETHER // 10
    assert held(ingrid, a) + held(ingrid, b) == 10 * ETHER + FEE


def test_a_hub_needs_the_virtual_channel_app(tmp_path: Path) -> None:
    key = tmp_path / "k.json"
    keystore.create(key, PASSWORD, kdf="scrypt", iterations=2**10)
    with Anvil() as anvil:
        chain = RpcChain(anvil.url)
        payment_only = Deployment(chain.chain_id, deploy(chain, chain.dev_accounts[0]).payment_contract, 0)
        payment_only.write(tmp_path / "payment-only.json")
        failed = perun_process("node", "--data", tmp_path / "n", "--keystore", key, "--rpc", anvil.url,
                               "--deployment", tmp_path / "payment-only.json", "--hub", password=PASSWORD)
        assert one_line_failure(failed, 2) == (
            "perun node: a hub needs a deployment file with MSContract and the VirtualChannel app")
    zero = perun("node", "--data", tmp_path / "n", "--keystore", key, "--rpc", "http://127.0.0.1:1",
                 "--hub-max-channels", "0")
    assert one_line_failure(zero, 2) == ("perun node: argument --hub-max-channels: expected a positive whole number, "
                                      "got '0' (see `perun node --help`)")


def test_nanocontracts_through_the_control_socket(triangle) -> None:
    """Alice locks a payment to Bob in a multistate channel, Bob claims it, Alice absorbs it, and
    Bob registers a second lock on chain: each through the control socket, whose requests are
    checked field by field first."""
    alice, _, bob = triangle

    def call(node: NodeProcess, method: str, **params: Any) -> Any:
        return control.call(node.data, method, params)

    call(alice, "connect", peer=bob.address, host="127.0.0.1", port=bob.port)
    cid = call(alice, "ledger_open", peer=bob.address, deposit=str(3 * ETHER), peer_deposit=str(ETHER),
               delta=3600)["channel"]
    call(bob, "wait", channel=cid, stage="open")
    preimage = bytes(range(32))
    timeout = call(alice, "info")["chain_time"] + 7200
    data = "0x" + htlc.encode(ALICE, htlc.hashlock_of(preimage), timeout).hex()
    good = {"channel": cid, "app": "HashTimeLock", "blocked_mine": str(ETHER), "blocked_peer": "0", "data": data}

    for params, refused in [
        ({**good, "channel": "0x12"}, "a channel id is 0x and 64 hex digits, got '0x12'"),
        ({**good, "app": 7}, "app must be a non-empty string"),
        ({**good, "app": "Lottery"}, "app must be one of this node's apps (HashTimeLock, TicTacToe, VirtualChannel), "
                                     "got 'Lottery'"),
        ({**good, "blocked_mine": "-1"}, "blocked_mine must be a non-negative integer, got '-1'"),
        ({**good, "blocked_peer": 0.5}, "blocked_peer must be a non-negative integer, got 0.5"),
        ({**good, "data": data[2:]}, "data must be 0x and an even number of hex digits"),
        ({**good, "data": data + "0"}, "data must be 0x and an even number of hex digits"),
        ({**good, "data": "0x" + "zz" * 96}, "data must be 0x and an even number of hex digits"),
        ({**good, "data": "0x" + "00" * 1025}, "data must be at most 1024 bytes, got 1025"),
        ({k: v for k, v in good.items() if k != "data"}, "missing parameter data"),
        ({**good, "fee": "1"}, "unknown parameter fee"),
    ]:
        with pytest.raises(control.BadRequest) as refusal:
            call(alice, "nanocontract_create", **params)
        assert str(refusal.value).startswith(refused)
    with pytest.raises(errors.UnknownChannel):  # a payment channel's id, or none at all
        call(alice, "nanocontract_create", **{**good, "channel": "0x" + "00" * 32})
    with pytest.raises(errors.InvalidNanocontract, match="blocks a positive amount of the sender's only"):
        call(alice, "nanocontract_create", **{**good, "blocked_peer": "1"})  # the app's own check
    assert status(alice, cid)["version"] == 0  # nothing was proposed

    created = call(alice, "nanocontract_create", **good)
    nid = created["nid"]
    assert [(nc["nid"], nc["app"], nc["blocked"]) for nc in created["nanocontracts"]] == [
        (nid, "HashTimeLock", [str(ETHER), "0"])]

    claim = {"channel": cid, "nid": nid, "fun": "claim", "z": "0x" + preimage.hex()}
    for params, refused in [
        ({**claim, "nid": nid[:-2]}, "nid must be 0x and 64 hex digits"),
        ({**claim, "fun": True}, "fun must be a function's name or number, got True"),
        ({**claim, "fun": "steal"}, "fun must be one of HashTimeLock's functions (claim, reclaim, cancel) or a "
                                    "number 0..255, got 'steal'"),
        ({**claim, "fun": 256}, "fun must be one of HashTimeLock's functions (claim, reclaim, cancel) or a "
                                "number 0..255, got 256"),
        ({**claim, "z": "0x0"}, "z must be 0x and an even number of hex digits, got '0x0'"),
    ]:
        with pytest.raises(control.BadRequest) as refusal:
            call(bob, "nanocontract_call", **params)
        assert str(refusal.value).startswith(refused)
    with pytest.raises(errors.UnknownNanocontract):
        call(bob, "nanocontract_call", **{**claim, "nid": "0x" + "00" * 32})
    with pytest.raises(errors.HashTimeLockWrongPreimage):  # the app's rules, by Bob's own mirror
        call(bob, "nanocontract_call", **{**claim, "z": "0x" + bytes(32).hex()})
    claimed = call(bob, "nanocontract_call", **{**claim, "fun": htlc.CLAIM})  # a number will do
    assert [(nc["version"], nc["released"]) for nc in claimed["nanocontracts"]] == [(1, [str(ETHER), "0"])]

    with pytest.raises(control.BadRequest, match="^nid must be 0x and 64 hex digits"):
        call(alice, "nanocontract_absorb", channel=cid, nid=17)
    absorbed = call(alice, "nanocontract_absorb", channel=cid, nid=nid)
    assert (absorbed["version"], absorbed["nanocontracts"], absorbed["my_cash"]) == (2, [], str(2 * ETHER))
    assert call(bob, "wait", channel=cid, version=2)["my_cash"] == str(2 * ETHER)

    # A second lock, which Bob registers on chain; Alice's watcher sees it there.
    second = call(alice, "nanocontract_create", **good)["nid"]
    with pytest.raises(control.BadRequest, match="^missing parameter nid$"):
        call(bob, "nanocontract_register", channel=cid)
    with pytest.raises(control.BadRequest, match="^nid must be 0x and 64 hex digits"):
        call(bob, "nanocontract_register", channel=cid, nid=second + "00")
    registered = call(bob, "nanocontract_register", channel=cid, nid=second)
    assert registered["transaction"]["block"] > 0
    assert [nc["on_chain_version"] for nc in registered["nanocontracts"]] == [0]
    seen = call(alice, "wait", channel=cid, nid=second, registered=0)
    assert [nc["on_chain_version"] for nc in seen["nanocontracts"]] == [0]
    with pytest.raises(control.BadRequest, match="^nid must be 0x and 64 hex digits"):
        call(alice, "wait", channel=cid, nid="0x", registered=0)
