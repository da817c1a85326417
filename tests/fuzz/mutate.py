"""Malformed DICOM made from real sample files, for the fuzz tests.

Two kinds of mutators, both driven by a `random.Random` (hypothesis hands one in through
`st.randoms()`, so a failing case shrinks and replays; the folder and network tests use a
seeded one):

- dataset mutators change a pydicom Dataset before it is encoded (odd character sets and
  invalid bytes in text, deep nesting, pixel data shorter or longer than the header says,
  image attributes that are not numbers, missing or malformed UIDs, identifiers under the
  wrong VR);
- byte mutators (bytemutate.py) change the encoded Part 10 bytes (truncation, wrong or huge element
  lengths, bad VRs, duplicated and swapped elements, undefined-length sequences and items
  without delimiters, a transfer syntax in the file meta that does not match the body, no
  file meta at all, random bytes).

Every mutant starts from a sample with the synthetic identifiers of tests/conftest.py
planted, so an output can be searched for them afterwards.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bytemutate import BYTE_MUTATORS, leaked, meta_end, searchable
from fuzzing import shared_conftest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import generate_uid

__all__ = ["BYTE_MUTATORS", "leaked", "meta_end", "searchable"]  # for the tests' imports

_conftest = shared_conftest()
PLANTED_NAME: str = _conftest.PLANTED_NAME
PLANTED_PATIENT_ID: str = _conftest.PLANTED_PATIENT_ID
PlantedIdentifiers = _conftest.PlantedIdentifiers
plant_identifiers = _conftest.plant_identifiers

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"

# Small, valid instances of several IODs and every uncompressed encoding, plus a few
# compressed and deflated ones: mutants of these are quick to read and to process.
SEEDS = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle_2frame.dcm",
    "emri_small.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "image_dfl.dcm",
)

# --- seeds ---------------------------------------------------------------------------------


@cache
def _seed_bytes(name: str) -> bytes:
    return (TESTDATA / name).read_bytes()


def seed_dataset(name: str, rnd: random.Random) -> tuple[Dataset, PlantedIdentifiers]:
    """A fresh copy of a sample with the synthetic identifiers planted and a new SOP
    Instance UID from `rnd` (so that mutants never replace each other in the gateway's
    spool, and the same `rnd` gives the same bytes)."""
    ds = dcmread(io.BytesIO(_seed_bytes(name)), force=True)
    planted = plant_identifiers(ds)
    uid = generate_uid(entropy_srcs=[name, str(rnd.getrandbits(64))])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return ds, planted


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


# --- dataset mutators ----------------------------------------------------------------------

_CHARSETS = (
    "ISO_IR 192",
    "ISO 2022 IR 87",
    "ISO 2022 IR 6\\ISO 2022 IR 87",
    "GB18030",
    "ISO_IR 13",
    "ISO_IR 999",
    "utf-8",
    "\\ISO_IR 100",
    "ISO_IR 100\\ISO_IR 144\\ISO_IR 192",
    "",
)
_BAD_TEXT = (b"\xff\xfe", b"\x1b$B", b"\xc3\x28", b"\x00", b"\x1b(J\x8e", b"\xed\xa0\x80", b"\\")


def charset(ds: Dataset, rnd: random.Random) -> None:
    """An odd or unknown Specific Character Set, and identifiers among invalid bytes."""
    ds.SpecificCharacterSet = rnd.choice(_CHARSETS)
    bad = rnd.choice(_BAD_TEXT)
    for tag, vr, value in (
        (0x00100010, "PN", PLANTED_NAME.encode() + bad),
        (0x00081030, "LO", bad + b"for " + PLANTED_NAME.encode() + b" " + bad),
        (0x00204000, "LT", PLANTED_PATIENT_ID.encode() + bad * 3),
    ):
        if len(value) % 2:
            value += b" "
        ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def deep_nesting(ds: Dataset, rnd: random.Random) -> None:
    """Sequences nested tens of levels deep, a name at the bottom."""
    depth = rnd.randint(8, 90)
    leaf = Dataset()
    leaf.PersonName = PLANTED_NAME
    leaf.TextValue = f"for {PLANTED_NAME} {PLANTED_PATIENT_ID}"
    item = leaf
    for _ in range(depth):
        parent = Dataset()
        parent.ContentSequence = Sequence([item])
        item = parent
    ds.ContentSequence = Sequence([item])


def pixel_length(ds: Dataset, rnd: random.Random) -> None:
    """Pixel data shorter or longer than Rows x Columns x frames says."""
    if "PixelData" not in ds:
        ds.Rows, ds.Columns, ds.BitsAllocated = 16, 16, 16
        ds.PixelData = b"\0" * rnd.choice((0, 10, 511, 513, 600))
        ds["PixelData"].VR = "OW"
        return
    value = bytes(ds.PixelData)
    cut = rnd.randint(0, max(0, len(value) - 1))
    ds.PixelData = value[:cut] if rnd.random() < 0.6 else value + b"\0" * (cut + 2)


def image_attributes(ds: Dataset, rnd: random.Random) -> None:
    """Image pixel attributes that are missing, zero, huge or not numbers."""
    keyword = rnd.choice(("Rows", "Columns", "BitsAllocated", "NumberOfFrames", "SamplesPerPixel"))
    choice = rnd.randint(0, 3)
    if choice == 0 and keyword in ds:
        del ds[keyword]
    elif choice == 1:
        vr = "IS" if keyword == "NumberOfFrames" else "US"
        value = b"1A" if vr == "IS" else b"\xff"
        ds[Tag(keyword)] = RawDataElement(Tag(keyword), vr, len(value), value, 0, False, True)
    elif keyword == "NumberOfFrames":
        ds.NumberOfFrames = rnd.choice((0, -1, 999_999_999))
    else:
        setattr(ds, keyword, rnd.choice((0, 1, 65535)))


def uids(ds: Dataset, rnd: random.Random) -> None:
    """SOP, study or series UIDs missing, empty, too long, multi-valued or not UIDs."""
    keyword = rnd.choice(("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"))
    bad = rnd.choice((None, "", "1." * 60, "1.2.3\\4.5.6", "not-a-uid", "1.2.\x013"))
    if bad is None:
        ds.pop(Tag(keyword), None)
    else:
        raw = bad.encode("latin-1")
        raw += b"\0" * (len(raw) % 2)
        ds[Tag(keyword)] = RawDataElement(Tag(keyword), "UI", len(raw), raw, 0, False, True)


def wrong_vr(ds: Dataset, rnd: random.Random) -> None:
    """An identifying attribute's own value under a VR that is not its (binary, UN, ...)."""
    tag = rnd.choice((0x00100010, 0x00100020, 0x00080080, 0x00080090))
    vr = rnd.choice(("UN", "OB", "UT", "SH", "DS", "US", "AE"))
    value = ds[tag].value if tag in ds else PLANTED_NAME
    value = value if isinstance(value, bytes) else str(value).encode("latin-1")
    value = value.rstrip(b" ") + b" " * (len(value.rstrip(b" ")) % 2)
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def long_value(ds: Dataset, rnd: random.Random) -> None:
    """A text value far past its VR's maximum, the name buried in it."""
    size = rnd.choice((70, 1024, 70_000))
    value = (b"x" * size + b" " + PLANTED_NAME.encode() + b" " + b"y" * size)[: 2 * size + 40]
    value += b" " * (len(value) % 2)
    ds[0x00104000] = RawDataElement(Tag(0x00104000), "LT", len(value), value, 0, False, True)


