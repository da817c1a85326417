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

_SHARED_GROUPS = 0x52009229
_PER_FRAME_GROUPS = 0x52009230
_PATIENT_SPECIES_DESCRIPTION = 0x00102201
_PATIENT_SPECIES_CODE_SEQUENCE = 0x00102202

_CONTENT_DATE = 0x00080023
_CONTENT_TIME = 0x00080033
_ACQUISITION_DATETIME = 0x0008002A
_DEVICE_SERIAL_NUMBER = 0x00181000
_CONTRAST_BOLUS_AGENT = 0x00180010
_ACQUISITION_CONTEXT_SEQUENCE = 0x00400555
_PATIENT_SEX_NEUTERED = 0x00102203
_RT_PLAN_DATE = 0x300A0006
_RT_PLAN_TIME = 0x300A0007
_TREATMENT_MACHINE_NAME = 0x300A00B2
_BEAM_SEQUENCE = 0x300A00B0
_ION_BEAM_SEQUENCE = 0x300A03A2


def _sop_class(root: Dataset) -> str:
    return str(root.get("SOPClassUID", ""))


def _has_functional_groups(root: Dataset) -> bool:
    """Multi-frame IODs with functional groups (Enhanced CT/MR/PET/XA, SEG, ...)."""
    return _SHARED_GROUPS in root or _PER_FRAME_GROUPS in root


def required_type(tag: int, parent: int | None, root: Dataset) -> int:
    """1, 2 or 3: the attribute's type in this instance, at top level or in `parent` sequence."""
    if parent is None:
        if tag in (_CONTENT_DATE, _CONTENT_TIME):
            # PS3.3 C.17.2 SR Document General: Type 1; C.7.6.1 General Image: Type 2C.
            return 1 if _sop_class(root).startswith(_SR_FAMILY) else 2
        if tag == _ACQUISITION_DATETIME:
            # PS3.3 C.8.13.1 Enhanced MR Image (and the Enhanced CT/PET/XA equivalents): 1C for
            # ORIGINAL or MIXED images.
            if _has_functional_groups(root):
                image_type = root.get("ImageType") or [""]
                return 1 if str(image_type[0]).upper() in ("ORIGINAL", "MIXED") else 3
            return 3
        if tag == _DEVICE_SERIAL_NUMBER:
            # PS3.3 C.7.5.2 Enhanced General Equipment: Type 1.
            return 1 if _has_functional_groups(root) else 3
        if tag == _CONTRAST_BOLUS_AGENT:
            return 2  # PS3.3 C.7.6.4 Contrast/Bolus: Type 2 whenever the module is present.
        if tag == _ACQUISITION_CONTEXT_SEQUENCE:
            # PS3.3 C.7.6.14 Acquisition Context: Type 2; the module is mandatory in the
            # functional-group IODs and DX/MG/IO.
            is_dx = _sop_class(root).startswith(_DX_MG_IO_FAMILY)
            return 2 if _has_functional_groups(root) or is_dx else 3
        if tag == _PATIENT_SEX_NEUTERED:
            # PS3.3 C.7.1.1 Patient: Type 2C, required when the patient is an animal.
            animal = _PATIENT_SPECIES_DESCRIPTION in root or _PATIENT_SPECIES_CODE_SEQUENCE in root
            return 2 if animal else 3
        if tag in (_RT_PLAN_DATE, _RT_PLAN_TIME):
            return 2  # PS3.3 C.8.8.9 RT General Plan: Type 2.
        return 3
    if tag == _TREATMENT_MACHINE_NAME and parent in (_BEAM_SEQUENCE, _ION_BEAM_SEQUENCE):
        return 2  # PS3.3 C.8.8.14 RT Beams / C.8.8.25 RT Ion Beams: Type 2.
    return 3


def choose_action(code: str, required: int) -> str:
    """One of X, Z, D, U for a combined code, by the rule in the module docstring."""
    choices = [c.rstrip("*") for c in code.split("/")]
    if required == 1:
        return "U" if "U" in choices else "D"
    if required == 2:
        return "Z"
    return choices[0]
