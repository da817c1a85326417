"""A recognizer for unknown PHI in the free text a DICOM instance keeps.

Series and study descriptions, protocol names, comments, ROI names, SR TEXT items, GSPS
annotations and PDF text can hold identifiers the instance's own attributes do not: a
relative's name, a phone number, a date of birth. `Recognizer.find` returns where they are and
`clean` replaces them. Descriptors repeat on every instance of a series, so whole values are
cached; the name lists load once per process (gateway/text/lexicon.py).

The name rules are in gateway/text/names.py, dates in dates.py, ages over 89 in ages.py, the
rest in contacts.py. When
candidates overlap, the kind listed first in `_PRIORITY` wins, then the longer one.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from gateway.text.address_clauses import fill_address_clauses
from gateway.text.ages import find_ages
from gateway.text.cjk_names import find_cjk_names
from gateway.text.cjk_places import find_cjk_addresses
from gateway.text.contacts import find_contacts
from gateway.text.dates import find_dates, shift_date
from gateway.text.lexicon import Lexicon, forms, shipped_lexicon
from gateway.text.name_neighbours import initials_beside, patronymic_names, thai_titled_names
from gateway.text.names import find_latin_names
from gateway.text.organisations import find_organisations
from gateway.text.relations import find_relatives

_PRIORITY = {
    kind: rank
    for rank, kind in enumerate(
        ("email", "url", "date", "age", "address", "organisation", "phone", "postcode", "id",
         "time", "name")
    )
}
CACHE_SIZE = 65536
CACHED_LENGTH = 1024  # longer values are not cached
_ALNUM = re.compile(r"[^\W_]")
_DIGIT = re.compile(r"\d")
_SITE_WORD = re.compile(r"[\s^,]+")
_ELIDED_PREFIX = re.compile(r"(?<!\w)[ODLodl]['’]")


@dataclass(frozen=True)
class Span:
    """Where a piece of PHI is: text[start:end], and what kind of identifier it is."""

    start: int
    end: int
    kind: str  # "name", "phone", "email", "url", "address", "postcode", "id", "date", "time",
    # "age" (over 89), "organisation"


def _resolve(text: str, candidates: Iterable[tuple[int, int, str]]) -> tuple[Span, ...]:
    """Non-overlapping spans, strongest kind first, then the longest; sorted by position.
    What a weaker candidate holds beyond the stronger ones is kept too: in "NI no. TM 39 41
    10 D. Hoffmeister" the name "D. Hoffmeister" overlaps the number, and "Hoffmeister"
    must still go."""
    kept: list[tuple[int, int, str]] = []  # disjoint, sorted by start (a long text has
    ordered = sorted(set(candidates), key=lambda c: (_PRIORITY[c[2]], c[0] - c[1], c[0]))
    for start, end, kind in ordered:  # thousands: only the neighbours are looked at)
        index = max(0, bisect.bisect_left(kept, (start,)) - 1)
        pieces = [(start, end)]
        while index < len(kept) and kept[index][0] < end:
            s, e, _ = kept[index]
            pieces = [p for a, b in pieces for p in ((a, min(b, s)), (max(a, e), b)) if p[0] < p[1]]
            index += 1
        if pieces == [(start, end)]:
            bisect.insort(kept, (start, end, kind))
            continue
        for a, b in pieces:  # what is left beside stronger spans, without their punctuation
            letters = [m.span() for m in _ALNUM.finditer(text, a, b)]
            if letters:
                bisect.insort(kept, (letters[0][0], letters[-1][1], kind))
    return tuple(Span(s, e, k) for s, e, k in kept)


def _merge_names(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """Adjacent name words become one span: "Maria González" is one name, replaced once."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if start >= 2 and _ELIDED_PREFIX.fullmatch(text, start - 2, start):
            start -= 2  # "O'Brien", "D'Angelo": the prefix is part of the name
        if (
            merged
            and text[merged[-1][1] : start] in {"", " ", "-", "^", ". ", "."}
            and (
                text[merged[-1][1] : start] not in {". ", "."} or merged[-1][1] - merged[-1][0] == 1
            )
        ):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e, "name") for s, e in merged]


