"""Proof on the wire: two `perun node` processes connect, open a payment channel, pay both ways and
close it cooperatively while tcpdump captures their traffic on loopback, and none of the channel's
secrets appears in the captured bytes: not its id, the parties' addresses, any balance as the
messages encode it (uint256, big-endian) or any signature either node holds.

The capture needs tcpdump and the right to capture (root, CAP_NET_RAW): without either the test
is skipped, unless PERUN_REQUIRE_CAPTURE=1 (CI), which makes it fail. `make test` installs Debian's
tcpdump when it may. The reader of the capture is checked on its own first, on a pcap built here.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

import pytest

from perun.chain.backend import ETHER
from tests.node.capture import (
    ETHERNET,
    LINUX_SLL2,
    REQUIRE,
    Capture,
    CaptureUnavailable,
    PcapError,
    Stream,
    packets,
    streams,
    tcpdump_path,
)
from tests.node.processes import NodeProcess

GWEI = 10**9
DEPOSITS = (3 * ETHER + 17 * GWEI, 2 * ETHER + 5 * GWEI)  # (alice, bob): no balance is ever 0
# Every balance differs from every other (and so does each needle below).
PAYMENTS = [("alice", 3 * GWEI), ("bob", 11 * GWEI), ("alice", 7 * GWEI), ("alice", 2 * GWEI), ("bob", 4 * GWEI)]
SIGNATURE = 65


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason}, but {REQUIRE}=1")
    pytest.skip(f"{reason}; set {REQUIRE}=1 to require it")


@pytest.fixture
def tcpdump(tmp_path: Path) -> str:
    """tcpdump's path, once it has shown it can capture on lo (a capture of a port nobody uses)."""
    path = tcpdump_path()
    if path is None:
        _unavailable("tcpdump is not installed (apt install tcpdump, or `make capture-tool` as root)")
    try:
        with Capture(path, tmp_path / "probe.pcap", [9]):
            pass
    except CaptureUnavailable as exc:
        _unavailable(f"tcpdump cannot capture on lo (it needs CAP_NET_RAW: run the tests as root): {exc}")
    return path


