"""One association per study round and destination, kept open between its batches.

Against a real DCMTK storescp on loopback, whose verbose log counts the associations.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from service_harness import (
    STORESCP,
    STORESCU,
    ae_destination,
    create_secret,
    free_port,
    make_site,
    received_files,
    running_gateway,
    storescp_on,
    storescu,
    wait_until,
)

from gateway.config.schema import DestinationConfig
from gateway.net.kept_associations import KeptAssociations
from gateway.net.outcome import ForwardOutcome
from gateway.net.scu import forward_to_ae
from gateway.service.forwarding import AeDestination, destination_for
from gateway.tools.synthetic import make_ct_study

pytestmark = pytest.mark.skipif(STORESCP is None, reason="DCMTK storescp missing")


def associations(log: Path) -> int:
    """Associations the storescp accepted, from its -v log (the fixture's port probe is
    received, never acknowledged)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("Association Acknowledged")


def send(files: list[Path], port: int, kept: KeptAssociations, key: object) -> None:
    result = forward_to_ae(files, ae_title="ARCHIVE", host="127.0.0.1", port=port,
                           calling_ae="DEID_GW", kept=kept, key=key)  # fmt: skip
    assert result.outcome is ForwardOutcome.OK, result.message


def test_the_batches_of_one_round_share_one_association(tmp_path: Path) -> None:
    study = make_ct_study(tmp_path / "in", instances=6, rows=16, columns=16, seed=3)
    other = make_ct_study(tmp_path / "other", instances=2, rows=16, columns=16, seed=4)
    port, out = free_port(), tmp_path / "archive"
    kept = KeptAssociations()
    # --fork: one process per association, so the second round's is served meanwhile.
    with storescp_on(port, out, extra_args=["-v", "--fork"]):
        log = out.parent / f"storescp-{port}.log"
        send(study[:2], port, kept, 1)
        send(study[2:4], port, kept, 1)
        send(study[4:], port, kept, 1)
        send(other, port, kept, 2)  # another round: its own association; round 1's goes
        assert (kept.opened, kept.reused, len(kept)) == (2, 2, 1)
        kept.release(1)  # already released when round 2's was opened
        assert len(kept) == 1
        assert kept.release_idle(now=time.monotonic() + kept.idle_seconds) == 1
        assert len(kept) == 0
        wait_until(lambda: len(received_files(out)) == 8, timeout=20, what="eight instances")
        assert associations(log) == 2


def test_an_archive_taking_one_association_at_a_time_never_waits_for_a_kept_one(
    tmp_path: Path,
) -> None:
    """storescp without --fork serves one association at a time: round 1's kept association
    must go when round 2 opens its own, not after the idle bound (an hour here)."""
    first = make_ct_study(tmp_path / "first", instances=2, rows=16, columns=16, seed=8)
    second = make_ct_study(tmp_path / "second", instances=2, rows=16, columns=16, seed=9)
    port, out = free_port(), tmp_path / "archive"
    kept = KeptAssociations(idle_seconds=3600)
    with storescp_on(port, out, extra_args=["-v"]):
        send(first, port, kept, 1)
        assert len(kept) == 1
        result = forward_to_ae(second, ae_title="ARCHIVE", host="127.0.0.1", port=port,
                               kept=kept, key=2, timeout=10)  # fmt: skip
        assert result.outcome is ForwardOutcome.OK, result.message
        assert len(kept) == 1
        kept.close()
        wait_until(lambda: len(received_files(out)) == 4, timeout=20, what="four instances")


def test_an_association_gone_while_kept_is_replaced_and_nothing_is_lost(tmp_path: Path) -> None:
    study = make_ct_study(tmp_path / "in", instances=4, rows=16, columns=16, seed=5)
    port, out = free_port(), tmp_path / "archive"
    kept = KeptAssociations()
    with storescp_on(port, out):
        send(study[:2], port, kept, 7)
    assert len(kept) == 1  # kept, but its peer has gone
    with storescp_on(port, out):  # the archive is back on its port (a restart)
        send(study[2:], port, kept, 7)
        wait_until(lambda: len(received_files(out)) == 4, timeout=20, what="four instances")
    assert kept.opened == 2
    kept.close()
    assert len(kept) == 0


@pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu missing")
def test_a_study_streamed_through_the_gateway_uses_few_associations(tmp_path: Path) -> None:
    study = make_ct_study(tmp_path / "in", instances=40, rows=16, columns=16, seed=6)
    port, out = free_port(), tmp_path / "archive"
    site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                     destination=ae_destination(port), quiet_seconds=2)  # fmt: skip
    with storescp_on(port, out, extra_args=["-v"]), running_gateway(site) as gateway:
        log = out.parent / f"storescp-{port}.log"
        for start in range(0, len(study), 10):  # four bursts, as a modality sends series
            assert storescu(site.listen_port, study[start : start + 10]).acknowledged
            time.sleep(0.5)
        wait_until(lambda: gateway.metric("studies_forwarded") == 1, timeout=60,
                   what="the study forwarded")  # fmt: skip
        assert len(received_files(out)) == len(study)
        batches = associations(log)
    # Sent in several batches while it arrived, over one association (one more if the
    # archive had let the first one idle out): not one per batch.
    assert 1 <= batches <= 2, batches


def test_keep_open_zero_sends_each_batch_on_its_own_association(tmp_path: Path) -> None:
    """destination.keep_open_seconds: 0, for archives that take one association at a time."""
    config = DestinationConfig(ae_title="ARCHIVE", host="127.0.0.1", port=104,
                               keep_open_seconds=0)  # fmt: skip
    never = destination_for(config, "DEID_GW", None)
    assert isinstance(never, AeDestination) and never.kept is None
    default = destination_for(DestinationConfig(ae_title="A", host="h", port=104), "GW", None)
    assert isinstance(default, AeDestination) and default.kept is not None
    assert default.kept.idle_seconds == 5.0
    with pytest.raises(ValueError, match="only used with ae_title/host/port"):
        DestinationConfig(folder=tmp_path, keep_open_seconds=3)
