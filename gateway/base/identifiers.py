"""The identifying values of one input instance, folded for searching.

Collected before de-identification from the whole instance: every person name (any tag,
private ones too, all three component groups), IDs and their issuers, addresses, phone
numbers, e-mail addresses, institutions, the birth date. The engine cuts them out of free
text and the verify gate searches the whole output for them, through the same patterns.
Folding (text_folding.py) makes case, accents, width and kana alike. Then:
- `values` are found anywhere (IDs, institutions, dates, names of unspaced scripts:
  "山田太郎" inside "山田太郎様"); `phrases` (whole names) and `words` (name and address
  parts) where no letter touches them, no letter nor digit for one or two letters;
- `loose`: IDs, phone numbers, postcodes with any separators ("12-345-678");
- `dates`: the birth date in every spelling; `exact`: short values, as a whole value only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from gateway.base.element_values import cheap_vr, string_values
from gateway.base.name_forms import typed_forms
from gateway.base.text_folding import (
    MIN_LETTER_EDGED_LENGTH,
    address_parts,
    codecs_for,
    compact,
    compile_alternation,
    cut_matches,
    date_spellings,
    is_unspaced,
    kana_only,
    name_words,
    normalise,
    other_readings,
    parse_date,
    phone_forms,
)

# The patient's own identity: no profile may declare these "kept" to the verify gate.
PATIENT_IDENTITY_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientBirthDate", "PatientAddress", "PatientTelephoneNumbers",
    "MedicalRecordLocator",
)  # fmt: skip

# What kind of value an attribute holds decides how it is searched (see the module text).
NAME, ID, ADDRESS, PHONE = "name", "id", "address", "phone"
TELECOM = "telecom"  # PS3.3 C.2.2: phone numbers and e-mail addresses in one text
ORGANISATION, DATE, CODE, TEXT = "organisation", "date", "code", "text"
_KEYWORDS_OF_KIND: dict[str, tuple[str, ...]] = {
    NAME: (
        "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
        "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
        "PhysiciansOfRecord", "RequestingPhysician", "ScheduledPerformingPhysicianName",
        "OperatorsName", "ConsultingPhysicianName", "ResponsiblePerson",
    ),
    ID: (
        "PatientID", "OtherPatientIDs", "MedicalRecordLocator", "IssuerOfPatientID",
        "AccessionNumber", "AdmissionID", "IssuerOfAdmissionID", "ServiceEpisodeID",
        "IssuerOfServiceEpisodeID", "StudyID", "StudyIDIssuer", "RequestedProcedureID",
        "ScheduledProcedureStepID", "PerformedProcedureStepID",
        "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequestRetired",
        "FillerOrderNumberImagingServiceRequestRetired", "PlacerOrderNumberProcedure",
        "FillerOrderNumberProcedure", "InsurancePlanIdentification", "ResultsID",
        "InterpretationID",
    ),
    ADDRESS: (
        "PatientAddress", "InstitutionAddress", "ReferringPhysicianAddress", "PersonAddress",
    ),
    PHONE: (
        "PatientTelephoneNumbers", "ReferringPhysicianTelephoneNumbers", "PersonTelephoneNumbers",
    ),
    TELECOM: (
        "PatientTelecomInformation", "PersonTelecomInformation",
        "OrderCallbackTelecomInformation",
    ),
    ORGANISATION: (
        "InstitutionName", "InstitutionalDepartmentName", "ResponsibleOrganization",
        "HumanPerformerOrganization", "VerifyingOrganization",
    ),
    DATE: ("PatientBirthDate",),
    TEXT: ("PatientBirthDateInAlternativeCalendar", "PatientDeathDateInAlternativeCalendar"),
}  # fmt: skip
_KEYWORD_KINDS = {k: kind for kind, keywords in _KEYWORDS_OF_KIND.items() for k in keywords}

# Attributes whose values identify the patient or the people and places around them.
IDENTIFYING_KEYWORDS = tuple(dict.fromkeys((*PATIENT_IDENTITY_KEYWORDS, *_KEYWORD_KINDS)))
IDENTIFYING_TAGS = frozenset(int(Tag(k)) for k in IDENTIFYING_KEYWORDS)
_TAG_KINDS = {int(Tag(k)): kind for k, kind in _KEYWORD_KINDS.items()}

# Inside these sequences a coded entry's value is a person's or an institution's ID
# (PS3.3 10.1 Person Identification Macro, C.7.5.1 Institution Code Sequence), and an
# issuer's namespace IDs (PS3.3 10.14 HL7v2 Hierarchic Designator Macro) name the site.
_CODE_VALUES = frozenset({0x00080100, 0x00080119, 0x00080120})
_CODE_MEANING = 0x00080104
_ENTITY_IDS = frozenset({0x00400031, 0x00400032})
_PERSON_CODE_SEQUENCES = frozenset(
    int(Tag(k))
    for k in (
        "PersonIdentificationCodeSequence", "VerifyingObserverIdentificationCodeSequence",
        "HumanPerformerCodeSequence",
    )
)  # fmt: skip
_INSTITUTION_CODES = int(Tag("InstitutionCodeSequence"))
_ISSUER_SEQUENCES = frozenset(
    int(Tag(k))
    for k in (
        "IssuerOfAccessionNumberSequence", "IssuerOfPatientIDQualifiersSequence",
        "IssuerOfAdmissionIDSequence", "IssuerOfServiceEpisodeIDSequence",
        "OrderPlacerIdentifierSequence", "OrderFillerIdentifierSequence",
        "AssigningFacilitySequence",
    )
)  # fmt: skip

_CODE_CONTEXTS = _PERSON_CODE_SEQUENCES | _ISSUER_SEQUENCES | {_INSTITUTION_CODES}
_PERSON_VR = "PN"
_DATE_VR = "DA"

# A value shorter than this is matched only as a whole value or whole word: a 2-digit
# Study ID would otherwise be "found" in every number of the output.
MIN_SUBSTRING_LENGTH = 5
# Name parts shorter than this ("Bo", "Ng") are words where no letter or digit touches them.
MIN_NAME_COMPONENT_LENGTH = MIN_LETTER_EDGED_LENGTH
# An ID with separators is searched with any separators when it has this many letters and
# digits, one a digit at least: "AB-1234-X" as "AB1234X", "12345678" as "12 345 678".
MIN_LOOSE_LENGTH = 5
MIN_UNSPACED_LENGTH, MIN_KANA_LENGTH = 2, 3  # ideographs/Hangul: a syllable each; kana: less

# Values the engine itself writes (D dummies): an input that already went through a
# de-identifier carries them, and they identify nobody.
_OUR_DUMMIES = frozenset({"deidentified", "19000101"})
# Placeholders other de-identifiers and modalities write where a name was: no one's name.
_PLACEHOLDERS = frozenset(
    {"anonymous", "anonymized", "anonymised", "anon", "unknown", "none", "null", "n/a",
     "removed", "redacted", "deidentified", "de-identified"}
)  # fmt: skip
_TELECOM_PARTS = re.compile(r"[\^,;\n\r\\]+")
_UID_LIKE = re.compile(r"\d+(?:\.\d+){3,}")
_CODE_SEPARATORS = re.compile(r"[\W_]+")
_SCHEME = re.compile(r"^\s*(?:mailto|tel|fax):", re.IGNORECASE)


@dataclass
class Identifiers:
    """Folded identifying values and remapped UIDs (see the module text for each set)."""

    values: set[str] = field(default_factory=set)
    words: set[str] = field(default_factory=set)
    exact: set[str] = field(default_factory=set)
    uids: set[str] = field(default_factory=set)
    phrases: set[str] = field(default_factory=set)
    loose: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    # Codecs whose bytes of a value read as Latin-1 differ from the value (see `readings`).
    codecs: set[str] = field(default_factory=set)
    spelled: set[str] = field(default_factory=set)  # regexes: names in abjads (abjad_names)
    _patterns: dict[str, re.Pattern[str] | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    def add_value(self, raw: str, vr: str, kind: str | None = None) -> None:
        """Add one value; `kind` (NAME, ID, ADDRESS, ...) says how it is written in text,
        by default from the VR (PN a name, DA a date, anything else an ID)."""
        if kind is None:
            kind = {_PERSON_VR: NAME, _DATE_VR: DATE}.get(vr, ID)
        contribution = _contribution(raw, vr, kind)
        if contribution is None:
            return
        for name, found in zip(_SETS, contribution, strict=True):
            if found:
                getattr(self, name).update(found)
        self._patterns.clear()

    def _add(self, raw: str, vr: str, kind: str) -> bool:
        """What `raw` contributes, added to this (empty) instance; False for nothing."""
        text = normalise(raw)
        if not text or text in _OUR_DUMMIES:
            return False
        self.codecs.update(codecs_for(raw))
        if kind == NAME:
            self._add_name(raw)
        elif kind == DATE and (vr == _DATE_VR or parse_date(text) is not None):
            self._add_date(text)
        elif kind == ADDRESS:
            self._add_address(raw, text)
        elif kind == PHONE:
            self._add_phone(raw, text)
        elif kind == TELECOM:
            self._add_telecom(raw, text)
        elif kind != CODE or len(text) >= 3:  # a code of 1-2 characters is anybody's
            self._add_plain(text)
            if kind in (ID, CODE):
                self._add_loose(text)
        return True

    def add_uids(self, uids: Iterable[str]) -> None:
        self.uids.update(u.strip() for u in uids if u.strip())

    def _add_plain(self, text: str) -> None:
        if len(text) >= MIN_SUBSTRING_LENGTH or (
            is_unspaced(text) and len(text.replace(" ", "")) >= MIN_UNSPACED_LENGTH
        ):
            self.values.add(text)
        else:
            self.exact.add(text)

    def _add_loose(self, text: str) -> None:
        if _UID_LIKE.fullmatch(text):
            return  # an OID (Universal Entity ID): its dots are its own, not a writer's
        letters_digits = compact(text)
        digits = sum(c.isdigit() for c in letters_digits)
        if len(letters_digits) >= MIN_LOOSE_LENGTH and digits and letters_digits.isascii():
            self.loose.add(letters_digits)

    def _add_date(self, da: str) -> None:
        self.values.update(date_spellings(da)[:5])
        if parse_date(da) is not None:
            self.dates.add(da)

    def _add_name(self, raw: str) -> None:
        """PS3.5 6.2: up to three groups of up to five components (family, given, ...)."""
        for group in raw.split("=")[:3]:
            whole = normalise(group)
            if not whole or whole in _PLACEHOLDERS or whole in _OUR_DUMMIES:
                continue
            components = [normalise(c) for c in group.split("^")]
            # Prefix and suffix ("Dr", "Mrs", "MD") name nobody: not words on their own.
            names = [c for c in components[:3] if c and c not in _PLACEHOLDERS]
            for phrase in {whole, " ".join(names)} - {""}:
                self._add_phrase(phrase)
            for component in names:
                if is_unspaced(component):
                    for token in dict.fromkeys((component, *component.split(" "))):
                        self._add_unspaced(token)
                else:
                    self.words.update(w for w in name_words(component) if w not in _PLACEHOLDERS)
            forms, spelled = typed_forms([c if c in names else "" for c in components], group, raw)
            self.spelled.update(spelled)  # name_forms.py
            for form in forms:
                (self.phrases if " " in form else self.words).add(form)

    def _add_phrase(self, phrase: str) -> None:
        if is_unspaced(phrase):
            self._add_unspaced(phrase)
        elif len(phrase) >= MIN_SUBSTRING_LENGTH:
            self.phrases.add(phrase)
        else:
            self.exact.add(phrase)

    def _add_unspaced(self, text: str) -> None:
        letters = text.replace(" ", "")
        least = MIN_KANA_LENGTH if kana_only(letters) else MIN_UNSPACED_LENGTH
        if len(letters) >= least:
            self.values.add(text)
        else:
            self.exact.add(text)

    def _add_address(self, raw: str, text: str) -> None:
        """The whole address, and the parts people write alone (text_folding)."""
        self._add_plain(text)
        words, numbers = address_parts(raw)
        for part in words:
            (self.values if is_unspaced(part) else self.words).add(part)
        for number in numbers:
            self._add_loose(number)

    def _add_phone(self, raw: str, text: str) -> None:
        """The number as written, and its digits with any separators (text_folding)."""
        self._add_plain(text)
        self.loose.update(f for f in phone_forms(raw) if len(f) >= MIN_LOOSE_LENGTH)

    def _add_telecom(self, raw: str, text: str) -> None:
        self._add_plain(text)
        for piece in _TELECOM_PARTS.split(raw):
            part = _SCHEME.sub("", piece).strip()
            if "@" in part:
                self._add_plain(normalise(part))
            elif sum(c.isdigit() for c in part) >= MIN_LOOSE_LENGTH:
                self._add_phone(part, normalise(part))

    def pattern(self) -> re.Pattern[str] | None:
        """One regex matching any identifier in folded text (values anywhere, words whole)."""
        return self._pattern("all")

    def value_pattern(self) -> re.Pattern[str] | None:
        """Whole identifying values only, for vocabularies (codes, CS) where a name part alone
        is an ordinary word ("HEAD", "PERFUSION"), not a leak."""
        return self._pattern("values")

    def names_code(self, folded: str) -> bool:
        """Whether a code string (CS) is, or is built of, a name part of 5 letters or more
        ("QUINTAVALLE", "QUINTAVALLE_RT1" as a GSPS Content Label); shorter ones ("HEAD",
        "LEG") are ordinary codes."""
        parts = (folded, *_CODE_SEPARATORS.split(folded))
        return any(len(p) >= MIN_SUBSTRING_LENGTH and p in self.words for p in parts)

    def bytes_pattern(self) -> re.Pattern[str] | None:
        """For bytes read as text (numbers, binary values): as `pattern`, without the name
        parts of one or two letters, which arbitrary bytes spell by chance."""
        return self._pattern("bytes")

    def _pattern(self, which: str) -> re.Pattern[str] | None:
        if which not in self._patterns:
            least = MIN_NAME_COMPONENT_LENGTH if which == "bytes" else 0
            words = () if which == "values" else (w for w in self.words if len(w) >= least)
            self._patterns[which] = compile_alternation(
                frozenset(self.values),
                frozenset(self.phrases),
                frozenset(self.loose),
                frozenset(self.dates),
                frozenset(words),
                frozenset(self.spelled) if which != "values" else frozenset(),
            )
        return self._patterns[which]

    def found_in(self, text: str) -> bool:
        """True when any identifier occurs in `text` (values separated by `\\` checked apart;
        text that is bytes of another character set read as Latin-1 is read again)."""
        pattern = self.pattern()
        for part in text.split("\\"):
            for reading in (part, *self.readings(part)):
                folded = normalise(reading.strip(" \x00"))
                if folded in self.exact or (pattern is not None and pattern.search(folded)):
                    return True
        return False

    def readings(self, text: str, utf8_only: bool = False) -> list[str]:
        """`text`, if it is bytes read as Latin-1, as the character sets of the input's
        non-ASCII identifiers would read it (text_folding.other_readings)."""
        return other_readings(text, self.codecs, utf8_only) if self.codecs else []

    def scrub(self, text: str, replacement: str = "*") -> str:
        """Free text with every identifier cut out of the original, whatever spelling
        matched; the rest keeps its case and characters. Used by the Clean (C) action."""
        if not text:
            return text
        if normalise(text) in self.exact:
            return replacement
        pattern = self.pattern()
        if pattern is None:
            return text
        return cut_matches(text, pattern, replacement)


_SETS = ("values", "words", "exact", "phrases", "loose", "dates", "codecs", "spelled")


@lru_cache(maxsize=4096)
def _contribution(raw: str, vr: str, kind: str) -> tuple[frozenset[str], ...] | None:
    """What one value adds to each set of `Identifiers`, worked out once: a study's
    instances repeat the same names and IDs."""
    found = Identifiers()
    if not found._add(raw, vr, kind):
        return None
    return tuple(frozenset(getattr(found, name)) for name in _SETS)


def collect_identifiers(ds: Dataset, keeps: Callable[[int], bool]) -> Identifiers:
    """Identifying values anywhere in `ds` (all sequence depths) that the profile removes.

    `keeps(tag)` says the profile retains that attribute as is (e.g. Institution Name under
    Retain Institution Identity); those values are expected in the output and not collected.
    """
    found = Identifiers()
    _collect(ds, keeps, found, depth=0, context=0)
    return found


def _collect(
    ds: Dataset, keeps: Callable[[int], bool], found: Identifiers, depth: int, context: int
) -> None:
    """`context`: the tag of the sequence holding `ds` when that sequence says what its
    coded entries are (a person's or an institution's ID), else 0."""
    if depth > 64:
        raise ValueError("sequence nesting deeper than 64 levels")
    for key in list(ds.keys()):  # `key` (the dataset's own) for ds, the int for our tables
        tag = int(key)
        kind = _TAG_KINDS.get(tag)
        vr = cheap_vr(ds, key)
        if vr == "SQ":
            # A sequence the profile keeps keeps its codes.
            inner = tag if tag in _CODE_CONTEXTS and not keeps(tag) else 0
            for item in ds[key].value or ():
                _collect(item, keeps, found, depth + 1, inner)
            continue
        if kind is None:
            kind = _kind_in_context(tag, vr, context)
            if kind is None:
                continue
            if kind == NAME and keeps(tag):
                continue  # a coded entry's fate is its sequence's, checked above
        elif keeps(tag):
            continue
        elem = ds[key]
        for text in string_values(elem):
            found.add_value(text, elem.VR, kind)


def _kind_in_context(tag: int, vr: str, context: int) -> str | None:
    if vr == _PERSON_VR:
        return NAME  # any person name, private ones too
    if not context:
        return None
    if tag in _CODE_VALUES:
        return CODE
    if context == _INSTITUTION_CODES and tag == _CODE_MEANING:
        return ORGANISATION
    if context in _ISSUER_SEQUENCES and tag in _ENTITY_IDS:
        return ID
    return None
