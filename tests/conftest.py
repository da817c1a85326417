"""Shared fixtures: synthetic identifying values planted into the shared sample files.

The sample files in ../shared/testdata had their names edited out, so a test that checks
that nothing identifying survives must first put something identifying in. The values are
invented and distinctive enough that finding one in an output can only mean a leak.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

PLANTED_NAME = "Zyxwick^Quorbelle"
PLANTED_PATIENT_ID = "ZQ-998877-X"
PLANTED_OTHER_PATIENT_ID = "ZQ-554433-Y"
PLANTED_BIRTH_DATE = "19630415"
PLANTED_ACCESSION = "ACZQ7788123"
PLANTED_INSTITUTION = "Glimmerdale Infirmary"
PLANTED_REFERRING = "Vexmoor^Alaric"
PLANTED_OPERATOR = "Plimquist^Odena"
PLANTED_PERFORMING = "Trazzle^Bemwick"
PLANTED_ADDRESS = "17 Quillfeather Lane, Zorbury"
PLANTED_SOURCE_AE = "ZYXWICKSRC"
PLANTED_PRIVATE_CREATOR = "PHI_TEST"

# Top-level attributes and what goes into them (keyword, VR, value).
_TOP_LEVEL = (
    ("PatientName", "PN", PLANTED_NAME),
    ("PatientID", "LO", PLANTED_PATIENT_ID),
    ("OtherPatientIDs", "LO", PLANTED_OTHER_PATIENT_ID),
    ("PatientBirthDate", "DA", PLANTED_BIRTH_DATE),
    ("AccessionNumber", "SH", PLANTED_ACCESSION),
    ("InstitutionName", "LO", PLANTED_INSTITUTION),
    ("ReferringPhysicianName", "PN", PLANTED_REFERRING),
    ("OperatorsName", "PN", PLANTED_OPERATOR),
    ("PerformingPhysicianName", "PN", PLANTED_PERFORMING),
    ("PatientAddress", "LO", PLANTED_ADDRESS),
    # Removed by the Basic Profile (X), cleaned under Clean Descriptors (C).
    ("ImageComments", "LT", f"Seen with {PLANTED_NAME.replace('^', ' ')}, {PLANTED_PATIENT_ID}"),
)


@dataclass
class PlantedIdentifiers:
    """What was planted where, and the strings an output must not contain."""

    top_level: dict[int, str] = field(default_factory=dict)
    nested_in: str = ""  # tag path of the existing sequence item that got a Person Name
    written: list[str] = field(default_factory=list)  # every value as planted, anywhere

    def needles(self, kept: Callable[[int], bool] = lambda tag: False) -> set[str]:
        """Lower-case strings that must not occur in the output's bytes.

        `kept(tag)` says the profile keeps that attribute on purpose (Institution Name under
        Retain Institution Identity); a value planted only there is not a leak.
        """
        found = {PLANTED_SOURCE_AE}
        for tag, value in self.top_level.items():
            if not kept(tag):
                found.add(value)
        for value in list(found):
            if "^" in value:  # PN: the DICOM form, as written, and each component
                found.add(value.replace("^", " "))
                found.update(part for part in value.split("^") if part)
        if not kept(int(Tag("PatientAddress"))):
            found.add("Quillfeather")
        if not kept(int(Tag("InstitutionName"))):
            found.add("Glimmerdale")
        return {needle.lower() for needle in found}


def _cut_short(raw: object) -> bool:
    """A value pydicom read only in part because the file ended inside it."""
    value, length = getattr(raw, "value", None), getattr(raw, "length", None)
    return isinstance(value, bytes) and length not in (None, 0xFFFFFFFF) and len(value) < length


def _is_sequence(ds: Dataset, tag: BaseTag) -> bool:
    vr = ds.get_item(tag).VR
    if vr in (None, "UN"):  # implicit VR, or a sequence sent as UN (PS3.5 6.2.2)
        try:
            return dictionary_VR(tag) == "SQ"
        except KeyError:
            return False
    return vr == "SQ"


def _public_items(ds: Dataset, path: str, depth: int) -> Iterator[tuple[int, str, Dataset]]:
    """(depth, path, item) for every item of every public sequence, at any depth.

    Leaves alone what a reader left unparsed because the file was cut short inside it: the
    pipeline must still see that, as the gateway would.
    """
    for tag in list(ds.keys()):
        if tag.is_private or _cut_short(ds.get_item(tag)) or not _is_sequence(ds, tag):
            continue
        for index, item in enumerate(ds[tag].value or ()):
            where = f"{path}{tag}[{index}]"
            yield depth + 1, where, item
            yield from _public_items(item, where, depth + 1)


def plant_identifiers(ds: Dataset) -> PlantedIdentifiers:
    """Put the synthetic identifiers into `ds`: top level, nested, private and file meta."""
    planted = PlantedIdentifiers()
    deepest = max(_public_items(ds, "", 0), key=lambda found: found[0], default=None)
    for keyword, vr, value in _TOP_LEVEL:
        tag = int(Tag(keyword))
        ds.add_new(tag, vr, value)
        planted.top_level[tag] = value
        planted.written.append(value)
    other = Dataset()
    other.PatientID = PLANTED_OTHER_PATIENT_ID
    other.TypeOfPatientID = "TEXT"
    other.PatientName = PLANTED_NAME
    ds.OtherPatientIDsSequence = Sequence([other])
    if deepest is not None:
        # The deepest existing item: PS3.15 E.1.1 actions apply wherever an attribute occurs.
        _, planted.nested_in, item = deepest
        item.PersonName = PLANTED_NAME
    ds.private_block(0x0011, PLANTED_PRIVATE_CREATOR, create=True).add_new(0x01, "LO", PLANTED_NAME)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        meta.SourceApplicationEntityTitle = PLANTED_SOURCE_AE
        planted.written.append(PLANTED_SOURCE_AE)
    return planted


@pytest.fixture(scope="session")
def plant() -> Callable[[Dataset], PlantedIdentifiers]:
    """The planting function, for tests that build their own inputs."""
    return plant_identifiers


# -- figures of the fault, fuzz and load tests, shown in every run's summary --------------
# (Here, not in tests/faults/conftest.py: a second conftest module would shadow this one for
# the tests that import helpers from `conftest`.)

FIGURES: list[str] = []


@pytest.fixture
def report_figures() -> list[str]:
    """Append a text block; it is printed at the end of the session, not only with `-s`."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault test figures")
        for block in FIGURES:
            terminalreporter.write_line(block)


@contextmanager
def pydicom_as_in_the_gateway() -> Iterator[None]:
    """pydicom reading and writing as the gateway's workers set it (no value validation,
    `pipeline.configure_pydicom`), restored afterwards."""
    saved = (config.settings.reading_validation_mode, config.settings.writing_validation_mode)
    level = logging.getLogger("pydicom").level
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = saved
        logging.getLogger("pydicom").setLevel(level)


def fresh_python(code: str) -> str:
    """What `code` prints in a new interpreter (what a process that starts clean imports);
    the test fails with its error output if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
