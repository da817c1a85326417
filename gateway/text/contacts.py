"""Contact details and identifiers in free text: e-mail, URL, phone, address, town, postcode, ID.

Each finder returns (start, end, kind) candidates that may overlap; the recognizer keeps the
strongest. The hard part is what to leave alone: acquisition values and measurements
("512x512", "120 kV", "b1000", "C1-C7", "PTV_6000", "0 500 1000") are full of digits, so an
ID needs five or more digits in one token with letters, six or more in a lone run of digits,
a run of digit groups that is not an ascending list of round numbers, digit groups totalling
six after a reference cue ("prior 193 5501", "hosp no."), or an identifier keyword ("MRN",
"NHS No") in front of it. National identifiers are found after their names ("NI no.", "RRN",
"AHV", "codice fiscale", "passport", ...) letters and all, and by shape alone where the shape
is specific enough (UK NINO, Korean RRN, US SSN, Nordic, Italian, Spanish, French NIR, Aadhaar,
Chinese resident ID). A phone number's national part may start with 0 ("07700 945585").

Streets, postcodes and towns are places.py's: towns are words like any other, found by where
they stand (after a street, in the short clause after an address cue, next to a postcode).
Input may hold `*` where the instance's own identifiers were cut, read as part of an address.
"""

from __future__ import annotations

import itertools
import re

import phonenumbers

from gateway.text.cjk_names import CJK_LETTERS
from gateway.text.lexicon import Lexicon, shipped_lexicon
from gateway.text.places import UNITS, cued, find_places, find_postcodes, find_streets, unit_follows


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


