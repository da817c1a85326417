"""Every YAML file the gateway reads refuses a key written twice, as a sysadmin meets it.

PyYAML alone keeps the later of two equal keys, so `PatientAge: X` followed further down by
`PatientAge: K` would keep the patient's age without a word. The product's files (the
configuration, profiles, pixel rules, the pixel allow list) all go through
`gateway.base.yaml_files`, which names the file, the line and the dotted key instead.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict
from test_offline_cli import run_gateway

from gateway.base.yaml_files import (
    YamlFileError,
    read_mapping,
    read_yaml,
    validate,
    validate_partly,
)
from gateway.config import ConfigError, load_config
from gateway.deid.profile import ProfileError
from gateway.deid.profile_file import load_yaml_profile
from gateway.pixels.ocr import AllowList, AllowListError, is_available
from gateway.pixels.rules import PixelConfigError, load_pixel_config

EXIT_USAGE = 2
needs_ocr = pytest.mark.skipif(
    is_available() is not None, reason=f"OCR not available: {is_available()}"
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(YamlFileError) as caught:
        read_yaml(path)
    return caught.value.problems


# --- the reader ------------------------------------------------------------------------


def test_a_key_twice_at_the_top_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "f.yaml", "a: 1\nb: 2\na: 3\n")

    assert problems_of(path) == [f"{path}: '(yaml)': line 3, column 1: duplicate key 'a'"]


def test_a_key_twice_deep_inside_names_its_dotted_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.yaml",
        """\
        rules:
          - name: first
          - name: banner
            conditions:
              Modality: US
              Modality: CT
        """,
    )

    assert problems_of(path) == [
        f"{path}: '(yaml)': line 6, column 7: duplicate key 'rules.1.conditions.Modality'"
    ]


def test_every_duplicate_in_the_file_is_reported_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "f.yaml", "a: {x: 1, x: 2}\nb: 1\nb: 2\na: {}\n")

    assert problems_of(path) == [
        f"{path}: '(yaml)': line 1, column 11: duplicate key 'a.x'",
        f"{path}: '(yaml)': line 3, column 1: duplicate key 'b'",
        f"{path}: '(yaml)': line 4, column 1: duplicate key 'a'",
    ]


def test_equal_keys_in_different_mappings_are_not_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, "f.yaml", "a: {port: 1}\nb: {port: 2}\nc: [{port: 3}, {port: 4}]\n")

    assert read_yaml(path) == {"a": {"port": 1}, "b": {"port": 2}, "c": [{"port": 3}, {"port": 4}]}


def test_a_merge_key_may_be_overridden_and_an_alias_is_checked_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.yaml",
        """\
        base: &base {host: a, port: 1}
        peer: {<<: *base, port: 2}
        again: *base
        """,
    )

    assert read_yaml(path)["peer"] == {"host": "a", "port": 2}


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "f.yaml", "a: 1\nb: [1, 2\n")

    [line] = problems_of(path)
    assert line.startswith(f"{path}: '(yaml)': line 3, column 1: ")


def test_a_missing_file_and_a_top_level_list(tmp_path: Path) -> None:
    with pytest.raises(YamlFileError) as caught:
        read_mapping(tmp_path / "nowhere.yaml", "conf/nowhere.yaml")
    assert caught.value.problems == [
        f"conf/nowhere.yaml: '(file)': file not found: {tmp_path / 'nowhere.yaml'}"
    ]

    path = write(tmp_path, "list.yaml", "- a\n")
    with pytest.raises(YamlFileError) as caught:
        read_mapping(path)
    assert caught.value.problems == [
        f"{path}: '(yaml)': the top level is a list; expected a mapping of settings"
    ]
    assert read_mapping(write(tmp_path, "empty.yaml", "# nothing\n"), empty_ok=True) == {}


class _Listen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = 104
    ae_title: str = "GW"


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: str
    listen: _Listen = _Listen()


def test_validation_problems_read_file_key_reason_and_value() -> None:
    data = {"listen": {"port": "abc", "ae_title": 7, "colour": "red"}}

    with pytest.raises(YamlFileError) as caught:
        validate(_File, data, "conf/gateway.yaml")

    assert caught.value.problems == [
        "conf/gateway.yaml: 'site_id': missing (required)",
        "conf/gateway.yaml: 'listen.port': 'abc' is not an integer",
        "conf/gateway.yaml: 'listen.ae_title': 7 is not a string (put it in quotes)",
        "conf/gateway.yaml: 'listen.colour': unknown key",
    ]


def test_unknown_keys_can_come_first_and_name_the_expected_keys() -> None:
    data = {"site_id": "A", "listen": {"port": "abc", "colour": "red"}}

    parsed, problems = validate_partly(
        _File, data, "f.yaml", list_expected=True, unknown_first=True
    )

    assert problems == [
        "f.yaml: 'listen.colour': unknown key (expected one of port, ae_title)",
        "f.yaml: 'listen.port': 'abc' is not an integer",
    ]
    # The keys that were right are kept, so a loader can check what depends on them.
    assert parsed is not None and parsed.site_id == "A" and parsed.listen == _Listen()


# --- each file the product reads -------------------------------------------------------

# Profile texts whose second key would silently replace the first.
DUPLICATE_PROFILES = {
    "top": ("strict: true\noptions: [clean_descriptors]\nstrict: false\n", 3, 1, "strict"),
    "nested": (
        "overrides:\n  PatientAge: X\n  InstitutionName: X\n  PatientAge: K\n",
        4,
        3,
        "overrides.PatientAge",
    ),
}


@pytest.mark.parametrize("case", DUPLICATE_PROFILES)
def test_profile_with_a_key_twice_is_refused(tmp_path: Path, case: str) -> None:
    text, line, column, key = DUPLICATE_PROFILES[case]
    path = write(tmp_path, "site.yaml", text)

    with pytest.raises(ProfileError) as caught:
        load_yaml_profile(path)

    assert caught.value.problems == [
        f"{path}: '(yaml)': line {line}, column {column}: duplicate key '{key}'"
    ]


def test_config_with_a_nested_key_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway.yaml", "site_id: A\nlisten:\n  port: 104\n  port: 11112\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, check_files=False)

    assert caught.value.problems == [
        f"{path}: '(yaml)': line 4, column 3: duplicate key 'listen.port'"
    ]


def test_pixel_rules_and_allow_list_with_a_key_twice_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "allow.yaml", "words:\n  R: orientation marker\n  R: right\n")
    rules = write(
        tmp_path,
        "rules.yaml",
        "allowlist: allow.yaml\nselection:\n  modalities: [US]\n  modalities: [CT]\n",
    )

    with pytest.raises(PixelConfigError) as caught:
        load_pixel_config(rules)
    assert caught.value.problems == [
        f"{rules}: '(yaml)': line 4, column 3: duplicate key 'selection.modalities'"
    ]

    with pytest.raises(AllowListError) as caught_allow:
        AllowList.from_file(tmp_path / "allow.yaml")
    assert caught_allow.value.problems == [
        f"{tmp_path / 'allow.yaml'}: '(yaml)': line 3, column 3: duplicate key 'words.R'"
    ]


# --- through the real command line -----------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site folder with a private secret; configs are written per test."""
    secret = tmp_path / "site-secret.key"
    secret.write_text("ab" * 32 + "\n", encoding="utf-8")
    secret.chmod(0o600)
    return tmp_path


