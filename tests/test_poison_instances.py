"""One instance never stops a run: it is held with a reason and everything else goes on.

The failures the issue reported, each reproduced as a user meets it: a CTP script that
leaves no Patient ID while the sealed mapping is on (`anonymize` stopped with exit 2 and no
summary), two inputs with one SOP Instance UID (the second silently overwrote the first and
both were counted as written), a bug on one instance (the whole run stopped), a worker that
dies on one file, and a quarantine entry that was not fsynced before the spool copy went.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from test_offline_cli import REAL_CLEAN, TESTDATA, Run, Site, anonymize, make_site

import gateway.offline as offline
import gateway.pipeline.files as files
from gateway.deid.profile import default_profile
from gateway.keys.keyed_hash import KeyedHash
from gateway.offline import EngineSettings, anonymize_folder
from gateway.pipeline.files import deidentify_file, init_worker
from gateway.stores import quarantine
from gateway.stores.mapping_records import InstanceOriginals

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"no test data at {TESTDATA}")

CONF = Path(__file__).resolve().parents[1] / "conf" / "profiles"
FEDERATION = CONF / "research-federation.script"
HASHED_ID = '<e en="T" t="00100020" n="PatientID">@hashptid(@SITEID,PatientID,@PTIDLEN)</e>'
SECRET = b"poison-test-secret-0123456789abc"


def with_mapping_and_script(site: Site, script: Path) -> Site:
    """The site seals its pseudonyms (keys.reid_public_key) and runs a CTP script."""
    public = site.secret.parent / "reid-public.pem"
    site.config.write_text(
        site.config.read_text(encoding="utf-8").replace(
            "keys:\n", f"keys:\n  reid_public_key: {public}\n"
        )
        + f"deid:\n  profile: {script}\n",
        encoding="utf-8",
    )
    return site


def without_patient_id(source: Path, target: Path) -> Path:
    ds = dcmread(source)
    del ds.PatientID
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


def copy_inputs(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(TESTDATA / name, folder / name)
    return folder


def assert_accounted(run: Run) -> dict[str, int]:
    """Exit 0, a summary, and as many files on disk as it says were written."""
    assert run.result.returncode == 0, run.console
    counts = run.counts()
    assert counts["files_in"] == counts["written"] + counts["quarantined"] + counts["skipped"]
    assert len(run.files()) == counts["written"], run.relative_paths()
    return counts


# --- a script that leaves no Patient ID, with the sealed mapping on --------------------------


def test_an_instance_without_patient_id_under_a_ctp_script_is_written_with_its_run(
    tmp_path: Path,
) -> None:
    site = with_mapping_and_script(make_site(tmp_path / "site"), FEDERATION)
    inputs = copy_inputs(tmp_path / "in", *REAL_CLEAN)
    without_patient_id(TESTDATA / "CT_small.dcm", inputs / "CT_small.dcm")
    run = anonymize(site, inputs, tmp_path / "out")
    counts = assert_accounted(run)
    assert counts["written"] == len(REAL_CLEAN)
    # Filed as the folder destination files it: no pseudonym, no folder level lost.
    assert sum(p.startswith("NO-PATIENT/") for p in run.relative_paths()) == 1
    assert (site.storage / "mapping.db").is_file()


def test_a_script_that_removes_every_patient_id_still_writes_every_instance(
    tmp_path: Path,
) -> None:
    script = tmp_path / "no-patient-id.script"
    text = FEDERATION.read_text(encoding="utf-8")
    assert HASHED_ID in text
    script.write_text(
        text.replace(HASHED_ID, '<e en="T" t="00100020" n="PatientID">@remove()</e>'),
        encoding="utf-8",
    )
    site = with_mapping_and_script(make_site(tmp_path / "site"), script)
    counts = assert_accounted(
        anonymize(site, copy_inputs(tmp_path / "in", *REAL_CLEAN), tmp_path / "out")
    )
    assert counts["written"] == len(REAL_CLEAN)


def test_mapping_records_of_an_instance_without_patient_pseudonym_leave_the_patient_out() -> None:
    class Identity:
        patient_pseudonym = ""
        study_uid = "2.25.1"
        series_uid = "2.25.2"
        sop_instance_uid = "2.25.3"
        date_shift_days = 12

    originals = InstanceOriginals("", "", "", "", "1.2.3", "1.2.3.4", "1.2.3.4.5", "")
    entries = originals.entries(Identity())
    assert [e.kind for e in entries] == ["study", "series", "instance"]
    assert entries[0].parent is None and all(e.pseudonym for e in entries)


# --- a failure on one instance -----------------------------------------------------------------


def test_an_unexpected_error_on_one_instance_quarantines_it_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = files.process_instance

    def fails_on_ct(ds, *args, **kwargs):  # type: ignore[no-untyped-def]
        if ds.Modality == "CT":
            raise KeyError("a value that must never be shown")
        return real(ds, *args, **kwargs)

    monkeypatch.setattr(files, "process_instance", fails_on_ct)
    storage = tmp_path / "storage"
    settings = EngineSettings(default_profile(), SECRET, "SITE", storage)
    inputs = copy_inputs(tmp_path / "in", *REAL_CLEAN)
    summary = anonymize_folder(inputs, tmp_path / "out", settings, workers=1)
    assert (summary.written, summary.quarantined, summary.skipped) == (len(REAL_CLEAN) - 1, 1, 0)
    (entry,) = quarantine.entries(storage)
    assert (entry.reason, entry.stage) == ("processing-failed", "deid")
    assert entry.message == "unexpected KeyError"
    assert (entry.path / "original.dcm").read_bytes() == (inputs / "CT_small.dcm").read_bytes()


def dies_on_marked_file(path: Path, output_dir: Path, claims: Path) -> files.FileOutcome:
    """A worker that dies (as a decoder's segfault kills it) on one file."""
    if path.name == "dies.dcm":
        os._exit(70)
    return _real_process_file(path, output_dir, claims)


_real_process_file = offline.process_file


def test_a_worker_that_dies_on_one_file_quarantines_that_file_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Forked workers inherit the patched module: the file kills whichever worker takes it.
    monkeypatch.setattr(offline, "process_file", dies_on_marked_file)
    storage = tmp_path / "storage"
    settings = EngineSettings(default_profile(), SECRET, "SITE", storage)
    inputs = copy_inputs(tmp_path / "in", *REAL_CLEAN, "rtdose.dcm", "test-SR.dcm")
    shutil.copyfile(TESTDATA / "emri_small.dcm", inputs / "dies.dcm")
    summary = anonymize_folder(inputs, tmp_path / "out", settings, workers=2)
    assert (summary.files_in, summary.written, summary.quarantined) == (6, 5, 1)
    (entry,) = quarantine.entries(storage)
    assert entry.reason == "worker-died"
    assert len([p for p in (tmp_path / "out").rglob("*") if p.is_file()]) == 5


# --- two inputs, one SOP Instance UID ---------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_two_inputs_with_one_sop_instance_uid_write_one_file_and_hold_the_other(
    tmp_path: Path, workers: int
) -> None:
    # MR_small_implicit.dcm is MR_small.dcm in another transfer syntax: one instance.
    inputs = copy_inputs(tmp_path / "in", "MR_small.dcm", "MR_small_implicit.dcm", "CT_small.dcm")
    run = anonymize(make_site(tmp_path / "site"), inputs, tmp_path / "out", workers=workers)
    counts = assert_accounted(run)
    assert (counts["written"], counts["quarantined"]) == (2, 1)
    assert "duplicates: 1" in run.result.stdout
    (held,) = [line for line in run.result.stderr.splitlines() if "duplicate:" in line]
    if workers == 1:  # in input order, the first one wins
        assert held.startswith("quarantined: MR_small_implicit.dcm: duplicate: ")
    (entry,) = quarantine.entries(run.site.storage)
    assert (entry.reason, entry.stage) == ("duplicate", "write")
    assert not (run.site.storage / offline.RUN_CLAIMS_DIR).exists()


