"""Every shared sample file through the pipeline, with synthetic identifiers planted first.

The samples (../shared/testdata, see its MANIFEST.md) cover the transfer syntaxes, IODs,
nesting and private data the gateway meets in practice, but their names were edited out.
So each test plants invented identifiers everywhere a real sender puts them (top level,
nested items, a private block, the file meta) and then looks for them in the bytes that
would leave the gateway, under the default profile, all compatible options, and plain Basic.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import pydicom_as_in_the_gateway
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import DeflatedExplicitVRLittleEndian

from gateway.deid.engine import IMPLEMENTATION_CLASS_UID, Engine
from gateway.deid.profile import CompiledProfile, compile_profile, default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.standard import BASIC_PROFILE_CODE, Option
from gateway.offline import EngineSettings, anonymize_folder
from gateway.pipeline.instance import Clean, Quarantine, process_instance

if TYPE_CHECKING:
    from conftest import PlantedIdentifiers

Plant = Callable[[Dataset], "PlantedIdentifiers"]

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
if not TESTDATA.is_dir():
    pytest.skip(f"shared test data not found at {TESTDATA}", allow_module_level=True)

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = b"shared-testdata-site-secret-0123456789"
OTHER_SECRET = b"another-site-secret-9876543210abcdef"
SITE_ID = "TEST-SITE"

PROFILES: dict[str, Callable[[], CompiledProfile]] = {
    "default": default_profile,
    # Every option that can be combined: Full Dates excludes Modified Dates (PS3.15 E.3.6).
    "all-options": lambda: compile_profile(
        [o for o in Option if o is not Option.RETAIN_LONGITUDINAL_FULL_DATES], name="all-options"
    ),
    "basic": lambda: compile_profile([], name="basic"),
}

SAMPLES = sorted(p.name for p in TESTDATA.iterdir() if p.is_file() and p.suffix != ".md")

# Files with no SOP Class / SOP Instance UID (MANIFEST: "- / -"): raw datasets, a private
# sequence on its own, a file whose data set could not be read at all.
NOT_INSTANCES = frozenset(
    {
        "UN_sequence.dcm",
        "empty_charset_LEI.dcm",
        "emri_small_jpeg_2k_lossless_too_short.dcm",
        "meta_missing_tsyntax.dcm",
        "nested_priv_SQ.dcm",
        "no_meta.dcm",
        "no_meta_group_length.dcm",
        "priv_SQ.dcm",
    }
)

# Bad or unsupported input from the MANIFEST, and the quarantine reasons that describe it.
QUARANTINED: dict[str, frozenset[str]] = {
    **{name: frozenset({"not-an-instance"}) for name in NOT_INSTANCES},
    "MR_truncated.dcm": frozenset({"truncated", "truncated-pixel-data"}),
    # Deflated Image Frame Compression (1.2.840.10008.1.2.8.1): pydicom 3.0 cannot encode it.
    "liver_deflate.dcm": frozenset({"unsupported-transfer-syntax"}),
    "rtplan_truncated.dcm": frozenset({"truncated"}),
    "badVR.dcm": frozenset({"unreadable", "invalid-value"}),
    # A stray byte before the first tag: read with force, the whole file is one element
    # whose declared length runs past the end.
    "no_meta.dcm": frozenset({"not-an-instance", "truncated"}),
}
# The MANIFEST lists these as bad input too, but they are released on purpose:
# - bad_sequence.dcm: a sequence as UN with undefined length, which PS3.5 6.2.2 says to read
#   as Implicit VR Little Endian; pydicom does, so every item is walked and re-encoded.
# - JPEG2000-embedded-sequence-delimiter.dcm: the fragment lengths are right, only the
#   codestream does not decode; the tag engine never decodes, and keeps the bytes as they are.
RELEASED = [name for name in SAMPLES if name not in QUARANTINED]

# pydicom's reader warns about the malformed samples; those files are the point here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # Float, Double Float, Pixel Data
_STANDARD_UID_ROOT = "1.2.840.10008."
_MIN_UID_LENGTH = 8

RELEASE_CASES = [
    pytest.param(name, profile, id=f"{name}-{profile}")
    for name in RELEASED
    for profile in sorted(PROFILES)
]


@pytest.fixture(autouse=True, scope="module")
def _pydicom_as_in_the_gateway() -> Iterator[None]:
    """No value validation, as in the gateway's workers: malformed input must get through."""
    with pydicom_as_in_the_gateway():
        yield


def searchable_bytes(encoded: bytes) -> bytes:
    """The file as bytes a substring search can see into: a deflated data set inflated.

    PS3.5 A.5: under Deflated Explicit VR Little Endian everything after the file meta is
    deflated, so a name in it would never show up in the raw bytes.
    """
    if encoded[128:132] != b"DICM" or encoded[132:136] != b"\x02\x00\x00\x00":
        return encoded
    meta_end = 144 + int.from_bytes(encoded[140:144], "little")  # after (0002,0000) UL
    if DeflatedExplicitVRLittleEndian.encode("ascii") not in encoded[:meta_end]:
        return encoded
    return encoded[:meta_end] + zlib.decompress(encoded[meta_end:], -zlib.MAX_WBITS)


