"""A virtual channel γ on two real MSContract ledger channels (issue 6, item 4): "on every path
Ingrid neither gains nor loses, and Alice and Bob get their latest balance".

γ runs between Alice and Bob through Ingrid (Mallory's key here). The ledger channel a joins Alice
and Ingrid, b joins Ingrid and Bob; either party may be a ledger channel's `Params.alice`: the
directed tests run in all four orientations, or (those with more parameters) in the two that put
each party in each role of its ledger channel once; the property test draws one. Each ledger channel's state 1
(`ChannelState.fund`) funds γ's half, ν_a or ν_b (`virtualchannel.initial`), signed by both of its
parties, as the off-chain protocol would leave it. Everything else happens on the embedded chain:
registrations, γ's submissions (SETTLE), FINALIZE, the ledger channels' close and finalize. The
payouts are read from the `Finalized` events of both ledger channels; Ingrid's two payouts must add
up to exactly her two deposits, Alice's and Bob's must be their deposits less γ's cash plus γ's
latest balances. Every `execute` is also run through the Python mirror
(`VirtualChannel.at(...)`), which must give the same state or the same error.

Ingrid learns a γ state only from the chain: a SETTLE's argument z (the state with Alice's and
Bob's signatures) is in the calldata of the `execute` transaction, not in `NanocontractExecuted`
(which holds only the new storage); `Gamma.seen` reads it from there, as her watcher must.

Ingrid's watcher rule, which the property test at the end follows exactly and the nodes are to
implement (T is the validity, w γ's window, Δ a ledger channel's dispute window):

  R1 Register. She makes sure each half is registered in its ledger channel early enough to be
     executed right after T: by T − Δ − 1 at the latest, and, if its ledger channel starts closing
     first, by that channel's deadline D. She registers it herself (version 0, signed by her
     counterparty when γ was funded) unless the chain holds it already.
  R2 Learn. From every SETTLE of either half she keeps z (from the transaction's calldata).
  R3 Copy. After T + w, when the ends can no longer submit, and by T + 2w, she compares the
     (version, balances) the two halves store. Unless they are equal, she submits the higher one
     (by version; on equal versions, ν_a's) on the other half. She may also copy earlier,
     whenever one half stores a state the other does not (eagerly); the pass after T + w is the
     one that counts, because until T + w an end may still raise its own half.
  R4 Final states. A final state she submits settles its half at once, at any time and whatever
     the half stores; so she never uses one on one half only: whenever she submits a final state
     (copying it by R3, or her fast close with a final state Alice and Bob gave her), she
     submits it on both halves, one right after the other.
  R5 Finalize. After T + 2w and by T + 3w (a closing ledger channel waits for its half only until
     its settleBy, T + 3w), she executes FINALIZE on each half that is still live.
  R6 Ledger channels. When a ledger channel closes, she registers its half by D (R1) and
     finalizes it once the half has settled.

She may act later than R3 and R5 say only at her own risk: the directed tests show what a late
copy or a late FINALIZE costs her. And she must refuse to fund a γ with T + 3w beyond the funding
time + MAX_SETTLE_DELAY: MSContract caps a half's settleBy at its registration + MAX_SETTLE_DELAY,
and then no rule saves her (`test_a_validity_beyond_the_settle_delay_cap_lets_an_end_make_ingrid_pay`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from perun import errors
from perun.chain.backend import ETHER
from perun.chain.channels import Receipt
from perun.core.apps import AppState, Context
from perun.core.apps import virtualchannel as vc
from perun.core.apps.virtualchannel import FINALIZE, SETTLE, SIDE_A, SIDE_B, VirtualChannel, VirtualState
from perun.core.channel import Params, Phase
from perun.core.multistate import ChannelState, NanocontractState, nanocontract_id
from tests.conftest import DELTA, MSWorld, examples

W = 3 * DELTA  # γ's window
LEAD = 10 * DELTA  # from γ's funding to its validity
MAX_SETTLE_DELAY = 365 * 24 * 3600  # MSContract.MAX_SETTLE_DELAY
DEPOSITS = (5 * ETHER, 4 * ETHER, 6 * ETHER, 3 * ETHER)  # Alice in a, Ingrid in a, Ingrid in b, Bob in b
CASH = (3 * ETHER, 2 * ETHER)  # γ's cashAlice, cashBob
_nonces = itertools.count(7_000_000)


# ------------------------------------------------------------------------------ time

# As in test_ms_properties: py-evm's deep call chains run about twice as fast from a thread with a
# shallow stack (CPython 3.11 maps and unmaps frame-stack chunks at the depth pytest leaves).
_chain_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="virtual-ledgers-chain")


def on_chain_thread(fn, *args):
    """fn(*args), run on the chain thread; what it raises is raised here."""
    return _chain_thread.submit(fn, *args).result()


def pending(w: MSWorld) -> int:
    """The timestamp the next transaction gets (a refused call mines nothing)."""
    return w.chain.w3.eth.get_block("pending")["timestamp"]


def at(w: MSWorld, t: int) -> None:
    """The next transaction runs at exactly `t`."""
    now = pending(w)
    assert t >= now, f"time {t} is past: the next block is at {now}"
    if t > now:
        w.chain.set_next_block_timestamp(t)


# ------------------------------------------------------------------------------ the setup


@dataclass
class Ledger:
    """A ledger channel: its parties by role, and γ's half in it."""

    name: str
    params: Params
    cid: bytes
    parties: tuple[LocalAccount, LocalAccount]  # (Params.alice, Params.bob)
    end: LocalAccount | None = None  # γ's end here: Alice in a, Bob in b
    half: NanocontractState | None = None  # version 0, signed by both at funding
    state: ChannelState | None = None  # version 1: the one funding the half

    def role(self, who: LocalAccount) -> int:
        roles = [i for i, p in enumerate(self.parties) if p.address == who.address]
        assert roles, f"{who.address} is no party of ledger channel {self.name}"
        return roles[0]

    def other(self, who: LocalAccount) -> LocalAccount:
        return self.parties[1 - self.role(who)]

    @property
    def end_role(self) -> int:
        return self.role(self.end)

    @property
    def ingrid(self) -> LocalAccount:
        return self.parties[1 - self.end_role]

    @property
    def nid(self) -> bytes:
        return self.half.nid

    def deposit(self, who: LocalAccount) -> int:
        return (self.params.deposit_alice, self.params.deposit_bob)[self.role(who)]


def virtual_channel_app(w: MSWorld) -> str:
    """The VirtualChannel app's address: the world's, or one deployed now (after the fixture's
    snapshot, so reverted with it)."""
    return w.apps.get("VirtualChannel") or w.chain.deploy(w.chain.dev_accounts[0], "VirtualChannel")


