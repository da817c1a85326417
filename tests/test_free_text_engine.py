"""Free text through the engine: cleaned span by span where the table replaced it whole.

SR TEXT items and GSPS text objects keep their clinical words and lose the names in them;
person names in SR become keyed pseudonyms; a GSPS keeps the references it applies to; a
code sequence that identifies a person loses its codes; a local code's meaning is cleaned;
an encapsulated document is never an invalid stub. Every test searches the whole output for
the planted values, not only the element that held them.
"""

from __future__ import annotations

import io
import re
import unicodedata
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence

from gateway.deid.engine import Engine
from gateway.deid.free_text import FreeTextSettings
from gateway.deid.profile import default_profile
from gateway.deid.profile_file import load_yaml_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, Quarantine, process_instance

SECRET = b"free-text-engine-test-secret-32b"
PATIENT = "Quillfeather^Orsolya"
STAFF = "Dr. Rosalind Ekwueme"


def _engine(settings: FreeTextSettings | None = None, profile: object = None) -> Engine:
    return Engine(
        profile or default_profile(),  # type: ignore[arg-type]
        Pseudonyms(SECRET, "FREE-TEXT"),
        settings or FreeTextSettings(),
    )


def _base(sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.9.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.9.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.9.3"
    ds.PatientName = PATIENT
    ds.PatientID = "QF-55120"
    ds.PatientBirthDate = "19610314"
    ds.StudyDate = "20240501"
    ds.Modality = "SR"
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _content(kind: str, name: Dataset, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = kind
    item.ConceptNameCodeSequence = Sequence([name])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _sr() -> Dataset:
    ds = _base("1.2.840.10008.5.1.4.1.1.88.33")
    finding = _content(
        "TEXT",
        _code("121071", "DCM", "Finding"),
        TextValue=f"nodule 8 mm in the right upper lobe, discussed with {STAFF} "
        "on 14 Mar 2024, call 020 7946 0958",
    )
    observer = _content("PNAME", _code("121008", "DCM", "Person Observer Name"),
                        PersonName="Ekwueme^Rosalind")  # fmt: skip
    when = _content("DATE", _code("111060", "DCM", "Study Date"), Date="20240314")
    ref = _content("UIDREF", _code("121232", "DCM", "Source series"),
                   UID="1.2.826.0.1.3680043.2.1125.9.77")  # fmt: skip
    container = _content("CONTAINER", _code("111028", "DCM", "Image Library"))
    container.ContinuityOfContent = "SEPARATE"
    container.ContentSequence = Sequence([finding, observer, when, ref])
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("126000", "DCM", "Imaging Report")])
    ds.ContentSequence = Sequence([container])
    return ds


