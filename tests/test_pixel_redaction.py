"""Burned-in text is blanked: a generated set with text at known boxes, and the real US files.

Every image carries a synthetic patient's name, ID and dates rendered at known places in
several fonts, sizes and contrasts, over modalities, sizes and photometric interpretations,
stored uncompressed and compressed. Through the whole pipeline (tags, pixels, verify):
text-box pixels blanked (recall), pixels blanked outside text boxes (spill), and the
allow-listed annotation that must survive.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, Quarantine, process_instance

ocr = pytest.importorskip("gateway.pixels.ocr")
pytestmark = pytest.mark.skipif(ocr.is_available() is not None, reason="Tesseract missing")

from gateway.pixels.anatomy import anatomy_mask, inside  # noqa: E402
from gateway.pixels.frames import decode_frames  # noqa: E402
from gateway.pixels.rules import load_pixel_config  # noqa: E402
from gateway.pixels.text_finder import find_words  # noqa: E402

FONTS = Path("/usr/share/fonts/truetype/dejavu")
SURE_TESSERACT = 60.0  # ocr.MIN_CONFIDENCE_SHORT: what Tesseract gives real short words
SURE_IN_PICTURE = 80.0  # ocr.SURE_CONFIDENCE: inside the picture, texture reads up to ~70
NAME, PATIENT_ID, BIRTH = "HARTWELL^MAUREEN", "NBG4471203", "19800314"
LINES = ["HARTWELL MAUREEN", "ID NBG4471203", "DOB 1980-03-14", "14/03/1980 10:22"]
TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


@dataclass(frozen=True)
class Case:
    name: str
    modality: str
    sop_class: str
    rows: int
    columns: int
    photometric: str  # MONOCHROME2, MONOCHROME1 or RGB
    bits: int
    font: str
    size: int
    ink: int  # 0-255, text brightness on the 8-bit rendering
    paper: int
    compress: str = ""  # "", or a lossless transfer syntax the set is stored in


RLE, J2K, JLS = RLELossless, JPEG2000Lossless, JPEGLSLossless
SC = "1.2.840.10008.5.1.4.1.1.7"
US = "1.2.840.10008.5.1.4.1.1.6.1"
XA = "1.2.840.10008.5.1.4.1.1.12.1"
CASES = [
    Case("us-rgb-white-on-black", "US", US, 480, 640, "RGB", 8, "DejaVuSans.ttf", 18, 255, 0),
    Case("us-rgb-gray-small", "US", US, 480, 640, "RGB", 8, "DejaVuSans.ttf", 14, 200, 20, RLE),
    Case("sc-mono2-bold", "OT", SC, 512, 512, "MONOCHROME2", 8, "DejaVuSans-Bold.ttf", 22, 240, 10),
    Case(
        "sc-mono2-dark-on-light",
        "OT",
        SC,
        512,
        512,
        "MONOCHROME2",
        8,
        "DejaVuSans.ttf",
        20,
        15,
        230,
        J2K,
    ),
    Case("xa-12bit", "XA", XA, 512, 512, "MONOCHROME2", 16, "DejaVuSansMono.ttf", 18, 250, 30, JLS),
    Case("sc-mono1", "OT", SC, 400, 600, "MONOCHROME1", 8, "DejaVuSans.ttf", 20, 240, 20),
]


def _render(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An 8-bit picture with a textured body, the text lines and an allow-listed scale mark.

    Returns the picture, the mask of the text boxes and the mask of the scale mark.
    """
    rng = np.random.default_rng(len(case.name))
    image = Image.new("L", (case.columns, case.rows), case.paper)
    body = (rng.normal(0.5, 0.15, (case.rows // 2, case.columns // 2)) * 120).clip(0, 255)
    image.paste(Image.fromarray(body.astype(np.uint8)), (case.columns // 4, case.rows // 3))
    draw = ImageDraw.Draw(image)
    path = FONTS / case.font
    font = ImageFont.truetype(str(path), case.size) if path.exists() else ImageFont.load_default()
    mask = np.zeros((case.rows, case.columns), bool)
    y = 8
    for index, line in enumerate(LINES):
        x = 10 if index % 2 == 0 else case.columns // 2
        left, top, right, bottom = draw.textbbox((x, y), line, font=font)
        draw.text((x, y), line, fill=case.ink, font=font)
        mask[top:bottom, left:right] = True
        y = bottom + 6
    scale = np.zeros_like(mask)
    left, top, right, bottom = draw.textbbox((case.columns - 80, case.rows - 40), "5 cm", font=font)
    draw.text((case.columns - 80, case.rows - 40), "5 cm", fill=case.ink, font=font)
    scale[top:bottom, left:right] = True
    return np.asarray(image), mask, scale


def _instance(case: Case, pixels8: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = case.sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = case.modality
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH
    ds.Rows, ds.Columns = case.rows, case.columns
    if case.photometric == "RGB":
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        array = np.repeat(pixels8[..., None], 3, axis=2)
    else:
        ds.SamplesPerPixel = 1
        array = pixels8 if case.photometric == "MONOCHROME2" else 255 - pixels8
    ds.PhotometricInterpretation = case.photometric
    if case.bits == 16:
        array = (array.astype(np.uint16) * 16).astype(np.uint16)  # 12 bits stored
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(array).tobytes()
    if case.compress:
        ds.compress(case.compress, np.ascontiguousarray(array))
    return ds


def _encoded_and_back(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def _engine() -> Engine:
    return Engine(default_profile(), Pseudonyms(b"pixel-redaction-test-secret-0001", "PX"))


@pytest.fixture(scope="module")
def results() -> list[tuple[Case, np.ndarray, np.ndarray, np.ndarray, Dataset]]:
    config = load_pixel_config(None)
    out = []
    for case in CASES:
        pixels8, mask, scale = _render(case)
        original = _encoded_and_back(_instance(case, pixels8))
        before = decode_frames(original)[0].copy()
        outcome = process_instance(_encoded_and_back(_instance(case, pixels8)), _engine(), config)
        assert isinstance(outcome, Clean), f"{case.name}: {getattr(outcome, 'message', '')}"
        out.append((case, mask, scale, before, _encoded_and_back(outcome.dataset)))
    return out


def _blank(case: Case, after: np.ndarray) -> np.ndarray:
    """Where the frame holds the blanking value (black in the frame's own terms)."""
    fill = after.max() if case.photometric == "MONOCHROME1" else after.min()
    same = after == fill
    return same.all(axis=-1) if same.ndim == 3 else same


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    diff = before != after
    return diff.any(axis=-1) if diff.ndim == 3 else diff


def test_text_boxes_are_blanked_across_the_set(results) -> None:
    """Pixel-level recall: the share of text-box pixels that hold the blanking value."""
    text_pixels = blanked = 0
    for case, mask, _, _, cleaned in results:
        covered = _blank(case, decode_frames(cleaned)[0]) & mask
        print(f"{case.name}: {covered.sum() / mask.sum():.4f} of its text-box pixels blanked")
        text_pixels += int(mask.sum())
        blanked += int(covered.sum())
        assert cleaned.BurnedInAnnotation == "NO", case.name
    recall = blanked / text_pixels
    print(f"text-box pixel recall: {recall:.4f} over {len(results)} images")
    assert recall >= 0.99


def test_blanked_area_outside_text_stays_small(results) -> None:
    for case, mask, _, before, cleaned in results:
        changed = _changed(before, decode_frames(cleaned)[0])
        spill = (changed & ~mask).sum() / mask.size
        print(f"{case.name}: blanked outside text boxes {spill:.3%}")
        assert spill < 0.05, case.name


def test_allow_listed_scale_mark_survives(results) -> None:
    kept = [
        (_changed(before, decode_frames(cleaned)[0]) & scale).sum() == 0
        for case, _, scale, before, cleaned in results
    ]
    assert sum(kept) >= len(kept) - 1, f"scale mark kept in {sum(kept)} of {len(kept)} images"


def test_no_identifier_is_readable_after_cleaning(results) -> None:
    from gateway.pixels.frames import ocr_image

    for case, _, _, _, cleaned in results:
        frame = decode_frames(cleaned)[0]
        read = " ".join(w.text for w in ocr.detect_text(ocr_image(frame, cleaned))).upper()
        for value in ("HARTWELL", "MAUREEN", "NBG4471203", "1980"):
            assert value not in read, case.name
        assert "PIXELS CLEANED (OCR)" in list(cleaned.DeidentificationMethod)
        codes = {item.CodeValue for item in cleaned.DeidentificationMethodCodeSequence}
        assert "113101" in codes


US_FILES = [
    "gdcm-US-ALOKA-16.dcm",
    "US1_UNCR.dcm",
    "US1_J2KR.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
]


@pytest.mark.parametrize("name", US_FILES)
def test_real_ultrasound_comes_out_without_burned_in_text(name: str) -> None:
    path = TESTDATA / name
    if not path.exists():
        pytest.skip("shared/testdata is not beside the project")
    from gateway.pixels.frames import ocr_image

    original = dcmread(path)
    before = decode_frames(original)
    outcome = process_instance(dcmread(path), _engine(), load_pixel_config(None))
    if isinstance(outcome, Quarantine):
        pytest.fail(f"quarantined: {outcome.reason}: {outcome.message}")
    cleaned = _encoded_and_back(outcome.dataset)
    after = decode_frames(cleaned)
    config = load_pixel_config(None)
    allow = config.allow_list()
    for frame in after[:3]:
        # Read by the gateway's own finder and, independently, by Tesseract over the whole
        # frame; both "read" speckle and texture at low confidence ("hag?" at 50), so a
        # word counts from the confidence real annotation text gets, higher in the picture.
        image = ocr_image(frame, cleaned)
        picture = anatomy_mask(cleaned, *image.shape)
        words = [
            w
            for w in ocr.detect_text(image) + find_words(image)
            if w.confidence >= (SURE_IN_PICTURE if inside(picture, w.box) else SURE_TESSERACT)
        ]
        left = [w for w in words if not allow.allows(w.text) and len(w.text.strip()) > 2]
        assert not left, f"{len(left)} words still readable"
    # The image itself survives: most of the central area is untouched.
    rows, columns = before.shape[1:3]
    centre = (slice(rows // 3, 2 * rows // 3), slice(columns // 3, 2 * columns // 3))
    same = (before[0][centre] == after[0][centre]).mean()
    assert same > 0.6, f"only {same:.0%} of the central image area kept"


def test_instances_outside_the_selection_pass_untouched() -> None:
    """The shipped pixel rules narrow "every image" to the modalities that carry text."""
    path = TESTDATA / "CT_small.dcm"
    if not path.exists():
        pytest.skip("shared/testdata is not beside the project")
    before = dcmread(path).get_item("PixelData").value
    shipped = load_pixel_config(Path(__file__).resolve().parents[1] / "conf" / "pixel_rules.yaml")
    outcome = process_instance(dcmread(path), _engine(), shipped)
    assert isinstance(outcome, Clean)
    assert outcome.dataset.get_item("PixelData").value == before
    assert "BurnedInAnnotation" not in outcome.dataset


def test_selected_instance_that_cannot_be_decoded_is_quarantined_not_forwarded() -> None:
    path = TESTDATA / "JPEG2000-embedded-sequence-delimiter.dcm"  # Secondary Capture
    if not path.exists():
        pytest.skip("shared/testdata is not beside the project")
    outcome = process_instance(dcmread(path), _engine(), load_pixel_config(None))
    assert isinstance(outcome, Quarantine)
    assert outcome.reason == "pixels-failed" and "cannot be decoded" in outcome.message


def test_anonymize_with_ocr_cleans_burned_in_text_of_a_folder(tmp_path: Path) -> None:
    """The offline command as a user runs it: `anonymize --ocr` over a study with a screenshot."""
    import subprocess
    import sys

    gateway = Path(sys.executable).with_name("dicom-gateway")
    assert subprocess.run(
        [str(gateway), "keys", "init", "--dir", "keys"], cwd=tmp_path, check=False,
        capture_output=True,
    ).returncode == 0  # fmt: skip
    (tmp_path / "gw.yaml").write_text(
        "site_id: OCR-SITE\nstorage_dir: var\nkeys: {secret: keys/site-secret.key}\n",
        encoding="utf-8",
    )
    case = CASES[0]
    pixels8, mask, _ = _render(case)
    (tmp_path / "in").mkdir()
    _instance(case, pixels8).save_as(tmp_path / "in" / "screen.dcm", enforce_file_format=True)
    run = subprocess.run(
        [str(gateway), "anonymize", "in", "out", "-c", "gw.yaml", "--ocr", "--workers", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "written: 1" in run.stdout
    (output,) = (tmp_path / "out").rglob("*.dcm")
    cleaned = dcmread(output)
    assert cleaned.BurnedInAnnotation == "NO"
    assert _blank(case, decode_frames(cleaned)[0])[mask].mean() > 0.98


def test_without_a_selection_every_image_is_looked_at_and_a_ct_annotation_goes() -> None:
    """No pixel rules written: a CT with a name burned in (BurnedInAnnotation absent, as many
    screen captures stored as CT are) is cleaned; the rest of the CT stays as it was."""
    case = Case("ct-key-image", "CT", "1.2.840.10008.5.1.4.1.1.2", 512, 512, "MONOCHROME2", 8,
                "DejaVuSans.ttf", 16, 250, 20)  # fmt: skip
    pixels8, mask, _ = _render(case)
    ds = _encoded_and_back(_instance(case, pixels8))
    before = decode_frames(ds)[0].copy()
    outcome = process_instance(ds, _engine(), load_pixel_config(None))
    assert isinstance(outcome, Clean), getattr(outcome, "message", "")
    after = decode_frames(_encoded_and_back(outcome.dataset))[0]
    assert (_blank(case, after) & mask).sum() / mask.sum() > 0.99
    assert (_changed(before, after) & ~mask).mean() < 0.05


@pytest.mark.parametrize("name", ["MR_small.dcm", "emri_small.dcm", "CT_small.dcm"])
def test_text_free_ct_and_mr_keep_their_pixels_when_every_image_is_looked_at(name: str) -> None:
    """Texture is not text: small CT and MR images with nothing burned in come out almost as
    they were (a thumbnail-sized image is all picture; inside the picture a box must read as
    text to be blanked)."""
    path = TESTDATA / name
    if not path.exists():
        pytest.skip("shared/testdata is not beside the project")
    before = decode_frames(dcmread(path))
    outcome = process_instance(dcmread(path), _engine(), load_pixel_config(None))
    assert isinstance(outcome, Clean), getattr(outcome, "message", "")
    after = decode_frames(_encoded_and_back(outcome.dataset))
    assert (before != after).mean() < 0.08
