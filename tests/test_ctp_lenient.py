"""Scripts written for CTP's lenient parser: refused by default, read with `ctp_lenient`.

The EUCAIM pipeline's own script (sgsfak/eucaim_anon_pipeline, ctp/anon.script) has
`@setSubstring(0,6)+"01"` on Instance Creation Date (no such CTP function) and
`hashuid(@UIDROOT,this,PatientID)` without its `@` on Manufacturer's Device Class UID. CTP
writes both as literal text into the element. The gateway refuses such a script unless the
configuration opts in; then each such element is removed, with a warning naming the file,
the line and the element, and never written as text or kept.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from test_verify_gate import SECRET, _instance

from gateway.base.identifiers import collect_identifiers
from gateway.cli.main import main
from gateway.deid.ctp.profile import load_script
from gateway.deid.profile import ProfileError
from gateway.deid.profile_loading import load_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.review import review
from gateway.keys.site_secret import create_site_secret
from gateway.pipeline.instance import Clean, process_instance

# Lines 5 and 6 hold the two constructs of the EUCAIM script.
LENIENT_SCRIPT = """<script>
 <p t="UIDROOT">1.2.826.0.1.3680043.10.1</p>
 <p t="ACKNOWLEDGE">PatientID, PaletteColorLookupTableUID,
   LargePaletteColorLookupTableUID, ImagePresentationComments</p>
 <e en="T" t="00080012" n="InstanceCreationDate">@setSubstring(0,6)+"01"</e>
 <e en="T" t="0018100b" n="ManufacturerDeviceClassUID">hashuid(@UIDROOT,this,PatientID)</e>
 <e en="T" t="00100010" n="PatientName">@empty()</e>
 <e en="T" t="00100020" n="PatientID">@hash(this)</e>
 <e en="T" t="00100030" n="PatientBirthDate">@empty()</e>
 <e en="T" t="00080018" n="SOPInstanceUID">@hashuid(@UIDROOT,this)</e>
 <e en="T" t="0020000d" n="StudyInstanceUID">@hashuid(@UIDROOT,this)</e>
 <e en="T" t="0020000e" n="SeriesInstanceUID">@hashuid(@UIDROOT,this)</e>
 <e en="T" t="00080060" n="Modality">@keep()</e>
 <r en="T" t="unspecifiedelements"/>
 <r en="T" t="privategroups"/>
 <r en="T" t="overlays"/>
 <r en="T" t="curves"/>
