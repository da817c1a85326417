"""The PS3.15 Annex E tables, loaded from the CSV files shipped as package data.

The engine never hard-codes an action: every action comes from Table E.1-1 (and the
safe private list from Table E.3.10-1), so moving to a newer edition means replacing the
two CSV files and the edition strings below.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources

TABLE_E1_1_EDITION = "2024e"
TABLE_E3_10_1_EDITION = "2026d"

_E1_1_FILE = "ps3.15_table_e1-1.csv"
_E3_10_1_FILE = "ps3.15_table_e3.10-1.csv"


class Option(StrEnum):
    """The ten options of Table E.1-1, named as in a profile file.

    The value is the profile-file name; `code` and `meaning` are the CID 7050 concept used in
    DeidentificationMethodCodeSequence (PS3.16 CID 7050 "De-identification Method").
    """

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"

    @property
    def column(self) -> str:
        return _OPTION_COLUMNS[self]

    @property
    def code(self) -> str:
        return _OPTION_CODES[self][0]

    @property
    def meaning(self) -> str:
        return _OPTION_CODES[self][1]


_OPTION_COLUMNS = {
    Option.RETAIN_SAFE_PRIVATE: "rtn_safe_priv",
    Option.RETAIN_UIDS: "rtn_uids",
    Option.RETAIN_DEVICE_IDENTITY: "rtn_dev_id",
    Option.RETAIN_INSTITUTION_IDENTITY: "rtn_inst_id",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "rtn_pat_chars",
    Option.RETAIN_LONGITUDINAL_FULL_DATES: "rtn_long_full_dates",
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: "rtn_long_modif_dates",
    Option.CLEAN_DESCRIPTORS: "clean_desc",
    Option.CLEAN_STRUCTURED_CONTENT: "clean_struct_cont",
    Option.CLEAN_GRAPHICS: "clean_graph",
}

# PS3.16 CID 7050: (code value, code meaning), coding scheme DCM.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
_OPTION_CODES = {
    Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONGITUDINAL_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}

# Action codes as printed in Table E.1-1 (PS3.15 E.1.1 "Action Codes").
ACTION_CODES = frozenset({"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of Table E.1-1.

    `tag` is the 32-bit tag for a plain row; pattern rows (curves, overlays, private) have
    `tag=None` and a `pattern` string as printed in the table.
    """

    tag: int | None
    pattern: str | None
    name: str
    keyword: str
    retired: bool
    in_std_comp_iod: bool
    basic: str
    options: dict[Option, str]


PRIVATE_PATTERN = "(gggg,eeee) where gggg is odd"
CURVE_PATTERN = "50xx,xxxx"
OVERLAY_DATA_PATTERN = "60xx,3000"
OVERLAY_COMMENTS_PATTERN = "60xx,4000"


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("gateway.deid").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@cache
def table_e1_1() -> tuple[TableRow, ...]:
    """Every row of Table E.1-1, in the table's order."""
    rows: list[TableRow] = []
    for raw in _read_csv(_E1_1_FILE):
        tag_text = raw["tag"]
        is_pattern = "x" in tag_text or "(" in tag_text
        options = {opt: raw[opt.column] for opt in Option if raw[opt.column]}
        for code in (raw["basic_profile"], *options.values()):
            if code not in ACTION_CODES:
                raise ValueError(f"{_E1_1_FILE}: unknown action code {code!r} for {tag_text}")
        rows.append(
            TableRow(
                tag=None if is_pattern else int(tag_text.replace(",", ""), 16),
                pattern=tag_text if is_pattern else None,
                name=raw["name"],
                keyword=raw["keyword"],
                retired=raw["retired"] == "Y",
                in_std_comp_iod=raw["in_std_comp_iod"] == "Y",
                basic=raw["basic_profile"],
                options=options,
            )
        )
    return tuple(rows)


@cache
def safe_private_attributes() -> frozenset[tuple[str, int, int]]:
    """Table E.3.10-1 as (private creator, group, element low byte) keys.

    The element is the low byte of `xxEE`: the block (xx) is found at run time from the
    Private Creator element, per PS3.5 7.8.1.
    """
    return frozenset(
        (raw["private_creator"], int(raw["group"], 16), int(raw["element"], 16))
        for raw in _read_csv(_E3_10_1_FILE)
    )
