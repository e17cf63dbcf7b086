"""Signing and recovery, including the signatures OpenZeppelin's ECDSA would refuse."""

from __future__ import annotations

import pytest
from eth_account import Account

from perun import errors
from perun.core.channel import PaymentState
from perun.core.eip712 import (
    Domain,
    address_of,
    address_of_public_key,
    check_signature,
    recover,
    recover_public_key,
    sign,
    sign_state,
)
from perun.core.onion import compressed_public_key

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEY = bytes.fromhex("11" * 32)
DOMAIN = Domain(31337, "0x" + "cc" * 20)
STATE = PaymentState(b"\x01" * 32, 3, 10, 20)


def test_sign_and_recover() -> None:
    sig = sign_state(DOMAIN, STATE, KEY)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert recover(DOMAIN.digest(STATE), sig) == address_of(KEY) == Account.from_key(KEY).address
    check_signature(DOMAIN, STATE, sig, address_of(KEY))


def test_a_signature_is_bound_to_domain_type_and_fields() -> None:
    sig = sign_state(DOMAIN, STATE, KEY)
    me = address_of(KEY)
    for domain, state in [
        (Domain(1, DOMAIN.verifying_contract), STATE),
        (Domain(DOMAIN.chain_id, "0x" + "dd" * 20), STATE),
        (DOMAIN, PaymentState(STATE.channel_id, 4, 10, 20)),
        (DOMAIN, PaymentState(STATE.channel_id, 3, 10, 20, is_final=True)),
    ]:
        with pytest.raises(errors.InvalidSignature):
            check_signature(domain, state, sig, me)


@pytest.mark.parametrize("mangle", ["short", "long", "high_s", "v_0", "zero_s", "garbage"])
def test_malformed_signatures_are_rejected(mangle: str) -> None:
    digest = DOMAIN.digest(STATE)
    sig = sign(digest, KEY)
    s = int.from_bytes(sig[32:64], "big")
    bad = {
        "short": sig[:64],
        "long": sig + b"\x00",
        "high_s": sig[:32] + (N - s).to_bytes(32, "big") + bytes([55 - sig[64]]),
        "v_0": sig[:64] + b"\x00",
        "zero_s": sig[:32] + bytes(32) + sig[64:],
        "garbage": bytes(64) + b"\x1b",
    }[mangle]
    with pytest.raises(errors.InvalidSignature):
        recover(digest, bad)


def test_the_public_key_recovers_from_a_signature_and_names_the_signer():
    sig = sign_state(DOMAIN, STATE, KEY)
    public = recover_public_key(DOMAIN.digest(STATE), sig)
    assert public == compressed_public_key(KEY) and len(public) == 33
    assert address_of_public_key(public) == address_of(KEY)
    with pytest.raises(errors.InvalidSignature):
        recover_public_key(DOMAIN.digest(STATE), sig[:64])
    with pytest.raises(errors.InvalidSignature):
        address_of_public_key(b"\x02" + bytes(32))
