"""Find burned-in text with Tesseract and decide which of it to redact.

An OCR backend under the availability contract (STYLE.md, after pydicom's pixel plugins):
`is_available()` names exactly what is missing, so the gateway refuses to start rather than
forward pixels it cannot read. Detection is apart from cleaning (after deid): `detect_text`
returns words with boxes, `boxes_to_redact` returns boxes; painting is `redact.py`'s job.

The recognised text is patient data: it is never logged, and `Word.text` is kept out of
the word's repr so that a stray `log.debug("%s", word)` cannot leak it.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from gateway.base.identifiers import Identifiers
from gateway.base.yaml_files import YamlFileError, read_mapping, validate, value_error
from gateway.pixels.box_merge import same_line_neighbours
from gateway.pixels.regions import Box, merge_boxes

if TYPE_CHECKING:
    from gateway.text.recognizer import Recognizer

log = logging.getLogger(__name__)

__all__ = ["DEPENDENCIES", "MODES", "AllowList", "AllowListError", "OcrError", "Word",
           "boxes_to_redact", "detect_text", "is_available"]  # fmt: skip

DEPENDENCIES: tuple[str, ...] = ("pytesseract", "tesseract binary", "eng traineddata")
MODES: tuple[str, ...] = ("redact_all_text", "redact_identifiers")

# Tesseract reads text best at 20-40 px cap height; annotation text on a 480-row ultrasound
# frame is 8-14 px, so small images are enlarged first. 2x measured better than 3x on
# speckled frames (3x turns speckle into "words") and costs half the time.
UPSCALE_BELOW_ROWS = 1000
UPSCALE_FACTOR = 2
# Page segmentation mode 11 ("sparse text, in no particular order") suits annotations
# scattered over an image; psm 6 (one uniform block) found the same words on test frames
# but took ~5x as long and invented more words in the speckle.
PSM = 11
TESSERACT_CONFIG = f"--psm {PSM} --oem 1 -c tessedit_do_invert=0"
# Confidence (0-100) a word needs. Speckle yields short "words" at 30-60; real annotation
# text scores 90+, and short words, where noise lives, must score higher.
MIN_CONFIDENCE = 50.0
MIN_CONFIDENCE_SHORT = 60.0
SHORT_WORD = 3
PAD_PX = 3  # anti-aliased edges and descenders lie just outside Tesseract's glyph boxes
MERGE_GAP_PX = 2  # after padding, boxes this close are one text group
SURE_CONFIDENCE = 80.0  # real annotation text scores 85+, speckle rarely 70
MAX_PASSES = 3  # read, mask what was read, read again: at most this many times
TIMEOUT_S = 120  # one Tesseract run; a hung OCR must not hold a worker forever


class OcrError(RuntimeError):
    """Tesseract failed or timed out on an image (the message carries no patient data)."""


def is_available() -> str | None:
    """None when OCR can run here, else what is missing and how to get it.

    Checked at start-up: a gateway that must clean pixels and cannot read them refuses to
    start, rather than forwarding unredacted pixels.
    """
    try:
        import pytesseract
    except ImportError:
        return "pytesseract (pip install pytesseract)"
    try:
        pytesseract.get_tesseract_version()
    except (pytesseract.TesseractNotFoundError, OSError):
        return "tesseract binary (apt install tesseract-ocr, or put tesseract on PATH)"
    try:
        languages = pytesseract.get_languages(config="")
    except (pytesseract.TesseractError, OSError) as exc:
        return f"eng traineddata (tesseract --list-langs failed: {type(exc).__name__})"
    if "eng" not in languages:
        return "eng traineddata (apt install tesseract-ocr-eng, or set TESSDATA_PREFIX)"
    return None


@dataclass(frozen=True)
class Word:
    """Text Tesseract read, with its box in the original image's coordinates.

    After merging, one Word may hold several words of a line (joined by spaces); its
    confidence is the lowest of them.
    """

    box: Box
    text: str = field(repr=False)  # patient data: never in a repr or a log line
    confidence: float
    detected: float = 0.0  # the text detector's confidence that the box holds a word


def detect_text(image: np.ndarray) -> list[Word]:
    """Words in an 8-bit grayscale image, boxes padded and merged per line.

    Both polarities are read (the image and its inverse), because Tesseract expects dark text
    on a light page and most modality annotations are light on dark; small images are
    enlarged first. Raises OcrError if Tesseract fails.
    """
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"detect_text needs a 2-D uint8 image, got {image.dtype} {image.shape}")
    height, width = image.shape
    if height == 0 or width == 0:
        return []
    scale = UPSCALE_FACTOR if height < UPSCALE_BELOW_ROWS else 1
    # Tesseract's sparse mode skips some words beside others it reads; masking what was
    # found and reading again finds them (measured on real ultrasound screens).
    found: list[Word] = []
    masked = image
    for _ in range(MAX_PASSES):
        enlarged = _enlarge(masked, scale)
        new: list[Word] = []
        for variant in (enlarged, 255 - enlarged):
            new += _read(variant, scale, width, height)
        found += new
        # Speckle yields a few unsure "words" on every pass; read again only after sure ones.
        if not any(w.confidence >= SURE_CONFIDENCE for w in new):
            break
        masked = masked.copy()
        fill = int(np.median(image))
        for word in new:
            box = word.box.padded(1, width, height)
            masked[box.y0 : box.y1, box.x0 : box.x1] = fill
    return _merge_words(_drop_duplicates(found), width, height)


def _enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return image
    from PIL import Image

    rows, cols = image.shape
    resized = Image.fromarray(image).resize((cols * scale, rows * scale), Image.Resampling.BICUBIC)
    return np.asarray(resized)


def _read(image: np.ndarray, scale: int, width: int, height: int) -> list[Word]:
    """One Tesseract pass; boxes mapped back to the original image and clipped to it."""
    import pytesseract
    from PIL import Image

    try:
        data = pytesseract.image_to_data(
            Image.fromarray(image),
            lang="eng",
            config=TESSERACT_CONFIG,
            output_type=pytesseract.Output.DICT,
            timeout=TIMEOUT_S,
        )
    except RuntimeError as exc:  # pytesseract raises RuntimeError on timeout
        raise OcrError(f"tesseract timed out after {TIMEOUT_S} s") from exc
    except (pytesseract.TesseractError, OSError) as exc:
        # TesseractError's message is tesseract's stderr, never the text read.
        raise OcrError(f"tesseract failed ({type(exc).__name__})") from exc
    words: list[Word] = []
    for text, conf, left, top, w, h in zip(
        data["text"],
        data["conf"],
        data["left"],
        data["top"],
        data["width"],
        data["height"],
        strict=True,
    ):
        text = str(text).strip()
        confidence = float(conf)
        if not _worth_keeping(text, confidence):
            continue
        x0, y0 = left // scale, top // scale
        x1, y1 = -(-(left + w) // scale), -(-(top + h) // scale)  # round the far edge out
        box = Box(x0, y0, x1, y1, "ocr").clipped(width, height)
        if box.area() > 0:
            words.append(Word(box, text, confidence))
    return words


def _worth_keeping(text: str, confidence: float) -> bool:
    if not any(char.isalnum() for char in text):
        return False
    needed = MIN_CONFIDENCE_SHORT if len(text) <= SHORT_WORD else MIN_CONFIDENCE
    return confidence >= needed


def _overlap_ratio(a: Box, b: Box) -> float:
    """Intersection over the smaller box: how much one reading covers the other."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    if w <= 0 or h <= 0:
        return 0.0
    return (w * h) / max(1, min(a.area(), b.area()))


