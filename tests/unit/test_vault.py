"""Encryption at rest: round trip, tamper detection, key in the keyring, atomic writes."""
import pytest

from cloud_client import secrets, vault


def test_round_trip_and_no_plaintext(tmp_path):
    v = vault.default_vault()
    path = tmp_path / "x.bin"
    v.write_file(path, b"DICM patient SMITH^JOHN", b"cache")
    raw = path.read_bytes()
    assert b"DICM" not in raw and b"SMITH" not in raw
    assert v.read_file(path, b"cache") == b"DICM patient SMITH^JOHN"


def test_key_lives_in_keyring_and_survives_a_new_vault(tmp_path):
    v1 = vault.Vault()
    assert secrets.get_secret(vault.KEY_NAME)
    blob = v1.encrypt(b"hello", b"draft")
    assert vault.Vault().decrypt(blob, b"draft") == b"hello"


def test_tamper_purpose_and_truncation_are_detected():
    v = vault.Vault()
    blob = bytearray(v.encrypt(b"hello world", b"draft"))
    with pytest.raises(vault.VaultError):
        v.decrypt(bytes(blob), b"cache")
    blob[-1] ^= 1
    with pytest.raises(vault.VaultError):
        v.decrypt(bytes(blob), b"draft")
    with pytest.raises(vault.VaultError):
        v.decrypt(bytes(blob[:20]), b"draft")


def test_other_key_is_reported():
    blob = vault.Vault(b"\x01" * 32).encrypt(b"x", b"cache")
    with pytest.raises(vault.VaultError, match="another key"):
        vault.Vault(b"\x02" * 32).decrypt(blob, b"cache")


def test_plain_text_file_keyrings_are_refused(monkeypatch):
    """keyrings.alt's file backends write secrets in plain text: never an acceptable place for them."""
    import keyring
    from keyring.backends.chainer import ChainerBackend
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.setattr(secrets, "_configured", True)
    monkeypatch.setattr(keyring, "get_keyring", lambda: PlaintextKeyring())
    with pytest.raises(secrets.NoKeyringError, match="No OS keyring"):
        secrets.get_secret("x")

    class OnlyPlaintextChain(ChainerBackend):
        backends = (PlaintextKeyring(),)

    monkeypatch.setattr(keyring, "get_keyring", lambda: OnlyPlaintextChain())
    with pytest.raises(secrets.NoKeyringError):
        secrets.set_secret("x", "y")

    memory = secrets.MemoryKeyring()

    class MixedChain(ChainerBackend):
        backends = (PlaintextKeyring(), memory)

    monkeypatch.setattr(keyring, "get_keyring", lambda: MixedChain())
    secrets.set_secret("x", "y")
    assert memory.get_password(secrets.SERVICE, "x") == "y"
