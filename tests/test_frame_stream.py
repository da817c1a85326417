"""A large multi-frame the pixel stage selects is cleaned one frame at a time (clean_stream.py).

An ultrasound cine with the patient's banner burned into every frame and a name drawn over
the picture from frame LABEL_FROM must come out of the frame-by-frame path exactly as the
whole-array path writes it (same bytes), in every syntax the stage meets: native, RLE and
JPEG baseline in, uncompressed, RLE or JPEG-LS out. The banner and the name are blanked on
every frame, and no original value is left anywhere in the file. A frame that cannot be
decoded, pixel data cut short and a transfer syntax the gateway does not take are held as
the whole path holds them, and nothing is written. `pixel_tail.LARGE_INSTANCE_BYTES` is
lowered so that small generated files take the large-instance path.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

import gateway.pipeline.pixel_tail as pixel_tail
from gateway.deid.profile import default_profile
from gateway.offline import EngineSettings
from gateway.pipeline.files import DeidResult, FileOutcome, deidentify_file, init_worker
from gateway.pixels import clean_stream, text_finder
from gateway.pixels.frames import decode_frames
from gateway.pixels.rules import PixelConfig, load_pixel_config

pytestmark = pytest.mark.skipif(
    text_finder.missing("fast") is not None, reason=f"{text_finder.missing('fast')}"
)

SECRET = b"frame-stream-test-secret-0123456"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FRAMES, ROWS, COLUMNS = 8, 240, 320
REGION = (40, 50, 280, 210)  # x0, y0, x1, y1 of the ultrasound picture
BANNER_BOX = (8, 8, 230, 30)  # where the banner is drawn (x0, y0, x1, y1)
LABEL_FROM = 5
BANNER = "WINTERBOTTOM 1958-11-02"
LABEL = "HOLLOWAY"
PATIENT = {
    "PatientName": "WINTERBOTTOM^ERMENGARDE",
    "PatientID": "WB-58110233",
    "PatientBirthDate": "19581102",
    "InstitutionName": "ST ELSEWHERE GENERAL",
    "ReferringPhysicianName": "HOLLOWAY^CORNELIUS",
    "AccessionNumber": "ACC77123409",
}
PRIVATE_VALUE = "WINTERBOTTOM PRIVATE NOTE"
OTHER_ID = "OTHER-ID-99182734"


def _frames() -> np.ndarray:
    rng = np.random.default_rng(11)
    font = ImageFont.truetype(str(FONT), 15)
    frames = []
    for index in range(FRAMES):
        picture = np.zeros((ROWS, COLUMNS, 3), np.uint8)
        x0, y0, x1, y1 = REGION
        speckle = rng.gamma(2.0, 30.0, (y1 - y0, x1 - x0)).clip(0, 200).astype(np.uint8)
        picture[y0:y1, x0:x1] = speckle[..., None]
        image = Image.fromarray(picture)
        draw = ImageDraw.Draw(image)
        draw.text(BANNER_BOX[:2], BANNER, fill=(255, 255, 255), font=font)
        if index >= LABEL_FROM:
            draw.text((110, 120), LABEL, fill=(255, 255, 0), font=font)
        frames.append(np.asarray(image))
    return np.stack(frames)


def _header(syntax: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.SourceApplicationEntityTitle = "WINTERBOTTOM"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
    ds.SOPInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality, ds.StudyDate, ds.BurnedInAnnotation = "US", "20240506", "YES"
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = OTHER_ID, "ST ELSEWHERE GENERAL"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.private_block(0x0011, "WINTERBOTTOM CORP", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, FRAMES
    ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PhotometricInterpretation = 3, 0, "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = REGION[0], REGION[1]
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = REGION[2] - 1, REGION[3] - 1
    region.RegionSpatialFormat = 1
    ds.SequenceOfUltrasoundRegions = [region]
    return ds


def _jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=95, subsampling=1)  # 4:2:2
    return buffer.getvalue()


def _cine(path: Path, syntax: str = ExplicitVRLittleEndian) -> Path:
    """The cine in `syntax`: native, RLE (pydicom's encoder) or JPEG baseline (Pillow)."""
    frames = _frames()
    ds = _header(ExplicitVRLittleEndian if syntax == RLELossless else syntax)
    if syntax == JPEGBaseline8Bit:
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = encapsulate([_jpeg(frame) for frame in frames])
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    else:
        ds.PixelData = frames.tobytes()
        if syntax == RLELossless:
            ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def _outcome(source: Path, out: Path) -> FileOutcome:
    def target(result: DeidResult) -> Path:
        return out / f"{result.sop_instance_uid}.dcm"

    return deidentify_file(source, target, "gateway", out / ".claims")


def _clean(source: Path, out: Path) -> Path:
    outcome = _outcome(source, out)
    assert outcome.status == "written", outcome.detail
    assert outcome.output is not None
    return outcome.output


def _worker(storage: Path, pixels: PixelConfig) -> None:
    init_worker(EngineSettings(default_profile(), SECRET, "SITE", storage, pixels=pixels))


def _streamed_and_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path, pixels: PixelConfig
) -> tuple[Path, Path]:
    """The output of the frame-by-frame path, and of the whole path, for `source`; the
    frame-by-frame one is checked to have been taken (it reads frames, never the whole)."""
    _worker(tmp_path / "storage", pixels)
    monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 10)
    taken: list[int] = []
    real = clean_stream.iter_frames

    def counted(*args: object) -> Iterator[np.ndarray]:
        taken.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(clean_stream, "iter_frames", counted)
    streamed = _clean(source, tmp_path / "streamed")
    assert taken, "the frame-by-frame path was not taken"
    monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 40)
    _worker(tmp_path / "storage-whole", pixels)
    whole = _clean(source, tmp_path / "whole")
    return streamed, whole


