"""Other spellings of a person's name: how staff type it in Latin letters and as a login.

A patient registered as "Βλάχου^Αικατερίνη", "Петров^Иван" or "김^민준" is written
"Vlachou", "Petrov" and "Kim Minjun" in a report typed on an English keyboard, and as
"ipetrov", "vlachou.a" or "kminjun" wherever a system shows a user or file name. The
identifiers of an instance (identifiers.py) add these forms, so that the cleaner cuts them
and the verify gate looks for them.

Romanization uses `anyascii` (one Latin reading per character, ISC licence) with the
variants people actually write: Greek "ου" as "ou"; Cyrillic soft signs dropped, "-iy" as
"-y" or "-i", "-ey" as "-ei"; Japanese long vowels shortened ("サトウ": "sato", "satou");
Korean family names in their usual spellings (김: Kim, Gim; 이: Lee, Yi, Rhee). Japanese
kanji are not romanized (anyascii reads them as Chinese): the kana of the phonetic group
are. Abjads (Arabic, Hebrew) write no short vowels, so no single Latin spelling follows
from them: their names become regexes instead (abjad_names.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from anyascii import anyascii

from gateway.base.abjad_names import abjad_patterns
from gateway.base.text_folding import is_unspaced, kana_only

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_NOT_LETTER = re.compile(r"[^a-z]")
_ROMANIZED_SCRIPTS = ("GREEK", "CYRILLIC", "HANGUL", "HIRAGANA", "KATAKANA", "CJK", "ARMENIAN",
                      "GEORGIAN")  # fmt: skip
_SKIPPED_SCRIPTS = ("ARABIC", "HEBREW", "SYRIAC", "THAANA")
# Two-letter readings that are words, units or abbreviations of clinical text ("in", "mA",
# "CT"): a romanized 이, 인 or 马 is never searched as one of these.
_PAIRS = (
    "ab ad ah am an ap as at ax be by ca cc cm cr ct do dr dx eg er ex go gy ha he hi ho hr hu "
    "id ie if in is it iv kg kv lr lt ma me mg ml mm mo mr ms my nm no of oh ok on or ox pa pd "
    "pe pm po pr pt re rf rl rt sa sc se si so sr st to tr ts uh um up us ux we xa ye yo"
)
COMMON_PAIRS = frozenset(_PAIRS.split(" "))

# The usual Latin spellings of common Korean family names (Revised Romanization first).
KOREAN_FAMILY_NAMES: dict[str, tuple[str, ...]] = {
    "김": ("gim", "kim"), "이": ("i", "lee", "yi", "rhee", "ri"), "박": ("bak", "park", "pak"),
    "최": ("choe", "choi", "choy"), "정": ("jeong", "jung", "chung", "cheong"),
    "강": ("gang", "kang"), "조": ("jo", "cho", "joe"), "윤": ("yun", "yoon"),
    "장": ("jang", "chang"), "임": ("im", "lim", "yim"), "한": ("han",), "오": ("o", "oh"),
    "서": ("seo", "suh", "so"), "신": ("sin", "shin"), "권": ("gwon", "kwon"),
    "황": ("hwang",), "안": ("an", "ahn"), "송": ("song",), "전": ("jeon", "jun", "chun"),
    "홍": ("hong",), "유": ("yu", "yoo", "you"), "고": ("go", "ko"), "문": ("mun", "moon"),
    "양": ("yang",), "손": ("son", "sohn"), "배": ("bae", "pae"), "백": ("baek", "paik", "baik"),
    "허": ("heo", "huh", "hur"), "남": ("nam",), "노": ("no", "noh", "roh"), "하": ("ha",),
    "곽": ("gwak", "kwak"), "성": ("seong", "sung"), "차": ("cha",), "주": ("ju", "joo", "chu"),
    "우": ("u", "woo"), "민": ("min",), "류": ("ryu", "yoo", "yu"), "나": ("na", "ra"),
    "진": ("jin",), "지": ("ji",), "엄": ("eom", "um"), "채": ("chae",), "원": ("won",),
    "천": ("cheon", "chun"), "방": ("bang",), "공": ("gong", "kong"), "현": ("hyeon", "hyun"),
    "변": ("byeon", "byun"), "염": ("yeom",), "여": ("yeo",), "추": ("chu", "choo"),
    "도": ("do",), "석": ("seok",), "설": ("seol",), "마": ("ma",), "길": ("gil",),
    "위": ("wi",), "표": ("pyo",), "명": ("myeong", "myung"), "기": ("gi", "ki"),
    "반": ("ban",), "왕": ("wang",), "금": ("geum",), "옥": ("ok",), "육": ("yuk", "yook"),
    "인": ("in",), "맹": ("maeng",), "제": ("je",), "모": ("mo",), "탁": ("tak",),
    "남궁": ("namgung",), "선우": ("seonu", "sunwoo"), "제갈": ("jegal",), "황보": ("hwangbo",),
}  # fmt: skip


def _scripts(word: str) -> set[str]:
    return {unicodedata.name(c, "").split(" ")[0] for c in word if c.isalpha()}


def _letters(text: str) -> str:
    return _NOT_LETTER.sub("", text.casefold())


def _variants(latin: str, scripts: set[str]) -> set[str]:
    """The spellings people write for one machine reading."""
    forms = {latin}
    if "GREEK" in scripts:
        forms |= {f.replace("oy", "ou") for f in forms}
        # αυ, ευ are av/ev (af/ef before a voiceless consonant) in Greek as written today.
        forms |= {re.sub(r"([ae])y", r"\1v", f) for f in forms}
        forms |= {re.sub(r"([ae])y(?=[ptkfsch])", r"\1f", f) for f in forms}
        forms |= {f.replace("gg", "ng") for f in forms}  # γγ: "Evangelia"
        forms |= {f.replace("ch", "h") for f in forms} | {f.replace("ch", "kh") for f in forms}
    if "CYRILLIC" in scripts:
        forms |= {re.sub(r"iy$", "y", f) for f in forms} | {re.sub(r"iy$", "i", f) for f in forms}
        forms |= {f.replace("ks", "x") for f in forms} | {f.replace("kh", "h") for f in forms}
        forms |= {re.sub(r"([aeiou])y$", r"\1i", f) for f in forms}  # "Aleksei", "Sergei"
    if scripts & {"HIRAGANA", "KATAKANA"}:
        forms |= {re.sub(r"([aeiou])\1|ou", lambda m: m.group()[0], f) for f in forms}
    return forms


def romanized(word: str, han: bool = True) -> set[str]:
    """Latin spellings (folded, letters only) of one name word in a non-Latin script; empty
    for Latin words, abjads, kanji (mixed with kana, or `han` false: a Japanese name) and
    readings too short to mean anything."""
    scripts = _scripts(word)
    if not scripts or scripts <= {"LATIN"} or scripts & set(_SKIPPED_SCRIPTS):
        return set()
    if not any(s.startswith(_ROMANIZED_SCRIPTS) for s in scripts):
        return set()
    if _HAN.search(word) and (_KANA.search(word) or not han):
        return set()  # mixed kanji and kana: Japanese, read wrongly as Chinese
    if "HANGUL" in scripts and word in KOREAN_FAMILY_NAMES:
        return {f for f in KOREAN_FAMILY_NAMES[word] if _specific(f)}
    reading = anyascii(word)
    forms = _variants(_letters(reading), scripts)
    if "CJK" in scripts or "HANGUL" in scripts:
        # "XiaoMing", "MinJun": also written with a space or hyphen between syllables.
        syllables = re.findall(r"[A-Z][a-z]*", reading)
        if "HANGUL" in scripts:  # anyascii gives "Minjun" for 민준: a syllable each
            syllables = [anyascii(c) for c in word]
        if len(syllables) > 1:
            forms |= {" ".join(s.lower() for s in syllables)}
    return {f for f in forms if _specific(f)}


def _specific(form: str) -> bool:
    letters = form.replace(" ", "")
    return len(letters) >= 3 or (len(letters) == 2 and letters not in COMMON_PAIRS)


def japanese_readings(kana: str) -> set[str]:
    """Romaji of a name written in kana (the phonetic group of a Japanese PN)."""
    if not _KANA.search(kana) or _HAN.search(kana):
        return set()
    return {f for f in _variants(_letters(anyascii(kana)), {"KATAKANA"}) if _specific(f)}


def login_forms(families: Iterable[str], givens: Iterable[str]) -> set[str]:
    """User and file names made of a family and a given name: "ipetrov", "petrovi",
    "layla.haddad", "haddad.l", "i.petrov", "petrov_ivan" (folded, Latin letters only)."""
    forms: set[str] = set()
    givens = [g for g in (_letters(g) for g in givens) if g]
    for family in (_letters(f) for f in families):
        if len(family) < 3:  # "kli", "lik": a two-letter family name makes words, not logins
            forms |= {  # ... but a whole given name of four letters or more does: "ngwaiman"
                f"{a}{sep}{b}"
                for given in givens
                if len(given) >= 4
                for a, b in ((family, given), (given, family))
                for sep in ("", ".", "_")
            }
            continue
        for given in givens:
            initial = given[0]
            forms |= {
                f"{initial}{family}", f"{family}{initial}", f"{initial}.{family}",
                f"{family}.{initial}", f"{given}.{family}", f"{family}.{given}",
                f"{given}_{family}", f"{family}_{given}", f"{given}{family}", f"{family}{given}",
            }  # fmt: skip
    return forms


def typed_forms(components: list[str], group: str, person_name: str) -> tuple[set[str], set[str]]:
    """Every Latin reading and login form of the (family, given) components of one `group`
    of `person_name` (a PN value; `components` are the group's, folded, "" for a
    placeholder): "Vlachou" for "Βλάχου", "ipetrov" and "haddad.l", "apgruffydd" for "ap
    Gruffydd"; and regexes for Arabic and Hebrew names, which have no one Latin spelling
    (abjad_names.py). Readings come from the unfolded name ("й" is not "и"); the kanji of a
    name with a kana group are not read."""
    japanese = any(kana_only(g.replace("^", "")) for g in person_name.split("=")[1:3] if g)
    raws = [unicodedata.normalize("NFC", c) for c in group.split("^")[:2]]
    originals = [c.casefold() for c in raws]
    out: set[str] = set()
    latin: list[set[str]] = []
    for component, original, raw in zip(components[:2], originals, raws, strict=False):
        words = original.split() if component else []
        forms = japanese_readings("".join(words))
        if not forms:
            pieces = ["".join(words)] if is_unspaced(component) else words
            forms = {form for piece in pieces for form in romanized(piece, han=not japanese)}
        if len(words) > 1 and component.isascii():
            forms.add("".join(ch for ch in component if ch.isalpha()))  # "apgruffydd"
        if component and not raw.isascii() and _scripts(raw) <= {"LATIN"}:
            forms.add(_letters(anyascii(component)))  # "torbjorn": ø, ł, đ do not decompose
            dropped = _letters(raw.encode("ascii", "ignore").decode())
            if len(dropped) >= 4:
                forms.add(dropped)  # "stergaard", "gromann": what an ASCII-only system leaves
        if not latin:  # the family name: a compound as logins shorten it ("vdberg",
            # "onakamura"); GROSSMANN is Großmann, which an ASCII-only system makes "gromann"
            forms |= _compound_shortenings(original)
            forms |= {f.replace("ss", "") for f in forms if "ss" in f and len(f) >= 7}
        out |= forms
        latin.append(forms | ({component} if component.isascii() else set()))
    if len(latin) == 2:
        # Each word of a given name of several ("Thị Hương": "hnguyen"), and their
        # initials together ("min jun": "mjkim").
        parts = [f.split() for f in latin[1] if len(f.split()) > 1]
        typed = [_letters(anyascii(w)) for w in originals[1].split()]
        words = {w for ws in parts for w in ws if len(w) > 1} | {w for w in typed if w}
        out |= login_forms(latin[0], latin[1] | words)
        initials = {"".join(w[0] for w in ws) for ws in parts}
        if len(typed) > 1:
            initials.add("".join(w[:1] for w in typed))
        families = [f for f in latin[0] if f.isalpha() and len(f) >= 3]
        out |= {f"{i}{f}" for i in initials if len(i) >= 2 for f in families}
    cut = {p for forms in latin for form in forms if (p := truncated(form)) is not None}
    return out, abjad_patterns(components[:1], components[1:2]) | cut


def _compound_shortenings(family: str) -> set[str]:
    """The initials of a compound family name's first parts, then its last part whole:
    "van der berg" -> "vdberg"; "o'connor-nakamura" -> "onakamura" and "ocnakamura"."""
    out = set()
    for splitter in (r"[\s-]+", r"[\s'’-]+"):
        parts = [_letters(p) for p in re.split(splitter, family)]
        parts = [p for p in parts if p]
        if len(parts) > 1 and len(parts[-1]) >= 3:
            out.add("".join(p[0] for p in parts[:-1]) + parts[-1])
    return out


MIN_TRUNCATED_NAME = 9  # letters: shorter names are not cut to fit a field


def truncated(name: str) -> str | None:
    """A regex for a long name cut short to fit a 16-character field, where the cut shows:
    at the end of the value or before an underscore ("PTV_Bhattachar", "Subramania_PLAN").
    Three fifths of it at least, never fewer than six letters."""
    if len(name) < MIN_TRUNCATED_NAME or not name.isalpha():
        return None
    least = max(6, -(-3 * len(name) // 5))
    rest = "".join(f"(?:{re.escape(c)}" for c in name[least:-1]) + ")?" * (len(name) - 1 - least)
    return rf"(?<![^\W_]){re.escape(name[:least])}{rest}(?=_|\\|$)"
