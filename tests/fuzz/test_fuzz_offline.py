"""Malformed instances through the offline engine: never a crash, a hang or a leak.

Each case is a sample from ../shared/testdata with the synthetic identifiers planted, then
mutated (mutate.py). The property: the file either comes out de-identified, readable and
without any planted value, or goes to the quarantine with a reason that quotes none of
them; nothing raises, nothing runs past the per-case bound, nothing is silently dropped.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzzing import FOLDER_CASES, FUZZ_SETTINGS, Tally, bounded
from hypothesis import given
from hypothesis import strategies as st
from mutate import MUTATORS, SEEDS, TESTDATA, Mutant, leaked, make_mutant, random_mutant
from pydicom import dcmread

from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.keys.site_secret import read_site_secret
from gateway.pipeline.files import EngineSettings, deidentify_file, init_worker
from gateway.stores.quarantine import quarantine_root

pytestmark = [
    pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"no test data at {TESTDATA}"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

SECRET = b"fuzz-site-secret-0123456789abcdef"
SITE_ID = "FUZZ-SITE"
KEEPS = default_profile().keeps
SUMMARY = re.compile(r"files in: (\d+), written: (\d+), quarantined: (\d+), skipped: (\d+)")


class Worker:
    """One initialised worker (as a pool process has), its storage and output folders."""

    def __init__(self, root: Path) -> None:
        self.storage = root / "storage"
        self.output = root / "out"
        self.inbox = root / "in"
        for folder in (self.storage, self.output, self.inbox):
            folder.mkdir(parents=True, exist_ok=True)
        init_worker(EngineSettings(default_profile(), SECRET, SITE_ID, self.storage))
        self.cases = 0

    def check(self, mutant: Mutant, tally: Tally) -> None:
        """Run one mutant through `deidentify_file` and check the property."""
        self.cases += 1
        path = self.inbox / f"case-{self.cases}.dcm"
        path.write_bytes(mutant.data)
        began = time.monotonic()
        with bounded():
            outcome = deidentify_file(
                path, lambda result: self.output / f"{result.sop_instance_uid}.dcm", "gateway"
            )
        seconds = time.monotonic() - began
        needles = mutant.needles(KEEPS)
        # An acknowledged instance is never dropped: released or held, nothing in between.
        assert outcome.status in ("written", "quarantined"), (mutant.describe(), outcome)
        if outcome.status == "written":
            assert outcome.output is not None
            data = outcome.output.read_bytes()
            assert leaked(data, needles) == [], mutant.describe()
            if mutant.sop_instance_uid.encode() in mutant.data:
                assert mutant.sop_instance_uid.encode() not in data, mutant.describe()
            dcmread(outcome.output)  # what leaves is a readable DICOM file
            outcome.output.unlink()
            tally.add("clean", seconds)
        else:
            reason, _, entry_id = outcome.detail.partition(": ")
            record = json.loads(
                (quarantine_root(self.storage) / entry_id / "reason.json").read_text()
            )
            assert record["reason"] == reason and reason, mutant.describe()
            assert not any(n in record["message"].lower() for n in mutant.planted.needles(KEEPS)), (
                record
            )
            shutil.rmtree(quarantine_root(self.storage) / entry_id)
            tally.add(f"quarantined/{reason}", seconds)
        path.unlink()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Worker:
    return Worker(tmp_path_factory.mktemp("fuzz-engine"))


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    found = Tally("fuzz engine")
    yield found
    found.report()


@FUZZ_SETTINGS
@given(
    seed=st.sampled_from(SEEDS),
    mutations=st.lists(st.sampled_from(MUTATORS), min_size=1, max_size=3),
    rnd=st.randoms(use_true_random=False),
)
def test_mutant_is_released_clean_or_quarantined_with_a_reason(
    worker: Worker, tally: Tally, seed: str, mutations: list[str], rnd: random.Random
) -> None:
    worker.check(make_mutant(seed, tuple(mutations), rnd), tally)


@pytest.mark.parametrize("mutation", MUTATORS)
def test_every_mutator_on_every_seed(worker: Worker, tally: Tally, mutation: str) -> None:
    """Each mutation at least once per seed, whatever hypothesis happened to draw."""
    for index, seed in enumerate(SEEDS):
        worker.check(make_mutant(seed, (mutation,), random.Random(index)), tally)


def test_anonymize_command_over_a_folder_of_mutants(
    tmp_path: Path,
) -> None:
    """`dicom-gateway anonymize` as a user runs it, on a folder of mutants and good files:
    it finishes, accounts for every file, writes only clean files and quarantines with
    reasons; a file without a DICOM header is the only kind it may skip."""
    from service_harness import create_secret, run_cli

    secret = create_secret(tmp_path / "keys")
    storage = tmp_path / "storage"
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"site_id: {SITE_ID}\nstorage_dir: {storage}\nkeys:\n  secret: {secret}\n",
        encoding="utf-8",
    )
    source = tmp_path / "in"
    source.mkdir()
    rnd = random.Random(20261123)
    mutants = [random_mutant(rnd) for _ in range(FOLDER_CASES)]
    for index, mutant in enumerate(mutants):
        (source / f"m{index:05d}.dcm").write_bytes(mutant.data)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(TESTDATA / name, source / name)
    headerless = sum(1 for m in mutants if m.data[128:132] != b"DICM")

    began = time.monotonic()
    done = run_cli(
        "anonymize",
        source,
        tmp_path / "out",
        "-c",
        config,
        "--workers",
        2,
        cwd=tmp_path,
        timeout=60 + FOLDER_CASES,
    )
    seconds = time.monotonic() - began

    assert done.returncode == 0, done.stderr
    found = SUMMARY.search(done.stdout)
    assert found, done.stdout
    files_in, written, quarantined, skipped = map(int, found.groups())
    assert files_in == len(mutants) + 2
    assert written + quarantined + skipped == files_in
    assert written >= 2 and skipped <= headerless
    # Each output against what its own input still held where it was planted.
    pseudonyms = Pseudonyms(read_site_secret(secret), SITE_ID)
    by_output = {pseudonyms.uid(m.sop_instance_uid): m.needles(KEEPS) for m in mutants}
    everything = set().union(*by_output.values())
    outputs = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(outputs) == written
    for path in outputs:
        assert leaked(path.read_bytes(), by_output.get(path.stem, everything)) == [], path
    entries = [p for p in quarantine_root(storage).iterdir() if not p.name.startswith(".")]
    assert len(entries) == quarantined
    reasons = [json.loads((p / "reason.json").read_text())["reason"] for p in entries]
    assert all(reasons)
    tally = Tally("fuzz anonymize")
    tally.counts.update({"written": written, "quarantined": quarantined, "skipped": skipped})
    tally.slowest = seconds
    tally.report()
