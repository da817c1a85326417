"""Encapsulated documents come out cleaned and valid: PDF, CDA, plain text, STL.

The PDFs are written by hand (document_samples.py) with the places PHI hides in a real
report: the text layer, /Info, XMP, an annotation, a form field, an attachment,
JavaScript, a scanned page. Each test plants values and looks for them in the output's
bytes (Latin-1 and UTF-16) and in what PDFium can extract from it; usefulness is shown by
reading the clean words back from the rendered output with Tesseract.
"""

from __future__ import annotations

import io
import random
import re
import struct
import xml.etree.ElementTree as ET

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from document_samples import (
    ENCAPSULATED_CDA,
    KeyImagePage,
    Page,
    PdfSample,
    cda_document,
    encapsulated_instance,
    encrypted_pdf,
    image_in_form_pdf,
    outlined_text_pdf,
    scanned_page,
    unmapped_font_pdf,
)
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from gateway.documents import (
    DocumentError,
    DocumentReport,
    clean_encapsulated_document,
    placeholder_document,
)
from gateway.documents import pdf as pdf_cleaner
from gateway.pixels.ocr import detect_text, is_available
from gateway.text.recognizer import default_recognizer

OCR_MISSING = is_available()
needs_ocr = pytest.mark.skipif(OCR_MISSING is not None, reason=f"no Tesseract: {OCR_MISSING}")

PLANTED = ("Jane Planted", "Quarrington", "Hollowbrook", "MRN-4455667", "Zebedee Crumb")
CLEAN_LINE = "Findings: normal chest radiograph"
V3 = "{urn:hl7-org:v3}"


def find_spans(text: str) -> list[tuple[int, int]]:
    """The planted values, and every capitalised word pair (a crude name recognizer)."""
    planted = "|".join(re.escape(value) for value in PLANTED)
    pattern = rf"{planted}|\b[A-Z][a-z]+ [A-Z][a-z]+\b"
    return [match.span() for match in re.finditer(pattern, text)]


def ocr_words(image: Image.Image) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The pixel engine's Tesseract reader in the shape the document cleaner takes."""
    words = detect_text(np.asarray(image.convert("L")))
    return [(word.text, (word.box.x0, word.box.y0, word.box.x1, word.box.y1)) for word in words]


def document_of(ds: Dataset) -> bytes:
    return bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength]


def encodings_of(value: str) -> list[bytes]:
    forms = []
    for text in (value, value.upper()):
        for encoding in ("latin-1", "utf-16-le", "utf-16-be"):
            forms.append(text.encode(encoding))
    return forms


def assert_no_planted_bytes(data: bytes, planted: tuple[str, ...] = PLANTED) -> None:
    for value in planted:
        for form in encodings_of(value):
            assert form not in data, f"planted value {value!r} found in the output"


def extractable_text(data: bytes) -> str:
    pdf = pdfium.PdfDocument(data)
    try:
        return "".join(page.get_textpage().get_text_range() for page in pdf)
    finally:
        pdf.close()


def rendered_words(data: bytes, page: int = 0) -> str:
    pdf = pdfium.PdfDocument(data)
    try:
        image = pdf[page].render(scale=150 / 72).to_pil()
    finally:
        pdf.close()
    return " ".join(text for text, _ in ocr_words(image))


def report_pdf() -> PdfSample:
    return PdfSample(
        pages=[
            ["Patient: Jane Planted", CLEAN_LINE, "Referred by Zebedee Crumb"],
            ["Address: 4 Quarrington Road, Hollowbrook", "Impression: no acute disease"],
        ],
        info={"Author": "Jane Planted", "Title": "Report of Zebedee Crumb"},
        xmp="<x:xmpmeta xmlns:x='adobe:ns:meta/'><dc:creator>Jane Planted</dc:creator></x:xmpmeta>",
        annotation="Called Zebedee Crumb",
        form_value="MRN-4455667",
        attachment="Notes on Jane Planted",
        javascript="app.alert('Hollowbrook')",
    )


