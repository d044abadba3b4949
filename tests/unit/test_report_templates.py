"""Report templates: every shipped template loads, is well-formed, and the right one is chosen."""
import json

import pytest

from reporting.templates import TemplateError, TemplateLibrary, load_template, template_from_json

REQUIRED = {"xr-chest", "xr-extremity", "ct-head-noncontrast", "ct-abdomen-pelvis-appendicitis", "us-abdomen-ruq",
            "generic"}


def test_shipped_templates_load_and_cover_the_required_set():
    lib = TemplateLibrary()
    ids = {t.id for t in lib.all()}
    assert REQUIRED <= ids
    for t in lib.all():
        assert t.impression_section.code.value == "19005-8"
        assert all(s.code.scheme in {"LN", "DCM", "RADLEX", "SCT"} for s in t.sections)
        # every normal macro fills the impression
        assert t.impression_section.fields[0].id in t.macro_values("normal")


def test_field_types_are_all_used():
    lib = TemplateLibrary()
    types = {f.type for t in lib.all() for f in t.fields}
    assert {"text", "choice", "number", "measurement", "laterality"} <= types


@pytest.mark.parametrize("modality,body_part,description,expected", [
    ("CR", "CHEST", "XR CHEST PA LAT", "xr-chest"),
    ("DX", "", "Chest 2 views", "xr-chest"),
    ("DX", "WRIST", "XR WRIST 3V", "xr-extremity"),
    ("CT", "HEAD", "CT HEAD WO CONTRAST STAT", "ct-head-noncontrast"),
    ("CT", "ABDOMEN", "CT ABD/PELVIS appendicitis", "ct-abdomen-pelvis-appendicitis"),
    ("US", "ABDOMEN", "US RUQ", "us-abdomen-ruq"),
    ("MR", "BRAIN", "MR brain", "generic"),       # no MR template: generic, not the CT head one
    ("CT", "", "", "generic"),                   # modality alone is not enough
    (None, None, None, "generic"),
])
def test_choose_template(modality, body_part, description, expected):
    assert TemplateLibrary().choose(modality, body_part, description).id == expected


def _minimal(**over):
    d = {"format": "readroom-template/1", "id": "t", "title": "T", "sections": [
        {"id": "imp", "title": "Impression", "code": {"value": "19005-8", "scheme": "LN", "meaning": "Impression"},
         "kind": "impression", "fields": [{"id": "impression", "label": "Impression"}]}]}
    d.update(over)
    return d


def test_invalid_templates_are_rejected_with_clear_words(tmp_path):
    template_from_json(_minimal())
    with pytest.raises(TemplateError, match="format"):
        template_from_json(_minimal(format="mrrt"))
    bad = _minimal()
    bad["sections"][0]["fields"].append({"id": "x", "label": "X", "type": "choice"})
    with pytest.raises(TemplateError, match="no options"):
        template_from_json(bad)
    bad = _minimal()
    bad["sections"][0]["fields"].append({"id": "impression", "label": "again"})
    with pytest.raises(TemplateError, match="used twice"):
        template_from_json(bad)
    bad = _minimal(macros=[{"id": "normal", "values": {"nope": "x"}}])
    with pytest.raises(TemplateError, match="unknown fields"):
        template_from_json(bad)
    bad = _minimal()
    bad["sections"][0].pop("kind")
    with pytest.raises(TemplateError, match="impression"):
        template_from_json(bad)
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(TemplateError, match="broken.json"):
        load_template(p)


def test_templates_are_plain_data_files():
    from reporting.templates import DEFAULT_DIR
    for p in DEFAULT_DIR.glob("*.json"):
        assert json.loads(p.read_text())["format"] == "readroom-template/1"
    assert (DEFAULT_DIR / "README.md").exists()


def test_every_template_lists_critical_findings_with_acr_categories():
    for t in TemplateLibrary().all():
        assert t.critical_findings, t.id
        assert all(c.category in (1, 2, 3) and c.finding for c in t.critical_findings)
    head = TemplateLibrary().get("ct-head-noncontrast")
    assert ("Acute intracranial hemorrhage", 1) in [(c.finding, c.category) for c in head.critical_findings]
    bad = _minimal(critical_findings=[{"finding": "x", "category": 4}])
    with pytest.raises(TemplateError, match="category"):
        template_from_json(bad)
