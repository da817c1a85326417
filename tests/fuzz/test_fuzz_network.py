"""Malformed instances and malformed PDUs against a running `dicom-gateway run`.

One gateway for the module (folder destination, 1 s quiet period). Mutants go in through
pynetdicom (the file's bytes sent as they are) and DCMTK storescu, each followed by a good
instance; then raw sockets send garbage, cut-short and oversized PDUs and reset the
connection in the middle of a C-STORE. The checks: every mutant gets an answer (success or
a failure status) on an association that stays up, the next good instance is stored, the
service answers echoscu and storescu at the end, and every instance it acknowledged (and
only those) ends up either exported clean or quarantined with a reason.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import rawpeer
from fuzzing import NETWORK_CASES, Tally
from mutate import TESTDATA, Mutant, leaked, make_mutant, meta_end, random_mutant
from pydicom import dcmread
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification
from service_harness import (
    GATEWAY_AE,
    LOOPBACK,
    STORESCU,
    Gateway,
    StoreRun,
    create_secret,
    dcmtk_env,
    echoscu,
    make_site,
    parse_storescu,
    start_gateway,
    storescu,
    storescu_command,
    wait_until,
)

from gateway.deid.profile import default_profile
from gateway.stores.quarantine import quarantine_root

pytestmark = [
    pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"no test data at {TESTDATA}"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

# Seeds whose transfer syntax both senders can propose without converting anything.
NETWORK_SEEDS = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "emri_small.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
)
SYNTAXES = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
)
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SUCCESS = 0x0000
KEEPS = default_profile().keeps


@dataclass
class Ledger:
    """What the gateway acknowledged, for the final account."""

    acknowledged: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    # What each instance's output must not hold, by its original SOP Instance UID.
    needles: dict[str, set[str]] = field(default_factory=dict)

    def add(self, mutant: Mutant) -> None:
        self.needles[mutant.sop_instance_uid] = mutant.needles(KEEPS)

    def all_needles(self) -> set[str]:
        return set().union(*self.needles.values())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("fuzz-gateway")
    secret = create_secret(root / "keys")
    site = make_site(root / "site", secret, destination={"folder": str(root / "export")})
    running = start_gateway(site)
    try:
        yield running
    finally:
        # A short drain: a raw peer of the PDU test still connected without an association
        # would otherwise hold SIGTERM until its ACSE timeout (closed ones end at once).
        running.stop(timeout=5)


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="module")
def raw_sending() -> Iterator[None]:
    """pynetdicom sends a file's dataset bytes as they are instead of re-encoding them."""
    saved = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    yield
    _config.STORE_SEND_CHUNKED_DATASET = saved


def sender() -> AE:
    ae = AE(ae_title="FUZZER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    classes = {
        str(dcmread(TESTDATA / n, stop_before_pixels=True).SOPClassUID) for n in NETWORK_SEEDS
    }
    for sop_class in sorted(classes):
        for syntax in SYNTAXES:  # one context per syntax: the SCP accepts one per context
            ae.add_requested_context(sop_class, syntax)
    ae.add_requested_context(Verification)
    return ae


def good_instance(folder: Path, rnd: random.Random, ledger: Ledger) -> Path:
    mutant = make_mutant("CT_small.dcm", (), rnd)
    ledger.add(mutant)
    path = folder / f"good-{mutant.sop_instance_uid}.dcm"
    path.write_bytes(mutant.data)
    return path


