"""Which channels a node accepts when a peer proposes one (it is Bob): its operator's limits, as
lnd's channel acceptor and CLN's options set them. Payment and multistate channels share it.

The default accepts any channel in which this node deposits nothing: the peer's proposal alone
never locks the node's own money. A refusal is a sentence for the proposer (it travels in the
wire Error's reason, at most wire.messages.MAX_REASON bytes) that names the limit, in ETH, and
the `perun node` flag and config key that would allow the channel.

What a node agrees to inside channels it already has stays with the protocols that decide it,
at other moments and on other data: `accept_nanocontract` (a nanocontract that blocks its cash,
judged on the app's state), `accept_virtual` (a virtual channel that blocks cash of a ledger
channel, not of the wallet) and `HubPolicy` (serving others as Ingrid, for a fee).
"""

from __future__ import annotations

from dataclasses import dataclass

from perun import errors
from perun.core.address import parse_address
from perun.core.amounts import ether
from perun.core.channel import ETH, MAX_AMOUNT, MAX_DELTA, Params


@dataclass(frozen=True)
class ChannelPolicy:
    """Limits on a proposed channel; a None maximum is no limit. Amounts are wei in ETH channels
    and the token's base units in ERC-20 channels, which are refused unless their token is in
    `allow_tokens` (None: any token). An empty `allow_peers` accepts proposals from anyone."""

    max_own_deposit: int | None = 0
    min_peer_deposit: int = 0
    max_peer_deposit: int | None = None
    min_delta: int = 0
    max_delta: int | None = None
    allow_peers: frozenset[str] = frozenset()
    allow_tokens: frozenset[str] | None = frozenset()

    def __post_init__(self) -> None:
        for name in ("max_own_deposit", "min_peer_deposit", "max_peer_deposit"):
            _check_int(name, getattr(self, name), 0, MAX_AMOUNT)
        for name in ("min_delta", "max_delta"):
            _check_int(name, getattr(self, name), 0, MAX_DELTA)
        if self.max_peer_deposit is not None and self.min_peer_deposit > self.max_peer_deposit:
            raise errors.ConfigError(f"min_peer_deposit {self.min_peer_deposit} exceeds max_peer_deposit "
                                     f"{self.max_peer_deposit}")
        if self.max_delta is not None and self.min_delta > self.max_delta:
            raise errors.ConfigError(f"min_delta {self.min_delta} exceeds max_delta {self.max_delta}")
        object.__setattr__(self, "allow_peers", _addresses("allow_peers", self.allow_peers))
        if self.allow_tokens is not None:
            object.__setattr__(self, "allow_tokens", _addresses("allow_tokens", self.allow_tokens))

    def refusal(self, params: Params) -> str | None:
        """None if this node, `params.bob`, accepts the channel `params.alice` proposes; otherwise
        why not, for the proposer."""
        me, peer, unit = params.bob, params.alice, params.token
        own, theirs = _amount(params.deposit_bob, unit), _amount(params.deposit_alice, unit)
        if self.allow_peers and peer not in self.allow_peers:
            return (f"{me} accepts channels only from the peers it lists, not from {peer}; its operator can add "
                    "one with --allow-peer (config key allow_peer)")
        if unit != ETH and self.allow_tokens is not None and unit not in self.allow_tokens:
            return (f"{me} accepts no channel in token {unit}; its operator can allow one with --allow-token "
                    "(config key allow_token)")
        if self.max_own_deposit is not None and params.deposit_bob > self.max_own_deposit:
            return (f"{me} deposits at most {_amount(self.max_own_deposit, unit)} of its own in a channel it is "
                    f"offered, not {own}; its operator can allow more with --max-own-deposit (config key "
                    "max_own_deposit)")
        if params.deposit_alice < self.min_peer_deposit:
            return (f"{me} needs a proposer to deposit at least {_amount(self.min_peer_deposit, unit)}, not "
                    f"{theirs}; its operator can lower that with --min-peer-deposit (config key min_peer_deposit)")
        if self.max_peer_deposit is not None and params.deposit_alice > self.max_peer_deposit:
            return (f"{me} needs a proposer to deposit at most {_amount(self.max_peer_deposit, unit)}, not "
                    f"{theirs}; its operator can raise that with --max-peer-deposit (config key max_peer_deposit)")
        if params.delta < self.min_delta:
            return (f"{me} accepts a dispute window Δ of at least {self.min_delta} s, not {params.delta} s; its "
                    "operator can lower that with --min-delta (config key min_delta)")
        if self.max_delta is not None and params.delta > self.max_delta:
            return (f"{me} accepts a dispute window Δ of at most {self.max_delta} s, not {params.delta} s; its "
                    "operator can raise that with --max-delta (config key max_delta)")
        return None


def _amount(amount: int, token: str) -> str:
    return f"{ether(amount)} ETH" if token == ETH else f"{amount} base units"


def _check_int(name: str, value: int | None, low: int, high: int) -> None:
    if value is None and name.startswith("max_"):
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise errors.ConfigError(f"{name} must be a whole number in {low}..{high}, got {value!r}")


def _addresses(name: str, values: frozenset[str]) -> frozenset[str]:
    if isinstance(values, str):  # a lone address would pass as a set of characters
        raise errors.ConfigError(f"{name} is a set of addresses, got the string {values!r}")
    try:
        return frozenset(parse_address(value) for value in values)
    except errors.InvalidAddress as exc:
        raise errors.ConfigError(f"{name}: {exc}") from None


# Accepts every channel it is offered, its own deposit included: for programs that script both
# parties (tests, scenarios, benchmarks), where the proposer's deposits are the program's say.
ACCEPT_ALL = ChannelPolicy(max_own_deposit=None, allow_tokens=None)
