"""Public attributes no edition of the standard defines are removed, wherever they sit."""

from __future__ import annotations

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gateway.base.identifiers import collect_identifiers
from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms

SECRET = b"unknown-attributes-test-secret-01"


def _instance() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.StudyInstanceUID = "1.2.3.4.5.6"
    ds.SeriesInstanceUID = "1.2.3.4.5.6.1"
    ds.PatientID = "PID-778812"
    ds.PatientName = "Quorbelle^Zyxwick"
    ds.SliceThickness = "1.25"
    # A bit flip moved Accession Number (0008,0050) to (0108,0050): undefined, so removed.
    ds.add(DataElement(0x01080050, "LO", "ACC-55123987"))
    ds.add(DataElement(0x00081234, "SH", "RAD-ROOM-7"))
    item = Dataset()
    item.add(DataElement(0x00F10010, "LO", "NESTED-SECRET-42"))
    item.CodeValue = "T-D3000"
    ds.AnatomicRegionSequence = Sequence([item])
    return ds


def test_undefined_public_tags_are_removed_at_every_depth() -> None:
    ds = _instance()
    engine = Engine(default_profile(), Pseudonyms(SECRET, "SITE"))
    engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
    text = repr(ds)
    for tag in (0x01080050, 0x00081234):
        assert tag not in ds
    for value in ("ACC-55123987", "RAD-ROOM-7", "NESTED-SECRET-42", "PID-778812", "Quorbelle"):
        assert value not in text
    assert ds.SliceThickness == "1.25"  # defined, not in Table E.1-1: retained
    assert len(ds.AnatomicRegionSequence) == 1  # retained sequence, walked
    for item in ds.AnatomicRegionSequence:
        assert 0x00F10010 not in item
        assert item.CodeValue == "T-D3000"
