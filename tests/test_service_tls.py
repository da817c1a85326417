"""The running service with TLS on both legs: modality → gateway → archive, all verified.

`dicom-gateway run` requires client certificates from the site CA; it forwards to DCMTK
`storescp +tls --require-peer-cert`, verifying the archive against the CA it is given. With
the wrong CA the forward fails, is retried, and nothing is lost.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from service_harness import (
    create_secret,
    dcmtk_tool,
    gateway_command,
    make_site,
    running_gateway,
    storescu,
    wait_until,
)
from test_tls import ARCHIVE_AE, tls_options, tls_storescp

from gateway.tools.synthetic import make_ct_study

pytestmark = pytest.mark.skipif(dcmtk_tool("storescu") is None, reason="DCMTK is not installed")


def _dev_certificates(folder: Path) -> Path:
    made = subprocess.run(
        [*gateway_command(), "certs", "dev", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return folder


def _tls_site(tmp_path: Path, pki: Path, archive_port: int, destination_ca: Path):
    site = make_site(
        tmp_path / "site",
        create_secret(tmp_path / "keys"),
        destination={
            "ae_title": ARCHIVE_AE,
            "host": "127.0.0.1",
            "port": archive_port,
            "tls": {
                "cert": str(pki / "client.pem"),
                "key": str(pki / "client-key.pem"),
                "ca": str(destination_ca / "ca.pem"),
            },
        },
    )
    site.write(
        listen={
            **site.settings["listen"],
            "tls": {
                "cert": str(pki / "server.pem"),
                "key": str(pki / "server-key.pem"),
                "ca": str(pki / "ca.pem"),
                "require_client_cert": True,
            },
        }
    )
    return site


def test_study_travels_over_tls_on_both_legs(tmp_path: Path) -> None:
    pki = _dev_certificates(tmp_path / "pki")
    study = make_ct_study(tmp_path / "study", instances=3, rows=16, columns=16)
    archive = tmp_path / "archive"
    with tls_storescp(archive, pki, tmp_path / "storescp.log") as archive_port:
        site = _tls_site(tmp_path, pki, archive_port, destination_ca=pki)
        with running_gateway(site):
            plain = storescu(site.listen_port, study[:1])
            assert not plain.acknowledged  # plaintext to the TLS port is refused
            sent = storescu(site.listen_port, study, options=tls_options(pki, pki))
            assert len(sent.acknowledged) == len(study)
            wait_until(
                lambda: len([p for p in archive.iterdir() if p.is_file()]) == len(study),
                timeout=60,
                what="the study at the TLS archive",
            )


def test_wrong_destination_ca_fails_the_forward_and_loses_nothing(tmp_path: Path) -> None:
    pki = _dev_certificates(tmp_path / "pki")
    other = _dev_certificates(tmp_path / "other-ca")
    study = make_ct_study(tmp_path / "study", instances=2, rows=16, columns=16)
    archive = tmp_path / "archive"
    with tls_storescp(archive, pki, tmp_path / "storescp.log") as archive_port:
        site = _tls_site(tmp_path, pki, archive_port, destination_ca=other)
        with running_gateway(site) as gateway:
            sent = storescu(site.listen_port, study, options=tls_options(pki, pki))
            assert len(sent.acknowledged) == len(study)
            wait_until(
                lambda: gateway.metric("forward_retries") >= 1,
                timeout=60,
                what="a forward retry",
            )
            assert gateway.metric("queue_depth") == len(study)
            assert not [p for p in archive.iterdir() if p.is_file()]
            assert "TLS" in gateway.log()
