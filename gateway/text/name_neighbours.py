"""Names told by what stands beside them: a cue, another name, a colon, a script, a dot.

"Technologist: mgarcia3", "reviewed by rkapoor": systems write their users' logins in
lower case, an initial or two run into the family name, often with a number, and the word
lists know neither. After a cue (names.py) a lower-case word that is no word and has a
listed name after its first one or two letters, or two listed names run together
("thomasbrown"), or a family name of five letters or more after a prefix ("margaudlefebvre"),
or digits right after it (then a word too: "marine16"), is one (three
letters or more, four without the digits).

"* present: * and Aroha Ngata", "Rangi Parata & Hemi": a capitalised word the lists call a
name or do not know, joined by "and" or "&" to a name found (or already cut, "*"), is one
too. "Smith and Nephew" stays: a safe word is taken this way only when it is listed and ends
a list of names ("Williams, Jones and Hardy"). So is such a word, or a listed one, in a list
between two names: "D'Angelo, MacGillivray, van der Merwe", "Cunningham, Lees and Butler".

"PARK Jiho present", "nodule 8 mm Lundegard Priyanka", "per ap Gruffydd": before a name, an
upper-case listed word ("SURNAME Given", even one that is also a word), a Title Case word
the lists do not know, or a particle, is part of it; so is a lower-case word no list knows
on either side of it ("stergaard Chidi": Østergaard less its Ø). The last two only in
English text: German capitalises its nouns, and every word of other languages is unknown.

"nodule 8 mm Morwenna Vanterpool.": two or three Title Case words that are names as far as
the lists tell, ending the value after a lower-case word, are one name; so is one such word
(five letters or more, not English) ending it after a small number: "ROI 1 Hjelmqvist".

"Смирновой Еленой Викторовной", "Ольги Сергеевны": a Russian or Ukrainian patronymic, in any
case, with the one or two capitalised words before it, is a name whatever the lists say.

"นายสมชาย ใจดี": a Thai title is written against the given name; the given name after it and
the word after that (the family name) are a name.

"Τσακίρη present", "CTV Τσακίρη edit": in Latin text, a Greek or Cyrillic word before a word
that follows names ("present", "edit") is a name; the lists know no such word.

"Hjelmqvist: headache, worst ever": in English text, one or two words the lists call names
or do not know, opening the value before a colon and lower-case prose, are a name (a label
is vocabulary: "Indication: pain"; "Befund: unauffällig" is not English).

"Иванова А.С.", "S. *": initials (one capital letter and a dot, up to three) beside a name
or a cut one belong to it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.text.lexicon import Lexicon
from gateway.text.names_alone import greek_or_cyrillic, is_latin, mostly_latin

__all__ = [
    "Word",
    "degree",
    "initials_beside",
    "login_after_cue",
    "mark_pn_group",
    "name_heading_prose",
    "names_after_and",
    "names_before_names",
    "names_ending_note",
    "other_script_before",
    "patronymic_names",
    "thai_titled_names",
]


class Word(Protocol):
    """What the rules here read of a word (names.Token has it)."""

    start: int
    end: int
    text: str
    folded: str
    english: bool
    name: bool
    safe: bool
    listed: bool


# Academic degrees written between a title and the name ("Dr. med. Ott", "Dr. rer. nat.
# Lenz", "Prof. Dr. med. habil."): each with its dot.
_DEGREES = frozenset(("dent", "habil", "hc", "ing", "jur", "med", "mult", "nat", "oec", "pharm",
                      "phil", "rer", "sc", "techn", "theol", "univ", "vet"))  # fmt: skip


def degree(text: str, token: Word) -> bool:
    """Whether `token` is a degree abbreviation with its dot (see _DEGREES)."""
    return token.folded in _DEGREES and text.startswith(".", token.end)


_AND = re.compile(r"[ \t]+(?:and|AND|And|&)[ \t]+")
_INITIALS = re.compile(r"(?<![^\W\d_])(?:[^\W\d_]\.[ \t]?){1,3}(?![^\W\d_])")
_PATRONYMIC = re.compile(
    r"(?:[А-ЯЁІЇЄ][а-яёіїє'-]+[ \t]+){1,2}[А-ЯЁІЇЄ][а-яёіїє]+"
    r"(?:ович|евич|ьич|івна|ївна|овн|евн|ичн|инічн)(?:а|у|ем|ом|е|ой|ы|ою|ій|і)?(?![а-яёіїє])"
)
_THAI = "\u0e01-\u0e4e"  # Thai letters, vowels and tone marks
_THAI_TITLED = re.compile(
    rf"(?<![{_THAI}])(นายแพทย์|แพทย์หญิง|นางสาว|นาย|นาง)([{_THAI}]{{2,}})[ \t]+[{_THAI}]{{2,}}"
)
_STAR_AND = re.compile(r"(?:^|[^\w*])\*[ \t]+(?:and|AND|&)[ \t]+\Z")
_COMMA = re.compile(r",[ \t]*")
_AFTER_NUMBER = re.compile(r"(?<![\d.,])\d{1,3}[ \t]+\Z")
_LIST_NEXT = re.compile(rf",[ \t]*|{_AND.pattern}")


# Endings of English and clinical words the vocabulary may miss (not of a login).
_WORD_ENDINGS = ("al", "ar", "ic", "ous", "ion", "ive", "ary", "ory", "ine", "ate", "ism",
                 "osis", "itis", "graphy", "scopy", "logy", "ment", "ness", "ing", "ed", "ly",
                 "ity")  # fmt: skip


def login_after_cue(text: str, word: Word, lexicon: Lexicon, cue: str = "") -> bool:
    """Whether `word`, right after a cue, is a user name (see the module text). After a
    verb's "by" ("Annotation by ymorricone") any lower-case word that is no word is one."""
    value = word.text
    if cue == "by" and value.isalpha() and value.islower() and len(value) >= 5 and not word.safe:
        return not value.endswith(_WORD_ENDINGS)  # "by transperineal (approach)" is a word
    digits = text[word.end : word.end + 1].isdigit()  # "tech abc123", "by marine16"
    if not value.islower() or len(value) < (3 if digits else 4):
        return False
    if digits:
        return True
    if word.safe:
        return False
    if any(lexicon.facts(value[n:])[1] for n in (1, 2)):
        return True
    for n in range(3, len(value) - 2):  # "thomasbrown", "margaudlefebvre": names run together
        _, listed, safe, _ = lexicon.facts(value[n:])
        if listed and (lexicon.facts(value[:n])[1] or (len(value) - n >= 5 and not safe)):
            return True
    return False