class Recognizer:
    """Finds and replaces PHI in free text with the shipped lists plus a site's own words."""

    def __init__(self, extra_names: Iterable[str] = (), safe_words: Iterable[str] = ()) -> None:
        # Lists may hold whole names ("SMITH^JOHN", "Van Helsing"): words are what is matched.
        self._extra = forms(w for n in extra_names for w in _SITE_WORD.split(n) if len(w) > 1)
        self._site_safe = forms(w for n in safe_words for w in _SITE_WORD.split(n) if w)
        self._lexicon: Lexicon | None = None
        # Per instance, not a module-level lru_cache on methods: that would keep every
        # recognizer alive, and sites with different lists must not share results.
        self._find = lru_cache(maxsize=CACHE_SIZE)(self._find_uncached)
        self._clean = lru_cache(maxsize=CACHE_SIZE)(self._clean_uncached)

    @property
    def lexicon(self) -> Lexicon:
        if self._lexicon is None:
            self._lexicon = shipped_lexicon()
        return self._lexicon

    def find(self, text: str) -> list[Span]:
        """Non-overlapping spans of PHI in `text`, sorted by position."""
        return list(self._spans(text))

    def contains_phi(self, text: str) -> bool:
        return bool(self._spans(text))

    def clean(self, text: str, replacement: str = "*", shift_days: int | None = None) -> str:
        """`text` with every span replaced; full dates are shifted instead when asked to."""
        if len(text) > CACHED_LENGTH:
            return self._clean_uncached(text, replacement, shift_days)
        return self._clean(text, replacement, shift_days)

    def _spans(self, text: str) -> tuple[Span, ...]:
        # Descriptors repeat; a PDF's or report's text does not and would only fill the cache.
        if len(text) > CACHED_LENGTH:
            return self._find_uncached(text)
        return self._find(text)

    def cache_clear(self) -> None:
        """Forget cached results (benchmarks time the uncached path with it)."""
        self._find.cache_clear()
        self._clean.cache_clear()

    def _find_uncached(self, text: str) -> tuple[Span, ...]:
        if not text or _ALNUM.search(text) is None:
            return ()
        lexicon = self.lexicon
        candidates: list[tuple[int, int, str]] = []
        if _DIGIT.search(text) is not None:
            candidates.extend(find_dates(text))
            candidates.extend(find_ages(text))
        candidates.extend(find_contacts(text))  # towns need no digit: "lives in Kingsmere"
        candidates.extend(find_organisations(text, lexicon))
        names = find_latin_names(text, lexicon, self._extra, self._site_safe)
        names.extend(find_relatives(text, lexicon))
        if not text.isascii():
            names.extend(find_cjk_names(text, lexicon))
            candidates.extend(find_cjk_addresses(text))
        names.extend(patronymic_names(text))
        names.extend(thai_titled_names(text))
        names.extend(initials_beside(text, names))
        candidates.extend(_merge_names(text, names))
        spans = _resolve(text, candidates)
        found = [(s.start, s.end, s.kind) for s in spans]
        filled = fill_address_clauses(text, found, self._vocabulary)
        return spans if filled == found else tuple(Span(*f) for f in filled)

    def _vocabulary(self, word: str) -> bool:
        _, _, safe, english = self.lexicon.facts(word)
        return safe or english or word.casefold() in self._site_safe

    def _clean_uncached(self, text: str, replacement: str, shift_days: int | None) -> str:
        return self.replace(text, self._spans(text), replacement, shift_days)

    @staticmethod
    def replace(text: str, spans: Iterable[Span], replacement: str, shift_days: int | None) -> str:
        """`text` with the given spans (sorted, not overlapping) replaced; full dates are
        shifted instead when `shift_days` is given."""
        if not spans:
            return text
        parts: list[str] = []
        position = 0
        for span in spans:
            parts.append(text[position : span.start])
            value = text[span.start : span.end]
            shifted = None
            if span.kind == "date" and shift_days is not None:
                shifted = shift_date(value, shift_days)
            parts.append(replacement if shifted is None else shifted)
            position = span.end
        parts.append(text[position:])
        return "".join(parts)


@lru_cache(maxsize=1)
def default_recognizer() -> Recognizer:
    """The process-wide recognizer with the shipped lists only (built on first use)."""
    return Recognizer()
