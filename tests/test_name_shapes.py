"""Names told by word order and shape (gateway/text/name_shapes.py), streets and towns of
more countries, each checked as the cleaned text: every name word gone, the rest kept."""

from __future__ import annotations

import pytest

from gateway.text.recognizer import Recognizer, default_recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return default_recognizer()


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Knight, Marilyn", "*, *"), ("Love, Donald", "*, *"), ("Freely, Brian", "*, *"),
        ("McNelis, Samantha", "*, *"), ("KNIGHT, MARILYN", "*, *"),
        ("DISCUSSED WITH RAFAŁ MADURA AT 06:51", "DISCUSSED WITH * AT *"),
        ("TREATED BY RENA STUMPF AND EDE MOHAUPT", "TREATED BY * AND *"), ("Blom, Iris", "*, *"),
        ("Amber Swanson MRN 16980254", "* MRN *"), ("Tracy Ward MRN 20212347", "* MRN *"),
        ("Dr. Meinrad Killer reviewed the images.", "Dr. * reviewed the images."),
        ("Signed: Klaus-Dieter Gute, MD", "Signed: *, MD"),
        ("Attn Lyndon Carville-O'Kieve - urgent", "* - urgent"),
        ("Previously treated by Grace Green and Richard Richardson",
         "Previously treated by * and *"),
        ("Report dictated by Nienke van der Heyden", "Report dictated by *"),
        ("Patient's husband Milo van Bentheim called", "Patient's husband * called"),
        ("Cc: Romeo Tabacu; Ieremia Diaconescu", "Cc: *; *"),
        ("Comparison from MacNaboola-Gibney", "Comparison from *"),
    ],
)  # fmt: skip
def test_names_by_order_and_shape(recognizer: Recognizer, text: str, cleaned: str) -> None:
    assert recognizer.clean(text) == cleaned


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Previously treated by Ναθαναήλ Τυράλης and Θεόπιστος Αποστολόπουλος",
         "Previously treated by * and *"),
        ("Lives at ш. Боровое, д. 2/3, г. Джейрах", "Lives at *"),
        ("Previously treated by ख़ान पाटिल and गोतम जयरामनजी", "Previously treated by * and *"),
        ("Cc: ศุภกรชนา นะวะมันดร; เอกวิทย์ ทวีเดช", "Cc: *; *"),
        ("Г-жа Елиса Куртакова MRN 20892112", "Г-жа * MRN *"),
        ("Мазепа, Олекса", "*, *"), ("伊藤, 裕樹", "*, *"), ("许, 桂花", "*, *"),
        ("김, 재현", "*, *"), ("松本^翔太", "*"), ("郭^凤英", "*"), ("林, 美鳳", "*, *"),
        ("윤 진우", "*"),
        ("Ασημούλα Χριστοφόρη", "*"), ("เกษมชัย ทรัพย์ธำรงค์", "*"), ("Иван Петров", "*"),
        ("นาควงษ์, ทรรศนชัย", "*, *"), ("स्वर्ण भटजी MRN 90401565", "* MRN *"),
    ],
)  # fmt: skip
def test_names_of_other_scripts(recognizer: Recognizer, text: str, cleaned: str) -> None:
    """In English text a short run of another script is a name or a place; CJK and
    Cyrillic names written surname first with a comma."""
    assert recognizer.clean(text) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        "ผล CT ปกติ ไม่พบความผิดปกติ",
        "β-HCG 5 IU, 12 μmol/L",
        "이 환자는 CT 검사",
        "이 검사",
        "이 환자는",
        "КТ органов грудной клетки",
        "Компьютерная Томография",
    ],
)
def test_other_scripts_clinical_text_stays(recognizer: Recognizer, text: str) -> None:
    assert recognizer.clean(text) == text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Transported from Weißwasser by ambulance", "Transported from * by ambulance"),
        ("Transported from Týn nad Vltavou by ambulance", "Transported from * by ambulance"),
        ("Address: 21174 Amy Well Apt. 552, South Paulachester, MS 00905", "Address: * *"),
        ("Address: 15736 Audrey Bridge, South Joshua, YT H8C3G3", "Address: * *"),
        ("Lives at plac Witosa 16, Cieszyn", "Lives at *"),
        ("Address: Lentokapteenin kuja 268, 95044 Pudasjärvi", "Address: *"),
        ("Lives at Bácsszéki út 167., Újmindszentfalva", "Lives at *"),
    ],
)  # fmt: skip
def test_streets_and_towns_of_more_countries(
    recognizer: Recognizer, text: str, cleaned: str
) -> None:
    assert recognizer.clean(text) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        "Thanks, see prior", "CT Head MRN", "MR BRAIN WO CONTRAST", "CT HEAD AND NECK",
        "FINDINGS DISCUSSED WITH THE REFERRING TEAM", "REVIEWED BY THE ON-CALL RADIOLOGIST",
        "CHEST 2 VIEWS", "2 Lateral View",
        "3 Soft Tissue Neck", "T2 sor 3", "Chest, Abdomen, Pelvis", "Left, Right",
        "Pre followed by post contrast", "Lumbar Spine; Thoracic Spine", "Maria Smith; Chest CT",
    ],
)  # fmt: skip
def test_clinical_text_stays(recognizer: Recognizer, text: str) -> None:
    kept = recognizer.clean(text)
    for word in ("CT", "Head", "BRAIN WO", "HEAD AND NECK", "WITH THE", "BY THE", "VIEWS",
                 "Lateral View",
                 "Soft Tissue Neck", "sor 3", "Chest CT",
                 "Abdomen", "Right", "contrast", "Thoracic Spine", "see prior"):  # fmt: skip
        if word in text:
            assert word in kept, (text, kept)


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Annotation by thomasbrown", "Annotation by *"),
        ("Signed by margaudlefebvre", "Signed by *"),
        ("Next of kin Azeglio Conti", "Next of kin *"),
        ("Employer: Williams, Jones and Hardy", "Employer: *"),
        ("from Cunningham, Lees and Butler", "from *, * and *"),
        ("Smith and Nephew", "* and Nephew"),
        ("Employer: Chase PLC", "Employer: *"),
        ("Manufacturer Siemens AG", "Manufacturer Siemens AG"),
        ("Hologic Inc.", "Hologic Inc."),
        ("Referring physician: Samantha Jones, Port Anthonyburgh.", "Referring physician: *, *."),
        ("Seen by Dr Smith, Radiology.", "Seen by Dr *, Radiology."),
        ("Referred by Dr Patel, Oncology Department", "Referred by Dr *, Oncology Department"),
        ("Chest, Abdomen and Pelvis", "Chest, Abdomen and Pelvis"),
        ("Result phoned to Steven Ward, ward nurse", "Result phoned to *, ward nurse"),
        ("Thank you for referring Amber van Rijthoven.", "Thank you for referring *."),
        ("I, Frau Siegried Gute B.A., agree.", "I, Frau *, agree."),
        ("MDT; Ing. Brunhild Junk and Tilmann Jopich agreed", "MDT; Ing. * and * agreed"),
        ("Transferred to Ward 5", "Transferred to Ward 5"),
        ("Annotation by ymorricone", "Annotation by *"),
        ("measurement by transperineal approach", "measurement by transperineal approach"),
        ("Żok Arkadiusz", "*"),
        ("Foà Pasquale", "*"),
        ("Verified by Kay van de Elzas-van der Noot", "Verified by *"),
        ("measured by hand", "measured by hand"),
        ("enhanced by gadolinium", "enhanced by gadolinium"),
        ("by ultrasonography", "by ultrasonography"),
    ],
)
def test_logins_of_names_run_together(recognizer: Recognizer, text: str, cleaned: str) -> None:
    assert recognizer.clean(text) == cleaned
