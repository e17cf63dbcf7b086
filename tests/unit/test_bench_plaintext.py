"""The update benchmark's plaintext stand-in (benchmarks/plaintext.py) really sends frames as they
are, and only while it is in effect."""

from __future__ import annotations

from benchmarks.plaintext import IdentityCipherState, identity_cipher
from perun.wire import noise


def session() -> tuple[noise.CipherState, noise.CipherState]:
    """The dialer's sending and the listener's receiving cipher state after a Noise XX handshake."""
    dialer = noise.Handshake(True, b"prologue", noise.private_key())
    listener = noise.Handshake(False, b"prologue", noise.private_key())
    listener.read_message(dialer.write_message())
    dialer.read_message(listener.write_message())
    listener.read_message(dialer.write_message())
    return dialer.split()[0], listener.split()[1]


def test_the_stand_in_sends_frames_as_they_are_and_is_undone_on_leaving() -> None:
    frame = b"\x03\x06" + bytes(range(178))  # an Update's size
    with identity_cipher():
        send, receive = session()
        assert type(send) is IdentityCipherState and type(receive) is IdentityCipherState
        sealed = send.encrypt(frame)
        assert sealed == frame + bytes(noise.TAGLEN)
        assert receive.decrypt(sealed) == frame
        assert (send.n, receive.n) == (1, 1)
    assert noise.CipherState is not IdentityCipherState
    send, receive = session()
    sealed = send.encrypt(frame)
    assert type(send) is noise.CipherState and len(sealed) == len(frame) + noise.TAGLEN
    assert sealed[:len(frame)] != frame and sealed[len(frame):] != bytes(noise.TAGLEN)
    assert receive.decrypt(sealed) == frame
