"""The protocol's pure logic: types, EIP-712 signing, the checks of every state and message, and
each party's state machine per channel kind (machine.py, msmachine.py, virtual.py). No I/O and
no clock: the node layer persists, sends and transacts what these functions return."""
