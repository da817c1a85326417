"""Which attributes an IOD requires, for the combined action codes of Table E.1-1.

PS3.15 E.1.1 lets a de-identifier choose within Z/D, X/Z, X/D, X/Z/D and X/Z/U* "as required
to maintain IOD conformance". Our rule: take the least-retaining action that keeps the
instance valid:

- the attribute is Type 3 (or we do not know it as required) in its context: remove (X), or
  empty it (Z) where X is not offered;
- Type 2: empty it (Z). Also where the code is X/D: an empty value retains nothing and keeps
  a Type 2 attribute valid, so we prefer it to a dummy;
- Type 1: a dummy (D), or a remapped UID (U) for X/Z/U*.

The table below lists only attributes that carry a combined code (or an X the standard
assumes optional) and are Type 1 or 2 somewhere; anything not listed counts as Type 3.
The knowledge comes from PS3.3 (module tables cited per entry) and was checked with dciodvfy
on the shared test data.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

# SOP Class UID prefixes of IOD families.
_SR_FAMILY = "1.2.840.10008.5.1.4.1.1.88."
_DX_MG_IO_FAMILY = "1.2.840.10008.5.1.4.1.1.1."
_RT_FAMILY = "1.2.840.10008.5.1.4.1.1.481."
_WAVEFORM_FAMILY = "1.2.840.10008.5.1.4.1.1.9."

# IODs built on the Multi-frame Functional Groups and Enhanced General Equipment modules
# (PS3.3 C.7.6.16, C.7.5.2), recognised by SOP Class because a malformed or minimal
# instance may lack the functional group sequences themselves.
_FUNCTIONAL_GROUP_CLASSES = frozenset(
    "1.2.840.10008.5.1.4.1.1." + suffix
    for suffix in (
        "2.1", "2.2",  # Enhanced CT, Legacy Converted Enhanced CT
        "4.1", "4.2", "4.3", "4.4",  # Enhanced MR, MR Spectroscopy, Enhanced MR Color, Legacy
        "6.2", "6.3",  # Enhanced US Volume, Photoacoustic
        "12.1.1", "12.2.1",  # Enhanced XA, Enhanced XRF
        "13.1.1", "13.1.2", "13.1.3", "13.1.4", "13.1.5",  # X-Ray 3D, Breast Tomosynthesis
        "14.1", "14.2",  # Intravascular OCT
        "30",  # Parametric Map
        "66.4", "66.7",  # Segmentation, Label Map Segmentation
        "77.1.5.4", "77.1.5.7", "77.1.5.8",  # Ophthalmic Tomography and OCT B-scan/en face
        "77.1.6",  # VL Whole Slide Microscopy
        "128.1", "130",  # Legacy Converted Enhanced PET, Enhanced PET
    )
)

_SHARED_GROUPS = 0x52009229
_PER_FRAME_GROUPS = 0x52009230
_PATIENT_SPECIES_DESCRIPTION = 0x00102201
_PATIENT_SPECIES_CODE_SEQUENCE = 0x00102202

_CONTENT_DATE = 0x00080023
_CONTENT_TIME = 0x00080033
_ACQUISITION_DATETIME = 0x0008002A
_OPERATORS_NAME = 0x00081070
_REFERENCED_PPS_SEQUENCE = 0x00081111
_SOURCE_IMAGE_SEQUENCE = 0x00082112
_DERIVATION_IMAGE_SEQUENCE = 0x00089124
_DEVICE_SERIAL_NUMBER = 0x00181000
_CONTRAST_BOLUS_AGENT = 0x00180010
_ACQUISITION_CONTEXT_SEQUENCE = 0x00400555
_PATIENT_SEX_NEUTERED = 0x00102203
_RT_PLAN_DATE = 0x300A0006
_RT_PLAN_TIME = 0x300A0007
_TREATMENT_MACHINE_NAME = 0x300A00B2
_BEAM_SEQUENCE = 0x300A00B0
_REFERENCED_IMAGE_SEQUENCE = 0x00081140
# Where a presentation state names the images it applies to (PS3.3 C.11.11 Presentation
# State Relationship: Referenced Series > Referenced Image, Type 1; C.10.5 Graphic
# Annotation, C.10.4 Displayed Area, C.11.8 Softcopy VOI LUT: 1C). Without them a GSPS
# applies to nothing: the references stay, with remapped UIDs.
_IMAGE_REFERENCE_PARENTS = frozenset(
    {
        0x00081115,  # Referenced Series Sequence
        0x00700001,  # Graphic Annotation Sequence
        0x0070005A,  # Displayed Area Selection Sequence
        0x00283110,  # Softcopy VOI LUT Sequence
    }
)
_ION_BEAM_SEQUENCE = 0x300A03A2


def _sop_class(root: Dataset) -> str:
    return str(root.get("SOPClassUID", "")).strip()


def _has_functional_groups(root: Dataset) -> bool:
    """Multi-frame IODs with functional groups (Enhanced CT/MR/PET/XA, SEG, ...)."""
    return (
        _sop_class(root) in _FUNCTIONAL_GROUP_CLASSES
        or _SHARED_GROUPS in root
        or _PER_FRAME_GROUPS in root
    )


def _is_original(root: Dataset) -> bool:
    image_type = root.get("ImageType") or ""
    first = image_type if isinstance(image_type, str) else image_type[0]
    return str(first).strip().upper() in ("ORIGINAL", "MIXED")


def required_type(tag: int, parent: int | None, root: Dataset) -> int:
    """1, 2 or 3: the attribute's type in this instance, at top level or in `parent` sequence."""
    sop_class = _sop_class(root)
    if parent is None:
        if tag in (_CONTENT_DATE, _CONTENT_TIME):
            # PS3.3 C.17.2 SR Document General, C.7.6.16 Multi-frame Functional Groups and
            # C.10.8 Waveform Identification: Type 1; C.7.6.1 General Image: Type 2C.
            if sop_class.startswith((_SR_FAMILY, _WAVEFORM_FAMILY)):
                return 1
            return 1 if _has_functional_groups(root) else 2
        if tag == _ACQUISITION_DATETIME:
            # PS3.3 C.10.8 Waveform Identification: Type 1. C.8.13.1 Enhanced MR Image (and
            # the Enhanced CT/PET/XA equivalents): 1C for ORIGINAL or MIXED images.
            if sop_class.startswith(_WAVEFORM_FAMILY):
                return 1
            return 1 if _has_functional_groups(root) and _is_original(root) else 3
        if tag == _DEVICE_SERIAL_NUMBER:
            # PS3.3 C.7.5.2 Enhanced General Equipment: Type 1.
            return 1 if _has_functional_groups(root) else 3
        if tag == _OPERATORS_NAME:
            return 2 if sop_class.startswith(_RT_FAMILY) else 3  # PS3.3 C.8.8.1 RT Series
        if tag == _REFERENCED_PPS_SEQUENCE:
            # PS3.3 C.17.1 SR Document Series: Type 2.
            return 2 if sop_class.startswith(_SR_FAMILY) else 3
        if tag == _CONTRAST_BOLUS_AGENT:
            return 2  # PS3.3 C.7.6.4 Contrast/Bolus: Type 2 whenever the module is present.
        if tag == _ACQUISITION_CONTEXT_SEQUENCE:
            # PS3.3 C.7.6.14 Acquisition Context: Type 2; the module is mandatory in the
            # functional-group IODs, DX/MG/IO and the waveform IODs.
            family = sop_class.startswith((_DX_MG_IO_FAMILY, _WAVEFORM_FAMILY))
            return 2 if family or _has_functional_groups(root) else 3
        if tag == _PATIENT_SEX_NEUTERED:
            # PS3.3 C.7.1.1 Patient: Type 2C, required when the patient is an animal.
            animal = _PATIENT_SPECIES_DESCRIPTION in root or _PATIENT_SPECIES_CODE_SEQUENCE in root
            return 2 if animal else 3
        if tag in (_RT_PLAN_DATE, _RT_PLAN_TIME):
            return 2  # PS3.3 C.8.8.9 RT General Plan: Type 2.
        return 3
    if tag == _REFERENCED_IMAGE_SEQUENCE and parent in _IMAGE_REFERENCE_PARENTS:
        return 1
    if tag == _TREATMENT_MACHINE_NAME and parent in (_BEAM_SEQUENCE, _ION_BEAM_SEQUENCE):
        return 2  # PS3.3 C.8.8.14 RT Beams / C.8.8.25 RT Ion Beams: Type 2.
    if tag == _SOURCE_IMAGE_SEQUENCE and parent == _DERIVATION_IMAGE_SEQUENCE:
        # PS3.3 C.7.6.16.2.6 Derivation Image Macro: Type 2, but emptying it leaves the
        # Common Instance Reference Module (C.12.2) naming instances nothing refers to, so
        # the references are kept with remapped UIDs (U), as for Type 1.
        return 1
    return 3


def choose_action(code: str, required: int) -> str:
    """One of X, Z, D, U for a combined code, by the rule in the module docstring."""
    choices = [c.rstrip("*") for c in code.split("/")]
    if required == 1:
        return "U" if "U" in choices else "D"
    if required == 2:
        return "Z"
    return choices[0]
