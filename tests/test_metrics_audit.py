"""The /healthz and /metrics endpoints as a monitoring system sees them, and the audit log."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.base.metrics import Metrics, MetricsServer
from gateway.stores.audit import AuditLog

ROOT = Path(__file__).resolve().parents[1]


def get(server: MetricsServer, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET on the local server."""
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def serve() -> Iterator[Callable[[Metrics, Callable[[], bool]], MetricsServer]]:
    servers: list[MetricsServer] = []

    def _serve(metrics: Metrics, healthy: Callable[[], bool]) -> MetricsServer:
        server = metrics.start_http("127.0.0.1", 0, healthy)
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.shutdown()


# --- /healthz and /metrics -------------------------------------------------------------


def test_healthz_follows_the_health_check(serve: Callable[..., MetricsServer]) -> None:
    state = {"healthy": True}
    server = serve(Metrics(), lambda: state["healthy"])
    assert server.port != 0

    assert get(server, "/healthz")[::2] == (200, "ok\n")
    state["healthy"] = False
    assert get(server, "/healthz")[0] == 503
    state["healthy"] = True
    assert get(server, "/healthz")[0] == 200


def test_a_health_check_that_raises_is_unhealthy(serve: Callable[..., MetricsServer]) -> None:
    def broken() -> bool:
        raise OSError("disk gone")

    server = serve(Metrics(), broken)
    assert get(server, "/healthz")[0] == 503


def test_unknown_path_is_not_found(serve: Callable[..., MetricsServer]) -> None:
    server = serve(Metrics(), lambda: True)
    assert get(server, "/")[0] == 404


def test_metrics_show_the_counters_after_increments(serve: Callable[..., MetricsServer]) -> None:
    metrics = Metrics()
    metrics.measure_queue_depth(lambda: 7)
    server = serve(metrics, lambda: True)
    metrics.instances_received.inc(3)
    metrics.studies_completed.inc()
    metrics.studies_forwarded.inc()
    metrics.instances_quarantined.inc(2)
    metrics.failures.labels(stage="receive").inc()
    metrics.forward_retries.inc(4)
    metrics.processing_seconds.observe(1.5)

    status, content_type, body = get(server, "/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    lines = set(body.splitlines())
    assert "dicom_gateway_instances_received_total 3.0" in lines
    assert "dicom_gateway_studies_completed_total 1.0" in lines
    assert "dicom_gateway_studies_forwarded_total 1.0" in lines
    assert "dicom_gateway_instances_quarantined_total 2.0" in lines
    assert 'dicom_gateway_failures_total{stage="receive"} 1.0' in lines
    assert "dicom_gateway_forward_retries_total 4.0" in lines
    assert "dicom_gateway_queue_depth 7.0" in lines
    assert "dicom_gateway_processing_seconds_count 1.0" in lines
    assert 'dicom_gateway_processing_seconds_bucket{le="2.5"} 1.0' in lines
    # Nothing from prometheus_client's global registry (process, platform collectors).
    assert all(line.startswith(("#", "dicom_gateway_")) for line in body.splitlines() if line), body


def test_processing_retries_and_held_studies_are_shown() -> None:
    metrics = Metrics()
    metrics.process_retries.inc(3)
    metrics.measure(metrics.process_held_studies, lambda: 2)
    lines = set(metrics.render().decode().splitlines())
    assert "dicom_gateway_process_retries_total 3.0" in lines
    assert "dicom_gateway_process_held_studies 2.0" in lines


def test_queue_depth_is_read_at_scrape_time(serve: Callable[..., MetricsServer]) -> None:
    depth = {"now": 1}
    metrics = Metrics()
    metrics.measure_queue_depth(lambda: depth["now"])
    server = serve(metrics, lambda: True)

    assert "dicom_gateway_queue_depth 1.0" in get(server, "/metrics")[2]
    depth["now"] = 42
    assert "dicom_gateway_queue_depth 42.0" in get(server, "/metrics")[2]


def test_a_failing_queue_depth_source_does_not_break_the_scrape() -> None:
    def broken() -> int:
        raise RuntimeError("database is locked")

    metrics = Metrics()
    metrics.measure_queue_depth(broken)
    assert "dicom_gateway_queue_depth NaN" in metrics.render().decode()


def test_two_gateways_in_one_process_keep_their_own_counts() -> None:
    first, second = Metrics(), Metrics()
    first.instances_received.inc(5)
    assert second.registry.get_sample_value("dicom_gateway_instances_received_total") == 0
    assert first.registry.get_sample_value("dicom_gateway_instances_received_total") == 5


def test_shutdown_frees_the_port() -> None:
    server = Metrics().start_http("127.0.0.1", 0, lambda: True)
    port = server.port
    server.shutdown()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# --- audit log -------------------------------------------------------------------------


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_record_is_one_json_line_with_a_utc_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "var" / "log" / "audit.jsonl"  # parent folders do not exist yet
    audit = AuditLog(path)

    audit.record("study_forwarded", study="2.25.123", instances=12, seconds=1.25)
    audit.record("instance_quarantined", reason="verify_hit", stage="verify")

    first, second = read_lines(path)
    assert first["event"] == "study_forwarded"
    assert (first["study"], first["instances"], first["seconds"]) == ("2.25.123", 12, 1.25)
    assert (second["event"], second["reason"]) == ("instance_quarantined", "verify_hit")
    stamp = dt.datetime.fromisoformat(str(first["ts"]))
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - stamp) < dt.timedelta(minutes=1)


