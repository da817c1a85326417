"""OCR detection, the allow list, redaction decisions and the pixel configuration.

Text is rendered with PIL at known places so each test knows exactly which pixels hold
text; detection is judged by recall: the share of those pixels inside the boxes found.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from gateway.base.identifiers import Identifiers
from gateway.pixels.ocr import AllowList, Word, boxes_to_redact, detect_text, is_available
from gateway.pixels.regions import Box
from gateway.pixels.rules import (
    PixelConfigError,
    Rule,
    Selection,
    load_pixel_config,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
MISSING = is_available()
needs_ocr = pytest.mark.skipif(MISSING is not None, reason=f"Tesseract OCR not usable: {MISSING}")
# Share of rendered text pixels the detected boxes must cover. Measured 1.0 on every case
# below; the margin allows a different Tesseract build to clip an edge.
MIN_RECALL = 0.95


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    if (FONT_DIR / name).exists():
        return ImageFont.truetype(str(FONT_DIR / name), size)
    return ImageFont.load_default(size=size)


def render(
    texts: list[tuple[str, tuple[int, int], int, int]],
    background: int,
    shape: tuple[int, int] = (480, 640),
    speckle: bool = False,
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """An 8-bit image with each (text, (x, y), size, grey level) drawn; returns the ink boxes."""
    rng = np.random.default_rng(7)
    base = np.full(shape, background, np.uint8)
    if speckle:  # an ultrasound-like sector of speckle in the middle
        rows, cols = shape
        patch = rng.gamma(2.0, 30.0, (rows // 2, cols // 2)).clip(0, 255).astype(np.uint8)
        base[rows // 4 : rows // 4 + rows // 2, cols // 4 : cols // 4 + cols // 2] = patch
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    boxes = []
    for text, (x, y), size, level in texts:
        draw.text((x, y), text, font=font(size), fill=level)
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font(size))
        boxes.append((int(x0), int(y0), int(x1), int(y1)))
    return np.asarray(image).copy(), boxes


def recall(image: np.ndarray, truth: list[tuple[int, int, int, int]], found: list[Box]) -> float:
    """Share of the truth boxes' text pixels (those differing from the background) covered."""
    covered = np.zeros(image.shape, bool)
    for box in found:
        covered[box.y0 : box.y1, box.x0 : box.x1] = True
    ink = np.zeros(image.shape, bool)
    background = np.bincount(image.ravel()).argmax()
    for x0, y0, x1, y1 in truth:
        region = image[y0:y1, x0:x1].astype(int)
        ink[y0:y1, x0:x1] |= np.abs(region - int(background)) > 40
    return float((covered & ink).sum() / max(1, ink.sum()))


def identifiers_of(name: str = "SMITH^JOHN", patient_id: str = "12345678") -> Identifiers:
    found = Identifiers()
    found.add_value(name, "PN")
    found.add_value(patient_id, "LO")
    found.add_value("19800131", "DA")
    return found


ALLOW = AllowList.from_file(CONF / "pixel_allowlist.yaml")

# --- detection -------------------------------------------------------------------------

CASES = {
    "dark_on_light": (235, 20, 14),
    "light_on_dark": (10, 235, 14),
    "small_11px_light_on_dark": (0, 200, 11),
    "small_10px_dark_on_light": (250, 30, 10),
    "large_32px": (0, 255, 32),
    "light_on_grey": (110, 220, 13),
    "dark_on_grey": (150, 20, 13),
}


@needs_ocr
@pytest.mark.parametrize("case", sorted(CASES))
def test_detect_text_covers_annotation_text(case: str) -> None:
    background, level, size = CASES[case]
    texts = [
        ("SMITH JOHN", (12, 10), size, level),
        ("ID 12345678", (12, 10 + 2 * size), size, level),
        ("12/03/2021 10:41", (400, 10), size, level),
        ("Acme Hospital", (200, 300), size, level),
    ]
    image, truth = render(texts, background)
    words = detect_text(image)
    assert recall(image, truth, [w.box for w in words]) >= MIN_RECALL
    for word in words:  # boxes are in the original image, not the enlarged one
        assert 0 <= word.box.x0 < word.box.x1 <= image.shape[1]
        assert 0 <= word.box.y0 < word.box.y1 <= image.shape[0]


