"""IHE MRRT (RadReport) HTML5 templates import into the ReadRoom template format; scripts are never run."""
from reporting.model import Report, StudyContext
from reporting.mrrt import mrrt_to_template_json
from reporting.templates import template_from_json

MRRT = """<!DOCTYPE html>
<html><head>
<title>CT Chest Pulmonary Embolism</title>
<meta charset="UTF-8">
<meta name="dcterms.identifier" content="RPT-PE-1">
<meta name="dcterms.language" content="en">
<meta name="dcterms.date" content="2016-04-01">
<script type="text/xml">
<template_attributes>
 <coded_content>
  <entry ORIGTXT="findings"><term><code meaning="Procedure Findings" value="59776-5" scheme="LN"/></term></entry>
  <entry ORIGTXT="pe"><term><code meaning="pulmonary embolism" value="RID4834" scheme="RADLEX"/></term></entry>
  <entry ORIGTXT="rvlv"><term><code meaning="RV/LV ratio" value="RID13377" scheme="RADLEX"/></term></entry>
 </coded_content>
</template_attributes>
</script>
<script>alert("never executed")</script>
</head><body>
<section id="clinical" data-section-name="Clinical information">
 <header class="level1">Clinical information</header>
 <p><label for="indication">Indication:</label><textarea id="indication" name="indication"></textarea></p>
</section>
<section id="findings">
 <header class="level1">Findings</header>
 <p><label for="pe">Pulmonary embolism</label>
 <select id="pe" name="pe"><option>Absent</option><option>Present</option><option>Indeterminate</option></select></p>
 <p><label for="rvlv">RV/LV ratio</label><input type="number" id="rvlv" name="rvlv" min="0" max="5" data-field-units="{ratio}"></p>
 <p><label for="other">Other findings</label><textarea id="other" name="other">None.</textarea></p>
</section>
<section id="impression">
 <header class="level1">Impression</header>
 <textarea id="impression_text" name="impression"></textarea>
</section>
</body></html>"""


def test_mrrt_import_keeps_sections_fields_codes_and_types():
    data = mrrt_to_template_json(MRRT)
    t = template_from_json(data)
    assert t.id == "rpt-pe-1" and t.title == "CT Chest Pulmonary Embolism" and t.version == "2016-04-01"
    assert [s.title for s in t.sections] == ["Clinical information", "Findings", "Impression"]
    assert t.section("findings").code.value == "59776-5"
    pe = t.field("pe")
    assert pe.type == "choice" and pe.options == ("Absent", "Present", "Indeterminate") and pe.label == "Pulmonary embolism"
    assert pe.code.value == "RID4834" and pe.code.scheme == "RADLEX"
    rv = t.field("rvlv")
    assert (rv.type, rv.unit, rv.minimum, rv.maximum) == ("number", "{ratio}", 0.0, 5.0)
    assert t.field("other").default == "None."
    assert t.field("indication").label == "Indication"
    assert t.impression_section.fields[0].id == "impression_text" and t.impression_section.fields[0].required
    assert "alert" not in str(data)
    # usable as a report template
    r = Report(t, StudyContext(study_uid="1.2.3"))
    r.set_field("pe", "Present")
    r.set_field("impression_text", "Acute pulmonary embolism.")
    assert "Pulmonary embolism: Present" in r.render_text()


def test_mrrt_without_impression_gets_one():
    html = "<html><head><title>Tiny</title></head><body><section id='s'><header>Findings</header>" \
           "<textarea id='f'></textarea></section></body></html>"
    t = template_from_json(mrrt_to_template_json(html, template_id="tiny"))
    assert t.id == "tiny" and t.impression_section.code.value == "19005-8"


def test_cli_import_puts_template_in_user_library(tmp_path, capsys):
    from app import cli
    from reporting.templates import TemplateLibrary, user_templates_dir

    src = tmp_path / "pe.html"
    src.write_text(MRRT)
    assert cli.main(["report", "import-mrrt", str(src)]) == 0
    assert "Imported template 'rpt-pe-1'" in capsys.readouterr().out
    assert (user_templates_dir() / "rpt-pe-1.json").exists()
    lib = TemplateLibrary()
    assert lib.get("rpt-pe-1").title == "CT Chest Pulmonary Embolism"
    assert lib.get("xr-chest")  # shipped ones still there
    (user_templates_dir() / "broken.json").write_text("{")
    assert TemplateLibrary().get("generic")  # a broken user template never hides the shipped ones
    bad = tmp_path / "bad.html"
    bad.write_bytes(b"\xff\xfe")
    assert cli.main(["report", "import-mrrt", str(bad)]) == 1