def config_with(site: Path, deid: str) -> Path:
    return write(
        site,
        "gateway.yaml",
        f"site_id: TEST-SITE\nstorage_dir: var\nkeys: {{secret: site-secret.key}}\ndeid: {deid}\n",
    )


def assert_refused(
    result: subprocess.CompletedProcess[str], path: Path, line: int, key: str
) -> None:
    assert result.returncode == EXIT_USAGE, (result.stdout, result.stderr)
    assert f"{path}: '(yaml)': line {line}, column" in result.stderr, result.stderr
    assert f"duplicate key '{key}'" in result.stderr, result.stderr


@pytest.mark.parametrize("case", DUPLICATE_PROFILES)
def test_profile_review_refuses_a_profile_with_a_key_twice(site: Path, case: str) -> None:
    text, line, _column, key = DUPLICATE_PROFILES[case]
    profile = write(site, "site-profile.yaml", text)

    result = run_gateway("profile", "review", profile, cwd=site)

    assert_refused(result, profile, line, key)


@pytest.mark.parametrize("case", DUPLICATE_PROFILES)
def test_check_config_refuses_a_profile_with_a_key_twice(site: Path, case: str) -> None:
    text, line, _column, key = DUPLICATE_PROFILES[case]
    profile = write(site, "site-profile.yaml", text)
    config = config_with(site, "{profile: site-profile.yaml}")

    result = run_gateway("check-config", "-c", config, cwd=site)

    assert_refused(result, profile, line, key)


