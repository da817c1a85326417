"""Clean a PDF by rendering it: PHI boxes painted black, pages rebuilt from the images.

Editing a PDF in place leaves too much behind (text under a black rectangle, metadata,
XMP, annotations, attachments, form values, JavaScript, earlier revisions), so each page
is rendered with PDFium, the boxes of PHI found in its text layer (and, for scanned pages,
by OCR) are painted over, and a new PDF is written from the images alone: the output has
no text layer at all, only pixels that were looked at.

Fail closed: a page whose visible content we cannot read (no text layer, a font without
a Unicode map, large images, text drawn as outlines) needs OCR; without an OCR callable it
raises DocumentError. PDFium is not thread-safe, so all use of it here holds one lock (the
gateway's workers are processes, each with its own lock).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageChops, ImageDraw

from gateway.base.pdf_writer import ImagePage, image_pdf
from gateway.documents.redaction import DocumentError, FindSpans, OcrWords, merge_spans

__all__ = ["MAX_PAGES", "CleanedPdf", "clean_pdf"]

DPI = 150  # keeps 8 pt text legible; 200 dpi took 2.5x the time and 1.4x the bytes (bench)
MAX_PAGES = 200
MAX_PAGE_PIXELS = 25_000_000  # a larger page is rendered at a lower resolution ...
MIN_SCALE = 0.25  # ... down to 18 dpi; a page needing less is refused
# A page whose images cover this share of it may show text that only OCR can read (a
# scanned letter, a screenshot, a key image with a burned-in name); a logo is below it.
OCR_IMAGE_SHARE = 0.05
PAD_PT = 1.0  # loose character boxes hug the font's ascent and descent; anti-aliasing spills
MAX_FORM_DEPTH = 15  # form XObjects within form XObjects: PDFium's own default limit
# Text converted to outlines is drawn as paths, one per glyph or word, that the text layer
# does not hold: this many small filled paths on a page mean it needs OCR.
OUTLINE_GLYPHS = 24
GLYPH_PT = 36.0  # a glyph or word outline fits in a box this size (points)
GREY_TOLERANCE = 6  # channel spread below which a rendered page is stored as greyscale
BLACK = (0, 0, 0)

_PDFIUM_LOCK = threading.Lock()
_NO_TEXT = "scanned PDF page without OCR"


@dataclass(frozen=True)
class CleanedPdf:
    """The rebuilt PDF and what was done to it (counts only: no text)."""

    data: bytes
    pages: int
    redacted: int


@dataclass(frozen=True)
class _PixelBox:
    x0: int
    y0: int
    x1: int
    y1: int

    def union(self, other: _PixelBox) -> _PixelBox:
        return _PixelBox(
            min(self.x0, other.x0),
            min(self.y0, other.y0),
            max(self.x1, other.x1),
            max(self.y1, other.y1),
        )

    def same_line(self, other: _PixelBox) -> bool:
        """Vertical overlap of at least half the shorter box: characters of one line."""
        overlap = min(self.y1, other.y1) - max(self.y0, other.y0)
        shorter = min(self.y1 - self.y0, other.y1 - other.y0)
        return overlap > 0 and overlap * 2 >= shorter


def clean_pdf(data: bytes, find_spans: FindSpans, ocr_words: OcrWords | None) -> CleanedPdf:
    """Render, redact and rebuild every page of `data`; raises DocumentError when unsafe."""
    with _PDFIUM_LOCK:
        pdf = _open(data)
        try:
            count = len(pdf)
            if count > MAX_PAGES:
                raise DocumentError(f"PDF has {count} pages, more than the {MAX_PAGES} allowed")
            pages: list[ImagePage] = []
            redacted = 0
            for index in range(count):
                try:
                    page = pdf[index]
                except pdfium.PdfiumError:
                    raise DocumentError(f"PDF page {index + 1} cannot be loaded") from None
                try:
                    cleaned, boxes = _clean_page(page, index, find_spans, ocr_words)
                except pdfium.PdfiumError:
                    # PDFium's messages name the call that failed, never the page's text.
                    raise DocumentError(f"PDF page {index + 1} cannot be read") from None
                finally:
                    page.close()
                pages.append(cleaned)
                redacted += boxes
        finally:
            pdf.close()
    return CleanedPdf(image_pdf(pages), len(pages), redacted)


def _open(data: bytes) -> pdfium.PdfDocument:
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentError("encrypted PDF (a password is needed to open it)") from None
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise DocumentError("encrypted PDF (unsupported security handler)") from None
        raise DocumentError("corrupt PDF (PDFium cannot open it)") from None
    # An owner-password PDF opens without a password; its author restricted what may be
    # done with the text, and the gateway does not decide to lift that: refuse it too.
    if pdfium_c.FPDF_GetSecurityHandlerRevision(pdf.raw) != -1:
        pdf.close()
        raise DocumentError("encrypted PDF (it has a security handler)")
    return pdf


def _clean_page(
    page: pdfium.PdfPage, index: int, find_spans: FindSpans, ocr_words: OcrWords | None
) -> tuple[ImagePage, int]:
    width_pt, height_pt = page.get_size()
    if not (width_pt > 0 and height_pt > 0):
        raise DocumentError(f"PDF page {index + 1} has no area")
    scale = min(DPI / 72, math.sqrt(MAX_PAGE_PIXELS / (width_pt * height_pt)))
    while math.ceil(width_pt * scale) * math.ceil(height_pt * scale) > MAX_PAGE_PIXELS:
        scale *= 0.999  # PDFium rounds the bitmap's size up or down; stay within the bound
    if scale < MIN_SCALE:
        raise DocumentError(f"PDF page {index + 1} is too large to render")
    # Annotations and form widgets are not drawn: their text is not in the page's text
    # layer, so it could not be checked; dropping them is what "no annotations" means.
    bitmap = page.render(
        scale=scale,
        draw_annots=False,
        may_draw_forms=False,
        fill_color=(255, 255, 255, 255),
    )
    try:
        image = bitmap.to_pil().convert("RGB")
        to_pixels = bitmap.get_posconv(page)
        layer = _text_layer(page, find_spans, to_pixels, scale, image.size)
    finally:
        bitmap.close()
    boxes = layer.boxes
    reason = None
    if not layer.readable:
        reason = "PDF page has text without a Unicode map and needs OCR"
    elif not layer.has_text and _has_content(page):
        reason = _NO_TEXT
    elif _image_share(page, width_pt * height_pt) >= OCR_IMAGE_SHARE:
        reason = "PDF page with images needs OCR"
    elif _glyph_paths(page, None, 0) >= OUTLINE_GLYPHS:
        reason = "PDF page with text drawn as outlines needs OCR"
    if reason is not None:
        if ocr_words is None:
            raise DocumentError(f"{reason} (page {index + 1})")
        boxes = boxes + _ocr_boxes(image, ocr_words, find_spans, index)
    _paint(image, boxes)
    return (
        ImagePage(_maybe_grey(image), width_pt, height_pt),
        len(boxes),
    )


def _page_chars(textpage: pdfium.PdfTextPage) -> Iterator[tuple[str, bool]]:
    """Each character of the text layer and whether PDFium could map it to Unicode.

    Read one index at a time (not with GetText) so text offsets equal character indices:
    GetText's UTF-16 would shift them at every character outside the BMP.
    """
    for i in range(textpage.count_chars()):
        code = pdfium_c.FPDFText_GetUnicode(textpage.raw, i)
        mapped = pdfium_c.FPDFText_HasUnicodeMapError(textpage.raw, i) != 1
        char = chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else "\ufffd"
        yield char, mapped


@dataclass(frozen=True)
class _TextLayer:
    """The PHI boxes of a page's text layer and whether that layer can be trusted.

    `readable` is False when a glyph has no Unicode mapping: it is drawn as one thing and
    extracted as another, so PHI could show that find_spans never saw.
    """

    boxes: list[_PixelBox]
    readable: bool
    has_text: bool


def _text_layer(
    page: pdfium.PdfPage,
    find_spans: FindSpans,
    to_pixels: pdfium.PdfPosConv,
    scale: float,
    size: tuple[int, int],
) -> _TextLayer:
    """Pixel boxes of the PHI in the page's text layer, one per span and line."""
    textpage = page.get_textpage()
    try:
        chars = list(_page_chars(textpage))
        readable = all(mapped for char, mapped in chars if not char.isspace())
        text = "".join(char for char, _ in chars)
        boxes: list[_PixelBox] = []
        if text.strip():
            pad = max(1, round(PAD_PT * scale))
            for start, end in merge_spans(find_spans(text), len(text)):
                line: _PixelBox | None = None
                for i in range(start, end):
                    if text[i].isspace():
                        continue
                    box = _char_box(textpage, i, to_pixels)
                    if box is None:
                        continue
                    if line is not None and line.same_line(box):
                        line = line.union(box)
                    else:
                        if line is not None:
                            boxes.append(_padded(line, pad, size))
                        line = box
                if line is not None:
                    boxes.append(_padded(line, pad, size))
        return _TextLayer(boxes, readable, has_text=bool(text.strip()))
    finally:
        textpage.close()


