"""One spelling for every way a value can be written, so identifiers are searched once.

An identifier is searched in a folded copy of a text: NFKC (full-width forms, ligatures,
compatibility characters), casefold rather than lower ("ß" as "ss", Greek final sigma as
sigma), accents and other non-spacing marks dropped (the same folding on both sides finds
"Müller" in "MULLER" and "Mu\u0308ller"), typographic apostrophes and dashes as ASCII, and
katakana as hiragana. Scripts written without spaces (CJK ideographs, kana, Hangul, Thai,
...) keep their marks: a voiced kana mark changes the name.

`fold_with_map` also says which characters of the original each folded character came from,
since folding changes lengths ("ß" gives two characters, "ﬁ" two, "e" + U+0301 one), and a
match must cut the original text. A leaf module: the standard library only.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Scripts written without spaces between words: a name there is found with no word edge.
# (CJK ideographs and their extensions, kana, Hangul, Thai, Lao, Myanmar, Khmer.)
UNSPACED_CHARS = (
    "\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff\u3130-\u318f"
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0002ffff"
)
_UNSPACED = re.compile(f"[{UNSPACED_CHARS}]")
# Kana alone: two kana are a particle or a syllable of any word, so kana names need more.
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")

_TYPOGRAPHIC = {
    0x2018: "'", 0x2019: "'", 0x201B: "'", 0x02BC: "'", 0x2032: "'", 0x00B4: "'",
    0x2010: "-", 0x2011: "-", 0x2012: "-", 0x2013: "-", 0x2014: "-", 0x2015: "-",
    0x2212: "-", 0xFE63: "-", 0xFF0D: "-",
}  # fmt: skip
# Katakana (U+30A1..U+30F6, iteration marks U+30FD/E) read as the hiragana they spell.
_KATAKANA_AS_HIRAGANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}
_KATAKANA_AS_HIRAGANA |= {0x30FD: 0x309D, 0x30FE: 0x309E}
_TRANSLATE = str.maketrans(_TYPOGRAPHIC | _KATAKANA_AS_HIRAGANA)

# Characters that belong to the character before them: combining marks, half-width voiced
# kana marks, Hangul vowel and final jamo (NFKC composes them with what precedes).
_HALF_WIDTH_VOICING = frozenset("\uff9e\uff9f")


def _continues(ch: str) -> bool:
    if ch.isascii():
        return False
    code = ord(ch)
    return (
        0x1160 <= code <= 0x11FF
        or ch in _HALF_WIDTH_VOICING
        or unicodedata.category(ch) in ("Mn", "Mc", "Me")
    )


@lru_cache(maxsize=8192)
def _fold_cluster(cluster: str) -> str:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", cluster).casefold())
    if not _UNSPACED.search(folded):
        decomposed = unicodedata.normalize("NFD", folded)
        folded = "".join(c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me"))
    return folded.translate(_TRANSLATE)


def _clusters(text: str) -> list[tuple[int, int]]:
    """(start, end) of each character with the marks that belong to it."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and _continues(text[j]):
            j += 1
        spans.append((i, j))
        i = j
    return spans


@lru_cache(maxsize=4096)
def _fold_short(text: str) -> str:
    return _fold_unicode(text)


def _fold_unicode(text: str) -> str:
    return "".join(_fold_cluster(text[i:j]) for i, j in _clusters(text))


_ABOVE_LATIN1 = re.compile("[^\x00-\xff]")
# Latin-1 letters decompose with marks of this block only (Unicode 15, UnicodeData.txt).
_LATIN1_MARKS = re.compile("[\u0300-\u036f]+")


def _fold_latin1(text: str) -> str:
    """As the clusters give, at C speed: no Latin-1 character is a mark, and the spacing
    accents (U+00A8, U+00B4, U+00B8) decompose to a space and a mark, which compose with
    nothing; so normalising the whole text equals normalising each character."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    decomposed = unicodedata.normalize("NFD", folded)
    return _LATIN1_MARKS.sub("", decomposed).translate(_TRANSLATE)


def fold(text: str) -> str:
    """`text` folded for searching (see the module text). ASCII costs one `lower()`, and
    Latin-1 text (every byte value read as Latin-1) a few C calls: binary values are
    searched too."""
    if text.isascii():
        return text.lower()
    if _ABOVE_LATIN1.search(text) is None:
        return _fold_latin1(text)
    return _fold_short(text) if len(text) <= 256 else _fold_unicode(text)


def fold_with_map(text: str) -> tuple[str, list[int] | None, list[int] | None]:
    """`fold(text)`, and for each folded character the start and end (exclusive) in `text`
    of the characters it came from; (folded, None, None) when positions are the same."""
    if text.isascii():
        return text.lower(), None, None
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for i, j in _clusters(text):
        piece = _fold_cluster(text[i:j])
        out.append(piece)
        starts.extend([i] * len(piece))
        ends.extend([j] * len(piece))
    return "".join(out), starts, ends


def is_unspaced(text: str) -> bool:
    """True when `text` holds a character of a script written without spaces."""
    return not text.isascii() and _UNSPACED.search(text) is not None


def kana_only(text: str) -> bool:
    """True when every letter of `text` is kana (no ideograph, no Hangul)."""
    letters = [c for c in text if not c.isspace()]
    return bool(letters) and all(_KANA.match(c) for c in letters)


def compact(text: str) -> str:
    """Letters and digits only: "AB-1234 X" as "ab1234x" (for IDs written with separators)."""
    return "".join(c for c in fold(text) if c.isalnum())
