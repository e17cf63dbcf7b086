"""Gas of every PaymentContract step and of two ETH lifecycles, and of every MSContract step
(nanocontracts registered, executed, closed over and paid out, and the cooperative close), on the
embedded chain.

`make bench` (python -m benchmarks.gas) prints the table, writes benchmarks/gas.json, the
snapshot that tests/contracts/test_gas.py holds the contract to (within 2 %), and renders the
README's gas tables from it (`readme_tables`, the on-chain paths of a multi-hop payment added up
from MSContract's steps; a test holds the README to the snapshot). Keys are
fixed, so signatures, calldata and so the figures are exactly reproducible.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from eth_abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from perun.chain.backend import ETHER, EmbeddedChain
from perun.chain.multistate import MSContract
from perun.chain.payment import PaymentContract
from perun.core.apps import ALICE, AppState
from perun.core.apps import virtualchannel as vc
from perun.core.channel import Params
from perun.core.eip712 import sign as sign_digest
from perun.core.eip712 import sign_state
from perun.core.monitoring import Monitoring, sign_authorisation
from perun.core.multistate import ChannelState, FinalChannelState, NanocontractState, digest, nanocontract_id

SNAPSHOT = Path(__file__).with_name("gas.json")

# Published figures, for the README's comparison (gas per call).
RAIDEN = {"openChannel": 111_094, "setTotalDeposit (each)": 56_000, "closeChannel": 118_501,
          "updateNonClosingBalanceProof": 90_516, "settleChannel": 108_569, "cooperativeSettle": 112_270}
NITRO = {"deposits": 46_496 + 29_408, "cooperative exit": 111_514, "challenge + payout": 113_146 + 82_026}

MS_PREFIX = "ms: "  # MSContract's figures, after PaymentContract's
DELTA = 3600
PREIMAGE = keccak(text="perun benchmark preimage")
TOWER_KEY = keccak(text="perun benchmark tower")
REWARD = ETHER // 100


def measure() -> dict[str, int]:
    chain = EmbeddedChain()
    contract = PaymentContract.deploy(chain, chain.dev_accounts[0])
    alice, bob = (Account.from_key(keccak(text=f"perun benchmark {name}")) for name in ("alice", "bob"))
    for party in (alice, bob):
        chain.fund(party.address, 100 * ETHER)
    nonce = iter(range(1, 100))

    def opened() -> tuple[Params, object, dict[str, int]]:
        params = Params(alice.address, bob.address, 6 * ETHER, 4 * ETHER, 3600, next(nonce))
        gas = {"create": contract.create(alice, params).gas_used, "confirm": contract.confirm(bob, params).gas_used}
        return params, params.initial_state(chain.chain_id, contract.address), gas

    sign = lambda state, who: sign_state(contract.domain, state, who.key)  # noqa: E731

    params, s0, coop = opened()
    final = s0.pay(ETHER, from_alice=True).final()
    coop["cooperativeClose"] = contract.cooperative_close(alice, params, final, sign(final, alice), sign(final, bob)).gas_used

    params, s0, disputed = opened()
    s1 = s0.pay(ETHER, from_alice=True)
    s2 = s1.pay(ETHER, from_alice=True)
    disputed["close"] = contract.close(alice, params, s1, sign(s1, bob)).gas_used
    disputed["close (higher version)"] = contract.close(bob, params, s2, sign(s2, alice)).gas_used
    chain.advance_time(3601)
    disputed["finalize"] = contract.finalize(bob, params).gas_used

    params = Params(alice.address, bob.address, 6 * ETHER, 4 * ETHER, 3600, next(nonce))
    contract.create(alice, params)
    chain.advance_time(3601)
    refund = contract.refund(alice, params).gas_used

    # A watchtower: Alice closes with v1, Bob's tower answers with v2 and Bob's authorisation
    # (a reward of 0.01 ETH), and is paid at finalize: compare with close (higher version), finalize.
    tower = Account.from_key(TOWER_KEY)
    chain.fund(tower.address, 100 * ETHER)
    params, s0, _ = opened()
    s1 = s0.pay(ETHER, from_alice=True)
    s2 = s1.pay(ETHER, from_alice=True)
    contract.close(alice, params, s1, sign(s1, bob))
    m = Monitoring.of(contract.domain, s2, tower.address, REWARD)
    towered = {"refute": contract.refute(tower, params, s2, sign(s2, alice), m,
                                         sign_authorisation(contract.domain, m, bob.key)).gas_used}
    chain.advance_time(3601)
    towered["finalize"] = contract.finalize(bob, params).gas_used

    figures = {
        "create": coop["create"],
        "confirm": coop["confirm"],
        "close": disputed["close"],
        "close (higher version)": disputed["close (higher version)"],
        "finalize": disputed["finalize"],
        "cooperativeClose": coop["cooperativeClose"],
        "refund": refund,
        "lifecycle: cooperative": sum(coop.values()),
        "lifecycle: disputed": sum(disputed.values()),
        "tower: refute (payment)": towered["refute"],
        "tower: finalize with a reward (payment)": towered["finalize"],
    }
    return {**figures, **measure_multistate(chain, alice, bob, tower)}


def measure_multistate(chain: EmbeddedChain, alice: LocalAccount, bob: LocalAccount,
                       tower: LocalAccount) -> dict[str, int]:
    """MSContract's steps on ETH channels of 6 + 4 ETH. Every amount, timeout and board is fixed
    (no timestamp goes into calldata), so the figures are exactly reproducible."""
    deployer = chain.dev_accounts[0]
    contract = MSContract.deploy(chain, deployer)
    htlc, ttt, virtual = (chain.deploy(deployer, name) for name in ("HashTimeLock", "TicTacToe", "VirtualChannel"))
    nonce = iter(range(1, 100))
    gas: dict[str, int] = {}

    def opened() -> tuple[Params, ChannelState]:
        params = Params(alice.address, bob.address, 6 * ETHER, 4 * ETHER, DELTA, next(nonce))
        gas["create"] = contract.create(alice, params).gas_used
        gas["confirm"] = contract.confirm(bob, params).gas_used
        return params, ChannelState.initial(params, contract.channel_id(params))

    def signed(state, who) -> bytes:
        return sign_digest(digest(contract.domain, state), who.key)

    def htlc_state(s: ChannelState, amount: int, timeout: int) -> NanocontractState:
        """Alice pays Bob `amount` against the preimage of a fixed hashlock until `timeout`."""
        data = encode(["uint8", "bytes32", "uint64"], [0, hashlib.sha256(PREIMAGE).digest(), timeout])
        return NanocontractState(s.channel_id, nanocontract_id(s.channel_id, s.version + 1), htlc, 0, amount, 0,
                                 0, 0, data)

    def ttt_state(s: ChannelState, cells: list[int]) -> NanocontractState:
        """A game for 1 ETH each, Alice to move."""
        data = encode(["uint8", "uint64", "uint8[9]"], [0, DELTA, cells])
        return NanocontractState(s.channel_id, nanocontract_id(s.channel_id, s.version + 1), ttt, 0, ETHER, ETHER,
                                 0, 0, data)

    def cell(i: int) -> bytes:
        return encode(["uint8"], [i])

    # The apps: three hash-time locks (one claimed, one reclaimed after its timeout, one cancelled
    # by its receiver before its timeout) and two games (an opening move, and a winning one), all
    # registered by Bob and executed after the window. The cancelled lock is funded last, so that
    # the other nanocontracts' ids, and so their figures, stay those measured before it existed.
    params, s = opened()
    claim = htlc_state(s, ETHER, 2**40)
    s = s.fund(claim)
    reclaim = htlc_state(s, ETHER, 1)
    s = s.fund(reclaim)
    game = ttt_state(s, [0] * 9)
    s = s.fund(game)
    endgame = ttt_state(s, [1, 1, 0, 2, 2, 0, 0, 0, 0])
    s = s.fund(endgame)
    cancel = htlc_state(s, ETHER, 2**40)
    s = s.fund(cancel)
    moved = game.successor(_moved(game, 4))  # Alice's opening move, played off chain
    gas["register (HashTimeLock)"] = contract.register(bob, params, claim, signed(claim, alice)).gas_used
    contract.register(bob, params, reclaim, signed(reclaim, alice))
    gas["register (TicTacToe)"] = contract.register(bob, params, game, signed(game, alice)).gas_used
    gas["register (higher version)"] = contract.register(bob, params, moved, signed(moved, alice)).gas_used
    contract.register(bob, params, endgame, signed(endgame, alice))
    contract.register(bob, params, cancel, signed(cancel, alice))
    chain.advance_time(DELTA + 1)
    gas["execute HashTimeLock claim"] = contract.execute(bob, params, claim.nid, 0, PREIMAGE).gas_used
    gas["execute HashTimeLock reclaim"] = contract.execute(alice, params, reclaim.nid, 1).gas_used
    gas["execute TicTacToe move"] = contract.execute(bob, params, game.nid, 0, cell(0)).gas_used
    gas["execute TicTacToe winning move"] = contract.execute(alice, params, endgame.nid, 0, cell(2)).gas_used
    gas["execute HashTimeLock cancel"] = contract.execute(bob, params, cancel.nid, 2).gas_used

    # Virtual channel halves ν_a in a ledger channel of Alice (γ's end) and Bob (as Ingrid), of
    # 1 + 1 ETH, validity long past: one takes γ's end's state, one Ingrid's final state at once,
    # and one, whose windows are over, is finalized.
    params, s = opened()
    gamma_bob = Account.from_key(keccak(text="perun benchmark gamma bob"))
    domain = vc.virtual_domain(chain.chain_id, virtual)
    halves = []
    for window in (2**40, 2**40, 1):
        initial = vc.initial(alice.address, bob.address, gamma_bob.address, s.channel_id, bytes(32), ETHER, ETHER,
                             1, window, 1, vc.SIDE_A, ALICE)
        half = NanocontractState.create(s.channel_id, nanocontract_id(s.channel_id, s.version + 1), virtual,
                                        initial)
        s = s.fund(half)
        halves.append(half)
    gas["register (VirtualChannel)"] = contract.register(bob, params, halves[0], signed(halves[0], alice)).gas_used
    for half in halves[1:]:
        contract.register(bob, params, half, signed(half, alice))
    chain.advance_time(DELTA + 1)

    def settle(half: NanocontractState, version: int, final: bool) -> bytes:
        state = vc.VirtualState(vc.decode(half.storage).id, version, ETHER // 2, 3 * ETHER // 2, final)
        return vc.settle_arg(state, vc.sign_virtual(domain, state, alice.key), vc.sign_virtual(domain, state,
                                                                                                gamma_bob.key))
    gas["execute VirtualChannel settle"] = contract.execute(alice, params, halves[0].nid, vc.SETTLE,
                                                            settle(halves[0], 3, False)).gas_used
    gas["execute VirtualChannel settle (final, by Ingrid)"] = contract.execute(
        bob, params, halves[1].nid, vc.SETTLE, settle(halves[1], 3, True)).gas_used
    gas["execute VirtualChannel finalize"] = contract.execute(bob, params, halves[2].nid, vc.FINALIZE).gas_used

    # No nanocontract: a channel state after a payment, as a PaymentContract close.
    params, s0 = opened()
    s = ChannelState(s0.channel_id, 1, 5 * ETHER, 5 * ETHER)
    gas["close (no nanocontract)"] = contract.close(alice, params, s, signed(s, bob)).gas_used
    chain.advance_time(DELTA + 1)
    gas["finalize (no nanocontract)"] = contract.finalize(bob, params, s.nanocontracts).gas_used

    # One hash-time lock: closed over, registered and claimed, paid out once settled.
    params, s0 = opened()
    claim = htlc_state(s0, ETHER, 2**40)
    s = s0.fund(claim)
    gas["close (1 nanocontract)"] = contract.close(alice, params, s, signed(s, bob)).gas_used
    contract.register(bob, params, claim, signed(claim, alice))
    chain.advance_time(DELTA + 1)
    contract.execute(bob, params, claim.nid, 0, PREIMAGE)
    gas["finalize (1 nanocontract)"] = contract.finalize(bob, params, s.nanocontracts).gas_used

    # The most a channel state may list: 16 hash-time locks of 0.25 ETH, each registered as
    # claimed (terminated), paid out once settled.
    params, s = opened()
    settled = []
    for _ in range(16):
        lock = htlc_state(s, ETHER // 4, 2**40)
        s = s.fund(lock)
        settled.append(lock.successor(lock.app_state().release(1, ETHER // 4)))
    gas["close (16 nanocontracts)"] = contract.close(alice, params, s, signed(s, bob)).gas_used
    for state in settled:
        contract.register(bob, params, state, signed(state, alice))
    chain.advance_time(DELTA + 1)
    gas["finalize (16 nanocontracts)"] = contract.finalize(bob, params, s.nanocontracts).gas_used

    # A final state signed by both, submitted by Alice: in Open; and ending a dispute over a
    # channel state with no nanocontract, or with one (whose stored fundings hash is deleted).
    def cooperative_close(params: Params, final: FinalChannelState) -> int:
        return contract.cooperative_close(alice, params, final, signed(final, alice), signed(final, bob)).gas_used

    params, s0 = opened()
    gas["cooperativeClose (Open)"] = cooperative_close(params, FinalChannelState(s0.channel_id, 1, 5 * ETHER,
                                                                                 5 * ETHER))
    params, s0 = opened()
    s = ChannelState(s0.channel_id, 1, 5 * ETHER, 5 * ETHER)
    contract.close(alice, params, s, signed(s, bob))
    gas["cooperativeClose (Closing)"] = cooperative_close(params, s.final())
    params, s0 = opened()
    s = s0.fund(htlc_state(s0, ETHER, 2**40))
    contract.close(alice, params, s, signed(s, bob))
    gas["cooperativeClose (Closing, 1 nanocontract)"] = cooperative_close(
        params, FinalChannelState(s.channel_id, 2, 5 * ETHER, 5 * ETHER))

    # A watchtower: Alice closes with the initial state, Bob's tower answers with v1 (no
    # nanocontract, as close (no nanocontract)); in a channel Alice closed over her hash-time lock,
    # her tower registers the lock first (as register (HashTimeLock)). Rewards of 0.01 ETH.
    def authorised(state, payer: LocalAccount) -> tuple[Monitoring, bytes]:
        m = Monitoring.of(contract.domain, state, tower.address, REWARD)
        return m, sign_authorisation(contract.domain, m, payer.key)

    params, s0 = opened()
    s = ChannelState(s0.channel_id, 1, 5 * ETHER, 5 * ETHER)
    contract.close(alice, params, s0)
    gas["tower: refute (multistate)"] = contract.refute(tower, params, s, signed(s, alice),
                                                         *authorised(s, bob)).gas_used
    params, s0 = opened()
    claim = htlc_state(s0, ETHER, 2**40)
    s = s0.fund(claim)
    contract.close(alice, params, s, signed(s, bob))
    gas["tower: registerFor"] = contract.register_for(tower, params, claim, signed(claim, bob),
                                                      *authorised(claim, alice)).gas_used

    order = ("create", "confirm", "register (HashTimeLock)", "register (TicTacToe)", "register (higher version)",
             "execute HashTimeLock claim", "execute HashTimeLock reclaim",
             "execute HashTimeLock cancel", "execute TicTacToe move",
             "execute TicTacToe winning move", "register (VirtualChannel)", "execute VirtualChannel settle",
             "execute VirtualChannel settle (final, by Ingrid)", "execute VirtualChannel finalize",
             "close (no nanocontract)", "close (1 nanocontract)",
             "close (16 nanocontracts)", "finalize (no nanocontract)", "finalize (1 nanocontract)",
             "finalize (16 nanocontracts)", "cooperativeClose (Open)", "cooperativeClose (Closing)",
             "cooperativeClose (Closing, 1 nanocontract)", "tower: refute (multistate)", "tower: registerFor")
    return {MS_PREFIX + name: gas[name] for name in order}


def _moved(state: NanocontractState, cell: int) -> AppState:
    """The app state after Alice (to move) takes `cell` of an empty board."""
    cells = [0] * 9
    cells[cell] = 1
    data = encode(["uint8", "uint64", "uint8[9]"], [1, DELTA, cells])
    return AppState(state.blocked_alice, state.blocked_bob, 0, 0, data)


def table(figures: dict[str, int]) -> str:
    """Two Markdown tables: PaymentContract's steps, then MSContract's."""
    payment = {k: v for k, v in figures.items() if not k.startswith(MS_PREFIX)}
    multistate = {k[len(MS_PREFIX):]: v for k, v in figures.items() if k.startswith(MS_PREFIX)}
    lines = ["| step (ETH channel) | gas |", "|---|---:|"]
    lines += [f"| {name} | {gas:,} |" for name, gas in payment.items()]
    if multistate:
        lines += ["", "| MSContract step (ETH channel) | gas |", "|---|---:|"]
        lines += [f"| {name} | {gas:,} |" for name, gas in multistate.items()]
    return "\n".join(lines)


README = Path(__file__).resolve().parents[1] / "README.md"
README_START, README_END = "<!-- gas tables: make bench writes them from benchmarks/gas.json -->", "<!-- end of gas tables -->"

# The README's rows: a label and the steps whose figures it shows ("a / b" for several).
PAYMENT_ROWS = (
    ("create", ("create",)), ("confirm", ("confirm",)), ("close", ("close",)),
    ("close (higher version)", ("close (higher version)",)), ("finalize (two payouts)", ("finalize",)),
    ("cooperativeClose (two payouts)", ("cooperativeClose",)), ("refund", ("refund",)),
)
MS_ROWS = (
    ("create / confirm", ("create", "confirm")),
    ("register a HashTimeLock / a TicTacToe game (first registration)",
     ("register (HashTimeLock)", "register (TicTacToe)")),
    ("register a higher version (replacement)", ("register (higher version)",)),
    ("execute HashTimeLock `CLAIM` / `RECLAIM` / `CANCEL`",
     ("execute HashTimeLock claim", "execute HashTimeLock reclaim", "execute HashTimeLock cancel")),
    ("execute TicTacToe `MOVE` / a winning `MOVE`", ("execute TicTacToe move", "execute TicTacToe winning move")),
    ("register a VirtualChannel half (480 bytes of storage)", ("register (VirtualChannel)",)),
    ("execute VirtualChannel `SETTLE` (an end's state) / Ingrid's final state / `FINALIZE`",
     ("execute VirtualChannel settle", "execute VirtualChannel settle (final, by Ingrid)",
      "execute VirtualChannel finalize")),
    ("close with 0 / 1 / 16 nanocontracts", ("close (no nanocontract)", "close (1 nanocontract)",
                                             "close (16 nanocontracts)")),
    ("finalize with 0 / 1 / 16 settled nanocontracts", ("finalize (no nanocontract)", "finalize (1 nanocontract)",
                                                        "finalize (16 nanocontracts)")),
    ("cooperativeClose (two payouts) in Open / ending a dispute over 0 / 1 nanocontracts",
     ("cooperativeClose (Open)", "cooperativeClose (Closing)", "cooperativeClose (Closing, 1 nanocontract)")),
)
TOWER_ROWS = (  # (the tower's step, the party's own step it stands for)
    ("refute a stale close (PaymentContract)", "tower: refute (payment)", "close (higher version)"),
    ("finalize paying a reward (PaymentContract)", "tower: finalize with a reward (payment)", "finalize"),
    ("refute a stale close, no nanocontract (MSContract)", "ms: tower: refute (multistate)",
     "ms: close (no nanocontract)"),
    ("registerFor a HashTimeLock (MSContract, first registration)", "ms: tower: registerFor",
     "ms: register (HashTimeLock)"),
)

# Multi-hop payments (docs/protocol.md §13) on chain: each path, its transactions as the README
# names them with their steps, and for a figure per lock the route lengths to show it for (every
# lock's receiver silent). A lock is a HashTimeLock, settled in an open channel.
REGISTER = ("register", "register (HashTimeLock)")
RECLAIM = ("execute `RECLAIM`", "execute HashTimeLock reclaim")
MULTIHOP_ROWS = (
    ("a hop not paid off chain claims its incoming lock with the preimage",
     (REGISTER, ("execute `CLAIM`", "execute HashTimeLock claim")), ()),
    ("a lock timed out, its receiver silent: the sender takes it back", (REGISTER, RECLAIM), ()),
    ("a payee that never reveals: each lock into a silent receiver, after its timeout", (REGISTER, RECLAIM),
     (2, 3, 5)),
    ("a lock given up on chain by its receiver, the sender silent",
     (REGISTER, ("execute `CANCEL`", "execute HashTimeLock cancel")), ()),
    ("then closing the channel with the silent peer, over the settled lock",
     (("close", "close (1 nanocontract)"), ("finalize", "finalize (1 nanocontract)")), ()),
)


def multihop_rows(ms: dict[str, int]) -> list[str]:
    """The README's rows of MULTIHOP_ROWS, from MSContract's figures `ms`."""
    rows = []
    for label, steps, hops in MULTIHOP_ROWS:
        total = sum(ms[step] for _, step in steps)
        shown = f"**{total:,}**"
        if hops:
            shown += (f" per lock; every receiver of a {' / '.join(map(str, hops))}-hop route silent:"
                      f" {' / '.join(f'{k * total:,}' for k in hops)}")
        rows.append(f"| {label} | {' + '.join(f'{name} {ms[step]:,}' for name, step in steps)} | {shown} |")
    return rows


def readme_tables(figures: dict[str, int]) -> str:
    """The README's gas tables, rendered from `figures` (benchmarks/gas.json)."""
    ms = {k[len(MS_PREFIX):]: v for k, v in figures.items() if k.startswith(MS_PREFIX)}

    def row(label: str, steps: tuple[str, ...], source: dict[str, int]) -> str:
        return f"| {label} | {' / '.join(f'{source[s]:,}' for s in steps)} |"

    cooperative, disputed = figures["lifecycle: cooperative"], figures["lifecycle: disputed"]
    opening = figures["create"] + figures["confirm"]
    dispute = figures["close"] + figures["close (higher version)"] + figures["finalize"]
    raiden_open = RAIDEN["openChannel"] + 2 * RAIDEN["setTotalDeposit (each)"]
    raiden_dispute = RAIDEN["closeChannel"] + RAIDEN["updateNonClosingBalanceProof"] + RAIDEN["settleChannel"]
    lines = [
        "| step | gas |", "|---|---:|",
        *(row(label, steps, figures) for label, steps in PAYMENT_ROWS),
        f"| **lifecycle, cooperative**: create + confirm + cooperativeClose | **{cooperative:,}** |",
        f"| **lifecycle, disputed**: create + confirm + close + higher close + finalize | **{disputed:,}** |",
        "",
        "Published figures of other channel contracts, for comparison:",
        "",
        "| | open and fund | cooperative close | dispute and settle |", "|---|---:|---:|---:|",
        f"| Raiden | openChannel {RAIDEN['openChannel']:,} + setTotalDeposit {RAIDEN['setTotalDeposit (each)']:,} × 2"
        f" = {raiden_open:,} | cooperativeSettle {RAIDEN['cooperativeSettle']:,} | closeChannel"
        f" {RAIDEN['closeChannel']:,} + updateNonClosingBalanceProof {RAIDEN['updateNonClosingBalanceProof']:,}"
        f" + settleChannel {RAIDEN['settleChannel']:,} = {raiden_dispute:,} |",
        f"| Nitro | deposits 46,496 + 29,408 = {NITRO['deposits']:,} | cooperative exit"
        f" {NITRO['cooperative exit']:,} | challenge 113,146 + payout 82,026 = {NITRO['challenge + payout']:,} |",
        f"| this project | create + confirm = {opening:,} | {figures['cooperativeClose']:,} |"
        f" close + higher close + finalize = {dispute:,} |",
        "",
        "MSContract, multistate channels (the nanocontracts are registered by Bob, signed by Alice;",
        '"settled" means registered, past its window and terminated):',
        "",
        "| step | gas |", "|---|---:|",
        *(row(label, steps, ms) for label, steps in MS_ROWS),
        "",
        "Watchtowers (docs/protocol.md §12), against the party's own step; the reward is recorded",
        "with the tower's submission and paid at finalize:",
        "",
        "| a tower's step | gas | the party's own | gas |", "|---|---:|---|---:|",
        *(f"| {label} | {figures[tower]:,} | {own.removeprefix(MS_PREFIX)} | {figures[own]:,} |"
          for label, tower, own in TOWER_ROWS),
        "",
        "Multi-hop payments on chain (docs/protocol.md §13): what a hop pays when a neighbour does not",
        "answer, the lock settled in an open channel (the steps above, registered by either party):",
        "",
        "| path | transactions | gas |", "|---|---|---:|",
        *multihop_rows(ms),
    ]
    return "\n".join(lines)


def readme_section(text: str) -> str:
    """The README's gas tables, between the markers."""
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    return text[start:end].strip("\n")


def main() -> None:
    figures = measure()
    SNAPSHOT.write_text(json.dumps(figures, indent=2) + "\n")
    print(table(figures))
    text = README.read_text()
    old = readme_section(text)
    README.write_text(text.replace(old, readme_tables(figures), 1))
    print(f"\nwritten to {SNAPSHOT} and the gas tables of {README.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
