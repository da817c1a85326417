"""`anonymize --cluster`: the offline run on Dask workers writes what a local run writes.

A real `dask scheduler` and two `dask worker` processes (one process, one thread each) run
on loopback for the module, as a sysadmin starts them; the command runs as a user types
it. The input mixes a two-series synthetic study, another patient's study, shared samples
(one with its pixel data cut short), a copy of one file (a duplicate SOP Instance UID), a
text file and a clinical table; the site seals its pseudonyms (a re-identification key).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from service_harness import free_port, leaks_in, run_cli, stop_process, wait_until
from test_offline_cli import TESTDATA, Site, make_site

import gateway.offline_cluster as offline_cluster
from gateway.cli.main import main
from gateway.deid.pseudonyms import Pseudonyms
from gateway.offline import anonymize_folder
from gateway.offline_cluster import (
    Batch,
    ClusterError,
    ClusterRunner,
    SiteKey,
    check_worker,
    run_batch,
)
from gateway.pipeline.files import FileOutcome
from gateway.site import load_site
from gateway.stores import quarantine
from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"no test data at {TESTDATA}")

BIN = Path(sys.executable).parent
SIZE = 32  # small slices keep the runs fast
DUPLICATES = ("copies/again.dcm", "ward/s1/CT00001.dcm")  # one instance, two files
SAMPLES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "MR_truncated.dcm")
COUNTS = re.compile(r"files in: \d+, written: \d+, quarantined: \d+, skipped: \d+.*?, seconds")
# A worker killed on a task is reported at once (the scheduler's default retries it 3 times
# on other workers first): the dying-file test then costs two worker restarts, not eight.
# The scheduler and workers import this module too: the dying-file test's task lives here.
DASK_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
    "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
}


# --- the cluster -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    address: str
    processes: tuple[subprocess.Popen[bytes], ...]


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **DASK_ENV},
        )


def _workers(address: str) -> int:
    """How many workers the scheduler has; 0 while it does not answer yet."""
    from distributed import Client

    try:
        with Client(address, timeout=5) as client:
            return len(client.nthreads())
    except (OSError, TimeoutError):
        return 0


@pytest.fixture(scope="module")
def starting_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The scheduler and two workers, started; `cluster` waits for them."""
    logs = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [
        _start(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard"],
            logs / "scheduler.log",
        )
    ]  # fmt: skip
    try:
        for number in range(2):
            processes.append(
                _start(
                    [str(BIN / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "1",
                     "--no-dashboard"],
                    logs / f"worker{number}.log",
                )
            )  # fmt: skip
        yield Cluster(address, tuple(processes))
    finally:
        for process in reversed(processes):
            stop_process(process, timeout=10)


@pytest.fixture(scope="module")
def cluster(starting_cluster: Cluster, local_run: Result) -> Cluster:
    """The cluster once both workers have joined (the local run went on meanwhile)."""
    address = starting_cluster.address
    wait_until(lambda: _workers(address) == 2, timeout=30, what="two Dask workers")
    return starting_cluster


# --- the input and the runs -------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    path: Path
    patients: tuple[SyntheticPatient, ...]


def _second_series(first: list[Path], folder: Path) -> None:
    """The same study's second series (another series, new instances), as a scanner sends
    a reconstruction of the same exam."""
    folder.mkdir(parents=True)
    for number, source in enumerate(first[:3]):
        ds = dcmread(source)
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[ds.SeriesInstanceUID, "recon"])
        ds.SeriesNumber = 2
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[ds.SOPInstanceUID, "recon"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"RECON{number}", enforce_file_format=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("cluster") / "in"
    ward, clinic = random_patient(41), random_patient(42)
    first = make_ct_study(root / "ward" / "s1", instances=6, rows=SIZE, columns=SIZE,
                          patient=ward, seed=41)  # fmt: skip
    _second_series(first, root / "ward" / "s2")
    make_ct_study(root / "clinic", instances=4, rows=SIZE, columns=SIZE, patient=clinic, seed=42)
    (root / "copies").mkdir()
    shutil.copyfile(first[0], root / "copies" / "again.dcm")  # a duplicate of one instance
    (root / "samples").mkdir()
    for name in SAMPLES:
        shutil.copyfile(TESTDATA / name, root / "samples" / name)
    (root / "notes.txt").write_text("exported for the registry\n", encoding="utf-8")
    (root / "labs.csv").write_text(
        f"PatientID,IssuerOfPatientID,Hb\n{ward.patient_id},{ward.issuer},13.1\n"
        f"{clinic.patient_id},{clinic.issuer},12.2\n",
        encoding="utf-8",
    )
    return Inputs(root, (ward, clinic))


def _sealing_site(root: Path, secret: Path | None = None) -> Site:
    site = make_site(root, secret)
    public = site.secret.parent / "reid-public.pem"
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("keys:\n", f"keys:\n  reid_public_key: {public}\n"))
    return site


