"""How many PDF pages per second the document cleaner handles, text and scanned.

Sizing the documents stage needs its own cost: every page is rendered, redacted and
re-encoded as an image whatever it holds, and a scanned page is read by Tesseract too.
This writes (not timed) a report of text pages (36 lines of Helvetica each, names, dates
and phone numbers among findings) and a report of scanned pages (the same lines drawn at
150 dpi), wraps each in an Encapsulated PDF instance, and times
`clean_encapsulated_document` on them:

  text, regex        find_spans is a regex: the cleaner's own cost (render, boxes, JPEG);
  text, recognizer   find_spans is the gateway's recognizer, its cache cleared first;
  scanned, OCR       each page also read by the pixel engine's Tesseract reader.

It prints figures and never judges them: timings depend on the machine. Tesseract runs on
one thread (OMP_THREAD_LIMIT=1), as the worker pool runs it.

    .venv/bin/python bench/documents.py [--pages 20] [--scanned 3] [--dpi 150]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from gateway.base.pdf_writer import ImagePage, image_pdf, text_pdf
from gateway.documents import clean_encapsulated_document
from gateway.documents import pdf as pdf_cleaner
from gateway.pixels.ocr import detect_text, is_available
from gateway.text.recognizer import default_recognizer

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
LINES_PER_PAGE = 36
# Fictional values only: the benchmark must not need patient data to run.
NAMES = ["Jane Planted", "Zebedee Crumb", "Quentin Morrow", "Ada Fernsby", "Hal Wickett"]
FINDINGS = [
    "Lungs are clear without focal consolidation.",
    "No pleural effusion or pneumothorax is seen.",
    "Heart size is within normal limits.",
    "Mild degenerative change of the thoracic spine.",
    "No acute osseous abnormality.",
    "Comparison is made with the prior examination.",
]
FIND_REGEX = re.compile("|".join(re.escape(name) for name in NAMES) + r"|\d{2}/\d{2}/\d{4}")


def report_lines(page: int) -> list[str]:
    rng = random.Random(page)
    lines = []
    for row in range(LINES_PER_PAGE):
        if row % 6 == 0:
            name = rng.choice(NAMES)
            lines.append(
                f"Seen by {name} on {rng.randint(1, 28):02d}/03/2024, tel 555-201-33{row:02d}"
            )
        else:
            lines.append(rng.choice(FINDINGS))
    return lines


def scanned_image(lines: list[str]) -> Image.Image:
    image = Image.new("L", (1275, 1650), 255)  # Letter at 150 dpi
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 26) if FONT.exists() else ImageFont.load_default(26)
    for row, line in enumerate(lines[:24]):
        draw.text((150, 150 + row * 56), line, font=font, fill=0)
    return image


def instance(document: bytes) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = document + b"\x00" * (len(document) % 2)
    ds.EncapsulatedDocumentLength = len(document)
    return ds


def regex_spans(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in FIND_REGEX.finditer(text)]


def ocr_words(image: Image.Image) -> list[tuple[str, tuple[int, int, int, int]]]:
    words = detect_text(np.asarray(image.convert("L")))
    return [(w.text, (w.box.x0, w.box.y0, w.box.x1, w.box.y1)) for w in words]


def time_clean(
    document: bytes,
    find_spans: Callable[[str], list],
    ocr: Callable[[Image.Image], list] | None = None,
) -> tuple[float, int, int, int]:
    """Seconds, pages, redactions and output bytes for one cleaning of `document`."""
    ds = instance(document)
    started = time.perf_counter()
    report = clean_encapsulated_document(ds, find_spans, ocr)
    seconds = time.perf_counter() - started
    assert report is not None
    return seconds, report.pages, report.redacted, int(ds.EncapsulatedDocumentLength)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20, help="text pages (default 20)")
    parser.add_argument("--scanned", type=int, default=3, help="scanned pages (default 3)")
    parser.add_argument("--dpi", type=int, default=pdf_cleaner.DPI, help="rendering dpi")
    args = parser.parse_args(argv)
    if args.pages < 1 or args.scanned < 0 or args.dpi < 18:
        parser.error("--pages must be at least 1, --scanned at least 0, --dpi at least 18")
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    pdf_cleaner.DPI = args.dpi
    print(
        f"python {platform.python_version()}, pypdfium2 {pdfium.PYPDFIUM_INFO}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}, {args.dpi} dpi"
    )
    text_document = text_pdf([report_lines(page) for page in range(args.pages)])
    time_clean(text_pdf([report_lines(0)]), regex_spans)  # first-call costs are not throughput
    runs = [("text, regex", len(text_document), *time_clean(text_document, regex_spans))]
    recognizer = default_recognizer()
    recognizer.find("warm the name lists")  # loading the lists is start-up, not throughput
    recognizer.cache_clear()
    runs.append(
        ("text, recognizer", len(text_document), *time_clean(text_document, recognizer.find))
    )
    missing = is_available()
    if args.scanned and missing is None:
        pages = [
            ImagePage(scanned_image(report_lines(1000 + page)), 612.0, 792.0)
            for page in range(args.scanned)
        ]
        scanned_document = image_pdf(pages)
        runs.append(
            (
                "scanned, OCR",
                len(scanned_document),
                *time_clean(scanned_document, regex_spans, ocr_words),
            )
        )
    elif args.scanned:
        print(f"scanned pages skipped: OCR not available ({missing})")

    print()
    print(
        f"{'measurement':<18} {'pages':>6} {'pages/s':>8} {'ms/page':>8} {'boxes/page':>11}"
        f" {'in KiB/page':>12} {'out KiB/page':>13}"
    )
    for name, size_in, seconds, pages, redacted, size_out in runs:
        print(
            f"{name:<18} {pages:>6} {pages / seconds:>8.2f} {1000 * seconds / pages:>8.0f}"
            f" {redacted / pages:>11.1f} {size_in / 1024 / pages:>12.1f}"
            f" {size_out / 1024 / pages:>13.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
