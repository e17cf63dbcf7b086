"""Encrypted key files (perun.keystore) and the `perun keystore` commands."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from eth_account import Account

from perun import errors, keystore
from perun.cli import main

PASSWORD = "correct horse battery staple"
FAST = {"kdf": "scrypt", "iterations": 2**10}  # the standard format, a cheap work factor
KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"  # a well-known test vector
KEY_ADDRESS = Account.from_key(bytes.fromhex(KEY)).address


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def no_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(prompt: str = "") -> str:
        raise AssertionError(f"unexpected prompt {prompt!r}")
    monkeypatch.setattr("getpass.getpass", refuse)


def test_create_then_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    address = keystore.create(path, PASSWORD, **FAST)
    key = keystore.load(path, PASSWORD)
    assert len(key) == 32
    assert Account.from_key(key).address == address == keystore.address(path)


def test_default_file_is_a_standard_v3_scrypt_keystore(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    address = keystore.create(path, PASSWORD)
    data = json.loads(path.read_text())
    assert data["version"] == 3
    assert data["crypto"]["kdf"] == "scrypt" and data["crypto"]["kdfparams"]["n"] == 2**18
    # Any other v3 reader decrypts it: eth-account's own, given the raw JSON.
    assert Account.from_key(Account.decrypt(path.read_text(), PASSWORD)).address == address


def test_file_is_created_with_mode_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "alice.json"
        keystore.create(path, PASSWORD, **FAST)
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_refuses_to_overwrite_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    keystore.create(path, PASSWORD, **FAST)
    before = path.read_bytes()
    with pytest.raises(errors.KeystoreError, match="exists: refusing to overwrite it"):
        keystore.create(path, PASSWORD, **FAST)
    with pytest.raises(errors.KeystoreError, match="exists"):
        keystore.import_key(path, KEY, PASSWORD, **FAST)
    assert path.read_bytes() == before


def test_refuses_to_write_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "alice.json"
    link.symlink_to(target)
    with pytest.raises(errors.KeystoreError, match="exists"):
        keystore.create(link, PASSWORD, **FAST)
    assert not target.exists()


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(errors.KeystoreError, match=r"cannot create .*: No such file or directory"):
        keystore.create(tmp_path / "no" / "alice.json", PASSWORD, **FAST)


def test_wrong_password(tmp_path: Path) -> None:
    path = tmp_path / "alice.json"
    keystore.create(path, PASSWORD, **FAST)
    with pytest.raises(errors.KeystoreError) as info:
        keystore.load(path, "not the password")
    assert str(info.value) == f"wrong password for {path}"


@pytest.mark.parametrize("too_open", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_refuses_a_file_others_may_read(tmp_path: Path, too_open: int) -> None:
    path = tmp_path / "alice.json"
    keystore.create(path, PASSWORD, **FAST)
    path.chmod(too_open)
    with pytest.raises(errors.KeystoreError) as info:
        keystore.load(path, PASSWORD)
    assert str(info.value) == (f"permissions {too_open:04o} for {path} are too open: a key file must be "
                               f"readable by its owner only (chmod 600 {path})")
    path.chmod(0o400)  # read-only for the owner is fine
    assert keystore.load(path, PASSWORD)


def test_missing_file_and_files_that_are_not_keystores(tmp_path: Path) -> None:
    with pytest.raises(errors.KeystoreError, match=r"^no keystore file at .*missing\.json \(`perun keystore new` makes one\)$"):
        keystore.load(tmp_path / "missing.json", PASSWORD)
    with pytest.raises(errors.KeystoreError, match="^no keystore file at"):
        keystore.address(tmp_path / "missing.json")
    for read in (lambda path: keystore.load(path, PASSWORD), keystore.address):  # not IsADirectoryError
        with pytest.raises(errors.KeystoreError, match=f"^{tmp_path} is a directory: name the key file itself"):
            read(tmp_path)
    for name, content in [("text", "hello"), ("list", "[1, 2]"), ("v1", '{"version": 1, "crypto": {}}')]:
        path = tmp_path / name
        path.write_text(content)
        path.chmod(0o600)
        with pytest.raises(errors.KeystoreError, match="is not a keystore file"):
            keystore.load(path, PASSWORD)
        with pytest.raises(errors.KeystoreError, match="is not a keystore file"):
            keystore.address(path)
    broken = json.loads(json.dumps(Account.encrypt(bytes.fromhex(KEY), PASSWORD, **FAST)))
    del broken["crypto"]["mac"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    path.chmod(0o600)
    with pytest.raises(errors.KeystoreError, match="is not a keystore file"):
        keystore.load(path, PASSWORD)


@pytest.mark.parametrize("text", [KEY, "0x" + KEY, f"  0X{KEY.upper()}\n"])
def test_import_of_an_existing_key(tmp_path: Path, text: str) -> None:
    path = tmp_path / "imported.json"
    assert keystore.import_key(path, text, PASSWORD, **FAST) == KEY_ADDRESS
    assert keystore.load(path, PASSWORD) == bytes.fromhex(KEY)
    assert keystore.address(path) == KEY_ADDRESS
    assert mode(path) == 0o600


@pytest.mark.parametrize("bad", [KEY[:-2], KEY + "00", "zz" + KEY[2:], "0" * 64, "f" * 64])
def test_bad_key_hex_is_refused_without_repeating_it(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "imported.json"
    with pytest.raises(errors.KeystoreError) as info:
        keystore.import_key(path, bad, PASSWORD, **FAST)
    assert bad not in str(info.value) and bad[2:40] not in str(info.value)
    assert not path.exists()


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch, no_prompt: None) -> None:
    monkeypatch.setenv("PERUN_PASSWORD", PASSWORD)
    assert keystore.read_password() == PASSWORD
    assert keystore.read_password(confirm=True) == PASSWORD
    monkeypatch.setenv("PERUN_PASSWORD", "")
    assert keystore.read_password() == ""  # set but empty: still the environment's, no prompt
    with pytest.raises(errors.KeystoreError, match="empty password"):
        keystore.read_password(confirm=True)


def test_password_from_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERUN_PASSWORD", raising=False)
    answers: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": answers.pop(0))
    answers[:] = [PASSWORD]
    assert keystore.read_password() == PASSWORD
    answers[:] = [PASSWORD, PASSWORD]
    assert keystore.read_password(confirm=True) == PASSWORD
    answers[:] = [PASSWORD, PASSWORD + "x"]
    with pytest.raises(errors.KeystoreError, match="^the two passwords differ$"):
        keystore.read_password(confirm=True)
    answers[:] = ["", ""]
    with pytest.raises(errors.KeystoreError, match="empty password"):
        keystore.read_password(confirm=True)

    def eof(prompt: str = "") -> str:
        raise EOFError
    monkeypatch.setattr("getpass.getpass", eof)
    with pytest.raises(errors.KeystoreError, match="PERUN_PASSWORD"):
        keystore.read_password()


def test_cli_never_shows_the_password_or_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, no_prompt: None,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PERUN_PASSWORD", PASSWORD)
    monkeypatch.setenv("MY_KEY", KEY)
    new, imported = tmp_path / "new.json", tmp_path / "imported.json"

    assert main(["keystore", "new", "--out", str(new)]) == 0
    address = keystore.address(new)
    assert capsys.readouterr().out == f"created {new} for {address}\n"
    assert main(["keystore", "import", "--out", str(imported), "--key-env", "MY_KEY"]) == 0
    assert capsys.readouterr().out == f"imported {KEY_ADDRESS} into {imported}\n"
    assert main(["--json", "keystore", "address", str(imported)]) == 0
    assert json.loads(capsys.readouterr().out) == {"address": KEY_ADDRESS, "file": str(imported)}
    assert main(["keystore", "new", "--out", str(new)]) == 2
    assert capsys.readouterr().err == f"perun keystore new: {new} exists: refusing to overwrite it\n"
    monkeypatch.setenv("MY_KEY", KEY[:-1] + "x")
    assert main(["keystore", "import", "--out", str(tmp_path / "bad.json"), "--key-env", "MY_KEY"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perun keystore import: not a valid private key") and err.count("\n") == 1
    monkeypatch.setenv("PERUN_PASSWORD", "wrong")
    with pytest.raises(errors.KeystoreError) as info:
        keystore.load(imported, keystore.read_password())
    shown = capsys.readouterr()

    everything = shown.out + shown.err + caplog.text + str(info.value) + new.read_text() + imported.read_text()
    assert PASSWORD not in everything
    assert KEY.lower() not in everything.lower() and KEY[:16] not in everything.lower()
