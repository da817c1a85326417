"""The identifying values of one input instance, folded for searching.

Collected before de-identification, from the whole instance: every person name (any tag,
private ones too, all three component groups), IDs and their issuers, addresses, phone
numbers, e-mail addresses, institutions and the birth date. The engine uses them to clean
free text (C action) and the verify gate searches the whole output for them, both through
the same patterns, so a spelling the cleaner misses the gate still catches.

Matching (text_folding.py folds both sides: case, accents, full-width forms, kana):
- `values` anywhere in a text (IDs, institutions, whole addresses, dates; and names in
  scripts written without spaces, where "山田太郎" is found inside "山田太郎様");
- `phrases` (whole person names) and `words` (name parts, address parts) only where no
  letter touches them; parts of one or two letters only where no letter or digit does;
- `loose`: IDs, phone numbers and postcodes with their separators ignored ("12-345-678");
- `dates`: the birth date in numeric and English spellings;
- `exact` values too short to search for: only as a whole element value.
A leaf module: pydicom and text_folding only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from gateway.base.text_folding import compact, fold, fold_with_map, is_unspaced, kana_only

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

# What kind of value an attribute holds decides how it is searched (see the module text).
NAME = "name"
ID = "id"
ADDRESS = "address"
PHONE = "phone"
TELECOM = "telecom"  # PS3.3 C.2.2: phone numbers and e-mail addresses in one text
ORGANISATION = "organisation"
DATE = "date"
CODE = "code"
TEXT = "text"

_KEYWORD_KINDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
            "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
            "PhysiciansOfRecord", "RequestingPhysician", "ScheduledPerformingPhysicianName",
            "OperatorsName", "ConsultingPhysicianName", "ResponsiblePerson",
        ),
        NAME,
    ),
    **dict.fromkeys(
        (
            "PatientID", "OtherPatientIDs", "MedicalRecordLocator", "IssuerOfPatientID",
            "AccessionNumber", "AdmissionID", "IssuerOfAdmissionID", "ServiceEpisodeID",
            "IssuerOfServiceEpisodeID", "StudyID", "StudyIDIssuer", "RequestedProcedureID",
            "ScheduledProcedureStepID", "PerformedProcedureStepID",
            "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
            "PlacerOrderNumberImagingServiceRequestRetired",
            "FillerOrderNumberImagingServiceRequestRetired",
            "PlacerOrderNumberProcedure", "FillerOrderNumberProcedure",
            "InsurancePlanIdentification", "ResultsID", "InterpretationID",
        ),
        ID,
    ),
    **dict.fromkeys(
        ("PatientAddress", "InstitutionAddress", "ReferringPhysicianAddress", "PersonAddress"),
        ADDRESS,
    ),
    **dict.fromkeys(
        ("PatientTelephoneNumbers", "ReferringPhysicianTelephoneNumbers",
         "PersonTelephoneNumbers"),
        PHONE,
    ),
    **dict.fromkeys(
        ("PatientTelecomInformation", "PersonTelecomInformation",
         "OrderCallbackTelecomInformation"),
        TELECOM,
    ),
    **dict.fromkeys(
        ("InstitutionName", "InstitutionalDepartmentName", "ResponsibleOrganization",
         "HumanPerformerOrganization", "VerifyingOrganization"),
        ORGANISATION,
    ),
    "PatientBirthDate": DATE,
    "PatientBirthDateInAlternativeCalendar": TEXT,
    "PatientDeathDateInAlternativeCalendar": TEXT,
}  # fmt: skip

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
        "PersonIdentificationCodeSequence",
        "VerifyingObserverIdentificationCodeSequence",
        "HumanPerformerCodeSequence",
    )
)
_INSTITUTION_CODES = int(Tag("InstitutionCodeSequence"))
_ISSUER_SEQUENCES = frozenset(
    int(Tag(k))
    for k in (
        "IssuerOfAccessionNumberSequence",
        "IssuerOfPatientIDQualifiersSequence",
        "IssuerOfAdmissionIDSequence",
        "IssuerOfServiceEpisodeIDSequence",
        "OrderPlacerIdentifierSequence",
        "OrderFillerIdentifierSequence",
        "AssigningFacilitySequence",
    )
)

_PERSON_VR = "PN"
_DATE_VR = "DA"

# A value shorter than this is matched only as a whole value or whole word: a 2-digit
# Study ID would otherwise be "found" in every number of the output.
MIN_SUBSTRING_LENGTH = 5
# Name parts of this length or more need only no letter touching them; shorter ones ("Bo",
# "Ng") need no letter or digit either (a base32 pseudonym holds "BO" between digits).
MIN_NAME_COMPONENT_LENGTH = 3
# An ID with separators is searched with any separators when it has this many letters and
# digits, one a digit at least: "AB-1234-X" as "AB1234X", "12345678" as "12 345 678".
MIN_LOOSE_LENGTH = 5
# A phone number's national digits (without country code) are searched from this length.
MIN_PHONE_DIGITS = 7
# Address parts kept as words: a street line with its number ("12 Baker Street"), a run of
# words of it ("Baker Street", "Northbridge"), a part that is all letters (a town).
MIN_STREET_LENGTH = 8
MIN_ADDRESS_WORDS_LENGTH = 6
MIN_TOWN_LENGTH = 4
# Ideographs and Hangul carry a syllable each: two make a name part; kana need three.
MIN_UNSPACED_LENGTH = 2
MIN_KANA_LENGTH = 3

# Values the engine itself writes (D dummies): an input that already went through a
# de-identifier carries them, and they identify nobody.
_OUR_DUMMIES = frozenset({"deidentified", "19000101"})
# Placeholders other de-identifiers and modalities write where a name was: no one's name.
_PLACEHOLDERS = frozenset(
    {"anonymous", "anonymized", "anonymised", "anon", "unknown", "none", "null", "n/a",
     "removed", "redacted", "deidentified", "de-identified"}
)  # fmt: skip
# Particles of a family name ("van der Berg", "de la Cruz"): words only as part of it.
_NAME_PARTICLES = frozenset(
    {"a", "al", "bin", "da", "das", "de", "dei", "del", "della", "den", "der", "des", "di",
     "do", "dos", "du", "el", "la", "le", "les", "ter", "van", "von", "y", "zu"}
)  # fmt: skip

_SEPARATORS = re.compile(r"[\s^=]+")
_ADDRESS_PARTS = re.compile(r"[\^,;\n\r]+")
_TELECOM_PARTS = re.compile(r"[\^,;\n\r\\]+")
_NAME_PUNCTUATION = ".,;:()\"'"
_SEP = r"[\s^=]"  # what separates the words of a value in a text (PN `^`, `=` too)
_LOOSE_SEP = r"[\s\-./_()]{0,2}"
# A short number with a dot inside is a decimal ("1.2345"), not Study ID 12345 written apart.
_LOOSE_SEP_NO_DOT = r"[\s\-/_()]{0,2}"
MIN_DOTTED_DIGITS = 8
_LETTER = r"[^\W\d_]"  # a letter of any script
_ALNUM = r"[^\W_]"

_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip


def normalise(text: str) -> str:
    """Folded (text_folding.fold), `^`/`=` and runs of white space as one space (PS3.5 6.2
    PN separators), trimmed: the form identifiers are kept and whole values compared in."""
    return _SEPARATORS.sub(" ", fold(text)).strip()


def date_spellings(da: str) -> list[str]:
    """A DA value as people write it in free text: 19800131, 1980-01-31, 31/01/1980,
    31.01.1980, 01/31/1980, and in words (31 jan 1980, january 31, 1980, 31-jan-1980, ...).
    Folded (lower case); `Identifiers` also matches unpadded and other separators."""
    parsed = _parse_date(da)
    if parsed is None:
        return [da]
    y, m, d = da[:4], da[4:6], da[6:]
    month = _MONTHS[parsed[1] - 1]
    short = month[:3]
    day = str(parsed[2])
    return [
        da, f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{d}.{m}.{y}", f"{m}/{d}/{y}",
        f"{d}-{m}-{y}", f"{m}-{d}-{y}", f"{y}/{m}/{d}", f"{y}.{m}.{d}",
        f"{day} {short} {y}", f"{day} {month} {y}", f"{month} {day}, {y}", f"{short} {day} {y}",
        f"{d}-{short}-{y}",
    ]  # fmt: skip


def _parse_date(da: str) -> tuple[int, int, int] | None:
    if len(da) != 8 or not da.isdigit():
        return None
    y, m, d = int(da[:4]), int(da[4:6]), int(da[6:])
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    return y, m, d


def _date_sources(da: str) -> list[str]:
    """Regexes for every spelling of a date: numeric in ISO, European and US order, with or
    without leading zeros, any of `-/. ` between; English month names, short or long."""
    parsed = _parse_date(da)
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
    sep = r"[-/. ]"
    words = r"[\s\-./,]{0,3}"
    ordinal = r"(?:st|nd|rd|th)?"
    end = r"(?!\d)"
    out = [_guarded(str(y), r"\d", f"{sep}{num}{sep}{day}{end}")]
    for dv in days:
        out.append(_guarded(dv, r"\d", f"{sep}{num}{sep}{y}{end}"))
        out.append(_guarded(dv, r"\d", f"{ordinal}{words}(?:of\\s+)?{any_name}{words}{y}{end}"))
    for nv in nums:
        out.append(_guarded(nv, r"\d", f"{sep}{day}{sep}{y}{end}"))
    for name in dict.fromkeys([month, *shorts]):
        dot = "" if name == month else r"\.?"
        out.append(_guarded(name, _LETTER, f"{dot}{words}{day}{ordinal}{words}{y}{end}"))
    return out


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
    _patterns: dict[str, re.Pattern[str] | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    # -- collecting -----------------------------------------------------------------------

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
        if not raw.isascii():
            self._note_codecs(raw)
        if kind == NAME:
            self._add_name(raw)
        elif kind == DATE:
            if vr == _DATE_VR or _parse_date(text) is not None:
                self._add_date(text)
            else:
                self._add_plain(text)
        elif kind == ADDRESS:
            self._add_address(raw, text)
        elif kind == PHONE:
            self._add_phone(raw, text)
        elif kind == TELECOM:
            self._add_telecom(raw, text)
        elif kind == CODE:
            if len(text) >= MIN_SUBSTRING_LENGTH or is_unspaced(text):
                self.values.add(text)
            elif len(text) >= 3:
                self.exact.add(text)
        else:
            self._add_plain(text)
            if kind == ID:
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
        letters_digits = compact(text)
        digits = sum(c.isdigit() for c in letters_digits)
        if len(letters_digits) >= MIN_LOOSE_LENGTH and digits and letters_digits.isascii():
            self.loose.add(letters_digits)

    def _add_date(self, da: str) -> None:
        self.values.update(date_spellings(da)[:5])
        if _parse_date(da) is not None:
            self.dates.add(da)

    def _add_name(self, raw: str) -> None:
        """PS3.5 6.2: up to three component groups (alphabetic, ideographic, phonetic) of up
        to five components (family, given, middle, prefix, suffix)."""
        for group in raw.split("=")[:3]:
            whole = normalise(group)
            if not whole or whole in _PLACEHOLDERS or whole in _OUR_DUMMIES:
                continue
            components = [normalise(c) for c in group.split("^")]
            # Prefix and suffix ("Dr", "Mrs", "MD") name nobody: not words on their own.
            names = [c for c in components[:3] if c and c not in _PLACEHOLDERS]
            for phrase in dict.fromkeys((whole, " ".join(names))):
                self._add_phrase(phrase)
            for component in names:
                self._add_name_part(component)

    def _add_phrase(self, phrase: str) -> None:
        if not phrase:
            return
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

    def _add_name_part(self, component: str) -> None:
        if is_unspaced(component):
            self._add_unspaced(component)
            for token in component.split(" "):
                if token != component:
                    self._add_unspaced(token)
            return
        tokens = [t.strip(_NAME_PUNCTUATION) for t in component.split(" ")]
        tokens = [t for t in tokens if t]
        several = len(tokens) > 1
        if several:
            self._add_word(" ".join(tokens))
        for token in tokens:
            if several and token in _NAME_PARTICLES:
                continue  # "van" of "van der Berg"; the whole family name is a word above
            self._add_word(token)
            pieces = [p for p in re.split(r"[-']", token) if p]
            if len(pieces) > 1:  # "smith-jones": "smith", "jones"; "o'brien": "obrien"
                self._add_word("".join(pieces))
                for piece in pieces:
                    if piece not in _NAME_PARTICLES:
                        self._add_word(piece)

    def _add_word(self, word: str) -> None:
        if sum(c.isalnum() for c in word) >= 2 and word not in _PLACEHOLDERS:
            self.words.add(word)

    def _add_address(self, raw: str, text: str) -> None:
        """The whole address, and the parts people write alone: the street line, runs of
        its words, a town, a postcode (its separators ignored)."""
        self._add_plain(text)
        for piece in _ADDRESS_PARTS.split(raw):
            part = normalise(piece).strip(" .")
            if not part:
                continue
            if is_unspaced(part):
                if len(part.replace(" ", "")) >= 4:
                    self.values.add(part)
                continue
            has_digit = any(c.isdigit() for c in part)
            has_letter = any(c.isalpha() for c in part)
            least = MIN_STREET_LENGTH if has_digit else MIN_TOWN_LENGTH
            if has_letter and len(part) >= least:
                self.words.add(part)
            run: list[str] = []
            run_digits: bool | None = None
            for token in [*part.split(" "), ""]:
                token_digits = any(c.isdigit() for c in token) if token else None
                if run and token_digits is not run_digits:
                    joined = " ".join(run)
                    if run_digits:
                        self._add_loose(joined)
                    elif len(joined) >= MIN_ADDRESS_WORDS_LENGTH:
                        self.words.add(joined)
                    run = []
                run.append(token)
                run_digits = token_digits

    def _add_phone(self, raw: str, text: str) -> None:
        """The number as written, its digits with any separators, and its national digits
        without the country code ("+44 20 7946 0958" also as "020 7946 0958")."""
        self._add_plain(text)
        digits = "".join(c for c in text if c.isdigit())
        if len(digits) >= MIN_LOOSE_LENGTH:
            self.loose.add(digits)
        international = raw.strip().startswith("+") or digits.startswith("00")
        if international:
            number = digits[2:] if digits.startswith("00") else digits
            for code_length in (1, 2, 3):  # country codes have 1 to 3 digits (ITU E.164)
                national = number[code_length:]
                if len(national) >= MIN_PHONE_DIGITS:
                    self.loose.update((national, "0" + national))
        elif digits.startswith("0") and len(digits) > MIN_PHONE_DIGITS:
            self.loose.add(digits[1:])  # the trunk 0 is dropped after a country code

    def _add_telecom(self, raw: str, text: str) -> None:
        self._add_plain(text)
        for piece in _TELECOM_PARTS.split(raw):
            part = piece.strip()
            lowered = part.lower()
            for scheme in ("mailto:", "tel:", "fax:"):
                if lowered.startswith(scheme):
                    part = part[len(scheme) :].strip()
            if not part:
                continue
            if "@" in part:
                self._add_plain(normalise(part))
            elif sum(c.isdigit() for c in part) >= MIN_LOOSE_LENGTH:
                self._add_phone(part, normalise(part))

    def _note_codecs(self, raw: str) -> None:
        unspaced = is_unspaced(raw)
        for codec in _CODECS:
            if codec in _MULTIBYTE_CODECS and not unspaced:
                continue  # they encode any Latin letter too; only CJK text needs them
            try:
                encoded = raw.encode(codec)
            except (UnicodeError, LookupError):
                continue
            try:
                if encoded == raw.encode("latin-1"):
                    continue
            except UnicodeError:
                pass
            self.codecs.add(codec)

    # -- searching ------------------------------------------------------------------------

    def pattern(self) -> re.Pattern[str] | None:
        """One regex matching any identifier in folded text (values anywhere, words whole)."""
        return self._pattern("all")

    def value_pattern(self) -> re.Pattern[str] | None:
        """Whole identifying values only, for vocabularies (codes, CS) where a name part alone
        is an ordinary word ("HEAD", "PERFUSION"), not a leak."""
        return self._pattern("values")

    def bytes_pattern(self) -> re.Pattern[str] | None:
        """For bytes read as text (numbers, binary values): as `pattern`, without the name
        parts of one or two letters, which arbitrary bytes spell by chance."""
        return self._pattern("bytes")

    def _pattern(self, which: str) -> re.Pattern[str] | None:
        if which not in self._patterns:
            self._patterns[which] = _compiled(
                which,
                frozenset(self.values),
                frozenset(self.phrases),
                frozenset(self.loose),
                frozenset(self.dates),
                frozenset(self.words) if which != "values" else frozenset(),
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
        """`text`, if it is bytes read as Latin-1, as the other character sets the input's
        identifiers were written in would read those bytes (none for ASCII text). A file
        that declares no character set may still hold UTF-8; `utf8_only` for binary values,
        which any single-byte character set reads as some text."""
        if not self.codecs or (text.isascii() and "\x1b" not in text):
            return []
        try:
            data = text.encode("latin-1")
        except UnicodeError:
            return []  # already decoded text, not bytes read as Latin-1
        out: list[str] = []
        for codec in sorted(self.codecs):
            if utf8_only and codec != "utf-8":
                continue
            try:
                reading = data.decode(codec, errors="strict" if codec == "utf-8" else "replace")
            except UnicodeError:
                continue
            if reading != text:
                out.append(reading)
        return out

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
        folded, starts, ends = fold_with_map(text)
        out: list[str] = []
        last = 0
        for match in pattern.finditer(folded):
            if match.end() == match.start():
                continue
            if starts is None or ends is None:
                begin, end = match.start(), match.end()
            else:
                begin, end = starts[match.start()], ends[match.end() - 1]
            begin = max(begin, last)
            out.append(text[last:begin])
            out.append(replacement)
            last = end
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)


# DICOM character sets (PS3.3 C.12.1.1.2) as Python codecs: a value in one of them whose
# bytes were read as Latin-1 is read again in these (Identifiers.readings).
_CODECS = (
    "utf-8", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6", "iso8859_7",
    "iso8859_8", "iso8859_9", "iso8859_15", "tis_620", "gb18030", "euc_kr", "iso2022_jp_2",
)  # fmt: skip
_MULTIBYTE_CODECS = frozenset({"gb18030", "euc_kr", "iso2022_jp_2"})


_SETS = ("values", "words", "exact", "phrases", "loose", "dates", "codecs")


@lru_cache(maxsize=4096)
def _contribution(raw: str, vr: str, kind: str) -> tuple[frozenset[str], ...] | None:
    """What one value adds to each set of `Identifiers`, worked out once: a study's
    instances repeat the same names and IDs."""
    found = Identifiers()
    if not found._add(raw, vr, kind):
        return None
    return tuple(frozenset(getattr(found, name)) for name in _SETS)


@lru_cache(maxsize=256)
def _compiled(
    which: str,
    values: frozenset[str],
    phrases: frozenset[str],
    loose: frozenset[str],
    dates: frozenset[str],
    words: frozenset[str],
) -> re.Pattern[str] | None:
    """One alternation, longest first (so a whole name is cut, not its first word), compiled
    once per set of identifiers: a study's instances share them."""
    parts: list[tuple[int, str]] = [(len(v), _literal(v)) for v in values]
    parts += [(len(p), _bounded(p)) for p in phrases]
    parts += [(len(c), _loose(c)) for c in loose]
    parts += [(10, s) for da in dates for s in _date_sources(da)]
    least = MIN_NAME_COMPONENT_LENGTH if which == "bytes" else 0
    parts += [(len(w), _bounded(w)) for w in words if len(w) >= least]
    parts.sort(key=lambda p: (-p[0], p[1]))
    source = "|".join(s for _length, s in parts)
    return re.compile(source) if source else None


