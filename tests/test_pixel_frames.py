"""Decoding, OCR views, lossless rewriting, redaction and overlay removal on real samples.

The samples (../shared/testdata, see its MANIFEST.md) cover every photometric interpretation
and compressed transfer syntax the gateway accepts. A rewrite must be lossless for pixels the
pixel stage did not blank, so each sample goes decode -> write -> encode -> read -> decode and
must come back bit for bit.
"""

from __future__ import annotations

import io
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.pixels import get_encoder
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)

from gateway.pixels import frames as frames_module
from gateway.pixels.frames import (
    PixelDecodeError,
    PixelEncodeError,
    decode_frames,
    holds,
    ocr_image,
    write_frames,
)
from gateway.pixels.redact import (
    black_fill,
    blank_boxes,
    overlay_image,
    overlay_planes,
    remove_overlays,
    us_region_boxes,
)
from gateway.pixels.regions import Box, merge_boxes

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason="../shared/testdata is absent")

# name -> (frames, rows, cols, samples) as decode_frames must return them
DECODABLE = {
    "CT_small.dcm": (1, 128, 128, 1),
    "MR_small.dcm": (1, 64, 64, 1),
    "MR_small_implicit.dcm": (1, 64, 64, 1),
    "MR_small_bigendian.dcm": (1, 64, 64, 1),
    "MR_small_RLE.dcm": (1, 64, 64, 1),
    "MR_small_jpeg_ls_lossless.dcm": (1, 64, 64, 1),
    "MR_small_jp2klossless.dcm": (1, 64, 64, 1),
    "emri_small.dcm": (10, 64, 64, 1),
    "emri_small_RLE.dcm": (10, 64, 64, 1),
    "emri_small_jpeg_ls_lossless.dcm": (10, 64, 64, 1),
    "emri_small_jpeg_2k_lossless.dcm": (10, 64, 64, 1),
    "eCT_Supplemental.dcm": (2, 512, 512, 1),
    "liver.dcm": (3, 512, 512, 1),
    "rtdose.dcm": (15, 10, 10, 1),
    "JPEGBaseline_1s_1f_u_08_08.dcm": (1, 100, 100, 1),
    "JPGExtended.dcm": (1, 1024, 256, 1),
    "JPEG-LL.dcm": (1, 1024, 256, 1),
    "JPGLosslessP14SV1_1s_1f_8b.dcm": (1, 768, 1024, 1),
    "JPEGLSNearLossless_16.dcm": (1, 50, 10, 1),
    "JPEG2000.dcm": (1, 1024, 256, 1),
    "explicit_VR-UN.dcm": (1, 512, 512, 1),
    "bad_sequence.dcm": (1, 512, 512, 1),
    "image_dfl.dcm": (1, 512, 512, 1),
    "MR-SIEMENS-DICOM-WithOverlays.dcm": (1, 484, 484, 1),
    "examples_overlay.dcm": (1, 300, 484, 1),
    "SC_rgb.dcm": (1, 100, 100, 3),
    "SC_rgb_jpeg_dcmtk.dcm": (1, 100, 100, 3),
    "SC_rgb_rle_2frame.dcm": (2, 100, 100, 3),
    "HTJ2K_08_RGB.dcm": (1, 480, 640, 3),
    "US1_UNCR.dcm": (1, 480, 640, 3),
    "US1_J2KR.dcm": (1, 480, 640, 3),
    "examples_ybr_color.dcm": (30, 240, 320, 3),
    "examples_palette.dcm": (1, 350, 800, 3),
    "OT-PAL-8-face.dcm": (1, 480, 640, 3),
    "gdcm-US-ALOKA-16.dcm": (1, 480, 640, 3),
}


def _read(name: str) -> Dataset:
    path = TESTDATA / name
    if not path.is_file():
        pytest.skip(f"{name} is not in ../shared/testdata")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, force=True)
    if name == "OT-PAL-8-face.dcm":
        # MANIFEST: no preamble/File Meta; the data set is Implicit VR Little Endian.
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


@cache
def _decoded(name: str) -> np.ndarray:
    frames = decode_frames(_read(name))
    frames.flags.writeable = False  # shared between tests: copy before changing
    return frames


