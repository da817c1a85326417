"""The recognizer on numbers that identify: times, bare IDs, national IDs, phones, places.

Each class has values it must find in the shapes real text writes them in, and clinical or
acquisition text with the same look (measurements, ratios, b-values, clock faces, version
numbers) that it must leave exactly as it is.
"""

from __future__ import annotations

import pytest

from gateway.text.recognizer import Recognizer, default_recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return default_recognizer()


def cleaned(recognizer: Recognizer, text: str) -> str:
    return recognizer.clean(text)


# --- times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("at 20:14: abdominal pain RLQ", "at *: abdominal pain RLQ"),
        ("at 03h27: US RENAL BILAT", "at *: US RENAL BILAT"),
        ("scanned at 07:25; obs", "scanned at *; obs"),
        ("measurements (at 12:45 pm)", "measurements (at *)"),
        ("at 16:29, LOW DOSE CT LUNG SCREEN", "at *, LOW DOSE CT LUNG SCREEN"),
    ],
)
def test_a_time_before_punctuation_is_found(
    recognizer: Recognizer, text: str, expected: str
) -> None:
    assert cleaned(recognizer, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Pitch 1.375:1", "ratio 1:10:100", "12:30:1 dilution", "US BREAST RT 10:00: mass",
        "LT BREAST 2:30: cyst", "16:9 display", "2:1 AV block", "T 10:32.5 s",
    ],
)  # fmt: skip
def test_ratios_and_clock_faces_stay(recognizer: Recognizer, text: str) -> None:
    assert recognizer.find(text) == [], text


# --- bare and cued IDs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("EF 55 percent. prior 29379658.", "29379658"),
        ("Ventricles normal in size. hosp no. 2821670.", "2821670"),
        ("EF 55 percent. 7242202. Mild degenerative change", "7242202"),
        ("US THYROID - 3871056", "3871056"),
        ("2857497; shortness of breath", "2857497"),
        ("CT HEAD W/O prior 193 5501", "193 5501"),
        ("COR MPR 3MM prior 415 58120", "415 58120"),
        ("key images case 65867429", "65867429"),
        ("ref # 123 456", "123 456"),
        ("acc 554 201", "554 201"),
        # letters and digits joined by dashes, a letter after the number
        ("Pt ID: XK-4471-B", "XK-4471-B"), ("Patient number: P-000123-X", "P-000123-X"),
        ("Encounter: E-99812331", "E-99812331"),
        # social media accounts
        ("Twitter @jsmith_88", "jsmith_88"), ("Insta: jane.doe.77", "jane.doe.77"),
        ("WeChat ID: wxid_8812abc", "wxid_8812abc"),
    ],
)
def test_bare_and_cued_digit_runs_are_ids(recognizer: Recognizer, text: str, value: str) -> None:
    spans = recognizer.find(text)
    assert [text[s.start : s.end] for s in spans if s.kind == "id"] == [value]


@pytest.mark.parametrize(
    "text",
    [
        "DWI b0 500 1000", "b 50 400 800", "Window 1500-2000", "prior 0 500 1000",
        "Boost 1600 cGy", "DLP 123456 mGy.cm", "1.2.840.10008.5.1.4.1.1.2", "matrix 512 512",
        "kV 80 100 120 140", "Series 1001", "syngo MR E11 VE11C 2.3.1", "version 2.10.12",
        "SE 2 IMG 45", "prior 3 4 mm", "Liver measures 16.2 cm", "Lesion 12 x 9 mm",
        "0.625123 s", "C1-C7", "L4-L5", "PTV_6000", "TI-RADS 3", "EF 55 percent",
        "CPR 2 cycles", "AX 2.5MM SOFT TISSUE", "dilution 1/100000",
        "COVID-19 negative", "SARS-CoV-2 PCR", "T-12 vertebra", "ECOG-1", "PI-RADS 3",
        "CT-2019 protocol", "MK-3475 trial", "Lot L-2231", "dose @ 5 mg", "Temp @0800",
        "IG: elevated", "FB: removed", "Instagram: 2 accounts",
        "Window 2000-10", "Grade II-III 2019", "Dose 3 IV 2021",
    ],
)  # fmt: skip
def test_measurements_and_value_lists_are_not_ids(recognizer: Recognizer, text: str) -> None:
    assert recognizer.find(text) == [], text


