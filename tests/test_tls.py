"""DICOM TLS both ways, against real DCMTK peers on 127.0.0.1.

The gateway's SCP (in-process, real spool in tmp_path) takes studies from DCMTK `storescu`
over mutual TLS and refuses, with a log line naming the peer and the reason, a client without
a certificate, with a certificate from another CA, a plaintext client and TLS below 1.2. The
SCU forwards to DCMTK `storescp +tls --require-peer-cert` and turns every TLS failure into a
RETRY that says why. Certificates come from `make_dev_certificates`, as `dicom-gateway certs
dev` makes them. Every process is stopped by its PID and every wait is bounded.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import socket
import ssl
import stat
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from peers import wait_for_port
from pydicom import dcmread
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer
from service_harness import dcmtk_env, dcmtk_tool, free_port, wait_until

from gateway.config import ConfigError, ListenConfig, load_config
from gateway.keys.dev_certificates import (
    DEV_CERTIFICATE_FILES,
    DevCertificateError,
    make_dev_certificates,
)
from gateway.keys.keyed_hash import KeyedHash
from gateway.net.outcome import ForwardOutcome, ForwardResult
from gateway.net.refusals import address_allowed as _address_allowed
from gateway.net.scp import start_scp, stop_scp
from gateway.net.scu import forward_to_ae
from gateway.net.tls import (
    TlsConfigError,
    check_tls,
    client_context,
    server_context,
)
from gateway.stores.spool import Spool
from gateway.tools.synthetic import make_ct_study

LOOPBACK = "127.0.0.1"
GATEWAY_AE = "DEID_GW"
ARCHIVE_AE = "ARCHIVE"
STORESCU = dcmtk_tool("storescu")
STORESCP = dcmtk_tool("storescp")
OPENSSL = shutil.which("openssl")

needs_storescu = pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu not installed")
needs_storescp = pytest.mark.skipif(STORESCP is None, reason="DCMTK storescp not installed")


# --- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Two independent dev PKIs: the site's, and another CA's (a stranger)."""

    site: Path
    other: Path

    def server(self, *, require_client_cert: bool = True) -> ssl.SSLContext:
        return server_context(
            self.site / "server.pem",
            self.site / "server-key.pem",
            self.site / "ca.pem",
            require_client_cert,
        )

    def client(self, *, ours: Path | None = None, trust: Path | None = None) -> ssl.SSLContext:
        """Our SCU context: the client certificate from `ours`, trusting `trust`'s CA."""
        ours = ours or self.site
        return client_context(
            ours / "client.pem", ours / "client-key.pem", (trust or self.site) / "ca.pem"
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    make_dev_certificates(root / "site")
    make_dev_certificates(root / "other", ca_name="another dev CA")
    return Pki(root / "site", root / "other")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_ct_study(tmp_path_factory.mktemp("study"), instances=3, rows=32, columns=32)


# --- the gateway's SCP -------------------------------------------------------------------------


@dataclass
class Gateway:
    server: ThreadedAssociationServer
    spool: Spool

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def spooled(self) -> int:
        """Instances spooled so far (claims the rounds: call once, at the end)."""
        count = 0
        for study_round in self.spool.due_rounds(quiet_seconds=0, now=time.time() + 1):
            count += len(self.spool.claim(study_round.id) or [])
        return count


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start the gateway's SCP on a free loopback port; stopped in teardown."""
    started: list[Gateway] = []

    def _start(
        *, ssl_context: ssl.SSLContext | None = None, allowed_networks: Sequence[str] = ()
    ) -> Gateway:
        listen = ListenConfig(ae_title=GATEWAY_AE, allowed_networks=list(allowed_networks))
        listen = listen.model_copy(update={"host": LOOPBACK, "port": 0})
        spool = Spool(tmp_path / f"storage{len(started)}", KeyedHash(bytes(range(32))))
        gateway = Gateway(start_scp(listen, spool, ssl_context=ssl_context), spool)
        started.append(gateway)
        return gateway

    yield _start
    for gateway in started:
        stop_scp(gateway.server, timeout=5)
        gateway.spool.close()


def storescu(port: int, files: Sequence[Path], *options: str) -> subprocess.CompletedProcess[str]:
    """DCMTK storescu from MODALITY to the gateway with `options` (e.g. the TLS ones)."""
    assert STORESCU is not None
    command = [STORESCU, "-aet", "MODALITY", "-aec", GATEWAY_AE, *options, LOOPBACK, str(port)]
    return subprocess.run(
        [*command, *map(str, files)],
        env=dcmtk_env(),
        stdin=subprocess.DEVNULL,  # never wait on a passphrase prompt
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tls_options(certificates: Path, trust: Path) -> list[str]:
    """storescu: `+tls KEY CERT` (our certificate) and `+cf CA` (whom we trust)."""
    return [
        "+tls",
        str(certificates / "client-key.pem"),
        str(certificates / "client.pem"),
        "+cf",
        str(trust / "ca.pem"),
    ]


def logged(caplog: pytest.LogCaptureFixture, *parts: str) -> list[str]:
    """Messages of the gateway's SCP that contain every one of `parts` (waits up to 10 s:
    the SCP logs from its connection threads)."""

    def matching() -> list[str]:
        messages = [r.getMessage() for r in caplog.records if r.name == "gateway.net.scp"]
        return [m for m in messages if all(part in m for part in parts)]

    return wait_until(matching, timeout=10, what=f"a log line with {parts}")


# --- DCMTK storescp with TLS, as the destination ------------------------------------------------


@contextmanager
def tls_storescp(out_dir: Path, pki_dir: Path, log_path: Path) -> Iterator[int]:
    """`storescp +tls` with the site's server certificate; it requires and verifies our
    client certificate against the site CA (`--require-peer-cert`). Yields its port."""
    if STORESCP is None:
        pytest.skip("DCMTK storescp not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a free port can be taken before storescp binds it
        port = free_port()
        command = [
            STORESCP,
            "-aet",
            ARCHIVE_AE,
            "-od",
            str(out_dir),
            "+tls",
            str(pki_dir / "server-key.pem"),
            str(pki_dir / "server.pem"),
            "+cf",
            str(pki_dir / "ca.pem"),
            "--require-peer-cert",
            str(port),
        ]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dcmtk_env(),
            )  # fmt: skip
        if wait_for_port(process, port, seconds=10):
            break
        _stop(process)
    else:
        raise RuntimeError(f"storescp did not start: {log_path.read_text(errors='replace')}")
    try:
        yield port
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate this one process by its PID, then kill it if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def forward(
    study: list[Path],
    port: int,
    context: ssl.SSLContext,
    *,
    host: str = LOOPBACK,
    server_hostname: str | None = None,
) -> ForwardResult:
    return forward_to_ae(
        study,
        ae_title=ARCHIVE_AE,
        host=host,
        port=port,
        timeout=10,
        ssl_context=context,
        server_hostname=server_hostname,
    )


# --- dev certificates ----------------------------------------------------------------------------


def test_dev_certificates_are_a_ca_a_server_and_a_client_with_private_keys(tmp_path: Path) -> None:
    paths = make_dev_certificates(tmp_path / "certs")

    assert [p.name for p in paths] == list(DEV_CERTIFICATE_FILES)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.name.endswith("-key.pem") else 0o644), path.name
    ca, server, client = (
        x509.load_pem_x509_certificate(p.read_bytes()) for p in paths if p.name[-8:] != "-key.pem"
    )
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server_names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert server_names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in server_names.get_values_for_type(x509.IPAddress)] == [LOOPBACK]
    for leaf, purpose in ((server, "SERVER_AUTH"), (client, "CLIENT_AUTH")):
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [getattr(ExtendedKeyUsageOID, purpose)]
    for leaf in (server, client):
        assert leaf.issuer == ca.subject
        days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
        assert 360 <= days <= 370
        assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
        assert leaf.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_dev_certificates_never_overwrite_existing_files(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / "server-key.pem").write_text("a key someone relies on\n")

    with pytest.raises(DevCertificateError, match=r"server-key\.pem: already exists"):
        make_dev_certificates(folder)

    assert (folder / "server-key.pem").read_text() == "a key someone relies on\n"
    assert sorted(p.name for p in folder.iterdir()) == ["server-key.pem"]


