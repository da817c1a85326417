"""Clean a plain-text document in the encoding it came in.

PS3.3 says nothing of the character set of an encapsulated text/plain document, so it is
read as UTF-8 when it decodes as such (a byte-order mark kept) and as Latin-1 otherwise,
which decodes any bytes; redaction marks are ASCII, so the text is written back unchanged
but for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.documents.redaction import DocumentError, FindSpans, blank_spans

__all__ = ["MAX_TEXT_BYTES", "CleanedText", "clean_plain_text"]

MAX_TEXT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CleanedText:
    """The cleaned text's bytes and how many spans were blanked."""

    data: bytes
    redacted: int


def clean_plain_text(data: bytes, find_spans: FindSpans) -> CleanedText:
    """`data` with every PHI span blanked, in the same encoding."""
    if len(data) > MAX_TEXT_BYTES:
        raise DocumentError(f"text document larger than {MAX_TEXT_BYTES} bytes")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        try:
            data.decode("utf-8-sig")
            encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
        except UnicodeDecodeError:
            encoding = "latin-1"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise DocumentError(f"text document is not valid {encoding}") from None
    cleaned, redacted = blank_spans(text, find_spans)
    return CleanedText(cleaned.encode(encoding), redacted)
