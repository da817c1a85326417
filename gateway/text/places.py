"""Streets, postcodes and towns in free text: where an address is, and how far it runs.

A town is a word like any other; what gives it away is where it stands. Three rules:
(a) after a street, a flat ("Apt 6B") or a P.O. box, the comma- or space-separated words that
    follow are the rest of the address while they are capitalised words, postcodes, short
    numbers, state or country codes ("12 Baker St, Springfield, IL 62704", "Hauptstraße 5,
    D-10115 Berlin", "Kerkstraat 12, 1012 AB Amsterdam", "Storgatan 1, SE-114 55 Stockholm");
(b) after an address cue ("lives at", "home:", "wohnhaft", "domicilio") the rest of a short
    clause is an address when it holds a `*` (what the instance's identifiers cut), a street
    or postcode, or a capitalised word that is not an English word ("home: oxygen" stays);
(c) capitalised words that are not vocabulary, next to a postcode-like number, at a clause
    start or after a comma or a `*`: "Holtsby 43842", "75008 Paris", "Sydney NSW 2000",
    "Brightmoor BR2 9RF"; after a region code or with a postcode of a definite national form,
    vocabulary words count too ("Cambridge, MA 02139").

Streets and postcodes have shapes of their own (street_patterns.py, POSTCODE_PATTERNS); the
recognizer reads these through contacts.find_contacts.
"""

from __future__ import annotations

import re

from gateway.text.lexicon import Lexicon, caseless, shipped_lexicon
from gateway.text.street_patterns import (
    ABBREVIATION_NEXT,
    ADDRESS_CUE,
    ADDRESS_PATTERNS,
    CLAUSE_WORDS,
    COUNTRIES,
    CUE_HINT,
    LOWER_ADDRESS_WORDS,
    REGION_CODES,
    UNIT_HINT,
    street_words,
)


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


UNITS = _words(
    "mm cm m ms s sec min h hr hrs kv kvp ma mas mgy cgy gy ml mg g kg hu bq mbq mci hz khz mhz "
    "t mt px pixels slices slice deg x mgy·cm mgycm"
)
_UNIT_AFTER = re.compile(r"\s?([A-Za-z·]+)(?![^\W\d_²³])")  # "80331 München" is no "m"


def unit_follows(text: str, end: int) -> bool:
    after = _UNIT_AFTER.match(text, end)
    return after is not None and after.group(1).lower() in UNITS


_PAIRS_NOT_DUTCH = _words(
    "MM CM ML MG MS HU KV CT MR US PA AP AX LT RT RL LR HF FH SI IS IV PO BH FS SE IR TR TE TI "
    "DW SW PD CC LO SA SD SS MA GY NM PT CR DX XA RF MX OT SR BW DE FE NS"
)
POSTCODE_PATTERNS = (
    re.compile(r"\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[A-Z]{2}\b"),  # UK
    re.compile(r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] ?\d[ABCEGHJ-NPRSTV-Z]\d\b"),  # CA
    re.compile(r"(?<![\w.,])[1-9]\d{3} ?[A-Z]{2}\b"),  # NL
    re.compile(  # US ZIP after a state
        r"\b(?:A[KLRZ]|C[AOT]|D[CE]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|O[HKR]|PA"
        r"|RI|S[CD]|T[NX]|UT|V[AT]|W[AIVY])\s+(?P<v>\d{5}(?:-\d{4})?)\b"
    ),
)


def find_streets(text: str) -> list[tuple[int, int, str]]:
    out = []
    for pattern in ADDRESS_PATTERNS:
        for m in pattern.finditer(text):
            if any(c.isdigit() for c in m.group()):
                out.append((m.start(), m.end(), "address"))
    return out


def find_postcodes(
    text: str, doubtful: list[tuple[int, int, str]] | None = None
) -> list[tuple[int, int, str]]:
    """Postcodes; those ending in a technical pair ("3 MM", "9RF") go to `doubtful`, for the
    place rules to take when a town stands before them."""
    out = []
    for index, pattern in enumerate(POSTCODE_PATTERNS):
        for m in pattern.finditer(text):
            if index in (0, 2) and m.group()[-2:] in _PAIRS_NOT_DUTCH:
                if doubtful is not None:
                    doubtful.append((m.start(), m.end(), "postcode"))
                continue
            start, end = m.span("v") if "v" in pattern.groupindex else m.span()
            out.append((start, end, "postcode"))
    return out