</script>
"""
CREATION_DATE, DEVICE_CLASS_UID = 0x00080012, 0x0018100B


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "anon.script"
    path.write_text(LENIENT_SCRIPT, encoding="utf-8")
    return path


def _input() -> Dataset:
    ds = _instance()
    ds.Modality = "MR"
    ds.InstanceCreationDate = "20240315"
    ds.ManufacturerDeviceClassUID = "1.2.826.0.1.3680043.2.1125.7.9"
    return ds


def test_both_constructs_are_refused_by_default_naming_file_line_and_element(
    script: Path,
) -> None:
    with pytest.raises(ProfileError) as refused:
        load_script(script)
    problems = refused.value.problems
    assert problems == [
        f"{script}:5: InstanceCreationDate: unknown function @setSubstring()",
        f"{script}:6: ManufacturerDeviceClassUID: hashuid(...) is a call without its '@' "
        "(CTP writes it as text; write @hashuid(...), or \\( for a literal parenthesis)",
    ]
    with pytest.raises(ProfileError):
        load_profile(script)


def test_lenient_reading_removes_both_elements_with_a_warning(
    script: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.deid.ctp"):
        profile = load_profile(script, None, ctp_lenient=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{script}:5: InstanceCreationDate: unknown function @setSubstring(); "
        "read leniently, the element is removed",
        f"{script}:6: ManufacturerDeviceClassUID: hashuid(...) is a call without its '@' "
        "(CTP writes it as text; write @hashuid(...), or \\( for a literal parenthesis); "
        "read leniently, the element is removed",
    ]
    assert profile.effective_action(CREATION_DATE) == "X"
    assert profile.effective_action(DEVICE_CLASS_UID) == "X"
    assert review(profile).ok
    engine = profile.build_engine(Pseudonyms(SECRET, "LENIENT-SITE"))
    outcome = process_instance(_input(), engine)
    assert isinstance(outcome, Clean)
    out = outcome.dataset
    assert CREATION_DATE not in out and DEVICE_CLASS_UID not in out
    assert out.Modality == "MR" and out.PatientName == ""
    written = io.BytesIO()
    dcmwrite(written, out, enforce_file_format=True)
    text = written.getvalue().decode("latin-1")
    assert "setSubstring" not in text and "hashuid" not in text and "20240315" not in text


def test_lenient_reading_removes_an_element_whose_clause_calls_an_unknown_function(
    tmp_path: Path,
) -> None:
    path = tmp_path / "clause.script"
    path.write_text('<script><e en="T" t="00081030" n="StudyDescription">'
                    "@if(this,exists){@left(this,4)}{@empty()}</e></script>")  # fmt: skip
    with pytest.raises(ProfileError, match="unknown function @left"):
        load_script(path)
    profile = load_script(path, lenient=True)
    engine = profile.build_engine(Pseudonyms(SECRET, "LENIENT-SITE"))
    ds = _input()
    ds.StudyDescription = "MR HEAD"
    engine.deidentify(ds, collect_identifiers(ds, profile.keeps))
    assert "StudyDescription" not in ds


def test_what_lenient_reading_does_not_forgive(tmp_path: Path) -> None:
    for body, message in [
        ("@call(Plugin)", "@call() runs a CTP plugin"),
        ("@hash()", "@hash() needs at least 1 argument"),
        ("@if(this,exists){@empty()}", "@if() needs 2 {...} clauses"),
    ]:
        path = tmp_path / "strict.script"
        path.write_text(f'<script><e en="T" t="00081030">{body}</e></script>')
        with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_script(path, lenient=True)


def test_a_call_without_its_at_sign_is_found_anywhere_in_the_text(tmp_path: Path) -> None:
    path = tmp_path / "no-at.script"
    for body in ("hash(this)", "ID hashptid(@SITEID,this)", "@if(this,exists){lowercase(this)}"
                 "{@empty()}"):  # fmt: skip
        path.write_text(f'<script><e en="T" t="00081030">{body}</e></script>')
        with pytest.raises(ProfileError, match="is a call without its '@'"):
            load_script(path)
    for literal in ("rehash(this)", r"hash\(this)", "hashes (of this)", "\\@hash(this)"):
        path.write_text(f'<script><e en="T" t="00081030">{literal}</e></script>')
        assert load_script(path).rule(0x00081030) is not None, literal


def _site(tmp_path: Path, script: Path, lenient: str) -> Path:
    secret = tmp_path / "keys" / "site-secret.key"
    if not secret.exists():
        secret = create_site_secret(tmp_path / "keys")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"site_id: LENIENT-SITE\nstorage_dir: var\nkeys:\n  secret: {secret}\n"
        f"deid:\n  profile: {script}\n{lenient}"
    )
    return config


def test_check_config_refuses_unless_the_configuration_opts_in(
    tmp_path: Path,
    script: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _site(tmp_path, script, "")
    assert main(["check-config", "-c", str(config)]) == 2
    assert f"{script}:5: InstanceCreationDate: unknown function" in capsys.readouterr().err
    config = _site(tmp_path, script, "  ctp_lenient: false\n")
    assert main(["check-config", "-c", str(config)]) == 2
    config = _site(tmp_path, script, "  ctp_lenient: true\n")
    with caplog.at_level(logging.WARNING, logger="gateway.deid.ctp"):
        assert main(["check-config", "-c", str(config)]) == 0
    assert any(f"{script}:5: InstanceCreationDate" in r.getMessage() for r in caplog.records)
    assert main(["profile", "review", str(script)]) == 2
    assert main(["profile", "review", str(script), "-c", str(config)]) == 0
    assert main(["profile", "review", str(script), "--ctp-lenient"]) == 0
