"""A generated test set of DICOM instances whose free text carries planted PHI of every class.

The point is held-out data: the names, streets and towns here are this module's own lists,
never the gateway's shipped word lists, so a recognizer that only knows its own lists is
caught out. Every plant is recorded as (class, value, spellings): the spellings are the forms
a test searches the output for (after `fold`: NFKC, casefold, accents folded), and the phone
and ID classes are searched with their separators removed too (`Needles`).

Kinds: CT/MR/US images with descriptors, comments, nested requests and private blocks;
Comprehensive and Basic Text SR with content trees four levels deep; RT Structure Sets;
Grayscale Softcopy Presentation States with text objects; Encapsulated PDF with a small
hand-written PDF. Character sets: default, ISO_IR 6, ISO_IR 100, ISO_IR 192 and
ISO 2022 IR 87 (PS3.5 6.1), each instance written with pydicom and read back from bytes.

Deterministic: `generate(seed)` gives the same bytes on every run.
"""

from __future__ import annotations

import random
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from io import BytesIO

from document_samples import assemble
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "CLASSES",
    "DIGIT_CLASSES",
    "Generated",
    "Needles",
    "Plant",
    "dataset_texts",
    "fold",
    "generate",
    "pdf_text",
]

# --- PHI classes ---------------------------------------------------------------------------

PATIENT_NAME = "patient-name"  # the patient's own name in other forms
OTHER_NAME = "other-name"  # relatives, staff, another patient
PHONE = "phone"
EMAIL = "email"
URL = "url"
ADDRESS = "address"  # street and number
CITY = "city"  # HIPAA Safe Harbor counts towns too (45 CFR 164.514(b)(2)(i)(B))
POSTCODE = "postcode"
ID = "id"  # the patient's and others' record numbers, accessions, in other spellings
NATIONAL_ID = "national-id"
DATE = "date"
TIME = "time"
CLASSES = (
    PATIENT_NAME,
    OTHER_NAME,
    PHONE,
    EMAIL,
    URL,
    ADDRESS,
    CITY,
    POSTCODE,
    ID,
    NATIONAL_ID,
    DATE,
    TIME,
)
# Classes searched with separators removed as well: "555 0142 3381" is "55501423381".
DIGIT_CLASSES = frozenset({PHONE, ID, NATIONAL_ID})

KINDS = ("ct", "mr", "us", "sr", "rtstruct", "gsps", "pdf")

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
_SOP_CLASS = {
    "ct": CT_IMAGE,
    "mr": MR_IMAGE,
    "us": US_IMAGE,
    "rtstruct": RT_STRUCTURE_SET,
    "gsps": GSPS,
    "pdf": ENCAPSULATED_PDF,
}
_MODALITY = {
    "ct": "CT",
    "mr": "MR",
    "us": "US",
    "sr": "SR",
    "rtstruct": "RTSTRUCT",
    "gsps": "PR",
    "pdf": "DOC",
}

_UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root (PS3.5 9.1), not a device's
PRIVATE_CREATOR = "ACME_NOTES_07"

# --- held-out names (this module's own; none is in gateway/deid/data/words) ----------------
# fmt: off
_LATIN_GIVEN = (
    "Adaeze", "Chinonso", "Oluwaseun", "Kwabena", "Ngozi", "Folasade", "Tendai", "Nomvula",
    "Thandiwe", "Sipho", "Zawadi", "Makena", "Wanjiru", "Njeri", "Solveig", "Sigrun",
    "Torbjørn", "Eskil", "Halvard", "Ragnhild", "Jorunn", "Niamh", "Caoimhe", "Pádraig",
    "Eoghan", "Ruairí", "Aoife", "Gráinne", "Bronagh", "Oisín", "Tadhg", "Dervla", "Itziar",
    "Ainhoa", "Iñaki", "Xabier", "Begoña", "Nerea", "Maialen", "Unai", "Leire", "Conceição",
    "Gonçalo", "Rosário", "Françoise", "Gwenaëlle", "Anaïs", "Thibault", "Aurélien",
    "Ségolène", "Clotilde", "Maëlle", "Enguerrand", "Jürgen", "Gudrun", "Liselotte",
    "Hannelore", "Dietmar", "Sieglinde", "Ortwin", "Grzegorz", "Małgorzata", "Wojciech",
    "Krzysztof", "Agnieszka", "Przemysław", "Jadwiga", "Bożena", "Jiří", "Květa", "Zsófia",
    "Gyula", "Erzsébet", "Tuulikki", "Veikko", "Jaakko", "Gökhan", "Şükrü", "Ayşegül",
    "Çağla", "Ümit", "Gianluca", "Ludovica", "Maurizio", "Ornella", "Pierluigi", "Joost",
    "Marijke", "Sjoerd", "Femke", "Wouter", "Aarav", "Priyanka", "Venkatesh", "Lakshmi",
    "Sreenivas", "Anjali", "Harpreet", "Gurpreet", "Phuong", "Huong", "Maricel", "Rodelio",
    "Kwame", "Akosua", "Yaw", "Efua", "Chidi", "Emeka", "Obiageli", "Tunde", "Bo", "Jo",
    "Ty", "Su", "Ximena", "Yolotl", "Citlali", "Tupac", "Illari", "Kalani", "Keoni", "Malia",
    "Tavita", "Sione", "Aroha", "Wiremu", "Rangi", "Tāne", "Jolyon", "Peregrine", "Tamsin",
    "Lowenna", "Morwenna", "Eluned", "Rhodri", "Gwilym", "Siân", "Iolo",
)
_LATIN_FAMILY = (
    "Adeyemi", "Nwachukwu", "Mensah", "Boateng", "Asante", "Owusu", "Mwangi", "Kamau",
    "Otieno", "Dlamini", "Nkosi", "Mahlangu", "Solberg", "Haugland", "Fjeldstad", "Bergqvist",
    "Sandvik", "Kvamme", "Ó Briain", "Ní Dhomhnaill", "Echeverría", "Aguirrezabala",
    "Etxeberria", "Goikoetxea", "Urquijo", "Magalhães", "Gonçalves", "Brandão", "Lefebvre",
    "Gauthier", "Beaumarchais", "Lévesque", "Müller", "Schäfer", "Größmann", "Hoffmeister",
    "Zimmerer", "Wrona", "Wiśniewski", "Kaczmarek", "Grabowski", "Szczepańska", "Dvořák",
    "Novotný", "Horváth", "Szabó", "Nieminen", "Korhonen", "Häkkinen", "Virtanen", "Öztürk",
    "Yılmaz", "Çelik", "Şahin", "Esposito", "Ferraro", "Mancuso", "de Vries", "Bakker",
    "Visser", "Venkataraman", "Subramanian", "Chakraborty", "Bhattacharya", "Raghunathan",
    "Nguyen", "Tran", "Pham", "Huynh", "Ng", "Wu", "Xu", "Ho", "Le", "Dela Cruz", "Bautista",
    "Okafor", "Ezeani", "Ibekwe", "Abubakar", "Haddad", "Khoury", "Nasrallah", "Quispe",
    "Mamani", "Huanca", "Kealoha", "Kahananui", "Tuilagi", "Fifita", "Ngata", "Te Whare",
    "Trelawney", "Penhaligon", "Tregothnan", "Pryderi", "Llywelyn", "ap Gruffydd",
    "Vanterpool", "Okonjo", "Achebe", "Hjelmqvist", "Thorvaldsen", "Østergaard", "Lundegård",
    "Rasmussen", "Holmberg", "Vasilescu", "Popescu", "Dumitrescu", "Ionescu", "Kovačević",
    "Jovanović", "Petrović", "Babić", "Nováčková", "Horvat", "Kowalewska", "Zieliński",
    "Mazur", "Kwiatkowski", "Lewandowska", "Oyelowo", "Balogun", "Adebayo",
)
# (family, given, romanized family, romanized given); romanized forms are how staff type them.
_GREEK = (
    ("Παπαδόπουλος", "Γιώργος", "Papadopoulos", "Georgios"),
    ("Κωνσταντινίδου", "Ελένη", "Konstantinidou", "Eleni"),
    ("Οικονόμου", "Δημήτρης", "Oikonomou", "Dimitris"),
    ("Βλάχου", "Αικατερίνη", "Vlachou", "Aikaterini"),
    ("Αθανασίου", "Νικόλαος", "Athanasiou", "Nikolaos"),
    ("Μαυρίδου", "Σοφία", "Mavridou", "Sofia"),
    ("Ζαχαρίου", "Χρήστος", "Zachariou", "Christos"),
    ("Τσακίρη", "Ιωάννα", "Tsakiri", "Ioanna"),
)
_CYRILLIC = (
    ("Петров", "Иван", "Petrov", "Ivan"),
    ("Смирнова", "Ольга", "Smirnova", "Olga"),
    ("Кузнецов", "Дмитрий", "Kuznetsov", "Dmitry"),
    ("Волкова", "Татьяна", "Volkova", "Tatyana"),
    ("Соколов", "Сергей", "Sokolov", "Sergey"),
    ("Морозова", "Наталья", "Morozova", "Natalya"),
    ("Лебедев", "Алексей", "Lebedev", "Alexey"),
    ("Шевченко", "Олександр", "Shevchenko", "Oleksandr"),
    ("Коваленко", "Богдан", "Kovalenko", "Bohdan"),
)
_CHINESE = (
    ("王", "小明", "Wang", "Xiaoming"),
    ("李", "秀英", "Li", "Xiuying"),
    ("张", "伟", "Zhang", "Wei"),
    ("陈", "建华", "Chen", "Jianhua"),
    ("杨", "丽娟", "Yang", "Lijuan"),
    ("黄", "志强", "Huang", "Zhiqiang"),
    ("赵", "海燕", "Zhao", "Haiyan"),
    ("欧阳", "子涵", "Ouyang", "Zihan"),
)
_KOREAN = (
    ("김", "민준", "Kim", "Minjun"),
    ("이", "서연", "Lee", "Seoyeon"),
    ("박", "지호", "Park", "Jiho"),
    ("최", "수빈", "Choi", "Subin"),
    ("정", "하은", "Jung", "Haeun"),
    ("강", "도윤", "Kang", "Doyun"),
    ("윤", "지우", "Yoon", "Jiwoo"),
    ("남궁", "예준", "Namgung", "Yejun"),
)
_ARABIC = (
    ("الأحمد", "محمد", "Al-Ahmad", "Mohammed"),
    ("الزهراني", "فاطمة", "Al-Zahrani", "Fatima"),
    ("الخطيب", "أحمد", "Al-Khatib", "Ahmad"),
    ("حداد", "ليلى", "Haddad", "Layla"),
    ("العلي", "يوسف", "Al-Ali", "Youssef"),
    ("منصور", "خالد", "Mansour", "Khaled"),
    ("القحطاني", "سارة", "Al-Qahtani", "Sara"),
)
# (kanji family, kanji given, katakana family, katakana given, romaji family, romaji given)
_JAPANESE = (
    ("山田", "太郎", "ヤマダ", "タロウ", "Yamada", "Taro"),
    ("佐藤", "花子", "サトウ", "ハナコ", "Sato", "Hanako"),
    ("鈴木", "一郎", "スズキ", "イチロウ", "Suzuki", "Ichiro"),
    ("高橋", "美咲", "タカハシ", "ミサキ", "Takahashi", "Misaki"),
    ("田中", "健太", "タナカ", "ケンタ", "Tanaka", "Kenta"),
    ("伊藤", "さくら", "イトウ", "サクラ", "Ito", "Sakura"),
    ("渡辺", "翔", "ワタナベ", "ショウ", "Watanabe", "Sho"),
    ("中村", "由美", "ナカムラ", "ユミ", "Nakamura", "Yumi"),
)
# Invented streets and towns (none is a real place name we know of, none is a fake-list word).
_STREETS = (
    "Quillby", "Brackenmoor", "Fennimore", "Hollinsworth", "Wrenthorpe", "Gorsebrook",
    "Tillingham", "Marrowdale", "Cobblestead", "Pellingham", "Sandiford", "Ravensholt",
    "Thistlecombe", "Larkspur", "Mirefield", "Oakhythe", "Withybrook", "Fallowmere",
)
_TOWNS = (
    "Northbridge", "Eastwater", "Kingsmere", "Ashwelcombe", "Westhollow", "Brightmoor",
    "Dunmarrow", "Caerwyth", "Holtsby", "Skarvik", "Ploumanec", "Altenmoor", "Villabrea",
)
_DOMAINS = (
    "stolav-hospital.no", "kliniken-nord.de", "hopital-sud.fr", "mail.example.org",
    "gmail.com", "outlook.com", "radiology.example.net", "web.de",
)
# fmt: on

