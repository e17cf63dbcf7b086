"""The wire codec (perun.wire.messages): round trips, and every way a message can be wrong."""

import struct
from dataclasses import fields

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from perun import errors
from perun.core.announce import MAX_ANNOUNCED, Announcement
from perun.core.channel import Params
from perun.core.monitoring import MAX_REWARD
from perun.core.onion import FAILURE_SIZE, PACKET_SIZE
from perun.wire import messages as m
from tests.conftest import examples

CID = bytes(range(32))
NID = b"\x22" * 32
SIG = b"\x11" * 65
APP = "0x" + "33" * 20


def announced(channels: int) -> bytes:
    """A signed announcement of `channels` directions, as bytes."""
    from perun.core.route import Direction, Policy
    key = b"\x07" * 32
    node = Announcement.create(key, 1, 0, ()).node
    return Announcement.create(key, 1337, 1_700_000_000, tuple(
        Direction(i.to_bytes(32, "big"), node, APP, Policy(2**128 - 1, 10**6, 3600, 2**128 - 1))
        for i in range(channels))).to_bytes()


SAMPLES = [
    m.Error(m.ErrorCode.CONFLICT, m.Update.TYPE, CID, 4, 5, "conflict at version 4 ✓"),
    m.ProposeChannel("0x" + "12" * 20, "0x" + "56" * 20, "0x" + "00" * 20, 10**18, 5, 3600, 2**64 - 1),
    m.AcceptChannel(CID),
    m.Update(CID, 7, 6, 2**128 - 1, 0, False, SIG),
    m.Update(CID, 8, 7, 1, 2, True, SIG),
    m.UpdateAck(CID, 7, SIG),
    m.Reestablish(CID, 6, 7),
    m.StateSync(CID, 7, 1, 2, False, SIG, SIG),
    m.ProposeMultistate("0x" + "12" * 20, "0x" + "56" * 20, "0x" + "00" * 20, 10**18, 5, 3600, 2**256 - 1),
    m.NanocontractCreate(CID, 3, 2, 2**64 - 1, APP, 2**128 - 1, 0, 7, b"\xff" * m.MAX_BYTES, SIG, SIG),
    m.NanocontractCreate(CID, 1, 0, 0, APP, 0, 1, 0, b"", SIG, SIG),
    m.NanocontractCall(CID, NID, 2**64 - 1, 2**64 - 2, 1_800_000_000_000, 255, b"\x42" * m.MAX_BYTES, SIG),
    m.NanocontractCall(CID, NID, 1, 0, 0, 0, b"", SIG),
    m.NanocontractAbsorb(CID, NID, 4, 3, 1_800_000_000_000, SIG),
    m.NanocontractAck(CID, bytes(32), 3, SIG, SIG),
    m.NanocontractAck(CID, bytes(32), 4, SIG, b""),
    m.NanocontractAck(CID, NID, 1, b"", SIG),
    m.VirtualClose(CID, 7, 2**128 - 1, 0, SIG, SIG),
    m.MultistateClose(CID, 9, 4, 1_800_000_000_000, SIG),
    m.ReestablishDone(),
    m.ReestablishSummary(2**64 - 1, bytes(range(256)) * 4),
    m.Monitor("0x" + "12" * 20, "0x" + "56" * 20, "0x" + "00" * 20, 10**18, 5, 3600, 2**256 - 1, 2**64 - 1,
              2**128 - 1, 0, SIG, MAX_REWARD, SIG),
    m.Monitor("0x" + "12" * 20, "0x" + "56" * 20, "0x" + "00" * 20, 0, 0, 1, 0, 0, 0, 0, SIG, 0, SIG),
    m.MonitorAck(CID, 2**64 - 1),
    m.MonitorChannel("0x" + "12" * 20, "0x" + "56" * 20, "0x" + "00" * 20, 10**18, 5, 3600, 2**256 - 1, 2**64 - 1,
                     2**128 - 1, 0, b"\x07" * m.FUNDING_SIZE * 16, SIG, MAX_REWARD, SIG),
    m.MonitorChannel("0x" + "12" * 20, "0x" + "56" * 20, "0x" + "00" * 20, 0, 0, 1, 0, 0, 0, 0, b"", SIG, 0, SIG),
    m.MonitorNanocontract(CID, NID, APP, 2**64 - 1, 2**128 - 1, 0, 1, 2, b"\xff" * m.MAX_BYTES, SIG, MAX_REWARD, SIG),
    m.MonitorNanocontract(CID, NID, APP, 0, 0, 0, 0, 0, b"", SIG, 0, SIG),
    m.MonitorCall(CID, NID, 0, b"\x42" * m.MAX_BYTES, MAX_REWARD, SIG),
    m.MonitorCall(CID, NID, 255, b"", 0, SIG),
    m.MonitorNanoAck(CID, NID, False, 2**64 - 1),
    m.MonitorNanoAck(CID, NID, True, 0),
    m.LockOnion(CID, 2**64 - 1, b"\x01\x02" + b"\xab" * (PACKET_SIZE - 2)),
    m.LockOnion(CID, 1, b"\x01\x03" + bytes(PACKET_SIZE - 2)),
    m.LockFailure(CID, NID, bytes(range(256)) + b"\xff" * (FAILURE_SIZE - 256)),
    m.LockFailure(CID, NID, bytes(FAILURE_SIZE)),
    m.ChannelsQuery(2**64 - 1, 8),
    m.ChannelsQuery(0, 1),
    m.ChannelsAnnounce(2**64 - 1, True, announced(MAX_ANNOUNCED)),
    m.ChannelsAnnounce(1, False, announced(0) + announced(2)),
    m.ChannelsAnnounce(0, True, b""),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda x: type(x).__name__)
