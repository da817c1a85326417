"""Several gateways behind one address: HAProxy (deploy/haproxy/haproxy.cfg) in front of two.

The setting of docs/load-balancer.md, on loopback: the shipped HAProxy configuration (only
its addresses and `global` section changed, see tests/haproxy_peer.py), two `dicom-gateway
run` processes with the same site secret and their own storage folders, and one archive
(DCMTK storescp `--fork`, so both gateways can hold an association to it at once; `+uf`,
so an instance received twice shows as two files). Modalities are DCMTK storescu calling
the proxy's address; they see one AE.

What is shown: no study affinity is needed (a study whose associations land on both
gateways arrives whole, under one pseudonymous Study UID, its series and frame of
reference consistent), a gateway drained through the admin socket or stopped with SIGTERM
gets no new association (HAProxy reads its /healthz), and nothing acknowledged is lost or
forwarded twice when one gateway stops halfway through the sends.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from haproxy_peer import HAPROXY, SHIPPED, HAProxy, proxy_config, run_haproxy
from pydicom import dcmread
from service_harness import (
    LOOPBACK,
    STORESCP,
    STORESCU,
    Gateway,
    Received,
    Site,
    ae_destination,
    create_secret,
    free_port,
    leaks_in,
    make_site,
    received_files,
    running_gateway,
    storescp_on,
    storescu,
    wait_until,
)

from gateway.base.metrics import Metrics
from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

SIZE = 32  # rows and columns: the pixels do not matter here, the time does
SETTLE_SECONDS = 30  # a few small studies through quiet period and forwarding, bounded
UID_ROOT = "2.25."

pytestmark = [
    pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed (apt-get install haproxy)"),
    pytest.mark.skipif(None in (STORESCU, STORESCP), reason="DCMTK storescu/storescp missing"),
    pytest.mark.timeout(120),
]


# --- inputs --------------------------------------------------------------------------------


def multi_series_study(
    folder: Path, patient: SyntheticPatient, seed: int, series: int, per_series: int
) -> list[Path]:
    """`series` series of one CT study: one Study and one Frame of Reference UID."""
    files: list[Path] = []
    head = None
    for number in range(series):
        paths = make_ct_study(
            folder / f"s{number + 1}",
            instances=per_series,
            rows=SIZE,
            columns=SIZE,
            patient=patient,
            seed=seed + number,
        )
        if head is None:
            head = dcmread(paths[0], stop_before_pixels=True)
        else:
            for path in paths:
                ds = dcmread(path)
                ds.StudyInstanceUID = head.StudyInstanceUID
                ds.FrameOfReferenceUID = head.FrameOfReferenceUID
                ds.SeriesNumber = number + 1
                ds.save_as(path)
        files.extend(paths)
    return files


def interleaved(files: list[Path], associations: int) -> list[list[Path]]:
    """The files in `associations` batches that each cut across every series (batch k
    takes every k-th file), so that each series is split over the gateways too."""
    return [files[k::associations] for k in range(associations)]


@dataclass(frozen=True)
class Original:
    sop: str
    study: str
    series: str
    frame_of_reference: str


def originals(files: list[Path]) -> dict[str, Original]:
    """{original SOP Instance UID: its UIDs}."""
    found = {}
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        found[str(ds.SOPInstanceUID)] = Original(
            str(ds.SOPInstanceUID),
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.FrameOfReferenceUID),
        )
    return found


# --- the setting: an archive, two gateways, HAProxy ------------------------------------------


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_secret(tmp_path_factory.mktemp("keys"))


@dataclass
class BalancedGateways:
    archive: Path
    sites: list[Site]
    gateways: list[Gateway]
    proxy: HAProxy

    def received(self) -> float:
        return sum(g.metric("instances_received") for g in self.gateways if g.alive())

    def settled(self, count: int) -> bool:
        """`count` instances received over the running gateways and every spool empty."""
        live = [g for g in self.gateways if g.alive()]
        return self.received() >= count and all(g.metric("queue_depth") == 0 for g in live)


@contextmanager
def behind_haproxy(tmp_path: Path, secret: Path, gateways: int = 2) -> Iterator[BalancedGateways]:
    """storescp (--fork) <- `gateways` gateways (same secret) <- HAProxy, all running."""
    archive = tmp_path / "archive"
    archive_port = free_port()
    sites = [
        make_site(tmp_path / f"gw{n}", secret, destination=ae_destination(archive_port), workers=1)
        for n in range(1, gateways + 1)
    ]
    front_port = free_port()
    stats_socket = tmp_path / "haproxy" / "admin.sock"
    config = proxy_config(
        SHIPPED.read_text(encoding="utf-8"),
        front_port,
        [(s.listen_port, s.http_port) for s in sites],
        stats_socket,
    )
    with ExitStack() as stack:
        stack.enter_context(storescp_on(archive_port, archive, extra_args=["--fork", "+xa", "+uf"]))
        running = [stack.enter_context(running_gateway(site)) for site in sites]
        proxy = stack.enter_context(
            run_haproxy(config, tmp_path / "haproxy", front_port, stats_socket)
        )
        wait_until(
            lambda: set(proxy.server_states().values()) == {"UP"},
            timeout=15,
            what="haproxy to see every gateway UP",
        )
        yield BalancedGateways(archive, sites, running, proxy)


def count_by_sop(received: list[Received]) -> Counter[str]:
    """{pseudonymous SOP Instance UID: how many files of it the archive holds}."""
    return Counter(r.sop_instance_uid for r in received)


def assert_one_study_consistent(
    site: Site, received: list[Received], by_sop: dict[str, Original]
) -> None:
    """Every instance under the site's pseudonym of its study, series and frame of
    reference, whichever gateway forwarded it."""
    pseudonyms = site.pseudonyms()
    expected = {pseudonyms.uid(sop): original for sop, original in by_sop.items()}
    series: dict[str, set[str]] = defaultdict(set)
    for got in received:
        original = expected[got.sop_instance_uid]
        assert got.study_uid == pseudonyms.uid(original.study)
        assert got.series_uid == pseudonyms.uid(original.series)
        assert got.frame_of_reference_uid == pseudonyms.uid(original.frame_of_reference)
        for uid in (got.sop_instance_uid, got.study_uid, got.series_uid):
            assert uid.startswith(UID_ROOT), uid
        assert got.identity_removed == "YES"
        series[original.series].add(got.series_uid)
    assert len({r.study_uid for r in received}) == 1
    assert all(len(new) == 1 for new in series.values())


def identifying(patient: SyntheticPatient, by_sop: dict[str, Original]) -> list[str]:
    """Every original value that must not leave: the patient's and the original UIDs."""
    uids = {u for o in by_sop.values() for u in (o.sop, o.study, o.series, o.frame_of_reference)}
    return [*patient.identifying_values(), *sorted(uids)]


