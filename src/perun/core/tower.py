"""A watchtower's rules for payment channels (docs/protocol.md §12): what it holds of a watched
channel, which handed-over states it takes, and what it must do on chain.

Pure, no I/O and no clock. A party P hands the tower (Monitor) the latest state the other party
signed, with P's signature on a Monitoring that names the tower, the channel, the version, the
state's EIP-712 digest and a reward. The tower keeps only the latest such state per channel. If a
close registers a lower version, it refutes with its state before the dispute deadline
(PaymentContract.refute); once the deadline has passed with its refutation still registered, it
finalizes, which pays it the reward from P's payout and pays the parties.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from perun import errors
from perun.core.channel import Params, PaymentState, check_state
from perun.core.eip712 import Domain, recover
from perun.core.machine import first_due
from perun.core.monitoring import Monitoring


@dataclass(frozen=True)
class Watched:
    """The tower's record of one channel: the latest state handed over, and what the chain says."""

    params: Params
    channel_id: bytes
    client: str  # the party that signed the authorisation, and pays the reward
    state: PaymentState  # signed by the other party
    signature: bytes  # the other party's, on `state`
    reward: int
    authorisation: bytes  # the client's, on the Monitoring of `state`
    registered: int | None = None  # the version a close registered, if any
    deadline: int = 0  # the dispute deadline, once a close is registered
    refuted: int | None = None  # the version this tower registered (refute), if any
    closed: bool = False  # finalized or cooperatively closed
    reward_paid: int | None = None  # what RewardPaid paid this tower

    @property
    def version(self) -> int:
        return self.state.version

    @property
    def standing(self) -> bool:
        """This tower's refutation is the registered state: finalize pays its reward."""
        return self.refuted is not None and self.refuted == self.registered

    def monitoring(self, domain: Domain, tower: str) -> Monitoring:
        """The authorisation the client signed, as `refute` takes it."""
        return Monitoring.of(domain, self.state, tower, self.reward)


def accept(held: Watched | None, domain: Domain, tower: str, params: Params, version: int, balance_alice: int,
           balance_bob: int, signature: bytes, reward: int, authorisation: bytes) -> Watched:
    """The record after a Monitor with these fields, or the ValidationError that refuses it:
    StaleVersion unless the version is above the one held (and above 0: the initial state never
    replaces a registered one); InvalidSignature unless a party of `params` signed the
    authorisation and the other one the state; BalancesNotConserved; AmountOutOfRange for a
    reward above the client's balance in the state (the contract refuses it); WrongStage once the
    channel is closed; WrongChannel for a channel watched for its other party."""
    cid = params.channel_id(domain.chain_id, domain.verifying_contract)
    if held is not None and held.closed:
        raise errors.WrongStage(f"channel 0x{cid.hex()} is closed")
    floor = held.version if held is not None else 0
    if version <= floor:
        raise errors.StaleVersion(f"version {version} is not above {floor}, the version this tower holds")
    state = PaymentState(cid, version, balance_alice, balance_bob)
    check_state(params, state, cid)
    monitoring = Monitoring.of(domain, state, tower, reward)
    client = recover(monitoring.digest(domain), authorisation)
    if client not in (params.alice, params.bob):
        raise errors.InvalidSignature(f"the authorisation is signed by {client}, not by a party of the channel")
    other = params.bob if client == params.alice else params.alice
    if recover(domain.digest(state), signature) != other:
        raise errors.InvalidSignature(f"the state is not signed by {other}, the other party")
    balance = balance_alice if client == params.alice else balance_bob
    if reward > balance:
        raise errors.AmountOutOfRange(f"the reward {reward} is more than {balance}, the client's balance in the state")
    if held is not None and held.client != client:
        raise errors.WrongChannel(f"channel 0x{cid.hex()} is watched for {held.client}")
    new = Watched(params, cid, client, state, signature, reward, authorisation)
    if held is None:
        return new
    # What the chain said stays: it is about the channel, not about the state held.
    return replace(new, registered=held.registered, deadline=held.deadline, refuted=held.refuted, closed=held.closed,
                   reward_paid=held.reward_paid)


def apply_event(rec: Watched, tower: str, name: str, args: dict[str, Any]) -> Watched:
    """The record after a PaymentContract event about its channel. Idempotent and monotonic (the
    follower may apply an event twice): a close registers only a version above the registered one."""
    if rec.closed:
        return rec
    if name == "CloseRegistered":
        version = args["version"]
        if rec.registered is not None and version <= rec.registered:
            return rec
        # A registration above this tower's forgets its reward (Watchtowers._forgetChannelReward).
        refuted = version if args["by"] == tower else rec.refuted
        return replace(rec, registered=version, deadline=args["deadline"], refuted=refuted)
    if name == "RewardPaid" and args["tower"] == tower and args["nid"] == bytes(32):
        return replace(rec, reward_paid=args["amount"])
    if name in ("Finalized", "CooperativelyClosed"):
        return replace(rec, closed=True)
    return rec


class Due(str, Enum):
    """A transaction the tower should send now."""

    REFUTE = "refute"  # a lower version than held is registered, before the deadline
    FINALIZE = "finalize"  # the deadline passed with this tower's refutation registered: collect


def duties(rec: Watched, now: int) -> tuple[Due, ...]:
    """What the tower must do at chain time `now` (the latest block's). A transaction goes into a
    later block: `now < deadline` leaves it the deadline's own second (the contract refutes up to
    the deadline), and `now >= deadline` means it is mined after it (finalize needs that)."""
    if rec.closed or rec.registered is None:
        return ()
    if rec.registered < rec.version and now < rec.deadline:
        return (Due.REFUTE,)
    if rec.standing and now >= rec.deadline:
        return (Due.FINALIZE,)
    return ()


def next_due(rec: Watched, now: int) -> int | None:
    """The earliest chain time at or after `now` at which `duties(rec, t)` is not empty, or None."""
    if rec.closed or rec.registered is None:
        return None  # a channel at rest, nearly all of them
    return first_due(lambda t: bool(duties(rec, t)), now, (rec.deadline,))
