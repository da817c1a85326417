"""Names told by the sentence around them, in notes and reports.

"regarding Tenvir's appointment": a capitalised word no vocabulary holds, or a listed name that
is none, with a possessive "'s", is someone's name (eponyms before a clinical noun are dropped
later: "Crohn's disease").

"Verified: J. Q. Public": a Title Case word after two or three spaced initials is a family
name, even when it is a word ("C.T. Scan" and "E. coli" are no initials of a person).

"Lee. Gallbladder wall 2 mm, no stones.": in prose, a sentence of one listed name is a name,
even when it is an English word, unless reports write that word alone ("Normal.", "Small.").

"Dictated by Baker, Will": after a family name and a comma, a listed given name that ends
the text, its clause or comes before a credential is the given name, even when it is a word
("Baker, Will review tomorrow" keeps "Will").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import pairwise

from gateway.text.name_neighbours import Word

__all__ = ["names_by_sentence"]


def names_by_sentence(text: str, words: Sequence[Word], maybe: Callable[[Word], bool]) -> None:
    """Mark the words of the module's rules as names; `maybe` says a word could be a name the
    lists do not know."""
    if "." in text:
        _sentence_of_a_name(text, words)
        _after_initials(text, words)
    _after_a_middle_initial(text, words, maybe)
    if ", " in text:
        _given_after_family(text, words)
    if "'s" in text or "’s" in text:
        _possessive_names(text, words, maybe)


_TWO_INITIALS = re.compile(r"(?<![^\W\d_])(?:[A-Z]\.[ \t]){2,3}\Z")  # not "C.T. Scan"


def _after_initials(text: str, words: Sequence[Word]) -> None:
    """ "Verified: J. Q. Public": a Title Case word after two or three initials is the family
    name, even when it is a word (one initial is a genus too: "E. Coli")."""
    for word in words:
        title = word.text.istitle() and len(word.text) >= 2 and word.start >= 4
        if title and _TWO_INITIALS.search(text, max(0, word.start - 9), word.start):
            word.name = True


def _after_a_middle_initial(
    text: str, words: Sequence[Word], maybe: Callable[[Word], bool]
) -> None:
    """ "Mr. John Q. Public": after a name and a middle initial, a Title Case word is the
    family name, even when it is a word; a name seldom ends in an initial, so the word is
    no new sentence unless it opens one as words do ("John K. Then discharged")."""
    for before, initial, word in zip(words, words[1:], words[2:], strict=False):
        if len(before.text) < 2 or not (len(initial.text) == 1 and initial.text.isupper()):
            continue
        gap = text[initial.end : word.start]
        named = before.name and initial.name
        # Unflagged yet: a listed name that is no word ("John", not "Stage"), the initial's dot.
        given = before.listed and not before.safe and before.text.istitle() and gap == ". "
        if not (named or given) or text[before.end : initial.start] != " ":
            continue
        # A name the lists know, even a word ("Long", "Baker"), or a word no list knows that
        # is not shaped like a clinical term; not vocabulary that is only a word ("Stage B.
        # Progression", "Child-Pugh B. Ascites").
        family = (word.listed or maybe(word)) and word.text.istitle() and len(word.text) >= 2
        opener = word.folded in _OPENERS or word.folded in _ONE_WORD_SENTENCES
        if gap in {". ", " "} and family and not opener:
            word.name = True


# Words that open a sentence after a name that ended in an initial.
_OPENERS = frozenset((
    "the", "then", "this", "that", "these", "those", "there", "he", "she", "they", "we", "it",
    "his", "her", "their", "our", "and", "or", "but", "not", "on", "in", "at", "for", "with",
    "was", "were", "is", "are", "will", "has", "had", "have", "pt", "patient", "please",
    "seen", "also", "after", "before", "today", "yesterday", "dr", "mr", "mrs", "ms", "prof",
))  # fmt: skip


# One-word sentences of reports that are also someone's name somewhere ("Normal.", "Will.").
_ONE_WORD_SENTENCES = frozenset((
    "normal", "unchanged", "stable", "improved", "resolved", "noted", "negative", "positive",
    "clear", "fine", "good", "ok", "okay", "yes", "no", "none", "nil", "done", "complete",
    "correct", "agreed", "confirmed", "impression", "findings", "comparison", "history",
    "technique", "conclusion", "summary", "addendum", "note", "notes", "result", "results",
    "recommendation", "recommendations", "indication", "procedure", "report", "unremarkable",
    "satisfactory", "limited", "suboptimal", "pending", "see", "thanks", "regards", "urgent",
    "routine", "discussed", "reviewed", "signed", "final", "preliminary", "verified", "dictated",
    "severe", "small", "large", "possible", "early", "late", "new", "trace", "mild", "moderate",
    "left", "right", "bilateral", "acute", "chronic", "benign", "malignant", "likely",
))  # fmt: skip
_SENTENCE_END = re.compile(r"\.(?:[ \t]+(?=[A-Z])|[ \t]*$)")


def _sentence_of_a_name(text: str, words: Sequence[Word]) -> None:
    """ "Lee. Gallbladder wall 2 mm, no stones.": in prose, a sentence of one listed name is
    a name, even when it is an English word, unless reports write it alone ("Normal.")."""
    if sum(len(w.text) > 2 and w.text.islower() for w in words) < 2:
        return  # not prose
    for index, word in enumerate(words):
        opening = index == 0 and not text[: word.start].strip()
        opening = opening or (index > 0 and text[words[index - 1].end : word.start] in {". ", "; "})
        ends = _SENTENCE_END.match(text, word.end) is not None
        shaped = word.text.istitle() and len(word.text) >= 3 and word.listed
        if opening and ends and shaped and word.folded not in _ONE_WORD_SENTENCES:
            word.name = True


# After the given name: the text's end, a clause's, or a credential ("Nguyen, Faith RN").
_GIVEN_ENDS = re.compile(
    r"[ \t]*(?:$|[,;)\]]|(?:MD|RN|DO|NP|PA|PhD|MBBS|MBChB|FRCR|FRCPC|RT|RTT|CNMT)\b)"
)


def _given_after_family(text: str, words: Sequence[Word]) -> None:
    """ "Dictated by Baker, Will": a listed given name after a family name and a comma, at
    the end of the text or a clause, even when it is a word."""
    for before, word in pairwise(words):
        if not (before.name and text[before.end : word.start] == ", "):
            continue
        if word.listed and word.text.istitle() and _GIVEN_ENDS.match(text, word.end):
            word.name = True


def _possessive_names(text: str, words: Sequence[Word], maybe: Callable[[Word], bool]) -> None:
    """ "regarding Tenvir's appointment": a capitalised word no vocabulary holds, with a
    possessive "'s", is someone's name (eponyms before a clinical noun are dropped later)."""
    for word in words:
        possessive = text.startswith(("'s", "’s"), word.end)
        alone = not text[word.end + 2 : word.end + 3].isalpha()  # not "O'Shea"
        named = maybe(word) or (word.listed and not word.safe)
        if possessive and alone and len(word.text) >= 3 and word.text.istitle() and named:
            word.name = True
