"""The benchmark's stand-in for the transport's AEAD: frames sent as they are (for benchmarks only).

`identity_cipher()` makes every transport cipher state created while it is in effect (by
`noise.Handshake.split`, at the end of a handshake) an `IdentityCipherState`: it "encrypts" a
frame into the plaintext followed by 16 zero bytes and "decrypts" by stripping them, counting
the messages as the real one does. Frames keep their sizes, and the handshake itself (X25519,
its own ChaCha20-Poly1305, the signatures) runs unchanged: only the per-frame encryption and
decryption go. A connection keeps the cipher states it got at its handshake, so one process can
hold plaintext and encrypted connections at once; both ends of a connection must use the same.

`python -m benchmarks.plaintext ARGS...` runs perun's CLI (`perun ARGS...`) with it in effect
for the whole process: benchmarks/updates.py starts its plaintext Bob that way. Nothing in the
package `perun` knows of it; the node has no plaintext option.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from perun import errors
from perun.wire import noise

ZERO_TAG = bytes(noise.TAGLEN)


class IdentityCipherState(noise.CipherState):
    """A CipherState without the cipher: plaintext + 16 zero bytes, the count of messages kept."""

    __slots__ = ()

    def encrypt(self, plaintext: bytes, ad: bytes = b"") -> bytes:
        self.n += 1
        return plaintext + ZERO_TAG

    def decrypt(self, ciphertext: bytes, ad: bytes = b"") -> bytes:
        if len(ciphertext) < noise.TAGLEN:
            raise errors.FrameRejected(f"message {self.n} is shorter than a tag")
        self.n += 1
        return ciphertext[:-noise.TAGLEN]


@contextmanager
def identity_cipher() -> Iterator[None]:
    """While in effect, handshakes end in IdentityCipherStates; undone on leaving."""
    real = noise.CipherState
    noise.CipherState = IdentityCipherState  # split() looks the class up in noise's globals
    try:
        yield
    finally:
        noise.CipherState = real


def main(argv: list[str] | None = None) -> int:
    from perun.cli import main as perun_main

    with identity_cipher():
        return perun_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
