"""Voice-command vocabularies and the utterance parser (table-driven, English and Korean data)."""
from __future__ import annotations

import json

import pytest

from dictation.commands import (
    COMMAND_NAMES,
    SIMPLE_COMMANDS,
    CommandParser,
    Vocabulary,
    VocabularyError,
    available_languages,
    grammar_phrases,
    load_vocabulary,
)
from dictation.events import Command

MACROS = ["Normal chest", "Normal CT abdomen/pelvis"]


@pytest.fixture(scope="module")
def en():
    return CommandParser(load_vocabulary("en"), macros=MACROS)


@pytest.fixture(scope="module")
def ko():
    return CommandParser(load_vocabulary("ko"))


# (utterance, expected [(text, command-or-None), ...])
EN_CASES = [
    ("next field", [("next field", Command("next_field"))]),
    ("previous field", [("previous field", Command("previous_field"))]),
    ("last field", [("last field", Command("previous_field"))]),
    ("go to impression", [("go to impression", Command("go_to", "impression"))]),
    ("go to conclusion", [("go to conclusion", Command("go_to", "impression"))]),
    ("go to findings", [("go to findings", Command("go_to", "findings"))]),
    ("go to history", [("go to history", Command("go_to", "clinical"))]),
    ("go to technique", [("go to technique", Command("go_to", "technique"))]),
    ("go to comparison", [("go to comparison", Command("go_to", "comparison"))]),
    ("go to recommendations", [("go to recommendations", Command("go_to", "recommendation"))]),
    ("insert normal", [("insert normal", Command("insert_normal"))]),
    ("normal chest", [("normal chest", Command("macro", "Normal chest"))]),
    ("insert normal chest", [("insert normal chest", Command("macro", "Normal chest"))]),
    ("normal ct abdomen pelvis", [("normal ct abdomen pelvis", Command("macro", "Normal CT abdomen/pelvis"))]),
    ("scratch that", [("scratch that", Command("scratch_that"))]),
    ("period", [("period", Command("period"))]),
    ("comma", [("comma", Command("comma"))]),
    ("colon", [("colon", Command("colon"))]),
    ("new line", [("new line", Command("new_line"))]),
    ("new paragraph", [("new paragraph", Command("new_paragraph"))]),
    ("cap that", [("cap that", Command("cap_that"))]),
    ("sign report", [("sign report", Command("sign_report"))]),
    ("sign the report", [("sign the report", Command("sign_report"))]),
    ("critical result", [("critical result", Command("critical_result"))]),
    ("Next Field", [("Next Field", Command("next_field"))]),
    # inline commands inside dictation
    ("no focal consolidation period", [("no focal consolidation", None), ("period", Command("period"))]),
    ("lungs comma heart and mediastinum", [("lungs", None), ("comma", Command("comma")),
                                          ("heart and mediastinum", None)]),
    ("impression colon normal", [("impression", None), ("colon", Command("colon")), ("normal", None)]),
    ("small effusion scratch that", [("small effusion", None), ("scratch that", Command("scratch_that"))]),
    ("end new paragraph start", [("end", None), ("new paragraph", Command("new_paragraph")), ("start", None)]),
    ("word new line", [("word", None), ("new line", Command("new_line"))]),
    ("aorta cap that", [("aorta", None), ("cap that", Command("cap_that"))]),
    ("period period", [("period", Command("period")), ("period", Command("period"))]),
    # whole-utterance commands are not taken out of ordinary sentences
    ("compared with the previous field of view", [("compared with the previous field of view", None)]),
    ("please go to findings now", [("please go to findings now", None)]),
    ("we will sign report later", [("we will sign report later", None)]),
    ("no critical result", [("no critical result", None)]),
    ("normal chest radiograph", [("normal chest radiograph", None)]),
    ("insert normal values here", [("insert normal values here", None)]),
    ("the nodule is stable", [("the nodule is stable", None)]),
    ("", []),
]


@pytest.mark.parametrize("utterance,expected", EN_CASES)
def test_english_commands(en, utterance, expected):
    assert en.parse_text(utterance) == expected


KO_CASES = [
    ("다음", [("다음", Command("next_field"))]),
    ("이전", [("이전", Command("previous_field"))]),
    ("결론", [("결론", Command("go_to", "impression"))]),
    ("소견", [("소견", Command("go_to", "findings"))]),
    ("지우기", [("지우기", Command("scratch_that"))]),
    ("서명", [("서명", Command("sign_report"))]),
    ("위급", [("위급", Command("critical_result"))]),
    ("문단", [("문단", Command("new_paragraph"))]),
    ("폐 결절 마침표", [("폐 결절", None), ("마침표", Command("period"))]),
]


@pytest.mark.parametrize("utterance,expected", KO_CASES)
def test_korean_commands(ko, utterance, expected):
    assert ko.parse_text(utterance) == expected


def test_segments_index_the_words(en):
    words = ["mild", "atelectasis", "period", "new", "line", "heart", "normal"]
    segs = en.parse(words)
    assert [(s.start, s.end) for s in segs] == [(0, 2), (2, 3), (3, 5), (5, 7)]
    assert [s.is_text for s in segs] == [True, False, False, True]


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_every_language_defines_every_command(lang):
    vocab = load_vocabulary(lang)
    assert set(vocab.commands) == set(SIMPLE_COMMANDS)
    assert set(SIMPLE_COMMANDS) <= set(COMMAND_NAMES)
    assert vocab.go_to["impression"] and vocab.go_to["findings"]


def test_languages_available_and_region_fallback():
    assert {"en", "ko"} <= set(available_languages())
    assert load_vocabulary("en-US").language == "en"
    with pytest.raises(VocabularyError, match="no dictation vocabulary for language 'xx'"):
        load_vocabulary("xx")


def test_bad_vocabulary_files_are_named(tmp_path):
    (tmp_path / "zz.json").write_text("{not json")
    with pytest.raises(VocabularyError, match=r"zz\.json: not valid JSON"):
        load_vocabulary("zz", vocab_dir=tmp_path)
    data = json.loads(json.dumps({"language": "zz", "commands": {"period": {"phrases": ["stop"]}}}))
    with pytest.raises(VocabularyError, match="no phrases for next_field"):
        Vocabulary.from_json(data, "zz.json")
    data["commands"]["launch_rockets"] = ["go"]
    with pytest.raises(VocabularyError, match="unknown command 'launch_rockets'"):
        Vocabulary.from_json(data, "zz.json")


def test_grammar_phrases_cover_commands_and_macros(en):
    phrases = grammar_phrases(en, unknown_token="[unk]")
    for p in ("next field", "go to impression", "scratch that", "sign report", "normal chest",
              "insert normal chest", "normal ct abdomen pelvis"):
        assert p in phrases
    assert phrases[-1] == "[unk]"
    assert len(phrases) == len(set(phrases))


@pytest.mark.parametrize("utterance,expected", [
    ("go to lungs", Command("go_to", "lungs")),
    ("go to lines and tubes", Command("go_to", "lines_tubes")),
    ("go to findings", Command("go_to", "findings")),  # a section phrase still wins
])
def test_go_to_a_field_by_its_label(utterance, expected):
    parser = CommandParser(load_vocabulary("en"), fields={"Lungs": "lungs", "Lines and tubes": "lines_tubes",
                                                          "Findings": "findings_free"})
    assert parser.parse_text(utterance) == [(utterance, expected)]
    assert parser.parse_text("lungs") == [("lungs", None)]
