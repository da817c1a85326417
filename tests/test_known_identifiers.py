"""The input's own identifiers are found in every spelling and script, and cut out of text.

What a modality or a person typed about the patient comes back in free text in other forms:
upper case, without accents, in katakana, with the ID split by dashes, the phone number
without its country code, the birth date in words. These tests plant such forms and check
that the cleaner cuts them (keeping the rest of the text) and that nothing of them is left
anywhere in the output.
"""

from __future__ import annotations

import re
import unicodedata
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence

from gateway.base.identifiers import (
    ADDRESS,
    PHONE,
    TELECOM,
    Identifiers,
    collect_identifiers,
    date_spellings,
    normalise,
)
from gateway.base.text_folding import fold, fold_with_map
from gateway.deid.engine import Engine
from gateway.deid.profile import compile_profile, default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.standard import Option
from gateway.pipeline.instance import Clean, process_instance
from gateway.verify.leaks import find_leaks

SECRET = b"known-identifiers-test-secret-32"


def _engine(*options: Option) -> Engine:
    profile = compile_profile(options) if options else default_profile()
    return Engine(profile, Pseudonyms(SECRET, "KNOWN-IDS"))


def _instance(charset: str | list[str] = "ISO_IR 192") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.9.1"
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.9.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.9.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.9.3"
    ds.Modality = "OT"
    ds.PatientID = "12345678"
    ds.PatientBirthDate = "19610314"
    return ds


def _read_back(ds: Dataset) -> Dataset:
    """As the gateway sees an instance: read from bytes, values still raw."""
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.9.9"
    buffer = BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def _all_text(ds: Dataset) -> str:
    """Every value of the output, decoded, at every depth, file meta included, folded."""
    out: list[str] = []

    def walk(item: Dataset) -> None:
        for elem in item:
            if elem.VR == "SQ":
                for child in elem.value or ():
                    walk(child)
            elif isinstance(elem.value, bytes):
                out.append(elem.value.decode("latin-1"))
            else:
                out.append(str(elem.value))

    walk(ds.file_meta)
    walk(ds)
    return normalise("\n".join(out))


def _bytes_of(ds: Dataset) -> bytes:
    buffer = BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _clean(ds: Dataset, engine: Engine | None = None) -> Dataset:
    outcome = process_instance(_read_back(ds), engine or _engine())
    assert isinstance(outcome, Clean), getattr(outcome, "message", outcome)
    return outcome.dataset


def _ids(*values: tuple[str, str] | tuple[str, str, str]) -> Identifiers:
    found = Identifiers()
    for value in values:
        found.add_value(*value)
    return found


# -- folding ---------------------------------------------------------------------------------


def test_folding_uses_casefold_nfkc_and_drops_accents() -> None:
    assert fold("STRASSE") == fold("Straße") == "strasse"
    assert fold("ΣΟΦΟΣ") == fold("σοφος") == fold("σοφοσ")  # final sigma
    assert fold("ﬁnch") == "finch"  # ligature
    assert fold("ＳＭＩＴＨ１２") == "smith12"  # full-width
    assert fold("Müller") == fold("Mu\u0308ller") == fold("MULLER") == "muller"
    assert fold("O\u2019Brien") == "o'brien"
    assert fold("ヤマダ") == fold("ﾔﾏﾀﾞ".replace("ﾀﾞ", "ﾀﾞ")) == "やまだ"


def test_kana_keep_their_voicing_marks() -> None:
    assert fold("ガトウ") != fold("カトウ")
    assert fold("ｶﾞﾄｳ") == fold("ガトウ") == "がとう"


def test_latin1_text_folds_as_each_character_would() -> None:
    text = "".join(chr(c) for c in range(0x20, 0x100))
    assert fold(text) == "".join(fold(c + "\u4e00")[:-1] for c in text)


def test_folded_positions_map_back_to_the_original() -> None:
    text = "Frau Straße ﬁnch Mu\u0308ller"
    folded, starts, ends = fold_with_map(text)
    assert starts is not None and ends is not None
    at = folded.index("muller")
    assert text[starts[at] : ends[at + len("muller") - 1]] == "Mu\u0308ller"
    at = folded.index("strasse")
    assert text[starts[at] : ends[at + len("strasse") - 1]] == "Straße"


# -- person names -------------------------------------------------------------------------


