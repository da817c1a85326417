"""Clean an XML document, HL7 CDA above all: identities masked, free text redacted.

CDA (HL7 CDA R2, carried by Encapsulated CDA, PS3.3 A.45.2) keeps who the document is
about and by whom in structured header elements, and free text in the narrative block.
The structured identity (names of persons and organisations, addresses, telecoms, ids,
birth times) is replaced by the element with nullFlavor="MSK" (masked, HL7 V3 NullFlavor),
so the document keeps its shape; every remaining text node and free-text attribute goes
through find_spans. Points in time move by the patient's date shift (masked without one).

XML is parsed with the standard library, but a document type declaration is refused
outright: entities are how XML bombs and external-entity reads work, and CDA never needs
them. Comments and processing instructions are dropped (comments are free text no reader
of the document sees).
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.parsers import expat

from gateway.documents.redaction import (
    DocumentError,
    FindSpans,
    blank_spans,
    blank_spans_in_parts,
)

__all__ = ["CDA_NAMESPACE", "CleanedXml", "clean_xml", "placeholder_cda"]

CDA_NAMESPACE = "urn:hl7-org:v3"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
XSI_TYPE = f"{{{XSI_NAMESPACE}}}type"
MAX_XML_BYTES = 64 * 1024 * 1024

# Entities whose name, address, telecom and id say who someone is (CDA R2 header and
# clinical statement participants). A `name` elsewhere (manufacturedMaterial, playingEntity)
# names a drug or a device: it is clinical content and only goes through find_spans.
IDENTIFIED_ENTITIES = frozenset(
    {
        "patient", "patientRole", "guardian", "guardianPerson", "guardianOrganization",
        "assignedPerson", "assignedEntity", "assignedAuthor", "associatedEntity",
        "associatedPerson", "relatedEntity", "relatedPerson", "relatedSubject", "subject",
        "intendedRecipient", "informationRecipient", "representedOrganization",
        "representedCustodianOrganization", "assignedCustodian", "providerOrganization",
        "receivedOrganization", "serviceProviderOrganization", "scopingOrganization",
        "wholeOrganization", "asOrganizationPartOf", "healthCareFacility", "place",
        "birthplace", "maintainingPerson", "recordTarget", "author", "custodian",
        "legalAuthenticator", "authenticator", "informant", "participant", "dataEnterer",
        "performer", "encounterParticipant", "responsibleParty", "participantRole",
        "location",
    }
)  # fmt: skip
# Elements masked inside those entities. Addresses, telecoms and instance identifiers are
# masked everywhere: an id's extension is often a record or accession number, and its root
# names the issuing system (the DICOM side replaces UIDs for the same reason).
IDENTITY_ELEMENTS = frozenset({"name", "birthTime", "deceasedTime"})
MASKED_EVERYWHERE = frozenset({"addr", "telecom", "id", "setId"})
# A clinical statement's value typed as a name, address, telecom or identifier is one.
IDENTITY_TYPES = frozenset({"PN", "ON", "EN", "TN", "AD", "TEL", "II"})
# Attributes that hold codes, OIDs, UIDs, types or references, never free text.
STRUCTURAL_ATTRIBUTES = frozenset(
    {
        "code", "codeSystem", "codeSystemVersion", "root", "classCode", "moodCode",
        "typeCode", "determinerCode", "nullFlavor", "use", "unit", "mediaType",
        "representation", "ID", "IDREF", "styleCode", "contextControlCode",
        "contextConductionInd", "inversionInd", "negationInd", "operator", "inclusive",
        "integrityCheckAlgorithm", "compression", "language", "qualifier", "xmlns",
        XSI_TYPE, f"{{{XSI_NAMESPACE}}}schemaLocation",
    }
)  # fmt: skip
# A point in time (HL7 V3 TS): YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ], in an element that
# holds one: effectiveTime, time, the bounds of an interval, or any xsi:type *TS.
TIME_STAMP = re.compile(
    r"(?P<date>(?P<y>(?:1[89]|20)\d\d)(?P<m>0[1-9]|1[0-2])?(?P<d>0[1-9]|[12]\d|3[01])?)"
    r"(?:[0-2]\d(?:[0-5]\d(?:[0-5]\d(?:\.\d+)?)?)?)?(?:[+-]\d{4})?"
)
TIME_ELEMENTS = frozenset(
    {"effectiveTime", "time", "low", "high", "center", "birthTime", "deceasedTime",
     "expectedUseTime", "originalTime"}
)  # fmt: skip
# A TS, INT, REAL or PQ value: digits and signs only, no text to redact.
_NUMERIC_VALUE = re.compile(r"[0-9.+\-]*")
# Narrative block (CDA R2 StrucDocText) elements a reader sees as separate lines or cells;
# the other narrative elements (content, sub, sup, linkHtml) run on inline.
BLOCK_ELEMENTS = frozenset(
    {
        "paragraph", "br", "list", "item", "table", "caption", "thead", "tbody", "tfoot",
        "tr", "td", "th", "footnote", "col", "colgroup", "renderMultiMedia",
    }
)  # fmt: skip
# CDA elements of type ED or StrucDocText: their text is read as one block.
TEXT_BLOCKS = frozenset({"text", "originalText"})
MAX_DEPTH = 200  # deeper nesting is no real document, and would exhaust the serialiser's stack


@dataclass
class _TextNode:
    """The text or the tail of an element: where a part of a block's text lives."""

    element: ET.Element
    field: str  # "text" or "tail"

    def get(self) -> str:
        return getattr(self.element, self.field) or ""

    def set(self, value: str) -> None:
        setattr(self.element, self.field, value)


