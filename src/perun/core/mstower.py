"""A watchtower's rules for multistate channels, their nanocontracts and the virtual channels
whose halves they are (docs/protocol.md §12): what it holds of a watched channel, which
handed-over states and calls it takes, and what it must do on chain. The sibling of
perun.core.tower (payment channels); pure, no I/O and no clock.

A party P (the client) hands the tower, each with P's authorisation naming the tower and a reward:

* its latest channel state signed by the other party (MonitorChannel), answered with `refute`
  when a close registers a lower version before the deadline;
* the latest state of each live nanocontract that state lists, signed by the other party
  (MonitorNanocontract), registered with `registerFor` when a closing channel lists it and the
  chain holds none before D, or holds a lower version within its window;
* for a nanocontract that is a half of a virtual channel γ of which P is an end, the SETTLE call
  with P's latest γ state signed by both ends (MonitorCall), made with `executeFor` once the half
  is registered, its window is over and VirtualChannel takes it (after γ's validity, until
  validity + window, above the γ version the half stores).

O(1) storage per channel and per live nanocontract: each new item replaces the one before; the
items of a nanocontract that no state of interest lists any more are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from perun import errors
from perun.core.apps import ALICE, BOB
from perun.core.apps import virtualchannel as vc
from perun.core.channel import Params, PaymentState, check_state, checksum
from perun.core.eip712 import Domain, check_signature, recover
from perun.core.machine import first_due
from perun.core.monitoring import Execution, Monitoring
from perun.core.multistate import ChannelState, Funding, NanocontractState, check_channel_state, digest
from perun.core.virtual import gamma_params


@dataclass(frozen=True)
class HeldNano:
    """The latest state of one nanocontract handed over, signed by the other party."""

    state: NanocontractState
    signature: bytes  # the other party's
    reward: int
    authorisation: bytes  # the client's, on the Monitoring of `state`

    @property
    def nid(self) -> bytes:
        return self.state.nid


@dataclass(frozen=True)
class HeldCall:
    """The one call of nanocontract `nid` the client lets the tower make: SETTLE(z), z carrying
    the client's latest γ state at `version`."""

    nid: bytes
    fun: int
    z: bytes
    version: int
    reward: int
    authorisation: bytes  # the client's, on the Execution of this call

    def execution(self, channel_id: bytes, tower: str) -> Execution:
        return Execution.of(channel_id, self.nid, self.fun, self.z, tower, self.reward)


@dataclass(frozen=True)
class ChainNano:
    """What the chain holds of a registered nanocontract, as its events told."""

    nid: bytes
    version: int
    window_end: int
    settle_by: int = 0
    terminated: bool = False
    gamma: int | None = None  # a virtual half: the γ version its storage holds (None: not known)
    ours: bool = False  # this tower's registerFor or executeFor on it counts: no registration since


@dataclass(frozen=True)
class MSWatched:
    """The tower's record of one multistate channel."""

    params: Params
    channel_id: bytes
    client: str  # the party that signed the authorisations, and pays the rewards
    state: ChannelState  # the latest channel state handed over, signed by the other party
    signature: bytes
    reward: int
    authorisation: bytes  # the client's, on the Monitoring of `state`
    nanos: tuple[HeldNano, ...] = ()  # by nid
    calls: tuple[HeldCall, ...] = ()  # by nid
    registered: int | None = None  # the channel version a close registered, if any
    deadline: int = 0  # the channel's D, once a close is registered
    fundings: tuple[Funding, ...] = ()  # the nanocontracts the registered channel state lists
    refuted: int | None = None  # the channel version this tower registered (refute), if any
    on_chain: tuple[ChainNano, ...] = ()  # the registered nanocontracts this tower cares about, by nid
    closed: bool = False  # finalized or cooperatively closed
    rewards_paid: tuple[tuple[bytes, int], ...] = ()  # (nid, amount) of each RewardPaid to this tower

    @property
    def version(self) -> int:
        return self.state.version

    @property
    def role(self) -> int:
        return ALICE if self.client == self.params.alice else BOB

    @property
    def standing(self) -> bool:
        """This tower's refutation is the registered channel state."""
        return self.refuted is not None and self.refuted == self.registered

    def nano(self, nid: bytes) -> HeldNano | None:
        return next((n for n in self.nanos if n.nid == nid), None)

    def call(self, nid: bytes) -> HeldCall | None:
        return next((c for c in self.calls if c.nid == nid), None)

    def chain(self, nid: bytes) -> ChainNano | None:
        return next((c for c in self.on_chain if c.nid == nid), None)

    def monitoring(self, domain: Domain, tower: str) -> Monitoring:
        return Monitoring.of(domain, self.state, tower, self.reward)

    @property
    def reward_paid(self) -> int:
        return sum(amount for _, amount in self.rewards_paid)


