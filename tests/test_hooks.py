"""After-study hooks with real processes and a real HTTP server on loopback.

A hook runs off the caller's thread, is audited once per run, and is given pseudonymous data
only: the tests read back what the command and the server received, and the audit file.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import PLANTED_NAME, PLANTED_PATIENT_ID
from hook_helpers import (
    EVENT_FIELDS,
    HOOK_FIELDS,
    ROOT,
    UID,
    Server,
    event,
    free_port,
    gone,
    python_hook,
    records,
    run_hooks,
    serve,
)

from gateway.config.schema import AfterStudyHook
from gateway.keys.dev_certificates import make_dev_certificates
from gateway.service.hooks import OUTPUT_LIMIT, AfterStudyHooks, StudyForwarded
from gateway.stores.audit import AuditLog


@pytest.fixture
def server() -> Iterator[Server]:
    with serve() as state:
        yield state


# --- commands ----------------------------------------------------------------------------

DUMP_ENV = """
    import json, os, sys
    out = os.path.join(os.path.dirname(sys.argv[0]), "received.json")
    with open(out, "w") as f:
        json.dump({"env": dict(os.environ), "argv": sys.argv[1:],
                   "stdin": sys.stdin.read() if sys.stdin else None}, f)
    print("linked", os.environ["DICOM_GATEWAY_STUDY_UID"])
    print("a note on stderr", file=sys.stderr)
