"""A multistate channel as its node shows it: "my" and "peer" from this node's side."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from perun.core.apps import App
from perun.core.msmachine import MSRecord
from perun.runtime.protocol import json_amounts


@dataclass(frozen=True)
class NanocontractInfo:
    nid: str  # 0x-hex
    app: str  # the app's name
    version: int
    blocked: tuple[int, int]  # (mine, peer's)
    released: tuple[int, int]
    on_chain_version: int | None  # the version registered on chain, if any


@dataclass(frozen=True)
class MultistateInfo:
    channel: str
    peer: str
    role: str
    stage: str
    version: int  # of the latest channel state signed by both
    my_cash: int
    peer_cash: int
    nanocontracts: tuple[NanocontractInfo, ...]
    deadline: int
    registered_version: int | None
    my_payout: int | None
    peer_payout: int | None
    pending: int
    open_until: int  # chain time by which the opening must be on chain (0: no limit)
    given_up: str  # why this node gave the opening up ("" if it did not)


def info(rec: MSRecord, apps: dict[str, App]) -> MultistateInfo:
    """`apps` by address, for their names."""
    mine = int(rec.role)
    cash = (rec.state.cash_alice, rec.state.cash_bob)
    nanos = []
    for signed in rec.nanocontracts:
        nc = signed.state
        blocked, released = (nc.blocked_alice, nc.blocked_bob), (nc.released_alice, nc.released_bob)
        onchain = rec.registered(nc.nid)
        nanos.append(NanocontractInfo("0x" + nc.nid.hex(), apps[nc.app].name if nc.app in apps else nc.app,
                                      nc.version, (blocked[mine], blocked[1 - mine]),
                                      (released[mine], released[1 - mine]), onchain.version if onchain else None))
    return MultistateInfo(
        channel="0x" + rec.channel_id.hex(), peer=rec.peer, role=rec.role.name.lower(), stage=rec.stage.value,
        version=rec.state.version, my_cash=cash[mine], peer_cash=cash[1 - mine], nanocontracts=tuple(nanos),
        deadline=rec.deadline, registered_version=rec.registered_version,
        my_payout=None if rec.outcome is None else rec.outcome[mine],
        peer_payout=None if rec.outcome is None else rec.outcome[1 - mine], pending=len(rec.pending),
        open_until=rec.open_until, given_up=rec.given_up,
    )


def describe(rec: MSRecord, apps: dict[str, App]) -> dict[str, Any]:
    """`info` as JSON (control's status), amounts as decimal strings."""
    shown = asdict(info(rec, apps))
    json_amounts(shown, "my_cash", "peer_cash", "my_payout", "peer_payout")
    for nc in shown["nanocontracts"]:
        nc["blocked"], nc["released"] = [str(x) for x in nc["blocked"]], [str(x) for x in nc["released"]]
    return {"kind": "multistate", **shown, "token": rec.params.token, "delta": rec.params.delta}
