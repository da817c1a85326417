"""A peer that repeats a refusal at will gets one log line a minute, not one per attempt."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from gateway.base.log_limits import RateLimitedLog
from gateway.base.metrics import Metrics
from gateway.config import ListenConfig
from gateway.keys.keyed_hash import KeyedHash
from gateway.net.scp import start_scp, stop_scp
from gateway.stores.spool import Spool


def test_one_line_per_key_per_period_and_the_next_says_how_many_were_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    says = RateLimitedLog(logging.getLogger("limits-test"), seconds=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="limits-test"):
        assert says.warning(("refused", "10.0.0.1"), "refused %s", "10.0.0.1")
        assert not any(says.warning(("refused", "10.0.0.1"), "refused %s", "10.0.0.1")
                       for _ in range(99))  # fmt: skip
        assert says.warning(("refused", "10.0.0.2"), "refused %s", "10.0.0.2")  # other source
        now[0] += 60
        assert says.warning(("refused", "10.0.0.1"), "refused %s", "10.0.0.1")
    assert [r.getMessage() for r in caplog.records] == [
        "refused 10.0.0.1",
        "refused 10.0.0.2",
        "refused 10.0.0.1 (99 more like it since the last line)",
    ]


def test_the_keys_remembered_are_bounded() -> None:
    says = RateLimitedLog(logging.getLogger("limits-test"), max_keys=10, clock=lambda: 0.0)
    for n in range(1000):
        says.warning(n, "refused")
    assert len(says._last) == 10


def test_a_refused_source_reconnecting_gets_one_line_and_every_attempt_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    spool = Spool(tmp_path / "storage", KeyedHash(b"s" * 32))
    listen = ListenConfig(ae_title="DEID_GW", allowed_networks=["127.0.0.2/32"])
    listen = listen.model_copy(update={"host": "127.0.0.1", "port": 0})  # a free port
    caplog.set_level(logging.WARNING, logger="gateway.net.scp")
    server = start_scp(listen, spool, metrics)
    try:
        port = server.server_address[1]
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.settimeout(5)
                assert sock.recv(16) == b""  # closed at accept, before any DICOM
        deadline = time.monotonic() + 10
        while metrics.failures.labels(stage="connection")._value.get() < 30:
            assert time.monotonic() < deadline, "every refusal is counted"
            time.sleep(0.05)
    finally:
        stop_scp(server)
        spool.close()
    lines = [r.getMessage() for r in caplog.records if "refused connection" in r.getMessage()]
    assert len(lines) == 1 and "listen.allowed_networks" in lines[0]
