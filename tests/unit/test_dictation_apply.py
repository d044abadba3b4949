"""The apply layer: dictation events -> edits of a pure-Python text target (the whole flow without a screen)."""
from __future__ import annotations

from dictation.apply import AppRequest, DictationApplier, PlainTextTarget, TextTarget, template_dictation_data
from dictation.commands import CommandParser, load_vocabulary
from dictation.events import Command, CommandEvent, ConfirmRequest, FinalText, PartialText
from dictation.normalize import Normalizer


def target(**fields):
    sections = {"findings": ["lungs", "pleura"], "impression": ["impression"]}
    return PlainTextTarget(fields or {"lungs": "", "pleura": "", "impression": ""}, sections)


def text(uid, t):
    return FinalText(uid, t, t)


def cmd(uid, name, arg=None):
    return CommandEvent(uid, Command(name, arg))


def test_plain_target_is_a_text_target():
    assert isinstance(target(), TextTarget)


def test_text_is_capitalised_and_spaced_like_prose():
    t = target()
    a = DictationApplier(t)
    a.apply(text(1, "no consolidation"))
    a.apply(cmd(1, "period"))
    a.apply(text(2, "mild atelectasis"))
    a.apply(cmd(2, "comma"))
    a.apply(text(3, "left base"))
    a.apply(cmd(4, "period"))
    assert t.fields["lungs"] == "No consolidation. Mild atelectasis, left base."


def test_insert_at_cursor_in_the_middle_of_typed_text():
    t = PlainTextTarget({"f": "Heart normal. Lungs clear."})
    t.set_cursor(len("Heart normal."))
    a = DictationApplier(t)
    a.apply(text(1, "mediastinum unremarkable"))
    a.apply(cmd(1, "period"))
    assert t.fields["f"] == "Heart normal. Mediastinum unremarkable. Lungs clear."


def test_new_line_and_paragraph_capitalise_next_text():
    t = target()
    a = DictationApplier(t)
    a.apply(text(1, "one"))
    a.apply(cmd(1, "new_line"))
    a.apply(text(2, "two"))
    a.apply(cmd(3, "new_paragraph"))
    a.apply(text(4, "three"))
    assert t.fields["lungs"] == "One\nTwo\n\nThree"


def test_scratch_that_removes_exactly_the_last_utterance():
    t = target()
    t.fields["lungs"] = "Typed by hand."
    t.set_cursor(len(t.fields["lungs"]))
    a = DictationApplier(t)
    a.apply(text(1, "small effusion"))
    a.apply(cmd(1, "period"))
    a.apply(text(2, "large pneumothorax"))
    a.apply(cmd(2, "period"))
    assert t.fields["lungs"] == "Typed by hand. Small effusion. Large pneumothorax."
    assert a.apply(cmd(3, "scratch_that")) is None
    assert t.fields["lungs"] == "Typed by hand. Small effusion."
    a.apply(cmd(4, "scratch_that"))
    assert t.fields["lungs"] == "Typed by hand."
    # nothing dictated left: typed text is never removed
    req = a.apply(cmd(5, "scratch_that"))
    assert req == AppRequest("message", message="Nothing dictated to scratch.")
    assert t.fields["lungs"] == "Typed by hand."


def test_scratch_that_in_the_same_utterance_removes_its_earlier_words_only():
    t = target()
    a = DictationApplier(t)
    a.apply(text(1, "keep this"))
    a.apply(cmd(1, "period"))
    a.apply(text(2, "not this"))
    a.apply(cmd(2, "scratch_that"))
    assert t.fields["lungs"] == "Keep this."
    a.apply(text(3, "and more"))
    assert t.fields["lungs"] == "Keep this. And more"


def test_scratch_that_refuses_when_text_was_edited_by_hand():
    t = target()
    a = DictationApplier(t)
    a.apply(text(1, "small effusion"))
    t.fields["lungs"] = "Small eff"  # the reader edited it
    req = a.apply(cmd(2, "scratch_that"))
    assert req.kind == "message" and "edited by hand" in req.message
    assert t.fields["lungs"] == "Small eff"


def test_scratch_that_works_after_moving_to_another_field():
    t = target()
    a = DictationApplier(t)
    a.apply(text(1, "clear"))
    a.apply(cmd(2, "next_field"))
    assert t.current_field() == "pleura"
    a.apply(cmd(3, "scratch_that"))
    assert t.fields["lungs"] == ""


def test_cap_that_capitalises_the_last_utterance():
    t = target()
    a = DictationApplier(t)
    a.apply(text(1, "seen by"))
    a.apply(text(2, "john smith"))
    a.apply(cmd(2, "cap_that"))
    a.apply(cmd(3, "period"))
    assert t.fields["lungs"] == "Seen by John Smith."
    assert t.cursor() == len(t.fields["lungs"])


