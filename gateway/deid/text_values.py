"""The engine's free-text actions on one element: clean, scrub, dummy, person pseudonyms.

Each takes the instance's `TextCleaner` (its identifiers, the recognizer, the date shift);
which one applies where is the engine's walk (see `engine.py` and `free_text.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from gateway.base.element_values import element, vr_of
from gateway.deid.actions import TEXT_VRS, as_list, dummy_value
from gateway.deid.free_text import FreeTextSettings, TextCleaner, retained_phi
from gateway.deid.overrides import Rule
from gateway.deid.pseudonyms import Pseudonyms

if TYPE_CHECKING:
    from gateway.text.recognizer import Recognizer


def _set(ds: Dataset, t: int, vr: str, values: list[str]) -> None:
    ds[t] = DataElement(t, vr, values if len(values) > 1 else values[0] if values else "")


class TextValues:
    """Free-text actions of one engine (its pseudonyms and recognizer)."""

    def __init__(self, pseudonyms: Pseudonyms, settings: FreeTextSettings) -> None:
        self.pseudonyms = pseudonyms
        self.settings = settings
        self.recognizer: Recognizer | None = settings.build()

    def clean(self, ds: Dataset, t: int, vr: str, cleaner: TextCleaner) -> None:
        """C on text: identifiers and PHI out, dates moved; a name gets a pseudonym."""
        if vr == "PN" and self.recognizer is not None:
            self.person_pseudonyms(ds, t)
            return
        originals = [str(v) for v in as_list(ds[t].value)]
        if vr == "CS":
            cleaned = [cleaner.clean_code(v) for v in originals]
        else:
            cleaned = [cleaner.clean(v) for v in originals]
        if cleaned != originals:  # clean text (the usual case) is left as it was read
            _set(ds, t, vr, cleaned)

    def scrub_retained(self, ds: Dataset, t: int, vr: str, cleaner: TextCleaner) -> None:
        """Free text the table retains still loses this patient's identifiers and the names,
        contact details, dates, times and long IDs the recognizer finds (`retained_phi`).

        A modality that writes the patient's name into, say, Sequence Name would otherwise
        send the instance to quarantine; the value is kept with the name cut out. Raw values
        are checked before pydicom converts them, so clean text costs one regex search.
        """
        if vr == "PN" and self.recognizer is not None:
            self.person_pseudonyms(ds, t)  # a name no table row knows is a name
            return
        raw = element(ds, t)
        if (
            isinstance(raw, RawDataElement)
            and isinstance(raw.value, bytes)
            and not cleaner.identifiers.found_in(raw.value.decode("latin-1"))
            and (self.recognizer is None or _plain_ascii_without_phi(raw.value, self.recognizer))
        ):
            return
        values = [str(v) for v in as_list(ds[t].value)]
        scrubbed = [cleaner.clean_retained(v) for v in values]
        if scrubbed != values:
            _set(ds, t, vr, scrubbed)

    def dummy(self, ds: Dataset, t: int, vr: str, cleaner: TextCleaner) -> None:
        """Free text inside a sequence the table replaces (D: SR content, GSPS text): with
        the recognizer it is cleaned span by span and names get pseudonyms, so "nodule 8 mm"
        survives; without it, a dummy."""
        if self.recognizer is None or vr in ("AE", "UR"):
            ds[t] = DataElement(t, vr, dummy_value(vr))
        else:
            self.clean(ds, t, vr, cleaner)

    def person_pseudonyms(self, ds: Dataset, t: int) -> None:
        """A person's name replaced by a keyed pseudonym of it: the same reader or observer
        gets the same pseudonym in every report, and nothing of the name is kept."""
        names = [str(v) for v in as_list(ds[t].value)]
        tokens = [
            "PERSON^" + self.pseudonyms.token("person", " ".join(v.casefold().split()), 10)
            for v in names
            if v.strip()
        ]
        _set(ds, t, "PN", tokens)

    def clean_rule(self, ds: Dataset, t: int, rule: Rule, cleaner: TextCleaner) -> None:
        """`{clean: {recognizer: ...}}`: values the allow list names stay, the others are
        cleaned with or without the recognizer, as the rule says (not as the site's
        default)."""
        vr = vr_of(ds, t)
        if vr not in TEXT_VRS:
            del ds[t]  # a private element read as UN, a number: nothing to clean in it
            return
        recognizer = self._forced_recognizer() if rule.recognizer else None
        chosen = TextCleaner(cleaner.identifiers, recognizer, cleaner.shift_days)
        originals = [str(v) for v in as_list(ds[t].value)]
        cleaned = [v if rule.allows(v) else chosen.clean(v) for v in originals]
        if cleaned != originals:
            _set(ds, t, vr, cleaned)

    def _forced_recognizer(self) -> Recognizer | None:
        if self.recognizer is not None:
            return self.recognizer
        settings = self.settings
        return FreeTextSettings(True, settings.names, settings.safe_words).build()


def _plain_ascii_without_phi(raw: bytes, recognizer: Recognizer) -> bool:
    """True when a raw value is plain ASCII (so its bytes read the same in any character
    set but ISO 2022) and the recognizer finds nothing `retained_phi` cuts."""
    if not raw.isascii() or b"\x1b" in raw:
        return False
    text = raw.decode("ascii")
    parts = (part.strip(" \x00") for part in text.split("\\"))
    return not any(retained_phi(part, span) for part in parts for span in recognizer.find(part))
