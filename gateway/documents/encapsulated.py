"""Clean the Encapsulated Document (0042,0011) of an instance into a valid document.

PS3.15 Table E.1-1 lists Encapsulated Document with action D (replace with a dummy value);
two NUL bytes under an Encapsulated Document Length (0042,0015) that still states the old
size is not a document at all. Here the document is cleaned in its own format (PDF
re-rendered, CDA and text redacted, STL names dropped), or, for a profile that does not
clean documents, replaced by a valid "document removed" one of the same MIME type.

Only (0042,0011) and (0042,0015) are touched: Document Title and the other attributes are
the tag engine's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from gateway.base.pdf_writer import text_pdf
from gateway.documents.cda import clean_xml, placeholder_cda
from gateway.documents.pdf import clean_pdf
from gateway.documents.plain_text import clean_plain_text
from gateway.documents.redaction import (
    DocumentError,
    FindSpans,
    OcrWords,
    shown_mime_type,
)
from gateway.documents.stl import clean_stl, placeholder_stl

log = logging.getLogger(__name__)

__all__ = [
    "DocumentError",
    "DocumentReport",
    "clean_encapsulated_document",
    "document_kind",
    "placeholder_document",
]

ENCAPSULATED_DOCUMENT = Tag(0x0042, 0x0011)
ENCAPSULATED_DOCUMENT_LENGTH = Tag(0x0042, 0x0015)
REMOVED = "Document removed by de-identification."

# MIME type (lower case, parameters dropped) -> kind of cleaning.
KINDS: dict[str, str] = {
    "application/pdf": "pdf",
    "text/xml": "xml",  # PS3.3 C.24.2: Encapsulated CDA's MIME type is "text/XML"
    "application/xml": "xml",
    "application/cda+xml": "xml",
    "text/plain": "text",
    "model/stl": "stl",
    "application/sla": "stl",
    "model/obj": "obj",  # OBJ and MTL: placeholders only, their comments and names are
    "model/mtl": "mtl",  # free text no cleaner here reads yet
}
CLEANED_KINDS = frozenset({"pdf", "xml", "text", "stl"})
# When the MIME type is absent, the SOP Class says which document it must be (PS3.4 B.5).
SOP_CLASS_MIME_TYPES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.104.1": "application/pdf",
    "1.2.840.10008.5.1.4.1.1.104.2": "text/XML",
    "1.2.840.10008.5.1.4.1.1.104.3": "model/stl",
    "1.2.840.10008.5.1.4.1.1.104.4": "model/obj",
    "1.2.840.10008.5.1.4.1.1.104.5": "model/mtl",
}


@dataclass
class DocumentReport:
    """What cleaning did, in counts only, for the audit record."""

    kind: str  # "pdf", "cda", "xml", "text", "stl"
    pages: int
    redacted: int  # spans, boxes or names blanked


def clean_encapsulated_document(
    ds: Dataset,
    find_spans: FindSpans,
    ocr_words: OcrWords | None = None,
    shift_days: int | None = None,
) -> DocumentReport | None:
    """Replace ds's document by its cleaned version; None when ds has no (0042,0011).
    `shift_days`: how far the instance's dates moved (CDA times move as far; None: masked).

    Raises DocumentError when the document cannot be made safe (unknown MIME type, an
    encrypted or corrupt PDF, a scanned page with no OCR, a DOCTYPE in XML, a limit).
    """
    document = _document(ds)
    if document is None:
        return None
    kind = document_kind(ds)
    if kind not in CLEANED_KINDS:
        mime = shown_mime_type(_mime_type(ds))
        raise DocumentError(f"encapsulated document of MIME type {mime} cannot be cleaned")
    if kind == "pdf":
        pdf = clean_pdf(document, find_spans, ocr_words)
        _store(ds, pdf.data)
        report = DocumentReport("pdf", pdf.pages, pdf.redacted)
    elif kind == "xml":
        xml = clean_xml(document.rstrip(b"\x00"), find_spans, shift_days)
        _store(ds, xml.data)
        report = DocumentReport(xml.kind, 1, xml.redacted)
    elif kind == "text":
        text = clean_plain_text(document.rstrip(b"\x00"), find_spans)
        _store(ds, text.data)
        report = DocumentReport("text", 1, text.redacted)
    else:
        stl = clean_stl(document)
        _store(ds, stl.data)
        report = DocumentReport("stl", 1, stl.redacted)
    log.debug(
        "cleaned a %s document: %d pages, %d redactions", report.kind, report.pages, report.redacted
    )
    return report


def placeholder_document(ds: Dataset) -> None:
    """Replace ds's document by a valid minimal one of the same MIME type saying it was removed.

    For profiles that do not clean documents; nothing happens when ds has no (0042,0011).
    Raises DocumentError for a MIME type with no placeholder here.
    """
    if ENCAPSULATED_DOCUMENT not in ds:
        return
    kind = document_kind(ds)
    if kind == "pdf":
        _store(ds, text_pdf([[REMOVED]]))
    elif kind == "xml":
        _store(ds, placeholder_cda())
    elif kind == "text":
        _store(ds, (REMOVED + "\n").encode("ascii"))
    elif kind in ("obj", "mtl"):  # a comment alone is a valid, empty OBJ or MTL file
        _store(ds, ("# " + REMOVED + "\n").encode("ascii"))
    else:
        _store(ds, placeholder_stl())


def document_kind(ds: Dataset) -> str:
    """The cleaner `ds`'s document needs, from its MIME type (or SOP Class when absent)."""
    mime = _mime_type(ds)
    if not mime:
        raise DocumentError("encapsulated document without a MIME type")
    kind = KINDS.get(mime.split(";", 1)[0].strip().lower())
    if kind is None:
        raise DocumentError(
            f"encapsulated document of MIME type {shown_mime_type(mime)} cannot be cleaned"
        )
    return kind


def _mime_type(ds: Dataset) -> str:
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "") or "").strip()
    return mime or SOP_CLASS_MIME_TYPES.get(str(ds.get("SOPClassUID", "")), "")


def _document(ds: Dataset) -> bytes | None:
    """The document's bytes without padding, or None when the instance has none.

    PS3.3 C.24.2.1: Encapsulated Document Length is the length before padding; when it is
    absent or larger than the value, the whole value is used (the cleaners tolerate the pad).
    """
    if ENCAPSULATED_DOCUMENT not in ds:
        return None
    value = ds[ENCAPSULATED_DOCUMENT].value
    document = bytes(value) if value is not None else b""
    length = ds.get(ENCAPSULATED_DOCUMENT_LENGTH)
    stated = length.value if length is not None else None
    if isinstance(stated, int) and 0 < stated <= len(document):
        document = document[:stated]
    return document


def _store(ds: Dataset, document: bytes) -> None:
    """Set the document, padded to even length with NUL, and its unpadded length (PS3.3)."""
    padded = document + b"\x00" if len(document) % 2 else document
    ds.EncapsulatedDocument = padded
    ds.EncapsulatedDocumentLength = len(document)
