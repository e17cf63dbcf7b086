"""The methods of the control socket: each takes a request's params, checks them first, and
acts on the node through its façade and its protocols (docs: perun.control)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from perun import errors
from perun.control import params as check
from perun.control.protocol import BadRequest, ControlError
from perun.core.route import Invoice, Route
from perun.protocols.multistate.protocol import Multistate

if TYPE_CHECKING:
    from perun.chain.payment import Receipt
    from perun.node import Node
    from perun.runtime import Protocol


class Methods:
    """The methods on the node `node()` returns (ControlError while it is starting). A watchtower
    (perun.node.Watchtower) answers the methods of TOWER_METHOD_NAMES only."""

    def __init__(self, node: Callable[[], Node]) -> None:
        self.node = node

    def table(self, names: tuple[str, ...] = ()) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """Each method of `names` (by default METHOD_NAMES, a node's) by its name on the socket."""
        return {name: getattr(self, name) for name in names or METHOD_NAMES}

    async def info(self, params: dict[str, Any]) -> Any:
        """The node or tower: what its runtime and each of its protocols (`about`) say."""
        check.take(params)
        rt = self.node().runtime
        protocols = rt.registry.protocols
        return {
            "address": rt.address,
            "host": rt.peers.host,
            "port": rt.peers.port,
            "chain_id": rt.chain.chain_id,
            **{key: value for p in protocols for key, value in p.about().items()},
            "chain_time": rt.follower.chain_time,
            "chain_reachable": not rt.chain_status.down,
            "peers": sorted(peer for peer, conn in rt.peers.connections.items() if not conn.closed),
            "channels": {p.kind: len(p.records) for p in protocols},
        }

    async def connect(self, params: dict[str, Any]) -> Any:
        peer, host, port = check.take(params, "peer", "host", "port")
        peer, host, port = check.address(peer, "peer"), check.text(host, "host"), check.port_number(port)
        await self.node().connect(peer, host, port)
        return {"peer": peer, "host": host, "port": port}

    async def open(self, params: dict[str, Any]) -> Any:
        return await self._opened(self.node().payment, params)

    async def _opened(self, protocol: Protocol, params: dict[str, Any]) -> Any:
        """The channel once open, or once created on chain with the peer's confirmation still
        to come (stage initialising: the caller says what happens at the deadline)."""
        peer, deposit, peer_deposit, delta, timeout = check.open_args(params)
        try:
            cid = await protocol.open(peer, deposit, peer_deposit, delta, timeout=timeout)  # type: ignore[attr-defined]
        except errors.ConfirmPending as exc:
            cid = exc.channel_id
        return self.node().describe(cid)

    async def cancel(self, params: dict[str, Any]) -> Any:
        """Gives up an opening: no create or confirm from now on (a created one is refunded at its
        deadline)."""
        (channel,) = check.take(params, "channel")
        cid = check.channel_id(channel)
        await self._holder(cid).cancel(cid)
        return self.node().describe(cid)

    async def pay(self, params: dict[str, Any]) -> Any:
        channel, amount = check.take(params, "channel", "amount")
        cid, amount = check.channel_id(channel), check.amount(amount, "amount")
        state = await self.node().pay(cid, amount)
        return {**self.node().describe(cid), "paid_version": state.version}

    async def invoice(self, params: dict[str, Any]) -> Any:
        """An invoice for `amount`, payable for `expiry` seconds of chain time from now (default
        an hour), with an optional `description`: its text (`perun1…`) and fields."""
        amount, expiry, description = check.take(params, "amount", optional=("expiry", "description"))
        amount = check.amount(amount, "amount")
        seconds = check.integer(expiry, "expiry") if expiry is not None else INVOICE_EXPIRY
        if not seconds:
            raise BadRequest("expiry must be a positive number of seconds")
        description = check.description(description) if description is not None else ""
        node = self.node()
        now = await node.on_chain(node.chain.timestamp)
        invoice = await node.invoice(amount, now + seconds, description=description)
        return {"invoice": invoice.encode(), "payee": invoice.payee, "amount": str(invoice.amount),
                "token": invoice.token, "payment_hash": "0x" + invoice.payment_hash.hex(), "expiry": invoice.expiry,
                "description": invoice.description}

    async def pay_invoice(self, params: dict[str, Any]) -> Any:
        """Pays the invoice whose text is `invoice` over the cheapest route the node finds; answers
        once the payee claimed (PaymentPending after `timeout` seconds, default 30)."""
        invoice, timeout = check.take(params, "invoice", optional=("timeout",))
        text = check.text(invoice, "invoice")
        return paid(*await self.node().pay_invoice(Invoice.decode(text), check.seconds(timeout)))

    async def pay_to(self, params: dict[str, Any]) -> Any:
        """Pays `amount` to the address `payee` over the cheapest route, without an invoice."""
        payee, amount, timeout = check.take(params, "payee", "amount", optional=("timeout",))
        payee, amount = check.address(payee, "payee"), check.amount(amount, "amount")
        return paid(*await self.node().pay_to(payee, amount, check.seconds(timeout)))

    async def close(self, params: dict[str, Any]) -> Any:
        """The cooperative close of a channel of any kind (a virtual one's is its fast close)."""
        (channel,) = check.take(params, "channel")
        cid = check.channel_id(channel)
        await self._holder(cid).cooperative_close(cid)
        return self.node().describe(cid)

    async def register(self, params: dict[str, Any]) -> Any:
        (channel,) = check.take(params, "channel")
        cid = check.channel_id(channel)
        receipt = await self.node().register(cid)
        return {**self._channel_json(cid), "transaction": transaction(receipt)}

    async def finalize(self, params: dict[str, Any]) -> Any:
        return await self._settle(params, "finalize")

    async def refund(self, params: dict[str, Any]) -> Any:
        return await self._settle(params, "refund")

    async def _settle(self, params: dict[str, Any], action: str) -> Any:
        """finalize or refund; no transaction if another one (the peer's, or this node's
        watcher's, which does both as soon as they are due) closed the channel first."""
        (channel,) = check.take(params, "channel")
        cid = check.channel_id(channel)
        node = self.node()
        receipt = await getattr(node, action)(cid)
        if receipt is None:
            await node.sync()
        return {**self._channel_json(cid), "transaction": transaction(receipt)}

    async def wait_peer(self, params: dict[str, Any]) -> Any:
        peer, timeout = check.take(params, "peer", optional=("timeout",))
        await self.node().wait_connected(check.address(peer, "peer"), float(check.integer(timeout, "timeout")) if timeout else 30.0)
        return None

    async def wait(self, params: dict[str, Any]) -> Any:
        """Answers when the channel (of any kind) reaches one of `stage` (comma-separated), or
        its version reaches `version`; PeerTimeout after `timeout` seconds (default 30)."""
        channel, stage, version, registered, nid, timeout = check.take(
            params, "channel", optional=("stage", "version", "registered", "nid", "timeout"))
        cid = check.channel_id(channel)
        stages = set(check.text(stage, "stage").split(",")) if stage is not None else None
        least = check.integer(version, "version") if version is not None else None
        on_chain = check.integer(registered, "registered") if registered is not None else None
        slot = check.bytes32(nid, "nid") if nid is not None else None
        seconds = float(check.integer(timeout, "timeout")) if timeout is not None else 30.0
        node = self.node()
        holder = self._holder(cid)
        version_of, registered_of = holder.version_of, holder.registered_of
        if slot is not None:
            if not isinstance(holder, Multistate):
                raise BadRequest(f"nid names a nanocontract, and channel 0x{cid.hex()} is a {holder.kind} channel")
            version_of = partial(holder.nanocontract_version, nid=slot)
            registered_of = partial(holder.nanocontract_registered, nid=slot)
        def reached(rec) -> bool:
            if on_chain is not None and ((known := registered_of(rec)) is None or known < on_chain):
                return False
            return (stages is None or holder.stage_of(rec) in stages) and (least is None or version_of(rec) >= least)
        await node.wait_for(cid, reached, seconds)
        return node.describe(cid)

    async def wait_towers(self, params: dict[str, Any]) -> Any:
        """Answers once every tower the node hands its states to (Node's `towers`) acknowledged
        channel `channel` at `version` or above: a payment channel's state; a multistate
        channel's state, and each nanocontract of `nanocontracts` ({nid: version}) at its version
        or above; the SETTLE of a virtual channel's half with γ at `version`. PeerTimeout after
        `timeout` seconds."""
        channel, version, nanocontracts, timeout = check.take(params, "channel", "version",
                                                              optional=("nanocontracts", "timeout"))
        cid, least = check.channel_id(channel), check.integer(version, "version")
        node = self.node()
        holder = self._holder(cid)  # UnknownChannel first
        if not node.towers:
            raise BadRequest("this node hands its states to no watchtower (start it with --tower)")
        nanos = None
        if nanocontracts is not None:
            if holder is not node.runtime.registry.get("multistate") or not isinstance(nanocontracts, dict):
                raise BadRequest("nanocontracts is an object {nid: version} of a multistate channel's nanocontracts")
            nanos = {check.bytes32(nid, "nid"): check.integer(v, "version") for nid, v in nanocontracts.items()}
        await node.towers_hold(cid, least, nanos,
                               float(check.integer(timeout, "timeout")) if timeout is not None else 30.0)
        return node.describe(cid)

    async def channels(self, params: dict[str, Any]) -> Any:
        check.take(params)
        return self._listed("payment")

    async def status(self, params: dict[str, Any]) -> Any:
        """One channel of any kind, or every channel of every kind."""
        (channel,) = check.take(params, optional=("channel",))
        node = self.node()
        if channel is None:
            return [item for p in node.runtime.registry.protocols for item in self._listed(p.kind)]
        return node.describe(check.channel_id(channel))

    async def sync(self, params: dict[str, Any]) -> Any:
        check.take(params)
        await self.node().sync()
        return None

    async def ledger_open(self, params: dict[str, Any]) -> Any:
        return await self._opened(self._protocol("multistate"), params)

    async def ledgers(self, params: dict[str, Any]) -> Any:
        check.take(params)
        return self._listed("multistate")

    async def virtual_open(self, params: dict[str, Any]) -> Any:
        ledger, peer, ledger_b, deposit, peer_deposit, validity, window, fee = check.take(
            params, "ledger", "peer", "ledger_b", "deposit", "peer_deposit", "validity", "window", optional=("fee",))
        gid = await self._protocol("virtual").open(
            check.channel_id(ledger), check.address(peer, "peer"), check.channel_id(ledger_b), check.amount(deposit, "deposit"),
            check.amount(peer_deposit, "peer_deposit"), check.integer(validity, "validity"), check.integer(window, "window"),
            check.amount(fee, "fee") if fee is not None else 0)
        return self.node().describe(gid)

    async def virtual_close(self, params: dict[str, Any]) -> Any:
        (channel,) = check.take(params, "channel")
        gid = check.channel_id(channel)
        await self._protocol("virtual").close(gid)
        return self.node().describe(gid)

    async def virtuals(self, params: dict[str, Any]) -> Any:
        check.take(params)
        return self._listed("virtual")

    async def nanocontract_create(self, params: dict[str, Any]) -> Any:
        from perun.core.apps import AppState
        from perun.core.machine import Role

        channel, app, blocked_mine, blocked_peer, data = check.take(
            params, "channel", "app", "blocked_mine", "blocked_peer", "data")
        cid, app, data = check.channel_id(channel), check.text(app, "app"), check.hexbytes(data, "data")
        mine, peer = check.amount(blocked_mine, "blocked_mine"), check.amount(blocked_peer, "blocked_peer")
        ms = self._protocol("multistate")
        if app not in ms.app_address:
            raise BadRequest(f"app must be one of this node's apps ({', '.join(sorted(ms.app_address))}), "
                             f"got {check.shown(app)}")
        role = ms.channel(cid).role
        blocked = (mine, peer) if role is Role.ALICE else (peer, mine)
        nid = await ms.create(cid, app, AppState(*blocked, 0, 0, data))
        return {**self.node().describe(cid), "nid": "0x" + nid.hex()}

    async def nanocontract_call(self, params: dict[str, Any]) -> Any:
        channel, nid, fun, z = check.take(params, "channel", "nid", "fun", optional=("z",))
        cid, nid = check.channel_id(channel), check.bytes32(nid, "nid")
        z = check.hexbytes(z, "z") if z is not None else b""
        if not (isinstance(fun, str) and fun) and not (isinstance(fun, int) and not isinstance(fun, bool)):
            raise BadRequest(f"fun must be a function's name or number, got {check.shown(fun)}")
        ms = self._protocol("multistate")
        app = ms.app_of(ms.channel(cid).nanocontract(nid).state.app)
        if isinstance(fun, str) and fun in app.functions:
            fun = app.functions[fun]
        elif isinstance(fun, str) or not 0 <= fun <= 255:
            raise BadRequest(f"fun must be one of {app.name}'s functions ({', '.join(app.functions)}) or a "
                             f"number 0..255, got {check.shown(fun)}")
        await ms.call(cid, nid, fun, z)
        return self.node().describe(cid)

    async def nanocontract_absorb(self, params: dict[str, Any]) -> Any:
        channel, nid = check.take(params, "channel", "nid")
        cid, nid = check.channel_id(channel), check.bytes32(nid, "nid")
        await self._protocol("multistate").absorb(cid, nid)
        return self.node().describe(cid)

    async def nanocontract_register(self, params: dict[str, Any]) -> Any:
        channel, nid = check.take(params, "channel", "nid")
        cid, nid = check.channel_id(channel), check.bytes32(nid, "nid")
        receipt = await self._protocol("multistate").register(cid, nid)
        return {**self.node().describe(cid), "transaction": transaction(receipt)}

    def _holder(self, cid: bytes) -> Protocol:
        """The protocol that holds channel `cid`, of any kind; UnknownChannel if none does."""
        holder = self.node().runtime.registry.holder(cid)
        if holder is None:
            raise errors.UnknownChannel(f"no channel 0x{cid.hex()}")
        return holder

    def _protocol(self, kind: str) -> Any:
        """The node's protocol of `kind`; ControlError if it does not run that kind."""
        registry = self.node().runtime.registry
        protocol = registry.get(kind)
        if protocol is None:
            missing = next((k for k in _NEEDS.get(kind, ()) if registry.get(k) is None), kind)
            raise ControlError(f"this node runs no {missing} channels ({_MISSING[missing]})")
        return protocol

    def _listed(self, kind: str) -> list[dict[str, Any]]:
        """Every channel of `kind`, described by its protocol (none if the node does not run it)."""
        protocol: Protocol | None = self.node().runtime.registry.get(kind)
        return [protocol.describe(cid) for cid in list(protocol.records)] if protocol is not None else []

    def _channel_json(self, cid: bytes) -> dict[str, Any]:
        return self.node().payment.describe(cid)


# What a node lacks that runs no channels of a kind, and the kinds a kind is built on.
_MISSING = {"multistate": "start it with a deployment file that has MSContract",
            "virtual": "its deployment has no VirtualChannel app"}
_NEEDS = {"virtual": ("multistate",)}


INVOICE_EXPIRY = 3600  # seconds an invoice is payable for unless the request says


def paid(route: Route, preimage: bytes) -> dict[str, Any]:
    """A multi-hop payment once claimed: the route's hops (each lock's receiver, channel, amount
    and timeout), each intermediary's fee, and the preimage."""
    return {"payment_hash": "0x" + hashlib.sha256(preimage).hexdigest(), "preimage": "0x" + preimage.hex(),
            "payee": route.payee, "amount": str(route.amount), "total": str(route.total),
            "fees": [str(fee) for fee in route.fees],
            "hops": [{"node": hop.node, "channel": "0x" + hop.channel.hex(), "amount": str(hop.amount),
                      "timeout": hop.timeout} for hop in route.hops]}


def transaction(receipt: Receipt | None) -> dict[str, Any] | None:
    if receipt is None:
        return None
    tx = receipt.transaction
    return {"hash": "0x" + bytes(tx.receipt["transactionHash"]).hex(), "gas_used": tx.gas_used,
            "block": tx.block_number}


METHOD_NAMES = (  # in the order of the docstring of perun.control
    "info", "connect", "open", "cancel", "pay", "close", "register", "finalize", "refund", "wait_peer", "wait",
    "wait_towers", "channels", "status", "sync", "ledger_open", "ledgers", "virtual_open", "virtual_close", "virtuals",
    "nanocontract_create", "nanocontract_call", "nanocontract_absorb", "nanocontract_register", "invoice",
    "pay_invoice", "pay_to",
)
# What a watchtower's control socket answers: the channels it watches (`status`, `wait`), itself (`info`).
TOWER_METHOD_NAMES = ("info", "wait", "status", "sync")
