"""Radiology text normalisation of recognised speech.

Owns turning what the recogniser heard into report text: spoken numbers and units ("three point two
centimeters" -> "3.2 cm", "five by four millimeters" -> "5 x 4 mm"), spine levels ("T twelve" -> "T12",
"C five C six" -> "C5-C6"), common radiology spellings and acronyms (data in resources/dictation/<lang>.json,
plus single-word terms from the report templates), and sentence capitalisation. Pure functions on strings.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from dictation.commands import Vocabulary

ONES = {"zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
        "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
        "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
        "ninety": 90}
SCALES = {"hundred": 100, "thousand": 1000}
DIGITS = {k: v for k, v in ONES.items() if v < 10}

#: vertebral/spinal level letters and the highest level number each may take
SPINE_LEVELS = {"c": 8, "t": 12, "l": 6, "s": 5}
LEVEL_LETTER_ALIASES = {"see": "c", "sea": "c", "tea": "t", "tee": "t", "el": "l", "ell": "l", "ess": "s"}
RANGE_WORDS = ("to", "through", "thru")
SENTENCE_END = re.compile(r"([.!?]\s+|\n\s*)([a-z])")


@dataclass
class _Tok:
    text: str
    kind: str = "word"  # word | num | level | unit | x
    value: str = ""


class Normalizer:
    """Normalises one utterance's text for a language's :class:`Vocabulary`.

    ``terms`` are report-template words (e.g. "hypodense", "perihilar"); when the recogniser splits one into
    pieces ("hypo dense"), the pieces are joined back."""

    def __init__(self, vocabulary: Vocabulary, terms: Iterable[str] = ()) -> None:
        self.vocabulary = vocabulary
        self.numbers = vocabulary.numbers == "en"
        self.units = {tuple(k.lower().split()): v for k, v in vocabulary.units.items()}
        self._max_unit = max((len(k) for k in self.units), default=0)
        self.spellings = {tuple(k.lower().split()): v for k, v in vocabulary.spellings.items()}
        for term in terms:
            t = term.strip()
            if t and " " not in t and t.isalpha() and len(t) > 5:
                self._add_split_forms(t)
        self._max_spelling = max((len(k) for k in self.spellings), default=0)
        self.contexts = {c.lower() for c in vocabulary.number_contexts}

    def _add_split_forms(self, term: str) -> None:
        low = term.lower()
        for i in range(3, len(low) - 2):
            self.spellings.setdefault((low[:i], low[i:]), term)

    # -- public -----------------------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        """Normalised text of one utterance (no leading capital: the apply layer decides that by context)."""
        words = text.split()
        if not words:
            return ""
        words = self._spell(words)
        if not self.numbers:
            return " ".join(words)
        toks = self._numbers(words)
        toks = self._levels(toks)
        toks = self._units_and_dims(toks)
        return capitalize_sentences(_join(toks), first=False)

    # -- steps ------------------------------------------------------------------------------------------
    def _spell(self, words: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(words):
            for n in range(min(self._max_spelling, len(words) - i), 0, -1):
                chunk = words[i:i + n]
                trail = chunk[-1][len(chunk[-1].rstrip(".,:;?!")):]
                key = tuple(w.lower() for w in chunk[:-1]) + (chunk[-1].lower().rstrip(".,:;?!"),)
                if key in self.spellings:
                    replacement = self.spellings[key].split()
                    replacement[-1] += trail
                    out.extend(replacement)
                    i += n
                    break
            else:
                out.append(words[i])
                i += 1
        return out

    def _numbers(self, words: list[str]) -> list[_Tok]:
        toks: list[_Tok] = []
        i = 0
        while i < len(words):
            parsed = parse_number(words, i)
            if parsed is None:
                toks.append(_Tok(words[i]))
                i += 1
            else:
                value, j = parsed
                if toks and toks[-1].kind == "word" and toks[-1].text.lower() == "minus":
                    toks.pop()  # "minus ten hounsfield units" -> "-10 HU"
                    value = "-" + value
                toks.append(_Tok(" ".join(words[i:j]), "num", value))
                i = j
        return toks

    def _levels(self, toks: list[_Tok]) -> list[_Tok]:
        out: list[_Tok] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            letter = _level_letter(t.text) if t.kind == "word" else None
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if letter and nxt is not None and nxt.kind == "num" and nxt.value.isdigit() \
                    and 1 <= int(nxt.value) <= SPINE_LEVELS[letter]:
                out.append(_Tok(f"{t.text} {nxt.text}", "level", f"{letter.upper()}{int(nxt.value)}"))
                i += 2
                continue
            m = re.fullmatch(r"([ctlsCTLS])(\d{1,2})", t.text)
            if m and 1 <= int(m.group(2)) <= SPINE_LEVELS[m.group(1).lower()]:
                out.append(_Tok(t.text, "level", f"{m.group(1).upper()}{int(m.group(2))}"))
                i += 1
                continue
            out.append(t)
            i += 1
        # join "C5 C6" / "C5 to C7" into ranges
        joined: list[_Tok] = []
        i = 0
        while i < len(out):
            t = out[i]
            if t.kind == "level":
                if i + 1 < len(out) and out[i + 1].kind == "level":
                    joined.append(_Tok("", "level", f"{t.value}-{out[i + 1].value}"))
                    i += 2
                    continue
                if i + 2 < len(out) and out[i + 1].text.lower() in RANGE_WORDS and out[i + 2].kind == "level":
                    joined.append(_Tok("", "level", f"{t.value}-{out[i + 2].value}"))
                    i += 3
                    continue
            joined.append(t)
            i += 1
        return joined

    def _unit_at(self, toks: list[_Tok], i: int) -> tuple[str, int] | None:
        for n in range(min(self._max_unit, len(toks) - i), 0, -1):
            chunk = toks[i:i + n]
            if all(c.kind == "word" for c in chunk):
                key = tuple(c.text.lower() for c in chunk)
                if key in self.units:
                    return self.units[key], i + n
        return None

    def _units_and_dims(self, toks: list[_Tok]) -> list[_Tok]:
        out: list[_Tok] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind != "num":
                out.append(t)
                i += 1
                continue
            # a chain "N by N (by N)" optionally followed by a unit
            chain = [t]
            j = i + 1
            while j + 1 < len(toks) and toks[j].kind == "word" and toks[j].text.lower() == "by" \
                    and toks[j + 1].kind == "num":
                chain.append(toks[j + 1])
                j += 2
            unit = self._unit_at(toks, j)
            prev = out[-1].text.lower() if out else ""
            as_digits = (len(chain) > 1 or unit is not None or "." in t.value or abs(_value(t.value)) >= 10
                         or t.value.startswith("-") or prev in self.contexts)
            if not as_digits:
                out.append(_Tok(t.text))
                i += 1
                continue
            text = " x ".join(c.value for c in chain)
            if unit is not None:
                u, j = unit
                text = f"{text}%" if u == "%" else f"{text} {u}"
            out.append(_Tok(text, "done", text))
            i = j
        return out


def _value(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return 0.0


def _level_letter(word: str) -> str | None:
    w = word.lower().rstrip(".")
    if w in SPINE_LEVELS:
        return w
    return LEVEL_LETTER_ALIASES.get(w)


def _join(toks: list[_Tok]) -> str:
    parts = [t.value if t.kind in ("level", "done", "num") and t.value else t.text for t in toks]
    return " ".join(p for p in parts if p)


def parse_number(words: list[str], i: int) -> tuple[str, int] | None:
    """Parse an English spoken number starting at ``words[i]``: returns (digits, index after) or None.

    Handles "three", "twenty one", "one hundred and five", "two thousand", "three point two", "point five",
    "zero point seven five" and words already in digits ("3", "3.2")."""
    n = len(words)
    low = [w.lower() for w in words]
    j = i
    integer: int | None = None
    if j < n and re.fullmatch(r"\d+(\.\d+)?", low[j]):
        if "." in low[j]:
            return low[j], j + 1
        integer = int(low[j])
        j += 1
    else:
        total, current, seen = 0, 0, False
        while j < n:
            w = low[j]
            if w in ONES and not (w == "oh" and not seen):
                if current % 100 >= 20 and current % 10 == 0 and ONES[w] < 10 or current % 100 == 0:
                    current += ONES[w]
                else:
                    break
            elif w in TENS:
                if current % 100 != 0:
                    break
                current += TENS[w]
            elif w in SCALES and seen:
                if SCALES[w] == 100:
                    if current == 0 or current >= 100:
                        break
                    current *= 100
                else:
                    total += current * 1000
                    current = 0
            elif w == "and" and seen and current and current % 100 == 0 and j + 1 < n \
                    and (low[j + 1] in ONES or low[j + 1] in TENS):
                pass
            else:
                break
            seen = True
            j += 1
        if seen:
            integer = total + current
    # decimal part: "point" followed by digit words
    if j < n and low[j] == "point" and j + 1 < n and (low[j + 1] in DIGITS or low[j + 1].isdigit()):
        k = j + 1
        digits = ""
        while k < n and (low[k] in DIGITS or (low[k].isdigit() and len(low[k]) == 1)):
            digits += str(DIGITS[low[k]]) if low[k] in DIGITS else low[k]
            k += 1
        return f"{integer if integer is not None else 0}.{digits}", k
    if integer is None:
        return None
    return str(integer), j


def capitalize_sentences(text: str, first: bool = True) -> str:
    """Capital letter after a full stop, question/exclamation mark or line break (and at the start if
    ``first``)."""
    text = SENTENCE_END.sub(lambda m: m.group(1) + m.group(2).upper(), text)
    if first and text[:1].islower():
        text = text[0].upper() + text[1:]
    return text