# --- PDF -----------------------------------------------------------------------------


def test_report_pdf_is_rebuilt_from_pixels_with_nothing_of_the_original_left() -> None:
    original = report_pdf().build()
    assert b"Jane Planted" in original  # the planted values are really there to find
    ds = encapsulated_instance(original, "application/pdf")

    report = clean_encapsulated_document(ds, find_spans)

    assert report == DocumentReport(kind="pdf", pages=2, redacted=4)
    cleaned = document_of(ds)
    assert_no_planted_bytes(bytes(ds.EncapsulatedDocument))
    assert extractable_text(cleaned).strip() == ""
    pdf = pdfium.PdfDocument(cleaned)
    try:
        assert len(pdf) == 2
        assert not any(pdf.get_metadata_dict().values())
        assert pdf.count_attachments() == 0
        assert pdf_cleaner.pdfium_c.FPDF_GetFormType(pdf.raw) == pdfium_c.FORMTYPE_NONE
        for page in pdf:
            assert pdfium_c.FPDFPage_GetAnnotCount(page.raw) == 0
    finally:
        pdf.close()
    for marker in (b"/JavaScript", b"/Metadata", b"/EmbeddedFile", b"/Annots", b"/Info"):
        assert marker not in cleaned


def test_document_length_states_the_new_document_and_the_value_is_padded_even() -> None:
    ds = encapsulated_instance(report_pdf().build(), "application/pdf")

    clean_encapsulated_document(ds, find_spans)

    value = bytes(ds.EncapsulatedDocument)
    length = ds.EncapsulatedDocumentLength
    assert len(value) % 2 == 0
    assert length in (len(value), len(value) - 1)
    assert value[length:] in (b"", b"\x00")
    assert value[:length].rstrip().endswith(b"%%EOF")
    written = io.BytesIO()
    dcmwrite(written, ds, enforce_file_format=True)
    read_back = dcmread(io.BytesIO(written.getvalue()))
    assert (
        bytes(read_back.EncapsulatedDocument)[: read_back.EncapsulatedDocumentLength]
        == (value[:length])
    )


def test_only_the_document_and_its_length_change() -> None:
    ds = encapsulated_instance(report_pdf().build(), "application/pdf", title="Report")
    before = {elem.tag: elem.value for elem in ds if elem.keyword != "EncapsulatedDocument"}

    clean_encapsulated_document(ds, find_spans)

    after = {elem.tag: elem.value for elem in ds if elem.keyword != "EncapsulatedDocument"}
    changed = {tag for tag in before if before[tag] != after[tag]}
    assert {ds[tag].keyword for tag in changed} == {"EncapsulatedDocumentLength"}
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"


@needs_ocr
def test_clean_words_of_a_text_pdf_stay_readable_and_the_name_does_not() -> None:
    ds = encapsulated_instance(report_pdf().build(), "application/pdf")

    clean_encapsulated_document(ds, find_spans)

    words = rendered_words(document_of(ds))
    assert "radiograph" in words
    for value in ("Planted", "Zebedee", "4455667"):  # text, annotation, form field
        assert value not in words


def known_and_recognized(text: str) -> list[tuple[int, int]]:
    """What the pipeline passes: the instance's own identifiers plus the gateway recognizer.

    The patient's name is known from the instance (its surname is an English word, which
    the recognizer rightly leaves alone in free text); the referrer's name, the date and
    the phone number are found by the recognizer alone.
    """
    known = [match.span() for match in re.finditer(r"Jane|Planted", text)]
    return known + [(span.start, span.end) for span in default_recognizer().find(text)]


