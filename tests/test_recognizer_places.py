"""Hospitals and clinics named in free text go whole; a clinic named for its specialty stays
(organisations.py). The instance's own Institution Name is a known value elsewhere; these are
the places a patient was before. Addresses and dates in other scripts (cjk_places.py, the CJK
date pattern, Polish street numbers) are here too: places and times that no Latin rule sees,
and IDs in file and protocol names, where an underscore joins them to the words."""

from __future__ import annotations

import pytest

from gateway.deid.free_text import retained_phi
from gateway.text.recognizer import Recognizer, default_recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return default_recognizer()


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("CT performed at Royal Oakhaven Hospital, see report", "CT performed at *, see report"),
        ("transferred from Harrogate District Hospital on day 3", "transferred from * on day 3"),
        ("St Mary's Hospital", "*"),
        ("Great Ormond Street Hospital", "*"),
        ("PRIOR AT ROYAL OAKHAVEN HOSPITAL", "PRIOR AT ROYAL *"),
        ("Memorial Sloan Kettering Cancer Center", "*"),
        ("Guy's and St Thomas' NHS Foundation Trust", "*"),
        ("seen in A&E at Ninewells Hospital", "seen in A&E at *"),
        ("Hospital Universitario La Paz", "*"),
        ("Hôpital Saint-Louis", "*"),
        ("Referred by GP, Harbourview Surgery", "Referred by GP, *"),
        ("Greenbank Medical Practice", "*"),
        ("im Klinikum Großhadern. Patientin stabil", "im *. Patientin stabil"),
        ("comparé à celui du CHU de Rennes.", "comparé à celui du *."),
        ("på Karolinska Universitetssjukhuset.", "på *."),
        ("Evangelisches Krankenhaus Bielefeld", "*"),
        ("CT at St Elsewhere's General.", "CT at *."),
        ("Toronto General ED", "* ED"),
        # a town that is also a word before a kind of hospital, a place after one
        ("faxed to Cork University Hospital, fax", "faxed to *, fax"),
        ("Derby Royal Infirmary", "*"),
        ("at The University Hospital of Wales.", "at *."),
        # everyday words naming a GP's practice or a medical centre
        ("GP at Riverside Medical Centre today", "GP at * today"),
        ("Oak Tree Family Practice", "*"),
        # care homes and imaging practices; the town written after a hospital's name
        ("fall at Sunnydale Assisted Living", "fall at *"),
        ("Residence: Sunrise Care Home, Room 14B", "Residence: *"),
        ("from Sunrise Care Home today", "from * today"),
        # schools, often named with everyday words too
        ("Student at Lincoln High School", "Student at *"),
        ("teacher at Riverside Elementary", "teacher at *"),
        ("Westview Middle School, grade 7", "*, grade 7"),
        ("from Oakwood Nursing Home today", "from * today"),
        ("prior at Lakeshore Imaging", "prior at *"),
        ("outside CT from Mercy Hospital Joplin, reviewed", "outside CT from *, reviewed"),
        ("Born at Rotunda Hospital Dublin, 1988", "Born at *, 1988"),
        # no institution word: after "performed at", "transferred from"; a company
        ("Prior MRI performed at Addenbrooke's on", "Prior MRI performed at * on"),
        ("Transferred from Groote Schuur, Cape Town", "Transferred from *, Cape Town"),
        ("employer: Zeltweger Logistics GmbH", "employer: *"),
        ("compared to Toronto Western 2019", "compared to * 2019"),
        ("referred from St. Elsewhere by", "referred from * by"),
        ("seen at Oakwood yesterday", "seen at * yesterday"),
    ],
)
def test_named_institutions_are_cut_whole(recognizer: Recognizer, text: str, cleaned: str) -> None:
    assert recognizer.clean(text) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        "Seen in Fracture Clinic today", "General Hospital", "Outside Hospital CT reviewed",
        "Mayo Clinic", "Pain Clinic", "Breast Imaging Center", "Children's Hospital",
        "Community Hospital", "Anticoagulation Clinic", "Lymphoedema Clinic",
        "Haematology Clinic", "Rapid Access Chest Pain Clinic", "CHEST CLINIC",
        "Cardiology Clinic", "Emergency Department", "General Surgery", "Day Surgery",
        "Oral and Maxillofacial Surgery", "Colorectal Surgery", "General Practice",
        "General anaesthesia", "Memorial service", "Attorney General",
        "seen at the University Hospital", "Outside Community Hospital", "The Royal Infirmary",
        "Paediatric Oncology Clinic", "Clinic of Radiology", "Student Health Centre",
        "Urgent Care Medical Center", "Community Health Center", "Academic Medical Center",
        "The Medical Centre", "Radiology Medical Group", "Breast Imaging", "Cardiac Imaging",
        "Diagnostic Imaging", "Interventional Radiology", "Nursing Home resident",
        "General Hospital Radiology", "MR Imaging", "transferred from ICU", "transferred from A&E",
        "performed at Level 2", "done at Radiology", "Manufacturer Siemens AG", "GE Healthcare Inc",
        "Toshiba Medical Systems Corporation", "Hologic Inc.", "Compared with MRI 2019",
        "Compared to Outside Films", "Compared With Previous Study", "compared to Baseline",
        "referred to Neurology", "seen at MDT", "admitted to Ward 5", "seen at Outpatients",
        "admitted to Critical Care", "referred to Dermatology Clinic",
        "Patient Care Home visit", "The Care Home called", "Outside Nursing Home records",
        "Graduated from Medical School in 2001", "Pt is a High School student",
        "Sunday School teacher", "went to School today", "Nursing School",
    ],
)  # fmt: skip
def test_clinics_named_for_what_they_treat_stay(recognizer: Recognizer, text: str) -> None:
    assert recognizer.find(text) == [], text