# --- national identifiers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # after a keyword
        ("NI no. AP 65 42 12 C. Aortic diameter 3.4 cm.", "AP 65 42 12 C"),
        ("RRN 641215-2299263. email", "641215-2299263"),
        ("SSN 304-43-3573; measurements", "304-43-3573"),
        ("NIR 1 91 10 82 280 972 61; key images", "1 91 10 82 280 972 61"),
        ("BSN 123.95.531. lives", "123.95.531"),
        ("AHV 756.1234.5678.97", "756.1234.5678.97"),
        ("codice fiscale RSSMRA85T10A562S", "RSSMRA85T10A562S"),
        ("passport X1234567 issued", "X1234567"),
        ("Aadhaar 2345 6789 0123", "2345 6789 0123"),
        ("personnummer 19900101-1234", "19900101-1234"),
        ("PESEL 44051401359", "44051401359"),
        ("SIN: 046 454 286", "046 454 286"),
        ("Medicare 2123 45670 1", "2123 45670 1"),
        ("national id 123456789", "123456789"),
        # by shape alone
        ("T2 FLAIR AX AB 12 34 56 C", "AB 12 34 56 C"),
        ("T2 FLAIR AX RRN 620625-2941056", "620625-2941056"),
        ("screening 530706-2181412", "530706-2181412"),
        ("pt 304-43-3573", "304-43-3573"),
        ("CPR 010190-1234", "010190-1234"),
        ("HETU 131052-308T", "131052-308T"),
        ("19900101-1234 CT HEAD", "19900101-1234"),
        ("DNI 12345678-Z", "12345678-Z"),
        ("12345678 Z, CT HEAD", "12345678 Z"),
        ("1 91 10 82 280 972 61", "1 91 10 82 280 972 61"),
        ("2345 6789 0123", "2345 6789 0123"),
        ("11010519491231002X", "11010519491231002X"),
        ("Pacient: *, r.č. 625417/3321", "625417/3321"),
        ("rodné číslo 9051234567", "9051234567"),
        ("RČ: 755230/1234", "755230/1234"),
    ],
)
def test_national_ids_are_found_whole(recognizer: Recognizer, text: str, value: str) -> None:
    assert value not in cleaned(recognizer, text)
    assert any(text[s.start : s.end] == value for s in recognizer.find(text))


@pytest.mark.parametrize(
    "text",
    [
        "2000 3000 4000", "MR 12 34 mm", "AX 12 34 56 mm", "CPR in progress",
        "SIN 30 deg", "DWI 1000 2000 3000", "ratio 1:1",
    ],
)  # fmt: skip
def test_national_id_look_alikes_stay(recognizer: Recognizer, text: str) -> None:
    assert recognizer.find(text) == [], text


# --- phones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Call back on 463.311.2006x662 re results", "Call back on * re results"),
        ("001-305-655-2667x869", "*"), ("+1-912-490-4047 ext. 96", "*"),
        ("Tel 05366/97251027", "Tel *"), ("ring 06-66/786 9819", "ring *"),
        ("49/420-5552 (mobile)", "* (mobile)"), ("(00695) 848304", "*"),
        ("7623 2860", "*"), ("wife: 98 25 97 91", "wife: *"), ("901 29 040", "*"),
        ("Call back on 369 5069 re results", "Call back on * re results"),
        ("832 3 741", "*"), ("tlf. 22 33 44 55", "tlf. *"), ("teléfono 912 345 678", "teléfono *"),
    ],
)  # fmt: skip
def test_phone_numbers_as_countries_write_them(
    recognizer: Recognizer, text: str, cleaned: str
) -> None:
    """Extensions, slashes after the area code and numbers grouped only by spaces (Faker's
    formats for some sixty locales, all found)."""
    assert recognizer.clean(text) == cleaned


