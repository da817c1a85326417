"""Person names in free text: name lists, safe vocabulary and context.

A word is "listed" when it is in the shipped given/family name lists (or a site's extra
names) and "safe" when it is in the safe vocabulary: English dictionary words, pydicom's
DICOM and SR concept vocabulary, hand-written clinical and product words (lexicon.py,
data/SOURCES.md). Words are looked up NFKC + casefolded, and again with accents stripped.
Context words (titles, cues, particles...) are in data/name_context.txt. Rules:

1. A site's safe word is never a name; a site's extra name always is.
2. A listed word that is not safe is a name when it is capitalised (or the whole value is lower
   case) and has three letters or more: "Nguyen", "GONZÁLEZ", "Иван". An upper-case word of
   three letters or fewer ("LAO", "TEE", "KIM") needs context: it is mostly an abbreviation.
3. A title ("Dr", "Mrs", "Nurse") makes the next capitalised word a name whatever it is ("Dr.
   Rose Long", "Dr. de la Cruz", "Dr. med. Le"); upper-case "MR", "MS", "MRS", "DR" are modalities
   or diseases ("MR KNEE") unless a dot or a name follows. A weaker cue (a relation or role,
   "nurse", "per", upper-case "RN" before a name, or "with"/"to"/"by" a few words after
   "discussed", "contoured"...) makes the next word a name when it is listed and not safe, or
   capitalised and listed or unknown: "per protocol", "discussed with Radiology" stay. Up to
   two more capitalised listed or unknown words join it; a post-nominal (", MD") does the same
   for the words before it.
4. A listed word next to a name (space, hyphen or "^" between) written the same way is a name
   too, however common: "Maria White", "SMITH^JOHN"; "Maria WHITE MATTER" is not one name.
   Particles between or after names join them ("Ludwig van Beethoven", "Chloé Ní Bhriain").
5. In prose (a value with lower-case words), two adjacent Title Case listed words, one of them
   not common English, are a name ("Hope Cushing"), and so are a Title Case listed word and an
   unknown one after it that does not end like a medical term (-oma, -itis...): "Grace
   Featherstonehaugh". An unknown word right after a name joins it in any text; names before a
   clinical noun are eponyms ("Chiari I malformation", "Baker's cyst") unless a title or cue
   named them.
6. Han, kana and Hangul names: cjk_names.py ("王伟", "wife 花子", "nurse 수빈", "山下, あすか").
7. Names no list knows, told by their neighbours. "Unknown" here means capitalised, not safe,
   not an upper-case abbreviation of three letters, not shaped like a clinical term (-osis,
   -ia, -ic, hepato-...) and not safe words run together ("LSPINE"): such a word, or a listed
   one, is a name before "present", "aware", "notified", "edit", "at bedside", "(wife)"
   ("Zimmerer present"); beside a lone "*", a name part the cleaner already cut ("* Jo"); alone
   as a sentence in prose ("3.4 cm. Pryderi."); ending a note after a lower-case word ("nodule
   8 mm Vanterpool"; radiology eponyms are safe words: "fluid in Morison"). An upper-case word
   and a Title Case word, both listed or unknown, are "SURNAME Given" ("KIM Minjun").
   Only Latin words can be "unknown": caseless scripts (Arabic, Hebrew, Thai, Georgian...) have
   no capitals and Greek or Cyrillic words are all unknown; there lists and cues count.
8. Word order and shape (name_shapes.py): "Love, Donald", "Tracy Ward MRN", "McNelis".
Everything else stays: in "HEAD WHITE MATTER" no word is a name, "Rose Long" is two words.
"""

from __future__ import annotations

import itertools
import re
from importlib import resources

from gateway.text import name_neighbours as neighbours
from gateway.text.eponyms import drop_eponyms
from gateway.text.lexicon import Lexicon, WordFacts, accent_fold, caseless, combining_marks, fold
from gateway.text.name_shapes import names_by_order_and_shape
from gateway.text.names_alone import foreign_prose, mark_names_alone

_CJK = "\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# A word's letters and its combining marks: Devanagari and Thai write vowels as marks, which
# `\w` does not match ("सुरेश" would be three words).
_SLAVIC_TITLE = r"(?i:[гд]-(?:н|жа|ца|р)(?![^\W\d_]))"  # "г-жа", "д-р": one word, a title
WORD = re.compile(rf"{_SLAVIC_TITLE}|(?:[^\W\d_{_CJK}\u3040-\u30ff]|[{combining_marks()}])+")
JOINER = re.compile(r"[ \t]{1,3}|[ \t]?[-^][ \t]?|\^{1,2}")