def _listed(rec: MSWatched) -> set[bytes]:
    """The nanocontracts the tower may have to act on: those of the latest state held, and of the
    registered one."""
    return {f.nid for f in rec.state.nanocontracts} | {f.nid for f in rec.fundings}


def _pruned(rec: MSWatched) -> MSWatched:
    """Without the items of nanocontracts no state of interest lists: a channel's record stays the
    size of its live nanocontracts, however many came and went."""
    keep = _listed(rec)
    return replace(rec, nanos=tuple(n for n in rec.nanos if n.nid in keep),
                   calls=tuple(c for c in rec.calls if c.nid in keep),
                   on_chain=tuple(c for c in rec.on_chain if c.nid in keep))


def _client_of(domain: Domain, params: Params, digest_: bytes, authorisation: bytes) -> str:
    client = recover(digest_, authorisation)
    if client not in (params.alice, params.bob):
        raise errors.InvalidSignature(f"the authorisation is signed by {client}, not by a party of the channel")
    return client


def _check_open(rec: MSWatched | None, cid: bytes) -> MSWatched:
    if rec is None:
        raise errors.UnknownChannel(f"this tower holds no state of channel 0x{cid.hex()}: hand it the channel first")
    if rec.closed:
        raise errors.WrongStage(f"channel 0x{cid.hex()} is closed")
    return rec


# ---------------------------------------------------------------------- what the tower takes


def accept_channel(held: MSWatched | None, domain: Domain, tower: str, params: Params, state: ChannelState,
                   signature: bytes, reward: int, authorisation: bytes) -> MSWatched:
    """The record after a MonitorChannel, or the ValidationError that refuses it: WrongStage once
    the channel is closed; StaleVersion unless above the version held (and above 0); the channel
    state rule (WrongChannel, InvalidNanocontract, BalancesNotConserved); InvalidSignature unless a
    party signed the authorisation and the other the state; AmountOutOfRange for a reward above
    the client's cash; WrongChannel for a channel watched for its other party."""
    cid = params.channel_id(domain.chain_id, domain.verifying_contract)
    if held is not None and held.closed:
        raise errors.WrongStage(f"channel 0x{cid.hex()} is closed")
    floor = held.version if held is not None else 0
    if state.version <= floor:
        raise errors.StaleVersion(f"version {state.version} is not above {floor}, the version this tower holds")
    check_channel_state(params, state, cid)
    client = _client_of(domain, params, Monitoring.of(domain, state, tower, reward).digest(domain), authorisation)
    other = params.bob if client == params.alice else params.alice
    if recover(digest(domain, state), signature) != other:
        raise errors.InvalidSignature(f"the channel state is not signed by {other}, the other party")
    cash = state.cash_alice if client == params.alice else state.cash_bob
    if reward > cash:
        raise errors.AmountOutOfRange(f"the reward {reward} is more than {cash}, the client's cash in the state")
    if held is not None and held.client != client:
        raise errors.WrongChannel(f"channel 0x{cid.hex()} is watched for {held.client}")
    if held is None:
        return MSWatched(params, cid, client, state, signature, reward, authorisation)
    return _pruned(replace(held, state=state, signature=signature, reward=reward, authorisation=authorisation))