@needs_ocr
def test_report_cleaned_with_the_gateway_recognizer_keeps_findings_and_loses_identifiers() -> None:
    lines = [
        "Patient: Jane Planted",
        "Referred by Dr. Ingrid Halvorsen on 12/03/2024",
        CLEAN_LINE,
        "Call 555-201-3344 with questions",
    ]
    ds = encapsulated_instance(PdfSample(pages=[lines]).build(), "application/pdf")

    report = clean_encapsulated_document(ds, known_and_recognized)

    assert report is not None and report.redacted >= 4
    planted = (*PLANTED, "Ingrid Halvorsen", "555-201-3344", "12/03/2024")
    assert_no_planted_bytes(bytes(ds.EncapsulatedDocument), planted)
    words = rendered_words(document_of(ds))
    assert "radiograph" in words and "questions" in words
    for value in ("Jane", "Planted", "Ingrid", "Halvorsen", "2024", "3344"):
        assert value not in words


def test_a_name_on_the_last_page_of_a_long_report_is_found() -> None:
    pages: list[Page] = [[f"Section {n}: unremarkable"] for n in range(1, 6)]
    pages.append(["Signed by Zebedee Crumb"])
    ds = encapsulated_instance(PdfSample(pages=pages).build(), "application/pdf")

    report = clean_encapsulated_document(ds, find_spans)

    assert report is not None and report.pages == 6 and report.redacted == 1
    assert len(pdfium.PdfDocument(document_of(ds))) == 6
    assert_no_planted_bytes(document_of(ds))


@needs_ocr
def test_scanned_page_is_read_by_ocr_and_the_name_on_it_blacked_out() -> None:
    scan = scanned_page(["Patient: Jane Planted", CLEAN_LINE, "Impression: no acute disease"])
    ds = encapsulated_instance(PdfSample(pages=[scan]).build(), "application/pdf")

    report = clean_encapsulated_document(ds, find_spans, ocr_words)

    assert report is not None and report.pages == 1 and report.redacted >= 1
    words = rendered_words(document_of(ds))
    assert "Planted" not in words
    assert "radiograph" in words


def test_scanned_page_without_ocr_is_refused() -> None:
    scan = scanned_page(["Patient: Jane Planted"])
    pages: list[Page] = [[CLEAN_LINE], scan]
    ds = encapsulated_instance(PdfSample(pages=pages).build(), "application/pdf")
    original = bytes(ds.EncapsulatedDocument)

    with pytest.raises(DocumentError, match="scanned PDF page without OCR") as caught:
        clean_encapsulated_document(ds, find_spans)

    assert "page 2" in str(caught.value)
    assert bytes(ds.EncapsulatedDocument) == original  # nothing half-done is left behind


def test_text_page_with_a_large_image_needs_ocr() -> None:
    """A report with a key image: the image may show a name the text layer does not hold."""
    image = scanned_page(["Jane Planted"], size=(600, 400))
    page = KeyImagePage(["Key image below"], image, rect=(72, 300, 300, 200))
    data = PdfSample(pages=[page]).build()
    assert "Key image" in extractable_text(data)  # the page has a text layer
    ds = encapsulated_instance(data, "application/pdf")

    with pytest.raises(DocumentError, match="PDF page with images needs OCR"):
        clean_encapsulated_document(ds, find_spans)


@pytest.mark.parametrize(("form_scale", "needs"), [(1, False), (6, True)])
def test_image_inside_a_form_is_measured_on_the_page(form_scale: int, needs: bool) -> None:
    """80x60 pt is a logo (1% of the page); the same image in a form drawn 6x is not."""
    data = image_in_form_pdf(scanned_page(["Jane Planted"], size=(400, 300)), form_scale)
    ds = encapsulated_instance(data, "application/pdf")

    if needs:
        with pytest.raises(DocumentError, match="PDF page with images needs OCR"):
            clean_encapsulated_document(ds, find_spans)
    else:
        assert clean_encapsulated_document(ds, find_spans) is not None


def test_page_whose_font_cannot_be_read_needs_ocr() -> None:
    ds = encapsulated_instance(unmapped_font_pdf(), "application/pdf")

    with pytest.raises(DocumentError, match="without a Unicode map"):
        clean_encapsulated_document(ds, find_spans)