def test_no_channel_secret_crosses_the_wire_in_clear(deployed, processes, tcpdump, tmp_path):
    alice, bob = processes.start_all(*((name, deployed.chain.new_account(10 * ETHER), {}) for name in ("alice", "bob")))
    nodes = {"alice": alice, "bob": bob}
    pcap = tmp_path / "wire.pcap"
    with Capture(tcpdump, pcap, (alice.port, bob.port)) as capture:
        alice.call("connect", peer=bob.address, host="127.0.0.1", port=bob.port)
        cid = alice.call("open", peer=bob.address, deposit=str(DEPOSITS[0]), peer_deposit=str(DEPOSITS[1]),
                         delta=3600)["channel"]
        bob.call("wait", channel=cid, stage="open")
        for payer, amount in PAYMENTS:
            nodes[payer].call("pay", channel=cid, amount=str(amount))
        closed = alice.call("close", channel=cid)
        bob.call("wait", channel=cid, stage="closed")
        # Stopped inside the capture: whatever they send until they exit is in it.
        assert [processes.stop(node) for node in (alice, bob)] == [0, 0]
    counts = capture.counts

    # The run did what it says: every payment is a state both nodes hold, signed by both.
    expected = [DEPOSITS]
    for payer, amount in PAYMENTS:
        a, b = expected[-1]
        expected.append((a - amount, b + amount) if payer == "alice" else (a + amount, b - amount))
    assert (int(closed["my_payout"]), int(closed["peer_payout"])) == expected[-1]
    states = {name: _states(node) for name, node in nodes.items()}
    assert states["alice"] == states["bob"], "the nodes hold different states or signatures"
    held = states["alice"]
    assert [(version, final) for version, final, *_ in held] == [(v, 0) for v in range(1, len(PAYMENTS) + 1)] + [
        (len(PAYMENTS) + 1, 1)]
    assert [balances for _, _, balances, _, _ in held] == expected[1:] + [expected[-1]]
    assert all(len(sig) == SIGNATURE for *_, sig_alice, sig_bob in held for sig in (sig_alice, sig_bob))

    # The capture is whole, and holds the connection between the nodes both ways.
    assert counts.get("dropped by kernel") == 0, f"tcpdump lost packets: {capture.output}"
    linktype, frames = packets(pcap.read_bytes())
    assert len(frames) == counts.get("captured"), f"the file has {len(frames)} packets; tcpdump said {capture.output}"
    flows = streams(pcap.read_bytes())
    sent = {name: [s for s in flows if _sender(s, alice, bob) == name] for name in nodes}
    # Each signature a node made crossed the wire once, from it, in some form (in clear or not):
    # so each direction carries at least that many bytes.
    signers = {"alice": {sig for *_, sig, _ in held}, "bob": {sig for *_, sig in held}}
    for name, made in signers.items():
        carried = sum(len(s.data) for s in sent[name])
        assert carried >= SIGNATURE * len(made), (
            f"{name} sent {carried} payload bytes in {len(sent[name])} streams, fewer than the "
            f"{len(made)} signatures it made: the capture missed the connection ({len(frames)} packets, "
            f"link type {linktype}, ports {alice.port} and {bob.port})")

    # Now the secrets: none of them may appear in any stream.
    needles = {f"the channel id {cid}": bytes.fromhex(cid[2:]),
               f"alice's address {alice.address}": bytes.fromhex(alice.address[2:]),
               f"bob's address {bob.address}": bytes.fromhex(bob.address[2:]),
               f"the contract {deployed.payment_contract}": bytes.fromhex(deployed.payment_contract[2:])}
    for label, (a, b) in [("the deposits", DEPOSITS)] + [(f"the balances after payment {i}", balances)
                                                          for i, balances in enumerate(expected[1:], 1)]:
        needles[f"alice's balance {a} ({label}) as uint256"] = a.to_bytes(32, "big")
        needles[f"bob's balance {b} ({label}) as uint256"] = b.to_bytes(32, "big")
    for version, final, _, sig_alice, sig_bob in held:
        which = f"final version {version}" if final else f"version {version}"
        needles[f"alice's signature on {which}"] = sig_alice
        needles[f"bob's signature on {which}"] = sig_bob
    assert len(set(needles.values())) == len(needles), "two secrets have the same bytes: one would hide the other"
    seen = []
    for label, needle in needles.items():
        where: dict[str, list[int]] = {}  # direction: the packet of each occurrence
        for stream in flows:
            way = f"{_sender(stream, alice, bob)}→{_receiver(stream, alice, bob)}"
            where.setdefault(way, []).extend(stream.find(needle))
        hits = sum(len(found) for found in where.values())
        if hits:
            in_packets = len({packet for found in where.values() for packet in found})
            ways = ", ".join(f"{way} {len(found)}" for way, found in where.items() if found)
            seen.append(f"  {label}: seen {_times(hits)} in {in_packets} packet{'s' * (in_packets > 1)} ({ways})")
    if seen:
        pytest.fail(f"{len(seen)} of {len(needles)} secrets crossed the wire in clear ({len(frames)} packets "
                    f"captured, {pcap}):\n" + "\n".join(seen), pytrace=False)


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def _states(node: NodeProcess) -> list[tuple[int, int, tuple[int, int], bytes, bytes]]:
    """(version, final, (balance alice, balance bob), sig alice, sig bob) of every state in the
    stopped node's store, by version."""
    with sqlite3.connect(f"file:{node.data / 'node.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT version, final, balance_alice, balance_bob, sig_alice, sig_bob FROM states").fetchall()
    return sorted((int(v), f, (int(a), int(b)), bytes(sa), bytes(sb)) for v, f, a, b, sa, sb in rows)