def accept_nano(held: MSWatched | None, domain: Domain, tower: str, state: NanocontractState, signature: bytes,
                reward: int, authorisation: bytes) -> MSWatched:
    """The record after a MonitorNanocontract: UnknownChannel unless the tower holds a state of the
    channel; UnknownNanocontract unless the latest channel state held lists it;
    BalancesNotConserved unless it holds its funding; StaleVersion unless above the version held;
    InvalidSignature unless the client signed the authorisation and the other party the state;
    AmountOutOfRange for a reward above what the state gives the client."""
    rec = _check_open(held, state.channel_id)
    funding = rec.state.funding(state.nid)  # UnknownNanocontract
    if state.total != funding.total:
        raise errors.BalancesNotConserved(f"the nanocontract holds {state.total}, its funding {funding.total}")
    before = rec.nano(state.nid)
    if before is not None and state.version <= before.state.version:
        raise errors.StaleVersion(f"version {state.version} of nanocontract 0x{state.nid.hex()} is not above "
                                  f"{before.state.version}, the version this tower holds")
    client = _client_of(domain, rec.params, Monitoring.of(domain, state, tower, reward).digest(domain),
                        authorisation)
    if client != rec.client:
        raise errors.InvalidSignature(f"the authorisation is signed by {client}, not by {rec.client}, the client")
    other = rec.params.bob if client == rec.params.alice else rec.params.alice
    if recover(digest(domain, state), signature) != other:
        raise errors.InvalidSignature(f"the nanocontract state is not signed by {other}, the other party")
    limit = state.payout(rec.role)
    if reward > limit:
        raise errors.AmountOutOfRange(f"the reward {reward} is more than {limit}, what the state gives the client")
    new = HeldNano(state, signature, reward, authorisation)
    return replace(rec, nanos=tuple(sorted((*(n for n in rec.nanos if n.nid != state.nid), new),
                                           key=lambda n: n.nid)))


def accept_call(held: MSWatched | None, domain: Domain, tower: str, app: str | None, channel_id: bytes,
                nid: bytes, fun: int, z: bytes, reward: int, authorisation: bytes) -> MSWatched:
    """The record after a MonitorCall: UnknownChannel / UnknownNanocontract unless the tower holds
    the channel and a state of nanocontract `nid` (handed over before); InvalidNanocontract unless
    it is a half of a virtual channel (the VirtualChannel app at `app`) of which the client is the
    end, and the call its SETTLE; the app's VirtualChannelMalformed for an argument that does not
    decode; BalancesNotConserved unless the γ state holds γ's cash; InvalidSignature unless both
    ends signed it and the client the Execution; StaleVersion unless above the γ version of the
    call held; AmountOutOfRange for a reward above what the half gives the client."""
    rec = _check_open(held, channel_id)
    nano = rec.nano(nid)
    if nano is None:
        raise errors.UnknownNanocontract(f"this tower holds no state of nanocontract 0x{nid.hex()}: hand it first")
    if app is None or nano.state.app != checksum(app):
        raise errors.InvalidNanocontract(f"nanocontract 0x{nid.hex()} is not a virtual channel's half")
    v = vc.decode(nano.state.storage)
    if v.end_role != rec.role:
        raise errors.InvalidNanocontract("the client is not the end of this virtual channel's half")
    if fun != vc.SETTLE:
        raise errors.InvalidNanocontract(f"a tower makes SETTLE ({vc.SETTLE}) of a virtual half, not function {fun}")
    st = vc.decode_settle_arg(z)
    gamma = PaymentState(v.id, st.version, st.balance_alice, st.balance_bob, st.final)
    check_state(gamma_params(v), gamma, v.id)
    vdomain = vc.virtual_domain(domain.chain_id, app)
    check_signature(vdomain, gamma, st.r_alice + st.s_alice + bytes([st.v_alice]), v.alice)
    check_signature(vdomain, gamma, st.r_bob + st.s_bob + bytes([st.v_bob]), v.bob)
    before = rec.call(nid)
    if before is not None and st.version <= before.version:
        raise errors.StaleVersion(f"the γ state of version {st.version} is not above {before.version}, the "
                                  f"version of the call this tower holds")
    new = HeldCall(nid, fun, z, st.version, reward, authorisation)
    client = _client_of(domain, rec.params, new.execution(channel_id, tower).digest(domain), authorisation)
    if client != rec.client:
        raise errors.InvalidSignature(f"the authorisation is signed by {client}, not by {rec.client}, the client")
    limit = nano.state.payout(rec.role)
    if reward > limit:
        raise errors.AmountOutOfRange(f"the reward {reward} is more than {limit}, what the half gives the client")
    return replace(rec, calls=tuple(sorted((*(c for c in rec.calls if c.nid != nid), new), key=lambda c: c.nid)))