def test_shipped_haproxy_config_is_valid_as_shipped() -> None:
    """`haproxy -c` on deploy/haproxy/haproxy.cfg untouched, as the docs tell the admin."""
    assert HAPROXY is not None
    checked = subprocess.run(
        [HAPROXY, "-c", "-f", str(SHIPPED)], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- A: a study split over two gateways ---------------------------------------------------------


def test_study_split_over_two_gateways_arrives_whole_under_one_pseudonym(
    tmp_path: Path, secret: Path
) -> None:
    patient = random_patient(191)
    study = multi_series_study(tmp_path / "in", patient, seed=191, series=3, per_series=4)
    by_sop = originals(study)
    with behind_haproxy(tmp_path, secret) as setting:
        # Four associations through the one address, each cutting across the three series;
        # leastconn takes turns between two idle gateways.
        for batch in interleaved(study, 4):
            run = storescu(setting.proxy.front_port, batch, timeout=60)
            assert run.acknowledged == batch, run.output
        wait_until(
            lambda: setting.settled(len(study)),
            timeout=SETTLE_SECONDS,
            what="the study received and forwarded",
            interval=0.2,
        )
        per_gateway = [g.metric("instances_received") for g in setting.gateways]
        assert sum(per_gateway) == len(study)
        assert all(n > 0 for n in per_gateway), f"one gateway got everything: {per_gateway}"
        used = setting.proxy.servers_used()
        assert sorted(set(used)) == ["gw1", "gw2"], used

        # Maintenance: gw1 drained through the admin socket gets no new association; the
        # next study goes to gw2 only, while gw1 stays up and healthy.
        later = make_ct_study(
            tmp_path / "later", instances=4, rows=SIZE, columns=SIZE, patient=patient, seed=7
        )
        before = [g.metric("instances_received") for g in setting.gateways]
        setting.proxy.command("set server dicom_gateways/gw1 state drain")
        assert setting.proxy.server_states()["gw1"] == "DRAIN"
        for batch in interleaved(later, 2):
            run = storescu(setting.proxy.front_port, batch, timeout=60)
            assert run.acknowledged == batch, run.output
        after = [g.metric("instances_received") for g in setting.gateways]
        assert after[0] == before[0], "a drained gateway got a new association"
        assert after[1] == before[1] + len(later)
        assert setting.gateways[0].healthz() == 200
        wait_until(
            lambda: setting.settled(len(study) + len(later)),
            timeout=SETTLE_SECONDS,
            what="the second study forwarded",
            interval=0.2,
        )
        # Each gateway closes its own round of the study and audits it (the same study_hash).
        rounds = wait_until(
            lambda: (found := [s.audit_records() for s in setting.sites]) and all(found) and found,
            timeout=SETTLE_SECONDS,
            what="a study_round record on each gateway",
        )
        expected_count = len(study) + len(later)
        received = wait_until(
            lambda: (
                (found := received_files(setting.archive))
                and len(found) >= expected_count
                and found
            ),
            timeout=SETTLE_SECONDS,
            what=f"{expected_count} files at the archive",
        )

    first_hashes = {r["study_hash"] for r in rounds[0]}
    second_hashes = {r["study_hash"] for r in rounds[1]}
    assert first_hashes & second_hashes, "the split study has no round on both gateways"
    assert all(r["result"] == "forwarded" for found in rounds for r in found)

    pseudonyms = setting.sites[0].pseudonyms()
    split = [r for r in received if r.sop_instance_uid in {pseudonyms.uid(s) for s in by_sop}]
    counted = count_by_sop(split)
    assert set(counted) == {pseudonyms.uid(s) for s in by_sop}, "an instance is missing"
    assert set(counted.values()) == {1}, "an instance was forwarded twice"
    assert_one_study_consistent(setting.sites[0], split, by_sop)
    later_by_sop = originals(later)
    assert count_by_sop(received) == Counter(
        {pseudonyms.uid(s): 1 for s in [*by_sop, *later_by_sop]}
    )
    values = identifying(patient, {**by_sop, **later_by_sop})
    leaks = leaks_in([r.path for r in received], values)
    assert not leaks, leaks
    # Nor in what each node keeps of the round: its audit trail and its log.
    kept = [s.storage / "audit.jsonl" for s in setting.sites]
    assert not leaks_in([*kept, *(g.log_path for g in setting.gateways)], values)
    print(f"instances received per gateway: {per_gateway}; associations: {used}")


# --- B: one gateway stopped halfway through the sends ------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One storescu association through the proxy."""

    batch: int
    started: float
    files: list[Path]
    acknowledged: list[Path]


def test_gateway_stopped_halfway_loses_nothing_and_the_rest_goes_to_the_other(
    tmp_path: Path, secret: Path
) -> None:
    patient = random_patient(192)
    study = multi_series_study(tmp_path / "in", patient, seed=192, series=2, per_series=12)
    by_sop = originals(study)
    batches = interleaved(study, 8)
    attempts: list[Attempt] = []
    halfway, stopping, switched, marked = (threading.Event() for _ in range(4))
    half = len(batches) // 2

    def modality(port: int) -> None:
        """Sends batch after batch; what was not acknowledged is sent again (a refused or
        cut association during the switch), as a DICOM sender retries. Half the batches go
        before the SIGTERM, two while the gateway drains, the rest once HAProxy marked
        it down."""
        for number, batch in enumerate(batches):
            if number == half:
                halfway.set()
                stopping.wait(timeout=30)
            elif number == half + 2:
                switched.set()
                marked.wait(timeout=30)
            pending = list(batch)
            for _ in range(6):
                started = time.monotonic()
                run = storescu(port, pending, timeout=60)
                attempts.append(Attempt(number, started, pending, run.acknowledged))
                pending = [p for p in pending if p not in set(run.acknowledged)]
                if not pending:
                    break
                time.sleep(0.5)
            time.sleep(0.2)

    with behind_haproxy(tmp_path, secret) as setting:
        first, second = setting.gateways
        sender = threading.Thread(target=modality, args=(setting.proxy.front_port,), daemon=True)
        sender.start()
        try:
            assert halfway.wait(timeout=30), "the sender did not get halfway"
            received_by_first = first.metric("instances_received")
            first.process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            stopping.set()
            assert first.process.wait(timeout=45) == 0, first.log()
            drained = time.monotonic()
            wait_until(
                lambda: setting.proxy.server_states().get("gw1", "").startswith("DOWN"),
                timeout=15,
                what="haproxy to mark the stopped gateway DOWN",
            )
            marked_down = time.monotonic()
            assert switched.wait(timeout=60), "the sends during the switch did not end"
            second_at_down = second.metric("instances_received")
            marked.set()
        finally:
            stopping.set()
            marked.set()  # the sender is never left waiting
            sender.join(timeout=90)
        assert not sender.is_alive(), "the sender did not finish"
        assert received_by_first > 0, "the first gateway got nothing before its stop"
        forwarded_at_stop = count_by_sop(received_files(setting.archive))

        # After HAProxy marked it down, every association went to the other gateway and
        # none was refused: the switch costs a sender at most a resend, before that.
        late = [a for a in attempts if a.batch >= half + 2]
        assert late and all(a.started > marked_down for a in late)
        assert all(a.acknowledged == a.files for a in late), [a.batch for a in late]
        late_count = sum(len(a.acknowledged) for a in late)
        wait_until(
            lambda: second.metric("instances_received") >= second_at_down + late_count,
            timeout=10,
            what="the late instances counted on the second gateway",
        )
        assert second.metric("instances_received") == second_at_down + late_count

        # What the stopped gateway acknowledged and had not forwarded yet waits in its
        # spool: the operator starts it again, and it goes.
        with running_gateway(setting.sites[0]) as restarted:
            wait_until(
                lambda: restarted.metric("queue_depth") == 0 and second.metric("queue_depth") == 0,
                timeout=SETTLE_SECONDS,
                what="both spools empty after the restart",
                interval=0.2,
            )
            received = wait_until(
                lambda: (
                    (found := received_files(setting.archive))
                    and len(count_by_sop(found)) >= len(study)
                    and found
                ),
                timeout=SETTLE_SECONDS,
                what="the whole study at the archive",
            )
            time.sleep(0.5)  # a duplicate would come now, if at all
            received = received_files(setting.archive)

    pseudonyms = setting.sites[0].pseudonyms()
    acknowledged = {p for a in attempts for p in a.acknowledged}
    assert acknowledged == set(study), "the sender gave up on an instance"
    counted = count_by_sop(received)
    assert set(counted) == {pseudonyms.uid(s) for s in by_sop}, "an acknowledged one is lost"
    # An instance whose first attempt went unanswered may have been kept by the stopped
    # gateway and also resent: only such an instance may arrive twice (it is the same
    # pseudonymous instance). Everything acknowledged the first time arrives once.
    unanswered = {
        pseudonyms.uid(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID))
        for a in attempts
        for p in a.files
        if p not in a.acknowledged
    }
    twice = {uid for uid, n in counted.items() if n > 1}
    assert twice <= unanswered, "an instance acknowledged at once was forwarded twice"
    assert_one_study_consistent(setting.sites[0], received, by_sop)
    assert not leaks_in([r.path for r in received], identifying(patient, by_sop))
    print(
        f"SIGTERM at {received_by_first:.0f} received by gw1; drained in "
        f"{drained - stopped:.1f} s, marked DOWN {marked_down - stopped:.1f} s after SIGTERM; "
        f"forwarded before the restart: {len(forwarded_at_stop)} of {len(study)}; "
        f"associations: {len(attempts)} for {len(batches)} batches, "
        f"{sum(1 for a in attempts if a.acknowledged != a.files)} not fully acknowledged; "
        f"arrived twice: {len(twice)}"
    )