@dataclass(frozen=True)
class CleanedXml:
    """The cleaned XML (UTF-8) and what was done to it (counts only)."""

    data: bytes
    kind: str  # "cda" when the root is ClinicalDocument, else "xml"
    redacted: int


def clean_xml(data: bytes, find_spans: FindSpans, shift_days: int | None = None) -> CleanedXml:
    """Mask identities, redact free text, move or mask dates (see `_clean_time`), and write
    `data` back as UTF-8 XML."""
    root, prefixes = _parse(data)
    is_cda = _local(root.tag) == "ClinicalDocument"
    redacted = _mask_identities(root) if is_cda else 0
    for unit in _text_units(root, is_cda):
        redacted += _clean_unit(unit, find_spans)
    for element in root.iter():
        if is_cda and _clean_time(element, shift_days):
            redacted += 1
            continue
        for name, value in element.attrib.items():
            if _local(name) in STRUCTURAL_ATTRIBUTES or name in STRUCTURAL_ATTRIBUTES:
                continue
            if _local(name) == "value" and _NUMERIC_VALUE.fullmatch(value):
                continue
            cleaned, count = blank_spans(value, find_spans)
            element.set(name, cleaned)
            redacted += count
    return CleanedXml(_serialise(root, prefixes), "cda" if is_cda else "xml", redacted)


def _clean_time(element: ET.Element, shift_days: int | None) -> bool:
    """A CDA point in time (TS: `value="20240314093000+0100"`) moves by the patient's date
    shift, as the DICOM dates around it do, so the document tells no true date and its
    intervals stay right; without a shift it is masked. True when the element was one."""
    value = element.get("value")
    if value is None or element.get("unit") is not None:
        return False
    match = TIME_STAMP.fullmatch(value)
    if match is None or not (
        _local(element.tag) in TIME_ELEMENTS or element.get(XSI_TYPE, "").endswith("TS")
    ):
        return False
    try:
        day = dt.date(int(match["y"]), int(match["m"] or 1), int(match["d"] or 1))
    except ValueError:
        return False
    if shift_days is None:
        _mask(element)
        return True
    moved = day - dt.timedelta(days=shift_days)
    digits = f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"[: len(match["date"])]
    element.set("value", digits + value[len(match["date"]) :])
    return True


