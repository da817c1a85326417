"""Dates and times in free text, and date shifting that keeps the writer's spelling.

A date is shifted rather than blanked when it parses to a full date, so that intervals between
events survive de-identification (PS3.15 E.3.6, Retain Longitudinal Temporal Information with
Modified Dates). The shifted date is written back in the same spelling: order, separators,
zero padding, two- or four-digit year, month name language, abbreviation and letter case.

Numeric dates whose day and month are both 12 or less are read day first (14/03 style, the
majority outside the US) unless the text is unambiguous ("03/14/2024" is month first).
Dotted numeric dates need a four-digit year or two digits in every part, so that version
numbers ("2.10.12") stay and "14.03.21" moves.

A time may be followed by punctuation, a colon included ("at 20:14: abdominal pain"), but not
by a colon or dot and a digit: "1:10:100" is a ratio and "10:32.5" a measurement. A whole
hour or half hour in text about the breast is a clock-face position ("RT 10:00"), not a time.
"""

from __future__ import annotations

import datetime as dt
import re

from gateway.text.places import unit_follows

# Month spellings by language, full and abbreviated; the first table that holds a word is the
# one its shifted month is written back from.
_MONTH_TABLES: tuple[tuple[str, ...], ...] = (
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"),
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ("jan", "feb", "mar", "apr", "may", "june", "july", "aug", "sept", "oct", "nov", "dec"),
    ("januar", "februar", "märz", "april", "mai", "juni", "juli", "august", "september",
     "oktober", "november", "dezember"),
    ("jan", "feb", "mrz", "apr", "mai", "jun", "jul", "aug", "sep", "okt", "nov", "dez"),
    ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
     "octobre", "novembre", "décembre"),
    ("janv", "févr", "mars", "avr", "mai", "juin", "juil", "août", "sept", "oct", "nov", "déc"),
    ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september",
     "oktober", "november", "december"),
    ("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec"),
    ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
     "octubre", "noviembre", "diciembre"),
    ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"),
    ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
     "settembre", "ottobre", "novembre", "dicembre"),
    ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro",
     "outubro", "novembro", "dezembro"),
    ("januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september",
     "oktober", "november", "december"),
    ("januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september",
     "oktober", "november", "desember"),
    ("stycznia", "lutego", "marca", "kwietnia", "maja", "czerwca", "lipca", "sierpnia",
     "września", "października", "listopada", "grudnia"),
    ("styczeń", "luty", "marzec", "kwiecień", "maj", "czerwiec", "lipiec", "sierpień",
     "wrzesień", "październik", "listopad", "grudzień"),
    ("ledna", "února", "března", "dubna", "května", "června", "července", "srpna", "září",
     "října", "listopadu", "prosince"),
    ("ianuarie", "februarie", "martie", "aprilie", "mai", "iunie", "iulie", "august",
     "septembrie", "octombrie", "noiembrie", "decembrie"),
    ("január", "február", "március", "április", "május", "június", "július", "augusztus",
     "szeptember", "október", "november", "december"),
    ("tammikuuta", "helmikuuta", "maaliskuuta", "huhtikuuta", "toukokuuta", "kesäkuuta",
     "heinäkuuta", "elokuuta", "syyskuuta", "lokakuuta", "marraskuuta", "joulukuuta"),
    ("ocak", "şubat", "mart", "nisan", "mayıs", "haziran", "temmuz", "ağustos", "eylül", "ekim",
     "kasım", "aralık"),
    ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября",
     "октября", "ноября", "декабря"),
    ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август", "сентябрь",
     "октябрь", "ноябрь", "декабрь"),
    ("січня", "лютого", "березня", "квітня", "травня", "червня", "липня", "серпня", "вересня",
     "жовтня", "листопада", "грудня"),
    ("ιανουαρίου", "φεβρουαρίου", "μαρτίου", "απριλίου", "μαΐου", "ιουνίου", "ιουλίου",
     "αυγούστου", "σεπτεμβρίου", "οκτωβρίου", "νοεμβρίου", "δεκεμβρίου"),
    ("januari", "februari", "maret", "april", "mei", "juni", "juli", "agustus", "september",
     "oktober", "november", "desember"),
    ("januari", "februari", "mac", "april", "mei", "jun", "julai", "ogos", "september",
     "oktober", "november", "disember"),
    ("januari", "februari", "machi", "aprili", "mei", "juni", "julai", "agosti", "septemba",
     "oktoba", "novemba", "desemba"),
    ("enero", "pebrero", "marso", "abril", "mayo", "hunyo", "hulyo", "agosto", "setyembre",
     "oktubre", "nobyembre", "disyembre"),
    ("januára", "februára", "marca", "apríla", "mája", "júna", "júla", "augusta", "septembra",
     "októbra", "novembra", "decembra"),
    ("sausio", "vasario", "kovo", "balandžio", "gegužės", "birželio", "liepos", "rugpjūčio",
     "rugsėjo", "spalio", "lapkričio", "gruodžio"),
    ("jaanuar", "veebruar", "märts", "aprill", "mai", "juuni", "juuli", "august", "september",
     "oktoober", "november", "detsember"),
    ("januar", "februar", "marts", "april", "maj", "juni", "juli", "august", "september",
     "oktober", "november", "december"),
    ("gener", "febrer", "març", "abril", "maig", "juny", "juliol", "agost", "setembre",
     "octubre", "novembre", "desembre"),
    ("ιαν", "φεβ", "μαρ", "απρ", "μαΐ", "ιουν", "ιουλ", "αυγ", "σεπ", "οκτ", "νοε", "δεκ"),
    ("يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس", "سبتمبر", "أكتوبر",
     "نوفمبر", "ديسمبر"),
    ("يناير", "فبراير", "مارس", "إبريل", "مايو", "يونيه", "يوليه", "اغسطس", "سبتمبر", "اكتوبر",
     "نوفمبر", "ديسمبر"),
    ("كانون الثاني", "شباط", "آذار", "نيسان", "أيار", "حزيران", "تموز", "آب", "أيلول",
     "تشرين الأول", "تشرين الثاني", "كانون الأول"),
    ("ינואר", "פברואר", "מרץ", "אפריל", "מאי", "יוני", "יולי", "אוגוסט", "ספטמבר", "אוקטובר",
     "נובמבר", "דצמבר"),
    ("בינואר", "בפברואר", "במרץ", "באפריל", "במאי", "ביוני", "ביולי", "באוגוסט", "בספטמבר",
     "באוקטובר", "בנובמבר", "בדצמבר"),
    ("जनवरी", "फ़रवरी", "मार्च", "अप्रैल", "मई", "जून", "जुलाई", "अगस्त", "सितंबर", "अक्टूबर",
     "नवंबर", "दिसंबर"),
    ("जनवरी", "फरवरी", "मार्च", "अप्रैल", "मई", "जून", "जुलाई", "अगस्त", "सितम्बर", "अक्तूबर",
     "नवम्बर", "दिसम्बर"),
    ("ژانویه", "فوریه", "مارس", "آوریل", "مه", "ژوئن", "ژوئیه", "اوت", "سپتامبر", "اکتبر",
     "نوامبر", "دسامبر"),
    # Persian, Solar Hijri (its own calendar: cut, not shifted)
    ("فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور", "مهر", "آبان", "آذر", "دی",
     "بهمن", "اسفند"),
    # Thai (last: its years may count from the Buddhist era)
    ("มกราคม", "กุมภาพันธ์", "มีนาคม", "เมษายน", "พฤษภาคม", "มิถุนายน", "กรกฎาคม", "สิงหาคม",
     "กันยายน", "ตุลาคม", "พฤศจิกายน", "ธันวาคม"),
)  # fmt: skip
_SOLAR_HIJRI = len(_MONTH_TABLES) - 2
# Japanese era years: 昭和31年 is 1956 (元年 is an era's first year).
# Taiwan's Minguo years the same way: 民國110年 is 2021.
_ERAS = {"明治": 1868, "大正": 1912, "昭和": 1926, "平成": 1989, "令和": 2019, "民國": 1912,
         "民国": 1912}  # fmt: skip
