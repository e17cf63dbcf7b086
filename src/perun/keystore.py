"""Encrypted key files: the standard Ethereum keystore (JSON, version 3) of eth-account.

A key file holds one private key encrypted with a password (scrypt by default, as geth
writes them). It is created with mode 0600 and never overwritten; a file that its group or
others may read is refused when loading, as ssh refuses such a private key.

The password comes from $PERUN_PASSWORD if it is set, else from a prompt on the terminal.
Neither the password nor the key is ever printed or logged, and no error message contains
them.

    address = create(Path("alice.json"), "s3cret")
    key = load(Path("alice.json"), "s3cret")  # 32 bytes
"""

from __future__ import annotations

import getpass
import json
import os
import stat
from pathlib import Path
from typing import Any, Literal

from eth_account import Account
from eth_utils import is_hex_address, to_checksum_address

from perun import errors

Kdf = Literal["scrypt", "pbkdf2"]  # what eth-account derives the key to a keyfile with

PASSWORD_ENV = "PERUN_PASSWORD"
FILE_MODE = 0o600


# --------------------------------------------------------------------------- passwords


def read_password(*, confirm: bool = False, prompt: str = "Keystore password: ") -> str:
    """$PERUN_PASSWORD if set, else a password typed at a prompt (twice when `confirm`, for a
    new key file, and then it may not be empty)."""
    if PASSWORD_ENV in os.environ:
        password = os.environ[PASSWORD_ENV]
    else:
        password = _prompt(prompt)
        if confirm and _prompt("Repeat the password: ") != password:
            raise errors.KeystoreError("the two passwords differ")
    if confirm and not password:
        raise errors.KeystoreError("refusing an empty password for a new key file")
    return password


def _prompt(prompt: str) -> str:
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise errors.KeystoreError(f"no password given: type one at the prompt or set {PASSWORD_ENV}") from None


# --------------------------------------------------------------------------- creating key files


def create(path: Path | str, password: str, *, kdf: Kdf | None = None, iterations: int | None = None) -> str:
    """Writes a new random key to `path`, encrypted with `password`; returns its address.

    `kdf` ("scrypt" or "pbkdf2") and `iterations` default to eth-account's (scrypt, n = 2**18).
    """
    account = Account.create()
    return _write(Path(path), account.key, password, kdf, iterations)


def import_key(path: Path | str, private_key: str, password: str, *, kdf: Kdf | None = None,
               iterations: int | None = None) -> str:
    """Writes an existing private key (64 hex digits, with or without 0x) to `path`, encrypted
    with `password`; returns its address."""
    return _write(Path(path), parse_private_key(private_key), password, kdf, iterations)


def parse_private_key(text: str) -> bytes:
    """The 32 bytes of a hex private key; the error never repeats the text."""
    digits = text.strip()
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if len(digits) != 64:
        raise errors.KeystoreError(f"a private key is 64 hex digits, got {len(digits)} characters")
    try:
        key = bytes.fromhex(digits)
        Account.from_key(key)  # in the curve's range
    except ValueError:
        raise errors.KeystoreError("not a valid private key: expected 64 hex digits of a secp256k1 key") from None
    return key


def _write(path: Path, key: bytes, password: str, kdf: Kdf | None, iterations: int | None) -> str:
    keyfile = Account.encrypt(key, password, kdf=kdf, iterations=iterations)
    data = (json.dumps(keyfile) + "\n").encode()
    try:
        # O_EXCL: never replace a file (nor follow a symlink planted at the path); the mode is
        # set at creation, so the key is never readable by others, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        raise errors.KeystoreError(f"{path} exists: refusing to overwrite it") from None
    except OSError as exc:
        raise errors.KeystoreError(f"cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, FILE_MODE)  # in case the umask removed the owner's bits
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise errors.KeystoreError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    return to_checksum_address(Account.from_key(key).address)


# --------------------------------------------------------------------------- reading key files


def load(path: Path | str, password: str) -> bytes:
    """The private key in `path`, decrypted with `password`.

    Refused if the file's group or others may read or write it (chmod 600 fixes that)."""
    path = Path(path)
    raw, mode = _read(path)
    if mode & 0o077:
        raise errors.KeystoreError(
            f"permissions {mode:04o} for {path} are too open: a key file must be readable by its "
            f"owner only (chmod 600 {path})"
        )
    keyfile = _parse(path, raw)
    try:
        return bytes(Account.decrypt(keyfile, password))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise errors.WrongPassword(f"wrong password for {path}") from None
        raise errors.KeystoreError(f"{path} is not a keystore file this program can decrypt: {exc}") from None
    except (KeyError, TypeError):
        raise errors.KeystoreError(f"{path} is not a keystore file (a field is missing or malformed)") from None


def address(path: Path | str) -> str:
    """The address a key file names, read without the password."""
    path = Path(path)
    value = _parse(path, _read(path)[0]).get("address")
    if not isinstance(value, str) or not is_hex_address(value if value.startswith("0x") else "0x" + value):
        raise errors.KeystoreError(f"{path} names no address (a keystore file need not; load it to see the key's)")
    return to_checksum_address(value if value.startswith("0x") else "0x" + value)


def _read(path: Path) -> tuple[bytes, int]:
    """A key file's bytes and permission bits; any OSError becomes a KeystoreError."""
    try:
        with open(path, "rb") as file:
            return file.read(), stat.S_IMODE(os.fstat(file.fileno()).st_mode)
    except FileNotFoundError:
        raise errors.KeystoreError(f"no keystore file at {path} (`perun keystore new` makes one)") from None
    except IsADirectoryError:
        raise errors.KeystoreError(f"{path} is a directory: name the key file itself (a .json file)") from None
    except OSError as exc:
        raise errors.KeystoreError(f"cannot read {path}: {exc.strerror or exc}") from None


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        keyfile = json.loads(raw)
    except ValueError:
        raise errors.KeystoreError(f"{path} is not a keystore file (not JSON)") from None
    if not isinstance(keyfile, dict) or keyfile.get("version") != 3 or not isinstance(
        keyfile.get("crypto", keyfile.get("Crypto")), dict
    ):
        raise errors.KeystoreError(f"{path} is not a keystore file (expected a version 3 JSON keystore)")
    return keyfile