def test_name_found_upper_case_without_accents_and_decomposed() -> None:
    ids = _ids(("Müller^Jürgen", "PN"))
    for text in ("Dr. MULLER", "müller", "Mu\u0308ller", "Jurgen M.", "JÜRGEN"):
        assert ids.found_in(text), text
    assert ids.scrub("Report by Mr MÜLLER, reviewed") == "Report by Mr *, reviewed"


@pytest.mark.parametrize(
    ("name", "text", "left"),
    [
        ("Παπαδόπουλος^Γιώργος", "Ο ΠΑΠΑΔΟΠΟΥΛΟΣ προσήλθε", "Ο * προσήλθε"),
        ("Иванов^Пётр", "пациент ИВАНОВ, Петр", "пациент *, *"),
        ("Nguyễn^Văn", "seen: NGUYEN van", "seen: *"),
        ("Ng^Bo", "patient ng bo arrived", "patient * arrived"),
    ],
)
def test_names_in_spaced_scripts_are_whole_words(name: str, text: str, left: str) -> None:
    assert _ids((name, "PN")).scrub(text) == left


def test_short_name_parts_are_only_whole_words() -> None:
    ids = _ids(("Ng^Bo", "PN"))
    assert ids.scrub("Bo said Ng-ok") == "* said *-ok"
    for harmless in ("sing box", "bones", "BOLUS 5 ng/ml", "Q2BO7XNG4", "NBG4821937"):
        assert not ids.found_in(harmless.replace("ng/ml", "ngml")), harmless
    assert "ng" in ids.words and "bo" in ids.words


def test_a_single_initial_is_not_a_word() -> None:
    ids = _ids(("Brightwater^Ysolde^M", "PN"))
    assert "m" not in ids.words
    assert ids.scrub("M mode, Ysolde") == "M mode, *"


def test_prefix_and_suffix_and_particles_are_not_words_alone() -> None:
    ids = _ids(("van der Berg^Anna^^Dr^PhD", "PN"))
    assert "van der berg" in ids.words and "berg" in ids.words
    assert not {"van", "der", "dr", "phd"} & ids.words
    assert ids.scrub("Dr van der Berg (PhD)") == "Dr * (PhD)"


def test_hyphenated_and_apostrophe_names() -> None:
    ids = _ids(("Smith-Jones^Mary", "PN"), ("O'Brien^Sean", "PN"))
    assert ids.scrub("smith and JONES; O\u2019BRIEN; OBrien") == "* and *; *; *"


def test_cjk_names_are_found_without_word_boundaries() -> None:
    ids = _ids(("Yamada^Tarou=山田^太郎=やまだ^たろう", "PN"))
    assert ids.scrub("山田太郎様の検査") == "*様の検査"
    assert ids.scrub("山田 太郎さん") == "*さん"
    assert ids.scrub("ヤマダタロウ様") == "*様"  # the phonetic group, read in katakana
    assert ids.scrub("ｶﾞｲﾗｲ ﾔﾏﾀﾞ") == "ｶﾞｲﾗｲ *"  # half-width katakana
    assert ids.scrub("YAMADA T.") == "* T."


def test_single_ideographs_are_too_common_to_search_alone() -> None:
    ids = _ids(("李^明", "PN"), ("홍^길동", "PN"))
    assert ids.scrub("李明先生") == "*先生"
    assert not ids.found_in("明日")  # "tomorrow"
    assert ids.scrub("홍길동님, 길동 씨") == "*님, * 씨"
    assert not ids.found_in("홍보")


def test_two_kana_are_no_name_part() -> None:
    ids = _ids(("=^=いと^はな", "PN"))
    assert not ids.found_in("はなす")  # "to speak"
    assert ids.found_in("いと はな")


