"""The transfer syntaxes the gateway accepts, de-identifies and forwards.

Every syntax pydicom can both read and decode the pixels of (the pixel stage must be able to
redact burned-in text, so a syntax without a decoder would only ever be quarantined). An
explicit list, not pydicom's UID dictionary: importing pynetdicom adds syntaxes to that
dictionary (JPEG XL, Deflated Image Frame Compression) that pydicom cannot handle.
Encapsulated video (MPEG, HEVC), JPIP-referenced pixels and JPEG 2000 Part 2 are left out:
a sender that offers them as well as a native syntax gets the native one.
"""

from __future__ import annotations

from pydicom import uid

SUPPORTED: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian,  # first: pynetdicom prefers the requestor's order,
    uid.ImplicitVRLittleEndian,  # but keep the PS3.5 default-capable ones up front
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
    uid.RLELossless,
)
