"""Several gateways share one sealed mapping and one CTP @integer table in PostgreSQL.

A real PostgreSQL (tests/pg_peer.py: an initdb cluster on a free loopback port, run as the
`postgres` user) and real `dicom-gateway run` processes with the same site secret, the
same re-identification public key and the same `mapping.url`, each with its own storage
folder and ports, forwarding to one DCMTK storescp (`--fork`, so both can connect at once).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from peers import run_storescp
from pg_peer import Postgres, run_postgres
from pydicom import dcmread
from service_harness import (
    Gateway,
    Site,
    ae_destination,
    create_secret,
    leaks_in,
    make_site,
    received_files,
    run_cli,
    running_gateway,
    start_gateway,
    stop_process,
    storescu,
    wait_until,
)

from gateway.deid.ctp.profile import INTEGER_TABLE_FILE, load_script
from gateway.deid.pseudonyms import Pseudonyms
from gateway.keys.reid_keys import load_private_key
from gateway.pipeline.files import EngineSettings, build_engine_and_mapping
from gateway.stores.mapping_postgres import SCHEMA_VERSION, PostgresMapping
from gateway.stores.mapping_reader import MappingReader
from gateway.stores.mapping_records import MappingError, MappingUnavailableError
from gateway.tools.synthetic import make_ct_study, random_patient

SIZE = 32  # pixels a side: small instances, the mapping is what is tested
ARRIVE_SECONDS = 60


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    with run_postgres(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site secret and the re-identification key pair every gateway here shares."""
    folder = tmp_path_factory.mktemp("keys")
    create_secret(folder)
    return folder


def shared_site(root: Path, keys: Path, url: str, archive_port: int, quiet: float = 1) -> Site:
    site = make_site(
        root, keys / "site-secret.key", destination=ae_destination(archive_port),
        quiet_seconds=quiet,
    )  # fmt: skip
    site.write(
        keys={"secret": str(keys / "site-secret.key"),
              "reid_public_key": str(keys / "reid-public.pem")},
        mapping={"url": url},
    )  # fmt: skip
    return site


