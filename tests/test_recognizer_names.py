"""Names no list knows, found by context (rules 3, 6 and 7 in gateway/text/names.py), and the
clinical text the same rules must leave alone.

The names here are not in the shipped lists (or are too short to count alone), so each case
shows a context rule doing the work: a cue, a word after the name, a lone "*" left by the
cleaner, a one-word sentence, the DICOM "SURNAME Given" order, a CJK given name after a cue.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.text.recognizer import Recognizer, default_recognizer

DESCRIPTORS = Path(__file__).parent / "data" / "clinical_descriptors.txt"


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return default_recognizer()


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        # a word before "present", "aware", "(wife)": the name and the words before it
        ("Zimmerer present. on arrival", "* present. on arrival"),
        ("Li present. No pleural effusion.", "* present. No pleural effusion."),
        ("Tel: *; Morwenna Vanterpool present. Thyroid nodule 14 mm",
         "Tel: *; * present. Thyroid nodule 14 mm"),
        ("Kealoha aware of the findings", "* aware of the findings"),
        ("headache, Eluned (wife) at bedside", "headache, * (wife) at bedside"),
        ("Oyelowo at bedside during scan", "* at bedside during scan"),
        ("CTV Vasilescu edit", "CTV * edit"),
        # a name part beside a lone "*" (a part of the name the cleaner already cut)
        ("MRCP 3D * Ty", "MRCP 3D * *"),
        ("L4-L5 * Njeri", "L4-L5 * *"),
        ("*; tel *; Yejun * present.", "*; tel *; * * present."),
        ("Aortic diameter 3.4 cm. TRELAWNEY * present.", "Aortic diameter 3.4 cm. * * present."),
        # alone as a sentence in prose
        ("Liver measures 16.2 cm. Aortic diameter 3.4 cm. Pryderi.",
         "Liver measures 16.2 cm. Aortic diameter 3.4 cm. *."),
        ("patient seen. Xu. daughter informed.", "patient seen. *. daughter informed."),
        ("No pleural effusion. Fifita. nodule 8 mm", "No pleural effusion. *. nodule 8 mm"),
        # SURNAME Given
        ("follow-up lymphoma GOIKOETXEA Enguerrand", "follow-up lymphoma *"),
        ("KIM Minjun; CT CHEST W/O", "*; CT CHEST W/O"),
        ("DWI b1000 - ZIMMERER Wiremu", "DWI b1000 - *"),
        ("contoured by THORVALDSEN Siân", "contoured by *"),
        # cues: lower-case roles, "RN" before a name, "contoured by", "Dr. Le"
        ("nurse Eluned; trauma", "nurse *; trauma"),
        ("RN Xiuying Li present.", "RN * present."),
        ("Pt: Mr/Ms *. RN Goikoetxea Enguerrand. nodule 8 mm", "Pt: Mr/Ms *. RN *. nodule 8 mm"),
        ("contoured by Tregothnan", "contoured by *"),
        ("contoured by * Siân", "contoured by * *"),
        ("GTV per Dr. Le", "GTV per Dr. *"),
        ("Dr. Le present. Ventricles normal in size.", "Dr. * present. Ventricles normal in size."),
        ("interpreter Oyelowo present", "interpreter * present"),
        # a lower-case word after a title that is no word ("Dr. stergaard": Ø dropped)
        ("Discussed with Dr. stergaard by phone", "Discussed with Dr. * by phone"),
        ("Dr. on call informed", "Dr. on call informed"),
        # user names after a cue: digits after them, or a listed name after an initial
        ("Technologist: mgarcia3, reviewed by rkapoor", "Technologist: *3, reviewed by *"),
        ("contoured by jsmith2", "contoured by *2"),
        ("reviewed by radiology", "reviewed by radiology"),
        ("Addendum 2009-08-01 by jpatel: no change.", "Addendum * by *: no change."),
        ("caused by mechanical stress", "caused by mechanical stress"),
        # before a name: an upper-case listed word, an unknown Title Case word, a particle
        ("PARK Jiho present.", "* present."),
        ("HORVAT Ortwin present. Right lower lobe", "* present. Right lower lobe"),
        ("nodule 8 mm Lundegard Priyanka", "nodule 8 mm *"),
        ("per ap Gruffydd present.", "per * present."),
        ("Per Hansen present.", "* present."),
        ("ΤΣΑΚΊΡΗ Ιωάννα: US THYROID", "*: US THYROID"),
        ("prior exam of patient stergaard Chidi", "prior exam of patient *"),
        ("AX T1 POST GAD per Le", "AX T1 POST GAD per *"),
        ("per Le. Wall thickening", "per *. Wall thickening"),
        ("per le protocole", "per le protocole"),
        ("Peregrine Adeyemi: Annotations", "*: Annotations"),
        ("MR BRAIN W/WO - Te Whare Maëlle", "MR BRAIN W/WO - *"),
        ("CTV Lee edit", "CTV * edit"),
        ("per ap Gruffydd: CT CHEST W/O", "per *: CT CHEST W/O"),
        ("Τσακίρη: abdominal pain RLQ", "*: abdominal pain RLQ"),
        ("CTV Τσακίρη edit", "CTV * edit"),
        # a name heading English prose; labels and foreign labels stay
        ("Hjelmqvist: headache, worst ever", "*: headache, worst ever"),
        ("Adnexa: no abnormality is seen today", "Adnexa: no abnormality is seen today"),
        ("Comparison: none available", "Comparison: none available"),
        ("Adres: ul. Polna 12", "Adres: *"),
        ("Τσακίρη present. Aortic diameter 3.4 cm.", "* present. Aortic diameter 3.4 cm."),
        ("nodule 8 mm Morwenna Vanterpool.", "nodule 8 mm *."),
        ("nodule 8 mm Ni Dhomhnaill", "nodule 8 mm *"),
        ("tenderness in Right Iliac Fossa", "tenderness in Right Iliac Fossa"),
        # other scripts: titles in Devanagari and Thai, Russian roles and patronymics
        ("रोगी को डॉ. सुरेश वर्मा ने भेजा", "रोगी को डॉ. * ने भेजा"),  # caseless: "ने" stops it
        ("ผู้ป่วยถูกส่งตัวโดย นพ.สมชาย ใจดี", "ผู้ป่วยถูกส่งตัวโดย นพ.*"),
        ("Пациент направлен врачом Смирновой Еленой Викторовной", "Пациент направлен врачом *"),
        ("Жалобы со слов Ольги Сергеевны", "Жалобы со слов *"),
        ("Пациентка жалуется на боль", "Пациентка жалуется на боль"),
        ("Die Patientin wurde von ihrer Tochter Annelie Brückner begleitet.",
         "Die Patientin wurde von ihrer Tochter * begleitet."),
        ("Small Baker cyst. LEE Seoyeon.", "Small Baker cyst. *."),
        # a name that overlaps a stronger span keeps what lies beyond it
        ("NI no. TM 39 41 10 D. Hoffmeister. Right lower lobe", "NI no. *. *. Right lower lobe"),
        ("r/o PE daughter Chidi stergaard", "r/o PE daughter *"),
        # initials beside a name or a cut one; other initials stay
        ("Иванова А.С., тел.", "*, тел."),
        ("* Г.Р. seen today", "* * seen today"),
        ("Fig. A. shows T.B. negative", "Fig. A. shows T.B. negative"),
        # a name joined by "and" to a name found or already cut
        ("Whanau present: Te Rangi Parata and Aroha Ngata", "* present: * and *"),
        ("present: * and Aroha Ngata", "present: * and *"),
        ("Dr. Pryce and Okonjo reviewed", "Dr. * and * reviewed"),
        ("Smith and Nephew implant", "* and Nephew implant"),
        ("CT and MRI and Angio", "CT and MRI and Angio"),
        # CJK given names after a Latin or CJK cue
        ("wife 志强 present", "wife * present"),
        ("headache, worst ever (wife 花子)", "headache, worst ever (wife *)"),
        ("L4-L5 normal. nurse 建华. No effusion.", "L4-L5 normal. nurse *. No effusion."),
        ("contoured by tech 秀英", "contoured by tech *"),
        ("contoured by 黄 志强", "contoured by *"),
        ("MR BRAIN W/WO nurse 수빈", "MR BRAIN W/WO nurse *"),
        ("妻 花子 来院", "妻 * 来院"),
        ("아내 김민지 동행", "아내 * 동행"),
        ("夫：太郎", "夫：*"),
        # a role before the name (主治医, 医師, 의사), three-character family names (佐々木)
        ("電話。主治医 佐々木 美咲。", "電話。主治医 *。"),
        ("主治医：長谷川", "主治医：*"),
        ("医師 渡辺 健", "医師 *"),
        ("의사 이서연", "의사 *"),
        # a name's reading in katakana in brackets after it; other katakana in brackets stays
        ("患者 山田太郎 様 (ヤマダ タロウ)", "患者 * 様 (*)"),
        ("氏名：佐藤花子（サトウ ハナコ）", "氏名：*（*）"),
        ("造影剤（ガドリニウム）", "造影剤（ガドリニウム）"),
        ("报告医师 欧阳娜娜", "报告医师 *"),
        ("佐々木美咲先生", "*先生"),
        ("患者佐々木美咲の", "患者*の"),
        # a bracketed relation after a name in lower case or made of words (relations.py)
        ("results phoned to summer brown (niece)", "results phoned to * (niece)"),
        ("call Rose (daughter) on arrival", "call * (daughter) on arrival"),
        ("accompanied by grace (carer)", "accompanied by * (carer)"),
        # a listed name that is also a word, after an unknown one, before "present"
        ("home: *; Seoyeon Lee present.", "home: *; * present."),
        # names standing alone between punctuation or beside a descriptor (names_alone.py)
        ("Diameter 3.4 cm. Kalani Achebe. No effusion.", "Diameter 3.4 cm. *. No effusion."),
        ("CT HEAD W/O - Vanterpool", "CT HEAD W/O - *"),
        ("MR LSPINE (Kealoha)", "MR LSPINE (*)"),
        ("Beaumarchais: AX T1 POST GAD", "*: AX T1 POST GAD"),
        ("CT HEAD W/O Goikoetxea Enguerrand", "CT HEAD W/O *"),
        ("at * Park Jiho.", "at * *."),
        ("from prior. ap Gruffydd. Thyroid nodule", "from prior. *. Thyroid nodule"),
        ("Τσακίρη; US RENAL BILAT", "*; US RENAL BILAT"),  # another script in Latin text
        # one-character CJK family names, kana given names
        ("杨 丽娟 present", "* present"),
        ("MR LSPINE (赵 海燕)", "MR LSPINE (*)"),
        ("contoured by RN *さくら", "contoured by RN **"),
        # a degree between the title and the name; a name no list knows in a list of names
        ("Hausarzt Dr. med. Ottokar Brünninghaus", "Hausarzt Dr. med. *"),
        ("Prof. Dr. rer. nat. Wiebke Ockenfels", "Prof. Dr. rer. nat. *"),
        ("Family: D'Angelo, MacGillivray, van der Merwe attended", "Family: *, *, * attended"),
        # who worked the system, and a three-letter login with digits
        ("Operator: hwilliams; Physician of record", "Operator: *; Physician of record"),
        ("Images sent by tech abc123", "Images sent by tech *123"),
        # an annotation's label and who drew it
        ("ROI 1 Hjelmqvist", "ROI 1 *"),
        ("60 Gy/30# to PTV_Oyelowo", "60 Gy/30# to PTV_*"),  # joined to a structure's name
        # an ROI observation's label; a name heading an English description; a Greek family
        # name before a Greek given name in English text
        ("Minjun Kim: obs", "*: obs"),
        ("Trelawney: Radiology report", "*: Radiology report"),
        ("nodule 8 mm Τσακίρη Ιωάννα", "nodule 8 mm *"),
        # a Thai title written against the given name, the family name after it
        ("ผู้ป่วย นายสมชาย ใจดี โทร", "ผู้ป่วย นาย* โทร"),
        ("นางสาวสุดา แสงทอง", "นางสาว*"),
    ],
)  # fmt: skip
def test_names_no_list_knows_are_found_by_context(
    recognizer: Recognizer, text: str, cleaned: str
) -> None:
    assert recognizer.clean(text) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        # one-word sentences and words before "present" that are terms, drugs or devices
        "Liver measures 16.2 cm. Unremarkable.",
        "Small bowel loops. Pneumobilia. No free air.",
        "Right kidney. Hydronephrosis. Left kidney normal.",
        "Findings: ascites. Paracentesis. Follow-up advised.",
        "Bolus of contrast given. Omnipaque. No reaction.",
        "Gadovist 7.5 ml given, no reaction.",
        "Pneumobilia present in the left lobe.",
        "Contrast present in the bladder.",
        "Hardware present at L4-L5.",
        "Omnipaque present in the colon.",
        "Patient on Xarelto, aware of bleeding risk.",
        "Scanner Somatom Force, Aquilion ONE, Biograph Vision.",
        "Eovist HBP 20 min; Primovist 20min",
        "nodule 8 mm. Bosniak I. Baker cyst.",
        "Simple renal cyst 2.1 cm, Bosniak I.",
        "Wall thickening of terminal ileum, consistent with Crohn disease.",
        "Chiari I malformation.",
        # upper-case descriptors with a Title Case word
        "CT HEAD Routine", "MR BRAIN Gadolinium", "US Abdomen", "PW Doppler", "MR LSPINE Sag",
        "CTA Runoff 1.0 B26f", "SAG T2 FS", "SRS 20Gy", "CINE 4CH", "T2* Map", "AX T2* GRE",
        "DLP 450 mGy*cm",
        # CJK clinical words after cues, and words that only start like a cue
        "患者の母指", "父母同意", "妻子同意检查", "CT with 造影剂", "患者 右肺に結節",
        "FHx breast cancer (mother)", "heart disease (father)", "history of stroke (Mother)",
        "told her (sister)", "Will present at MDT.", "Surview", "CTA Head Neck 0.75 Bv36",
        "User defined window", "by tech ct2 today", "read by reader 2", "ROI 1 Liver",
        "Run 1 Ultravist", "Slice 12 Gadovist", "Volume 3 Dixon", "Echo 2 Doppler",
        "ผล CT ปกติ ไม่พบความผิดปกติ", "PTV_Boost", "CTV_Nodes_Left", "SAG_Mprage", "PTV_Sib",
        "Befund: Normal", "Indication: Pain", "Comparison: Prior CT",
        "Ortho: Fracture clinic review", "Paeds: Abdominal pain",
        "Befund: Keine Auffälligkeiten der Lunge.", "検査 * ですか", "Заключение: Норма.",
        "右肺上葉に結節あり。経過観察。", "胸部CT平扫未见异常",
    ],
)  # fmt: skip
def test_clinical_text_survives_the_context_rules(recognizer: Recognizer, text: str) -> None:
    assert recognizer.find(text) == [], text


def test_at_least_99_5_percent_of_clinical_descriptors_come_back_unchanged(
    recognizer: Recognizer,
) -> None:
    lines = DESCRIPTORS.read_text(encoding="utf-8").splitlines()
    values = [line for line in lines if line.strip() and not line.startswith("#")]
    changed = [v for v in values if recognizer.clean(v) != v]
    assert len(changed) <= len(values) * 0.005, changed


@pytest.mark.parametrize(
    "text", ["TE 90 ms Echo train 16", "TR 2000 ms Spin echo", "TI 150 ms Inversion"]
)
def test_milliseconds_are_not_a_title(text: str) -> None:
    assert Recognizer().clean(text) == text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("nodule 8 mm Vanterpool", "nodule 8 mm *"),
        ("renal cyst Bosniak", "renal cyst Bosniak"),
        ("fluid in Morison", "fluid in Morison"),
        ("Brodie abscess.", "Brodie abscess."),
        ("CT Abdomen Pelvis", "CT Abdomen Pelvis"),
    ],
)
def test_an_unknown_word_ending_a_note_is_a_name_but_an_eponym_is_not(
    text: str, cleaned: str
) -> None:
    assert Recognizer().clean(text) == cleaned