def test_a_second_run_into_the_same_output_replaces_its_files_without_duplicates(
    tmp_path: Path,
) -> None:
    site = make_site(tmp_path / "site")
    inputs = copy_inputs(tmp_path / "in", *REAL_CLEAN)
    first = assert_accounted(anonymize(site, inputs, tmp_path / "out"))
    again = anonymize(site, inputs, tmp_path / "out")
    assert assert_accounted(again) == first
    assert "duplicate" not in again.console


def test_an_instance_processed_again_after_a_crash_is_not_its_own_duplicate(
    tmp_path: Path,
) -> None:
    init_worker(EngineSettings(default_profile(), SECRET, "SITE", tmp_path / "storage"))
    outbox, claims = tmp_path / "outbox", tmp_path / "outbox" / ".claims"
    source = shutil.copyfile(TESTDATA / "MR_small.dcm", tmp_path / "spooled.dcm")

    def target(result: files.DeidResult) -> Path:
        return outbox / f"{result.sop_instance_uid}.dcm"

    first = deidentify_file(source, target, "gateway", claims)
    again = deidentify_file(source, target, "gateway", claims)  # the round, run again
    assert (first.status, again.status) == ("written", "written")
    assert first.output == again.output and len(list(outbox.glob("*.dcm"))) == 1
    other = shutil.copyfile(TESTDATA / "MR_small_implicit.dcm", tmp_path / "other.dcm")
    duplicate = deidentify_file(other, target, "gateway", claims)
    assert duplicate.status == "quarantined" and duplicate.detail.startswith("duplicate: ")
    # Without a claims folder an existing output is never replaced either.
    assert deidentify_file(source, target, "gateway").detail.startswith("duplicate: ")


# --- the quarantine is durable ---------------------------------------------------------------


def test_a_quarantine_entry_is_fsynced_file_and_folder_before_put_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    storage = tmp_path / "storage"
    source = shutil.copyfile(TESTDATA / "CT_small.dcm", tmp_path / "spooled.dcm")
    keyed = KeyedHash(SECRET)
    entry = quarantine.put(
        storage, source, reason="r", stage="s", message="m", origin="gateway", keyed_hash=keyed
    )
    root = str(quarantine.quarantine_root(storage))
    staging = f"{root}/.tmp-{entry.id}"
    for path in (f"{staging}/original.dcm", f"{staging}/reason.json", staging, root):
        assert path in synced, (path, synced)
    assert synced.index(staging) < synced.index(root)

    synced.clear()  # found again (a round processed again after a crash): synced again
    assert quarantine.put(
        storage, source, reason="r", stage="s", message="m", origin="gateway", keyed_hash=keyed
    )
    assert {
        f"{entry.path}/original.dcm",
        f"{entry.path}/reason.json",
        str(entry.path),
        root,
    } <= set(synced)