def _sections(name: str) -> dict[str, frozenset[str]]:
    """The "[section]" word sets of a data file ("#" lines: comments), also folded ("ς": "σ")."""
    text = resources.files("gateway.text").joinpath("data", name).read_text("utf-8")
    sections = re.findall(r"(?m)^\[(\w+)\]$([^\[]*)", re.sub(r"(?m)^#.*$", "", text))
    return {k: frozenset(w for word in v.split() for w in (word, fold(word))) for k, v in sections}


# Titles, cues, particles, eponym nouns, clinical word endings: see data/name_context.txt.
_CONTEXT = _sections("name_context.txt")
TITLES, CUES, CUE_VERBS = _CONTEXT["titles"], _CONTEXT["cues"], _CONTEXT["cue_verbs"]
CUE_LINKS, ROLES_BEFORE = _CONTEXT["cue_links"], _CONTEXT["roles_before"]
AFTER_NAME = _CONTEXT["after_name"]
POST_NOMINALS, PARTICLES = _CONTEXT["post_nominals"], _CONTEXT["particles"]
NEVER_NAMES = TITLES | POST_NOMINALS | _CONTEXT["never_names"]
EPONYM_NOUNS, MEDICAL_SUFFIXES = _CONTEXT["eponym_nouns"], tuple(_CONTEXT["medical_suffixes"])
CLINICAL_ENDINGS = MEDICAL_SUFFIXES + tuple(_CONTEXT["clinical_endings"])
CLINICAL_STARTS = tuple(_CONTEXT["clinical_starts"])
# Standing alone, a word with an ending names share ("Malia", "Caroline", "Oskar") is a name.
ALONE_ENDINGS = tuple(e for e in CLINICAL_ENDINGS if e not in {"ia", "ine", "al", "ar", "ic"})
AT_BEDSIDE, ROMAN = ("at", "bedside"), frozenset(["I", "II", "III", "IV", "V", "VI", "VII"])
_NOT_SURNAMES = NEVER_NAMES | PARTICLES | EPONYM_NOUNS | AFTER_NAME
# A "*" on its own is a part of the patient's name the cleaner has already cut ("* Jo").
_LONE_STAR_BEFORE = re.compile(r"(?:^|[^\w*])\*[ \t]$")
_LONE_STAR_AFTER = re.compile(r"[ \t]\*(?![\w*])")


class Token:
    """One word with what the rules need to know about it."""

    __slots__ = (
        "cap", "cued", "end", "english", "folded", "listed", "name", "safe", "start", "text",
    )  # fmt: skip

    def __init__(self, start: int, text: str, facts: WordFacts) -> None:
        self.start, self.end, self.text = start, start + len(text), text
        self.folded, self.listed, self.safe, self.english = facts
        self.cap = text[:1].isupper() or caseless(text)  # caseless scripts too
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


def _gap(text: str, left: Token, right: Token) -> str:  # what lies between two words
    return text[left.end : right.start]


def _joined(text: str, left: Token, right: Token) -> bool:
    return JOINER.fullmatch(_gap(text, left, right)) is not None


def _cue_gap(text: str, left: Token, right: Token) -> bool:
    """Only punctuation between a cue and a name; a "*" is a name part already cut."""
    gap = _gap(text, left, right)
    return gap == " * " or (len(gap) <= 4 and all(c in " \t.:,;-–—'’" for c in gap))


def _is_title(token: Token) -> bool:
    """A title, capitalised or not ("dr smith", "пані Пріска"); lower-case "ms" is milliseconds."""
    folded = token.folded
    return folded in TITLES and (token.cap or folded in {"dr", "mrs", "mr"} or folded > "\u024f")


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
    named = after is not None and after.listed and len(after.text) > 3  # "MR BRAIN WO": no
    return not (named and _joined(text, following, after))  # type: ignore[arg-type]


