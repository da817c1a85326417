"""The console's review tools without a browser: a marked region becomes a pixel rule, the
frame picker of a multi-frame original, the profile review table, and the HTTP port under
TLS (the console's cookie is then Secure, and /healthz answers as before)."""

from __future__ import annotations

import re
import shutil
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gateway.base.metrics import Metrics
from gateway.console import accounts as accounts_module
from gateway.console import app as app_module
from gateway.console import pictures as pictures_module
from gateway.console import preview as preview_module
from gateway.console.accounts import Accounts, Role, default_users_file
from gateway.console.app import ConsoleContext, create_app
from gateway.deid.profile import default_profile
from gateway.keys.dev_certificates import make_dev_certificates
from gateway.keys.keyed_hash import KeyedHash
from gateway.pipeline import pixel_tail
from gateway.pipeline.files import EngineSettings
from gateway.pixels.rules import load_pixel_config
from gateway.stores import quarantine
from gateway.stores.audit import AuditLog
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import RoundState

PASSWORD = "correct horse battery"
CONF = Path(__file__).resolve().parents[1] / "conf"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "_HASHER", CHEAP)
    monkeypatch.setattr(accounts_module, "_DUMMY_HASH", CHEAP.hash("dummy"))


def _context(tmp_path: Path, *, https: bool = False) -> ConsoleContext:
    storage = tmp_path / "var"
    rules = tmp_path / "conf" / "pixel_rules.yaml"
    rules.parent.mkdir()
    for name in ("pixel_rules.yaml", "pixel_allowlist.yaml"):
        shutil.copy(CONF / name, tmp_path / "conf" / name)
    secret = bytes(range(32))
    context = ConsoleContext(
        storage_dir=storage,
        spool=Spool(storage, KeyedHash(secret)),
        audit=AuditLog(storage / "audit.jsonl"),
        settings=EngineSettings(default_profile(), secret, "SITE", storage),
        listening="DEID_GW@127.0.0.1:11112",
        healthy=lambda: True,
        pixel_rules=rules,
        https=https,
    )
    Accounts(default_users_file(storage)).add("rita", PASSWORD, Role.REVIEWER)
    return context


