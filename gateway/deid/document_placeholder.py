"""What stands in for an Encapsulated Document the tag engine replaces (Table E.1-1: D).

A dummy of two NUL bytes with the old Encapsulated Document Length is an invalid document;
instead a minimal valid document of the same MIME type ("removed"), with a length that is
right. The document stage (gateway/documents/) then puts a cleaned copy in its place, or
its own placeholder, valid for every kind of document (CDA, STL, OBJ) the engine knows not.
"""

from __future__ import annotations

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from gateway.base.pdf_writer import text_pdf

ENCAPSULATED_DOCUMENT = 0x00420011
ENCAPSULATED_DOCUMENT_LENGTH = 0x00420015


_BY_MIME = {
    "application/pdf": text_pdf([["REMOVED"]]),
    "text/xml": b'<?xml version="1.0" encoding="UTF-8"?>\n<removed/>\n',
    "application/xml": b'<?xml version="1.0" encoding="UTF-8"?>\n<removed/>\n',
    "text/plain": b"REMOVED",
}


def placeholder_document(ds: Dataset) -> bytes:
    """Put the placeholder in place of `ds`'s Encapsulated Document, set its length, and
    return the original bytes (for the document stage; never written anywhere)."""
    original = ds[ENCAPSULATED_DOCUMENT].value or b""
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "") or "").strip().lower()
    placeholder = _BY_MIME.get(mime, b"REMOVED")
    set_document(ds, placeholder)
    return bytes(original) if isinstance(original, bytes | bytearray) else b""


def set_document(ds: Dataset, document: bytes) -> None:
    """The document and its length (PS3.3 C.24.2: before padding to an even length)."""
    length = DataElement(ENCAPSULATED_DOCUMENT_LENGTH, "UL", len(document))
    ds[ENCAPSULATED_DOCUMENT_LENGTH] = length
    padded = document + b"\x00" if len(document) % 2 else document
    ds[ENCAPSULATED_DOCUMENT] = DataElement(ENCAPSULATED_DOCUMENT, "OB", padded)
