"""Signing: key protected by the PIN in the keyring, signature over content + study identity, tampering found."""
import copy

import pytest

from cloud_client import secrets
from reporting import signing


def test_keygen_stores_encrypted_private_key_in_keyring():
    pub = signing.generate_key("reader1", "2468")
    pem = secrets.get_secret("report-signing-key/reader1")
    assert "ENCRYPTED PRIVATE KEY" in pem
    assert signing.public_key_b64("reader1") == pub
    with pytest.raises(signing.SigningError):
        signing.generate_key("reader1", "2468")  # never silently replaced
    with pytest.raises(signing.SigningError):
        signing.generate_key("reader2", "12")  # too short


def test_sign_verify_and_tamper():
    signing.generate_key("reader1", "2468")
    content = {"text": "IMPRESSION: normal", "values": {"impression": "normal"}}
    study = {"study_uid": "1.2.3", "patient_id": "P"}
    sig = signing.sign("reader1", "Reader^One", "2468", content, study, "2026-01-01T00:00:00+00:00")
    assert signing.verify(content, study, sig)
    assert signing.verify(content, study, sig, trusted_public_key=signing.public_key_b64("reader1"))
    tampered = copy.deepcopy(content)
    tampered["values"]["impression"] = "abnormal"
    assert not signing.verify(tampered, study, sig)
    assert not signing.verify(content, {**study, "study_uid": "1.2.4"}, sig)  # moved to another study
    later = signing.Signature(**{**sig.to_dict(), "signed_at": "2026-01-02T00:00:00+00:00"})
    assert not signing.verify(content, study, later)
    other = signing.generate_key("mallory", "9999")
    assert not signing.verify(content, study, sig, trusted_public_key=other)
    forged = signing.Signature(**{**sig.to_dict(), "public_key": other})
    assert not signing.verify(content, study, forged)


def test_canonical_form_ignores_key_order():
    a = signing.canonical_bytes({"b": 1, "a": [1, {"y": 2, "x": 1}]}, {"s": "1"})
    b = signing.canonical_bytes({"a": [1, {"x": 1, "y": 2}], "b": 1}, {"s": "1"})
    assert a == b


def test_wrong_pin_and_missing_key():
    signing.generate_key("reader1", "2468")
    with pytest.raises(signing.WrongPinError):
        signing.sign("reader1", "R", "0000", {}, {}, "t")
    with pytest.raises(signing.NoSigningKeyError, match="keygen"):
        signing.sign("nobody", "R", "0000", {}, {}, "t")


def test_pin_from_environment_or_keyring(monkeypatch):
    monkeypatch.delenv(signing.PIN_ENV, raising=False)
    assert signing.pin_from_environment("reader1") is None
    signing.remember_pin("reader1", "1357")
    assert signing.pin_from_environment("reader1") == "1357"
    monkeypatch.setenv(signing.PIN_ENV, "8642")
    assert signing.pin_from_environment("reader1") == "8642"