def test_round_trip(message):
    raw = message.encode()
    assert raw[:2] == bytes((m.PROTOCOL_VERSION, message.TYPE))
    assert m.decode_message(raw) == message


@pytest.mark.parametrize("message", SAMPLES, ids=lambda x: type(x).__name__)
def test_truncated_and_padded_bodies_are_malformed(message):
    raw = message.encode()
    version, type_, body = raw[0], raw[1], raw[2:]
    if body:  # ReestablishDone has none
        with pytest.raises(errors.MalformedMessage):
            m.decode(version, type_, body[:-1])
    with pytest.raises(errors.MalformedMessage):
        m.decode(version, type_, body + b"\x00")


def test_unknown_type_version_flag_and_short():
    body = m.AcceptChannel(CID).encode()[2:]
    with pytest.raises(errors.MalformedMessage, match="unknown message type 99"):
        m.decode(m.PROTOCOL_VERSION, 99, body)
    for version in (2, 4):
        with pytest.raises(errors.MalformedMessage, match=f"protocol version {version}"):
            m.decode(version, m.AcceptChannel.TYPE, body)
    bad_flag = bytearray(m.Update(CID, 1, 0, 1, 2, False, SIG).encode())
    bad_flag[2 + 32 + 8 + 8 + 64] = 2
    with pytest.raises(errors.MalformedMessage, match="flag"):
        m.decode_message(bytes(bad_flag))
    for short in (b"", b"\x03"):
        with pytest.raises(errors.MalformedMessage, match="no version and type"):
            m.decode_message(short)
    for handshake_type in (1, 2):  # the plaintext handshake of protocol version 2, gone since 3
        with pytest.raises(errors.UnknownMessageType):
            m.decode(m.PROTOCOL_VERSION, handshake_type, b"")


def test_reason_must_be_bounded_utf8():
    raw = bytearray(m.Error(1, 6, CID, 0, 0, "ab").encode())
    raw[-1] = 0xFF
    with pytest.raises(errors.MalformedMessage, match="UTF-8"):
        m.decode_message(bytes(raw))
    too_long = m.Error(1, 6, CID, 0, 0, "").encode()[2:-2] + struct.pack(">H", 257) + b"a" * 257
    with pytest.raises(errors.MalformedMessage, match="more than 256"):
        m.decode(m.PROTOCOL_VERSION, m.Error.TYPE, too_long)


