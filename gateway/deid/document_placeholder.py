"""What stands in for an Encapsulated Document the tag engine replaces (Table E.1-1: D).

A dummy of two NUL bytes with the old Encapsulated Document Length is an invalid document;
instead a minimal valid document of the same MIME type ("removed"), with a length that is
right. The document stage (gateway/documents/) may then put a cleaned copy in its place.
"""

from __future__ import annotations

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

ENCAPSULATED_DOCUMENT = 0x00420011
ENCAPSULATED_DOCUMENT_LENGTH = 0x00420015


def _blank_pdf() -> bytes:
    """A one-page blank A4 PDF with a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


_BY_MIME = {
    "application/pdf": _blank_pdf(),
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
