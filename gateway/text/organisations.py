"""Hospitals and clinics named in free text ("seen at Royal Oakhaven Hospital").

The instance's own Institution Name is cut as a known value; these are the others: where a
patient was before, where a prior study was made. A name is the run of capitalised words
before an institution word (Hospital, Infirmary, Clinic, Medical Centre, a GP's Surgery or
Practice, ...), or after one
that comes first in its language (Klinikum, Hôpital, Hospital Universitario, Ospedale). The
run counts only when one of its words is not in the safe vocabulary nor clinical by its ending
(a saint's, a person's or a town's name): "Fracture Clinic", "Lymphoedema Clinic" and
"General Hospital" stay, "Harrogate District Hospital" and "St Mary's Hospital" go whole, and
so do "St Elsewhere's General" and "Toronto General" ("Surgeon General" stays). A word before
a kind of hospital names a place even if it is a word: "Cork University Hospital" goes, as
does a place after it: "The University Hospital of Wales". Before "Medical Centre", "Health
Centre" or "Family Practice" every word names it but those of what is treated there:
"Riverside Medical Centre" goes, "Breast Imaging Center" and "Student Health Centre" stay.
Care homes, imaging practices and companies count ("Sunnydale Assisted Living", "Lakeshore
Imaging", "Zeltweger Logistics GmbH"), a town written after a hospital's name goes with it
and makes it a name ("Mercy Hospital Joplin", "Rotunda Hospital Dublin"), and so does a run
with a word that is no vocabulary after "performed at", "transferred from", "seen at",
"referred from", "compared to" and the like ("performed at Addenbrooke's").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.text.lexicon import Lexicon

# no full stop: it may end the sentence ("St." and "Ste." are saints, "Stronghaven" a word)
_WORD = r"(?:Ste?\.?(?![\w'’-])|[A-ZÀ-ÞĀ-ž][\w'’-]*)"
# Words inside an institution's or a town's name ("Büsingen am Hochrhein", "Týn nad Vltavou")
_LINKS_IN_NAMES = ("of", "the", "and", "&", "de", "del", "la", "du", "des", "der", "di", "y",
                   "von", "am", "an", "im", "nad", "pod", "upon", "sur", "sul", "bei", "ob",
                   "aan", "bij")  # fmt: skip
_LINK = "(?:" + "|".join(_LINKS_IN_NAMES) + ")"
_LINK_WORDS = frozenset(_LINKS_IN_NAMES)
_RUN = rf"{_WORD}(?:[ \t]+(?:{_LINK}[ \t]+){{0,2}}{_WORD}){{0,5}}"
_AFTER = (
    r"(?:Hospitals?|Infirmary|Clinic|Clinics|Hospice|Sanatorium|Polyclinic|General|Memorial"
    r"|Medical[ \t]+"
    r"(?:Cent(?:er|re)|Group)|Health[ \t]+(?:Cent(?:er|re)|System)|Imaging[ \t]+Cent(?:er|re)"
    r"|Cancer[ \t]+Cent(?:er|re)|(?:NHS[ \t]+)?(?:Foundation[ \t]+)?Trust|Klinik|Klinikum"
    r"|Kliniken|Surgery|(?:Medical[ \t]+|Family[ \t]+|Group[ \t]+)?Practice|Imaging|Radiology"
    r"|Assisted[ \t]+Living|Senior[ \t]+Living|(?:Nursing|Care|Rest|Retirement|Residential)"
    r"[ \t]+Home|(?:Nursing|Care|Skilled[ \t]+Nursing)[ \t]+Facility"
    r"|(?:(?:High|Elementary|Primary|Middle|Secondary|Grammar|Junior|Infant|Nursery)[ \t]+)?School"
    r"|Elementary|Kindergarten"
    r"|GmbH|Ltd\.?|Limited|Inc\.?|LLC|PLC|plc|Corp\.?|Corporation|Pty|AG|B\.V\.|S\.A\."
    r"|Sp\.[ \t]?z[ \t]?o\.[ \t]?o\.|Sp\.[ \t]?[jkp]\.|s\.c\.|S\.p\.A\.|SpA|S\.r\.l\.|s\.r\.l\.|Srl"
    r"|SRL|SARL|S\.A\.S\.|s\.r\.o\.|Kft\.|Zrt\.|OOD|EOOD|Oy|Oyj|ASA|ApS|A/S|GbR|OHG|d\.o\.o\."
    r"|Ltda\.?|LLP|PLLC|&[ \t]+(?:Co\.?|Sons|Söhne|fils|figli|hijos|zn\.?)|e[ \t]+figli"
    r"|und[ \t]+Söhne"
    r"|\w*(?:[Kk]rankenhaus|[Ss]jukhus(?:et)?|[Ss]ygehus|[Ss]ykehus(?:et)?|[Zz]iekenhuis"
    r"|[Ss]airaala))"
)
_BEFORE = (
    r"(?:(?:Universitäts)?[Kk]linikum|Krankenhaus|Hôpital|Hopital|Clinique|CHU|CHRU|Centre"
    r"[ \t]+Hospitalier(?:[ \t]+(?:R[ée]gional[ \t]+)?Universitaire)?|Ospedale|Policlinico"
    r"|Hospital[ \t]+(?:Universitario|General|Cl[ií]nico|de|del|Santa|San|São|Sao|do|da)"
    r"|Cl[ií]nica|Ziekenhuis|Sjukhus)"
)
NAME_BEFORE = re.compile(
    rf"(?<![\w-])(?P<run>{_RUN})[ \t]+{_AFTER}(?:[ \t]+of[ \t]+(?P<of>{_RUN}))?(?![\w-])"
)
NAME_AFTER = re.compile(rf"(?<![\w-]){_BEFORE}[ \t]+(?:{_LINK}[ \t]+)?(?P<run>{_RUN})(?![\w-])")
UPPER_BEFORE = re.compile(
    r"(?<![\w-])(?P<run>[A-Z][A-Z'.-]+(?:[ \t]+[A-Z][A-Z'.-]+){0,4})[ \t]+"
    r"(?:HOSPITALS?|INFIRMARY|CLINIC|HOSPICE|MEDICAL[ \t]+CENT(?:ER|RE)|KLINIKUM)(?![\w-])"
)
# A clinic's specialty the word lists lack ("Anticoagulation", "Lymphoedema") by its ending.
_CLINICAL = re.compile(
    r"(?i)(?:olog(?:y|ical)|ation|[oe]dema|itis|ectomy|osis|a?emia|algia|plasty|scopy|graphy"
    r"|therapy|iatry|iatrics?|natal|genetics|thoracic|vascular|urgery|ology|ics|facial)$"
)
_LINKS = frozenset({"of", "the", "and", "&", "de", "del", "la", "du", "des", "der", "di", "y"})
_SAINTS = frozenset({"st", "st.", "ste", "ste.", "saint", "sainte", "san", "santa", "são"})
# Words that say what kind of hospital it is ("University Hospital", "Royal Infirmary"): a
# word before one names the place even when it is a word too ("Cork University Hospital",
# "Bath Royal United Hospitals"), unless it only points ("the", "Outside", "Prior").
_KINDS = frozenset((
    "university", "general", "district", "regional", "community", "county", "royal", "memorial",
    "teaching", "city", "children's", "children’s", "women's", "women’s", "national", "state",
    "veterans", "united", "infirmary", "cottage", "base",
))  # fmt: skip
# Institutions whose names are mostly everyday words ("Riverside Medical Centre", "Oak Tree
# Family Practice", "Sunrise Care Home"): every word before one names it, unless it says
# what is treated there.
_NAMED_KINDS = re.compile(
    r"(?:(?:Medical|Health|Family|Group)[ \t]+(?:Cent(?:er|re)|Group|Practice)"
    r"|(?:Nursing|Care|Rest|Retirement|Residential)[ \t]+Home|(?:Assisted|Senior)[ \t]+Living"
    r"|(?:Nursing|Care)[ \t]+Facility|School|Elementary|Kindergarten)$"
)
# A company's legal form: a person's name before it names the company ("Chase PLC", "Taylor
# Ltd"), a maker's vocabulary does not ("Siemens AG", "Hologic Inc.").
_LEGAL_FORM = re.compile(r"[ \t](?:GmbH|Ltd\.?|Limited|Inc\.?|LLC|PLC|plc|Corp\.?|Pty)$")
_TREATED = frozenset((
    "breast", "eye", "heart", "cardiac", "spine", "sports", "cancer", "dental", "student",
    "urgent", "primary", "care", "walk-in", "family", "pediatric", "paediatric", "diagnostic",
    "imaging", "medical", "health", "kidney", "renal", "lung", "sleep", "fertility",
    "maternity", "rehabilitation", "mental", "women's", "children's", "men's", "veterans",
    "academic", "army", "military", "naval", "campus", "rural", "public", "private",
    "nursing", "law", "graduate", "summer", "sunday", "boarding", "special", "night", "driving",
    "language", "art", "music", "dance", "high", "primary", "secondary", "middle", "junior",
    "elementary", "infant", "nursery", "grammar", "residency", "fellowship",
))  # fmt: skip
_POINTERS = frozenset((
    "the", "this", "that", "our", "your", "their", "his", "her", "other", "outside", "previous",
    "prior", "local", "main", "new", "old", "same", "another", "nearest", "referring", "a", "an",
    "at", "from", "to", "in", "seen", "see", "scan", "scanned", "done", "performed",
    "patient", "patients", "pt", "resident", "residents", "staff", "visiting", "home",
))  # fmt: skip


def _first_name_word(run: str, lexicon: Lexicon) -> int | None:
    """Where in the run the institution's own name starts: at its first word that is a
    saint's or not in the safe vocabulary; None when it has no such word. In upper-case text
    the safe words before it ("PRIOR AT ROYAL") may be the sentence's, not the name's."""
    for found in re.finditer(r"\S+", run):
        word = found.group().strip("'’.-").removesuffix("'s").removesuffix("’s")
        lowered = word.lower()
        if lowered in _SAINTS and found.end() < len(run):
            return found.start()
        if lowered in _LINKS or len(word) < 3:
            continue
        # A name that is also a word ("General", "Pain") is a word.
        if not lexicon.facts(word)[2] and _CLINICAL.search(word) is None:
            return found.start()
    return _place_before_kind(run)


def _person_word(word: str, lexicon: Lexicon) -> bool:
    """A listed name that is a common English word or no vocabulary ("Chase", "Taylor")."""
    _, listed, safe, english = lexicon.facts(word.strip(",."))
    return listed and (english or not safe)


def _town_after(text: str, end: int, lexicon: Lexicon) -> int:
    """Where a name that ends at `end` ends with the town written after it (see _TOWN_AFTER)."""
    for _ in range(2):
        town = _TOWN_AFTER.match(text, end)
        if town is None or lexicon.facts(town.group(1))[2]:
            break
        end = town.end()
    return end


def _everyday_name(run: str, whole: str) -> bool:
    """Whether `run` names an institution of _NAMED_KINDS ("Riverside" before "Medical
    Centre"), by a word that neither points nor says what is treated there."""
    if _NAMED_KINDS.search(whole) is None:
        return False
    return any(
        word not in _TREATED and word not in _POINTERS and word not in _LINKS
        and word not in _KINDS and _CLINICAL.search(word) is None
        for word in run.lower().split()
    )  # fmt: skip


def _place_before_kind(run: str) -> int | None:
    """Where the place's name starts in a run that ends with kind words ("Cork University"),
    or None (see _KINDS)."""
    words = [(m.start(), m.group().lower()) for m in re.finditer(r"\S+", run)]
    kinds = 0
    while kinds < len(words) and words[len(words) - 1 - kinds][1] in _KINDS:
        kinds += 1
    for start, word in words[: len(words) - kinds] if kinds else ():
        if word not in _POINTERS and word not in _LINKS:
            return start
    return None


# Text without any of these names no institution: one scan instead of three.
_HINT = re.compile(  # searched in the lower-cased text: five times faster than (?i)
    r"hospi|infirm|clini|klinik|kranken|h[ôo]pital|ospedal|policlin|ziekenh|sjukh|medical"
    r"|health|imaging|cancer|trust|sanator|surgery|practice|chr?u|sygeh|sykeh|sairaal"
    r"|general|memorial|radiology|living|home|facility|school|elementary|kindergarten|gmbh|ltd|limited|inc\b|llc|plc|corp"
    r"|pty|\bag\b|b\.v\.|s\.a\.|sp\.|s\.c\.|s\.?p\.?a|s\.?r\.?l|sarl|s\.r\.o|kft|zrt|ood|\boy"
    r"|asa\b|aps\b|a/s|gbr|ohg|d\.o\.o|ltda|llp|figli|sons|söhne|fils|hijos|performed|done"
    r"|scanned|imaged|obtained|transferred|treated"
    r"|compared|referred|seen|admitted|transport|brought|arriv|came|travel|flown|airlift|moved"
    r"|relocat|discharg|return|liv|resid|born|visit|work|employ|compan|arbeitg|empleador"
    r"|datore|werkgever|pracodaw|работодат|роботодав|雇主|勤務先|직장"
)
# Where a study was made or a patient came from, with no institution word ("performed at
# Addenbrooke's", "transferred from Groote Schuur", "transported from Hagenow by ambulance",
# "lives in Kadıköy"): the capitalised run after such a verb.
AT_PLACE = re.compile(
    r"(?i:\b(?:(?:performed|done|scanned|imaged|obtained|acquired|transferred|treated|referred"
    r"|seen|admitted|transported|brought|arrived|came|comes|travell?ed|flown|airlifted|moved"
    r"|relocated|discharged|returned|returning|lives|living|lived|resides|residing|resident"
    r"|born|visiting|works|working|worked|employed)[ \t]+(?:back[ \t]+)?(?:at|from|to|in|of)"
    rf"|compared[ \t]+(?:to|with)))[ \t]+(?P<run>{_RUN})"
)
# After an employer's label, the rest of the clause is the employer: "Employer: Tomei, Baresi e
# Papetti e figli", "Employer: 台灣業糖"; "employer: unknown" (no capital, Latin) stays.
EMPLOYER = re.compile(
    r"(?:(?i:\b(?:employer|company|arbeitgeber|employeur|empleador|datore[ \t]+di[ \t]+lavoro"
    r"|werkgever|pracodawca|работодатель|роботодавець)\b|雇主|勤務先|직장)[ \t]*[:：]"
    r"|(?i:\bemployed[ \t]+by))[ \t]*"
    r"(?P<run>[^;\n()]{1,80}?)(?=[ \t]*(?:[;\n()]|[.!?](?:[ \t]|$)|$))"
)
# The town written after a hospital's name ("Mercy Hospital Joplin", "St Mary's Hospital,
# Paddington"): capitalised words that are no vocabulary, not upper-case abbreviations
# ("General Hospital ED") nor a department ("St Mary's Hospital, Radiology").
_TOWN_AFTER = re.compile(r"(?:,[ \t]*|[ \t]+)([A-ZÀ-Þ][a-zà-ÿ'’-]{2,})")


def _employer(run: str, lexicon: Lexicon) -> str:
    """The employer's name: `run` up to a lower-case English word ("Acme Widgets since 2001")
    that is no link ("Moet & van Rossum") and is no word of its language ("e figli")."""
    for word in re.finditer(r"[^\W\d_]+", run):
        value = word.group()
        if value.islower() and value not in _LINK_WORDS and lexicon.facts(value)[3]:
            return run[: word.start()].rstrip(" ,")
    return run


def find_organisations(text: str, lexicon: Lexicon) -> Iterator[tuple[int, int, str]]:
    """(start, end, "organisation") for each hospital or clinic named by its own name."""
    if _HINT.search(text.lower()) is None:
        return
    spans: list[tuple[int, int]] = []
    for pattern in (NAME_BEFORE, NAME_AFTER):
        for match in pattern.finditer(text):
            end = _town_after(text, match.end(), lexicon)
            named = match.groupdict().get("of")  # "University Hospital of Wales"
            named = named or _everyday_name(match.group("run"), match.group())
            named = named or end > match.end()  # "Rotunda Hospital Dublin"
            named = named or (
                _LEGAL_FORM.search(match.group()) is not None
                and any(_person_word(w, lexicon) for w in match.group("run").split())
            )
            if named or _first_name_word(match.group("run"), lexicon) is not None:
                spans.append((match.start(), end))
    for match in AT_PLACE.finditer(text):  # "performed at Addenbrooke's"; "from ICU" stays
        run = match.group("run")
        at = _first_name_word(run, lexicon)
        if at is not None and not (run.isupper() and len(run) <= 4):
            spans.append((match.start("run") + at, _town_after(text, match.end(), lexicon)))
    for match in EMPLOYER.finditer(text):
        employer = _employer(match.group("run"), lexicon)
        if any(w[:1].isupper() or w[:1] > "\u024f" for w in employer.split()):
            spans.append((match.start("run"), match.start("run") + len(employer)))
    for match in UPPER_BEFORE.finditer(text):  # capitals: the name starts at its first word
        at = _first_name_word(match.group("run"), lexicon)
        if at is not None:
            spans.append((match.start("run") + at, _town_after(text, match.end(), lexicon)))
    merged: list[list[int]] = []  # "Evangelisches Krankenhaus" + "Krankenhaus Bielefeld"
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in merged:
        yield start, end, "organisation"
