"""Multi-hop payments with the `perun` command only: three `perun node` processes on anvil in a
line, Alice – Bob – Carol, Bob forwarding for a fee (`--forward-base-fee`, `--forward-ppm`).
Carol makes an invoice with `perun invoice`; Alice, who knows only Bob, pays it with `perun pay
INVOICE`, then pays Carol by address with `perun pay --to`; the balances are read back with
`perun status`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from perun import control
from perun.chain.backend import ETHER
from tests.integration.test_cli_node import NodeProcess, nodes_on_anvil, ok, one_line_failure, perun
from tests.integration.test_cli_virtual import held

BASE_FEE, PPM = 10**15, 1_000  # Bob's: 0.001 ETH and 0.1 % of what he forwards


def fee(amount: int) -> int:
    return BASE_FEE + amount * PPM // 10**6


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, NodeProcess, NodeProcess]]:
    with nodes_on_anvil(tmp_path_factory.mktemp("multihop"), {
            "alice": (), "bob": ("--forward-base-fee", "0.001eth", "--forward-ppm", str(PPM)), "carol": ()}) as nodes:
        yield nodes


def settled(node: NodeProcess, payment_hash: str) -> None:
    """Waits until `node`'s part in the payment is done (its incoming lock claimed)."""
    control.call(node.data, "wait", {"channel": payment_hash, "stage": "settled"})


def test_an_invoice_and_an_address_paid_through_a_forwarding_node(line) -> None:
    alice, bob, carol = line
    ok("connect", bob.address, f"127.0.0.1:{bob.port}", "--data", alice.data)
    ok("connect", carol.address, f"127.0.0.1:{carol.port}", "--data", bob.data)
    ab = perun("--json", "open", bob.address, "--multistate", "--deposit", "5eth", "--peer-deposit", "0",
               "--delta", "3600", "--data", alice.data).json()["channel"]
    bc = perun("--json", "open", carol.address, "--multistate", "--deposit", "5eth", "--peer-deposit", "0",
               "--delta", "3600", "--data", bob.data).json()["channel"]
    for node, ledger in ((bob, ab), (carol, bc)):
        control.call(node.data, "wait", {"channel": ledger, "stage": "open"})

    made = perun("invoice", "0.1eth", "--description", "coffee", "--data", carol.data)
    assert made.code == 0, made.err
    text = made.out.strip()
    assert made.out == text + "\n" and text.startswith("perun1")
    assert made.err.startswith(f"invoice for 0.1 ETH ({ETHER // 10} wei) to {carol.address}, payable until ")

    out = ok("pay", text, "--data", alice.data)
    first = fee(ETHER // 10)
    payment_hash = out.split()[-1]
    assert out == (f"paid 0.1 ETH ({ETHER // 10} wei) to {carol.address} over 2 channels through {bob.address}: "
                   f"fees 0.0011 ETH ({first} wei), total 0.1011 ETH ({ETHER // 10 + first} wei); "
                   f"payment hash {payment_hash}\n")
    for node in (bob, carol):
        settled(node, payment_hash)
    assert held(alice, ab) == 5 * ETHER - ETHER // 10 - first
    assert held(bob, ab) + held(bob, bc) == 5 * ETHER + first
    assert held(carol, bc) == ETHER // 10
    shown = ok("status", payment_hash, "--data", carol.data)
    assert shown.startswith(f"payment   {payment_hash} (multi-hop, you are its payee)\nstage     settled, preimage "
                            "known\nincoming  0.1 ETH")

    # By address, with no invoice: the same route, Bob's fee on the amount.
    paid = perun("--json", "pay", "--to", carol.address.lower(), "0.05eth", "--data", alice.data).json()
    second = fee(ETHER // 20)
    assert (paid["payee"], paid["amount"], paid["fees"], paid["total"]) == (
        carol.address, str(ETHER // 20), [str(second)], str(ETHER // 20 + second))
    assert [hop["node"] for hop in paid["hops"]] == [bob.address, carol.address]
    for node in (bob, carol):
        settled(node, paid["payment_hash"])
    assert held(alice, ab) == 5 * ETHER - ETHER // 10 - first - ETHER // 20 - second
    assert held(bob, ab) + held(bob, bc) == 5 * ETHER + first + second
    assert held(carol, bc) == ETHER // 10 + ETHER // 20

    # More than Bob can forward: no route, said in ETH with what to do; nothing is locked.
    before = held(alice, ab)
    failed = one_line_failure(perun("pay", "--to", carol.address, "5eth", "--data", alice.data), 2)
    assert failed.startswith("perun pay: no route: no path of at most 8 hops with the capacity for 5 ETH and the "
                             "fees: a route needs open multistate channels with enough cash"), failed
    assert held(alice, ab) == before
    # A mangled invoice, and a form that is none of the three.
    assert one_line_failure(perun("pay", text[:-2], "--data", alice.data), 2).startswith("perun pay: not an invoice")
    assert one_line_failure(perun("pay", ab, "--data", alice.data), 2) == (
        "perun pay: give CHANNEL AMOUNT, or an INVOICE (perun1...), or --to ADDRESS AMOUNT (see `perun pay --help`)")