def test_a_retained_descriptor_loses_the_institution(recognizer: Recognizer) -> None:
    text = "Ninewells Hospital protocol"
    spans = [s for s in recognizer.find(text) if retained_phi(text, s)]
    assert [text[s.start : s.end] for s in spans] == ["Ninewells Hospital"]


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("〒105-0011 東京都港区芝公園4-2-8", "〒* *"),
        ("住所：大阪府大阪市北区梅田3丁目1番3号", "住所：*"),
        ("北京市朝阳区建国路88号", "*"),
        ("上海市徐汇区漕溪北路595号3号楼201室", "*"),
        ("서울특별시 강남구 테헤란로 152", "*"),
        ("Adres: ul. Marszałkowska 84/92 m. 15, 00-514 Warszawa", "Adres: *"),
        ("ul. Długa 5, 80-827 Gdańsk.", "*."),
        ("nascida em 17/04/1963, Rua Augusta 274, 1100-053 Lisboa.", "nascida em *, *, * *."),
        ("検査日 2021年3月14日", "検査日 *"),
        ("2021년 3월 14일 검사", "* 검사"),
    ],
)
def test_addresses_and_dates_in_other_scripts(
    recognizer: Recognizer, text: str, cleaned: str
) -> None:
    assert recognizer.clean(text) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        "右肺上葉に結節あり。経過観察。", "胸部CT平扫未见异常", "左肺下叶见一结节，大小约8mm",
        "造影CT 第3期", "第4腰椎", "肝S8区域に2cm大の腫瘤", "道路交通事故后3日", "膵頭部に15mm大",
    ],
)  # fmt: skip
def test_cjk_clinical_text_stays(recognizer: Recognizer, text: str) -> None:
    assert recognizer.find(text) == [], text


def test_a_postcode_is_not_cut_up_by_short_numbers_taken_for_phones(
    recognizer: Recognizer,
) -> None:
    """Brackets make the phone library look at the whole text; its short "possible" numbers
    ("58" of "58F", "11 3" inside a postcode) are no phone numbers and must not win over the
    postcode they overlap."""
    text = "58F (respiratory). 22 Quay Road, Falmouth TR11 3HF."
    assert recognizer.clean(text) == "58F (respiratory). * *."


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("file://server/share/OKAFOR_CHIDINMA_4471928.dcm", "file://server/share/*_*_*.dcm"),
        ("4471928_CT_CHEST", "*_CT_CHEST"),
        ("IMG_000123.dcm", "IMG_000123.dcm"),  # a counter, not an ID
        ("PTV_6000", "PTV_6000"),
    ],
)
def test_ids_between_underscores(recognizer: Recognizer, text: str, cleaned: str) -> None:
    assert recognizer.clean(text) == cleaned


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        # an address after a cue, with a measurement earlier in the value
        ("Lesion 12 x 9 mm. address * 79, * 14553.", "Lesion 12 x 9 mm. address * *."),
        ("prior ACC 1880-3730.", "prior ACC *."),  # round-looking groups after a keyword
        ("ROI 1 prior 970 6370", "ROI 1 prior *"),
        ("at 07:30: RT structures", "at *: RT structures"),  # RT is no clock face here
        ("RT 10:00 mass, seen 11:30", "RT 10:00 mass, seen *"),
    ],
)
def test_numbers_near_other_numbers_and_sides(
    recognizer: Recognizer, text: str, cleaned: str
) -> None:
    assert recognizer.clean(text) == cleaned
