"""One plug-in per channel kind, each a perun.runtime.Protocol: payment channels (payment.py),
multistate channels and their nanocontracts (multistate/), virtual channels through an
intermediary (virtual/, built on the multistate protocol's hooks). What the kinds with a contract
of their own share is written once (channels.py)."""
