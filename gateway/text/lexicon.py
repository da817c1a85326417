"""The recognizer's word lists, loaded once per process from package data and folded.

Matching uses NFKC + casefold (casefold, not lower: Greek final sigma and German sharp s),
and, as an extra form, the same with accents stripped, so that "GONZALEZ" finds "González"
and "ΓΙΩΡΓΟΣ" finds "Γιώργος". Lists are read lazily because they cost ~0.3 s and a gateway
that never cleans free text should not pay for them.

The three large lists (344,000 forms) are `WordSet`s: the sorted 64-bit hashes of the
forms, 8 bytes a form, not a frozenset of str objects (29 MB held and 60 MB of a worker's resident
memory, measured; every worker holds its own).
"""

from __future__ import annotations

import gzip
import io
import unicodedata
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from itertools import chain

import numpy as np


def fold(word: str) -> str:
    return unicodedata.normalize("NFKC", word).casefold()


def caseless(word: str) -> bool:
    """A word of a script written without capitals: Han, Thai, Arabic, Hebrew, Indic, and
    Georgian, whose Mkhedruli letters Python calls lower case (Mtavruli capitals exist since
    Unicode 11, but Georgian text does not capitalise names)."""
    return word.lower() == word.upper() or "\u10d0" <= word[:1] <= "\u10ff"


@lru_cache(maxsize=1)
def combining_marks() -> str:
    """A regex class body of every combining mark in the Basic Multilingual Plane (Mn, Mc,
    Me): the vowel signs of Indic and Thai words, accents written apart."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x300, 0x10000):
        if unicodedata.category(chr(code))[0] == "M":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(f"\\u{a:04x}-\\u{b:04x}" if a != b else f"\\u{a:04x}" for a, b in ranges)


def accent_fold(folded: str) -> str:
    """`folded` without combining marks ("gonzález" -> "gonzalez"); ASCII returns as is."""
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFD", folded)
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


def forms(words: Iterable[str]) -> frozenset[str]:
    """Every word folded, plus its accent-free form."""
    out: set[str] = set()
    for word in words:
        folded = fold(word)
        out.add(folded)
        out.add(accent_fold(folded))
    out.discard("")
    return frozenset(out)


def _key(form: str) -> int:
    """The 64-bit hash of the form's UTF-8 bytes. Python's own (SipHash, in C) differs
    between interpreters but not within one nor in the workers it forks, and a WordSet
    never leaves its process. Of the bytes, not of the str: a str is hashed as its internal
    buffer, so "gaga" and "慧慧" (U+6167 twice) share a hash. Two of the 344,000 forms
    sharing one: about 1 in 10^8; a word outside taken for one: about 2 in 10^14."""
    return hash(form.encode("utf-8", "surrogatepass"))


class WordSet:
    """Membership (`in`) of folded forms, held as their sorted `_key`s."""

    def __init__(self, keys: Iterable[int]) -> None:
        self._keys = array("q", np.unique(np.fromiter(keys, dtype=np.int64)).tobytes())

    @classmethod
    def of(cls, words: Iterable[str]) -> WordSet:
        """Every word folded, plus its accent-free form (as `forms`)."""
        return cls(_key(form) for word in words for form in _both_forms(word))

    def __or__(self, other: WordSet) -> WordSet:
        return WordSet([*self._keys, *other._keys])

    def __contains__(self, form: object) -> bool:
        if not isinstance(form, str):
            return False
        key = _key(form)
        at = bisect_left(self._keys, key)
        return at < len(self._keys) and self._keys[at] == key

    def __len__(self) -> int:
        return len(self._keys)


def _both_forms(word: str) -> Iterator[str]:
    folded = fold(word)
    if folded:
        yield folded
        plain = accent_fold(folded)
        if plain and plain != folded:
            yield plain


def read_words(name: str) -> Iterator[str]:
    """Words of one data file, gzip or plain, with "#" comment lines left out (one line
    at a time: no list of every word is built)."""
    raw = resources.files("gateway.text").joinpath("data", name).read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    for line in io.StringIO(raw.decode("utf-8")):
        if not line.startswith("#"):
            yield from line.split()


# (folded word, in the name lists, safe vocabulary, common English)
WordFacts = tuple[str, bool, bool, bool]
MEMO_LIMIT = 200_000


@dataclass(frozen=True)
class Lexicon:
    """Folded word sets: names, common English words, and the wider safe vocabulary."""

    names: WordSet
    english: WordSet
    safe: WordSet
    cjk_family: frozenset[str]
    cjk_safe: frozenset[str]
    # Words repeat across values far more than values do: remembering a word's facts saves
    # the normalisation and four set look-ups. Bounded, so odd input cannot grow it forever.
    _memo: dict[str, WordFacts] = field(default_factory=dict, compare=False, repr=False)

    def facts(self, word: str) -> WordFacts:
        known = self._memo.get(word)
        if known is not None:
            return known
        folded = fold(word)
        forms = (folded, accent_fold(folded))
        known = (
            folded,
            any(form in self.names for form in forms),
            any(form in self.safe for form in forms),
            any(form in self.english for form in forms),
        )
        if len(self._memo) < MEMO_LIMIT:
            self._memo[word] = known
        return known

    def is_name(self, word: str) -> bool:
        folded = fold(word)
        return folded in self.names or accent_fold(folded) in self.names

    def is_safe(self, word: str) -> bool:
        folded = fold(word)
        return folded in self.safe or accent_fold(folded) in self.safe


@lru_cache(maxsize=1)
def clinical_words() -> frozenset[str]:
    """The folded words of data/clinical_words.txt, read once: the shipped lexicon's safe
    vocabulary holds them among others, and the structure-name rule needs them apart."""
    return frozenset(fold(word) for word in read_words("clinical_words.txt"))


@lru_cache(maxsize=1)
def shipped_lexicon() -> Lexicon:
    english = WordSet.of(
        chain(
            read_words("english_words.txt"),
            read_words("dicom_words.txt.gz"),
            read_words("english_dictionary.txt.gz"),
        )
    )
    clinical = chain(clinical_words(), read_words("concept_words.txt.gz"))
    safe = english | WordSet.of(clinical)
    names = WordSet.of(chain(read_words("given_names.txt.gz"), read_words("family_names.txt.gz")))
    return Lexicon(
        names=names,
        english=english,
        safe=safe,
        cjk_family=frozenset(read_words("cjk_family_names.txt")),
        cjk_safe=frozenset(read_words("cjk_safe_words.txt")),
    )
