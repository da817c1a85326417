"""Ages over 89 (HIPAA Safe Harbor): a kept Patient's Age becomes "090Y", and in free text
the number goes; younger ages and numbers that are no age stay."""

from __future__ import annotations

import pytest
from conftest import pydicom_as_in_the_gateway
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, process_instance
from gateway.text.recognizer import default_recognizer


def _instance(age: str, comments: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientAge = "Quill^Ottoline", "PID-774411", age
    ds.ImageComments = comments
    return ds


@pytest.mark.parametrize(
    ("age", "kept"), [("095Y", "090Y"), ("090Y", "090Y"), ("089Y", "089Y"), ("102Y", "090Y"),
                      ("011M", "011M"), ("045Y", "045Y")],
)  # fmt: skip
def test_a_kept_age_over_89_is_90(age: str, kept: str) -> None:
    """The default profile keeps patient characteristics (age, sex, size, weight)."""
    engine = Engine(default_profile(), Pseudonyms(b"ages-test-secret-of-32-bytes-xx!", "AGES"))
    with pydicom_as_in_the_gateway():
        result = process_instance(_instance(age, "Patient is 97 years old"), engine)
    assert isinstance(result, Clean)
    assert result.dataset.PatientAge == kept
    assert result.dataset.ImageComments == "Patient is * years old"


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Patient is 98 years old", "Patient is * years old"),
        ("a 93-year-old man", "a *-year-old man"),
        ("98 y/o F", "* y/o F"), ("98yo", "*yo"), ("Age 095Y", "Age *Y"), ("Age: 101", "Age: *"),
        ("aged 93", "aged *"), ("92 Jahre alt", "* Jahre alt"),
        ("Patiente de 93 ans", "Patiente de * ans"),
    ],
)  # fmt: skip
def test_ages_over_89_in_free_text(text: str, cleaned: str) -> None:
    assert default_recognizer().clean(text) == cleaned


@pytest.mark.parametrize(
    "text", ["Patient is 45 years old", "HR 95 bpm", "95% stenosis", "TR 95 ms", "age 90.5 cm"]
)
def test_younger_ages_and_other_numbers_stay(text: str) -> None:
    assert default_recognizer().clean(text) == text
