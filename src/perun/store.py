"""The node's durable memory: SQLite in WAL mode with synchronous=FULL.

One database per node. It holds each payment channel's record (perun.core.machine.ChannelRecord)
and every state this node signed or received a signature on; each multistate channel's record
(perun.core.msmachine.MSRecord) and every channel and nanocontract state it signed or received a
signature on; each virtual channel's record (perun.core.virtual.VirtualRecord: an end's γ states
are in the states table too); the peers it dials, and the last final block the follower read
(with its hash and a few before it, to find a reorganisation). `commit` writes any mix of these
in one transaction; the node sends nothing that depends on a change before that change's commit
has returned. An update of a payment channel writes a small delta (its new state, signatures and
`signed`) in place of the whole record: see `Store.commit`. The wallet's transactions in flight
(`TxJournal`) are in the same file, written through a connection of their own from the node's
sender thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perun import errors
from perun.chain.wallet import InFlight
from perun.core import machine
from perun.core.apps import virtualchannel as vc
from perun.core.channel import Params, PaymentState
from perun.core.eip712 import Domain
from perun.core.machine import ChannelRecord, Proposal, Role, Stage
from perun.core.msmachine import Intent, Kind, MSProposal, MSRecord, MSState, OnChain, S, Signed
from perun.core.mstower import ChainNano, HeldCall, HeldNano, MSWatched
from perun.core.multihop import HopRecord, Leg, Part, Release
from perun.core.multistate import ChannelState, FinalChannelState, Funding, NanocontractState
from perun.core.tower import Watched
from perun.core.virtual import Half, Position, Seen, VirtualRecord

# 2: channel_deltas; 3: watched (a watchtower's channels); 4: ms_watched (its multistate channels);
# 5: hops (multi-hop payments). An older store gains the new tables (CREATE TABLE IF NOT EXISTS)
# and is then of this version. Fields added to a record's JSON later have defaults for the rows
# written before them (a hop's failure and route, say): no new version.
SCHEMA_VERSION = 5
BUSY_TIMEOUT_MS = 10_000  # how long a write waits for the other connection's

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS peers (address TEXT PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS channels (channel_id BLOB PRIMARY KEY, record TEXT NOT NULL);
-- A payment channel's latest update, over its record in `channels` (machine.fold).
CREATE TABLE IF NOT EXISTS channel_deltas (
    channel_id BLOB PRIMARY KEY,
    version TEXT NOT NULL,
    balance_alice TEXT NOT NULL,
    balance_bob TEXT NOT NULL,
    sig_alice BLOB NOT NULL,
    sig_bob BLOB NOT NULL,
    signed TEXT NOT NULL
);
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
CREATE TABLE IF NOT EXISTS ms_channels (channel_id BLOB PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ms_states (
    channel_id BLOB NOT NULL,
    nid BLOB NOT NULL,  -- empty for a channel state
    version TEXT NOT NULL,
    state TEXT NOT NULL,
    sig_alice BLOB NOT NULL,
    sig_bob BLOB NOT NULL,
    PRIMARY KEY (channel_id, nid, version)
);
CREATE TABLE IF NOT EXISTS transactions (nonce INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS virtual_channels (id BLOB PRIMARY KEY, record TEXT NOT NULL);
-- A watchtower's channels: one row each, the latest state handed over replacing the one before.
CREATE TABLE IF NOT EXISTS watched (channel_id BLOB PRIMARY KEY, record TEXT NOT NULL);
-- Its multistate channels: one row each, with the latest state of each live nanocontract in it.
CREATE TABLE IF NOT EXISTS ms_watched (channel_id BLOB PRIMARY KEY, record TEXT NOT NULL);
-- A node's part in each multi-hop payment, by payment hash: a payee's invoices with their preimages.
CREATE TABLE IF NOT EXISTS hops (payment_hash BLOB PRIMARY KEY, record TEXT NOT NULL);
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
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # the wallet's journal writes too
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise errors.StoreError(f"cannot open the store {self.path}: {exc}") from exc
        # Each payment channel's record as a restart would take it now (`commit`), and the
        # channels with a row in channel_deltas.
        self._stored: dict[bytes, ChannelRecord] = {}
        self._deltas: set[bytes] = set()
        self._check_identity({"schema": str(SCHEMA_VERSION), "address": address,
                              "chain_id": str(chain_id), "contract": contract})

    def _check_identity(self, identity: dict[str, str]) -> None:
        found = dict(self.db.execute("SELECT key, value FROM meta WHERE key IN (?, ?, ?, ?)", tuple(identity)))
        if not found:
            self.commit(meta=identity)
            return
        if found.get("schema") in ("1", "2", "3", "4"):  # the only changes since: new tables, created above
            self.commit(meta={"schema": str(SCHEMA_VERSION)})
            found["schema"] = str(SCHEMA_VERSION)
        for key, value in identity.items():
            if found.get(key) != value:
                raise errors.StoreError(f"{self.path} belongs to {key} {found.get(key)}, not {value}")

    # ------------------------------------------------------------------ reads

    def channels(self) -> list[ChannelRecord]:
        domains: dict[tuple, Domain] = {}
        records = {bytes(cid): _record_from_json(text, bytes(cid), domains)
                   for cid, text in self.db.execute("SELECT channel_id, record FROM channels")}
        self._deltas = set()
        for cid, version, alice, bob, sig_alice, sig_bob, signed in self.db.execute("SELECT * FROM channel_deltas"):
            cid = bytes(cid)
            records[cid] = machine.fold(records[cid], PaymentState(cid, int(version), int(alice), int(bob)),
                                        bytes(sig_alice), bytes(sig_bob), int(signed))
            self._deltas.add(cid)
        self._stored = dict(records)
        return list(records.values())

    def peers(self) -> dict[str, tuple[str, int]]:
        return {address: (host, port) for address, host, port in self.db.execute("SELECT * FROM peers")}

    def last_block(self) -> int | None:
        value = self.meta("last_block")
        return int(value) if value is not None else None

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

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

    def ms_channels(self) -> list[MSRecord]:
        domains: dict[tuple, Domain] = {}
        return [_ms_record_from_json(row[1], bytes(row[0]), domains)
                for row in self.db.execute("SELECT channel_id, record FROM ms_channels")]

    def virtual_channels(self) -> list[VirtualRecord]:
        return [_virtual_from_json(row[0]) for row in self.db.execute("SELECT record FROM virtual_channels")]

    def watched(self) -> list[Watched]:
        """A watchtower's records of the channels it watches."""
        return [_watched_from_json(row[1], bytes(row[0])) for row in self.db.execute("SELECT * FROM watched")]

    def ms_watched(self) -> list[MSWatched]:
        """A watchtower's multistate channels."""
        return [_ms_watched_from_json(row[1], bytes(row[0])) for row in self.db.execute("SELECT * FROM ms_watched")]

    def hops(self) -> list[HopRecord]:
        """The node's multi-hop payments (its invoices among them)."""
        return [_hop_from_json(row[0]) for row in self.db.execute("SELECT record FROM hops")]

    def ms_states(self, channel_id: bytes) -> list[Signed[MSState]]:
        """Every state of the multistate channel and its nanocontracts this node signed or holds a
        signature on: the channel states by version, then the nanocontracts' by nid and version."""
        rows = self.db.execute(
            "SELECT nid, version, state, sig_alice, sig_bob FROM ms_states WHERE channel_id = ?", (channel_id,)
        ).fetchall()
        found = [
            (bytes(nid), int(v), Signed(_ms_state_from(channel_id, json.loads(state)), bytes(sa), bytes(sb)))
            for nid, v, state, sa, sb in rows
        ]
        return [signed for _, _, signed in sorted(found, key=lambda x: x[:2])]

    # ------------------------------------------------------------------ writes

    def commit(
        self,
        records: Iterable[ChannelRecord | MSRecord | VirtualRecord | Watched | MSWatched | HopRecord] = (),
        states: Iterable[SignedState | Signed[MSState]] = (),
        peers: Iterable[tuple[str, str, int]] = (),
        meta: dict[str, str] | None = None,
    ) -> None:
        """Writes everything in one durable transaction (fsynced before it returns). Records and
        states of every kind may be mixed: each goes to its kind's table.

        A payment channel's record is compared with the one a restart would take now
        (machine.change): an update writes a row of channel_deltas (replacing the channel's
        last one), a change a crash may lose writes nothing, any other change the whole record
        (which folds the delta in: its row is deleted). So an update costs a row of a few
        hundred bytes, not the record's JSON, and the deltas never outnumber the channels."""
        rows: dict[str, list[tuple]] = {table: [] for table in _TABLES.values()}
        rows["channel_deltas"] = []
        stored: dict[bytes, ChannelRecord] = {}
        folded: list[tuple[bytes]] = []
        for rec in records:
            if type(rec) is ChannelRecord:
                cid = rec.channel_id
                before = self._stored.get(cid)
                how = machine.Change.WHOLE if before is None else machine.change(before, rec)
                if how is machine.Change.NONE:
                    continue
                if how is machine.Change.DELTA and before is not None:  # (a delta has a record before it)
                    c = rec.current
                    rows["channel_deltas"].append((cid, str(c.version), str(c.balance_alice), str(c.balance_bob),
                                                   rec.sig_alice, rec.sig_bob, str(rec.signed)))
                    stored[cid] = machine.fold(before, c, rec.sig_alice, rec.sig_bob, rec.signed)
                    continue
                stored[cid] = rec
                if before is None or cid in self._deltas:  # (a record this store has not read may have one)
                    folded.append((cid,))
            rows[_TABLES[type(rec)]].append((rec.channel_id, _ENCODE[type(rec)](rec)))
        for s in states:
            if isinstance(s, SignedState):
                rows["states"].append((s.state.channel_id, str(s.state.version), int(s.state.is_final),
                                       str(s.state.balance_alice), str(s.state.balance_bob), s.sig_alice, s.sig_bob))
            else:
                nid = s.state.nid if isinstance(s.state, NanocontractState) else b""
                rows["ms_states"].append((s.state.channel_id, nid, str(s.state.version),
                                          json.dumps(_ms_state_json(s.state)), s.sig_alice, s.sig_bob))
        rows["peers"] = list(peers)
        rows["meta"] = list((meta or {}).items())
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for table, values in rows.items():
                    if values:
                        marks = ", ".join("?" * len(values[0]))
                        self.db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", values)
                if folded:
                    self.db.executemany("DELETE FROM channel_deltas WHERE channel_id = ?", folded)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise errors.StoreError(f"cannot write the store {self.path}: {exc}") from exc
        self._stored.update(stored)
        self._deltas.difference_update(cid for cid, in folded)
        self._deltas.update(row[0] for row in rows["channel_deltas"])

    def close(self) -> None:
        self.db.close()


