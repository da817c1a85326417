"""The documents engine: encapsulated documents (PDF, CDA, text, STL) cleaned, not blanked.

Pure like the other engines: a pydicom Dataset in, the same Dataset with a cleaned (or
placeholder) document out, and DocumentError when it cannot be made safe. The entry
points are in `encapsulated`.
"""

from gateway.documents.encapsulated import (
    DocumentError,
    DocumentReport,
    clean_encapsulated_document,
    placeholder_document,
)

__all__ = [
    "DocumentError",
    "DocumentReport",
    "clean_encapsulated_document",
    "placeholder_document",
]
