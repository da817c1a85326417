"""Person names in free text: name lists, safe vocabulary and context.

A word is "listed" when it is in the shipped given/family name lists (or a site's extra
names) and "safe" when it is in the safe vocabulary: English dictionary words, pydicom's
DICOM and SR concept vocabulary, hand-written clinical words (lexicon.py, data/SOURCES.md).
Words are looked up NFKC + casefolded, and again with accents stripped. Rules:

1. A site's safe word is never a name; a site's extra name always is.
2. A listed word that is not safe is a name when it is capitalised (or the whole value is lower
   case) and has three letters or more: "Nguyen", "GONZÁLEZ", "Иван". An upper-case word of
   three letters or fewer ("LAO", "TEE", "KIM") needs rule 3 or 4: in descriptors it is an
   abbreviation far more often than a name.
3. A title ("Dr", "Mrs", "Prof", "Nurse") makes the next capitalised word a name whatever it
   is ("Dr. Rose Long", "Dr Xochitl", "Dr. de la Cruz"). Upper-case "MR", "MS", "MRS", "DR"
   are modalities or diseases ("MR KNEE", "DR CHEST") unless a dot or a name follows.
   A weaker cue ("wife", "per", "called", "contact", "attn", or "with"/"to"/"by" a few words
   after "discussed", "communicated", "reviewed", "signed"...) makes the next word a name when
   it is listed and not safe, or capitalised and listed or unknown: "per protocol", "called
   back" and "discussed with Radiology" stay. Up to two more capitalised listed or unknown
   words join the name ("Rose Long"). A post-nominal (", MD", "RN", "PhD") does the same for
   the capitalised words before it.
4. A listed word next to a name (space, hyphen or "^" between) written the same way
   (Title Case or capitals) is a name too, however common: "Maria White", "Li Wei",
   "SMITH^JOHN"; "Maria WHITE MATTER" is not one name. Particles between or after names
   join them ("Ludwig van Beethoven", "Chloé Ní Bhriain").
5. In prose (a value with lower-case words), two adjacent Title Case listed words, one of them
   not common English, are a name ("Hope Cushing"), and so are a Title Case listed word and
   an unknown Title Case word after it that does not end like a medical term (-oma, -itis,
   -ectomy...): "Grace Featherstonehaugh". An unknown word right after a name joins it in any
   text ("MARIA XIUHCOATL"), and names before a clinical noun are eponyms, not people
   ("Chiari I malformation", "Baker's cyst") unless a title or cue named them.
6. A run of 2-4 Han or Hangul characters that starts with a common family name is a name
   ("王小明", "山田太郎", "김민준", also with a Korean particle or honorific after it), unless
   it is a listed clinical word; a short Han run after such a name and a space is its given
   name ("山田 太郎"); inside longer runs, a family name before an honorific ("先生", "様") or
   after a role ("患者") is one.
Everything else (anatomy, sequence and English words that are also names somewhere) stays:
in "HEAD WHITE MATTER" no word is a name, and "Rose Long" alone is two words.
"""

from __future__ import annotations

import itertools
import re

from gateway.text.lexicon import Lexicon, WordFacts, accent_fold


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