# --- clean clinical text that must survive ---------------------------------------------------

# fmt: off
DESCRIPTORS = (
    "CT ABD/PELVIS W CONTRAST", "T2 FLAIR AX", "CT CHEST W/O", "MR BRAIN W/WO",
    "US ABDOMEN COMPLETE", "AX T1 POST GAD", "SAG T2 FS", "DWI b1000", "CTA HEAD NECK",
    "LOW DOSE CT LUNG SCREEN", "US RENAL BILAT", "MRCP 3D", "AX 2.5MM SOFT TISSUE",
    "COR MPR 3MM", "CT HEAD W/O", "MR LSPINE", "US THYROID", "PE PROTOCOL",
)
SENTENCES = (
    "nodule 8 mm",
    "Right lower lobe nodule 8 mm, unchanged from prior.",
    "Liver measures 16.2 cm craniocaudal.",
    "Mild degenerative change at L4-L5.",
    "No pleural effusion.",
    "Simple renal cyst 2.1 cm, Bosniak I.",
    "No acute intracranial abnormality.",
    "Lesion 12 x 9 mm in segment VII.",
    "Aortic diameter 3.4 cm.",
    "Ventricles normal in size.",
    "Small Baker cyst.",
    "Wall thickening of terminal ileum, consistent with Crohn disease.",
    "EF 55 percent.",
    "Gallbladder wall 2 mm, no stones.",
    "Thyroid nodule 14 mm, TI-RADS 3.",
)
REASONS = (
    "r/o PE", "shortness of breath", "follow-up lymphoma", "abdominal pain RLQ",
    "staging", "headache, worst ever", "trauma", "screening",
)
CLEAN_ROI_NAMES = (
    "PTV_70", "CTV_56", "Bladder", "Rectum", "Femur_L", "Femur_R", "SpinalCord",
    "Parotid_R", "Brainstem", "BODY", "Lung_L", "Heart",
)
# fmt: on
CLEAN_GSPS_TEXT = ("nodule 8 mm", "ROI 1", "cyst 2.1 cm", "see prior", "L4-L5")
CLINICAL_TEXT = (*DESCRIPTORS, *SENTENCES, *REASONS, *CLEAN_ROI_NAMES, *CLEAN_GSPS_TEXT)

# --- folding and searching ------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s^=_]+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_LETTERS = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "ı": "i", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d"}
)


def fold(text: str) -> str:
    """NFKC, casefold, accents and marks removed, `^ = _` and white space as one space."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_LETTERS)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def compact(text: str) -> str:
    """The folded text with everything but ASCII letters and digits removed."""
    return _NOT_ALNUM.sub("", fold(text))


def ascii_fold(text: str) -> str:
    return fold(text).encode("ascii", "ignore").decode("ascii")


def _spaced(ch: str) -> bool:
    """Whether words of `ch`'s script are set apart by spaces (so a match needs edges)."""
    if ch.isascii():
        return True
    name = unicodedata.name(ch, "")
    return name.startswith(("LATIN", "GREEK", "CYRILLIC"))


def _edge_pattern(spelling: str) -> re.Pattern[str]:
    """A letter-edged spelling counts where no letter touches it ("smith01" too); a digit-
    edged one where no digit does; scripts written without spaces match anywhere."""
    left = right = ""
    first, last = spelling[0], spelling[-1]
    if first.isalpha() and _spaced(first):
        left = r"(?<![^\W\d_])"
    elif first.isdigit():
        left = r"(?<!\d)"
    if last.isalpha() and _spaced(last):
        right = r"(?![^\W\d_])"
    elif last.isdigit():
        right = r"(?!\d)"
    return re.compile(left + re.escape(spelling) + right)


@dataclass(frozen=True)
class Plant:
    """One planted identifier: its class, the value as planted, the forms searched for."""

    kind: str
    value: str
    spellings: tuple[str, ...]
    where: str  # the attribute (or PDF) it went into, for reports


@dataclass(frozen=True)
class Hit:
    plant: Plant
    spelling: str
    where: str  # where in the output it was found


# Binary values (and whole files) are searched only for spellings this long: two or three
# letters occur in compressed or pixel bytes by chance.
MIN_BINARY_SPELLING = 5
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN", "bytes"})
_COMPACT_VRS = frozenset({"AE", "CS", "SH", "LO", "ST", "LT", "UT", "UC", "PN", "UR", "PDF"})