# A `*` may stand in the local part where the instance's identifiers cut a name out of it.
EMAIL = re.compile(r"(?<![\w.+*-])[\w.+*-]+@[\w-]+(?:\.[\w-]+)+")
URL = re.compile(r"(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>\"']+")
# A bare domain ("hospital.org/x"): dotted labels taken whole (possessive, so that a long run
# of dots costs linear time), then the last label checked against a few top-level domains.
DOMAIN = re.compile(r"(?<![\w.@-])[\w-]++(?:\.[\w-]++)++(?:/[^\s<>\"']*)?")
TOP_LEVEL = _words("com org net edu gov info de fr nl be ch at it es ca au io uk")
# An IP address names a machine, often a patient's own: four dotted numbers up to 255 that
# are no piece of a longer dotted number (a UID); a four-part version number goes with it.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.\d)")
# An IPv6 address (eight groups, or fewer with "::") and a device's MAC address (six pairs).
MACHINE = re.compile(
    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
    r"|(?=[0-9A-Fa-f:]*::)(?:[0-9A-Fa-f]{1,4}:){1,6}:?(?::[0-9A-Fa-f]{1,4}){1,6}"
    r"|[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})(?![\w:])"
)
# A user's own folder names the user: "C:\\Users\\jsmith\\Desktop", "/home/mgarcia/scans".
HOME_FOLDER = re.compile(
    r"(?i)(?:\\(?:users|documents and settings|home|profiles)\\|/(?:home|users|u)/)"
    r"(?P<v>[^\\/:*?\"<>|\s]+(?: [^\\/:*?\"<>|\s]+)*(?=\\)|[^\\/:*?\"<>|\s]+)"
)
# A login joined to other parts of a label ("JSMITH_MEAS", "ct-mgarcia"): one or two letters
# and a family name the lists know that is no word; "CTHEAD", "LTKNEE" are words run together.
JOINED_LOGIN = re.compile(
    r"(?<=[_-])([A-Za-z]{5,12})(?![^\W\d_])|(?<![^\W\d_])([A-Za-z]{5,12})(?=[_-])"
)
# Digit groups joined by space, dash, dot or parentheses, with an optional +NN in front.
# CJK text writes numbers against its letters ("电话13812345678"): a CJK letter is no part of
# a number's word (`_WORD`: a word character that is not one).
_WORD = rf"[^\W{CJK_LETTERS}]"
# An extension may follow ("463.311.2006x662", "555-0100 ext. 12"); Austrian and Hungarian
# numbers put a slash after the area code ("05366/97251027", "06-66/786 9819").
_EXTENSION = r"(?:[ \t]?(?:x|ext\.?[ \t]?)\d{1,6})?"
# A group of two digits or more; a lone digit only between spaces ("832 3 741"), so that a UID
# ("1.2.840.10008") is no number to dial.
_GROUP = r"(?:[\s./-]\d{2,8}|[ ]\d(?=[ ]\d))"
_EXTENSION_AT_END = re.compile(r"[ \t]?(?:x|ext\.?[ \t]?)\d{1,6}\Z")
PHONE = re.compile(
    rf"(?<![+.,/])(?<!{_WORD})(?:\+\d{{1,3}}[\s.-]?)?"
    rf"(?:\(\d{{1,5}}\)[\s.-]?\d{{1,8}}{_GROUP}{{0,5}}|\d{{1,8}}{_GROUP}{{1,5}})"
    rf"{_EXTENSION}(?!{_WORD}|[.,/]\d)"
)
# How numbers are grouped when only spaces part them, which alone says a phone number
# ("7623 2860", "98 25 97 91", "901 29 040", "832 3 741"); "256 256 128" is no such shape.
_PHONE_SHAPES = frozenset(
    {(4, 4), (3, 4), (2, 2, 2, 2), (3, 2, 3), (3, 2, 2), (3, 1, 3), (3, 3, 4), (2, 3, 2, 2),
     (3, 2, 2, 2), (4, 3, 3), (2, 4, 4), (4, 2, 2), (3, 3, 2, 2)}
)
# A number after "tel", "fax", "pager" or "bleep" is a phone number however it is written.
PHONE_KEYWORD = re.compile(
    r"(?i)(?:\b(?:tel|telephone|phone|ph|fax|mobile|mob|cell|pager|bleep|ext|tlf|tfn|telefon"
    r"|telefone|telefono|teléfono|téléphone|tél|handy|gsm|puh|móvil|celular|cel"
    r"|(?:call|ring|contact|reach|text|sms)(?:ed)?(?:[ \t]+back)?(?:[ \t]+(?:on|at))?)\.?"
    r"|电话|電話|手机|手機|电话号码|電話番号|携帯|연락처|전화|휴대폰)\s*[:#.：]?\s*"
    rf"(?P<v>\+?\(?\d[\d\s()./-]{{2,}}\d{_EXTENSION})(?!\w)"
)
PHONE_REGIONS = (None, "US", "GB", "DE", "FR", "NL")
_LENIENCY = phonenumbers.Leniency.POSSIBLE
# One run of digits or up to six groups joined by a space or a dash. Groups are not capped in
# length: "641215-2299263" (a Korean RRN) has a seven-digit group. Possessive, so that a long
# run of digits is not tried again at every shorter length.
DIGIT_GROUPS = re.compile(rf"(?<![.,/-])(?<!{_WORD})\d++(?:[ -]\d++){{0,5}}(?!{_WORD}|[.,/-]\d)")
# Words after which digit groups are a reference number ("prior 193 5501", "hosp no. 28 21").
ID_CUE = re.compile(
    r"(?i)(?:\b(?:prior|ref|reference|no|nr|num|number|hosp(?:ital)?\s+no|acc|accession|case"
    r"|exam|order|req|request|study|file|chart|record|visit|encounter|episode|MRN|ID)\.?|#)"
    r"\s*[:#.]?\s*\Z"
)
# Letters and digits, joined by dashes ("XK4471B", "XK-4471-B", "E-99812331", "RX-2024-00871").
ALNUM = re.compile(
    r"(?<![A-Za-z0-9.,])(?=[A-Za-z]*-?\d)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?![A-Za-z0-9]|[.,]\d)"
)
# Each keyword pattern opens with a look-ahead for its keywords' first letters: the regex
# engine then skips other positions quickly (twice as fast on text without a keyword).
UNDERSCORED = re.compile(r"(?<=_)\d{6,}(?!\d)|(?<![^\W_])\d{6,}(?=_)")
# A reference joined by slashes with a word: "2021/RAD/004512" (not "1/100000", a dilution).
SLASHED = re.compile(r"(?<=[A-Za-z]/)\d{5,}(?!\d)|(?<![\w/])\d{5,}(?=/[A-Za-z])")
ID_KEYWORD = re.compile(
    r"(?i)(?=[muhpiansbcr])\b(?:MRN|MR\s?(?:No|#)|UR\s?No|hospital\s+(?:no|number)|patient\s+(?:id|no|number)"
    r"|pt\s+id|ID|accession(?:\s+(?:no|number))?|acc\s?(?:no|#)|(?-i:ACC)|NHS(?:\s+(?:no|number))?|SSN"
    r"|SIN|BSN|NIR|chart|record|case)(?![^\W\d_])\s*(?:no\.?|number|#)?\s*[:#.]?\s*"
    r"(?P<v>[A-Z]{0,3}[-\s]?\d[\d\s-]{2,}\d[A-Z]?(?:-[A-Z0-9]{1,3})?)(?!\w)"
)
# A vehicle's registration or identification number (HIPAA lists both): letters and digits
# after what names one ("car registration KX19 ZPL", "VIN 1HGCM82633A004352").
VEHICLE_KEYWORD = re.compile(
    r"(?i)(?=[cvrlni])\b(?:(?:car|vehicle|registration|licen[cs]e|number)\s+plate|(?:car|vehicle)\s+reg"
    r"(?:istration)?|reg(?:istration)?\s+(?:no|number|plate)|VIN)\.?\s*[:#.]?\s*"
    r"(?P<v>(?-i:[A-Z0-9А-ЯЁ\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af・]{1,8}"
    r"(?:[ -][A-Z0-9А-ЯЁ\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af・]{1,8}){0,4}))(?!\w)"
)
# A national identifier's name: whatever follows with five digits or more is the identifier,
# letters included ("NI no. AP 65 42 12 C", "codice fiscale RSSMRA85T10A562S").
NATIONAL_KEYWORD = re.compile(
    r"(?=[A-Za-z])(?:\b(?:NI|NINO|RRN|SSN|AHV|AVS|CPR|PESEL|DNI|NIE|NIF|CURP|RFC|NIR|INSEE|BSN|SIN|TFN|IRD"
    r"|PPSN?|HKID|NRIC|CNP|EGN|OIB|JMBG|CPF|RUT|RUN|TIN|NHI|DL)"
    r"|(?i:\b(?:national\s+insurance|national\s+id(?:entity)?(?:\s+card)?|id\s+card"
    r"|identity\s+card|passport|aadhaar|aadhar|personnummer|personnr|fødselsnummer"
    r"|henkilötunnus|hetu|codice\s+fiscale|medicare|medicaid|steuer-?id|steuernummer"
    r"|sozialversicherungs(?:nummer|nr)|social\s+security|sécurité\s+sociale|carte\s+vitale"
    r"|burgerservicenummer|sofinummer|resident\s+registration|c[ée]dula|curp"
    r"|rodn[ée]\s+[čc][ií]slo|driver['’]?s\s+licen[cs]e|driving\s+licen[cs]e)))\b"
    r"(?i:\s*(?:no|nr|num|number|#)?\.?\s*[:#.]?\s*)"
    r"(?P<v>(?:[A-Z]{1,6}[\s-]?)?\d[\dA-Z]*(?:[\s./-]\d[\dA-Z]*)*(?:[\s-][A-Z](?![\w-]))?)"
)
# Text without any of these has none of the national shapes below: one scan instead of ten.
_NATIONAL_HINT = re.compile(
    r"\d{6}|\d\d \d\d \d\d|\d{3}-\d\d-\d{4}|\d{4} \d{4} \d{4}|[12] ?\d\d ?\d\d ?\d\d ?\d{3}"
    r"|[A-Z]{6}\d\d|[XYZ]\d{7}"
)
# National identifier shapes specific enough to take without a keyword.
NATIONAL_PATTERNS = tuple(
    re.compile(p)
    for p in (
        # UK National Insurance number: two prefix letters (not D F I Q U V, second not O,
        # not BG GB KN NK NT TN ZZ), three digit pairs, a suffix A-D; spaced or not.
        r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
        r"(?: \d\d \d\d \d\d ?|\d{6})[A-D]\b",
        # Korean RRN: birth date, dash, sex/century digit 1-8, six digits.
        r"(?<![\w-])\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])-[1-8]\d{6}(?![\w-])",
        # US SSN: not 000, 666 or 9xx, no zero group.
        r"(?<![\w-])(?!000|666|9)\d{3}-(?!00)\d\d-(?!0000)\d{4}(?![\w-])",
        # Nordic: Danish CPR and Finnish HETU (ddmmyy, -/+/A, four characters), Swedish
        # personnummer ([yy]yymmdd-nnnn).
        r"(?<![\w+-])(?:0[1-9]|[12]\d|3[01])(?:0[1-9]|1[0-2])\d\d[-+A]\d{3}[\dA-Y](?![\w-])",
        r"(?<![\w+-])(?:19|20)?\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[-+]\d{4}(?![\w-])",
        # Czech and Slovak birth number (rodné číslo): yymmdd, months +50 for women (+20,
        # +70 since 2004), a slash, three or four digits.
        r"(?<![\w/-])\d\d(?:[0257][1-9]|[1368][0-2])(?:0[1-9]|[12]\d|3[01])/\d{3,4}(?![\w/-])",
        # Italian codice fiscale.
        r"\b[A-Z]{6}\d\d[A-EHLMPR-T]\d\d[A-Z]\d{3}[A-Z]\b",
        # Spanish DNI / NIE: eight digits (or X, Y, Z and seven) and a check letter.
        r"(?<![\w.,/-])(?:\d{8}|[XYZ]\d{7})[\s-]?[A-HJ-NP-TV-Z]\b",
        # French NIR: sex, year, month, department (2A/2B for Corsica), commune, order, key.
        r"(?<![\w.,/-])[12] ?\d\d ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d\d|2[AB]) ?\d{3} ?\d{3}"
        r"(?: ?\d\d)?(?![\w]|[.,/-]\d)",
        # Indian Aadhaar: three groups of four, not starting with 0 or 1.
        r"(?<![\w.,/-])[2-9]\d{3} \d{4} \d{4}(?![\w]|[.,/-]\d)",
        # Chinese resident ID: region, birth date, order, check digit or X.
        r"(?<![\w.,/-])[1-9]\d{5}(?:18|19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
        r"\d{3}[\dXx](?!\w)",
    )
)