_CJK = "\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
WORD = re.compile(rf"[^\W\d_{_CJK}\u3040-\u30ff]+")
JOINER = re.compile(r"[ \t]{1,3}|[ \t]?[-^][ \t]?|\^{1,2}")
TITLES = _words(
    "dr doctor mr mrs ms miss mx prof professor nurse sister dott dra herr frau sig sra sr "
    "mme mlle dhr mevr señor señora docteur dokter δρ κ κος κα др доктор г-н врач الدكتور "
    "دكتور السيد السيدة"
)
CUES = _words(
    "wife husband son daughter mother father brother sister partner spouse friend guardian "
    "mum mom dad niece nephew aunt uncle grandson granddaughter per called contact contacts "
    "attn cc radiologist physician technologist tech resident fellow attending surgeon "
    "consultant referrer patient pt name pn"
)
# "with", "to", "by" are cues after one of these verbs up to three words before them:
# "discussed findings with", "result communicated to", "images reviewed by".
CUE_VERBS = _words(
    "discussed spoke spoken talked communicated conveyed relayed reviewed signed dictated read "
    "seen approved verified performed reported transcribed referred ordered requested "
    "confirmed informed sent faxed given called telephoned phoned notified released discuss "
    "speak talk inform notify"
)
CUE_LINKS = _words("with to by")
POST_NOMINALS = _words("md rn phd mbbs frcr frcp dds np mbchb facr lpn crna")
# Words that are never names by themselves, though a title makes the next word one anyway.
NEVER_NAMES = (
    TITLES
    | POST_NOMINALS
    | _words(
        "mrn dob nhs ssn acc id pt pts hx dx rx tx sx fx ddx patient patients family team staff "
        "radiology transport registrar resident fellow attending technologist radiographer "
        "sonographer clinic ward reception pharmacy lab ed er icu pacs ris his emr ehr gp "
        "oncology cardiology neurology surgery urology orthopaedics orthopedics"
    )
)
PARTICLES = _words(
    "van von de da di del della der den le la du dos das bin ibn al el ter ten ní nic mac mc "
    "ó ua uí bint binti ben ap"
)
# Nouns an eponym comes before: a name followed by one of these is not a person.
EPONYM_NOUNS = _words(
    "fracture fractures disease syndrome sign signs lesion lesions malformation neuroma cyst "
    "tear classification score criteria line lines node nodes ligament procedure operation "
    "repair reconstruction shunt catheter tube view projection test maneuver manoeuvre scale "
    "grade type stage lymphoma sarcoma tumor tumour ulcer hernia palsy phenomenon reflex triad "
    "angle space canal duct gland body bodies cell cells effect position method technique "
    "method formula index law rule classification anomaly deformity contracture disorder "
    "fossa foramen node nodule esophagus aneurysm dissection thyroiditis encephalopathy "
    "sarcoma cysts spots nodes artery vein valve pouch membrane"
)
MEDICAL_SUFFIXES = tuple(
    _words(
        "oma omas itis osis oses ectomy otomy ostomy plasty gram graphy scopy pathy emia aemia "
        "algia cele trophy plasia ectasis iasis ular ical"
    )
)
ROMAN = _words("I II III IV V VI VII")


class Token:
    """One word with what the rules need to know about it."""

    __slots__ = (
        "cap", "cued", "end", "english", "folded", "listed", "name", "safe", "start", "text",
    )  # fmt: skip

    def __init__(self, start: int, text: str, facts: WordFacts) -> None:
        self.start, self.end, self.text = start, start + len(text), text
        self.folded, self.listed, self.safe, self.english = facts
        self.cap = text[:1].isupper() or text.lower() == text.upper()  # caseless scripts too
        self.name = self.cued = False  # cued: a title, cue or post-nominal made it a name


def _tokens(
    text: str, lexicon: Lexicon, extra: frozenset[str], site_safe: frozenset[str]
) -> list[Token]:
    """Words of `text` ("Smith's" gives "Smith" and "s": the apostrophe is not a letter)."""
    tokens = []
    for match in WORD.finditer(text):
        word = match.group()
        facts = lexicon.facts(word)
        folded, english = facts[0], facts[3]
        forms = {folded, accent_fold(folded)} if extra or site_safe else set()
        named = bool(forms & extra)
        if folded in NEVER_NAMES or forms & site_safe:
            facts, named = (folded, False, True, english), False
        elif named:
            facts = (folded, True, False, english)
        token = Token(match.start(), word, facts)
        token.name = named
        tokens.append(token)
    return tokens


def _gap(text: str, left: Token, right: Token) -> str:
    return text[left.end : right.start]


def _joined(text: str, left: Token, right: Token) -> bool:
    return JOINER.fullmatch(_gap(text, left, right)) is not None


def _cue_gap(text: str, left: Token, right: Token) -> bool:
    gap = _gap(text, left, right)
    return len(gap) <= 4 and all(c in " \t.:,;-–—'’" for c in gap)


def _is_title(token: Token) -> bool:
    return (token.folded in TITLES and token.cap) or token.folded in {"dr", "mrs", "mr", "ms"}


def _modality_not_title(text: str, tokens: list[Token], index: int) -> bool:
    """Upper-case "MR", "MS", "MRS", "DR" are a modality or a disease more often than a title
    ("MR KNEE", "DR CHEST", "MRS PRESS"): titles with a dot or before a name."""
    token = tokens[index]
    if not (token.text.isupper() and token.folded in {"mr", "ms", "mrs", "dr"}):
        return False
    if text.startswith(".", token.end):
        return False
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    if following is None or not following.listed:
        return True
    if not following.safe:
        return False  # "MR SMITH"
    after = tokens[index + 2] if index + 2 < len(tokens) else None  # "DR ROSE LONG"
    return not (after is not None and after.listed and _joined(text, following, after))