# check-config reads the pixel rules and allow list a configuration names whether pixel
# cleaning is on or not; with it on (deid.ocr) it needs Tesseract first.
DUPLICATE_PIXEL_RULES = {
    "top": ("mode: redact_identifiers\nallowlist: allow.yaml\nmode: redact_all_text\n", 3, "mode"),
    "nested": (
        "allowlist: allow.yaml\nrules:\n  - name: banner\n    boxes: [[0, 0, 0, 40]]\n"
        "    boxes: [[0, 0, 0, 10]]\n",
        5,
        "rules.0.boxes",
    ),
}
DUPLICATE_ALLOW_LISTS = {
    "top": ("words: {R: orientation marker}\nwords: {L: orientation marker}\n", 2, "words"),
    "nested": ("patterns:\n  '\\d+': numbers\n  '\\d+': scale numbers\n", 3, "patterns.\\d+"),
}


@needs_ocr
@pytest.mark.parametrize("case", DUPLICATE_PIXEL_RULES)
def test_check_config_refuses_pixel_rules_with_a_key_twice(site: Path, case: str) -> None:
    text, line, key = DUPLICATE_PIXEL_RULES[case]
    write(site, "allow.yaml", "words: {R: orientation marker}\n")
    rules = write(site, "pixel-rules.yaml", text)
    config = config_with(site, "{ocr: true, pixel_rules: pixel-rules.yaml}")

    result = run_gateway("check-config", "-c", config, cwd=site)

    assert_refused(result, rules, line, key)


@needs_ocr
@pytest.mark.parametrize("case", DUPLICATE_ALLOW_LISTS)
def test_check_config_refuses_an_allow_list_with_a_key_twice(site: Path, case: str) -> None:
    text, line, key = DUPLICATE_ALLOW_LISTS[case]
    allow = write(site, "allow.yaml", text)
    write(site, "pixel-rules.yaml", "allowlist: allow.yaml\n")
    config = config_with(site, "{ocr: true, pixel_rules: pixel-rules.yaml}")

    result = run_gateway("check-config", "-c", config, cwd=site)

    assert_refused(result, allow, line, key)


@pytest.mark.parametrize("case", DUPLICATE_PIXEL_RULES)
def test_check_config_refuses_named_pixel_rules_with_a_key_twice_with_ocr_off(
    site: Path, case: str
) -> None:
    text, line, key = DUPLICATE_PIXEL_RULES[case]
    write(site, "allow.yaml", "words: {R: orientation marker}\n")
    rules = write(site, "pixel-rules.yaml", text)
    config = config_with(site, "{ocr: false, pixel_rules: pixel-rules.yaml}")

    result = run_gateway("check-config", "-c", config, cwd=site)

    assert_refused(result, rules, line, key)


def test_check_config_refuses_a_named_allow_list_with_a_key_twice_with_ocr_off(
    site: Path,
) -> None:
    text, line, key = DUPLICATE_ALLOW_LISTS["nested"]
    allow = write(site, "allow.yaml", text)
    write(site, "pixel-rules.yaml", "allowlist: allow.yaml\n")
    config = config_with(site, "{ocr: false, pixel_rules: pixel-rules.yaml}")

    result = run_gateway("check-config", "-c", config, cwd=site)

    assert_refused(result, allow, line, key)