def _literal(value: str) -> str:
    """A value with any run of separators between its words (none needed in CJK)."""
    joiner = _SEP + ("*" if is_unspaced(value) else "+")
    return joiner.join(re.escape(part) for part in value.split(" "))


def _edge(ch: str, strict: bool) -> str | None:
    if strict:
        return _ALNUM
    if ch.isdigit():
        return r"\d"
    if ch.isalpha():
        return _LETTER
    return None


def _guarded(first: str, edge: str | None, rest: str) -> str:
    """`first` (plain text), then `rest` (a regex), where no `edge` character comes before.

    The check follows the first character instead of preceding it: an alternation whose
    every branch starts with a literal lets `re` skip to the positions where one of those
    characters is (sre_compile's charset prefix), several times faster on clean text.
    """
    head = re.escape(first[0])
    guard = f"(?<!{edge}{head})" if edge else ""
    return head + guard + re.escape(first[1:]) + rest


def _bounded(word: str) -> str:
    """A word or phrase where no letter touches it (a digit may: "smith01"); one or two
    letters long, where neither a letter nor a digit does."""
    strict = len(word) < MIN_NAME_COMPONENT_LENGTH
    before, after = _edge(word[0], strict), _edge(word[-1], strict)
    literal = _literal(word)[len(re.escape(word[0])) :]
    return _guarded(word[0], before, literal + (f"(?!{after})" if after else ""))