class Needles:
    """The spellings of a set of plants, ready to search output text for."""

    def __init__(self, plants: Iterable[Plant]) -> None:
        self.text: list[tuple[str, re.Pattern[str], Plant, str]] = []
        self.compact: list[tuple[str, Plant, str]] = []
        for plant in plants:
            for spelling in plant.spellings:
                folded = fold(spelling)
                if folded:
                    self.text.append((folded, _edge_pattern(folded), plant, spelling))
                squeezed = compact(spelling)
                if (
                    plant.kind in DIGIT_CLASSES
                    and len(squeezed) >= 7
                    and sum(c.isdigit() for c in squeezed) >= 5
                ):
                    self.compact.append((squeezed, plant, spelling))

    def find(self, text: str, where: str, vr: str = "LT") -> list[Hit]:
        folded = fold(text)
        shortest = MIN_BINARY_SPELLING if vr in _BINARY_VRS else 0
        hits = [
            Hit(plant, spelling, where)
            for needle, pattern, plant, spelling in self.text
            if len(needle) >= shortest and needle in folded and pattern.search(folded)
        ]
        if self.compact and vr in _COMPACT_VRS:
            squeezed = _NOT_ALNUM.sub("", folded)
            hits.extend(
                Hit(plant, spelling, where)
                for needle, plant, spelling in self.compact
                if needle in squeezed
            )
        return hits


def _element_text(elem: DataElement) -> str:
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        return raw.decode("latin-1") + "\n" + raw.decode("utf-8", "ignore")
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def dataset_texts(ds: Dataset, path: str = "") -> Iterator[tuple[str, str, str]]:
    """(where, VR, text) of every element at every depth: public, private, file meta."""
    meta = getattr(ds, "file_meta", None) if not path else None
    if meta is not None:
        for elem in meta:
            yield f"meta{elem.tag}", str(elem.VR), _element_text(elem)
    for elem in ds:
        where = f"{path}{elem.name if not elem.tag.is_private else elem.tag}"
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value or ()):
                yield from dataset_texts(item, f"{where}[{index}]>")
        else:
            yield where, str(elem.VR), _element_text(elem)


