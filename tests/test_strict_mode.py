"""Strict mode: an allow list of non-identifying attributes, with outputs that stay valid.

A site in strict mode keeps only what Table E.1-1 or its profile handles and what the
shipped list (gateway/deid/data/strict_keep.txt) names. Every shared sample still passes
dciodvfy without a new error, and an attribute nobody listed (a vendor's free-text field the
table does not know) is gone, at top level and inside functional-group sequences.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import pydicom_as_in_the_gateway
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence

from gateway.base.identifiers import collect_identifiers
from gateway.deid.profile import ProfileError
from gateway.deid.profile_loading import load_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.strict import STRICT_KEEP_FILE, strict_keep_tags, strict_keeps
from gateway.pipeline.instance import Clean, process_instance

if TYPE_CHECKING:
    from conftest import PlantedIdentifiers

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
SECRET = b"strict-mode-test-site-secret-012345"
SAMPLES = sorted(p.name for p in TESTDATA.glob("*.dcm")) if TESTDATA.is_dir() else []
STRICT_YAML = """
base: basic
options: [retain_longitudinal_modified_dates, retain_patient_characteristics, clean_descriptors]
strict: true
"""
# Free text that Table E.1-1 does not name (so the Basic Profile keeps it).
UNLISTED = {
    "InterventionDescription": ("LO", "Stent placed by Dr Vexmoor at Glimmerdale"),
    "AcquisitionProtocolName": ("LO", "Vexmoor special protocol"),
}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
Plant = Callable[[Dataset], "PlantedIdentifiers"]


@pytest.fixture(autouse=True, scope="module")
def _pydicom_as_in_the_gateway() -> Iterator[None]:
    """No value validation, as in the gateway's workers: malformed input must get through."""
    with pydicom_as_in_the_gateway():
        yield


@pytest.fixture(scope="module")
def strict_engine(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("strict") / "strict.yaml"
    path.write_text(STRICT_YAML)
    profile = load_profile(path)
    assert profile.strict
    return profile.build_engine(Pseudonyms(SECRET, "STRICT-SITE"))


def _ct_with_unlisted() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.7.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.7.2"
    ds.PatientID = "STRICT-PAT-1"
    ds.Modality = "CT"
    ds.Rows = 2
    ds.KVP = "120"
    for keyword, (vr, value) in UNLISTED.items():
        ds.add_new(keyword, vr, value)
    inner = Dataset()
    inner.SliceThickness = "1.5"
    inner.InterventionDescription = "per-frame note by Vexmoor"
    frame = Dataset()
    frame.PixelMeasuresSequence = Sequence([inner])
    ds.SharedFunctionalGroupsSequence = Sequence([frame])
    return ds


def test_strict_mode_removes_what_no_list_names_at_every_depth(strict_engine) -> None:
    ds = _ct_with_unlisted()
    strict_engine.deidentify(ds, collect_identifiers(ds, strict_engine.profile.keeps))
    assert ds.Modality == "CT" and ds.Rows == 2 and ds.KVP == "120"
    for keyword in UNLISTED:
        assert keyword not in ds, keyword
    inner = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert inner.SliceThickness == "1.5"
    assert "InterventionDescription" not in inner
    assert str(ds.SOPInstanceUID).startswith("2.25.")  # UIDs: remapped, never dropped
    buffer = io.BytesIO()
    dcmwrite(buffer, ds)
    assert b"vexmoor" not in buffer.getvalue().lower()


def test_without_strict_the_same_unlisted_text_is_kept() -> None:
    profile = load_profile(None)
    engine = profile.build_engine(Pseudonyms(SECRET, "STRICT-SITE"))
    ds = _ct_with_unlisted()
    engine.deidentify(ds, collect_identifiers(ds, profile.keeps))
    assert "InterventionDescription" in ds
    assert ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].InterventionDescription


def test_the_shipped_list_names_known_attributes_only() -> None:
    tags = strict_keep_tags()
    assert len(tags) > 400
    assert strict_keeps(0x00280010)  # Rows
    assert strict_keeps(0x60020010)  # Overlay Rows of the second overlay group
    assert not strict_keeps(0x00081080)  # Admitting Diagnoses Description
    assert STRICT_KEEP_FILE.endswith(".txt")


def test_strict_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("strict: yes please\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert caught.value.problems == [f"{path}: 'strict': true or false"]


@pytest.mark.skipif(not SAMPLES, reason="shared test data not found")
@pytest.mark.parametrize("name", SAMPLES)
def test_strict_output_of_each_sample_has_no_new_dciodvfy_error(
    tmp_path: Path, plant: Plant, strict_engine, name: str
) -> None:
    from test_dciodvfy import dciodvfy_errors

    ds = dcmread(TESTDATA / name, force=True)
    planted = plant(ds)
    original = copy.deepcopy(ds)
    outcome = process_instance(ds, strict_engine)
    if not isinstance(outcome, Clean):
        pytest.skip(f"quarantined ({outcome.reason})")
    source, output = tmp_path / "in.dcm", tmp_path / "out.dcm"
    dcmwrite(source, original)
    dcmwrite(output, outcome.dataset, enforce_file_format=True)
    assert sorted(dciodvfy_errors(output) - dciodvfy_errors(source)) == []
    haystack = output.read_bytes().lower()
    assert [n for n in planted.needles() if n.encode("latin-1") in haystack] == []
