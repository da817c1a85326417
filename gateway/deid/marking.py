"""What a de-identified instance says about itself: its marking and a new file meta."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.deid.standard import BASIC_PROFILE_CODE, TABLE_E1_1_EDITION, Option

if TYPE_CHECKING:
    from gateway.deid.compiled_rules import CompiledRules

__version__ = "0.1.0"

# This project's Implementation Class UID (PS3.7 D.3.3.2): a fixed 2.25 UUID-derived UID.
IMPLEMENTATION_CLASS_UID = "2.25.24671494228297195857051802859060108074"
IMPLEMENTATION_VERSION_NAME = "DICOMGW_" + __version__
_CODE_VALUE, _CODING_SCHEME_DESIGNATOR, _CODE_MEANING = 0x00080100, 0x00080102, 0x00080104


def mark_deidentified(ds: Dataset, profile: CompiledRules) -> None:
    """PS3.15 E.1.1 / PS3.3 C.7.1.1: say that and how the instance was de-identified."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [
        f"DICOM-GATEWAY {__version__}",
        f"PS3.15 {TABLE_E1_1_EDITION} BASIC PROFILE",
        f"PROFILE {profile.name}"[:64],
    ]
    codes = [BASIC_PROFILE_CODE] + [
        (opt.code, opt.meaning) for opt in sorted(profile.options, key=lambda o: o.code)
    ]
    items = []
    for value, meaning in codes:
        item = Dataset()  # new: add_new is what setting CodeValue etc. by keyword does
        item.add_new(_CODE_VALUE, "SH", value)
        item.add_new(_CODING_SCHEME_DESIGNATOR, "SH", "DCM")
        item.add_new(_CODE_MEANING, "LO", meaning)
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    if profile.has(Option.RETAIN_LONGITUDINAL_FULL_DATES):
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif profile.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES):
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def rewrite_file_meta(ds: Dataset) -> None:
    """A new file meta: nothing of the sender's (AE titles, private info) survives."""
    old = getattr(ds, "file_meta", None) or FileMetaDataset()
    syntax = old.get("TransferSyntaxUID")
    if not syntax:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        if implicit is None:
            implicit, little = True, True
        syntax = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little
            else ExplicitVRBigEndian
        )
    meta = FileMetaDataset()  # new: add_new is what setting the keywords does
    if "SOPClassUID" in ds:
        meta.add_new(0x00020002, "UI", ds.SOPClassUID)  # Media Storage SOP Class UID
    if "SOPInstanceUID" in ds:
        meta.add_new(0x00020003, "UI", ds.SOPInstanceUID)  # Media Storage SOP Instance UID
    meta.add_new(0x00020010, "UI", syntax)  # Transfer Syntax UID
    meta.add_new(0x00020012, "UI", IMPLEMENTATION_CLASS_UID)
    meta.add_new(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME)
    ds.file_meta = meta
