"""Every profile shipped in conf/profiles: what `profile review` reports, and what it does to
the shared samples.

Each file's weakenings are pinned exactly: those its chosen options justify (recomputed from
Table E.1-1 here) and those its overrides add (listed below, each acknowledged in the file).
Then every shared sample, with synthetic identifiers planted, goes through the pipeline under
the profile, and no planted value the profile does not keep on purpose may remain.

Files are discovered: a new profile in conf/profiles fails here until its expected
weakenings are added to OVERRIDE_WEAKENINGS. CTP scripts (*.script) are included once the
CTP reader (gateway.deid.ctp.profile) imports.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import pydicom_as_in_the_gateway
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from test_review import option_weakenings
from test_shared_testdata import RELEASED, TESTDATA, searchable_bytes

from gateway.cli.main import main
from gateway.deid import fakes
from gateway.deid.profile_loading import load_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.review import review
from gateway.deid.standard import CURVE_PATTERN, PRIVATE_PATTERN
from gateway.pipeline.instance import Clean, process_instance

if TYPE_CHECKING:
    from conftest import PlantedIdentifiers

PROFILES_DIR = Path(__file__).resolve().parents[1] / "conf" / "profiles"
SECRET = b"shipped-profiles-test-secret-012345"
CTP_READY = importlib.util.find_spec("gateway.deid.ctp.profile") is not None

# (attribute, Basic code, profile code) of each weakening that no chosen option justifies.
OVERRIDE_WEAKENINGS: dict[str, set[tuple[str, str, str]]] = {
    "default.yaml": set(),
    "research-longitudinal.yaml": set(),
    "imaging-ai-strict.yaml": set(),
    "multicentre-with-institution.yaml": {
        ("InstitutionName", "X/Z/D", "K"),
        ("InstitutionalDepartmentName", "X", "D"),
        ("private", "X", "K"),
    },
    "registry-fake-names.yaml": {
        ("AccessionNumber", "Z", "D"),
        ("ReferringPhysicianName", "Z", "D"),
        ("StudyDescription", "X", "C"),
        ("SeriesDescription", "X", "C"),
        ("PerformingPhysicianName", "X", "D"),
        ("StudyID", "Z", "D"),
    },
    # The CTP helper's federation script: no options, so every weakening is listed; each is
    # acknowledged by its ACKNOWLEDGE parameter.
    "research-federation.script": {
        ("InstanceCreationDate", "X/D", "C"),
        ("InstanceCreationTime", "X/Z/D", "K"),
        ("StudyDate", "Z", "C"),
        ("SeriesDate", "X/D", "C"),
        ("AcquisitionDate", "X/Z", "C"),
        ("ContentDate", "Z/D", "C"),
        ("StudyTime", "Z", "K"),
        ("SeriesTime", "X/D", "K"),
        ("AcquisitionTime", "X/Z", "K"),
        ("ContentTime", "Z/D", "K"),
        ("AccessionNumber", "Z", "D"),
        ("StudyDescription", "X", "K"),
        ("SeriesDescription", "X", "K"),
        ("PatientSex", "Z", "K"),
        ("PatientAge", "X", "K"),
        ("PatientSize", "X", "K"),
        ("PatientWeight", "X", "K"),
        ("ProtocolName", "X/D", "K"),
        ("StudyID", "Z", "D"),
        ("PerformedProcedureStepStartDate", "X", "C"),
    },
}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
Plant = Callable[[Dataset], "PlantedIdentifiers"]


def _shipped() -> list[str]:
    names = []
    for path in sorted(PROFILES_DIR.iterdir()):
        if path.suffix in (".yaml", ".yml") or (path.suffix == ".script" and CTP_READY):
            names.append(path.name)
    return names


SHIPPED = _shipped()


@pytest.fixture(autouse=True, scope="module")
def _pydicom_as_in_the_gateway() -> Iterator[None]:
    """No value validation, as in the gateway's workers: malformed input must get through."""
    with pydicom_as_in_the_gateway():
        yield


