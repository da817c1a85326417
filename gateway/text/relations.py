"""A name followed by the person's relation to the patient in brackets: "summer brown
(niece)", "call Rose (daughter)". Relatives are often written in lower case and with names
that are also words, which the other name rules leave; the bracketed relation says what they
are. The name is the longest run of up to three words before it that are all in the name
lists and none a function word ("to", "her"), so "breast cancer (mother)" stays.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.text.lexicon import Lexicon

RELATIONS = (
    "wife|husband|partner|spouse|son|daughter|mother|father|mum|mom|dad|sister|brother|niece"
    "|nephew|aunt|uncle|cousin|grandson|granddaughter|grandmother|grandfather|grandma|grandpa"
    "|stepson|stepdaughter|stepmother|stepfather|guardian|carer|caregiver|friend|neighbou?r"
    "|fianc[ée]e?|girlfriend|boyfriend|next of kin|nok|sibling|child|parent"
)
_BEFORE_RELATION = re.compile(
    rf"((?:[^\W\d_]+[ \t]+){{0,2}}[^\W\d_]+)[ \t]*\((?:{RELATIONS})\)", re.IGNORECASE
)
_FUNCTION_WORDS = frozenset((
    "to", "the", "with", "by", "her", "his", "my", "of", "at", "in", "on", "for", "from",
    "and", "or", "was", "is", "per", "via", "your", "their", "our", "a", "an", "as", "call",
    "called", "phone", "phoned", "tell", "told", "inform", "informed", "contact", "contacted",
    "ask", "asked", "spoke", "speak", "see", "seen", "met", "meet", "mr", "mrs", "ms", "miss",
    "dr",
))  # fmt: skip


def find_relatives(text: str, lexicon: Lexicon) -> Iterator[tuple[int, int]]:
    """(start, end) of each name written before a bracketed relation."""
    if "(" not in text:
        return
    for match in _BEFORE_RELATION.finditer(text):
        words = list(re.finditer(r"[^\W\d_]+", match.group(1)))
        start = None
        for word in reversed(words):
            value = word.group()
            if value.lower() in _FUNCTION_WORDS or not lexicon.facts(value)[1]:
                break
            start = word.start()
        if start is not None:
            yield match.start(1) + start, match.end(1)
