"""The generated pixel text set: every kind of burned-in text the pixel stage must blank.

Frames of ultrasound (RGB, speckle in an ultrasound region), CT and MR (16-bit, a body in
the middle), each with lines of text 10-24 px high: names, IDs, dates, institution names,
single characters, white, grey and yellow, around the picture and over it. Each frame goes
through the real pixel stage (`clean_pixels`, redact_all_text with the shipped allow
list). Per line, from its ink (the pixels the text drew):
- a line the allow list does not keep has every ink pixel blanked;
- a line it keeps ("MHz", "cm", "R") has its ink untouched;
- pixels changed outside the text lines' boxes stay under 5% of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless
from test_text_detection import ct_frame

from gateway.base.identifiers import collect_identifiers
from gateway.pixels import text_finder
from gateway.pixels.clean import clean_pixels
from gateway.pixels.frames import decode_frames
from gateway.pixels.rules import load_pixel_config

pytestmark = pytest.mark.skipif(
    text_finder.missing("fast") is not None, reason=f"{text_finder.missing('fast')}"
)

FONTS = Path("/usr/share/fonts/truetype/dejavu")
WHITE, GREY, YELLOW = (255, 255, 255), (170, 170, 170), (255, 230, 0)
MAX_SPILL = 0.05
LINE_PAD = 4  # px around a line's ink that counts as the line's box


@dataclass(frozen=True)
class Line:
    text: str
    x: int
    y: int
    size: int
    colour: tuple[int, int, int]
    kept: bool = False  # the allow list keeps it
    mono: bool = False


@dataclass(frozen=True)
class Frame:
    name: str
    modality: str
    rows: int
    columns: int
    colour: bool
    lines: tuple[Line, ...]
    region: tuple[int, int, int, int] | None = None  # an ultrasound region (x0, y0, x1, y1)
    table: tuple[int, int, int, int] | None = None  # a CT table top drawn as a bar (x0, y0, x1, y1)
    speckle_max: int = 190  # the brightest speckle in the ultrasound region


FRAMES = (
    Frame(
        "us-banner-and-labels",
        "US",
        480,
        640,
        True,
        (
            Line("OKONKWO ADAEZE", 12, 8, 16, WHITE),
            Line("ID 7730418826", 12, 30, 14, WHITE),
            Line("2024-11-03 14:22:07", 430, 8, 14, WHITE),
            Line("KINGSMERE GENERAL", 12, 450, 12, GREY),
            Line("7.5 MHz", 560, 450, 12, WHITE, kept=True),
            Line("K", 600, 120, 18, WHITE),
            Line("ZEBEDEE CRUMB", 220, 240, 18, YELLOW),
        ),
        region=(100, 60, 540, 430),
    ),
    Frame(
        "us-small-grey",
        "US",
        480,
        640,
        True,
        (
            Line("HARTWELL M", 10, 6, 10, GREY),
            Line("NBG4471203", 10, 20, 11, GREY),
            Line("03/14/1980", 540, 6, 11, GREY),
            Line("cm", 600, 200, 12, GREY, kept=True),
        ),
        region=(80, 40, 560, 440),
    ),
    Frame(
        "ct-annotated",
        "CT",
        512,
        512,
        False,
        (
            Line("QUILLBY^ORSOLYA", 6, 6, 13, WHITE, mono=True),
            Line("MRN 55120-QF", 6, 24, 13, WHITE, mono=True),
            Line("ST. ELSEWHERE HOSPITAL", 300, 6, 12, WHITE, mono=True),
            Line("14-MAR-1961", 6, 490, 12, WHITE, mono=True),
            Line("R", 480, 250, 20, WHITE, kept=True),
        ),
    ),
    Frame(
        "us-labels-over-speckle",
        "US",
        480,
        640,
        True,
        (
            Line("LIVER", 262, 204, 13, (235, 235, 235)),
            Line("RT KIDNEY", 300, 300, 12, (235, 235, 235)),
            Line("GB NECK", 180, 150, 14, WHITE),
            Line("4 cm", 600, 300, 11, WHITE, kept=True),
        ),
        region=(60, 40, 580, 440),
    ),
    Frame(  # 10 px capitals over bright speckle: thin strokes anti-aliased below white
        "us-small-labels-over-bright-speckle",
        "US",
        480,
        640,
        True,
        (
            Line("LIVER", 262, 204, 14, (235, 235, 235)),
            Line("SPLEEN", 150, 320, 14, (235, 235, 235)),
            Line("VIEW", 400, 260, 14, (235, 235, 235)),
        ),
        region=(60, 40, 580, 440),
        speckle_max=255,
    ),
    Frame(
        "ct-table-window-and-label",
        "CT",
        512,
        512,
        False,
        (
            Line("W 400  L 40", 6, 492, 12, WHITE, kept=True),
            Line("2024-05-06", 352, 448, 11, (40, 40, 40)),
            Line("SE 3  IM 45", 380, 8, 12, WHITE, kept=True),
            Line("PELLINORE^IRIS", 6, 6, 12, WHITE),
        ),
        table=(60, 413, 452, 421),
    ),
    Frame(
        "mr-large-text",
        "MR",
        256,
        256,
        False,
        (
            Line("DOE JANE", 4, 4, 24, GREY),
            Line("8841", 200, 220, 16, WHITE),
        ),
    ),
)


def _font(size: int, mono: bool) -> ImageFont.FreeTypeFont:
    name = "DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf"
    return ImageFont.truetype(str(FONTS / name), size)


def _picture(frame: Frame, rng: np.random.Generator) -> np.ndarray:
    image = np.zeros((frame.rows, frame.columns), np.float64)
    if frame.region is not None:
        x0, y0, x1, y1 = frame.region
        speckle = rng.gamma(2.0, 30.0, (y1 - y0, x1 - x0))
        image[y0:y1, x0:x1] = speckle.clip(0, frame.speckle_max)
    else:
        yy, xx = np.mgrid[0 : frame.rows, 0 : frame.columns]
        body = ((yy - frame.rows / 2) / (frame.rows * 0.38)) ** 2 + (
            (xx - frame.columns / 2) / (frame.columns * 0.42)
        ) ** 2 < 1
        image[body] = 90 + rng.normal(0, 12, int(body.sum()))
    if frame.table is not None:
        x0, y0, x1, y1 = frame.table
        image[y0:y1, x0:x1] = 110
    if frame.name.startswith("ct-table"):  # a light label box for the dark date
        image[440:466, 344:424] = 235
    return image.clip(0, 255).astype(np.uint8)


def _render(frame: Frame) -> tuple[np.ndarray, list[np.ndarray]]:
    """The 8-bit RGB picture with its lines, and each line's ink mask."""
    rng = np.random.default_rng(len(frame.name))
    grey = _picture(frame, rng)
    image = Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    inks = []
    for line in frame.lines:
        layer = Image.new("L", image.size, 0)
        ImageDraw.Draw(layer).text(
            (line.x, line.y), line.text, fill=255, font=_font(line.size, line.mono)
        )
        ink = np.asarray(layer) > 96
        ImageDraw.Draw(image).text((line.x, line.y), line.text, fill=line.colour,
                                   font=_font(line.size, line.mono))  # fmt: skip
        inks.append(ink)
    return np.asarray(image).copy(), inks