def _assert_clean(output: Path, source: Path) -> None:
    """No original value anywhere (elements, sequences, private tags, file meta, raw
    bytes), and the banner and the name blanked on every frame."""
    original = dcmread(source, stop_before_pixels=True)
    uids = [original.SOPInstanceUID, original.StudyInstanceUID, original.SeriesInstanceUID]
    values = [*PATIENT.values(), PRIVATE_VALUE, OTHER_ID, "WINTERBOTTOM", *uids]
    data = output.read_bytes()
    assert [v for v in values if v.encode() in data] == []
    out = dcmread(output)
    texts: list[str] = []
    out.walk(lambda _ds, elem: texts.append(str(elem.value)) if elem.VR != "SQ" else None)
    out.file_meta.walk(lambda _ds, elem: texts.append(str(elem.value)))
    assert [t for t in texts for v in values if v in t] == []
    assert not any(elem.tag.is_private for elem in out.iterall())
    assert out.BurnedInAnnotation == "NO"
    frames = decode_frames(out)
    assert len(frames) == FRAMES
    x0, y0, x1, y1 = BANNER_BOX
    banner = frames[:, y0 : y1 + 4, x0:x1]
    assert (banner.max(axis=-1) > 200).sum(axis=(1, 2)).max() == 0, "banner strokes remain"
    label = frames[LABEL_FROM:, 110:145, 100:200]
    yellow = (label[..., 0] > 200) & (label[..., 1] > 200) & (label[..., 2] < 80)
    assert yellow.sum() == 0, "the name's strokes remain on some frame"


@pytest.mark.parametrize(
    ("syntax", "encoding"),
    [
        (ExplicitVRLittleEndian, "uncompressed"),
        (ImplicitVRLittleEndian, "rle"),
        (RLELossless, "uncompressed"),
        (JPEGBaseline8Bit, "jpeg-ls"),
    ],
)
def test_a_selected_cine_comes_out_of_the_frame_path_as_the_whole_path_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syntax: str, encoding: str
) -> None:
    source = _cine(tmp_path / "cine.dcm", syntax)
    pixels = dataclasses.replace(load_pixel_config(None), encoding=encoding)
    streamed, whole = _streamed_and_whole(tmp_path, monkeypatch, source, pixels)
    assert streamed.read_bytes() == whole.read_bytes()
    _assert_clean(streamed, source)


def test_fixed_boxes_and_regions_are_blanked_frame_by_frame_as_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _cine(tmp_path / "cine.dcm")
    pixels = dataclasses.replace(load_pixel_config(None), us_outside_regions=True)
    streamed, whole = _streamed_and_whole(tmp_path, monkeypatch, source, pixels)
    assert streamed.read_bytes() == whole.read_bytes()
    frames = decode_frames(dcmread(streamed))
    assert (frames[:, : REGION[1]] == 0).all()  # above the picture, on every frame


