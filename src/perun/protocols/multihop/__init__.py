"""Multi-hop payments over multistate channels (protocol.py), through the multistate protocol's
hooks (locks.py)."""

from perun.protocols.multihop.protocol import APP, ForwardPolicy, Multihop

__all__ = ["APP", "ForwardPolicy", "Multihop"]