"""


def test_a_command_gets_the_event_and_its_status_and_output_are_audited(tmp_path: Path) -> None:
    argv = (*python_hook(tmp_path, DUMP_ENV), "--site", "A")
    report = str(tmp_path / "run-report.json")
    [record] = run_hooks(AfterStudyHook(command=argv), tmp_path, event(report=report))

    received = json.loads((tmp_path / "received.json").read_text())
    env = received["env"]
    assert received["argv"] == ["--site", "A"]
    assert received["stdin"] == ""  # /dev/null
    assert env["DICOM_GATEWAY_STUDY_UID"] == UID
    assert env["DICOM_GATEWAY_STUDY_UIDS"] == UID
    assert env["DICOM_GATEWAY_STUDY_HASH"] == "0123456789abcdef"
    assert env["DICOM_GATEWAY_ROUND"] == "7"
    assert env["DICOM_GATEWAY_INSTANCES_OUT"] == "12"
    assert env["DICOM_GATEWAY_INSTANCES_QUARANTINED"] == "1"
    assert env["DICOM_GATEWAY_DESTINATION"] == "default"
    assert env["DICOM_GATEWAY_RESULT"] == "forwarded"
    assert env["DICOM_GATEWAY_REPORT"] == report
    assert json.loads(env["DICOM_GATEWAY_EVENT_JSON"]) == {
        "event": "after_study",
        "pseudo_study_uids": [UID],
        "study_hash": "0123456789abcdef",
        "round": 7,
        "instances_out": 12,
        "instances_quarantined": 1,
        "destination": "default",
        "result": "forwarded",
        "report": report,
    }

    assert record["hook"] == "command"
    assert record["target"] == Path(sys.executable).name  # the command's name, not its path
    assert record["outcome"] == "succeeded"
    assert record["exit_status"] == 0
    assert record["error"] is None
    assert f"linked {UID}" in record["output"] and "a note on stderr" in record["output"]
    assert record["pseudo_study_uids"] == [UID] and record["round"] == 7
    assert record["report"] == report
    assert 0 <= record["seconds"] < 20


def test_a_failing_command_is_audited_as_failed_and_the_next_study_runs(tmp_path: Path) -> None:
    argv = python_hook(tmp_path, "import sys\nprint('database locked')\nsys.exit(3)\n")
    done = run_hooks(AfterStudyHook(command=argv), tmp_path, event(1), event(2))
    assert sorted(record["round"] for record in done) == [1, 2]
    for record in done:
        assert record["outcome"] == "failed"
        assert record["exit_status"] == 3
        assert record["error"] == "exit status 3"
        assert record["output"].strip() == "database locked"


def test_what_a_command_leaves_running_is_killed_when_it_exits(tmp_path: Path) -> None:
    pids = tmp_path / "child.pid"
    argv = python_hook(
        tmp_path,
        f"""
        import subprocess
        child = subprocess.Popen(["sleep", "60"])  # holds the output pipe open
        open({str(pids)!r}, "w").write(str(child.pid))
        print("done")
        """,
    )
    [record] = run_hooks(AfterStudyHook(command=argv, timeout_seconds=30), tmp_path)
    assert record["outcome"] == "succeeded" and record["output"].strip() == "done"
    assert record["seconds"] < 10  # not held until the timeout by the child's pipe
    assert gone(int(pids.read_text()))


def test_a_hanging_command_and_what_it_started_are_killed_at_the_timeout(tmp_path: Path) -> None:
    pids = tmp_path / "child.pid"
    argv = python_hook(
        tmp_path,
        f"""
        import subprocess, sys, time
        child = subprocess.Popen(["sleep", "60"])
        open({str(pids)!r}, "w").write(str(child.pid))
        print("started", flush=True)
        time.sleep(60)
        """,
    )
    start = time.monotonic()
    [record] = run_hooks(AfterStudyHook(command=argv, timeout_seconds=1), tmp_path)
    assert time.monotonic() - start < 10
    assert record["outcome"] == "timed_out"
    assert record["exit_status"] == -9  # SIGKILL
    assert record["output"].strip() == "started"
    assert 0.9 <= record["seconds"] < 5
    child = int(pids.read_text())
    assert gone(child), "the hook's own child outlived the timeout"


def test_a_command_that_does_not_exist_is_audited_as_failed(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-hook")
    [record] = run_hooks(AfterStudyHook(command=(missing, "x")), tmp_path)
    assert record["outcome"] == "not_started"
    assert record["exit_status"] is None
    assert record["target"] == "no-such-hook"
    assert record["error"] == "cannot start: FileNotFoundError: No such file or directory"


def test_the_output_kept_is_the_last_four_kib(tmp_path: Path) -> None:
    argv = python_hook(
        tmp_path, "import sys\nsys.stdout.write('é' * 100000)\nsys.stdout.write('THE END')\n"
    )
    [record] = run_hooks(AfterStudyHook(command=argv), tmp_path)
    assert record["outcome"] == "succeeded"
    assert record["output"].endswith("éTHE END")
    assert len(record["output"].encode("utf-8")) <= OUTPUT_LIMIT
    assert "\ufffd" not in record["output"]  # the character the cut split is left out


# --- HTTP ----------------------------------------------------------------------------------


def test_the_post_arrives_with_the_json(tmp_path: Path, server: Server) -> None:
    url = server.url + "?token=s3cr3t-token"
    [record] = run_hooks(AfterStudyHook(url=url), tmp_path, event(round_id=9))
    [request] = server.received
    assert request.path == "/studies?token=s3cr3t-token"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == event(round_id=9).as_json()
    assert record["hook"] == "url"
    assert record["target"] == urlsplit(server.url).netloc  # 127.0.0.1:PORT
    assert record["outcome"] == "succeeded"
    assert record["http_status"] == 200
    assert record["output"] == "linked"
    assert "s3cr3t" not in (tmp_path / "audit.jsonl").read_text()  # host only, no query


def test_an_error_status_is_audited_as_failed(tmp_path: Path, server: Server) -> None:
    server.status, server.answer = 500, b"database down"
    [record] = run_hooks(AfterStudyHook(url=server.url), tmp_path)
    assert record["outcome"] == "failed"
    assert record["http_status"] == 500
    assert record["output"] == "database down"


def test_a_redirect_is_not_followed(tmp_path: Path, server: Server) -> None:
    server.status, server.headers = 302, {"Location": "http://127.0.0.1:1/elsewhere"}
    [record] = run_hooks(AfterStudyHook(url=server.url), tmp_path)
    assert record["outcome"] == "failed"
    assert record["http_status"] == 302
    assert len(server.received) == 1


def test_a_dead_url_is_audited_as_failed(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/studies"
    [record] = run_hooks(AfterStudyHook(url=url), tmp_path)
    assert record["outcome"] == "failed"
    assert record["http_status"] is None
    assert "Connection refused" in record["error"]


def test_a_url_that_does_not_answer_times_out(tmp_path: Path, server: Server) -> None:
    server.hold.clear()
    [record] = run_hooks(AfterStudyHook(url=server.url, timeout_seconds=1), tmp_path)
    assert record["outcome"] == "timed_out"
    assert 0.9 <= record["seconds"] < 5


def test_https_is_verified_against_the_system_trust_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = tmp_path / "certs"
    make_dev_certificates(certs)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server.pem", certs / "server-key.pem")
    with serve(context) as https:
        # The dev CA is in no trust store: refused, nothing arrives.
        [refused] = run_hooks(AfterStudyHook(url=https.url), tmp_path / "untrusted")
        assert refused["outcome"] == "failed"
        assert "SSLCertVerificationError" in refused["error"]
        assert https.received == []
        # Made the trust store (OpenSSL's SSL_CERT_FILE), the same server is accepted.
        monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.pem"))
        [accepted] = run_hooks(AfterStudyHook(url=https.url), tmp_path / "trusted")
        assert accepted["outcome"] == "succeeded"
        assert len(https.received) == 1


# --- never in the way -----------------------------------------------------------------------


def test_study_forwarded_returns_at_once_while_a_hook_hangs(tmp_path: Path, server: Server) -> None:
    server.hold.clear()
    argv = python_hook(tmp_path, "import time\ntime.sleep(60)\n")
    audit = AuditLog(tmp_path / "audit.jsonl")
    hooks = AfterStudyHooks(AfterStudyHook(command=argv, url=server.url), audit, threads=2)
    start = time.monotonic()
    for n in range(5):
        hooks.study_forwarded(event(round_id=n))
    assert time.monotonic() - start < 0.5
    assert records(audit) == []
    # Stopping: the running ones are killed after the grace period, the waiting ones are
    # audited as not run; one record per hook and event.
    server.hold.set()
    hooks.shutdown(1.0)
    hooks.study_forwarded(event(round_id=99))  # after shutdown: audited, not run
    done = records(audit)
    assert len(done) == 12
    by_round: dict[int, list[str]] = {}
    for record in done:
        by_round.setdefault(record["round"], []).append(record["outcome"])
    assert by_round[99] == ["not_run", "not_run"]
    outcomes = [o for r in range(5) for o in by_round[r]]
    assert "killed" in outcomes and "not_run" in outcomes
    assert set(outcomes) <= {"killed", "not_run", "succeeded"}


def test_a_full_queue_is_audited_rather_than_held(tmp_path: Path) -> None:
    argv = python_hook(tmp_path, "import time\ntime.sleep(60)\n")
    audit = AuditLog(tmp_path / "audit.jsonl")
    hooks = AfterStudyHooks(AfterStudyHook(command=argv), audit, threads=1, max_pending=2)
    for n in range(6):
        hooks.study_forwarded(event(round_id=n))
    full = [r for r in records(audit) if r["error"] == "too many hooks waiting"]
    hooks.shutdown(0.5)
    assert len(full) >= 3 and {r["outcome"] for r in full} == {"not_run"}
    assert len(records(audit)) == 6


def test_without_a_hook_nothing_runs(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    before = threading.active_count()
    AfterStudyHooks(AfterStudyHook(command=("true",)), audit).shutdown(1)
    assert threading.active_count() == before  # threads start at the first event
    hooks = AfterStudyHooks(None, audit)
    hooks.study_forwarded(event())
    hooks.shutdown(1)
    assert not hooks.configured
    assert threading.active_count() == before
    assert not audit.path.exists()


# --- pseudonymous data only -----------------------------------------------------------------


def test_no_original_patient_data_can_reach_a_hook(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The event type has no field an identifier could travel in ...
    assert {f.name for f in fields(StudyForwarded)} == EVENT_FIELDS
    for bad in (
        {"pseudo_study_uids": (PLANTED_NAME,)},
        {"study_hash": PLANTED_PATIENT_ID},
        {"round": "7"},
        {"destination": f"default\n{PLANTED_NAME}"},
    ):
        with pytest.raises(ValueError):
            event(**bad)
    # ... and the gateway's own environment (which may hold anything) stays behind.
    monkeypatch.setenv("PATIENT_NAME", PLANTED_NAME)
    monkeypatch.setenv("DICOM_GATEWAY_PATIENT_ID", PLANTED_PATIENT_ID)
    argv = python_hook(tmp_path, DUMP_ENV)
    done = run_hooks(AfterStudyHook(command=argv, url=server.url), tmp_path)

    env = json.loads((tmp_path / "received.json").read_text())["env"]
    expected = {"PATH", "LANG", "LC_ALL"} | {
        "DICOM_GATEWAY_" + name
        for name in (
            "EVENT", "STUDY_UID", "STUDY_UIDS", "STUDY_HASH", "ROUND", "INSTANCES_OUT",
            "INSTANCES_QUARANTINED", "DESTINATION", "RESULT", "REPORT", "EVENT_JSON",
        )
    }  # fmt: skip
    assert set(env) - {"PWD", "SHLVL", "_"} == expected  # what a shell would add
    [request] = server.received
    assert set(json.loads(request.body)) == EVENT_FIELDS | {"event"}
    assert sorted(r["hook"] for r in done) == ["command", "url"]
    for record in done:
        status = "exit_status" if record["hook"] == "command" else "http_status"
        assert set(record) == {"ts", "event", status} | HOOK_FIELDS | EVENT_FIELDS
    seen = (tmp_path / "audit.jsonl").read_text() + json.dumps(env) + request.body.decode()
    for planted in (PLANTED_NAME, PLANTED_PATIENT_ID):
        assert planted not in seen


# --- the shipped example ----------------------------------------------------------------------


def test_the_commented_example_in_gateway_yaml_is_a_valid_hook() -> None:
    text = (ROOT / "conf" / "gateway.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text).get("hooks") is None  # shipped commented out
    lines = text.splitlines()
    start = next((n for n, line in enumerate(lines) if line.startswith("# hooks:")), None)
    assert start is not None, "conf/gateway.yaml has no commented `# hooks:` example"
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        block.append(line)
    example = "\n".join(line[2:] for line in block)
    hook = AfterStudyHook.model_validate(yaml.safe_load(example)["hooks"]["after_study"])
    assert hook.command and hook.url and hook.timeout_seconds == 30