# --- the TLS policy ------------------------------------------------------------------------------


def test_contexts_allow_only_tls_1_2_and_1_3_with_forward_secret_aead_suites(pki: Pki) -> None:
    for context in (pki.server(), pki.client()):
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.options & ssl.OP_NO_COMPRESSION
        assert context.options & ssl.OP_NO_RENEGOTIATION
        tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12
        assert all(name.startswith("ECDHE-") for name in tls12), tls12
        assert all("GCM" in name or "CHACHA20" in name for name in tls12), tls12
    assert pki.server().verify_mode == ssl.CERT_REQUIRED
    assert pki.server(require_client_cert=False).verify_mode == ssl.CERT_OPTIONAL
    client = pki.client()
    assert client.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname


def test_client_context_without_a_client_certificate(pki: Pki) -> None:
    context = client_context(None, None, pki.site / "ca.pem")
    assert context.verify_mode == ssl.CERT_REQUIRED


# --- configuration mistakes ------------------------------------------------------------------


def test_a_key_that_does_not_match_its_certificate_names_the_key_file(pki: Pki) -> None:
    key = pki.other / "server-key.pem"

    with pytest.raises(TlsConfigError) as caught:
        server_context(pki.site / "server.pem", key, pki.site / "ca.pem")

    assert caught.value.role == "key"
    assert str(caught.value) == (
        f"{key}: private key does not match the certificate {pki.site / 'server.pem'}"
    )