_MONTHS: dict[str, tuple[int, int]] = {}
for _table_index, _table in enumerate(_MONTH_TABLES):
    for _month_index, _word in enumerate(_table):
        _MONTHS.setdefault(_word, (_table_index, _month_index + 1))


def _trie(words: list[str]) -> str:
    """One alternation of `words` sharing their prefixes ("ma(?:r(?:ch|zo|s)|i|y)"): Python's
    regex engine tries a flat alternation branch by branch at every position, and the month
    names of twenty languages made that the date search's largest cost. Longest first."""
    heads: dict[str, list[str]] = {}
    for word in words:
        heads.setdefault(word[:1], []).append(word[1:])
    branches = []
    for head, tails in sorted(heads.items()):
        ends = "" in tails
        rest = [t for t in tails if t]
        inner = _trie(rest) if rest else ""
        if rest and ends:
            branches.append(re.escape(head) + f"(?:{inner})?")
        elif rest:
            branches.append(re.escape(head) + (f"(?:{inner})" if len(rest) > 1 else inner))
        else:
            branches.append(re.escape(head))
    return branches[0] if len(branches) == 1 else "|".join(branches)


_MONTH = "(?P<mon>(?:" + _trie(sorted(_MONTHS)) + r"))\.?"
_ROMAN_MONTHS = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")
_ROMAN = "(?-i:" + "|".join(sorted(_ROMAN_MONTHS, key=len, reverse=True)) + ")"
_DAY = r"(?P<d>3[01]|[12]\d|0?[1-9])(?!\d)(?P<ord>st|nd|rd|th|er|e|\.)?"
_YEAR4 = r"(?P<y>(?:1[89]|20)\d\d)"
_END = r"(?![^\W_])"

