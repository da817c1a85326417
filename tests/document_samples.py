"""PDFs, CDA documents and DICOM instances written by hand for the document tests.

Written here byte by byte rather than with the code under test, so the inputs carry the
features a real report has and the cleaner must not let through: an uncompressed text
layer, an /Info dictionary, XMP, an annotation, an attachment, a filled form field,
JavaScript, a scanned page, RC4 encryption (PDF 32000 7.6.3, revision 2).
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
ENCAPSULATED_CDA = "1.2.840.10008.5.1.4.1.1.104.2"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# PDF 32000 7.6.3.3, Algorithm 2: the padding string of the standard security handler.
PASSWORD_PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")


def pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<< " + dictionary + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def assemble(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF of `objects` (object 1 the catalog) with a correct cross-reference table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.6\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R " % (len(objects) + 1) + trailer + b">>\n")
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def text_content(lines: list[str], size: int = 12) -> bytes:
    """Content stream drawing `lines` in Helvetica from the top of a Letter page."""
    parts = [b"BT /F1 %d Tf 72 720 Td %d TL" % (size, size + 6)]
    parts += [pdf_string(line) + b" Tj T*" for line in lines]
    parts.append(b"ET")
    return b"\n".join(parts)


@dataclass(frozen=True)
class KeyImagePage:
    """A text page with an image on it (a report with a key image), placed at `rect`."""

    lines: list[str]
    image: Image.Image
    rect: tuple[int, int, int, int]  # x, y, width, height in points


Page = list[str] | Image.Image | KeyImagePage


def image_object(image: Image.Image) -> bytes:
    jpeg = io.BytesIO()
    image.convert("L").save(jpeg, "JPEG", quality=92)
    return stream(
        b"/Type /XObject /Subtype /Image /Width %d /Height %d"
        b" /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /DCTDecode" % image.size,
        jpeg.getvalue(),
    )


@dataclass
class PdfSample:
    """A PDF to build: text pages, image pages, and the extras a real report may carry."""

    pages: list[Page] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    xmp: str | None = None
    annotation: str | None = None  # a FreeText annotation's text on page 1
    form_value: str | None = None  # a filled text field's /V, with an appearance on page 1
    attachment: str | None = None  # an embedded file's content
    javascript: str | None = None  # an /OpenAction script
    rotate: int = 0  # every page's /Rotate: shown turned clockwise by this many degrees

    def build(self) -> bytes:
        # 1 catalog, 2 pages, 3 font, then per page: page + content (+ image).
        objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
        page_numbers: list[int] = []
        first_page_annots: list[int] = []
        for page in self.pages:
            number = len(objects) + 1
            page_numbers.append(number)
            objects.append(b"")  # the page, filled below
            if isinstance(page, Image.Image):
                objects.append(stream(b"", b"q 612 0 0 792 0 0 cm /Im1 Do Q"))
                objects.append(image_object(page))
                resources = b"<< /XObject << /Im1 %d 0 R >> >>" % (number + 2)
            elif isinstance(page, KeyImagePage):
                x, y, width, height = page.rect
                draw = b"q %d 0 0 %d %d %d cm /Im1 Do Q\n" % (width, height, x, y)
                objects.append(stream(b"", draw + text_content(page.lines)))
                objects.append(image_object(page.image))
                resources = b"<< /Font << /F1 3 0 R >> /XObject << /Im1 %d 0 R >> >>" % (number + 2)
            else:
                objects.append(stream(b"", text_content(page)))
                resources = b"<< /Font << /F1 3 0 R >> >>"
            objects[number - 1] = (
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Rotate %d /Resources "
                % self.rotate
                + resources
                + b" /Contents %d 0 R ANNOTS >>" % (number + 1)
            )
        catalog = b"<< /Type /Catalog /Pages 2 0 R"
        if self.annotation is not None:
            # A FreeText annotation (a "typewriter" note) with its appearance: drawn on
            # the page by viewers, yet not part of the page's content or text layer.
            shown = pdf_string(self.annotation)
            objects.append(
                stream(
                    b"/Type /XObject /Subtype /Form /BBox [0 0 240 24]"
                    b" /Resources << /Font << /F1 3 0 R >> >>",
                    b"BT /F1 14 Tf 2 6 Td " + shown + b" Tj ET",
                )
            )
            objects.append(
                b"<< /Type /Annot /Subtype /FreeText /Rect [300 500 540 524] /F 4"
                b" /DA (/F1 14 Tf 0 g) /Contents "
                + shown
                + b" /AP << /N %d 0 R >> >>" % len(objects)
            )
            first_page_annots.append(len(objects))
        if self.form_value is not None:
            shown = pdf_string(self.form_value)
            appearance = b"/Tx BMC BT /F1 10 Tf 2 4 Td " + shown + b" Tj ET EMC"
            objects.append(
                stream(
                    b"/Type /XObject /Subtype /Form /BBox [0 0 200 20]"
                    b" /Resources << /Font << /F1 3 0 R >> >>",
                    appearance,
                )
            )
            objects.append(
                b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (patient) /Rect [72 100 272 120]"
                b" /V "
                + pdf_string(self.form_value)
                + b" /AP << /N %d 0 R >> /P %d 0 R >>" % (len(objects), page_numbers[0])
            )
            first_page_annots.append(len(objects))
            catalog += b" /AcroForm << /Fields [%d 0 R] /NeedAppearances false >>" % len(objects)
        if self.xmp is not None:
            objects.append(stream(b"/Type /Metadata /Subtype /XML", self.xmp.encode("utf-8")))
            catalog += b" /Metadata %d 0 R" % len(objects)
        names = b""
        if self.attachment is not None:
            objects.append(stream(b"/Type /EmbeddedFile", self.attachment.encode("latin-1")))
            objects.append(
                b"<< /Type /Filespec /F (notes.txt) /EF << /F %d 0 R >> >>" % len(objects)
            )
            names += b" /EmbeddedFiles << /Names [(notes.txt) %d 0 R] >>" % len(objects)
        if self.javascript is not None:
            objects.append(b"<< /S /JavaScript /JS " + pdf_string(self.javascript) + b" >>")
            catalog += b" /OpenAction %d 0 R" % len(objects)
        if names:
            catalog += b" /Names <<" + names + b" >>"
        objects[0] = catalog + b" >>"
        kids = b" ".join(b"%d 0 R" % n for n in page_numbers)
        objects[1] = b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % len(page_numbers)
        annots = b" /Annots [" + b" ".join(b"%d 0 R" % n for n in first_page_annots) + b"]"
        for i, number in enumerate(page_numbers):
            objects[number - 1] = objects[number - 1].replace(
                b" ANNOTS", annots if i == 0 and first_page_annots else b""
            )
        trailer = b""
        if self.info:
            entries = b" ".join(
                b"/" + key.encode("ascii") + b" " + pdf_string(value)
                for key, value in self.info.items()
            )
            objects.append(b"<< " + entries + b" >>")
            trailer = b"/Info %d 0 R " % len(objects)
        return assemble(objects, trailer)


def rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


def encrypted_pdf(lines: list[str], user_password: str, owner_password: str) -> bytes:
    """A one-page PDF encrypted with 40-bit RC4 (standard security handler, revision 2)."""
    padded_user = (user_password.encode("latin-1") + PASSWORD_PAD)[:32]
    padded_owner = (owner_password.encode("latin-1") + PASSWORD_PAD)[:32]
    owner_entry = rc4(hashlib.md5(padded_owner).digest()[:5], padded_user)  # Algorithm 3
    permissions = -4  # every permission bit set but the two low reserved ones
    file_id = hashlib.md5(b"document-samples").digest()
    key = hashlib.md5(
        padded_user + owner_entry + struct.pack("<i", permissions) + file_id
    ).digest()[:5]  # Algorithm 2
    user_entry = rc4(key, PASSWORD_PAD)  # Algorithm 4

    def object_key(number: int) -> bytes:  # Algorithm 1
        return hashlib.md5(key + struct.pack("<I", number)[:3] + b"\x00\x00").digest()[:10]

    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        stream(b"", rc4(object_key(4), text_content(lines))),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <" + owner_entry.hex().encode()
        + b"> /U <" + user_entry.hex().encode() + b"> /P %d >>" % permissions,
    ]  # fmt: skip
    hex_id = file_id.hex().encode()
    return assemble(objects, b"/Encrypt 6 0 R /ID [<" + hex_id + b"> <" + hex_id + b">] ")


def image_in_form_pdf(image: Image.Image, form_scale: int) -> bytes:
    """A text page with `image` drawn 80x60 pt inside a form XObject scaled `form_scale` times.

    Generators wrap content in forms (templates, imported pages); an image's bounds are
    then given in the form's space, not the page's.
    """
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources"
        b" << /Font << /F1 7 0 R >> /XObject << /Fm1 5 0 R >> >> /Contents 4 0 R >>",
        stream(
            b"",
            b"q %d 0 0 %d 36 36 cm /Fm1 Do Q\n" % (form_scale, form_scale)
            + text_content(["Key image"]),
        ),
        stream(
            b"/Type /XObject /Subtype /Form /BBox [0 0 100 100]"
            b" /Resources << /XObject << /Im1 6 0 R >> >>",
            b"q 80 0 0 60 0 0 cm /Im1 Do Q",
        ),
        image_object(image),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return assemble(objects)


def unmapped_font_pdf() -> bytes:
    """A page of text in a Type 3 font with no Unicode map: glyphs PDFium cannot read.

    Report generators do this with subset fonts lacking /ToUnicode; what is drawn then
    cannot be extracted, so the text layer says nothing of what the page shows.
    """
    glyph = b"500 0 0 0 400 600 d1 0 0 400 600 re f"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F9 5 0 R >> >> /Contents 4 0 R >>",
        stream(b"", b"BT /F9 12 Tf 72 700 Td (AAB) Tj ET"),
        b"<< /Type /Font /Subtype /Type3 /FontBBox [0 0 500 700]"
        b" /FontMatrix [0.001 0 0 0.001 0 0] /CharProcs << /g1 6 0 R /g2 6 0 R >>"
        b" /Encoding << /Type /Encoding /Differences [65 /g1 /g2] >>"
        b" /FirstChar 65 /LastChar 66 /Widths [500 500] >>",
        stream(b"", glyph),
    ]
    return assemble(objects)


def outlined_text_pdf(lines: list[str], text_line: str = "") -> bytes:
    """A Letter page whose `lines` are drawn as outlines: one filled path per character,
    made of the rectangles of the character's pixels (as a design tool's "convert text to
    outlines" leaves it), under an ordinary text line when `text_line` is given. The text
    layer holds only `text_line`; the outlined characters are pixels only OCR can read."""
    font = ImageFont.truetype(str(FONT), 48)
    unit = 14 / 48  # points per glyph pixel: 14 pt type
    content = [b"0 g"]
    if text_line:
        content.append(text_content([text_line]).replace(b"72 720 Td", b"72 740 Td"))
    for row, line in enumerate(lines):
        x, baseline = 72.0, 690.0 - row * 28
        for char in line:
            mask = font.getmask(char)
            width, height = mask.size
            left, top, _, _ = font.getbbox(char)
            rects = []
            for y in range(height):
                run = None
                for column in range(width + 1):
                    dark = column < width and mask.getpixel((column, y)) > 127
                    if dark and run is None:
                        run = column
                    elif not dark and run is not None:
                        x0 = x + (left + run) * unit
                        y0 = baseline + (38 - top - y - 1) * unit
                        rects.append(
                            b"%.2f %.2f %.2f %.2f re" % (x0, y0, (column - run) * unit, unit)
                        )
                        run = None
            if rects:
                content.append(b" ".join(rects) + b" f")
            x += font.getlength(char) * unit
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        stream(b"", b"\n".join(content)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return assemble(objects)


def scanned_page(lines: list[str], size: tuple[int, int] = (1275, 1650)) -> Image.Image:
    """A white Letter page at 150 dpi with `lines` typed on it in DejaVu Sans, as if scanned."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 30)
    for row, line in enumerate(lines):
        draw.text((150, 150 + row * 60), line, font=font, fill=0)
    return image


