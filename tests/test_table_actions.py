"""Every row of PS3.15 Table E.1-1, under the Basic Profile and under each option.

The expectations come from the table itself (read here independently of the engine's own
loader), so a row the engine mishandles fails by its tag, and a newer table edition is
tested without editing this file.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from gateway.base.identifiers import collect_identifiers
from gateway.deid.actions import DUMMY_TEXT, shift_da, shift_dt
from gateway.deid.engine import Engine
from gateway.deid.iod_types import choose_action, required_type
from gateway.deid.profile import PSEUDONYM, compile_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.standard import Option

SECRET = bytes(range(32))
SHARED_TABLE = Path(__file__).resolve().parents[2] / "shared/standard/ps3.15_table_e1-1.csv"
PACKAGED_TABLE = Path(__file__).resolve().parents[1] / "gateway/deid/data/ps3.15_table_e1-1.csv"
TABLE = SHARED_TABLE if SHARED_TABLE.exists() else PACKAGED_TABLE

OPTION_COLUMNS = {
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

PATIENT_NAME = "Quillfeather^Odalys"
PATIENT_ID = "QF-4711-Z"
# A text value carrying the patient's surname and a date, so C (clean) has work to do.
TEXT_WITH_PHI = "Scan of Quillfeather on 2020-01-31"
SAMPLE_BY_VR: dict[str, object] = {
    "AE": "ROWAE",
    "AS": "045Y",
    "CS": "ROWVALUE",
    "DA": "20200131",
    "DS": "12.5",
    "DT": "20200131123000.5+0100",
    "IS": "42",
    "LO": TEXT_WITH_PHI,
    "LT": TEXT_WITH_PHI,
    "PN": "Rowvaluer^Physician",
    "SH": "ROW-VALUE-7",
    "ST": TEXT_WITH_PHI,
    "TM": "123000",
    "UC": TEXT_WITH_PHI,
    "UI": "1.2.826.0.1.3680043.2.1125.987654321",
    "UR": "http://example.org/row",
    "UT": TEXT_WITH_PHI,
    "US": 7,
    "SS": -7,
    "UL": 7,
    "SL": -7,
    "FL": 1.5,
    "FD": 1.5,
    "OB": b"\x01\x02",
    "OW": b"\x01\x02",
    "UN": b"\x01\x02",
}


def _read_table() -> list[dict[str, str]]:
    with TABLE.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


ROWS = _read_table()
PLAIN_ROWS = [r for r in ROWS if "x" not in r["tag"] and "(" not in r["tag"]]


def _tag(row: dict[str, str]) -> int:
    return int(row["tag"].replace(",", ""), 16)


def _row_id(row: dict[str, str]) -> str:
    return f"{row['tag'].replace(',', '')}-{row['keyword']}"


def _instance() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.1.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.1.3"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    return ds


def _sample(tag: int) -> tuple[str, object]:
    vr = dictionary_VR(tag).split(" or ")[0]
    if vr == "SQ":
        item = Dataset()
        item.CodeValue = "T-1234"
        item.CodingSchemeDesignator = "SRT"
        item.CodeMeaning = "Row sample"
        item.TextValue = TEXT_WITH_PHI
        return vr, Sequence([item])
    if vr in ("OB or OW", "US or SS"):
        vr = vr.split(" ")[0]
    return vr, SAMPLE_BY_VR[vr]


def _run(tag: int, options: tuple[Option, ...]) -> tuple[Dataset, object, Engine, str]:
    ds = _instance()
    vr, value = _sample(tag)
    if tag >> 16 == 0x0002:
        ds.file_meta.add_new(tag, vr, value)
    else:
        ds.add_new(tag, vr, value)
    engine = Engine(compile_profile(options), Pseudonyms(SECRET, "TEST-SITE"))
    engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
    return ds, value, engine, vr


def _is_empty(value: object) -> bool:
    return (
        value is None
        or value == ""
        or value == b""
        or (isinstance(value, Sequence | list) and len(value) == 0)
    )


def _assert_outcome(ds: Dataset, tag: int, vr: str, original: object, code: str, engine: Engine):
    """The element's fate matches one action code of PS3.15 E.1.1."""
    name = keyword_for_tag(tag)
    if tag >> 16 in (0x0000, 0x0002):
        # Command elements never belong in a stored instance; the file meta is rebuilt.
        assert tag not in ds, name
        assert tag not in ds.file_meta or tag == 0x00020003, name
        if tag == 0x00020003:
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        return
    present = tag in ds
    value = ds[tag].value if present else None
    if code == "X":
        assert not present, f"{name}: X must remove"
    elif code == "Z":
        assert present and _is_empty(value), f"{name}: Z must leave an empty value"
    elif code == "K":
        assert present, f"{name}: K must keep"
        if vr == "SQ":
            assert len(value) == len(original)
        else:
            assert value == original, f"{name}: K must keep the value"
    elif code == "D":
        assert present and not _is_empty(value), f"{name}: D must leave a non-empty value"
        if vr == "SQ":
            assert len(value) == len(original)
            if tag == 0x00401101:  # Person Identification Code Sequence: the code is an ID
                assert value[0].CodeValue != "T-1234"
                assert value[0].TextValue == DUMMY_TEXT
            else:
                # A dummied sequence keeps its coded structure; its free text is cleaned
                # span by span (the recognizer) or replaced (without it).
                assert value[0].CodeValue == "T-1234"
                text = value[0].TextValue
                assert text == DUMMY_TEXT or (
                    text.startswith("Scan of") and "quillfeather" not in text.lower()
                    and "2020-01-31" not in text
                ), name
        elif vr == "UI":
            assert str(value).startswith("2.25.") and value != original
        else:
            assert value != original, name
    elif code == "U":
        assert present, f"{name}: U must keep a value"
        if vr == "UI":
            assert str(value).startswith("2.25.") and value != original, name
            assert engine.pseudonyms.uid(str(original)) == value
        elif vr == "SQ":
            assert len(value) == len(original)
    elif code == "C":
        _assert_cleaned(ds, tag, vr, original, value, present, engine)
    elif code == PSEUDONYM:
        assert str(value).startswith(engine.pseudonyms.site_tag + "-"), name
    else:
        raise AssertionError(f"unexpected action {code}")