@pytest.mark.parametrize(
    "text", ["1.2.840.10008.5.1.4.1.1.2", "slices 2 3 4 5", "120/80 mmHg"]
)
def test_number_lists_that_are_not_phones_stay(recognizer: Recognizer, text: str) -> None:
    assert recognizer.find(text) == [], text


@pytest.mark.parametrize(
    "text",
    ["07700 945585: PE PROTOCOL", "call 07700 900123", "01632 960983 - CT HEAD"],
)
def test_uk_numbers_with_a_leading_zero_are_phones(recognizer: Recognizer, text: str) -> None:
    spans = recognizer.find(text)
    assert [s.kind for s in spans] == ["phone"], text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("男，电话13812345678", "男，电话*"),
        ("連絡先：電話090-1234-5678まで", "連絡先：電話*まで"),
        ("휴대폰010-1234-5678입니다", "휴대폰*입니다"),
        ("患者番号12345678です", "患者番号*です"),
    ],
)
def test_numbers_written_against_cjk_letters_are_found(
    recognizer: Recognizer, text: str, cleaned: str
) -> None:
    """CJK text sets digits against its letters: no word boundary to stop at."""
    assert recognizer.clean(text) == cleaned


# --- towns, postcodes and the rest of an address ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "values"),
    [
        # after a street, a flat or a P.O. box
        ("Lives at 12 Baker Street, London NW1 6XE", ["London", "NW1 6XE"]),
        ("45 Quillby Ave Apt 3B, Eastwater 12345. Lesion 12 x 9 mm", ["Apt 3B", "Eastwater"]),
        ("Quillbystraße 12, Holtsby 43842. EF 55 percent", ["Holtsby", "43842"]),
        ("12 rue des Lilas, 75008 Paris", ["75008", "Paris"]),
        ("Hauptstraße 5, D-10115 Berlin", ["D-10115", "Berlin"]),
        ("Kerkstraat 12, 1012 AB Amsterdam", ["1012 AB", "Amsterdam"]),
        ("Storgatan 1, SE-114 55 Stockholm", ["SE-114 55", "Stockholm"]),
        ("12 Main St, Springfield, IL 62704", ["Springfield", "62704"]),
        ("10 George St, Sydney NSW 2000", ["Sydney", "2000"]),
        ("P.O. Box 123, Toronto, ON M5V 2T6", ["Toronto", "M5V 2T6"]),
        ("nodule 8 mm * Apt 5B, Eastwater 11149. Ventricles", ["Apt 5B", "Eastwater", "11149"]),
        # after an address cue
        ("lives at *, Northbridge *. Pt seen", ["Northbridge"]),
        ("home: *, Westhollow 85060.", ["Westhollow", "85060"]),
        ("address * * 4B, Eastwater *.", ["Eastwater"]),
        ("wohnhaft in Altenmoor, Hauptstr. 5", ["Altenmoor", "Hauptstr. 5"]),
        ("lives in Kingsmere with her daughter.", ["Kingsmere"]),
        ("address *, Brightmoor BR2 9RF. No pleural effusion.", ["Brightmoor", "BR2 9RF"]),
        # a town next to a postcode, at a clause start or after a comma or a `*`
        ("Wall thickening. *, Altenmoor 73840.", ["Altenmoor", "73840"]),
        ("CT HEAD. Holtsby 43842.", ["Holtsby", "43842"]),
        ("Cambridge, MA 02139 - outside CT", ["Cambridge", "02139"]),
        ("Brightmoor BR2 9RF", ["Brightmoor", "BR2 9RF"]),
        ("75008 Paris, CT HEAD", ["75008", "Paris"]),
        ("Mild change. *, Skarvik *. nodule 8 mm", ["Skarvik"]),
        # a reference joined by slashes with a word
        ("Case ref. 2021/RAD/004512 - request", ["004512"]),
        # a town before its street
        ("DOB *, Warszawa ul. Polna 12", ["Warszawa", "Polna 12"]),
        ("Patient from Lyon, 14 rue des Lilas", ["Lyon", "14 rue des Lilas"]),
        # a town starting with "M" (a metre, to an ASCII-only look) after a postcode
        ("Wohnhaft in der Lindenstraße 14, 80331 München; Hausarzt", ["80331", "München"]),
    ],
)
def test_towns_and_postcodes_are_found(
    recognizer: Recognizer, text: str, values: list[str]
) -> None:
    out = cleaned(recognizer, text)
    assert all(value not in out for value in values), out


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Lives at 12 Baker Street, see prior US ABDOMEN", "see prior US ABDOMEN"),
        ("12 Baker St, Liver measures 16 cm", "Liver measures 16 cm"),
        ("lives at *, Holtsby 43842. Lesion 12 x 9 mm", "Lesion 12 x 9 mm"),
    ],
)
def test_an_address_stops_where_prose_starts(recognizer: Recognizer, text: str, kept: str) -> None:
    assert cleaned(recognizer, text).endswith(kept)


