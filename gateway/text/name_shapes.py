"""Names told by their shape or by the word order of a name: rules the lists alone miss.

"McNelis", "MacNaboola", "FitzGerald", "O'Kieve": a Gaelic prefix written against a capital
is a family name whatever the lists say.

"Love, Donald", "Knight, Marilyn": a family name the lists know (also a word) or do not
know, opening the value (or a part after ";", ":", "(") before a comma and a clear given
name, is the family name of a name written surname first, as registers and worklists do;
as the whole value any capitalised word is ("Freely, Brian"), and a listed word after a
clear family name is the given name ("Blom, Iris").

"Tracy Ward MRN 20212347", "Amber Swanson DOB": words before an identifier's label are the
patient's name when one of them is a clear name, or when two or more are listed names.

"Cc: Seda Güçlü; Dursadiye Irıs İnönü": an item of a list after a name is one.

"Referring physician: Samantha Jones, Port Anthonyburgh.": capitalised words that end the
value after a name and a comma, one of them no vocabulary, are a town.

"Previously treated by Θεόπιστος Αποστολόπουλος": in English text, a short run of words in
another script is a name or a place.

"Dr. Meinrad Killer", "Klaus-Dieter Gute, MD": a Title Case word right after a clear given
name (listed, not vocabulary) is its family name, even when it is also a word; not a clinical
term ("Maria Hospital" is an institution's, which organisations.py takes whole).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.text.lexicon import caseless, clinical_words, read_words
from gateway.text.name_neighbours import Word
from gateway.text.name_sentences import names_by_sentence
from gateway.text.names_alone import is_latin

__all__ = ["names_by_order_and_shape"]


class _Word(Word, Protocol):
    cued: bool  # a title, cue or post-nominal made it a name


_STRUCTURE_WORDS = frozenset(read_words("structure_words.txt"))
_CLINICAL_WORDS = clinical_words()
# Words of a structure's or a plan's name ("GTV_Miller", "Plan_Baker_v2", "Miller IMRT").
_TARGETS = frozenset(("gtv", "ctv", "ptv", "itv", "igtv", "prv", "oar", "roi", "boost", "plan",
                      "vmat", "imrt", "sbrt", "srs", "crt", "qa", "arc", "tomo"))  # fmt: skip
_GAELIC = re.compile(r"(?:Mc|Mac|Fitz)[A-Z][a-z]{2,}")
_NOT_GAELIC = frozenset({"macbook", "macos"})
_ELIDED = frozenset({"O'", "O’", "D'", "D’"})
_OPENINGS = frozenset(";:(|\n")
# What may follow "Surname, Given" at a value's start: "Larsson, Victor - follow up in 6 weeks".
_AFTER_PAIR = frozenset({".", ",", ";", ")", "-", "–", "(", ":"})
# Words no rule takes for a name alone that are family names after a given name ("Steven Ward").
_SURNAME_WORDS = frozenset({"ward", "fellow"})
# Labels of an identifier written after a name: "Tracy Ward MRN 2021", "Amber Swanson DOB"
# (not "sin", "nie", "cpr", "chi": words too, "sin contraste").
_LABELS = frozenset({"mrn", "dob", "nhs", "ssn", "urn", "pid", "born", "aged", "nric", "bsn",
                     "pesel", "amka", "hkid", "dni"})  # fmt: skip


def _clear_given(word: _Word) -> bool:
    """A name a title or cue gave, or a listed name that is no vocabulary."""
    text = word.text
    cased = text.istitle() or (text.isupper() and len(text) > 3) or caseless(text)
    return word.name and cased and (word.cued or (word.listed and not word.safe))


def _gaelic_and_elided(text: str, words: Sequence[_Word]) -> None:
    for word in words:
        if (_GAELIC.fullmatch(word.text) and word.folded not in _NOT_GAELIC) or (
            word.start >= 2
            and text[word.start - 2 : word.start] in _ELIDED
            and (word.start == 2 or not text[word.start - 3].isalpha())
            and word.text.istitle()
            and len(word.text) >= 3
        ):
            word.name = True


def _surname_first(
    text: str, words: Sequence[_Word], maybe: Callable[[_Word], bool], never: frozenset[str]
) -> None:
    for index, (left, right) in enumerate(itertools.pairwise(words)):
        if text[left.end : right.start] not in {", ", ","} or (left.name and right.name):
            continue
        opening = text[: left.start].rstrip()
        if opening and opening[-1] not in _OPENINGS:
            continue
        after = words[index + 2] if index + 2 < len(words) else None
        rest = text[right.end : after.start if after else len(text)].strip()
        alone = after is None and rest in {"", "."}  # the whole value: "Freely, Brian"
        if not (alone or rest in _AFTER_PAIR or (after is not None and after.name)):
            continue
        if alone and all(_other_script(w) and _capital_or_caseless(w) for w in (left, right)):
            left.name = right.name = True  # "Мазепа, Олекса": no list knows either
        elif (
            right.name
            and _clear_given(right)
            and _capital_or_caseless(left)
            and left.folded not in never
        ):
            left.name = left.name or alone or left.listed or maybe(left)
        elif left.name and _clear_given(left) and _capitalised(right) and right.listed:
            right.name = right.folded not in never  # "Blom, Iris"


def _capitalised(word: _Word) -> bool:  # "Лукʼян": a modifier letter breaks istitle()
    text = word.text
    title = text.istitle() or (text[0].isupper() and text[1:].islower())
    return len(text) >= 2 and (title or text.isupper())


def _capital_or_caseless(word: _Word) -> bool:  # Thai, Arabic, Hebrew have no capitals
    return _capitalised(word) or caseless(word.text)


def _before_labels(text: str, words: Sequence[_Word]) -> None:
    for index, label in enumerate(words):
        if label.folded not in _LABELS or index == 0:
            continue
        if text[words[index - 1].end : label.start] not in {" ", ", ", " (", ": "}:
            continue
        run: list[_Word] = []  # up to three capitalised words before the label, in order
        at = index - 1
        while at >= 0 and len(run) < 3:
            word = words[at]
            if not (_capital_or_caseless(word) and (len(word.text) > 3 or not word.text.isupper())):
                break
            run.insert(0, word)
            if at == 0 or text[words[at - 1].end : word.start] not in {" ", "-"}:
                break
            at -= 1
        clear = [i for i, w in enumerate(run) if w.name or (w.listed and not w.safe)]
        if clear:  # from the first clear name on: "CT Head Tracy Ward MRN"
            first = clear[0]
            while first > 0 and not run[first - 1].safe:  # a given name no list knows
                first -= 1
            for word in run[first:]:
                word.name = True
        elif sum(w.listed for w in run) >= 2:
            for word in run:
                word.name = word.name or word.listed
        elif len(run) >= 2 and not any(w.safe for w in run):
            # "Г-жа Елиса Куртакова MRN", "Aybora İhsanoğlu MRN": no word is vocabulary
            for word in run:
                word.name = True


def _surname_after_given(
    text: str, words: Sequence[_Word], never: frozenset[str], clinical: Callable[[str], bool]
) -> None:
    if len(words) == 2 and text.strip() == text[words[0].start : words[1].end]:
        family, given = words  # "Żok Arkadiusz", "Foà Pasquale": the whole value, family first
        if _clear_given(given) and text[family.end : given.start] == " " and family.text.istitle():
            family.name = family.name or (
                (family.listed or not family.safe) and not clinical(family.folded)
            )
    for left, right in itertools.pairwise(words):
        if right.name or not _clear_given(left) or text[left.end : right.start] != " ":
            continue
        upper = left.text.isupper() and right.text.isupper()  # "RAFAŁ MADURA", not "AND"
        upper = upper and (right.listed or not right.english)
        if (
            (right.text.istitle() or upper)
            and len(right.text) >= 3
            and (right.folded not in never or right.folded in _SURNAME_WORDS)
        ):
            right.name = not clinical(right.folded)


def _particles_after_name(
    text: str, words: Sequence[_Word], particles: frozenset[str], never: frozenset[str]
) -> None:
    """ "Nienke van der Heyden", "Milo van Bentheim": after a name, lower-case particles and a
    capitalised word are its family name, whatever the lists call the word."""
    for index, word in enumerate(words):
        if not word.name:
            continue
        at = index + 1
        while (
            at < len(words)
            and at - index <= 3
            and words[at].folded in particles
            and words[at].text.islower()
            and text[words[at - 1].end : words[at].start] in {" ", "-"}  # "Elzas-van der Noot"
        ):
            at += 1
        if at == index + 1 or at >= len(words) or at - index > 3:
            continue
        last = words[at]
        gap = text[words[at - 1].end : last.start]
        if gap == " " and _capitalised(last) and last.folded not in never:
            for part in words[index + 1 : at + 1]:
                part.name = True
    for index, word in enumerate(words[:-2]):  # "Amber van Rijthoven": the given name before
        if word.name or not (word.listed and word.text.istitle()) or word.folded in never:
            continue
        at = index + 1
        while at < len(words) - 1 and words[at].folded in particles and words[at].text.islower():
            at += 1
        gaps = {text[a.end : b.start] for a, b in itertools.pairwise(words[index : at + 1])}
        if at > index + 1 and words[at].name and gaps == {" "}:
            for part in words[index:at]:
                part.name = True


def _listed_after_names(text: str, words: Sequence[_Word]) -> None:
    """ "Cc: Seda Güçlü; Dursadiye Irıs İnönü": in a list parted by ";", an item of one to four
    capitalised words, each listed or no vocabulary, after an item that is a name, is one too."""
    items: list[list[_Word]] = [[]]
    for index, word in enumerate(words):
        if index and ";" in text[words[index - 1].end : word.start]:
            items.append([])
        items[-1].append(word)
    for before, item in itertools.pairwise(items):
        if not (any(w.name for w in before) and 1 <= len(item) <= 4):
            continue
        if all(_capital_or_caseless(w) and (w.name or w.listed or not w.safe) for w in item):
            for word in item:
                word.name = True


def _other_script(word: _Word) -> bool:
    """A word wholly in a script other than Latin (Greek, Cyrillic, Arabic, Hebrew, Indic,
    Thai...): "μmol" mixes in Latin letters and is a unit, not a word of another script."""
    return not is_latin(word) and not any("a" <= c.lower() <= "z" for c in word.text)


def _other_script_in_english(text: str, words: Sequence[_Word], never: frozenset[str]) -> None:
    """ "Previously treated by Θεόπιστος Αποστολόπουλος", "Lives at ш. Боровое, г. Джейрах":
    in English text the word lists cover, a short run of words of another script is a
    name or a place; the clinical words around it are English. A longer run is a sentence
    of that language and left to the lists."""
    english = sum(  # "at", "Lives", "treated"; not "CT" or "MRI", which any language writes
        1 for w in words if w.english and not w.text.isupper() and not _other_script(w)
    )
    others = [i for i, w in enumerate(words) if _other_script(w)]
    if not others or english == 0:
        return
    runs: list[list[int]] = []  # words parted by spaces or a hyphen only
    for index in others:
        gap = text[words[index - 1].end : words[index].start] if index else ""
        if runs and runs[-1][-1] == index - 1 and gap.strip(" -") == "":
            runs[-1].append(index)
        else:
            runs.append([index])
    for run in runs:
        if len(run) > 4:
            continue
        for index in run:
            word = words[index]  # not "ш.", "буд.", "кв.": a street's kind, in lower case
            lower = word.text.islower() and not caseless(word.text)
            if len(word.text) >= 2 and word.folded not in never and not lower:
                word.name = True


def _name_alone_in_other_script(text: str, words: Sequence[_Word]) -> None:
    """ "Ασημούλα Χριστοφόρη", "เกษมชัย ทรัพย์ธำรงค์", "Քնարիկ Աթալյանց", "عسل وثاق": a whole
    value of two or three words of one Greek, Cyrillic, Armenian, Georgian, Thai, Arabic,
    Hebrew or Indic script, each capitalised where the script has capitals, none vocabulary,
    only spaces or a hyphen between: a name. Cyrillic, Armenian and Georgian need a family
    name's ending on one word."""
    if not 2 <= len(words) <= 3 or text.strip() != text[words[0].start : words[-1].end]:
        return
    if words[0].text.startswith(_THAI_TITLES):
        return  # "นางสาวสุดา แสงทอง": the title stays (name_neighbours.thai_titled_names)
    scripts = {_script(w) for w in words}
    script = scripts.pop() if len(scripts) == 1 else "mixed"
    if script not in _SURNAME_ENDINGS:
        return
    gaps = [text[a.end : b.start] for a, b in itertools.pairwise(words)]
    cyrillic = any("\u0400" <= c <= "\u052f" for c in text)
    endings = _SURNAME_ENDINGS[script] if script != "greek-cyrillic" or cyrillic else ()
    surname = [w.folded.endswith(endings) for w in words]
    if endings and not any(w.listed or ending for w, ending in zip(words, surname, strict=True)):
        return  # "Компьютерная Томография": a Russian descriptor may be in Title Case too
    if gaps == [", "] and surname[0] and script in {"armenian", "georgian"}:
        gaps = [" "]  # "მინდიაშვილი, უშანგი": family name first, as registers write it
    spaced = all(g in {" ", "-"} for g in gaps)
    if spaced and not any(w.safe or not _capital_or_caseless(w) for w in words):
        for word in words:
            word.name = True


