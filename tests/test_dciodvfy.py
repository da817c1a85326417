"""De-identified output stays valid DICOM: dciodvfy finds no error the input did not have.

The engine removes, empties and replaces attributes; Table E.1-1 leaves it to the
de-identifier to keep the IOD valid (PS3.15 E.1.1: "as required to maintain IOD
conformance"). dciodvfy (dicom3tools) knows every IOD's module and attribute types, so an
attribute the engine removed where the IOD needs it shows up as a new error. Each sample is
checked as it comes, and again with synthetic identifiers planted, so the attributes the
engine changes are present to be changed.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import pydicom_as_in_the_gateway
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from gateway.deid.engine import Engine
from gateway.deid.profile import CompiledProfile, compile_profile, default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.standard import Option
from gateway.pipeline.instance import Clean, process_instance

if TYPE_CHECKING:
    from conftest import PlantedIdentifiers

DCIODVFY = shutil.which("dciodvfy")
if DCIODVFY is None:
    pytest.skip("dciodvfy (dicom3tools) is not on PATH", allow_module_level=True)

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
if not TESTDATA.is_dir():
    pytest.skip(f"shared test data not found at {TESTDATA}", allow_module_level=True)

SAMPLES = sorted(p.name for p in TESTDATA.iterdir() if p.is_file() and p.suffix != ".md")
SECRET = b"dciodvfy-test-site-secret-0123456789"
SITE_ID = "TEST-SITE"

PROFILES: dict[str, Callable[[], CompiledProfile]] = {
    "default": default_profile,
    "all-options": lambda: compile_profile(
        [o for o in Option if o is not Option.RETAIN_LONGITUDINAL_FULL_DATES], name="all-options"
    ),
    "basic": lambda: compile_profile([], name="basic"),
}
VARIANTS = ("as-is", "planted")

# pydicom's reader warns about the malformed samples; those files are the point here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

Plant = Callable[[Dataset], "PlantedIdentifiers"]

CASES = [
    pytest.param(name, variant, profile)
    for name in SAMPLES
    for variant in VARIANTS
    for profile in sorted(PROFILES)
]


@pytest.fixture(autouse=True, scope="module")
def _pydicom_as_in_the_gateway() -> Iterator[None]:
    """No value validation, as in the gateway's workers: malformed input must get through."""
    with pydicom_as_in_the_gateway():
        yield


# dciodvfy quotes values; de-identification changes values on purpose, so compare messages.
_SHOWN_VALUE = re.compile(r" = <.*?>( - |$)")  # "PN [1] = <operator> - Retired ..."
_QUOTED = re.compile(r'"[^"]*"')  # 'Illegal root for UID - "9.8.7.6" in ...'
_CHARACTER = re.compile(r"'.' \(0x[0-9a-fA-F]{2}\)")  # "Character invalid ... = 'd' (0x64)"
_UID_AFTER_NAME = re.compile(r"(UID) [0-9.]+")  # "... ReferencedSOPInstanceUID 1.2.3.4.5"
# PS3.10 7.1: the file meta repeats the SOP Instance UID; the output's meta copies it (the
# input's may differ), so a bad SOP Instance UID is reported once more, for the meta.
_META_SOP_INSTANCE = re.compile(r"\(0x0002,0x0003\)( UI)? Media Storage SOP Instance UID")
# PS3.5 7.4: a Type 1 attribute must be present with a value; absent and empty fail alike.
_TYPE1_UNMET = re.compile(r"^(Missing attribute|Empty attribute \(no value\)) (Type 1C?) ")


def normalise(line: str) -> str:
    """A dciodvfy error without the values in it, so an error that names the same problem
    before and after de-identification compares equal."""
    line = _SHOWN_VALUE.sub(r" = <value>\1", line.strip())
    line = _QUOTED.sub('"value"', line)
    line = _CHARACTER.sub("'c'", line)
    line = _UID_AFTER_NAME.sub(r"\1 <uid>", line)
    line = _META_SOP_INSTANCE.sub(r"(0x0008,0x0018)\1 SOP Instance UID", line)
    message = line.removeprefix("Error - ")
    return _TYPE1_UNMET.sub(r"\2 absent or empty: ", message)


