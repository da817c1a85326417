"""The identifying values of one input instance, normalised for searching.

Collected before de-identification; the engine uses them to clean free text (C action) and
the verify gate searches the whole output for them. A leaf module: pydicom only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

# The patient's own identity: no profile may declare these "kept" to the verify gate.
PATIENT_IDENTITY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
)
# Attributes whose values identify the patient or the people and places around them.
IDENTIFYING_KEYWORDS = (
    *PATIENT_IDENTITY_KEYWORDS,
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "ScheduledPerformingPhysicianName",
    "OperatorsName",
    "ConsultingPhysicianName",
    "AdmissionID",
    "IssuerOfPatientID",
    "RequestedProcedureID",
    "ScheduledProcedureStepID",
    "PerformedProcedureStepID",
    "StudyID",
)
IDENTIFYING_TAGS = frozenset(int(Tag(k)) for k in IDENTIFYING_KEYWORDS)
_PERSON_VR = "PN"
_DATE_VR = "DA"

# A value shorter than this is matched only as a whole value or whole word: a 2-digit
# Study ID would otherwise be "found" in every number of the output.
MIN_SUBSTRING_LENGTH = 5
MIN_NAME_COMPONENT_LENGTH = 3

# Values the engine itself writes (D dummies): an input that already went through a
# de-identifier carries them, and they identify nobody.
_OUR_DUMMIES = frozenset({"deidentified", "19000101"})

_SEPARATORS = re.compile(r"[\s^=]+")
# A name part counts where no letter touches it: "smith" in "smith01" or "2024smith" too
# (found by the fuzz tests: a bit flip made "Zyxwick Quorbelle" "Zyxwick0Quorbelle").
_WORD_EDGE = r"(?<![a-z]){}(?![a-z])"


def normalise(text: str) -> str:
    """Lower case, `^`/`=` and runs of white space as one space (PS3.5 6.2 PN separators)."""
    return _SEPARATORS.sub(" ", text.lower()).strip()


def date_spellings(da: str) -> list[str]:
    """A DA value as people write it in free text: 19800131, 1980-01-31, 31/01/1980, 31.01.1980."""
    if len(da) != 8 or not da.isdigit():
        return [da]
    y, m, d = da[:4], da[4:6], da[6:]
    return [da, f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{d}.{m}.{y}", f"{m}/{d}/{y}"]


@dataclass
class Identifiers:
    """Normalised identifying values and remapped UIDs.

    `values` are found anywhere in a text, `words` (parts of person names) only as whole
    words, and `exact` (values too short to search for) only as a whole element value.
    """

    values: set[str] = field(default_factory=set)
    words: set[str] = field(default_factory=set)
    exact: set[str] = field(default_factory=set)
    uids: set[str] = field(default_factory=set)
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)
    _value_pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def add_value(self, raw: str, vr: str) -> None:
        text = normalise(raw)
        if not text or text in _OUR_DUMMIES:
            return
        if vr == _DATE_VR:
            self.values.update(date_spellings(text))
            return
        if len(text) >= MIN_SUBSTRING_LENGTH:
            self.values.add(text)
        else:
            self.exact.add(text)
        if vr == _PERSON_VR:
            for part in text.split(" "):
                if len(part) >= MIN_NAME_COMPONENT_LENGTH:
                    self.words.add(part)
        self._pattern = self._value_pattern = None

    def add_uids(self, uids: Iterable[str]) -> None:
        self.uids.update(u.strip() for u in uids if u.strip())

    def pattern(self) -> re.Pattern[str] | None:
        """One regex matching any identifier in normalised text (values anywhere, words whole)."""
        if self._pattern is None and (self.values or self.words):
            self._pattern = _alternation(self.values, self.words)
        return self._pattern

    def value_pattern(self) -> re.Pattern[str] | None:
        """Whole identifying values only, for vocabularies (codes, CS) where a name part alone
        is an ordinary word ("HEAD", "PERFUSION"), not a leak."""
        if self._value_pattern is None and self.values:
            self._value_pattern = _alternation(self.values, ())
        return self._value_pattern

    def found_in(self, text: str) -> bool:
        """True when any identifier occurs in `text` (values separated by `\\` checked apart)."""
        pattern = self.pattern()
        for part in text.split("\\"):
            normalised = normalise(part.strip(" \x00"))
            if normalised in self.exact or (pattern is not None and pattern.search(normalised)):
                return True
        return False

    def scrub(self, text: str, replacement: str = "*") -> str:
        """Free text with every identifier replaced; used by the Clean (C) action."""
        if normalise(text) in self.exact:
            return replacement
        pattern = self.pattern()
        if pattern is None or not text:
            return text
        # Search a normalised copy but cut from the original so the rest keeps its case.
        spaced = _SEPARATORS.sub(" ", text)
        lowered = spaced.lower()
        out: list[str] = []
        last = 0
        for match in pattern.finditer(lowered):
            out.append(spaced[last : match.start()])
            out.append(replacement)
            last = match.end()
        if last == 0:
            return text
        out.append(spaced[last:])
        return "".join(out)


def _alternation(values: Iterable[str], words: Iterable[str]) -> re.Pattern[str]:
    parts = [re.escape(v) for v in sorted(values, key=len, reverse=True)]
    parts += [_WORD_EDGE.format(re.escape(w)) for w in sorted(words, key=len, reverse=True)]
    return re.compile("|".join(parts))


def string_values(elem: DataElement) -> Iterator[str]:
    """The text values of an element, whatever its VM (PN values as their str form)."""
    value = elem.value
    if value is None or value == "":
        return
    values: Iterable[object] = value if isinstance(value, MultiValue | list | tuple) else [value]
    for item in values:
        if item is None:
            continue
        text = item.decode("latin-1") if isinstance(item, bytes) else str(item)
        if text:
            yield text


def collect_identifiers(ds: Dataset, keeps: Callable[[int], bool]) -> Identifiers:
    """Identifying values anywhere in `ds` (all sequence depths) that the profile removes.

    `keeps(tag)` says the profile retains that attribute as is (e.g. Institution Name under
    Retain Institution Identity); those values are expected in the output and not collected.
    """
    found = Identifiers()
    _collect(ds, keeps, found, depth=0)
    return found


def _collect(ds: Dataset, keeps: Callable[[int], bool], found: Identifiers, depth: int) -> None:
    if depth > 64:
        raise ValueError("sequence nesting deeper than 64 levels")
    for tag in list(ds.keys()):
        tag = int(tag)
        if tag in IDENTIFYING_TAGS and not keeps(tag):
            elem = ds[tag]
            for text in string_values(elem):
                found.add_value(text, elem.VR)
        elif vr_of(ds, tag) == "SQ":
            for item in ds[tag].value or ():
                _collect(item, keeps, found, depth + 1)


def vr_of(ds: Dataset, tag: int) -> str:
    """An element's VR without converting its value where the raw VR already says it.

    Only elements read with no VR (implicit VR files), or as UN, are converted to learn
    whether they hold a sequence; pixel data is never converted.
    """
    raw = ds.get_item(tag)
    vr = raw.VR
    if vr is None or vr == "UN":
        if tag >> 16 == 0x7FE0:
            return vr or "OB"
        return str(ds[tag].VR)
    return str(vr)