def _drop_duplicates(words: list[Word]) -> list[Word]:
    """The same word read in both polarities appears twice; keep the surer reading."""
    kept: list[Word] = []
    for word in sorted(words, key=lambda w: -w.confidence):
        if all(_overlap_ratio(word.box, other.box) < 0.5 for other in kept):
            kept.append(word)
    return kept


def _merge_words(words: list[Word], width: int, height: int) -> list[Word]:
    """Pad each word, join the words of a line, then merge touching groups (merge_boxes).

    A name split into words is still a name, so a line is judged and blanked as a whole,
    spaces included. Lines closer than the gap merge too, which over-redacts a little and
    never under-redacts.
    """
    if not words:
        return []
    padded = [w.box.padded(PAD_PX, width, height) for w in words]
    # Union-find over same-line neighbours (judged on the unpadded glyph boxes).
    parent = list(range(len(words)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            if same_line_neighbours(words[i].box, words[j].box):
                parent[root(i)] = root(j)
    lines: dict[int, Box] = {}
    for i, box in enumerate(padded):
        r = root(i)
        lines[r] = box if r not in lines else lines[r].union(box)
    merged = merge_boxes(lines.values(), MERGE_GAP_PX)
    line_height = max(1, int(statistics.median(w.box.height for w in words)))
    out: list[Word] = []
    for group_box in merged:
        members = [w for box, w in zip(padded, words, strict=True) if box.intersects(group_box)]
        if not members:
            continue
        # Reading order: by line (centre row in line-height bands), then left to right.
        members.sort(key=lambda w: ((w.box.y0 + w.box.height // 2) // line_height, w.box.x0))
        text = " ".join(w.text for w in members)
        out.append(Word(group_box, text, min(w.confidence for w in members)))
    return out


# --- what to redact --------------------------------------------------------------------


class AllowListError(YamlFileError):
    """Problems in an allow-list file, one line each (`FILE: 'key': reason`)."""


def _entry(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise value_error("allow_entry", "entry must be text (put it in quotes)")
    return value


def _regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise value_error("allow_regex", f"not a valid regular expression ({exc})") from None


def _why(value: object) -> object:
    if not isinstance(value, str) or not value.strip():
        raise value_error("allow_reason", "say why it is safe (a reason is required)")
    return value


def _entries(value: object) -> object:
    if value and not isinstance(value, dict):
        raise value_error("allow_section", "expected a mapping of entry: reason")
    return value or {}


_Why = Annotated[Any, AfterValidator(_why)]
_Words = dict[Annotated[Any, AfterValidator(_entry)], _Why]
_Patterns = dict[Annotated[Any, AfterValidator(_entry), AfterValidator(_regex)], _Why]


class _AllowListFile(BaseModel):
    """The file's schema: every entry says why it is safe, so a reviewer can judge it."""

    model_config = ConfigDict(extra="forbid")
    words: Annotated[_Words, BeforeValidator(_entries)] = {}
    patterns: Annotated[_Patterns, BeforeValidator(_entries)] = {}


@dataclass
class AllowList:
    """Text that is never patient data: orientation markers, units, scale numbers, modes.

    In redact_all_text mode, a word group is kept only when the whole of it, or every one of
    its space-separated tokens, is allowed; anything else is blanked.
    """

    words: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AllowList:
        """Load `conf/pixel_allowlist.yaml` (keys `words` and `patterns`, each a mapping of
        entry to the reason it is safe). Raises AllowListError naming file and key."""
        shown = os.fspath(path)
        try:
            data = read_mapping(path, shown, empty_ok=True)
        except YamlFileError as exc:
            raise AllowListError(exc.problems) from None
        return cls.from_mapping(data, shown)

    @classmethod
    def from_mapping(cls, data: Any, shown: str = "(allowlist)") -> AllowList:
        """Build from parsed YAML, collecting every problem before raising."""
        data = {} if data is None else data
        try:
            parsed = validate(_AllowListFile, data, shown, unknown_first=True)
        except YamlFileError as exc:
            raise AllowListError(exc.problems) from None
        words = frozenset(entry.strip().lower() for entry in parsed.words)
        return cls(words, tuple(parsed.patterns))

    def _allows_one(self, text: str) -> bool:
        return text.lower() in self.words or any(p.fullmatch(text) for p in self.patterns)

    def allows(self, text: str) -> bool:
        """True when `text` (a word or a merged group of words) is safe to leave: it splits
        into runs of words each allowed whole ("W 400" "L 40": a label with its value)."""
        tokens = text.split()
        # reach[i]: the first i tokens split into allowed runs.
        reach = [True] + [False] * len(tokens)
        for end in range(1, len(tokens) + 1):
            reach[end] = any(
                reach[start] and self._allows_one(" ".join(tokens[start:end]))
                for start in range(end)
            )
        return reach[-1]


_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# Dates as devices burn them in: 12/03/2021, 2021-03-12, 12.03.21, 12-Mar-2021, Mar 12 2021,
# and times (PS3.15 E: acquisition times are removed from the header, so from pixels too).
_DATE_OR_TIME = re.compile(
    r"(?<!\d)(?:"
    r"\d{1,2}[./\-]\d{1,2}[./\-]\d{2,4}"
    r"|\d{4}[./\-]\d{1,2}[./\-]\d{1,2}"
    rf"|\d{{1,2}}[\s./\-]?{_MONTHS}[\s./\-,]*\d{{2,4}}"
    rf"|{_MONTHS}[\s./\-]?\d{{1,2}}(?:st|nd|rd|th)?[\s,./\-]+\d{{2,4}}"
    r"|\d{1,2}:\d{2}(?::\d{2})?"
    r")(?!\d)",
    re.IGNORECASE,
)
_LONG_DIGIT_RUN = re.compile(r"\d{5,}")  # IDs, accession numbers, compact dates
# OCR confusions between letters and digits, folded before comparing with names.
_FOLD = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "5": "s", "8": "b", "$": "s"})
MIN_FUZZY_NAME = 5  # shorter name parts are matched exactly only (too many near misses)


def looks_like_date(text: str) -> bool:
    """A date or time in any common burned-in format."""
    return _DATE_OR_TIME.search(text) is not None


def _near_name(text: str, identifiers: Identifiers) -> bool:
    """A token that is a name part read with one OCR slip ("SMlTH" for "SMITH")."""
    names = [_fold(w) for w in identifiers.words if len(w) >= MIN_FUZZY_NAME]
    if not names:
        return False
    for token in re.split(r"[^0-9a-z|$]+", text.lower()):
        folded = _fold(token)
        if len(folded) < MIN_FUZZY_NAME:
            continue
        if any(_within_one_edit(folded, name) for name in names):
            return True
    return False


def _fold(text: str) -> str:
    return text.lower().translate(_FOLD)


def _within_one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def identifies(text: str, identifiers: Identifiers, recognizer: Recognizer | None = None) -> bool:
    """True when OCR text holds an identifier of the instance or looks like one (a date or
    time, a run of 5+ digits, a name part with an OCR slip), or the free-text recognizer
    finds PHI in it (another person's name, a phone number, an address)."""
    # OCR reads the PN separator "^" as "*" or "~"; normalise() only knows "^" and "=".
    spaced = re.sub(r"[*~_,;:]+", " ", text)
    return (
        identifiers.found_in(text)
        or identifiers.found_in(spaced)
        or looks_like_date(text)
        or _LONG_DIGIT_RUN.search(text) is not None
        or _near_name(text, identifiers)
        or (recognizer is not None and recognizer.contains_phi(text))
    )


def boxes_to_redact(
    words: Iterable[Word],
    mode: str,
    allow: AllowList,
    identifiers: Identifiers,
    recognizer: Recognizer | None = None,
) -> list[Box]:
    """Boxes to blank for these words.

    redact_all_text: every word group the allow list does not allow (the safe default when
    annotations are unknown). redact_identifiers: only groups that identify the patient
    (see `identifies`); the rest of the annotation, e.g. measurements, stays readable.
    """
    if mode not in MODES:
        raise ValueError(f"unknown pixel redaction mode {mode!r} (expected one of {MODES})")
    chosen: list[Box] = []
    for word in words:
        if not word.text.strip():  # found but not read: what it says is unknown
            chosen.append(word.box)
        elif mode == "redact_all_text":
            if not allow.allows(word.text):
                chosen.append(word.box)
        elif identifies(word.text, identifiers, recognizer):
            chosen.append(word.box)
    return chosen