def originals_of(paths: list[Path]) -> list[str]:
    """Every identifying value of a synthetic study's files, UIDs included."""
    values: set[str] = set()
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        values.update((ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
        values.update(str(ds.get(k, "")) for k in ("PatientID", "AccessionNumber"))
    return sorted(v for v in values if v)


def database_files(pg: Postgres) -> list[Path]:
    """The cluster's table files and write-ahead log, after a checkpoint wrote everything
    committed to the tables."""
    pg.psql("CHECKPOINT")
    found = [*(pg.data_dir / "base").rglob("*"), *(pg.data_dir / "pg_wal").rglob("*")]
    return [p for p in found if p.is_file()]


@contextmanager
def gateways_running(*sites: Site) -> Iterator[list[Gateway]]:
    """`dicom-gateway run` for each site, started side by side (their start-ups overlap)
    and stopped side by side; each one's log tail is printed when the test fails."""
    with ThreadPoolExecutor(len(sites)) as pool:
        starting = [pool.submit(start_gateway, site) for site in sites]
    gateways = [f.result() for f in starting if f.exception() is None]
    try:
        for future in starting:
            future.result()  # a gateway that did not start fails the test here
        yield gateways
    except BaseException:
        for gateway in gateways:
            print(f"--- {gateway.site.root.name}: gateway log, last lines ---")
            print("\n".join(gateway.log().splitlines()[-60:]))
        raise
    finally:
        with ThreadPoolExecutor(max(len(gateways), 1)) as pool:
            list(pool.map(lambda gateway: gateway.stop(), gateways))


def test_two_gateways_forward_halves_of_a_study_as_one_and_reidentify_finds_it_whole(
    tmp_path: Path, pg: Postgres, keys: Path
) -> None:
    patient = random_patient(1901)
    study = make_ct_study(
        tmp_path / "in", instances=8, rows=SIZE, columns=SIZE, patient=patient, seed=1901
    )
    secret_values = [*patient.identifying_values(), *originals_of(study)]
    archive = tmp_path / "archive"
    with run_storescp(archive, extra_args=["--fork"]) as scp:
        first = shared_site(tmp_path / "gw-a", keys, pg.url, scp.port)
        second = shared_site(tmp_path / "gw-b", keys, pg.url, scp.port)
        with gateways_running(first, second) as (gw_a, gw_b):
            assert len(storescu(first.listen_port, study[:4]).acknowledged) == 4
            assert len(storescu(second.listen_port, study[4:]).acknowledged) == 4
            wait_until(
                lambda: len(received_files(archive)) >= 8,
                timeout=ARRIVE_SECONDS, what="both halves in the archive",
            )  # fmt: skip
            logs = gw_a.log() + gw_b.log()
    received = received_files(archive)
    assert len({r.sop_instance_uid for r in received}) == 8
    assert len({r.study_uid for r in received}) == 1  # one pseudonymous study, not two
    assert len({(r.patient_id, r.patient_name) for r in received}) == 1
    assert {r.study_uid for r in received} != {dcmread(study[0]).StudyInstanceUID}
    assert leaks_in([r.path for r in received], secret_values) == []
    # The mapping is in the database only, sealed: no originals in its files or the logs.
    assert not (first.storage / "mapping.db").exists()
    assert not (second.storage / "mapping.db").exists()
    stored = database_files(pg)
    assert leaks_in(stored, secret_values) == []
    assert leaks_in(stored, [received[0].study_uid])  # the search does see what is stored
    assert pg.password not in logs
    assert [v for v in secret_values if v.lower() in logs.lower()] == []

    # A gateway's configuration, and an officer's that names only the database, find the
    # records both gateways wrote.
    officer = tmp_path / "officer"
    officer.mkdir()
    (officer / "reid.yaml").write_text(
        f"site_id: OFFICER\nstorage_dir: var\nkeys: {{secret: /nonexistent}}\n"
        f"mapping: {{url: '{pg.url}'}}\n",
        encoding="utf-8",
    )
    pseudo_uid = received[0].study_uid
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(
            lambda config: run_cli(
                "reidentify", "--private-key", keys / "reid-private.pem", "-c", config,
                "--study", pseudo_uid, cwd=config.parent,
            ),
            [first.config, officer / "reid.yaml"],
        ))  # fmt: skip
    for answer in answers:
        assert answer.returncode == 0, answer.stderr
        text = answer.stdout
        for path in study:
            ds = dcmread(path, stop_before_pixels=True)
            assert ds.SOPInstanceUID in text and ds.SeriesInstanceUID in text
        assert dcmread(study[0]).StudyInstanceUID in text
        assert patient.patient_id in text and patient.accession in text
    audit = (officer / "var" / "audit.jsonl").read_text(encoding="utf-8")
    assert pg.password not in audit
    assert json.loads(audit.splitlines()[-1])["outcome"] == "answered"


def test_a_gateway_killed_mid_study_loses_nothing_it_acknowledged(
    tmp_path: Path, pg: Postgres, keys: Path
) -> None:
    patient = random_patient(1902)
    study = make_ct_study(
        tmp_path / "in", instances=10, rows=SIZE, columns=SIZE, patient=patient, seed=1902
    )
    secret_values = [*patient.identifying_values(), *originals_of(study)]
    archive = tmp_path / "archive"
    with run_storescp(archive, extra_args=["--fork"]) as scp:
        first = shared_site(tmp_path / "gw-a", keys, pg.url, scp.port)
        second = shared_site(tmp_path / "gw-b", keys, pg.url, scp.port)
        with gateways_running(first, second) as (killed, _):
            acknowledged = storescu(first.listen_port, study[:6]).acknowledged
            assert len(acknowledged) == 6
            time.sleep(1.1)  # the quiet period: its workers are sealing and writing
            stop_process(killed.process, sig=signal.SIGKILL, timeout=5)
            assert len(storescu(second.listen_port, study[6:]).acknowledged) == 4
            with running_gateway(first):
                wait_until(
                    lambda: len({r.sop_instance_uid for r in received_files(archive)}) >= 10,
                    timeout=ARRIVE_SECONDS, what="every acknowledged instance in the archive",
                )  # fmt: skip
    received = received_files(archive)
    assert len({r.sop_instance_uid for r in received}) == 10
    assert len({r.study_uid for r in received}) == 1
    assert leaks_in([r.path for r in received], secret_values) == []
    reader = MappingReader(
        PostgresMapping(pg.url, writing=False), load_private_key(keys / "reid-private.pem")
    )
    with reader:
        found = reader.study(received[0].study_uid)
    originals = {i["SOPInstanceUID"] for series in found["series"] for i in series["instances"]}
    assert originals == {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in study}


# -- the CTP @integer table ---------------------------------------------------------------------

INTEGER_SCRIPT = (
    '<script>\n<e en="T" t="00100020" n="PatientID">@integer(this,ptid,4)</e>\n</script>\n'
)
INTEGER_SECRET = b"shared-integer-table-test-secret"


def _numbers(args: tuple[str, str, str, list[str]]) -> list[str]:
    """One "gateway" (its own storage folder) numbering patients in the shared table."""
    script, storage, url, patients = args
    engine = load_script(Path(script), None).build_engine(
        Pseudonyms(INTEGER_SECRET, "SITE"), Path(storage)
    )
    engine.share_integers(PostgresMapping(url))
    return [engine.patient_identity(p).pseudonym for p in patients]


def test_integer_tables_in_many_processes_give_each_patient_one_number(
    tmp_path: Path, pg: Postgres
) -> None:
    script = tmp_path / "integers.script"
    script.write_text(INTEGER_SCRIPT, encoding="utf-8")
    patients = [f"PID-INT-{i:03d}" for i in range(30)]
    orders = [patients, patients[::-1], patients[1::2] + patients[::2], patients[7:] + patients[:7]]
    jobs = [(str(script), str(tmp_path / f"gw{i}"), pg.url, o) for i, o in enumerate(orders)]
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        results = pool.map(_numbers, jobs, chunksize=1)
    given = [dict(zip(o, r, strict=True)) for o, r in zip(orders, results, strict=True)]
    assert given[0] == given[1] == given[2] == given[3]  # one number per patient everywhere
    assert sorted(given[0].values()) == [f"{n:04d}" for n in range(1, 31)]  # none twice
    assert not any((tmp_path / f"gw{i}" / INTEGER_TABLE_FILE).exists() for i in range(4))
    with psycopg.connect(pg.url) as connection:
        keys = [row[0] for row in connection.execute("SELECT key FROM ctp_integers")]
    assert len(keys) == 30 and not any("PID-INT" in key or "INT-0" in key for key in keys)
    assert leaks_in(database_files(pg), patients) == []


def _number_in_child(args: tuple[PostgresMapping, str]) -> int:
    store, key = args
    return store.number("forked", key)


def test_a_forked_worker_opens_its_own_connection(pg: Postgres) -> None:
    store = PostgresMapping(pg.url)
    assert store.number("forked", "parent-key") == 1
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map(_number_in_child, [(store, f"child-{i}") for i in range(4)])
    assert sorted(children) == [2, 3, 4, 5]
    assert store.number("forked", "parent-key") == 1  # the parent's session still works
    assert store.number("forked", "after") == 6
    store.close()


# -- the database down ---------------------------------------------------------------------------


def test_the_database_down_holds_instances_says_so_and_loses_nothing(
    tmp_path: Path, keys: Path
) -> None:
    patient = random_patient(1903)
    study = make_ct_study(
        tmp_path / "in", instances=3, rows=SIZE, columns=SIZE, patient=patient, seed=1903
    )
    secret_values = [*patient.identifying_values(), *originals_of(study)]
    archive = tmp_path / "archive"
    with run_postgres(tmp_path / "pg") as down, run_storescp(archive) as scp:
        site = shared_site(tmp_path / "gw", keys, down.url, scp.port)
        shown = f"mapping.url (postgresql://{down.user}@127.0.0.1:{down.port}/{down.database})"
        with running_gateway(site) as gateway, ThreadPoolExecutor(2) as pool:
            down.stop()
            checking = pool.submit(run_cli, "check-config", "-c", site.config, cwd=site.root)
            asking = pool.submit(
                run_cli, "reidentify", "--private-key", keys / "reid-private.pem",
                "-c", site.config, "--patient", "ANY", cwd=site.root,
            )  # fmt: skip
            assert len(storescu(site.listen_port, study).acknowledged) == 3
            wait_until(
                lambda: f"{shown}: cannot connect" in gateway.log(),
                timeout=30, what="the failed round's log line",
            )  # fmt: skip
            checked, asked = checking.result(timeout=120), asking.result(timeout=120)
            assert checked.returncode != 0 and shown in checked.stdout + checked.stderr
            assert asked.returncode == 1 and shown in asked.stderr
            assert received_files(archive) == []  # nothing leaves without its mapping record
            down.start_again()
            listed = site.quarantine("list").stdout  # it waited in the spool, not quarantined
            assert "0 quarantined instances" in listed and "0 studies held" in listed
            wait_until(
                lambda: len(received_files(archive)) >= 3,
                timeout=ARRIVE_SECONDS, what="the held instances once the database is back",
            )  # fmt: skip
            outputs = gateway.log() + checked.stdout + checked.stderr + asked.stderr + listed
    assert down.password not in outputs
    received = received_files(archive)
    assert len({r.sop_instance_uid for r in received}) == 3
    assert leaks_in([r.path for r in received], secret_values) == []
    assert [v for v in secret_values if v.lower() in outputs.lower()] == []


# -- the connection: schema, errors, TLS ----------------------------------------------------------


def _prepare(url: str) -> int:
    PostgresMapping(url).prepare()
    return SCHEMA_VERSION


def test_gateways_starting_at_once_create_the_schema_once(pg: Postgres) -> None:
    pg.psql(f"CREATE DATABASE fresh OWNER {pg.user}")
    url = pg.url_with(database="fresh")
    with multiprocessing.get_context("fork").Pool(4) as pool:
        assert pool.map(_prepare, [url] * 8, chunksize=1) == [SCHEMA_VERSION] * 8
    with psycopg.connect(url, autocommit=True) as connection:
        versions = connection.execute("SELECT version FROM schema_version").fetchall()
        assert versions == [(SCHEMA_VERSION,)]
        connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (99,))
    with pytest.raises(MappingError, match="newer than this gateway's"):
        PostgresMapping(url).prepare()


