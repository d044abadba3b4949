"""Validation before signing: required fields, impression, laterality words, measurements, critical results."""
from reporting.model import (
    Communication,
    InstanceRef,
    MeasurementLink,
    Person,
    PriorDocument,
    Report,
    ReportState,
    StudyContext,
)
from reporting.templates import TemplateLibrary
from reporting.validation import validate

READER = Person("reader1")


def make(tid, **study):
    return Report(TemplateLibrary().get(tid), StudyContext(study_uid="1.2.3", **study), author=READER)


def messages(res):
    return [(i.severity, i.field_id) for i in res.issues]


def test_empty_report_lists_required_and_impression():
    res = validate(make("xr-chest"))
    assert not res.ok
    assert ("error", "indication") in messages(res)
    assert ("error", "impression") in messages(res)
    assert "The impression is empty." in res.summary()


def test_normal_report_with_indication_is_ok():
    r = make("xr-chest")
    r.apply_macro("normal")
    r.set_field("indication", "Cough")
    res = validate(r)
    assert res.ok and not res.warnings


def test_left_right_words_against_study_laterality():
    r = make("xr-extremity", laterality="R", body_part="WRIST")
    r.apply_macro("normal")
    r.set_field("indication", "Fall")
    r.set_field("side", "right")
    assert validate(r).ok and not validate(r).warnings
    r.set_field("fracture_description", "Fracture of the left distal radius.")
    res = validate(r)
    assert res.ok  # a warning, not a block
    assert ("warning", "fracture_description") in messages(res)
    assert "left side" in res.warnings[0].message and "SYNTHETIC" not in res.summary()
    r.set_field("side", "left")
    assert ("warning", "side") in messages(validate(r))


def test_side_from_laterality_field_when_images_have_none():
    r = make("xr-extremity", body_part="KNEE")
    r.apply_macro("normal")
    r.set_field("indication", "Pain")
    r.set_field("side", "left")
    r.set_field("soft_tissues", "Right knee effusion.")
    assert ("warning", "soft_tissues") in messages(validate(r))
    r.set_field("side", "")
    r.set_field("soft_tissues", "Effusion.")
    res = validate(r)
    assert ("error", "side") in messages(res)  # required field
    assert any("which side" in i.message for i in res.warnings)


def test_numbers_choices_and_laterality_values():
    r = make("us-abdomen-ruq")
    r.apply_macro("normal")
    r.set_field("indication", "RUQ pain")
    r.set_field("cbd", "abc")
    assert ("error", "cbd") in messages(validate(r))
    r.set_field("cbd", "45")
    assert ("error", "cbd") in messages(validate(r))
    r.set_field("cbd", "4.5 mm")
    assert ("error", "cbd") not in messages(validate(r))
    r.set_field("murphy", "maybe")
    assert ("warning", "murphy") in messages(validate(r))


def test_linked_measurement_must_still_exist():
    inst = InstanceRef("1.2.3.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.1.1")
    r = make("ct-abdomen-pelvis-appendicitis", instances=[inst])
    r.apply_macro("normal")
    r.set_field("indication", "pain")
    r.link_measurement("appendix_diameter", MeasurementLink("m-7", 6.0, "mm", "", inst.series_uid,
                                                            inst.sop_class_uid, inst.sop_instance_uid))
    assert validate(r).ok
    assert validate(r, present_measurement_ids={"m-7"}).ok
    assert ("error", "appendix_diameter") in messages(validate(r, present_measurement_ids=set()))
    r.study.instances = [InstanceRef("1.2.3.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.1.2")]
    assert ("error", "appendix_diameter") in messages(validate(r))


def test_critical_result_needs_communication_and_read_back():
    r = make("ct-head-noncontrast")
    r.apply_macro("normal")
    r.set_field("indication", "Headache")
    cr = r.flag_critical("Subdural hematoma", 1, READER)
    res = validate(r)
    assert not res.ok and "nobody has been told" in res.summary()
    r.record_communication(cr, Communication("Dr. A", "phone", "2026-01-01T00:00:00Z", False))
    res = validate(r)
    assert res.ok and "read-back" in res.warnings[0].message
    r.record_communication(cr, Communication("Dr. A", "phone", "2026-01-01T00:01:00Z", True))
    assert validate(r).ok and not validate(r).warnings


def test_addendum_must_have_text():
    r = make("generic")
    r.apply_macro("normal")
    r.transition(ReportState.FINAL, READER)
    a = r.start_addendum(READER, PriorDocument("1", "2", "3", "4"))
    assert ("error", "addendum") in messages(validate(a))
    a.set_field("addendum", "Text.")
    assert validate(a).ok
