"""Development certificates for DICOM TLS: a private CA, a server and a client certificate.

`dicom-gateway certs dev --dir DIR` writes them so that a test bench or a demo can run TLS
both ways without a site PKI. They are for loopback and lab use only: the CA key is thrown
away after signing (nobody can issue more certificates under it), and production sites use
certificates from their own CA. This module is a leaf: it imports nothing from `gateway`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DEV_CERTIFICATE_FILES", "DevCertificateError", "make_dev_certificates"]

DEV_CERTIFICATE_FILES: tuple[str, ...] = (
    "ca.pem",
    "server.pem",
    "server-key.pem",
    "client.pem",
    "client-key.pem",
)
VALIDITY_DAYS = 365
# Clocks on the peers may be a little behind ours; a certificate "not yet valid" by a few
# seconds is a confusing first failure.
_BACKDATE = dt.timedelta(minutes=5)


class DevCertificateError(Exception):
    """The certificates could not be written; the message names the file and the reason."""


@dataclass(frozen=True)
class _Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def make_dev_certificates(directory: Path, *, ca_name: str = "dicom-gateway dev CA") -> list[Path]:
    """Write `ca.pem`, `server.pem`, `server-key.pem`, `client.pem`, `client-key.pem` into
    `directory` (created when missing) and return their paths in that order.

    EC P-256 keys; the server certificate names `localhost` and `127.0.0.1` (serverAuth),
    the client certificate is for clientAuth; both valid for about a year. Keys are written
    0600. Existing files are never overwritten (a key someone relies on must not vanish):
    if any of the five exists, nothing is written and `DevCertificateError` names it.
    """
    directory = Path(directory)
    paths = [directory / name for name in DEV_CERTIFICATE_FILES]
    existing = [path for path in paths if path.exists() or path.is_symlink()]
    if existing:
        raise DevCertificateError(
            f"{existing[0]}: already exists; refusing to overwrite certificates or keys "
            "(remove the files or choose another --dir)"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DevCertificateError(f"{directory}: cannot create ({exc.strerror or exc})") from None

    now = dt.datetime.now(dt.UTC)
    ca = _issue_ca(ca_name, now)
    server = _issue_leaf(
        ca,
        common_name="localhost",
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        now=now,
    )
    client = _issue_leaf(
        ca,
        common_name="dicom-gateway dev client",
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        names=[x509.DNSName("dicom-gateway-client")],
        now=now,
    )
    ca_path, server_path, server_key_path, client_path, client_key_path = paths
    written: list[Path] = []
    try:
        _write(ca_path, _pem(ca.certificate), 0o644, written)
        _write(server_path, _pem(server.certificate), 0o644, written)
        _write(server_key_path, _key_pem(server.key), 0o600, written)
        _write(client_path, _pem(client.certificate), 0o644, written)
        _write(client_key_path, _key_pem(client.key), 0o600, written)
    except DevCertificateError:
        # Half a set is worse than none: the next run would refuse to overwrite it.
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return paths


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dicom-gateway development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue_ca(common_name: str, now: dt.datetime) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Issued(certificate, key)


def _issue_leaf(
    ca: _Issued,
    *,
    common_name: str,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
    now: dt.datetime,
) -> _Issued:
    """A certificate signed by `ca`, with the extensions OpenSSL's strict checks expect
    (key identifiers, critical key usage), so it also passes VERIFY_X509_STRICT peers."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    ca_public = ca.key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return _Issued(certificate, key)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted: the gateway and DCMTK start unattended; the file mode protects the key.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int, written: list[Path]) -> None:
    """Create `path` exclusively with `mode` from the start: a key is never readable by
    others, not even for the moment between writing and chmod."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise DevCertificateError(f"{path}: already exists; refusing to overwrite") from None
    except OSError as exc:
        raise DevCertificateError(f"{path}: cannot create ({exc.strerror or exc})") from None
    written.append(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(path, mode)  # the umask may have taken bits off a certificate's 0644
    except OSError as exc:
        raise DevCertificateError(f"{path}: cannot write ({exc.strerror or exc})") from None
