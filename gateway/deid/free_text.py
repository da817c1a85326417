"""How free text is cleaned: the instance's own identifiers first, then the PHI recognizer.

The instance's identifiers (`base/identifiers.py`) catch what the input itself says about
its patient, in every spelling; the recognizer (`text/recognizer.py`) catches what no
element names: other people, phone numbers, addresses, IDs and dates written in prose.

Where each applies (the engine decides, see `engine.py`):
- text the profile cleans (C), and text inside a sequence the profile cleans or replaces by
  dummies (SR content, GSPS text objects): every kind the recognizer knows; dates that
  parse are shifted with the patient's other dates, the rest replaced;
- text the table retains as it is (Sequence Name, RT labels, Content Description, ...):
  names, contact details, dates (shifted) and times, and IDs of six digits or more; not
  shorter ID-like tokens, since technical values ("tfl3d1_16ns", "B30f", "2.5mm") look like
  IDs to a recognizer and identify nobody;
- equipment and vocabulary (Manufacturer, model, software versions, coded entries of
  standard schemes): never, a vendor called "Philips" is not a person.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from gateway.base.identifiers import normalise
from gateway.deid.actions import clean_dates_in_text

if TYPE_CHECKING:
    from gateway.base.identifiers import Identifiers
    from gateway.text.recognizer import Recognizer, Span

# What the recognizer may cut out of a value the table retains as it is (and IDs with
# RETAINED_ID_DIGITS digits or more).
CONTACT_KINDS = frozenset({"name", "phone", "email", "url", "address", "postcode"})
RETAINED_KINDS = CONTACT_KINDS | {"date", "time", "organisation", "age"}
RETAINED_ID_DIGITS = 6


def retained_phi(text: str, span: Span) -> bool:
    """Whether a span the recognizer found is cut from a value the table retains."""
    if span.kind in RETAINED_KINDS:
        return True
    value = text[span.start : span.end]
    return span.kind == "id" and sum(c.isdigit() for c in value) >= RETAINED_ID_DIGITS


@dataclass(frozen=True)
class FreeTextSettings:
    """A site's free-text choices (picklable: each worker builds its recognizer from them).

    `recognizer`: clean with the PHI recognizer as well as the instance's identifiers.
    `names` / `safe_words`: the site's own words always / never taken for a name.
    `clean_on_leak`: a value the profile keeps in which the verify gate finds an identifier
    is cleaned instead of quarantining the instance (off: fail closed).
    """

    recognizer: bool = True
    names: tuple[str, ...] = ()
    safe_words: tuple[str, ...] = ()
    clean_on_leak: bool = False

    def build(self) -> Recognizer | None:
        if not self.recognizer:
            return None
        return _recognizer(self.names, self.safe_words)


@lru_cache(maxsize=4)
def _recognizer(names: tuple[str, ...], safe_words: tuple[str, ...]) -> Recognizer:
    from gateway.text.recognizer import Recognizer, default_recognizer

    if not names and not safe_words:
        return default_recognizer()
    return Recognizer(names, safe_words)


DEFAULT_SETTINGS = FreeTextSettings()


class TextCleaner:
    """Cleans the free text of one instance: its identifiers, then the recognizer."""

    def __init__(
        self, identifiers: Identifiers, recognizer: Recognizer | None, shift_days: int | None
    ) -> None:
        self.identifiers = identifiers
        self.recognizer = recognizer
        self.shift_days = shift_days

    def clean(self, text: str, replacement: str = "*", recognize: bool = True) -> str:
        """Every identifier and (with `recognize`) every PHI span out; dates shifted."""
        cleaned = self.identifiers.scrub(text, replacement)
        if recognize and self.recognizer is not None and cleaned:
            cleaned = self.recognizer.clean(cleaned, replacement, self.shift_days)
        return clean_dates_in_text(cleaned, self.shift_days)

    def clean_code(self, text: str, replacement: str = "X") -> str:
        """A code string (CS): replaced whole when it holds a whole identifying value or a
        name part of 5 letters or more, as the verify gate judges codes; a short name part
        alone ("TEXT", "HEAD") is a word."""
        folded = normalise(text)
        found = self.identifiers
        pattern = found.value_pattern()
        if (
            folded in found.exact
            or (pattern is not None and pattern.search(folded))
            or found.names_code(folded)
        ):
            return replacement
        return text

    def clean_retained(self, text: str, replacement: str = "*") -> str:
        """The instance's identifiers and what `retained_phi` lets the recognizer cut; for
        values the table retains (see the module text). Dates are shifted, as in `clean`."""
        cleaned = self.identifiers.scrub(text, replacement)
        if self.recognizer is None or not cleaned:
            return cleaned
        spans = [s for s in self.recognizer.find(cleaned) if retained_phi(cleaned, s)]
        if not spans:
            return cleaned
        return self.recognizer.replace(cleaned, spans, replacement, self.shift_days)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where `text` holds an identifier or PHI, as sorted, merged (start, end) spans of
        the text as given (for documents, where the words are blanked in place)."""
        found: list[tuple[int, int]] = []
        marker = "\x00"
        scrubbed = self.identifiers.scrub(text, marker)
        if scrubbed != text:
            matcher = difflib.SequenceMatcher(None, text, scrubbed, autojunk=False)
            for op, a0, a1, _b0, _b1 in matcher.get_opcodes():
                if op in ("replace", "delete") and a1 > a0:
                    found.append((a0, a1))
        if self.recognizer is not None:
            found.extend((s.start, s.end) for s in self.recognizer.find(text))
        return _merge(found)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
