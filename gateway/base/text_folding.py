"""One spelling for every way a value can be written, and how identifiers are matched.

Text is searched folded: NFKC (full-width forms, ligatures), casefold ("ß" as "ss", final
sigma as sigma), accents and other non-spacing marks dropped ("Müller", "MULLER" and
"Mu\u0308ller" alike), typographic apostrophes and dashes as ASCII, katakana as hiragana.
Scripts written without spaces (CJK, kana, Hangul, Thai, ...) keep their marks (a voiced
kana mark changes the name) and are matched with no word edge. `fold_with_map` says which
characters of the original each folded one came from ("ß" gives two, "e" + U+0301 one), so
a match cuts the original text. A leaf module: the standard library only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
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

_TYPOGRAPHIC = dict.fromkeys((0x2018, 0x2019, 0x201B, 0x02BC, 0x2032, 0x00B4), "'")
_TYPOGRAPHIC |= dict.fromkeys((*range(0x2010, 0x2016), 0x2212, 0xFE63, 0xFF0D), "-")
# Katakana (U+30A1..U+30F6, iteration marks U+30FD/E) read as the hiragana they spell.
_KATAKANA_AS_HIRAGANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}
_KATAKANA_AS_HIRAGANA |= {0x30FD: 0x309D, 0x30FE: 0x309E}
_TRANSLATE = str.maketrans(_TYPOGRAPHIC | _KATAKANA_AS_HIRAGANA)


# Characters that belong to the character before them: combining marks, half-width voiced
# kana marks, Hangul vowel and final jamo (NFKC composes them with what precedes).
def _continues(ch: str) -> bool:
    return not ch.isascii() and (
        0x1160 <= ord(ch) <= 0x11FF
        or ch in "\uff9e\uff9f"
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


def _fold_unicode(text: str) -> str:
    return "".join(_fold_cluster(text[i:j]) for i, j in _clusters(text))


_fold_short = lru_cache(maxsize=4096)(_fold_unicode)  # values repeat across a study


_ABOVE_LATIN1 = re.compile("[^\x00-\xff]")
# No Latin-1 character is a mark, so each folds alone: a byte table for those that fold to
# one Latin-1 character, replacements for the others ("ß", "µ", "½"), so binary values read
# as Latin-1 fold at the speed of `bytes.translate`.
_LATIN1 = [_fold_cluster(chr(code)) for code in range(256)]
_LATIN1_BYTES = bytes(ord(f) if len(f) == 1 and ord(f) < 256 else c for c, f in enumerate(_LATIN1))
_LATIN1_LONGER = [
    (chr(c), f) for c, f in enumerate(_LATIN1) if _LATIN1_BYTES[c] == c and f != chr(c)
]


def _fold_latin1(text: str) -> str:
    folded = text.encode("latin-1").translate(_LATIN1_BYTES).decode("latin-1")
    for char, replacement in _LATIN1_LONGER:
        if char in folded:
            folded = folded.replace(char, replacement)
    return folded


def fold(text: str) -> str:
    """`text` folded for searching. ASCII costs one `lower()`, Latin-1 text (binary values
    read as Latin-1 too) a few C calls."""
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


_SEPARATORS = re.compile(r"[\s^=]+")


def normalise(text: str) -> str:
    """Folded, `^`/`=` and runs of white space as one space (PS3.5 6.2 PN separators),
    trimmed: the form identifiers are kept and whole values compared in."""
    return _SEPARATORS.sub(" ", fold(text)).strip()


def cut_matches(text: str, pattern: re.Pattern[str], replacement: str) -> str:
    """`text` with every match of `pattern` in `fold(text)` replaced in the original: the
    rest keeps its case and characters."""
    folded, starts, ends = fold_with_map(text)
    out: list[str] = []
    last = 0
    for match in pattern.finditer(folded):
        begin, end = match.span()
        if end == begin:
            continue
        if starts is not None and ends is not None:
            begin, end = starts[begin], ends[end - 1]
        out += (text[last : max(begin, last)], replacement)
        last = end
    return "".join((*out, text[last:])) if out else text


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


# -- how a folded value is matched --------------------------------------------------------

SEPARATOR = r"[\s^=]"  # between the words of a value in a text (PN `^` and `=` too)
_LOOSE_SEP = r"[\s\-./_()]{0,2}"
# A short number with a dot inside is a decimal ("1.2345"), not Study ID 12345 written apart.
_LOOSE_SEP_NO_DOT = r"[\s\-/_()]{0,2}"
MIN_DOTTED_DIGITS = 8
# Words shorter than this ("Bo", "Ng") need no letter nor digit touching them: a base32
# pseudonym holds "BO" between digits; longer ones only no letter ("smith01" is found).
MIN_LETTER_EDGED_LENGTH = 3
_LETTER = r"[^\W\d_]"  # a letter of any script
_ALNUM = r"[^\W_]"


def value_regex(value: str) -> str:
    """A folded value found anywhere, any run of separators between its words (none needed
    between the words of an unspaced script: "山田太郎" for "山田 太郎")."""
    joiner = SEPARATOR + ("*" if is_unspaced(value) else "+")
    return joiner.join(re.escape(part) for part in value.split(" "))


def _edge(ch: str, strict: bool) -> str | None:
    if strict:
        return _ALNUM
    if ch.isdigit():
        return r"\d"
    return _LETTER if ch.isalpha() else None


def _guarded(first: str, edge: str | None, rest: str) -> str:
    """`first` (plain text), then `rest` (a regex), where no `edge` character comes before.

    The check follows the first character instead of preceding it: an alternation whose
    every branch starts with a literal lets `re` skip to the positions where one of those
    characters is (sre_compile's charset prefix), several times faster on clean text.
    """
    head = re.escape(first[0])
    guard = f"(?<!{edge}{head})" if edge else ""
    return head + guard + re.escape(first[1:]) + rest


def word_regex(word: str) -> str:
    """A word or phrase where no letter of any script touches it (MIN_LETTER_EDGED_LENGTH)."""
    strict = len(word) < MIN_LETTER_EDGED_LENGTH
    before, after = _edge(word[0], strict), _edge(word[-1], strict)
    literal = value_regex(word)[len(re.escape(word[0])) :]
    return _guarded(word[0], before, literal + (f"(?!{after})" if after else ""))


def loose_regex(letters_digits: str) -> str:
    """An ID (`compact` form) with up to two separators between any two of its characters
    (a dot only in long or lettered IDs); no digit touches a digit at its ends, no letter a
    letter: "12345678" as "12-345-678", not inside "9123456789"."""
    dotted = not letters_digits.isdigit() or len(letters_digits) >= MIN_DOTTED_DIGITS
    separator = _LOOSE_SEP if dotted else _LOOSE_SEP_NO_DOT
    body = "".join(separator + re.escape(c) for c in letters_digits[1:])
    before, after = _edge(letters_digits[0], False), _edge(letters_digits[-1], False)
    return _guarded(letters_digits[0], before, body + (f"(?!{after})" if after else ""))


# -- dates and phone numbers as people write them -------------------------------------------

_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip


def parse_date(da: str) -> tuple[int, int, int] | None:
    """(year, month, day) of a DA value, or None."""
    if len(da) != 8 or not da.isdigit():
        return None
    y, m, d = int(da[:4]), int(da[4:6]), int(da[6:])
    return (y, m, d) if 1 <= m <= 12 and 1 <= d <= 31 else None


def date_spellings(da: str) -> list[str]:
    """A DA value as people write it in free text: 19800131, 1980-01-31, 31/01/1980,
    31.01.1980, 01/31/1980, and in words (31 jan 1980, january 31, 1980, 31-jan-1980, ...).
    Folded; `date_regexes` also matches unpadded numbers and other separators."""
    parsed = parse_date(da)
    if parsed is None:
        return [da]
    y, m, d = da[:4], da[4:6], da[6:]
    month = _MONTHS[parsed[1] - 1]
    short, day = month[:3], str(parsed[2])
    return [
        da, f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{d}.{m}.{y}", f"{m}/{d}/{y}",
        f"{d}-{m}-{y}", f"{m}-{d}-{y}", f"{y}/{m}/{d}", f"{y}.{m}.{d}",
        f"{day} {short} {y}", f"{day} {month} {y}", f"{month} {day}, {y}", f"{short} {day} {y}",
        f"{d}-{short}-{y}",
    ]  # fmt: skip


def date_regexes(da: str) -> list[str]:
    """Every spelling of a date: numeric in ISO, European and US order, with or without
    leading zeros, any of `-/. ` between; English month names, short or long, ordinals."""
    parsed = parse_date(da)
    if parsed is None:
        return []
    y, m, d = parsed
    days = [f"0{d}", str(d)] if d < 10 else [str(d)]
    nums = [f"0{m}", str(m)] if m < 10 else [str(m)]
    day = f"0?{d}" if d < 10 else str(d)
    num = f"0?{m}" if m < 10 else str(m)
    month = _MONTHS[m - 1]
    shorts = [month[:3]] + (["sept"] if m == 9 else [])
    any_name = "(?:" + "|".join([month, *(f"{n}\\.?" for n in shorts)]) + ")"
    sep, words, ordinal, end = r"[-/. ]", r"[\s\-./,]{0,3}", r"(?:st|nd|rd|th)?", r"(?!\d)"
    out = [_guarded(str(y), r"\d", f"{sep}{num}{sep}{day}{end}")]
    for dv in days:
        out.append(_guarded(dv, r"\d", f"{sep}{num}{sep}{y}{end}"))
        out.append(_guarded(dv, r"\d", f"{ordinal}{words}(?:of\\s+)?{any_name}{words}{y}{end}"))
    for nv in nums:
        out.append(_guarded(nv, r"\d", f"{sep}{day}{sep}{y}{end}"))
    for name in dict.fromkeys([month, *shorts]):
        dot = "" if name == month else r"\.?"
        out.append(_guarded(name, _LETTER, f"{dot}{words}{day}{ordinal}{words}{y}{end}"))
    out.append(_guarded(str(y), r"\d", f" ?[年년] ?{num} ?[月월] ?{day} ?[日일]"))  # CJK
    return out


MIN_PHONE_DIGITS = 7  # national digits searched without the number's other digits


def phone_forms(raw: str) -> set[str]:
    """A phone number's digits, and its national digits without the country code (1 to 3
    digits, ITU E.164), with and without a trunk 0: "+44 20 7946 0958" also as
    "020 7946 0958", and "020 7946 0958" as "+44 20 7946 0958"."""
    digits = "".join(c for c in raw if c.isdigit())
    forms = {digits}
    if raw.strip().startswith("+") or digits.startswith("00"):
        number = digits[2:] if digits.startswith("00") else digits
        for code_length in (1, 2, 3):
            national = number[code_length:]
            if len(national) >= MIN_PHONE_DIGITS:
                forms.update((national, "0" + national))
    elif digits.startswith("0") and len(digits) > MIN_PHONE_DIGITS:
        forms.add(digits[1:])
    return forms


# -- bytes of another character set read as Latin-1 ----------------------------------------

# DICOM character sets (PS3.3 C.12.1.1.2) as Python codecs.
_CODECS = (
    "utf-8", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6", "iso8859_7",
    "iso8859_8", "iso8859_9", "iso8859_15", "tis_620", "gb18030", "euc_kr", "iso2022_jp_2",
)  # fmt: skip
_MULTIBYTE_CODECS = frozenset({"gb18030", "euc_kr", "iso2022_jp_2"})


def codecs_for(raw: str) -> set[str]:
    """The character sets in which `raw`'s bytes differ from its Latin-1 bytes: where a
    reader that takes every byte for Latin-1 would not see `raw`. The multi-byte ones only
    for unspaced scripts (they encode any Latin letter too)."""
    if raw.isascii():
        return set()
    unspaced = is_unspaced(raw)
    found: set[str] = set()
    for codec in _CODECS:
        if codec in _MULTIBYTE_CODECS and not unspaced:
            continue
        try:
            encoded = raw.encode(codec)
        except UnicodeError:
            continue
        try:
            if encoded == raw.encode("latin-1"):
                continue
        except UnicodeError:
            pass
        found.add(codec)
    return found


def other_readings(text: str, codecs: Iterable[str], utf8_only: bool = False) -> list[str]:
    """`text`, if it is bytes read as Latin-1, read in `codecs` instead (none for ASCII
    text without ISO 2022 escapes); `utf8_only` for binary values, which any single-byte
    character set reads as some text."""
    if text.isascii() and "\x1b" not in text:
        return []
    try:
        data = text.encode("latin-1")
    except UnicodeError:
        return []  # already decoded text, not bytes read as Latin-1
    out: list[str] = []
    for codec in sorted(codecs):
        if utf8_only and codec != "utf-8":
            continue
        try:
            reading = data.decode(codec, errors="strict" if codec == "utf-8" else "replace")
        except UnicodeError:
            continue
        if reading != text:
            out.append(reading)
    return out


@lru_cache(maxsize=256)
def compile_alternation(
    values: frozenset[str],
    phrases: frozenset[str],
    loose: frozenset[str],
    dates: frozenset[str],
    words: frozenset[str],
    spelled: frozenset[str] = frozenset(),
) -> re.Pattern[str] | None:
    """One regex for a set of identifiers, longest first (a whole name is cut, not its first
    word), `spelled` regexes as they are; compiled once per set: a study's instances share
    them."""
    parts: list[tuple[int, str]] = [(len(v), value_regex(v)) for v in values]
    parts += [(len(p), word_regex(p)) for p in phrases | words]
    parts += [(len(c), loose_regex(c)) for c in loose]
    parts += [(10, s) for da in dates for s in date_regexes(da)]
    parts += [(len(s) // 4, s) for s in spelled]
    parts.sort(key=lambda p: (-p[0], p[1]))
    source = "|".join(s for _length, s in parts)
    return re.compile(source) if source else None


# -- the parts of a value people write alone -----------------------------------------------

# Particles of a family name ("van der Berg", "de la Cruz"): words only as part of it.
NAME_PARTICLES = frozenset(
    {"a", "al", "bin", "da", "das", "de", "dei", "del", "della", "den", "der", "des", "di",
     "do", "dos", "du", "el", "la", "le", "les", "ter", "van", "von", "y", "zu"}
)  # fmt: skip
_NAME_PUNCTUATION = ".,;:()\"'"
_ADDRESS_PARTS = re.compile(r"[\^,;\n\r]+")
# Address parts kept as words: a street line with its number ("12 Baker Street"), a run of
# words of a part ("Baker Street", "Northbridge"), a part that is all letters (a town).
MIN_STREET_LENGTH = 8
MIN_ADDRESS_WORDS_LENGTH = 6
MIN_TOWN_LENGTH = 4


def name_words(component: str) -> list[str]:
    """The words of a folded name component of a spaced script: the component, its tokens
    (not the particles of a longer name), the pieces of "smith-jones" and "o'brien" and the
    pieces joined ("obrien"); never a single letter."""
    tokens = [t for t in (t.strip(_NAME_PUNCTUATION) for t in component.split(" ")) if t]
    several = len(tokens) > 1
    out = [" ".join(tokens)] if several else []
    for token in tokens:
        if several and token in NAME_PARTICLES:
            continue
        out.append(token)
        pieces = [p for p in re.split(r"[-']", token) if p]
        if len(pieces) > 1:
            out.append("".join(pieces))
            out += [p for p in pieces if p not in NAME_PARTICLES]
    return [w for w in out if sum(c.isalnum() for c in w) >= 2]


def address_parts(raw: str) -> tuple[list[str], list[str]]:
    """(words, numbers) of an address that people write alone: its parts (split on `^`,
    commas, new lines) long enough to be specific, the runs of words within a part, and the
    runs of tokens with digits (postcodes, for `compact`: "NW1 6XE")."""
    words: list[str] = []
    numbers: list[str] = []
    for piece in _ADDRESS_PARTS.split(raw):
        part = normalise(piece).strip(" .")
        if is_unspaced(part):
            if len(part.replace(" ", "")) >= MIN_TOWN_LENGTH:
                words.append(part)
            continue
        least = MIN_STREET_LENGTH if _digits(part) else MIN_TOWN_LENGTH
        if any(c.isalpha() for c in part) and len(part) >= least:
            words.append(part)
        run: list[str] = []
        for token in [*part.split(" "), ""]:
            if run and (not token or _digits(token) != _digits(run[0])):
                joined = " ".join(run)
                if _digits(joined):
                    numbers.append(joined)
                elif len(joined) >= MIN_ADDRESS_WORDS_LENGTH:
                    words.append(joined)
                run = []
            if token:
                run.append(token)
    return words, numbers


def _digits(text: str) -> bool:
    return any(c.isdigit() for c in text)