def _char_box(
    textpage: pdfium.PdfTextPage, index: int, to_pixels: pdfium.PdfPosConv
) -> _PixelBox | None:
    # The loose box spans the font's ascent to descent: it covers accents and descenders
    # the tight glyph box leaves out, and is the same height for every character of a line.
    left, bottom, right, top = textpage.get_charbox(index, loose=True)
    if right <= left and top <= bottom:
        return None
    corners = [to_pixels.to_bitmap(x, y) for x in (left, right) for y in (bottom, top)]
    xs = [x for x, _ in corners]
    ys = [y for _, y in corners]
    return _PixelBox(min(xs), min(ys), max(xs) + 1, max(ys) + 1)


def _padded(box: _PixelBox, pad: int, size: tuple[int, int]) -> _PixelBox:
    width, height = size
    return _PixelBox(
        max(box.x0 - pad, 0),
        max(box.y0 - pad, 0),
        min(box.x1 + pad, width),
        min(box.y1 + pad, height),
    )


def _has_content(page: pdfium.PdfPage) -> bool:
    """Whether the page draws anything at all (an empty page needs no OCR)."""
    return pdfium_c.FPDFPage_CountObjects(page.raw) > 0


def _image_share(page: pdfium.PdfPage, area: float) -> float:
    """Share of the page its images cover (summed, so overlapping images count twice).

    An image inside a form XObject reports its bounds in the form's space; the forms'
    matrices map them onto the page, or a small image in a form drawn at 6x would pass
    for a logo.
    """
    return _image_area(page, None, [], 0) / area


