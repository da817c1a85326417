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
        rf"{_NUMERAL}(?:丁目|番地?|号|{_DASH}){_NUMERAL}?(?:(?:番地?|号|{_DASH}){_NUMERAL})*(?:号)?"
    ),
    # Chinese: ... road/street/lane then a number and 号 (a room or floor may follow)
    re.compile(
        rf"[{_HAN}]{{1,20}}?(?:路|街|道|巷|弄|里|胡同)[{_DIGITS}]+(?:号|號)"
        rf"(?:[{_DIGITS}]+(?:号楼|號樓|栋|棟|单元|室|楼|樓|层|層))*"
    ),
    # Korean: city/province/district words, then a road and its number
    re.compile(
        r"(?:[가-힣]+(?:특별시|광역시|특별자치시|도|시|군|구|읍|면|동)[ \t]*){1,4}"
        rf"[가-힣{_DIGITS}]+(?:로|길)[ \t]*[{_DIGITS}]+(?:-[{_DIGITS}]+)?"
        rf"(?:번길[ \t]*[{_DIGITS}]+)?"
    ),
)
_HINT = re.compile(r"[都道府県市区町村郡路街道巷弄里号號로길]")


def find_cjk_addresses(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, "address") for each CJK address in `text`."""
    if _HINT.search(text) is None:
        return
    for pattern in CJK_ADDRESSES:
        for match in pattern.finditer(text):
            yield match.start(), match.end(), "address"
