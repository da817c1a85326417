"""Latin spellings of a name written in Arabic or Hebrew letters, as one regex per name.

Abjads write consonants and long vowels only, so "حداد" is typed "Haddad", "Hadad" or
"Haddád" and "ليلى" "Layla", "Leila" or "Laila": no single transliteration exists, but
every spelling keeps the consonants in order. Each letter becomes the Latin letters it is
written with ("ش": sh, ch, sch; "ق": q, k, g), short vowels may appear between any two
consonants, a consonant may be doubled (shadda), and the article "ال" may be written "al-",
"el-", "al " or dropped. The result is searched in folded text as a whole word; names
whose skeleton has fewer than three letters ("علي") match too many words to be searched.
"""

from __future__ import annotations

import re

_V = "[aeiouy']{0,3}"  # short vowels nobody wrote down, or an apostrophe for a glottal stop
# Each letter: a regex of how it is typed. Long vowels and glottal stops are vowel slots.
_ARABIC: dict[str, str] = {
    "ا": "(?:aa|a)", "أ": _V, "إ": _V, "آ": "(?:aa|a)", "ء": _V, "ؤ": _V, "ئ": _V,
    "ى": "(?:a|y|i|e)", "ة": "(?:ah|at|eh|a|e)?", "ع": _V, "و": "(?:ou|oo|w|u|o|v)",
    "ي": "(?:ee|ei|ai|ay|ey|y|i|e)", "ب": "b", "ت": "t", "ث": "(?:th|t|s)",
    "ج": "(?:dj|j|g|dsch)", "ح": "h", "خ": "(?:kh|h|x|ch)", "د": "d", "ذ": "(?:dh|th|z|d)",
    "ر": "r", "ز": "z", "س": "s", "ش": "(?:sch|sh|ch|s)", "ص": "s", "ض": "(?:dh|d)",
    "ط": "t", "ظ": "(?:dh|z)", "غ": "(?:gh|g|r)", "ف": "f", "ق": "(?:q|k|g)", "ك": "k",
    "ل": "l", "م": "m", "ن": "n", "ه": "h?", "پ": "p", "چ": "ch", "ژ": "(?:zh|j)",
    "گ": "g", "ک": "k", "ی": "(?:ee|ei|ai|ay|y|i|e)",
    "\u0000": "(?:allah|ullah|alla|ulla|ellah|llah)",
}  # fmt: skip
_HEBREW: dict[str, str] = {
    "א": _V, "ע": _V, "ה": "h?", "ו": "(?:v|o|u|w)", "י": "(?:y|i|e|ei)", "ב": "(?:b|v)",
    "ג": "g", "ד": "d", "ז": "z", "ח": "(?:ch|kh|h)", "ט": "t", "כ": "(?:k|kh|ch)",
    "ך": "(?:k|kh|ch)", "ל": "l", "מ": "m", "ם": "m", "נ": "n", "ן": "n", "ס": "s",
    "פ": "(?:p|f|ph)", "ף": "(?:f|ph)", "צ": "(?:tz|ts|z|s)", "ץ": "(?:tz|ts|z)",
    "ק": "(?:k|q)", "ר": "r", "ש": "(?:sh|s)", "ת": "(?:t|s)",
}  # fmt: skip
_TABLES = (_ARABIC, _HEBREW)
_ARTICLE = "ال"
_MARKS = re.compile(r"[\u064b-\u065f\u0670\u0591-\u05c7]")  # harakat, niqqud
_ALTERNATIVES = re.compile(r"[a-z']+")
_CONSONANTS = frozenset("bcdfghjklmnpqrstvxz")
# A name is searched when three of its letters are consonants in every spelling ("حداد":
# h, d, d), or two are and its shortest spelling has four letters ("ليلى": "lyla"); "سارة"
# (s, r: it would match "sure") and "علي" are not.
MIN_CONSONANTS = 2
MIN_LETTERS = 4


def _letter(ch: str) -> str | None:
    for table in _TABLES:
        if ch in table:
            return table[ch]
    return None


def _optional(spelling: str) -> bool:
    return spelling.endswith(("?", "}"))


def _strong(spelling: str) -> bool:
    """A letter written with a consonant in every spelling (not a vowel or a glide)."""
    options = _ALTERNATIVES.findall(spelling)
    return not _optional(spelling) and all(set(o) & _CONSONANTS for o in options)


def _shortest(spelling: str) -> int:
    return 0 if _optional(spelling) else min(len(o) for o in _ALTERNATIVES.findall(spelling))


def abjad_regex(word: str) -> str | None:
    """A regex for the Latin spellings of one Arabic or Hebrew name word, to search folded
    text as a whole word; None when the word is not in those scripts or too short."""
    spelling = _spelling(word)
    return None if spelling is None else _whole(spelling)


def _whole(spelling: str) -> str:
    """`spelling` where no letter of any script touches it."""
    return rf"(?<![^\W\d_]){spelling}(?![^\W\d_])"


def _spelling(word: str) -> str | None:
    """The regex of `abjad_regex` without its word edges (to build login forms from)."""
    word = _MARKS.sub("", word).replace("\u0640", "")  # vowel marks, tatweel
    article = word.startswith(_ARTICLE) and len(word) > len(_ARTICLE) + 1
    if article:
        word = word[len(_ARTICLE) :]
    if word.startswith("ا"):
        word = "أ" + word[1:]  # an initial alif carries a vowel, any vowel
    word = word.replace("الله", "\u0000")  # "Abdullah", "Abdallah": one unit
    letters = [_letter(ch) for ch in word]
    if not letters or any(spelling is None for spelling in letters):
        return None
    spellings = [s for s in letters if s is not None]
    strong = sum(map(_strong, spellings))
    if strong <= MIN_CONSONANTS and (
        strong < MIN_CONSONANTS or sum(map(_shortest, spellings)) < MIN_LETTERS
    ):
        return None
    parts = []
    for spelling in spellings:
        if len(spelling) == 1:
            spelling = spelling + "{1,2}"  # shadda, or a writer's double letter
        parts.append(spelling + "[aeiou]{0,2}")
    body = "".join(parts)
    prefix = "(?:[ae]l[- ]?)?" if article else ""
    return rf"{prefix}[aeiou']?{body}"


def abjad_patterns(families: list[str], givens: list[str]) -> set[str]:
    """Regexes for the words of a name's family and given components, and for the login
    forms made of them ("haddad.l", "lhaddad", "layla.haddad")."""
    family = [f for f in (_spelling(w) for c in families for w in c.split()) if f]
    given = [g for g in (_spelling(w) for c in givens for w in c.split()) if g]
    out = {_whole(spelling) for spelling in family + given}
    initial = _initial(givens)
    for f in family:
        if initial:
            out.add(_whole(rf"(?:{initial}\.?{f}|{f}\.?{initial})"))
        out.update(_whole(rf"(?:{g}[._]?{f}|{f}[._]?{g})") for g in given)
    return out


def _initial(givens: list[str]) -> str | None:
    """How the first letter of the given name is typed, as a regex of one letter."""
    for component in givens:
        word = _MARKS.sub("", component).strip()
        if word.startswith(_ARTICLE):
            word = word[len(_ARTICLE) :]
        if word:
            spelling = _letter(word[0])
            if spelling and len(spelling) == 1:
                return spelling
            if spelling:
                firsts = sorted({s[0] for s in re.findall(r"[a-z]+", spelling)})
                return f"[{''.join(firsts)}]" if firsts else None
    return None