DATASET_MUTATORS: dict[str, Callable[[Dataset, random.Random], None]] = {
    "charset": charset,
    "deep_nesting": deep_nesting,
    "pixel_length": pixel_length,
    "image_attributes": image_attributes,
    "uids": uids,
    "wrong_vr": wrong_vr,
    "long_value": long_value,
}


MUTATORS = (*DATASET_MUTATORS, *BYTE_MUTATORS)


# --- mutants ---------------------------------------------------------------------------------


# Where plant_identifiers puts identifying values (tests/conftest.py): its attributes at
# top level, in the Other Patient IDs item and the deepest item, the private block and the
# file meta. Not Image Comments: free text repeating them is no source of its own.
_PLANTED_TAGS = frozenset(
    {
        int(Tag(keyword))
        for keyword in (
            "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate",
            "AccessionNumber", "InstitutionName", "ReferringPhysicianName", "OperatorsName",
            "PerformingPhysicianName", "PatientAddress", "PersonName",
            "SourceApplicationEntityTitle",
        )
    }
    | {0x00111001}
)  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    """One malformed input: its bytes, how it was made, and what was planted in it."""

    seed: str
    mutations: tuple[str, ...]
    data: bytes
    planted: PlantedIdentifiers
    sop_instance_uid: str

    def describe(self) -> str:
        return f"{self.seed} + {' + '.join(self.mutations)}"

    def needles(self, kept: Callable[[int], bool]) -> set[str]:
        """The planted values the mutant still holds where they were planted.

        A mutation can move a value out of its attribute (a flipped bit turns Accession
        Number (0008,0050) into (0108,0050), a wrong length makes it part of a neighbour's
        value); no de-identifier can know such a value identifies anyone, so it is not
        searched for. Values still in place are, wherever the output might carry them.
        When the mutant does not read at all, every planted value is.
        """
        needles = self.planted.needles(kept)
        try:
            ds = dcmread(io.BytesIO(self.data), force=True)
            texts = _planted_texts(ds, _planted_texts(ds.file_meta, []))
        except Exception:
            return needles
        held = " ".join(texts).lower()
        held += " " + held.replace("^", " ")
        return {n for n in needles if n in held}