@needs_ocr
def test_text_beside_ultrasound_speckle_is_found() -> None:
    texts = [("DOE JANE", (10, 8), 12, 230), ("5.0 MHz", (560, 60), 11, 200)]
    image, truth = render(texts, 0, speckle=True)
    assert recall(image, truth, [w.box for w in detect_text(image)]) >= MIN_RECALL


@needs_ocr
def test_words_of_a_line_become_one_padded_box() -> None:
    image, truth = render([("JOHN SMITH", (50, 40), 14, 255)], 0)
    words = [w for w in detect_text(image) if w.box.intersects(Box(*truth[0], "truth"))]
    assert len(words) == 1
    x0, y0, x1, y1 = truth[0]
    box = words[0].box
    assert box.x0 <= x0 and box.y0 <= y0 and box.x1 >= x1 and box.y1 >= y1


@needs_ocr
def test_blank_image_has_no_text() -> None:
    assert detect_text(np.zeros((480, 640), np.uint8)) == []


def test_detect_text_rejects_colour_images() -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        detect_text(np.zeros((10, 10, 3), np.uint8))


def test_word_repr_hides_the_text_read() -> None:
    word = Word(Box(0, 0, 5, 5, "ocr"), "SMITH", 90.0)
    assert "SMITH" not in repr(word)


# --- what gets redacted ----------------------------------------------------------------


def word(text: str, x: int = 0) -> Word:
    return Word(Box(x, 0, x + 10, 10, "ocr"), text, 95.0)


def test_allow_list_keeps_screen_furniture() -> None:
    for text in ("R", "r", "5 cm", "MHz", "3.5MHz", "B-mode", "PW", "60 dB", "-10", "30 fps", "%"):
        assert ALLOW.allows(text), text
    for text in ("SMITH", "JS", "12345", "12/03/2021", "R SMITH", "ID"):
        assert not ALLOW.allows(text), text


def test_redact_all_text_spares_allow_listed_words() -> None:
    words = [word("R", 0), word("5 cm", 20), word("MHz", 40), word("SMITH JOHN", 60)]
    boxes = boxes_to_redact(words, "redact_all_text", ALLOW, Identifiers())
    assert boxes == [words[3].box]


@needs_ocr
def test_rendered_markers_survive_and_the_name_does_not() -> None:
    texts = [
        ("R", (20, 200), 16, 255),
        ("5 cm", (560, 440), 14, 255),
        ("MHz", (580, 60), 14, 255),
        ("SMITH JOHN", (12, 10), 14, 255),
    ]
    image, truth = render(texts, 0)
    boxes = boxes_to_redact(detect_text(image), "redact_all_text", ALLOW, identifiers_of())
    assert recall(image, truth[3:], boxes) >= MIN_RECALL
    for kept in truth[:3]:
        assert not any(b.intersects(Box(*kept, "truth")) for b in boxes)


def test_redact_identifiers_blanks_only_identifiers_and_dates() -> None:
    words = [
        word("SMITH*JOHN", 0),  # "^" is read as "*"
        word("ID 12345678", 20),
        word("12/03/2021 10:41", 40),
        word("31 Jan 1980", 60),
        word("5 cm", 80),
        word("Acme", 100),
        word("EF 55 %", 120),
        word("SMlTH", 140),  # one OCR slip
        word("Smithson", 160),  # a different word containing no name part
    ]
    boxes = boxes_to_redact(words, "redact_identifiers", ALLOW, identifiers_of())
    assert boxes == [w.box for w in words[:4]] + [words[7].box]


def test_long_digit_runs_are_redacted_even_when_not_this_patients() -> None:
    boxes = boxes_to_redact([word("Acc 99887766")], "redact_identifiers", ALLOW, Identifiers())
    assert len(boxes) == 1