def _apply_cues(text: str, tokens: list[Token], lowercase_text: bool) -> None:
    count = len(tokens)
    for index, token in enumerate(tokens):
        if index + 1 >= count:
            break
        strong = _is_title(token) and not _modality_not_title(text, tokens, index)
        weak = token.folded in CUES or (
            token.folded in CUE_LINKS
            and any(t.folded in CUE_VERBS for t in tokens[max(0, index - 3) : index])
        )
        if not (strong or weak) or not _cue_gap(text, token, tokens[index + 1]):
            continue
        nxt = index + 1
        while nxt < count and _is_initial(text, tokens[nxt]):  # "Dr. J. Smith"
            tokens[nxt].name = True
            nxt += 1
        particles = []
        while strong and nxt + 1 < count and tokens[nxt].folded in PARTICLES:
            particles.append(tokens[nxt])  # "Dr. de la Cruz"
            nxt += 1
        if nxt >= count or _is_title(tokens[nxt]) or tokens[nxt].folded in PARTICLES:
            continue
        first = tokens[nxt]
        if not _cue_gap(text, tokens[nxt - 1], first):
            continue
        if strong:
            wanted = first.cap or lowercase_text
        else:  # "per protocol", "called back", "discussed with Radiology" stay
            clear = first.listed and not first.safe
            wanted = clear or (first.cap and (first.listed or not first.safe))
        if wanted:
            for particle in particles:
                particle.name = True
            first.name = first.cued = True
            _extend(text, tokens, nxt, +1, 2)


def _is_initial(text: str, token: Token) -> bool:
    return len(token.text) == 1 and token.text.isupper() and text.startswith(".", token.end)


def _style(token: Token) -> str:
    """How a word is written: names beside each other are written alike ("Maria WHITE" is not
    one name, "MARIA WHITE" and "Maria White" are)."""
    text = token.text
    if len(text) > 1 and text.isupper():
        return "upper"
    return "cap" if token.cap else "lower"


def _may_join(named: Token, candidate: Token) -> bool:
    """Whether a word beside a name may be part of it: a listed word written the same way,
    but not a short upper-case abbreviation that is safe vocabulary ("CT", "MRI")."""
    if not candidate.listed or len(candidate.text) < 2 or _style(candidate) != _style(named):
        return False
    return not (candidate.safe and len(candidate.text) <= 3 and candidate.text.isupper())


def _extend(text: str, tokens: list[Token], index: int, step: int, limit: int) -> None:
    """Up to `limit` more capitalised listed or unknown words beside a name join it."""
    here = index
    for _ in range(limit):
        other = here + step
        if not 0 <= other < len(tokens):
            return
        left, right = (tokens[here], tokens[other]) if step > 0 else (tokens[other], tokens[here])
        candidate = tokens[other]
        if not candidate.cap or _is_title(candidate) or candidate.folded in POST_NOMINALS:
            return
        if _is_initial(text, candidate):
            candidate.name = True
        elif _joined(text, left, right):
            if not (_may_join(tokens[here], candidate) or not candidate.safe):
                return
            candidate.name = True
        elif _gap(text, left, right) in {". ", ", "} and candidate.listed and not candidate.safe:
            candidate.name = True
        else:
            return
        here = other


def _apply_post_nominals(text: str, tokens: list[Token]) -> None:
    for index, token in enumerate(tokens):
        if index and token.folded in POST_NOMINALS and token.text[:1].isupper():
            gap = _gap(text, tokens[index - 1], token)
            previous = tokens[index - 1]
            if (
                gap in {", ", " ", ","}
                and previous.cap
                and not (previous.safe and not previous.listed)
            ):
                previous.name = previous.cued = True
                _extend(text, tokens, index - 1, -1, 2)


