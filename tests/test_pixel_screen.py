"""The screen for images the pixel selection leaves out (`pixels/drawn_lines.py`).

A CT or MR slice with a name a console burned in, and no Burned In Annotation YES, goes
through the real pipeline (`process_instance`, the shipped conf/pixel_rules.yaml whose
selection leaves CT and MR out): the screen selects it, the whole stage blanks the text,
and neither the name nor the ID can be read from the output's pixels; the header holds
none of the planted values either. Text-free CT, MR, NM, SEG and dose samples come out
with their Pixel Data as it came, and `screen: false` passes the burned-in slice as it
came (the setting is honoured, not the only way in).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, process_instance
from gateway.pixels import ocr, text_finder
from gateway.pixels.drawn_lines import drawn_lines, holds_drawn_text
from gateway.pixels.frames import decode_frames, ocr_image
from gateway.pixels.rules import PixelConfigError, load_pixel_config

pytestmark = pytest.mark.skipif(
    text_finder.missing("fast") is not None, reason=f"{text_finder.missing('fast')}"
)

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared" / "testdata"
SHIPPED_RULES = ROOT / "conf" / "pixel_rules.yaml"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
NAME, PATIENT_ID, BIRTH = "QUORBELLE ZYXWICK", "ZQ998877", "1963-04-15"

# Text-free images of kinds the shipped selection leaves out.
TEXT_FREE = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "emri_small.dcm",
    "eCT_Supplemental.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "examples_overlay.dcm",
    "explicit_VR-UN.dcm",
    "bad_sequence.dcm",
    "liver.dcm",
    "rtdose.dcm",
)


def _sample(name: str) -> Dataset:
    path = TESTDATA / name
    if not path.exists():
        pytest.skip("shared/testdata is not beside the project")
    return dcmread(path)


def _engine() -> Engine:
    return Engine(default_profile(), Pseudonyms(b"pixel-screen-test-secret-000001", "PS"))


def _round_trip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def _burned(name: str, *, blended: bool) -> tuple[Dataset, np.ndarray]:
    """A real slice with the patient's name, ID and birth date drawn into its top left in
    its brightest stored value (thresholded, or anti-aliased into the picture), the header
    naming the same patient and not saying the pixels carry text; and the ink's mask."""
    ds = _sample(name)
    frame = decode_frames(ds)[0].astype(np.float64)
    layer = Image.new("L", (frame.shape[1], frame.shape[0]), 0)
    draw = ImageDraw.Draw(layer)
    for row, text in enumerate((NAME, PATIENT_ID, BIRTH)):
        draw.text((6, 6 + 18 * row), text, fill=255, font=ImageFont.truetype(FONT, 13))
    coverage = np.asarray(layer) / 255.0
    ink = float(frame.max())
    drawn = frame * (1 - coverage) + ink * coverage if blended else np.where(
        coverage > 0.5, ink, frame
    )
    dtype = decode_frames(ds)[0].dtype
    del ds.PixelData  # an encapsulated one keeps its undefined length
    ds.PixelData = np.rint(drawn).astype(dtype).tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Zyxwick^Quorbelle", PATIENT_ID, "19630415"
    if "BurnedInAnnotation" in ds:
        del ds.BurnedInAnnotation
    return _round_trip(ds), (coverage > 0.25) & (np.rint(drawn) != np.rint(frame))


def _read_words(ds: Dataset) -> str:
    """Every word the gateway's finder and Tesseract over the whole frame read, upper case."""
    image = ocr_image(decode_frames(ds)[0], ds)
    words = ocr.detect_text(image) + text_finder.find_words(image)
    return " ".join(word.text for word in words).upper()


@pytest.mark.parametrize("name", TEXT_FREE)
def test_a_text_free_image_outside_the_selection_comes_out_as_it_came(name: str) -> None:
    ds = _sample(name)
    before = ds.PixelData
    outcome = process_instance(_sample(name), _engine(), load_pixel_config(SHIPPED_RULES))
    assert isinstance(outcome, Clean), getattr(outcome, "message", "")
    assert outcome.pixels is not None and not outcome.pixels.selected
    assert outcome.dataset.PixelData == before