def _planted_texts(ds: Dataset, found: list[str], depth: int = 0) -> list[str]:
    """The text of every planted attribute of `ds`, at every depth, added to `found`."""
    for tag in list(ds.keys()):
        try:
            element = ds[tag]
            if element.VR == "SQ" and depth < 100:
                for item in element.value or ():
                    _planted_texts(item, found, depth + 1)
            elif int(tag) in _PLANTED_TAGS:
                value = element.value
                found.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
        except Exception:
            continue  # a value that does not convert holds nothing a reader would see
    return found


def make_mutant(seed: str, mutations: tuple[str, ...], rnd: random.Random) -> Mutant:
    """Apply the dataset mutators (before encoding), then the byte mutators, in order."""
    ds, planted = seed_dataset(seed, rnd)
    uid = str(ds.SOPInstanceUID)
    plain = encode(ds)
    for name in mutations:
        if name in DATASET_MUTATORS:
            try:
                DATASET_MUTATORS[name](ds, rnd)
            except Exception:  # an earlier mutation left a value pydicom will not convert
                continue
    try:
        data = encode(ds)
    except Exception:  # pydicom will not write it (e.g. an ambiguous VR): bytes only
        data = plain
        mutations = tuple(m for m in mutations if m in BYTE_MUTATORS)
    for name in mutations:
        if name in BYTE_MUTATORS:
            data = BYTE_MUTATORS[name](data, rnd)
    return Mutant(seed, mutations, data, planted, uid)


def random_mutant(rnd: random.Random, *, seeds: tuple[str, ...] = SEEDS) -> Mutant:
    """A mutant with one to three mutations, all choices from `rnd`."""
    count = rnd.choice((1, 1, 2, 3))
    return make_mutant(rnd.choice(seeds), tuple(rnd.choice(MUTATORS) for _ in range(count)), rnd)