class Gamma:
    """γ between Alice and Bob through Ingrid, its halves funded (off chain) in two ledger
    channels opened on chain; the chain actions of the tests, and what Ingrid sees."""

    def __init__(self, w: MSWorld, *, alice_leads_a: bool = True, ingrid_leads_b: bool = True,
                 deposits: tuple[int, int, int, int] = DEPOSITS, cash: tuple[int, int] = CASH,
                 lead: int = LEAD, window: int = W, app: str | None = None) -> None:
        self.w = w
        self.alice, self.bob, self.ingrid = w.alice, w.bob, w.mallory
        self.app = app or virtual_channel_app(w)
        self.mirror = VirtualChannel.at(w.chain.chain_id, self.app)
        self.first_block = w.chain.block_number() + 1
        dep_alice, dep_ingrid_a, dep_ingrid_b, dep_bob = deposits
        self.a = self._open("a", (self.alice, dep_alice), (self.ingrid, dep_ingrid_a), alice_leads_a)
        self.b = self._open("b", (self.ingrid, dep_ingrid_b), (self.bob, dep_bob), ingrid_leads_b)
        self.held = w.chain.balance(w.contract.address)
        self.cash_alice, self.cash_bob = cash
        self.total = self.cash_alice + self.cash_bob
        self.validity = pending(w) + lead
        self.window = window
        nonce = next(_nonces)
        for ledger, side, end in ((self.a, SIDE_A, self.alice), (self.b, SIDE_B, self.bob)):
            ledger.end = end
            storage = vc.initial(self.alice.address, self.ingrid.address, self.bob.address, self.a.cid, self.b.cid,
                                 self.cash_alice, self.cash_bob, self.validity, window, nonce, side, ledger.role(end))
            self.mirror.check_initial(storage)  # what both parties of the ledger channel check before signing
            ledger.half = NanocontractState.create(ledger.cid, nanocontract_id(ledger.cid, 1), self.app, storage)
            ledger.state = ChannelState.initial(ledger.params, ledger.cid).fund(ledger.half)
        self.id = vc.decode(self.a.half.storage).id
        assert vc.decode(self.b.half.storage).id == self.id
        self.domain = vc.virtual_domain(w.chain.chain_id, self.app)
        self.paid: dict[str, int] = {}  # address -> what the Finalized events gave it

    def _open(self, name: str, first: tuple[LocalAccount, int], second: tuple[LocalAccount, int],
              first_leads: bool) -> Ledger:
        (p0, d0), (p1, d1) = (first, second) if first_leads else (second, first)
        params = Params(p0.address, p1.address, d0, d1, DELTA, next(_nonces))
        self.w.contract.create(p0, params)
        self.w.contract.confirm(p1, params)
        return Ledger(name, params, self.w.contract.channel_id(params), (p0, p1))

    @property
    def ledgers(self) -> tuple[Ledger, Ledger]:
        return self.a, self.b

    # -------------------------------------------------------------------- γ's states

    def state(self, version: int, balance_alice: int, final: bool = False) -> VirtualState:
        return VirtualState(self.id, version, balance_alice, self.total - balance_alice, final)

    def z(self, state: VirtualState) -> bytes:
        """SETTLE's argument: `state` signed by Alice and Bob."""
        return vc.settle_arg(state, vc.sign_virtual(self.domain, state, self.alice.key),
                             vc.sign_virtual(self.domain, state, self.bob.key))

    # -------------------------------------------------------------------- chain actions

    def register(self, ledger: Ledger, by: LocalAccount, t: int | None = None) -> dict:
        """`by` registers the half (version 0) with its counterparty's signature; the event's args."""
        if t is not None:
            at(self.w, t)
        now = pending(self.w)
        receipt = self.w.contract.register(by, ledger.params, ledger.half, self.w.sign(ledger.half, ledger.other(by)))
        args = receipt.event("NanocontractRegistered").args
        assert args["windowEnd"] == now + DELTA
        assert args["settleBy"] == min(self.validity + 3 * self.window, now + MAX_SETTLE_DELAY)
        return args

    def execute(self, ledger: Ledger, by: LocalAccount, fun: int, z: bytes = b"", t: int | None = None) -> Receipt:
        """`by` executes `fun` of the half at `t`. What the app answers must be what the mirror
        answers from the registered state, with `by`'s role as caller and the block's time."""
        if t is not None:
            at(self.w, t)
        now = pending(self.w)
        nc = self.w.contract.nanocontract(ledger.cid, ledger.nid)
        stored = AppState(nc.blocked_alice, nc.blocked_bob, nc.released_alice, nc.released_bob, nc.storage)
        ctx = Context(ledger.role(by), now, nc.since)
        try:
            receipt = self.w.contract.execute(by, ledger.params, ledger.nid, fun, z)
        except errors.AppRejected as exc:  # MSContract's own refusals come before the app runs
            with pytest.raises(type(exc)) as mirrored:
                self.mirror.transition(ctx, fun, z, stored)
            assert str(mirrored.value) == str(exc)
            raise
        args = receipt.event("NanocontractExecuted").args
        result = self.mirror.transition(ctx, fun, z, stored)
        assert (args["blockedAlice"], args["blockedBob"], args["releasedAlice"], args["releasedBob"],
                args["data"]) == result.as_abi()
        assert (args["by"], args["fun"], args["version"]) == (by.address, fun, nc.version + 1)
        assert self.w.chain.w3.eth.get_block(receipt.transaction.block_number)["timestamp"] == now
        return receipt

    def settle(self, ledger: Ledger, by: LocalAccount, z: bytes, t: int | None = None) -> Receipt:
        return self.execute(ledger, by, SETTLE, z, t)

    def finalize_half(self, ledger: Ledger, by: LocalAccount, t: int | None = None) -> Receipt:
        return self.execute(ledger, by, FINALIZE, b"", t)

    def close(self, ledger: Ledger, by: LocalAccount, t: int | None = None) -> int:
        """`by` closes the ledger channel with state 1 (listing the half); its deadline D."""
        if t is not None:
            at(self.w, t)
        now = pending(self.w)
        receipt = self.w.contract.close(by, ledger.params, ledger.state, self.w.sign(ledger.state, ledger.other(by)))
        args = receipt.event("CloseRegistered").args
        f = ledger.state.nanocontracts[0]
        assert args["nanocontracts"] == ({"nid": f.nid, "alice": f.alice, "bob": f.bob},)
        assert args["deadline"] == now + DELTA
        return args["deadline"]

    def finalize(self, ledger: Ledger, t: int | None = None) -> tuple[int, int]:
        """Anyone pays the ledger channel out; its Finalized payouts, recorded by party."""
        if t is not None:
            at(self.w, t)
        receipt = self.w.contract.finalize(self.w.chain.dev_accounts[0], ledger.params, ledger.state.nanocontracts)
        args = receipt.event("Finalized").args
        payouts = (args["payoutAlice"], args["payoutBob"])
        assert args["channelId"] == ledger.cid and sum(payouts) == ledger.params.total  # conserved
        assert self.w.contract.channel(ledger.cid).phase == Phase.CLOSED
        for who, amount in zip(ledger.parties, payouts):
            self.paid[who.address] = self.paid.get(who.address, 0) + amount
        return payouts

    # -------------------------------------------------------------------- what Ingrid sees

    def stored(self, ledger: Ledger) -> tuple[int, int] | None:
        """The (version, balanceAlice) the registered half stores; None once it has settled."""
        nc = self.w.contract.nanocontract(ledger.cid, ledger.nid)
        assert nc.registered
        if nc.blocked_alice == 0 and nc.blocked_bob == 0:
            return None
        decoded = vc.decode(nc.storage)
        return decoded.version, decoded.balance_alice

    def seen(self) -> dict[tuple[int, int], bytes]:
        """R2: every γ state submitted to either half, (version, balanceAlice) -> z, read from the
        calldata of the execute transactions (NanocontractExecuted holds only the new storage)."""
        known: dict[tuple[int, int], bytes] = {}
        for ev in self.w.contract.events(self.first_block):
            if ev.name != "NanocontractExecuted" or ev.args["fun"] != SETTLE:
                continue
            if (ev.args["channelId"], ev.args["nid"]) not in ((self.a.cid, self.a.nid), (self.b.cid, self.b.nid)):
                continue
            tx = self.w.chain.w3.eth.get_transaction(ev.tx_hash)
            fn, args = self.w.contract.contract.decode_function_input(tx["input"])
            assert fn.fn_name == "execute" and args["fun"] == SETTLE
            z = bytes(args["z"])
            signed = vc.decode_settle_arg(z)
            # A final and a non-final twin with the same balances are as good as each other here.
            known.setdefault((signed.version, signed.balance_alice), z)
        return known

    def ingrid_plan(self) -> list[tuple[Ledger, bytes]]:
        """R3 and R4 from what the chain shows: the submissions (half, z) Ingrid makes now."""
        sa, sb = self.stored(self.a), self.stored(self.b)
        if sa is None or sb is None or sa == sb:
            # A settled half: by her own final state (R4 settles the other with it too) or by
            # FINALIZE, after T + 2w, when nothing can be copied any more.
            return []
        top, target, source = (sa, self.b, self.a) if sa[0] >= sb[0] else (sb, self.a, self.b)
        z = self.seen()[top]
        return [(target, z), (source, z)] if vc.decode_settle_arg(z).final else [(target, z)]

    def ingrid_copies(self, t: int | None = None) -> list[Receipt]:
        """Ingrid runs R3 and R4 at `t` (and the seconds after, one transaction each)."""
        receipts = []
        for ledger, z in self.ingrid_plan():
            receipts.append(self.settle(ledger, ledger.ingrid, z, t))
            t = None
        return receipts

    # -------------------------------------------------------------------- the payouts

    def assert_outcome(self, balance_alice: int) -> None:
        """Both ledger channels are paid out: Ingrid got exactly her two deposits; Alice and Bob
        got theirs less γ's cash plus γ's balances (balance_alice, total - balance_alice)."""
        a, b = self.a, self.b
        assert self.paid == {
            self.alice.address: a.deposit(self.alice) - self.cash_alice + balance_alice,
            self.ingrid.address: a.deposit(self.ingrid) + b.deposit(self.ingrid),
            self.bob.address: b.deposit(self.bob) - self.cash_bob + (self.total - balance_alice),
        }
        assert self.w.chain.balance(self.w.contract.address) == self.held - a.params.total - b.params.total