@pytest.mark.parametrize("blended", [False, True], ids=["thresholded", "anti-aliased"])
@pytest.mark.parametrize("name", ["explicit_VR-UN.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm"])
def test_a_name_burned_into_a_slice_outside_the_selection_is_blanked(
    name: str, blended: bool
) -> None:
    ds, ink = _burned(name, blended=blended)
    assert NAME.split()[0] in _read_words(ds)  # the text is legible before
    before = decode_frames(ds)[0].copy()
    outcome = process_instance(ds, _engine(), load_pixel_config(SHIPPED_RULES))
    assert isinstance(outcome, Clean), getattr(outcome, "message", "")
    assert outcome.pixels is not None and outcome.pixels.screened
    assert outcome.pixels.reasons["screened-in"] == 1
    out = _round_trip(outcome.dataset)
    after = decode_frames(out)[0]
    assert (after[ink] != before[ink]).mean() > 0.95  # the ink is gone
    read = _read_words(out)
    for value in (*NAME.split(), PATIENT_ID, BIRTH, "ZYXWICK", "19630415"):
        assert value not in read
    assert out.BurnedInAnnotation == "NO"
    header = str(out) + repr(out.file_meta)
    for value in ("Zyxwick", "Quorbelle", PATIENT_ID, "19630415"):
        assert value.upper() not in header.upper()


def test_screen_false_passes_the_burned_slice_untouched(tmp_path: Path) -> None:
    rules = tmp_path / "pixel_rules.yaml"
    rules.write_text(
        SHIPPED_RULES.read_text().replace("  screen: true", "  screen: false"), "utf-8"
    )
    (tmp_path / "pixel_allowlist.yaml").write_text(
        (ROOT / "conf" / "pixel_allowlist.yaml").read_text(), "utf-8"
    )
    ds, _ = _burned("explicit_VR-UN.dcm", blended=False)
    before = ds.PixelData
    outcome = process_instance(ds, _engine(), load_pixel_config(rules))
    assert isinstance(outcome, Clean)
    assert outcome.pixels is not None and not outcome.pixels.selected
    assert outcome.dataset.PixelData == before


def test_a_bad_screen_value_names_the_file_and_key(tmp_path: Path) -> None:
    rules = tmp_path / "pixel_rules.yaml"
    rules.write_text("selection:\n  modalities: [US]\n  screen: sometimes\n", "utf-8")
    with pytest.raises(PixelConfigError) as raised:
        load_pixel_config(rules)
    assert str(rules) in str(raised.value) and "selection.screen" in str(raised.value)


def test_drawn_lines_finds_lines_and_not_a_contour_or_a_bar() -> None:
    frame = np.zeros((200, 300), np.uint16)
    layer = Image.new("L", (300, 200), 0)
    ImageDraw.Draw(layer).text((10, 10), "DOE JANE 4471203", fill=255,
                               font=ImageFont.truetype(FONT, 14))  # fmt: skip
    frame[np.asarray(layer) > 128] = 4095
    found = drawn_lines(frame)
    assert found and all(box.y0 < 30 and box.x0 >= 8 for box in found)
    # A smooth field's contour at one value, a solid bar and sparse dots are no text.
    yy, xx = np.mgrid[0:200, 0:300]
    field = np.rint(1000 + 400 * np.sin(xx / 40.0) + yy).astype(np.int16)
    assert drawn_lines(field) == []
    bar = np.zeros((200, 300), np.uint16)
    bar[100:110, 20:200] = 4095
    assert drawn_lines(bar) == []
    dots = np.zeros((200, 300), np.uint16)
    dots[::9, ::9] = 4095
    assert drawn_lines(dots) == []
    # A noise floor clipped at 0, and specks of metal clipped at the maximum in bone.
    rng = np.random.default_rng(5)
    floor = np.clip(rng.normal(6, 8, (200, 300)), 0, None).astype(np.uint16)
    floor[60:140, 60:240] = 1500 + rng.integers(0, 400, (80, 180)).astype(np.uint16)
    assert drawn_lines(floor) == []
    bone = (3000 + rng.integers(0, 1000, (200, 300))).astype(np.uint16)
    bone[rng.random((200, 300)) < 0.04] = 4095
    assert drawn_lines(bone) == []


