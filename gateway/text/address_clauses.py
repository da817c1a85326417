"""The rest of an address clause once its parts were found.

After a cue ("Home:", "Address:", "lives at") the rules find the parts of an address they
can tell: a street's name, a town, a postcode, a name-like word. What they leave between
those parts is often only numbers: the house, the flat, the block ("Home: * 79, * *",
"Home: 8932 * 742, *, * *", "Home: Suite 979 622 *, *, *"). A number beside a cut town is
still part of an address. So when everything a cued clause holds besides found parts is
numbers, punctuation, unit and street words, region codes, single letters or words that
are no vocabulary ("Madsenholtet 46B", "Haagan pappilantie 077", "Kynšperk nad Ohří"),
the whole clause is the address; after a weak cue ("Home:") only when it holds a number.
A clause with a word of prose left ("Home: with wife *, 2 children", "Home: * 24/7 care")
is left as the rules found it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable

from gateway.text.street_patterns import (
    ADDRESS_CUE,
    CUE_HINT,
    LOWER_ADDRESS_WORDS,
    REGION_CODES,
    STREET_WORDS_EAST,
)

__all__ = ["fill_address_clauses"]


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# Kinds of part an address clause is made of (not a date, an age or a time).
_PARTS = frozenset(("address", "postcode", "name", "id", "organisation"))
# The clause ends at a semicolon, a bar, a line break or a sentence's end: a full stop
# before a capital or the text's end, not after an abbreviation ("Nr. 92", "pl. Andersa",
# "п. Амурск", "Bl. 59" go on).
_CLAUSE_END = re.compile(r"[;|\n\r]|[.!?](?=[ \t]*$|[ \t]+[^\W\d_])")
_WORD_BEFORE = re.compile(r"(\w+)\Z")
_LONGEST = 160
_NUMBER = re.compile(r"[#№]?\d[\d/\-–.]*[A-Za-z]?\.?,*")
_PUNCTUATION = re.compile(r"[^\w]+")
# Words an address writes with its numbers: units, floors, buildings ("Suite", "Level",
# "Nr.", "Bl.", "Sc.", "Ap.", "Edif.", "Depto.", "Interior"), beside the street words of
# street_patterns (LOWER_ADDRESS_WORDS: "ul.", "calle", "rua", ... are there already).
_ADDRESS_WORDS = _words(
    "apt apartment flat unit suite ste level floor fl lot block blk building bldg house "
    "room rm nr nº n° bl sc ap et etaj edif depto dpto interior int piso puerta casa "
    "lote quadra qd conjunto bloco andar sala km box po pmb wohnung whg stiege tür top "
    "app appt bat bât esc kv kvartira dom korpus str "
    # street kinds written before the name (Romanian, Spanish, Portuguese)
    "intrarea bulevardul bd aleea calea splaiul soseaua șoseaua piața "
    "av avda circuito privada cerrada calzada callejón prolongación periférico "
    "peatonal viaducto ampliación circunvalación andador retorno travessa alameda "
    "praça rodovia estrada largo vila jardim setor loteamento "
    # Polish and Hungarian street kinds ("pl. Andersa", "al. Jana Pawła", "Petőfi Sándor út")
    "pl út utca tér köz körút sor sétány fasor רח רחוב שד שדרות "
    # Slovene and Croatian, Azerbaijani; regions and districts ("Región del Maule")
    "pot cesta trg put ray rayon qəsəbəsi qəsəbə pr küç küçəsi prospekti mənzil "
    "región region provincia comuna estado departamento municipio distrito colonia col "
    "barrio bairro oblast obl of oficina"
)
# Words that join the words of a place's name ("Región de La Araucanía", "Cesta na Laze").
_CONNECTORS = _words("de del la las los el do da dos das di du des van von der den na nad pod u v")


# Capitals that are no region: modalities and dosing ("Home: * CT 2019" is no address).
_CLINICAL = _words(
    "CT MR MRI US XR PET NM CR DX RX OT ECG EKG EEG IV IM PO SC BID TID QID PRN ICU ED ER OR "
    "GP MD RN PT SLP DNR"
)


def _spare(token: str, vocabulary: Callable[[str], bool]) -> bool:
    """Whether a token left between found parts can belong to the address."""
    bare = token.strip(",.:;()'\"-–/")
    if not bare or _PUNCTUATION.fullmatch(token) or _NUMBER.fullmatch(token):
        return True
    if re.fullmatch(r"(?=[A-Z]*\d)(?=\d*[A-Z])[A-Z\d]{2,4}", bare):
        return True  # a postcode's or a flat's code: "C45 X9EF" (Ireland), "4B"
    if any(c.isdigit() for c in bare):  # "16/01", "46B", "4-ї", "1-ша"
        return bool(re.fullmatch(r"[#№]?\d+(?:[/\-–]?\d+|[/\-–]?[^\W\d_]{1,3})*", bare))
    if len(bare) == 1:
        return True  # "U Podjezdu 8", an initial
    parts = [part for part in re.split(r"[.\-–]", bare) if part]
    if len(parts) > 1:  # "Ə.ƏBDÜLRƏHİMOV", "Saint-Louis": each part on its own
        return all(_spare(part, vocabulary) for part in parts)
    folded = bare.casefold()
    if folded in _ADDRESS_WORDS or folded in LOWER_ADDRESS_WORDS or folded in STREET_WORDS_EAST:
        return True
    if folded in _CONNECTORS:
        return True
    if bare in REGION_CODES or (re.fullmatch(r"[A-Z]{2,4}", bare) and bare not in _CLINICAL):
        return True  # "QLD", "MG", "GTO": a state written after the town
    # A letter or two of another script left beside a cut word (Hebrew "לח"י").
    if len(bare) <= 2 and all(c > "\u024f" for c in bare if c.isalpha()):
        return True
    return bare.isalpha() and not vocabulary(bare)


def _clause(text: str, start: int) -> int:
    limit = min(len(text), start + _LONGEST)
    for m in _CLAUSE_END.finditer(text, start, limit):
        if m.group() == ".":
            before = _WORD_BEFORE.search(text, start, m.start())
            word = before.group(1).casefold() if before is not None else ""
            if len(word) <= 3 or word in _ADDRESS_WORDS or word in LOWER_ADDRESS_WORDS:
                continue  # an abbreviation: "pl.", "наб.", "Edif.", "Depto."
        return m.start()
    return limit


_TOKEN = re.compile(r"\S+")


def _address_end(
    text: str,
    start: int,
    end: int,
    parts: list[tuple[int, int, str]],
    vocabulary: Callable[[str], bool],
) -> int | None:
    """Where the address that opens the clause text[start:end] ends: after its last found
    part or spare token before the first word of prose ("Moved to *, 13, * last year" ends
    before "last"; before prose it takes two parts or one that is no name); None if there
    is no such address or nothing is left to take."""
    items: list[tuple[int, int, bool]] = []  # (start, end, is a found part)
    position = start
    for s, e, _ in parts:
        items += [(m.start(), m.end(), False) for m in _TOKEN.finditer(text, position, s)]
        items.append((s, e, True))
        position = e
    items += [(m.start(), m.end(), False) for m in _TOKEN.finditer(text, position, end)]
    kinds = {(s, e): kind for s, e, kind in parts}
    last, found, taken, prose = None, [], False, False
    for s, e, part in items:
        if not part and not _spare(text[s:e], vocabulary):
            prose = True
            break
        if part:
            found.append(kinds[(s, e)])
        taken = taken or (not part and any(c.isalnum() for c in text[s:e]))
        last = e
    # Before prose, one name and a number are no address ("Home: Mary, 2 steps to enter").
    enough = len(found) >= 2 or any(k != "name" for k in found) if prose else bool(found)
    return last if enough and taken else None


def fill_address_clauses(
    text: str, spans: list[tuple[int, int, str]], vocabulary: Callable[[str], bool]
) -> list[tuple[int, int, str]]:
    """`spans` (sorted, not overlapping) with each cued clause whose leftovers are only
    numbers and address words replaced by one address span over the whole clause.
    `vocabulary`: whether a word is one of the language's (prose, not a place)."""
    if not spans or CUE_HINT.search(text) is None:
        return spans
    starts = [s for s, _, _ in spans]  # a long report has thousands: look at the clause's
    fills: list[tuple[int, int, str]] = []
    for cue in ADDRESS_CUE.finditer(text):
        start = cue.end()
        end = _clause(text, start)
        low, high = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
        inside = spans[low:high]
        if not any(kind in _PARTS for _, _, kind in inside):
            continue
        if (low and spans[low - 1][1] > start) or any(e > end for _, e, _ in inside):
            continue  # a span across the clause's edge: leave the rules' cut alone
        last = _address_end(text, start, end, inside, vocabulary)
        if last is None:
            continue
        if not cue.group("strong") and not any(c.isdigit() for c in text[start:last]):
            continue  # "Home: Eliquis, *": a weak cue needs a number
        clause = text[start:last].rstrip(" \t,.:")
        first = start + len(clause) - len(clause.lstrip(" \t"))
        last = start + len(clause)
        if last > first and (not fills or fills[-1][1] <= first):
            fills.append((first, last, "address"))
    if not fills:
        return spans
    fill_starts = [s for s, _, _ in fills]

    def covered(span: tuple[int, int, str]) -> bool:
        at = bisect.bisect_right(fill_starts, span[0]) - 1
        return (at >= 0 and span[0] < fills[at][1]) or (
            at + 1 < len(fills) and fills[at + 1][0] < span[1]
        )

    return sorted([s for s in spans if not covered(s)] + fills)
