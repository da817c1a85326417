"""`dicom-gateway anonymize` end to end, as a user runs it: a config, a secret, a messy folder.

Each command runs as a separate process through the installed entry point, so these tests
see exactly what a user sees: exit codes, the summary line, the console text and the files
on disk. The input mixes synthetic identified CT studies (whose every planted identifier is
known) with real sample files, a text file, a DICOMDIR, a truncated file and files without
a `.dcm` extension in nested folders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from gateway.deid.pseudonyms import Pseudonyms
from gateway.keys.site_secret import read_site_secret
from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
REAL_CLEAN = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")
REAL_TRUNCATED = "MR_truncated.dcm"  # pixel data shorter than Rows x Columns says
SITE_ID = "TEST-SITE"
SIZE = 64  # small images keep the whole file fast
SUMMARY = re.compile(
    r"files in: (?P<files_in>\d+), written: (?P<written>\d+), "
    r"quarantined: (?P<quarantined>\d+), skipped: (?P<skipped>\d+)"
)
# Registered UIDs (PS3.6 Annex A: SOP classes, transfer syntaxes) identify nobody.
_DICOM_ROOT = "1.2.840.10008."
# UIDs that name software or a vocabulary, not the patient, the study or an instance.
_NOT_INSTANCE_UID_KEYWORDS = frozenset({"ImplementationClassUID", "CodingSchemeUID"})

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"no test data at {TESTDATA}")


# --- running the command -----------------------------------------------------------------


def gateway_command() -> list[str]:
    """The installed `dicom-gateway` next to this interpreter, else `python -m gateway.cli.main`."""
    entry = Path(sys.executable).parent / "dicom-gateway"
    if entry.is_file() and os.access(entry, os.X_OK):
        return [str(entry)]
    return [sys.executable, "-m", "gateway.cli.main"]


def run_gateway(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gateway_command(), *(str(a) for a in args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass(frozen=True)
class Site:
    """A site folder as a sysadmin sets it up: a secret from `keys init` and a config."""

    root: Path
    config: Path
    secret: Path

    @property
    def storage(self) -> Path:
        return self.root / "var"

    @property
    def quarantine(self) -> Path:
        return self.storage / "quarantine"


def make_site(root: Path, secret: Path | None = None) -> Site:
    """A new site; with `secret`, one sharing another site's secret (a second gateway)."""
    root.mkdir(parents=True)
    if secret is None:
        created = run_gateway("keys", "init", "--dir", root / "keys", cwd=root)
        assert created.returncode == 0, created.stderr
        secret = root / "keys" / "site-secret.key"
    config = root / "gateway.yaml"
    config.write_text(
        f"site_id: {SITE_ID}\nstorage_dir: var\nkeys:\n  secret: {secret}\n", encoding="utf-8"
    )
    return Site(root, config, secret)


@dataclass(frozen=True)
class Run:
    site: Site
    output: Path
    result: subprocess.CompletedProcess[str]

    @property
    def console(self) -> str:
        return self.result.stdout + self.result.stderr

    def counts(self) -> dict[str, int]:
        found = SUMMARY.search(self.result.stdout)
        assert found, f"no summary line in: {self.result.stdout!r}"
        return {key: int(value) for key, value in found.groupdict().items()}

    def files(self) -> list[Path]:
        return sorted(p for p in self.output.rglob("*") if p.is_file())

    def relative_paths(self) -> list[str]:
        return [p.relative_to(self.output).as_posix() for p in self.files()]


def anonymize(site: Site, input_dir: Path, output: Path, workers: int = 1) -> Run:
    result = run_gateway(
        "anonymize", input_dir, output, "-c", site.config, "--workers", workers, cwd=site.root
    )
    return Run(site, output, result)


# --- the input folder ------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFolder:
    """What the user points the command at, and what should become of each file."""

    path: Path
    patients: tuple[SyntheticPatient, ...]
    to_write: tuple[Path, ...]
    to_quarantine: tuple[Path, ...]
    to_skip: tuple[Path, ...]
    one_series: tuple[Path, ...]  # every slice of one synthetic series, all to be written

    @property
    def dicom_files(self) -> tuple[Path, ...]:
        return self.to_write + self.to_quarantine