# Each pattern names its fields: y, m or mon, d, ord (ordinal suffix).
DATE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        rf"(?<![\w.]){_YEAR4}(?P<s>[-/.])(?P<m>1[0-2]|0?[1-9])(?P=s)(?P<d>3[01]|[12]\d|0?[1-9])"
        r"(?!\d|[.]\d|[^\W\dT_])",
        r"(?<![\w.])(?P<y>(?:19|20)\d\d)(?P<m>0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\d|3[01])"
        r"(?![\w.]|T\d|[-+]\d)",  # "19900101-1234" is a Swedish personnummer
        r"(?<![\w.])(?P<a>[0-3]?\d)(?P<s>[-/.])(?P<b>[0-3]?\d)(?P=s)(?P<y>\d{4}|\d{2})"
        r"(?![\w]|[.,]\d)",
        rf"(?<![\w.]){_DAY}(?:\s+(?:of|de))?[\s./-]*{_MONTH}"
        rf"(?:(?:[\s./,-]*|\s+de\s+)(?P<y>\d{{4}}|'?\d\d)(?!\d))?{_END}",
        rf"(?<![\w.]){_MONTH}[\s.-]*{_DAY}(?:(?:,\s*|\s+|-)(?P<y>(?:1[89]|20)\d\d|'\d\d))?{_END}",
        rf"(?<![\w.]){_MONTH}[\s./,-]+{_YEAR4}{_END}",
        # Chinese, Japanese and Korean: 2021年3月14日, 2021년 3월 14일.
        r"(?<!\d)(?P<y>(?:1[89]|20)\d\d)[ \t]?[年년][ \t]?(?P<m>1[0-2]|0?[1-9])[ \t]?[月월]"
        r"[ \t]?(?P<d>3[01]|[12]\d|0?[1-9])[ \t]?[日일]",
        # A Japanese era year: 昭和31年3月5日 (replaced, not shifted).
        r"(?P<era>" + "|".join(_ERAS) + r")[ \t]?(?P<ey>元|1?\d?\d)[ \t]?年[ \t]?"
        r"(?P<m>1[0-2]|0?[1-9])[ \t]?月[ \t]?(?P<d>3[01]|[12]\d|0?[1-9])[ \t]?日",
        # Vietnamese: ngày 12 tháng 3 năm 2023.
        r"(?<![\w.])(?P<d>3[01]|[12]\d|0?[1-9])[ \t]+tháng[ \t]+(?P<m>1[0-2]|0?[1-9])"
        r"(?:[ \t]+năm|,)[ \t]+(?P<y>(?:19|20)\d\d)(?!\d)",
        # A Roman month between day and year (Polish, Czech, Hungarian, Russian): 5.III.1956.
        rf"(?<![\w.])(?P<d>3[01]|[12]\d|0?[1-9])(?P<s>[./-])(?P<rm>{_ROMAN})(?P=s)"
        r"(?P<y>(?:1[89]|20)\d\d)(?!\d)",
        # Korean, year first with a full stop and a space after each part: 2021. 3. 12.
        r"(?<![\w.])(?P<y>(?:19|20)\d\d)\.[ \t](?P<m>1[0-2]|0?[1-9])\.[ \t]"
        r"(?P<d>3[01]|[12]\d|0?[1-9])(?!\d|[.,]\d)",
        # Hungarian, year first: 1956. március 5.
        rf"(?<![\w.]){_YEAR4}\.?[ \t]+{_MONTH}[ \t]+{_DAY}{_END}",
    )
)
TIME_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"(?:(?<![\w.:])|(?<=\dT))(?:[01]?\d|2[0-3])[:h][0-5]\d(?::[0-5]\d(?:\.\d+)?)?"
        r"(?:\s*[ap]\.?m\.?(?!\w))?(?!\w|[:.]\d)",
        r"(?<![\w.:])(?:1[0-2]|0?[1-9])(?:\.[0-5]\d)?\s*[ap]\.?m\.?(?!\w)",
    )
)