def test_field_navigation_and_go_to():
    t = target()
    a = DictationApplier(t)
    assert a.apply(cmd(1, "next_field")) is None and t.current_field() == "pleura"
    assert a.apply(cmd(2, "previous_field")) is None and t.current_field() == "lungs"
    assert a.apply(cmd(3, "previous_field")).message == "There is no previous field."
    assert a.apply(cmd(4, "go_to", "impression")) is None and t.current_field() == "impression"
    assert a.apply(cmd(5, "go_to", "findings")) is None and t.current_field() == "lungs"
    assert a.apply(cmd(6, "go_to", "technique")).message == "This template has no technique section."
    a.apply(cmd(7, "go_to", "impression"))
    a.apply(cmd(7, "next_field"))
    assert t.current_field() == "impression"


def test_insert_normal_and_macro():
    t = target()
    a = DictationApplier(t, normals={"lungs": "Clear."},
                         macros={"Normal chest": {"lungs": "Clear.", "pleura": "No effusion.",
                                                  "impression": "Normal chest."}})
    a.apply(cmd(1, "insert_normal"))
    assert t.fields["lungs"] == "Clear."
    a.apply(cmd(2, "next_field"))
    assert a.apply(cmd(3, "insert_normal")).message == "This field has no normal text in the template."
    a.apply(cmd(4, "macro", "normal chest"))
    assert t.fields == {"lungs": "Clear. Clear.", "pleura": "No effusion.", "impression": "Normal chest."}
    assert t.current_field() == "pleura"
    a.apply(cmd(5, "scratch_that"))  # a macro is one utterance
    assert t.fields == {"lungs": "Clear.", "pleura": "", "impression": ""}
    assert a.apply(cmd(6, "macro", "normal knee")).message == "This template has no macro called normal knee."


def test_sign_report_only_asks_for_confirmation_and_critical_result_is_handed_over():
    t = target()
    a = DictationApplier(t)
    a.apply(text(1, "clear"))
    before = dict(t.fields)
    assert a.apply(ConfirmRequest(2, "sign_report")) == AppRequest("confirm", "sign_report",
                                                                    "Sign the report? Confirm to sign.")
    assert a.apply(cmd(3, "sign_report")).kind == "confirm"
    assert a.apply(cmd(4, "critical_result")) == AppRequest("critical_result", "critical_result")
    assert a.apply(PartialText("anything")) is None
    assert t.fields == before


def test_spoken_utterances_end_to_end_without_engine():
    """Parser + normaliser + applier, fed the word lists a recogniser would produce."""
    vocab = load_vocabulary("en")
    parser = CommandParser(vocab, macros=["Normal chest"])
    norm = Normalizer(vocab)
    t = target()
    a = DictationApplier(t, macros={"Normal chest": {"impression": "Normal chest radiograph."}})
    utterances = ["there is a three point two centimeter nodule period",
                  "small plural effusion comma no pneumothorax period",
                  "oops scratch that", "go to impression", "normal chest", "go to findings",
                  "new line degenerative change at T twelve L one period"]
    for uid, u in enumerate(utterances):
        words = u.split()
        for seg in parser.parse(words):
            chunk = " ".join(words[seg.start:seg.end])
            ev = text(uid, norm.normalize(chunk)) if seg.is_text else CommandEvent(uid, seg.command)
            a.apply(ev)
    assert t.fields["lungs"] == ("There is a 3.2 cm nodule. Small pleural effusion, no pneumothorax.\n"
                                 "Degenerative change at T12-L1.")
    assert t.fields["impression"] == "Normal chest radiograph."


def test_template_dictation_data_from_a_real_template():
    from reporting.templates import DEFAULT_DIR, load_template

    tpl = load_template(DEFAULT_DIR / "xr-chest.json")
    normals, macros, terms = template_dictation_data(tpl)
    assert normals["lungs"].startswith("Clear.")
    assert "Normal chest" in macros and macros["Normal chest"]["lungs"] == normals["lungs"]
    assert "consolidation" in terms
    parser = CommandParser(load_vocabulary("en"), macros=list(macros))
    assert parser.parse_text("normal chest")[0][1] == Command("macro", "Normal chest")


def test_field_targets_from_a_real_template_drive_go_to():
    from dictation.apply import template_field_targets
    from reporting.templates import DEFAULT_DIR, load_template

    tpl = load_template(DEFAULT_DIR / "xr-chest.json")
    targets = template_field_targets(tpl)
    assert targets["Lungs"] == "lungs"
    parser = CommandParser(load_vocabulary("en"), fields=targets)
    t = PlainTextTarget({f.id: "" for f in tpl.fields})
    a = DictationApplier(t)
    a.apply(CommandEvent(1, parser.parse_text("go to lungs")[0][1]))
    assert t.current_field() == "lungs"
