"""Radiology text normalisation of recognised speech (table-driven)."""
from __future__ import annotations

import pytest

from dictation.commands import load_vocabulary
from dictation.normalize import Normalizer, capitalize_sentences, parse_number


@pytest.fixture(scope="module")
def en():
    return Normalizer(load_vocabulary("en"), terms=["hypoattenuating", "perihilar", "cholelithiasis"])


CASES = [
    # numbers with units
    ("three point two centimeters", "3.2 cm"),
    ("three point two centimetres", "3.2 cm"),
    ("one centimeter", "1 cm"),
    ("point five centimeter", "0.5 cm"),
    ("zero point seven five millimeters", "0.75 mm"),
    ("twenty one millimeters", "21 mm"),
    ("one hundred and twenty hounsfield units", "120 HU"),
    ("minus ten hounsfield units", "-10 HU"),
    ("density of minus eight hundred", "density of -800"),
    ("minus", "minus"),
    ("fifty percent stenosis", "50% stenosis"),
    ("two hundred milliliters", "200 mL"),
    ("two thousand five hundred", "2500"),
    ("3.2 centimeters", "3.2 cm"),
    ("12 millimeters", "12 mm"),
    ("fifteen millisieverts", "15 mSv"),
    # dimensions
    ("five by four millimeters", "5 x 4 mm"),
    ("five by four by three centimeters", "5 x 4 x 3 cm"),
    ("two point one by one point five centimeters", "2.1 x 1.5 cm"),
    ("a lesion measuring twelve by nine millimeters in the liver", "a lesion measuring 12 x 9 mm in the liver"),
    ("four by four", "4 x 4"),
    # spine levels
    ("T twelve", "T12"),
    ("t twelve compression fracture", "T12 compression fracture"),
    ("C five C six", "C5-C6"),
    ("L four L five", "L4-L5"),
    ("L five S one", "L5-S1"),
    ("T twelve L one", "T12-L1"),
    ("C three through C seven", "C3-C7"),
    ("at C five to C six there is a disc bulge", "at C5-C6 there is a disc bulge"),
    ("disc protrusion at L4 L5", "disc protrusion at L4-L5"),
    ("see five see six", "C5-C6"),
    # not levels: out of range, or a letter without a number
    ("T fifteen", "T 15"),
    ("vitamin c", "vitamin c"),
    # small numbers in prose stay words, contexts and large numbers become digits
    ("there are two nodules", "there are two nodules"),
    ("one of the nodules", "one of the nodules"),
    ("series three image forty five", "series 3 image 45"),
    ("rib six fracture", "rib 6 fracture"),
    ("grade two", "grade 2"),
    ("seventeen lymph nodes", "17 lymph nodes"),
    # spellings and acronyms
    ("small plural effusion", "small pleural effusion"),
    ("no plural effusions", "no pleural effusions"),
    ("c t of the chest", "CT of the chest"),
    ("mri brain", "MRI brain"),
    ("x ray of the wrist", "X-ray of the wrist"),
    ("dilated small bowl loops", "dilated small bowel loops"),
    ("hypo dense lesion", "hypodense lesion"),
    ("moderate a sites", "moderate ascites"),
    ("recommend follow up", "recommend follow-up"),
    ("ground glass opacity", "ground-glass opacity"),
    # template terms join split words
    ("hypo attenuating mass", "hypoattenuating mass"),
    ("chole lithiasis", "cholelithiasis"),
    ("peri hilar", "perihilar"),
    # sentence capitalisation inside an utterance
    ("stable. no change", "stable. No change"),
    ("i think", "I think"),
    ("", ""),
    ("the heart is normal", "the heart is normal"),
]


@pytest.mark.parametrize("spoken,expected", CASES)
def test_english_normalisation(en, spoken, expected):
    assert en.normalize(spoken) == expected


@pytest.mark.parametrize("words,expected", [
    ("three", ("3", 1)), ("twenty one x", ("21", 2)), ("one hundred five", ("105", 3)),
    ("nine hundred ninety nine", ("999", 4)), ("three point one four", ("3.14", 4)),
    ("point five", ("0.5", 2)), ("two two", ("2", 1)), ("twenty thirty", ("20", 1)),
    ("hundred", None), ("point", None), ("the", None), ("oh", None),
])
def test_parse_number(words, expected):
    assert parse_number(words.split(), 0) == expected


def test_korean_has_no_english_number_rules():
    ko = Normalizer(load_vocabulary("ko"))
    assert ko.normalize("three point two centimeters") == "three point two centimeters"
    assert ko.normalize("폐  결절") == "폐 결절"


@pytest.mark.parametrize("text,first,expected", [
    ("a. b", True, "A. B"), ("done! next? yes", False, "done! Next? Yes"), ("x\ny", False, "x\nY"),
    ("3.2 cm", True, "3.2 cm"),
])
def test_capitalize_sentences(text, first, expected):
    assert capitalize_sentences(text, first=first) == expected