def dciodvfy_errors(path: Path) -> set[str]:
    """The distinct normalised errors dciodvfy reports for a file (on stderr).

    A set, not a count: dciodvfy repeats an error once per bad character of a value, so the
    count follows the value, which de-identification changes on purpose.
    """
    done = subprocess.run(
        [str(DCIODVFY), str(path)], capture_output=True, text=True, errors="replace", timeout=60
    )
    lines = (done.stdout + done.stderr).splitlines()
    aborted = [line for line in lines if line.startswith("Abort")]
    assert aborted == [], f"dciodvfy could not read {path.name}: {aborted}"
    return {normalise(line) for line in lines if line.startswith("Error")}


def _engine(profile: str) -> Engine:
    return Engine(PROFILES[profile](), Pseudonyms(SECRET, SITE_ID))


@pytest.mark.parametrize(("name", "variant", "profile"), CASES)
def test_deidentified_sample_has_no_new_dciodvfy_error(
    tmp_path: Path, plant: Plant, name: str, variant: str, profile: str
) -> None:
    ds = dcmread(TESTDATA / name, force=True)
    if variant == "planted":
        plant(ds)
    original = copy.deepcopy(ds)  # the engine works in place
    outcome = process_instance(ds, _engine(profile))
    if not isinstance(outcome, Clean):
        pytest.skip(f"quarantined ({outcome.reason}); nothing is written")
    source = tmp_path / "input.dcm"
    dcmwrite(source, original)  # as read (and planted): the reference the output is held to
    output = tmp_path / "output.dcm"
    dcmwrite(output, outcome.dataset, enforce_file_format=True)
    new = dciodvfy_errors(output) - dciodvfy_errors(source)
    assert sorted(new) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Error - Value invalid for this VR - (0x0008,0x0020) DA Study Date  DA [1] = "
            "<1996.10.29> - Character invalid for this VR = '.' (0x2e)",
            "Value invalid for this VR - (0x0008,0x0020) DA Study Date  DA [1] = <value> - "
            "Character invalid for this VR = 'c'",
        ),
        (
            'Error - Illegal root for UID - "9.8.7.6" in (0x0008,0x1155) Referenced SOP '
            "Instance UID",
            'Illegal root for UID - "value" in (0x0008,0x1155) Referenced SOP Instance UID',
        ),
        (
            "Error - Referenced SOP Instance is not listed in CurrentRequestedProcedureEvidence"
            "Sequence or PertinentOtherEvidenceSequence but have IMAGE ReferencedSOPInstanceUID "
            "1.2.3.4.5.0",
            "Referenced SOP Instance is not listed in CurrentRequestedProcedureEvidenceSequence "
            "or PertinentOtherEvidenceSequence but have IMAGE ReferencedSOPInstanceUID <uid>",
        ),
        (
            "Error - Empty attribute (no value) Type 1 Required Element=<DeviceSerialNumber> "
            "Module=<EnhancedGeneralEquipment>",
            "Type 1 absent or empty: Required Element=<DeviceSerialNumber> "
            "Module=<EnhancedGeneralEquipment>",
        ),
        (
            "Error - Missing attribute Type 1 Required Element=<DeviceSerialNumber> "
            "Module=<EnhancedGeneralEquipment>",
            "Type 1 absent or empty: Required Element=<DeviceSerialNumber> "
            "Module=<EnhancedGeneralEquipment>",
        ),
        (
            # Type 2 may be empty but not absent: these must stay different.
            "Error - Missing attribute Type 2 Required Element=<OperatorsName> Module=<RTSeries>",
            "Missing attribute Type 2 Required Element=<OperatorsName> Module=<RTSeries>",
        ),
        (
            'Error - Illegal root for UID - "9.8.7.6" in (0x0002,0x0003) Media Storage SOP '
            "Instance UID",
            'Illegal root for UID - "value" in (0x0008,0x0018) SOP Instance UID',
        ),
    ],
    ids=[
        "shown-value",
        "quoted-uid",
        "uid-after-name",
        "type1-empty",
        "type1-missing",
        "type2-missing-stays",
        "meta-sop-instance-uid",
    ],
)
def test_dciodvfy_errors_compare_on_their_message_not_the_values(raw: str, expected: str) -> None:
    assert normalise(raw) == expected
