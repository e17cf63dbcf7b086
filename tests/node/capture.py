"""What crosses the wire: tcpdump capturing TCP traffic on loopback into a pcap file, and a small
reader of such files that yields each TCP stream's payload bytes, to search them for secrets.

`Capture` starts tcpdump and returns once tcpdump says it is listening (its filter is in place),
and always stops it (SIGINT, which flushes the file and prints its counts). `streams` reads the
classic pcap format (not pcapng) with Ethernet, Linux cooked (v1, v2), BSD loopback or raw IP
link layers, IPv4 and IPv6, and concatenates each direction's TCP payloads in sequence order,
so that a needle split over two segments is still found.
"""

from __future__ import annotations

import bisect
import os
import pwd
import re
import shutil
import signal
import struct
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REQUIRE = "PERUN_REQUIRE_CAPTURE"  # "1": a missing or unusable tcpdump fails the test instead of skipping it
START_TIMEOUT = 10.0  # seconds until tcpdump says it is listening
STOP_TIMEOUT = 10.0


def tcpdump_path() -> str | None:
    """tcpdump's path: on PATH, or where Debian puts it (/usr/sbin is not on a user's PATH)."""
    found = shutil.which("tcpdump")
    if found:
        return found
    return next((path for path in ("/usr/sbin/tcpdump", "/usr/bin/tcpdump") if os.access(path, os.X_OK)), None)


class CaptureUnavailable(Exception):
    """tcpdump exited before it listened (no permission to capture, say); the message has its stderr."""


class Capture:
    """tcpdump writing every TCP packet to or from one of `ports` on `interface` to `file`
    (whole packets, each flushed at once). A context: started on entry, stopped on exit."""

    def __init__(self, tcpdump: str, file: Path, ports: Iterable[int], interface: str = "lo") -> None:
        self.file = Path(file)
        self.ports = tuple(ports)
        expression = " or ".join(f"tcp port {port}" for port in self.ports)
        # As root, tcpdump drops to its own user before it opens the file, which then cannot be
        # written in a private directory (pytest's tmp_path): stay this user.
        user = ["-Z", pwd.getpwuid(os.getuid()).pw_name] if os.geteuid() == 0 else []
        # --immediate-mode: else libpcap hands packets over in blocks, after a second or once a
        # block is full, and a capture stopped sooner holds none of them; -U writes each at once.
        self.cmd = [tcpdump, "-i", interface, "-n", "--immediate-mode", "-U", "-s", "0", *user, "-w", str(self.file),
                    expression]
        self.proc: subprocess.Popen | None = None
        self.stderr: list[str] = []
        self._listening = False
        self._answered = threading.Event()  # it listens, or its stderr ended
        self._reader: threading.Thread | None = None
        self.counts: dict[str, int] = {}  # "captured", "received by filter", "dropped by kernel"

    def start(self) -> Capture:
        """Starts tcpdump; returns once it captures. CaptureUnavailable if it exits first."""
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read_stderr, name="tcpdump-stderr", daemon=True)
        self._reader.start()
        if not self._answered.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"tcpdump did not say it was listening within {START_TIMEOUT} s: {self.output!r}")
        if not self._listening:
            code = self.proc.wait(STOP_TIMEOUT)
            self._reader.join(STOP_TIMEOUT)
            raise CaptureUnavailable(f"{' '.join(self.cmd)} exited with {code}: {self.output}")
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))
            if line.startswith("tcpdump: listening on ") or line.startswith("listening on "):
                self._listening = True
                self._answered.set()
        self._answered.set()

    def stop(self) -> dict[str, int]:
        """Stops tcpdump (SIGINT: it writes out what it holds and prints its counts; SIGKILL if
        it does not exit); its counts. Does nothing more if it has stopped."""
        if self.proc is None:
            return self.counts
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        for line in self.stderr:
            if match := re.fullmatch(r"(\d+) packets? (captured|received by filter|dropped by kernel)", line.strip()):
                self.counts[match[2]] = int(match[1])
        return self.counts

    @property
    def output(self) -> str:
        return "\n".join(self.stderr)

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- the pcap reader


class PcapError(ValueError):
    """Not a pcap file this reader understands, or a packet cut short."""


@dataclass(frozen=True)
class Segment:
    """One TCP segment with its payload; `index` counts the file's packets from 0."""

    index: int
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    syn: bool
    payload: bytes


@dataclass
class Stream:
    """One direction of a TCP connection: its payload bytes in sequence order (each byte once,
    retransmissions dropped) and, for each segment that added bytes, its offset and packet."""

    src: tuple[str, int]
    dst: tuple[str, int]
    data: bytearray = field(default_factory=bytearray)
    starts: list[int] = field(default_factory=list)  # offset in `data` where each segment's bytes begin
    packets: list[int] = field(default_factory=list)  # that segment's packet index
    _next: int | None = None  # the sequence number of the byte after `data`

    def add(self, segment: Segment) -> None:
        seq = (segment.seq + 1) % 2**32 if segment.syn else segment.seq
        payload = segment.payload
        if self._next is None:
            self._next = seq
        behind = (self._next - seq) % 2**32
        if behind and behind < 2**31:  # starts before what we hold: a retransmission, whole or in part
            payload = payload[behind:]
        if not payload:
            return
        self.starts.append(len(self.data))
        self.packets.append(segment.index)
        self.data += payload
        self._next = (self._next + len(payload)) % 2**32

    def find(self, needle: bytes) -> list[int]:
        """The packets in which each occurrence of `needle` starts (one entry per occurrence)."""
        found, at = [], self.data.find(needle)
        while at >= 0:
            found.append(self.packets[bisect.bisect_right(self.starts, at) - 1])
            at = self.data.find(needle, at + 1)
        return found