def test_an_unselected_cine_with_text_drawn_in_one_value_is_screened_in_frame_by_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A modality the shipped selection leaves out, without Burned In Annotation: the
    screen reads its frames one at a time, finds the banner, and the stage cleans it."""
    source = tmp_path / "cine.dcm"
    ds = dcmread(_cine(source))
    ds.Modality = "MG"
    del ds.BurnedInAnnotation
    ds.save_as(source, enforce_file_format=True)
    shipped = load_pixel_config(Path(__file__).resolve().parents[1] / "conf" / "pixel_rules.yaml")
    assert not shipped.selection.selects(ds)
    streamed, whole = _streamed_and_whole(tmp_path, monkeypatch, source, shipped)
    assert streamed.read_bytes() == whole.read_bytes()
    _assert_clean(streamed, source)


def test_a_text_free_selected_instance_keeps_its_pixel_data_as_it_came(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _header(RLELossless)
    ds.Modality, ds.PhotometricInterpretation = "XA", "MONOCHROME2"
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 16, 15
    del ds.PlanarConfiguration, ds.SequenceOfUltrasoundRegions
    y, x = np.mgrid[:ROWS, :COLUMNS]
    ramp = (x * 40 + y * 20).astype(np.uint16)  # smooth: nothing text-like
    frames = np.stack([ramp + 3 * i for i in range(FRAMES)])
    ds.compress(RLELossless, frames, generate_instance_uid=False)
    source = tmp_path / "xa.dcm"
    ds.save_as(source, enforce_file_format=True)
    streamed, whole = _streamed_and_whole(tmp_path, monkeypatch, source, load_pixel_config(None))
    assert streamed.read_bytes() == whole.read_bytes()
    out = dcmread(streamed)
    assert out.file_meta.TransferSyntaxUID == RLELossless
    assert out.PixelData == dcmread(source).PixelData


def _whole_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path) -> FileOutcome:
    monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 40)
    return _outcome(source, tmp_path / "whole")


def _held_by_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path) -> list[str]:
    """Both paths hold `source` (their reasons: frame by frame, whole) and neither writes
    a file."""
    _worker(tmp_path / "storage", load_pixel_config(None))
    monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 10)
    streamed = _outcome(source, tmp_path / "streamed")
    whole = _whole_outcome(tmp_path, monkeypatch, source)
    assert streamed.status == whole.status == "quarantined"
    for folder in ("streamed", "whole"):
        assert [p for p in (tmp_path / folder).rglob("*") if p.is_file()] == []
    return [streamed.detail.split(":")[0], whole.detail.split(":")[0]]


def test_a_frame_that_cannot_be_decoded_is_held_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _frames()
    ds = _header(JPEGBaseline8Bit)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    encoded = [_jpeg(frame) for frame in frames]
    encoded[6] = encoded[6][:2] + bytes(len(encoded[6]) - 2)  # SOI, then zeros
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    source = tmp_path / "broken.dcm"
    ds.save_as(source, enforce_file_format=True)
    assert _held_by_both(tmp_path, monkeypatch, source) == ["pixels-failed"] * 2


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, RLELossless])
def test_pixel_data_cut_short_is_held_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syntax: str
) -> None:
    """The large-instance path finds the cut before reading any frame (pixel_tail.py) and
    says so; read whole, pydicom's reading stops at the cut ("truncated")."""
    source = _cine(tmp_path / "cine.dcm", syntax)
    with open(source, "r+b") as handle:
        handle.truncate(source.stat().st_size - 5000)
    assert _held_by_both(tmp_path, monkeypatch, source) == ["truncated-pixel-data", "truncated"]


def test_a_transfer_syntax_the_gateway_does_not_take_is_held_as_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _header("1.2.840.10008.1.2.4.100")  # MPEG2 Main Profile / Main Level
    ds.PixelData = encapsulate([bytes(4000) for _ in range(FRAMES)])
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    source = tmp_path / "mpeg.dcm"
    ds.save_as(source, enforce_file_format=True)
    assert _held_by_both(tmp_path, monkeypatch, source) == ["unsupported-transfer-syntax"] * 2


def test_a_loop_whose_screen_changes_on_every_frame_keeps_a_bounded_memory() -> None:
    from gateway.pixels.cine import MAX_SCREENS, CineMemory, Probe

    picture = np.zeros((ROWS, COLUMNS), bool)
    picture[50:210, 40:280] = True
    cine = CineMemory(picture)
    marks = np.zeros((160, 240), bool)
    for frame in range(MAX_SCREENS * 3):
        cine.remember(Probe(frame.to_bytes(4, "little"), marks), [])
    assert len(cine.order) == sum(len(entries) for entries in cine.seen.values()) == MAX_SCREENS
    assert cine.boxes_for(Probe((MAX_SCREENS * 3 - 1).to_bytes(4, "little"), marks)) == []


def test_a_failure_while_the_frames_are_written_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source changed between the two passes: held as write-failed, nothing written."""
    source = _cine(tmp_path / "cine.dcm")
    _worker(tmp_path / "storage", load_pixel_config(None))
    monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 10)
    real = clean_stream.write_pixel_data

    def cut_then_write(handle: object, frames: Iterator[np.ndarray], *args: object) -> None:
        with open(source, "r+b") as cut:
            cut.truncate(source.stat().st_size - 3 * ROWS * COLUMNS * 3)
        real(handle, frames, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(clean_stream, "write_pixel_data", cut_then_write)
    outcome = _outcome(source, tmp_path / "out")
    assert outcome.status == "quarantined"
    assert outcome.detail.startswith("write-failed"), outcome.detail
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
