"""The floor pynetdicom itself sets under any Python Storage SCP: an AE whose C-STORE
handler does nothing (no disk), sent to by DCMTK storescu over one association.

The gateway receives through pynetdicom; whatever it adds (a durable write, the spool's
records) comes on top of this. Printed by `make bench` beside DCMTK's own passthrough, so a
reader can tell what of the gap is the library's and what is the gateway's.
"""

from __future__ import annotations

import socket
from pathlib import Path

import e2e
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.transport import ThreadedAssociationServer
from service_harness import free_port

__all__ = ["pynetdicom_floor"]


def _no_delay(server: ThreadedAssociationServer) -> None:
    """TCP_NODELAY on each socket `server` accepts, as the gateway sets it (without it
    every answer waits ~40 ms for the peer's delayed ACK)."""
    accept = server.get_request

    def get_request() -> tuple[socket.socket, object]:
        sock, address = accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    server.get_request = get_request  # type: ignore[method-assign]


def pynetdicom_floor(load: e2e.Workload, max_pdu: int = 1 << 20) -> float:
    """Seconds for storescu to send `load` to a do-nothing pynetdicom SCP (better of two)."""
    ae = AE("ARCHIVE")
    ae.maximum_pdu_size = max_pdu
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda _event: 0)]
    )
    _no_delay(server)
    try:
        return min(e2e.run_storescu(port, load, called_ae="ARCHIVE") for _ in range(2))
    finally:
        server.shutdown()


if __name__ == "__main__":  # pragma: no cover - a quick look
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tiny = e2e.make_workload(Path(folder), "tiny", 500, 16, 1)
        print(f"500 tiny: {pynetdicom_floor(tiny):.2f} s")