def test_text_drawn_as_outlines_without_ocr_is_refused() -> None:
    """The text layer says "Findings: ...", the page also shows a name in outlines."""
    data = outlined_text_pdf(["Patient: Jane Planted", "Referred by Zebedee Crumb"], CLEAN_LINE)
    ds = encapsulated_instance(data, "application/pdf")

    with pytest.raises(DocumentError, match="text drawn as outlines needs OCR"):
        clean_encapsulated_document(ds, find_spans)


@needs_ocr
def test_text_drawn_as_outlines_is_read_by_ocr_and_the_name_blacked_out() -> None:
    data = outlined_text_pdf(["Patient: Jane Planted", "Referred by Zebedee Crumb"], CLEAN_LINE)
    assert "Planted" in rendered_words(data)
    ds = encapsulated_instance(data, "application/pdf")

    report = clean_encapsulated_document(ds, find_spans, ocr_words)

    assert report is not None and report.redacted >= 2
    words = rendered_words(document_of(ds))
    assert "Planted" not in words and "Zebedee" not in words
    assert "radiograph" in words


@needs_ocr
@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_name_on_a_rotated_page_is_blacked_out_where_it_is_shown(rotate: int) -> None:
    data = PdfSample(pages=[["Patient: Jane Planted", CLEAN_LINE]], rotate=rotate).build()
    ds = encapsulated_instance(data, "application/pdf")

    clean_encapsulated_document(ds, find_spans)

    pdf = pdfium.PdfDocument(document_of(ds))
    shown = pdf[0].render(scale=150 / 72).to_pil()
    upright = shown.rotate(rotate, expand=True)  # PIL turns anticlockwise, /Rotate clockwise
    words = " ".join(text for text, _ in ocr_words(upright))
    assert "radiograph" in words
    assert "Planted" not in words and "Jane" not in words


def test_password_protected_pdf_is_refused() -> None:
    data = encrypted_pdf(["Patient: Jane Planted"], user_password="secret", owner_password="o")
    # It is a real encrypted PDF: it opens with its password and shows the text.
    assert (
        "Jane Planted"
        in pdfium.PdfDocument(data, password="secret")[0].get_textpage().get_text_range()
    )
    ds = encapsulated_instance(data, "application/pdf")

    with pytest.raises(DocumentError, match="encrypted PDF") as caught:
        clean_encapsulated_document(ds, find_spans)

    assert "Planted" not in str(caught.value)


def test_pdf_encrypted_with_an_owner_password_only_is_refused() -> None:
    data = encrypted_pdf(["Patient: Jane Planted"], user_password="", owner_password="owner")
    assert "Jane Planted" in extractable_text(data)  # anyone can open it
    ds = encapsulated_instance(data, "application/pdf")

    with pytest.raises(DocumentError, match="encrypted PDF"):
        clean_encapsulated_document(ds, find_spans)


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4\nnot a pdf at all", b"", b"\x00" * 64, b"PK\x03\x04 a zip file"],
    ids=["garbage", "empty", "zeros", "zip"],
)
def test_corrupt_pdf_is_refused(data: bytes) -> None:
    ds = encapsulated_instance(data, "application/pdf")

    with pytest.raises(DocumentError, match="corrupt PDF"):
        clean_encapsulated_document(ds, find_spans)


def test_pdf_with_more_pages_than_allowed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_cleaner, "MAX_PAGES", 2)
    pages: list[Page] = [["one"], ["two"], ["three"]]
    ds = encapsulated_instance(PdfSample(pages=pages).build(), "application/pdf")

    with pytest.raises(DocumentError, match="3 pages, more than the 2 allowed"):
        clean_encapsulated_document(ds, find_spans)


def test_huge_page_is_rendered_at_a_lower_resolution_within_the_pixel_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pdf_cleaner, "MAX_PAGE_PIXELS", 1_000_000)
    data = PdfSample(pages=[["Patient: Jane Planted", CLEAN_LINE]]).build()
    ds = encapsulated_instance(data, "application/pdf")

    clean_encapsulated_document(ds, find_spans)

    pdf = pdfium.PdfDocument(document_of(ds))
    width, height = pdf[0].get_size()
    assert (round(width), round(height)) == (612, 792)  # the page keeps its size
    image = pdf[0].get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])
    pixels = next(iter(image)).get_px_size()
    assert pixels[0] * pixels[1] <= 1_000_000