def test_every_person_name_of_the_instance_is_collected() -> None:
    ds = _instance()
    ds.PatientName = "Quorbelle^Zyxwick"
    ds.ReviewerName = "Aldersgate^Prunella"
    ds.OperatorsName = "Ng^Bo"
    roi = Dataset()
    roi.ROIInterpreter = "Fenwright^Odalys"
    ds.RTROIObservationsSequence = Sequence([roi])
    observer = Dataset()
    observer.VerifyingObserverName = "Hollowmere^Casimir"
    ds.VerifyingObserverSequence = Sequence([observer])
    content = Dataset()
    content.ValueType = "PNAME"
    content.PersonName = "Brackenridge^Tamsin"
    ds.ContentSequence = Sequence([content])
    equipment = Dataset()
    equipment.OperatorsName = "Wexcombe^Idris"
    ds.ContributingEquipmentSequence = Sequence([equipment])
    block = ds.private_block(0x0029, "ACME PRIVATE", create=True)
    block.add_new(0x10, "PN", "Pellingham^Rosamund")
    ids = collect_identifiers(_read_back(ds), default_profile().keeps)
    for part in (
        "quorbelle", "zyxwick", "aldersgate", "prunella", "ng", "bo", "fenwright", "odalys",
        "hollowmere", "casimir", "brackenridge", "tamsin", "wexcombe", "idris", "pellingham",
        "rosamund",
    ):  # fmt: skip
        assert part in ids.words, part


def test_attributes_the_profile_keeps_are_not_collected() -> None:
    ds = _instance()
    ds.InstitutionName = "Saint Quillon Infirmary"
    ds.InstitutionAddress = "4 Harrow Vale^Quillonby"
    engine = _engine(Option.RETAIN_INSTITUTION_IDENTITY)
    ids = collect_identifiers(ds, engine.profile.keeps)
    assert "saint quillon infirmary" not in ids.values
    assert "saint quillon infirmary" in collect_identifiers(ds, default_profile().keeps).values


def test_codes_and_issuers_that_identify_people_and_sites_are_collected() -> None:
    ds = _instance()
    person = Dataset()
    person.CodeValue = "EMP-88213"
    person.CodingSchemeDesignator = "99HOSP"
    person.CodeMeaning = "Employee"
    referring = Dataset()
    referring.PersonIdentificationCodeSequence = Sequence([person])
    referring.PersonTelecomInformation = "mailto:h.quill@example.org"
    ds.ReferringPhysicianIdentificationSequence = Sequence([referring])
    institution = Dataset()
    institution.CodeValue = "QH0042"
    institution.CodingSchemeDesignator = "99HOSP"
    institution.CodeMeaning = "Quillon Hospital Trust"
    ds.InstitutionCodeSequence = Sequence([institution])
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "QUILLON_RIS"
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer])
    ds.MedicalRecordLocator = "MRL-55102"
    ids = collect_identifiers(ds, default_profile().keeps)
    assert {"emp-88213", "qh0042", "quillon hospital trust", "quillon_ris"} <= ids.values
    assert {"h.quill@example.org", "mrl-55102"} <= ids.values
    assert "employee" not in ids.values  # a person code's meaning is a vocabulary word
    assert ids.found_in("EMP 88213") and ids.found_in("mrl55102")


# -- IDs, phones, addresses, e-mail, dates -----------------------------------------------------


@pytest.mark.parametrize("text", ["12-345-678", "12 345 678", "1234 5678", "MRN: 12.345.678"])
def test_digit_ids_are_found_with_any_separators(text: str) -> None:
    ids = _ids(("12345678", "LO"))
    cleaned = ids.scrub(f"id {text} ok")
    assert cleaned.startswith("id ") and cleaned.endswith("* ok") and "345" not in cleaned


def test_digit_ids_are_not_found_inside_other_numbers_or_decimals() -> None:
    ids = _ids(("12345", "SH"))
    assert not ids.found_in("1.2345 mm")
    assert not ids.found_in("912 3456")  # not with digits either side
    assert ids.found_in("12 345")


def test_lettered_ids_are_found_without_their_separators() -> None:
    ids = _ids(("AB-1234-X", "LO"))
    assert ids.scrub("ref AB1234X today") == "ref * today"
    assert ids.scrub("ref ab 1234 x") == "ref *"


def test_short_ids_are_matched_only_as_whole_values() -> None:
    ids = _ids(("12", "SH"), ("1", "SH"))
    assert not ids.found_in("series 12 of 1")
    assert ids.found_in("12") and ids.scrub("1") == "*"


def test_phone_numbers_are_found_by_their_national_digits() -> None:
    ids = _ids(("+44 20 7946 0958", "SH", PHONE))
    for text in ("+44 20 7946 0958", "020 7946 0958", "(020) 7946-0958", "+44 (0)20 79460958"):
        assert ids.scrub(f"call {text} now").startswith("call "), text
        assert ids.found_in(text), text
    national = _ids(("020 7946 0958", "SH", PHONE))
    assert national.found_in("+44 20 7946 0958")
    assert not ids.found_in("7946")


