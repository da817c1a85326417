"""A patient's name in the spellings staff type: romanized, and as a user or file name.

A name registered in Greek, Cyrillic, Hangul, Han or kana is written in Latin letters in
reports typed on an English keyboard; any name turns up as a login ("ipetrov", "haddad.l")
or in a structure set label ("apGruffydd_PLAN"). The instance's identifiers know these
forms, so the cleaner cuts them from kept text and the verify gate stops any that remain.
Every engine test searches the whole written output.
"""

from __future__ import annotations

import io

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite

from gateway.base.identifiers import Identifiers
from gateway.base.name_forms import japanese_readings, login_forms, romanized
from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, Quarantine, process_instance
from gateway.verify.leaks import find_leaks


def _identifiers(name: str) -> Identifiers:
    found = Identifiers()
    found.add_value(name, "PN")
    return found


@pytest.mark.parametrize(
    ("word", "typed"),
    [
        ("Βλάχου", "vlachou"),
        ("Παπαδόπουλος", "papadopoulos"),
        ("Αικατερίνη", "aikaterini"),
        ("Χρήστος", "christos"),
        ("Петров", "petrov"),
        ("Дмитрий", "dmitry"),
        ("Наталья", "natalya"),
        ("Алексей", "alexey"),
        ("Алексей", "aleksei"),
        ("Шевченко", "shevchenko"),
        ("김", "kim"),
        ("이", "lee"),
        ("박", "park"),
        ("민준", "minjun"),
        ("王", "wang"),
        ("小明", "xiaoming"),
        ("小明", "xiao ming"),
    ],
)
def test_names_in_other_scripts_get_the_latin_spellings_people_type(word: str, typed: str) -> None:
    assert typed in romanized(word)


def test_kana_readings_drop_long_vowels_as_romaji_does() -> None:
    assert {"sato", "satou"} <= japanese_readings("サトウ")
    assert "ichiro" in japanese_readings("イチロウ")
    assert "yamada" in japanese_readings("やまだ")


@pytest.mark.parametrize("word", ["Smith", "حداد", "לוי", "山田太郎です"])
def test_latin_words_abjads_and_japanese_text_are_not_romanized(word: str) -> None:
    assert romanized(word) == set()


def test_kanji_of_a_japanese_name_are_not_read_as_chinese() -> None:
    found = _identifiers("山田^太郎=山田^太郎=ヤマダ^タロウ")
    assert {"yamada", "taro", "tarou", "tyamada", "yamada.t"} <= found.words
    assert not any("shan" in w or "tian" in w for w in found.words | found.phrases)


def test_readings_that_are_everyday_two_letter_words_are_not_identifiers() -> None:
    """인 reads "in", 안 "an", 마 "ma": searching those would cut "in", "an" and "mA"."""
    for word in ("인", "안", "마", "이", "오"):
        assert not romanized(word) & {"in", "an", "ma", "i", "o"}, word
    found = _identifiers("안^지우")
    assert "an" not in found.words and "ahn" in found.words


def test_login_forms_of_family_and_given_names() -> None:
    forms = login_forms({"petrov"}, {"ivan"})
    expected = {"ipetrov", "petrovi", "i.petrov", "petrov.i", "ivan.petrov", "petrov_ivan"}
    assert expected <= forms
    assert login_forms({"le"}, {"bo"}) == set()  # "lbo", "leb": too short to be anybody's
    # a two-letter family name with a whole given name of four letters or more
    assert {"ngwaiman", "waiman.ng", "ng_waiman"} <= login_forms({"ng"}, {"waiman", "wai"})
    assert not {"ngwai", "waing"} & login_forms({"ng"}, {"waiman", "wai"})


@pytest.mark.parametrize(
    ("name", "typed"),
    [
        ("VAN DER BERG^Johannes", "vdberg"),
        ("VAN DER BERG^Johannes", "jvdberg"),
        ("O'CONNOR-NAKAMURA^Siobhan", "sonakamura"),
        ("O'CONNOR-NAKAMURA^Siobhan", "ocnakamura"),
        ("NG^Wai Man", "ngwaiman"),
        ("GRÖSSMANN^Solveig", "gromann.s"),  # Großmann, ß dropped by an ASCII-only system
        ("김^민준=김^민준", "mjkim"),  # the initials of each syllable of the given name
        ("Nguyễn^Thị Hương", "hnguyen"),  # the initial of each given name's word
        ("Nguyễn^Thị Hương", "thnguyen"),
    ],
)
def test_logins_of_compound_and_short_family_names_are_searched(name: str, typed: str) -> None:
    assert typed in _identifiers(name).words


