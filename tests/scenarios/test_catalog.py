"""Every scenario of the catalog (scenarios/*.yaml) runs here as a test: real nodes over loopback
TCP on a fresh embedded chain, and each of its assertions about money and events must hold."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from perun.chain.backend import Chain, EmbeddedChain, RpcChain
from perun.cli.local import SCENARIO_ANVIL_BALANCE
from perun.core.channel import ETH, Phase
from perun.scenario import record as r
from perun.scenario.report import text_summary, write_report
from perun.scenario.runner import Run, run
from perun.scenario.spec import load
from perun.scenario.world import World
from tests.scenarios.test_report import Dom

ROOT = Path(__file__).parents[2]
CATALOG = sorted(ROOT.joinpath("scenarios").glob("*.yaml"))
ISSUE = [p for p in CATALOG if p.stem[:2] <= "32"]  # what the issue asked for; dispute paths from 33 on
MONEY = ("payout of", "wallet since the start", "events of", "refused a message")


def play(path: Path, workdir: Path, chain: Chain | None = None) -> tuple[r.Recording, World]:
    """Plays one file on `chain` (a fresh embedded chain by default), the parties' stores in
    `workdir`: the recording, and the world it stood on (its chain and contracts still there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    game = Run(load(path), chain or EmbeddedChain(), "embedded" if chain is None else "anvil", workdir,
               lambda line: None)
    return asyncio.run(game.play()), game.world


def accounted(world: World) -> int:
    """What the contracts must hold after a run: the deposits of each channel still on chain
    (Alice's alone before Bob confirms) and every credit owed to a party or tower."""
    token = world.token.address if world.token is not None else ETH
    held = 0
    for name, cid in world.cids.items():
        params, phase = world.params[name], world.contract_of(name).channel(cid).phase
        if phase is Phase.INITIALISING:
            held += params.deposit_alice
        elif phase in (Phase.OPEN, Phase.CLOSING):
            held += params.deposit_alice + params.deposit_bob
    contracts = [world.contract, *([world.ms] if world.ms else [])]
    return held + sum(c.owed(m.address, token) for c in contracts for m in world.members())


@pytest.mark.parametrize("path", CATALOG, ids=[p.stem for p in CATALOG])
def test_scenario(path: Path, tmp_path: Path) -> None:
    rec, world = play(path, tmp_path)
    assert rec.passed, text_summary(rec)
    # Funds conservation, on chain: the contracts hold exactly what the open channels and the
    # credits owed account for.
    assert world.held() == accounted(world), path.stem
    # The verdicts are about money and events (payouts, wallets, contract events, refusals).
    assert any(any(k in v.what for k in MONEY) for v in rec.verdicts)
    assert rec.samples and rec.transactions
    if path.stem in MULTIHOP_LIFELINES:  # each hop's lock and its claim, in ether, on the lifelines
        shown = [(m.sender, m.receiver, m.type, m.summary) for m in rec.messages]
        for want in MULTIHOP_LIFELINES[path.stem]:
            assert any(m[:3] == want[:3] and m[3].startswith(want[3]) for m in shown), (want, shown)
    if path.stem in NAMED_ERRORS:
        assert any(v.found.startswith(NAMED_ERRORS[path.stem]) for v in rec.verdicts), rec.verdicts
    if path.stem in TOWER_LIFELINES:  # a multistate channel's hand-over on the tower's lifeline, readably
        messages, functions = TOWER_LIFELINES[path.stem]
        shown = {(m.sender, m.receiver, m.type, m.summary) for m in rec.messages}
        assert messages <= shown, sorted(s for s in shown if "watchtower" in s)
        assert functions <= {(t.sender, t.function) for t in rec.transactions}


# The locks of 29's payment, created with their onions and claimed back with the preimage (each
# creation goes on with the lock's timeout, a chain time).
MULTIHOP_LIFELINES = {
    "29-multihop-payment": [
        ("alice", "bob", "LockOnion", "ab v1: the onion for the lock proposed next (930 bytes)"),
        ("alice", "bob", "NanocontractCreate", "ab v1: creates coffee@ab (HashTimeLock), blocking 1.005 ETH / 0 ETH, "
                                               "until chain time "),
        ("bob", "carol", "NanocontractCreate", "bc v1: creates coffee@bc (HashTimeLock), blocking 1.002 ETH / 0 ETH, "
                                               "until chain time "),
        ("carol", "dave", "NanocontractCreate", "cd v1: creates coffee@cd (HashTimeLock), blocking 1 ETH / 0 ETH, "
                                                "until chain time "),
        ("dave", "carol", "NanocontractCall", "cd coffee@cd v1: claim with the preimage 0x"),
        ("carol", "bob", "NanocontractCall", "bc coffee@bc v1: claim with the preimage 0x"),
        ("bob", "alice", "NanocontractCall", "ab coffee@ab v1: claim with the preimage 0x"),
    ],
    # A refusal names the parties, not their addresses; Bob gives Alice's lock back with a failure.
    "32-multihop-route-failure": [
        ("carol", "bob", "Error", "INVALID_NANOCONTRACT: the lock's onion: no open channel with dave can lock "),
        ("bob", "alice", "LockFailure", "ab coffee@ab: a failure for the payer, then the lock's cancel"),
        ("bob", "alice", "NanocontractCall", "ab coffee@ab v1: cancel"),
    ],
}
# An error a step meets names the nanocontracts and parties it quotes by the file's names.
NAMED_ERRORS = {"30-multihop-withheld-preimage": "MSContractWindowOpen: MSContractWindowOpen(nid=coffee@bc, windowEnd="}

# What the towers of 27 and 28 are handed and send, as the reports show it.
TOWER_LIFELINES: dict[str, tuple[set[tuple[str, str, str, str]], set[tuple[str, str]]]] = {
    "27-tower-multistate-nanocontract": (
        {("bob", "watchtower", "MonitorChannel", "ab v3: cash 8.5 ETH / 5.5 ETH, lists pay, reward 0.01 ETH"),
         ("watchtower", "bob", "MonitorAck", "ab v3 held"),
         ("bob", "watchtower", "MonitorNanocontract",
          "ab pay v1: blocked 0 ETH / 0 ETH, released 0 ETH / 1 ETH, reward 0.01 ETH"),
         ("watchtower", "bob", "MonitorNanoAck", "ab pay v1 held")},
        {("watchtower", "refute"), ("watchtower", "registerFor(pay v1)"), ("watchtower", "finalize")}),
    "28-tower-settles-virtual-channel": (
        {("bob", "watchtower", "MonitorCall", "ib g@ib: settle with v3: 1.5 ETH / 2.5 ETH, reward 0.01 ETH"),
         ("watchtower", "bob", "MonitorNanoAck", "ib g@ib: the call with γ v3 held")},
        {("watchtower", "executeFor(g@ib.settle v3)")}),
}


def test_the_catalog_has_what_the_issue_asks_for() -> None:
    names = {p.stem.split("-", 1)[1] for p in ISSUE}
    assert names == {"cooperative-close", "unilateral-close", "stale-close-refuted", "offline-back-in-time",
                     "offline-back-too-late", "seed-asymmetry", "unconfirmed-refund", "crash-mid-update",
                     "replay-and-forgery", "erc20-channel", "tictactoe-timeout", "stale-nanocontract-refuted",
                     "close-with-live-nanocontracts", "conditional-payments", "virtual-fast-close",
                     "virtual-close-refused", "virtual-ingrid-offline", "virtual-stale-state", "virtual-silent-end",
                     "virtual-ledger-closed", "cooperative-close-in-dispute", "multistate-cooperative-close",
                     "tower-refutes-for-offline-party", "two-towers-one-reward", "tower-withholds",
                     "tower-older-state-refused", "tower-multistate-nanocontract", "tower-settles-virtual-channel",
                     "multihop-payment", "multihop-withheld-preimage", "multihop-payee-silent",
                     "multihop-route-failure"}
    scenarios = {p.stem: load(p) for p in ISSUE}
    assert [name for name, s in scenarios.items() if any(c.kind == "multistate" for c in s.channels.values())] == [
        "11-tictactoe-timeout", "12-stale-nanocontract-refuted", "13-close-with-live-nanocontracts",
        "14-conditional-payments", *(name for name in scenarios if "15" <= name[:2] <= "20"),
        "22-multistate-cooperative-close", "27-tower-multistate-nanocontract", "28-tower-settles-virtual-channel",
        *(name for name in scenarios if name[:2] >= "29")]
    # 15 to 20 and 28: one virtual channel each, through an Ingrid who ends with exactly her deposits.
    virtual = {name: s for name, s in scenarios.items() if s.virtual}
    assert list(virtual) == [f"{n}-virtual-{what}" for n, what in zip(range(15, 21), (
        "fast-close", "close-refused", "ingrid-offline", "stale-state", "silent-end", "ledger-closed"))] + [
        "28-tower-settles-virtual-channel"]
    for s in virtual.values():
        (gamma,) = s.virtual.values()
        last = s.steps[-1].args
        assert last["channel"] == gamma.name and last["wallets"][gamma.ingrid] == 0
        ledgers = [s.channels[name] for name in gamma.ledgers]
        deposits = sum(c.deposits[0 if c.alice == gamma.ingrid else 1] for c in ledgers)
        assert last["payout"][gamma.ingrid] == deposits
    # 21 and 22: a cooperative close ends a running dispute, on each kind of channel: the last
    # events expected are a registered close, then CooperativelyClosed, and never Finalized.
    for name, kind in (("21-cooperative-close-in-dispute", "payment"),
                       ("22-multistate-cooperative-close", "multistate")):
        s = scenarios[name]
        assert [c.kind for c in s.channels.values()] == [kind]
        events = [event for event, _ in [step for step in s.steps if "events" in step.args][-1].args["events"]]
        assert "CloseRegistered" in events and events[-1] == "CooperativelyClosed" and "Finalized" not in events


    # 23 to 28: watchtowers. Each ends with every tower's wallet asserted: the reward, or nothing.
    towered = {name: s for name, s in scenarios.items() if s.towers}
    assert list(towered) == ["23-tower-refutes-for-offline-party", "24-two-towers-one-reward", "25-tower-withholds",
                             "26-tower-older-state-refused", "27-tower-multistate-nanocontract",
                             "28-tower-settles-virtual-channel"]
    for s in towered.values():
        assert set(s.towers) <= set(s.steps[-1].args["wallets"]) and set(s.towers) <= set(s.steps[-1].args["tower"])
    # 27 and 28: a tower answers for a multistate channel and settles a virtual channel's half. Each
    # ends with the tower paid what its record says it was paid, and the client its outcome less that.
    ends = {name: scenarios[name].steps[-1].args for name in ("27-tower-multistate-nanocontract",
                                                              "28-tower-settles-virtual-channel")}
    multistate, virtual_end = ends.values()
    assert multistate["tower"] == {"watchtower": {"stage": "closed", "version": 3, "refuted": 3,
                                                  "reward_paid": 2 * 10**16}}
    assert multistate["wallets"] == {"alice": -15 * 10**17, "bob": 148 * 10**16, "watchtower": 2 * 10**16}
    assert multistate["payout"] == (85 * 10**17, 648 * 10**16)
    assert virtual_end["tower"] == {"watchtower": {"version": 3, "reward_paid": 10**16}}
    assert virtual_end["wallets"] == {"alice": -15 * 10**17, "ingrid": 0, "bob": 149 * 10**16, "watchtower": 10**16}
    # 29 on: multi-hop payments, Alice to Dave through Bob and Carol, who forward for a fee. Each
    # ends with the wallets: what the payment gives each honest party, whatever went wrong.
    # A payment that never arrives leaves everyone as they were, and pays no fee.
    paid = {"alice": -1005 * 10**15, "bob": 3 * 10**15, "carol": 2 * 10**15, "dave": 10**18}
    unpaid = dict.fromkeys(paid, 0)
    for name, wallets in (("29-multihop-payment", paid), ("30-multihop-withheld-preimage", paid),
                          ("31-multihop-payee-silent", unpaid), ("32-multihop-route-failure", unpaid)):
        s = scenarios[name]
        (invoice,) = s.invoices.values()
        assert (invoice.payer, invoice.payee, invoice.route) == ("alice", "dave", ("ab", "bc", "cd"))
        assert s.steps[-1].args["wallets"] == wallets


def test_the_table_of_dispute_paths_names_the_catalog() -> None:
    """docs/scenarios.md's "Dispute paths and their scenarios" names only files of the catalog, and
    each file from 33 on plays a path the table lists."""
    doc = (ROOT / "docs" / "scenarios.md").read_text()
    table = doc.split("\n## Dispute paths and their scenarios\n")[1].split("\n## ")[0]
    named = set(re.findall(r"`(\d\d-[a-z0-9-]+)`", table))
    stems = {p.stem for p in CATALOG}
    assert named <= stems, named - stems
    assert {stem for stem in stems if stem[:2] >= "33"} <= named


def test_a_real_report_in_chromium(chromium: str, tmp_path: Path) -> None:
    rec, _ = play(next(p for p in CATALOG if "seed-asymmetry" in p.stem), tmp_path / "stores")
    page, text = write_report(rec, tmp_path)
    dumped = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    dom = Dom(dumped)
    assert {"verdict", "assertions", "sequence", "balances", "gas"} <= dom.ids()
    assert len(dom.having("g", "msg")) == len(rec.messages)
    assert len(dom.having("g", "msg", "dropped")) == 1  # Bob's silence: his UpdateAck never arrives
    assert len(dom.having("g", "tx")) == len(rec.transactions) == 5
    assert len(dom.having("tr", "verdict", "pass")) == len(rec.verdicts)
    assert "PASS" in text.read_text()


def test_embedded_chain_is_fresh_per_scenario() -> None:
    # Two runs of one file give the same transactions: nothing leaks from one chain to the next.
    first, second = run([CATALOG[0], CATALOG[0]], out=lambda line: None)
    assert [(t.function, t.block) for t in first.transactions] == [(t.function, t.block) for t in second.transactions]


# One of each kind, on anvil (its own chain thread per node, a real JSON-RPC client): a payment
# channel's dispute (a stale close refuted), a multistate channel's nanocontract, a virtual
# channel, a watchtower, and a multi-hop payment.
ON_ANVIL = ("03-stale-close-refuted", "12-stale-nanocontract-refuted", "18-virtual-stale-state",
            "23-tower-refutes-for-offline-party", "29-multihop-payment")


def test_one_scenario_of_each_kind_on_anvil(tmp_path: Path) -> None:
    from perun.chain.anvil import AnvilChain

    anvil = AnvilChain(balance=SCENARIO_ANVIL_BALANCE)  # the catalog funds each party with 100 ETH
    chain = RpcChain(anvil.url)
    try:
        for name in ON_ANVIL:
            rec, world = play(next(p for p in CATALOG if p.stem == name), tmp_path / name, chain)
            assert rec.passed, text_summary(rec)
            assert world.held() == accounted(world), name
    finally:
        chain.close()
        anvil.close()
