"""C-STORE command sets, encoded with struct instead of a pydicom Dataset.

The SCP answers every instance while the sender waits; pynetdicom builds each answer as a
Dataset written twice (~0.5 ms). The seven fixed elements of a plain C-STORE-RSP (PS3.7
9.3.1.2) are cheap to write directly, byte for byte what pynetdicom would send. Used by the
acceptor's sender and by the 0xA700 answer of the receive limits (`pynetdicom_patches`).
The forwarder's request (`store_request`, PS3.7 9.3.1.1) is written the same way
(`store_fast_send`).
"""

from __future__ import annotations

import struct
from typing import Any

from pynetdicom.dimse_primitives import C_STORE

__all__ = ["store_request", "store_response", "store_response_command"]

_US = struct.Struct("<HHLH")  # tag, 4-byte length, US value (implicit VR little endian)
_UL = struct.Struct("<HHLL")


def store_response_command(primitive: Any) -> bytes | None:
    """The implicit VR little-endian command set of a C-STORE-RSP carrying only a status
    (what pynetdicom encodes for it, byte for byte), or None for any other message."""
    if type(primitive) is not C_STORE or primitive.MessageIDBeingRespondedTo is None:
        return None
    status = primitive.Status
    if (
        not isinstance(status, int)
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
        or primitive.AffectedSOPClassUID is None
        or primitive.AffectedSOPInstanceUID is None
    ):
        return None
    return store_response(
        primitive.MessageIDBeingRespondedTo,
        str(primitive.AffectedSOPClassUID).encode("ascii"),
        str(primitive.AffectedSOPInstanceUID).encode("ascii"),
        status,
    )


def store_response(
    message_id: int, sop_class_uid: bytes, sop_instance_uid: bytes, status: int
) -> bytes:
    """That command set from its values; the UIDs as a command set holds them (trailing
    padding is dropped and added again)."""
    body = b"".join(
        (
            _uid_element(0x0002, sop_class_uid),
            _US.pack(0x0000, 0x0100, 2, 0x8001),  # Command Field: C-STORE-RSP
            _US.pack(0x0000, 0x0120, 2, message_id),
            _US.pack(0x0000, 0x0800, 2, 0x0101),  # Command Data Set Type: no data set
            _US.pack(0x0000, 0x0900, 2, status),
            _uid_element(0x1000, sop_instance_uid),
        )
    )
    return _UL.pack(0x0000, 0x0000, 4, len(body)) + body


def store_request(
    message_id: int, sop_class_uid: bytes, sop_instance_uid: bytes, priority: int = 2
) -> bytes:
    """A C-STORE-RQ's command set with a data set to follow and no Move Originator, byte
    for byte what pynetdicom encodes for it (its default priority: 2, low)."""
    body = b"".join(
        (
            _uid_element(0x0002, sop_class_uid),
            _US.pack(0x0000, 0x0100, 2, 0x0001),  # Command Field: C-STORE-RQ
            _US.pack(0x0000, 0x0110, 2, message_id),
            _US.pack(0x0000, 0x0700, 2, priority),
            _US.pack(0x0000, 0x0800, 2, 0x0001),  # Command Data Set Type: a data set
            _uid_element(0x1000, sop_instance_uid),
        )
    )
    return _UL.pack(0x0000, 0x0000, 4, len(body)) + body


def _uid_element(element: int, uid: bytes) -> bytes:
    value = uid.rstrip(b"\0 ")
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHL", 0x0000, element, len(value)) + value
