"""Report model: edits, focus, macros, events, states, critical results, serialisation."""
import pytest

from reporting.model import (
    ADDENDUM_FIELD,
    Communication,
    EventKind,
    InstanceRef,
    MeasurementLink,
    Person,
    PriorDocument,
    Report,
    ReportLockedError,
    ReportState,
    StateError,
    StudyContext,
)
from reporting.templates import TemplateLibrary

READER = Person("reader1", "Reader^One")


def make(template_id="xr-chest", **study):
    lib = TemplateLibrary()
    ctx = StudyContext(study_uid="1.2.3.4", patient_id="P1", modality="CR", body_part="CHEST", **study)
    return Report(lib.get(template_id), ctx, author=READER)


def test_set_field_emits_event_and_bumps_revision():
    r = make()
    seen = []
    r.subscribe(seen.append)
    rev = r.revision
    r.set_field("lungs", "Left lower lobe consolidation.")
    assert r.get("lungs") == "Left lower lobe consolidation."
    assert r.revision == rev + 1
    assert seen[-1].kind == EventKind.FIELD_CHANGED and seen[-1].field_id == "lungs"
    r.set_field("lungs", "Left lower lobe consolidation.")  # no change -> no event
    assert len(seen) == 1


def test_focus_by_label_next_previous_and_insert_at_cursor():
    r = make()
    assert r.focus("Heart and mediastinum") == "heart_mediastinum"
    assert r.focus_next() == "bones"
    assert r.focus_previous() == "heart_mediastinum"
    r.focus("impression")
    r.insert_at_cursor("No acute", source="dictation")
    r.insert_at_cursor("disease.")
    assert r.get("impression") == "No acute disease."
    r.set_cursor(len("No acute"))
    r.insert_at_cursor(" cardiopulmonary")
    assert r.get("impression") == "No acute cardiopulmonary disease."
    with pytest.raises(KeyError):
        r.focus("spleen")


def test_focus_wraps_around():
    r = make()
    last = r.field_ids()[-1]
    r.focus(last)
    assert r.focus_next() == r.field_ids()[0]


def test_normal_macro_fills_whole_template_in_one_action():
    r = make()
    events = []
    r.subscribe(events.append)
    r.apply_macro("Normal chest")
    assert r.get("impression") == "No acute cardiopulmonary abnormality."
    assert r.get("lungs").startswith("Clear.")
    assert r.get("indication") == ""  # clinical info has no normal text
    assert events[-1].kind == EventKind.MACRO_APPLIED
    text = r.render_text()
    assert "LUNGS" not in text and "Lungs: Clear." in text and "IMPRESSION:\nNo acute" in text


def test_measurement_link_and_overwrite():
    r = make("ct-abdomen-pelvis-appendicitis")
    link = MeasurementLink("m1", 9.04, "mm", "appendix", "1.2.3.4.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.1.7")
    r.link_measurement("appendix_diameter", link)
    assert r.get("appendix_diameter") == "9.04 mm"
    assert r.measurements["appendix_diameter"] == link
    r.set_field("appendix_diameter", "11 mm")  # the reader typed over it: no longer linked
    assert "appendix_diameter" not in r.measurements


def test_state_machine_with_who_and_when_and_lock():
    r = make()
    r.mark_preliminary(READER)
    r.transition(ReportState.FINAL, READER)
    assert [h.state for h in r.history] == [ReportState.PRELIMINARY, ReportState.FINAL]
    assert r.history[-1].user_id == "reader1" and r.history[-1].at
    with pytest.raises(ReportLockedError):
        r.set_field("lungs", "changed")
    with pytest.raises(StateError):
        r.transition(ReportState.DRAFT, READER)


def test_addendum_only_edits_addendum_text():
    r = make()
    r.apply_macro("normal")
    r.transition(ReportState.FINAL, READER)
    prior = PriorDocument("1.2.3.4", "9.8", "1.2.840.10008.5.1.4.1.1.88.22", "9.8.7")
    a = r.start_addendum(READER, prior)
    assert a.is_addendum and a.focus_field == ADDENDUM_FIELD
    a.insert_at_cursor("Small left apical pneumothorax on re-review.")
    with pytest.raises(ReportLockedError):
        a.set_field("lungs", "x")
    text = a.render_text()
    assert text.index("ADDENDUM") < text.index("FINDINGS") and "pneumothorax on re-review" in text
    draft = make()
    with pytest.raises(StateError):
        draft.start_addendum(READER, prior)


def test_critical_result_communication_recorded_in_text():
    r = make()
    cr = r.flag_critical("Large right pneumothorax", 1, READER)
    assert not cr.communicated
    assert "Not yet communicated" in r.render_text()
    r.record_communication(cr, Communication("Dr. Ward", "phone", "2026-01-01T10:05:00Z", True, "Reader One"))
    assert cr.communicated
    t = r.render_text()
    assert "CRITICAL RESULT (ACR category 1, minutes): Large right pneumothorax" in t
    assert "to Dr. Ward by phone at 2026-01-01T10:05:00Z; read-back confirmed" in t
    with pytest.raises(ValueError):
        r.flag_critical("x", 4, READER)


def test_round_trip_through_dict():
    r = make()
    r.apply_macro("normal")
    r.set_field("indication", "Cough")
    r.add_key_image(__import__("reporting.model", fromlist=["KeyImage"]).KeyImage(InstanceRef("s", "c", "i"), 1))
    r.flag_critical("x", 2, READER).communications.append(Communication("A", "page", "t", False))
    r.focus("impression")
    r2 = Report.from_dict(r.to_dict())
    assert r2.to_dict() == r.to_dict()
    assert r2.render_text() == r.render_text()


def test_change_template_keeps_common_fields():
    r = make()
    r.set_field("indication", "Trauma")
    r.change_template(TemplateLibrary().get("generic"))
    assert r.get("indication") == "Trauma"
    assert r.template.id == "generic"


def test_study_context_from_worklist_item():
    import datetime as dt

    from cloud_client.worklist import WorklistItem

    item = WorklistItem(workitem_uid="1.2.9", study_uid="1.2.3", state="IN PROGRESS", priority="HIGH",
                        patient_name="SYNTHETIC^A", patient_id="P9", issuer_of_patient_id="ISS", patient_sex="F",
                        patient_birth_date=dt.date(1980, 2, 3), modality="CT", body_part="HEAD",
                        study_description="CT HEAD", clinic="Clinic A")
    ctx = StudyContext.from_worklist_item(item)
    assert (ctx.study_uid, ctx.workitem_uid, ctx.patient_birth_date, ctx.modality, ctx.body_part, ctx.institution,
            ctx.description) == ("1.2.3", "1.2.9", "19800203", "CT", "HEAD", "Clinic A", "CT HEAD")
