"""The reviewer: every weakening of the Basic Profile, acknowledged or refused.

Checks the rule itself (vocabulary, "retains more", combined codes, option justification,
acknowledgement), that it works on any profile through the contract methods alone, the
`profile review` command and the refusal in `check-config`/`anonymize`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.deid.profile import CsvRules, compile_profile, default_profile
from gateway.deid.profile_loading import load_profile
from gateway.deid.review import review
from gateway.deid.standard import (
    CURVE_PATTERN,
    OVERLAY_COMMENTS_PATTERN,
    OVERLAY_DATA_PATTERN,
    PRIVATE_PATTERN,
    Option,
)
from gateway.keys.site_secret import create_site_secret

REPO = Path(__file__).resolve().parents[1]
SHARED_TABLE = REPO.parent / "shared/standard/ps3.15_table_e1-1.csv"
TABLE = SHARED_TABLE if SHARED_TABLE.exists() else REPO / "gateway/deid/data/ps3.15_table_e1-1.csv"
RANK = {"X": 0, "Z": 1, "D": 2, "U": 2, "C": 3, "K": 4}
COLUMNS = {
    "retain_safe_private": "rtn_safe_priv",
    "retain_uids": "rtn_uids",
    "retain_device_identity": "rtn_dev_id",
    "retain_institution_identity": "rtn_inst_id",
    "retain_patient_characteristics": "rtn_pat_chars",
    "retain_longitudinal_full_dates": "rtn_long_full_dates",
    "retain_longitudinal_modified_dates": "rtn_long_modif_dates",
    "clean_descriptors": "clean_desc",
    "clean_structured_content": "clean_struct_cont",
    "clean_graphics": "clean_graph",
}


def _rank(code: str) -> int:
    return max(RANK[c.rstrip("*")] for c in code.split("/"))


def option_weakenings(options: set[str]) -> set[str]:
    """Rows where a chosen option's column retains more than Basic, read from the table."""
    found = set()
    with TABLE.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            codes = [row[COLUMNS[o]] for o in options if row[COLUMNS[o]]]
            if codes and max(map(_rank, codes)) > _rank(row["basic_profile"]):
                found.add(row["keyword"] or row["tag"])
    return found


def _yaml(tmp_path: Path, text: str, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_profile(path)


def test_the_basic_profile_has_no_weakening() -> None:
    result = review(compile_profile([], name="basic"))
    assert result.weakenings == () and result.ok
    assert result.table().splitlines()[-1] == "OK"


def test_options_are_weakenings_justified_by_the_options_chosen() -> None:
    result = review(default_profile())
    assert result.ok
    chosen = {o.value for o in default_profile().options}
    names = {w.attribute for w in result.weakenings}
    assert names == option_weakenings(chosen)
    assert all(w.chosen and w.acknowledged and w.option in chosen for w in result.weakenings)
    age = next(w for w in result.weakenings if w.attribute == "PatientAge")
    assert (age.standard, age.profile, age.option) == ("X", "K", "retain_patient_characteristics")


def test_an_override_that_retains_more_needs_an_acknowledgement(tmp_path: Path) -> None:
    text = "overrides:\n  PatientAge: K\n  StudyDescription: {clean: {allow: [CT]}}\n"
    result = review(_yaml(tmp_path, text))
    assert [(w.attribute, w.standard, w.profile, w.option, w.acknowledged)
            for w in result.weakenings] == [
        ("StudyDescription", "X", "C", "clean_descriptors", False),
        ("PatientAge", "X", "K", "retain_patient_characteristics", False),
    ]
    assert not result.ok
    message = result.message()
    assert "StudyDescription (X -> C)" in message and "PatientAge (X -> K)" in message
    acknowledged = review(_yaml(tmp_path, text + 'acknowledge: [PatientAge, "(0008,1030)"]\n'))
    assert acknowledged.ok and len(acknowledged.weakenings) == 2
    justified = review(_yaml(tmp_path, text + "options: [retain_patient_characteristics]\n"))
    assert [w.attribute for w in justified.unacknowledged] == ["StudyDescription"]


def test_combined_codes_are_weakened_only_beyond_every_alternative(tmp_path: Path) -> None:
    # Operators' Name is X/Z/D: a fake (D) is within it, keeping it (K) is not.
    assert review(_yaml(tmp_path, "overrides:\n  OperatorsName: {replace: FULL_NAME}\n")).ok
    kept = review(_yaml(tmp_path, "overrides:\n  OperatorsName: K\n"))
    assert [(w.attribute, w.standard, w.profile) for w in kept.weakenings] == [
        ("OperatorsName", "X/Z/D", "K")
    ]
    # Referring Physician's Name is Z: even a fake retains more than an empty value.
    fake = review(_yaml(tmp_path, "overrides:\n  ReferringPhysicianName: {replace: SURNAME}\n"))
    assert [(w.attribute, w.standard, w.profile, w.option) for w in fake.weakenings] == [
        ("ReferringPhysicianName", "Z", "D", "")
    ]
    # Removing more than the standard is never a weakening.
    assert review(_yaml(tmp_path, "overrides:\n  Modality: X\n  PatientSex: X\n")).ok


def test_patterns_and_paths_are_reviewed(tmp_path: Path) -> None:
    text = (
        "overrides:\n"
        '  (0019,"GEMS_ACQU_01",23): K\n'
        "  (60xx,4000): K\n"
        "  RequestAttributesSequence: U\n"
        "  RequestAttributesSequence/*/RequestedProcedureID: K\n"
    )
    result = review(_yaml(tmp_path, text))
    assert {(w.attribute, w.standard, w.profile) for w in result.weakenings} == {
        ("private", "X", "K"),
        (f"overlays ({OVERLAY_COMMENTS_PATTERN})", "X", "K"),
        ("RequestAttributesSequence", "X", "U"),
        ("RequestAttributesSequence/*/RequestedProcedureID", "X", "K"),
    }
    ack = "acknowledge: [private, overlays, RequestAttributesSequence, RequestedProcedureID]\n"
    assert review(_yaml(tmp_path, text + ack)).ok
    safe = review(compile_profile([Option.RETAIN_SAFE_PRIVATE]))
    assert [(w.attribute, w.profile, w.chosen) for w in safe.weakenings] == [
        ("private", "C", True)
    ]


def test_the_patient_pseudonym_is_not_a_weakening() -> None:
    names = {w.attribute for w in review(compile_profile([])).weakenings}
    assert "PatientName" not in names and "PatientID" not in names


@dataclass
class ContractOnly:
    """A profile offering only the contract (as the CTP reader's does)."""

    name: str = "contract-only"
    acknowledged: frozenset[str] = frozenset({"PatientSex"})
    csv: CsvRules = field(default_factory=CsvRules)
    kept: dict[int, str] = field(default_factory=dict)

    def effective_action(self, tag: int) -> str | None:
        return self.kept.get(tag, "X")

    def effective_pattern_action(self, pattern: str) -> str:
        assert pattern in (CURVE_PATTERN, OVERLAY_DATA_PATTERN, OVERLAY_COMMENTS_PATTERN,
                           PRIVATE_PATTERN)
        return "X"

    def path_overrides(self) -> tuple[tuple[str, str], ...]:
        return (("ContentSequence/*/PersonName", "K"),)


def test_a_profile_with_only_the_contract_methods_is_reviewed() -> None:
    profile = ContractOnly(kept={0x00100040: "K", 0x00101010: "K"})  # sex, age
    result = review(profile)
    assert [(w.attribute, w.acknowledged, w.chosen) for w in result.weakenings] == [
        ("PatientSex", True, False),
        ("PatientAge", False, False),
        ("ContentSequence/*/PersonName", False, False),
    ]
    assert "contract-only" in result.table()


# -- the command -------------------------------------------------------------------------------


def _site(tmp_path: Path, profile_text: str) -> Path:
    secret = create_site_secret(tmp_path / "keys")
    (tmp_path / "profile.yaml").write_text(profile_text)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"site_id: REVIEW-SITE\nstorage_dir: var\nkeys:\n  secret: {secret}\n"
        "deid:\n  profile: profile.yaml\n"
    )
    return config