def pdf_text(document: bytes) -> tuple[int, str]:
    """Page count, and the text pypdfium2 extracts from every page and the document
    information dictionary."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(document)
    try:
        texts = [str(v) for v in pdf.get_metadata_dict(skip_empty=True).values()]
        pages = len(pdf)
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return pages, "\n".join(texts)
    finally:
        pdf.close()


# --- people ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    family: str
    given: str
    script: str  # latin, greek, cyrillic, chinese, korean, arabic, japanese
    roman_family: str
    roman_given: str
    kana_family: str = ""
    kana_given: str = ""

    def encodable(self, codec: str) -> bool:
        try:
            (self.family + self.given).encode(codec)
        except UnicodeEncodeError:
            return False
        return True


def _people() -> list[Person]:
    rng = random.Random("phi-corpus-people")
    people: list[Person] = []
    given = list(_LATIN_GIVEN)
    rng.shuffle(given)
    for index, family in enumerate(_LATIN_FAMILY):
        first = given[index % len(given)]
        people.append(Person(family, first, "latin", ascii_name(family), ascii_name(first)))
    for script, table in (
        ("greek", _GREEK),
        ("cyrillic", _CYRILLIC),
        ("chinese", _CHINESE),
        ("korean", _KOREAN),
        ("arabic", _ARABIC),
    ):
        people.extend(Person(f, g, script, rf, rg) for f, g, rf, rg in table)
    people.extend(
        Person(kf, kg, "japanese", rf, rg, pf, pg) for kf, kg, pf, pg, rf, rg in _JAPANESE
    )
    return people


def ascii_name(text: str) -> str:
    """How a name is typed on an ASCII keyboard: accents dropped, case kept."""
    out = []
    for ch in unicodedata.normalize("NFKD", text.translate(_LETTERS)):
        if not unicodedata.combining(ch) and ch.isascii():
            out.append(ch)
    return "".join(out)


_UNSPACED = frozenset({"chinese", "korean", "japanese"})

_CODECS = {
    "": "ascii",
    "ISO_IR 6": "ascii",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
    "ISO 2022 IR 87": "iso2022_jp",
}


@dataclass(frozen=True)
class Shown:
    """A person as one instance can write them (native script if its character set can)."""

    family: str
    given: str
    native: bool
    person: Person

    @property
    def unspaced(self) -> bool:
        return self.native and self.person.script in _UNSPACED

    def full(self, order: str = "gf") -> str:
        if self.unspaced:
            return self.family + self.given
        return f"{self.given} {self.family}" if order == "gf" else f"{self.family} {self.given}"

    def parts(self) -> list[str]:
        """Name parts worth searching for alone (one-character CJK family names are not)."""
        minimum = 2
        return [p for p in (self.family, self.given) if len(p) >= minimum]

    def login(self, rng: random.Random) -> str:
        family = ascii_name(self.person.roman_family).replace(" ", "").replace("-", "").lower()
        given = ascii_name(self.person.roman_given).lower()
        return rng.choice(
            (
                f"{given[0]}{family}",
                f"{family}.{given[0]}",
                f"{given}.{family}",
                f"{family}{given[0]}",
            )
        )


# --- the generator --------------------------------------------------------------------------


@dataclass
class Generated:
    """One generated instance: its bytes and what was planted in it."""

    name: str
    kind: str  # ct, mr, us, sr, rtstruct, gsps, pdf
    charset: str
    data: bytes
    plants: list[Plant]
    # Clean clinical text put where it must survive, by place (SRText, GSPSText, ...).
    clinical: dict[str, list[str]] = field(default_factory=dict)
    # Originals a test compares with: SR dates, names, UIDs; GSPS references; PDF pages.
    expect: dict[str, list[str]] = field(default_factory=dict)
    text_values: int = 0

    def dataset(self) -> Dataset:
        return dcmread(BytesIO(self.data))


@dataclass
class _Patient:
    person: Person
    charset: str
    patient_id: str
    accession: str
    birth_date: str  # DA
    address_street: str
    address_town: str
    postcode: str
    phone: tuple[str, str]  # formatted, national part
    study_uid: str
    study_date: str


_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class _Builder:
    """Builds one instance: picks people and identifiers, writes text, records the plants."""

    def __init__(
        self, rng: random.Random, patient: _Patient, people: list[Person], name: str
    ) -> None:
        self.rng = rng
        self.patient = patient
        self.people = people
        self.name = name
        self.charset = patient.charset
        self.codec = _CODECS[patient.charset]
        self.plants: list[Plant] = []
        self.clinical: dict[str, list[str]] = {}
        self.expect: dict[str, list[str]] = {}
        self.me = self.show(patient.person)

    # -- people and plants -------------------------------------------------------------

    def show(self, person: Person) -> Shown:
        if person.encodable(self.codec):
            return Shown(person.family, person.given, True, person)
        return Shown(ascii_name(person.roman_family), ascii_name(person.roman_given), False, person)

    def other(self) -> Shown:
        while True:
            person = self.rng.choice(self.people)
            if person != self.patient.person:
                return self.show(person)

    def plant(self, kind: str, value: str, spellings: Iterable[str], where: str) -> str:
        spellings = list(spellings)
        if kind in DIGIT_CLASSES:
            spellings += digit_runs(value)
        forms = tuple(dict.fromkeys(s for s in spellings if s and s.strip()))
        self.plants.append(Plant(kind, value, forms, where))
        return value

    def keep(self, place: str, phrase: str) -> str:
        self.clinical.setdefault(place, []).append(phrase)
        return phrase

    def pn(self, shown: Shown) -> str:
        """A PN value (PS3.5 6.2.1): alphabetic group, then ideographic and phonetic."""
        person = shown.person
        if shown.native and person.script == "japanese":
            return (
                f"{person.roman_family.upper()}^{person.roman_given.upper()}"
                f"={person.family}^{person.given}={person.kana_family}^{person.kana_given}"
            )
        if shown.native and person.script in ("chinese", "korean"):
            return (
                f"{person.roman_family.upper()}^{person.roman_given}={person.family}^{person.given}"
            )
        return f"{shown.family.upper()}^{shown.given}"

    def pn_spellings(self, shown: Shown) -> list[str]:
        person = shown.person
        out = [*shown.parts(), f"{shown.family} {shown.given}"]  # as `^` folds: FAMILY^Given
        if shown.native and person.script in ("japanese", "chinese", "korean"):
            out += [person.roman_family, person.roman_given]
            if person.kana_family:
                out += [person.kana_family, person.kana_given]
        return [s for s in out if len(s) >= 2]

    def person_value(self, shown: Shown, kind: str, where: str) -> str:
        """A PN attribute holding `shown`."""
        value = self.pn(shown)
        return self.plant(kind, value, self.pn_spellings(shown), where)

    def staff_code(self, where: str) -> Dataset:
        """A staff member's code: an employee number, and their name as its meaning."""
        staff = self.other()
        employee = f"E{self.rng.randint(1000000, 9999999)}"
        self.plant(ID, employee, [employee], where)
        meaning = f"{staff.family}, {staff.given}"
        self.plant(OTHER_NAME, meaning, staff.parts() or [meaning], where)
        return _code(employee, "99HOSPSTAFF", meaning)

    # -- PHI snippets (each records its plants) ---------------------------------------------

    def my_name(self, where: str) -> str:
        me, rng = self.me, self.rng
        person = me.person
        forms: list[tuple[str, list[str]]] = [
            (me.full("gf"), [me.full("gf"), *me.parts()]),
            (f"{me.family.upper()}, {me.given}", me.parts()),
            (me.given, [me.given] if len(me.given) >= 2 else []),
            (me.family, [me.family] if len(me.family) >= 2 else []),
        ]
        if not me.unspaced:
            login = me.login(rng)
            forms.append((login, [login]))
            forms.append((f"Mr/Ms {me.family}", [me.family]))
        if person.script != "latin":
            roman = f"{person.roman_given} {person.roman_family}"
            forms.append((roman, [roman, person.roman_family, person.roman_given]))
        if me.native and person.script == "japanese":
            forms.append(
                (
                    f"{person.kana_family} {person.kana_given}",
                    [person.kana_family, person.kana_given],
                )
            )
            forms.append((f"{person.family}{person.given}様", [person.family + person.given]))
        forms = [(text, spell) for text, spell in forms if spell]
        text, spellings = rng.choice(forms)
        self.plant(PATIENT_NAME, text, spellings, where)
        return rng.choice(("Patient {}", "pt {}", "{}", "Pt: {}", "re {}")).format(text)

    def other_name(self, where: str) -> str:
        who, rng = self.other(), self.rng
        full = who.full(rng.choice(("gf", "fg")))
        titled = (
            (f"Dr. {who.family}", [who.family]),
            (f"Dr {full}", [full, *who.parts()]),
            (f"Prof. {who.family}", [who.family]),
            (f"nurse {who.given}", [who.given]),
            (f"RN {full}", [full, *who.parts()]),
            (f"wife {who.given}", [who.given]),
            (f"daughter {full}", [full, *who.parts()]),
            (f"son {who.given}", [who.given]),
            (f"mother {full}", [full, *who.parts()]),
            (f"reviewed by {full}", [full, *who.parts()]),
            (f"per {who.family}", [who.family]),
            (f"cc {full}", [full, *who.parts()]),
            (f"tech {who.given}", [who.given]),
            (f"prior exam of patient {full}", [full, *who.parts()]),
        )
        bare = (
            (full, [full, *who.parts()]),
            (f"{who.family.upper()} {who.given}", who.parts()),
            (who.family, [who.family]),
        )
        text, spellings = rng.choice(titled if rng.random() < 0.65 else bare)
        spellings = [s for s in spellings if len(s) >= 2]
        if not spellings:  # a one-character CJK family name alone: say the whole name
            text, spellings = full, [full]
        self.plant(OTHER_NAME, text, spellings, where)
        return text

    def phone(self, where: str, mine: bool = False) -> str:
        rng = self.rng
        if mine:
            formatted, national = self.patient.phone
        else:
            formatted, national = make_phone(rng)
        self.plant(PHONE, formatted, [formatted, national], where)
        return rng.choice(("tel {}", "Tel: {}", "call {}", "{}", "ph. {}", "mobile {}")).format(
            formatted
        )

    def email(self, where: str) -> str:
        rng = self.rng
        who = self.other() if rng.random() < 0.7 else self.me
        family = ascii_name(who.person.roman_family).replace(" ", "").lower()
        given = ascii_name(who.person.roman_given).lower()
        local = rng.choice(
            (f"{given}.{family}", f"{given[0]}{family}{rng.randint(1, 99)}", f"{family}.{given}")
        )
        address = f"{local}@{rng.choice(_DOMAINS)}"
        self.plant(EMAIL, address, [address, local], where)
        return rng.choice(("{}", "email {}", "mailto:{}", "<{}>")).format(address)

    def url(self, where: str) -> str:
        rng = self.rng
        who = self.other() if rng.random() < 0.5 else self.me
        family = ascii_name(who.person.roman_family).replace(" ", "-").lower()
        given = ascii_name(who.person.roman_given).lower()
        slug = f"{given}-{family}"
        link = rng.choice(
            (
                f"https://portal.{rng.choice(_DOMAINS)}/patients/{slug}/results",
                f"http://intranet.{rng.choice(_DOMAINS)}/~{given[0]}{family}/notes",
                f"www.facebook.com/{given}.{family}{rng.randint(1, 99)}",
            )
        )
        spellings = [link]
        spellings.append(
            slug if slug in link else f"{given[0]}{family}" if "~" in link else f"{given}.{family}"
        )
        self.plant(URL, link, spellings, where)
        return link

    def address(self, where: str, mine: bool = False) -> str:
        rng = self.rng
        if mine:
            street, town, code = (
                self.patient.address_street,
                self.patient.address_town,
                self.patient.postcode,
            )
        else:
            street, town, code = make_address(rng)
        words = street.split(" ", 1)
        name = words[1] if len(words) > 1 and words[0][0].isdigit() else street
        self.plant(ADDRESS, street, [street, name], where)
        self.plant(CITY, town, [town], where)
        self.plant(POSTCODE, code, [code], where)
        text = f"{street}, {town} {code}"
        return rng.choice(("lives at {}", "address {}", "{}", "home: {}")).format(text)

    def my_id(self, where: str) -> str:
        rng, pid = self.rng, self.patient.patient_id
        letters, digits = pid[:3], pid[3:]
        form = rng.choice(
            (
                f"{letters}-{digits[:3]}-{digits[3:]}",
                f"{letters} {digits}",
                f"{letters.lower()}/{digits}",
                digits,
                f"{letters}{digits[:4]} {digits[4:]}",
            )
        )
        self.plant(ID, form, [form, digits], where)
        return rng.choice(("MRN {}", "ID {}", "{}", "hosp no. {}")).format(form)

    def other_id(self, where: str) -> str:
        rng = self.rng
        number = rng.randint(10**6, 10**8 - 1)
        form = rng.choice(
            (
                f"{number}",
                f"ACC {str(number)[:4]}-{str(number)[4:]}",
                f"K{number:08d}",
                f"{str(number)[:3]} {str(number)[3:]}",
            )
        )
        self.plant(ID, form, [form, str(number)], where)
        return rng.choice(("MRN {}", "accession {}", "prior {}", "case {}")).format(form)

    def national_id(self, where: str) -> str:
        rng = self.rng
        letters = "ABCEGHJKLMNPRSTWXYZ"
        kind = rng.randrange(6)
        if kind == 0:
            value = f"{rng.randint(100, 665):03d}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
            label = "SSN"
        elif kind == 1:
            pairs = " ".join(f"{rng.randint(10, 99)}" for _ in range(3))
            value = f"{rng.choice(letters)}{rng.choice(letters)} {pairs} {rng.choice('ABCD')}"
            label = "NI no."
        elif kind == 2:
            value = (
                f"{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}-"
                f"{rng.randint(1, 2)}{rng.randint(100000, 999999)}"
            )
            label = "RRN"
        elif kind == 3:
            value = (
                f"{rng.randint(1, 2)} {rng.randint(40, 99)} {rng.randint(1, 12):02d} "
                f"{rng.randint(10, 95)} {rng.randint(100, 999)} {rng.randint(100, 999)} "
                f"{rng.randint(10, 97)}"
            )
            label = "NIR"
        elif kind == 4:
            value = f"{rng.randint(1000, 9999)}.{rng.randint(10, 99)}.{rng.randint(100, 999)}"
            label = "BSN"
        else:
            value = (
                f"{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)} "
                f"{rng.randint(100, 999)}"
            )
            label = "Steuer-ID"
        self.plant(NATIONAL_ID, value, [value], where)
        return f"{label} {value}"

    def date(self, where: str, mine: bool = False) -> str:
        rng = self.rng
        if mine:
            da = self.patient.birth_date
            year, month, day = int(da[:4]), int(da[4:6]), int(da[6:])
        else:
            year, month, day = rng.randint(1935, 2025), rng.randint(1, 12), rng.randint(1, 28)
        long_month, short = _MONTHS[month - 1], _MONTHS[month - 1][:3]
        forms = (
            (f"{day} {short} {year}", [f"{day} {short}"]),
            (f"{day} {long_month} {year}", [f"{day} {long_month}"]),
            (f"{long_month} {day}, {year}", [f"{long_month} {day}"]),
            (f"{day:02d}-{short.upper()}-{year}", []),
            (f"{month:02d}/{day:02d}/{year}", []),
            (f"{day:02d}/{month:02d}/{year}", []),
            (f"{day:02d}.{month:02d}.{year}", []),
            (f"{year}-{month:02d}-{day:02d}", []),
        )
        text, extra = rng.choice(forms)
        self.plant(DATE, text, [text, *extra], where)
        label = "DOB" if mine else rng.choice(("on", "seen", "dated", "since", "last visit"))
        return f"{label} {text}"

    def time(self, where: str) -> str:
        rng = self.rng
        hour, minute = rng.randint(0, 23), rng.randint(0, 59)
        text = rng.choice(
            (
                f"{hour:02d}:{minute:02d}",
                f"{hour % 12 or 12}:{minute:02d} {'am' if hour < 12 else 'pm'}",
                f"{hour:02d}h{minute:02d}",
            )
        )
        self.plant(TIME, text, [text], where)
        return f"at {text}"

    def any_phi(self, where: str, short: bool = False) -> str:
        """One PHI snippet of a random class; `short` picks those that fit an LO."""
        choices = [
            self.my_name,
            self.other_name,
            self.other_name,
            self.phone,
            self.my_id,
            self.other_id,
            self.national_id,
            self.date,
            self.time,
        ]
        if not short:
            choices += [self.email, self.url, self.address, self.address]
        return self.rng.choice(choices)(where)

    def lo(self, where: str, clinical: str, place: str | None = None, limit: int = 64) -> str:
        """A short value: clinical text, and PHI most of the time; within `limit` chars."""
        for _ in range(20):
            mark = len(self.plants)
            phi = self.any_phi(where, short=True) if self.rng.random() < 0.75 else ""
            form = self.rng.choice(("{c} {p}", "{c} - {p}", "{c} ({p})", "{p}: {c}", "{p}; {c}"))
            text = form.format(c=clinical, p=phi) if phi else clinical
            if len(text) <= limit:
                if place:
                    self.keep(place, clinical)
                return text
            del self.plants[mark:]
        if place:
            self.keep(place, clinical)
        return clinical[:limit]

    def lt(self, where: str, place: str | None = None, phi: int = 3, sentences: int = 2) -> str:
        """Long text: clinical sentences with `phi` snippets among them."""
        parts = []
        for _ in range(sentences):
            sentence = self.rng.choice(SENTENCES)
            parts.append(self.keep(place, sentence) if place else sentence)
        for _ in range(phi):
            parts.insert(self.rng.randrange(len(parts) + 1), self.any_phi(where) + ".")
        return " ".join(parts)

    # -- UIDs ----------------------------------------------------------------------------

    def uid(self, *parts: object) -> str:
        return generate_uid(prefix=_UID_PREFIX, entropy_srcs=[self.name, *map(str, parts)])