def _apply_cues(text: str, tokens: list[Token], lowercase_text: bool, lexicon: Lexicon) -> None:
    count = len(tokens)
    for index, token in enumerate(tokens):
        if index + 1 >= count:
            break
        strong = _is_title(token) and not _modality_not_title(text, tokens, index)
        weak = (
            token.folded in CUES
            or (token.folded in ROLES_BEFORE and token.text.isupper())
            or (
                token.folded in CUE_LINKS
                and any(t.folded in CUE_VERBS for t in tokens[max(0, index - 3) : index])
            )  # "Addendum by jpatel": "by" before a user name needs no verb
            or (
                token.folded == "by"
                and neighbours.login_after_cue(text, tokens[index + 1], lexicon)
            )
        )
        if not (strong or weak) or not _cue_gap(text, token, tokens[index + 1]):
            continue
        nxt = index + 1
        while nxt < count and (  # "Dr. J. Smith", "Dr. med. Ott" (a degree is no name)
            _is_initial(text, tokens[nxt]) or (strong and neighbours.degree(text, tokens[nxt]))
        ):
            tokens[nxt].name, nxt = len(tokens[nxt].text) == 1, nxt + 1
        particles = []
        while nxt + 1 < count and _particle(tokens[nxt], strong):
            particles.append(tokens[nxt])  # "Dr. de la Cruz", "per ap Gruffydd"
            nxt += 1
        if nxt >= count:
            continue
        if particles and not (tokens[nxt].cap and _cue_gap(text, particles[-1], tokens[nxt])):
            nxt -= 1  # "Dr. Le present": the particle is the surname
            particles.pop()
        first = tokens[nxt]
        after = tokens[nxt + 1] if nxt + 1 < count else None  # "per Le.": the surname
        last = after is None or not (after.cap and _joined(text, tokens[nxt], after))
        if _is_title(first) or (
            first.folded in PARTICLES and not ((strong or last) and first.text[:1].isupper())
        ):
            continue
        if not _cue_gap(text, tokens[nxt - 1], first):
            continue
        if strong:  # "Dr. stergaard": a lower-case word no list knows as a word
            wanted = first.cap or lowercase_text or not first.safe
        else:  # "per protocol", "called back", "discussed with Radiology" stay
            clear = first.listed and not first.safe
            wanted = clear or (first.cap and (first.listed or not first.safe))
            wanted = wanted or neighbours.login_after_cue(text, first, lexicon, token.folded)
        if wanted:
            for particle in particles:
                particle.name = True
            first.name = first.cued = True
            _extend(text, tokens, nxt, +1, 2)


def _particle(token: Token, strong: bool) -> bool:  # after a weak cue only in lower case
    return token.folded in PARTICLES and (strong or token.text.islower())


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
    if candidate.text != candidate.text.title() and candidate.folded in CUE_LINKS | CUES:
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
            before_name = other is left and other.folded in CUES  # "Surgeon Makinwa"
            if (_may_join(named, other) and not before_name) or unknown_after:
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
            elif after.name and tokens[index - 1].name and middle.folded in PARTICLES:
                changed = changed or not middle.name  # "Ludwig van Beethoven"
                middle.name = True


def _unknown_name(
    token: Token, lexicon: Lexicon, endings: tuple[str, ...] = MEDICAL_SUFFIXES
) -> bool:
    """A capitalised word (cased scripts only) that is a name as far as the lists tell:
    listed and not safe, or unknown and not shaped like a clinical term or compound."""
    text, folded = token.text, token.folded
    if not text[:1].isupper() or token.safe or folded in NEVER_NAMES or len(text) < 2:
        return False
    if token.listed:
        return True
    if (text.isupper() and len(text) < 4) or max(accent_fold(folded)) > "\u024f":  # "İ"
        return False  # "DVT", "CTA": abbreviations; Greek or Cyrillic words are all unknown
    if folded.endswith(endings) or folded.startswith(CLINICAL_STARTS):
        return False
    return not any(  # "LSPINE", "Chestwall": safe words run together; not "Or|twin", "Her|via"
        (at > 2 or text.isupper()) and (max(at, len(folded) - at) > 4 or text.isupper())
        and (at == 1 or folded[:at] in lexicon.safe)
        and folded[at:] in lexicon.safe
        for at in range(1, len(folded) - 2)
    )