@pytest.mark.parametrize(
    ("name", "text", "cleaned"),
    [
        ("Петров^Иван", "RT structures Patient petrovi", "RT structures Patient *"),
        ("Петров^Иван", "Pt: ipetrov. nodule 8 mm", "Pt: *. nodule 8 mm"),
        ("Βλάχου^Αικατερίνη", "seen by Aikaterini Vlachou, no change", "seen by * *, no change"),
        ("Βλάχου^Αικατερίνη", "prior exam vlachou.a", "prior exam *"),
        ("김^민준", "KIM Minjun; CT CHEST W/O", "* *; CT CHEST W/O"),
        ("Mahlangu^Unathi", "pt umahlangu. nodule", "pt *. nodule"),
        ("ap Gruffydd^Rhys", "apGruffydd_PLAN", "*_PLAN"),
        ("Haddad^Layla", "re haddad.l: US ABDOMEN", "re *: US ABDOMEN"),
        # letters that do not decompose, typed in ASCII or dropped by an ASCII-only system
        ("SANDVIK^Torbjørn", "RT structures Pt: tsandvik", "RT structures Pt: *"),
        ("ØSTERGAARD^Mette", "stergaard_PLAN", "*_PLAN"),
        ("GROßMANN^Sabine", "Prostate 78Gy - pt gromann.s", "Prostate 78Gy - pt *"),
        # Greek as written today: αυ as "av", γγ as "ng"
        ("ΜΑΥΡΊΔΟΥ^Σοφία", "pt mavridous. No effusion.", "pt *. No effusion."),
        ("Παύλου^Ευαγγελία", "Evangelia Pavlou", "* *"),
        # cut short to fit a 16-character field, where the cut shows
        ("BHATTACHARYA^Ananya", "PTV_Bhattachar", "PTV_*"),
        ("SUBRAMANIAM^Kavitha", "Subramania_PLAN", "*_PLAN"),
        ("SUBRAMANIAM^Kavitha", "subramania wrote", "subramania wrote"),
    ],
)
def test_the_cleaner_cuts_every_spelling(name: str, text: str, cleaned: str) -> None:
    assert _identifiers(name).scrub(text) == cleaned


def test_clinical_words_survive_a_patient_with_short_romanized_names() -> None:
    found = _identifiers("이^인")
    text = "LEFT LOWER LOBE nodule in segment II, 120 kV 200 mA"
    assert found.scrub(text) == text


def _instance(name: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.7.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.7.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.7.3"
    ds.Modality = "RTSTRUCT"
    ds.PatientName = name
    ds.PatientID = "RX-40417"
    ds.StudyDate = "20240501"
    return ds


def _written(ds: Dataset) -> str:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue().decode("utf-8", "ignore").casefold()


def test_an_rt_structure_set_loses_the_romanized_and_login_forms_everywhere() -> None:
    ds = _instance("Петров^Иван")
    ds.StructureSetLabel = "ipetrov_PLAN"
    ds.SeriesDescription = "RT structures Petrov Ivan"
    ds.StructureSetDescription = "contoured for petrov.i"
    engine = Engine(default_profile(), Pseudonyms(b"name-forms-test-secret-32-bytes!", "SITE"))
    outcome = process_instance(ds, engine)
    assert isinstance(outcome, Clean), outcome
    written = _written(outcome.dataset)
    for form in ("petrov", "ivan", "петров", "иван"):
        assert form not in written, form
    assert "plan" in outcome.dataset.StructureSetLabel.casefold()


def test_the_verify_gate_finds_a_login_form_the_profile_kept() -> None:
    original = _instance("Haddad^Layla")
    ds = _instance("PERSON^0000000000")
    ds.PatientName = "PERSON^0000000000"
    ds.ContentDescription = "re layla.haddad"
    leaks = find_leaks(ds, _identifiers(str(original.PatientName)))
    assert leaks, "a login form of the patient's name left the gateway"


def test_a_kept_description_with_a_login_form_is_cleaned_not_quarantined() -> None:
    ds = _instance("Haddad^Layla")
    ds.ContentDescription = "re haddad.l"
    engine = Engine(default_profile(), Pseudonyms(b"name-forms-test-secret-32-bytes!", "SITE"))
    outcome = process_instance(ds, engine)
    assert not isinstance(outcome, Quarantine), outcome
    assert "haddad" not in _written(outcome.dataset)


@pytest.mark.parametrize(
    ("name", "typed"),
    [
        ("حداد^ليلى", ["Haddad", "Hadad", "Layla", "Leila", "haddad.l", "layla.haddad", "lhaddad"]),
        ("الأحمد^محمد", ["Al-Ahmad", "al ahmad", "Ahmed", "Mohammed", "Muhammad", "Mohamed"]),
        ("منصور^خالد", ["Mansour", "Mansoor", "Khaled", "Khalid", "mansourk", "k.mansour"]),
        ("القحطاني^عبدالله", ["Al-Qahtani", "Qahtani", "Abdullah", "Abdallah"]),
        ("אברהם^", ["Avraham", "Abraham"]),
    ],
)
def test_names_in_abjads_are_found_in_every_latin_spelling(name: str, typed: list[str]) -> None:
    found = _identifiers(name)
    for spelling in typed:
        assert found.scrub(f"seen {spelling}.") == "seen *.", spelling


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("منصور^خالد", "breath hold, held for 20 s"),
        ("حداد^ليلى", "hooded and headed views"),
        ("سارة^علي", "sure, all is well: ALI protocol"),
    ],
)
def test_abjad_names_do_not_take_ordinary_words(name: str, text: str) -> None:
    assert _identifiers(name).scrub(text) == text