def _mask_identities(root: ET.Element) -> int:
    """Mask the identity elements of a CDA document; how many were masked.

    Embedded base64 content (an ED with representation="B64": a PDF, an image) is masked
    too: it is a document inside the document, and it is not read here.
    """
    masked = 0
    for parent in list(root.iter()):
        parent_name = _local(parent.tag)
        for child in parent:
            if not isinstance(child.tag, str):
                continue
            name = _local(child.tag)
            data_type = child.get(XSI_TYPE, "").rsplit(":", 1)[-1]
            identity = (
                name in MASKED_EVERYWHERE
                or data_type in IDENTITY_TYPES
                or (name in IDENTITY_ELEMENTS and parent_name in IDENTIFIED_ENTITIES)
            )
            if identity or child.get("representation", "").upper() == "B64":
                _mask(child)
                masked += 1
    return masked


def _text_units(root: ET.Element, is_cda: bool) -> list[list[_TextNode | str]]:
    """The document's text as units find_spans reads whole, in document order.

    A CDA text block (StrucDocText, ED) is one unit, its parts joined as a reader sees
    them: a newline at block elements, nothing between inline ones. Elsewhere each text
    node is its own unit.
    """
    units: list[list[_TextNode | str]] = []
    inside_block: set[int] = set()
    for element in root.iter():
        if id(element) in inside_block:
            continue
        if is_cda and _local(element.tag) in TEXT_BLOCKS:
            units.append(_block_parts(element))
            inside_block.update(id(e) for e in element.iter())
            units.append([_TextNode(element, "tail")])
            continue
        units.append([_TextNode(element, "text")])
        units.append([_TextNode(element, "tail")])
    return units


def _block_parts(block: ET.Element) -> list[_TextNode | str]:
    """The text nodes under `block` with the separators a reader sees between them."""
    parts: list[_TextNode | str] = [_TextNode(block, "text")]
    # An explicit stack rather than recursion; depth is bounded by the parse anyway.
    stack: list[tuple[ET.Element, int]] = [(block, 0)]
    while stack:
        element, index = stack.pop()
        if index > 0:  # back from child index - 1: close it, then its tail
            child = element[index - 1]
            parts += [_separator(child), _TextNode(child, "tail")]
        if index < len(element):
            child = element[index]
            stack.append((element, index + 1))
            parts += [_separator(child), _TextNode(child, "text")]
            stack.append((child, 0))
    return parts


def _separator(element: ET.Element) -> str:
    return "\n" if _local(element.tag) in BLOCK_ELEMENTS else ""


def _clean_unit(unit: list[_TextNode | str], find_spans: FindSpans) -> int:
    texts = [part.get() if isinstance(part, _TextNode) else part for part in unit]
    blanked, count = blank_spans_in_parts(texts, find_spans)
    if count:
        for part, text in zip(unit, blanked, strict=True):
            if isinstance(part, _TextNode) and part.get():
                part.set(text)
    return count


def _parse(data: bytes) -> tuple[ET.Element, dict[str, str]]:
    """The document's tree and the prefix it first declared for each namespace."""
    if len(data) > MAX_XML_BYTES:
        raise DocumentError(f"XML document larger than {MAX_XML_BYTES} bytes")
    # A first pass with expat itself, which reports declarations ElementTree would act on.
    checker = expat.ParserCreate(namespace_separator="}")
    prefixes: dict[str, str] = {}

    def declare(prefix: str | None, uri: str) -> None:
        prefix = prefix or ""
        if uri not in prefixes and prefix not in prefixes.values():
            prefixes[uri] = prefix

    def refuse_doctype(*_: object) -> None:
        raise DocumentError("XML document with a DOCTYPE declaration (entities are refused)")

    def refuse_entity(*_: object) -> None:
        raise DocumentError("XML document with an ENTITY declaration")

    depth = 0

    def enter(*_: object) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_DEPTH:
            raise DocumentError(f"XML document nested deeper than {MAX_DEPTH} elements")

    def leave(*_: object) -> None:
        nonlocal depth
        depth -= 1

    checker.StartDoctypeDeclHandler = refuse_doctype
    checker.EntityDeclHandler = refuse_entity
    checker.StartElementHandler = enter
    checker.EndElementHandler = leave
    checker.StartNamespaceDeclHandler = declare
    try:
        checker.Parse(data, True)
        return ET.fromstring(data), prefixes
    except (expat.ExpatError, ET.ParseError) as exc:
        # expat's message is a position and an error name, never the document's text.
        raise DocumentError(f"XML document does not parse ({_expat_reason(exc)})") from None