def _all_text(ds: Dataset) -> str:
    """Every value of the written output, as text (bytes decoded both ways), casefolded."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    raw = buffer.getvalue()
    texts = [raw.decode("latin-1"), raw.decode("utf-8", errors="ignore")]
    back = dcmread(io.BytesIO(raw))
    texts.append(repr(back))
    return unicodedata.normalize("NFKC", " ".join(texts)).casefold()


def _clean(ds: Dataset, engine: Engine | None = None) -> Dataset:
    outcome = process_instance(ds, engine or _engine())
    assert isinstance(outcome, Clean), outcome
    return outcome.dataset


def test_sr_text_keeps_its_findings_and_loses_names_dates_and_phones() -> None:
    out = _clean(_sr())
    finding = out.ContentSequence[0].ContentSequence[0].TextValue
    assert "nodule 8 mm" in finding
    assert "right upper lobe" in finding
    text = _all_text(out)
    for planted in ("rosalind", "ekwueme", "quillfeather", "orsolya", "7946", "14 mar 2024"):
        assert planted not in text, planted


def test_sr_person_names_become_the_same_keyed_pseudonym_everywhere() -> None:
    first = _clean(_sr()).ContentSequence[0].ContentSequence[1].PersonName
    second = _clean(_sr()).ContentSequence[0].ContentSequence[1].PersonName
    assert str(first).startswith("PERSON^")
    assert first == second
    assert "ekwueme" not in str(first).casefold()


def test_sr_dates_move_and_uid_references_are_remapped() -> None:
    out = _clean(_sr())
    items = out.ContentSequence[0].ContentSequence
    assert items[2].Date != "20240314" and len(items[2].Date) == 8
    assert items[3].UID != "1.2.826.0.1.3680043.2.1125.9.77"


def test_without_the_recognizer_sr_text_is_replaced_as_before() -> None:
    out = _clean(_sr(), _engine(FreeTextSettings(recognizer=False)))
    assert out.ContentSequence[0].ContentSequence[0].TextValue == "DEIDENTIFIED"


def _gsps() -> Dataset:
    ds = _base("1.2.840.10008.5.1.4.1.1.11.1")
    ds.Modality = "PR"
    image = Dataset()
    image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    image.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.9.500"
    series = Dataset()
    series.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.9.501"
    series.ReferencedImageSequence = Sequence([image])
    ds.ReferencedSeriesSequence = Sequence([series])
    text = Dataset()
    text.UnformattedTextValue = "nodule 8 mm, seen by Dr. Rosalind Ekwueme"
    text.AnchorPointAnnotationUnits = "PIXEL"
    annotation = Dataset()
    annotation.GraphicLayer = "LAYER1"
    annotation.ReferencedImageSequence = Sequence([image.copy()])
    annotation.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    return ds


def test_gsps_text_is_cleaned_not_blanked_and_its_image_references_stay() -> None:
    out = _clean(_gsps())
    value = out.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue
    assert "nodule 8 mm" in value
    assert "ekwueme" not in _all_text(out)
    for holder in (out.ReferencedSeriesSequence[0], out.GraphicAnnotationSequence[0]):
        reference = holder.ReferencedImageSequence[0]
        assert reference.ReferencedSOPInstanceUID != "1.2.826.0.1.3680043.2.1125.9.500"
        assert reference.ReferencedSOPInstanceUID.startswith("2.25.")


def test_person_identification_codes_in_a_kept_sequence_lose_their_codes() -> None:
    ds = _sr()
    observer = Dataset()
    observer.VerifyingObserverName = "Ekwueme^Rosalind"
    observer.VerifyingOrganization = "Northgate Radiology"
    observer.VerificationDateTime = "20240314101500"
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    ds.VerifyingObserverSequence = Sequence([observer])
    person = Dataset()
    person.PersonIdentificationCodeSequence = Sequence([_code("EMP-77310", "99HOSP", "Ekwueme")])
    ds.ContentSequence[0].ContentSequence[1].ReferencedSOPSequence = Sequence()
    ds.add_new(0x0040A078, "SQ", Sequence([person]))  # Author Observer Sequence (kept)
    out = _clean(ds)
    text = _all_text(out)
    assert "emp-77310" not in text
    assert "ekwueme" not in text
    assert "northgate" not in text


def test_a_local_code_meaning_is_cleaned_a_standard_one_kept() -> None:
    ds = _sr()
    local = _code("CTCH1", "99ORD", "CT chest per Dr. Rosalind Ekwueme")
    ds.ProcedureCodeSequence = Sequence([local, _code("77477000", "SCT", "CT of chest")])
    out = _clean(ds)
    local, standard = out.ProcedureCodeSequence
    assert "ekwueme" not in local.CodeMeaning.casefold()
    assert local.CodeMeaning.startswith("CT chest")
    assert standard.CodeMeaning == "CT of chest"


def test_retained_text_loses_other_peoples_names_and_contacts() -> None:
    ds = _base("1.2.840.10008.5.1.4.1.1.4")
    ds.Modality = "MR"
    ds.SequenceName = "*tfl3d1_16ns"
    ds.add_new(0x00181030, "LO", "T2 FLAIR AX")  # Protocol Name (cleaned, kept)
    ds.ImageComments = "motion artefact, repeat per Dr. Rosalind Ekwueme"
    out = _clean(ds)
    assert out.SequenceName == "*tfl3d1_16ns"
    assert out.ProtocolName == "T2 FLAIR AX"
    assert "ekwueme" not in _all_text(out)


def test_retained_text_loses_dates_times_and_long_ids_but_keeps_technical_values() -> None:
    """Content Description and Graphic Layer Description are in no table row: kept, so the
    recognizer cuts what identifies (a date moves with the patient's other dates)."""
    ds = _base("1.2.840.10008.5.1.4.1.1.11.1")
    ds.Modality = "PR"
    ds.ContentDescription = "key images on 28-JUN-1986 at 14:35, MRN 29379658"
    ds.ContentLabel = "KEY_IMAGES_2"
    ds.SequenceName = "*tfl3d1_16ns"
    out = _clean(ds)
    text = _all_text(out)
    for value in ("1986", "14:35", "29379658"):
        assert value not in text, value
    assert re.fullmatch(r"key images on \d\d-[A-Z]{3}-\d{4} at \*, MRN \*", out.ContentDescription)
    assert out.ContentLabel == "KEY_IMAGES_2"
    assert out.SequenceName == "*tfl3d1_16ns"


def _pdf_instance(document: bytes) -> Dataset:
    ds = _base("1.2.840.10008.5.1.4.1.1.104.1")
    ds.Modality = "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "Referral"
    ds.BurnedInAnnotation = "YES"
    ds.EncapsulatedDocumentLength = len(document)
    ds.EncapsulatedDocument = document + (b"\x00" if len(document) % 2 else b"")
    return ds


def test_without_the_recognizer_a_document_becomes_a_valid_placeholder() -> None:
    import pypdfium2

    original = b"%PDF-1.4 not really a pdf Quillfeather Orsolya"
    out = _clean(_pdf_instance(original), _engine(FreeTextSettings(recognizer=False)))
    stored = bytes(out.EncapsulatedDocument)
    assert out.EncapsulatedDocumentLength in (len(stored), len(stored) - 1)
    assert len(pypdfium2.PdfDocument(stored[: out.EncapsulatedDocumentLength])) == 1
    assert "quillfeather" not in _all_text(out)


def test_without_the_recognizer_a_cda_becomes_a_valid_cda_placeholder() -> None:
    from xml.etree import ElementTree

    cda = (
        b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget>'
        b"<patientRole><patient><name>Orsolya Quillfeather</name></patient></patientRole>"
        b"</recordTarget></ClinicalDocument>"
    )
    ds = _pdf_instance(cda)
    ds.MIMETypeOfEncapsulatedDocument = "text/xml"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.2"
    out = _clean(ds, _engine(FreeTextSettings(recognizer=False)))
    stored = bytes(out.EncapsulatedDocument)[: out.EncapsulatedDocumentLength]
    root = ElementTree.fromstring(stored)
    assert root.tag == "{urn:hl7-org:v3}ClinicalDocument"
    assert "quillfeather" not in _all_text(out)


def test_cda_times_move_with_the_instances_dates() -> None:
    """A CDA's effectiveTime is the study date in another spelling: it moves by the same
    shift, so the document tells no true date and agrees with the DICOM header."""
    from xml.etree import ElementTree

    cda = (
        b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
        b'<effectiveTime value="20240501093000+0100"/><component><structuredBody><component>'
        b"<section><text>Nodule 8 mm, stable.</text><entry><observation>"
        b'<effectiveTime><low value="20240501"/><high value="202405"/></effectiveTime>'
        b'<value value="12" unit="mm"/></observation></entry></section></component>'
        b"</structuredBody></component></ClinicalDocument>"
    )
    ds = _pdf_instance(cda)
    ds.MIMETypeOfEncapsulatedDocument = "text/xml"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.2"
    out = _clean(ds)
    stored = bytes(out.EncapsulatedDocument)[: out.EncapsulatedDocumentLength]
    root = ElementTree.fromstring(stored)
    v3 = "{urn:hl7-org:v3}"
    time = root.find(f"{v3}effectiveTime")
    assert time is not None
    assert time.get("value") == f"{out.StudyDate}093000+0100"
    assert out.StudyDate != "20240501"
    low, high = root.iter(f"{v3}low"), root.iter(f"{v3}high")
    assert next(low).get("value") == out.StudyDate
    assert next(high).get("value") == out.StudyDate[:6]
    assert next(root.iter(f"{v3}value")).get("value") == "12"
    assert b"20240501" not in stored and b"Nodule 8 mm, stable." in stored


def test_a_document_that_cannot_be_read_is_held_with_a_reason() -> None:
    outcome = process_instance(_pdf_instance(b"%PDF-1.4 broken Quillfeather"), _engine())
    assert isinstance(outcome, Quarantine)
    assert outcome.reason == "document-not-cleaned"
    assert "quillfeather" not in outcome.message.casefold()


def test_profile_clean_rules_choose_the_recognizer_per_attribute(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(
        "options: [retain_longitudinal_modified_dates, clean_descriptors]\n"
        "overrides:\n"
        "  ImageComments: {clean: {recognizer: false}}\n"
        "  StudyDescription: {clean: {allow: ['CT CHEST'], recognizer: true}}\n",
        encoding="utf-8",
    )
    profile = load_yaml_profile(path)
    ds = _base("1.2.840.10008.5.1.4.1.1.2")
    ds.Modality = "CT"
    ds.ImageComments = "Quillfeather seen by Dr. Rosalind Ekwueme"
    ds.StudyDescription = "CT ABDOMEN for Dr. Rosalind Ekwueme"
    ds.SeriesDescription = "CT CHEST"
    out = _clean(ds, _engine(profile=profile))
    # Without the recognizer only the instance's own identifiers go.
    assert "quillfeather" not in out.ImageComments.casefold()
    assert "Ekwueme" in out.ImageComments
    assert "ekwueme" not in out.StudyDescription.casefold()
    assert out.StudyDescription.startswith("CT ABDOMEN")


def test_a_bad_clean_rule_names_the_key(tmp_path: Path) -> None:
    from gateway.deid.profile import ProfileError

    path = tmp_path / "profile.yaml"
    path.write_text("overrides:\n  ImageComments: {clean: {recognizer: maybe}}\n", "utf-8")
    with pytest.raises(ProfileError) as error:
        load_yaml_profile(path)
    assert "'overrides.ImageComments.clean.recognizer': true or false" in str(error.value)


def test_site_names_and_safe_words_steer_the_recognizer() -> None:
    ds = _base("1.2.840.10008.5.1.4.1.1.2")
    ds.Modality = "CT"
    ds.ImageComments = "Zorbly protocol, read by Vexmoor"
    settings = FreeTextSettings(names=("Vexmoor",), safe_words=("Zorbly",))
    site = _clean(ds, _engine(settings)).ImageComments
    assert "Vexmoor" not in site
    assert "Zorbly" in site