def test_profile_review_command_exit_codes(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("overrides:\n  PatientAge: K\nacknowledge: [PatientAge]\n")
    assert main(["profile", "review", str(good)]) == 0
    out = capsys.readouterr().out
    assert "PatientAge" in out and "retain_patient_characteristics" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("overrides:\n  PatientAge: K\n")
    assert main(["profile", "review", str(bad)]) == 1
    assert "PatientAge (X -> K)" in capsys.readouterr().out
    broken = tmp_path / "broken.yaml"
    broken.write_text("overrides:\n  PatientAge: keep\n")
    assert main(["profile", "review", str(broken)]) == 2
    assert f"{broken}: 'overrides.PatientAge': 'keep' is not an action" in capsys.readouterr().err
    assert main(["profile", "review", str(tmp_path / "missing.yaml")]) == 2


def test_run_anonymize_and_check_config_refuse_an_unacknowledged_weakening(
    tmp_path: Path, capsys
) -> None:
    config = _site(tmp_path, "overrides:\n  InstitutionName: K\n")
    (tmp_path / "in").mkdir()
    expected = "InstitutionName (X/Z/D -> K)"
    assert main(["check-config", "-c", str(config)]) == 2
    assert expected in capsys.readouterr().err
    assert main(["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "-c", str(config)]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["run", "-c", str(config)]) == 2
    assert expected in capsys.readouterr().err
    (tmp_path / "profile.yaml").write_text(
        "overrides:\n  InstitutionName: K\nacknowledge: [InstitutionName]\n"
    )
    assert main(["check-config", "-c", str(config)]) == 0
    assert "profile profile" in capsys.readouterr().out


@pytest.mark.parametrize("option", sorted(COLUMNS))
def test_each_option_alone_is_justified(option: str) -> None:
    result = review(compile_profile([Option(option)]))
    assert result.ok
    assert {w.attribute for w in result.weakenings} == {
        ("private" if n == PRIVATE_PATTERN else "curves" if n == CURVE_PATTERN else n)
        for n in option_weakenings({option})
    } - {OVERLAY_DATA_PATTERN, OVERLAY_COMMENTS_PATTERN} | {
        f"overlays ({p})" for p in (OVERLAY_DATA_PATTERN, OVERLAY_COMMENTS_PATTERN)
        if p in option_weakenings({option})
    }