def rejects(call, cls: type[errors.ContractRejected], **fields: object) -> None:
    with pytest.raises(cls) as info:
        call()
    assert type(info.value) is cls
    assert info.value.fields == fields


ORIENTATIONS = {  # (Alice is a's Params.alice, Ingrid is b's Params.alice)
    "a=Alice,Ingrid;b=Ingrid,Bob": (True, True), "a=Ingrid,Alice;b=Bob,Ingrid": (False, False),
    "a=Alice,Ingrid;b=Bob,Ingrid": (True, False), "a=Ingrid,Alice;b=Ingrid,Bob": (False, True),
}
# The first two put each party in each role of its ledger channel once: for the tests with more parameters.
CROSSED = dict(itertools.islice(ORIENTATIONS.items(), 2))


def _gamma(w: MSWorld, orientation: tuple[bool, bool]) -> Gamma:
    alice_leads_a, ingrid_leads_b = orientation
    return on_chain_thread(lambda: Gamma(w, alice_leads_a=alice_leads_a, ingrid_leads_b=ingrid_leads_b))


@pytest.fixture(params=list(ORIENTATIONS.values()), ids=list(ORIENTATIONS))
def gamma(ms_world: MSWorld, request: pytest.FixtureRequest) -> Gamma:
    """γ in both ledger channels, in each of the four orientations (who is each ledger channel's
    Params.alice)."""
    return _gamma(ms_world, request.param)


@pytest.fixture(params=list(CROSSED.values()), ids=list(CROSSED))
def crossed(ms_world: MSWorld, request: pytest.FixtureRequest) -> Gamma:
    """γ in two orientations that put each party in each role of its ledger channel once."""
    return _gamma(ms_world, request.param)


