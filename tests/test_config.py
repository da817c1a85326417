"""Configuration loading as a sysadmin meets it: files on disk, mistakes, exact messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import ConfigError, GatewayConfig, load_config

REPO = Path(__file__).resolve().parents[1]
CONF = "conf/gateway.yaml"  # as the user types it; every error line starts with it


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site folder with conf/ and a secret in it; the cwd is the site folder."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "site-secret.key").write_text("00" * 32 + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(site: Path, text: str) -> str:
    (site / CONF).write_text(textwrap.dedent(text))
    return CONF


MINIMAL = """\
    site_id: SITE-A
    keys:
      secret: site-secret.key
"""


def problems_of(text: str, site: Path, **kwargs: bool) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(site, text), **kwargs)
    return caught.value.problems


def only_problem_of(text: str, site: Path) -> str:
    problems = problems_of(text, site)
    assert len(problems) == 1, problems
    return problems[0]


# --- files that load -------------------------------------------------------------------


def test_minimal_file_with_site_id_and_secret_loads_with_every_default(site: Path) -> None:
    config = load_config(write_config(site, MINIMAL))

    conf_dir = site / "conf"
    assert config.config_path == conf_dir / "gateway.yaml"
    assert config.site_id == "SITE-A"
    assert config.storage_dir == conf_dir / "var"
    assert config.workers == 2
    assert config.listen.ae_title == "DEID_GW"
    assert config.listen.host == "127.0.0.1"
    assert config.listen.port == 11112
    assert config.listen.allowed_calling_aes == []
    assert config.listen.max_associations == 10
    assert config.listen.tls is None
    assert config.study.quiet_seconds == 30
    assert config.deid.profile is None
    assert config.deid.lookup_table is None
    assert config.deid.ocr is False
    assert config.keys.secret == conf_dir / "site-secret.key"
    assert config.keys.reid_public_key is None
    assert config.destination.folder == conf_dir / "var" / "export"
    assert config.destination.is_folder
    assert config.destination.ae_title is None
    assert config.destination.retry.max_attempts == 20
    assert config.destination.retry.initial_seconds == 5
    assert config.destination.retry.max_seconds == 600
    assert config.http.host == "127.0.0.1"
    assert config.http.port == 9102


def test_shipped_config_loads_and_every_path_is_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    config = load_config(REPO / "conf" / "gateway.yaml", check_files=False)

    assert config.config_path == REPO / "conf" / "gateway.yaml"
    assert config.site_id == "DEMO-SITE"
    assert config.storage_dir == REPO / "var"
    assert config.deid.profile == REPO / "conf" / "profiles" / "default.yaml"
    assert config.deid.lookup_table is None
    assert config.keys.secret == REPO / "certs" / "site-secret.key"
    assert config.keys.reid_public_key == REPO / "certs" / "reid-public.pem"
    assert config.destination.folder == REPO / "var" / "export"
    assert config.listen.tls is None
    assert (
        config.model_dump()
        == GatewayConfig.model_validate(
            {
                "site_id": "DEMO-SITE",
                "keys": {
                    "secret": REPO / "certs" / "site-secret.key",
                    "reid_public_key": REPO / "certs" / "reid-public.pem",
                },
            }
            # Pixel cleaning is on in the shipped file (the high-risk set its pixel rules
            # select), off in the built-in default (a site without OCR would not start).
            | {
                "deid": {
                    "profile": config.deid.profile,
                    "pixel_rules": config.deid.pixel_rules,
                    "ocr": True,
                }
            }
            | {"storage_dir": REPO / "var"}
        ).model_dump()
    ), "the shipped file should spell out the built-in defaults"


def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (site / "conf" / "profiles").mkdir()
    (site / "conf" / "profiles" / "strict.yaml").write_text("{}\n")
    elsewhere = site / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(
        site
        / write_config(
            site,
            """\
            site_id: SITE-A
            storage_dir: ../data
            deid: {profile: profiles/strict.yaml}
            keys: {secret: ./site-secret.key}
            destination: {folder: out}
            """,
        )
    )

    assert config.storage_dir == site / "data"
    assert config.deid.profile == site / "conf" / "profiles" / "strict.yaml"
    assert config.keys.secret == site / "conf" / "site-secret.key"
    assert config.destination.folder == site / "conf" / "out"


def test_absolute_paths_stay_as_written(site: Path) -> None:
    config = load_config(
        write_config(
            site,
            f"""\
            site_id: SITE-A
            storage_dir: /srv/dicom-gateway
            keys: {{secret: {site / "conf" / "site-secret.key"}}}
            """,
        )
    )

    assert config.storage_dir == Path("/srv/dicom-gateway")
    assert config.keys.secret == site / "conf" / "site-secret.key"


def test_without_a_destination_exports_go_under_the_storage_dir(site: Path) -> None:
    config = load_config(write_config(site, MINIMAL + "    storage_dir: /srv/gw\n"))

    assert config.destination.folder == Path("/srv/gw/export")


def test_dicom_destination_with_tls_and_retry(site: Path) -> None:
    for name in ("client.pem", "client-key.pem", "ca.pem"):
        (site / "conf" / name).write_text("-----BEGIN CERTIFICATE-----\n")

    config = load_config(
        write_config(
            site,
            MINIMAL
            + """\
    destination:
      ae_title: RESEARCH
      host: 10.0.0.5
      port: 11112
      tls: {cert: client.pem, key: client-key.pem, ca: ca.pem}
      retry: {max_attempts: 3, initial_seconds: 1, max_seconds: 1}
    """,
        )
    )

    destination = config.destination
    assert destination.folder is None
    assert not destination.is_folder
    assert (destination.ae_title, destination.host, destination.port) == (
        "RESEARCH",
        "10.0.0.5",
        11112,
    )
    assert destination.tls is not None
    assert destination.tls.ca == site / "conf" / "ca.pem"
    assert destination.retry.max_attempts == 3


def test_a_section_with_every_line_commented_out_keeps_its_defaults(site: Path) -> None:
    config = load_config(write_config(site, MINIMAL + "    listen:\n    #  port: 104\n"))

    assert config.listen.port == 11112


def test_ae_titles_lose_their_insignificant_spaces(site: Path) -> None:
    config = load_config(
        write_config(site, MINIMAL + "    listen: {allowed_calling_aes: ['CT1 ', ' MR2']}\n")
    )

    assert config.listen.allowed_calling_aes == ["CT1", "MR2"]


def test_allowed_networks_default_to_any_source(site: Path) -> None:
    assert load_config(write_config(site, MINIMAL)).listen.allowed_networks == []


def test_allowed_networks_take_ipv4_ipv6_and_addresses_with_host_bits(site: Path) -> None:
    text = (
        MINIMAL
        + "    listen: {allowed_networks: [10.0.0.0/8, 192.168.1.7, 'fd00::/8', 172.16.5.4/12]}\n"
    )

    config = load_config(write_config(site, text))

    assert config.listen.allowed_networks == [
        "10.0.0.0/8",
        "192.168.1.7",
        "fd00::/8",
        "172.16.5.4/12",
    ]


def test_missing_files_are_not_checked_when_asked_not_to(site: Path) -> None:
    config = load_config(
        write_config(site, "site_id: SITE-A\nkeys: {secret: /nowhere/site-secret.key}\n"),
        check_files=False,
    )

    assert config.keys.secret == Path("/nowhere/site-secret.key")


def test_the_loaded_config_cannot_be_changed_by_accident(site: Path) -> None:
    config = load_config(write_config(site, MINIMAL))

    with pytest.raises(ValidationError):
        config.workers = 8  # type: ignore[misc]


# --- one mistake, one exact line -------------------------------------------------------


def test_misspelt_top_level_key(site: Path) -> None:
    assert only_problem_of(MINIMAL + "    listn: {port: 104}\n", site) == (
        "conf/gateway.yaml: 'listn': unknown key"
    )


def test_misspelt_nested_key(site: Path) -> None:
    assert only_problem_of(MINIMAL + "    destination: {retry: {max_attempt: 3}}\n", site) == (
        "conf/gateway.yaml: 'destination.retry.max_attempt': unknown key"
    )


def test_words_where_a_number_belongs(site: Path) -> None:
    assert only_problem_of(MINIMAL + "    workers: two\n", site) == (
        "conf/gateway.yaml: 'workers': 'two' is not an integer"
    )


def test_true_where_a_number_belongs(site: Path) -> None:
    assert only_problem_of(MINIMAL + "    workers: true\n", site) == (
        "conf/gateway.yaml: 'workers': true is not an integer"
    )


@pytest.mark.parametrize("port", [0, 70000])
def test_port_out_of_range(site: Path, port: int) -> None:
    assert only_problem_of(MINIMAL + f"    listen: {{port: {port}}}\n", site) == (
        f"conf/gateway.yaml: 'listen.port': {port} is out of range (1-65535)"
    )


def test_zero_workers(site: Path) -> None:
    assert only_problem_of(MINIMAL + "    workers: 0\n", site) == (
        "conf/gateway.yaml: 'workers': 0 must be at least 1"
    )


def test_secret_file_not_created_yet(site: Path) -> None:
    (site / "conf" / "site-secret.key").unlink()

    assert only_problem_of(MINIMAL, site) == (
        f"conf/gateway.yaml: 'keys.secret': file not found: {site}/conf/site-secret.key"
    )


def test_profile_is_a_folder(site: Path) -> None:
    (site / "conf" / "profiles").mkdir()

    assert only_problem_of(MINIMAL + "    deid: {profile: profiles}\n", site) == (
        f"conf/gateway.yaml: 'deid.profile': not a file: {site}/conf/profiles"
    )


def test_tls_certificate_missing(site: Path) -> None:
    text = MINIMAL + "    listen: {tls: {cert: server.pem, key: site-secret.key, ca: ca.pem}}\n"

    assert problems_of(text, site) == [
        f"conf/gateway.yaml: 'listen.tls.cert': file not found: {site}/conf/server.pem",
        f"conf/gateway.yaml: 'listen.tls.ca': file not found: {site}/conf/ca.pem",
    ]


def test_site_id_forgotten(site: Path) -> None:
    assert only_problem_of("keys: {secret: site-secret.key}\n", site) == (
        "conf/gateway.yaml: 'site_id': missing (required)"
    )


def test_secret_forgotten(site: Path) -> None:
    assert only_problem_of("site_id: SITE-A\n", site) == (
        "conf/gateway.yaml: 'keys.secret': missing (required)"
    )


def test_numeric_site_id_must_be_quoted(site: Path) -> None:
    assert only_problem_of("site_id: 1234\nkeys: {secret: site-secret.key}\n", site) == (
        "conf/gateway.yaml: 'site_id': 1234 is not a string (put it in quotes)"
    )


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("''", "'' is not a valid AE title (empty)"),
        ("'   '", "'   ' is not a valid AE title (only spaces)"),
        (
            "DEID_GATEWAY_NUMBER_1",
            "'DEID_GATEWAY_NUMBER_1' is not a valid AE title (longer than 16 characters)",
        ),
        ("'DE\\ID'", "'DE\\ID' is not a valid AE title (contains a backslash)"),
        ('"DE\\tID"', "'DE\\tID' is not a valid AE title (contains a control character)"),
    ],
)
def test_bad_ae_title(site: Path, written: str, reason: str) -> None:
    assert only_problem_of(MINIMAL + f"    listen: {{ae_title: {written}}}\n", site) == (
        f"conf/gateway.yaml: 'listen.ae_title': {reason}"
    )


def test_bad_ae_title_in_the_allow_list_is_named_by_position(site: Path) -> None:
    text = MINIMAL + "    listen: {allowed_calling_aes: [CT1, 'A\\B']}\n"

    assert only_problem_of(text, site) == (
        "conf/gateway.yaml: 'listen.allowed_calling_aes.1': "
        "'A\\B' is not a valid AE title (contains a backslash)"
    )


@pytest.mark.parametrize("written", ["x", "10.0.0.0/33", "300.1.2.3", "10.0.0.0/8 and more"])
def test_allowed_network_that_is_not_one_is_named_by_position(site: Path, written: str) -> None:
    text = MINIMAL + f"    listen: {{allowed_networks: ['{written}']}}\n"

    assert only_problem_of(text, site) == (
        f"conf/gateway.yaml: 'listen.allowed_networks.0': '{written}' is not an IP network"
    )


def test_allowed_network_written_as_a_number(site: Path) -> None:
    text = MINIMAL + "    listen: {allowed_networks: [127.0.0.1/32, 10]}\n"

    assert only_problem_of(text, site) == (
        "conf/gateway.yaml: 'listen.allowed_networks.1': 10 is not a string (put it in quotes)"
    )


def test_both_destination_forms(site: Path) -> None:
    text = MINIMAL + "    destination: {folder: out, ae_title: PACS, host: pacs, port: 104}\n"

    assert only_problem_of(text, site) == (
        "conf/gateway.yaml: 'destination': give either folder or ae_title/host/port, not both"
    )


def test_dicom_destination_without_port(site: Path) -> None:
    text = MINIMAL + "    destination: {ae_title: PACS, host: pacs}\n"

    assert only_problem_of(text, site) == (
        "conf/gateway.yaml: 'destination.port': missing (required for a DICOM destination)"
    )


def test_retry_starting_above_its_ceiling(site: Path) -> None:
    text = MINIMAL + "    destination: {retry: {initial_seconds: 700, max_seconds: 600}}\n"

    assert only_problem_of(text, site) == (
        "conf/gateway.yaml: 'destination.retry.max_seconds': 600 is less than initial_seconds (700)"
    )


def test_yaml_syntax_error_names_the_line(site: Path) -> None:
    text = "site_id: SITE-A\nkeys:\n  secret: site-secret.key\n   port: 104\n"

    assert only_problem_of(text, site) == (
        "conf/gateway.yaml: '(yaml)': line 4, column 8: mapping values are not allowed here"
    )


def test_the_same_section_twice(site: Path) -> None:
    text = MINIMAL + "    listen: {port: 104}\n    listen: {port: 11112}\n"

    assert only_problem_of(text, site) == (
        "conf/gateway.yaml: '(yaml)': line 5, column 1: duplicate key 'listen'"
    )


def test_top_level_is_a_list(site: Path) -> None:
    assert only_problem_of("- site_id: SITE-A\n", site) == (
        "conf/gateway.yaml: '(yaml)': the top level is a list; expected a mapping of settings"
    )


def test_empty_file(site: Path) -> None:
    assert only_problem_of("# nothing yet\n", site) == (
        "conf/gateway.yaml: '(yaml)': the file is empty; expected a mapping of settings"
    )


def test_config_file_missing(site: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("conf/typo.yaml")

    assert caught.value.problems == [
        f"conf/typo.yaml: '(file)': file not found: {site}/conf/typo.yaml"
    ]


# --- the whole file in one pass --------------------------------------------------------


def test_every_problem_is_reported_at_once(site: Path) -> None:
    text = """\
        workers: two
        listn: {}
        listen:
          port: 70000
          allowed_calling_aes: [CT1, '']
        study: {quiet_seconds: 0}
        keys: {secret: missing.key}
        http: {port: 0}
    """

    with pytest.raises(ConfigError) as caught:
        load_config(write_config(site, text))

    assert caught.value.problems == [
        "conf/gateway.yaml: 'site_id': missing (required)",
        "conf/gateway.yaml: 'workers': 'two' is not an integer",
        "conf/gateway.yaml: 'listen.port': 70000 is out of range (1-65535)",
        "conf/gateway.yaml: 'listen.allowed_calling_aes.1': '' is not a valid AE title (empty)",
        "conf/gateway.yaml: 'study.quiet_seconds': 0 must be more than 0",
        f"conf/gateway.yaml: 'keys.secret': file not found: {site}/conf/missing.key",
        "conf/gateway.yaml: 'http.port': 0 is out of range (1-65535)",
        "conf/gateway.yaml: 'listn': unknown key",
    ]
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_quarantine_purge_age_must_be_a_positive_number(site: Path) -> None:
    problem = only_problem_of(MINIMAL + "    quarantine:\n      purge_after_days: -3\n", site)
    assert problem == "conf/gateway.yaml: 'quarantine.purge_after_days': -3 must be more than 0"
    thirty = MINIMAL + "    quarantine:\n      purge_after_days: 30\n"
    config = load_config(write_config(site, thirty))
    assert config.quarantine.purge_after_days == 30
    assert load_config(write_config(site, MINIMAL)).quarantine.purge_after_days is None