def _full_date(match: re.Match[str]) -> tuple[dt.date, bool] | None:
    """The date a match spells and whether its numeric order is day first, or None."""
    groups = match.groupdict()
    year_text = groups.get("y")
    if groups.get("era"):
        era_year = 1 if groups["ey"] == "元" else int(groups["ey"])
        year_text = str(_ERAS[groups["era"]] + era_year - 1)
    if not year_text:
        return None
    year = int(year_text.lstrip("'"))
    if len(year_text.lstrip("'")) == 2:
        year += 2000 if year <= dt.date.today().year % 100 else 1900
    year -= _buddhist_era(match)
    day_first = True
    if groups.get("mon"):
        if not groups.get("d"):
            return None
        month = _MONTHS[groups["mon"].lower()][1]
        day = int(groups["d"])
    elif groups.get("rm"):
        month, day = _ROMAN_MONTHS.index(groups["rm"]) + 1, int(groups["d"])
    elif groups.get("a"):
        first, second = int(groups["a"]), int(groups["b"])
        day_first = not (first <= 12 < second)
        day, month = (first, second) if day_first else (second, first)
    else:
        month, day = int(groups["m"]), int(groups["d"])
    try:
        return dt.date(year, month, day), day_first
    except ValueError:
        return None


_THAI_TABLE = len(_MONTH_TABLES) - 1
_BUDDHIST_ERA = 543  # Thai years count from 543 BCE: 2566 is 2023


def _month_table(match: re.Match[str]) -> int | None:
    """The index in _MONTH_TABLES of the month name a match spells, None without one."""
    word = match.groupdict().get("mon")
    return _MONTHS[word.lower()][0] if word else None


def _solar_hijri(match: re.Match[str]) -> bool:
    return _month_table(match) == _SOLAR_HIJRI


def _buddhist_era(match: re.Match[str]) -> int:
    """543 for a Thai month with a four-digit year in the Buddhist era, else 0."""
    year = match.groupdict().get("y") or ""
    thai = _month_table(match) == _THAI_TABLE
    return _BUDDHIST_ERA if thai and len(year) == 4 and int(year) > 2400 else 0


def is_date(match: re.Match[str]) -> bool:
    """Whether a pattern match is a date at all (a numeric one must be a real date)."""
    groups = match.groupdict()
    if groups.get("mon"):
        word = groups["mon"]
        # "5 may be" is a verb; a month without year needs a capital ("May 5th" is a date).
        day_before = match.start("d") < match.start("mon") if groups.get("d") else True
        return bool(groups.get("y")) or (
            word[0].isupper() and not (word.lower() == "may" and day_before)
        )
    # "2.10.12" is a version; "14.03.21", every part two digits and a real day, a date.
    if (
        groups.get("s") == "."
        and len(groups.get("y") or "") == 2
        and not len(groups.get("a") or "") == len(groups.get("b") or "") == 2
    ):
        return False
    return _full_date(match) is not None


