"""The recognizer's word lists, loaded once per process from package data and folded.

Matching uses NFKC + casefold (casefold, not lower: Greek final sigma and German sharp s),
and, as an extra form, the same with accents stripped, so that "GONZALEZ" finds "González"
and "ΓΙΩΡΓΟΣ" finds "Γιώργος". Lists are read lazily because they cost ~0.6 s and ~60 MB and
a gateway that never cleans free text should not pay for them.
"""

from __future__ import annotations

import gzip
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources


def fold(word: str) -> str:
    return unicodedata.normalize("NFKC", word).casefold()


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


def _read(name: str) -> list[str]:
    """Words of one data file, gzip or plain, with "#" comment lines left out."""
    raw = resources.files("gateway.text").joinpath("data", name).read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    words: list[str] = []
    for line in raw.decode("utf-8").splitlines():
        if not line.startswith("#"):
            words.extend(line.split())
    return words


# (folded word, in the name lists, safe vocabulary, common English)
WordFacts = tuple[str, bool, bool, bool]
MEMO_LIMIT = 200_000


@dataclass(frozen=True)
class Lexicon:
    """Folded word sets: names, common English words, and the wider safe vocabulary."""

    names: frozenset[str]
    english: frozenset[str]
    safe: frozenset[str]
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
        forms = {folded, accent_fold(folded)}
        known = (
            folded,
            not forms.isdisjoint(self.names),
            not forms.isdisjoint(self.safe),
            not forms.isdisjoint(self.english),
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
def shipped_lexicon() -> Lexicon:
    english = forms(
        _read("english_words.txt")
        + _read("dicom_words.txt.gz")
        + _read("english_dictionary.txt.gz")
    )
    safe = english | forms(_read("clinical_words.txt") + _read("concept_words.txt.gz"))
    names = forms(_read("given_names.txt.gz") + _read("family_names.txt.gz"))
    return Lexicon(
        names=names,
        english=english,
        safe=safe,
        cjk_family=frozenset(_read("cjk_family_names.txt")),
        cjk_safe=frozenset(_read("cjk_safe_words.txt")),
    )