def test_records_are_appended_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path).record("started")
    AuditLog(path).record("started")
    AuditLog(path).record("stopped", drained=True)

    assert [entry["event"] for entry in read_lines(path)] == ["started", "started", "stopped"]


def test_reserved_field_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ts"):
        AuditLog(tmp_path / "audit.jsonl").record("x", ts="yesterday")


def test_concurrent_writers_do_not_interleave(tmp_path: Path) -> None:
    """Threads of one gateway and a second process (a CLI command) append at once."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    padding = "x" * 3000  # long lines make torn writes likely if they could happen
    threads_n, per_thread, process_n = 8, 100, 200

    def write(worker: int) -> None:
        for index in range(per_thread):
            audit.record("tick", worker=worker, index=index, padding=padding)

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from gateway.stores.audit import AuditLog; "
        "log = AuditLog(sys.argv[2]); "
        f"[log.record('tick', worker=-1, index=i, padding='x' * 3000) for i in range({process_n})]"
    )
    other = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(path)])
    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert other.wait(timeout=60) == 0

    entries = read_lines(path)  # every line parses: nothing torn or interleaved
    assert len(entries) == threads_n * per_thread + process_n
    seen = {(entry["worker"], entry["index"]) for entry in entries}
    assert len(seen) == len(entries)
    assert all(entry["padding"] == padding for entry in entries)


# --- a hostile or broken HTTP client ------------------------------------------------------


def _half_sent(port: int) -> socket.socket:
    """A client that starts a request and never finishes it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x")
    return sock


def test_half_sent_requests_hold_a_bounded_number_of_threads(
    serve: Callable[..., MetricsServer],
) -> None:
    from gateway.base.metrics import MAX_HANDLERS

    server = serve(Metrics(), lambda: True)
    before = threading.active_count()
    clients = [_half_sent(server.port) for _ in range(MAX_HANDLERS + 40)]
    try:
        deadline = time.monotonic() + 10
        while server.turned_away < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.turned_away >= 40
        assert threading.active_count() <= before + MAX_HANDLERS
    finally:
        for sock in clients:
            sock.close()
    deadline = time.monotonic() + 10
    status = None
    while status != 200 and time.monotonic() < deadline:
        try:
            status = get(server, "/healthz")[0]
        except OSError:
            time.sleep(0.1)
    assert status == 200  # slots come back once the clients are gone


def test_a_request_that_never_completes_is_dropped_after_the_handler_timeout(
    serve: Callable[..., MetricsServer], monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    import gateway.base.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "HANDLER_SECONDS", 0.5)
    server = serve(Metrics(), lambda: True)
    sock = _half_sent(server.port)
    try:
        sock.settimeout(5)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server closed it
        assert time.monotonic() - started < 4
    finally:
        sock.close()
    time.sleep(0.2)
    assert "Traceback" not in capfd.readouterr().err  # a dropped client is no traceback