def build_input(root: Path) -> InputFolder:
    ward = random_patient(11)
    clinic = SyntheticPatient()
    # A study exported by a PACS as IM files without extension, two folders deep.
    ward_files = []
    for path in make_ct_study(
        root / "ward7" / "exam_0001", instances=4, rows=SIZE, columns=SIZE, patient=ward, seed=11
    ):
        renamed = path.with_name("IM" + path.stem[-4:])
        path.rename(renamed)
        ward_files.append(renamed)
    # Another patient's study, deeper still, with the usual extension.
    clinic_dir = root / "import" / "2024" / "01" / "17" / "series2"
    clinic_files = make_ct_study(
        clinic_dir, instances=4, rows=SIZE, columns=SIZE, patient=clinic, seed=12
    )
    # One of the clinic's slices was cut short in transfer, in the middle of its pixel data.
    cut = root / "import" / "broken" / "CT_cut.dcm"
    cut.parent.mkdir(parents=True)
    data = clinic_files[-1].read_bytes()
    cut.write_bytes(data[: len(data) - SIZE * SIZE])
    clinic_files[-1].unlink()
    clinic_files = clinic_files[:-1]
    # Real sample files, and one whose pixel data is truncated.
    real = root / "real"
    real.mkdir()
    for name in (*REAL_CLEAN, REAL_TRUNCATED):
        shutil.copyfile(TESTDATA / name, real / name)
    # Files that are not instances: notes, and a DICOMDIR (here holding a clinic instance's
    # bytes, so a DICOMDIR processed by mistake would show as a leak).
    notes = root / "README.txt"
    notes.write_text("Exported from PACS, see ticket 4471.\n", encoding="utf-8")
    dicomdir = root / "media" / "DICOMDIR"
    dicomdir.parent.mkdir()
    shutil.copyfile(clinic_files[0], dicomdir)
    return InputFolder(
        path=root,
        patients=(ward, clinic),
        to_write=(*ward_files, *clinic_files, *(real / name for name in REAL_CLEAN)),
        to_quarantine=(cut, real / REAL_TRUNCATED),
        to_skip=(notes, dicomdir),
        one_series=tuple(ward_files),
    )


@pytest.fixture(scope="module")
def input_folder(tmp_path_factory: pytest.TempPathFactory) -> InputFolder:
    return build_input(tmp_path_factory.mktemp("offline") / "in")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("offline") / "site")


@pytest.fixture(scope="module")
def first_run(site: Site, input_folder: InputFolder) -> Run:
    return anonymize(site, input_folder.path, site.root.parent / "out", workers=1)


# --- helpers for what is in the files --------------------------------------------------------


def needles(values: Iterable[str]) -> set[bytes]:
    """Each value as it may be written: any case, `^` as itself or as a space."""
    found: set[bytes] = set()
    for value in values:
        lowered = value.lower()
        found.add(lowered.encode("utf-8"))
        found.add(lowered.replace("^", " ").encode("utf-8"))
    return found


def uids_in(ds: Dataset) -> Iterator[tuple[str, str]]:
    """(keyword, UID) for every UI value at any depth, file meta included."""
    datasets = [ds]
    if getattr(ds, "file_meta", None) is not None:
        datasets.append(ds.file_meta)
    for each in datasets:
        for elem in each.iterall():
            if elem.VR != "UI" or not elem.value:
                continue
            values = elem.value if elem.VM > 1 else [elem.value]
            for value in values:
                yield elem.keyword, str(value).strip("\0 ")


def original_uids(paths: Iterable[Path]) -> set[str]:
    """The UIDs of the input that identify a study, series, instance or frame of reference."""
    found: set[str] = set()
    for path in paths:
        for keyword, uid in uids_in(dcmread(path, force=True)):
            registered = uid.startswith(_DICOM_ROOT)
            if uid and not registered and keyword not in _NOT_INSTANCE_UID_KEYWORDS:
                found.add(uid)
    return found


def pseudo_sop(site: Site, path: Path) -> str:
    """The SOP Instance UID the gateway gives this input file (keyed HMAC, DESIGN.md)."""
    pseudonyms = Pseudonyms(read_site_secret(site.secret), SITE_ID)
    return pseudonyms.uid(str(dcmread(path, force=True).SOPInstanceUID))


# --- the tests -------------------------------------------------------------------------------


def test_mixed_folder_is_processed_with_exit_0_and_an_exact_summary(
    first_run: Run, input_folder: InputFolder
) -> None:
    assert first_run.result.returncode == 0, first_run.console
    assert first_run.counts() == {
        "files_in": len(input_folder.to_write + input_folder.to_quarantine + input_folder.to_skip),
        "written": len(input_folder.to_write),
        "quarantined": len(input_folder.to_quarantine),
        "skipped": len(input_folder.to_skip),
    }
    assert len(first_run.files()) == len(input_folder.to_write)


