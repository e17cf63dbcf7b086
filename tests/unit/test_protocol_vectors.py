"""The test vectors of docs/protocol.md (Appendix A) hold for the Python implementation."""

from __future__ import annotations

from perun.chain.compile import ROOT
from perun.core.channel import Params
from perun.core.eip712 import Domain, address_of, sign_state
from perun.core.monitoring import MONITORING_TYPEHASH, Monitoring, sign_authorisation
from perun.core.multistate import FINAL_CHANNEL_STATE_TYPE, FINAL_CHANNEL_STATE_TYPEHASH

ALICE_KEY = (1).to_bytes(32, "big")
BOB_KEY = (2).to_bytes(32, "big")
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ETHER = 10**18


def test_appendix_a_vectors() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    alice, bob = address_of(ALICE_KEY), address_of(BOB_KEY)
    params = Params(alice, bob, 5 * ETHER, 3 * ETHER, 86400, 1)
    domain = Domain(31337, CONTRACT)
    channel_id = params.channel_id(31337, CONTRACT)
    state = params.initial_state(31337, CONTRACT).pay(ETHER, from_alice=True)
    final = state.final()
    tower = address_of((3).to_bytes(32, "big"))
    monitoring = Monitoring.of(domain, state, tower, ETHER // 100)

    def in_doc(value: bytes) -> bool:
        hex_ = value.hex()
        return f"0x{hex_}" in doc or (f"0x{hex_[:64]}" in doc and hex_[64:] in doc)

    assert alice in doc and bob in doc and tower in doc
    for value in (
        channel_id,
        domain.separator,
        domain.digest(state),
        sign_state(domain, state, BOB_KEY),
        domain.digest(final),
        sign_state(domain, final, ALICE_KEY),
        sign_state(domain, final, BOB_KEY),
        MONITORING_TYPEHASH,
        monitoring.struct_hash(),
        monitoring.digest(domain),
        sign_authorisation(domain, monitoring, ALICE_KEY),
    ):
        assert in_doc(value), f"0x{value.hex()} is not in docs/protocol.md Appendix A"


def test_the_final_channel_state_type_hash_of_section_10_1() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    assert f'keccak256("{FINAL_CHANNEL_STATE_TYPE}")' in doc
    assert f"0x{FINAL_CHANNEL_STATE_TYPEHASH.hex()}" in doc
