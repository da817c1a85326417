"""A destination whose misbehaviour the test scripts: a pynetdicom Storage SCP on loopback.

    with ScriptedArchive(port) as archive:
        archive.reject = True            # A-ASSOCIATE-RJ for the gateway's calling AE
        archive.abort_after = 3          # A-ABORT on the 4th C-STORE of each association
        archive.answers = {sop_uid: 0xA700}   # one answer per listed instance, then success
        archive.stored                   # Counter of SOP Instance UIDs stored (a duplicate: 2)

Every setting may change while the gateway is forwarding; each association reads them as
it goes. `stop()` and `start()` take it off the network and put it back on the same port.
"""

from __future__ import annotations

import threading
from collections import Counter
from types import TracebackType

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

LOOPBACK = "127.0.0.1"
ARCHIVE_AE = "ARCHIVE"
_SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]


class ScriptedArchive:
    def __init__(self, port: int) -> None:
        self.port = port
        self.abort_after: int | None = None
        self.answers: dict[str, int] = {}
        self.stored: Counter[str] = Counter()
        self.refused: Counter[int] = Counter()  # status -> how many times answered
        self.associations = 0
        self._per_association: dict[int, int] = {}
        self._lock = threading.Lock()
        self._server = None
        self.ae = AE(ae_title=ARCHIVE_AE)
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, _SYNTAXES)
        self.ae.add_supported_context(Verification)
        self.ae.network_timeout = 10
        self.ae.acse_timeout = 10
        self.ae.dimse_timeout = 10

    @property
    def reject(self) -> bool:
        return bool(self.ae.require_calling_aet)

    @reject.setter
    def reject(self, value: bool) -> None:
        """True: every association is rejected (calling AE not recognised)."""
        self.ae.require_calling_aet = ["SOMEONE_ELSE"] if value else []

    def start(self) -> ScriptedArchive:
        self._server = self.ae.start_server(
            (LOOPBACK, self.port),
            block=False,
            evt_handlers=[
                (evt.EVT_C_STORE, self._on_store),
                (evt.EVT_REQUESTED, self._on_requested),
            ],
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> ScriptedArchive:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _on_requested(self, event: evt.Event) -> None:
        with self._lock:
            self.associations += 1

    def _on_store(self, event: evt.Event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        key = id(event.assoc)
        with self._lock:
            count = self._per_association.get(key, 0)
            self._per_association[key] = count + 1
            if self.abort_after is not None and count >= self.abort_after:
                event.assoc.abort()  # non-blocking inside a handler; no response goes out
                return 0xA700
            status = self.answers.pop(uid, 0x0000)
            if status:
                self.refused[status] += 1
                return status
            self.stored[uid] += 1
        return 0x0000