def _apply_context(text: str, tokens: list[Token], prose: bool, lexicon: Lexicon) -> None:
    """Names the lists do not know, told by their neighbours: "SURNAME Given", a word before
    "present" or "(wife)", beside a lone "*", or alone as a sentence in prose."""
    count, ends = len(tokens), {".", ";", "!", "?"}
    for index, token in enumerate(tokens):
        nxt = tokens[index + 1] if index + 1 < count else None
        after = text[token.end : nxt.start if nxt else len(text)]
        # A listed name that is also a word ("Lee") counts before "present" after a name.
        first = tokens[index - 1] if index else None
        listed_before = bool(  # after a name or a descriptor: "CTV Lee edit"
            first is not None
            and token.listed
            and token.text.istitle()
            and after == " "
            and nxt is not None
            and nxt.folded in AFTER_NAME
            and (first.text.isupper() or first.name or _unknown_name(first, lexicon))
        )
        if not (token.name or listed_before) and (token.safe or not token.text[:1].isupper()):
            continue
        before = text[tokens[index - 1].end if index else 0 : token.start]
        maybe = token.name or _unknown_name(token, lexicon) or listed_before
        if (  # "GOIKOETXEA Enguerrand", "POPESCU Ty": DICOM writes the family name first
            nxt is not None
            and after == " "
            and token.text.isupper()
            and nxt.text.istitle()
            and ((token.name and nxt.listed) or (maybe and _unknown_name(nxt, lexicon)))
        ):
            token.name = nxt.name = True
        if not maybe:
            continue
        if nxt is not None and after in {" ", ", "} and nxt.text.islower():
            third = tokens[index + 2].folded if index + 2 < count else None
            context = nxt.folded in AFTER_NAME or (nxt.folded, third) == AT_BEDSIDE
        else:
            context = after == " (" and nxt is not None and nxt.folded in CUES
        if context and (
            token.name or token.listed or _unknown_name(token, lexicon, CLINICAL_ENDINGS)
        ):
            token.name = token.cued = True  # "Zimmerer present", "Maria (wife)"
            _extend(text, tokens, index, -1, 2)
        elif _LONE_STAR_BEFORE.search(before) or _LONE_STAR_AFTER.match(after):
            token.name = True  # "* Jo", "TRELAWNEY * present"
        elif (
            prose
            and not token.text.isupper()
            and (index == 0 or before.rstrip()[-1:] in ends)
            and (after.lstrip()[:1] in ends or not after)
            and _unknown_name(token, lexicon, CLINICAL_ENDINGS)
            and not token.english
        ):
            token.name = True  # "Aortic diameter 3.4 cm. Pryderi."
        elif index == count - 1 and index and tokens[index - 1].text.islower():
            last = token.text.istitle() and len(token.text) >= 5 and not after.strip(" .")
            if last and _unknown_name(token, lexicon, CLINICAL_ENDINGS) and not token.english:
                token.name = True  # "nodule 8 mm Vanterpool": an unknown word ends a note


def _is_prose(tokens: list[Token]) -> bool:  # two lower-case words or more
    return sum(1 for t in tokens if len(t.text) > 2 and t.text.islower()) >= 2


def find_latin_names(text: str, lexicon: Lexicon, extra: frozenset[str],
                     site_safe: frozenset[str]) -> list[tuple[int, int]]:  # fmt: skip
    """(start, end) of every name word in alphabetic scripts with case (and Arabic)."""
    tokens = _tokens(text, lexicon, extra, site_safe)
    if not tokens:
        return []
    lowercase_text = not any(c.isupper() for c in text)
    for token in tokens:
        # Upper case and three letters or fewer ("LAO", "OPG"): an abbreviation, not a name.
        short_caps = len(token.text) <= 3 and token.text.isupper()
        bare = token.listed and not token.safe and len(token.text) >= 3 and not short_caps
        if bare and (token.cap or lowercase_text):
            token.name = True
    _apply_cues(text, tokens, lowercase_text, lexicon)
    _apply_post_nominals(text, tokens)
    prose = _is_prose(tokens)
    for left, right in itertools.pairwise(tokens) if prose and not foreign_prose(tokens) else ():
        if not (left.listed and left.text.istitle() and right.text.istitle()) or right.cued:
            continue  # a cued name's cue ("Surgeon Makinwa") is no given name
        if right.listed:  # "Hope Cushing": two listed words, one of them not common English
            pair = not (left.folded in lexicon.english and right.folded in lexicon.english)
        else:  # "Grace Featherstonehaugh" (in a Title Case descriptor a rare word is a term)
            pair = not right.safe and len(right.text) >= 4 and left.folded not in NEVER_NAMES
            pair = pair and not right.folded.endswith(MEDICAL_SUFFIXES)
        if pair and _joined(text, left, right):
            left.name = right.name = True
    _apply_context(text, tokens, prose, lexicon)
    neighbours.other_script_before(text, tokens, AFTER_NAME)
    clinical = lambda w: w.endswith(CLINICAL_ENDINGS) or w.startswith(CLINICAL_STARTS)  # noqa: E731
    unknown = lambda t: _unknown_name(t, lexicon, ALONE_ENDINGS)  # noqa: E731
    mark_names_alone(text, tokens, unknown, PARTICLES)
    neighbours.names_before_names(text, tokens, unknown, PARTICLES, clinical)
    neighbours.names_ending_note(text, tokens, unknown)
    neighbours.name_heading_prose(text, tokens, unknown)
    names_by_order_and_shape(text, tokens, unknown, _NOT_SURNAMES, clinical, PARTICLES)
    _spread(text, tokens)
    if neighbours.names_after_and(text, tokens, lambda t: _unknown_name(t, lexicon)):
        _spread(text, tokens)
    drop_eponyms(text, tokens, EPONYM_NOUNS, ROMAN)
    for token in tokens:
        if token.name and "^" in text[max(0, token.start - 1) : token.end + 1]:
            neighbours.mark_pn_group(text, tokens, token)
    return [(t.start, t.end) for t in tokens if t.name]