_CLAUSE_END = re.compile(r"[;|\n\r()\[\]<>]|[.!?](?=\s|$)|\s[-–]\s")
_DIGIT_NEXT = re.compile(r"\s*\d")
CLAUSE_CHARS = 160
_AMOUNT = re.compile(r"(?<![^\W\d_])\d+(?![^\W\d_]\d)")
# A neighbourhood in brackets, no Latin letter in it (Korean addresses write one so).
_FOREIGN_BRACKETS = re.compile(r"\([^()a-zA-Z\n]{1,20}\)")
UNIT_AFTER = re.compile(
    r",?[ \t]*(?:(?i:apt|apartment|appartement|flat|unit|suite|ste|wohnung|whg|fl|floor)\.?"
    r"[ \t]*#?|#[ \t]?)\d{1,5}[A-Za-z]?\b"
)
UNIT_ALONE = re.compile(
    r"(?:\*,?[ \t]+)?\b(?:Apt|APT|apt|Apartment|Flat|FLAT|Appartement|Wohnung|Studio)\.?[ \t]*#?"
    r"\d{1,4}[A-Za-z]?\b"
)
_TOKEN = re.compile(
    r"(?P<sep>,[ \t]*|[ \t]+)(?P<tok>\*+"
    r"|(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[A-Z]{2}\b"
    r"|[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] ?\d[ABCEGHJ-NPRSTV-Z]\d\b"
    r"|\d\d-\d{3}\b|(?:[A-Z]{1,3}-)?\d{1,5}(?:-\d{4})?(?![\w]|[.,]\d)"
    r"|[^\W\d_][\w'’]*(?:-[^\W\d_][\w'’]*)*)"
)
_WORD = re.compile(r"[^\W\d_][\w'’]*(?:-[^\W\d_][\w'’]*)*")
CONNECTORS = _words(
    "de du des la le les l am an der den im bei sur sous upon on en di del della da do dos "
    "y i og och van von op aan ter et and"
)
# Words that end an address: titles, labels and relations that start the next item.
_STOP = _words(
    "tel tel. telephone phone ph fax mobile mob cell pager email e-mail mail mailto web dob mrn "
    "id nhs ssn rrn nir bsn ni dr dr. mr mrs ms miss mx prof pt patient nurse rn md son daughter "
    "wife husband mother father sister brother partner friend call contact see seen per re cc "
    "attn and or the with for from to at in on by of no nr"
)
WEAK_CODE = re.compile(r"(?<![\w.,/-])(?:[A-Z]{1,3}-)?\d{4,5}(?![\w]|[.,/-]\d|[ \t]\d)")
CODE_THEN_TOWN = re.compile(
    r"(?<![\w.,/-])(?P<code>(?:[A-Z]{1,3}-)?\d{4,5}(?:[ \t][A-Z]{2}(?=[ \t]))?|\d{4}-\d{3}"
    r"|[A-Z]{1,3}-\d{3}[ \t]\d\d|\d\d-\d{3})[ \t]+(?P<town>[^\W\d_][\w'’]*(?:[ -][^\W\d_][\w'’]*)?)"
    r"(?=[ \t]*(?:[,.;:|)\n]|$))"
)
STAR_TOWN = re.compile(
    r"\*,[ \t]*(?P<town>[^\W\d_][\w'’]*(?:[ -][^\W\d_][\w'’]*)?)(?=[ \t]+\*|[ \t]*(?:[,.;|\n]|$))"
)


# A postcode at the end of an address span: reported as a postcode of its own.
_TRAILING_CODE = re.compile(
    r"[ \t,]+((?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[A-Z]{2}|[A-Z]\d[A-Z] ?\d[A-Z]\d"
    r"|(?:[A-Z]{1,3}-)?\d{4,5}(?:-\d{4})?|[1-9]\d{3} ?[A-Z]{2})\Z"
)