def encapsulated_instance(
    document: bytes, mime: str, sop_class: str = ENCAPSULATED_PDF, title: str = "Report"
) -> Dataset:
    """A minimal Encapsulated Document instance (PS3.3 A.45) holding `document`."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "DOC"
    ds.PatientName = "SAMPLE^PATIENT"
    ds.DocumentTitle = title
    ds.BurnedInAnnotation = "YES"
    ds.MIMETypeOfEncapsulatedDocument = mime
    ds.EncapsulatedDocument = document + b"\x00" if len(document) % 2 else document
    ds.EncapsulatedDocumentLength = len(document)
    return ds


def cda_document(patient: tuple[str, str], author: tuple[str, str], narrative: str) -> bytes:
    """A CDA R2 document: patient and author in the header, `narrative` in a section."""
    (given, family), (author_given, author_family) = patient, author
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:sdtc="urn:hl7-org:sdtc">
  <!-- generated for {given} {family} -->
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.10.20.22.1.1"/>
  <id root="2.16.840.1.113883.19.5" extension="ACC-778899"/>
  <code code="18748-4" codeSystem="2.16.840.1.113883.6.1" displayName="Diagnostic imaging study"/>
  <title>Imaging report</title>
  <effectiveTime value="20240315"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <recordTarget>
    <patientRole>
      <id root="2.16.840.1.113883.19.5.99999.2" extension="MRN-4455667"/>
      <addr use="HP"><streetAddressLine>17 Quarry Lane</streetAddressLine>
        <city>Dunmore</city></addr>
      <telecom value="tel:+1(555)555-2004" use="HP"/>
      <patient>
        <name use="L"><given>{given}</given><family>{family}</family></name>
        <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>
        <birthTime value="19750512"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="20240315"/>
    <assignedAuthor>
      <id root="2.16.840.1.113883.4.6" extension="1234567893"/>
      <assignedPerson><name><given>{author_given}</given><family>{author_family}</family>
      </name></assignedPerson>
    </assignedAuthor>
  </author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="2.16.840.1.113883.19.5"/><name>Good Health Clinic</name>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <component><structuredBody><component><section>
    <code code="18782-3" codeSystem="2.16.840.1.113883.6.1"/>
    <title>Findings</title>
    <text><paragraph>{narrative}</paragraph></text>
    <entry><observation classCode="OBS" moodCode="EVN">
      <code code="404684003" codeSystem="2.16.840.1.113883.6.96"/>
      <value xsi:type="PQ" value="4.5" unit="cm"/>
    </observation></entry>
  </section></component></structuredBody></component>
</ClinicalDocument>
""".encode()
