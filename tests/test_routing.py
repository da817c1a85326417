"""`routes:`: rules pick a profile, pixel settings and destinations per instance, or drop it.

Checked against the real service with two real archives on loopback: DCMTK storescp as the
research archive and Orthanc as the main destination.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from peers import run_orthanc
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from service_harness import (
    STORESCP,
    STORESCU,
    ae_destination,
    create_secret,
    free_port,
    leaks_in,
    make_site,
    received_files,
    run_cli,
    running_gateway,
    storescp_on,
    storescu,
    wait_until,
)

from gateway.config import ConfigError, load_config
from gateway.config.schema_routes import RouteConfig
from gateway.pipeline.routing import Route, Router, compile_tests
from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

FEDERATION = (
    Path(__file__).resolve().parents[1] / "conf" / "profiles" / "research-federation.script"
)


def router(*rules: dict[str, Any]) -> Router:
    routes = []
    for rule in rules:
        config = RouteConfig.model_validate(rule)
        routes.append(
            Route(
                config.name,
                compile_tests(config),
                drop=config.drop,
                destinations=tuple(config.destinations or ("default",)),
            )
        )
    return Router(tuple(routes))


def chosen(rules: Router, **values: Any) -> str | None:
    """The name of the rule an instance with `values` falls under (None: no rule)."""
    route = rules.route_for(dataset(**values))
    return None if route is None else route.name


def dataset(**values: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


# --- matching ---------------------------------------------------------------------------


def test_the_first_rule_whose_every_condition_holds_wins() -> None:
    rules = router(
        {"name": "dose", "when": {"series_description": {"regex": "(?i)dose (report|info)"}},
         "drop": True},
        {"name": "ct-mr", "when": {"modality": ["CT", "MR"], "Manufacturer": {"present": True}}},
        {"name": "no-maker", "when": {"Manufacturer": {"present": False}}},
    )  # fmt: skip
    assert chosen(rules, Modality="CT", SeriesDescription="Dose Report") == "dose"
    assert chosen(rules, Modality="MR", Manufacturer="ACME") == "ct-mr"
    assert chosen(rules, Modality="MR", Manufacturer="") == "no-maker"
    assert chosen(rules, Modality="US", Manufacturer="ACME") is None


def test_multi_valued_attributes_match_when_any_value_does() -> None:
    rules = router(
        {"name": "localizer", "when": {"ImageType": {"regex": "^LOCALIZER$"}}},
        {"name": "derived", "when": {"ImageType": "DERIVED"}},
    )
    assert (
        rules.route_for(dataset(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])).name == "localizer"
    )  # type: ignore[union-attr]
    assert rules.route_for(dataset(ImageType=["DERIVED", "SECONDARY"])).name == "derived"  # type: ignore[union-attr]
    assert rules.route_for(dataset(ImageType=["ORIGINAL", "PRIMARY", "AXIAL"])) is None


def config_problems(tmp_path: Path, text: str) -> list[str]:
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"x" * 32)
    path = tmp_path / "gateway.yaml"
    path.write_text(f"site_id: S\nkeys: {{secret: {secret}}}\n{text}", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("routes: [{name: a, when: {Modalty: CT}}]",
         "'routes.0.when.Modalty': 'Modalty' is not a DICOM keyword"),
        ("routes: [{name: a, when: {modality: {regex: '('}}}]",
         "'routes.0.when.modality.regex': '(' is not a regular expression"),
        ("routes: [{name: a, when: {modality: {regex: x, present: true}}}]",
         "'routes.0.when.modality': give exactly one of equals, regex or present"),
        ("routes: [{name: a, destinations: [elsewhere]}]",
         "'routes.0.destinations': 'elsewhere' is not a destination (known: default)"),
        ("routes: [{name: a}, {name: a, drop: true}]", "'routes.1.name': 'a' names two rules"),
        ("routes: [{name: a, drop: true, destinations: [default]}]",
         "'routes.0.drop': a rule that drops sends nowhere"),
        ("routes: [{name: a, when: {ReferencedImageSequence: {present: true}}}]",
         "'routes.0.when.ReferencedImageSequence': 'ReferencedImageSequence' is a sequence"),
        ("destinations: {'a b': {folder: out}}",
         "'destinations.a b': 'a b' is not a name of letters, digits"),
    ],
)  # fmt: skip
def test_a_bad_rule_names_the_file_the_key_and_the_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    problems = config_problems(tmp_path, text)
    assert any(expected in line and "gateway.yaml" in line for line in problems), problems


# --- through the service ------------------------------------------------------------------

pytestmark_e2e = pytest.mark.skipif(
    STORESCU is None or STORESCP is None, reason="DCMTK storescu/storescp missing"
)


def series(folder: Path, source: list[Path], **changes: str) -> list[Path]:
    """A copy of `source` as a new series with `changes` (e.g. Modality, SeriesDescription)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    out = []
    for path in source:
        ds = dcmread(path)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / path.name)
        out.append(folder / path.name)
    return out


def identifiers(patient: SyntheticPatient, files: list[Path]) -> list[str]:
    values = [patient.name, patient.patient_id, patient.accession, patient.other_patient_id]
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        values += [ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID]
    return values