def test_mutants_sent_by_pynetdicom_are_answered_and_the_next_good_one_is_stored(
    gateway: Gateway,
    ledger: Ledger,
    raw_sending: None,
    tmp_path: Path,
) -> None:
    rnd = random.Random(8)
    tally = Tally("fuzz network (pynetdicom)")
    ae = sender()
    assoc = ae.associate(LOOPBACK, gateway.site.listen_port, ae_title=GATEWAY_AE)
    assert assoc.is_established
    lost = 0
    try:
        for index in range(NETWORK_CASES):
            mutant = random_mutant(rnd, seeds=NETWORK_SEEDS)
            ledger.add(mutant)
            path = tmp_path / f"m{index:05d}.dcm"
            path.write_bytes(mutant.data)
            began = time.monotonic()
            try:
                status = assoc.send_c_store(path)
            except Exception:
                tally.add("not sendable by pynetdicom")  # our side refused to send it
                continue
            seconds = time.monotonic() - began
            if not assoc.is_established:
                lost += 1
                assoc = ae.associate(LOOPBACK, gateway.site.listen_port, ae_title=GATEWAY_AE)
                assert assoc.is_established
            code = int(status.Status) if "Status" in status else -1
            assert code != -1, f"no answer to {mutant.describe()}"
            ledger.acknowledged += code == SUCCESS
            tally.add(f"0x{code:04X}", seconds)
            good = assoc.send_c_store(good_instance(tmp_path, rnd, ledger))
            assert good.Status == SUCCESS, f"good instance refused after {mutant.describe()}"
            ledger.acknowledged += 1
    finally:
        assoc.release()
    tally.report()
    assert lost == 0, f"{lost} associations lost"
    ledger.statuses.update(tally.counts)


@pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu not installed")
def test_mutant_files_sent_by_storescu_are_answered(
    gateway: Gateway, ledger: Ledger, tmp_path: Path
) -> None:
    rnd = random.Random(9)
    files = []
    for index in range(NETWORK_CASES):
        mutant = random_mutant(rnd, seeds=NETWORK_SEEDS)
        ledger.add(mutant)
        files.append(tmp_path / f"m{index:05d}.dcm")
        files[-1].write_bytes(mutant.data)
        files.append(good_instance(tmp_path, rnd, ledger))

    run = storescu_bytes(gateway.site.listen_port, files, timeout=60 + NETWORK_CASES)

    tally = Tally("fuzz network (storescu)")
    for path in files:
        status = run.statuses.get(path, "not sent")
        if path.name.startswith("good-"):
            assert status == "Success", (path.name, run.output[-2000:])
        else:
            tally.add(status.split(":")[0])
    ledger.acknowledged += len(run.acknowledged)
    tally.report()
    assert "no response" not in tally.counts, run.output[-3000:]


def storescu_bytes(port: int, files: list[Path], timeout: float) -> StoreRun:
    """service_harness.storescu, reading storescu's output as bytes: it echoes parts of the
    files it cannot parse, which are not always UTF-8."""
    done = subprocess.run(
        storescu_command(port, files),
        capture_output=True,
        timeout=timeout,
        env=dcmtk_env(),
        check=False,
    )
    output = (done.stdout + done.stderr).decode("utf-8", errors="replace")
    return parse_storescu(output, done.returncode)


def _associate(port: int, contexts: list[tuple[bytes, bytes]]) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    sock.sendall(rawpeer.associate_rq(contexts))
    kind, _ = rawpeer.read_pdu(sock)
    assert kind == 0x02, f"expected A-ASSOCIATE-AC, got PDU type {kind}"
    return sock