@pytest.fixture(scope="module")
def local_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return _sealing_site(tmp_path_factory.mktemp("cluster") / "local-site")


@dataclass(frozen=True)
class Result:
    output: Path
    run: subprocess.CompletedProcess[str]
    seconds: float

    def files(self) -> dict[str, bytes]:
        found = sorted(p for p in self.output.rglob("*") if p.is_file())
        return {p.relative_to(self.output).as_posix(): p.read_bytes() for p in found}

    def counts(self) -> str:
        found = COUNTS.search(self.run.stdout)
        assert found, self.run.stdout + self.run.stderr
        return found.group(0)

    def problems(self) -> list[str]:
        """Each problem line without its quarantine entry's id (a time stamp). Of the two
        copies of one instance, the first to finish is written and the other held: in
        walk order with --workers 1, in either order with several workers."""
        lines = self.run.stderr.splitlines()
        found = [line for line in lines if line.startswith(("quarantined:", "skipped:"))]
        found = [re.sub(r": \d{8}T\d{6}-[0-9a-f]+$", "", line) for line in found]
        copies = {f"quarantined: {name}: duplicate" for name in DUPLICATES}
        return sorted("one of the copies: duplicate" if x in copies else x for x in found)


def anonymize(site: Site, inputs: Path, output: Path, *options: object) -> Result:
    started = time.monotonic()
    run = run_cli("anonymize", inputs, output, "-c", site.config, *options, cwd=site.root)
    return Result(output, run, time.monotonic() - started)


@pytest.fixture(scope="module")
def local_run(local_site: Site, inputs: Inputs) -> Result:
    """The reference: `anonymize --workers 1` (in this process: the same code, less start)."""
    output = local_site.root / "out"
    argv = ["anonymize", str(inputs.path), str(output), "-c", str(local_site.config),
            "--workers", "1"]  # fmt: skip
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(argv)
    run = subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())
    assert code == 0, run.stderr
    return Result(output, run, time.monotonic() - started)


def _same_as_local(result: Result, local_run: Result) -> None:
    assert result.run.returncode == 0, result.run.stderr
    assert result.counts() == local_run.counts()
    assert "duplicates: 1" in result.counts() and "csv written: 1" in result.run.stdout
    assert result.problems() == local_run.problems()
    assert "one of the copies: duplicate" in result.problems()
    assert "quarantined: samples/MR_truncated.dcm: truncated" in result.problems()
    ours, theirs = result.files(), local_run.files()
    assert list(ours) == list(theirs)
    assert [name for name in ours if ours[name] != theirs[name]] == []
    assert "labs.csv" in ours and sum(name.endswith(".dcm") for name in ours) == 16


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_run(
    cluster: Cluster, inputs: Inputs, local_site: Site, tmp_path_factory: pytest.TempPathFactory
) -> Result:
    root = tmp_path_factory.mktemp("cluster-run")
    site = _sealing_site(root / "site", local_site.secret)
    return anonymize(site, inputs.path, root / "out", "--cluster", cluster.address)