@pytest.mark.parametrize(
    ("cert", "key", "ca", "role", "reason"),
    [
        ("missing.pem", "server-key.pem", "ca.pem", "cert", "file not found"),
        ("server-key.pem", "server-key.pem", "ca.pem", "cert", "not a PEM certificate"),
        ("server.pem", "server.pem", "ca.pem", "key", "not a PEM private key"),
        ("server.pem", "server-key.pem", "empty.pem", "ca", "CA file is empty"),
    ],
)
def test_unusable_tls_files_are_named_with_the_reason(
    pki: Pki, tmp_path: Path, cert: str, key: str, ca: str, role: str, reason: str
) -> None:
    folder = tmp_path / "tls"
    shutil.copytree(pki.site, folder)
    (folder / "empty.pem").write_text("")

    with pytest.raises(TlsConfigError) as caught:
        server_context(folder / cert, folder / key, folder / ca)

    assert caught.value.role == role
    assert str(caught.value).startswith(f"{folder / {'cert': cert, 'key': key, 'ca': ca}[role]}: ")
    assert reason in str(caught.value)


def test_an_encrypted_key_is_refused_rather_than_prompting_for_a_passphrase(
    pki: Pki, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key((pki.site / "server-key.pem").read_bytes(), None)
    encrypted = tmp_path / "server-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )

    with pytest.raises(TlsConfigError, match="encrypted with a passphrase"):
        server_context(pki.site / "server.pem", encrypted, pki.site / "ca.pem")


def test_an_expired_certificate_or_ca_is_a_configuration_error(pki: Pki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = dt.datetime.now(dt.UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=35))
        .sign(key, hashes.SHA256())
    )
    cert, key_path = tmp_path / "old.pem", tmp_path / "old-key.pem"
    cert.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    with pytest.raises(TlsConfigError, match=r"old\.pem: certificate expired on \d{4}-\d\d-\d\d"):
        server_context(cert, key_path, pki.site / "ca.pem")
    with pytest.raises(TlsConfigError, match=r"old\.pem: CA certificate expired \(last on "):
        server_context(pki.site / "server.pem", pki.site / "server-key.pem", cert)


def test_start_up_check_reports_every_tls_problem_in_the_config_format(
    pki: Pki, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "site-secret.key").write_text("00" * 32 + "\n")
    (conf / "empty-ca.pem").write_text("")
    (conf / "gateway.yaml").write_text(
        textwrap.dedent(
            f"""\
            site_id: SITE-A
            keys: {{secret: site-secret.key}}
            listen:
              tls: {{cert: {pki.site}/server.pem, key: {pki.other}/server-key.pem,
                     ca: {pki.site}/ca.pem}}
            destination:
              ae_title: PACS
              host: 127.0.0.1
              port: 104
              tls: {{cert: {pki.site}/client.pem, key: {pki.site}/client-key.pem,
                     ca: empty-ca.pem}}
            """
        )
    )
    config = load_config(conf / "gateway.yaml")

    with pytest.raises(ConfigError) as caught:
        check_tls(config, "conf/gateway.yaml")

    assert caught.value.problems == [
        f"conf/gateway.yaml: 'listen.tls.key': {pki.other}/server-key.pem: "
        f"private key does not match the certificate {pki.site}/server.pem",
        f"conf/gateway.yaml: 'destination.tls.ca': {conf}/empty-ca.pem: "
        "CA file is empty (no BEGIN CERTIFICATE block)",
    ]