class TxJournal:
    """The wallet's transactions in flight (perun.chain.wallet.Journal), each write durable when
    it returns."""

    def __init__(self, path: Path | str) -> None:
        try:
            self.db = sqlite3.connect(Path(path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise errors.StoreError(f"cannot open the store {path}: {exc}") from exc

    def in_flight(self) -> list[InFlight]:
        return [InFlight.from_json(row[0]) for row in self.db.execute("SELECT record FROM transactions ORDER BY nonce")]

    def put(self, tx: InFlight) -> None:
        self._write("INSERT OR REPLACE INTO transactions VALUES (?, ?)", (tx.nonce, tx.to_json()))

    def drop(self, nonce: int) -> None:
        self._write("DELETE FROM transactions WHERE nonce = ?", (nonce,))

    def _write(self, sql: str, args: tuple) -> None:
        try:
            self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise errors.StoreError(f"cannot write the transactions in flight: {exc}") from exc

    def close(self) -> None:
        self.db.close()


# ---------------------------------------------------------------------- record encoding


def _state_json(state: PaymentState) -> dict[str, Any]:
    return {"version": state.version, "alice": str(state.balance_alice), "bob": str(state.balance_bob),
            "final": state.is_final}


def _state_from(channel_id: bytes, data: dict[str, Any]) -> PaymentState:
    return PaymentState(channel_id, data["version"], int(data["alice"]), int(data["bob"]), data["final"])


def _params_json(p: Params) -> dict[str, Any]:
    return {"alice": p.alice, "bob": p.bob, "token": p.token, "deposit_alice": str(p.deposit_alice),
            "deposit_bob": str(p.deposit_bob), "delta": p.delta, "nonce": str(p.nonce)}


def _params_from(p: dict[str, Any]) -> Params:
    # Written only from a Params, so already checked (addresses checksummed): not checked again.
    return Params.known(p["alice"], p["bob"], int(p["deposit_alice"]), int(p["deposit_bob"]), p["delta"],
                        int(p["nonce"]), p["token"])


def _record_to_json(rec: ChannelRecord) -> str:
    return json.dumps(_record_json(rec))


def _record_json(rec: ChannelRecord) -> dict[str, Any]:
    return {
        "params": _params_json(rec.params),
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
        "open_until": rec.open_until,
        "given_up": rec.given_up,
        "close_requested": rec.close_requested,
        "reserved": rec.reserved,
    }


# A record's channel id is not recomputed from its parameters when it is read back (that hash,
# through eth_abi, was 88 % of loading 10,000 channels): it is the key of the row the record came
# from, and `commit` wrote that key from the record's own `channel_id`, itself computed from the
# parameters when the record was made (`new_record`). Nothing else writes these tables, so the key
# needs no check. Records of one domain share one `Domain` (and so its cached separator).


def _domain(domains: dict[tuple, Domain], *fields: Any) -> Domain:
    domain = domains.get(fields)
    if domain is None:
        domain = domains[fields] = Domain(*fields)
    return domain


def _record_from_json(text: str, cid: bytes, domains: dict[tuple, Domain]) -> ChannelRecord:
    d = json.loads(text)
    return _record_from(d, _params_from(d["params"]), _domain(domains, d["chain_id"], d["contract"]), cid)


def _record_from(d: dict[str, Any], params: Params, domain: Domain, cid: bytes) -> ChannelRecord:
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
        outcome=_outcome_from(d["outcome"]),
        peer_signed_hint=d["peer_signed_hint"],
        # absent before openings expired
        open_until=d.get("open_until", 0),
        given_up=d.get("given_up", ""),
        close_requested=d.get("close_requested", False),  # absent before reorganisations were handled
        reserved=d.get("reserved", d["signed"]),  # absent before proposals went out ahead of their commit
    )


# ---------------------------------------------------------------------- multistate record encoding
# Amounts are decimal strings, bytes hex. A state's channel id is the record's, so it is not repeated.


def _funding_json(f: Funding) -> dict[str, Any]:
    return {"nid": f.nid.hex(), "alice": str(f.alice), "bob": str(f.bob)}


def _outcome_from(outcome: list[str] | None) -> tuple[int, int] | None:
    """(alice, bob) paid out, as stored (null until the channel closed)."""
    return (int(outcome[0]), int(outcome[1])) if outcome else None


def _funding_from(d: dict[str, Any]) -> Funding:
    return Funding(bytes.fromhex(d["nid"]), int(d["alice"]), int(d["bob"]))


def _ms_state_json(state: ChannelState | NanocontractState | FinalChannelState) -> dict[str, Any]:
    """A channel state, a final one ("final"), or a nanocontract state (told apart by its "nid")."""
    if isinstance(state, FinalChannelState):
        return {"version": state.version, "alice": str(state.cash_alice), "bob": str(state.cash_bob), "final": True}
    if isinstance(state, ChannelState):
        return {"version": state.version, "alice": str(state.cash_alice), "bob": str(state.cash_bob),
                "nanocontracts": [_funding_json(f) for f in state.nanocontracts]}
    return {"nid": state.nid.hex(), "app": state.app, "version": state.version,
            "blocked_alice": str(state.blocked_alice), "blocked_bob": str(state.blocked_bob),
            "released_alice": str(state.released_alice), "released_bob": str(state.released_bob),
            "storage": state.storage.hex()}


def _ms_state_from(channel_id: bytes, d: dict[str, Any]) -> MSState:
    if d.get("final"):
        return _final_from(channel_id, d)
    if "nid" not in d:
        return _channel_state_from(channel_id, d)
    return _nanocontract_from(channel_id, d)


def _final_from(channel_id: bytes, d: dict[str, Any]) -> FinalChannelState:
    return FinalChannelState(channel_id, d["version"], int(d["alice"]), int(d["bob"]))


def _channel_state_from(channel_id: bytes, d: dict[str, Any]) -> ChannelState:
    return ChannelState(channel_id, d["version"], int(d["alice"]), int(d["bob"]),
                        tuple(_funding_from(f) for f in d["nanocontracts"]))


def _nanocontract_from(channel_id: bytes, d: dict[str, Any]) -> NanocontractState:
    return NanocontractState(channel_id, bytes.fromhex(d["nid"]), d["app"], d["version"], int(d["blocked_alice"]),
                             int(d["blocked_bob"]), int(d["released_alice"]), int(d["released_bob"]),
                             bytes.fromhex(d["storage"]))


def _signed_json(s: Signed[MSState]) -> dict[str, Any]:
    return {"state": _ms_state_json(s.state), "sig_alice": s.sig_alice.hex(), "sig_bob": s.sig_bob.hex()}


def _signed_from(state_from: Callable[[bytes, dict[str, Any]], S], channel_id: bytes, d: dict[str, Any]) -> Signed[S]:
    return Signed(state_from(channel_id, d["state"]), bytes.fromhex(d["sig_alice"]), bytes.fromhex(d["sig_bob"]))


def _ms_proposal_json(p: MSProposal) -> dict[str, Any]:
    return {"kind": p.kind.value, "nid": p.nid.hex(),
            "channel": _ms_state_json(p.channel) if p.channel is not None else None,
            "nanocontract": _ms_state_json(p.nanocontract) if p.nanocontract is not None else None,
            "fun": p.fun, "z": p.z.hex(), "sig_channel": p.sig_channel.hex(),
            "sig_nanocontract": p.sig_nanocontract.hex(), "prev": p.prev, "fee": str(p.fee),
            "final": _ms_state_json(p.final) if p.final is not None else None, "expires": p.expires}


def _ms_proposal_from(channel_id: bytes, d: dict[str, Any]) -> MSProposal:
    return MSProposal(
        Kind(d["kind"]),
        bytes.fromhex(d["nid"]),
        channel=_channel_state_from(channel_id, d["channel"]) if d["channel"] is not None else None,
        nanocontract=_nanocontract_from(channel_id, d["nanocontract"]) if d["nanocontract"] is not None else None,
        fun=d["fun"],
        z=bytes.fromhex(d["z"]),
        sig_channel=bytes.fromhex(d["sig_channel"]),
        sig_nanocontract=bytes.fromhex(d["sig_nanocontract"]),
        prev=d["prev"],
        fee=int(d.get("fee", 0)),  # absent in stores written before fees
        final=_final_from(channel_id, d["final"]) if d.get("final") else None,
        expires=d.get("expires", 0),  # absent before the reply time
    )


def _ms_record_to_json(rec: MSRecord) -> str:
    d = rec.domain
    return json.dumps({
        "params": _params_json(rec.params),
        "domain": {"chain_id": d.chain_id, "contract": d.verifying_contract, "name": d.name, "version": d.version},
        "role": rec.role.name,
        "stage": rec.stage.value,
        "channel": _signed_json(rec.channel),
        "nanocontracts": [_signed_json(s) for s in rec.nanocontracts],
        "channel_signed": rec.channel_signed,
        "nano_signed": [[nid.hex(), version] for nid, version in rec.nano_signed],
        "pending": [_ms_proposal_json(p) for p in rec.pending],
        "deadline": rec.deadline,
        "registered_version": rec.registered_version,
        "registered_fundings": [_funding_json(f) for f in rec.registered_fundings],
        "on_chain": [{"nid": r.nid.hex(), "version": r.version, "window_end": r.window_end,
                      "terminated": r.terminated, "settle_by": r.settle_by} for r in rec.on_chain],
        "outcome": [str(x) for x in rec.outcome] if rec.outcome else None,
        "intents": [{"nid": i.nid.hex(), "fun": i.fun, "z": i.z.hex()} for i in rec.intents],
        "peer_signed": [[slot.hex(), version] for slot, version in rec.peer_signed],
        "expired": [_ms_proposal_json(p) for p in rec.expired],
        "final": _signed_json(rec.final) if rec.final is not None else None,
        "proposed_final": rec.proposed_final,
        "open_until": rec.open_until,
        "given_up": rec.given_up,
        "close_requested": rec.close_requested,
    })


def _ms_record_from_json(text: str, cid: bytes, domains: dict[tuple, Domain]) -> MSRecord:
    """`cid` is the key of the record's row (see `_record_from_json`)."""
    d = json.loads(text)
    params = _params_from(d["params"])
    dom = d["domain"]
    domain = _domain(domains, dom["chain_id"], dom["contract"], dom["name"], dom["version"])
    return MSRecord(
        params=params,
        domain=domain,
        role=Role[d["role"]],
        stage=Stage(d["stage"]),
        channel=_signed_from(_channel_state_from, cid, d["channel"]),
        nanocontracts=tuple(_signed_from(_nanocontract_from, cid, s) for s in d["nanocontracts"]),
        channel_signed=d["channel_signed"],
        nano_signed=tuple((bytes.fromhex(nid), version) for nid, version in d["nano_signed"]),
        pending=tuple(_ms_proposal_from(cid, p) for p in d["pending"]),
        deadline=d["deadline"],
        registered_version=d["registered_version"],
        registered_fundings=tuple(_funding_from(f) for f in d["registered_fundings"]),
        on_chain=tuple(OnChain(bytes.fromhex(r["nid"]), r["version"], r["window_end"], r["terminated"], r["settle_by"])
                       for r in d["on_chain"]),
        outcome=_outcome_from(d["outcome"]),
        intents=tuple(Intent(bytes.fromhex(i["nid"]), i["fun"], bytes.fromhex(i["z"])) for i in d["intents"]),
        peer_signed=tuple((bytes.fromhex(slot), v) for slot, v in d.get("peer_signed", [])),  # absent before hints
        # absent before the reply time and the cooperative close
        expired=tuple(_ms_proposal_from(cid, p) for p in d.get("expired", [])),
        final=_signed_from(_final_from, cid, d["final"]) if d.get("final") else None,
        proposed_final=d.get("proposed_final", False),
        open_until=d.get("open_until", 0),  # absent before openings expired
        given_up=d.get("given_up", ""),
        close_requested=d.get("close_requested", False),
    )


# ---------------------------------------------------------------------- virtual channel record encoding


def _virtual_to_json(rec: VirtualRecord) -> str:
    return json.dumps({
        "data": rec.data.storage.hex(),
        "position": rec.position.name,
        "halves": [{"side": h.side, "ledger": h.ledger.hex(), "nid": h.nid.hex()} for h in rec.halves],
        "channel": _record_json(rec.channel) if rec.channel is not None else None,
        "seen": [{"state": _state_json(s.state), "sig_alice": s.sig_alice.hex(), "sig_bob": s.sig_bob.hex()}
                 for s in rec.seen],
    })


def _virtual_from_json(text: str) -> VirtualRecord:
    d = json.loads(text)
    data = vc.decode(bytes.fromhex(d["data"]))
    channel = None
    if d["channel"] is not None:
        c = d["channel"]
        domain = vc.virtual_domain(c["chain_id"], c["contract"])
        channel = _record_from(c, _params_from(c["params"]), domain, data.id)
    return VirtualRecord(
        data=data,
        position=Position[d["position"]],
        halves=tuple(Half(h["side"], bytes.fromhex(h["ledger"]), bytes.fromhex(h["nid"])) for h in d["halves"]),
        channel=channel,
        seen=tuple(Seen(_state_from(data.id, s["state"]), bytes.fromhex(s["sig_alice"]), bytes.fromhex(s["sig_bob"]))
                   for s in d["seen"]),
    )


# ---------------------------------------------------------------------- watchtower record encoding


def _watched_to_json(rec: Watched) -> str:
    return json.dumps({
        "params": _params_json(rec.params),
        "client": rec.client,
        "state": _state_json(rec.state),
        "signature": rec.signature.hex(),
        "reward": str(rec.reward),
        "authorisation": rec.authorisation.hex(),
        "registered": rec.registered,
        "deadline": rec.deadline,
        "refuted": rec.refuted,
        "closed": rec.closed,
        "reward_paid": str(rec.reward_paid) if rec.reward_paid is not None else None,
    })


def _watched_from_json(text: str, cid: bytes) -> Watched:
    """`cid` is the key of the record's row (see `_record_from_json`)."""
    d = json.loads(text)
    return Watched(
        params=_params_from(d["params"]),
        channel_id=cid,
        client=d["client"],
        state=_state_from(cid, d["state"]),
        signature=bytes.fromhex(d["signature"]),
        reward=int(d["reward"]),
        authorisation=bytes.fromhex(d["authorisation"]),
        registered=d["registered"],
        deadline=d["deadline"],
        refuted=d["refuted"],
        closed=d["closed"],
        reward_paid=int(d["reward_paid"]) if d["reward_paid"] is not None else None,
    )


def _ms_watched_to_json(rec: MSWatched) -> str:
    return json.dumps({
        "params": _params_json(rec.params),
        "client": rec.client,
        "state": _ms_state_json(rec.state),
        "signature": rec.signature.hex(),
        "reward": str(rec.reward),
        "authorisation": rec.authorisation.hex(),
        "nanos": [{"state": _ms_state_json(n.state), "signature": n.signature.hex(), "reward": str(n.reward),
                   "authorisation": n.authorisation.hex()} for n in rec.nanos],
        "calls": [{"nid": c.nid.hex(), "fun": c.fun, "z": c.z.hex(), "version": c.version, "reward": str(c.reward),
                   "authorisation": c.authorisation.hex()} for c in rec.calls],
        "registered": rec.registered,
        "deadline": rec.deadline,
        "fundings": [_funding_json(f) for f in rec.fundings],
        "refuted": rec.refuted,
        "on_chain": [{"nid": c.nid.hex(), "version": c.version, "window_end": c.window_end, "settle_by": c.settle_by,
                      "terminated": c.terminated, "gamma": c.gamma, "ours": c.ours} for c in rec.on_chain],
        "closed": rec.closed,
        "rewards_paid": [[nid.hex(), str(amount)] for nid, amount in rec.rewards_paid],
    })


def _ms_watched_from_json(text: str, cid: bytes) -> MSWatched:
    d = json.loads(text)
    return MSWatched(
        params=_params_from(d["params"]),
        channel_id=cid,
        client=d["client"],
        state=_channel_state_from(cid, d["state"]),
        signature=bytes.fromhex(d["signature"]),
        reward=int(d["reward"]),
        authorisation=bytes.fromhex(d["authorisation"]),
        nanos=tuple(HeldNano(_nanocontract_from(cid, n["state"]), bytes.fromhex(n["signature"]),
                             int(n["reward"]), bytes.fromhex(n["authorisation"])) for n in d["nanos"]),
        calls=tuple(HeldCall(bytes.fromhex(c["nid"]), c["fun"], bytes.fromhex(c["z"]), c["version"], int(c["reward"]),
                             bytes.fromhex(c["authorisation"])) for c in d["calls"]),
        registered=d["registered"],
        deadline=d["deadline"],
        fundings=tuple(_funding_from(f) for f in d["fundings"]),
        refuted=d["refuted"],
        on_chain=tuple(ChainNano(bytes.fromhex(c["nid"]), c["version"], c["window_end"], c["settle_by"],
                                 c["terminated"], c["gamma"], c["ours"]) for c in d["on_chain"]),
        closed=d["closed"],
        rewards_paid=tuple((bytes.fromhex(nid), int(amount)) for nid, amount in d["rewards_paid"]),
    )


# ---------------------------------------------------------------------- multi-hop payment encoding


def _leg_json(leg: Leg | None) -> dict[str, Any] | None:
    if leg is None:
        return None
    return {"channel": leg.channel.hex(), "nid": leg.nid.hex(), "amount": str(leg.amount), "timeout": leg.timeout,
            "released": leg.released.value if leg.released else None}


def _leg_from(d: dict[str, Any] | None) -> Leg | None:
    if d is None:
        return None
    released = d.get("released")
    return Leg(bytes.fromhex(d["channel"]), bytes.fromhex(d["nid"]), int(d["amount"]), d["timeout"],
               Release(released) if released else None)


def _hop_to_json(rec: HopRecord) -> str:
    return json.dumps({
        "payment_hash": rec.payment_hash.hex(), "part": rec.part.value, "incoming": _leg_json(rec.incoming),
        "outgoing": _leg_json(rec.outgoing), "next_hop": rec.next_hop, "onion": rec.onion.hex(),
        "preimage": rec.preimage.hex(), "invoice": rec.invoice.hex(), "claimed": rec.claimed,
        "shared_secret": rec.shared_secret.hex(), "session_key": rec.session_key.hex(),
        "route_keys": [key.hex() for key in rec.route_keys], "route_nodes": list(rec.route_nodes),
        "failure": rec.failure.hex(), "refusal": rec.refusal,
    })


def _hop_from_json(text: str) -> HopRecord:
    d = json.loads(text)
    return HopRecord(bytes.fromhex(d["payment_hash"]), Part(d["part"]), _leg_from(d["incoming"]),
                     _leg_from(d["outgoing"]), d["next_hop"], bytes.fromhex(d["onion"]), bytes.fromhex(d["preimage"]),
                     bytes.fromhex(d["invoice"]), d["claimed"], bytes.fromhex(d.get("shared_secret", "")),
                     bytes.fromhex(d.get("session_key", "")), tuple(bytes.fromhex(k) for k in d.get("route_keys", [])),
                     tuple(d.get("route_nodes", [])), bytes.fromhex(d.get("failure", "")), d.get("refusal", ""))


# Where each kind of record and state is written.
_TABLES: dict[type, str] = {ChannelRecord: "channels", MSRecord: "ms_channels", VirtualRecord: "virtual_channels",
                            Watched: "watched", MSWatched: "ms_watched", HopRecord: "hops", SignedState: "states",
                            Signed: "ms_states"}
# (Any: each function takes its own kind of record, the one `type(rec)` names.)
_ENCODE: dict[type, Callable[[Any], str]] = {
    ChannelRecord: _record_to_json, MSRecord: _ms_record_to_json, VirtualRecord: _virtual_to_json,
    Watched: _watched_to_json, MSWatched: _ms_watched_to_json, HopRecord: _hop_to_json}
