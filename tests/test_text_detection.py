"""The fast text detector (gateway/pixels/detect.py) and line reader (line_reader.py).

Frames are synthetic and rendered here, so each test knows which pixels hold text: an
ultrasound-like RGB frame (speckle sector, labels on black, over speckle and on a light
banner) and a CT-like grey frame (a noisy body ellipse, corner annotations, orientation
letters). Detection must cover every text pixel and blank little else. Real components
only: the DBNet model, OpenCV and Tesseract are run, never mocked.
`bench/text_detection.py` renders its frames with `synthetic_frame` too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import fresh_python
from PIL import Image, ImageDraw, ImageFont

from gateway.pixels import detect, line_reader
from gateway.pixels.clean import PixelError, _missing_seen_apart, check_available
from gateway.pixels.regions import Box

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
DETECT_MISSING = detect.is_available()
READ_MISSING = line_reader.is_available()
needs_detector = pytest.mark.skipif(DETECT_MISSING is not None, reason=f"{DETECT_MISSING}")
needs_reader = pytest.mark.skipif(READ_MISSING is not None, reason=f"{READ_MISSING}")

WHITE, GREY, YELLOW, BLACK = (235, 235, 235), (150, 150, 150), (255, 230, 0), (15, 15, 15)
NAMES = ["SMITH^JOHN", "DOE JANE", "GARCIA, MARIA", "Nguyen Thi Lan", "O'BRIEN^PAT"]
MAX_OUTSIDE = 0.05  # share of the image blanked outside the text (and its 4 px margin)


@dataclass(frozen=True)
class Line:
    """One drawn text line: where its ink is (a mask over the ink's bounding box)."""

    text: str
    x0: int
    y0: int
    ink: np.ndarray  # bool, the ink's bounding box

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x0 + self.ink.shape[1], self.y0 + self.ink.shape[0]


def font(size: int, mono: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf"
    if (FONT_DIR / name).exists():
        return ImageFont.truetype(str(FONT_DIR / name), size)
    return ImageFont.load_default(size=size)


Text = tuple[str, int, int, int, tuple[int, int, int]]  # text, x, y, size, colour


def draw_texts(
    base: np.ndarray, texts: list[Text], mono: bool = False
) -> tuple[np.ndarray, list[Line]]:
    """Draw each text (RGB or grey base); returns the image and each line's ink."""
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    lines: list[Line] = []
    for text, x, y, size, colour in texts:
        fill: int | tuple[int, int, int] = colour if base.ndim == 3 else int(np.mean(colour))
        draw.text((x, y), text, font=font(size, mono), fill=fill)
        layer = Image.new("L", (base.shape[1], base.shape[0]), 0)
        ImageDraw.Draw(layer).text((x, y), text, font=font(size, mono), fill=255)
        ink = np.asarray(layer) > 0
        rows, cols = np.nonzero(ink)
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        lines.append(Line(text, int(x0), int(y0), ink[y0:y1, x0:x1]))
    return np.asarray(image).copy(), lines


def _ultrasound_base(rng: np.random.Generator) -> np.ndarray:
    base = np.zeros((480, 640, 3), np.uint8)
    yy, xx = np.mgrid[0:480, 0:640]
    apex = 40 + int(rng.integers(-5, 6))
    sector = ((xx - 320) ** 2 + (yy - apex) ** 2 < 400**2) & (abs(xx - 320) < (yy - apex) * 0.8)
    speckle = rng.gamma(2.0, 30.0, int(sector.sum())).clip(0, 255).astype(np.uint8)
    base[sector] = speckle[:, None]
    base[440:476, 4:12] = np.linspace(0, 255, 36, dtype=np.uint8)[:, None, None]  # grey bar
    base[456:480, 180:460] = 205  # a light status banner
    return base


def ultrasound_frame(seed: int) -> tuple[np.ndarray, list[Line]]:
    """640x480 RGB: annotations on black, labels over the speckle, dark text on a banner."""
    rng = np.random.default_rng(seed)
    jitter = lambda: int(rng.integers(-3, 4))  # noqa: E731
    size = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    texts: list[Text] = [
        (NAMES[seed % len(NAMES)], 10 + jitter(), 6 + jitter(), size(12, 16), WHITE),
        (f"ID {rng.integers(10**7, 10**8)}", 10 + jitter(), 28, size(10, 12), GREY),
        (f"{rng.integers(1, 29):02d}/03/2021 10:41:07", 470 + jitter(), 6, size(11, 13), YELLOW),
        ("C5-1  5.0MHz", 540, 60 + jitter(), size(9, 11), WHITE),
        ("TIs 0.4  MI 1.1", 540, 80 + jitter(), 7, GREY),
        ("R", 30 + jitter(), 90 + jitter(), size(14, 20), WHITE),
        ("L", 596 + jitter(), 150 + jitter(), size(12, 18), YELLOW),
        ("0", 570, 40 + jitter(), size(8, 10), WHITE),
        ("5", 574, 200 + jitter(), size(8, 10), GREY),
        ("10", 590, 360 + jitter(), size(8, 10), WHITE),
        ("LIVER", 260 + jitter(), 200 + jitter(), size(14, 20), WHITE),
        ("RT KIDNEY", 250 + jitter(), 320 + jitter(), size(12, 16), YELLOW),
        ("Hospital 3  Echo", 200 + jitter(), 459, size(11, 14), BLACK),
    ]
    return draw_texts(_ultrasound_base(rng), texts)


def _ct_base(rng: np.random.Generator) -> np.ndarray:
    import cv2

    base = np.zeros((512, 512), np.uint8)
    yy, xx = np.mgrid[0:512, 0:512]
    a, b = int(rng.integers(180, 215)), int(rng.integers(130, 165))
    body = ((xx - 256) / a) ** 2 + ((yy - 250) / b) ** 2 < 1
    noise = rng.normal(0, 12, (512, 512))
    base[body] = (110 + cv2.GaussianBlur(noise, (3, 3), 0)[body]).clip(0, 255).astype(np.uint8)
    spine = ((xx - 256) / 22) ** 2 + ((yy - 330) / 18) ** 2 < 1
    base[spine] = 235
    base[416:424, 60:452] = 90  # the table
    return base


def ct_frame(seed: int, with_text: bool = True) -> tuple[np.ndarray, list[Line]]:
    """512x512 grey: a body section, corner annotations, orientation letters, a light label."""
    rng = np.random.default_rng(1000 + seed)
    base = _ct_base(rng)
    if not with_text:
        return base, []
    base[440:462, 340:506] = 220  # a light label box for dark-on-light text
    jitter = lambda: int(rng.integers(-3, 4))  # noqa: E731
    size = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    texts: list[Text] = [
        (NAMES[(seed + 1) % len(NAMES)], 6 + jitter(), 6, size(11, 14), WHITE),
        (f"{rng.integers(10**7, 10**8)}", 6, 26 + jitter(), size(10, 12), WHITE),
        ("1980-01-31", 6, 44 + jitter(), size(10, 12), GREY),
        ("SE 3  IM 45", 380 + jitter(), 6, size(18, 24), WHITE),
        ("kV 120  mA 200", 380 + jitter(), 36, size(9, 11), GREY),
        ("W 400  L 40", 6, 490 + jitter(), size(10, 12), WHITE),
        ("5 mm", 460 + jitter(), 490, 7, WHITE),
        ("R", 8 + jitter(), 250 + jitter(), size(14, 20), WHITE),
        ("L", 490 + jitter(), 250 + jitter(), size(14, 20), GREY),
        ("A", 250 + jitter(), 70 + jitter(), size(10, 16), WHITE),
        ("2024-05-06", 346, 443, size(12, 14), BLACK),
    ]
    return draw_texts(base, texts, mono=seed % 2 == 1)


def synthetic_frame(kind: str, seed: int) -> tuple[np.ndarray, list[Line]]:
    """A frame and its text lines: kind "us", "ct" or "ct-blank" (no text)."""
    if kind == "us":
        return ultrasound_frame(seed)
    return ct_frame(seed, with_text=kind == "ct")


def box_mask(shape: tuple[int, ...], boxes: list[Box]) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    for box in boxes:
        mask[box.y0 : box.y1, box.x0 : box.x1] = True
    return mask


def coverage(line: Line, covered: np.ndarray) -> float:
    """Share of the line's ink pixels inside the boxes."""
    x0, y0, x1, y1 = line.box
    return float(covered[y0:y1, x0:x1][line.ink].mean())


def outside_share(shape: tuple[int, ...], lines: list[Line], boxes: list[Box]) -> float:
    """Share of the image blanked that is not text nor within 4 px of it."""
    text = np.zeros(shape[:2], bool)
    for line in lines:
        x0, y0, x1, y1 = line.box
        text[max(y0 - 4, 0) : y1 + 4, max(x0 - 4, 0) : x1 + 4] = True
    return float((box_mask(shape, boxes) & ~text).mean())


# --- detection -------------------------------------------------------------------------


@needs_detector
@pytest.mark.parametrize(("kind", "seed"), [("us", 0), ("us", 1), ("us", 2), ("ct", 0), ("ct", 1)])
def test_every_text_pixel_is_covered_and_little_else(kind: str, seed: int) -> None:
    image, lines = synthetic_frame(kind, seed)
    boxes = detect.detect_boxes(image)
    covered = box_mask(image.shape, boxes)
    missed = {line.text: round(coverage(line, covered), 3) for line in lines}
    missed = {text: share for text, share in missed.items() if share < 1.0}
    assert not missed, f"lines not fully covered: {missed}"
    assert outside_share(image.shape, lines, boxes) < MAX_OUTSIDE


@needs_detector
def test_single_characters_on_black_are_found() -> None:
    base = np.zeros((256, 256), np.uint8)
    image, lines = draw_texts(
        base, [("R", 20, 20, 9, WHITE), ("0", 120, 40, 7, GREY), ("5", 200, 200, 12, YELLOW)]
    )
    covered = box_mask(image.shape, detect.detect_boxes(image))
    assert all(coverage(line, covered) == 1.0 for line in lines)


@needs_detector
def test_dark_text_on_a_light_page_is_found() -> None:
    base = np.full((300, 400), 230, np.uint8)
    image, lines = draw_texts(
        base, [("DOE JANE 1980-01-31", 30, 40, 14, BLACK), ("L", 300, 200, 16, BLACK)]
    )
    covered = box_mask(image.shape, detect.detect_boxes(image))
    assert all(coverage(line, covered) == 1.0 for line in lines)


@needs_detector
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_text_free_ct_frame_has_no_boxes(seed: int) -> None:
    image, _ = synthetic_frame("ct-blank", seed)
    boxes = detect.detect_boxes(image)
    assert sum(b.area() for b in boxes) < 0.002 * image.shape[0] * image.shape[1], boxes


@needs_detector
def test_boxes_lie_inside_the_image_and_empty_images_have_none() -> None:
    image, _ = synthetic_frame("us", 3)
    for box in detect.detect_boxes(image):
        assert 0 <= box.x0 < box.x1 <= 640 and 0 <= box.y0 < box.y1 <= 480
    assert detect.detect_boxes(np.zeros((0, 0), np.uint8)) == []
    assert detect.detect_boxes(np.zeros((64, 64), np.uint8)) == []


def test_wrong_images_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        detect.detect_boxes(np.zeros((8, 8), np.uint16))
    with pytest.raises(ValueError, match="uint8"):
        detect.detect_boxes(np.zeros((8, 8, 4), np.uint8))


@needs_detector
@needs_reader
def test_availability_names_the_model_and_the_language_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = detect.model_path()
    assert model is not None and model.name == detect.MODEL_FILE
    found = line_reader.tessdata_path()
    assert found is not None and (found / "eng.traineddata").is_file()
    (tmp_path / "tessdata").mkdir()
    (tmp_path / "tessdata" / "eng.traineddata").write_bytes(b"")
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))  # the parent form comes first
    assert line_reader.tessdata_path() == tmp_path / "tessdata"


