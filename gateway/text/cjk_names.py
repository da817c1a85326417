"""Names written in Han or Hangul, where no space separates family and given name.

A run of 2-4 Han or Hangul characters that starts with one of the most common Chinese,
Japanese or Korean family names (data/cjk_family_names.txt) is a name unless it is a listed
clinical word (data/cjk_safe_words.txt); see rule 6 in names.py. After a relation or role
cue, Latin ("wife", "nurse", "contoured by") or CJK (妻, 护士, 아내, then a space or colon), a
run of 1-4 Han, kana or Hangul characters is a name whatever it starts with: given names alone
("wife 花子", "nurse 수빈") have no family name to find (rule 7 in names.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from gateway.text.lexicon import Lexicon
from gateway.text.names import CUE_LINKS, CUE_VERBS, CUES, ROLES_BEFORE, TITLES

# Han, kana and Hangul: the letters of a CJK name (a class body, for regular expressions).
CJK_LETTERS = "\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
CJK_CUES = ("妻子", "丈夫", "护士", "護士", "医生", "醫生", "先生", "女士", "息子", "간호사",
            "아내", "남편", "妻", "夫", "母", "父", "娘", "主治医师", "报告医师", "主治医",
            "担当医", "看護師", "医師", "医师", "技師", "技师", "患者", "病人", "氏名", "姓名",
            "주치의", "담당의", "의사", "환자", "성명", "이름")  # fmt: skip


def _alternatives(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


# A cue, then a name in Han, kana or Hangul (1-4 characters, and 1-3 more after a space).
_CUED = re.compile(
    rf"(?:(?<![^\W\d_])(?:{_alternatives(CUES | TITLES | ROLES_BEFORE)})\.?[ \t:：]{{0,3}}"
    rf"|(?<![^\W\d_])(?:{_alternatives(CUE_VERBS)})(?:[ \t]+[^\W\d_]+){{0,2}}[ \t]+"
    rf"(?:{_alternatives(CUE_LINKS)})[:：]?[ \t]{{1,2}}"
    rf"|(?<![^\W\d_])(?:{_alternatives(CUE_VERBS)})[ \t]*[:：][ \t]{{0,2}}"  # "Signed: 毕芳"
    rf"|(?<![{CJK_LETTERS}])(?P<label>{_alternatives(CJK_CUES)})(?:[ \t]{{1,2}}|[:：・][ \t]?))"
    rf"(?P<name>[{CJK_LETTERS}]{{1,4}})(?![{CJK_LETTERS}])"
    rf"(?:[ \t](?P<given>[{CJK_LETTERS}]{{1,3}})(?![{CJK_LETTERS}]))?",
    re.IGNORECASE,
)
_KANA = re.compile(r"[\u3040-\u30ff]+")
HAN = re.compile(r"[\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
HANGUL = re.compile(r"[\uac00-\ud7af]+")
CJK_HONORIFICS = ("先生", "医生", "医师", "醫師", "醫生", "医師", "様", "さん", "氏", "君", "主任",
                  "教授", "护士", "大夫", "선생님", "님", "씨", "환자", "교수")  # fmt: skip
CJK_PREFIXES = ("患者", "病人", "姓名", "氏名", "报告人", "报告医师", "医师", "医生", "担当",
                "主治医", "记录者", "审核", "記載者", "환자", "성명", "이름", "女儿", "儿子",
                "妻子", "丈夫", "母亲", "父亲", "家属", "女兒", "兒子", "母親", "父親",
                "家屬")  # fmt: skip
HANGUL_ENDINGS = ("선생님", "님", "씨", "이", "가", "은", "는", "을", "를", "의", "와", "과",
                  "에게", "께서", "환자")  # fmt: skip


# A given name written as an initial before the family name: "丹. 郝", "*. 최".
_INITIAL_BEFORE = re.compile(rf"(?:^|[^{CJK_LETTERS}])[{CJK_LETTERS}*][.．][ \t]?$")
_SPACED_HANGUL = re.compile(  # a one-syllable family name, a space, a two-syllable given name
    r"(?<![\uac00-\ud7af])([\uac00-\ud7af]) ([\uac00-\ud7af]{2})(?![\uac00-\ud7af])"
)
_PARTICLES = (*HANGUL_ENDINGS, "에", "에서", "으로", "로", "도", "만", "까지", "부터")
# Particles and verb endings no given name ends with: "개의", "하엽에", "보임", "없음".
_NOT_GIVEN_ENDINGS = ("의", "에", "를", "로", "과", "와", "는", "가", "도", "만", "음", "임", "함",
                      "됨", "짐")  # fmt: skip
_FAMILY_THEN_GIVEN = re.compile(
    r"[\u3400-\u9fff\uac00-\ud7af][,，、^][ ]?[\u3400-\u9fff\uac00-\ud7af]"
)
_COMMAS = frozenset(",，、^")  # "^": a PN value's components, copied into text ("郭^凤英")
_GIVEN_GAP = re.compile(r"\s|[,，、^]\s?")  # between a family name and the given name after it


def _cjk_name_length(run: str, lexicon: Lexicon) -> int:
    """How many characters of `run` a family name + given name takes (0 if not a name):
    a given name of up to 2 characters after the family name (佐々木美咲, 欧阳娜娜, 王伟)."""
    for size in (3, 2, 1):
        if run[:size] in lexicon.cjk_family:
            return min(len(run), size + 2)
    return 0


# Between the names of a list: "劳玉珍 and 平丽娟", "鄭明德; 簡淑玲", "王伟、李娜",
# "김민준 및 이서연".
# After a comma, which also parts clauses ("患者王伟，检查正常"), only a run that opens with a
# family name.
_LIST_NEXT = re.compile(
    rf"[ \t]*(?:(?P<comma>[,，])|[;；、&/]|(?i:and|or)(?![^\W\d_])|和|与|與|及|및|또는)[ \t]*"
    rf"([{CJK_LETTERS}]{{2,4}})(?![{CJK_LETTERS}])"
)


# A structure named after a patient in a structure set: "孙_GTV", "GTV_陈", "PTV_김민준".
_STRUCTURE = re.compile(
    rf"(?<![{CJK_LETTERS}_])([{CJK_LETTERS}]{{1,4}})(?=_[A-Z])"
    rf"|(?<=[A-Z]_)([{CJK_LETTERS}]{{1,4}})(?![{CJK_LETTERS}])"
)


# A name before the label of an identifier: "高秀梅 MRN 36011206", "김민준 (DOB 1980-01-02)".
_BEFORE_LABEL = re.compile(
    rf"(?<![{CJK_LETTERS}])([{CJK_LETTERS}]{{2,4}})[ \t]*[(,，]?[ \t]*"
    r"(?=(?:MRN|DOB|NHS|SSN|PID|ID|病历号|病歷號|住院号|住院號|患者ID|登録番号|등록번호)(?![A-Za-z]))"
)


# A relative's given name between "の" and an honorific: "娘の花子さんが同伴".
_RELATIVE_HONORED = re.compile(
    r"(?:娘|息子|妻|夫|母|父|兄|姉|弟|妹|家族|奥様|ご主人)の?"
    r"([\u3005\u4e00-\u9fff\u3040-\u30ff]{1,4}?)(?:さん|様|君|ちゃん|氏)"
)


# A name before the patient's sex: "患者易玉华，女，45岁", "张某某，男" (a label may be
# written against it).
_BEFORE_SEX = re.compile(
    r"([\u3005\u4e00-\u9fff]{2,7})[ \t]?[，,][ \t]?[男女](?=[，,、;；。\s(（]|性|\d|$)"
)


_PREFIXES_LONGEST_FIRST = sorted(CJK_PREFIXES, key=len, reverse=True)


def _before_sex(text: str, lexicon: Lexicon) -> Iterator[tuple[int, int]]:
    for found in _BEFORE_SEX.finditer(text):
        run, start = found.group(1), found.start(1)
        prefix = next((p for p in _PREFIXES_LONGEST_FIRST if run.startswith(p)), "")
        name = run[len(prefix) :]
        listed = name[:1] in lexicon.cjk_family or name[:2] in lexicon.cjk_family
        if 2 <= len(name) <= 3 and name not in lexicon.cjk_safe and (prefix or listed):
            yield start + len(prefix), found.end(1)


def find_cjk_names(text: str, lexicon: Lexicon) -> Iterator[tuple[int, int]]:
    """(start, end) of each CJK name, of the names listed after it, and of its reading in
    katakana after it."""
    spans = list(_find_names(text, lexicon))
    if "男" in text or "女" in text:
        spans.extend(_before_sex(text, lexicon))
    spans.extend(found.span(1) for found in _RELATIVE_HONORED.finditer(text))
    for found in _BEFORE_LABEL.finditer(text):  # "高秀梅 MRN 36011206"
        if found.group(1) not in lexicon.cjk_safe:
            spans.append(found.span(1))
    if "_" in text:
        for found in _STRUCTURE.finditer(text):
            group = 1 if found.group(1) else 2
            run = found.group(group)
            if run[:1] in lexicon.cjk_family and run not in lexicon.cjk_safe:
                spans.append(found.span(group))
    ends = sorted({end for _start, end in spans})
    while ends:  # a list may go on: "王伟、李娜、张敏"
        end = ends.pop(0)
        found = _LIST_NEXT.match(text, end)
        if found is None or found.group(2) in lexicon.cjk_safe:
            continue
        if found.group("comma") is None or _cjk_name_length(found.group(2), lexicon):
            spans.append(found.span(2))
            ends.append(found.end(2))
    yield from spans
    yield from _kana_reading(text, [end for _start, end in spans])


def _find_names(text: str, lexicon: Lexicon) -> Iterator[tuple[int, int]]:
    for match in _CUED.finditer(text):
        name, given = match.group("name", "given")
        family = bool(given) and name in lexicon.cjk_family  # "by 黄 志强", "by: 林 知実"
        # After a CJK label a word in kana after a space is the given name whatever the
        # family name is ("患者 ほしの あき"); Han or Hangul could be a clinical word.
        labelled = (
            bool(given)
            and bool(match.group("label"))
            and _KANA.fullmatch(given) is not None
            and given not in lexicon.cjk_safe
        )
        if name not in lexicon.cjk_safe or family:
            yield match.span("name")
            if family or labelled:
                yield match.span("given")
    for spaced_name in _SPACED_HANGUL.finditer(text):  # "윤 진우", "CT HEAD 최 수빈"
        given = spaced_name[2]
        family = spaced_name[1] in lexicon.cjk_family
        if family and given not in lexicon.cjk_safe and not given.endswith(_NOT_GIVEN_ENDINGS):
            yield spaced_name.span()  # not "두 개의", "안 보임"
    previous_end, family_only = -10, False
    family_ends: list[int] = []
    for pattern in (HAN, HANGUL):
        for match in pattern.finditer(text):
            run, start = match.group(), match.start()
            if pattern is HANGUL:
                if any(
                    run.endswith(e) and run[: -len(e)] in lexicon.cjk_safe for e in _PARTICLES
                ):
                    continue  # "소견은", "하엽에": a clinical word and its particle
                for ending in HANGUL_ENDINGS:
                    if (
                        run.endswith(ending)  # "김민준이"; "김지은" is a name of three
                        and 3 <= len(run) - len(ending) <= 4
                        and (run[: -len(ending)] not in lexicon.cjk_safe)
                        and _cjk_name_length(run[: -len(ending)], lexicon)
                    ):
                        run = run[: -len(ending)]
                        break
            if run in lexicon.cjk_safe and not _FAMILY_THEN_GIVEN.match(text, start):
                continue  # "林, 美鳳": a family name that is also a word, a given name after
            if len(run) == 4 and run[:2] in lexicon.cjk_safe and run[:2] not in CJK_PREFIXES:
                continue  # "简要病史", "颜色正常": two words, not a name of four
            size = _cjk_name_length(run, lexicon)
            after = text[start + len(run) : start + len(run) + 2]
            comma = after[:1] in _COMMAS
            spaced = after[:1].isspace() or (
                comma and (after[:1] == "^" or after[1:2] in {"", " "})
            )
            initial = len(run) == 1 and _INITIAL_BEFORE.search(text, 0, start) is not None
            spaced = spaced or initial  # "丹. 郝", "정. 최": a given name's initial before it
            alone = (
                len(run) == 1 and run in lexicon.cjk_family and (comma or pattern is HAN or initial)
            )
            if size and 2 <= len(run) <= max(4, size):
                previous_end = start + len(run)
                family_only = run in lexicon.cjk_family  # "山田", not "佐藤花子" or "李娜"
                yield start, previous_end
            elif alone and spaced:
                previous_end = start + 1  # "杨 丽娟", "김, 재현", "丹. 郝": a family name alone
                family_only = True
                yield start, previous_end
            elif (
                family_only
                and 1 <= len(given := _without_role(run)) <= 3
                and given not in lexicon.cjk_safe
                and 1 <= start - previous_end <= 2
                and _GIVEN_GAP.fullmatch(text, previous_end, start) is not None
                and (pattern is HAN or text[previous_end] in _COMMAS)  # "김, 재현", not "검사"
            ):
                yield start, start + len(given)  # "山田 太郎", "渡辺 直樹医師": the given name
            elif len(run) > 2:  # "患者王伟": a name after a label written against it
                inside = list(_names_inside(run, start, lexicon))
                yield from inside
                last = max(inside, default=(0, 0))
                if last[1] == start + len(run) and text[last[0] : last[1]] in lexicon.cjk_family:
                    previous_end, family_only = last[1], True  # "患者木村 陽一": one may follow
            if pattern is HAN and previous_end == start + len(run):
                family_ends.append(previous_end)
    yield from _kana_given(text, family_ends)


# Endings and honorifics that follow a name in kana and are not one.
_KANA_GRAMMAR = frozenset(("です", "ます", "でした", "ました", "ですか", "ません", "さん", "さま",
                           "くん", "ちゃん", "から", "まで", "より", "など", "ので", "には",
                           "では", "とは", "への", "との"))  # fmt: skip
_KANA_GIVEN = re.compile(r"(?:[,，、][ \t]?|[ \t])?([\u3040-\u30ff]{2,5})(?![\u3040-\u30ff])")


def _ends_and_cuts(text: str, ends: list[int]) -> set[int]:
    """Where a name ends: `ends`, and after each "*" (a name already cut)."""
    return {*ends, *(m.end() for m in re.finditer(r"\*", text))}


def _kana_given(text: str, family_ends: list[int]) -> Iterator[tuple[int, int]]:
    """A given name in kana right after a family name or a cut one: "伊藤 さくら", "*さくら"."""
    for end in _ends_and_cuts(text, family_ends):
        found = _KANA_GIVEN.match(text, end)
        if found is not None and found.group(1) not in _KANA_GRAMMAR:
            yield found.span(1)


# A name's reading in katakana, in brackets after it and its honorific:
# "山田太郎様（ヤマダ タロウ）".
_READING = re.compile(
    r"[ \t]*(?:様|さん|氏|君|殿|先生)?[ \t]*[（(]"
    r"([\u30a1-\u30ff]{2,8}(?:[ \t\u3000・][\u30a1-\u30ff]{2,8})?)[）)]"
)


def _kana_reading(text: str, name_ends: list[int]) -> Iterator[tuple[int, int]]:
    """The reading after a name or a cut one ("*"), names in katakana whatever they say."""
    for end in _ends_and_cuts(text, name_ends):
        found = _READING.match(text, end)
        if found is not None:
            yield found.span(1)


def _without_role(run: str) -> str:
    """A run without the role or honorific written against its end ("直樹医師" -> "直樹")."""
    for honorific in CJK_HONORIFICS:
        if run.endswith(honorific) and len(run) > len(honorific):
            return run[: -len(honorific)]
    return run


def _names_inside(run: str, offset: int, lexicon: Lexicon) -> Iterator[tuple[int, int]]:
    """Names inside a long run, marked by an honorific after or a role before them."""
    for honorific in CJK_HONORIFICS:
        at = run.find(honorific)
        while at > 1:
            for size in (5, 4, 3, 2):
                begin = at - size
                if begin >= 0 and _cjk_name_length(run[begin:at], lexicon) >= size:
                    yield offset + begin, offset + at
                    break
            at = run.find(honorific, at + 1)
    for prefix in CJK_PREFIXES:
        at = run.find(prefix)
        if at >= 0:
            begin = at + len(prefix)
            size = _cjk_name_length(run[begin : begin + 5], lexicon)
            if size >= 2:  # a given name beyond the first character only after 佐々木-like
                yield offset + begin, offset + begin + (size if size == 5 else min(size, 3))
