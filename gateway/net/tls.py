"""TLS contexts for DICOM both ways: the listening SCP and the forwarding SCU.

Policy (PS3.15 Annex B, the BCP 195 TLS Secure Transport Connection Profiles, which point
at BCP 195 = RFC 9325):
- TLS 1.2 and 1.3 only (`minimum_version = TLSv1_2`).
- TLS 1.2 cipher suites: `ECDHE+AESGCM:ECDHE+CHACHA20`, i.e. forward-secret ECDHE key
  exchange with an AEAD cipher (AES-GCM, ChaCha20-Poly1305), RSA or ECDSA certificates; the
  RFC 9325 4.2 recommended suites (TLS_ECDHE_{RSA,ECDSA}_WITH_AES_{128,256}_GCM_*) plus
  ChaCha20-Poly1305. Its DHE suites are left out: finite-field DH is slower and often
  misconfigured. TLS 1.3 suites are all AEAD and are left at OpenSSL's defaults.
- No compression (CRIME), no renegotiation, the server's cipher order wins.
- Trust only the configured `ca` file, never the system store: DICOM peers are certified by
  a site or vendor CA, and a certificate any public CA issued must not be enough to send us
  studies or receive them.
- Server: with `require_client_cert`, a client without a certificate signed by `ca` is
  refused (mutual TLS, the default); without it, a certificate that is presented is still
  verified.
- Client: the server certificate must be signed by `ca` and name the configured destination
  host. DICOM peers are usually configured by IP address: for an IP the certificate needs
  that IP in its subjectAltName (Python matches IP SANs when `server_hostname` is an IP
  string); for a host name, a DNS SAN. See `gateway.net.scu.forward_to_ae`.

Certificates and keys are checked when the context is built, so a bad path, a key that does
not belong to its certificate or an empty CA file stops the gateway at start-up
(`check_tls`, exit status 2) rather than at the first connection. This module imports only
leaves (`gateway.config`) from the package.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from gateway.config import ConfigError

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "TLS12_CIPHERS",
    "RecordingSSLSocket",
    "TlsConfigError",
    "TlsContexts",
    "check_tls",
    "client_context",
    "describe_tls_failure",
    "server_context",
]

# RFC 9325 4.2 (ECDHE + AES-GCM) plus ChaCha20-Poly1305; TLS 1.2 only, see the docstring.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
# A handshake is a few round trips; a peer that has not finished in this time is not going
# to, and holds a thread until then.
HANDSHAKE_TIMEOUT = 30.0

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s+.+?\s+-----END CERTIFICATE-----", re.DOTALL
)
_OPTIONS = ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)


class TlsConfigError(Exception):
    """A certificate, key or CA file that cannot be used; says which file and why.

    `role` is the configuration key the file came from (`cert`, `key` or `ca`), so that the
    CLI can name `listen.tls.key` and not just a path.
    """

    def __init__(self, path: Path, reason: str, *, role: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason
        self.role = role


# --- contexts ------------------------------------------------------------------------------


def server_context(
    cert: Path, key: Path, ca: Path, require_client_cert: bool = True
) -> ssl.SSLContext:
    """The SCP's context: our certificate and key, clients verified against `ca`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(context)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_own_certificate(context, Path(cert), Path(key))
    _load_ca(context, Path(ca))
    # CERT_OPTIONAL still verifies a certificate the client sends; it only lets a client
    # without one in.
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_context(cert: Path | None, key: Path | None, ca: Path) -> ssl.SSLContext:
    """The SCU's context: the server verified against `ca` (certificate and host name), and
    our client certificate only when one is configured.

    Its sockets are `RecordingSSLSocket`s, so the SCU can say why TLS failed.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    _harden(context)
    context.sslsocket_class = RecordingSSLSocket
    if (cert is None) != (key is None):
        given, missing = ("cert", "key") if key is None else ("key", "cert")
        path = Path(cert if cert is not None else key)  # type: ignore[arg-type]
        raise TlsConfigError(path, f"a client {given} needs its {missing} too", role=given)
    if cert is not None and key is not None:
        _load_own_certificate(context, Path(cert), Path(key))
    _load_ca(context, Path(ca))
    return context


class RecordingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that remembers its first TLS error in `tls_failure`.

    pynetdicom catches the error of a failed handshake (or, with TLS 1.3, the alert a server
    sends after the handshake when it refuses our client certificate, which arrives on the
    first read), logs it and closes the socket; the SCU reads it back from here to give a
    RETRY a reason a sysadmin can act on.
    """

    tls_failure: BaseException | None = None

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except OSError as exc:  # SSLError, or a timeout / reset in the middle of it
            self._note(exc)
            raise

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        try:
            return super().recv(buflen, flags)
        except ssl.SSLError as exc:
            self._note(exc)
            raise

    def _note(self, exc: BaseException) -> None:
        if self.tls_failure is None:
            self.tls_failure = exc