def cued(text: str) -> bool:
    """Whether `text` holds an address cue ("lives at", "home:", "wohnhaft", ...)."""
    return CUE_HINT.search(text) is not None and ADDRESS_CUE.search(text) is not None


def _peel(text: str, start: int, end: int) -> tuple[int, list[tuple[int, int, str]]]:
    """An address span's end without its trailing postcodes, and those postcodes."""
    codes: list[tuple[int, int, str]] = []
    for _ in range(2):
        m = _TRAILING_CODE.search(text, start, end)
        if m is None or m.start() == start:
            break
        codes.append((m.start(1), m.end(1), "postcode"))
        end = m.start()
    return end, codes


class _Words:
    """Vocabulary facts for place rules, the lexicon loaded on first need."""

    def __init__(self, lexicon: Lexicon | None) -> None:
        self._lexicon = lexicon

    def _facts(self, word: str) -> tuple[bool, bool]:
        if self._lexicon is None:
            self._lexicon = shipped_lexicon()
        _, _, safe, english = self._lexicon.facts(word)
        return safe, english

    def safe(self, word: str) -> bool:
        return self._facts(word)[0]

    def english(self, word: str) -> bool:
        return self._facts(word)[1]


def _capitalised(word: str) -> bool:
    return word[:1].isupper()


def _named_or_foreign(word: str) -> bool:
    """Capitalised, or of a script other than Latin (Han, Hangul, Devanagari, Arabic,
    Georgian...): in an address clause, such a word is a place."""
    return _capitalised(word) or (word[:1].isalpha() and word[0] > "\u024f")


def _stop(word: str) -> bool:
    return word.casefold() in _STOP or word.lower() in UNITS


def _place_word(word: str, words: _Words, strong: bool) -> bool:
    """Whether a capitalised word can be (part of) a town's name in this context.

    Short capitals are codes ("CT", "MR"), never towns; vocabulary counts only in a strong
    context (after a street or before a region code), and then only in title case."""
    if not _capitalised(word) or _stop(word) or len(word) < 2:
        return False
    if word.casefold() in COUNTRIES:
        return True
    if word.isupper():
        return len(word) > 3 and not words.english(word) and not words.safe(word)
    return strong or not words.safe(word)


def _continue(text: str, end: int, words: _Words) -> int:
    """Where an address that ends at `end` really ends: rule (a)."""
    position, last, segments, taken = end, end, 0, 0
    segment_start, segment_plain = end, True  # plain: every word of the segment is vocabulary
    while taken < 12:
        m = _TOKEN.match(text, position)
        if m is None:
            break
        token, separator = m.group("tok"), m.group("sep")
        if "," in separator:
            segments += 1
            if segments > 4:
                break
            segment_start, segment_plain = last, True
        first = token[0]
        if first == "*":
            ok, plain = True, False
        elif any(c.isdigit() for c in token):  # a number, a postcode, "D-10115"
            ok, plain = not unit_follows(text, m.end()), False
        elif not first.isalpha():
            ok, plain = True, False
        elif not _capitalised(token):
            if token.lower() in CONNECTORS:
                position = m.end()
                continue
            # "12 Baker St, Liver measures 16 cm": vocabulary before prose is prose.
            if segment_plain and last > segment_start:
                last = segment_start
            break
        elif token.isupper() and len(token) <= 3:
            ok, plain = token in REGION_CODES, False
        else:
            ok = _place_word(token, words, strong=True)
            plain = words.safe(token) and token.casefold() not in COUNTRIES
        if not ok:
            break
        segment_plain = segment_plain and plain
        position = last = m.end()
        taken += 1
    return last


def _clause_before(text: str, start: int) -> bool:
    """Whether `start` opens a clause: text start, punctuation, a `*`, or an address cue."""
    window = text[max(0, start - 24) : start]
    stripped = window.rstrip(" \t")
    if not stripped:
        return start <= 24  # only blanks before it: the text starts here
    if stripped[-1] in ",;:|([.!?*" or stripped.endswith((" -", " –")):
        return True
    return cued(window) and any(m.end() == len(window) for m in ADDRESS_CUE.finditer(window))


