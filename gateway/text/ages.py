"""Ages over 89 in free text: "98 years old", "a 93-year-old", "Age: 101", "95Y", "92 Jahre".

HIPAA's Safe Harbor counts every age over 89 as an identifier (so few people reach it that
the age names them); younger ages stay, they carry the clinical meaning. Only the number is
cut: "* years old". A number with an age's unit or after an age's label counts; a bare
"95" does not (a heart rate, a percentage).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

OLDEST = 130  # a larger number is no one's age
_NUMBER = r"(?<![\d.,])(?P<{}>0?(?:9\d|1[0-3]\d))"
_AGE = re.compile(
    # 98 years old, 98-year-old, 98 yr old, 98 y/o, 98yo, 95Y, 095Y, 92 Jahre, 93 ans, 91 años
    rf"{_NUMBER.format('unit')}(?:[ \t]?-?[ \t]?(?:years?|yrs?|y\.?)[ \t]?-?[ \t]?(?:old|o\b|/o\b)"
    r"|[ \t]?(?:yo|y/o|yoa|Y|J|years?|yrs?|Jahre|jaar|ans|años|anni|anos|år|lat|let|лет|года?"
    r"|歳|岁|세|yaşında)(?![^\W\d_]))"
    # Age: 101, aged 93, Alter 95, âge 92, edad 94, età 96, leeftijd 90, возраст 97
    r"|(?i:\b(?:age|aged|alter|âge|edad|età|idade|leeftijd|ålder|alder|wiek|возраст|yaş)"
    rf"[ \t]*[:=]?[ \t]*){_NUMBER.format('label')}(?![\d.,]\d)"
)


def find_ages(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, "age") of each age over 89."""
    for match in _AGE.finditer(text):
        for group in ("unit", "label"):
            start, end = match.span(group)
            if start >= 0 and 90 <= int(text[start:end]) <= OLDEST:
                yield start, end, "age"