def study(tmp_path: Path, seed: int, instances: int = 3) -> tuple[SyntheticPatient, list[Path]]:
    patient = random_patient(seed)
    files = make_ct_study(tmp_path / f"study-{seed}", instances=instances, rows=32,
                          columns=32, patient=patient, seed=seed)  # fmt: skip
    return patient, files


@pytestmark_e2e
def test_two_archives_a_dropped_series_and_a_study_sent_to_both(tmp_path: Path) -> None:
    ct_patient, ct = study(tmp_path, 71)
    dose = series(tmp_path / "dose", ct[:2], Modality="SR", SeriesDescription="Dose Report")
    mr_patient, mr_base = study(tmp_path, 72)
    # The synthetic study names its patient in the descriptions, which the script keeps.
    mr = series(tmp_path / "mr", mr_base, Modality="MR", SeriesDescription="T1 AX",
                StudyDescription="MR BRAIN")  # fmt: skip
    us_patient, us_base = study(tmp_path, 73)
    us = series(tmp_path / "us", us_base, Modality="US", SeriesDescription="ABDOMEN")
    research_port = free_port()
    with run_orthanc(tmp_path) as orthanc:
        site = make_site(
            tmp_path / "site",
            create_secret(tmp_path / "keys"),
            destination=ae_destination(orthanc.dicom_port, orthanc.ae_title),
            quiet_seconds=0.5,
        )
        site.write(
            destinations={"research": ae_destination(research_port)},
            routes=[
                {"name": "no dose reports", "drop": True,
                 "when": {"series_description": {"regex": "(?i)dose"}}},
                {"name": "ultrasound to research", "when": {"modality": "US"},
                 "destinations": ["research"]},
                {"name": "ct to both", "when": {"modality": "CT"},
                 "destinations": ["default", "research"]},
                {"name": "mr under the federation script", "when": {"modality": "MR"},
                 "profile": str(FEDERATION)},
            ],
        )  # fmt: skip
        research = tmp_path / "research"
        with storescp_on(research_port, research), running_gateway(site) as gateway:
            sent = ct + dose + mr + us
            assert storescu(site.listen_port, sent).acknowledged == sent
            wait_until(lambda: gateway.metric("studies_forwarded") == 3
                       and gateway.metric("queue_depth") == 0,
                       timeout=90, what="three studies forwarded")  # fmt: skip
            at_orthanc = orthanc.instances()
        at_research = received_files(research)
    # CT to both, MR (no rule) to the main destination only, US to research only, dose nowhere.
    assert len(at_orthanc) == len(ct) + len(mr)
    assert len(at_research) == len(ct) + len(us)
    modalities = sorted({str(dcmread(r.path).Modality) for r in at_research})
    assert modalities == ["CT", "US"]
    assert {r.sop_instance_uid for r in at_research if dcmread(r.path).Modality == "CT"} <= set(
        at_orthanc
    )
    records = site.audit_records()
    assert sum(r["dropped_by_rule"].get("no dose reports", 0) for r in records) == len(dose)
    assert sorted(sorted(r["destinations"]) for r in records) == [
        ["default"], ["default", "research"], ["research"],
    ]  # fmt: skip
    assert sum(r["instances_quarantined"] for r in records) == 0
    everything = identifiers(ct_patient, ct + dose) + identifiers(mr_patient, mr)
    everything += identifiers(us_patient, us)
    assert leaks_in([r.path for r in at_research], everything) == []
    stored = [p for p in (tmp_path / "orthanc" / "storage").rglob("*") if p.is_file()]
    assert len(stored) == len(at_orthanc)
    assert leaks_in(stored, everything) == []
    # The MR rule's CTP script gives @hashptid digits; the site's profile its own pseudonym.
    patient_ids = {str(dcmread(p).Modality): str(dcmread(p).PatientID) for p in stored}
    assert patient_ids["MR"].isdigit(), patient_ids
    assert patient_ids["CT"].startswith(site.pseudonyms().site_tag), patient_ids


@pytestmark_e2e
def test_one_destination_down_while_the_other_receives(tmp_path: Path) -> None:
    patient, ct = study(tmp_path, 74, instances=4)
    main_port, research_port = free_port(), free_port()
    site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                     destination=ae_destination(main_port), quiet_seconds=0.5)  # fmt: skip
    site.write(
        destinations={"research": ae_destination(research_port, "RESEARCH")},
        routes=[{"name": "both", "destinations": ["default", "research"]}],
    )
    main, research = tmp_path / "main", tmp_path / "research"
    with storescp_on(main_port, main, extra_args=["+uf"]), running_gateway(site) as gateway:
        assert storescu(site.listen_port, ct).acknowledged == ct
        wait_until(lambda: len(received_files(main)) == len(ct), timeout=60,
                   what="the main archive to receive the study")  # fmt: skip
        wait_until(lambda: gateway.metric("forward_retries") >= 1, timeout=30,
                   what="the research archive's failure to be retried")  # fmt: skip
        assert gateway.metric("queue_depth") == len(ct)
        with storescp_on(research_port, research, ae_title="RESEARCH", extra_args=["+uf"]):
            wait_until(lambda: gateway.metric("queue_depth") == 0, timeout=60,
                       what="the study to reach the research archive")  # fmt: skip
    # Each archive holds the study once: the retry sent only what was not confirmed.
    assert len(received_files(main)) == len(ct)
    assert len(received_files(research)) == len(ct)
    paths = [r.path for r in received_files(main) + received_files(research)]
    assert leaks_in(paths, identifiers(patient, ct)) == []
    (record,) = site.audit_records()
    assert record["result"] == "forwarded"