@needs_ocr
def test_rendered_identifiers_mode_keeps_measurements() -> None:
    texts = [("SMITH JOHN", (12, 10), 14, 255), ("Dist 4.2 cm", (400, 300), 14, 255)]
    image, truth = render(texts, 0)
    boxes = boxes_to_redact(detect_text(image), "redact_identifiers", ALLOW, identifiers_of())
    assert recall(image, truth[:1], boxes) >= MIN_RECALL
    assert not any(b.intersects(Box(*truth[1], "truth")) for b in boxes)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pixel redaction mode"):
        boxes_to_redact([], "redact_some", ALLOW, Identifiers())


def test_is_available_here() -> None:
    if MISSING is not None:
        pytest.skip(f"Tesseract OCR not usable: {MISSING}")
    assert is_available() is None


# --- selection and rules ---------------------------------------------------------------


def dataset(**values: object) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def test_default_selection() -> None:
    select = Selection()
    for modality in ("US", "XA", "RF", "ES", "OP", "XC", "GM", "PX", "IO", "OT", "DOC"):
        assert select.selects(dataset(Modality=modality))
    for sop in (
        "1.2.840.10008.5.1.4.1.1.7",
        *(f"1.2.840.10008.5.1.4.1.1.7.{i}" for i in range(1, 5)),
    ):
        assert select.selects(dataset(Modality="CT", SOPClassUID=sop))
    assert select.selects(dataset(Modality="CT", BurnedInAnnotation="YES"))
    assert not select.selects(dataset(Modality="CT", BurnedInAnnotation="NO"))
    assert not select.selects(dataset(Modality="MR", SOPClassUID="1.2.840.10008.5.1.4.1.1.4"))
    # VL Endoscopic (.77.1.1) is not below Secondary Capture (.7) though it shares a prefix.
    assert not select.selects(dataset(Modality="CT", SOPClassUID="1.2.840.10008.5.1.4.1.1.77.1.1"))


def test_shipped_configuration_loads_with_example_rules_disabled() -> None:
    config = load_pixel_config(CONF / "pixel_rules.yaml")
    assert config.mode == "redact_all_text"
    assert config.selection == Selection()
    assert config.rules and not any(rule.enabled for rule in config.rules)
    assert config.allow_list().allows("MHz")
    assert (config.overlays, config.encoding, config.us_outside_regions) == (
        "remove",
        "uncompressed",
        False,
    )


def test_rule_boxes_count_from_the_far_edges() -> None:
    rule = Rule(
        "banner",
        {"Rows": frozenset({480})},
        ((0, 0, 0, 50), (-200, 0, 0, 40), (10, -30, 100, 0)),
    )
    ds = dataset(Rows=480, Columns=640)
    assert rule.matches(ds)
    assert rule.boxes_for(ds) == [
        Box(0, 0, 640, 50, "rule"),
        Box(440, 0, 640, 40, "rule"),
        Box(10, 450, 100, 480, "rule"),
    ]
    assert not rule.matches(dataset(Rows=512, Columns=512))


def test_rule_conditions_on_manufacturer_and_model(tmp_path: Path) -> None:
    (tmp_path / "allow.yaml").write_text("words: {R: orientation marker}\n")
    (tmp_path / "rules.yaml").write_text(
        "allowlist: allow.yaml\n"
        "rules:\n"
        "  - name: vendor\n"
        "    conditions: {Manufacturer: '^acme', ManufacturerModelName: 'X\\d+', Columns: 640}\n"
        "    boxes: [[0, 0, 100, 20]]\n"
    )
    rule = load_pixel_config(tmp_path / "rules.yaml").rules[0]
    ds = dataset(Manufacturer="ACME Medical", ManufacturerModelName="X300", Rows=480, Columns=640)
    assert rule.matches(ds)
    assert not rule.matches(dataset(Manufacturer="Other", ManufacturerModelName="X300"))