def test_a_run_on_a_dask_scheduler_writes_the_local_runs_files_byte_for_byte(
    cluster_run: Result, local_run: Result
) -> None:
    _same_as_local(cluster_run, local_run)
    lines = cluster_run.run.stderr.splitlines()
    progress = [line for line in lines if line.startswith("cluster:")]
    assert progress and progress[-1].startswith("cluster: 19/19 files done")
    assert (cluster_run.output.parent / "site" / "var" / "mapping.db").is_file()  # sealed


def test_local_workers_write_the_local_runs_files_byte_for_byte(
    inputs: Inputs, local_run: Result, local_site: Site, tmp_path: Path
) -> None:
    site = _sealing_site(tmp_path / "site", local_site.secret)
    result = anonymize(site, inputs.path, tmp_path / "out", "--cluster", "local:2")
    _same_as_local(result, local_run)


def _sample_outputs(result: Result) -> set[Path]:
    """The output files made from the shared samples (patients other than the synthetic
    ones), told by their studies' pseudonymous UIDs under the run's site secret."""
    site = load_site(result.output.parent / "site" / "gateway.yaml")
    pseudonyms = Pseudonyms(site.secret, site.config.site_id)
    studies = {
        pseudonyms.uid(str(dcmread(TESTDATA / name, stop_before_pixels=True).StudyInstanceUID))
        for name in SAMPLES
        if name != "MR_truncated.dcm"  # quarantined, never written
    }
    return {
        p
        for p in result.output.rglob("*.dcm")
        if str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) in studies
    }


def test_no_original_patient_value_is_in_the_cluster_output_or_on_its_console(
    cluster_run: Result, inputs: Inputs, tmp_path: Path
) -> None:
    result = cluster_run
    assert result.run.returncode == 0, result.run.stderr
    values = [v for patient in inputs.patients for v in patient.identifying_values()]
    written = [p for p in result.output.rglob("*") if p.is_file()]
    # A sample's own dates, shifted, may land on a synthetic patient's birth date
    # ("20030514" minus 3,220 days is "19940720"): dates are searched for outside them.
    samples = _sample_outputs(cluster_run)
    dates = {v for v in values if v.replace("-", "").isdigit()}
    assert written and leaks_in(written, [v for v in values if v not in dates]) == []
    assert leaks_in([p for p in written if p not in samples], dates) == []
    console = tmp_path / "console.txt"
    console.write_text(result.run.stdout + result.run.stderr, encoding="utf-8")
    assert leaks_in([console], values) == []