def names_after_and(text: str, words: Sequence[Word], unknown: Callable[[Word], bool]) -> bool:
    """Set `name` on each word that "and" joins to a name (`unknown`: a name as far as the
    lists tell); whether any was set."""
    changed = False
    for index, word in [*enumerate(words), *enumerate(words)]:  # twice: "A, B and C" both ways
        named_by_lists = unknown(word)
        listed = word.listed and word.text.istitle()  # in a list of names, a word too
        if word.name or not (named_by_lists or listed):
            continue
        at = next((i for i in (index - 1, index - 2) if i >= 0 and words[i].folded != "and"), -1)
        left = words[at] if at >= 0 else None
        joined = left is not None and left.name and _AND.fullmatch(text, left.end, word.start)
        if not named_by_lists:  # "Williams, Jones and Hardy", not "Smith and Nephew"
            joined = joined and _after_list(text, words, at)
            if joined or _listed_between(text, words, index):
                word.name = changed = True
            continue
        following = words[index + 1].folded if index + 1 < len(words) else ""
        listing = left is not None and left.name and _COMMA.fullmatch(text, left.end, word.start)
        joined = joined or (listing and following in {"and", "&"})  # "Ponti, Vecoli and Co."
        star = _STAR_AND.search(text, max(0, word.start - 16), word.start)  # "* and "
        if joined or star or _listed_between(text, words, index):
            word.name = changed = True
    return changed