def test_telecom_information_gives_its_email_and_phone() -> None:
    ids = _ids(("mailto:Z.Quorbelle@Example.ORG\n+1 555 201 7788", "LT", TELECOM))
    assert ids.scrub("mail z.quorbelle@example.org please") == "mail * please"
    assert ids.found_in("(555) 201-7788")


def test_email_is_matched_whatever_its_case() -> None:
    ids = _ids(("Zyx.Quor@Example.org", "LO"))
    assert ids.scrub("from ZYX.QUOR@EXAMPLE.ORG.") == "from *."


def test_address_street_line_town_and_postcode_are_found_alone() -> None:
    ids = _ids(("12 Baker Street^London^NW1 6XE", "LO", ADDRESS))
    assert ids.scrub("lives at 12 Baker Street, alone") == "lives at *, alone"
    assert ids.scrub("moved from LONDON") == "moved from *"
    assert ids.scrub("postcode NW16XE") == "postcode *"
    assert ids.found_in("Baker Street")
    # Too short or too common to be specific: the house number, the word "street".
    assert not ids.found_in("12 mm")
    assert not ids.found_in("street")
    comma = _ids(("42 Larkspur Lane, Northbridge NB4 7QT", "LO", ADDRESS))
    assert comma.found_in("NORTHBRIDGE") and comma.found_in("nb4-7qt")
    assert comma.found_in("42 larkspur lane")


def test_birth_date_is_found_in_words_and_in_every_numeric_order() -> None:
    ids = _ids(("19610314", "DA"))
    for text in (
        "14 Mar 1961", "14 March 1961", "March 14, 1961", "Mar 14 1961", "14-MAR-1961",
        "14th of March 1961", "1961-03-14", "14/03/1961", "14.3.1961", "3/14/1961",
        "03-14-1961", "19610314",
    ):  # fmt: skip
        assert ids.scrub(f"born {text} here") == "born * here", text
    assert not ids.found_in("14 Mar 1962") and not ids.found_in("114.3.1961")
    assert "14 march 1961" in date_spellings("19610314")


def test_scrub_keeps_everything_else_of_the_text() -> None:
    ids = _ids(("Straße^Jürgen", "PN"), ("12345678", "LO"))
    text = "ﬁrst: STRASSE,\tJurgen (ID 12-345-678), Größe 1,80 m"
    assert ids.scrub(text, "#") == "ﬁrst: #,\t# (ID #), Größe 1,80 m"


# -- the verify gate -------------------------------------------------------------------------


def test_gate_finds_forms_the_cleaner_would_have_cut() -> None:
    ids = _ids(
        ("Yamada^Tarou=山田^太郎", "PN"),
        ("12345678", "LO"),
        ("19610314", "DA"),
        ("+44 20 7946 0958", "SH", PHONE),
    )
    for text in ("山田太郎様", "YAMADA", "id 12-345-678", "14 March 1961", "020 7946 0958"):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageComments = text
        assert find_leaks(_read_back(ds), ids), text


def test_gate_reads_utf8_in_a_file_that_declares_no_character_set() -> None:
    ids = _ids(("Müller^Jürgen=山田^太郎", "PN"))
    ds = Dataset()
    ds.add_new(0x00204000, "LT", "seen by 山田 and Müller".encode())  # raw bytes, no charset
    assert [str(leak) for leak in find_leaks(_read_back(ds), ids)] == [
        "identifying value found at (0020,4000)"
    ]


def test_gate_spares_short_name_parts_in_bytes_and_pseudonyms() -> None:
    ids = _ids(("Ng^Bo", "PN"))
    ds = Dataset()
    ds.PatientID = "Q2BO7X-NG4BO2"
    ds.add_new(0x00282000, "OB", b"\x01bo\x02ng\x00")
    assert find_leaks(ds, ids) == []


# -- end to end: planted values, whole output searched ---------------------------------------


def _absent(output: Dataset, *forms: str) -> None:
    text = _all_text(output)
    for form in forms:
        assert normalise(form) not in text, form
    raw = _bytes_of(output)
    for form in forms:
        if not form.isascii():
            assert form.encode("utf-8") not in raw, form


