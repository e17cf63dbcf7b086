"""`perun watchtower`: a watchtower service (perun.node.Watchtower) with the settings, the config
file and the control socket of `perun node`, run until SIGINT or SIGTERM; and what it logs of
the channels it watches."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perun import errors
from perun.cli.node import NODE_OPTIONS, _contracts, _fee_policy, _limits, service_settings
from perun.cli.show import host_port, show_amount

if TYPE_CHECKING:
    from perun.core.mstower import MSWatched
    from perun.core.tower import Watched
    from perun.node import Watchtower

# The flags of `perun node` a tower has: where it is, its timing, the chain, its connections.
TOWER_KEYS = frozenset({
    "data", "keystore", "rpc", "deployment", "contract", "listen", "poll", "response_timeout", "confirmations",
    "max_fee_gwei", "priority_fee_gwei", "bump_after", "handshake_timeout", "max_connections_per_address",
    "max_connections", "max_frames_per_second",
})
STORE_NAME = "tower.db"
_TOWER_HELP = {  # where a node's help does not say it for a tower
    "data": f"data directory ({STORE_NAME}, control.sock); required",
    "keystore": "the tower's key file (it pays the tower's transactions and is paid its rewards); required",
    "contract": "PaymentContract address",
    "listen": "where clients connect (default 127.0.0.1:0, a free port; their nodes need a fixed one)",
}
TOWER_OPTIONS = tuple(replace(option, help=_TOWER_HELP.get(option.key, option.help)) for option in NODE_OPTIONS
                      if option.key in TOWER_KEYS)

log = logging.getLogger("perun.watchtower")


def tower_settings(args: argparse.Namespace) -> argparse.Namespace:
    """`perun watchtower`'s settings: each flag given on the command line, else its key in
    --config, else its default (ConfigError, UsageError as `perun node`'s)."""
    return service_settings(args, TOWER_OPTIONS, "watchtower")


def cmd_watchtower(args: argparse.Namespace) -> None:
    import asyncio

    from perun import keystore
    from perun.chain.backend import RpcChain

    args = tower_settings(args)
    fees, limits = _fee_policy(args), _limits(args)
    host, port = args.listen
    data = Path(args.data)
    key = keystore.load(args.keystore, keystore.read_password(prompt=f"Password for {args.keystore}: "))
    chain = RpcChain(args.rpc)
    contracts = _contracts(args, chain)
    contract = contracts["contract"]
    try:
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.PerunError(f"cannot create the data directory {data}: {exc.strerror}") from None
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("perun").setLevel(logging.INFO)
    options = dict(poll_interval=args.poll, response_timeout=args.response_timeout, confirmations=args.confirmations,
                   fees=fees, limits=limits)
    if "ms_contract" in contracts:  # a deployment file with MSContract: multistate and virtual channels too
        from perun.protocols.virtual import APP as VIRTUAL_APP

        options.update(ms_contract=contracts["ms_contract"], virtual_app=contracts["apps"].get(VIRTUAL_APP))
    asyncio.run(_run_tower(key, chain, contract, data, host, port, options))


async def _run_tower(key: bytes, chain: Any, contract: str, data: Path, host: str, port: int,
                     options: dict[str, Any]) -> None:
    import asyncio

    from perun.control import ControlServer, socket_path
    from perun.control.methods import TOWER_METHOD_NAMES
    from perun.node import Watchtower
    from perun.runtime.faults import ENVIRONMENT

    control = ControlServer(socket_path(data), TOWER_METHOD_NAMES)
    await control.bind()  # first: it refuses a data directory that another node or tower serves
    tower = None
    try:
        tower = Watchtower(key, chain, contract, data / STORE_NAME, host, port, name="tower", **options)
        TowerLog(tower).install()
        if os.environ.get(ENVIRONMENT):  # tests kill the process at a crash point
            tower.faults.sigkill_at(os.environ[ENVIRONMENT])
        try:
            await tower.start()
        except OSError as exc:
            raise errors.PerunError(f"cannot listen on {host_port(host, port)}: {exc.strerror or exc}") from None
        await control.start(tower)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        contracts = f"PaymentContract {tower.tower.contract.address}"
        if tower.ms_tower is not None:
            contracts += f", MSContract {tower.ms_tower.contract.address}"
        print(f"watchtower {tower.address} listening on {host_port(host, tower.port)}, {contracts}, "
              f"{len(tower.records) + len(tower.ms_records)} channel(s) watched, control {control.path}", flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        await control.close()
        if tower is not None:
            await tower.stop()


class TowerLog:
    """Logs what a tower does with each channel it watches, as its records change. Payment
    channels (Tower): a state taken from a client, a stale close seen, its refutation registered,
    the channel closed and the reward paid. Multistate channels (MSTower) besides: each
    nanocontract state and SETTLE call taken, a stale registration of a nanocontract seen, its
    own registration and call registered, each reward paid. It sees every record a tower protocol
    puts in place (`put`), and logs the change from the one before, so a record put again
    unchanged (each poll) logs nothing."""

    def __init__(self, tower: Watchtower) -> None:
        self.protocol = tower.tower
        self.ms_protocol = tower.ms_tower
        self.address = tower.address

    def install(self) -> None:
        self._wrap(self.protocol, self.changed)
        if self.ms_protocol is not None:
            self._wrap(self.ms_protocol, self.ms_changed)

    @staticmethod
    def _wrap(protocol: Any, changed: Callable[[Any, Any], None]) -> None:
        put = protocol.put

        def logged(rec: Any) -> None:
            before = protocol.records.get(rec.channel_id)
            put(rec)
            if before != rec:
                changed(before, rec)

        protocol.put = logged

    def changed(self, before: Watched | None, rec: Watched) -> None:
        cid = "0x" + rec.channel_id.hex()
        if before is None or rec.version > before.version:
            log.info("channel %s: took version %d from %s (alice %s, bob %s; reward %s)", cid, rec.version, rec.client,
                     show_amount(rec.state.balance_alice), show_amount(rec.state.balance_bob), show_amount(rec.reward))
        registered, reward_paid, closed = (before.registered, before.reward_paid, before.closed) if before else (
            None, None, False)
        self._close_registered(cid, rec.registered, registered, rec.refuted, rec.version, rec.deadline)
        if rec.reward_paid is not None and rec.reward_paid != reward_paid:
            log.info("channel %s: reward of %s paid to %s", cid, show_amount(rec.reward_paid), self.address)
        if rec.closed and not closed:
            log.info("channel %s: closed%s", cid, "" if rec.reward_paid is not None else " (no reward for this tower)")

    def ms_changed(self, before: MSWatched | None, rec: MSWatched) -> None:
        cid = "0x" + rec.channel_id.hex()
        if before is None or rec.version > before.version:
            log.info("multistate channel %s: took version %d from %s (cash alice %s, bob %s; %d nanocontract(s); "
                     "reward %s)", cid, rec.version, rec.client, show_amount(rec.state.cash_alice),
                     show_amount(rec.state.cash_bob), len(rec.state.nanocontracts), show_amount(rec.reward))
        for nano in rec.nanos:
            old = before.nano(nano.nid) if before is not None else None
            if old is None or nano.state.version > old.state.version:
                log.info("nanocontract 0x%s of %s: took version %d (reward %s)", nano.nid.hex(), cid,
                         nano.state.version, show_amount(nano.reward))
        for call in rec.calls:
            old_call = before.call(call.nid) if before is not None else None
            if old_call is None or call.version > old_call.version:
                log.info("nanocontract 0x%s of %s: took the SETTLE with γ version %d (reward %s)", call.nid.hex(), cid,
                         call.version, show_amount(call.reward))
        self._close_registered(cid, rec.registered, before.registered if before else None, rec.refuted, rec.version,
                               rec.deadline, "multistate channel")
        for entry in rec.on_chain:
            old_entry = before.chain(entry.nid) if before is not None else None
            if old_entry == entry:
                continue
            nid, held_nano, held_call = "0x" + entry.nid.hex(), rec.nano(entry.nid), rec.call(entry.nid)
            held = held_nano.state.version if held_nano is not None else None
            if old_entry is None or entry.version != old_entry.version:
                if entry.ours and held == entry.version:
                    log.info("nanocontract %s of %s: our registration of version %d is registered; its window ends "
                             "at %s", nid, cid, entry.version, _utc(entry.window_end))
                elif held is not None and entry.version < held:
                    log.warning("nanocontract %s of %s: a stale registration of version %d (we hold %d): registering "
                                "ours before %s", nid, cid, entry.version, held, _utc(entry.window_end))
                elif not entry.ours:
                    log.info("nanocontract %s of %s: version %d registered (we hold %s)", nid, cid, entry.version,
                             held if held is not None else "none")
            if held_call is not None and entry.gamma is not None and (old_entry is None or old_entry.gamma != entry.gamma):
                if entry.ours and entry.gamma == held_call.version:
                    log.info("nanocontract %s of %s: our SETTLE with γ version %d is executed", nid, cid, entry.gamma)
                else:
                    log.info("nanocontract %s of %s: the half stores γ version %d (we hold the SETTLE with %d)",
                             nid, cid, entry.gamma, held_call.version)
        paid_before = set(before.rewards_paid) if before is not None else set()
        for nid_paid, amount in rec.rewards_paid:
            if (nid_paid, amount) not in paid_before:
                what = "the channel state" if nid_paid == bytes(32) else f"nanocontract 0x{nid_paid.hex()}"
                log.info("multistate channel %s: reward of %s for %s paid to %s", cid, show_amount(amount), what,
                         self.address)
        if rec.closed and not (before is not None and before.closed):
            log.info("multistate channel %s: closed%s", cid, f", {show_amount(rec.reward_paid)} paid to this tower"
                     if rec.rewards_paid else " (no reward for this tower)")

    @staticmethod
    def _close_registered(cid: str, registered: int | None, registered_before: int | None, refuted: int | None,
                          version: int, deadline: int, what: str = "channel") -> None:
        if registered is None or registered == registered_before:
            return
        if refuted == registered:
            log.info("%s %s: our refutation with version %d is registered; the window ends at %s",
                     what, cid, registered, _utc(deadline))
        elif registered < version:
            log.warning("%s %s: a stale close registered version %d (we hold %d): refuting before %s",
                        what, cid, registered, version, _utc(deadline))
        else:
            log.info("%s %s: a close registered version %d (we hold %d): nothing to refute",
                     what, cid, registered, version)


def _utc(timestamp: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