def _town_before(text: str, start: int, words: _Words, strong: bool) -> tuple[int, bool] | None:
    """Start of the town written before a postcode at `start` ("Holtsby 43842", "Springfield,
    IL 62704"), and whether it stands where a town can stand; None if there is none."""
    window_start = max(0, start - 60)
    window = text[window_start:start]
    if window[-1:] in (" ", "\t"):  # "IL 62704", "NSW 2000", "ON M5V 2T6"
        head = window.rstrip(" \t,.")
        cut = max(head.rfind(" "), head.rfind(","), head.rfind("\t"))
        if head[cut + 1 :] in REGION_CODES and cut >= 0:
            window, strong = window[: cut + 1], True
    names = list(_WORD.finditer(window))
    first = None
    for index in range(len(names) - 1, max(-1, len(names) - 4), -1):
        m = names[index]
        gap = window[m.end() : names[index + 1].start() if index + 1 < len(names) else None]
        allowed = {" ", "-", ", ", ","} if index == len(names) - 1 else {" ", "-"}
        if gap.replace("\t", " ") not in allowed or not _place_word(m.group(), words, strong):
            break
        first = m
    if first is None:
        return None
    town_words = window[first.start() :].split()
    if not strong and all(words.safe(w.strip(",")) for w in town_words):
        return None
    return window_start + first.start(), _clause_before(text, window_start + first.start())


def _cue_clauses(
    text: str, found: list[tuple[int, int, str]], words: _Words
) -> list[tuple[int, int, str]]:
    """Rule (b): the short clause after an address cue."""
    out = []
    for cue in ADDRESS_CUE.finditer(text):
        start = cue.end()
        # A clause of CLAUSE_WORDS words is short: the search for its end need not go further.
        limit = min(len(text), start + CLAUSE_CHARS)
        end = -1 if limit < len(text) else limit
        nearby = [(s, e) for s, e, k in found if k == "address" and s < limit and e > start]
        for stop in _CLAUSE_END.finditer(text, start, limit):
            dot = stop.start()
            opening = text.rfind("(", start, dot + 1)
            if any(s <= dot < e for s, e in nearby) or (
                opening >= 0 and _FOREIGN_BRACKETS.match(text, opening)
            ):
                continue  # inside a street, or "개포232가 164 (예원박차면)"
            line = _DIGIT_NEXT.match(text, dot + 1) if stop.group() == "\n" else None
            if line is not None and any(s == line.end() - 1 for s, _ in nearby):
                continue  # "Lives at Suite 870\n5 Rongorohewhero Street": the street's line
            before = (text[max(start, dot - 8) : dot].split() or [""])[-1]
            if stop.group() == "." and (
                any(s < dot < e - 1 for s, e in nearby)
                or _DIGIT_NEXT.match(text, dot + 1)
                or before.lower() in LOWER_ADDRESS_WORDS
                or (
                    ABBREVIATION_NEXT.match(text, dot - len(before))
                    and not any(e in (dot, dot + 1) for _, e in nearby)  # "Baker St. Seen"
                )
            ):
                continue  # "12 St. John's Rd", "Hauptstr. 5", "пер. Мельничный", "Jl. Merdeka"
            end = dot
            break
        if end < 0:
            continue
        tokens = text[start:end].split()
        if not tokens or len(tokens) > CLAUSE_WORDS:
            continue
        head = tokens[0]
        if not (
            head[0].isdigit()
            or head[0] == "*"
            or _named_or_foreign(head)
            or head.rstrip(".,").lower() in LOWER_ADDRESS_WORDS
        ):
            continue
        # The address stops at prose: a lowercase word that is no connector and lies in no
        # street ("lives at 12 Baker Street, see prior" keeps "see prior").
        for word in _WORD.finditer(text, start, end):
            value = word.group()
            if (
                value[0].islower()
                and not text[word.start() - 1].isdigit()  # "55th Street", "2nd floor"
                and not caseless(value)
                and value not in CONNECTORS
                and value not in LOWER_ADDRESS_WORDS
                and not any(s <= word.start() < e for s, e, k in found if k == "address")
            ):
                end = word.start()
                break
        clause = text[start:end].rstrip(" \t,:")
        if not clause:
            continue
        clause_end = start + len(clause)
        if any(unit_follows(text, start + m.end()) for m in _AMOUNT.finditer(clause)):
            continue  # "home: Lasix 40 mg" is a dose ("J9E 3G2" is a postcode)
        qualified = "*" in clause or any(
            start <= s and e <= clause_end + 1 and k in {"address", "postcode"} for s, e, k in found
        )
        qualified = qualified or (street_words(tokens) and any(c.isdigit() for c in clause))
        if not qualified and cue.group("strong"):
            qualified = any(
                _named_or_foreign(w)
                and (len(w) > 2 or w[0] > "\u024f")
                and not _stop(w)
                and not words.english(w)
                for w in (m.group() for m in _WORD.finditer(clause))
            )
        if qualified:
            out.append((start, clause_end, "address"))
    return out