def test_type_blended_in_a_value_far_above_the_picture_is_found() -> None:
    """Anti-aliased 11 px type in 12-bit white over a CT whose values stop far below it
    keeps few pixels at 4095, but every pixel it half covers stands above the picture."""
    frame = decode_frames(_sample("explicit_VR-UN.dcm"))[0].astype(np.float64)
    layer = Image.new("L", (frame.shape[1], frame.shape[0]), 0)
    ImageDraw.Draw(layer).text((200, 250), "ZQ998877 1963-04-15", fill=255,
                               font=ImageFont.truetype(FONT, 11))  # fmt: skip
    cover = np.asarray(layer) / 255.0
    drawn = np.rint(frame * (1 - cover) + 4095 * cover).astype(np.int16)
    assert int((drawn == 4095).sum()) < 80  # the exact value alone is too little to go on
    assert any(box.y0 <= 262 and box.y1 >= 250 for box in drawn_lines(drawn))
    # Solid blobs in a row at the top value (dental fillings) are no strokes.
    teeth = decode_frames(_sample("explicit_VR-UN.dcm"))[0].copy()
    for x in range(150, 300, 16):
        teeth[250:262, x : x + 9] = 4095
    assert drawn_lines(teeth) == []


def test_dark_type_on_a_light_box_is_found() -> None:
    """A date anti-aliased in a dark grey on a flat light label of 70 x 22 px."""
    rng = np.random.default_rng(3)
    frame = (1200 + rng.normal(0, 60, (256, 256))).astype(np.float64)
    frame[200:222, 150:220] = 3000
    layer = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(layer).text((153, 204), "1963-04-15", fill=255,
                               font=ImageFont.truetype(FONT, 11))  # fmt: skip
    cover = np.asarray(layer) / 255.0
    drawn = np.rint(frame * (1 - cover) + 200 * cover).astype(np.uint16)
    assert any(box.y0 >= 198 and box.y1 <= 224 for box in drawn_lines(drawn))


def test_pixel_data_no_console_draws_on_is_not_screened() -> None:
    ds = _sample("liver.dcm")  # a 1-bit segmentation
    assert ds.BitsAllocated == 1 and not holds_drawn_text(ds)


def test_an_overlay_embedded_in_unused_high_bits_is_cleared() -> None:
    """A retired overlay in bit 12 of 12-bit-stored MR pixels (PS3.5 8.1.2): decoding masks
    it, so no look sees it, but a viewer that honours Overlay Bit Position shows it."""
    ds = _sample("MR-SIEMENS-DICOM-WithOverlays.dcm")
    for group in range(0x6000, 0x6020, 2):  # its own overlay planes: not the point here
        for element in [elem.tag for elem in ds.group_dataset(group)]:
            del ds[element]
    layer = Image.new("L", (ds.Columns, ds.Rows), 0)
    ImageDraw.Draw(layer).text((20, 20), NAME, fill=255, font=ImageFont.truetype(FONT, 16))
    pixels = decode_frames(ds)[0].astype(np.uint16)
    pixels[np.asarray(layer) > 128] |= 1 << 12
    ds.PixelData = pixels.tobytes()
    for element, vr, value in (
        (0x0010, "US", ds.Rows), (0x0011, "US", ds.Columns), (0x0040, "CS", "G"),
        (0x0050, "SS", [1, 1]), (0x0100, "US", 16), (0x0102, "US", 12),
    ):  # fmt: skip
        ds.add_new((0x6000 << 16) | element, vr, value)
    ds = _round_trip(ds)
    assert ds.BitsStored == 12 and holds_drawn_text(ds)
    outcome = process_instance(ds, _engine(), load_pixel_config(SHIPPED_RULES))
    assert isinstance(outcome, Clean), getattr(outcome, "message", "")
    out = _round_trip(outcome.dataset)
    stored = np.frombuffer(out.PixelData, "<u2")
    assert out.BitsAllocated == 16 and not (stored >> out.BitsStored).any()