# A social media handle: "@jsmith_88" (an email's "@" has a name before it), or the account
# written after the network's name ("Insta: jane.doe.77", "WeChat ID wxid_8812").
HANDLE = re.compile(
    r"(?<![\w.@])@(?P<v>(?=[\w.]*[A-Za-z])[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?)"
)
SOCIAL_HINT = re.compile(
    r"(?i)(?=[itfslwd])(?:insta|twitter|facebook|tiktok|snapchat|linkedin|telegram|whatsapp"
    r"|skype|wechat|weixin|discord)"
)
SOCIAL_KEYWORD = re.compile(
    r"(?i)\b(?:instagram|insta|twitter|facebook|tiktok|snapchat|linkedin|telegram|whatsapp"
    r"|skype|wechat|weixin|discord)(?:[ \t]+(?:id|handle|account|name|user(?:name)?))?"
    r"[ \t]*[:=@][ \t]*@?(?P<v>(?=[\w.\-]*[A-Za-z])[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,38}"
    r"[A-Za-z0-9_])?)"
)


def find_contacts(text: str, lexicon: Lexicon | None = None) -> list[tuple[int, int, str]]:
    """(start, end, kind) candidates, possibly overlapping; `lexicon` (the shipped one by
    default, loaded only when a place rule needs it) says which words are vocabulary."""
    found: list[tuple[int, int, str]] = []
    if "@" in text:
        found.extend((m.start(), m.end(), "email") for m in EMAIL.finditer(text))
        found.extend((*m.span("v"), "id") for m in HANDLE.finditer(text))
    if SOCIAL_HINT.search(text) is not None:
        found.extend((*m.span("v"), "id") for m in SOCIAL_KEYWORD.finditer(text))
    if "." in text or ":" in text:
        urls = list(URL.finditer(text))
        urls += [m for m in DOMAIN.finditer(text) if _top_level(m.group()) in TOP_LEVEL]
        urls += IPV4.finditer(text) if text.count(".") >= 3 else ()
        urls += MACHINE.finditer(text) if text.count(":") >= 2 else ()
        for m in urls:
            end = m.end()
            while end > m.start() and text[end - 1] in ".,;:)!?":
                end -= 1
            found.append((m.start(), end, "url"))
    if "\\" in text or "/" in text:
        found.extend((*m.span("v"), "id") for m in HOME_FOLDER.finditer(text))
    if "_" in text or "-" in text:
        found.extend((*m.span(m.lastindex or 0), "id") for m in _joined_logins(text, lexicon))
    digits = sum(map(str.isdigit, text))
    if digits == 0 and "*" not in text:
        # "lives in Kingsmere": a town needs no digit, but an address cue before it.
        if cued(text):
            found.extend(find_places(text, [], lexicon))
        return found
    streets = find_streets(text)
    if streets:
        found.extend(_towns_before(text, streets, lexicon))
    doubtful: list[tuple[int, int, str]] = []
    codes = find_postcodes(text, doubtful)
    found.extend(streets)
    found.extend(codes)
    found.extend(find_places(text, streets + codes, lexicon, digits, doubtful))
    for m in VEHICLE_KEYWORD.finditer(text):
        if any(c.isalpha() for c in m.group("v")) and any(c.isdigit() for c in m.group("v")):
            found.append((*m.span("v"), "id"))
    if digits >= 3:
        found.extend(_identifiers(text, digits))
        found.extend((m.start("v"), m.end("v"), "phone") for m in PHONE_KEYWORD.finditer(text))
    if digits >= 7:
        # A number after "MRN" or "NHS No" is an identifier even if it could be dialled.
        keyed = [(s, e) for s, e, k in found if k == "id" and _keyed(text, s, e)]
        found.extend(p for p in _phones(text) if not any(p[0] < e and s < p[1] for s, e in keyed))
    return found


