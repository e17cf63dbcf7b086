"""What a scenario run stands on and what it learns as it goes: the chain and the contracts, the
parties, the invoices, and the ids of channels, nanocontracts (a multi-hop payment's locks among
them) and virtual channels under the names the file gives them. Both ways: the steps look ids
up by name, the recording names what it sees by id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak, to_checksum_address

from perun import errors
from perun.chain.backend import Chain, EmbeddedChain
from perun.chain.channels import ChannelsContract
from perun.chain.deploy import Deployment, deploy
from perun.chain.multistate import MSContract
from perun.chain.payment import Event, PaymentContract
from perun.core.amounts import ether
from perun.core.apps import App, app_named
from perun.core.apps import hashtimelock as htlc
from perun.core.apps import virtualchannel as vc
from perun.core.channel import Params
from perun.core.multistate import nanocontract_id
from perun.core.route import DEFAULT_MARGIN, Direction, Invoice, Policy, Route, build_route
from perun.protocols.multihop import ForwardPolicy
from perun.scenario.party import Party, TowerParty
from perun.scenario.spec import Scenario

TOKEN_FUNDS = 10_000  # units of the test token each party starts with
_IDS = re.compile(r"0x(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40})(?![0-9a-fA-F])")  # a nid, or an address
ROUTE_SLACK = 60  # seconds the chain may move between building a route and the payee's check of its lock


def party_key(name: str) -> bytes:
    """The key of a party the file gives none on the embedded chain: derived from its name, so
    every run has the same addresses."""
    return keccak(b"perun scenario party " + name.encode())


class World:
    """The chain, the contracts and the parties of one run; the ids it learned, by name."""

    def __init__(self, scenario: Scenario, chain: Chain, workdir: Path) -> None:
        self.scenario = scenario
        self.chain = chain
        self.workdir = workdir  # the parties' stores
        self.contract: PaymentContract  # deployed by setup, like the rest
        self.ms: MSContract | None = None  # with a multistate channel in the file
        self.deployment: Deployment | None = None
        self.token: Any = None  # with an erc20 channel in the file
        self.parties: dict[str, Party] = {}
        self.towers: dict[str, TowerParty] = {}  # watchtowers: no channel of their own
        self.initial: dict[str, int] = {}  # party or tower -> its wallet after the funding
        self.gas_paid: dict[str, int] = {}  # party or tower -> the gas of every transaction it sent
        self.cids: dict[str, bytes] = {}
        self.params: dict[str, Params] = {}
        self.nids: dict[str, bytes] = {}  # nanocontract name (a virtual channel's half: g@ledger) -> nid
        self.gids: dict[str, bytes] = {}  # virtual channel name -> its id
        self.validity: dict[str, int] = {}  # virtual channel name -> its validity (a chain time)
        self.lock_timeouts: dict[str, int] = {}  # HashTimeLock name -> its timeout (a chain time)
        self.invoices: dict[str, Invoice] = {}  # invoice name -> the invoice its payee made

    def setup(self) -> None:
        """Deploys the contracts, makes the parties and funds them."""
        sc, chain = self.scenario, self.chain
        deployer = chain.dev_accounts[0]
        if any(c.kind == "multistate" for c in sc.channels.values()):
            # PaymentContract, MSContract and the apps; a file of payment channels deploys (and
            # its nodes watch) the PaymentContract alone, as before multistate channels.
            self.deployment = deploy(chain, deployer)
            self.contract = self.deployment.payment(chain)
            self.ms = self.deployment.multistate(chain)
        else:
            self.contract = PaymentContract.deploy(chain, deployer)
        if any(c.token == "erc20" for c in sc.channels.values()):
            self.token = chain.contract("TestToken", chain.deploy(deployer, "TestToken"))
        for name, tower in sc.towers.items():  # keys like the parties'; funded for gas
            key = tower.key or (party_key(name) if isinstance(chain, EmbeddedChain) else Account.create().key)
            account = Account.from_key(key)
            self.towers[name] = TowerParty(name, tower, account, self.workdir / f"{name}.db", chain,
                                           self.contract.address, self.deployment)
            chain.fund(account.address, tower.funds)
        for name, spec in sc.parties.items():
            # Keys derived from names make runs on a fresh embedded chain repeat exactly; on a
            # shared chain fresh keys keep each run's wallets apart from the last run's.
            key = spec.key or (party_key(name) if isinstance(chain, EmbeddedChain) else Account.create().key)
            account = Account.from_key(key)
            self.parties[name] = Party(name, spec, account, self.workdir / f"{name}.db", chain, self.contract.address,
                                       self.deployment)
            chain.fund(account.address, spec.funds)
            if self.token is not None:
                chain.transact(deployer, self.token.functions.mint(account.address, TOKEN_FUNDS))
        for name in [*sc.parties, *sc.towers]:
            self.initial[name] = self.wallet(name)

    def running(self) -> list[Party | TowerParty]:
        """The parties and towers whose nodes run."""
        members: list[Party | TowerParty] = [*self.parties.values(), *self.towers.values()]
        return [p for p in members if p.running]

    def member(self, name: str) -> Party | TowerParty:
        """A party or a tower, by name."""
        return self.parties.get(name) or self.towers[name]

    def members(self) -> list[Party | TowerParty]:
        """The parties, then the towers."""
        return [*self.parties.values(), *self.towers.values()]

    # ------------------------------------------------------------------ by the file's names

    def cid(self, channel: str) -> bytes:
        """A channel's id, or a virtual channel's."""
        cid = self.cids.get(channel, self.gids.get(channel))
        if cid is None:
            raise errors.WrongStage(f"channel {channel} is not open yet")
        return cid

    def nid(self, name: str) -> bytes:
        if name not in self.nids:
            raise errors.UnknownNanocontract(f"nanocontract {name} was never created")
        return self.nids[name]

    def ends(self, channel: str) -> tuple[str, str]:
        """(alice, bob) of a channel or a virtual channel."""
        spec = self.scenario.channels.get(channel) or self.scenario.virtual[channel]
        return spec.alice, spec.bob

    def is_multistate(self, channel: str) -> bool:
        return self.scenario.channels[channel].kind == "multistate"

    def contract_of(self, channel: str) -> ChannelsContract:
        return self.ms if self.is_multistate(channel) else self.contract  # type: ignore[return-value]

    def events(self, channel: str) -> list[Event]:
        """The contract's events of a channel, oldest first; none before it is open."""
        cid = self.cids.get(channel)
        if cid is None:
            return []
        return [e for e in self.contract_of(channel).events() if e.args.get("channelId") == cid]

    # ------------------------------------------------------------------ multi-hop payments

    def route(self, payer: str, channels: tuple[str, ...], invoice: Invoice) -> Route:
        """The route over `channels` (the payer's first) that pays `invoice`: each lock's amount
        and timeout from the forwarders' fees and the channels' Δ, as the payer would compute them
        from announcements, and each direction's capacity its sender's cash now."""
        path, at = [], payer
        for name in channels:
            spec, cid = self.scenario.channels[name], self.cid(name)
            to = spec.bob if at == spec.alice else spec.alice
            rec = self.parties[at].record(cid)
            cash = rec.state.cash_alice if at == spec.alice else rec.state.cash_bob  # type: ignore[union-attr]
            fees = self.scenario.parties[at].forward or ForwardPolicy()
            path.append(Direction(cid, self.parties[at].address, self.parties[to].address,
                                  Policy(fees.base_fee, fees.fee_ppm, spec.delta, cash)))
            at = to
        # The payee checks its lock's timeout against the chain's time when the lock reaches it.
        now = self.chain.timestamp() + ROUTE_SLACK
        return build_route(self.parties[payer].address, path, invoice.amount, now, DEFAULT_MARGIN, invoice.min_final)

    def learn_lock(self, cid: bytes, version: int, app: str, data: bytes) -> None:
        """A HashTimeLock proposed in channel `cid` at `version` for the hash of an invoice of the
        file: its name (`invoice@channel`) now stands for its nid, and its timeout is known."""
        apps = self.deployment.apps if self.deployment else {}
        if app.lower() != apps.get("HashTimeLock", "").lower():
            return
        try:
            lock = htlc.decode(data)
        except errors.HashTimeLockMalformed:  # the receiver refuses it; the relay must pass it on
            return
        invoice = next((name for name, i in self.invoices.items() if i.payment_hash == lock.hashlock), None)
        if invoice is not None:
            name = f"{invoice}@{self.channel_name(cid)}"
            self.nids[name] = nanocontract_id(cid, version)
            self.lock_timeouts[name] = lock.timeout

    def invoice_of(self, lock: str) -> str | None:
        """The invoice whose payment a nanocontract is a lock of, if it is one (`invoice@channel`)."""
        invoice = lock.split("@")[0]
        return invoice if "@" in lock and invoice in self.scenario.invoices else None

    def preimage(self, invoice: str) -> bytes:
        """The preimage of an invoice, from its payee's record."""
        spec = self.scenario.invoices[invoice]
        rec = self.parties[spec.payee].hop(self.invoices[invoice].payment_hash) if invoice in self.invoices else None
        if rec is None:
            raise errors.WrongStage(f"invoice {invoice} was never made")
        return rec.preimage

    # ------------------------------------------------------------------ names for ids

    def name(self, address: str) -> str:
        """A party's or a tower's name, else the address."""
        address = to_checksum_address(address)
        return next((p.name for p in self.members() if p.address == address), address)

    def named(self, text: str) -> str:
        """`text` (a node's error, say) with the ids it quotes under the file's names: a party's
        or a tower's address, a nanocontract's nid; the ids the file never named stay as they are."""
        def name(match: re.Match[str]) -> str:
            word = match.group()
            if len(word) == 42:
                return self.name(word)
            nid = bytes.fromhex(word[2:])
            return self.nano_name(nid) if nid in self.nids.values() else word
        return _IDS.sub(name, text)

    def channel_name(self, cid: bytes) -> str:
        """A channel's or a virtual channel's name; "" for an unknown id."""
        return next((name for name, c in {**self.cids, **self.gids}.items() if c == cid), "")

    def nano_name(self, nid: bytes) -> str:
        return next((name for name, n in self.nids.items() if n == nid), "0x" + nid.hex()[:8])

    def gamma_of(self, nid: bytes) -> str | None:
        """The virtual channel whose half `nid` is, if it is one."""
        name = self.nano_name(nid)
        gamma = name.split("@")[0]
        return gamma if gamma in self.scenario.virtual else None

    def app_of(self, nid: bytes) -> App | None:
        spec = self.scenario.nanocontracts.get(self.nano_name(nid))
        if spec is None:
            return app_named(vc.VirtualChannel.name) if self.gamma_of(nid) else None
        return app_named(spec.app)

    def app_name(self, address: str) -> str:
        apps = self.deployment.apps if self.deployment else {}
        return next((n for n, a in apps.items() if a.lower() == address.lower()), address)

    def fun_name(self, nid: bytes, fun: int) -> str:
        app = self.app_of(nid)
        names = {v: k for k, v in app.functions.items()} if app else {}
        return names.get(fun, str(fun))

    def is_settle(self, nid: bytes, fun: int) -> bool:
        return self.gamma_of(nid) is not None and fun == vc.SETTLE

    def amount(self, amount: int) -> str:
        """In the scenario's unit: ether, or token units."""
        return f"{ether(amount)} ETH" if self.token is None else f"{amount:,}"

    def amounts(self, alice: int, bob: int) -> str:
        """Alice's and Bob's: `9 ETH / 6 ETH`."""
        return f"{self.amount(alice)} / {self.amount(bob)}"

    # ------------------------------------------------------------------ money on chain

    def wallet(self, name: str) -> int:
        """On-chain money of the scenario's unit, gas excluded."""
        address = self.member(name).address
        if self.token is not None:
            return self.token.functions.balanceOf(address).call()
        return self.chain.balance(address) + self.gas_paid.get(name, 0)

    def held(self) -> int:
        """What the contracts hold: PaymentContract's, and MSContract's if deployed."""
        addresses = [self.contract.address] + ([self.ms.address] if self.ms else [])
        if self.token is not None:
            return sum(self.token.functions.balanceOf(a).call() for a in addresses)
        return sum(self.chain.balance(a) for a in addresses)