def test_malformed_pdus_are_dropped_and_the_service_stays_up(
    gateway: Gateway, ledger: Ledger, tmp_path: Path
) -> None:
    port = gateway.site.listen_port
    valid = rawpeer.associate_rq([(rawpeer.VERIFICATION, rawpeer.IMPLICIT_LE)])
    bad_length = bytearray(valid)
    bad_length[2:6] = (len(valid) + 4096).to_bytes(4, "big")  # claims more than it sends
    inconsistent = bytearray(valid)
    inconsistent[6 + 68 + 2 : 6 + 68 + 4] = (0xFFFF).to_bytes(2, "big")  # item length
    openings = {
        # (A first byte that is a PDU type would make the rest a PDU in progress.)
        "garbage": b"\xab" + bytes(random.Random(1).randrange(256) for _ in range(511)),
        "http": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "p-data before association": rawpeer.p_data(1, b"\0" * 64, command=True, last=True),
        "unknown pdu type": b"\x09\x00\x00\x00\x00\x04abcd",
        "oversized pdu length": b"\x01\x00\xff\xff\xff\xf0" + b"\0" * 4096,
        "item lengths past the pdu": bytes(inconsistent),
        "release before association": b"\x05\x00\x00\x00\x00\x04\0\0\0\0",
    }
    for data in openings.values():
        # Refused at once, or held until the stall bound (the in-process test checks that
        # bound); either way the peer's close must free everything.
        with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
            sock.sendall(data)
            rawpeer.refused_within(sock, 0.5)
    # Cut short and left open (the server's stall bound ends these; see the in-process
    # test), then closed by the peer: the gateway must let go of them too.
    for data in (valid[:40], bytes(bad_length)):
        with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
            sock.sendall(data)
            time.sleep(0.1)

    # An association whose PDU claims ~4 GiB, fed 1 MiB, then reset.
    context = [(CT_IMAGE.encode(), rawpeer.EXPLICIT_LE)]
    sock = _associate(port, context)
    # (The gateway may drop it before the whole MiB is in: that is a refusal too.)
    rawpeer.send_unless_dropped(sock, b"\x04\x00\xff\xff\xff\xf0" + b"\0" * (1 << 20))
    rawpeer.reset(sock)

    # A C-STORE cut off mid-dataset by a reset, twice: never acknowledged, never stored.
    mutant = make_mutant("CT_small.dcm", (), random.Random(77))
    body = mutant.data[meta_end(mutant.data) :]
    for cut in (len(body) // 2, len(body)):
        sock = _associate(port, context)
        sock.sendall(
            rawpeer.p_data(
                1,
                rawpeer.c_store_command(CT_IMAGE, mutant.sop_instance_uid),
                command=True,
                last=True,
            )
        )
        rawpeer.send_unless_dropped(sock, rawpeer.p_data(1, body[:cut], command=False, last=False))
        time.sleep(0.2)
        rawpeer.reset(sock)

    # The service still serves a modality.
    assert echoscu(port).returncode == 0
    good = good_instance(tmp_path, random.Random(78), ledger)
    run = storescu(port, [good])
    assert run.acknowledged == [good], run.output[-2000:]
    ledger.acknowledged += 1
    assert gateway.alive()


def test_every_acknowledged_instance_is_exported_clean_or_quarantined(
    gateway: Gateway, ledger: Ledger
) -> None:
    """Runs last: the account of everything the tests above had acknowledged."""
    export = Path(gateway.site.settings["destination"]["folder"])
    quarantine = quarantine_root(gateway.site.storage)

    def settled() -> tuple[int, int] | None:
        exported = len(list(export.rglob("*.dcm"))) if export.is_dir() else 0
        held = len([p for p in quarantine.glob("*/reason.json")]) if quarantine.is_dir() else 0
        busy = gateway.metric("queue_depth")
        return (exported, held) if exported + held >= ledger.acknowledged and not busy else None

    exported, held = wait_until(settled, timeout=90, what="every instance exported or held")

    assert exported + held == ledger.acknowledged
    assert gateway.metric("instances_received") == ledger.acknowledged
    # Each output is searched for what its own input still held where it was planted
    # (Mutant.needles); an output that cannot be traced back, for everything planted.
    pseudonyms = gateway.site.pseudonyms()
    by_output = {pseudonyms.uid(uid): found for uid, found in ledger.needles.items()}
    everything = ledger.all_needles()
    for path in export.rglob("*.dcm"):
        assert leaked(path.read_bytes(), by_output.get(path.stem, everything)) == [], path
        dcmread(path)
    for reason_file in quarantine.glob("*/reason.json"):
        record = json.loads(reason_file.read_text())
        assert record["reason"] and record["stage"]
        assert not any(n in record["message"].lower() for n in everything), record
    assert gateway.alive()
    log = gateway.log()
    assert "a worker process died" not in log and "processing failed" not in log