def _read(name: str) -> Dataset:
    return dcmread(TESTDATA / name, force=True)


def _engine(profile: str = "default", secret: bytes = SECRET) -> Engine:
    return Engine(PROFILES[profile](), Pseudonyms(secret, SITE_ID))


def _pixel_values(ds: Dataset) -> dict[int, bytes]:
    """Raw bulk pixel values, as stored (never decoded)."""
    return {t: bytes(ds.get_item(t).value or b"") for t in _PIXEL_TAGS if t in ds}


@dataclass
class Released:
    """One planted sample after the pipeline: what went in, what came out, its bytes."""

    planted: PlantedIdentifiers
    pixels_in: dict[int, bytes]
    sop_instance_uid_in: str
    outcome: Clean | Quarantine
    encoded: bytes = b""
    reread: Dataset | None = None


@pytest.fixture(scope="module")
def released(plant: Plant) -> Callable[[str, str], Released]:
    """Process each (sample, profile) once; the checks below all look at the same output."""

    @cache
    def run(name: str, profile: str) -> Released:
        ds = _read(name)
        planted = plant(ds)
        pixels = _pixel_values(ds)
        sop = str(ds.get("SOPInstanceUID", "") or "")
        outcome = process_instance(ds, _engine(profile))
        if isinstance(outcome, Quarantine):
            return Released(planted, pixels, sop, outcome)
        buffer = io.BytesIO()
        dcmwrite(buffer, outcome.dataset, enforce_file_format=True)
        encoded = buffer.getvalue()
        return Released(planted, pixels, sop, outcome, encoded, dcmread(io.BytesIO(encoded)))

    return run


def _clean(released: Released) -> tuple[Clean, Dataset]:
    outcome = released.outcome
    assert isinstance(outcome, Clean), f"quarantined: {outcome}"
    assert released.reread is not None
    return outcome, released.reread


# -- what is quarantined ---------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("name", sorted(QUARANTINED))
def test_bad_or_unsupported_sample_is_quarantined_with_its_reason(
    released: Callable[[str, str], Released], name: str, profile: str
) -> None:
    result = released(name, profile)
    outcome = result.outcome
    assert isinstance(outcome, Quarantine), "released although the MANIFEST lists it as bad"
    assert outcome.reason in QUARANTINED[name], outcome
    assert not hasattr(outcome, "dataset")  # nothing for a caller to write
    message = outcome.message.lower()
    assert not any(needle in message for needle in result.planted.needles())


@pytest.mark.parametrize("name", sorted(NOT_INSTANCES))
def test_file_without_sop_uids_is_not_an_instance(name: str) -> None:
    ds = _read(name)
    assert not (ds.get("SOPClassUID") and ds.get("SOPInstanceUID"))
    outcome = process_instance(ds, _engine())
    assert isinstance(outcome, Quarantine)
    assert outcome.reason in QUARANTINED[name], outcome
    assert outcome.stage == "read"


@pytest.mark.parametrize("name", sorted(QUARANTINED))
def test_offline_mode_writes_nothing_for_a_bad_sample(tmp_path: Path, name: str) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / name).write_bytes((TESTDATA / name).read_bytes())
    settings = EngineSettings(default_profile(), SECRET, SITE_ID, tmp_path / "storage")
    with warnings.catch_warnings():  # the offline worker sets global filters; keep ours
        summary = anonymize_folder(source, tmp_path / "out", settings, workers=1)
    assert summary.written == 0
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
    assert [o.status for o in summary.problems] in (["quarantined"], ["skipped"])


# -- what is released --------------------------------------------------------------------------


@pytest.mark.parametrize("name", RELEASED)
def test_planted_identifiers_are_really_in_the_input(plant: Plant, name: str) -> None:
    """Guards the checks below: a value that was never planted cannot be found missing."""
    ds = _read(name)
    has_sequences = any(e.VR == "SQ" and not e.tag.is_private and e.value for e in ds)
    planted = plant(ds)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds)
    haystack = searchable_bytes(buffer.getvalue()).lower()
    missing = [v for v in planted.written if v.lower().encode("latin-1") not in haystack]
    assert missing == []
    assert bool(planted.nested_in) == has_sequences


@pytest.mark.parametrize(("name", "profile"), RELEASE_CASES)
def test_sample_is_released_and_encodes_as_a_dicom_file(
    released: Callable[[str, str], Released], name: str, profile: str
) -> None:
    outcome, reread = _clean(released(name, profile))
    assert reread.SOPInstanceUID == outcome.result.sop_instance_uid
    assert reread.PatientID == outcome.result.patient_pseudonym
    assert reread.PatientName == outcome.result.patient_pseudonym