def test_failing_ocr_is_a_document_error_naming_the_page() -> None:
    def broken_ocr(image: Image.Image) -> list[tuple[str, tuple[int, int, int, int]]]:
        raise RuntimeError("tesseract crashed")

    ds = encapsulated_instance(PdfSample(pages=[scanned_page(["x"])]).build(), "application/pdf")

    with pytest.raises(DocumentError, match=r"OCR failed on PDF page 1 \(RuntimeError\)"):
        clean_encapsulated_document(ds, find_spans, broken_ocr)


def mutations(data: bytes, count: int, seed: int) -> list[bytes]:
    """`count` copies of `data` with a few bytes changed, some also cut short."""
    rng = random.Random(seed)
    variants = []
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if rng.random() < 0.3:
            mutated = mutated[: rng.randrange(len(mutated))]
        variants.append(bytes(mutated))
    return variants


@pytest.mark.parametrize(
    ("mime", "original"),
    [
        ("application/pdf", report_pdf().build()),
        ("text/XML", cda_document(("Jane", "Planted"), ("Zebedee", "Crumb"), "Clear.")),
    ],
    ids=["pdf", "cda"],
)
def test_damaged_documents_are_cleaned_or_refused_never_crash(mime: str, original: bytes) -> None:
    outcomes = set()
    for data in mutations(original, 40, seed=len(mime)):
        ds = encapsulated_instance(data, mime)
        try:
            clean_encapsulated_document(ds, find_spans)
        except DocumentError:
            outcomes.add("refused")
            continue
        outcomes.add("cleaned")
        if mime == "application/pdf":
            assert extractable_text(document_of(ds)).strip() == ""
        else:
            ET.fromstring(document_of(ds))
    assert outcomes == {"refused", "cleaned"}  # the mutations exercise both ways


# --- CDA and XML ------------------------------------------------------------------------


def cda_instance() -> Dataset:
    document = cda_document(
        patient=("Jane", "Planted"),
        author=("Zebedee", "Crumb"),
        narrative="Seen with her husband Quarrington of Hollowbrook. Lungs are clear.",
    )
    return encapsulated_instance(document, "text/XML", sop_class=ENCAPSULATED_CDA)


def test_cda_comes_out_without_the_planted_names_and_still_parses() -> None:
    ds = cda_instance()

    report = clean_encapsulated_document(ds, find_spans)

    assert report is not None and report.kind == "cda" and report.redacted > 0
    cleaned = document_of(ds)
    assert_no_planted_bytes(cleaned, (*PLANTED, "Jane", "Zebedee", "Quarry", "Dunmore", "555"))
    assert b"ACC-778899" not in cleaned and b"19750512" not in cleaned
    root = ET.fromstring(cleaned)
    assert root.tag == f"{V3}ClinicalDocument"
    patient = root.find(f"{V3}recordTarget/{V3}patientRole/{V3}patient")
    assert patient is not None
    assert patient.find(f"{V3}name").get("nullFlavor") == "MSK"  # type: ignore[union-attr]
    assert patient.find(f"{V3}birthTime").get("nullFlavor") == "MSK"  # type: ignore[union-attr]


def test_cda_value_typed_as_a_name_or_address_is_masked() -> None:
    entry = (
        '<entry><observation classCode="OBS" moodCode="EVN"><code code="X"/>'
        '<value xsi:type="PN"><given>Ottoline</given></value>'
        '<value xsi:type="AD"><city>Ravensbeck</city></value></observation></entry>'
    )
    document = cda_document(("Jane", "Planted"), ("Zebedee", "Crumb"), "Clear.").replace(
        b"<entry>", entry.encode() + b"<entry>", 1
    )
    ds = encapsulated_instance(document, "text/XML", sop_class=ENCAPSULATED_CDA)

    clean_encapsulated_document(ds, find_spans)

    cleaned = document_of(ds).decode()
    assert "Ottoline" not in cleaned and "Ravensbeck" not in cleaned
    assert '<value xsi:type="PN" nullFlavor="MSK" />' in cleaned