_THAI_TITLES = ("นายแพทย์", "แพทย์หญิง", "นางสาว", "นาย", "นาง")
_SLAVIC_SURNAME = ("ов", "ова", "ев", "ева", "ёв", "ёва", "ин", "ина", "ын", "ына", "ский", "ская",
                   "цкий", "цкая", "енко", "ук", "юк", "чук", "ич", "вич", "ян", "дзе", "швили",
                   "ко", "як", "ак", "их", "ых")  # fmt: skip


# Endings a family name has, by script; a value of 2-3 words of the script needs one
# (Greek and Thai names need none: their descriptors are not in Title Case or spaced so).
_SURNAME_ENDINGS: dict[str, tuple[str, ...]] = {
    "greek-cyrillic": _SLAVIC_SURNAME,
    "thai": (),
    "armenian": ("յան", "յանց", "ունի", "ունց", "ենց", "եան"),
    "georgian": ("შვილი", "ძე", "ავა", "უა", "ანი", "ური", "ელი", "ონი"),  # not "ია": "ტომოგრაფია"
    "arabic": (),  # no capitals and no endings to go by: vocabulary keeps "تصوير مقطعي"
    "hebrew": (),
    "indic": (),
}


def _script(word: _Word) -> str:
    top = max(word.text)
    if "\u0370" <= top <= "\u052f":
        return "greek-cyrillic"
    if "\u0590" <= top <= "\u05ff":
        return "hebrew"
    if "\u0600" <= top <= "\u06ff" or "\ufb50" <= top <= "\ufeff":
        return "arabic"
    if "\u0530" <= top <= "\u058f":
        return "armenian"
    if "\u10a0" <= top <= "\u10ff":
        return "georgian"
    if "\u0900" <= top <= "\u0dff":
        return "indic"  # Devanagari, Bengali, Gurmukhi, Gujarati, Tamil, Telugu, Kannada...
    return "thai" if "\u0e00" <= top <= "\u0e7f" else "other"