@pytest.mark.parametrize(("name", "profile"), RELEASE_CASES)
def test_released_bytes_hold_none_of_the_planted_identifiers(
    released: Callable[[str, str], Released], name: str, profile: str
) -> None:
    result = released(name, profile)
    _clean(result)
    haystack = searchable_bytes(result.encoded).lower()
    needles = result.planted.needles(PROFILES[profile]().keeps)
    found = sorted(n for n in needles if n.encode("latin-1") in haystack)
    assert found == [], f"planted values in the output (nested one at {result.planted.nested_in})"


@pytest.mark.parametrize(("name", "profile"), RELEASE_CASES)
def test_released_bytes_hold_no_remapped_original_uid(
    released: Callable[[str, str], Released], name: str, profile: str
) -> None:
    result = released(name, profile)
    outcome, _ = _clean(result)
    if not PROFILES[profile]().has(Option.RETAIN_UIDS):
        assert result.sop_instance_uid_in in outcome.result.remapped_uids
    # A UID the profile keeps somewhere (Retain UIDs keeps Referenced SOP Instance UID while
    # Table E.1-1 still remaps UID (0040,A124)) is public by the profile's choice.
    originals = {
        uid
        for uid in outcome.result.remapped_uids - outcome.result.kept_uids
        if len(uid) >= _MIN_UID_LENGTH and not uid.startswith(_STANDARD_UID_ROOT)
    }
    haystack = searchable_bytes(result.encoded)
    assert sorted(u for u in originals if u.encode("ascii") in haystack) == []


@pytest.mark.parametrize(("name", "profile"), RELEASE_CASES)
def test_released_pixel_data_is_byte_identical(
    released: Callable[[str, str], Released], name: str, profile: str
) -> None:
    result = released(name, profile)
    _, reread = _clean(result)
    assert _pixel_values(reread) == result.pixels_in


@pytest.mark.parametrize(("name", "profile"), RELEASE_CASES)
def test_released_file_meta_names_the_new_instance_and_this_gateway(
    released: Callable[[str, str], Released], name: str, profile: str
) -> None:
    _, reread = _clean(released(name, profile))
    meta = reread.file_meta
    assert meta.MediaStorageSOPInstanceUID == reread.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == reread.SOPClassUID
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert "SourceApplicationEntityTitle" not in meta


@pytest.mark.parametrize(("name", "profile"), RELEASE_CASES)
def test_released_instance_says_how_it_was_deidentified(
    released: Callable[[str, str], Released], name: str, profile: str
) -> None:
    _, reread = _clean(released(name, profile))
    assert reread.PatientIdentityRemoved == "YES"
    items = reread.DeidentificationMethodCodeSequence
    codes = sorted(str(item.CodeValue) for item in items)
    options = PROFILES[profile]().options
    assert codes == sorted([BASIC_PROFILE_CODE[0], *(opt.code for opt in options)])
    assert {str(item.CodingSchemeDesignator) for item in items} == {"DCM"}


# -- pseudonyms --------------------------------------------------------------------------------

_IDENTITY = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def _pseudonyms(plant: Plant, name: str, secret: bytes) -> dict[str, str]:
    """The new identity of a planted sample, from a fresh engine (no state carried over)."""
    ds = _read(name)
    plant(ds)
    outcome = process_instance(ds, _engine("default", secret))
    assert isinstance(outcome, Clean), outcome
    return {key: str(ds.get(key, "") or "") for key in _IDENTITY}


@pytest.mark.parametrize("name", RELEASED)
def test_pseudonyms_are_the_same_on_every_run_with_the_site_secret(plant: Plant, name: str) -> None:
    assert _pseudonyms(plant, name, SECRET) == _pseudonyms(plant, name, SECRET)


@pytest.mark.parametrize("name", RELEASED)
def test_pseudonyms_differ_under_another_site_secret(plant: Plant, name: str) -> None:
    ours, theirs = _pseudonyms(plant, name, SECRET), _pseudonyms(plant, name, OTHER_SECRET)
    same = [key for key in _IDENTITY if ours[key] and ours[key] == theirs[key]]
    assert same == []


_SUBPROCESS = """
import sys
from pydicom import dcmread
from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, configure_pydicom, process_instance

configure_pydicom()
path, secret, site = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
outcome = process_instance(dcmread(path), Engine(default_profile(), Pseudonyms(secret, site)))
assert isinstance(outcome, Clean), outcome
print(outcome.dataset.SOPInstanceUID)
"""


def test_a_second_process_computes_the_same_pseudonymous_uid() -> None:
    """No state shared between processes: the site secret alone decides the pseudonyms."""
    path = TESTDATA / "CT_small.dcm"
    outcome = process_instance(dcmread(path), _engine())
    assert isinstance(outcome, Clean)
    done = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, str(path), SECRET.hex(), SITE_ID],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == outcome.dataset.SOPInstanceUID
