"""Every file of a run is accounted for, and no single file stops it.

The property, over random folders made of a subset of ../shared/testdata (good, odd and
broken samples, MANIFEST.md too), copies of some of them (one SOP Instance UID twice:
duplicates) and mutants (mutate.py), under three profiles (the default, the CTP federation
script, and that script with the Patient ID removed, all with the sealed mapping on):

    the run returns (the command would exit 0);
    inputs + duplicates + mutants == written + quarantined + skipped;
    written == the files in the output, quarantined == the entries in the quarantine;
    one input of several with the same bytes is written at most once.
"""

from __future__ import annotations

import random
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from fuzzing import EXAMPLES, LONG, Tally
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutate import MUTATORS, SEEDS, TESTDATA, make_mutant

from gateway.deid.ctp.profile import load_script
from gateway.deid.profile import DeidProfile, default_profile
from gateway.keys.reid_keys import create_reid_keypair
from gateway.offline import EngineSettings, anonymize_folder
from gateway.stores.quarantine import entries

pytestmark = [
    pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"no test data at {TESTDATA}"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

SECRET = b"accounting-secret-0123456789abcd"
FEDERATION = (
    Path(__file__).resolve().parents[2] / "conf" / "profiles" / "research-federation.script"
)
HASHED_ID = '<e en="T" t="00100020" n="PatientID">@hashptid(@SITEID,PatientID,@PTIDLEN)</e>'
SAMPLES = sorted(p.name for p in TESTDATA.iterdir() if p.is_file()) if TESTDATA.is_dir() else []
RUNS = EXAMPLES if LONG else 25
SUMMARY = re.compile(r"files in: (\d+), written: (\d+), quarantined: (\d+), skipped: (\d+)")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accounting")


@pytest.fixture(scope="module")
def profiles(workdir: Path) -> dict[str, DeidProfile]:
    script = workdir / "no-patient-id.script"
    text = FEDERATION.read_text(encoding="utf-8")
    script.write_text(
        text.replace(HASHED_ID, '<e en="T" t="00100020" n="PatientID">@remove()</e>'),
        encoding="utf-8",
    )
    return {
        "default": default_profile(),
        "federation": load_script(FEDERATION),
        "no-patient-id": load_script(script),
    }


@pytest.fixture(scope="module")
def public_key(workdir: Path) -> Path:
    return create_reid_keypair(workdir / "keys")[0]


@pytest.fixture(scope="module")
def tally() -> Tally:
    found = Tally("run accounting")
    yield found
    found.report()


def make_folder(
    folder: Path, chosen: list[str], copies: list[str], mutants: list[tuple[str, tuple, int]]
) -> Counter[bytes]:
    """The input folder; the count of each distinct file content in it."""
    (folder / "again").mkdir(parents=True)
    contents: Counter[bytes] = Counter()
    for name in chosen:
        shutil.copyfile(TESTDATA / name, folder / name)
    for index, name in enumerate(copies):  # the same instance again, under another name
        shutil.copyfile(TESTDATA / name, folder / "again" / f"{index}-{name}")
    for index, (seed, mutations, rnd) in enumerate(mutants):
        data = make_mutant(seed, mutations, random.Random(rnd)).data
        (folder / f"mutant-{index}.dcm").write_bytes(data)
    for path in folder.rglob("*"):
        if path.is_file():
            contents[path.read_bytes()] += 1
    return contents


@settings(
    max_examples=RUNS,
    deadline=None,
    database=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    data=st.data(),
    profile=st.sampled_from(["default", "federation", "no-patient-id"]),
    workers=st.sampled_from([1, 1, 2]),
)
def test_every_file_is_written_quarantined_or_skipped_and_none_stops_the_run(
    workdir: Path,
    profiles: dict[str, DeidProfile],
    public_key: Path,
    tally: Tally,
    data: st.DataObject,
    profile: str,
    workers: int,
) -> None:
    chosen = data.draw(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=10, unique=True))
    copies = data.draw(st.lists(st.sampled_from(chosen), max_size=3))
    mutants = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(SEEDS),
                st.lists(st.sampled_from(MUTATORS), min_size=1, max_size=2).map(tuple),
                st.integers(0, 2**32),
            ),
            max_size=3,
        )
    )
    tally.add(f"{profile}/{workers} workers")
    case = workdir / f"case-{len(list(workdir.glob('case-*')))}"
    contents = make_folder(case / "in", chosen, copies, mutants)
    settings_ = EngineSettings(
        profiles[profile], SECRET, "ACCOUNTING", case / "storage", reid_public_key=public_key
    )
    summary = anonymize_folder(case / "in", case / "out", settings_, workers=workers)

    assert summary.files_in == len(chosen) + len(copies) + len(mutants)
    assert summary.files_in == summary.written + summary.quarantined + summary.skipped
    written = [p for p in (case / "out").rglob("*") if p.is_file()]
    assert len(written) == summary.written, summary.problems
    assert len(entries(case / "storage")) == summary.quarantined
    assert summary.duplicates <= summary.quarantined
    held = Counter(o.source.read_bytes() for o in summary.problems)
    for content, count in contents.items():  # inputs with the same bytes: one written at most
        assert count - held[content] <= 1
    assert len({p.name for p in written}) == len(written)  # one file per SOP Instance UID
    shutil.rmtree(case)


def test_anonymize_command_exits_0_on_every_sample_copies_and_a_script_without_patient_id(
    tmp_path: Path, public_key: Path
) -> None:
    """The same, as a user runs it: the whole testdata folder, every sample twice."""
    from service_harness import create_secret, run_cli

    secret = create_secret(tmp_path / "keys")
    script = tmp_path / "no-patient-id.script"
    script.write_text(
        FEDERATION.read_text(encoding="utf-8").replace(
            HASHED_ID, '<e en="T" t="00100020" n="PatientID">@remove()</e>'
        ),
        encoding="utf-8",
    )
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"site_id: ACCOUNTING\nstorage_dir: {tmp_path / 'storage'}\n"
        f"keys:\n  secret: {secret}\n  reid_public_key: {public_key}\n"
        f"deid:\n  profile: {script}\n",
        encoding="utf-8",
    )
    source = tmp_path / "in"
    shutil.copytree(TESTDATA, source / "first")
    shutil.copytree(TESTDATA, source / "second")
    done = run_cli(
        "anonymize", source, tmp_path / "out", "-c", config, "--workers", 2, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = SUMMARY.search(done.stdout)
    assert found, done.stdout
    files_in, written, quarantined, skipped = map(int, found.groups())
    assert files_in == 2 * len(SAMPLES) == written + quarantined + skipped
    outputs = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(outputs) == written and len({p.name for p in outputs}) == written
    assert "duplicates: " in done.stdout
