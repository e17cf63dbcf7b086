"""What a node grants a connection, and a peer, before it hangs up (docs/protocol.md §9, "Limits").

Each limit protects the node from a peer that does not follow the protocol, never an honest
peer from itself: the defaults are well above what an honest node does. A connection over a
limit is closed and the event logged once; other connections and channels go on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    handshake_timeout: float = 10.0
    """Seconds from accepting or dialling a connection to the end of its handshake."""
    connections_per_address: int = 16
    """Inbound connections open at once from one IP address, in the handshake or after it."""
    connections: int = 512
    """Inbound connections open at once in all (the process's file descriptors are the bound)."""
    frames_per_second: int = 5000
    """Frames a peer may send on one connection, averaged over a second (a burst of one
    second's worth is allowed): about ten times the updates per second a node handles."""
    pending_proposals: int = 16
    """Channels a peer proposed to this node that are not yet on chain, per kind of channel;
    a proposal beyond it is refused (CHANNEL_REFUSED), as the policy refuses one."""

    def __post_init__(self) -> None:
        for name in ("handshake_timeout", "connections_per_address", "connections", "frames_per_second",
                     "pending_proposals"):
            if getattr(self, name) <= 0:
                raise ValueError(f"the limit {name} must be positive, got {getattr(self, name)}")