def _after_list(text: str, words: Sequence[Word], index: int) -> bool:
    """Whether the name at `index` ends a comma list of names ("Williams, Jones")."""
    return (
        index > 0
        and words[index - 1].name
        and _COMMA.fullmatch(text, words[index - 1].end, words[index].start) is not None
    )


def _listed_between(text: str, words: Sequence[Word], index: int) -> bool:
    """Whether the word at `index` is an item of a list whose items on both sides are names."""
    after = index + 2 if index + 2 < len(words) and words[index + 1].folded == "and" else index + 1
    if index == 0 or after >= len(words):
        return False
    left, word, right = words[index - 1], words[index], words[after]
    return bool(
        left.name
        and right.name
        and _COMMA.fullmatch(text, left.end, word.start)
        and _LIST_NEXT.fullmatch(text, word.end, right.start)
    )


def names_before_names(
    text: str,
    words: Sequence[Word],
    unknown: Callable[[Word], bool],
    particles: frozenset[str],
    clinical: Callable[[str], bool],
) -> None:
    """Set `name` on each word that is part of the Title Case name after it (see above).
    Only in English text do an unknown Title Case word and a lower-case word mean this:
    German capitalises its nouns, and other languages' words are all unknown."""
    english = _english(words)
    if not english:
        clinical = _everything  # no word is "mangled" in other languages
    latin = any(is_latin(w) and len(w.text) >= 3 and w.text.islower() for w in words)
    for index in range(len(words) - 2, -1, -1):
        word, after = words[index], words[index + 1]
        if text[word.end : after.start] != " ":
            continue
        if word.name and not after.name and _mangled(after, clinical):
            after.name = True  # "daughter Chidi stergaard"
        if word.name or not after.name:
            continue
        text_, value = word.text, after.text
        other_script = not is_latin(word) and _same_script(text_, value)  # "ΤΣΑΚΊΡΗ Ιωάννα"
        family = (
            text_.isupper() and len(text_) >= 3 and (word.listed or other_script or unknown(word))
        )
        unlisted = english and text_.istitle() and len(text_) >= 4 and unknown(word)
        unlisted = unlisted or (latin and other_script and text_.istitle())  # "Τσακίρη Ιωάννα"
        if (
            value.istitle() and (family or unlisted or _mangled(word, clinical))
        ) or text_.lower() in particles:
            word.name = True  # "mangled": "stergaard Chidi", a letter dropped by a system


def _english(words: Sequence[Word]) -> bool:
    """Half or more of the lower-case Latin words of three letters or more are vocabulary,
    or a Latin descriptor has none ("Peregrine Adeyemi: Annotations")."""
    lower = [w for w in words if len(w.text) >= 3 and w.text.islower() and is_latin(w)]
    if not lower:
        return mostly_latin(words)
    return 2 * sum(w.safe for w in lower) >= len(lower)


def _everything(_value: str) -> bool:
    return True


def _mangled(word: Word, clinical: Callable[[str], bool]) -> bool:
    """A lower-case word of five letters or more that no list knows ("stergaard") and
    that is not shaped like a clinical term ("neuroma")."""
    value = word.text
    return value.islower() and len(value) >= 5 and not (word.listed or word.safe or clinical(value))


def _same_script(left: str, right: str) -> bool:
    """Both in Greek, or both in Cyrillic (by their highest letter)."""
    blocks = [(0x0370, 0x03FF), (0x1F00, 0x1FFF), (0x0400, 0x04FF)]
    return any(
        low <= ord(max(left)) <= high and low <= ord(max(right)) <= high for low, high in blocks
    )