def test_offline_anonymize_applies_a_rules_profile_and_drop(tmp_path: Path) -> None:
    patient, ct = study(tmp_path, 75)
    dose = series(tmp_path / "in" / "dose", ct[:2], Modality="SR", SeriesDescription="Dose Info")
    mr = series(tmp_path / "in" / "mr", ct, Modality="MR", StudyDescription="MR BRAIN",
                SeriesDescription="T2")  # fmt: skip
    site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                     destination={"folder": str(tmp_path / "unused")})  # fmt: skip
    site.write(routes=[
        {"name": "no dose", "when": {"series_description": {"regex": "(?i)dose"}}, "drop": True},
        {"name": "mr", "when": {"modality": "MR"}, "profile": str(FEDERATION)},
    ])  # fmt: skip
    out = tmp_path / "out"
    run = run_cli("anonymize", tmp_path / "in", out, "-c", site.config, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "dropped by a rule: 2" in run.stdout + run.stderr
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == len(mr)
    assert all(str(dcmread(p).PatientID).isdigit() for p in written)  # the script's @hashptid
    assert leaks_in(written, identifiers(patient, ct + dose + mr)) == []


def test_the_shipped_configurations_commented_routes_are_valid(tmp_path: Path) -> None:
    """conf/gateway.yaml shows destinations, routes and source commented out: uncommented,
    they must load (a sysadmin starts from them)."""
    shipped = Path(__file__).resolve().parents[1] / "conf" / "gateway.yaml"
    lines, inside = [], False
    for line in shipped.read_text(encoding="utf-8").splitlines():
        inside = line.startswith(("# destinations:", "# routes:", "# source:")) or (
            inside and line.startswith("#  ")
        )
        lines.append(line[2:] if inside else line)
    copy = tmp_path / "gateway.yaml"  # its files are not looked at: check_files=False
    copy.write_text("\n".join(lines), encoding="utf-8")
    config = load_config(copy, check_files=False)
    assert [route.name for route in config.routes] == [
        "no dose reports", "ultrasound to its own archive", "ct to both",
    ]  # fmt: skip
    assert set(config.destinations) == {"us-archive"}
    assert config.source is not None and config.source.retrieve == "move"


def test_a_rule_under_a_ctp_script_with_a_pseudonym_table_is_refused(tmp_path: Path) -> None:
    """The script writes Patient ID itself; a trial table could not be honoured there."""
    table = tmp_path / "trial.csv"
    table.write_text("patient_id,pseudonym\nMRN0000001,TRIAL-001\n", encoding="utf-8")
    site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                     destination={"folder": str(tmp_path / "out")})  # fmt: skip
    site.write(
        deid={"pseudonym_table": str(table)},
        routes=[{"name": "mr", "when": {"modality": "MR"}, "profile": str(FEDERATION)}],
    )
    run = run_cli("check-config", "-c", site.config, cwd=tmp_path)
    assert run.returncode == 2
    assert "'deid.pseudonym_table': cannot be used with a CTP script" in run.stderr
    assert "MRN0000001" not in run.stdout + run.stderr


@pytestmark_e2e
def test_files_for_a_destination_no_longer_configured_are_held_not_dropped(
    tmp_path: Path,
) -> None:
    """The configuration lost a destination while a round still had files for it: the
    round waits in the failed state (an operator's decision), its files are not deleted."""
    _patient, ct = study(tmp_path, 76)
    site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                     destination={"folder": str(tmp_path / "main")}, quiet_seconds=0.5)  # fmt: skip
    site.write(
        destinations={"research": ae_destination(free_port(), "RESEARCH")},  # nobody there
        routes=[{"name": "both", "destinations": ["default", "research"]}],
    )
    with running_gateway(site) as gateway:
        assert storescu(site.listen_port, ct).acknowledged == ct
        wait_until(lambda: gateway.metric("forward_retries") >= 1, timeout=30,
                   what="the research archive's failure")  # fmt: skip
    settings = dict(site.settings)
    del settings["destinations"], settings["routes"]
    site.settings = settings
    site.write()
    with running_gateway(site) as gateway:
        wait_until(lambda: gateway.metric("forward_failed_studies") == 1, timeout=30,
                   what="the round held in the failed state")  # fmt: skip
    listing = site.quarantine("list").stdout
    assert "research: no destination of that name is configured now" in listing
    held = list((site.storage / "outbox").rglob("to-research/*.dcm"))
    assert len(held) == len(ct)
    assert len(list((tmp_path / "main").rglob("*.dcm"))) == len(ct)
