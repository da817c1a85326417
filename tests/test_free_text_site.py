"""The site's free-text choices: word files checked at start-up, and clean_on_leak.

clean_on_leak is off by default: a CTP script that keeps Series Description holds every
instance whose description names the patient. On, the value is cleaned where the verify
gate found it and the instance goes out clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from gateway.deid.ctp.profile import load_script
from gateway.deid.free_text import FreeTextSettings
from gateway.deid.pseudonyms import Pseudonyms
from gateway.keys.site_secret import create_site_secret
from gateway.pipeline.instance import Clean, Quarantine, process_instance
from gateway.site import SiteError, load_site

KEEPS_DESCRIPTION = """<script>
<e en="T" t="00100010" n="PatientName">@hash(this,10)</e>
<e en="T" t="00100020" n="PatientID">@hash(this,10)</e>
<e en="T" t="0008103E" n="SeriesDescription">@keep()</e>
<e en="T" t="0020000D" n="StudyInstanceUID">@hashuid(1.2.3.,this)</e>
<e en="T" t="0020000E" n="SeriesInstanceUID">@hashuid(1.2.3.,this)</e>
<e en="T" t="00080018" n="SOPInstanceUID">@hashuid(1.2.3.,this)</e>
<r en="T" t="privategroups"/>
<r en="T" t="unspecifiedelements"/>
</script>
"""


def _instance() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.11.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.11.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.11.3"
    ds.PatientName = "Thornquist^Melisande"
    ds.PatientID = "TM-40917"
    ds.Modality = "CT"
    ds.SeriesDescription = "CT CHEST THORNQUIST"
    return ds


def _ctp_engine(tmp_path: Path, clean_on_leak: bool):  # type: ignore[no-untyped-def]
    script = tmp_path / "keeps.script"
    script.write_text(KEEPS_DESCRIPTION, encoding="utf-8")
    engine = load_script(script).build_engine(Pseudonyms(b"k" * 32, "SITE"))
    engine.set_free_text(FreeTextSettings(clean_on_leak=clean_on_leak))
    return engine


def test_a_kept_value_naming_the_patient_holds_the_instance_by_default(tmp_path: Path) -> None:
    outcome = process_instance(_instance(), _ctp_engine(tmp_path, clean_on_leak=False))
    assert isinstance(outcome, Quarantine)
    assert outcome.reason == "identifier-found"
    assert "(0008,103E)" in outcome.message


def test_clean_on_leak_cleans_the_kept_value_instead(tmp_path: Path) -> None:
    outcome = process_instance(_instance(), _ctp_engine(tmp_path, clean_on_leak=True))
    assert isinstance(outcome, Clean), outcome
    description = outcome.dataset.SeriesDescription
    assert description.startswith("CT CHEST")
    assert "thornquist" not in description.casefold()
    assert "thornquist" not in repr(outcome.dataset).casefold()


def _config(tmp_path: Path, free_text: str) -> Path:
    secret = create_site_secret(tmp_path / "keys")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"site_id: WORDS\nstorage_dir: var\nkeys:\n  secret: {secret}\n"
        f"deid:\n  free_text:\n{free_text}",
        encoding="utf-8",
    )
    return config


def test_site_word_files_are_read_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("# our readers\nVexmoor\nQuillan\n", "utf-8")
    (tmp_path / "safe.txt").write_text("Zorbly\n", "utf-8")
    words = "    names: [names.txt]\n    safe_words: [safe.txt]\n    clean_on_leak: true\n"
    site = load_site(_config(tmp_path, words))
    settings = site.engine_settings().free_text
    assert settings.names == ("Vexmoor", "Quillan")
    assert settings.safe_words == ("Zorbly",)
    assert settings.clean_on_leak and settings.recognizer


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "names.0'"), ("# nothing but a comment\n", "lists no words")],
)
def test_a_bad_word_file_stops_the_start_naming_file_and_key(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    if content is not None:
        (tmp_path / "names.txt").write_text(content, "utf-8")
    config = _config(tmp_path, "    names: [names.txt]\n")
    with pytest.raises(SiteError) as error:
        load_site(config)
    message = str(error.value)
    assert str(config) in message or "gateway.yaml" in message
    assert "'deid.free_text.names.0'" in message
    assert reason in message