def find_places(
    text: str,
    found: list[tuple[int, int, str]],
    lexicon: Lexicon | None,
    digits: int = 0,
    doubtful: list[tuple[int, int, str]] | None = None,
) -> list[tuple[int, int, str]]:
    """Towns and the rest of addresses: rules (a), (b) and (c) above."""
    words = _Words(lexicon)
    out: list[tuple[int, int, str]] = []
    # (a) after a street, a P.O. box, or a flat.
    starts = [(s, e) for s, e, k in found if k == "address"]
    if UNIT_HINT.search(text) is not None:
        flats = UNIT_ALONE.finditer(text)
        starts += [m.span() for m in flats if not unit_follows(text, m.end())]
    for start, end in starts:
        unit = UNIT_AFTER.match(text, end)
        if unit is not None and not unit_follows(text, unit.end()):
            end = unit.end()
        end, codes = _peel(text, start, _continue(text, end, words))
        out.append((start, end, "address"))
        out.extend(codes)
    # (b) after an address cue.
    if cued(text):
        for start, end, kind in _cue_clauses(text, found + out, words):
            end, codes = _peel(text, start, end)
            out.append((start, end, kind))
            out.extend(codes)
    # (c) a town before a postcode or a postcode-like number.
    codes = [(s, e, True) for s, e, k in found if k == "postcode"]
    codes += [(s, e, False) for s, e, _ in doubtful or ()]
    if digits < 4:
        return out + _towns_before(text, codes, words) + _star_towns(text, words)
    codes += [
        (m.start(), m.end(), False)
        for m in WEAK_CODE.finditer(text)
        if not unit_follows(text, m.end())
    ]
    out += _towns_before(text, codes, words)
    # (c) the European order, "75008 Paris", "D-10115 Berlin".
    for m in CODE_THEN_TOWN.finditer(text):
        town = m.group("town").replace("-", " ").split()
        strong = "-" in m.group("code") or " " in m.group("code")
        if not _clause_before(text, m.start()) or unit_follows(text, m.end("code")):
            continue
        if all(_place_word(w, words, strong) for w in town) and (
            strong or not all(words.safe(w) for w in town)
        ):
            out.append((m.start("town"), m.end("town"), "address"))
            out.append((m.start(), m.end("code"), "postcode"))
    return out + _star_towns(text, words)


def _towns_before(
    text: str, codes: list[tuple[int, int, bool]], words: _Words
) -> list[tuple[int, int, str]]:
    """Rule (c) for (start, end, strong) postcodes: the town before each, and the code."""
    out: list[tuple[int, int, str]] = []
    for start, end, strong in codes:
        town = _town_before(text, start, words, strong)
        if town is not None and (strong or town[1]):
            out.append((town[0], _peel(text, town[0], end)[0], "address"))
            out.append((start, end, "postcode"))
    return out


def _star_towns(text: str, words: _Words) -> list[tuple[int, int, str]]:
    """A town between two things the identifiers cut: "*, Skarvik *"."""
    out: list[tuple[int, int, str]] = []
    if "*," in text:
        for m in STAR_TOWN.finditer(text):
            town = m.group("town").replace("-", " ").split()
            if all(_place_word(w, words, False) for w in town):
                out.append((m.start("town"), m.end("town"), "address"))
    return out