def _loose(letters_digits: str) -> str:
    """An ID with up to two separators between any two of its characters (a dot only in
    long or lettered IDs); no digit touches a digit at its ends, no letter a letter."""
    dotted = not letters_digits.isdigit() or len(letters_digits) >= MIN_DOTTED_DIGITS
    separator = _LOOSE_SEP if dotted else _LOOSE_SEP_NO_DOT
    body = "".join(separator + re.escape(c) for c in letters_digits[1:])
    before, after = _edge(letters_digits[0], False), _edge(letters_digits[-1], False)
    return _guarded(letters_digits[0], before, body + (f"(?!{after})" if after else ""))


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
    _collect(ds, keeps, found, depth=0, context=0)
    return found


def _collect(
    ds: Dataset, keeps: Callable[[int], bool], found: Identifiers, depth: int, context: int
) -> None:
    """`context`: the tag of the sequence holding `ds` when that sequence says what its
    coded entries are (a person's or an institution's ID), else 0."""
    if depth > 64:
        raise ValueError("sequence nesting deeper than 64 levels")
    for tag in list(ds.keys()):
        tag = int(tag)
        kind = _TAG_KINDS.get(tag)
        vr = _cheap_vr(ds, tag)
        if vr == "SQ":
            inner = tag if tag in _PERSON_CODE_SEQUENCES or tag in _ISSUER_SEQUENCES else 0
            if tag == _INSTITUTION_CODES:
                inner = tag
            if inner and keeps(tag):
                inner = 0  # a sequence the profile keeps keeps its codes
            for item in ds[tag].value or ():
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
        elem = ds[tag]
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


@lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _cheap_vr(ds: Dataset, tag: int) -> str:
    """The VR without converting the value where the file or the dictionary says it."""
    vr = ds.get_item(tag).VR
    if vr and vr != "UN":
        return str(vr)
    if vr is None and tag >> 16 & 1 == 0:
        known = _dictionary_vr(tag)
        if known is not None:
            return known
    return vr_of(ds, tag)


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