_GROUP = re.compile(r"[0-9A-Za-z]+")
MIN_RUN_DIGITS = 6


def digit_runs(value: str) -> list[str]:
    """Runs of whole groups of a number that still identify when the rest is cut out:
    "*.97.225 455" keeps 97225455 of a Dutch BSN. Runs of six digits or more, not the whole."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(value)]
    runs = []
    for i in range(len(groups)):
        for j in range(i, len(groups)):
            run = value[groups[i][0] : groups[j][1]]
            if run != value and sum(c.isdigit() for c in run) >= MIN_RUN_DIGITS:
                runs.append(run)
    return runs


def make_phone(rng: random.Random) -> tuple[str, str]:
    """A phone number in one of several national formats, and its national part."""
    a, b, c = rng.randint(200, 989), rng.randint(100, 999), rng.randint(1000, 9999)
    kind = rng.randrange(8)
    if kind == 0:
        return f"({a}) 555-{c}", f"555-{c}"
    if kind == 1:
        national = f"20 79{b % 100:02d} {c}"
        return f"+44 {national}", national
    if kind == 2:
        national = f"30 {b}{c}"
        return f"+49 {national}", national
    if kind == 3:
        national = f"6 {b % 90 + 10} {c // 100:02d} {c % 100:02d} {a % 90 + 10}"
        return f"+33 {national}", national
    if kind == 4:
        text = f"03-{c}-{rng.randint(1000, 9999)}"
        return text, text
    if kind == 5:
        national = f"98{b} {rng.randint(10000, 99999)}"
        return f"+91 {national}", national
    if kind == 6:
        text = f"(02) 9{b} {c}"
        return text, text
    text = f"07700 9{b}{c % 100:02d}"
    return text, text


def make_address(rng: random.Random) -> tuple[str, str, str]:
    """(street line, town, postcode) in one of several national formats."""
    street, town = rng.choice(_STREETS), rng.choice(_TOWNS)
    n = rng.randint(2, 240)
    kind = rng.randrange(4)
    if kind == 0:
        code = (
            f"{town[:2].upper()}{rng.randint(1, 9)} {rng.randint(1, 9)}"
            f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
        )
        return f"{n} {street} {rng.choice(('Lane', 'Road', 'Close'))}", town, code
    if kind == 1:
        return f"{n} {street} Ave Apt {rng.randint(1, 9)}B", town, f"{rng.randint(10000, 99999)}"
    if kind == 2:
        return f"{street}straße {n}", town, f"{rng.randint(10000, 99999)}"
    return f"{n} rue des {street}", town, f"{rng.randint(10, 95)}{rng.randint(100, 999)}"


# --- shared modules ---------------------------------------------------------------------------


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _common(ds: Dataset, b: _Builder, kind: str, sop_class: str, index: int) -> None:
    """Patient, General Study, General Series, Equipment and SOP Common, with header PHI."""
    p, me = b.patient, b.me
    if p.charset:
        ds.SpecificCharacterSet = (
            ["", "ISO 2022 IR 87"] if p.charset == "ISO 2022 IR 87" else p.charset
        )
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = b.uid("sop")
    ds.PatientName = b.person_value(me, PATIENT_NAME, "PatientName")
    ds.PatientID = b.plant(ID, p.patient_id, [p.patient_id], "PatientID")
    ds.PatientBirthDate = b.plant(DATE, p.birth_date, [p.birth_date], "PatientBirthDate")
    ds.PatientSex = b.rng.choice("FM")
    ds.PatientAddress = f"{p.address_street}, {p.address_town} {p.postcode}"
    b.plant(ADDRESS, p.address_street, [p.address_street], "PatientAddress")
    b.plant(CITY, p.address_town, [p.address_town], "PatientAddress")
    b.plant(POSTCODE, p.postcode, [p.postcode], "PatientAddress")
    phone = p.phone[0] if len(p.phone[0]) <= 16 else p.phone[1]  # SH: 16 characters at most
    ds.PatientTelephoneNumbers = b.plant(PHONE, phone, [phone], "PatientTelephoneNumbers")
    other = Dataset()
    other_id = f"NHS{b.rng.randint(10**8, 10**9 - 1)}"
    other.PatientID = b.plant(ID, other_id, [other_id], "OtherPatientIDsSequence")
    other.IssuerOfPatientID = "NHS"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])

    ds.StudyInstanceUID = p.study_uid
    ds.StudyDate = p.study_date
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = b.person_value(b.other(), OTHER_NAME, "ReferringPhysicianName")
    referring = Dataset()
    referring.PersonIdentificationCodeSequence = Sequence(
        [b.staff_code("ReferringPhysicianIdentificationSequence>PersonIdentificationCodeSequence")]
    )
    referring.InstitutionName = "Regional Hospital"
    ds.ReferringPhysicianIdentificationSequence = Sequence([referring])
    ds.StudyID = f"S{b.rng.randint(10000, 99999)}"
    ds.AccessionNumber = b.plant(ID, p.accession, [p.accession], "AccessionNumber")
    ds.StudyDescription = b.lo("StudyDescription", b.rng.choice(DESCRIPTORS), "Descriptor")

    ds.Modality = _MODALITY[kind]
    ds.SeriesInstanceUID = b.uid("series")
    ds.SeriesNumber = index % 50 + 1
    ds.InstanceNumber = 1
    ds.SeriesDate = p.study_date
    ds.OperatorsName = b.person_value(b.other(), OTHER_NAME, "OperatorsName")
    ds.Manufacturer = "ACME Medical Systems"
    ds.InstitutionName = "Regional Hospital"
    ds.StationName = "CTROOM2"
    ds.ContentDate = p.study_date
    ds.ContentTime = "101700"


def _private_block(ds: Dataset, b: _Builder) -> None:
    """A vendor block (PS3.5 7.8.1) of notes: removed by default, planted all the same."""
    block = ds.private_block(0x0019, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", b.lo("private LO", "NOTE"))
    block.add_new(0x02, "LT", b.lt("private LT", phi=3, sentences=1))
    block.add_new(
        0x03, "SH", b.plant(ID, b.patient.patient_id, [b.patient.patient_id], "private SH")
    )
    item = Dataset()
    inner = item.private_block(0x0019, PRIVATE_CREATOR, create=True)
    inner.add_new(0x01, "LO", b.lo("private nested LO", "NOTE"))
    block.add_new(0x04, "SQ", Sequence([item]))


def _file_meta(ds: Dataset, b: _Builder) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _UID_PREFIX + "1"
    meta.ImplementationVersionName = "PHI_CORPUS_1"
    login = b.me.login(b.rng)[:12]
    meta.SourceApplicationEntityTitle = b.plant(PATIENT_NAME, login, [login], "file meta AE")
    ds.file_meta = meta


# --- kinds --------------------------------------------------------------------------------------


def _image(b: _Builder, kind: str, index: int) -> Dataset:
    ds = Dataset()
    rng = b.rng
    _common(ds, b, kind, _SOP_CLASS[kind], index)
    ds.SeriesDescription = b.lo("SeriesDescription", rng.choice(DESCRIPTORS), "Descriptor")
    ds.ProtocolName = b.lo("ProtocolName", rng.choice(DESCRIPTORS), "Descriptor")
    ds.ImageComments = b.lt("ImageComments", phi=3)
    ds.PatientComments = (
        f"{b.address('PatientComments', mine=True)}; {b.phone('PatientComments', mine=True)}; "
        f"{b.other_name('PatientComments')} present. {b.lt('PatientComments', phi=1, sentences=1)}"
    )
    ds.AdditionalPatientHistory = (
        f"{b.date('AdditionalPatientHistory', mine=True)}. "
        f"{b.lt('AdditionalPatientHistory', phi=2)}"
    )
    ds.RequestedProcedureDescription = b.lo(
        "RequestedProcedureDescription", rng.choice(DESCRIPTORS), "Descriptor"
    )
    ds.ReasonForStudy = b.lo("ReasonForStudy", rng.choice(REASONS))
    ds.AcquisitionProtocolDescription = b.lt("AcquisitionProtocolDescription", phi=1)
    request = Dataset()
    request.RequestedProcedureDescription = b.lo(
        "RequestAttributesSequence>RequestedProcedureDescription", rng.choice(DESCRIPTORS)
    )
    request.ScheduledProcedureStepDescription = b.lo(
        "RequestAttributesSequence>ScheduledProcedureStepDescription", rng.choice(DESCRIPTORS)
    )
    request.ReasonForTheRequestedProcedure = b.lo(
        "RequestAttributesSequence>ReasonForTheRequestedProcedure", rng.choice(REASONS)
    )
    request.RequestedProcedureID = f"RP{rng.randint(10000, 99999)}"
    request.ScheduledProtocolCodeSequence = Sequence(
        [_code("CTCHESTC", "99ACME", "CT chest with contrast")]
    )
    ds.RequestAttributesSequence = Sequence([request])
    who = b.other()
    meaning = f"CT chest per Dr. {who.family} protocol"
    b.plant(
        OTHER_NAME,
        f"Dr. {who.family}",
        [who.family] if len(who.family) >= 2 else [who.full()],
        "ProcedureCodeSequence>CodeMeaning",
    )
    if len(who.family) < 2:
        meaning = f"CT chest per Dr. {who.full()} protocol"
    ds.ProcedureCodeSequence = Sequence([_code(f"LOC{rng.randint(100, 999)}", "99LOCAL", meaning)])
    ds.PerformingPhysicianName = b.person_value(b.other(), OTHER_NAME, "PerformingPhysicianName")
    ds.NameOfPhysiciansReadingStudy = b.person_value(
        b.other(), OTHER_NAME, "NameOfPhysiciansReadingStudy"
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID = b.uid("for")
    size = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    if kind == "us":
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = bytes(size * size)
        ds["PixelData"].VR = "OB"
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = bytes(2 * size * size)
        ds["PixelData"].VR = "OW"
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
    _private_block(ds, b)
    return ds


def _content_item(relationship: str, value_type: str, code: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = Sequence([_code(*code)])
    return item


_VALUE_KEYWORDS = {"DATE": "Date", "DATETIME": "DateTime", "PNAME": "PersonName", "UIDREF": "UID"}


def _sr(b: _Builder, index: int) -> Dataset:
    ds = Dataset()
    rng = b.rng
    comprehensive = index % 2 == 0
    _common(ds, b, "sr", COMPREHENSIVE_SR if comprehensive else BASIC_TEXT_SR, index)
    ds.SeriesDescription = b.lo("SeriesDescription", "Radiology report", "Descriptor")
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    verifier = Dataset()
    verifier.VerifyingObserverName = b.person_value(
        b.other(), OTHER_NAME, "VerifyingObserverSequence>VerifyingObserverName"
    )
    verifier.VerifyingOrganization = "Regional Hospital"
    verifier.VerificationDateTime = f"{b.patient.study_date}154500"
    # PS3.3 C.17.2: the verifier's code, its meaning the person's name as sites fill it.
    verifier.VerifyingObserverIdentificationCodeSequence = Sequence(
        [b.staff_code("VerifyingObserverIdentificationCodeSequence")]
    )
    ds.VerifyingObserverSequence = Sequence([verifier])
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.ContinuityOfContent = "SEPARATE"
    dates: list[str] = []
    names: list[str] = []
    datetimes: list[str] = []
    uids: list[str] = []

    def text_item(
        mixed: bool, code: tuple[str, str, str] = ("121071", "DCM", "Finding")
    ) -> Dataset:
        item = _content_item("CONTAINS", "TEXT", code)
        if mixed:
            item.TextValue = b.lt("SR TEXT", place="SRText", phi=rng.randint(1, 3))
        else:
            item.TextValue = b.keep("SRText", rng.choice(SENTENCES))
        return item

    def pname_item(relationship: str, code: tuple[str, str, str]) -> Dataset:
        item = _content_item(relationship, "PNAME", code)
        item.PersonName = b.person_value(b.other(), OTHER_NAME, "SR PNAME")
        names.append(str(item.PersonName))
        return item

    def date_item() -> Dataset:
        item = _content_item("CONTAINS", "DATE", ("111060", "DCM", "Study Date"))
        value = f"{rng.randint(2000, 2024)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        item.Date = b.plant(DATE, value, [value], "SR DATE")
        dates.append(value)
        return item

    def datetime_item() -> Dataset:
        item = _content_item("CONTAINS", "DATETIME", ("111526", "DCM", "DateTime Started"))
        value = (
            f"{rng.randint(2000, 2024)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            f"{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}00"
        )
        item.DateTime = b.plant(DATE, value, [value], "SR DATETIME")
        datetimes.append(value)
        return item

    def uid_item() -> Dataset:
        item = _content_item("HAS OBS CONTEXT", "UIDREF", ("110180", "DCM", "Study Instance UID"))
        item.UID = b.uid("uidref", len(uids))
        uids.append(item.UID)
        return item

    def code_item() -> Dataset:
        item = _content_item("HAS CONCEPT MOD", "CODE", ("363698007", "SCT", "Finding Site"))
        item.ConceptCodeSequence = Sequence([_code("39607008", "SCT", "Lung")])
        return item

    def num_item() -> Dataset:
        item = _content_item("CONTAINS", "NUM", ("410668003", "SCT", "Length"))
        value = Dataset()
        value.NumericValue = "8"
        value.MeasurementUnitsCodeSequence = Sequence([_code("mm", "UCUM", "mm")])
        item.MeasuredValueSequence = Sequence([value])
        return item

    def container(code: tuple[str, str, str], children: list[Dataset]) -> Dataset:
        item = _content_item("CONTAINS", "CONTAINER", code)
        item.ContinuityOfContent = "SEPARATE"
        item.ContentSequence = Sequence(children)
        return item

    level4 = [
        text_item(True),
        pname_item("CONTAINS", ("121008", "DCM", "Person Observer Name")),
        date_item(),
        code_item(),
    ]
    measurements = [
        text_item(True),
        text_item(False),
        date_item(),
        datetime_item(),
        container(("125007", "DCM", "Measurement Group"), level4),
    ]
    if comprehensive:
        measurements.append(num_item())
    findings = [
        text_item(True),
        text_item(False),
        text_item(True),
        code_item(),
        container(("121070", "DCM", "Findings"), measurements),
    ]
    history = _content_item("CONTAINS", "TEXT", ("121060", "DCM", "History"))
    history.TextValue = f"{b.my_name('SR TEXT')}, {b.date('SR TEXT', mine=True)}. " + b.keep(
        "SRText", rng.choice(SENTENCES)
    )
    root = [
        pname_item("HAS OBS CONTEXT", ("121008", "DCM", "Person Observer Name")),
        uid_item(),
        history,
        container(("121070", "DCM", "Findings"), findings),
        container(
            ("121072", "DCM", "Impressions"), [text_item(True), text_item(False), datetime_item()]
        ),
    ]
    ds.ContentSequence = Sequence(root)
    # The originals in document order (depth first), as a test walks the output.
    found: dict[str, list[str]] = {"DATE": [], "DATETIME": [], "PNAME": [], "UIDREF": []}

    def walk(items: Sequence) -> None:
        for item in items:
            keyword = _VALUE_KEYWORDS.get(item.ValueType)
            if keyword:
                found[item.ValueType].append(str(item.get(keyword)))
            walk(item.get("ContentSequence") or Sequence())

    walk(ds.ContentSequence)
    assert sorted(found["DATE"]) == sorted(dates) and len(found["PNAME"]) == len(names)
    assert sorted(found["DATETIME"]) == sorted(datetimes) and found["UIDREF"] == uids
    b.expect.update(
        dates=found["DATE"],
        names=found["PNAME"],
        datetimes=found["DATETIME"],
        uidrefs=found["UIDREF"],
    )
    _private_block(ds, b)
    return ds


def _rtstruct(b: _Builder, index: int) -> Dataset:
    ds = Dataset()
    rng = b.rng
    _common(ds, b, "rtstruct", RT_STRUCTURE_SET, index)
    ds.SeriesDescription = b.lo("SeriesDescription", "RT structures", "Descriptor")
    family = b.me.family if not b.me.unspaced else b.me.person.roman_family
    family = ascii_name(family).replace(" ", "")[:10] or "X"
    if rng.random() < 0.6:
        label = b.plant(
            PATIENT_NAME, f"{family}_PLAN", [family] if len(family) > 1 else [], "StructureSetLabel"
        )
    else:
        label = b.keep("RTLabel", "PELVIS_PLAN")
    ds.StructureSetLabel = label
    ds.StructureSetName = b.lo("StructureSetName", "Prostate 78Gy")
    ds.StructureSetDescription = b.lt("StructureSetDescription", phi=2, sentences=1)
    ds.StructureSetDate = b.patient.study_date
    ds.StructureSetTime = "120000"
    frame = b.uid("for")
    image_uids = [b.uid("image", i) for i in range(2)]
    contour_images = []
    for uid in image_uids:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE
        ref.ReferencedSOPInstanceUID = uid
        contour_images.append(ref)
    series = Dataset()
    series.SeriesInstanceUID = b.uid("ct-series")
    series.ContourImageSequence = Sequence(contour_images)
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = b.patient.study_uid
    study.RTReferencedSeriesSequence = Sequence([series])
    reference = Dataset()
    reference.FrameOfReferenceUID = frame
    reference.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([reference])
    rois, contours, observations = [], [], []
    clean_names = rng.sample(CLEAN_ROI_NAMES, 5)
    for number in range(1, 9):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame
        if number <= len(clean_names):
            roi.ROIName = b.keep("ROIName", clean_names[number - 1])
            roi.ROIDescription = b.keep("ROIDescription", rng.choice(SENTENCES))
        else:
            who = b.other()
            surname = who.family if len(who.family) >= 2 else who.full()
            form = rng.randrange(3) if len(family) > 1 else rng.randrange(1, 3)
            if form == 0:
                roi.ROIName = b.plant(PATIENT_NAME, f"PTV_{family}", [family], "ROIName")
            elif form == 1:
                roi.ROIName = b.plant(OTHER_NAME, f"GTV per Dr. {surname}", [surname], "ROIName")
            else:
                roi.ROIName = b.plant(OTHER_NAME, f"CTV {surname} edit", [surname], "ROIName")
            b.keep("ROINamePrefix", roi.ROIName[:3])
            roi.ROIDescription = b.lt("ROIDescription", phi=1, sentences=1)
        roi.ROIGenerationAlgorithm = "MANUAL"
        roi.ROIGenerationDescription = f"contoured by {b.other_name('ROIGenerationDescription')}"
        rois.append(roi)
        contour = Dataset()
        contour.ReferencedROINumber = number
        contour.ROIDisplayColor = [255, 0, 0]
        plane = Dataset()
        plane.ContourGeometricType = "CLOSED_PLANAR"
        plane.NumberOfContourPoints = 3
        plane.ContourData = [0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 10.0, 10.0, 0.0]
        image = Dataset()
        image.ReferencedSOPClassUID = CT_IMAGE
        image.ReferencedSOPInstanceUID = image_uids[0]
        plane.ContourImageSequence = Sequence([image])
        contour.ContourSequence = Sequence([plane])
        contours.append(contour)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.ROIObservationLabel = b.lo("ROIObservationLabel", "obs", limit=16)
        observation.ROIObservationDescription = b.lt(
            "ROIObservationDescription", phi=1, sentences=1
        )
        observation.RTROIInterpretedType = "ORGAN" if number <= 5 else "PTV"
        observation.ROIInterpreter = b.person_value(b.other(), OTHER_NAME, "ROIInterpreter")
        observations.append(observation)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    equipment = Dataset()
    equipment.PurposeOfReferenceCodeSequence = Sequence(
        [_code("109103", "DCM", "Modifying Equipment")]
    )
    equipment.Manufacturer = "ACME Planning"
    equipment.InstitutionName = "Regional Hospital"
    equipment.OperatorsName = b.person_value(
        b.other(), OTHER_NAME, "ContributingEquipmentSequence>OperatorsName"
    )
    equipment.ContributionDescription = b.lt("ContributionDescription", phi=2, sentences=1)
    equipment.ContributionDateTime = f"{b.patient.study_date}120000"
    ds.ContributingEquipmentSequence = Sequence([equipment])
    ds.ApprovalStatus = "APPROVED"
    ds.ReviewDate = b.patient.study_date
    ds.ReviewTime = "130000"
    ds.ReviewerName = b.person_value(b.other(), OTHER_NAME, "ReviewerName")
    _private_block(ds, b)
    return ds


def _gsps(b: _Builder, index: int) -> Dataset:
    ds = Dataset()
    rng = b.rng
    _common(ds, b, "gsps", GSPS, index)
    ds.SeriesDescription = b.lo("SeriesDescription", "Annotations", "Descriptor")
    ds.ContentLabel = "ANNOTATIONS"
    ds.ContentDescription = b.lo("ContentDescription", "key images")
    ds.PresentationCreationDate = b.patient.study_date
    ds.PresentationCreationTime = "110000"
    ds.ContentCreatorName = b.person_value(b.other(), OTHER_NAME, "ContentCreatorName")
    # Person Identification Macro (PS3.3 10.1), one level down.
    creator = Dataset()
    creator.PersonIdentificationCodeSequence = Sequence(
        [b.staff_code("ContentCreatorIdentificationCodeSequence>PersonIdentificationCodeSequence")]
    )
    street, town, code = make_address(rng)
    creator.PersonAddress = f"{street}, {town} {code}"
    b.plant(ADDRESS, street, [street], "ContentCreatorIdentificationCodeSequence")
    b.plant(POSTCODE, code, [code], "ContentCreatorIdentificationCodeSequence")
    phone, _ = make_phone(rng)
    creator.PersonTelephoneNumbers = b.plant(
        PHONE, phone, [phone], "ContentCreatorIdentificationCodeSequence"
    )
    creator.InstitutionName = "Regional Hospital"
    ds.ContentCreatorIdentificationCodeSequence = Sequence([creator])
    image_uids = [b.uid("image", i) for i in range(3)]
    series_uid = b.uid("image-series")
    images = []
    for uid in image_uids:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE
        ref.ReferencedSOPInstanceUID = uid
        images.append(ref)
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.ReferencedImageSequence = Sequence(images)
    ds.ReferencedSeriesSequence = Sequence([series])
    annotations, references = [], []
    for n, uid in enumerate(image_uids):
        item = Dataset()
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE
        ref.ReferencedSOPInstanceUID = uid
        references.append(uid)
        item.ReferencedImageSequence = Sequence([ref])
        item.GraphicLayer = "ANNOT"
        texts = []
        for kind in ("clean", "mixed", "phi"):
            text = Dataset()
            if kind == "clean":
                text.UnformattedTextValue = b.keep("GSPSText", rng.choice(CLEAN_GSPS_TEXT))
            elif kind == "mixed":
                clinical = b.keep(
                    "GSPSText", "nodule 8 mm" if n == 0 else rng.choice(CLEAN_GSPS_TEXT)
                )
                text.UnformattedTextValue = f"{clinical} {b.any_phi('GSPS text', short=True)}"
            else:
                text.UnformattedTextValue = b.lt("GSPS text", phi=2, sentences=0)
            text.BoundingBoxAnnotationUnits = "PIXEL"
            text.BoundingBoxTopLeftHandCorner = [10.0, 10.0 + 20 * len(texts)]
            text.BoundingBoxBottomRightHandCorner = [200.0, 28.0 + 20 * len(texts)]
            text.BoundingBoxTextHorizontalJustification = "LEFT"
            texts.append(text)
        item.TextObjectSequence = Sequence(texts)
        graphic = Dataset()
        graphic.GraphicAnnotationUnits = "PIXEL"
        graphic.GraphicDimensions = 2
        graphic.NumberOfGraphicPoints = 2
        graphic.GraphicData = [20.0, 20.0, 60.0, 60.0]
        graphic.GraphicType = "POLYLINE"
        graphic.GraphicFilled = "N"
        item.GraphicObjectSequence = Sequence([graphic])
        annotations.append(item)
    ds.GraphicAnnotationSequence = Sequence(annotations)
    layer = Dataset()
    layer.GraphicLayer = "ANNOT"
    layer.GraphicLayerOrder = 1
    layer.GraphicLayerDescription = b.lo("GraphicLayerDescription", "measurements")
    ds.GraphicLayerSequence = Sequence([layer])
    ds.PresentationLUTShape = "IDENTITY"
    b.expect.update(
        annotation_references=references,
        series_references=list(image_uids),
        series_uid=[series_uid],
    )
    _private_block(ds, b)
    return ds


def _pdf_escape(line: str) -> bytes:
    raw = line.encode("latin-1")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def minimal_pdf(pages: list[list[str]], info: dict[str, str] | None = None) -> bytes:
    """A PDF 1.4 with Helvetica text lines, one content stream per page, a correct xref, and
    a document information dictionary (PDF 1.4 section 10.2.1) when `info` is given."""
    objects: list[bytes] = [b"", b""]  # 1: catalog, 2: pages (filled in below)
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    kids = []
    for lines in pages:
        body = (
            b"BT /F1 11 Tf 14 TL 56 760 Td "
            + b" ".join(b"(" + _pdf_escape(line) + b") Tj T*" for line in lines)
            + b" ET"
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream")
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content
        )
        kids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    trailer = b""
    if info:
        objects.append(
            b"<< "
            + b" ".join(b"/%s (%s)" % (k.encode(), _pdf_escape(v)) for k, v in info.items())
            + b" >>"
        )
        trailer = b"/Info %d 0 R " % len(objects)
    return assemble(objects, trailer)


def _pdf(b: _Builder, index: int) -> Dataset:
    ds = Dataset()
    rng = b.rng
    _common(ds, b, "pdf", ENCAPSULATED_PDF, index)
    ds.SeriesDescription = b.lo("SeriesDescription", "Scanned documents", "Descriptor")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = f"Referral letter {b.any_phi('DocumentTitle', short=True)}"
    ds.ConceptNameCodeSequence = Sequence([_code("11488-4", "LN", "Consult note")])
    ds.ConversionType = "WSD"
    ds.AcquisitionDateTime = f"{b.patient.study_date}093000"
    pages = []
    for page in range(1 + index % 2):
        lines = [
            "Regional Imaging Centre - Referral",
            f"Re: {b.my_name('PDF')}, {b.date('PDF', mine=True)}",
            b.my_id("PDF"),
            f"Home: {b.address('PDF', mine=True)}",
            b.phone("PDF", mine=True),
            f"Dear {b.other_name('PDF')},",
            b.keep("PDFText", "Findings: nodule 8 mm in the right lower lobe."),
            b.keep("PDFText", rng.choice(SENTENCES)),
            f"Contact {b.email('PDF')} or {b.phone('PDF')}",
            f"{b.national_id('PDF')}; {b.other_name('PDF')} {b.time('PDF')}",
            f"Page {page + 1}",
        ]
        pages.append(lines)
    info = {
        "Title": f"Referral {b.my_name('PDF Info')}",
        "Author": b.other_name("PDF Info"),
        "Subject": b.my_id("PDF Info"),
    }
    document = minimal_pdf(pages, info)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(document)
    ds.EncapsulatedDocument = document + (b"\x00" if len(document) % 2 else b"")
    b.expect["pages"] = [str(len(pages))]
    _private_block(ds, b)
    return ds


_TEXT_VRS = frozenset({"AE", "SH", "LO", "ST", "LT", "UT", "UC", "PN", "UR"})


def count_text_values(ds: Dataset) -> int:
    count = 0
    for elem in ds:
        if elem.VR == "SQ":
            count += sum(count_text_values(item) for item in elem.value or ())
        elif elem.VR in _TEXT_VRS and elem.value not in (None, ""):
            count += 1
    return count


# --- the corpus -----------------------------------------------------------------------------

# Character sets and the scripts their patients have (PS3.3 C.12.1.1.2).
_CHARSETS = (
    ("", ("latin",)),
    ("ISO_IR 6", ("latin",)),
    ("ISO_IR 100", ("latin",)),
    ("ISO_IR 100", ("latin",)),
    ("ISO_IR 192", ("greek",)),
    ("ISO_IR 192", ("cyrillic",)),
    ("ISO_IR 192", ("chinese",)),
    ("ISO_IR 192", ("korean",)),
    ("ISO_IR 192", ("arabic",)),
    ("ISO_IR 192", ("latin",)),
    ("ISO 2022 IR 87", ("japanese",)),
)
COUNTS = {"ct": 30, "mr": 20, "us": 16, "sr": 30, "rtstruct": 12, "gsps": 18, "pdf": 8}
_BUILD = {
    "ct": lambda b, i: _image(b, "ct", i),
    "mr": lambda b, i: _image(b, "mr", i),
    "us": lambda b, i: _image(b, "us", i),
    "sr": _sr,
    "rtstruct": _rtstruct,
    "gsps": _gsps,
    "pdf": _pdf,
}


def _patient(
    rng: random.Random, people: list[Person], charset: str, scripts: tuple[str, ...], number: int
) -> _Patient:
    codec = _CODECS[charset]
    fits = [p for p in people if p.script in scripts and p.encodable(codec)]
    person = rng.choice(fits)
    street, town, code = make_address(rng)
    letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3))
    return _Patient(
        person=person,
        charset=charset,
        patient_id=f"{letters}{rng.randint(10**6, 10**7 - 1)}",
        accession=f"A{rng.randint(10**8, 10**9 - 1)}",
        birth_date=f"{rng.randint(1935, 2010)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        address_street=street,
        address_town=town,
        postcode=code,
        phone=make_phone(rng),
        study_uid=generate_uid(prefix=_UID_PREFIX, entropy_srcs=["phi-corpus-study", str(number)]),
        study_date=f"{rng.randint(2015, 2025)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
    )


def generate(seed: int = 20261204, counts: dict[str, int] | None = None) -> list[Generated]:
    """The whole corpus: every kind, character sets in turn, each instance read back."""
    with warnings.catch_warnings():
        # pydicom counts SH/LO lengths in bytes; PS3.5 6.2 counts characters, and a UTF-8
        # name of 16 characters is a valid SH.
        warnings.simplefilter("ignore", UserWarning)
        return _generate(seed, counts)


def _generate(seed: int, counts: dict[str, int] | None) -> list[Generated]:
    rng = random.Random(seed)
    people = _people()
    out: list[Generated] = []
    number = 0
    for kind, count in (counts or COUNTS).items():
        for index in range(count):
            charset, scripts = _CHARSETS[number % len(_CHARSETS)]
            if kind == "pdf" and charset not in ("", "ISO_IR 6", "ISO_IR 100"):
                charset, scripts = "ISO_IR 100", ("latin",)
            patient = _patient(rng, people, charset, scripts, number)
            name = f"{kind}-{index:03d}"
            builder = _Builder(random.Random(f"{seed}-{name}"), patient, people, name)
            ds = _BUILD[kind](builder, index)
            _file_meta(ds, builder)
            buffer = BytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
            data = buffer.getvalue()
            back = dcmread(BytesIO(data))
            # The PDF's text lines are text values too (11 a page).
            extra = 11 * int(builder.expect["pages"][0]) if kind == "pdf" else 0
            out.append(
                Generated(
                    name=name,
                    kind=kind,
                    charset=charset or "default",
                    data=data,
                    plants=builder.plants,
                    clinical=builder.clinical,
                    expect=builder.expect,
                    text_values=count_text_values(back) + extra,
                )
            )
            number += 1
    return out


def plant_counts(corpus: Iterable[Generated]) -> Counter[str]:
    return Counter(plant.kind for item in corpus for plant in item.plants)
