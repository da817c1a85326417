"""Names that stand alone between punctuation: "Kalani Achebe." in a report, "CT HEAD W/O -
Vanterpool", "MR LSPINE (Kealoha)", "Beaumarchais: AX T1 POST GAD".

Descriptors are upper case or vocabulary and English prose is lower case, so a run of one to
three Title Case words that the word lists do not know, with punctuation, an upper-case
descriptor word (also joined by "_": "PTV_Oyelowo") or the start or end of the value on
either side, is someone's name ("CT HEAD W/O Goikoetxea Enguerrand"). Not counted: a value
of one word ("Surview"), an unknown word shorter than four letters ("Ext"), a word before a
colon that does not introduce a descriptor ("Adres: ul. ..." is a label), and runs in prose
of a language whose nouns are capitalised or that the lists do not hold (German, French,
...: "Keine Auffälligkeiten.").
Words the lists call safe, English or clinical by their shape keep a run from counting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol

_SEPARATOR = re.compile(r"[;()\[\]|,*]|\.(?!\d)|(?<!\w)/|/(?!\w)|(?:^|\s)[-–](?:\s|$)")
_JOINED = re.compile(r"[ \t]+|_")  # a descriptor word and a name beside it
MAX_RUN = 3
MIN_UNKNOWN = 4
# Function words of languages the word lists do not cover: two of them make foreign prose.
# Not "des", "com", "del": French street names, web addresses and names in English text.
_FOREIGN = frozenset((
    "der", "das", "und", "mit", "ohne", "keine", "kein", "eine", "einer", "ist", "sind",
    "wurde", "avec", "sans", "dans", "pour", "sont", "los", "las", "para", "nel", "nella",
    "sono", "het", "een", "niet", "geen", "zijn", "voor", "uma", "pelo", "pela", "die",
    "nicht", "wird", "zur", "zum", "beim", "ihrer", "seiner", "les", "une", "est", "una",
    "con", "por", "och", "är",
))  # fmt: skip


class _Word(Protocol):
    start: int
    end: int
    text: str
    name: bool
    listed: bool
    safe: bool


def mark_names_alone(
    text: str,
    tokens: Sequence[_Word],
    unknown: Callable[[_Word], bool],
    particles: frozenset[str] = frozenset(),
) -> None:
    """Set `name` on each word of a run that stands alone (see the module text); `unknown`
    says whether a word is a name as far as the lists tell. A particle before the run
    ("ap Gruffydd.", "van Dijk") is part of it."""
    count = len(tokens)
    if count < 2 or foreign_prose(tokens):
        return
    # In Latin-script text a Greek or Cyrillic word standing alone is a name ("Τσακίρη; US
    # RENAL BILAT"); the lists know none of them, so in Greek or Russian text it is not.
    latin = mostly_latin(tokens)
    if latin:
        unknown = _or_other_script(unknown)
    index = 0
    while index < count:
        if not _title(tokens[index]):
            index += 1
            continue
        end = index
        while (
            end + 1 < count
            and _title(tokens[end + 1])
            and text[tokens[end].end : tokens[end + 1].start] == " "
        ):
            end += 1
        first = index
        if (
            index
            and tokens[index - 1].text in particles
            and text[tokens[index - 1].end : tokens[index].start] == " "
        ):
            first = index - 1
        run = tokens[first : end + 1]
        before = text[tokens[first - 1].end if first else 0 : run[0].start]
        after = text[run[-1].end : tokens[end + 1].start if end + 1 < count else len(text)]
        # A Greek or Cyrillic word is no label in Latin text: "Τσακίρη: abdominal pain".
        labelled = latin and all(not is_latin(w) for w in run) and ":" in after
        alone = (not first or _apart(before, tokens[first - 1], False)) and (
            end + 1 == count
            or labelled
            or _apart(after, tokens[end + 1], True, tokens[end + 2] if end + 2 < count else None)
        )
        named = [w.text in particles or _named(w, unknown) for w in run]
        # A listed word that is also a word ("Park", "Lee") counts beside an unknown one.
        if (
            alone
            and len(run) <= MAX_RUN
            and all(n or (w.listed and any(named)) for n, w in zip(named, run, strict=True))
        ):
            for word in run:
                word.name = True
        index = end + 1


def foreign_prose(words: Sequence[_Word]) -> bool:
    """Two function words or more of a language the word lists do not cover."""
    return sum(w.text.lower() in _FOREIGN for w in words) >= 2


def _apart(gap: str, neighbour: _Word, after: bool, next_word: _Word | None = None) -> bool:
    """Punctuation between, or the neighbour is an upper-case descriptor word ("W/O"), also
    joined by "_" as structure names are ("PTV_Oyelowo"); a colon after the run only before
    a descriptor or English words ("Beaumarchais: AX T1", "Trelawney: Radiology report", not
    "Adres: ul." or "Befund: Normal")."""
    descriptor = neighbour.text.isupper()
    if after and ":" in gap:
        english = next_word is not None and next_word.safe and next_word.text.islower()
        return descriptor or (neighbour.safe and neighbour.text.istitle() and english)
    return bool(_SEPARATOR.search(gap)) or ":" in gap or (descriptor and _JOINED.fullmatch(gap))


def is_latin(word: _Word) -> bool:
    return max(word.text) <= "\u024f"


def mostly_latin(words: Sequence[_Word]) -> bool:
    """More than half of `words` in the Latin script."""
    return sum(is_latin(w) for w in words) * 2 > len(words)


def greek_or_cyrillic(word: _Word) -> bool:
    return "\u0370" <= max(word.text) <= "\u04ff"


def _or_other_script(unknown: Callable[[_Word], bool]) -> Callable[[_Word], bool]:
    def either(word: _Word) -> bool:
        return unknown(word) or greek_or_cyrillic(word)

    return either


def _title(word: _Word) -> bool:
    return len(word.text) > 1 and word.text.istitle()


def _named(word: _Word, unknown: Callable[[_Word], bool]) -> bool:
    if word.name:
        return True
    return (len(word.text) >= MIN_UNKNOWN and unknown(word)) or (word.listed and not word.safe)
