"""A cine loop's static annotations are cleaned once; text drawn mid-loop is still found.

A 24-frame ultrasound loop (an ultrasound region, moving speckle inside it) carries the
patient banner on every frame; from frame 14 a name is drawn over the picture. The banner
must be blanked on every frame, most frames must reuse the first frame's result, and the
name must be blanked wherever it shows. Frames of the output, looked at and reused ones,
are read again with the gateway's text finder and with Tesseract: nothing of the patient
may be readable.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gateway.base.identifiers import collect_identifiers
from gateway.pixels import text_finder
from gateway.pixels.clean import clean_pixels
from gateway.pixels.frames import decode_frames, ocr_image
from gateway.pixels.rules import load_pixel_config

pytestmark = pytest.mark.skipif(
    text_finder.missing("fast") is not None, reason=f"{text_finder.missing('fast')}"
)

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FRAMES, ROWS, COLUMNS = 24, 480, 640
REGION = (80, 90, 560, 420)  # x0, y0, x1, y1 of the ultrasound image
LABEL_FROM = 14
BANNER = "QUILLBY ORSOLYA 1961-03-14"
LABEL = "ZEBEDEE CRUMB"


def _cine() -> tuple[Dataset, np.ndarray]:
    rng = np.random.default_rng(7)
    font = ImageFont.truetype(str(FONT), 18)
    frames = []
    label_box = None
    for index in range(FRAMES):
        picture = np.zeros((ROWS, COLUMNS, 3), np.uint8)
        x0, y0, x1, y1 = REGION
        speckle = rng.gamma(2.0, 30.0, (y1 - y0, x1 - x0)).clip(0, 200).astype(np.uint8)
        picture[y0:y1, x0:x1] = speckle[..., None]
        image = Image.fromarray(picture)
        draw = ImageDraw.Draw(image)
        draw.text((20, 20), BANNER, fill=(255, 255, 255), font=font)
        draw.text((500, 20), "MI 0.8", fill=(255, 255, 255), font=font)
        if index >= LABEL_FROM:
            draw.text((200, 250), LABEL, fill=(255, 255, 0), font=font)
            label_box = draw.textbbox((200, 250), LABEL, font=font)
        frames.append(np.asarray(image))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
    ds.SOPInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "QUILLBY^ORSOLYA", "QX-40112", "19610314"
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, FRAMES
    ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PhotometricInterpretation = 3, 0, "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = REGION[0], REGION[1]
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = REGION[2] - 1, REGION[3] - 1
    region.RegionSpatialFormat = 1
    ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = np.ascontiguousarray(np.stack(frames)).tobytes()
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    assert label_box is not None
    return dcmread(buffer), np.asarray(label_box)


@pytest.fixture(scope="module")
def cleaned() -> tuple[Dataset, np.ndarray, object]:
    ds, label_box = _cine()
    identifiers = collect_identifiers(ds, lambda tag: False)
    report = clean_pixels(ds, identifiers, load_pixel_config(None))
    return ds, label_box, report


def test_most_frames_reuse_the_first_frames_result(cleaned) -> None:
    _, _, report = cleaned
    assert report.frames == FRAMES
    # Frame 0 and frame LABEL_FROM are looked at; the others show a known screen.
    assert report.frames_reused >= FRAMES - 4
    assert report.reasons["frames-reused"] == report.frames_reused


def test_the_banner_is_blanked_on_every_frame(cleaned) -> None:
    ds, _, _ = cleaned
    frames = decode_frames(ds)
    assert (frames[:, 20:45, 20:300] == 0).all(axis=-1).mean(axis=(1, 2)).min() > 0.9


def test_text_drawn_over_the_picture_mid_loop_is_blanked(cleaned) -> None:
    ds, (x0, y0, x1, y1), _ = cleaned
    frames = decode_frames(ds)
    label = frames[:, y0:y1, x0:x1]
    yellow = (label[..., 0] > 200) & (label[..., 1] > 200) & (label[..., 2] < 80)
    assert yellow[LABEL_FROM:].sum() == 0, "the label's strokes survive on some frame"


def test_nothing_of_the_patient_is_readable_on_any_frame(cleaned) -> None:
    from gateway.pixels import ocr

    ds, _, _ = cleaned
    frames = decode_frames(ds)
    # The first frame, a reused one, the first with the label and a reused one after it.
    for frame in frames[[0, LABEL_FROM // 2, LABEL_FROM, FRAMES - 1]]:
        image = ocr_image(frame, ds)
        words = text_finder.find_words(image, frame) + ocr.detect_text(image)
        text = " ".join(word.text for word in words).upper()
        for part in ("QUILLBY", "ORSOLYA", "1961", "ZEBEDEE", "CRUMB"):
            assert part not in text