def initials_beside(text: str, names: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(start, end) of each run of initials with one space (or none) between it and a name
    in `names` or a "*" (see the module text)."""
    if "." not in text:
        return []
    stars = [m.start() for m in re.finditer(r"\*", text)]
    starts = {start for start, _end in names} | set(stars)
    ends = {end for _start, end in names} | {star + 1 for star in stars}
    found = []
    for match in _INITIALS.finditer(text):
        if not re.sub(r"[.\s]", "", match.group()).isupper():
            continue
        start, end = match.start(), match.start() + len(match.group().rstrip())
        before = start in ends or (start - 1 in ends and text[start - 1] == " ")
        if before or end in starts or (end + 1 in starts and text[end] == " "):
            found.append((start, end))
    return found


def mark_pn_group(text: str, words: Sequence[Word], word: Word) -> None:
    """A DICOM PN value in text ("SMITH^JOHN^A"): every component of a name is a name."""
    start = text.rfind(" ", 0, word.start) + 1
    end = text.find(" ", word.end)
    end = len(text) if end < 0 else end
    for other in words:
        if start <= other.start and other.end <= end:
            other.name = True


def names_ending_note(text: str, words: Sequence[Word], unknown: Callable[[Word], bool]) -> None:
    """Set `name` on a run of two or three such words that ends the value (see above), or
    on one after a number ("ROI 1 Hjelmqvist": an annotation's label and who drew it)."""
    if not words or text[words[-1].end :].strip(" ."):
        return
    last, count = words[-1], len(words)
    if (
        _AFTER_NUMBER.search(text, 0, last.start)
        and last.text.istitle()
        and len(last.text) >= 5
        and unknown(last)
        and not last.english
    ):
        last.name = True
    if count < 3:
        return
    start = count - 1
    while (
        start > 1 and count - start < 3 and text[words[start - 1].end : words[start].start] == " "
    ):
        if not words[start - 1].text.istitle():
            break
        start -= 1
    run = words[start:]
    if len(run) < 2 or not words[start - 1].text.islower():
        return
    if all(w.text.istitle() and unknown(w) for w in run):
        for word in run:
            word.name = True


def thai_titled_names(text: str) -> list[tuple[int, int]]:
    """(start, end) of the given and family name after a Thai title written against the given
    name, as Thai writes it ("นายสมชาย ใจดี": Mr Somchai Jaidee); the title stays."""
    if not any("\u0e00" <= c <= "\u0e7f" for c in text):
        return []
    return [(m.start(2), m.end()) for m in _THAI_TITLED.finditer(text)]


def patronymic_names(text: str) -> list[tuple[int, int]]:
    """(start, end) of each name with a patronymic (see above)."""
    if not any("\u0400" <= c <= "\u04ff" for c in text):
        return []
    return [m.span() for m in _PATRONYMIC.finditer(text)]


def other_script_before(text: str, words: Sequence[Word], after_name: frozenset[str]) -> None:
    """Set `name` on each Greek or Cyrillic word before an `after_name` word in Latin text."""
    if not mostly_latin(words):
        return
    for word, after in itertools.pairwise(words):
        other = greek_or_cyrillic(word) and word.text[:1].isupper()
        if other and after.text.lower() in after_name and text[word.end : after.start] == " ":
            word.name = True


def name_heading_prose(text: str, words: Sequence[Word], unknown: Callable[[Word], bool]) -> None:
    """Set `name` on the words of such a heading (see above)."""
    prose = sum(w.safe and w.text.islower() and len(w.text) >= 3 for w in words)
    if len(words) < 3 or prose < 2 or not _english(words):
        return
    for size in (1, 2):
        head, rest = words[:size], words[size]
        gap = text[head[-1].end : rest.start]
        if gap.strip() == ":" and rest.text.islower() and not text[: head[0].start].strip():
            if all(w.text.istitle() and len(w.text) >= 4 and unknown(w) for w in head):
                for word in head:
                    word.name = True
            return