def test_cda_keeps_its_clinical_content_and_codes() -> None:
    ds = cda_instance()

    clean_encapsulated_document(ds, find_spans)

    cleaned = document_of(ds).decode("utf-8")
    assert "Lungs are clear." in cleaned
    assert 'code="18748-4"' in cleaned and 'codeSystem="2.16.840.1.113883.6.1"' in cleaned
    assert 'xsi:type="PQ"' in cleaned and 'value="4.5"' in cleaned
    assert 'extension="POCD_HD000040"' in cleaned
    assert "<!--" not in cleaned  # comments are free text nobody reads: dropped
    assert cleaned.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert ds.EncapsulatedDocumentLength == len(cleaned.encode("utf-8"))


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE ClinicalDocument [<!ENTITY who "Jane Planted">]>',
        '<!DOCTYPE ClinicalDocument SYSTEM "file:///etc/passwd">',
        '<!DOCTYPE lol [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
    ],
    ids=["internal-entity", "external-dtd", "entity-expansion"],
)
def test_xml_with_a_doctype_is_refused(prolog: str) -> None:
    document = f'<?xml version="1.0"?>\n{prolog}\n<ClinicalDocument xmlns="urn:hl7-org:v3"/>'
    ds = encapsulated_instance(document.encode(), "text/XML", sop_class=ENCAPSULATED_CDA)

    with pytest.raises(DocumentError, match="DOCTYPE") as caught:
        clean_encapsulated_document(ds, find_spans)

    assert "Planted" not in str(caught.value)


def test_xml_that_does_not_parse_is_refused_without_its_text() -> None:
    document = b"<ClinicalDocument><title>Jane Planted</title>"
    ds = encapsulated_instance(document, "text/XML", sop_class=ENCAPSULATED_CDA)

    with pytest.raises(DocumentError, match="does not parse") as caught:
        clean_encapsulated_document(ds, find_spans)

    assert "Planted" not in str(caught.value)


def test_cda_narrative_cleaned_with_the_gateway_recognizer() -> None:
    narrative = "Seen with <content>Ingrid</content> Halvorsen, call 555-201-3344. Lungs clear."
    document = cda_document(("Jane", "Planted"), ("Zebedee", "Crumb"), narrative)
    ds = encapsulated_instance(document, "text/XML", sop_class=ENCAPSULATED_CDA)

    clean_encapsulated_document(ds, known_and_recognized)

    cleaned = document_of(ds).decode()
    for value in ("Ingrid", "Halvorsen", "555-201-3344", "Jane", "Planted", "Zebedee", "Crumb"):
        assert value not in cleaned
    assert "Lungs clear." in cleaned


def test_name_split_over_narrative_markup_is_found_as_one_name() -> None:
    narrative = "Seen with <content>Quentin</content> <content styleCode='Bold'>Morrow</content>."
    document = cda_document(("Jane", "Planted"), ("Zebedee", "Crumb"), narrative)
    ds = encapsulated_instance(document, "text/XML", sop_class=ENCAPSULATED_CDA)

    clean_encapsulated_document(ds, find_spans)

    cleaned = document_of(ds).decode()
    assert "Quentin" not in cleaned and "Morrow" not in cleaned
    assert "Seen with <content>*******</content>" in cleaned


def test_cells_of_a_narrative_table_are_read_apart() -> None:
    """A newline between cells: "Chest" in one cell and "Clear" in the next are no name."""
    narrative = "<table><tr><td>Chest</td><td>Clear</td></tr></table>"
    document = cda_document(("Jane", "Planted"), ("Zebedee", "Crumb"), narrative)
    ds = encapsulated_instance(document, "text/XML", sop_class=ENCAPSULATED_CDA)

    clean_encapsulated_document(ds, find_spans)

    assert "<td>Chest</td><td>Clear</td>" in document_of(ds).decode()