def _named(option_rows: set[str]) -> set[str]:
    """Table rows as the reviewer names them (pattern rows by their acknowledge name)."""
    names = {"private" if r == PRIVATE_PATTERN else "curves" if r == CURVE_PATTERN else r
             for r in option_rows}
    return {f"overlays ({n})" if n.startswith("60xx") else n for n in names}


def test_every_shipped_profile_is_pinned() -> None:
    assert {"default.yaml", "research-longitudinal.yaml", "imaging-ai-strict.yaml",
            "multicentre-with-institution.yaml", "registry-fake-names.yaml"} <= set(SHIPPED)
    missing = sorted(set(SHIPPED) - set(OVERRIDE_WEAKENINGS))
    assert missing == [], "add the expected weakenings of these profiles to this test"


@pytest.mark.parametrize("name", SHIPPED)
def test_review_reports_exactly_the_weakenings_of_each_shipped_profile(name: str) -> None:
    profile = load_profile(PROFILES_DIR / name)
    result = review(profile)
    assert result.ok, result.message()
    overrides = {(w.attribute, w.standard, w.profile) for w in result.weakenings if not w.chosen}
    assert overrides == OVERRIDE_WEAKENINGS.get(name), result.table()
    chosen = {o.value for o in getattr(profile, "options", ())}
    by_option = {w.attribute for w in result.weakenings if w.chosen}
    overridden = {a for a, _, _ in overrides}
    assert by_option == _named(option_weakenings(chosen)) - overridden


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_review_command_accepts_each_shipped_profile(name: str, capsys) -> None:
    assert main(["profile", "review", str(PROFILES_DIR / name)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "OK"
    for attribute, _, _ in OVERRIDE_WEAKENINGS.get(name, ()):
        assert attribute in out


@pytest.fixture(scope="module")
def engines() -> Callable[[str], object]:
    built: dict[str, object] = {}

    def engine(name: str) -> object:
        if name not in built:
            profile = load_profile(PROFILES_DIR / name)
            built[name] = profile.build_engine(Pseudonyms(SECRET, "SHIPPED-SITE"))
        return built[name]

    return engine


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_releases_the_samples_without_planted_identifiers(
    plant: Plant, engines: Callable[[str], object], name: str
) -> None:
    engine = engines(name)
    profile = engine.profile  # type: ignore[attr-defined]
    leaks: dict[str, list[str]] = {}
    for sample in RELEASED:
        ds = dcmread(TESTDATA / sample, force=True)
        planted = plant(ds)
        outcome = process_instance(ds, engine)  # type: ignore[arg-type]
        assert isinstance(outcome, Clean), (sample, outcome)
        buffer = io.BytesIO()
        dcmwrite(buffer, outcome.dataset, enforce_file_format=True)
        haystack = searchable_bytes(buffer.getvalue()).lower()
        found = [n for n in planted.needles(profile.keeps) if n.encode("latin-1") in haystack]
        if found:
            leaks[sample] = found
        _check_profile_specifics(name, dcmread(io.BytesIO(buffer.getvalue())))
    assert leaks == {}


def _check_profile_specifics(name: str, out: Dataset) -> None:
    """What each example promises, seen in an output instance."""
    if name == "multicentre-with-institution.yaml":
        assert out.InstitutionName == "Glimmerdale Infirmary"  # kept, acknowledged
        assert "InstitutionAddress" not in out
    elif name == "registry-fake-names.yaml":
        institution = str(out.InstitutionName)
        assert institution.split(" ")[0] in fakes.words("towns")
        surname, given = str(out.ReferringPhysicianName).split("^")
        assert surname in fakes.words("surnames") and given in fakes.words("given_names")
        assert len(out.AccessionNumber) == 10
        if "StudyDescription" in out:
            text = str(out.StudyDescription)  # empty stays empty: nothing to vet
            assert text in ("", "UNSPECIFIED") or text.startswith(("CT ", "MR ", "PET "))
    elif name in ("imaging-ai-strict.yaml",):
        assert not [t for t in out.keys() if 0x6000 <= t.group <= 0x60FF]  # noqa: SIM118
        assert "InstitutionName" not in out or out.InstitutionName == ""
    elif name in ("default.yaml", "research-longitudinal.yaml"):
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"
