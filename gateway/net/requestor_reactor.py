"""The forwarder's association reactor: pynetdicom's, less the taking of DIMSE messages.

pynetdicom (3.0.4) runs a reactor thread beside every association. For a requestor it
serves requests the peer initiates, taking each complete DIMSE message off the queue; our
send_c_store() takes its C-STORE response off the same queue. send_c_store() parks the
reactor first, but it checks a flag (`_is_paused`) that the reactor also sets for an instant
on its way past the checkpoint, so with a fast peer the reactor can take our response ("Received
unexpected C-STORE service message") and we wait out the DIMSE timeout. `ReactorGate` keeps
the reactor parked within a batch; the first send of a batch on a kept association still
met the race once the DUL stopped polling (`dul_wakeup`) and responses came back at once.

A Storage SCP sends no requests of its own, so the forwarder's reactor needs no messages:
this one only watches for the peer's release, an abort, the DUL's end and the idle timer,
as pynetdicom's does, and never touches the message queue. Those checks are shared with the
acceptor's loop (`pynetdicom_patches`).
"""

from __future__ import annotations

import threading
import time
import types
from typing import TYPE_CHECKING

from pynetdicom import evt
from pynetdicom.association import LOGGER as PYNETDICOM_LOG

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = [
    "NAP_SECONDS",
    "ReactorGate",
    "association_ended",
    "idle_timed_out",
    "install_reactor_gate",
    "reactor_gate",
    "takes_no_messages",
    "use_storage_requestor_reactor",
]

NAP_SECONDS = 0.005  # between looks at release/abort: nothing waits on it while sending


def use_storage_requestor_reactor(assoc: Association) -> None:
    """Replace the association's reactor (call on EVT_CONN_OPEN, before the loop starts)."""
    assoc._run_reactor = types.MethodType(_storage_requestor_loop, assoc)  # type: ignore[method-assign]


def takes_no_messages(assoc: Association) -> bool:
    """Whether the association runs this reactor, so that every DIMSE message on its queue
    is left for the sender (`store_fast_send`)."""
    return getattr(assoc._run_reactor, "__func__", None) is _storage_requestor_loop


def _storage_requestor_loop(self: Association) -> None:
    self._is_paused = False
    while not self._kill:
        time.sleep(NAP_SECONDS)
        # Parked while a send_*() of ours runs (pynetdicom's checkpoint, kept as is).
        self._is_paused = True
        self._reactor_checkpoint.wait()
        self._is_paused = False
        if association_ended(self) or idle_timed_out(self):
            return


def association_ended(assoc: Association) -> bool:
    """pynetdicom's reactor checks for the peer's release, an abort and the DUL's end, in
    its order; True (the association killed) if one ended it. Shared with the acceptor's
    loop (`pynetdicom_patches`)."""
    if assoc.is_established and assoc.acse.is_release_requested():
        assoc.acse.send_release(is_response=True)
        PYNETDICOM_LOG.info("Association Released")
        assoc.is_released = True
        assoc.is_established = False
        evt.trigger(assoc, evt.EVT_RELEASED, {})
        assoc.kill()
        return True
    if assoc.acse.is_aborted():
        assoc.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires for subscribers
        assoc.is_aborted = True
        assoc.is_established = False
        evt.trigger(assoc, evt.EVT_ABORTED, {})
        assoc.kill()
        return True
    if not assoc.dul.is_alive():
        assoc.kill()
        return True
    return False


def idle_timed_out(assoc: Association) -> bool:
    """pynetdicom's idle timer check: released or aborted, and killed, when it expired."""
    if not assoc.dul.idle_timer_expired():
        return False
    PYNETDICOM_LOG.error("Network timeout reached")
    if assoc.network_timeout_response == "A-RELEASE":
        assoc._is_paused = True
        assoc._reactor_checkpoint.wait()
        assoc.release()
        assoc._is_paused = False
    else:
        assoc.abort()
    assoc.kill()
    return True


class ReactorGate(threading.Event):
    """Stands in for pynetdicom's reactor checkpoint to keep the reactor parked while we send.

    pynetdicom (3.0.4) pauses its association reactor around each send_c_store() and restarts
    it afterwards, but the next send_c_store() only waits on a flag that the restarted reactor
    may not have reset yet; with a fast peer the reactor then takes our C-STORE response off
    the queue ("Received unexpected C-STORE service message") and we wait for the DIMSE
    timeout. While `held`, the restart is a no-op, so from the first request on the reactor
    stays parked until the study is sent. It only serves requests that the peer initiates,
    which a Storage SCP does not send, and aborts are still seen by send_c_store().
    """

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        super().set()

    def set(self) -> None:
        if not self.held:
            super().set()

    def release_hold(self) -> None:
        self.held = False
        super().set()


def install_reactor_gate(assoc: Association) -> None:
    """Put a `ReactorGate` in place of the association's reactor checkpoint (the private
    `_reactor_checkpoint` Event). Call it on EVT_CONN_OPEN, before the reactor loop starts;
    an association without that Event keeps its own."""
    if isinstance(getattr(assoc, "_reactor_checkpoint", None), threading.Event):
        assoc._reactor_checkpoint = ReactorGate()


def reactor_gate(assoc: Association) -> ReactorGate | None:
    """The gate `install_reactor_gate` put on this association, if it did."""
    gate = getattr(assoc, "_reactor_checkpoint", None)
    return gate if isinstance(gate, ReactorGate) else None