def _place_ending_after_name(text: str, words: Sequence[_Word]) -> None:
    """ "Referring physician: Samantha Jones, Port Anthonyburgh.": after a name and a comma,
    capitalised words that end the value, one of them no vocabulary, are where the person
    is (a town). "Dr Smith, Radiology" stays: every word there is vocabulary."""
    for index, word in enumerate(words[:-1]):
        if not word.name or text[word.end : words[index + 1].start] != ", ":
            continue
        run = words[index + 1 : index + 4]
        if text[run[-1].end :].strip(" .") or words[index + 1 + len(run) :]:
            continue
        gaps = {text[a.end : b.start] for a, b in itertools.pairwise(run)}
        shaped = gaps <= {" ", "-"} and all(_capitalised(w) for w in run)
        if shaped and any(not w.safe for w in run) and not all(w.name for w in run):
            for place in run:
                place.name = True


def _structure_names(text: str, words: Sequence[_Word]) -> None:
    """ "GTV_Тетерина", "PTV_Oyelowo": a Greek or Cyrillic word joined by "_" to an upper-case
    Latin structure or descriptor word (GTV, PTV, L) is a name; the word lists know none of
    them, and a structure set names its ROIs in Latin."""
    for left, right in itertools.pairwise(words):
        if text[left.end : right.start] != "_":
            continue
        for word, other in ((left, right), (right, left)):
            latin_descriptor = is_latin(other) and other.text.isupper()
            abbreviation = word.text.isupper() and len(word.text) <= 4  # "МРТ_T2"
            foreign = _other_script(word) and _capitalised(word) and not word.safe
            if latin_descriptor and foreign and not abbreviation:
                word.name = True