def _assert_cleaned(ds, tag, vr, original, value, present, engine: Engine) -> None:
    name = keyword_for_tag(tag)
    shifts = engine.profile.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES)
    days = engine.pseudonyms.date_shift_days(f"id\x00\x00{PATIENT_ID}") if shifts else None
    if vr == "DA":
        assert value == (shift_da(original, days) if days else None), name
        if days:
            assert date(2020, 1, 31) - timedelta(days=days) == date(
                int(value[:4]), int(value[4:6]), int(value[6:])
            )
    elif vr == "DT":
        assert value == (shift_dt(original, days) if days else None), name
        assert value.endswith("123000.5+0100")
    elif vr == "TM":
        assert value == original, name
    elif vr == "AE":
        assert value.startswith("AE") and value != original and len(value) <= 16, name
    elif vr in ("LO", "LT", "ST", "UT", "UC"):
        assert "quillfeather" not in value.lower(), f"{name}: C must remove the surname"
        assert "2020-01-31" not in value, f"{name}: C must move or remove the date"
        assert value.startswith("Scan of"), f"{name}: C keeps the rest of the text"
    elif vr in ("SH", "CS", "DS", "US", "IS"):
        assert present and value == original, name
    elif vr == "SQ":
        assert present and len(value) == 1
        assert "quillfeather" not in value[0].TextValue.lower(), name
        assert value[0].CodeMeaning == "Row sample"
    elif vr in ("OB", "OW", "UN"):
        assert not present, f"{name}: binary values cannot be cleaned, so C removes them"
    else:
        raise AssertionError(f"{name}: no C expectation for VR {vr}")


def _expected(code: str, tag: int, ds: Dataset) -> str:
    if tag in (0x00100010, 0x00100020):
        return PSEUDONYM
    if "/" in code:
        return choose_action(code, required_type(tag, None, ds))
    return code


@pytest.mark.parametrize("row", PLAIN_ROWS, ids=_row_id)
def test_basic_profile_applies_the_table_action(row: dict[str, str]) -> None:
    tag = _tag(row)
    ds, original, engine, vr = _run(tag, ())
    _assert_outcome(ds, tag, vr, original, _expected(row["basic_profile"], tag, ds), engine)


OPTION_CASES = [
    pytest.param(option, row, id=f"{option.value}-{_row_id(row)}")
    for option, column in OPTION_COLUMNS.items()
    for row in PLAIN_ROWS
    if row[column]
]


