"""The channel acceptance policy: each limit at its bound −1, at it and +1 (wei and seconds), the
allow-lists, the default that never deposits the node's own money, and the reasons it gives."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address

from perun import errors
from perun.core.channel import ETH, MAX_AMOUNT, MAX_DELTA, Params
from perun.protocols.policy import ACCEPT_ALL, ChannelPolicy
from perun.wire.messages import MAX_REASON

ALICE = "0x" + "a1" * 20  # the proposer
BOB = "0x" + "b2" * 20  # this node
TOKEN = "0x" + "7c" * 20
ETHER = 10**18
TOKEN_BAD_CHECKSUM = to_checksum_address("0x" + "ab" * 20).swapcase().replace("0X", "0x")  # mixed case, all wrong


def proposal(deposit: int = ETHER, own: int = 0, delta: int = 3600, alice: str = ALICE, token: str = ETH) -> Params:
    return Params(alice, BOB, deposit, own, delta, 1, token)


def bob() -> str:
    return proposal().bob


def test_the_default_accepts_a_channel_in_which_the_node_deposits_nothing_and_refuses_one_wei() -> None:
    policy = ChannelPolicy()
    assert policy.refusal(proposal(own=0)) is None
    assert policy.refusal(proposal(deposit=0, own=0, delta=1)) is None  # no other limit by default
    assert policy.refusal(proposal(own=1)) == (
        f"{bob()} deposits at most 0 ETH of its own in a channel it is offered, not 0.000000000000000001 ETH; "
        "its operator can allow more with --max-own-deposit (config key max_own_deposit)")
    assert "not 1000 ETH" in policy.refusal(proposal(own=1000 * ETHER))


@pytest.mark.parametrize("field, bound, make, below, above", [
    ("max_own_deposit", 2 * ETHER, lambda x: proposal(own=x), None, "max_own_deposit"),
    ("min_peer_deposit", 2 * ETHER, lambda x: proposal(deposit=x), "min_peer_deposit", None),
    ("max_peer_deposit", 2 * ETHER, lambda x: proposal(deposit=x), None, "max_peer_deposit"),
    ("min_delta", 600, lambda x: proposal(delta=x), "min_delta", None),
    ("max_delta", 600, lambda x: proposal(delta=x), None, "max_delta"),
])
def test_each_limit_at_its_bound(field, bound, make, below, above) -> None:
    policy = ChannelPolicy(**{"max_own_deposit": None, field: bound})
    for value, refused_by in ((bound - 1, below), (bound, None), (bound + 1, above)):
        reason = policy.refusal(make(value))
        if refused_by is None:
            assert reason is None, (value, reason)
        else:
            assert reason is not None and f"(config key {refused_by})" in reason, (value, reason)
            assert f"--{refused_by.replace('_', '-')} " in reason


def test_the_reasons_say_amounts_in_eth_and_times_in_seconds() -> None:
    policy = ChannelPolicy(max_own_deposit=2 * ETHER, min_peer_deposit=ETHER // 2, max_peer_deposit=10 * ETHER,
                           min_delta=600, max_delta=86400)
    assert policy.refusal(proposal(own=3 * ETHER)) == (
        f"{bob()} deposits at most 2 ETH of its own in a channel it is offered, not 3 ETH; its operator can "
        "allow more with --max-own-deposit (config key max_own_deposit)")
    assert policy.refusal(proposal(deposit=ETHER // 4)) == (
        f"{bob()} needs a proposer to deposit at least 0.5 ETH, not 0.25 ETH; its operator "
        "can lower that with --min-peer-deposit (config key min_peer_deposit)")
    assert policy.refusal(proposal(deposit=11 * ETHER)) == (
        f"{bob()} needs a proposer to deposit at most 10 ETH, not 11 ETH; its operator can "
        "raise that with --max-peer-deposit (config key max_peer_deposit)")
    assert policy.refusal(proposal(delta=60)) == (
        f"{bob()} accepts a dispute window Δ of at least 600 s, not 60 s; its operator can lower that with "
        "--min-delta (config key min_delta)")
    assert policy.refusal(proposal(delta=86401)) == (
        f"{bob()} accepts a dispute window Δ of at most 86400 s, not 86401 s; its operator can raise that with "
        "--max-delta (config key max_delta)")


def test_every_reason_fits_in_a_wire_error_up_to_a_billion_eth_to_the_wei() -> None:
    big = 10**27 - 1
    refused = [
        ChannelPolicy(max_own_deposit=big - 1).refusal(proposal(own=big, deposit=big)),
        ChannelPolicy(max_own_deposit=None, min_peer_deposit=big).refusal(proposal(deposit=big - 1)),
        ChannelPolicy(max_peer_deposit=big - 1).refusal(proposal(deposit=big)),
        ChannelPolicy(min_delta=MAX_DELTA).refusal(proposal(delta=MAX_DELTA - 1)),
        ChannelPolicy(max_delta=1).refusal(proposal(delta=MAX_DELTA)),
        ChannelPolicy(allow_peers=frozenset({BOB})).refusal(proposal()),
        ChannelPolicy().refusal(proposal(token=TOKEN)),
    ]
    assert all(reason is not None and len(reason.encode()) <= MAX_REASON for reason in refused), refused


def test_the_allow_list_of_peers() -> None:
    carol = "0x" + "c3" * 20
    policy = ChannelPolicy(allow_peers=frozenset({ALICE.upper().replace("0X", "0x")}))  # any case, one checksum
    assert policy.allow_peers == frozenset({proposal().alice})
    assert policy.refusal(proposal()) is None
    assert policy.refusal(proposal(alice=carol)) == (
        f"{bob()} accepts channels only from the peers it lists, not from {proposal(alice=carol).alice}; its "
        "operator can add one with --allow-peer (config key allow_peer)")
    assert ChannelPolicy().refusal(proposal(alice=carol)) is None  # an empty list: anyone


def test_erc20_channels_need_their_token_allowed() -> None:
    in_token = proposal(token=TOKEN)
    assert ChannelPolicy().refusal(in_token) == (
        f"{bob()} accepts no channel in token {in_token.token}; its operator can allow one with --allow-token "
        "(config key allow_token)")
    allowed = ChannelPolicy(allow_tokens=frozenset({TOKEN}), max_own_deposit=5)
    assert allowed.refusal(in_token) is None
    # Its limits count the token's base units.
    assert "at most 5 base units of its own" in allowed.refusal(proposal(token=TOKEN, own=6))
    assert ChannelPolicy(allow_tokens=None).refusal(in_token) is None  # any token


def test_accept_all_accepts_any_deposit_and_token() -> None:
    assert ACCEPT_ALL.refusal(proposal(own=MAX_AMOUNT - ETHER, token=TOKEN, delta=1)) is None


@pytest.mark.parametrize("kwargs, message", [
    ({"max_own_deposit": -1}, "max_own_deposit must be a whole number in 0..340282366920938463463374607431768211455, "
                              "got -1"),
    ({"min_peer_deposit": None}, "min_peer_deposit must be a whole number in 0..340282366920938463463374607431768211455,"
                                 " got None"),
    ({"min_delta": 1.5}, "min_delta must be a whole number in 0..315360000, got 1.5"),
    ({"max_delta": True}, "max_delta must be a whole number in 0..315360000, got True"),
    ({"min_peer_deposit": 2, "max_peer_deposit": 1}, "min_peer_deposit 2 exceeds max_peer_deposit 1"),
    ({"min_delta": 601, "max_delta": 600}, "min_delta 601 exceeds max_delta 600"),
    ({"allow_peers": ALICE}, f"allow_peers is a set of addresses, got the string '{ALICE}'"),
    ({"allow_peers": {"0x12"}}, "allow_peers: not an address (0x and 40 hex digits): '0x12'"),
    ({"allow_tokens": {TOKEN_BAD_CHECKSUM}}, f"allow_tokens: {TOKEN_BAD_CHECKSUM} has a wrong checksum (its mixed "
                                             "case): check it for a typo, or give it in lower case"),
])
def test_a_policy_with_bad_limits_is_refused(kwargs, message) -> None:
    with pytest.raises(errors.ConfigError) as refused:
        ChannelPolicy(**kwargs)
    assert str(refused.value).startswith(message)
