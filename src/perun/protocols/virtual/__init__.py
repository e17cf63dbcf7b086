"""Virtual payment channels through an intermediary in a node: the ends' protocol
(protocol.py), Ingrid's (hub.py), and the halves as the multistate protocol meets them
(halves.py)."""

from perun.protocols.virtual.hub import HubPolicy
from perun.protocols.virtual.protocol import APP, Virtual, VirtualInfo

__all__ = ["APP", "HubPolicy", "Virtual", "VirtualInfo"]