def test_document_embedded_in_a_cda_is_masked_not_passed_through() -> None:
    embedded = "<text mediaType='application/pdf' representation='B64'>JVBERi0xLjQK</text>"
    document = cda_document(("Jane", "Planted"), ("Zebedee", "Crumb"), "Clear.").replace(
        b"<title>Findings</title>", b"<title>Findings</title>" + embedded.encode()
    )
    ds = encapsulated_instance(document, "text/XML", sop_class=ENCAPSULATED_CDA)

    clean_encapsulated_document(ds, find_spans)

    cleaned = document_of(ds).decode()
    assert "JVBERi0" not in cleaned
    assert '<text nullFlavor="MSK" />' in cleaned


def test_cda_written_with_a_prefix_keeps_it_so_type_names_still_resolve() -> None:
    document = (
        b'<cda:ClinicalDocument xmlns:cda="urn:hl7-org:v3"'
        b' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        b"<cda:title>Report on Jane Planted</cda:title>"
        b'<cda:value xsi:type="cda:PQ" value="4.5" unit="cm" xml:lang="en"/><plain/>'
        b"</cda:ClinicalDocument>"
    )
    ds = encapsulated_instance(document, "text/XML", sop_class=ENCAPSULATED_CDA)

    clean_encapsulated_document(ds, find_spans)

    cleaned = document_of(ds).decode()
    assert '<cda:ClinicalDocument xmlns:cda="urn:hl7-org:v3"' in cleaned
    assert '<cda:value xsi:type="cda:PQ" value="4.5" unit="cm" xml:lang="en" />' in cleaned
    assert "<cda:title>Report on **** *******</cda:title>" in cleaned
    assert ET.fromstring(cleaned).find("plain") is not None  # still in no namespace


def test_xml_nested_absurdly_deep_is_refused() -> None:
    document = b"<a>" * 5000 + b"</a>" * 5000
    ds = encapsulated_instance(document, "application/xml")

    with pytest.raises(DocumentError, match="nested deeper than"):
        clean_encapsulated_document(ds, find_spans)


def test_other_xml_has_its_text_and_attributes_redacted() -> None:
    document = b'<report by="Zebedee Crumb"><p>Jane Planted is well.</p></report>'
    ds = encapsulated_instance(document, "application/xml")

    report = clean_encapsulated_document(ds, find_spans)

    assert report == DocumentReport(kind="xml", pages=1, redacted=2)
    root = ET.fromstring(document_of(ds))
    assert root.get("by") == "******* *****"
    assert root.findtext("p") == "**** ******* is well."


# --- plain text, STL, other types ---------------------------------------------------------


def test_plain_text_keeps_its_encoding_and_columns() -> None:
    text = "Name:    Jane Planted\nCity:    Hollowbrook\nRésumé:  normal\n"
    ds = encapsulated_instance(text.encode("latin-1"), "text/plain")

    report = clean_encapsulated_document(ds, find_spans)

    assert report == DocumentReport(kind="text", pages=1, redacted=2)
    cleaned = document_of(ds).decode("latin-1")
    assert cleaned == "Name:    **** *******\nCity:    ***********\nRésumé:  normal\n"


def test_binary_stl_keeps_its_triangles_and_loses_its_header() -> None:
    header = b"solid Jane Planted exported by ModelMaker".ljust(80, b" ")
    triangle = struct.pack("<12fH", *range(12), 0)
    data = header + struct.pack("<I", 2) + triangle * 2
    ds = encapsulated_instance(data, "model/stl", sop_class="1.2.840.10008.5.1.4.1.1.104.3")

    report = clean_encapsulated_document(ds, find_spans)

    assert report == DocumentReport(kind="stl", pages=1, redacted=1)
    assert document_of(ds) == bytes(80) + data[80:]


