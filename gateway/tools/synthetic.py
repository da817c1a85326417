"""Synthetic *identified* DICOM studies for demos, tests and benchmarks.

Real patient data cannot live in a repository, yet the de-identifier needs inputs full of
identifiers in every place the standard lets them hide: names and IDs in the Patient
module, free text that repeats them, nested sequences, private blocks and the file meta.
These studies carry made-up but realistic values there, and `SyntheticPatient` lists every
one of them so a test can assert that none survives.

The instances are CT Image Storage, Explicit VR Little Endian, with the modules the CT
Image IOD requires (PS3.3 A.3), valid enough for `dciodvfy` to report no errors.

Pixel values stay within -2048..2047: every high byte is then 0x00-0x07 or 0xF8-0xFF, never
printable ASCII, so no identifying text of two characters or more can occur in the pixel
data by chance, and a byte scan of an output file finds only what the header holds.

No network, no randomness outside the seed: the same arguments give the same files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

__all__ = [
    "SyntheticPatient",
    "make_ct_study",
    "make_demo_sample",
    "random_patient",
]

PRIVATE_GROUP = 0x0009
PRIVATE_CREATOR = "ACME_PHI_01"

# pydicom's UID root (PS3.5 9.1): not any real device's UID, and
# deterministic when seeded through `entropy_srcs`.
_UID_PREFIX = "1.2.826.0.1.3680043.8.498."
_IMPLEMENTATION_CLASS_UID = _UID_PREFIX + "1"
_IMPLEMENTATION_VERSION = "ACME_SYNTH_1"

# Small built-in word lists. Every word is at least six letters, so a byte scan for it in a
# compressed image of a real file cannot hit by chance.
# fmt: off
_FAMILY_NAMES = (
    "HARTWELL", "OKONKWO", "LINDQVIST", "ABERNATHY", "FAIRWEATHER", "MONTGOMERY",
    "VASQUEZRIOS", "PEMBERTON", "KOWALCZYK", "DRUMMOND", "THORNBURY", "ACHTERBERG",
)
_GIVEN_NAMES = (
    "Maureen", "Desmond", "Ingeborg", "Rosalind", "Cornelius", "Evangeline",
    "Bartholomew", "Philippa", "Leopold", "Winifred", "Augustin", "Henrietta",
)
_MIDDLE_NAMES = (
    "Elspeth", "Ignatius", "Marigold", "Percival", "Ottoline", "Lysander",
    "Clementine", "Fitzgerald",
)
_TOWNS = ("Northbridge", "Eastwater", "Kingsmere", "Ashcombe", "Westhollow", "Brightmoor")
_STREETS = ("Larkspur Lane", "Quarry Road", "Mulberry Close", "Tannery Street", "Heron Way")
_PHYSICIANS = (
    "WHITCOMBE^Harriet", "NAKAMURA^Tetsuya", "FERREIRA^Joaquim", "OYELARAN^Adebayo",
    "STRICKLAND^Beatrix", "MACALLISTER^Fergus",
)
_OPERATORS = ("GALLAGHER^Siobhan", "PETROVSKY^Anatoly", "DELACROIX^Amelie", "BRANDVOLD^Torstein")
# fmt: on


@dataclass(frozen=True)
class SyntheticPatient:
    """Every identifying value planted in a synthetic study (the defaults are the demo's).

    The defaults' identifiers have their own prefixes (NBG, NBS, NBR), so the demo patient
    never shares an ID with a `random_patient`. Person names are PN values
    (`FAMILY^Given^Middle`); dates are DA values.
    """

    name: str = "HARTWELL^Maureen^Elspeth"
    patient_id: str = "NBG4821937"
    issuer: str = "NORTHBRIDGE_MRN"
    other_patient_id: str = "NHS9438812675"
    birth_date: str = "19800314"
    sex: str = "F"
    address: str = "42 Larkspur Lane, Northbridge NB4 7QT"
    telephone: str = "555-0142-3381"
    accession: str = "ACC24011700917"
    study_id: str = "NBS7730194"
    requested_procedure_id: str = "NBR5518203"
    institution: str = "Northbridge General Hospital"
    institution_address: str = "1 Infirmary Road, Northbridge NB1 2AA"
    referring: str = "WHITCOMBE^Harriet"
    performing: str = "NAKAMURA^Tetsuya"
    operator: str = "GALLAGHER^Siobhan"
    station: str = "NBGH-CTROOM2"
    source_ae: str = "NBGH_CT_SCAN2"
    study_date: str = "20240117"

    @property
    def family_name(self) -> str:
        return self.name.split("^")[0]

    @property
    def given_name(self) -> str:
        parts = self.name.split("^")
        return parts[1] if len(parts) > 1 else ""

    @property
    def middle_name(self) -> str:
        parts = self.name.split("^")
        return parts[2] if len(parts) > 2 else ""

    @property
    def birth_date_iso(self) -> str:
        """The birth date as people type it in free text: 1980-03-14."""
        d = self.birth_date
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}"

    @property
    def display_name(self) -> str:
        """The name as a technologist types it in a comment: "Maureen Elspeth Hartwell"."""
        words = [self.given_name, self.middle_name, self.family_name.capitalize()]
        return " ".join(w for w in words if w)

    def identifying_values(self) -> list[str]:
        """Every identifying string planted in the study, for tests that assert absence.

        Whole values and the name components that free text repeats on their own; the
        caller compares case-insensitively and with `^` as a space.
        """
        values = [
            self.name,
            self.family_name,
            self.given_name,
            self.middle_name,
            self.display_name,
            self.patient_id,
            self.issuer,
            self.other_patient_id,
            self.birth_date,
            self.birth_date_iso,
            self.address,
            self.telephone,
            self.accession,
            self.study_id,
            self.requested_procedure_id,
            self.institution,
            self.institution_address,
            self.referring,
            self.performing,
            self.operator,
            self.station,
            self.source_ae,
        ]
        for person in (self.referring, self.performing, self.operator):
            values.extend(part for part in person.split("^") if part)
        seen: dict[str, None] = {}
        for value in values:
            if value:
                seen.setdefault(value, None)
        return list(seen)


def random_patient(seed: int) -> SyntheticPatient:
    """A different made-up patient per seed: IDs differ for every seed below ten million,
    names (from the small word lists) usually do."""
    rng = random.Random(f"synthetic-patient-{seed}")
    family = rng.choice(_FAMILY_NAMES)
    town = rng.choice(_TOWNS)
    born = f"{rng.randint(1940, 2004)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    number = (seed * 7_919 + 4_821_937) % 10_000_000
    initials = "".join(word[0] for word in town.split()).upper() + "GH"
    return SyntheticPatient(
        name=f"{family}^{rng.choice(_GIVEN_NAMES)}^{rng.choice(_MIDDLE_NAMES)}",
        patient_id=f"MRN{number:07d}",
        issuer=f"{town.upper()}_MRN",
        other_patient_id=f"NHS{rng.randint(10**9, 10**10 - 1)}",
        birth_date=born,
        sex=rng.choice("FM"),
        address=f"{rng.randint(2, 299)} {rng.choice(_STREETS)}, {town} {town[:2].upper()}"
        f"{rng.randint(1, 9)} {rng.randint(1, 9)}QT",
        telephone=f"555-{rng.randint(100, 999):04d}-{rng.randint(1000, 9999)}",
        accession=f"ACC{rng.randint(20_000_000, 25_999_999)}{number % 100_000:05d}",
        study_id=f"STU{number:07d}",
        requested_procedure_id=f"RPID{rng.randint(10**6, 10**7 - 1)}",
        institution=f"{town} General Hospital",
        institution_address=f"{rng.randint(1, 99)} Infirmary Road, {town}",
        referring=rng.choice(_PHYSICIANS),
        performing=rng.choice(_PHYSICIANS),
        operator=rng.choice(_OPERATORS),
        station=f"{initials}-CTROOM{rng.randint(1, 9)}",
        source_ae=f"{initials}_CT_SCAN{rng.randint(1, 9)}",
        study_date=f"{rng.randint(2019, 2024)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
    )


# --- pixels ------------------------------------------------------------------------------


def _base_image(rows: int, columns: int, seed: int) -> np.ndarray:
    """A cheap CT-like slice: a disc of soft tissue in air with a ramp; values in -1000..103."""
    y, x = np.ogrid[:rows, :columns]
    cy, cx = rows / 2, columns / 2
    radius = min(rows, columns) * 0.42
    inside = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    ramp = ((x + y + seed * 7) % 64).astype(np.int16)
    image = np.where(inside, 40 + ramp, -1000).astype("<i2")
    return image


def _slice_pixels(base: np.ndarray, index: int) -> bytes:
    """Each slice differs a little (one roll of the base), at the cost of one copy."""
    return np.roll(base, index % base.shape[1], axis=1).tobytes()


# --- header ------------------------------------------------------------------------------


def _uid(*parts: object) -> str:
    return generate_uid(prefix=_UID_PREFIX, entropy_srcs=[str(p) for p in parts])


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


@dataclass(frozen=True)
class _StudyIds:
    study: str
    series: str
    frame_of_reference: str
    sop_prefix: str


def _study_ids(patient: SyntheticPatient, seed: int) -> _StudyIds:
    key = (patient.patient_id, seed)
    return _StudyIds(
        study=_uid("study", *key),
        series=_uid("series", *key),
        frame_of_reference=_uid("for", *key),
        sop_prefix=f"sop-{patient.patient_id}-{seed}",
    )


def _header(
    patient: SyntheticPatient,
    ids: _StudyIds,
    index: int,
    instances: int,
    rows: int,
    columns: int,
    previous_sop: str | None,
) -> Dataset:
    """One instance's attributes, module by module as the CT Image IOD lists them
    (PS3.3 A.3.3); pydicom writes them in tag order whatever the order here."""
    ds = Dataset()
    number = index + 1
    date = patient.study_date
    surname = patient.family_name.capitalize()

    # Patient (C.7.1.1)
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = patient.issuer
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    other = Dataset()
    other.PatientID = patient.other_patient_id
    other.IssuerOfPatientID = "NHS"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    # Patient Demographic (C.2.2), not in the CT IOD: dciodvfy warns, a real PACS sends it.
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.telephone

    # General Study (C.7.2.1)
    ds.StudyInstanceUID = ids.study
    ds.StudyDate = date
    ds.StudyTime = "100512"
    ds.ReferringPhysicianName = patient.referring
    ds.StudyID = patient.study_id
    ds.AccessionNumber = patient.accession
    ds.StudyDescription = f"CT CHEST W CONTRAST {surname} follow-up"

    # General Series (C.7.3.1), with a Request Attributes Sequence item (macro 10.6)
    ds.Modality = "CT"
    ds.SeriesInstanceUID = ids.series
    ds.SeriesNumber = 2
    ds.SeriesDate = date
    ds.SeriesTime = "101033"
    ds.SeriesDescription = f"AXIAL 5MM {surname}"
    ds.PerformingPhysicianName = patient.performing
    ds.OperatorsName = patient.operator
    ds.BodyPartExamined = "CHEST"  # unpaired, so Laterality (Type 2C) is not required
    ds.PatientPosition = "FFS"
    request = Dataset()
    request.AccessionNumber = patient.accession
    request.RequestedProcedureID = patient.requested_procedure_id
    request.RequestedProcedureDescription = f"CT chest for {surname}"
    request.ScheduledProcedureStepID = patient.requested_procedure_id + "S1"
    request.ScheduledProcedureStepDescription = "CT CHEST W CONTRAST"
    request.ScheduledProtocolCodeSequence = Sequence(
        [_code("CTCHESTC", "99ACME", "CT chest with contrast")]
    )
    ds.RequestAttributesSequence = Sequence([request])

    # Frame of Reference (C.7.4.1)
    ds.FrameOfReferenceUID = ids.frame_of_reference
    ds.PositionReferenceIndicator = ""

    # General Equipment (C.7.5.1)
    ds.Manufacturer = "ACME Medical Systems"
    ds.InstitutionName = patient.institution
    ds.InstitutionAddress = patient.institution_address
    ds.StationName = patient.station
    ds.ManufacturerModelName = "Acme CT 64"
    ds.DeviceSerialNumber = "ACME64-00417"
    ds.SoftwareVersions = "4.2.1"

    # General Image (C.7.6.1)
    ds.InstanceNumber = number
    ds.ContentDate = date
    ds.ContentTime = f"1012{number % 60:02d}"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate = date
    ds.AcquisitionTime = f"1011{number % 60:02d}"
    ds.ImageComments = (
        f"Patient {patient.display_name}, born {patient.birth_date_iso}; "
        f"slice {number} of {instances}"
    )
    if previous_sop is not None:
        # Image SOP Instance Reference Macro (PS3.3 10.3)
        reference = Dataset()
        reference.ReferencedSOPClassUID = CTImageStorage
        reference.ReferencedSOPInstanceUID = previous_sop
        ds.ReferencedImageSequence = Sequence([reference])

    # Image Plane (C.7.6.2)
    z = -5.0 * index
    ds.PixelSpacing = [round(500.0 / rows, 6), round(500.0 / columns, 6)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-250.0, -250.0, z]
    ds.SliceThickness = "5"
    ds.SliceLocation = z

    # Image Pixel (C.7.6.3); Pixel Data is added by the caller
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 1

    # CT Image (C.8.2.1) and VOI LUT (C.11.2)
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.KVP = "120"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"

    # SOP Common (C.12.1)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = _uid(ids.sop_prefix, index)
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = "101502"

    _add_private_block(ds, patient)
    return ds


def _add_private_block(ds: Dataset, patient: SyntheticPatient) -> None:
    """A vendor block (PS3.5 7.8.1) that repeats the patient's name and ID, nested too."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", patient.name.replace("^", " "))
    block.add_new(0x02, "LO", patient.patient_id)
    item = Dataset()
    inner = item.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    inner.add_new(0x01, "LO", patient.name.replace("^", " "))
    inner.add_new(0x04, "LO", f"Exam for {patient.display_name}")
    block.add_new(0x03, "SQ", Sequence([item]))


def _file_meta(sop_instance_uid: str, patient: SyntheticPatient) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    meta.SourceApplicationEntityTitle = patient.source_ae
    return meta


# --- studies -----------------------------------------------------------------------------


def make_ct_study(
    out_dir: Path,
    *,
    instances: int = 10,
    rows: int = 512,
    columns: int = 512,
    patient: SyntheticPatient | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write one CT series of `instances` slices to `out_dir`; return the file paths.

    `patient` defaults to `random_patient(seed)`. The seed also decides the UIDs, so two
    calls with different seeds give different studies of the same patient.
    """
    if instances < 1:
        raise ValueError("a study needs at least one instance")
    if rows < 1 or columns < 1:
        raise ValueError("rows and columns must be positive")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    patient = patient if patient is not None else random_patient(seed)
    ids = _study_ids(patient, seed)
    base = _base_image(rows, columns, seed)
    paths: list[Path] = []
    previous: str | None = None
    for index in range(instances):
        ds = _header(patient, ids, index, instances, rows, columns, previous)
        ds.file_meta = _file_meta(ds.SOPInstanceUID, patient)
        ds.PixelData = _slice_pixels(base, index)
        ds["PixelData"].VR = "OW"
        path = out_dir / f"CT{index + 1:05d}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
        previous = ds.SOPInstanceUID
    return paths


def make_demo_sample(out_dir: Path) -> list[Path]:
    """The small bundled sample for `make run`: five 64x64 slices of the default patient."""
    return make_ct_study(out_dir, instances=5, rows=64, columns=64, patient=SyntheticPatient())
