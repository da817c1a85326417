"""Addresses written in Chinese, Japanese or Korean, where no street word stands apart.

Each has a shape of its own that ends in numbers, which is what tells it from prose:
Japanese prefecture/city/ward then block numbers (東京都港区芝公園4-2-8, 3丁目5番地), Chinese
road or street then a number and 号 (北京市朝阳区建国路88号), Korean city/district then a
road (로, 길) and a number (서울특별시 강남구 테헤란로 152). The Latin address rules
(places.py) do not see these: there is no street word, no capital letter and no space.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_HAN = "\u3005\u4e00-\u9fff\u30f6"  # with 々 and ヶ (霞ヶ関)
_KANA = "\u3040-\u30ff"
_DIGITS = "0-9０-９"
_NUMERAL = f"[{_DIGITS}一二三四五六七八九十]+"
_DASH = "[-－‐ー−の]"

CJK_ADDRESSES = (
    # Japanese: [prefecture] city/ward/town ... block numbers
    re.compile(
        rf"(?:[{_HAN}]{{1,4}}[都道府県])?[{_HAN}{_KANA}]{{1,8}}?[市区町村郡][{_HAN}{_KANA}]{{0,10}}?"
        rf"{_NUMERAL}(?:丁目|番地?|号|{_DASH})(?:{_NUMERAL})?(?:(?:番地?|号|{_DASH}){_NUMERAL})*(?:号)?"
    ),
    # Chinese: ... road/street/lane then a number and 号 (a room or floor may follow)
    re.compile(
        rf"[{_HAN}]{{1,20}}?(?:路|街|道|巷|弄|里|胡同)(?:[{_DIGITS}]+(?:号|號)|[A-Za-z]座)"
        rf"(?:[{_DIGITS}]+(?:号楼|號樓|栋|棟|单元|室|楼|樓|层|層))*"
    ),
    # Korean: city/province/district words, then a road and its number
    re.compile(
        r"(?:[가-힣]+(?:특별시|광역시|특별자치시|도|시|군|구|읍|면|동)[ \t]*){1,4}"
        rf"[가-힣{_DIGITS}]+(?:로|길|가|거리)[ \t]*(?:지하[ \t]*)?[{_DIGITS}]+(?:-[{_DIGITS}]+)?"
        rf"(?:번길[ \t]*[{_DIGITS}]+)?(?:[ \t]*\([가-힣{_DIGITS}, ]{{1,20}}\))?"
    ),
)
_HINT = re.compile(r"[都道府県市区町村郡路街道巷弄里号號로길가座縣县省州镇鎮鄉乡시도]")
_CJK = "\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"

# A company by its legal form, which CJK writes before or after the name without a space:
# 山崎鉱業合同会社, 合同会社太田ガス, 华为技术有限公司, 유한회사 씨앤씨글로벌상사, 한빛 주식회사;
# a hospital by its name: 上海市第一人民医院, 서울아산병원.
CJK_COMPANIES = re.compile(
    rf"[{_CJK}A-Za-z0-9]*(?:株式会社|合同会社|有限会社|合資会社|合名会社|股份有限公司|有限公司"
    rf"|有限责任公司|有限責任公司)[{_CJK}A-Za-z0-9]*"
    r"|(?:주식회사|유한회사|합자회사|㈜|\((?:주|유)\))[ \t]*[가-힣A-Za-z0-9]+"
    r"|[가-힣]+[ \t]*(?:주식회사|유한회사|㈜|\(주\))"
    # a hospital or clinic by its name, up to 8 characters before the word (not "本医院")
    rf"|[{_CJK}]{{2,8}}(?:医院|醫院|病院|병원|의원|クリニック|診療所|诊所|診所|卫生院|衛生院)"
)
_COMPANY_HINT = re.compile(r"会社|公司|회사|㈜|\([주유]\)|院|병원|의원|クリニック|診療所|诊所|診所")

# A place named with its kind, the whole run: 东莞市, 英县, 鳳山縣, 世田谷区, 서울특별시. Not the
# words that end so ("城市" city, "地区" region) nor an RT target (靶区).
_PLACE_NAME = re.compile(
    rf"(?<![{_CJK}])(?:[\u3005\u4e00-\u9fff]{{1,7}}[市县縣省州镇鎮鄉乡郡県区區町村]"
    rf"|[가-힣]{{1,6}}(?:특별시|광역시|특별자치시|특별자치도))(?![{_CJK}])"
)
_NOT_PLACES = frozenset(
    str.split(
        "城市 都市 上市 全市 本市 各市 门市 市区 市區 地区 地區 山区 山區 城区 城區 郊区 郊區 "
        "社区 社區 病区 病區 分区 分區 小区 小區 灾区 禁区 时区 時區 区 區 市 县 縣 省 州 反省 "
        "本省 外省 全省 各省 本县 全县 外县 各县 全州 乡镇 城镇 城鎮 集镇 村 農村 农村 町 全区 "
        "本区 区域 區域 领区 術野区"
    )
)
# After a verb of coming from or living at (organisations.AT_PLACE in Latin text), a run in
# CJK or any other script that is not Latin is where: "Transported from 英县 by ambulance",
# "lives in 梅山", "study from فراورده هاي غذايي و قند تربت جام" (words of up to 8).
_FOREIGN_WORD = r"(?:(?![A-Za-z\u00c0-\u024f])[^\W\d_])[^\s\d,;()]{0,19}"
_AT_PLACE = re.compile(
    r"(?i:\b(?:performed|done|scanned|imaged|obtained|transferred|treated|referred|seen"
    r"|admitted|transported|brought|arrived|came|comes|travell?ed|flown|airlifted|moved"
    r"|relocated|discharged|returned|lives|living|lived|resides|residing|resident|born"
    r"|visiting|works|working|worked|employed|study|studies|images|report|records|films|scans?)"
    r"[ \t]+(?:back[ \t]+)?(?:at|from|to|in|of)[ \t]+)"
    rf"({_FOREIGN_WORD}(?:[ \t]{_FOREIGN_WORD}){{0,7}})(?![^\W\d_])"
)


def find_cjk_addresses(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, kind) for each CJK address, place or company in `text`."""
    if _COMPANY_HINT.search(text) is not None:
        for match in CJK_COMPANIES.finditer(text):
            yield match.start(), match.end(), "organisation"
    for match in _AT_PLACE.finditer(text):
        yield match.start(1), match.end(1), "address"
    if _HINT.search(text) is None:
        return
    for match in _PLACE_NAME.finditer(text):
        if match.group() not in _NOT_PLACES and "靶" not in match.group():
            yield match.start(), match.end(), "address"
    for pattern in CJK_ADDRESSES:
        for match in pattern.finditer(text):
            yield match.start(), match.end(), "address"