def test_bad_rules_file_names_every_problem(tmp_path: Path) -> None:
    (tmp_path / "allow.yaml").write_text("words: {R: orientation marker, L: ''}\nextra: 1\n")
    path = tmp_path / "rules.yaml"
    path.write_text(
        "mode: redact_some\n"
        "overlays: keep\n"
        "encoding: jpeg\n"
        "us_outside_regions: 'yes'\n"
        "colour: red\n"
        "allowlist: allow.yaml\n"
        "selection: {modalities: [US], sop_classes: [not-a-uid], burned: true}\n"
        "rules:\n"
        "  - name: banner\n"
        "    conditions: {Modality: US, Rows: many, Colour: red}\n"
        "    boxes: [[0, 0, 100, 20], [0, 0, 10], [50, 0, 20, 10]]\n"
        "  - boxes: []\n"
    )
    with pytest.raises(PixelConfigError) as caught:
        load_pixel_config(path)
    shown = str(path)
    assert caught.value.problems == [
        f"{shown}: 'colour': unknown key (expected one of selection, mode, us_outside_regions,"
        " overlays, encoding, allowlist, rules)",
        f"{shown}: 'selection.burned': unknown key (expected one of modalities, sop_classes,"
        " burned_in_annotation, manufacturers, models, screen)",
        f"{shown}: 'selection.sop_classes.0': 'not-a-uid' is not a UID",
        f"{shown}: 'mode': 'redact_some' is not one of redact_all_text, redact_identifiers",
        f"{shown}: 'us_outside_regions': 'yes' is not true or false",
        f"{shown}: 'overlays': 'keep' is not one of remove, clean",
        f"{shown}: 'encoding': 'jpeg' is not one of uncompressed, rle, jpeg-ls",
        f"{shown}: 'rules.0.conditions.Colour': unknown key (expected one of Modality,"
        " Manufacturer, ManufacturerModelName, Rows, Columns, SOPClassUID)",
        f"{shown}: 'rules.0.conditions.Rows': 'many' is not a positive integer or a list of them",
        f"{shown}: 'rules.0.boxes.1': [0, 0, 10] is not [x0, y0, x1, y1] (four integers)",
        f"{shown}: 'rules.0.boxes.2': [50, 0, 20, 10] is empty (x1 must be greater than x0)",
        f"{shown}: 'rules.1.name': missing (required: a short name for the audit record)",
        f"{shown}: 'rules.1.boxes': [] is not a non-empty list of boxes",
        f"{tmp_path / 'allow.yaml'}: 'extra': unknown key",
        f"{tmp_path / 'allow.yaml'}: 'words.L': say why it is safe (a reason is required)",
    ]


def test_missing_allow_list_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("allowlist: nowhere.yaml\n")
    with pytest.raises(PixelConfigError, match=r"nowhere.yaml: '\(file\)': cannot read"):
        load_pixel_config(path)


def test_no_file_means_defaults_and_the_shipped_allow_list() -> None:
    config = load_pixel_config(None)
    assert config.selection == Selection(everything=True) and config.rules == []
    assert config.selection.selects(dataset(Modality="CT", BurnedInAnnotation="NO"))
    assert config.mode == "redact_all_text"
    assert config.allowlist == CONF / "pixel_allowlist.yaml"
    assert config.allow_list().allows("R") and not config.allow_list().allows("SMITH")


def test_a_group_is_allowed_when_it_splits_into_allowed_runs() -> None:
    """A label with its value is one allowed run ("W 400"), a letter alone is not: single
    letters outside the orientation markers may be initials."""
    allow = AllowList(
        frozenset({"l", "mm"}),
        (re.compile(r"(W|L)\s?\d{1,4}", re.IGNORECASE), re.compile(r"\d{1,3}")),
    )
    assert allow.allows("W 400  L 40")
    assert allow.allows("W400 L 40 mm")
    assert allow.allows("")
    assert not allow.allows("W")
    assert not allow.allows("W 400 J")
    assert not allow.allows("JW 400")
