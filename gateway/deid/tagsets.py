"""Sets of attributes and VRs the engine treats alike (coded entries, vocabulary UIDs, ...)."""

from __future__ import annotations

from functools import cache

from pydicom.datadict import DicomDictionary

# The parts of a coded entry (PS3.3 8.8 Code Sequence Macro): vocabulary, not free text, so
# kept inside a sequence whose free text is replaced by dummies.
CODED_ENTRY_TAGS = frozenset(
    {
        0x00080100,  # Code Value
        0x00080102,  # Coding Scheme Designator
        0x00080103,  # Coding Scheme Version
        0x00080104,  # Code Meaning
        0x00080105,  # Mapping Resource
        0x0008010F,  # Context Identifier
        0x00080117,  # Context UID
        0x00080118,  # Mapping Resource UID
        0x00080119,  # Long Code Value
        0x00080120,  # URN Code Value
        0x00080122,  # Mapping Resource Name
    }
)


# Retained free text searched for this instance's identifiers (CS, AE and UI are codes).
SCRUBBED_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})

DICOM_ROOT = "1.2.840.10008."
_VOCABULARY_UID_KEYWORDS = frozenset(
    {
        "CodingSchemeUID",
        "ContextUID",
        "ContextGroupExtensionCreatorUID",
        "MappingResourceUID",
        "CreatorVersionUID",
        "PrivateInformationCreatorUID",
        "SegmentationTemplateUID",
        "RepositoryUniqueID",
        "HomeCommunityID",
    }
)


@cache
def vocabulary_uid_tags() -> frozenset[int]:
    """UI attributes that name a class, syntax or vocabulary, not an instance.

    Table E.1-1 lists the instance UIDs it knows; newer instance-like UIDs it does not list
    (Multi-frame Source SOP Instance UID, Target Frame of Reference UID, Assertion UID, ...)
    are remapped like U, so the output never keeps an instance UID of the input. Class and
    syntax UIDs, coding schemes and context groups are kept.
    """
    return frozenset(
        tag
        for tag, (vr, _vm, _name, _retired, keyword) in DicomDictionary.items()
        if vr == "UI"
        and (keyword.endswith(("ClassUID", "SyntaxUID")) or keyword in _VOCABULARY_UID_KEYWORDS)
    )


CODE_MEANING = 0x00080104
# A sequence of codes that identify a person (PS3.3 10.1: Person Identification Macro): its
# Code Value is an ID, so D replaces the codes too, not only the free text.
PERSON_IDENTIFICATION_CODES = 0x00401101
# The equipment's maker, model and software: vocabulary that a name recognizer would misread
# ("Philips", "Marconi"); a whole identifying value there is still caught by the verify gate.
EQUIPMENT_TAGS = frozenset({0x00080070, 0x00081090, 0x00181020, 0x00020013, 0x00181210})

# Coding schemes of the standard and the terminologies DICOM uses (PS3.16 Section 8): their
# Code Meanings are vocabulary. Any other scheme ("99LOCAL", "L", none) is a site's own, whose
# meanings are free text someone typed ("CT CHEST PER DR SMITH") and are cleaned.
_STANDARD_SCHEMES = frozenset(
    {
        "DCM", "SCT", "SRT", "SNM3", "LN", "UCUM", "FMA", "RADLEX", "NCIT", "NCIt", "UMLS",
        "MDC", "ICD10", "I10", "I9C", "I9", "ICD10PCS", "ACR", "BI", "NEU", "UBERON", "MSH",
        "RXNORM", "NDC", "ATC", "HL7", "ISO3166_1", "ISO639_1", "ISO639_2", "IEC61217",
        "NYUMCCG", "ITIS_TSN", "MGI", "PUBCHEM_CID", "DC", "CD", "HUGO", "NCBI",
        "CPT4", "C4", "C5", "ICD9CM", "I11", "ICDO3", "ASTM-sigpurpose", "DCMUID", "RFC5646",
    }
)  # fmt: skip


def standard_scheme(designator: object) -> bool:
    """Whether a Coding Scheme Designator names a public terminology (see above)."""
    return str(designator or "").strip() in _STANDARD_SCHEMES
