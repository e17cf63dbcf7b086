"""The node's durable memory: SQLite in WAL mode with synchronous=FULL.

One database per node. It holds each channel's record (perun.core.machine.ChannelRecord), every
state this node signed or received a signature on, the peers it dials, and the last block the
watcher processed. `commit` writes any mix of these in one transaction; the node sends nothing
that depends on a change before that change's commit has returned.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perun import errors
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import Domain
from perun.core.machine import ChannelRecord, Proposal, Role, Stage

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS peers (address TEXT PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS channels (channel_id BLOB PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS states (
    channel_id BLOB NOT NULL,
    version TEXT NOT NULL,
    final INTEGER NOT NULL,
    balance_alice TEXT NOT NULL,
    balance_bob TEXT NOT NULL,
    sig_alice BLOB NOT NULL,
    sig_bob BLOB NOT NULL,
    PRIMARY KEY (channel_id, version, final)
);
"""


@dataclass(frozen=True)
class SignedState:
    """A state with the signatures this node holds on it (empty bytes for a missing one)."""

    state: PaymentState
    sig_alice: bytes
    sig_bob: bytes


class Store:
    """Opens (creating if needed) the database at `path` for the node `address` on one
    chain and contract; a database of another node, chain or contract is refused."""

    def __init__(self, path: Path | str, address: str, chain_id: int, contract: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise errors.StoreError(f"{self.path}: SQLite refused WAL mode ({mode})")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise errors.StoreError(f"cannot open the store {self.path}: {exc}") from exc
        self._check_identity({"schema": str(SCHEMA_VERSION), "address": address,
                              "chain_id": str(chain_id), "contract": contract})

    def _check_identity(self, identity: dict[str, str]) -> None:
        found = dict(self.db.execute("SELECT key, value FROM meta WHERE key IN (?, ?, ?, ?)", tuple(identity)))
        if not found:
            self.commit(meta=identity)
            return
        for key, value in identity.items():
            if found.get(key) != value:
                raise errors.StoreError(f"{self.path} belongs to {key} {found.get(key)}, not {value}")

    # ------------------------------------------------------------------ reads

    def channels(self) -> list[ChannelRecord]:
        return [_record_from_json(row[0]) for row in self.db.execute("SELECT record FROM channels")]

    def peers(self) -> dict[str, tuple[str, int]]:
        return {address: (host, port) for address, host, port in self.db.execute("SELECT * FROM peers")}

    def last_block(self) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'last_block'").fetchone()
        return int(row[0]) if row else None

    def states(self, channel_id: bytes) -> list[SignedState]:
        """Every state of the channel this node signed or holds a signature on, oldest first."""
        rows = self.db.execute(
            "SELECT version, final, balance_alice, balance_bob, sig_alice, sig_bob FROM states WHERE channel_id = ?",
            (channel_id,),
        ).fetchall()
        found = [
            SignedState(PaymentState(channel_id, int(v), int(a), int(b), bool(f)), bytes(sa), bytes(sb))
            for v, f, a, b, sa, sb in rows
        ]
        return sorted(found, key=lambda s: (s.state.version, s.state.is_final))

    # ------------------------------------------------------------------ writes

    def commit(
        self,
        records: Iterable[ChannelRecord] = (),
        states: Iterable[SignedState] = (),
        peers: Iterable[tuple[str, str, int]] = (),
        meta: dict[str, str] | None = None,
    ) -> None:
        """Writes everything in one durable transaction (fsynced before it returns)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "INSERT OR REPLACE INTO channels VALUES (?, ?)",
                    [(r.channel_id, _record_to_json(r)) for r in records],
                )
                self.db.executemany(
                    "INSERT OR REPLACE INTO states VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (s.state.channel_id, str(s.state.version), int(s.state.is_final), str(s.state.balance_alice),
                         str(s.state.balance_bob), s.sig_alice, s.sig_bob)
                        for s in states
                    ],
                )
                self.db.executemany("INSERT OR REPLACE INTO peers VALUES (?, ?, ?)", list(peers))
                self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list((meta or {}).items()))
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise errors.StoreError(f"cannot write the store {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()


# ---------------------------------------------------------------------- record encoding


def _state_json(state: PaymentState) -> dict[str, Any]:
    return {"version": state.version, "alice": str(state.balance_alice), "bob": str(state.balance_bob),
            "final": state.is_final}


def _state_from(channel_id: bytes, data: dict[str, Any]) -> PaymentState:
    return PaymentState(channel_id, data["version"], int(data["alice"]), int(data["bob"]), data["final"])


def _record_to_json(rec: ChannelRecord) -> str:
    p = rec.params
    return json.dumps({
        "params": {"alice": p.alice, "bob": p.bob, "token": p.token, "deposit_alice": str(p.deposit_alice),
                   "deposit_bob": str(p.deposit_bob), "delta": p.delta, "nonce": str(p.nonce)},
        "chain_id": rec.domain.chain_id,
        "contract": rec.domain.verifying_contract,
        "role": rec.role.name,
        "stage": rec.stage.value,
        "current": _state_json(rec.current),
        "sig_alice": rec.sig_alice.hex(),
        "sig_bob": rec.sig_bob.hex(),
        "signed": rec.signed,
        "pending": [{"state": _state_json(x.state), "prev": x.prev, "sig": x.signature.hex()} for x in rec.pending],
        "final_signed": rec.final_signed,
        "proposed_final": rec.proposed_final,
        "registered_version": rec.registered_version,
        "deadline": rec.deadline,
        "outcome": [str(x) for x in rec.outcome] if rec.outcome else None,
        "peer_signed_hint": rec.peer_signed_hint,
    })


def _record_from_json(text: str) -> ChannelRecord:
    d = json.loads(text)
    p = d["params"]
    params = Params(p["alice"], p["bob"], int(p["deposit_alice"]), int(p["deposit_bob"]), p["delta"],
                    int(p["nonce"]), p["token"])
    domain = Domain(d["chain_id"], d["contract"])
    cid = params.channel_id(domain.chain_id, domain.verifying_contract)
    return ChannelRecord(
        params=params,
        domain=domain,
        role=Role[d["role"]],
        stage=Stage(d["stage"]),
        current=_state_from(cid, d["current"]),
        sig_alice=bytes.fromhex(d["sig_alice"]),
        sig_bob=bytes.fromhex(d["sig_bob"]),
        signed=d["signed"],
        pending=tuple(Proposal(_state_from(cid, x["state"]), x["prev"], bytes.fromhex(x["sig"])) for x in d["pending"]),
        final_signed=d["final_signed"],
        proposed_final=d["proposed_final"],
        registered_version=d["registered_version"],
        deadline=d["deadline"],
        outcome=tuple(int(x) for x in d["outcome"]) if d["outcome"] else None,
        peer_signed_hint=d["peer_signed_hint"],
    )