def chain_thread(test):
    """Runs the test's body on the chain thread."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        return on_chain_thread(lambda: test(*args, **kwargs))
    return run


def register_both(g: Gamma, by_a: LocalAccount | None = None, by_b: LocalAccount | None = None) -> None:
    """R1, well before validity: ν_a by `by_a` (Alice), ν_b by `by_b` (Bob)."""
    t = g.validity - 5 * DELTA
    g.register(g.a, by_a or g.alice, t)
    g.register(g.b, by_b or g.bob, t + 1)


def close_and_finalize_both(g: Gamma, closer_a: LocalAccount, closer_b: LocalAccount) -> None:
    """Both ledger channels closed with state 1 and paid out right after their deadlines (their
    halves have settled); at a deadline itself finalize is too early."""
    d_a = g.close(g.a, closer_a, max(pending(g.w), g.validity + 2 * g.window + 10))
    d_b = g.close(g.b, closer_b)
    at(g.w, d_a)
    rejects(lambda: g.finalize(g.a), errors.ChannelsFinalizeTooEarly, deadline=d_a)
    g.finalize(g.a, d_a + 1)
    g.finalize(g.b, d_b + 1)


# Off chain, Alice pays Bob three times: (version, balanceAlice) of γ, the last the latest.
def history(g: Gamma) -> list[VirtualState]:
    return [g.state(1, g.cash_alice - ETHER // 2), g.state(2, g.cash_alice - ETHER),
            g.state(3, g.cash_alice - 5 * ETHER // 4)]


# ------------------------------------------------------------------------------ directed paths


@chain_thread
def test_the_fallback_after_validity(gamma: Gamma) -> None:
    """Alice submits γ's latest state on ν_a; Ingrid copies it to ν_b; both FINALIZEd after
    T + 2w; both ledger channels closed and paid out."""
    g = gamma
    latest = history(g)[-1]
    register_both(g)
    # Before T an end's state is too early, even a final one.
    rejects(lambda: g.settle(g.a, g.alice, g.z(latest), g.validity), errors.VirtualChannelTooEarly,
            until=g.validity)
    rejects(lambda: g.settle(g.a, g.alice, g.z(g.state(4, latest.balance_alice, final=True)), g.validity),
            errors.VirtualChannelTooEarly, until=g.validity)
    g.settle(g.a, g.alice, g.z(latest), g.validity + 1)
    assert g.stored(g.a) == (3, latest.balance_alice) and g.stored(g.b) == (0, g.cash_alice)
    # What Ingrid learned is exactly Alice's submission, from its calldata.
    assert g.seen() == {(3, latest.balance_alice): g.z(latest)}
    [copy] = g.ingrid_copies(g.validity + g.window + 1)
    assert copy.event("NanocontractExecuted").args["channelId"] == g.b.cid
    assert g.stored(g.b) == g.stored(g.a)
    rejects(lambda: g.finalize_half(g.a, g.ingrid, g.validity + 2 * g.window), errors.VirtualChannelTooEarly,
            until=g.validity + 2 * g.window)
    g.finalize_half(g.a, g.alice, g.validity + 2 * g.window + 1)
    g.finalize_half(g.b, g.bob)
    assert g.stored(g.a) is None and g.stored(g.b) is None
    close_and_finalize_both(g, g.ingrid, g.bob)
    g.assert_outcome(latest.balance_alice)


@pytest.mark.parametrize("copy_at", [W + 1, 2 * W], ids=["after the ends' window", "at Ingrid's last second"])
@chain_thread
def test_a_stale_state_is_replaced_by_ingrids_copy(crossed: Gamma, copy_at: int) -> None:
    """Bob submits an older state on ν_b first; Alice the latest on ν_a; Ingrid copies the latest
    to ν_b within her window; both halves settle with the latest."""
    g = crossed
    stale, _, latest = history(g)
    register_both(g)
    g.settle(g.b, g.bob, g.z(stale), g.validity + 1)
    g.settle(g.a, g.alice, g.z(latest), g.validity + 2)
    # Bob cannot go back, nor repeat his version, and Ingrid cannot go below what a half stores.
    rejects(lambda: g.settle(g.b, g.bob, g.z(stale)), errors.VirtualChannelStaleVersion, stored=1, submitted=1)
    rejects(lambda: g.settle(g.a, g.ingrid, g.z(stale)), errors.VirtualChannelStaleVersion, stored=3, submitted=1)
    assert g.ingrid_plan() == [(g.b, g.z(latest))]
    g.ingrid_copies(g.validity + copy_at)
    assert g.stored(g.a) == g.stored(g.b) == (3, latest.balance_alice)
    g.finalize_half(g.b, g.bob, g.validity + 2 * g.window + 1)
    g.finalize_half(g.a, g.ingrid)
    close_and_finalize_both(g, g.alice, g.ingrid)
    g.assert_outcome(latest.balance_alice)


@chain_thread
def test_ingrid_copying_too_late_leaves_the_halves_apart(ms_world: MSWorld) -> None:
    """R3's deadline matters: at T + 2w + 1 Ingrid's copy is refused, each half releases what it
    stores, and Ingrid ends with the difference between the two states (here a gain, paid by
    Bob, who left his own stale state standing)."""
    g = Gamma(ms_world)
    stale, _, latest = history(g)
    register_both(g)
    g.settle(g.b, g.bob, g.z(stale), g.validity + 1)
    g.settle(g.a, g.alice, g.z(latest), g.validity + 2)
    rejects(lambda: g.ingrid_copies(g.validity + 2 * g.window + 1), errors.VirtualChannelSubmissionOver,
            deadline=g.validity + 2 * g.window)
    g.finalize_half(g.a, g.ingrid)
    g.finalize_half(g.b, g.ingrid)
    close_and_finalize_both(g, g.alice, g.bob)
    ingrid = g.a.deposit(g.ingrid) + g.b.deposit(g.ingrid)
    assert g.paid[g.ingrid.address] == ingrid + stale.balance_alice - latest.balance_alice
    assert g.paid[g.alice.address] == g.a.deposit(g.alice) - g.cash_alice + latest.balance_alice
    assert g.paid[g.bob.address] == g.b.deposit(g.bob) - g.cash_bob + stale.balance_bob


@pytest.mark.parametrize("silent", ["Alice", "Bob"])
@chain_thread
def test_an_end_silent_at_validity(gamma: Gamma, silent: str) -> None:
    """One end never acts after funding. The other submits the latest state at the last second of
    its window; only Ingrid acts on the silent end's ledger channel: she registers its half, copies
    the state she saw, FINALIZEs, closes (with the signature she got at funding) and finalizes."""
    g = gamma
    latest = history(g)[-1]
    talker, quiet = (g.bob, g.a) if silent == "Alice" else (g.alice, g.b)
    talking = g.b if quiet is g.a else g.a
    t = g.validity - 5 * DELTA
    g.register(talking, talker, t)
    g.register(quiet, g.ingrid, t + 1)
    g.settle(talking, talker, g.z(latest), g.validity + g.window)
    rejects(lambda: g.settle(talking, talker, g.z(g.state(4, 0))), errors.VirtualChannelSubmissionOver,
            deadline=g.validity + g.window)
    [copy] = g.ingrid_copies()
    assert copy.event("NanocontractExecuted").args["channelId"] == quiet.cid
    g.finalize_half(quiet, g.ingrid, g.validity + 2 * g.window + 1)
    g.finalize_half(talking, g.ingrid)
    d_quiet = g.close(quiet, g.ingrid)
    d_talking = g.close(talking, talker)
    g.finalize(quiet, d_quiet + 1)
    g.finalize(talking, d_talking + 1)
    g.assert_outcome(latest.balance_alice)
    silent_end = quiet.end
    acts = [ev for ev in g.w.contract.events(g.first_block) if ev.args.get("channelId") == quiet.cid
            and "by" in ev.args]
    assert {ev.name for ev in acts} == {"NanocontractRegistered", "NanocontractExecuted", "CloseRegistered"}
    assert all(ev.args["by"] == g.ingrid.address != silent_end.address for ev in acts)


@chain_thread
def test_ingrids_fast_close(gamma: Gamma) -> None:
    """Before T, Alice and Bob give Ingrid a final state; she settles both halves with it (off
    chain a nanocontract update; here on chain, caller Ingrid). An end cannot settle with a final
    state before T; once settled, nothing executes; both ledger channels pay out before T."""
    g = gamma
    t = g.validity - 5 * DELTA
    g.register(g.a, g.ingrid, t)
    g.register(g.b, g.ingrid, t + 1)
    final = g.state(4, g.cash_alice - 3 * ETHER // 2, final=True)
    at(g.w, t + DELTA + 2)  # both windows over
    rejects(lambda: g.settle(g.a, g.alice, g.z(final)), errors.VirtualChannelTooEarly, until=g.validity)
    rejects(lambda: g.settle(g.b, g.bob, g.z(final)), errors.VirtualChannelTooEarly, until=g.validity)
    for ledger in g.ledgers:
        args = g.settle(ledger, ledger.ingrid, g.z(final)).event("NanocontractExecuted").args
        assert (args["blockedAlice"], args["blockedBob"]) == (0, 0)
        assert g.stored(ledger) is None
    rejects(lambda: g.settle(g.b, g.bob, g.z(g.state(5, 0))), errors.MSContractTerminated, nid=g.b.nid)
    rejects(lambda: g.finalize_half(g.a, g.ingrid), errors.MSContractTerminated, nid=g.a.nid)
    d_a = g.close(g.a, g.alice)
    d_b = g.close(g.b, g.ingrid)
    g.finalize(g.a, d_a + 1)
    g.finalize(g.b, d_b + 1)
    assert g.w.chain.timestamp() < g.validity
    g.assert_outcome(final.balance_alice)


@pytest.mark.parametrize("offset", [-1, 0, 1])
@chain_thread
def test_ingrid_closes_ledger_a_while_gamma_is_live(crossed: Gamma, offset: int) -> None:
    """Ingrid closes a before T. The close lists ν_a; Alice registers it; a's finalize is refused
    until γ settles, at the latest until ν_a's settlement end T + 3w (its settleBy). Meanwhile
    Alice and Bob go on paying; after T both submit the latest, ν_b is FINALIZEd, and ν_a at its
    settlement end − 1 or at it (then a pays out, Ingrid neutral), or one second after it, when
    MSContract refuses: a pays ν_a's predefined distribution and Ingrid, having missed R5, pays
    what Alice paid Bob through γ."""
    g = crossed
    g.register(g.b, g.bob, g.validity - 8 * DELTA)
    t_close = g.validity - 5 * DELTA
    deadline = g.close(g.a, g.ingrid, t_close)
    assert g.register(g.a, g.alice, t_close + 1)["settleBy"] == g.validity + 3 * g.window
    end = g.validity + 3 * g.window  # max(D + Δ, settleBy)
    at(g.w, deadline)
    rejects(lambda: g.finalize(g.a), errors.ChannelsFinalizeTooEarly, deadline=deadline)
    at(g.w, deadline + DELTA + 1)  # past D + Δ: the settlement end without settleBy
    rejects(lambda: g.finalize(g.a), errors.ChannelsFinalizeTooEarly, deadline=end)
    latest = history(g)[-1]  # signed off chain after the close
    g.settle(g.a, g.alice, g.z(latest), g.validity + 1)
    g.settle(g.b, g.bob, g.z(latest), g.validity + 2)
    assert g.ingrid_plan() == []
    at(g.w, g.validity + 2 * g.window)
    rejects(lambda: g.finalize(g.a), errors.ChannelsFinalizeTooEarly, deadline=end)
    g.finalize_half(g.b, g.bob, g.validity + 2 * g.window + 1)
    at(g.w, end + offset)
    if offset <= 0:
        rejects(lambda: g.finalize(g.a), errors.ChannelsFinalizeTooEarly, deadline=end)
        g.finalize_half(g.a, g.ingrid)
        g.finalize(g.a)
    else:
        rejects(lambda: g.finalize_half(g.a, g.ingrid), errors.MSContractSettlementOver, deadline=end)
        g.finalize(g.a)
    d_b = g.close(g.b, g.ingrid)
    g.finalize(g.b, d_b + 1)
    if offset <= 0:
        g.assert_outcome(latest.balance_alice)
    else:
        ingrid = g.a.deposit(g.ingrid) + g.b.deposit(g.ingrid)
        assert g.paid == {g.alice.address: g.a.deposit(g.alice),  # ν_a's blocked back: γ's cash
                          g.ingrid.address: ingrid - (g.cash_alice - latest.balance_alice),
                          g.bob.address: g.b.deposit(g.bob) - g.cash_bob + latest.balance_bob}


COLLUSIONS = ["two final states", "two states of one version", "a higher state at the end's last second",
              "a final state, then a higher one"]


@pytest.mark.parametrize("kind", COLLUSIONS)
@chain_thread
def test_colluding_ends_cannot_make_ingrid_pay(crossed: Gamma, kind: str) -> None:
    """Alice and Bob sign conflicting states and submit one on each half; Ingrid, following R3
    and R4, still settles both halves with one state and ends with her deposits."""
    g = crossed
    v, total = g.validity, g.total
    register_both(g)
    x, y = 1, total - 1  # Alice's balance in the state on ν_a, and in the one on ν_b
    if kind == "two final states":
        g.settle(g.a, g.alice, g.z(g.state(5, x, final=True)), v + 1)
        g.settle(g.b, g.bob, g.z(g.state(5, y, final=True)), v + 2)
        # From an end a final state is only stored.
        assert g.stored(g.a) == (5, x) and g.stored(g.b) == (5, y)
        plan = g.ingrid_plan()
        assert plan == [(g.b, g.z(g.state(5, x, final=True))), (g.a, g.z(g.state(5, x, final=True)))]
        g.ingrid_copies(v + g.window + 1)
        assert g.stored(g.a) is None and g.stored(g.b) is None
        outcome = x
    elif kind == "two states of one version":
        g.settle(g.a, g.alice, g.z(g.state(5, x)), v + 1)
        g.settle(g.b, g.bob, g.z(g.state(5, y)), v + 2)
        g.ingrid_copies(v + g.window + 1)  # ν_a's onto ν_b: an equal version overwrites
        outcome = x
    elif kind == "a higher state at the end's last second":
        g.settle(g.a, g.alice, g.z(g.state(5, x)), v + 1)
        g.ingrid_copies(v + 2)  # eagerly
        g.settle(g.b, g.bob, g.z(g.state(6, y)), v + g.window)
        rejects(lambda: g.settle(g.a, g.alice, g.z(g.state(7, x))), errors.VirtualChannelSubmissionOver,
                deadline=v + g.window)
        g.ingrid_copies()  # at T + w + 1: ν_b's version 6 onto ν_a
        outcome = y
    else:
        final = g.state(5, x, final=True)
        g.settle(g.a, g.alice, g.z(final), v + 1)
        g.settle(g.b, g.ingrid, g.z(final), v + 2)  # R4's first half: ν_b settles at once
        g.settle(g.a, g.alice, g.z(g.state(6, y)), v + 3)  # ν_a is still live for Alice
        assert g.stored(g.a) == (6, y)
        g.settle(g.a, g.ingrid, g.z(final), v + 4)  # R4's second half: whatever ν_a stores
        rejects(lambda: g.settle(g.b, g.bob, g.z(g.state(7, y))), errors.MSContractTerminated, nid=g.b.nid)
        outcome = x
    assert g.ingrid_plan() == []
    for ledger in g.ledgers:
        if g.stored(ledger) is not None:
            g.finalize_half(ledger, ledger.end, max(pending(g.w), v + 2 * g.window + 1))
    close_and_finalize_both(g, g.alice, g.bob)
    g.assert_outcome(outcome)


@chain_thread
def test_a_validity_beyond_the_settle_delay_cap_lets_an_end_make_ingrid_pay(ms_world: MSWorld) -> None:
    """A design hazard, pinned here: MSContract caps a half's settleBy at its registration +
    MAX_SETTLE_DELAY. For a γ whose T + 3w lies beyond that, Alice registers ν_a at once (its
    settleBy capped), closes a and, after the cap but before T, finalizes it with ν_a's predefined
    distribution: γ's cash back to her, although she has paid Bob since. After T Bob submits the
    latest state on ν_b; Ingrid, following R1-R6, can copy nothing to the closed a, and pays Bob
    what Alice paid him. (Symmetrically Ingrid could close a herself and keep what Bob paid
    Alice.) No watcher rule helps; Ingrid must refuse to fund such a γ: T + 3w must be at most
    the funding time + MAX_SETTLE_DELAY (no registration can come earlier than the funding)."""
    g = Gamma(ms_world, lead=MAX_SETTLE_DELAY + 30 * 24 * 3600)
    latest = history(g)[-1]
    t = pending(g.w)
    assert g.register(g.a, g.alice, t)["settleBy"] == t + MAX_SETTLE_DELAY < g.validity
    g.register(g.b, g.ingrid, t + 1)  # R1, by Ingrid
    g.close(g.a, g.alice, t + 2)
    at(g.w, t + MAX_SETTLE_DELAY)
    rejects(lambda: g.finalize(g.a), errors.ChannelsFinalizeTooEarly, deadline=t + MAX_SETTLE_DELAY)
    g.finalize(g.a, t + MAX_SETTLE_DELAY + 1)  # ν_a live, past its (capped) settlement end
    assert g.w.chain.timestamp() < g.validity
    g.settle(g.b, g.bob, g.z(latest), g.validity + 1)
    assert g.ingrid_plan() == [(g.a, g.z(latest))]
    rejects(lambda: g.ingrid_copies(g.validity + g.window + 1), errors.ChannelsWrongPhase, channelId=g.a.cid,
            phase=Phase.CLOSED)
    g.finalize_half(g.b, g.ingrid, g.validity + 2 * g.window + 1)
    d_b = g.close(g.b, g.ingrid)
    g.finalize(g.b, d_b + 1)
    shortfall = g.cash_alice - latest.balance_alice  # what Alice paid Bob through γ
    assert shortfall > 0
    assert g.paid == {g.alice.address: g.a.deposit(g.alice),  # she paid nothing
                      g.ingrid.address: g.a.deposit(g.ingrid) + g.b.deposit(g.ingrid) - shortfall,
                      g.bob.address: g.b.deposit(g.bob) - g.cash_bob + latest.balance_bob}  # he was paid


# ------------------------------------------------------------------------------ the property

Rejection = tuple[type[errors.ContractRejected], dict] | None  # None: the call succeeds


@dataclass
class HalfModel:
    version: int
    balance_alice: int
    window_end: int = 0  # 0: not registered
    settle_by: int = 0
    released: int | None = None  # the balanceAlice the half settled with


@dataclass
class LedgerModel:
    phase: Phase = Phase.OPEN
    deadline: int = 0


class Model:
    """MSContract's and VirtualChannel's rules as §10.3 and §11 state them, written here from the
    spec: whether a call succeeds or with which error it fails, and what a ledger channel pays."""

    def __init__(self, g: Gamma) -> None:
        self.g = g
        self.halves = {ledger.name: HalfModel(0, g.cash_alice) for ledger in g.ledgers}
        self.chans = {ledger.name: LedgerModel() for ledger in g.ledgers}

    def split(self, ledger: Ledger, balance_alice: int) -> tuple[int, int]:
        """What a half releases to the ledger channel's Params.alice and Params.bob when γ has
        balances (balance_alice, total - balance_alice): ν_a gives Alice's balance to Alice and
        Bob's to Ingrid, ν_b Alice's to Ingrid and Bob's to Bob. With γ's cash: what it blocks."""
        balance_bob = self.g.total - balance_alice
        to_end, to_ingrid = (balance_alice, balance_bob) if ledger is self.g.a else (balance_bob, balance_alice)
        return (to_end, to_ingrid) if ledger.end_role == 0 else (to_ingrid, to_end)

    def settlement_end(self, ledger: Ledger) -> int:
        return max(self.chans[ledger.name].deadline + DELTA, self.halves[ledger.name].settle_by)

    def register(self, ledger: Ledger, t: int) -> Rejection:
        h, c = self.halves[ledger.name], self.chans[ledger.name]
        assert h.window_end == 0  # the runner registers a half once
        if c.phase == Phase.CLOSED:
            return errors.ChannelsWrongPhase, {"channelId": ledger.cid, "phase": c.phase}
        if c.phase == Phase.CLOSING and t > c.deadline:
            return errors.ChannelsDisputeWindowOver, {"deadline": c.deadline}
        h.window_end = t + DELTA
        h.settle_by = min(self.g.validity + 3 * self.g.window, t + MAX_SETTLE_DELAY)
        return None

    def execute(self, ledger: Ledger, by_end: bool, fun: int, z: bytes, t: int) -> Rejection:
        g, h, c = self.g, self.halves[ledger.name], self.chans[ledger.name]
        validity, window = g.validity, g.window
        if c.phase == Phase.CLOSED:
            return errors.ChannelsWrongPhase, {"channelId": ledger.cid, "phase": c.phase}
        if h.window_end == 0:
            return errors.MSContractNotRegistered, {"nid": ledger.nid}
        if c.phase == Phase.CLOSING and t > self.settlement_end(ledger):
            return errors.MSContractSettlementOver, {"deadline": self.settlement_end(ledger)}
        if t <= h.window_end:
            return errors.MSContractWindowOpen, {"nid": ledger.nid, "windowEnd": h.window_end}
        if h.released is not None:
            return errors.MSContractTerminated, {"nid": ledger.nid}
        if fun == FINALIZE:
            if t <= validity + 2 * window:
                return errors.VirtualChannelTooEarly, {"until": validity + 2 * window}
            h.released = h.balance_alice
            return None
        s = vc.decode_settle_arg(z)
        if s.final and not by_end:  # Ingrid's final state: at once, whatever the half stores
            h.version, h.balance_alice = s.version, s.balance_alice
            h.released = s.balance_alice
            return None
        if t <= validity:
            return errors.VirtualChannelTooEarly, {"until": validity}
        deadline = validity + (window if by_end else 2 * window)
        if t > deadline:
            return errors.VirtualChannelSubmissionOver, {"deadline": deadline}
        if s.version <= h.version if by_end else s.version < h.version:
            return errors.VirtualChannelStaleVersion, {"stored": h.version, "submitted": s.version}
        h.version, h.balance_alice = s.version, s.balance_alice
        return None

    def close(self, ledger: Ledger, t: int) -> Rejection:
        c = self.chans[ledger.name]
        assert c.phase == Phase.OPEN  # the runner closes a ledger channel once, with state 1
        c.phase, c.deadline = Phase.CLOSING, t + DELTA
        return None

    def finalize(self, ledger: Ledger, t: int) -> Rejection | tuple[int, int]:
        """The rejection, or the payouts to Params.alice and Params.bob."""
        h, c = self.halves[ledger.name], self.chans[ledger.name]
        if c.phase != Phase.CLOSING:
            return errors.ChannelsWrongPhase, {"channelId": ledger.cid, "phase": c.phase}
        if t <= c.deadline:
            return errors.ChannelsFinalizeTooEarly, {"deadline": c.deadline}
        settled = h.window_end != 0 and t > h.window_end and h.released is not None
        if not settled and t <= self.settlement_end(ledger):
            return errors.ChannelsFinalizeTooEarly, {"deadline": self.settlement_end(ledger)}
        c.phase = Phase.CLOSED
        blocked = self.split(ledger, self.g.cash_alice)
        # Released, or else the predefined distribution: what each blocked (as unregistered).
        part = blocked if h.released is None else self.split(ledger, h.released)
        deposits = (ledger.params.deposit_alice, ledger.params.deposit_bob)
        return tuple(d - b + p for d, b, p in zip(deposits, blocked, part))


@dataclass(frozen=True)
class Script:
    """One path: the setup, γ's history and who submits what when (offsets from T, or before it)."""

    alice_leads_a: bool
    ingrid_leads_b: bool
    cash: tuple[int, int]
    deposits: tuple[int, int, int, int]
    history: tuple[tuple[int, int, bool], ...]  # (version, balanceAlice, final), ascending; the last is the latest
    fork: tuple[int, int, bool] | None  # another state Alice and Bob signed: of the latest version, or the next
    ends: tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]  # Alice's, Bob's: (state, T + offset)
    registrations: tuple[tuple[str, int], tuple[str, int]]  # ν_a, ν_b: (by "end"/"ingrid", T - offset)
    early_closes: tuple[tuple[str, int] | None, tuple[str, int] | None]  # a, b: (by, T - offset)
    fast: int | None  # Ingrid's fast close with the latest (final) state, at T + offset
    eager: bool  # Ingrid also copies as soon as an end's submission leaves the halves apart
    copy_at: int  # R3's pass, at T + copy_at
    finalize_at: int  # R5, at T + finalize_at
    finalizers: tuple[str, str]  # who executes FINALIZE on ν_a, ν_b
    closers: tuple[str, str]  # who closes a, b at the end if still open