def _joined_logins(text: str, lexicon: Lexicon | None) -> list[re.Match[str]]:
    """The logins of JOINED_LOGIN: all one case, one or two letters, then a listed family
    name of four letters or more that is no word, the whole no word either."""
    found = []
    for match in JOINED_LOGIN.finditer(text):
        value = match.group(match.lastindex or 0)
        if not (value.isupper() or value.islower()):
            continue
        words = lexicon if lexicon is not None else shipped_lexicon()
        _, listed, safe, _ = words.facts(value)
        if listed or safe:
            continue  # a name or a word of its own: other rules say which
        for cut in (1, 2):
            _, listed, safe, _ = words.facts(value[cut:])
            if listed and not safe and len(value) - cut >= 4:
                found.append(match)
                break
    return found


# A town written before its street, as Polish and Czech addresses put it ("Warszawa, ul.
# Polna 12"): one capitalised word that is not vocabulary, right before the street.
_TOWN_BEFORE = re.compile(r"(?<![^\W\d_])([^\W\d_a-z][^\W\d_]{2,})(?:,[ \t]*|[ \t]+)\Z")


def _towns_before(
    text: str, streets: list[tuple[int, int, str]], lexicon: Lexicon | None
) -> list[tuple[int, int, str]]:
    words = lexicon if lexicon is not None else shipped_lexicon()
    out = []
    for start, end, _kind in streets:
        found = _TOWN_BEFORE.search(text, max(0, start - 80), start)  # not from the text's start
        if (
            found is not None
            and found.group(1)[:1].isupper()
            and not words.facts(found.group(1))[2]
        ):
            out.append((found.start(1), end, "address"))  # the town and its street
    return out