def _expat_reason(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return expat.ErrorString(code) or "unknown error"
    return type(exc).__name__


def _local(tag: object) -> str:
    """`tag` without its {namespace}."""
    text = str(tag)
    return text.rsplit("}", 1)[-1]


def _mask(element: ET.Element) -> None:
    """Empty `element` and mark it masked: it stays where the CDA schema requires it.

    Its xsi:type stays too: an observation's value is of the abstract type ANY, and the
    schema needs the concrete type even of a null value.
    """
    tail = element.tail  # the text after the element is not its content (cleaned apart)
    data_type = element.get(XSI_TYPE)
    element.clear()  # children, text, tail and attributes
    element.tail = tail
    if data_type is not None:
        element.set(XSI_TYPE, data_type)
    element.set("nullFlavor", "MSK")


def _serialise(root: ET.Element, declared: dict[str, str]) -> bytes:
    """The tree as UTF-8 XML with the document's own namespace prefixes.

    ElementTree would write "ns0:ClinicalDocument" and lose the prefixes that xsi:type
    values ("CD", "cda:PQ") are resolved against, so names are qualified here with the
    prefixes the document declared, and all declarations are put on the root.
    """
    has_unqualified = any(not str(e.tag).startswith("{") for e in root.iter())
    element_prefixes: dict[str, str] = {}
    attribute_prefixes: dict[str, str] = {}
    in_use = set(declared.values())

    def new_prefix() -> str:
        number = 0
        while f"ns{number}" in in_use:
            number += 1
        in_use.add(f"ns{number}")
        return f"ns{number}"

    def qualified(name: str, attribute: bool) -> str:
        if not name.startswith("{"):
            return name
        uri, local = name[1:].split("}", 1)
        if uri == XML_NAMESPACE:
            return f"xml:{local}"
        chosen = attribute_prefixes if attribute else element_prefixes
        if uri not in chosen:
            prefix = declared.get(uri)
            # A default namespace cannot qualify an attribute, nor be declared over
            # elements that have no namespace.
            if prefix is None or (prefix == "" and (attribute or has_unqualified)):
                prefix = new_prefix()
            chosen[uri] = prefix
        prefix = chosen[uri]
        return f"{prefix}:{local}" if prefix else local

    for element in root.iter():
        element.tag = qualified(str(element.tag), attribute=False)
        attributes = {qualified(name, True): value for name, value in element.attrib.items()}
        element.attrib.clear()
        element.attrib.update(attributes)
    declarations = {
        (f"xmlns:{prefix}" if prefix else "xmlns"): uri
        for mapping in (element_prefixes, attribute_prefixes)
        for uri, prefix in mapping.items()
    }
    root.attrib = {**declarations, **root.attrib}
    body = ET.tostring(root, encoding="unicode")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode("utf-8")


def placeholder_cda() -> bytes:
    """A minimal CDA R2 document saying the original was removed, every identity masked."""
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3">'
        b'<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>'
        b'<id nullFlavor="MSK"/>'
        b'<code nullFlavor="UNK"/>'
        b"<title>Document removed by de-identification</title>"
        b'<effectiveTime nullFlavor="MSK"/>'
        b'<confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>'
        b'<recordTarget><patientRole><id nullFlavor="MSK"/></patientRole></recordTarget>'
        b'<author><time nullFlavor="MSK"/><assignedAuthor><id nullFlavor="MSK"/>'
        b"</assignedAuthor></author>"
        b'<custodian><assignedCustodian><representedCustodianOrganization><id nullFlavor="MSK"/>'
        b"</representedCustodianOrganization></assignedCustodian></custodian>"
        b"<component><nonXMLBody><text>Document removed by de-identification.</text>"
        b"</nonXMLBody></component>"
        b"</ClinicalDocument>\n"
    )
