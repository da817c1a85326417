"""What one incoming association may send before it is refused, counted from the PDU headers.

pynetdicom (3.0) reads whatever length a PDU header declares and buffers a whole DIMSE
message before anyone sees it, so a peer that declares a 4 GiB PDU, or streams a data set
that never ends, grows the process until it dies. The acceptor's PDU reader
(`pynetdicom_patches`) asks a `MessageMeter` about every PDU before reading its body and
about every P-DATA-TF before pynetdicom buffers it; this module only counts and decides,
it touches neither sockets nor pynetdicom.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OTHER_PDU_LIMIT",
    "MessageMeter",
    "ReceiveLimits",
    "Refusal",
    "a_abort_pdu",
    "p_data_pdu",
]

# A-ASSOCIATE-RQ and the other non-data PDUs have no negotiated maximum (PS3.8 D.1 bounds
# only P-DATA-TF); even 128 presentation contexts with every transfer syntax and a user
# identity token stay far below this.
OTHER_PDU_LIMIT = 1 << 20
# A command set is a handful of elements (PS3.7 9.3, 10.3): C-STORE-RQ is ~200 bytes.
COMMAND_LIMIT = 64 << 10
P_DATA_TF = 0x04
_PDV_HEADER = struct.Struct(">IBB")  # item length, presentation context ID, control header
_PDU_HEADER = struct.Struct(">BBI")

# A-ABORT sources and reasons, PS3.8 9.3.8 (Table 9-26).
ABORT_BY_USER = 0x00
ABORT_BY_PROVIDER = 0x02
REASON_NOT_SPECIFIED = 0x00
REASON_INVALID_PARAMETER = 0x06


@dataclass(frozen=True)
class Refusal:
    """Why an association is cut off; `out_of_resources` when the request in progress is
    answered 0xA700 first. The reason names sizes and times only, never data."""

    reason: str
    kind: str  # "pdu", "command", "instance" or "first_request"
    out_of_resources: bool = False

    def abort_pdu(self) -> bytes:
        """The A-ABORT ending the association: from the service provider for a PDU that
        breaks the negotiated length (invalid PDU parameter value), else from us (user)."""
        if self.kind == "pdu":
            return a_abort_pdu(ABORT_BY_PROVIDER, REASON_INVALID_PARAMETER)
        return a_abort_pdu(ABORT_BY_USER, REASON_NOT_SPECIFIED)


# Told about each refusal, with the association it ends (for the log line and metrics).
OnRefusal = Callable[[Any, Refusal], None]


@dataclass(frozen=True)
class ReceiveLimits:
    """The listen.* bounds an acceptor enforces, and whom to tell when one is crossed."""

    max_pdu_size: int
    max_instance_size: int
    first_request_seconds: float
    on_refusal: OnRefusal | None = None


class MessageMeter:
    """One association's count of the DIMSE message being received, and its first-request
    deadline. Used from the association's DUL thread only (the deadline is also read by the
    acceptor thread; a float and a bool need no lock)."""

    def __init__(self, limits: ReceiveLimits, now: float | None = None) -> None:
        self.limits = limits
        began = time.monotonic() if now is None else now
        self.deadline = began + limits.first_request_seconds
        self.first_request_seen = False
        self._command = 0
        self._dataset = 0

    def seconds_left(self, now: float | None = None) -> float | None:
        """Until the first-request deadline; None once a request has begun."""
        if self.first_request_seen:
            return None
        return self.deadline - (time.monotonic() if now is None else now)

    def expired(self, now: float | None = None) -> bool:
        left = self.seconds_left(now)
        return left is not None and left <= 0

    def first_request_missing(self) -> Refusal:
        seconds = self.limits.first_request_seconds
        return Refusal(f"no request within {seconds:g} s of connecting", "first_request")

    def check_header(self, pdu_type: int, length: int) -> Refusal | None:
        """Before a PDU's body is read: is its declared length allowed?"""
        if pdu_type == P_DATA_TF:
            self.first_request_seen = True
            if length > self.limits.max_pdu_size:
                return Refusal(
                    f"P-DATA-TF PDU of {length} bytes declared, above the "
                    f"{self.limits.max_pdu_size} advertised (listen.max_pdu_size)",
                    "pdu",
                )
        elif length > OTHER_PDU_LIMIT:
            return Refusal(
                f"PDU type 0x{pdu_type:02X} of {length} bytes declared, above {OTHER_PDU_LIMIT}",
                "pdu",
            )
        return None

    def count_p_data(self, body: bytes | bytearray | memoryview) -> Refusal | None:
        """A P-DATA-TF's variable field (PS3.8 9.3.5): add its fragments to the message in
        progress. Malformed items are left for pynetdicom's decoder to refuse."""
        offset = 0
        while offset + _PDV_HEADER.size <= len(body):
            item_length, _context, control = _PDV_HEADER.unpack_from(body, offset)
            if item_length < 2:
                return None
            fragment = item_length - 2
            offset += 4 + item_length
            # PS3.8 E.2: bit 0 set for a command fragment, bit 1 for the last fragment.
            if control & 0x01:
                self._command += fragment
                if self._command > COMMAND_LIMIT:
                    return Refusal(f"command set above {COMMAND_LIMIT} bytes", "command")
                if control & 0x02:
                    self._command = 0
                continue
            self._dataset += fragment
            if self._dataset > self.limits.max_instance_size:
                return Refusal(
                    f"data set above {self.limits.max_instance_size} bytes "
                    "(listen.max_instance_size)",
                    "instance",
                    out_of_resources=True,
                )
            if control & 0x02:
                self._dataset = 0
        return None


def a_abort_pdu(source: int, reason: int) -> bytes:
    """An A-ABORT PDU (PS3.8 9.3.8): two reserved bytes, source, reason/diagnostic."""
    return _PDU_HEADER.pack(0x07, 0, 4) + bytes((0, 0, source, reason))


def p_data_pdu(context_id: int, command: bytes) -> bytes:
    """A P-DATA-TF holding one command set as its only, last fragment (PS3.8 9.3.5, E.2)."""
    pdv = _PDV_HEADER.pack(len(command) + 2, context_id, 0x03) + command
    return _PDU_HEADER.pack(P_DATA_TF, 0, len(pdv)) + pdv