def _keyed(text: str, start: int, end: int) -> bool:
    """Whether an ID candidate is named as one ("MRN ...") or has a national ID's shape."""
    window, stop = max(0, start - 40), min(len(text), end + 64)  # not to the text's end
    if any(m.start("v") == start for m in ID_KEYWORD.finditer(text, window, stop)):
        return True
    if any(m.start("v") == start for m in NATIONAL_KEYWORD.finditer(text, window, stop)):
        return True
    return any(p.fullmatch(text, start, end) for p in NATIONAL_PATTERNS)


def _top_level(value: str) -> str:
    return value.split("/", 1)[0].rsplit(".", 1)[-1].lower()


def _round(number: str) -> bool:
    """A number someone would choose: 0, 5-95, a multiple of ten below 1000 ("kV 80 100 120
    140"), or of 25 ("1500-2000", "b 50 400 800").

    "415" and "945585" end in 5 but are not round, nor is "6370" (an ID's last group); a
    leading zero ("07700") makes a code."""
    if len(number) > 5 or (len(number) > 1 and number[0] == "0"):
        return False
    value = int(number)
    return value % 25 == 0 or (value < 1000 and value % 10 == 0) or (value < 100 and value % 5 == 0)


def _value_list(numbers: list[str]) -> bool:
    """Ascending round numbers ("0 500 1000", "1000-2000") are b-values or ranges, not IDs."""
    values = [int(n) for n in numbers]
    ascending = all(a < b for a, b in itertools.pairwise(values))
    return ascending and all(map(_round, numbers))


