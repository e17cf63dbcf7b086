"""`perun node --config FILE`: every flag can live in the file, flags on the command line win,
and a bad key or value is refused with one line naming it and the file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from perun import errors
from perun.cli import main, parser
from perun.cli.node import NODE_OPTIONS, _channel_policy, _forward_policy, node_settings
from perun.errors import UsageError
from perun.protocols.multihop import ForwardPolicy
from perun.protocols.policy import ChannelPolicy

ETHER = 10**18
PEER = to_checksum_address("0x" + "a1" * 20)
TOKEN = to_checksum_address("0x" + "7c" * 20)
TOWER = to_checksum_address("0x" + "3d" * 20)

# Each flag's key, as TOML, and the setting it makes.
EVERY_KEY = {
    "data": ('"node-data"', "node-data"),  # relative: to the file's folder
    "keystore": ('"/keys/bob.json"', Path("/keys/bob.json")),  # absolute stays
    "rpc": ('["http://127.0.0.1:8545", "http://fallback:8545"]', ["http://127.0.0.1:8545", "http://fallback:8545"]),
    "deployment": ('"deployments/31337.json"', "deployments/31337.json"),
    "listen": ('"0.0.0.0:7001"', ("0.0.0.0", 7001)),
    "poll": ("0.5", 0.5),
    "response-timeout": ("20", 20.0),
    "reply_time": ("45.5", 45.5),
    "confirmations": ("3", 3),
    "max_fee_gwei": ("150", 150 * 10**9),
    "priority-fee-gwei": ("0.5", 5 * 10**8),  # decimals of a gwei
    "bump_after": ("12", 12.0),
    "handshake_timeout": ("2.5", 2.5),
    "max-connections-per-address": ("4", 4),
    "max_connections": ("64", 64),
    "max_frames_per_second": ("800", 800),
    "max_pending_proposals": ("3", 3),
    "max_own_deposit": ('"2eth"', 2 * ETHER),
    "min-peer-deposit": ("1000", 1000),  # a bare number is wei, as on the command line
    "max_peer_deposit": ('"100.5eth"', 1005 * ETHER // 10),
    "min_delta": ("600", 600),
    "max_delta": ("86400", 86400),
    "allow_peer": (f'["{PEER.lower()}"]', [PEER]),
    "allow-token": (f'["{TOKEN}"]', [TOKEN]),
    "accept_virtual": ("true", True),
    "hub": ("true", True),
    "hub_fee": ('"0.01eth"', ETHER // 100),
    "hub_capacity": ('"3eth"', 3 * ETHER),
    "hub_max_channels": ("2", 2),
    "forward": ("true", True),
    "forward_base_fee": ('"0.00001eth"', 10**13),
    "forward-ppm": ("1000", 1000),
    "tower": (f'["{TOWER.lower()}@127.0.0.1:9735"]', [(TOWER, ("127.0.0.1", 9735))]),
    "tower-reward": ('"0.01eth"', ETHER // 100),
}


def settings(tmp_path: Path, toml: str, *flags: str) -> argparse.Namespace:
    config = tmp_path / "node.toml"
    config.write_text(toml)
    return node_settings(parser().parse_args(["node", "--config", str(config), *flags]))


def test_every_flag_can_live_in_the_file(tmp_path: Path) -> None:
    keys = {option.key for option in NODE_OPTIONS}
    assert {name.replace("-", "_") for name in EVERY_KEY} | {"contract"} == keys  # deployment excludes it
    toml = "".join(f"{name} = {value}\n" for name, (value, _) in EVERY_KEY.items())
    got = settings(tmp_path, toml)
    for name, (_, expected) in EVERY_KEY.items():
        if name in ("data", "deployment"):
            expected = str(tmp_path / expected)
        assert getattr(got, name.replace("-", "_")) == expected, name
    contract = settings(tmp_path, f'data = "d"\nkeystore = "k"\nrpc = "r"\ncontract = "{TOKEN.lower()}"\n').contract
    assert contract == TOKEN


def test_defaults_then_the_file_then_the_command_line(tmp_path: Path) -> None:
    toml = f'data = "d"\nkeystore = "k"\nrpc = "http://file"\nmax_own_deposit = "2eth"\nallow_peer = ["{PEER}"]\n'
    got = settings(tmp_path, toml, "--rpc", "http://flag", "--max-own-deposit", "3eth", "--allow-peer", TOKEN)
    assert (got.rpc, got.max_own_deposit, got.allow_peer) == (["http://flag"], 3 * ETHER, [TOKEN])  # replaced
    assert (got.data, got.poll, got.listen, got.hub) == (str(tmp_path / "d"), 1.0, ("127.0.0.1", 0), False)
    # The contracts' choice on the command line replaces the file's.
    got = settings(tmp_path, toml + 'deployment = "dep.json"\n', "--contract", PEER)
    assert (got.contract, got.deployment) == (PEER, None)


def test_without_a_file_the_defaults_are_the_safe_policy() -> None:
    args = node_settings(parser().parse_args(["node", "--data", "d", "--keystore", "k", "--rpc", "r"]))
    assert _channel_policy(args) == ChannelPolicy()  # deposits nothing of its own
    args = node_settings(parser().parse_args(["node", "--data", "d", "--keystore", "k", "--rpc", "r",
                                              "--max-own-deposit", "2eth", "--min-delta", "60", "--allow-peer", PEER]))
    assert _channel_policy(args) == ChannelPolicy(max_own_deposit=2 * ETHER, min_delta=60,
                                                  allow_peers=frozenset({PEER}))


@pytest.mark.parametrize("toml, message", [
    ('max_own_depost = "2eth"\n', "unknown key 'max_own_depost': the keys are the flags of `perun node --help`, "
                                  "without the leading --"),
    ('config = "other.toml"\n', "unknown key 'config'"),
    ('[policy]\nmax_own_deposit = "2eth"\n', "unknown key 'policy'"),
    ('max_own_deposit = "2usd"\n', "max_own_deposit: unknown unit 'usd' in '2usd': use wei, gwei, eth or ether"),
    ("max_own_deposit = 1.5\n", "max_own_deposit: 1.5 is not a whole number of wei (a plain number is wei: say "
                                "1.5eth for ether)"),
    ("max-delta = 0\n", "max-delta: expected a positive whole number, got '0'"),
    ('poll = "often"\n', "poll: expected a positive number of seconds, got 'often'"),
    ('listen = "7001"\n', "listen: expected HOST:PORT, got '7001'"),
    ('hub = "yes"\n', "hub: expected true or false, got 'yes'"),
    ("forward_ppm = 1000001\n", "forward_ppm: expected millionths from 0 to 1000000, got '1000001'"),
    ('allow_peer = {a = 1}\n', "allow_peer: expected a list, as in [\"ADDRESS\", ...], got {'a': 1}"),
    ('allow_peer = ["0x12"]\n', "allow_peer: not an address (0x and 40 hex digits): '0x12'"),
    ("rpc = true\n", "rpc: expected a list, as in [\"URL\", ...], got True"),
    ("rpc = [true]\n", "rpc: expected a string or a number, got True"),
    ('max_own_deposit = "1eth"\nmax-own-deposit = "2eth"\n', "max_own_deposit is given twice (with - and with _)"),
    (f'deployment = "d.json"\ncontract = "{PEER}"\n', "deployment and contract exclude each other: give one"),
    ("max_own_deposit = \n", "not a TOML file: "),
    ('tower = ["127.0.0.1:9735"]\n', "tower: expected ADDRESS@HOST:PORT (the tower's address, then where it listens), "
                                    "got '127.0.0.1:9735'"),
    (f'tower = ["{TOWER}@9735"]\n', "tower: expected HOST:PORT, got '9735'"),
    ('tower = ["0x12@127.0.0.1:9735"]\n', "tower: not an address (0x and 40 hex digits): '0x12'"),
])
def test_a_bad_key_or_value_is_refused_naming_it_and_the_file(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as refused:
        settings(tmp_path, toml, "--data", "d", "--keystore", "k", "--rpc", "r")
    assert str(refused.value).startswith(f"{tmp_path / 'node.toml'}: {message}"), str(refused.value)


def test_towers_and_their_reward_go_to_the_node(tmp_path: Path) -> None:
    other = to_checksum_address("0x" + "4e" * 20)
    toml = f'data = "d"\nkeystore = "k"\nrpc = "r"\ntower = ["{TOWER}@10.0.0.1:9735", "{other}@[::1]:9736"]\n'
    got = settings(tmp_path, toml + 'tower_reward = "0.5eth"\n')
    assert (dict(got.tower), got.tower_reward) == ({TOWER: ("10.0.0.1", 9735), other: ("::1", 9736)}, ETHER // 2)
    assert settings(tmp_path, toml).tower_reward == 0
    with pytest.raises(UsageError, match=r"^--tower-reward goes with --tower: name the towers to pay"):
        settings(tmp_path, 'data = "d"\nkeystore = "k"\nrpc = "r"\ntower_reward = "1eth"\n')
    with pytest.raises(UsageError, match=r"^a tower is given twice"):
        settings(tmp_path, toml, "--tower", f"{TOWER}@h:1", "--tower", f"{TOWER.lower()}@h:2")


def test_forwarding_is_on_with_the_switch_or_either_fee(tmp_path: Path) -> None:
    base = 'data = "d"\nkeystore = "k"\nrpc = "r"\n'
    assert _forward_policy(settings(tmp_path, base)) is None
    assert _forward_policy(settings(tmp_path, base + "forward = true\n")) == ForwardPolicy()
    assert _forward_policy(settings(tmp_path, base, "--forward-base-fee", "0.01eth")) == ForwardPolicy(
        base_fee=ETHER // 100)
    assert _forward_policy(settings(tmp_path, base + "forward_ppm = 250\n")) == ForwardPolicy(fee_ppm=250)


def test_a_watchtower_takes_the_flags_of_a_node_it_needs(tmp_path: Path) -> None:
    from perun.cli.tower import TOWER_OPTIONS, tower_settings

    config = tmp_path / "tower.toml"
    config.write_text(f'data = "t"\nkeystore = "t.json"\nrpc = "http://r"\ncontract = "{TOKEN}"\n'
                      'listen = "0.0.0.0:9735"\npoll = 0.5\nconfirmations = 2\nmax_fee_gwei = 100\n')
    got = tower_settings(parser().parse_args(["watchtower", "--config", str(config), "--poll", "2"]))
    assert (got.data, got.contract, got.listen, got.poll, got.confirmations, got.max_fee_gwei) == (
        str(tmp_path / "t"), TOKEN, ("0.0.0.0", 9735), 2.0, 2, 100 * 10**9)
    assert {"max_own_deposit", "hub", "tower", "reply_time"}.isdisjoint(option.key for option in TOWER_OPTIONS)
    config.write_text('data = "t"\nkeystore = "k"\nrpc = "r"\nmax_own_deposit = "1eth"\n')
    with pytest.raises(errors.ConfigError, match="unknown key 'max_own_deposit': the keys are the flags of "
                                                  "`perun watchtower --help`"):
        tower_settings(parser().parse_args(["watchtower", "--config", str(config)]))
    with pytest.raises(UsageError, match=r"^--keystore is required, .* \(see `perun watchtower --help`\)$"):
        tower_settings(parser().parse_args(["watchtower", "--data", "d", "--rpc", "r"]))


def test_the_command_reports_config_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "node.toml").write_text('data = "d"\nkeystore = "k"\nrpc = "r"\nmin_delta = 600\nmax_delta = 60\n')
    assert main(["node", "--config", str(tmp_path / "node.toml")]) == 2
    assert capsys.readouterr().err == "perun node: min_delta 600 exceeds max_delta 60\n"
    assert main(["node", "--config", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err == (
        f"perun node: cannot read the config file {tmp_path / 'missing.toml'}: No such file or directory\n")


def test_the_required_settings_may_come_from_either_place(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--rpc is required, on the command line or as rpc in the "
                                         r"--config file \(see `perun node --help`\)$"):
        settings(tmp_path, 'data = "d"\n', "--keystore", "k")
    with pytest.raises(UsageError, match="--data is required"):
        node_settings(parser().parse_args(["node", "--keystore", "k", "--rpc", "r"]))


def test_the_documented_example_is_a_valid_config(tmp_path: Path) -> None:
    from perun.chain.compile import ROOT

    example = ROOT / "docs" / "node.toml.example"
    args = node_settings(parser().parse_args(["node", "--config", str(example)]))
    assert (args.data, args.listen, args.max_own_deposit, args.min_delta) == (
        str(example.parent / "bob"), ("127.0.0.1", 7001), 2 * ETHER, 3600)
    assert _channel_policy(args).allow_peers == frozenset({"0x70997970C51812dc3A010C7d01b50e0d17dc79C8"})
