"""EIP-712 digests, signatures and recovery for channel states.

The digests are built by hand with a cached domain separator (about 1.5x faster than
eth-account's generic encoder); tests hold them equal to both eth-account's encoding and the
contract's own `hashPaymentState` / `hashFinalState`. Signing and recovery use coincurve
(libsecp256k1). Recovery rejects high-s signatures, as OpenZeppelin's ECDSA does on chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from coincurve import PrivateKey, PublicKey
from eth_utils import keccak, to_checksum_address

from perun import errors
from perun.core.channel import PaymentState

DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
PAYMENT_STATE_TYPE = "PaymentState(bytes32 channelId,uint64 version,uint256 balanceAlice,uint256 balanceBob)"
FINAL_STATE_TYPE = "FinalState(bytes32 channelId,uint64 version,uint256 balanceAlice,uint256 balanceBob)"
PAYMENT_STATE_TYPEHASH = keccak(text=PAYMENT_STATE_TYPE)
FINAL_STATE_TYPEHASH = keccak(text=FINAL_STATE_TYPE)

PAYMENT_CONTRACT_NAME = "Perun PaymentContract"
MS_CONTRACT_NAME = "Perun MSContract"
PAYMENT_CONTRACT_VERSION = "1"

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


@dataclass(frozen=True)
class Domain:
    """An EIP-712 domain: signatures are valid for one contract on one chain only."""

    chain_id: int
    verifying_contract: str
    name: str = PAYMENT_CONTRACT_NAME
    version: str = PAYMENT_CONTRACT_VERSION

    @cached_property
    def separator(self) -> bytes:
        return keccak(
            DOMAIN_TYPEHASH
            + keccak(text=self.name)
            + keccak(text=self.version)
            + _word(self.chain_id)
            + bytes(12)
            + bytes.fromhex(to_checksum_address(self.verifying_contract)[2:])
        )

    def digest(self, state: PaymentState) -> bytes:
        """The 32 bytes a party signs: a PaymentState, or a FinalState when `state.is_final`."""
        return _digest(self, state)

    def digest_of(self, struct_hash: bytes) -> bytes:
        """The 32 bytes a party signs for a struct whose EIP-712 hashStruct is `struct_hash`."""
        return keccak(b"\x19\x01" + self.separator + struct_hash)

    def _digest(self, state: PaymentState) -> bytes:
        typehash = FINAL_STATE_TYPEHASH if state.is_final else PAYMENT_STATE_TYPEHASH
        struct_hash = keccak(
            typehash
            + state.channel_id
            + _word(state.version)
            + _word(state.balance_alice)
            + _word(state.balance_bob)
        )
        return self.digest_of(struct_hash)

    def typed_data(self, state: PaymentState) -> dict[str, Any]:
        """The same message as EIP-712 JSON, for wallets and eth-account."""
        primary = "FinalState" if state.is_final else "PaymentState"
        fields = [("channelId", "bytes32"), ("version", "uint64"), ("balanceAlice", "uint256"), ("balanceBob", "uint256")]
        message = {
            "channelId": state.channel_id,
            "version": state.version,
            "balanceAlice": state.balance_alice,
            "balanceBob": state.balance_bob,
        }
        return self.typed_message({primary: fields}, primary, message)

    def typed_message(
        self, types: dict[str, list[tuple[str, str]]], primary: str, message: dict[str, Any]
    ) -> dict[str, Any]:
        """EIP-712 JSON of `message` of type `primary` in this domain (types: name -> fields)."""
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                **{name: [{"name": n, "type": t} for n, t in fields] for name, fields in types.items()},
            },
            "primaryType": primary,
            "domain": {
                "name": self.name,
                "version": self.version,
                "chainId": self.chain_id,
                "verifyingContract": to_checksum_address(self.verifying_contract),
            },
            "message": message,
        }


@lru_cache(maxsize=64)
def _private_key(secret: bytes) -> PrivateKey:
    return PrivateKey(secret)  # deriving the key pair costs as much as a signature: keep it


@lru_cache(maxsize=256)
def _digest(domain: Domain, state: PaymentState) -> bytes:
    # A node checks and signs each state, and later checks the peer's signature on it: once is enough.
    return domain._digest(state)


def sign(digest: bytes, private_key: bytes) -> bytes:
    """A 65-byte r || s || v signature (v = 27 or 28), as Ethereum wallets produce."""
    sig = _private_key(bytes(private_key)).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def recover(digest: bytes, signature: bytes) -> str:
    """The checksum address that signed `digest`; InvalidSignature if none can be recovered."""
    return to_checksum_address(_recover_raw(digest, signature))


def recover_public_key(digest: bytes, signature: bytes) -> bytes:
    """The 33-byte compressed secp256k1 public key that signed `digest` (an onion's hop key,
    learnt from any signature the peer made); InvalidSignature if none can be recovered."""
    return _recover_public(digest, signature).format(compressed=True)


def address_of_public_key(public_key: bytes) -> str:
    """The checksum address of a (compressed or uncompressed) secp256k1 public key."""
    try:
        point = PublicKey(public_key).format(compressed=False)[1:]
    except ValueError as exc:
        raise errors.InvalidSignature("not a secp256k1 public key") from exc
    return to_checksum_address(keccak(point)[-20:])


def _recover_raw(digest: bytes, signature: bytes) -> bytes:
    public = _recover_public(digest, signature)
    return keccak(public.format(compressed=False)[1:])[-20:]


def _recover_public(digest: bytes, signature: bytes) -> PublicKey:
    if not isinstance(signature, bytes) or len(signature) != 65:
        raise errors.InvalidSignature("a signature is 65 bytes: r, s, v")
    v = signature[64]
    s = int.from_bytes(signature[32:64], "big")
    if v not in (27, 28) or not 0 < s <= _SECP256K1_N // 2:
        raise errors.InvalidSignature("malformed or malleable (high-s) signature")
    try:
        public = PublicKey.from_signature_and_message(signature[:64] + bytes([v - 27]), digest, hasher=None)
    except Exception as exc:  # coincurve raises a bare Exception for unrecoverable input
        raise errors.InvalidSignature("no public key recovers from this signature") from exc
    return public


def address_of(private_key: bytes) -> str:
    public = PrivateKey(private_key).public_key.format(compressed=False)[1:]
    return to_checksum_address(keccak(public)[-20:])


def sign_state(domain: Domain, state: PaymentState, private_key: bytes) -> bytes:
    return sign(domain.digest(state), private_key)


def check_signature(domain: Domain, state: PaymentState, signature: bytes, expected: str) -> None:
    """InvalidSignature unless `expected` signed `state` in `domain`."""
    check_digest_signature(domain.digest(state), signature, expected)


def check_digest_signature(digest: bytes, signature: bytes, expected: str) -> None:
    """InvalidSignature unless `expected` signed `digest`."""
    signer = _recover_raw(digest, signature)
    if signer.hex() != expected[2:].lower():  # raw bytes: checksumming costs more than recovering
        raise errors.InvalidSignature(
            f"state signed by {to_checksum_address(signer)}, expected {to_checksum_address(expected)}"
        )