# ---------------------------------------------------------------------- the chain


def _fundings(raw: Iterable[Any]) -> tuple[Funding, ...]:
    """An event's fundings, as tuples or as dicts (the ABI decoder's structs)."""
    return tuple(Funding(*f) if isinstance(f, tuple) else Funding(f["nid"], f["alice"], f["bob"]) for f in raw)


def _gamma(rec: MSWatched, nid: bytes, version: int, data: bytes | None) -> int | None:
    """The γ version a virtual half stores: from its storage when the event (or the protocol's
    read of the chain) gives it, or from the state held if that is the registered version."""
    if rec.call(nid) is None:
        return None
    if data is None:
        nano = rec.nano(nid)
        if nano is None or nano.state.version != version:
            return None
        data = nano.state.storage
    try:
        return vc.decode(data).version
    except errors.PerunError:
        return None


def _with_chain(rec: MSWatched, entry: ChainNano) -> MSWatched:
    rest = [c for c in rec.on_chain if c.nid != entry.nid]
    return replace(rec, on_chain=tuple(sorted([*rest, entry], key=lambda c: c.nid)))


def apply_event(rec: MSWatched, tower: str, name: str, args: dict[str, Any]) -> MSWatched:
    """The record after an MSContract event about its channel. Idempotent and monotonic (the
    follower may apply an event twice). NanocontractRegistered may carry the registered storage
    as `data` (the protocol reads it from the chain for a virtual half)."""
    if rec.closed:
        return rec
    if name == "CloseRegistered":
        version = args["version"]
        if rec.registered is not None and version <= rec.registered:
            return rec
        # A registration above this tower's forgets its reward (Watchtowers._forgetChannelReward).
        refuted = version if args["by"] == tower else rec.refuted
        return replace(rec, registered=version, deadline=args["deadline"], refuted=refuted,
                       fundings=_fundings(args["nanocontracts"]))
    if name in ("NanocontractRegistered", "NanocontractExecuted"):
        nid = args["nid"]
        if nid not in _listed(rec):
            return rec
        known = rec.chain(nid)
        if known is not None and known.version >= args["version"]:
            return rec
        if name == "NanocontractRegistered":
            nano = rec.nano(nid)
            terminated = nano is not None and nano.state.version == args["version"] and nano.state.terminated
            # Any registration forgets the reward of the tower before (Watchtowers._forgetNanocontractReward).
            entry = ChainNano(nid, args["version"], args["windowEnd"], args["settleBy"], terminated,
                              _gamma(rec, nid, args["version"], args.get("data")), args["by"] == tower)
        else:
            base = known or ChainNano(nid, 0, 0)
            # An execution continues from the registered state: a tower's reward stays (§12.3).
            entry = replace(base, version=args["version"], terminated=args["blockedAlice"] + args["blockedBob"] == 0,
                            gamma=_gamma(rec, nid, args["version"], args["data"]),
                            ours=base.ours or args["by"] == tower)
        return _with_chain(rec, entry)
    if name == "RewardPaid" and args["tower"] == tower:
        paid = (args["nid"], args["amount"])
        return rec if paid in rec.rewards_paid else replace(rec, rewards_paid=(*rec.rewards_paid, paid))
    if name in ("Finalized", "CooperativelyClosed"):
        return replace(rec, closed=True)
    return rec