def _sender(stream: Stream, alice: NodeProcess, bob: NodeProcess) -> str:
    """Whose bytes `stream` carries: to a node's listening port from the other one, or from it."""
    if stream.dst[1] == bob.port or stream.src[1] == alice.port:
        return "alice"
    if stream.dst[1] == alice.port or stream.src[1] == bob.port:
        return "bob"
    raise AssertionError(f"a stream between {stream.src} and {stream.dst}: neither node's port")


def _receiver(stream: Stream, alice: NodeProcess, bob: NodeProcess) -> str:
    return "bob" if _sender(stream, alice, bob) == "alice" else "alice"


# --------------------------------------------------------------------------- the reader itself


NEEDLE = bytes(range(0x40, 0x60))  # 32 bytes


def _pcap(linktype: int, frames: list[bytes], order: str = "<") -> bytes:
    header = struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    return header + b"".join(struct.pack(order + "IIII", 1, i, len(f), len(f)) + f for i, f in enumerate(frames))


def _ipv4_tcp(src: int, dst: int, seq: int, payload: bytes, syn: bool = False) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", src, dst, seq, 0, 5 << 4, 0x02 if syn else 0x18, 65535, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, bytes([127, 0, 0, 1]),
                     bytes([127, 0, 0, 1]))
    return ip + tcp


def _ethernet(packet: bytes) -> bytes:
    return bytes(12) + b"\x08\x00" + packet


def _sll2(packet: bytes) -> bytes:
    return b"\x08\x00" + bytes(18) + packet


@pytest.mark.parametrize("linktype, frame, order", [(ETHERNET, _ethernet, "<"), (ETHERNET, _ethernet, ">"),
                                                    (LINUX_SLL2, _sll2, "<")], ids=["ethernet", "big-endian", "sll2"])
def test_the_reader_finds_a_needle_split_over_segments(linktype, frame, order):
    """A needle split over two segments of one direction is found, once (the retransmitted
    segment adds nothing), and attributed to the packet where it starts; the other direction's
    stream and the unrelated connection hold none of it."""
    frames = [
        _ipv4_tcp(40000, 5000, 99, b"", syn=True),
        _ipv4_tcp(40000, 5000, 100, b"hello " + NEEDLE[:10]),
        _ipv4_tcp(5000, 40000, 700, NEEDLE[:20]),  # the other way: only a part
        _ipv4_tcp(40000, 5000, 116, NEEDLE[10:] + b" bye"),
        _ipv4_tcp(40000, 5000, 116, NEEDLE[10:] + b" bye"),  # retransmitted
        _ipv4_tcp(41000, 6000, 1, NEEDLE[:31]),  # another connection
    ]
    found = {(s.src[1], s.dst[1]): s for s in streams(_pcap(linktype, [frame(f) for f in frames], order))}
    assert set(found) == {(40000, 5000), (5000, 40000), (41000, 6000)}
    assert bytes(found[40000, 5000].data) == b"hello " + NEEDLE + b" bye"
    assert found[40000, 5000].find(NEEDLE) == [1]
    assert found[5000, 40000].find(NEEDLE) == [] and found[41000, 6000].find(NEEDLE) == []


def test_the_reader_refuses_what_it_cannot_read():
    with pytest.raises(PcapError, match="pcapng"):
        packets(b"\x0a\x0d\x0d\x0a" + bytes(40))
    with pytest.raises(PcapError, match="not a pcap file"):
        packets(b"GET / HTTP/1.1\r\n" + bytes(20))
    cut = _pcap(ETHERNET, [_ethernet(_ipv4_tcp(1, 2, 0, NEEDLE))])
    truncated = cut[:24] + struct.pack("<IIII", 1, 0, 40, len(cut) - 40) + cut[40:80]
    with pytest.raises(PcapError, match="capture with -s 0"):
        packets(truncated)
    with pytest.raises(PcapError, match="cut at byte"):
        packets(cut[:-1])
    with pytest.raises(PcapError, match="link type 147"):
        streams(_pcap(147, [b"\x00" * 60]))