def _spread(text: str, tokens: list[Token]) -> None:
    """Listed words (and particles between names) next to a name become names."""
    changed = True
    while changed:
        changed = False
        for index in range(len(tokens) - 1):
            left, right = tokens[index], tokens[index + 1]
            if left.name == right.name or not _joined(text, left, right):
                continue
            named, other = (left, right) if left.name else (right, left)
            # An unknown capitalised word right after a name is most likely its surname
            # ("Maria Featherstonehaugh"), one before it is not ("Protocol Maria").
            unknown_after = (
                other is right
                and not other.listed
                and not other.safe
                and len(other.text) >= 3
                and _style(other) == _style(named) != "lower"
            )
            if _may_join(named, other) or unknown_after:
                other.name = changed = True
        for index in range(1, len(tokens) - 1):
            middle, after = tokens[index], tokens[index + 1]
            if (
                tokens[index - 1].name
                and middle.folded in PARTICLES
                and not after.name
                and after.text[:1].isupper()
                and (after.listed or not after.safe)
                and _joined(text, middle, after)
            ):
                middle.name = after.name = changed = True  # "Chloé Ní Bhriain"

            middle = tokens[index]
            if (
                not middle.name
                and middle.folded in PARTICLES
                and tokens[index - 1].name
                and (tokens[index + 1].name)
            ):
                middle.name = changed = True


def _is_prose(tokens: list[Token]) -> bool:
    return sum(1 for t in tokens if len(t.text) > 2 and t.text.islower()) >= 2


def find_latin_names(text: str, lexicon: Lexicon, extra: frozenset[str],
                     site_safe: frozenset[str]) -> list[tuple[int, int]]:  # fmt: skip
    """(start, end) of every name word in alphabetic scripts with case (and Arabic)."""
    tokens = _tokens(text, lexicon, extra, site_safe)
    if not tokens:
        return []
    lowercase_text = not any(c.isupper() for c in text)
    for token in tokens:
        # An upper-case word of three letters or fewer ("LAO", "TEE", "OPG") is an
        # abbreviation far more often than a name: it needs context or a name beside it.
        short_caps = len(token.text) <= 3 and token.text.isupper()
        bare = token.listed and not token.safe and len(token.text) >= 3 and not short_caps
        if bare and (token.cap or lowercase_text):
            token.name = True
    _apply_cues(text, tokens, lowercase_text)
    _apply_post_nominals(text, tokens)
    prose = _is_prose(tokens)
    if prose:
        for left, right in itertools.pairwise(tokens):
            if (
                left.listed
                and right.listed
                and left.text.istitle()
                and right.text.istitle()
                and _joined(text, left, right)
                and not (left.folded in lexicon.english and right.folded in lexicon.english)
            ):
                left.name = right.name = True
    for left, right in itertools.pairwise(tokens) if prose else ():
        # "Grace Featherstonehaugh": a listed word, then an unknown one, both in Title Case,
        # in prose (a Title Case descriptor's rare word is a term: "Lung Nodulectomy").
        if (
            left.listed
            and not right.folded.endswith(MEDICAL_SUFFIXES)
            and left.text.istitle()
            and right.text.istitle()
            and not right.listed
            and not right.safe
            and len(right.text) >= 4
            and left.folded not in NEVER_NAMES
            and _joined(text, left, right)
        ):
            left.name = right.name = True
    _spread(text, tokens)
    _drop_eponyms(text, tokens)
    for token in tokens:
        if token.name and "^" in text[max(0, token.start - 1) : token.end + 1]:
            _mark_pn_group(text, tokens, token)
    return [(t.start, t.end) for t in tokens if t.name]


def _drop_eponyms(text: str, tokens: list[Token]) -> None:
    """Names before a clinical noun are eponyms ("Chiari I malformation", "Morton neuroma",
    "Hill-Sachs lesion", "Baker's cyst"), not people, unless a title or cue named them."""
    index = 0
    while index < len(tokens):
        if not tokens[index].name:
            index += 1
            continue
        end = index
        while end + 1 < len(tokens) and tokens[end + 1].name:
            end += 1
        after = end + 1
        while after < len(tokens) and (
            tokens[after].text in ROMAN or tokens[after].text in {"s", "S"}
        ):
            after += 1
        run = tokens[index : end + 1]
        if (
            after < len(tokens)
            and tokens[after].folded in EPONYM_NOUNS
            and not any(t.cued for t in run)
        ):
            for token in run:
                token.name = False
        index = end + 1


def _mark_pn_group(text: str, tokens: list[Token], token: Token) -> None:
    """A DICOM PN value in text ("SMITH^JOHN^A"): every component of a name is a name."""
    start = text.rfind(" ", 0, token.start) + 1
    end = text.find(" ", token.end)
    end = len(text) if end < 0 else end
    for other in tokens:
        if start <= other.start and other.end <= end:
            other.name = True