_MAGIC = {b"\xa1\xb2\xc3\xd4": ">", b"\xd4\xc3\xb2\xa1": "<",  # microseconds
          b"\xa1\xb2\x3c\x4d": ">", b"\x4d\x3c\xb2\xa1": "<"}  # nanoseconds
ETHERNET, NULL, RAW, LOOP, LINUX_SLL, LINUX_SLL2 = 1, 0, 101, 108, 113, 276
IPV4, IPV6 = 0x0800, 0x86DD


def packets(data: bytes) -> tuple[int, list[bytes]]:
    """The link type and each packet's bytes of a pcap file. PcapError for another format or a
    packet cut short (the capture must have been taken with -s 0)."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        raise PcapError("this is pcapng: write the classic pcap format (tcpdump -w does)")
    order = _MAGIC.get(data[:4])
    if order is None or len(data) < 24:
        raise PcapError(f"not a pcap file: it starts with {data[:4].hex() or 'nothing'}")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF  # the upper bits hold FCS flags
    found, at = [], 24
    while at < len(data):
        if at + 16 > len(data):
            raise PcapError(f"packet {len(found)}: its header is cut at byte {len(data)}")
        _, _, caplen, wirelen = struct.unpack_from(order + "IIII", data, at)
        if caplen < wirelen:
            raise PcapError(f"packet {len(found)}: {caplen} of its {wirelen} bytes captured (capture with -s 0)")
        if at + 16 + caplen > len(data):
            raise PcapError(f"packet {len(found)}: its {caplen} bytes are cut at byte {len(data)}")
        found.append(data[at + 16:at + 16 + caplen])
        at += 16 + caplen
    return linktype, found


def _network(linktype: int, frame: bytes) -> tuple[int, bytes] | None:
    """(ethertype, the network-layer packet) of a link-layer frame; None for anything but IP."""
    if linktype == ETHERNET:
        kind, at = struct.unpack_from(">H", frame, 12)[0], 14
        while kind in (0x8100, 0x88A8):  # VLAN tags
            kind, at = struct.unpack_from(">H", frame, at + 2)[0], at + 4
        return kind, frame[at:]
    if linktype == LINUX_SLL:
        return struct.unpack_from(">H", frame, 14)[0], frame[16:]
    if linktype == LINUX_SLL2:
        return struct.unpack_from(">H", frame, 0)[0], frame[20:]
    if linktype in (NULL, LOOP):  # the address family: NULL in the capturing host's order, LOOP big-endian
        family = {struct.unpack_from(">I", frame)[0], struct.unpack_from("<I", frame)[0]}
        return (IPV4 if 2 in family else IPV6 if family & {10, 24, 28, 30} else 0), frame[4:]
    if linktype == RAW:
        return {4: IPV4, 6: IPV6}.get(frame[0] >> 4, 0), frame
    raise PcapError(f"link type {linktype} is not one this reader knows (Ethernet, Linux cooked, loopback, raw IP)")


def _tcp(index: int, kind: int, packet: bytes) -> Segment | None:
    """The TCP segment in an IP packet; None for other protocols (or IPv6 extension headers)."""
    if kind == IPV4 and packet and packet[0] >> 4 == 4:
        header, total, proto = (packet[0] & 0x0F) * 4, struct.unpack_from(">H", packet, 2)[0], packet[9]
        src, dst = ".".join(map(str, packet[12:16])), ".".join(map(str, packet[16:20]))
        body = packet[header:total]  # the frame may carry padding after the IP packet
    elif kind == IPV6 and packet and packet[0] >> 4 == 6:
        proto, length = packet[6], struct.unpack_from(">H", packet, 4)[0]
        src, dst = packet[8:24].hex(), packet[24:40].hex()
        body = packet[40:40 + length]
    else:
        return None
    if proto != 6:
        return None
    sport, dport, seq = struct.unpack_from(">HHI", body)
    offset, flags = (body[12] >> 4) * 4, body[13]
    return Segment(index, (src, sport), (dst, dport), seq, bool(flags & 0x02), bytes(body[offset:]))


def segments(data: bytes) -> Iterator[Segment]:
    """Every TCP segment of a pcap file's bytes, in capture order."""
    linktype, frames = packets(data)
    for index, frame in enumerate(frames):
        network = _network(linktype, frame)
        if network is not None and (segment := _tcp(index, *network)) is not None:
            yield segment


def streams(data: bytes) -> list[Stream]:
    """Each direction of each TCP connection in a pcap file's bytes, in order of appearance."""
    found: dict[tuple[tuple[str, int], tuple[str, int]], Stream] = {}
    for segment in segments(data):
        key = (segment.src, segment.dst)
        if key not in found:
            found[key] = Stream(segment.src, segment.dst)
        found[key].add(segment)
    return list(found.values())