def _image_area(
    page: pdfium.PdfPage,
    form: pdfium.PdfObject | None,
    to_page: list[pdfium.PdfMatrix],
    level: int,
) -> float:
    covered = 0.0
    for item in page.get_objects(max_depth=1, form=form, level=level):
        if item.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            left, bottom, right, top = item.get_bounds()
            corners = [(x, y) for x in (left, right) for y in (bottom, top)]
            for matrix in reversed(to_page):  # innermost form first
                corners = [matrix.on_point(x, y) for x, y in corners]
            xs, ys = [x for x, _ in corners], [y for _, y in corners]
            covered += (max(xs) - min(xs)) * (max(ys) - min(ys))
        elif item.type == pdfium_c.FPDF_PAGEOBJ_FORM:
            if level >= MAX_FORM_DEPTH:
                raise DocumentError("PDF page with forms nested too deep")
            covered += _image_area(page, item, [*to_page, item.get_matrix()], level + 1)
    return covered


def _glyph_paths(page: pdfium.PdfPage, form: pdfium.PdfObject | None, level: int) -> int:
    """How many small filled paths the page draws (glyphs or words as outlines)."""
    count = 0
    for item in page.get_objects(max_depth=1, form=form, level=level):
        if item.type == pdfium_c.FPDF_PAGEOBJ_PATH:
            left, bottom, right, top = item.get_bounds()
            count += 0 < right - left <= GLYPH_PT and 0 < top - bottom <= GLYPH_PT
        elif item.type == pdfium_c.FPDF_PAGEOBJ_FORM:
            if level >= MAX_FORM_DEPTH:
                raise DocumentError("PDF page with forms nested too deep")
            count += _glyph_paths(page, item, level + 1)
        if count >= OUTLINE_GLYPHS:
            break
    return count


def _ocr_boxes(
    image: Image.Image, ocr_words: OcrWords, find_spans: FindSpans, index: int
) -> list[_PixelBox]:
    """Boxes of the OCR'd words that find_spans flags, reading the words as one text.

    Words are joined with spaces in the order OCR gives them, so a name split over two
    words ("John" "Smith") is seen whole by the recognizer.
    """
    try:
        words = ocr_words(image.copy())  # a copy: the callable may not alter our pixels
    except Exception as exc:  # any failure to read the page means it cannot be cleaned
        raise DocumentError(f"OCR failed on PDF page {index + 1} ({type(exc).__name__})") from exc
    text_parts: list[str] = []
    starts: list[int] = []
    offset = 0
    for word, _ in words:
        starts.append(offset)
        text_parts.append(word)
        offset += len(word) + 1
    text = " ".join(text_parts)
    spans = merge_spans(find_spans(text), len(text)) if text.strip() else []
    boxes: list[_PixelBox] = []
    for (word, (x0, y0, x1, y1)), start in zip(words, starts, strict=True):
        end = start + len(word)
        if any(s < end and start < e for s, e in spans):
            box = _PixelBox(int(x0), int(y0), int(x1), int(y1))
            boxes.append(_padded(box, 2, image.size))
    return boxes


def _paint(image: Image.Image, boxes: list[_PixelBox]) -> None:
    draw = ImageDraw.Draw(image)
    for box in boxes:
        if box.x1 > box.x0 and box.y1 > box.y0:
            draw.rectangle((box.x0, box.y0, box.x1 - 1, box.y1 - 1), fill=BLACK)


def _maybe_grey(image: Image.Image) -> Image.Image:
    """A greyscale copy when the page has no colour: a third of the bytes, same look."""
    red, green, blue = image.split()
    for a, b in ((red, green), (green, blue)):
        if ImageChops.difference(a, b).getextrema()[1] > GREY_TOLERANCE:  # type: ignore[index]
            return image
    return image.convert("L")