WHO = st.sampled_from(["end", "ingrid"])
# An end's submission: T + offset, around its window's ends (T and T + w + 1 are refused); Hypothesis
# favours the first value, so that comes first.
END_AT = st.sampled_from([W // 2, 1, W, 2, W - 1, W // 3, 0, W + 1])


@st.composite
def amounts(draw) -> int:
    return draw(st.integers(0, 20)) * draw(st.sampled_from([1, 10**9, ETHER])) + draw(st.integers(0, 3))


@st.composite
def scripts(draw) -> Script:
    cash = (draw(amounts()), draw(amounts()))
    if sum(cash) == 0:
        cash = (cash[0], 1)
    total = sum(cash)
    deposits = (cash[0] + draw(amounts()), cash[1] + draw(amounts()), cash[0] + draw(amounts()),
                cash[1] + draw(amounts()))
    steps = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    versions = list(itertools.accumulate(steps))
    history = tuple((v, draw(st.integers(0, total)), False) for v in versions)
    if draw(st.booleans()):  # the latest state is final: Alice and Bob closed γ
        history = history[:-1] + ((history[-1][0], history[-1][1], True),)
    latest = history[-1]
    fork = None
    if draw(st.booleans()):
        # Of the latest version, or the next: Alice and Bob colluding sign on even after a final state.
        fork = (latest[0] + draw(st.integers(0, 1)), (latest[1] + draw(st.integers(1, total))) % (total + 1),
                draw(st.booleans()))
    # An honest end submits its latest state (mostly) or stays silent.
    ends = [((("latest", draw(END_AT)),) if draw(st.sampled_from([True, True, True, False])) else ())
            for _ in "ab"]
    odd = draw(st.sampled_from([None, 0, 1]))  # an end that submits a stale or a forked state instead
    if odd is not None:
        kinds = ["stale", "stale, then latest"] if len(history) > 1 else []
        kinds += ["fork", "latest, then fork"] if fork else []
        if kinds:
            kind = draw(st.sampled_from(kinds))
            first, second = sorted(draw(st.lists(END_AT, min_size=2, max_size=2)))
            ends[odd] = {"stale": (("stale", first),), "stale, then latest": (("stale", first), ("latest", second)),
                         "fork": (("fork", first),), "latest, then fork": (("latest", first), ("fork", second))}[kind]
    registrations = tuple((draw(WHO), draw(st.sampled_from([DELTA + 10, 3 * DELTA, 8 * DELTA]))) for _ in "ab")
    closes = tuple(draw(st.one_of(st.none(), st.tuples(WHO, st.sampled_from([1, DELTA // 2, 5 * DELTA, 9 * DELTA]))))
                   for _ in "ab")
    fast = draw(st.sampled_from([None, None, -5, W // 2 + 1])) if latest[2] else None
    return Script(
        draw(st.booleans()), draw(st.booleans()), cash, deposits, history, fork, tuple(ends), registrations, closes,
        fast, draw(st.booleans()), draw(st.sampled_from([W + 1, W + 2, 2 * W - 1, 2 * W])),
        draw(st.sampled_from([2 * W + 1, 2 * W, 2 * W + 2, 3 * W - 1])), (draw(WHO), draw(WHO)), (draw(WHO), draw(WHO)))


class Runner:
    """Plays a script on the chain and in the model; every call's result must be the model's."""

    def __init__(self, w: MSWorld, script: Script, app: str) -> None:
        self.s = script
        self.g = g = Gamma(w, alice_leads_a=script.alice_leads_a, ingrid_leads_b=script.ingrid_leads_b,
                           deposits=script.deposits, cash=script.cash, app=app)
        self.m = Model(g)
        self.states = [g.state(*h) for h in script.history]
        self.latest = self.states[-1]
        self.fork = g.state(*script.fork) if script.fork else None
        self.submitted: list[tuple[str, VirtualState]] = []  # the ends' accepted submissions: (kind, state)
        self.stats: list[str] = []
        self.fast_done = False

    def now(self, t: int) -> int:
        """`t`, or the next second if `t` is past (a refused call takes no time)."""
        t = max(t, pending(self.g.w))
        at(self.g.w, t)
        return t

    def who(self, ledger: Ledger, party: str) -> LocalAccount:
        return ledger.end if party == "end" else ledger.ingrid

    def attempt(self, predicted: Rejection, call) -> bool:
        if predicted is None:
            call()
            return True
        rejects(call, predicted[0], **predicted[1])
        self.stats.append(f"refused: {predicted[0].__name__}")
        return False

    # -------------------------------------------------------------------- the actions

    def register(self, ledger: Ledger, by: LocalAccount, t: int) -> None:
        if self.m.halves[ledger.name].window_end:
            return  # the chain holds it already
        t = self.now(t)
        self.attempt(self.m.register(ledger, t), lambda: self.g.register(ledger, by))

    def execute(self, ledger: Ledger, by: LocalAccount, fun: int, z: bytes, t: int) -> bool:
        t = self.now(t)
        predicted = self.m.execute(ledger, by.address == ledger.end.address, fun, z, t)
        return self.attempt(predicted, lambda: self.g.execute(ledger, by, fun, z))

    def ingrid_acts(self, t: int) -> None:
        """R3 and R4 on what the chain shows: every submission of hers must succeed."""
        for ledger, z in self.g.ingrid_plan():
            assert self.execute(ledger, ledger.ingrid, SETTLE, z, t), "Ingrid's own rule failed her"
            self.stats.append("Ingrid copied" + (" a final state" if vc.decode_settle_arg(z).final else ""))

    def close(self, ledger: Ledger, party: str, t: int) -> None:
        t = self.now(t)
        self.attempt(self.m.close(ledger, t), lambda: self.g.close(ledger, self.who(ledger, party)))
        self.register(ledger, ledger.ingrid, t + 1)  # R1 and R6: by D

    def finalize(self, ledger: Ledger, t: int) -> None:
        t = self.now(t)
        predicted = self.m.finalize(ledger, t)
        if predicted is None or isinstance(predicted[0], int):
            assert self.g.finalize(ledger) == predicted
        else:
            self.attempt(predicted, lambda: self.g.finalize(ledger))

    # -------------------------------------------------------------------- the path

    def run(self) -> None:
        s, g = self.s, self.g
        v, window = g.validity, g.window
        plan: list[tuple[int, int, tuple]] = []
        for ledger, (party, before) in zip(g.ledgers, s.registrations):
            plan.append((v - before, 0, ("register", ledger, party)))
        for ledger, close in zip(g.ledgers, s.early_closes):
            if close:
                plan.append((v - close[1], 1, ("close", ledger, close[0])))
        if s.fast is not None:
            plan.append((v + s.fast, 2, ("fast",)))
        for ledger, moves in zip(g.ledgers, s.ends):
            for kind, offset in moves:
                plan.append((v + offset, 3, ("submit", ledger, kind)))
        plan.append((v + s.copy_at, 4, ("copy",)))
        for ledger, close in zip(g.ledgers, s.early_closes):
            if close:
                plan.append((v + 2 * window, 5, ("try finalize", ledger)))
        plan.append((v + s.finalize_at, 6, ("FINALIZE",)))
        plan.append((v + 3 * window, 7, ("pay out",)))
        for t, _, action in sorted(plan, key=lambda p: p[:2]):
            getattr(self, "do_" + action[0].replace(" ", "_"))(t, *action[1:])
        self.check()

    def do_register(self, t: int, ledger: Ledger, party: str) -> None:
        self.register(ledger, self.who(ledger, party), t)

    def do_close(self, t: int, ledger: Ledger, party: str) -> None:
        self.close(ledger, party, t)
        self.stats.append(f"ledger channel {ledger.name} closed before T by {party}")

    def do_fast(self, t: int) -> None:
        """Her fast close (R4): the latest, final state, on both halves."""
        z = self.g.z(self.latest)
        live = [ledger for ledger in self.g.ledgers if self.m.halves[ledger.name].released is None]
        if len(live) == 1:  # R4: a final state settles both halves, never one
            raise AssertionError(f"only ledger channel {live[0].name}'s half is live")
        for ledger in live:  # none, if Ingrid has settled both with a final state already
            assert self.execute(ledger, ledger.ingrid, SETTLE, z, t), "Ingrid's fast close failed"
            self.fast_done = True
        if live:
            self.stats.append("fast close " + ("before T" if t < self.g.validity else "after T"))

    def do_submit(self, t: int, ledger: Ledger, kind: str) -> None:
        state = {"latest": self.latest, "fork": self.fork, "stale": self.states[0]}[kind]
        if self.execute(ledger, ledger.end, SETTLE, self.g.z(state), t):
            self.submitted.append((kind, state))
            if self.s.eager and pending(self.g.w) - 1 <= self.g.validity + self.g.window:
                self.ingrid_acts(pending(self.g.w))

    def do_copy(self, t: int) -> None:
        self.ingrid_acts(t)

    def do_try_finalize(self, t: int, ledger: Ledger) -> None:
        self.finalize(ledger, t)

    def do_FINALIZE(self, t: int) -> None:
        """R5: each half still live (in a closing ledger channel first)."""
        live = [ledger for ledger in self.g.ledgers if self.m.halves[ledger.name].released is None]
        live.sort(key=lambda ledger: self.m.chans[ledger.name].phase != Phase.CLOSING)
        for ledger in live:
            party = self.s.finalizers[0 if ledger is self.g.a else 1]
            if not self.execute(ledger, self.who(ledger, party), FINALIZE, b"", t):  # at T + 2w: too early
                assert self.execute(ledger, ledger.ingrid, FINALIZE, b"", pending(self.g.w) + 1), \
                    "Ingrid's FINALIZE failed"
            t = pending(self.g.w)

    def do_pay_out(self, t: int) -> None:
        for ledger, party in zip(self.g.ledgers, self.s.closers):
            if self.m.chans[ledger.name].phase == Phase.OPEN:
                self.close(ledger, party, t)
        for ledger in self.g.ledgers:
            if self.m.chans[ledger.name].phase == Phase.CLOSING:
                deadline = self.m.chans[ledger.name].deadline
                if pending(self.g.w) <= deadline:
                    self.finalize(ledger, deadline)  # too early
                self.finalize(ledger, deadline + 1)
            assert self.m.chans[ledger.name].phase == Phase.CLOSED

    # -------------------------------------------------------------------- the claims

    def check(self) -> None:
        g, m = self.g, self.m
        deposits = g.a.deposit(g.ingrid) + g.b.deposit(g.ingrid)
        assert g.paid[g.ingrid.address] == deposits, f"Ingrid got {g.paid[g.ingrid.address] - deposits:+} net"
        released = {m.halves[name].released for name in "ab"}
        assert len(released) == 1, f"the halves settled apart: {m.halves}"
        [outcome] = released
        # Ingrid neither gains nor loses; Alice and Bob get γ's outcome; each ledger conserved (in finalize).
        g.assert_outcome(outcome)
        kinds = {kind for kind, _ in self.submitted}
        if self.fast_done:  # both halves settled with the latest
            assert outcome == self.latest.balance_alice
            self.stats.append("outcome: the latest state, by the fast close")
        elif "fork" in kinds:
            assert outcome in (self.latest.balance_alice, self.fork.balance_alice)
            self.stats.append("outcome: one of two forks")
        elif "latest" in kinds:
            assert outcome == self.latest.balance_alice  # Alice and Bob got their latest balances
            self.stats.append("outcome: the latest state")
        elif kinds:
            assert outcome == self.states[0].balance_alice  # only a stale state was ever submitted
            self.stats.append("outcome: a stale state (no end submitted the latest)")
        else:
            assert outcome == g.cash_alice  # nobody submitted: γ's cash back
            self.stats.append("outcome: nothing submitted")


def _script(**changes: object) -> Script:
    """A path for @example: Alice's latest on ν_a, Bob's on ν_b, everything else plain."""
    base = Script(alice_leads_a=True, ingrid_leads_b=False, cash=(3 * ETHER, 2 * ETHER), deposits=DEPOSITS,
                  history=((1, 2 * ETHER, False), (2, ETHER, False)), fork=None,
                  ends=((("latest", 1),), (("latest", W),)), registrations=(("end", 3 * DELTA), ("ingrid", 8 * DELTA)),
                  early_closes=(None, None), fast=None, eager=False, copy_at=W + 1, finalize_at=2 * W + 1,
                  finalizers=("end", "ingrid"), closers=("ingrid", "end"))
    return dataclasses.replace(base, **changes)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(script=scripts())
# Forks of one version, one on each half at the ends' last seconds: Ingrid makes ν_b equal to ν_a.
@example(script=_script(fork=(2, 4 * ETHER, False), ends=((("latest", W - 1),), (("fork", W),))))
# A final fork by Alice, copied eagerly: both halves settle with it at once; Bob's latest comes too late.
@example(script=_script(fork=(2, 4 * ETHER, True), ends=((("fork", 1),), (("latest", 2),)), eager=True))
# Bob submits a final latest state, Ingrid copies it eagerly (R4: on both halves), then Bob a higher one.
@example(script=_script(history=((1, 2 * ETHER, False), (2, ETHER, True)), fork=(3, 4 * ETHER, False),
                        ends=((), (("latest", 1), ("fork", 3))), eager=True))
# Both ledger channels closed early by the ends; Bob stale, then Alice late, Ingrid copies at her last second.
@example(script=_script(ends=((("latest", W),), (("stale", 1),)), early_closes=(("end", 1), ("end", 9 * DELTA)),
                        copy_at=2 * W, finalize_at=3 * W - 1))
def test_ingrid_is_neutral_on_every_path(ms_world: MSWorld, script: Script) -> None:
    """Random deposits, cash, γ histories, submissions (honest, stale, forked, late, early),
    registrations and early closes of the ledger channels, with Ingrid following R1-R6: both
    halves settle with one state, Ingrid's payouts add up to her deposits, Alice and Bob get
    their deposits less the cash plus γ's outcome, the latest state whenever an end submitted it."""
    app = on_chain_thread(virtual_channel_app, ms_world)  # once per test (ms_world reverts it)
    snapshot = ms_world.chain.snapshot()
    try:
        stats = on_chain_thread(play, ms_world, script, app)
    finally:
        ms_world.chain.revert_to(snapshot)
    for stat in stats:
        event(stat)


def play(w: MSWorld, script: Script, app: str) -> list[str]:
    runner = Runner(w, script, app)
    runner.run()
    return runner.stats
