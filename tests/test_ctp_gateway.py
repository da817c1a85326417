"""A CTP script on the gateway path: `dicom-gateway anonymize` with `deid.profile: X.script`
writes what the real CTP wrote, leaks nothing planted, and the verify gate still holds an
instance whose script keeps an identifier (the reviewer's report of the shipped script is
checked in test_review_shipped_profiles.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import plant_identifiers
from pydicom import dcmread
from test_ctp_real import CONF, INPUTS, REAL, SHARED, flatten, planted_input, write_bytes
from test_offline_cli import make_site, run_gateway

from gateway.deid.ctp import arithmetic as fx
from gateway.deid.ctp.profile import load_script
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, Quarantine, process_instance

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/testdata not present")
FEDERATION = CONF / "research-federation.script"
# MR_small_implicit is MR_small in another transfer syntax: the same instance, one output.
CLI_INPUTS = tuple(name for name in INPUTS if name != "MR_small_implicit.dcm")


def test_anonymize_with_a_ctp_script_writes_what_real_ctp_wrote(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    site.config.write_text(
        site.config.read_text(encoding="utf-8") + f"deid:\n  profile: {FEDERATION}\n",
        encoding="utf-8",
    )
    source = tmp_path / "in"
    source.mkdir()
    for name in CLI_INPUTS:
        (source / name).write_bytes(write_bytes(planted_input(name)))
    needles = plant_identifiers(dcmread(SHARED / CLI_INPUTS[0], force=True)).needles()
    output = tmp_path / "out"
    result = run_gateway("anonymize", source, output, "-c", site.config, "--workers", 1,
                         cwd=site.root)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    written = {str(dcmread(p, force=True).SOPInstanceUID): p for p in output.rglob("*.dcm")}
    assert len(written) == len(CLI_INPUTS)
    for name in CLI_INPUTS:
        expected_ds = dcmread(REAL / "research-federation" / name, force=True)
        got_ds = dcmread(written[str(expected_ds.SOPInstanceUID)], force=True)
        expected = {p: v for p, _vr, v in flatten(expected_ds)}
        got = {p: v for p, _vr, v in flatten(got_ds)}
        assert got == expected, name
    for path in output.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1").lower()
            assert not [n for n in needles if n in text], path.name


def test_a_script_that_keeps_the_patients_name_is_quarantined(tmp_path: Path) -> None:
    script = tmp_path / "keeps-name.script"
    script.write_text(
        FEDERATION.read_text(encoding="utf-8").replace(
            "@hashptid(@SITEID,PatientID,@PTIDLEN)</e>\n <e en=\"T\" t=\"00100020\"",
            "@keep()</e>\n <e en=\"T\" t=\"00100020\"",
        ),
        encoding="utf-8",
    )
    profile = load_script(script)
    assert profile.effective_action(0x00100010) == "K"
    engine = profile.build_engine(Pseudonyms(b"k" * 32, "site"))
    held = process_instance(planted_input("CT_small.dcm"), engine)
    assert isinstance(held, Quarantine) and held.reason == "identifier-found"
    assert "Zyxwick" not in held.message
    passed = process_instance(planted_input("CT_small.dcm"),
                              load_script(FEDERATION).build_engine(Pseudonyms(b"k" * 32, "s")))
    assert isinstance(passed, Clean)


def test_a_script_that_uppercases_free_text_with_a_name_is_quarantined(tmp_path: Path) -> None:
    script = tmp_path / "upper.script"
    script.write_text(
        '<script><e en="T" t="00100010">@empty()</e><e en="T" t="00100020">@hash(this)</e>'
        '<e en="T" t="00204000">@uppercase(this)</e><r en="T" t="unspecifiedelements"/>'
        "</script>",
        encoding="utf-8",
    )
    engine = load_script(script).build_engine(Pseudonyms(b"k" * 32, "site"))
    held = process_instance(planted_input("MR_small.dcm"), engine)
    assert isinstance(held, Quarantine) and held.reason == "identifier-found"


def test_clinical_csv_gets_the_pseudonyms_and_dates_of_the_script(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    site.config.write_text(
        site.config.read_text(encoding="utf-8") + f"deid:\n  profile: {FEDERATION}\n",
        encoding="utf-8",
    )
    table = tmp_path / "clinical.csv"
    table.write_text(
        "subject,name,phone,visit_date,score\n"
        "ZQ-998877-X,Zyxwick Quorbelle,555-0101,2004-01-19,7\n"
        "PAT-0002,Vexmoor Alaric,555-0102,2010-06-30,3\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.csv"
    result = run_gateway("csv", table, out, "-c", site.config, cwd=site.root)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split(",") for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["subject", "visit_date", "score"]
    image = dcmread(REAL / "research-federation" / "CT_small.dcm", force=True)
    assert rows[1][0] == image.PatientID == fx.hash_ptid("SITE042", "ZQ-998877-X", 12)
    shifted = fx.increment_date("20040119", fx.hashdate_increment("ZQ-998877-X"))
    assert rows[1][1] == f"{shifted[:4]}-{shifted[4:6]}-{shifted[6:]}"
    assert rows[2][0] == fx.hash_ptid("SITE042", "PAT-0002", 12)
    assert "Zyxwick" not in out.read_text(encoding="utf-8")


def test_the_lookup_table_of_the_configuration_reaches_the_script(tmp_path: Path) -> None:
    script = tmp_path / "lookup.script"
    script.write_text(
        FEDERATION.read_text(encoding="utf-8").replace(
            '<e en="T" t="00100020" n="PatientID">@hashptid(@SITEID,PatientID,@PTIDLEN)</e>',
            '<e en="T" t="00100020" n="PatientID">@lookup(this,ptid)</e>',
        ),
        encoding="utf-8",
    )
    table = tmp_path / "subjects.properties"
    table.write_text("ptid/ZQ-998877-X=FED-SUBJ-0001\n", encoding="utf-8")
    site = make_site(tmp_path / "site")
    site.config.write_text(
        site.config.read_text(encoding="utf-8")
        + f"deid:\n  profile: {script}\n  lookup_table: {table}\n",
        encoding="utf-8",
    )
    source = tmp_path / "in"
    source.mkdir()
    (source / "CT_small.dcm").write_bytes(write_bytes(planted_input("CT_small.dcm")))
    output = tmp_path / "out"
    result = run_gateway("anonymize", source, output, "-c", site.config, "--workers", 1,
                         cwd=site.root)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [written] = list(output.rglob("*.dcm"))
    assert dcmread(written).PatientID == "FED-SUBJ-0001"


def test_the_federation_script_makes_every_shared_sample_safe_or_holds_it() -> None:
    """No sample makes the script fail (deid-failed); every released one is free of the
    planted identifiers; only unreadable inputs are held."""
    engine = load_script(FEDERATION).build_engine(Pseudonyms(b"k" * 32, "site"))
    released = 0
    for path in sorted(SHARED.glob("*.dcm")):
        try:
            ds = dcmread(path, force=True)
            planted = plant_identifiers(ds)
        except Exception:
            continue
        outcome = process_instance(ds, engine)
        if isinstance(outcome, Quarantine):
            assert outcome.stage == "read", (path.name, outcome)
            continue
        released += 1
        text = write_bytes(outcome.dataset).decode("latin-1").lower()
        assert not [n for n in planted.needles() if n in text], path.name
    assert released >= 35