def _harden(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= _OPTIONS


# --- start-up check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsContexts:
    """What `check_tls` built: `server` for `start_scp`, `client` for `forward_to_ae`;
    None where the configuration asks for plain DICOM."""

    server: ssl.SSLContext | None = None
    client: ssl.SSLContext | None = None
    # The named destinations' (`destinations:`) that ask for TLS, by name.
    named: dict[str, ssl.SSLContext] = field(default_factory=dict)


def check_tls(config: GatewayConfig, shown: str | None = None) -> TlsContexts:
    """Build the contexts that `listen.tls` and `destination.tls` ask for, checking every file.

    Raises `ConfigError` with one line per problem, in the configuration module's format
    (`FILE: 'listen.tls.key': REASON`), where FILE is `shown` (the path as the user typed it)
    or the configuration's own path.
    """
    where = shown or (str(config.config_path) if config.config_path else "(configuration)")
    problems: list[str] = []
    server: ssl.SSLContext | None = None
    client: ssl.SSLContext | None = None
    listen_tls = config.listen.tls
    if listen_tls is not None:
        try:
            server = server_context(
                listen_tls.cert, listen_tls.key, listen_tls.ca, listen_tls.require_client_cert
            )
        except TlsConfigError as exc:
            problems.append(f"{where}: 'listen.tls.{exc.role}': {exc}")
    destination_tls = config.destination.tls
    if destination_tls is not None:
        try:
            client = client_context(destination_tls.cert, destination_tls.key, destination_tls.ca)
        except TlsConfigError as exc:
            problems.append(f"{where}: 'destination.tls.{exc.role}': {exc}")
    named: dict[str, ssl.SSLContext] = {}
    for name, destination in config.destinations.items():
        if destination.tls is None:
            continue
        tls = destination.tls
        try:
            named[name] = client_context(tls.cert, tls.key, tls.ca)
        except TlsConfigError as exc:
            problems.append(f"{where}: 'destinations.{name}.tls.{exc.role}': {exc}")
    if problems:
        raise ConfigError(problems)
    return TlsContexts(server=server, client=client, named=named)


# --- file checks ---------------------------------------------------------------------------


def _read(path: Path, role: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsConfigError(path, "file not found", role=role) from None
    except IsADirectoryError:
        raise TlsConfigError(path, "not a file", role=role) from None
    except PermissionError:
        raise TlsConfigError(path, "file not readable (permission denied)", role=role) from None
    except OSError as exc:
        raise TlsConfigError(path, f"cannot read ({exc.strerror or exc})", role=role) from None


def _certificates(path: Path, role: str) -> list[x509.Certificate]:
    data = _read(path, role)
    blocks = _PEM_CERTIFICATE.findall(data)
    if not blocks:
        what = "CA file is empty" if role == "ca" else "not a PEM certificate"
        raise TlsConfigError(path, f"{what} (no BEGIN CERTIFICATE block)", role=role)
    found = []
    for number, block in enumerate(blocks, start=1):
        try:
            found.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            which = f"certificate {number} " if len(blocks) > 1 else ""
            raise TlsConfigError(
                path, f"{which}is not a valid PEM certificate (cannot be decoded)", role=role
            ) from None
    return found


def _check_dates(certificate: x509.Certificate, path: Path, role: str) -> None:
    """An expired certificate fails every handshake; say so at start-up, with the date."""
    now = dt.datetime.now(dt.UTC)
    if certificate.not_valid_after_utc < now:
        day = certificate.not_valid_after_utc.date().isoformat()
        raise TlsConfigError(path, f"certificate expired on {day}", role=role)
    if certificate.not_valid_before_utc > now:
        day = certificate.not_valid_before_utc.date().isoformat()
        raise TlsConfigError(path, f"certificate is not valid before {day}", role=role)


def _load_own_certificate(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Our certificate (with any intermediates after it) and its private key."""
    leaf = _certificates(cert, "cert")[0]
    _check_dates(leaf, cert, "cert")
    key_data = _read(key, "key")
    if b"PRIVATE KEY-----" not in key_data:
        raise TlsConfigError(key, "not a PEM private key (no BEGIN PRIVATE KEY block)", role="key")
    if b"ENCRYPTED" in key_data:
        raise TlsConfigError(
            key,
            "private key is encrypted with a passphrase; the gateway starts unattended and "
            "needs an unencrypted key file, readable only by its user (mode 0600)",
            role="key",
        )
    try:
        private_key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise TlsConfigError(
            key, "not a valid PEM private key (cannot be decoded)", role="key"
        ) from None
    if _public_der(private_key.public_key()) != _public_der(leaf.public_key()):
        raise TlsConfigError(key, f"private key does not match the certificate {cert}", role="key")
    try:
        # b"" rather than None: never let OpenSSL prompt on a terminal for a passphrase.
        context.load_cert_chain(os.fspath(cert), os.fspath(key), password=b"")
    except ssl.SSLError as exc:
        raise TlsConfigError(
            key, f"cannot be used with the certificate {cert} ({_ssl_reason(exc)})", role="key"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: Path) -> None:
    # A bundle may well keep an expired CA next to its successor; only a file in which
    # nothing is valid any more is certainly a mistake.
    certificates = _certificates(ca, "ca")
    now = dt.datetime.now(dt.UTC)
    if all(c.not_valid_after_utc < now for c in certificates):
        last = max(c.not_valid_after_utc for c in certificates).date().isoformat()
        what = "CA certificate" if len(certificates) == 1 else "every CA certificate in it"
        raise TlsConfigError(ca, f"{what} expired (last on {last})", role="ca")
    try:
        context.load_verify_locations(cafile=os.fspath(ca))
    except ssl.SSLError as exc:
        raise TlsConfigError(
            ca, f"CA file cannot be loaded ({_ssl_reason(exc)})", role="ca"
        ) from None


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc).replace("_", " ").lower()


# --- handshake failures, for logs ------------------------------------------------------------

# OpenSSL reason codes a DICOM administrator meets, in words. Either side's view.
_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the peer requires a client certificate",
    "WRONG_VERSION_NUMBER": "not TLS (plain DICOM?) or an unsupported TLS version",
    "HTTP_REQUEST": "not TLS (an HTTP request)",
    "UNSUPPORTED_PROTOCOL": "the peer offers only TLS versions below 1.2",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common (1.2 or 1.3 required)",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common (1.2 or 1.3 required)",
    "NO_SHARED_CIPHER": "no cipher suite in common",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the peer ended the handshake (no common cipher or version?)",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust our certificate's CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the peer says our certificate has expired",
    "TLSV1_ALERT_DECRYPT_ERROR": "the peer could not verify our certificate's signature",
    "UNEXPECTED_EOF_WHILE_READING": "the peer closed the connection during the handshake",
}


def describe_tls_failure(exc: BaseException) -> str:
    """A short reason for a failed TLS handshake, for a log line or a RETRY message.

    Only what OpenSSL says about certificates and protocol; no peer data is quoted beyond
    the certificate problem (e.g. the host name it was checked against).
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or _ssl_reason(exc)
        return f"certificate verification failed: {detail}"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "")
        return _REASONS.get(reason, reason.replace("_", " ").lower() or str(exc))
    if isinstance(exc, TimeoutError):
        return f"no TLS handshake within {HANDSHAKE_TIMEOUT:.0f} s"
    if isinstance(exc, ConnectionError):
        return "the peer closed the connection during the handshake"
    if isinstance(exc, OSError):
        return f"connection error during the handshake ({exc.strerror or type(exc).__name__})"
    return type(exc).__name__