def _signed_in(context: ConsoleContext) -> tuple[FlaskClient, str]:
    client = create_app(context).test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    form = {"user": "rita", "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=form).status_code == 302
    page = client.get("/quarantine").text  # a new session has a new token
    return client, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _cine(path: Path, frames: int = 3) -> None:
    """A small multi-frame grey ultrasound (a vendor's, by its header)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "US", "Acme (Echo)", "X1"
    ds.PatientName, ds.PatientID = "Roe^Richard", "PID-1"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.NumberOfFrames = 64, 80, 1, frames
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    pixels = np.zeros((frames, 64, 80), np.uint8)
    for i in range(frames):  # a bright square that moves from frame to frame
        pixels[i, 10:20, 10 + 20 * i : 20 + 20 * i] = 200
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _hold(context: ConsoleContext, tmp_path: Path) -> str:
    _cine(tmp_path / "cine.dcm")
    return quarantine.put(
        context.storage_dir, tmp_path / "cine.dcm", reason="pixels-failed", stage="pixels",
        message="x", origin="test", keyed_hash=KeyedHash(bytes(32)),
    ).id  # fmt: skip


def test_every_frame_of_a_multiframe_original_is_shown_and_no_other(tmp_path: Path) -> None:
    context = _context(tmp_path)
    entry = _hold(context, tmp_path)
    client, _ = _signed_in(context)
    page = client.get(f"/quarantine/{entry}?frame=2").text
    assert 'href="?frame=0"' in page and "<strong>3</strong>" in page
    first = client.get(f"/quarantine/{entry}/original.png?frame=0")
    last = client.get(f"/quarantine/{entry}/original.png?frame=2")
    assert first.status_code == last.status_code == 200 and first.data != last.data
    assert client.get(f"/quarantine/{entry}/original.png?frame=3").status_code == 404
    windowed = client.get(f"/quarantine/{entry}/original.png?frame=0&wc=100&ww=400")
    assert windowed.status_code == 200 and windowed.data != first.data
    cached = context.console_folder / "cache" / entry
    assert {p.stat().st_mode & 0o777 for p in cached.iterdir()} == {0o600}
    context.spool.close()


def test_a_marked_region_becomes_a_rule_for_that_device_after_confirmation(
    tmp_path: Path,
) -> None:
    context = _context(tmp_path)
    entry = _hold(context, tmp_path)
    client, token = _signed_in(context)
    form = {"csrf_token": token, "x0": "0", "y0": "0", "x1": "80", "y1": "12"}
    assert client.post(f"/quarantine/{entry}/rule", data=form).status_code == 400  # unconfirmed
    outside = {**form, "x1": "81", "confirm": "yes"}
    assert client.post(f"/quarantine/{entry}/rule", data=outside).status_code == 409
    made = client.post(f"/quarantine/{entry}/rule", data={**form, "confirm": "yes"})
    assert made.status_code == 200 and "added" in made.text
    config = load_pixel_config(context.pixel_rules)
    rule = config.rules[-1]
    assert rule.name.startswith("console-") and rule.boxes == ((0, 0, 80, 12),)
    assert "# THE RULES BELOW ARE EXAMPLES" in context.pixel_rules.read_text()  # comments kept
    header = Dataset()
    header.update({"Modality": "US", "Manufacturer": "Acme (Echo)",
                   "ManufacturerModelName": "X1", "Rows": 64, "Columns": 80})  # fmt: skip
    assert rule.matches(header)
    header.Rows = 65
    assert not rule.matches(header)  # that size only
    context.spool.close()


def test_the_profile_review_table_lists_the_running_profile(tmp_path: Path) -> None:
    context = _context(tmp_path)
    client, _ = _signed_in(context)
    page = client.get("/profile")
    assert page.status_code == 200 and "not acknowledged" in page.text
    context.spool.close()


def test_the_http_port_under_tls_serves_health_and_a_secure_cookie(tmp_path: Path) -> None:
    make_dev_certificates(tmp_path / "tls")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tmp_path / "tls" / "server.pem", tmp_path / "tls" / "server-key.pem")
    context = _context(tmp_path, https=True)
    app = create_app(context)
    server = Metrics().start_http("127.0.0.1", 0, lambda: True, app=app, ssl_context=server_tls)
    client_tls = ssl.create_default_context(cafile=tmp_path / "tls" / "ca.pem")
    client_tls.check_hostname = False
    try:
        base = f"https://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/healthz", context=client_tls, timeout=10) as answer:
            assert answer.status == 200 and answer.read() == b"ok\n"
        with urllib.request.urlopen(f"{base}/login", context=client_tls, timeout=10) as answer:
            cookie = answer.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: no answer
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
    finally:
        server.shutdown()
        context.spool.close()


def test_pictures_of_an_original_purged_by_the_command_line_are_deleted_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "SWEEP_SECONDS", 0.0)
    context = _context(tmp_path)
    entry = _hold(context, tmp_path)
    client, _ = _signed_in(context)
    assert client.get(f"/quarantine/{entry}/original.png").status_code == 200
    cache = context.console_folder / "cache" / entry
    assert any(cache.glob("*.png"))
    assert quarantine.purge(context.storage_dir) == 1  # `dicom-gateway quarantine purge`
    client.get("/")
    assert not cache.exists()
    context.spool.close()


def test_status_shows_studies_waiting_for_a_retry_and_held_ones_can_be_released(
    tmp_path: Path,
) -> None:
    context = _context(tmp_path)
    spool = context.spool
    for number in (1, 2):
        spool.store(
            b"not read here", sop_instance_uid=f"1.2.3.{number}", sop_class_uid="1.2",
            study_uid=f"1.2.9.{number}", transfer_syntax="1.2.840.10008.1.2.1",
            calling_ae="MODALITY",
        )  # fmt: skip
    retrying, failed = (r.id for r in spool.rounds_in(RoundState.RECEIVING))
    for number in (retrying, failed):
        spool.claim(number)
        spool.processed(number)
    spool.forward_failed(retrying, 3, time.time() + 60, "association rejected")
    spool.forward_failed(failed, 20, None, "gave up after 20 attempts")
    client, token = _signed_in(context)
    status = client.get("/").text
    assert "association rejected" in status and spool.uid_hash("1.2.9.1") in status
    assert "1.2.9.1" not in status  # the original Study UID is never shown
    listed = client.get("/quarantine?stage=forward").text
    assert f"round-{failed}" in listed
    done = client.post(f"/quarantine/round-{failed}/release", data={"csrf_token": token})
    assert done.status_code == 302
    assert spool.get_round(failed).state is RoundState.FORWARDING
    spool.close()


def test_an_instance_without_an_image_is_reviewed_by_its_header(tmp_path: Path) -> None:
    context = _context(tmp_path)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "SR", "Roe^Richard", "PID-1"
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    entry = quarantine.put(
        context.storage_dir, tmp_path / "sr.dcm", reason="identifier-found", stage="verify",
        message="x", origin="test", keyed_hash=KeyedHash(bytes(32)),
    ).id  # fmt: skip
    client, _ = _signed_in(context)
    page = client.get(f"/quarantine/{entry}").text
    assert 'id="no-pixels"' in page and 'id="original"' not in page
    assert "Roe^Richard" in page  # the header diff
    context.spool.close()


def test_a_large_original_is_previewed_and_shown_from_its_header_and_one_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `LARGE_INSTANCE_BYTES` the preview cleans the original frame by frame and a
    picture decodes its one frame, as a worker would: a reviewer's click must not load a
    2 GiB loop whole into the service process. What is shown is what the whole path shows."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"allowlist: {CONF / 'pixel_allowlist.yaml'}\nselection: {{modalities: [US]}}\nrules:\n"
        "  - {name: band, conditions: {Modality: US}, boxes: [[0, 0, 0, 12]]}\n"
    )
    context = _context(tmp_path)
    context.settings = EngineSettings(
        default_profile(), bytes(range(32)), "SITE", context.storage_dir,
        pixels=load_pixel_config(rules),
    )  # fmt: skip
    entry = _hold(context, tmp_path)
    client, _ = _signed_in(context)

    def shown() -> list[bytes]:
        assert client.get(f"/quarantine/{entry}").status_code == 200
        return [
            client.get(f"/quarantine/{entry}/{which}.png?frame={frame}").data
            for which in ("original", "cleaned")
            for frame in range(3)
        ]

    whole = shown()
    cleaned = context.console_folder / "cache" / entry / "cleaned.dcm"
    whole_pixels = dcmread(cleaned).pixel_array
    assert (whole_pixels[:, :12] == 0).all() and whole_pixels[:, 12:].any()
    shutil.rmtree(context.console_folder / "cache" / entry)

    monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 10)
    for module in (preview_module, pictures_module):
        monkeypatch.setattr(module, "dcmread", _header_only(module.dcmread))
    assert shown() == whole
    assert np.array_equal(dcmread(cleaned).pixel_array, whole_pixels)
    context.spool.close()


def _header_only(read: Callable[..., Dataset]) -> Callable[..., Dataset]:
    def reading(*args: object, **kwargs: object) -> Dataset:
        assert kwargs.get("stop_before_pixels"), "a large original was read whole"
        return read(*args, **kwargs)

    return reading