def _digits_absent(output: Dataset, digits: str) -> None:
    loose = r"[\s\-./_()]{0,2}".join(digits)
    assert re.search(loose, _all_text(output)) is None


def test_identifiers_planted_everywhere_are_cut_from_a_utf8_instance() -> None:
    ds = _instance("ISO_IR 192")
    ds.PatientName = "Quorbelle^Zyxwick=山田^太郎=やまだ^たろう"
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "AB-7731-Q"
    ds.PatientAddress = "12 Baker Street^Marrowby^NW1 6XE"
    ds.PatientTelephoneNumbers = "+44 20 7946 0958"
    ds.InstitutionName = "Hôpital Saint-Quillon"
    ds.OperatorsName = "Ng^Bo"
    ds.PatientComments = (
        "QUORBELLE zyxwick, 山田太郎様, ヤマダ; ID 12-345-678 / ab7731q; 14 March 1961; "
        "tel 020 7946 0958; 12 Baker Street, Marrowby; op Bo Ng; HOPITAL SAINT-QUILLON"
    )
    ds.ImageComments = "山田様 T2 1234 5678"
    ds.SeriesDescription = "CT QUORBELLE Mar 14 1961"
    ds.StudyDescription = "Zyxwick head"
    item = Dataset()
    item.TextValue = "seen by NG bo, やまだ たろう"
    ds.add_new(0x00409096, "SQ", Sequence([item]))  # retained, its free text cleaned
    block = ds.private_block(0x0029, "ACME PRIVATE", create=True)
    block.add_new(0x10, "LO", "Quorbelle 山田太郎")
    output = _clean(ds)
    _absent(
        output, "quorbelle", "zyxwick", "山田", "太郎", "やまだ", "たろう", "baker street",
        "marrowby", "nw1 6xe", "14 march 1961", "mar 14 1961", "saint-quillon", "ng bo",
        "bo ng",
    )  # fmt: skip
    for digits in ("12345678", "ab7731q", "2079460958"):
        _digits_absent(output, digits)
    assert "head" in output.StudyDescription.lower() or "StudyDescription" not in output


def test_identifiers_are_cut_from_an_iso_2022_japanese_instance() -> None:
    ds = _instance(["", "ISO 2022 IR 87"])
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.PatientComments = "山田太郎様の検査 やまだ"
    ds.ImageComments = "ヤマダ タロウ"
    item = Dataset()
    item.TextValue = "山田 太郎"
    ds.add_new(0x00409096, "SQ", Sequence([item]))
    raw = _bytes_of(ds)
    assert b"\x1b$B" in raw  # really ISO 2022 escapes on the wire
    output = _clean(ds)
    _absent(output, "山田", "太郎", "やまだ", "たろう", "yamada", "tarou")


def test_identifiers_are_cut_from_a_latin1_instance() -> None:
    ds = _instance("ISO_IR 100")
    ds.PatientName = "Müller^Jürgen"
    ds.PatientAddress = "Hauptstraße 7^Köln^50667"
    ds.PatientComments = "Herr MULLER (Jurgen), Hauptstrasse 7, KÖLN 50667; geb. 14.3.1961"
    ds.SeriesDescription = "Müller Schädel"
    output = _clean(ds)
    _absent(output, "müller", "muller", "jurgen", "hauptstrasse 7", "köln", "14.3.1961")
    _digits_absent(output, "50667")


def test_a_value_only_the_gate_would_see_is_still_caught_as_a_leak() -> None:
    ds = _instance("ISO_IR 192")
    ds.PatientName = "Quorbelle^Zyxwick"
    # A retained binary attribute (ICC Profile, OB): bytes the engine cannot clean.
    ds.add_new(0x00282000, "OB", b"Zyxwick QUORBELLE")
    outcome = process_instance(_read_back(ds), _engine())
    assert not isinstance(outcome, Clean)


def test_nfkc_forms_in_free_text_are_cut_from_the_original() -> None:
    ids = _ids(("Finch^Ada", "PN"))
    assert ids.scrub("Dr ﬁnch: ＡＤＡ ok") == "Dr *: * ok"
    assert unicodedata.normalize("NFKC", "ﬁ") == "fi"