def _instance(frame: Frame, rgb: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.Modality = frame.modality
    ds.PatientName, ds.PatientID = "OKONKWO^ADAEZE", "7730418826"
    ds.Rows, ds.Columns = frame.rows, frame.columns
    ds.PixelRepresentation = 0
    if frame.colour:
        ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PhotometricInterpretation = 3, 0, "RGB"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        luminance = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        ds.PixelData = (luminance * 16).astype(np.uint16).tobytes()
    if frame.region is not None:
        region = Dataset()
        x0, y0, x1, y1 = frame.region
        region.RegionLocationMinX0, region.RegionLocationMinY0 = x0, y0
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1 - 1, y1 - 1
        ds.SequenceOfUltrasoundRegions = [region]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _line_box(ink: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.nonzero(ink)
    return (
        slice(max(rows.min() - LINE_PAD, 0), rows.max() + 1 + LINE_PAD),
        slice(max(cols.min() - LINE_PAD, 0), cols.max() + 1 + LINE_PAD),
    )


@pytest.fixture(scope="module", params=FRAMES, ids=lambda frame: frame.name)
def outcome(
    request: pytest.FixtureRequest,
) -> tuple[Frame, list[np.ndarray], np.ndarray, np.ndarray]:
    frame: Frame = request.param
    rgb, inks = _render(frame)
    ds = _instance(frame, rgb)
    before = decode_frames(ds)[0].copy()
    clean_pixels(ds, collect_identifiers(ds, lambda tag: False), load_pixel_config(None))
    return frame, inks, before, decode_frames(ds)[0]


def _pixels_changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    diff = before != after
    return diff.any(axis=-1) if diff.ndim == 3 else diff


def _blank(after: np.ndarray) -> np.ndarray:
    return (after == 0).all(axis=-1) if after.ndim == 3 else after == 0


def test_every_line_the_allow_list_does_not_keep_is_blanked(outcome) -> None:
    frame, inks, _, after = outcome
    blank = _blank(after)
    missed = [
        f"{line.text!r} {blank[ink].mean():.0%}"
        for line, ink in zip(frame.lines, inks, strict=True)
        if not line.kept and not blank[ink].all()
    ]
    assert not missed, f"{frame.name}: lines not wholly blanked: {missed}"


def test_allow_listed_lines_survive(outcome) -> None:
    frame, inks, before, after = outcome
    changed = _pixels_changed(before, after)
    for line, ink in zip(frame.lines, inks, strict=True):
        if line.kept:
            assert not changed[ink].any(), f"{frame.name}: {line.text!r} was blanked"


def test_a_table_top_is_not_text(outcome) -> None:
    """The square ends of a bar read as "I" or "L"; blanking them would eat the bar."""
    frame, _, before, after = outcome
    if frame.table is None:
        pytest.skip("no table in this frame")
    x0, y0, x1, y1 = frame.table
    around = (slice(y0 - 4, y1 + 4), slice(x0 - 8, x1 + 8))
    assert not _pixels_changed(before, after)[around].any()


def test_blanked_area_outside_the_text_lines_is_small(outcome) -> None:
    frame, inks, before, after = outcome
    text = np.zeros(before.shape[:2], bool)
    for ink in inks:
        text[_line_box(ink)] = True
    spill = (_pixels_changed(before, after) & ~text).mean()
    assert spill < MAX_SPILL, f"{frame.name}: {spill:.1%} changed outside the text"


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, RLELossless])
def test_a_text_free_slice_keeps_its_pixel_data_as_it_came(syntax: str) -> None:
    """Nothing blanked, nothing written back: the same bytes in the same transfer syntax
    (no re-encoding cost, no change), and still recorded as looked at and clean."""
    grey, _ = ct_frame(3, with_text=False)  # a body section, bone and a table top
    ds = _instance(Frame("ct-text-free", "CT", 512, 512, False, ()), np.dstack([grey] * 3))
    if syntax != ExplicitVRLittleEndian:  # all 16 bits stored: no hidden bits to clear
        ds.BitsStored, ds.HighBit = 16, 15
        ds.compress(syntax, generate_instance_uid=False)
    original = bytes(ds.PixelData)
    report = clean_pixels(ds, collect_identifiers(ds, lambda tag: False), load_pixel_config(None))
    assert report.selected and not report.boxes
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert bytes(ds.PixelData) == original
    assert ds.BurnedInAnnotation == "NO"
    assert ds.DeidentificationMethod == "PIXELS CLEANED (OCR)"
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == ["113101"]