def test_output_is_filed_by_pseudonymous_patient_study_series_and_instance(
    first_run: Run,
) -> None:
    assert first_run.files()
    for path in first_run.files():
        parts = path.relative_to(first_run.output).parts
        assert len(parts) == 4, parts
        ds = dcmread(path)  # a proper Part 10 file: no force needed
        assert parts == (
            ds.PatientID,
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            f"{ds.SOPInstanceUID}.dcm",
        )
        assert ds.PatientName == ds.PatientID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_every_written_file_comes_from_an_input_meant_to_be_written(
    first_run: Run, input_folder: InputFolder
) -> None:
    site = first_run.site
    written = {path.stem: path for path in first_run.files()}
    expected = {pseudo_sop(site, path) for path in input_folder.to_write}
    assert set(written) == expected
    # A synthetic study's slices stay together in one series folder.
    folders = {written[pseudo_sop(site, path)].parent for path in input_folder.one_series}
    assert len(folders) == 1


def shifted_dates(output: Path, source: Path) -> Counter[str]:
    """Dates of `output` that are its source's date at the same place, moved (how many
    elements hold each; a date also held unmoved is left out): a patient's
    shift (365 to 3,652 days back, keyed) can land another patient's date on one of the
    synthetic birth dates (seen once in CI: a sample's 2004 study date moved to the day of
    a birth date in 1997). Such a date is no copy, so it is not a leak."""

    def dates(ds: Dataset) -> dict[tuple[object, ...], str]:
        found: dict[tuple[object, ...], str] = {}

        def walk(each: Dataset, path: tuple[object, ...]) -> None:
            for elem in each:
                if elem.VR == "SQ":
                    for index, item in enumerate(elem.value or ()):
                        walk(item, (*path, int(elem.tag), index))
                elif elem.VR == "DA" and elem.value:
                    found[(*path, int(elem.tag))] = str(elem.value)

        walk(ds, ())
        return found

    before, after = dates(dcmread(source, force=True)), dates(dcmread(output, force=True))
    moved = Counter(v for place, v in after.items() if before.get(place, v) != v)
    kept = {v for place, v in after.items() if before.get(place, v) == v}
    return Counter({v: n for v, n in moved.items() if v not in kept})


def test_no_identifier_of_the_synthetic_patients_is_left_in_any_byte_or_on_the_console(
    site: Site, first_run: Run, input_folder: InputFolder
) -> None:
    values = [v for p in input_folder.patients for v in p.identifying_values()]
    identifiers = needles(values)
    # The check means something only if every value was really planted in the input.
    planted = b"".join(path.read_bytes() for path in input_folder.dicom_files).lower()
    assert not [v for v in values if not any(n in planted for n in needles([v]))]
    assert first_run.files()
    sources = {pseudo_sop(site, path): path for path in input_folder.to_write}
    for path in first_run.files():
        data = path.read_bytes().lower()  # whole file: meta, every element, private blocks
        found = sorted(n.decode() for n in identifiers if n in data)
        if found and path.stem in sources:  # a date only as a moved date: a coincidence
            moved = shifted_dates(path, sources[path.stem])
            found = [v for v in found if data.count(v.encode()) != moved[v]]
        assert not found, f"{path.name} holds identifiers: {found}"
    console = first_run.console.lower().encode("utf-8")
    assert not sorted(n.decode() for n in identifiers if n in console)


def test_no_original_uid_of_the_input_is_left_in_the_output(
    first_run: Run, input_folder: InputFolder
) -> None:
    originals = {uid.encode("ascii") for uid in original_uids(input_folder.dicom_files)}
    assert originals
    for path in first_run.files():
        data = path.read_bytes()
        assert not [uid for uid in originals if uid in data], path.name


def test_files_that_cannot_be_made_safe_are_quarantined_with_a_reason_outside_the_output(
    first_run: Run, input_folder: InputFolder
) -> None:
    site = first_run.site
    entries = sorted(p for p in site.quarantine.iterdir() if not p.name.startswith("."))
    assert len(entries) == len(input_folder.to_quarantine)
    originals = {path.read_bytes() for path in input_folder.to_quarantine}
    held = set()
    for entry in entries:
        reason = json.loads((entry / "reason.json").read_text(encoding="utf-8"))
        assert reason["reason"] and reason["stage"] and reason["message"]
        held.add((entry / "original.dcm").read_bytes())
    assert held == originals
    assert f"quarantine: {site.quarantine.resolve()}" in first_run.result.stdout
    written = {path.stem for path in first_run.files()}
    # MR_truncated.dcm is a cut copy of MR_small.dcm (same SOP Instance UID): only the whole
    # one may be written, so its output must hold all the pixel data.
    meant = {pseudo_sop(site, path) for path in input_folder.to_write}
    for path in input_folder.to_quarantine:
        sop = pseudo_sop(site, path)
        if sop not in meant:
            assert sop not in written
    for path in first_run.files():
        ds = dcmread(path)
        if "PixelData" in ds and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1":
            assert len(ds.PixelData) >= ds.Rows * ds.Columns * ds.BitsAllocated // 8
    assert not [p for p in first_run.output.rglob("*") if p.name in ("reason.json", "original.dcm")]