# --- reading ---------------------------------------------------------------------------


@needs_detector
@needs_reader
@pytest.mark.parametrize("colour", [WHITE, BLACK])
def test_read_lines_reads_a_name_and_a_date(colour: tuple[int, int, int]) -> None:
    background = 0 if colour == WHITE else 225
    base = np.full((200, 400), background, np.uint8)
    image, _ = draw_texts(
        base, [("SMITH JOHN", 20, 30, 14, colour), ("12/03/2021", 20, 120, 13, colour)]
    )
    boxes = detect.detect_boxes(image)
    words = line_reader.read_lines(image, boxes)
    assert [w.box for w in words] == boxes
    texts = {w.text for w in words}
    assert "SMITH JOHN" in texts and "12/03/2021" in texts, len(texts)
    assert all(w.confidence > 50 for w in words if w.text)


@needs_reader
def test_read_lines_on_an_rgb_frame_and_an_empty_box() -> None:
    base = np.zeros((120, 300, 3), np.uint8)
    image, lines = draw_texts(base, [("DOE JANE", 10, 10, 16, YELLOW)])
    x0, y0, x1, y1 = lines[0].box
    words = line_reader.read_lines(
        image, [Box(x0 - 3, y0 - 3, x1 + 3, y1 + 3, "ocr"), Box(5, 5, 5, 5, "ocr")]
    )
    assert words[0].text == "DOE JANE"
    assert (words[1].text, words[1].confidence) == ("", 0.0)
    assert "DOE" not in repr(words[0])  # patient data stays out of reprs and logs


# --- the availability check ----------------------------------------------------------------


@needs_detector
@needs_reader
def test_the_availability_check_leaves_the_ocr_libraries_out_of_the_asking_process() -> None:
    """The service process never reads a pixel: asking whether OCR can run must not load
    OpenCV, onnxruntime and Tesseract into it (and so into every process it forks)."""
    code = (
        "import sys\n"
        "from gateway.pixels.clean import check_available\n"
        "check_available()\n"
        "print(sorted(m for m in ('cv2', 'onnxruntime', 'tesserocr') if m in sys.modules))\n"
    )
    assert fresh_python(code) == "[]"


def test_ocr_asked_for_and_missing_is_refused_with_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither Tesseract binding importable where the check runs: refused, naming them."""
    for name in ("tesserocr", "pytesseract"):
        fake = tmp_path / "shadow" / name
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("raise ImportError('libtesseract.so.5: not found')\n")
    path = os.pathsep.join(p for p in (str(tmp_path / "shadow"), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    _missing_seen_apart.cache_clear()  # asked once per process: ask again under this path
    try:
        with pytest.raises(PixelError, match=r"tesserocr.*pytesseract"):
            check_available()
    finally:
        _missing_seen_apart.cache_clear()