def test_ascii_stl_loses_its_solid_names_and_refuses_other_text() -> None:
    facet = (
        "facet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\n"
        "endloop\nendfacet\n"
    )
    data = f"solid Jane Planted\n{facet}endsolid Jane Planted\n".encode()
    ds = encapsulated_instance(data, "model/stl", sop_class="1.2.840.10008.5.1.4.1.1.104.3")

    clean_encapsulated_document(ds, find_spans)

    assert document_of(ds).decode() == f"solid\n{facet}endsolid\n"
    bad = encapsulated_instance(
        b"solid x\nJane Planted\nendsolid\n", "model/stl", "1.2.840.10008.5.1.4.1.1.104.3"
    )
    with pytest.raises(DocumentError, match="not STL"):
        clean_encapsulated_document(bad, find_spans)


@pytest.mark.parametrize(
    ("mime", "shown"),
    [
        ("application/octet-stream", "'application/octet-stream'"),
        ("model/obj", "'model/obj'"),
        ("application/x-genozip", "'application/x-genozip'"),
        ("Jane Planted", "(not a MIME type)"),
    ],
)
def test_document_of_another_type_is_refused_naming_the_type(mime: str, shown: str) -> None:
    ds = encapsulated_instance(b"anything", mime)

    with pytest.raises(DocumentError) as caught:
        clean_encapsulated_document(ds, find_spans)

    assert str(caught.value) == f"encapsulated document of MIME type {shown} cannot be cleaned"


def test_instance_without_a_document_is_left_alone() -> None:
    ds = Dataset()
    ds.PatientName = "SAMPLE"

    assert clean_encapsulated_document(ds, find_spans) is None
    placeholder_document(ds)
    assert "EncapsulatedDocument" not in ds


def test_missing_mime_type_falls_back_on_the_sop_class() -> None:
    ds = encapsulated_instance(b"Jane Planted\n", "text/plain", sop_class=ENCAPSULATED_CDA)
    del ds.MIMETypeOfEncapsulatedDocument

    with pytest.raises(DocumentError, match="does not parse"):  # read as CDA, the SOP Class
        clean_encapsulated_document(ds, find_spans)


# --- placeholders -----------------------------------------------------------------------------


def test_placeholder_pdf_is_a_valid_one_page_pdf_saying_so() -> None:
    ds = encapsulated_instance(report_pdf().build(), "application/pdf")

    placeholder_document(ds)

    data = document_of(ds)
    assert_no_planted_bytes(bytes(ds.EncapsulatedDocument))
    assert len(pdfium.PdfDocument(data)) == 1
    assert "Document removed" in extractable_text(data)
    assert ds.EncapsulatedDocumentLength == len(data)
    assert len(ds.EncapsulatedDocument) % 2 == 0


def test_placeholder_cda_parses_as_a_clinical_document() -> None:
    ds = cda_instance()

    placeholder_document(ds)

    root = ET.fromstring(document_of(ds))
    assert root.tag == f"{V3}ClinicalDocument"
    assert root.findtext(f"{V3}title") == "Document removed by de-identification"
    assert_no_planted_bytes(bytes(ds.EncapsulatedDocument))


@pytest.mark.parametrize(
    ("mime", "expected"),
    [
        ("text/plain", b"Document removed by de-identification.\n"),
        ("model/stl", bytes(84)),
        ("model/obj", b"# Document removed by de-identification.\n"),
    ],
)
def test_placeholder_of_other_types(mime: str, expected: bytes) -> None:
    ds = encapsulated_instance(b"Jane Planted", mime)

    placeholder_document(ds)

    assert document_of(ds) == expected
    assert ds.EncapsulatedDocumentLength == len(expected)


def test_placeholder_refuses_a_type_it_cannot_make() -> None:
    ds = encapsulated_instance(b"Jane Planted", "application/octet-stream")

    with pytest.raises(DocumentError, match="application/octet-stream"):
        placeholder_document(ds)