def test_second_run_with_the_same_secret_writes_the_same_paths(
    first_run: Run, input_folder: InputFolder, tmp_path: Path
) -> None:
    again = make_site(tmp_path / "site2", secret=first_run.site.secret)
    second = anonymize(again, input_folder.path, tmp_path / "out", workers=1)
    assert second.result.returncode == 0, second.console
    assert second.relative_paths() == first_run.relative_paths()


def test_another_sites_secret_gives_other_pseudonyms(
    first_run: Run, input_folder: InputFolder, tmp_path: Path
) -> None:
    other = make_site(tmp_path / "other-site")
    assert other.secret.read_bytes() != first_run.site.secret.read_bytes()
    theirs = anonymize(other, input_folder.path, tmp_path / "out", workers=1)
    assert theirs.result.returncode == 0, theirs.console
    assert theirs.counts() == first_run.counts()
    ours_parts = [p.split("/") for p in first_run.relative_paths()]
    their_parts = [p.split("/") for p in theirs.relative_paths()]
    for level in range(4):  # patient, study, series, instance: none shared
        assert not {p[level] for p in ours_parts} & {p[level] for p in their_parts}


def test_two_workers_write_the_same_paths_as_one(
    first_run: Run, input_folder: InputFolder, tmp_path: Path
) -> None:
    pooled_site = make_site(tmp_path / "site2", secret=first_run.site.secret)
    pooled = anonymize(pooled_site, input_folder.path, tmp_path / "out", workers=2)
    assert pooled.result.returncode == 0, pooled.console
    assert pooled.counts() == first_run.counts()
    assert pooled.relative_paths() == first_run.relative_paths()


def test_file_cut_inside_its_header_is_not_written(tmp_path: Path) -> None:
    source = make_ct_study(tmp_path / "made", instances=1, rows=SIZE, columns=SIZE, seed=5)[0]
    data = source.read_bytes()
    cut_at = data.index(b"CT CHEST W CONTRAST") + 10  # inside Study Description
    input_dir = tmp_path / "in"
    input_dir.mkdir()
    (input_dir / "CT_cut_header.dcm").write_bytes(data[:cut_at])
    run = anonymize(make_site(tmp_path / "site"), input_dir, tmp_path / "out")
    assert run.result.returncode == 0, run.console
    assert run.counts()["written"] == 0
    assert run.counts()["quarantined"] == 1
    assert run.files() == []


def test_check_config_accepts_a_good_file(site: Site) -> None:
    result = run_gateway("check-config", "-c", site.config, cwd=site.root)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_names_the_file_and_key_of_a_port_out_of_range(site: Site) -> None:
    bad = site.root / "bad-port.yaml"
    bad.write_text(site.config.read_text(encoding="utf-8") + "listen:\n  port: 70000\n")
    result = run_gateway("check-config", "-c", bad, cwd=site.root)
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "'listen.port'" in result.stderr
    assert "70000" in result.stderr


def test_keys_init_twice_refuses_and_keeps_the_first_secret(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = run_gateway("keys", "init", "--dir", keys, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    secret = (keys / "site-secret.key").read_bytes()
    pair = [(keys / name).read_bytes() for name in ("reid-public.pem", "reid-private.pem")]
    second = run_gateway("keys", "init", "--dir", keys, cwd=tmp_path)
    assert second.returncode == 1
    assert "never overwritten" in second.stderr
    assert (keys / "site-secret.key").read_bytes() == secret
    assert [(keys / n).read_bytes() for n in ("reid-public.pem", "reid-private.pem")] == pair
    assert "does not belong on the gateway host" in first.stdout


def test_input_folder_that_does_not_exist_is_a_usage_error(site: Site, tmp_path: Path) -> None:
    run = anonymize(site, tmp_path / "no-such-folder", tmp_path / "out")
    assert run.result.returncode == 2
    assert "not found" in run.result.stderr
    assert not (tmp_path / "out").exists()