def test_an_unreachable_scheduler_is_a_clear_error_with_exit_1_within_seconds(
    inputs: Inputs, local_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = main(["anonymize", str(inputs.path), str(tmp_path / "out"), "-c",
                 str(local_site.config), "--cluster", address])  # fmt: skip
    assert code == 1
    assert f"cannot reach the Dask scheduler at {address}" in capsys.readouterr().err
    assert time.monotonic() - started < 15
    assert not (tmp_path / "out").exists()


def test_a_cluster_spec_that_is_neither_tcp_nor_local_is_a_usage_error(
    inputs: Inputs, local_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["anonymize", str(inputs.path), str(tmp_path / "out"), "-c",
                 str(local_site.config), "--cluster", "local:zero"])  # fmt: skip
    assert code == 2
    assert "tcp://HOST:PORT or local:N" in capsys.readouterr().err


def test_without_dask_the_cluster_option_names_the_extra_to_install(
    inputs: Inputs, local_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: ImportError
    monkeypatch.chdir(local_site.root)
    code = main(["anonymize", str(inputs.path), str(tmp_path / "out"), "-c",
                 str(local_site.config), "--cluster", "local:1"])  # fmt: skip
    assert code == 2
    assert "pip install 'dicom-gateway[cluster]'" in capsys.readouterr().err


def test_a_worker_that_cannot_see_the_input_folder_says_so(
    local_site: Site, inputs: Inputs, tmp_path: Path
) -> None:
    settings = load_site(local_site.config).engine_settings()
    key = SiteKey.for_site(local_site.config, None, settings)
    missing = check_worker(key, str(tmp_path / "not-mounted"), [])
    assert missing == [f"cannot see the input folder {tmp_path / 'not-mounted'} "
                       "(not on a shared filesystem?)"]  # fmt: skip
    sample = inputs.path / "notes.txt"
    other = check_worker(key, str(inputs.path), [(str(sample), sample.stat().st_size + 1)])
    assert other == [f"sees another input folder at {inputs.path} (a file differs)"]
    assert check_worker(key, str(inputs.path), [(str(sample), sample.stat().st_size)]) == []


def _site_loaded() -> SiteKey | None:
    """On a worker: the run whose site (engine, mapping writer) the worker holds."""
    return offline_cluster._loaded


def test_the_workers_are_asked_before_any_file_is_sent_and_a_blind_one_is_named(
    cluster: Cluster, local_site: Site, inputs: Inputs, tmp_path: Path
) -> None:
    from distributed import Client

    settings = load_site(local_site.config).engine_settings()
    key = SiteKey.for_site(local_site.config, None, settings)
    files = sorted(p for p in inputs.path.rglob("*") if p.is_file())
    with Client(cluster.address, timeout=5) as client:
        ClusterRunner(client, key, inputs.path)._check_workers(files)  # both see it: no error
        # ... and each built the site's engine then, once, for the tasks of this run.
        assert list(client.run(_site_loaded).values()) == [key, key]
        with pytest.raises(ClusterError) as raised:
            ClusterRunner(client, key, tmp_path / "not-mounted")._check_workers(files)
    assert raised.value.exit_code == 2
    lines = str(raised.value).splitlines()
    assert len(lines) == 2 and all(re.match(r"worker tcp://127\.0\.0\.1:\d+: ", x) for x in lines)
    assert "cannot see the input folder" in lines[0]


def test_workers_and_cluster_together_are_a_usage_error(
    inputs: Inputs, local_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["anonymize", str(inputs.path), str(tmp_path / "out"), "-c",
                 str(local_site.config), "--workers", "2", "--cluster", "local:2"])  # fmt: skip
    assert code == 2
    assert "--workers and --cluster do not go together" in capsys.readouterr().err


def test_a_tasks_arguments_name_no_input_path() -> None:
    batch = Batch(("/import/DOE^JOHN/IM0001",), "/out", "/var/claims")
    assert "DOE" not in repr(batch) and repr(batch) == "<batch of 1 files>"


def dies_on_marked_file(key: SiteKey, batch: Batch) -> list[FileOutcome]:
    """A task whose worker dies on one file (as a decoder's segfault kills it)."""
    if any(path.endswith("dies.dcm") for path in batch.paths):
        os._exit(70)
    return run_batch(key, batch)


def test_a_file_that_kills_its_worker_every_time_is_quarantined_and_the_run_goes_on(
    cluster: Cluster, local_site: Site, tmp_path: Path
) -> None:
    from distributed import Client

    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        shutil.copyfile(TESTDATA / name, inputs / name)
    shutil.copyfile(TESTDATA / "emri_small.dcm", inputs / "dies.dcm")
    site = _sealing_site(tmp_path / "site", local_site.secret)
    settings = load_site(site.config).engine_settings()
    key = SiteKey.for_site(site.config, None, settings)
    with Client(cluster.address, timeout=5) as client:
        runner = ClusterRunner(client, key, inputs, progress=sys.stderr, task=dies_on_marked_file)
        summary = anonymize_folder(inputs, tmp_path / "out", settings, runner=runner)
        wait_until(lambda: len(client.nthreads()) == 2, timeout=30, what="workers back")
    assert (summary.files_in, summary.written, summary.quarantined) == (4, 3, 1)
    (entry,) = quarantine.entries(site.storage)
    assert entry.reason == "worker-died"
    assert (entry.path / "original.dcm").read_bytes() == (inputs / "dies.dcm").read_bytes()
    assert len([p for p in (tmp_path / "out").rglob("*") if p.is_file()]) == 3
