"""Names before a clinical noun are eponyms, not people: "Chiari I malformation", "Morton
neuroma", "Hill-Sachs lesion", "Baker's cyst". The last pass of the name rules (names.py)
takes such runs back, unless a title or cue named them ("Dr. Baker")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

_JOINED = re.compile(r"[ \t'’-]*")


class _Word(Protocol):
    start: int
    end: int
    text: str
    folded: str
    name: bool
    cued: bool


def drop_eponyms(
    text: str, tokens: Sequence[_Word], nouns: frozenset[str], roman: frozenset[str]
) -> None:
    """Unmark each run of names followed (past Roman numerals and a possessive "s") by one
    of `nouns`, unless a word of the run was cued."""
    index = 0
    while index < len(tokens):
        if not tokens[index].name:
            index += 1
            continue
        end = index
        while end + 1 < len(tokens) and tokens[end + 1].name:
            end += 1
        after = end + 1
        while after < len(tokens) and tokens[after].text in roman | {"s", "S"}:
            after += 1
        run = tokens[index : end + 1]
        if (
            after < len(tokens)
            and _JOINED.fullmatch(text[tokens[after - 1].end : tokens[after].start])
            and tokens[after].folded in nouns
            and not any(t.cued for t in run)
        ):
            for token in run:
                token.name = False
        index = end + 1
