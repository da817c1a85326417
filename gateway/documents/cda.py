"""Clean an XML document, HL7 CDA above all: identities masked, free text redacted.

CDA (HL7 CDA R2, carried by Encapsulated CDA, PS3.3 A.45.2) keeps who the document is
about and by whom in structured header elements, and free text in the narrative block.
The structured identity (names of persons and organisations, addresses, telecoms, ids,
birth times) is replaced by the element with nullFlavor="MSK" (masked, HL7 V3 NullFlavor),
so the document keeps its shape; every remaining text node and free-text attribute goes
through find_spans.

XML is parsed with the standard library, but a document type declaration is refused
outright: entities are how XML bombs and external-entity reads work, and CDA never needs
them. Comments and processing instructions are dropped (comments are free text no reader
of the document sees).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.parsers import expat

from gateway.documents.redaction import DocumentError, FindSpans, blank_spans

__all__ = ["CDA_NAMESPACE", "CleanedXml", "clean_xml", "placeholder_cda"]

CDA_NAMESPACE = "urn:hl7-org:v3"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
SDTC_NAMESPACE = "urn:hl7-org:sdtc"
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
    }
)  # fmt: skip
# Elements masked inside those entities. Addresses, telecoms and instance identifiers are
# masked everywhere: an id's extension is often a record or accession number, and its root
# names the issuing system (the DICOM side replaces UIDs for the same reason).
IDENTITY_ELEMENTS = frozenset({"name", "birthTime", "deceasedTime"})
MASKED_EVERYWHERE = frozenset({"addr", "telecom", "id", "setId"})
# Attributes that hold codes, OIDs, UIDs, types or references, never free text.
STRUCTURAL_ATTRIBUTES = frozenset(
    {
        "code", "codeSystem", "codeSystemVersion", "root", "classCode", "moodCode",
        "typeCode", "determinerCode", "nullFlavor", "use", "unit", "mediaType",
        "representation", "ID", "IDREF", "styleCode", "contextControlCode",
        "contextConductionInd", "inversionInd", "negationInd", "operator", "inclusive",
        "integrityCheckAlgorithm", "compression", "language", "qualifier", "xmlns",
        f"{{{XSI_NAMESPACE}}}type", f"{{{XSI_NAMESPACE}}}schemaLocation",
    }
)  # fmt: skip
# A TS, INT, REAL or PQ value: digits and signs only, no text to redact.
_NUMERIC_VALUE = re.compile(r"[0-9.+\-]*")


@dataclass(frozen=True)
class CleanedXml:
    """The cleaned XML (UTF-8) and what was done to it (counts only)."""

    data: bytes
    kind: str  # "cda" when the root is ClinicalDocument, else "xml"
    redacted: int


def clean_xml(data: bytes, find_spans: FindSpans) -> CleanedXml:
    """Mask identities, redact free text, and write `data` back as UTF-8 XML."""
    root = _parse(data)
    redacted = 0
    is_cda = _local(root.tag) == "ClinicalDocument"
    for parent in list(root.iter()):
        parent_name = _local(parent.tag)
        for child in parent:
            if isinstance(child.tag, str) and _masked(parent_name, _local(child.tag), is_cda):
                _mask(child)
                redacted += 1
    for element in root.iter():
        element.text, count = _clean_text(element.text, find_spans)
        redacted += count
        element.tail, count = _clean_text(element.tail, find_spans)
        redacted += count
        for name, value in element.attrib.items():
            if _local(name) in STRUCTURAL_ATTRIBUTES or name in STRUCTURAL_ATTRIBUTES:
                continue
            if _local(name) == "value" and _NUMERIC_VALUE.fullmatch(value):
                continue
            cleaned, count = blank_spans(value, find_spans)
            element.set(name, cleaned)
            redacted += count
    return CleanedXml(_serialise(root), "cda" if is_cda else "xml", redacted)


def _parse(data: bytes) -> ET.Element:
    if len(data) > MAX_XML_BYTES:
        raise DocumentError(f"XML document larger than {MAX_XML_BYTES} bytes")
    # A first pass with expat itself, which reports declarations ElementTree would act on.
    checker = expat.ParserCreate()

    def refuse_doctype(*_: object) -> None:
        raise DocumentError("XML document with a DOCTYPE declaration (entities are refused)")

    def refuse_entity(*_: object) -> None:
        raise DocumentError("XML document with an ENTITY declaration")

    checker.StartDoctypeDeclHandler = refuse_doctype
    checker.EntityDeclHandler = refuse_entity
    try:
        checker.Parse(data, True)
        return ET.fromstring(data)
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


def _masked(parent: str, child: str, is_cda: bool) -> bool:
    if not is_cda:
        return False
    if child in MASKED_EVERYWHERE:
        return True
    return child in IDENTITY_ELEMENTS and parent in IDENTIFIED_ENTITIES


def _mask(element: ET.Element) -> None:
    """Empty `element` and mark it masked: it stays where the CDA schema requires it."""
    element.clear()  # children, text, tail and attributes
    element.set("nullFlavor", "MSK")


def _clean_text(text: str | None, find_spans: FindSpans) -> tuple[str | None, int]:
    if text is None:
        return None, 0
    return blank_spans(text, find_spans)


def _serialise(root: ET.Element) -> bytes:
    # The CDA namespace becomes the default again rather than "ns0:", and xsi/sdtc keep
    # their usual prefixes, so xsi:type values ("CD", "PQ") stay resolvable.
    ET.register_namespace("xsi", XSI_NAMESPACE)
    ET.register_namespace("sdtc", SDTC_NAMESPACE)
    try:
        body = ET.tostring(root, encoding="unicode", default_namespace=CDA_NAMESPACE)
    except ValueError:  # an element outside the CDA namespace: no default namespace then
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
