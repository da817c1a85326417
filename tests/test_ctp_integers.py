"""@integer numbers are kept as CTP keeps them: one table for every worker and every run."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from gateway.deid.ctp.profile import INTEGER_TABLE_FILE, load_script
from gateway.deid.pseudonyms import Pseudonyms

SECRET = b"ctp-integer-table-test-secret-01"
SCRIPT = '<script>\n<e en="T" t="00100020" n="PatientID">@integer(this,ptid,4)</e>\n</script>\n'


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "integers.script"
    path.write_text(SCRIPT, encoding="utf-8")
    return path


def _numbers(script: Path, storage: Path, patients: list[str]) -> list[str]:
    engine = load_script(script, None).build_engine(Pseudonyms(SECRET, "SITE"), storage)
    return [engine.patient_identity(p).pseudonym for p in patients]


def test_numbers_survive_a_restart_and_hold_no_patient_data(tmp_path: Path) -> None:
    script, storage = _script(tmp_path), tmp_path / "storage"
    first = _numbers(script, storage, ["PID-ALPHA-7731", "PID-BRAVO-2214", "PID-ALPHA-7731"])
    assert first == ["0001", "0002", "0001"]
    # A new engine (a restart, another worker) gives the same patients the same numbers
    # and a new patient the next one.
    again = _numbers(script, storage, ["PID-BRAVO-2214", "PID-CHARLIE-90", "PID-ALPHA-7731"])
    assert again == ["0002", "0003", "0001"]
    stored = b"".join(f.read_bytes() for f in storage.iterdir() if f.is_file())
    for original in (b"PID-ALPHA", b"PID-BRAVO", b"PID-CHARLIE", b"7731"):
        assert original not in stored
    assert (storage / INTEGER_TABLE_FILE).is_file()


def _worker(args: tuple[str, str, list[str]]) -> list[str]:
    script, storage, patients = args
    return _numbers(Path(script), Path(storage), patients)


def test_worker_processes_share_one_numbering(tmp_path: Path) -> None:
    script, storage = _script(tmp_path), tmp_path / "storage"
    patients = [f"PATIENT-{i:03d}" for i in range(40)]
    orders = [patients, list(reversed(patients)), patients[::2] + patients[1::2]]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_worker, [(str(script), str(storage), order) for order in orders])
    given = [dict(zip(order, numbers, strict=True)) for order, numbers in zip(orders, results,
                                                                              strict=True)]
    assert given[0] == given[1] == given[2]  # every process gives a patient the same number
    assert sorted(given[0].values()) == [f"{n:04d}" for n in range(1, 41)]  # and no two alike


def test_without_a_storage_folder_numbers_live_with_the_engine(tmp_path: Path) -> None:
    script = _script(tmp_path)
    engine = load_script(script, None).build_engine(Pseudonyms(SECRET, "SITE"))
    assert [engine.patient_identity(p).pseudonym for p in ("A-1", "B-2", "A-1")] == [
        "0001", "0002", "0001"
    ]