def test_start_up_check_builds_both_contexts(pki: Pki, tmp_path: Path) -> None:
    conf = tmp_path / "gateway.yaml"
    (tmp_path / "site-secret.key").write_text("00" * 32 + "\n")
    tls = f"{{cert: {pki.site}/server.pem, key: {pki.site}/server-key.pem, ca: {pki.site}/ca.pem}}"
    client = tls.replace("server", "client")
    conf.write_text(
        "site_id: SITE-A\nkeys: {secret: site-secret.key}\n"
        f"listen: {{tls: {tls}}}\n"
        f"destination: {{ae_title: PACS, host: 127.0.0.1, port: 104, tls: {client}}}\n"
    )

    contexts = check_tls(load_config(conf))

    assert contexts.server is not None and contexts.server.verify_mode == ssl.CERT_REQUIRED
    assert contexts.client is not None and contexts.client.check_hostname


# --- SCP: senders over TLS -------------------------------------------------------------------


@needs_storescu
def test_sender_with_a_site_certificate_is_received_over_tls(
    pki: Pki, study: list[Path], start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(ssl_context=pki.server())

    done = storescu(gateway.port, study, *tls_options(pki.site, trust=pki.site))

    assert done.returncode == 0, done.stderr
    assert gateway.spooled() == len(study)


@needs_storescu
def test_sender_without_a_client_certificate_is_refused_and_logged(
    pki: Pki,
    study: list[Path],
    start_gateway: Callable[..., Gateway],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.net.scp")
    gateway = start_gateway(ssl_context=pki.server())

    # +tla: TLS without a certificate of our own.
    done = storescu(gateway.port, study, "+tla", "+cf", str(pki.site / "ca.pem"))

    assert done.returncode != 0
    assert logged(caplog, f"refused TLS connection from {LOOPBACK}:", "sent no certificate")
    assert gateway.spooled() == 0


@needs_storescu
def test_sender_with_a_certificate_from_another_ca_is_refused_and_logged(
    pki: Pki,
    study: list[Path],
    start_gateway: Callable[..., Gateway],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.net.scp")
    gateway = start_gateway(ssl_context=pki.server())

    done = storescu(gateway.port, study, *tls_options(pki.other, trust=pki.site))

    assert done.returncode != 0
    assert logged(caplog, f"refused TLS connection from {LOOPBACK}:", "certificate verification")
    assert gateway.spooled() == 0


@needs_storescu
def test_plaintext_sender_on_the_tls_port_is_refused_and_the_scp_keeps_serving(
    pki: Pki,
    study: list[Path],
    start_gateway: Callable[..., Gateway],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.net.scp")
    gateway = start_gateway(ssl_context=pki.server())

    plain = storescu(gateway.port, study[:1])
    assert plain.returncode != 0
    assert logged(caplog, f"refused TLS connection from {LOOPBACK}:", "not TLS")
    secure = storescu(gateway.port, study[:1], *tls_options(pki.site, trust=pki.site))

    assert secure.returncode == 0, secure.stderr
    assert gateway.spooled() == 1


@needs_storescu
def test_without_required_client_certificates_a_sender_without_one_gets_in(
    pki: Pki, study: list[Path], start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(ssl_context=pki.server(require_client_cert=False))

    done = storescu(gateway.port, study[:1], "+tla", "+cf", str(pki.site / "ca.pem"))

    assert done.returncode == 0, done.stderr
    assert gateway.spooled() == 1


@pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
def test_tls_1_1_is_refused_and_logged(
    pki: Pki, start_gateway: Callable[..., Gateway], caplog: pytest.LogCaptureFixture
) -> None:
    assert OPENSSL is not None
    caplog.set_level(logging.WARNING, logger="gateway.net.scp")
    gateway = start_gateway(ssl_context=pki.server())

    # SECLEVEL=0: OpenSSL 3 would not even offer TLS 1.1 otherwise.
    done = subprocess.run(
        [
            *(OPENSSL, "s_client", "-connect", f"{LOOPBACK}:{gateway.port}", "-tls1_1"),
            *("-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", str(pki.site / "ca.pem")),
            *("-cert", str(pki.site / "client.pem"), "-key", str(pki.site / "client-key.pem")),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode != 0
    assert logged(caplog, f"refused TLS connection from {LOOPBACK}:", "below 1.2")


@needs_storescu
def test_a_silent_client_does_not_hold_up_other_senders_or_the_shutdown(
    pki: Pki, study: list[Path], start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(ssl_context=pki.server())

    with socket.create_connection((LOOPBACK, gateway.port), timeout=5):
        # Connected, never says a word: its handshake waits in its own thread.
        started = time.monotonic()
        done = storescu(gateway.port, study[:1], *tls_options(pki.site, trust=pki.site))
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 10
        assert gateway.spooled() == 1

        started = time.monotonic()
        stop_scp(gateway.server, timeout=5)
        assert time.monotonic() - started < 5


# --- SCP: source address allow list ------------------------------------------------------------


@needs_storescu
def test_connection_from_outside_the_allowed_networks_is_refused_and_logged(
    study: list[Path], start_gateway: Callable[..., Gateway], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.net.scp")
    gateway = start_gateway(allowed_networks=["127.0.0.2/32"])

    done = storescu(gateway.port, study[:1])

    assert done.returncode != 0
    assert logged(caplog, f"refused connection from {LOOPBACK}:", "listen.allowed_networks")
    assert gateway.spooled() == 0


@needs_storescu
def test_connection_from_an_allowed_network_is_accepted(
    study: list[Path], start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(allowed_networks=["10.0.0.0/8", "127.0.0.0/8"])

    done = storescu(gateway.port, study[:1])

    assert done.returncode == 0, done.stderr
    assert gateway.spooled() == 1


@pytest.mark.parametrize(
    ("address", "networks", "allowed"),
    [
        ("127.0.0.1", ["127.0.0.0/8"], True),
        ("127.0.0.1", ["127.0.0.2/32"], False),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),  # IPv4 client of a dual-stack socket
        ("::1", ["::1/128"], True),
        ("::1", ["127.0.0.0/8"], False),
        ("fd00::5", ["fd00::/8", "10.0.0.0/8"], True),
        ("not an address", ["0.0.0.0/0"], False),
    ],
)
def test_allowed_networks_match_ipv4_and_ipv6_sources(
    address: str, networks: list[str], allowed: bool
) -> None:
    import ipaddress

    parsed = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
    assert _address_allowed(address, parsed) is allowed


# --- SCU: forwarding over TLS --------------------------------------------------------------------


@needs_storescp
def test_study_is_forwarded_over_mutual_tls(
    pki: Pki, study: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over TLS the requests take pynetdicom's route: its DUL thread owns the OpenSSL
    # connection (store_fast_send writes only on plain sockets).
    sends: list[object] = []
    real = Association.send_c_store

    def counted(self: Association, *args: Any, **kwargs: Any) -> Any:
        sends.append(args[0])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Association, "send_c_store", counted)
    out = tmp_path / "archive"
    with tls_storescp(out, pki.site, tmp_path / "storescp.log") as port:
        result = forward(study, port, pki.client())

    assert result.outcome is ForwardOutcome.OK, result.message
    assert len(sends) == len(study)
    received = sorted(
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in out.iterdir()
    )
    sent = sorted(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in study)
    assert received == sent


@needs_storescp
def test_destination_named_by_host_name_matches_its_dns_name(
    pki: Pki, study: list[Path], tmp_path: Path
) -> None:
    with tls_storescp(tmp_path / "archive", pki.site, tmp_path / "storescp.log") as port:
        result = forward(study[:1], port, pki.client(), host="localhost")

    assert result.outcome is ForwardOutcome.OK, result.message


@needs_storescp
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("we trust another CA", "certificate verification failed"),
        ("our certificate is from another CA", "TLS with the destination failed"),
        ("we have no client certificate", "TLS with the destination failed"),
        ("the certificate names another host", "Hostname mismatch"),
    ],
)
def test_tls_failure_towards_the_destination_is_a_retry_that_says_why(
    pki: Pki, study: list[Path], tmp_path: Path, case: str, expected: str
) -> None:
    server_hostname = None
    if case == "we trust another CA":
        context = pki.client(trust=pki.other)
    elif case == "our certificate is from another CA":
        context = pki.client(ours=pki.other)
    elif case == "we have no client certificate":
        context = client_context(None, None, pki.site / "ca.pem")
    else:
        context = pki.client()
        server_hostname = "pacs.example.org"
    out = tmp_path / "archive"

    with tls_storescp(out, pki.site, tmp_path / "storescp.log") as port:
        result = forward(study, port, context, server_hostname=server_hostname)

    assert result.outcome is ForwardOutcome.RETRY, result.message
    assert expected in result.message
    assert "TLS" in result.message
    assert not any(out.iterdir())


@needs_storescp
def test_plain_dicom_to_a_tls_destination_is_a_retry(
    pki: Pki, study: list[Path], tmp_path: Path
) -> None:
    with tls_storescp(tmp_path / "archive", pki.site, tmp_path / "storescp.log") as port:
        result = forward_to_ae(study, ae_title=ARCHIVE_AE, host=LOOPBACK, port=port, timeout=10)

    assert result.outcome is ForwardOutcome.RETRY