def test_a_wrong_password_is_a_clear_error_that_never_shows_it(pg: Postgres) -> None:
    with pytest.raises(MappingUnavailableError) as caught:
        PostgresMapping(pg.url_with(password="not-the-password-Zq")).prepare()
    text = str(caught.value)
    assert text.startswith(f"mapping.url (postgresql://{pg.user}@127.0.0.1:{pg.port}/mapping)")
    assert "password authentication failed" in text and "not-the-password" not in text


def test_tls_parameters_in_the_url_reach_libpq(tmp_path: Path, pg: Postgres) -> None:
    for name in ("certs", "other"):
        assert run_cli("certs", "dev", "--dir", name, cwd=tmp_path).returncode == 0
    for name in ("server.pem", "server-key.pem"):
        shutil.copyfile(tmp_path / "certs" / name, pg.data_dir / name)
        shutil.chown(pg.data_dir / name, "postgres", "postgres")
        (pg.data_dir / name).chmod(0o600)
    pg.psql("ALTER SYSTEM SET ssl_cert_file = 'server.pem'")
    pg.psql("ALTER SYSTEM SET ssl_key_file = 'server-key.pem'")
    pg.psql("ALTER SYSTEM SET ssl = on")
    pg.psql("SELECT pg_reload_conf()")
    verified = f"{pg.url}?sslmode=verify-full&sslrootcert={tmp_path / 'certs' / 'ca.pem'}"
    store = PostgresMapping(verified)
    wait_until(lambda: pg.psql("SHOW ssl").strip() == "on", timeout=10, what="ssl on")
    store.prepare()  # the schema exists: this is the connection
    encrypted = pg.psql(
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)"
        f" WHERE ssl AND usename = '{pg.user}'"
    )
    store.close()
    assert int(encrypted) >= 1
    stranger = f"{pg.url}?sslmode=verify-full&sslrootcert={tmp_path / 'other' / 'ca.pem'}"
    with pytest.raises(MappingUnavailableError, match=r"^mapping\.url \(postgresql://"):
        PostgresMapping(stranger).prepare()  # a server our CA did not sign is refused