class Due(str, Enum):
    """A transaction the tower should send now; REGISTER and EXECUTE name their nanocontract."""

    REFUTE = "refute"  # a lower channel version than held is registered, before D
    REGISTER = "register"  # registerFor: a listed nanocontract the chain lacks, or holds at a lower version
    EXECUTE = "execute"  # executeFor: the SETTLE held, which the half would take now
    FINALIZE = "finalize"  # every listed nanocontract settled, and a submission of this tower counts


def _settlement_end(rec: MSWatched, entry: ChainNano) -> int:
    """MSContract._settlementEnd: a closing channel executes a nanocontract until D + Δ, or until
    its app's settleBy if later."""
    return max(rec.deadline + rec.params.delta, entry.settle_by)


def _settle_window(rec: MSWatched, call: HeldCall) -> tuple[int, int]:
    """(validity, validity + window) of the virtual half: its end's SETTLE goes in between."""
    nano = rec.nano(call.nid)
    assert nano is not None  # a call is taken only for a nanocontract held, and dropped with it
    v = vc.decode(nano.state.storage)
    return v.validity, v.validity + v.window


def duties(rec: MSWatched, now: int) -> tuple[tuple[Due, bytes], ...]:
    """What the tower must do at chain time `now` (the latest block's), as (duty, nid) pairs (nid
    empty for the channel's). As in perun.core.tower, the transaction goes into a later block: `now
    < x` leaves it x's own second where the contract allows up to x, `now >= x` where it needs
    after x."""
    if rec.closed:
        return ()
    found: list[tuple[Due, bytes]] = []
    closing = rec.registered is not None
    if rec.registered is not None and rec.registered < rec.version and now < rec.deadline:
        found.append((Due.REFUTE, b""))
    listed = {f.nid for f in rec.fundings}
    for nano in rec.nanos:
        entry = rec.chain(nano.nid)
        if entry is not None:
            if entry.version < nano.state.version and now < entry.window_end:
                found.append((Due.REGISTER, nano.nid))
        elif closing and nano.nid in listed and now < rec.deadline:
            found.append((Due.REGISTER, nano.nid))
    for call in rec.calls:
        entry = rec.chain(call.nid)
        if entry is None or entry.terminated or now < entry.window_end:
            continue
        if closing and now >= _settlement_end(rec, entry):
            continue
        validity, end = _settle_window(rec, call)
        if validity <= now < end and (entry.gamma is None or call.version > entry.gamma):
            found.append((Due.EXECUTE, call.nid))
    if closing and now >= rec.deadline:
        def done(nid: bytes) -> bool:
            entry = rec.chain(nid)
            if entry is not None and entry.terminated and now >= entry.window_end:
                return True
            return now >= (_settlement_end(rec, entry) if entry else rec.deadline + rec.params.delta)
        counts = rec.standing or any(c.ours for c in rec.on_chain if c.nid in listed)
        if counts and all(done(f.nid) for f in rec.fundings):
            found.append((Due.FINALIZE, b""))
    return tuple(found)


def next_due(rec: MSWatched, now: int) -> int | None:
    """The earliest chain time at or after `now` at which `duties(rec, t)` is not empty, or None."""
    if rec.closed or (rec.registered is None and not rec.on_chain):
        return None  # a channel at rest, nearly all of them
    times = [rec.deadline, rec.deadline + rec.params.delta]
    for entry in rec.on_chain:
        times += (entry.window_end, _settlement_end(rec, entry))
    for call in rec.calls:
        times += _settle_window(rec, call)
    return first_due(lambda t: bool(duties(rec, t)), now, times)