def _reencode(ds: Dataset) -> Dataset:
    """What leaves the gateway: a conformant Part 10 file, read back."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some samples carry invalid UIDs; not our concern here
        dcmwrite(buffer, ds, enforce_file_format=True)
        return dcmread(io.BytesIO(buffer.getvalue()))


def _assert_pixel_module_consistent(ds: Dataset, frames: np.ndarray) -> None:
    colour = frames.ndim == 4
    assert ds.SamplesPerPixel == (3 if colour else 1)
    if colour:
        assert ds.PhotometricInterpretation == "RGB"
        assert ds.PlanarConfiguration == 0
        assert "RedPaletteColorLookupTableData" not in ds
        assert "SegmentedRedPaletteColorLookupTableData" not in ds
        assert "RedPaletteColorLookupTableDescriptor" not in ds
    else:
        assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
        assert "PlanarConfiguration" not in ds
    if ds.BitsAllocated != 1:
        assert ds.BitsAllocated == frames.dtype.itemsize * 8
    assert ds.BitsStored <= ds.BitsAllocated
    assert ds.HighBit == ds.BitsStored - 1
    assert ds.PixelRepresentation == (1 if frames.dtype.kind == "i" else 0)
    assert (ds.Rows, ds.Columns) == frames.shape[1:3]
    assert int(ds.get("NumberOfFrames", 1)) == frames.shape[0]


@pytest.mark.parametrize("name", sorted(DECODABLE))
def test_every_sample_decodes_to_an_ocr_view_and_rewrites_losslessly(name: str) -> None:
    n_frames, rows, cols, samples = DECODABLE[name]
    ds = _read(name)
    frames = decode_frames(ds)
    expected = (n_frames, rows, cols) if samples == 1 else (n_frames, rows, cols, 3)
    assert frames.shape == expected
    assert frames.dtype.isnative and frames.flags.writeable

    view = ocr_image(frames[-1], ds)
    assert view.dtype == np.uint8 and view.shape == (rows, cols)

    had_frames_element = "NumberOfFrames" in ds
    write_frames(ds, frames)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ("NumberOfFrames" in ds) == (had_frames_element or n_frames > 1)
    back = _reencode(ds)
    _assert_pixel_module_consistent(back, frames)
    again = decode_frames(back)
    assert again.dtype == frames.dtype
    assert np.array_equal(again, frames)


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "emri_small.dcm", "SC_rgb_rle_2frame.dcm", "examples_palette.dcm"]
)
def test_rle_rewrite_is_lossless(name: str) -> None:
    frames = _decoded(name)
    ds = _read(name)
    write_frames(ds, frames, encoding="rle")
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    back = _reencode(ds)
    _assert_pixel_module_consistent(back, frames)
    assert np.array_equal(decode_frames(back), frames)


def test_jpeg_ls_rewrite_is_lossless_or_says_which_encoder_is_missing() -> None:
    frames = _decoded("MR_small.dcm")
    ds = _read("MR_small.dcm")
    before = ds.PixelData
    if not get_encoder(JPEGLSLossless).is_available:
        with pytest.raises(PixelEncodeError, match="pyjpegls"):
            write_frames(ds, frames, encoding="jpeg-ls")
        assert ds.PixelData == before  # a failed write leaves the dataset alone
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        return
    write_frames(ds, frames, encoding="jpeg-ls")
    assert np.array_equal(decode_frames(_reencode(ds)), frames)


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pixel encoding 'jpeg'"):
        write_frames(_read("MR_small.dcm"), _decoded("MR_small.dcm"), encoding="jpeg")


def test_ybr_jpeg_is_written_back_as_rgb() -> None:
    ds = _read("examples_ybr_color.dcm")
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    frames = decode_frames(ds)
    write_frames(ds, frames)
    assert ds.PhotometricInterpretation == "RGB"
    assert ds.NumberOfFrames == 30
    assert ds.LossyImageCompression == "01"  # PS3.3 C.7.6.1.1.5: lossy once, lossy forever


def test_palette_is_expanded_through_its_lut() -> None:
    ds = _read("gdcm-US-ALOKA-16.dcm")
    frames = decode_frames(ds)
    # Segmented 16-bit palette (PS3.3 C.7.9.2): expands to 16-bit RGB, not 8-bit.
    assert frames.dtype == np.uint16
    write_frames(ds, frames)
    assert ds.BitsAllocated == ds.BitsStored == 16
    assert "SegmentedRedPaletteColorLookupTableData" not in ds


@pytest.mark.parametrize(
    "name",
    [
        "JPEG2000-embedded-sequence-delimiter.dcm",
        "emri_small_jpeg_2k_lossless_too_short.dcm",
        "liver_deflate.dcm",
        "MR_truncated.dcm",
        "meta_missing_tsyntax.dcm",
        "rtplan.dcm",
    ],
)
def test_undecodable_pixels_raise_a_decode_error(name: str) -> None:
    with pytest.raises(PixelDecodeError) as caught:
        decode_frames(_read(name))
    assert str(caught.value).startswith("cannot decode pixel data")


def test_ocr_view_of_monochrome1_has_the_displayed_polarity() -> None:
    ds = _read("MR_small.dcm")
    frame = np.array(_decoded("MR_small.dcm")[0])
    mono2 = ocr_image(frame, ds)
    ds.PhotometricInterpretation = "MONOCHROME1"
    mono1 = ocr_image(frame, ds)
    assert np.array_equal(mono1, 255 - mono2)
    assert mono2.max() == 255 and mono2.min() == 0


def test_ocr_view_falls_back_to_a_stretch_without_a_window() -> None:
    ds = _read("emri_small.dcm")  # Enhanced MR: window only in functional groups
    view = ocr_image(np.array(_decoded("emri_small.dcm")[0]), ds)
    assert view.min() == 0 and view.max() == 255


def test_ocr_view_of_colour_is_luminance() -> None:
    ds = _read("SC_rgb.dcm")
    frame = np.zeros((4, 5, 3), dtype=np.uint8)
    frame[0, 0] = (255, 255, 255)
    frame[1, 1] = (255, 0, 0)
    view = ocr_image(frame, ds)
    assert view.shape == (4, 5)
    assert view[0, 0] == 255 and view[1, 1] == 76 and view[2, 2] == 0


def _monochrome(variant: str, signed: bool) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME1" if variant == "mono1" else "MONOCHROME2"
    ds.BitsStored, ds.PixelRepresentation = 16, int(signed)
    if variant != "raw":
        ds.RescaleSlope, ds.RescaleIntercept = (-0.5, 10) if variant == "sigmoid" else (1, -1024)
    if variant == "window":
        ds.WindowCenter, ds.WindowWidth = 40, 400
    elif variant == "sigmoid":
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 0, 100, "SIGMOID"
    elif variant == "lut":  # not monotonic: the stretch must use the values present
        item = Dataset()
        item.LUTDescriptor = [256, -2000 if signed else 0, 8]
        item.LUTData = [(37 * i) % 256 for i in range(256)]
        ds.VOILUTSequence = [item]
    elif variant == "broken":
        ds.WindowCenter, ds.WindowWidth = 40, 0
    return ds


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize(
    "variant", ["raw", "rescale", "window", "sigmoid", "lut", "mono1", "broken"]
)
def test_ocr_view_through_a_table_is_the_per_pixel_view(variant: str, signed: bool) -> None:
    """The windowing table gives the bytes the per-pixel float computation gives."""
    rng = np.random.default_rng(7)
    dtype = np.int16 if signed else np.uint16
    frame = rng.integers(-2000 if signed else 0, 3000, (40, 50)).astype(dtype)
    ds = _monochrome(variant, signed)
    expected = frames_module._stretch(frames_module._windowed(frame, ds))
    if variant == "mono1":
        expected = 255 - expected
    assert np.array_equal(ocr_image(frame, ds), expected)
    flat = np.full((3, 4), frame[0, 0], dtype)
    assert np.array_equal(
        ocr_image(flat, ds), np.zeros((3, 4), np.uint8) + (variant == "mono1") * 255
    )


def test_pixel_data_holding_the_frames_bit_for_bit_need_not_be_written() -> None:
    """Nothing blanked: native bytes equal to the frames stay; bits outside Bits Stored
    (where a retired overlay can hide) make the data be written back."""
    ds, stored, _ = _with_embedded_overlay()
    frames = decode_frames(ds)
    assert not holds(ds, frames)
    ds.PixelData = stored.astype("<u2").tobytes()
    assert holds(ds, decode_frames(ds))
    compressed = _read("emri_small_RLE.dcm")
    assert holds(compressed, decode_frames(compressed)) == (
        compressed.BitsAllocated == compressed.BitsStored
    )


def test_blank_boxes_blanks_exactly_the_boxes_on_the_right_frames() -> None:
    frames = np.array(_decoded("emri_small.dcm"))
    original = frames.copy()
    fill = 4095
    boxes = [
        Box(2, 3, 12, 8, source="rule"),  # every frame
        Box(60, 60, 80, 80, source="ocr", frame=4),  # clipped to 4 x 4
        Box(5, 5, 10, 10, source="ocr", frame=4),  # overlaps the first on frame 4
    ]
    count = blank_boxes(frames, boxes, fill)
    expected = np.zeros(frames.shape, dtype=bool)
    expected[:, 3:8, 2:12] = True
    expected[4, 60:64, 60:64] = True
    expected[4, 5:10, 5:10] = True
    assert count == int(expected.sum())
    assert np.all(frames[expected] == fill)
    assert np.array_equal(frames[~expected], original[~expected])


def test_blank_boxes_paints_colour_and_rejects_a_missing_frame() -> None:
    frames = np.array(_decoded("SC_rgb_rle_2frame.dcm"))
    assert blank_boxes(frames, [Box(0, 0, 3, 2, source="rule", frame=1)], (1, 2, 3)) == 6
    assert np.all(frames[1, 0:2, 0:3] == (1, 2, 3))
    with pytest.raises(ValueError, match="frame 2"):
        blank_boxes(frames, [Box(0, 0, 1, 1, source="ocr", frame=2)], 0)


def test_black_fill_follows_photometric_and_bits_stored() -> None:
    ds = _read("emri_small.dcm")
    frames = _decoded("emri_small.dcm")
    assert black_fill(ds, frames) == 0
    ds.PhotometricInterpretation = "MONOCHROME1"
    assert black_fill(ds, frames) == 4095  # Bits Stored 12
    ct = _read("CT_small.dcm")
    assert black_fill(ct, _decoded("CT_small.dcm")) == -32768


def test_us_regions_of_aloka_leave_the_region_area_untouched() -> None:
    ds = _read("gdcm-US-ALOKA-16.dcm")
    boxes = us_region_boxes(ds)
    assert boxes and all(b.source == "us-outside" and b.frame is None for b in boxes)
    frames = np.array(_decoded("gdcm-US-ALOKA-16.dcm"))
    original = frames.copy()
    blank_boxes(frames, boxes, 0)
    # Regions (inclusive): x 32..335 and 336..639, y 24..415 (the third lies inside the first).
    inside = np.zeros(frames.shape[1:3], dtype=bool)
    inside[24:416, 32:640] = True
    assert np.array_equal(frames[0][inside], original[0][inside])
    assert np.all(frames[0][~inside] == 0)
    assert sum(b.area() for b in boxes) == int((~inside).sum())  # no overlaps


def test_us_region_complement_covers_the_gap_between_two_regions() -> None:
    ds = Dataset()
    ds.Rows, ds.Columns = 10, 20
    items = []
    for x0, x1 in ((0, 7), (12, 19)):
        item = Dataset()
        item.RegionLocationMinX0, item.RegionLocationMaxX1 = x0, x1
        item.RegionLocationMinY0, item.RegionLocationMaxY1 = 2, 7
        items.append(item)
    ds.SequenceOfUltrasoundRegions = items
    boxes = us_region_boxes(ds)
    covered = np.zeros((10, 20), dtype=bool)
    for b in boxes:
        covered[b.y0 : b.y1, b.x0 : b.x1] = True
    expected = np.ones((10, 20), dtype=bool)
    expected[2:8, 0:8] = False
    expected[2:8, 12:20] = False
    assert np.array_equal(covered, expected)
    assert len(boxes) == 3  # top band, the gap between the regions, bottom band


def test_us_region_without_location_fails_closed() -> None:
    ds = Dataset()
    ds.Rows, ds.Columns = 10, 20
    item = Dataset()
    item.RegionLocationMinX0 = 0
    ds.SequenceOfUltrasoundRegions = [item]
    with pytest.raises(ValueError, match="region 1"):
        us_region_boxes(ds)
    assert us_region_boxes(_read("MR_small.dcm")) == []


@pytest.mark.parametrize("name", ["MR-SIEMENS-DICOM-WithOverlays.dcm", "examples_overlay.dcm"])
def test_remove_overlays_drops_every_plane_and_keeps_pixels(name: str) -> None:
    ds = _read(name)
    assert overlay_planes(ds) == [0x6000]
    plane = overlay_image(ds, 0x6000)
    assert plane.dtype == np.uint8 and set(np.unique(plane)) <= {0, 255} and plane.max() == 255
    before = decode_frames(ds)
    assert remove_overlays(ds) == 1
    assert overlay_planes(ds) == []
    assert not [e for e in ds if 0x6000 <= e.tag.group <= 0x60FF]
    back = _reencode(ds)
    assert not [e for e in back if 0x6000 <= e.tag.group <= 0x60FF]
    assert np.array_equal(decode_frames(back), before)


def _with_embedded_overlay() -> tuple[Dataset, np.ndarray, np.ndarray]:
    """examples_overlay with its plane moved into bit 15 of the pixels (retired, PS3.5 8.1.2)."""
    ds = _read("examples_overlay.dcm")
    stored = np.array(_decoded("examples_overlay.dcm")[0])
    bits = np.array(ds.overlay_array(0x6000), dtype=np.uint16)
    ds.PixelData = (stored | (bits << 15)).astype("<u2").tobytes()
    del ds[0x60003000]
    ds[0x60000100].value = 16
    ds[0x60000102].value = 15
    return ds, stored, bits


def test_embedded_overlay_bits_are_found_and_cleared() -> None:
    ds, stored, bits = _with_embedded_overlay()
    assert overlay_planes(ds) == [0x6000]
    assert np.array_equal(overlay_image(ds, 0x6000), (bits * 255).astype(np.uint8))
    assert remove_overlays(ds) == 1
    cells = np.frombuffer(ds.PixelData, "<u2").reshape(stored.shape)
    assert np.array_equal(cells, stored)  # bit 15 cleared, stored bits intact


def test_embedded_overlay_bits_do_not_survive_decode_and_write() -> None:
    ds, stored, _ = _with_embedded_overlay()
    frames = decode_frames(ds)
    assert np.array_equal(frames[0], stored)  # masked to Bits Stored (12)
    write_frames(ds, frames)
    assert int(np.frombuffer(ds.PixelData, "<u2").max()) < 1 << 12


def test_merge_boxes_joins_neighbours_on_the_same_frames_only() -> None:
    words = [
        Box(10, 10, 20, 18, source="ocr"),
        Box(23, 10, 40, 18, source="ocr"),  # 3 px to the right: same line
        Box(100, 10, 120, 18, source="ocr"),  # far away
        Box(41, 10, 50, 18, source="rule"),  # touches the merged line
        Box(10, 10, 20, 18, source="ocr", frame=2),  # other frame: stays apart
    ]
    merged = merge_boxes(words, gap=4)
    assert Box(10, 10, 50, 18, source="ocr+rule") in merged
    assert Box(100, 10, 120, 18, source="ocr") in merged
    assert Box(10, 10, 20, 18, source="ocr", frame=2) in merged
    assert len(merged) == 3
    assert merge_boxes(words[:2], gap=2) == sorted(words[:2], key=lambda b: b.x0)


def test_box_geometry() -> None:
    box = Box(5, 5, 10, 8, source="ocr")
    assert box.area() == 15
    assert box.padded(2, 11, 9) == Box(3, 3, 11, 9, source="ocr")
    assert box.intersects(Box(9, 7, 12, 12, source="rule", frame=3))
    assert not box.intersects(Box(10, 5, 12, 8, source="rule"))  # edges are exclusive
    assert not Box(0, 0, 2, 2, "ocr", frame=1).intersects(Box(0, 0, 2, 2, "ocr", frame=2))
    assert box.union(Box(0, 0, 1, 1, source="ocr", frame=1)).frame is None
    with pytest.raises(ValueError, match="inverted"):
        Box(5, 5, 4, 8, source="ocr")