_JOINS = frozenset({"_", "-"})


def _target_beside(text: str, left: _Word | None, right: _Word | None) -> bool:
    """Whether one of two words a space apart is a target's or OAR's word ("PTV Baker")."""
    if left is None or right is None or text[left.end : right.start] != " ":
        return False
    return left.folded in _TARGETS or right.folded in _TARGETS


def _named_structures(
    text: str, words: Sequence[_Word], never: frozenset[str], clinical: Callable[[str], bool]
) -> None:
    """ "GTV_Miller", "Baker_PTV_70": in a structure name (a target or OAR word and "_"), a
    listed name that is no word of structure names (data/structure_words.txt) nor a clinical
    word is a person, even when it is also English."""
    joined_anatomy = "_" in text and any(w.folded in _STRUCTURE_WORDS for w in words)
    if not (joined_anatomy or any(w.folded in _TARGETS for w in words)):
        return  # "Miller_Prostate_78Gy" is a plan's name too
    short = len(words) <= 5  # a structure's name, not a sentence: "PTV Baker 70"
    for index, word in enumerate(words):
        before = words[index - 1] if index else None
        after = words[index + 1] if index + 1 < len(words) else None
        joined = (before is not None and text[before.end : word.start] in _JOINS) or (
            text[word.end : word.end + 1] in _JOINS
        )
        spaced = _target_beside(text, before, word) or _target_beside(text, word, after)
        prose = after is not None and after.folded not in _TARGETS and (  # "GTV White matter"
            (after.safe and after.text.islower()) or after.folded in _STRUCTURE_WORDS
        )
        joined = joined or (short and spaced and word.text.istitle() and not prose)
        plain = not (word.folded in _STRUCTURE_WORDS or word.folded in _CLINICAL_WORDS)
        plain = plain and word.folded not in _TARGETS  # "Arc CW"
        if joined and word.listed and len(word.text) >= 3 and plain and word.folded not in never:
            word.name = word.name or not clinical(word.folded)


def names_by_order_and_shape(
    text: str,
    words: Sequence[_Word],
    maybe: Callable[[_Word], bool],
    never: frozenset[str],
    clinical: Callable[[str], bool],
    particles: frozenset[str],
) -> None:
    """Mark the words of the module's rules as names. `maybe` says a word could be a name
    the lists do not know; `never` are words no rule makes a name (titles, particles, nouns
    after eponyms); `clinical` says a folded word is shaped like a clinical term; `particles`
    join names ("van", "de la")."""
    _gaelic_and_elided(text, words)
    names_by_sentence(text, words, maybe)
    _surname_first(text, words, maybe, never)
    _before_labels(text, words)
    _surname_after_given(text, words, never, clinical)
    _particles_after_name(text, words, particles, never)
    if ";" in text:
        _listed_after_names(text, words)
    if ", " in text:
        _place_ending_after_name(text, words)
    _named_structures(text, words, never, clinical)
    if not text.isascii():
        if "_" in text:
            _structure_names(text, words)
        _other_script_in_english(text, words, never)
        _name_alone_in_other_script(text, words)