def _identifiers(text: str, digits: int) -> list[tuple[int, int, str]]:
    out = []
    for m in ID_KEYWORD.finditer(text):
        if sum(c.isdigit() for c in m.group("v")) >= 3:
            out.append((*m.span("v"), "id"))
    if digits >= 5:  # every national identifier has five digits or more
        for m in NATIONAL_KEYWORD.finditer(text):
            if sum(c.isdigit() for c in m.group("v")) >= 5:
                out.append((*m.span("v"), "id"))
    if digits >= 6 and _NATIONAL_HINT.search(text) is not None:  # by shape: six or more
        for pattern in NATIONAL_PATTERNS:
            for m in pattern.finditer(text):
                if not _value_list(re.findall(r"\d+", m.group())):
                    out.append((m.start(), m.end(), "id"))
    for m in DIGIT_GROUPS.finditer(text):
        groups = re.split(r"[ -]", m.group())
        total = sum(len(g) for g in groups)
        longest = max(map(len, groups))
        if unit_follows(text, m.end()) or (len(groups) > 1 and _value_list(groups)):
            continue
        if len(groups) == 1:
            wanted = total >= 6  # a lone run: "prior 29379658", "US THYROID - 3871056"
        elif "-" in m.group() and " " not in m.group():
            wanted = total >= 5 if len(groups) >= 3 else (longest >= 5 or total >= 9)
        else:
            wanted = (total >= 9 and len(groups) >= 3) or longest >= 5
        if not wanted and total >= 6 and longest >= 3:
            wanted = ID_CUE.search(text, max(0, m.start() - 24), m.start()) is not None
        if wanted:
            out.append((m.start(), m.end(), "id"))
    if "/" in text:
        out.extend((*m.span(), "id") for m in SLASHED.finditer(text))
    if "_" in text:  # a file or protocol name: "OKAFOR_C_4471928.dcm" (not "IMG_000123")
        out.extend((*m.span(), "id") for m in UNDERSCORED.finditer(text) if m[0][:3] != "000")
    for m in ALNUM.finditer(text):
        token = m.group()
        digits = sum(c.isdigit() for c in token)
        letters = "".join(c for c in token if c.isalpha())
        if not letters or digits < 3 or letters.lower() in UNITS or unit_follows(text, m.end()):
            continue
        changes = sum(a.isdigit() != b.isdigit() for a, b in itertools.pairwise(token))
        if digits >= 5 or (digits >= 4 and changes >= 3):
            out.append((m.start(), m.end(), "id"))
    return out


_DATE_INSIDE = re.compile(
    r"(?<!\d)(?:\d{1,2}([/.-])\d{1,2}\1(?:19|20)\d\d|(?:19|20)\d\d-\d\d-\d\d)(?!\d)"
)


def _phones(text: str) -> list[tuple[int, int, str]]:
    out = []
    for m in PHONE.finditer(text):
        value = m.group()
        number = _EXTENSION_AT_END.sub("", value)
        digits = sum(c.isdigit() for c in number)
        groups = re.findall(r"\d+", number)
        structured = (
            value.startswith(("+", "(", "0"))
            or "-" in value
            or "." in value
            or ("/" in value and digits >= 8)
            or (  # a reference number's groups may look alike: "prior 193 5501"
                tuple(map(len, groups)) in _PHONE_SHAPES
                and ID_CUE.search(text, max(0, m.start() - 24), m.start()) is None
            )
        )
        if _value_list(groups) or unit_follows(text, m.end()) or _DATE_INSIDE.search(value):
            continue  # "01/02/2023 14:22" is a date and a time
        if 7 <= digits <= 15 and structured:
            out.append((m.start(), m.end(), "phone"))
    if not out and ("+" in text or "(" in text):  # the regex above finds most; this the rest
        for region in PHONE_REGIONS:
            matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=_LENIENCY)
            # Its short "possible" numbers ("58" in "58F", "11 3" of a postcode) are not.
            out.extend(
                (match.start, match.end, "phone")
                for match in matcher
                if sum(c.isdigit() for c in match.raw_string) >= 7
            )
    return out