def test_a_worker_built_with_mapping_url_writes_the_database_not_files(
    tmp_path: Path, pg: Postgres, keys: Path
) -> None:
    script = tmp_path / "integers.script"
    script.write_text(INTEGER_SCRIPT.replace("ptid", "wired"), encoding="utf-8")
    settings = EngineSettings(
        load_script(script, None), INTEGER_SECRET, "SITE", tmp_path / "var",
        keys / "reid-public.pem", mapping_url=pg.url,
    )  # fmt: skip
    engine, mapping = build_engine_and_mapping(settings)
    assert mapping is not None and mapping.shared is not None
    assert engine.patient_identity("PID-WIRED-1").pseudonym == "0001"  # type: ignore[union-attr]
    mapping.record("study", "2.25.424242", "1.2.3.4.5.WIRED")
    mapping.close()
    with psycopg.connect(pg.url) as connection:
        assert connection.execute("SELECT count(*) FROM ctp_integers WHERE key_type = 'wired'"
                                  " AND value = 1").fetchone() == (1,)  # fmt: skip
        row = connection.execute("SELECT sealed FROM mapping WHERE pseudonym = '2.25.424242'")
        assert b"WIRED" not in bytes(row.fetchone()[0])  # type: ignore[index]
    assert not (tmp_path / "var").exists() or not any((tmp_path / "var").iterdir())


def test_a_connection_the_server_dropped_is_reopened_at_once(pg: Postgres) -> None:
    store = PostgresMapping(pg.url)
    assert store.number("restart", "restart-before") == 1
    pg.stop()
    pg.start_again()  # every session of the old server is gone
    assert store.number("restart", "restart-after") == 2  # no error: a new connection, same work
    store.close()