@pytest.mark.parametrize(("option", "row"), OPTION_CASES)
def test_each_option_applies_its_column(option: Option, row: dict[str, str]) -> None:
    tag = _tag(row)
    ds, original, engine, vr = _run(tag, (option,))
    code = row[OPTION_COLUMNS[option]]
    _assert_outcome(ds, tag, vr, original, _expected(code, tag, ds), engine)


def test_every_row_is_tested_and_the_packaged_table_is_the_shared_one() -> None:
    assert len(ROWS) == 621
    assert len(PLAIN_ROWS) == 617
    if SHARED_TABLE.exists():
        assert SHARED_TABLE.read_bytes() == PACKAGED_TABLE.read_bytes()


def _with_overlay_and_curve() -> Dataset:
    ds = _instance()
    ds.add_new(0x60000010, "US", 4)  # Overlay Rows
    ds.add_new(0x60000011, "US", 4)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\xff\x00")
    ds.add_new(0x60004000, "LT", "overlay note")
    ds.add_new(0x50000005, "US", 1)  # Curve Dimensions
    ds.add_new(0x50003000, "OW", b"\x01\x00")
    return ds


@pytest.mark.parametrize("group_row", ["50xx,xxxx", "60xx,3000", "60xx,4000"])
def test_curve_and_overlay_rows_remove_the_data_under_basic(group_row: str) -> None:
    row = next(r for r in ROWS if r["tag"] == group_row)
    assert row["basic_profile"] == "X"
    ds = _with_overlay_and_curve()
    engine = Engine(compile_profile(()), Pseudonyms(SECRET, "TEST-SITE"))
    engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
    assert not [t for t in ds.keys() if 0x5000 <= t.group <= 0x60FF]  # noqa: SIM118


def test_private_row_removes_every_private_attribute_under_basic() -> None:
    row = next(r for r in ROWS if r["tag"].startswith("(gggg"))
    assert row["basic_profile"] == "X" and row["rtn_safe_priv"] == "C"
    ds = _instance()
    ds.private_block(0x0009, "GEMS_ACQU_01", create=True).add_new(0x04, "LO", PATIENT_NAME)
    ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(0x00, "DS", "1.5")
    engine = Engine(compile_profile(()), Pseudonyms(SECRET, "TEST-SITE"))
    engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
    assert not [t for t in ds.keys() if t.group & 1]  # noqa: SIM118


def test_retain_safe_private_keeps_only_table_e3_10_1_attributes_with_their_creator() -> None:
    ds = _instance()
    # Philips PET Private Group (7053,xx00) SUV Factor is in Table E.3.10-1; (7053,xx01) is not.
    block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
    block.add_new(0x00, "DS", "1.5")
    block.add_new(0x01, "LO", PATIENT_NAME)
    ds.private_block(0x0011, "ACME_UNSAFE", create=True).add_new(0x01, "LO", PATIENT_NAME)
    engine = Engine(compile_profile((Option.RETAIN_SAFE_PRIVATE,)), Pseudonyms(SECRET, "T"))
    engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
    private = {int(t) for t in ds.keys() if t.group & 1}  # noqa: SIM118
    creator_tag = 0x70530000 | (block.block_start >> 8)
    assert private == {block.get_tag(0x00), creator_tag}
    assert ds[block.get_tag(0x00)].value == "1.5"
    assert ds[creator_tag].value == "Philips PET Private Group"


def test_retain_safe_private_text_loses_what_the_recognizer_finds() -> None:
    """A safe attribute by the table is safe for what it is meant to hold; a modality may
    still write someone into it, so its text is scrubbed as retained text is."""
    ds = _instance()
    block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    block.add_new(0x9E, "LO", "FSE per Dr. Meinrad Killer 463.311.2006x662")
    engine = Engine(compile_profile((Option.RETAIN_SAFE_PRIVATE,)), Pseudonyms(SECRET, "T"))
    engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
    kept = str(ds[block.get_tag(0x9E)].value)
    assert kept.startswith("FSE")
    for word in ("Meinrad", "Killer", "463", "2006"):
        assert word not in kept, kept


def test_retain_safe_private_and_clean_graphics_keep_nothing_unsafe() -> None:
    """Clean Graphics cannot clean overlay bitmaps without the pixel stage: they go."""
    ds = _with_overlay_and_curve()
    engine = Engine(compile_profile((Option.CLEAN_GRAPHICS,)), Pseudonyms(SECRET, "T"))
    engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
    assert not [t for t in ds.keys() if 0x5000 <= t.group <= 0x60FF]  # noqa: SIM118
