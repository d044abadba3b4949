"""`readroom report ...` / `readroom outbox` without a server: keygen, values files, verify, export, outbox list."""
import json

import pytest

from app import cli
from app.cli_report import apply_values
from reporting import signing
from reporting.model import Person, Report, StudyContext
from reporting.outbox import Outbox
from reporting.templates import TemplateLibrary
from reporting.workflow import sign_report

PIN = "2468"


def test_keygen_uses_pin_from_environment(monkeypatch, capsys):
    monkeypatch.setenv(signing.PIN_ENV, PIN)
    assert cli.main(["report", "keygen", "--user", "reader1"]) == 0
    assert "Signing key created for reader1" in capsys.readouterr().out
    assert signing.has_key("reader1")
    assert cli.main(["report", "keygen", "--user", "reader1"]) == 1  # never replaced silently
    assert "--force" in capsys.readouterr().err
    assert cli.main(["report", "keygen", "--user", "reader1", "--force", "--remember-pin"]) == 0
    monkeypatch.delenv(signing.PIN_ENV)
    assert signing.pin_from_environment("reader1") == PIN


def test_apply_values_flat_and_structured():
    lib = TemplateLibrary()
    r = Report(lib.get("xr-chest"), StudyContext(study_uid="1.2.3"))
    apply_values(r, {"indication": "Cough", "impression": "Clear."}, Person("reader1"))
    assert r.get("indication") == "Cough" and r.get("impression") == "Clear."
    r2 = Report(lib.get("xr-chest"), StudyContext(study_uid="1.2.3"))
    apply_values(r2, {"macro": "normal", "values": {"indication": "Fever"},
                      "critical": [{"finding": "Pneumothorax", "category": 1, "recipient": "Dr. A",
                                    "method": "phone", "at": "2026-01-01T00:00:00Z", "read_back": True}]},
                 Person("reader1"))
    assert r2.get("lungs").startswith("Clear.") and r2.critical_results[0].communicated
    with pytest.raises(KeyError):
        apply_values(r2, {"no_such_field": "x"}, Person("reader1"))


def test_outbox_listing_verify_and_export(tmp_path, capsys):
    assert cli.main(["outbox"]) == 0
    assert "All reports sent." in capsys.readouterr().out
    signing.generate_key("reader1", PIN)
    r = Report(TemplateLibrary().get("xr-chest"), StudyContext(study_uid="1.2.826.0.1.3680043.8.498.9",
                                                                  workitem_uid="1.2.826.0.1.3680043.8.498.10"))
    r.apply_macro("normal")
    r.set_field("indication", "Cough")
    res = sign_report(r, Person("reader1", "One^Reader"), PIN, outbox=Outbox())
    assert cli.main(["outbox"]) == 0
    out = capsys.readouterr().out
    assert "1 report waiting to send" in out and "not stored" in out
    listed = json.loads((cli.main(["outbox", "--json"]), capsys.readouterr().out)[1])
    assert listed[0]["item_id"] == res.record.sr["sop_instance_uid"] and "SYNTHETIC" not in json.dumps(listed)
    sr = Outbox().items()[0].dicom_datasets()[0]
    f = tmp_path / "sr.dcm"
    sr.save_as(f, enforce_file_format=True)
    assert cli.main(["report", "verify", str(f)]) == 0
    assert "VALID: signed by reader1" in capsys.readouterr().out
    sr.ContentSequence[-1].ContentSequence[0].TextValue = "Changed after signing."
    sr.save_as(f, enforce_file_format=True)
    assert cli.main(["report", "verify", str(f)]) == 2
    assert cli.main(["report", "export", "--study", "1.2.826.0.1.3680043.8.498.9", "--out", str(tmp_path / "x")]) == 0
    sop = res.record.sr["sop_instance_uid"]
    assert (tmp_path / "x" / f"{sop}.report.pdf").read_bytes().startswith(b"%PDF-")
    assert (tmp_path / "x" / f"{sop}.oru_r01.hl7").read_bytes().startswith(b"MSH|")
    assert json.loads((tmp_path / "x" / f"{sop}.diagnosticreport.json").read_text())["status"] == "final"
    from cloud_client.audit import AuditTrail

    exports = [e for e in AuditTrail().events() if e.action == "export"]
    assert len(exports) == 1 and exports[0].user == "reader1"
    assert exports[0].study_uids == ["1.2.826.0.1.3680043.8.498.9"]