def test_a_postcode_after_a_town_is_reported_as_a_postcode(recognizer: Recognizer) -> None:
    text = "Lives at 12 Baker Street, London NW1 6XE"
    spans = [(text[s.start : s.end], s.kind) for s in recognizer.find(text)]
    assert spans == [("12 Baker Street, London", "address"), ("NW1 6XE", "postcode")]


@pytest.mark.parametrize(
    "text",
    [
        "home: oxygen therapy 2L", "home: 2L O2 via NC", "home: Lasix 40 mg daily",
        "Home: O2 2L", "home: CPAP at night", "residence: nursing home.", "Address: see chart.",
        "Series 1001, Bosniak 2F", "Boost 1600 cGy", "Siemens 12345",
        "Window 1500-2000", "AX T2 3MM", "COR MPR 3MM", "SAG T1 2MM", "FLAIR T2 3MM",
        "LOW DOSE CT LUNG SCREEN 2000", "Gleason 3+4=7, PSA 12.5", "DLP 1234 mGy.cm",
        "Flat 2 mm lesion", "flat panel 3000 x 3000", "kV 120, mAs 2500", "Level 3, Dept 12",
        "CTDIvol 12.5 mGy, DLP 1200", "Volume 1500 ml", "b-value 1000, ADC 1200",
    ],
)  # fmt: skip
def test_clinical_text_with_numbers_is_no_address(recognizer: Recognizer, text: str) -> None:
    assert recognizer.find(text) == [], text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("RTA, driver, car registration KX19 ZPL", "RTA, driver, car registration *"),
        ("vehicle reg: KX19ZPL.", "vehicle reg: *."),
        ("licence plate AB-123-CD seen", "licence plate * seen"),
        ("VIN 1HGCM82633A004352", "VIN *"),
        ("image registration error 2 mm", "image registration error 2 mm"),
        ("Registration T1 to T2 ok", "Registration T1 to T2 ok"),
    ],
)
def test_vehicle_registrations_are_identifiers(
    recognizer: Recognizer, text: str, cleaned: str
) -> None:
    assert recognizer.clean(text) == cleaned


def test_an_ip_address_is_a_network_address_and_no_street(recognizer: Recognizer) -> None:
    # It names a machine, often the patient's own; "address" before it is no address cue.
    text = "IP address 10.0.0.1"
    assert [(s.kind, text[s.start : s.end]) for s in recognizer.find(text)] == [("url", "10.0.0.1")]
    assert recognizer.clean("from host 192.168.17.254, port 104.") == "from host *, port 104."
    # A UID or a longer dotted number is no IP address; nor is a date.
    for text in ("UID 1.2.840.10008.5.1.4", "Ver 3.6.7.1.2", "on 12.05.2024", "256.1.1.1"):
        assert all(s.kind != "url" for s in recognizer.find(text)), text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("lives in Kingsmere", "lives in *"),
        ("address *, Villabrea *", "address *"),
        ("mail <alexey.*@web.de> today", "mail <*> today"),
    ],
)
def test_places_and_mails_without_digits_or_around_a_cut(text: str, cleaned: str) -> None:
    assert Recognizer().clean(text) == cleaned