def _like(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _number(template: str, value: int) -> str:
    return (
        str(value).zfill(len(template))
        if template.startswith("0") or len(template) > 1
        else (str(value))
    )


def _ordinal(day: int, template: str) -> str:
    if template.lower() in {"st", "nd", "rd", "th"}:
        suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
        return _like(template, suffix)
    if template.lower() in {"er", "e"}:  # French: only the first of the month is "1er"
        return template if day == 1 else ""
    return template


def shift_date(value: str, days: int) -> str | None:
    """`value` moved `days` into the past in the same spelling, or None if no full date."""
    for pattern in DATE_PATTERNS:
        match = pattern.fullmatch(value)
        if match is None:
            continue
        parsed = _full_date(match)
        if parsed is None or match.groupdict().get("era") or _solar_hijri(match):
            return None
        original, day_first = parsed
        new = original - dt.timedelta(days=days)
        ordinal = (match.groupdict().get("ord") or "").lower() in {"st", "nd", "rd", "th"}
        fields: dict[str, str] = (
            {"d": str(new.day) if ordinal else _number(match["d"] or "", new.day)}
            if "d" in (pattern.groupindex) and match["d"]
            else {}
        )
        if match.groupdict().get("a"):
            first, second = (new.day, new.month) if day_first else (new.month, new.day)
            fields = {"a": _number(match["a"], first), "b": _number(match["b"], second)}
        if match.groupdict().get("m"):
            fields["m"] = _number(match["m"], new.month)
        if match.groupdict().get("rm"):
            fields["rm"] = _ROMAN_MONTHS[new.month - 1]
        if match.groupdict().get("mon"):
            word = match["mon"]
            table = _MONTH_TABLES[_MONTHS[word.lower()][0]]
            fields["mon"] = _like(word, table[new.month - 1])
        if match.groupdict().get("ord"):
            fields["ord"] = _ordinal(new.day, match["ord"])
        year_text = match["y"]
        year = new.year + _buddhist_era(match)
        short = f"{year % 100:02d}"
        fields["y"] = (
            "'" + short
            if year_text.startswith("'")
            else (short if len(year_text) == 2 else str(year))
        )
        out = value
        for name in sorted(fields, key=lambda n: match.start(n), reverse=True):
            out = out[: match.start(name)] + fields[name] + out[match.end(name) :]
        return out
    return None


# Breast ultrasound and mammography give a lesion's position as a clock face ("RT 10:00").
CLOCK_FACE = re.compile(r"(?i)breast|axilla|nipple|areola|o'?clock")
# A side written next to the hour: "RT 10:00", "L 3:00", "2:00 LT" (not "RT structures").
SIDE_BEFORE, SIDE_AFTER = re.compile(r"(?i)\b[LR]T?[ \t]*$"), re.compile(r"(?i)^[ \t]*[LR]T?\b")
WHOLE_HOUR = re.compile(r"(?:1[0-2]|0?[1-9]):[03]0")
# After a birth cue a short dotted date is one, though "2.10.12" alone reads as a version.
BIRTH_CUE = re.compile(
    r"(?i)(?:\bdob|\bd\.o\.b|\bborn(?:[ \t]+on)?|\bbirth(?:[ \t]*date)?|\bgeb|\bgeboren"
    r"|\bn[ée]e?)[\s:.,]*\Z"
)
BIRTH_CUE_REACH = 24


def _after_birth_cue(text: str, start: int) -> bool:
    return BIRTH_CUE.search(text, max(0, start - BIRTH_CUE_REACH), start) is not None


# A year and a month, ISO-style ("born 1956-03"): a date element finer than the year.
YEAR_MONTH = re.compile(r"(?<![\w.-])(?:19|20)\d\d-(?:0[1-9]|1[0-2])(?![\w-]|[.,:/]\d)")
# A window or a range of values, not a month: "Window 2000-10", "W 1500-12".
_RANGE_BEFORE = re.compile(r"(?i)\b(?:window|range|level|width|center|centre|wl|ww|w|l)[\s:=]*\Z")


def find_dates(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "date" or "time") for every date and time in `text`, possibly overlapping."""
    found: list[tuple[int, int, str]] = [
        (m.start(), m.end(), "date")
        for m in YEAR_MONTH.finditer(text)
        if not unit_follows(text, m.end())
        and not text[m.end() : m.end() + 2].lstrip(" \t").startswith("%")
        and _RANGE_BEFORE.search(text, max(0, m.start() - 12), m.start()) is None
    ]
    for pattern in DATE_PATTERNS:
        found.extend(
            (m.start(), m.end(), "date")
            for m in pattern.finditer(text)
            if is_date(m) or (_full_date(m) and _after_birth_cue(text, m.start()))
        )
    for pattern in TIME_PATTERNS:
        for m in pattern.finditer(text):
            if WHOLE_HOUR.fullmatch(m.group()) and (
                CLOCK_FACE.search(text)
                or SIDE_BEFORE.search(text[max(0, m.start() - 4) : m.start()])
                or SIDE_AFTER.search(text[m.end() : m.end() + 4])
            ):
                continue
            found.append((m.start(), m.end(), "time"))
    return found
