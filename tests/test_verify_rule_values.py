"""A value a rule of the profile computed is not a leak where that rule wrote it.

CTP's `@modifydate(this,*,1,1)` on a birth date already on 1 January gives the same date
back; the gate used to quarantine it as the birth date. Only the value the rule produced at
that exact element is spared: the same original elsewhere (another element, free text, a
private element) is still a leak, and so is a rule that copies rather than computes.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from test_verify_gate import NAME, PATIENT_ID, SECRET, _instance

from gateway.base.identifiers import Identifiers, collect_identifiers
from gateway.deid.ctp.profile import load_script
from gateway.deid.engine import DeidResult
from gateway.deid.profile_file import load_yaml_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, process_instance
from gateway.verify.leaks import find_leaks

ON_1_JANUARY = "19710101"
HEADER = (
    '<script>\n<e en="T" t="00100010">@empty()</e>\n<e en="T" t="00100020">@hash(this)</e>\n'
)
FOOTER = '<r en="T" t="unspecifiedelements"/>\n</script>\n'


def _ctp(tmp_path: Path, *elements: str):
    script = tmp_path / "dates.script"
    script.write_text(HEADER + "\n".join(elements) + "\n" + FOOTER, encoding="utf-8")
    return load_script(script).build_engine(Pseudonyms(SECRET, "VERIFY-SITE"))


def _run(ds: Dataset, engine) -> tuple[DeidResult, list[str]]:
    """What `process_instance` does: collect, de-identify, verify with the engine's report."""
    identifiers = collect_identifiers(ds, engine.profile.keeps)
    result = engine.deidentify(ds, identifiers)
    identifiers.add_uids(result.remapped_uids - result.kept_uids)
    return result, [str(leak) for leak in find_leaks(ds, identifiers, result.produced)]


def _born_on_1_january() -> Dataset:
    ds = _instance()
    ds.PatientBirthDate = ON_1_JANUARY
    return ds


MODIFYDATE = '<e en="T" t="00100030">@modifydate(this,*,1,1)</e>'


def test_birth_date_a_ctp_date_rule_gives_back_unchanged_is_not_a_leak(tmp_path: Path) -> None:
    ds = _born_on_1_january()
    result, leaks = _run(ds, _ctp(tmp_path, MODIFYDATE))
    assert ds.PatientBirthDate == ON_1_JANUARY
    assert result.produced["(0010,0030)"] == (ON_1_JANUARY,)
    assert leaks == []


def test_birth_date_a_ctp_date_rule_gives_back_unchanged_passes_process_instance(
    tmp_path: Path,
) -> None:
    outcome = process_instance(_born_on_1_january(), _ctp(tmp_path, MODIFYDATE))
    assert isinstance(outcome, Clean)


def test_the_same_birth_date_elsewhere_is_still_a_leak(tmp_path: Path) -> None:
    ds = _born_on_1_january()
    ds.ImageComments = f"born {ON_1_JANUARY}"
    ds.LastMenstrualDate = ON_1_JANUARY
    ds.private_block(0x0011, "SITE_NOTES", create=True).add_new(0x01, "LO", ON_1_JANUARY)
    engine = _ctp(
        tmp_path,
        MODIFYDATE,
        '<e en="T" t="00204000">@keep()</e>',
        '<e en="T" t="001021d0">@contents(PatientBirthDate)</e>',
        '<e en="T" t="0011[SITE_NOTES]01">@keep()</e>',
    )
    _result, leaks = _run(ds, engine)
    assert sorted(leaks) == [
        "identifying value found at (0010,21D0)",
        "identifying value found at (0011,1001)",
        "identifying value found at (0020,4000)",
    ]


def test_a_date_rule_that_changes_nothing_spares_nothing(tmp_path: Path) -> None:
    for rule in ("@modifydate(this,*,*,*)", "@incrementdate(this,0)", "@contents(this)",
                 "@if(this,exists){@modifydate(this,*,1,1)}{@keep()}"):  # fmt: skip
        ds = _born_on_1_january()
        result, leaks = _run(ds, _ctp(tmp_path, f'<e en="T" t="00100030">{rule}</e>'))
        assert ds.PatientBirthDate == ON_1_JANUARY, rule
        assert "(0010,0030)" not in result.produced, rule
        assert leaks == ["identifying value found at (0010,0030)"], rule


def test_a_date_rule_inside_processed_items_is_spared_at_its_own_path(tmp_path: Path) -> None:
    ds = _born_on_1_january()
    item = Dataset()
    item.PatientID = "BW-99999"
    item.PatientBirthDate = ON_1_JANUARY
    ds.OtherPatientIDsSequence = [item]
    engine = _ctp(tmp_path, MODIFYDATE, '<e en="T" t="00101002">@process()</e>')
    result, leaks = _run(ds, engine)
    assert set(result.produced) >= {"(0010,0030)", "(0010,1002)[0](0010,0030)"}
    assert leaks == []


def test_a_fixed_text_override_equal_to_a_name_is_spared_only_where_it_is_written(
    tmp_path: Path,
) -> None:
    family = NAME.split("^")[0]
    profile_file = tmp_path / "operator.yaml"
    profile_file.write_text(f'overrides:\n  OperatorsName: {{replace: "{family}"}}\n')
    engine = load_yaml_profile(profile_file).build_engine(Pseudonyms(SECRET, "VERIFY-SITE"))
    ds = _instance()
    ds.OperatorsName = "Someone^Else"
    result, leaks = _run(ds, engine)
    assert str(ds.OperatorsName) == family
    assert result.produced == {"(0008,1070)": (family,)}
    assert leaks == []
    ds = _instance()
    ds.OperatorsName = "Someone^Else"
    ds.add_new(0x00282000, "OB", f"for {family} ".encode())  # retained bytes with the name
    _result, leaks = _run(ds, engine)
    assert leaks == ["identifying value found at (0028,2000)"]


def test_the_gate_spares_only_the_whole_value_produced_at_that_path() -> None:
    ids = Identifiers()
    ids.add_value(ON_1_JANUARY, "DA")
    ids.add_value(PATIENT_ID, "LO")
    ds = Dataset()
    ds.PatientBirthDate = ON_1_JANUARY
    ds.ContentDate = ON_1_JANUARY
    ds.StudyDescription = f"{PATIENT_ID} {ON_1_JANUARY}"
    produced = {"(0010,0030)": (ON_1_JANUARY,), "(0008,1030)": (ON_1_JANUARY,)}
    assert sorted(str(leak) for leak in find_leaks(ds, ids, produced)) == [
        "identifying value found at (0008,0023)",
        "identifying value found at (0008,1030)",
    ]
    assert len(find_leaks(ds, ids)) == 3