# --- C: the health check reads /healthz, not the DICOM port -------------------------------------


def test_gateway_answering_503_is_taken_out_while_its_dicom_port_still_listens(
    tmp_path: Path,
) -> None:
    """The window between SIGTERM and the closed port is short in test B; here /healthz
    (the gateway's own HTTP handler, `Metrics.start_http`) says 503 for as long as the test
    wants, as it does while a gateway drains or its spool cannot take files."""
    healthy = {"gw1": True, "gw2": True}
    servers = []
    dicom_ports = []
    with ExitStack() as stack:
        for name in healthy:
            http = Metrics().start_http(LOOPBACK, 0, lambda name=name: healthy[name])
            stack.callback(http.shutdown)
            servers.append(http)
            dicom = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            dicom.bind((LOOPBACK, 0))
            dicom.listen(8)  # a port that accepts, as a gateway's does; never sent to here
            dicom_ports.append(int(dicom.getsockname()[1]))
        front_port = free_port()
        stats_socket = tmp_path / "haproxy" / "admin.sock"
        config = proxy_config(
            SHIPPED.read_text(encoding="utf-8"),
            front_port,
            [(d, h.port) for d, h in zip(dicom_ports, servers, strict=True)],
            stats_socket,
        )
        proxy = stack.enter_context(
            run_haproxy(config, tmp_path / "haproxy", front_port, stats_socket)
        )
        wait_until(
            lambda: set(proxy.server_states().values()) == {"UP"},
            timeout=15,
            what="both UP",
        )
        healthy["gw1"] = False
        started = time.monotonic()
        down = wait_until(
            lambda: (row := proxy.server_stats()["gw1"])["status"] == "DOWN" and row,
            timeout=10,
            what="gw1 DOWN on its 503",
        )
        took = time.monotonic() - started
        assert down["check_status"] == "L7STS" and down["check_code"] == "503", down
        assert proxy.server_states()["gw2"] == "UP"
        healthy["gw1"] = True
        wait_until(
            lambda: proxy.server_states()["gw1"] == "UP",
            timeout=15,
            what="gw1 back UP once healthy",
        )
    print(f"marked DOWN {took:.1f} s after /healthz turned 503")