def test_a_long_reason_is_cut_on_a_character_boundary():
    sent = m.Error(1, 6, CID, 0, 0, "é" * 200)  # 400 bytes of UTF-8
    assert m.decode_message(sent.encode()).reason == "é" * (m.MAX_REASON // 2)
    assert m.decode_message(m.Error(1, 6, CID, 0, 0, "a" + "é" * 200).encode()).reason == "a" + "é" * 127


def test_bytes_fields_are_bounded():
    with pytest.raises(ValueError, match="1025 bytes"):
        m.NanocontractCall(CID, NID, 1, 0, 0, 0, bytes(m.MAX_BYTES + 1), SIG).encode()
    head = m.NanocontractCall(CID, NID, 1, 0, 0, 0, b"", SIG).encode()[2:-67]
    body = head + struct.pack(">H", m.MAX_BYTES + 1) + bytes(m.MAX_BYTES + 1) + SIG
    with pytest.raises(errors.MalformedMessage, match="bytes field of 1025 bytes"):
        m.decode(m.PROTOCOL_VERSION, m.NanocontractCall.TYPE, body)
    with pytest.raises(errors.MalformedMessage, match="truncated"):  # the length says more than there is
        m.decode(m.PROTOCOL_VERSION, m.NanocontractCall.TYPE, head + struct.pack(">H", 70) + SIG)
    largest = m.NanocontractCreate(CID, 1, 0, 2**64 - 1, APP, 1, 1, 2**256 - 1, bytes(m.MAX_BYTES), SIG, SIG).encode()
    assert len(largest) <= m.MAX_FRAME


@pytest.mark.parametrize("sigs", [(SIG[:64], b""), (b"", SIG[:64]), (SIG + b"\x00", SIG), (b"\x00", b"")])
def test_an_ack_signature_is_empty_or_65_bytes(sigs):
    raw = m.NanocontractAck(CID, bytes(32), 1, *sigs).encode()
    with pytest.raises(errors.MalformedMessage, match="NanocontractAck has a signature"):
        m.decode_message(raw)


def test_a_multistate_proposal_is_not_a_channel_proposal():
    params = Params("0x" + "12" * 20, "0x" + "56" * 20, 10, 5, 3600, 7)
    multistate, payment = m.ProposeMultistate.of(params), m.ProposeChannel.of(params)
    assert type(multistate) is m.ProposeMultistate and not isinstance(multistate, m.ProposeChannel)
    assert multistate != payment and multistate.encode()[2:] == payment.encode()[2:]
    assert (m.ProposeMultistate.TYPE, m.ProposeChannel.TYPE) == (10, 4)
    assert type(m.decode_message(multistate.encode())) is m.ProposeMultistate
    assert multistate.params() == payment.params() == params


def test_every_refusal_has_its_own_code():
    assert m.code_of(errors.UpdateConflict("x")) is m.ErrorCode.CONFLICT
    assert m.code_of(errors.ChannelsStaleVersion({"registered": 1, "submitted": 1})) is m.ErrorCode.STALE_VERSION
    assert m.code_of(errors.AlreadyFinal("x")) is m.ErrorCode.ALREADY_FINAL
    assert m.code_of(errors.UnknownChannel("x")) is m.ErrorCode.UNKNOWN_CHANNEL
    assert m.code_of(errors.UnknownNanocontract("x")) is m.ErrorCode.UNKNOWN_NANOCONTRACT
    assert m.code_of(errors.TooManyNanocontracts("x")) is m.ErrorCode.INVALID_NANOCONTRACT
    assert m.code_of(errors.HashTimeLockWrongPreimage({})) is m.ErrorCode.APP_REJECTED
    assert m.code_of(errors.TicTacToeNotYourTurn({"caller": 1})) is m.ErrorCode.APP_REJECTED
    assert m.code_of(errors.ProposalExpired("x")) is m.ErrorCode.EXPIRED
    assert m.code_of(ValueError("bug")) is m.ErrorCode.INTERNAL


def test_a_summary_holds_64_digests_of_16_bytes():
    body = (7).to_bytes(8, "big") + (1023).to_bytes(2, "big") + bytes(1023)
    with pytest.raises(errors.MalformedMessage, match="1023 bytes of digests, not 1024"):
        m.decode(m.PROTOCOL_VERSION, m.ReestablishSummary.TYPE, body)
    with pytest.raises(errors.MalformedMessage, match="too many"):
        m.decode(m.PROTOCOL_VERSION, m.ReestablishDone.TYPE, b"\x00")


def test_a_monitor_names_a_reward_the_contract_can_store():
    sample = m.Monitor("0x" + "12" * 20, "0x" + "56" * 20, "0x" + "00" * 20, 10, 5, 3600, 7, 3, 12, 3, SIG, 1, SIG)
    raw = bytearray(sample.encode())
    reward_at = 2 + 3 * 20 + 32 + 32 + 8 + 32 + 8 + 32 + 32 + 65
    raw[reward_at:reward_at + 32] = (MAX_REWARD + 1).to_bytes(32, "big")
    with pytest.raises(errors.MalformedMessage, match="reward"):
        m.decode_message(bytes(raw))
    raw[reward_at:reward_at + 32] = MAX_REWARD.to_bytes(32, "big")
    assert m.decode_message(bytes(raw)).reward == MAX_REWARD
    assert sample.params() == Params("0x" + "12" * 20, "0x" + "56" * 20, 10, 5, 3600, 7)
    assert len(sample.encode()) <= m.MAX_FRAME


def test_every_message_type_is_listed_once():
    assert sorted(m.MESSAGES) == list(range(3, 29))  # 1 and 2 were version 2's handshake
    assert {type(x) for x in SAMPLES} == set(m.MESSAGES.values())


@given(st.binary(max_size=300), st.integers(0, 255), st.integers(0, 255))
def test_random_bytes_decode_or_raise_malformed(body, version, type_):
    try:
        message = m.decode(version, type_, body)
    except errors.MalformedMessage:
        return
    except errors.ValidationError:  # a well-formed frame whose params are invalid
        return
    assert m.decode_message(message.encode()) == message


MONITOR_BODY = len(next(x for x in SAMPLES if type(x) is m.Monitor).encode()) - 2


@given(st.binary(min_size=MONITOR_BODY, max_size=MONITOR_BODY))
def test_random_monitor_bodies_decode_or_raise_malformed(body):
    """A Monitor is longer than the bodies drawn above: bodies of its own size, to reach its checks."""
    try:
        message = m.decode(m.PROTOCOL_VERSION, m.Monitor.TYPE, body)
    except errors.MalformedMessage:
        return
    assert message.reward <= MAX_REWARD
    assert m.decode_message(message.encode()) == message


def spans(message: m.Message) -> list[tuple[str, int, int]]:
    """(kind, start, end) of each field of `message`'s encoded body, a length prefix included."""
    out, start = [], 0
    for kind, f in zip(message.LAYOUT, fields(message)):
        end = start + len(m._enc(kind, getattr(message, f.name)))
        out.append((kind, start, end))
        start = end
    return out


def field_value(kind: str, size: int) -> st.SearchStrategy[bytes]:
    """New bytes for a field of `kind`: for a fixed-size one its size, often at a bound; for a
    length-prefixed one a prefix at, around or past the content's length and its limit."""
    if kind not in m._PREFIXED:
        return st.one_of(st.just(bytes(size)), st.just(b"\xff" * size), st.binary(min_size=size, max_size=size),
                         st.integers(0, 2).map(lambda i: i.to_bytes(size, "big")))
    limit = m._PREFIXED[kind]
    return st.tuples(st.binary(max_size=min(limit + 1, 300)),
                     st.sampled_from(["exact", "one less", "one more", "limit", "past the limit"])).map(
        lambda c: {"exact": len(c[0]), "one less": max(len(c[0]) - 1, 0), "one more": len(c[0]) + 1,
                   "limit": limit, "past the limit": limit + 1}[c[1]].to_bytes(2, "big") + c[0])


@st.composite
def mutated(draw, samples: list[m.Message]) -> bytes:
    """A valid frame header (this version, the samples' type) and a body of that type, mutated 1
    to 3 times (bits flipped, cut short, extended, a field given another value), at most a frame."""
    sample = draw(st.sampled_from(samples))
    body = bytearray(sample.encode()[2:])
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["flip", "truncate", "extend", "field"]))
        if how == "flip" and body:
            for bit in draw(st.lists(st.integers(0, 8 * len(body) - 1), min_size=1, max_size=8)):
                body[bit // 8] ^= 1 << bit % 8
        elif how == "truncate" and body:
            del body[draw(st.integers(0, len(body) - 1)):]
        elif how == "field" and sample.LAYOUT and bytes(body) == sample.encode()[2:]:
            kind, start, end = draw(st.sampled_from(spans(sample)))
            body[start:end] = draw(field_value(kind, end - start))
        else:
            body += draw(st.binary(min_size=1, max_size=64))
    header = bytes((m.PROTOCOL_VERSION, sample.TYPE))
    return header + bytes(body[:m.MAX_FRAME - len(header)])


@pytest.fixture(scope="module")
def outcomes():
    """What the fuzz below met, each (message type, outcome); after it, both outcomes seen: the
    decoder's checks behind the header were reached."""
    met: set[tuple[str, str]] = set()
    yield met
    assert {outcome for _, outcome in met} == {"decoded", "refused"}


@pytest.mark.parametrize("cls", sorted(m.MESSAGES.values(), key=lambda c: c.TYPE), ids=lambda c: c.__name__)
@settings(max_examples=examples(25))
@given(data=st.data())
def test_mutated_frames_decode_to_a_message_that_encodes_them_exactly_or_are_refused_with_a_code(outcomes, cls, data):
    raw = data.draw(mutated([x for x in SAMPLES if type(x) is cls]))
    try:
        message = m.decode_message(raw)
    except errors.MalformedMessage as exc:
        assert m.code_of(exc) is m.ErrorCode.MALFORMED
        outcome = "refused"
    else:
        assert type(message) is cls and message.encode() == raw
        outcome = "decoded"
    event(f"{cls.__name__}: {outcome}")
    outcomes.add((cls.__name__, outcome))


def test_the_largest_tower_messages_fit_a_frame():
    for message in SAMPLES:
        assert len(message.encode()) <= m.MAX_FRAME


def test_a_multistate_monitor_carries_whole_fundings_and_a_storable_reward():
    from perun.core.multistate import ChannelState, Funding, NanocontractState
    params = Params("0x" + "12" * 20, "0x" + "56" * 20, 10, 5, 3600, 7)
    state = ChannelState(CID, 4, 6, 3, (Funding(NID, 4, 2),))
    sample = m.MonitorChannel.of(params, state, SIG, 1, SIG)
    assert sample.params() == params and sample.state(CID) == state
    body = bytearray(sample.encode()[2:])
    fundings_at = 3 * 20 + 32 + 32 + 8 + 32 + 8 + 32 + 32
    assert body[fundings_at:fundings_at + 2] == m.FUNDING_SIZE.to_bytes(2, "big")
    short = bytes(body[:fundings_at]) + (95).to_bytes(2, "big") + bytes(body[fundings_at + 2 + 1:])
    with pytest.raises(errors.MalformedMessage, match="not a multiple of 96"):
        m.decode(m.PROTOCOL_VERSION, m.MonitorChannel.TYPE, short)
    too_many = bytes(body[:fundings_at]) + (17 * 96).to_bytes(2, "big") + bytes(17 * 96)
    with pytest.raises(errors.MalformedMessage, match="more than 1536"):
        m.decode(m.PROTOCOL_VERSION, m.MonitorChannel.TYPE, too_many)
    reward_at = len(body) - 65 - 32
    body[reward_at:reward_at + 32] = (MAX_REWARD + 1).to_bytes(32, "big")
    with pytest.raises(errors.MalformedMessage, match="reward"):
        m.decode(m.PROTOCOL_VERSION, m.MonitorChannel.TYPE, bytes(body))
    nc = NanocontractState(CID, NID, APP, 3, 1, 2, 3, 0, b"data")
    nano = m.MonitorNanocontract.of(nc, SIG, 1, SIG)
    assert nano.state() == nc
    for message in (nano, m.MonitorCall(CID, NID, 0, b"z", 1, SIG)):
        raw = bytearray(message.encode())
        raw[-65 - 32:-65] = (MAX_REWARD + 1).to_bytes(32, "big")
        with pytest.raises(errors.MalformedMessage, match="reward"):
            m.decode_message(bytes(raw))
    with pytest.raises(errors.MalformedMessage, match="flag"):
        m.decode(m.PROTOCOL_VERSION, m.MonitorNanoAck.TYPE, CID + NID + b"\x02" + bytes(8))


def test_a_lock_onion_carries_one_whole_packet_of_version_1():
    good = m.LockOnion(CID, 3, b"\x01\x02" + bytes(PACKET_SIZE - 2))
    raw = good.encode()
    assert len(raw) == 2 + 32 + 8 + PACKET_SIZE and len(raw) <= m.MAX_FRAME
    for at, value, match in ((2 + 40, 2, "onion version 2"), (2 + 41, 4, "ephemeral key")):
        bad = bytearray(raw)
        bad[at] = value
        with pytest.raises(errors.MalformedMessage, match=match):
            m.decode_message(bytes(bad))
    with pytest.raises(ValueError, match="930 bytes"):
        m.LockOnion(CID, 3, b"\x01\x02").encode()


def test_a_lock_failure_carries_one_whole_failure():
    raw = m.LockFailure(CID, NID, bytes(FAILURE_SIZE)).encode()
    assert len(raw) == 2 + 32 + 32 + FAILURE_SIZE  # any other length fails to decode (test_truncated_...)
    with pytest.raises(ValueError, match="292 bytes"):
        m.LockFailure(CID, NID, bytes(FAILURE_SIZE - 1)).encode()


def test_channels_query_and_announce_are_bounded():
    for depth in (0, 9):
        with pytest.raises(errors.MalformedMessage, match="depth"):
            m.decode(m.PROTOCOL_VERSION, m.ChannelsQuery.TYPE, bytes(8) + bytes([depth]))
    full = m.ChannelsAnnounce(1, True, announced(MAX_ANNOUNCED))
    assert len(full.encode()) <= m.MAX_FRAME
    assert full.parts() == [announced(MAX_ANNOUNCED)]
    # Announcements are split by their counts: one cut short, or a count above 32, is malformed.
    two = announced(0) + announced(1)
    body = bytes(8) + b"\x01" + (len(two) - 1).to_bytes(2, "big") + two[:-1]
    with pytest.raises(errors.MalformedMessage, match="cut short"):
        m.decode(m.PROTOCOL_VERSION, m.ChannelsAnnounce.TYPE, body)
    bad_count = announced(0)[:37] + bytes([33]) + announced(0)[38:]
    with pytest.raises(errors.MalformedMessage, match="33 directions"):
        m.decode(m.PROTOCOL_VERSION, m.ChannelsAnnounce.TYPE,
                 bytes(8) + b"\x01" + len(bad_count).to_bytes(2, "big") + bad_count)
    too_long = m.MAX_ANNOUNCEMENTS_BYTES + 1
    with pytest.raises(errors.MalformedMessage, match="more than 4083"):
        m.decode(m.PROTOCOL_VERSION, m.ChannelsAnnounce.TYPE,
                 bytes(8) + b"\x01" + too_long.to_bytes(2, "big") + bytes(too_long))
    # A bad signature is no concern of the codec: the receiver drops that announcement alone.
    forged = bytearray(announced(1))
    forged[-2] ^= 1
    assert m.decode_message(m.ChannelsAnnounce(1, True, bytes(forged)).encode()).parts() == [bytes(forged)]
